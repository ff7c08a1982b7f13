//! `telehealth health <part>`: a `grpc.health.v1.Health/Check` of a local part, for Kubernetes'
//! exec probes.
//!
//! Kubernetes' own gRPC probe cannot present a client certificate, and every part of the suite
//! requires one: the services accept only certificates of the internal CA, the gateway only
//! device certificates. So the probe is this command, run inside the pod: it reads the same
//! configuration as `telehealth serve <part>` and presents
//!
//! - for a **service**, the service's own internal certificate (health is the one service a
//!   service answers without the gateway's identity), trusting the internal CA;
//! - for the **gateway**, a device certificate (a *probe* certificate issued by the device CA,
//!   by default `<pki_dir>/devices/probe.pem`, in Kubernetes a cert-manager Secret mounted only
//!   in the gateway pod), trusting the gateway's client CA, which also signs its server
//!   certificate. The gateway answers health without a token.
//!
//! The server's certificate is checked against the name `localhost` by default (every
//! certificate the suite issues carries it), whatever address is dialled.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use telehealth_kit::{Part, Settings, config::TlsFiles, tls};
use tonic::transport::Endpoint;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Which part to check: gateway, scheduling, expertise, wound or signalling.
    pub part: Part,
    /// Where to dial (`host:port`). Default: the part's configured listen address, with an
    /// unspecified host (`0.0.0.0`, `[::]`) replaced by loopback.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// Succeed on any answer, SERVING or not (liveness: the process is up even while its
    /// database is unreachable or it drains, and restarting it would not help).
    #[arg(long)]
    pub live: bool,
    /// Give up after this many seconds (connection, TLS handshake and the check together).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub timeout: f64,
    /// Client certificate to present (PEM). Default: the part's internal certificate, or
    /// `<pki_dir>/devices/probe.pem` for the gateway.
    #[arg(long, requires = "key", value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Private key of `--cert` (PEM).
    #[arg(long, requires = "cert", value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// CA bundle the server's certificate must chain to. Default: the internal CA, or the
    /// gateway's client CA for the gateway.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Name the server's certificate must carry.
    #[arg(long, default_value = "localhost", value_name = "NAME")]
    pub server_name: String,
}

/// Exit code when the part answered but is not SERVING.
const NOT_SERVING: u8 = 1;
/// Exit code when the part could not be asked (refused, TLS failure, timeout).
const UNREACHABLE: u8 = 2;

pub async fn run(args: HealthArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let part = args.part;
    let address = match &args.address {
        Some(address) => address.clone(),
        None => local_address(listen_address(settings, part)).to_string(),
    };
    let files = probe_files(&args, settings);
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .context("--timeout must be a positive number of seconds")?;
    // File problems are configuration errors: say which file, like `serve` would.
    let client_tls = tls::client_tls(&files)
        .with_context(|| format!("{part}: cannot load the probe's TLS files"))?
        .domain_name(args.server_name.clone());
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .with_context(|| format!("`{address}` is not a host:port"))?
        .tls_config(client_tls)
        .context("TLS configuration")?;

    let service = part.grpc_service().unwrap_or("");
    // One deadline over connection, handshake and check.
    let asked = tokio::time::timeout(timeout, async {
        let channel = endpoint.connect().await.map_err(|e| describe(&e))?;
        telehealth_kit::health::check(channel, service)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let (code, line) = match asked {
        Ok(Ok(true)) => (0, format!("{part} at {address}: SERVING")),
        Ok(Ok(false)) if args.live => (0, format!("{part} at {address}: alive (not serving)")),
        Ok(Ok(false)) => (NOT_SERVING, format!("{part} at {address}: NOT_SERVING")),
        Ok(Err(reason)) => (UNREACHABLE, format!("{part} at {address}: {reason}")),
        Err(_) => (
            UNREACHABLE,
            format!("{part} at {address}: no answer within {timeout:?}"),
        ),
    };
    // One line either way: kubelet keeps a failed probe's output in the pod's events.
    if code == 0 {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    Ok(ExitCode::from(code))
}

/// The address `part` listens on according to the settings.
fn listen_address(settings: &Settings, part: Part) -> SocketAddr {
    match settings.service(part) {
        Some(service) => service.listen,
        None => settings.gateway.listen,
    }
}

/// A listen address as a dialable one: `0.0.0.0` and `::` mean "this host".
fn local_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The certificate, key and CA the probe uses, from the flags or the part's configuration.
fn probe_files(args: &HealthArgs, settings: &Settings) -> TlsFiles {
    let defaults = match args.part {
        Part::Gateway => {
            let devices = settings.pki_dir().join("devices");
            TlsFiles {
                ca: settings.gateway_server_tls().ca,
                cert: devices.join("probe.pem"),
                key: devices.join("probe-key.pem"),
            }
        }
        service => settings.internal_tls(service),
    };
    TlsFiles {
        ca: args.ca.clone().unwrap_or(defaults.ca),
        cert: args.cert.clone().unwrap_or(defaults.cert),
        key: args.key.clone().unwrap_or(defaults.key),
    }
}

/// A transport error with its causes on one line (tonic's own message is only "transport
/// error").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_dialled_on_loopback() {
        let cases = [
            ("0.0.0.0:7101", "127.0.0.1:7101"),
            ("[::]:8443", "[::1]:8443"),
            ("10.1.2.3:7102", "10.1.2.3:7102"),
        ];
        for (listen, dialled) in cases {
            let listen: SocketAddr = listen.parse().expect("valid address");
            assert_eq!(local_address(listen).to_string(), dialled, "{listen}");
        }
    }
}
