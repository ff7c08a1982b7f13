//! `connection.json`: what a client needs to reach a running suite, written by `telehealth up`
//! into the data directory for scripts and clients in other languages.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};
use telehealth_kit::{
    Part,
    pki::{DevPki, SAMPLE_DEVICES},
    token::thumbprint_of_pem_file,
};

/// The connection details of a running suite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connection {
    /// The gateway's address (`host:port`), where clients connect with mTLS and a token; `null`
    /// until the gateway runs in `up`.
    pub gateway: Option<SocketAddr>,
    /// The gateway's sign-in port (no client certificate; `telehealth login`), when it has one.
    #[serde(default)]
    pub sign_in: Option<SocketAddr>,
    /// CA that signs the gateway's server certificate: trust it.
    pub ca_file: PathBuf,
    /// Sample devices' client certificates, by device name.
    pub devices: BTreeMap<String, Device>,
    /// The JWKS the gateway verifies tokens with.
    pub jwks_file: PathBuf,
    /// Each service's internal address (operators only: internal mTLS with `internal`'s files).
    pub services: BTreeMap<Part, SocketAddr>,
    /// The internal CA and the gateway's internal certificate, for operators' health checks.
    pub internal: Device,
    /// The internal CA bundle.
    pub internal_ca_file: PathBuf,
    /// How to get a token for a device.
    pub token_help: String,
}

/// A client certificate, its key and its RFC 8705 thumbprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub thumbprint: String,
}

impl Connection {
    /// Describes the suite whose PKI is `pki` and whose parts listen at the given addresses.
    pub fn describe(
        pki: &DevPki,
        jwks_file: PathBuf,
        gateway: Option<SocketAddr>,
        services: BTreeMap<Part, SocketAddr>,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Connection> {
        let device = |files: telehealth_kit::pki::IssuedFiles| -> anyhow::Result<Device> {
            Ok(Device {
                thumbprint: thumbprint_of_pem_file(&files.cert)?,
                cert: absolute(files.cert),
                key: absolute(files.key),
            })
        };
        let mut devices = BTreeMap::new();
        for name in SAMPLE_DEVICES {
            devices.insert(name.to_owned(), device(pki.device_files(name))?);
        }
        let cert = absolute(pki.device_files("doctor-workstation").cert);
        Ok(Connection {
            gateway,
            sign_in: None,
            ca_file: absolute(pki.ca_file()),
            devices,
            jwks_file: absolute(jwks_file),
            services,
            internal: device(pki.internal_files(Part::Gateway))?,
            internal_ca_file: absolute(pki.internal_ca_file()),
            token_help: format!(
                "telehealth token mint --data-dir {} --sub dr-martin --role doctor --org cds-bourganeuf --bind-cert {}",
                absolute(data_dir.to_path_buf()).display(),
                cert.display()
            ),
        })
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// A channel to the gateway at `gateway` from a device (its certificate and key), trusting the
/// gateway's server CA of `settings`: how `telehealth call` and the demo seed reach the suite.
pub async fn gateway_channel(
    settings: &telehealth_kit::Settings,
    gateway: std::net::SocketAddr,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
) -> anyhow::Result<tonic::transport::Channel> {
    use anyhow::Context;
    let ca = settings.gateway_server_tls().ca;
    let client_tls =
        telehealth_kit::tls::client_tls(&telehealth_kit::config::TlsFiles { ca, cert, key })?;
    tonic::transport::Endpoint::from_shared(format!("https://{gateway}"))?
        .tls_config(client_tls)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the gateway at {gateway}"))
}
