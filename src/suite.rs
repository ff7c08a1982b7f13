//! The whole suite in one process (`telehealth up`) and one part alone (`telehealth serve`).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use telehealth_gateway::GatewayServer;
use telehealth_kit::{
    Part, Settings,
    config::TlsFiles,
    metrics::Metrics,
    pki::{DevPki, SAMPLE_DEVICES},
    serve::{ServiceDefinition, run_service},
    tls,
    token::DevSigner,
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::ClientTlsConfig;

use crate::data_lock::DataDirLock;

/// How the kit runs each service.
pub fn service_definition(part: Part) -> Option<ServiceDefinition> {
    match part {
        Part::Gateway => None,
        Part::Scheduling => Some(telehealth_scheduling::definition()),
        Part::Expertise => Some(telehealth_expertise::definition()),
        Part::Wound => Some(telehealth_wound::definition()),
        Part::Signalling => Some(telehealth_signalling::definition()),
        Part::Directory => Some(telehealth_directory::definition()),
        Part::Auth => Some(telehealth_auth::definition()),
    }
}

/// A suite running in this process.
pub struct RunningSuite {
    /// Where the gateway listens for clients.
    pub gateway: SocketAddr,
    /// Where its sign-in port listens, when it has one.
    pub sign_in: Option<SocketAddr>,
    /// Where each service listens.
    pub services: BTreeMap<Part, SocketAddr>,
    /// The settings the parts run with (free ports filled in).
    pub settings: Arc<Settings>,
    /// The process's metrics, and where the admin listener serves them (when configured).
    pub metrics: Metrics,
    pub admin: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<(Part, Result<(), telehealth_kit::KitError>)>,
    /// Held while the suite runs on embedded data: no restore under it.
    _data_lock: Option<DataDirLock>,
}

/// Creates the dev PKI and signing key in the data directory if they are missing.
pub fn prepare_data_dir(settings: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            settings.data_dir.display()
        )
    })?;
    let created = DevPki::new(settings.pki_dir()).ensure()?;
    if !created.is_empty() {
        tracing::info!(files = created.len(), dir = %settings.pki_dir().display(), "created dev PKI");
    }
    if DevSigner::new(settings.data_dir.join("jwt")).ensure()? {
        tracing::info!("created dev JWT signing key and JWKS");
    }
    telehealth_kit::sealed::KeyRing::load_or_create(&settings.patient_key_file(), true)?;
    telehealth_kit::sealed::KeyRing::load_or_create(&settings.auth_key_file(), true)?;
    Ok(())
}

/// The shared lock on the data directory when the services keep their data in it (SQLite):
/// `telehealth restore` waits for every holder to stop.
fn lock_embedded_data(settings: &Settings) -> anyhow::Result<Option<DataDirLock>> {
    if settings.database.url.is_some() {
        return Ok(None);
    }
    DataDirLock::shared(&settings.data_dir).map(Some)
}

impl RunningSuite {
    /// Starts every service on a free loopback port and the gateway on `gateway.listen`, with
    /// `settings` otherwise.
    pub async fn start(mut settings: Settings) -> anyhow::Result<RunningSuite> {
        let data_lock = lock_embedded_data(&settings)?;
        prepare_data_dir(&settings)?;
        // Without the auth service's CRL (which lists what `telehealth pki revoke` revoked),
        // the dev CRL that command rewrites, unless CRLs are configured.
        if settings.gateway.crl_files.is_empty() && !settings.gateway.follow_auth {
            settings
                .gateway
                .crl_files
                .push(DevPki::new(settings.pki_dir()).crl_file());
        }
        let gateway_listener = TcpListener::bind(settings.gateway.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for the gateway",
                    settings.gateway.listen
                )
            })?;
        let gateway = gateway_listener.local_addr()?;
        let sign_in_listener = match settings.gateway.sign_in_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("cannot listen on {address} for the gateway's sign-in port")
            })?),
            None => None,
        };
        let sign_in = match &sign_in_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        // One provider for the whole process: every part records into it.
        let metrics = Metrics::new("telehealth", settings.telemetry.otlp_endpoint.as_deref())?;
        let mut listeners = Vec::new();
        for part in Part::SERVICES {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .with_context(|| format!("cannot bind a port for {part}"))?;
            let address = listener.local_addr()?;
            if let Some(service) = settings.service_mut(part) {
                service.listen = address;
                service.endpoints = vec![format!("https://{address}")];
            }
            listeners.push((part, listener));
        }
        let settings = Arc::new(settings);
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut services = BTreeMap::new();
        for (part, listener) in listeners {
            services.insert(part, listener.local_addr()?);
            let definition = service_definition(part).context("services have definitions")?;
            let (settings, shutdown) = (settings.clone(), shutdown.clone());
            let metrics = metrics.clone();
            tasks.spawn(async move {
                let result = run_service(&definition, settings, listener, shutdown, metrics).await;
                (part, result)
            });
        }
        let admin = telehealth_kit::metrics::admin::start(
            settings.telemetry.admin_listen,
            &metrics,
            &shutdown,
        )
        .await?;
        let mut server = GatewayServer::build(&settings, &metrics)
            .await
            .map_err(|e| anyhow::anyhow!("gateway: {e}"))?;
        if let Some(listener) = sign_in_listener {
            server = server.with_sign_in_port(listener);
        }
        let token = shutdown.clone();
        tasks.spawn(async move {
            server.run(gateway_listener, token).await;
            (Part::Gateway, Ok(()))
        });
        Ok(RunningSuite {
            gateway,
            sign_in,
            services,
            settings,
            metrics,
            admin,
            shutdown,
            tasks,
            _data_lock: data_lock,
        })
    }

    /// Waits until every service and the gateway report SERVING, or fails after `timeout` (or
    /// as soon as a part stops, with its error).
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let internal = tls::client_tls(&self.settings.internal_tls(Part::Gateway))?;
        let device = DevPki::new(self.settings.pki_dir()).device_files(SAMPLE_DEVICES[0]);
        let client_facing = tls::client_tls(&TlsFiles {
            ca: self.settings.gateway_server_tls().ca,
            cert: device.cert,
            key: device.key,
        })?;
        let mut parts: Vec<(Part, SocketAddr, &ClientTlsConfig)> = self
            .services
            .iter()
            .map(|(part, address)| (*part, *address, &internal))
            .collect();
        parts.push((Part::Gateway, self.gateway, &client_facing));
        for (part, address, tls) in parts {
            loop {
                if let Some(finished) = self.tasks.try_join_next() {
                    let (stopped, result) = finished.context("a part panicked")?;
                    result.with_context(|| format!("{stopped} failed to start"))?;
                    bail!("{stopped} stopped during start-up");
                }
                if health_of(address, tls, part).await {
                    break;
                }
                if started.elapsed() > timeout {
                    bail!("{part} is not healthy after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(started.elapsed())
    }

    /// The token that stops the suite when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every part (draining in-flight calls within the configured deadline) and reports
    /// the first part that failed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.join().await
    }

    /// Waits for every part to stop (after the shutdown token is cancelled, or a part fails).
    pub async fn join(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(finished) = self.tasks.join_next().await {
            match finished {
                Ok((_, Ok(()))) => {}
                Ok((part, Err(error))) => {
                    tracing::error!(%part, %error, "part failed");
                    // One part down means the suite is down: stop the others too.
                    self.shutdown.cancel();
                    first_error.get_or_insert_with(|| anyhow::anyhow!("{part} failed: {error}"));
                }
                Err(error) => {
                    self.shutdown.cancel();
                    first_error.get_or_insert_with(|| anyhow::anyhow!("a part panicked: {error}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// True when the service at `address` answers SERVING to a health check over internal mTLS.
pub async fn health_of(
    address: SocketAddr,
    tls: &tonic::transport::ClientTlsConfig,
    part: Part,
) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("https://{address}")) else {
        return false;
    };
    let Ok(endpoint) = endpoint.tls_config(tls.clone()) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
    else {
        return false;
    };
    telehealth_kit::health::check(channel, part.grpc_service().unwrap_or(""))
        .await
        .unwrap_or(false)
}

/// Runs one part alone on its configured address until SIGTERM or Ctrl-C (microservice mode:
/// the gateway reaches the services at their configured `endpoints`).
pub async fn serve_part(part: Part, settings: Settings) -> anyhow::Result<()> {
    // The gateway keeps no data: only a service holds the data directory.
    let _data_lock = match service_definition(part) {
        Some(_) => lock_embedded_data(&settings)?,
        None => None,
    };
    let listen = match settings.service(part) {
        Some(service) => service.listen,
        None => settings.gateway.listen,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for {part}"))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        telehealth_kit::serve::shutdown_signal().await;
        signal.cancel();
    });
    match service_definition(part) {
        Some(definition) => {
            let metrics = Metrics::new(
                &format!("telehealth-{part}"),
                settings.telemetry.otlp_endpoint.as_deref(),
            )?;
            telehealth_kit::metrics::admin::start(
                settings.telemetry.admin_listen,
                &metrics,
                &shutdown,
            )
            .await?;
            run_service(&definition, Arc::new(settings), listener, shutdown, metrics).await?;
        }
        None => {
            let metrics = Metrics::new(
                &format!("telehealth-{part}"),
                settings.telemetry.otlp_endpoint.as_deref(),
            )?;
            telehealth_kit::metrics::admin::start(
                settings.telemetry.admin_listen,
                &metrics,
                &shutdown,
            )
            .await?;
            let mut server = GatewayServer::build(&settings, &metrics)
                .await
                .map_err(|e| anyhow::anyhow!("gateway: {e}"))?;
            if let Some(address) = settings.gateway.sign_in_listen {
                let sign_in = TcpListener::bind(address).await.with_context(|| {
                    format!("cannot listen on {address} for the gateway's sign-in port")
                })?;
                server = server.with_sign_in_port(sign_in);
            }
            server.run(listener, shutdown).await;
        }
    }
    Ok(())
}
