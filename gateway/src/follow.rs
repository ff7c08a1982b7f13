//! Following the auth service: its token-signing keys (JWKS) and its CRL of revoked devices,
//! fetched over internal mTLS (`AuthService/PublishedKeys`) at start and every reload interval,
//! and kept as two files that the JWKS and TLS reloads read like any other. One mechanism for
//! every deployment: the auth service keeps both in its database, so it writes no file the
//! gateway would have to share.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use telehealth_kit::{Part, Settings, tls};
use telehealth_proto::v1::{self as pb, auth_service_client::AuthServiceClient};
use tonic::transport::{Channel, Endpoint};

use crate::error::GatewayError;

/// Largest answer accepted (a JWKS of a few keys and a CRL of revoked devices).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// How long the gateway waits for the auth service at start before giving up.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// The auth service as the gateway follows it.
pub struct AuthFollower {
    client: AuthServiceClient<Channel>,
    jwks_file: PathBuf,
    crl_file: PathBuf,
}

impl AuthFollower {
    /// A follower of the auth service's configured endpoints, keeping its files where
    /// `settings` says.
    pub fn new(settings: &Settings) -> Result<AuthFollower, GatewayError> {
        let config = |e: &dyn std::fmt::Display| GatewayError::Config(format!("auth service: {e}"));
        let client_tls =
            tls::client_tls(&settings.internal_tls(Part::Gateway)).map_err(|e| config(&e))?;
        let mut endpoints = Vec::new();
        for url in settings.service_endpoints(Part::Auth) {
            endpoints.push(
                Endpoint::from_shared(url)
                    .map_err(|e| config(&e))?
                    .tls_config(client_tls.clone())
                    .map_err(|e| config(&e))?
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(5)),
            );
        }
        if endpoints.is_empty() {
            return Err(config(&"no endpoint configured"));
        }
        Ok(AuthFollower {
            client: AuthServiceClient::new(Channel::balance_list(endpoints.into_iter()))
                .max_decoding_message_size(MAX_ANSWER_BYTES),
            jwks_file: settings.auth_jwks_file(),
            crl_file: settings.auth_crl_file(),
        })
    }

    /// The CRL file this follower keeps (for the TLS configuration).
    pub fn crl_file(&self) -> &Path {
        &self.crl_file
    }

    /// Fetches until the first answer, so that the gateway never serves without the auth
    /// service's keys and CRL (a revoked device must not get in while the auth service starts).
    pub async fn first_sync(&self) -> Result<(), GatewayError> {
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        loop {
            match self.sync().await {
                Ok(_) => return Ok(()),
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(%error, "waiting for the auth service's keys and CRL");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Fetches the keys and the CRL and rewrites the files that changed; true when one did.
    pub async fn sync(&self) -> Result<bool, GatewayError> {
        let answer = self
            .client
            .clone()
            .published_keys(pb::PublishedKeysRequest {})
            .await
            .map_err(|status| {
                GatewayError::Config(format!(
                    "auth service's keys and CRL: {} ({:?})",
                    status.message(),
                    status.code()
                ))
            })?
            .into_inner();
        // Checked before they replace what works: a bad answer keeps the previous files.
        serde_json::from_str::<serde_json::Value>(&answer.jwks_json)
            .ok()
            .filter(|jwks| jwks["keys"].is_array())
            .ok_or_else(|| GatewayError::Config("auth service's JWKS: not a key set".into()))?;
        if !answer.crl_pem.starts_with("-----BEGIN X509 CRL-----") {
            return Err(GatewayError::Config(
                "auth service's CRL: not a PEM CRL".into(),
            ));
        }
        let jwks = replace_if_changed(&self.jwks_file, answer.jwks_json.as_bytes())?;
        let crl = replace_if_changed(&self.crl_file, answer.crl_pem.as_bytes())?;
        Ok(jwks || crl)
    }
}

/// Writes `bytes` to `path` (whole, then renamed) unless it already holds them.
fn replace_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, GatewayError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let io = |e: std::io::Error| GatewayError::Config(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(true)
}
