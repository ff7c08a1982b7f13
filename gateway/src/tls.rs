//! The gateway's client-facing TLS: client certificates required (chained to the device CA,
//! valid now, `clientAuth` usage, not revoked), TLS 1.2+ with ALPN `h2`, and a configuration
//! that can be swapped without a restart when the certificate, key or CRLs change.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use rustls::{ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
use telehealth_kit::{config::TlsFiles, tls};

use crate::error::GatewayError;

/// The current server configuration and what it was built from.
pub struct ServerTls {
    files: TlsFiles,
    crl_files: Vec<PathBuf>,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl ServerTls {
    /// Loads the configuration; fails if any file is missing or invalid.
    pub fn load(files: TlsFiles, crl_files: Vec<PathBuf>) -> Result<Self, GatewayError> {
        let config = build(&files, &crl_files)?;
        let stamps = stamps(&files, &crl_files);
        Ok(ServerTls {
            files,
            crl_files,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .map(|config| config.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Rebuilds the configuration from the files. On error the running configuration stays.
    pub fn reload(&self) -> Result<(), GatewayError> {
        let config = build(&self.files, &self.crl_files)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(config);
        }
        if let Ok(mut stamps) = self.stamps.lock() {
            *stamps = self::stamps(&self.files, &self.crl_files);
        }
        tracing::info!("gateway TLS certificate and CRLs reloaded");
        Ok(())
    }

    /// Reloads if any file's modification time changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.files, &self.crl_files);
        let changed = self.stamps.lock().map(|old| *old != now).unwrap_or(true);
        if changed && let Err(error) = self.reload() {
            tracing::error!(%error, "gateway TLS reload failed; keeping the previous configuration");
        }
    }
}

fn stamps(files: &TlsFiles, crls: &[PathBuf]) -> Vec<Option<SystemTime>> {
    [&files.ca, &files.cert, &files.key]
        .into_iter()
        .chain(crls)
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

fn build(files: &TlsFiles, crl_files: &[PathBuf]) -> Result<ServerConfig, GatewayError> {
    let tls_error = |e: &dyn std::fmt::Display| GatewayError::Config(format!("gateway tls: {e}"));
    let roots = Arc::new(tls::load_roots(&files.ca).map_err(|e| tls_error(&e))?);
    let mut crls = Vec::new();
    for path in crl_files {
        crls.extend(load_crls(path)?);
    }
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, tls::provider());
    if !crls.is_empty() {
        verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = verifier.build().map_err(|e| tls_error(&e))?;
    let certs = tls::load_certs(&files.cert).map_err(|e| tls_error(&e))?;
    let key = tls::load_key(&files.key).map_err(|e| tls_error(&e))?;
    let mut config = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// CRLs from a PEM file (any number) or a DER file (one).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, GatewayError> {
    let bytes = std::fs::read(path)
        .map_err(|e| GatewayError::Config(format!("crl {}: {e}", path.display())))?;
    if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GatewayError::Config(format!("crl {}: {e}", path.display())))
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}
