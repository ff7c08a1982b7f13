//! The child processes' modes: an echo backend, or our gateway in front of one.
//!
//! Each binds a free loopback port, prints `LISTENING <address>` on stdout, and serves until its
//! stdin closes (the bench holds the other end).

use std::path::PathBuf;

use anyhow::Context;
use telehealth_kit::{Part, Settings};
use telehealth_testkit::{echo, harness};
use tokio::net::TcpListener;

use crate::procfs::exit_when_stdin_closes;

/// `serve-echo --data-dir DIR`: the echo backend with the wound service's internal identity.
pub async fn serve_echo(data_dir: PathBuf) -> anyhow::Result<()> {
    exit_when_stdin_closes();
    let settings = Settings {
        data_dir,
        ..Settings::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend = echo::start(listener, &settings.internal_tls(Part::Wound), Part::Wound).await;
    println!("LISTENING {}", backend.address);
    std::future::pending::<()>().await;
    Ok(())
}

/// Options of `serve-gateway`.
pub struct GatewayOptions {
    pub data_dir: PathBuf,
    /// `host:port` of the echo backend.
    pub upstream: String,
    /// `gateway.jwt.cache_entries` (0: verify every call).
    pub cache_entries: usize,
    /// `telemetry.log_filter` (the production default is `info`).
    pub log_filter: String,
    /// `gateway.workers` (0: one per core, the default).
    pub workers: usize,
}

/// `serve-gateway`: our gateway, configured as in production except for the rate limit (raised
/// so that one subject can drive the whole load) and the token cache size.
pub async fn serve_gateway(options: GatewayOptions) -> anyhow::Result<()> {
    exit_when_stdin_closes();
    let mut settings = Settings {
        data_dir: options.data_dir,
        ..Settings::default()
    };
    let endpoint = format!("https://{}", options.upstream);
    for part in [Part::Wound, Part::Signalling] {
        if let Some(service) = settings.service_mut(part) {
            service.endpoints = vec![endpoint.clone()];
        }
    }
    // An echo backend only: no auth service to follow.
    settings.gateway.follow_auth = false;
    settings.gateway.limits.requests_per_second = 1.0e9;
    settings.gateway.limits.burst = 1_000_000_000;
    settings.gateway.jwt.cache_entries = options.cache_entries;
    settings.gateway.workers = options.workers;
    settings.telemetry.log_filter = options.log_filter;
    // The same subscriber `telehealth serve gateway` installs (logs + OpenTelemetry layer).
    let _telemetry =
        telehealth_kit::telemetry::init(&settings.telemetry, "gateway").context("telemetry")?;
    // Binds a free loopback port, builds the gateway (panics on a configuration error) and
    // serves it on this runtime.
    let (address, _shutdown) = harness::start_gateway(&settings).await;
    println!("LISTENING {address}");
    std::future::pending::<()>().await;
    Ok(())
}
