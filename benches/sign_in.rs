//! Sign-in benchmark: token issuance and refresh through the real gateway, on PostgreSQL (SQLite
//! with `-- --sqlite`), the provider's part excluded (the development sign-in stands in for it:
//! what is measured is the suite's own work).
//!
//! `cargo bench --bench sign_in` (`-- --seconds N` for the refresh phase, default 10).
//!
//! 1. Issuance: one device after another signs in (`DevelopmentSignIn`, the directory asked for
//!    the person's memberships) and enrols (`CompleteSignIn`: the directory asked again, the
//!    certificate signed from the CSR, the device and session written, the token signed, audited),
//!    on the sign-in port. Key generation is the device's and not timed.
//! 2. Refresh on the main port with the device certificate alone (each use rotates the token):
//!    one session one refresh at a time (latency), then 16 sessions on their own devices in a
//!    loop (refreshes/s).
//! 3. The gateway's cost per call with the auth service's tokens against the dev signer's: the
//!    same cheap call (`AuthService/ListDevices`) with each, one after another.
//!
//! Prints p50/p99 and rates. Everything runs on this machine's cores (load generator, gateway,
//! services and PostgreSQL together).
//!
//! Measured on the 2-core reference machine (2026-12-03, PostgreSQL, `-- --seconds 10`):
//! issuance p50 5.6 ms, p99 10.3 ms (target p50 < 10 ms); refresh one at a time p50 1.9 ms;
//! 16 sessions refreshing in parallel 1,094 refreshes/s (target ≥ 500), p50 13.9 ms (queueing on
//! two cores); a call with the auth service's token p50 1.7 ms, the same as with a dev token
//! (the gateway's cost is unchanged: same ES256 verification, same cache).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use telehealth_kit::{identity::Role, pki::new_device_request};
use telehealth_proto::v1::{self as pb, auth_service_client::AuthServiceClient};
use telehealth_testkit::{
    harness::{Bearer, channel_to},
    measure::percentile,
    suite::{Backend, Person, Suite},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const ORG: &str = "cds-bench";
const RPPS: &str = "10000000017";
const ISSUANCES: usize = 200;
const SESSIONS: usize = 16;

struct Enrolled {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    tokens: pb::Tokens,
}

async fn sign_in_client(suite: &Suite) -> AuthServiceClient<Channel> {
    let address = suite
        .running
        .as_ref()
        .expect("running")
        .sign_in
        .expect("port");
    let ca = std::fs::read(suite.settings.pki_dir().join("ca.pem")).expect("ca");
    let channel = Channel::from_shared(format!("https://{address}"))
        .expect("uri")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("sign-in port");
    AuthServiceClient::new(channel)
}

async fn enrol(
    client: &mut AuthServiceClient<Channel>,
    dir: &Path,
    n: usize,
    key_pem: &str,
    csr_pem: &str,
) -> Enrolled {
    let verified = client
        .development_sign_in(pb::DevelopmentSignInRequest {
            rpps_number: RPPS.into(),
            csr_pem: csr_pem.to_owned(),
            ..Default::default()
        })
        .await
        .expect("signed in")
        .into_inner();
    let enrolled = client
        .complete_sign_in(pb::CompleteSignInRequest {
            ticket: verified.ticket,
            org_id: ORG.into(),
            csr_pem: csr_pem.to_owned(),
            device_name: format!("bench {n}"),
        })
        .await
        .expect("enrolled")
        .into_inner();
    let cert = dir.join(format!("device-{n}.pem"));
    let key = dir.join(format!("device-{n}-key.pem"));
    std::fs::write(&cert, &enrolled.certificate_pem).expect("cert");
    std::fs::write(&key, key_pem).expect("key");
    Enrolled {
        cert,
        key,
        tokens: enrolled.tokens.expect("tokens"),
    }
}

fn line(name: &str, latencies: &mut [Duration], extra: &str) {
    latencies.sort_unstable();
    println!(
        "| {name} | {} | {:.1} | {:.1} | {extra} |",
        latencies.len(),
        percentile(latencies, 0.5).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let backend = if args.iter().any(|a| a == "--sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let suite = Suite::start_with(backend, |settings| {
        settings.gateway.sign_in_listen = Some("127.0.0.1:0".parse().expect("addr"));
        settings.sign_in.development = true;
        settings.gateway.limits.failed_auth_per_minute_per_address = 100_000;
        settings.telemetry.log_filter = "warn".into();
    })
    .await
    .expect("PostgreSQL (or pass --sqlite)");
    let admin = Person::with_roles("admin-bench", ORG, &[Role::Admin]);
    suite
        .directory(&admin)
        .await
        .put_member(pb::PutMemberRequest {
            subject: "dr-bench".into(),
            roles: vec![pb::Role::Doctor as i32],
            rpps_number: RPPS.into(),
            ..Default::default()
        })
        .await
        .expect("member");
    let dir = tempfile::tempdir().expect("dir");
    println!("## Sign-in through the gateway ({backend:?})\n");
    println!("| phase | calls | p50 ms | p99 ms | |");
    println!("|---|---|---|---|---|");

    // 1. Issuance, one device after another.
    let keys: Vec<(String, String)> = (0..ISSUANCES + SESSIONS)
        .map(|_| new_device_request().expect("key"))
        .collect();
    let mut client = sign_in_client(&suite).await;
    let mut latencies = Vec::new();
    let mut enrolled = Vec::new();
    let started = Instant::now();
    for (n, (key, csr)) in keys.iter().enumerate().take(ISSUANCES) {
        let at = Instant::now();
        let device = enrol(&mut client, dir.path(), n, key, csr).await;
        latencies.push(at.elapsed());
        if n < SESSIONS {
            enrolled.push(device);
        }
    }
    let rate = ISSUANCES as f64 / started.elapsed().as_secs_f64();
    line(
        "issuance (sign-in + enrolment: certificate, session, token)",
        &mut latencies,
        &format!("{rate:.0} devices/s, one at a time"),
    );

    // 2a. Refresh one at a time: the latency without queueing.
    let spare = {
        let (key, csr) = &keys[ISSUANCES + 1];
        enrol(&mut client, dir.path(), ISSUANCES + 1, key, csr).await
    };
    let channel = channel_to(suite.gateway(), &suite.settings, &(spare.cert, spare.key))
        .await
        .expect("device channel");
    let mut sequential = AuthServiceClient::new(channel);
    let mut token = spare.tokens.refresh_token;
    let mut latencies = Vec::new();
    for _ in 0..500 {
        let at = Instant::now();
        token = sequential
            .refresh(pb::RefreshRequest {
                refresh_token: token.clone(),
            })
            .await
            .expect("refreshed")
            .into_inner()
            .tokens
            .expect("tokens")
            .refresh_token;
        latencies.push(at.elapsed());
    }
    line("refresh, one at a time", &mut latencies, "");

    // 2b. Refresh: each session rotates its token in a loop.
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for device in enrolled {
        let channel = channel_to(
            suite.gateway(),
            &suite.settings,
            &(device.cert.clone(), device.key.clone()),
        )
        .await
        .expect("device channel");
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = AuthServiceClient::new(channel);
            let mut token = device.tokens.refresh_token;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let at = Instant::now();
                let next = client
                    .refresh(pb::RefreshRequest {
                        refresh_token: token.clone(),
                    })
                    .await
                    .expect("refreshed")
                    .into_inner()
                    .tokens
                    .expect("tokens");
                latencies.push(at.elapsed());
                token = next.refresh_token;
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("joined"));
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    line(
        "refresh (16 sessions in parallel, certificate only)",
        &mut latencies,
        &format!("{rate:.0} refreshes/s"),
    );

    // 3. One cheap call with each kind of token, alternating.
    let (key, csr) = &keys[ISSUANCES];
    let device = enrol(&mut client, dir.path(), ISSUANCES, key, csr).await;
    let channel = channel_to(
        suite.gateway(),
        &suite.settings,
        &(device.cert.clone(), device.key.clone()),
    )
    .await
    .expect("device channel");
    let mut with_auth =
        AuthServiceClient::with_interceptor(channel, Bearer::new(&device.tokens.access_token));
    let person = Person::doctor("dr-bench", ORG);
    let mut with_dev = AuthServiceClient::new(suite.authorised(suite.gateway(), &person).await);
    let (mut auth_latencies, mut dev_latencies) = (Vec::new(), Vec::new());
    for _ in 0..1000 {
        let at = Instant::now();
        with_auth
            .list_devices(pb::ListDevicesRequest::default())
            .await
            .expect("auth token");
        auth_latencies.push(at.elapsed());
        let at = Instant::now();
        with_dev
            .list_devices(pb::ListDevicesRequest::default())
            .await
            .expect("dev token");
        dev_latencies.push(at.elapsed());
    }
    line(
        "a call with the auth service's token",
        &mut auth_latencies,
        "",
    );
    line("the same call with a dev token", &mut dev_latencies, "");
}
