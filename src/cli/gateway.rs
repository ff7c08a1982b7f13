//! How a command reaches a running suite as a person: the gateway's address, the device's
//! certificate and the access token, from the flags or from the suite's `connection.json`.
//! Shared by `telehealth call` and `telehealth export`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Args;
use telehealth_kit::Settings;
use tonic::{metadata::MetadataValue, transport::Channel};

use crate::connection::Connection;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Sample device whose certificate to present (from `connection.json`).
    #[arg(long, default_value = "doctor-workstation")]
    pub device: String,
    /// Client certificate (PEM) instead of a sample device; needs `--key`.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Access token (also `TELEHEALTH_TOKEN`).
    #[arg(long, env = "TELEHEALTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Gateway address; default from `connection.json`.
    #[arg(long)]
    pub gateway: Option<SocketAddr>,
    /// The login of `telehealth login`, used when neither `--token` nor `--cert` is given.
    #[command(flatten)]
    pub login: crate::cli::login::LoginFolder,
}

impl GatewayArgs {
    /// An mTLS channel to the gateway and the `authorization` value to send: the login's
    /// certificate and (refreshed) token when there is one and no flag says otherwise, else the
    /// flags' or the sample device's.
    pub async fn connect(
        &self,
        settings: &Settings,
    ) -> anyhow::Result<(Channel, Option<MetadataValue<tonic::metadata::Ascii>>)> {
        if self.token.is_none() && self.cert.is_none() {
            let dir = self.login.dir()?;
            if let Some(mut login) = crate::cli::login::Login::load(&dir)? {
                let channel = login.channel(&dir, settings).await?;
                let bearer = format!("Bearer {}", login.access_token)
                    .parse()
                    .context("the token is not ASCII")?;
                return Ok((channel, Some(bearer)));
            }
        }
        Ok((self.channel(settings).await?, self.bearer()?))
    }

    /// An mTLS channel to the gateway with the device's certificate.
    pub async fn channel(&self, settings: &Settings) -> anyhow::Result<Channel> {
        let connection_file = settings.data_dir.join("connection.json");
        let connection: Option<Connection> = std::fs::read(&connection_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let gateway = self
            .gateway
            .or(connection.as_ref().and_then(|c| c.gateway))
            .with_context(|| {
                format!(
                    "no --gateway and no running suite described in {}",
                    connection_file.display()
                )
            })?;
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                let device = connection
                    .as_ref()
                    .and_then(|c| c.devices.get(&self.device))
                    .with_context(|| {
                        format!(
                            "unknown device `{}` (see {})",
                            self.device,
                            connection_file.display()
                        )
                    })?;
                (device.cert.clone(), device.key.clone())
            }
        };
        crate::connection::gateway_channel(settings, gateway, cert, key).await
    }

    /// The `authorization` header value of the token, if one was given.
    pub fn bearer(&self) -> anyhow::Result<Option<MetadataValue<tonic::metadata::Ascii>>> {
        self.token
            .as_ref()
            .map(|token| {
                format!("Bearer {token}")
                    .parse()
                    .context("the token is not ASCII")
            })
            .transpose()
    }
}
