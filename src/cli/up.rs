//! `telehealth up`: the whole suite, one process, embedded defaults.

use std::{process::ExitCode, time::Duration};

use telehealth_kit::{Part, Settings, pki::DevPki, token::DevSigner};

use crate::{connection::Connection, suite::RunningSuite};

/// How long `up` waits for every part to report healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway's sign-in port under `up`, unless configured (or the gateway's port is 0).
pub const DEFAULT_SIGN_IN_PORT: u16 = 8444;

pub async fn run(mut settings: Settings, demo: bool, web: bool) -> anyhow::Result<ExitCode> {
    // Development mode: the demo members may sign in without a provider.
    settings.sign_in.development = true;
    // Next to the gateway: 8444, or a free port when the gateway takes one (port 0).
    let port = if settings.gateway.listen.port() == 0 {
        0
    } else {
        DEFAULT_SIGN_IN_PORT
    };
    let ip = settings.gateway.listen.ip();
    settings
        .gateway
        .sign_in_listen
        .get_or_insert(std::net::SocketAddr::new(ip, port));
    // The web client, built from web/ when needed, unless a folder is configured.
    if web && settings.gateway.web_root.is_none() {
        let source = super::web::default_source();
        if source.join("package.json").exists() {
            match super::web::ensure_built(&source) {
                Ok(dist) => settings.gateway.web_root = Some(dist),
                Err(error) => eprintln!("the web client is not served: {error:#}"),
            }
        }
    }
    let web = settings.gateway.web_root.is_some();
    let _telemetry = telehealth_kit::telemetry::init(&settings.telemetry, "telehealth")?;
    tracing::info!(data_dir = %settings.data_dir.display(), "starting the suite");
    let data_dir = settings.data_dir.clone();
    // Demo data only on an empty embedded database: never on PostgreSQL, never twice.
    let first_start =
        settings.database.url.is_none() && !data_dir.join("db").join("directory.db").exists();
    let seed_demo = demo && first_start;
    let mut suite = RunningSuite::start(settings).await?;

    let signal = suite.shutdown_token();
    tokio::spawn(async move {
        telehealth_kit::serve::shutdown_signal().await;
        signal.cancel();
    });

    let elapsed = match suite.wait_healthy(READY_TIMEOUT).await {
        Ok(elapsed) => elapsed,
        Err(error) => {
            suite.stop().await.ok();
            return Err(error);
        }
    };
    let demo_patients = if seed_demo {
        let seeded = async {
            let patients = crate::demo::seed(&suite.settings, suite.gateway).await?;
            crate::demo_care::seed(&suite.settings, suite.gateway, &patients).await?;
            anyhow::Ok(patients.len())
        };
        match seeded.await {
            Ok(patients) => Some(patients),
            Err(error) => {
                suite.stop().await.ok();
                return Err(error.context("seeding the demo data"));
            }
        }
    } else {
        None
    };
    let pki = DevPki::new(suite.settings.pki_dir());
    let jwks = DevSigner::new(data_dir.join("jwt")).jwks_file();
    let mut connection = Connection::describe(
        &pki,
        jwks,
        Some(suite.gateway),
        suite.services.clone(),
        &data_dir,
    )?;
    connection.sign_in = suite.sign_in;
    let connection_file = data_dir.join("connection.json");
    std::fs::write(&connection_file, serde_json::to_string_pretty(&connection)?)?;
    print_summary(&connection, &connection_file, elapsed, demo_patients, web);

    suite.join().await?;
    tracing::info!("the suite stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

fn print_demo(patients: usize) {
    println!("demo data (first start; `up --no-demo` starts empty):");
    for person in &crate::demo::PEOPLE {
        println!(
            "  {:<18} {:<18} {} ({}), RPPS {}, device {}",
            person.subject,
            person.org,
            person.label,
            person.role.as_str(),
            person.rpps,
            person.device
        );
    }
    println!(
        "  {patients} fictitious patients of {} with test INS identities and their consents",
        crate::demo::CENTRE
    );
}

fn print_summary(
    connection: &Connection,
    file: &std::path::Path,
    elapsed: Duration,
    demo_patients: Option<usize>,
    web: bool,
) {
    println!("telehealth is up ({} ms to healthy)", elapsed.as_millis());
    match connection.gateway {
        Some(gateway) => println!("  gateway        https://{gateway}"),
        None => println!("  gateway        not running"),
    }
    if let (true, Some(gateway)) = (web, connection.gateway) {
        println!(
            "  web client     https://{gateway}/ (a browser needs a device certificate: \
             telehealth pki bundle doctor-workstation, then import the .p12; README, \"Web client\")"
        );
    }
    if let Some(sign_in) = connection.sign_in {
        println!(
            "  sign-in        https://{sign_in} (no client certificate; development sign-in: \
             telehealth login --provider development --rpps <RPPS>)"
        );
    }
    for part in Part::SERVICES {
        if let Some(address) = connection.services.get(&part) {
            println!("  {:<14} https://{address} (internal mTLS)", part.name());
        }
    }
    println!("  trust CA       {}", connection.ca_file.display());
    for (name, device) in &connection.devices {
        println!(
            "  device         {name}: {} + {}",
            device.cert.display(),
            device.key.display()
        );
    }
    println!("  token          {}", connection.token_help);
    println!("  details        {}", file.display());
    if let Some(patients) = demo_patients {
        print_demo(patients);
    }
    println!("Ctrl-C stops the suite.");
}
