//! The gateway's client-facing TLS: client certificates required (chained to the device CA,
//! valid now, `clientAuth` usage, not revoked), TLS 1.2+ with ALPN `h2`, and a configuration
//! that can be swapped without a restart when the certificate, key or CRLs change.
//!
//! The handshake is the only place rustls checks revocation, so the certificates the CRLs
//! revoke are also kept as a [`Revoked`] set: on each reload the server closes the open
//! connections whose client certificate it now holds.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use rustls::{ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
use telehealth_kit::{config::TlsFiles, tls};

use crate::error::GatewayError;

/// Who a client certificate is, for revocation: its issuer's name and serial number (DER),
/// the pair a CRL names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateId {
    pub issuer: Vec<u8>,
    pub serial: Vec<u8>,
}

impl CertificateId {
    /// The id of a DER certificate, `None` if it does not parse.
    pub fn of(cert_der: &[u8]) -> Option<CertificateId> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
        Some(CertificateId {
            issuer: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
        })
    }
}

/// The certificates the configured CRLs revoke.
#[derive(Debug, Default)]
pub struct Revoked(HashSet<CertificateId>);

impl Revoked {
    /// True if `id` is revoked.
    pub fn contains(&self, id: &CertificateId) -> bool {
        self.0.contains(id)
    }

    /// How many certificates are revoked.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A set holding exactly `ids`.
    #[cfg(test)]
    pub(crate) fn for_tests(ids: HashSet<CertificateId>) -> Revoked {
        Revoked(ids)
    }

    fn from_crls(crls: &[CertificateRevocationListDer<'_>]) -> Result<Revoked, GatewayError> {
        use x509_parser::prelude::FromDer;
        let mut revoked = HashSet::new();
        for crl in crls {
            let (_, list) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref())
                    .map_err(|e| GatewayError::Config(format!("crl: {e}")))?;
            let issuer = list.issuer().as_raw().to_vec();
            for entry in list.iter_revoked_certificates() {
                revoked.insert(CertificateId {
                    issuer: issuer.clone(),
                    serial: entry.raw_serial().to_vec(),
                });
            }
        }
        Ok(Revoked(revoked))
    }
}

/// The current server configuration and what it was built from.
pub struct ServerTls {
    files: TlsFiles,
    crl_files: Vec<PathBuf>,
    current: RwLock<Arc<ServerConfig>>,
    /// The sign-in port's: the same certificate, no client certificate asked.
    sign_in: RwLock<Arc<ServerConfig>>,
    revoked: RwLock<Arc<Revoked>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl ServerTls {
    /// Loads the configuration; fails if any file is missing or invalid.
    pub fn load(files: TlsFiles, crl_files: Vec<PathBuf>) -> Result<Self, GatewayError> {
        let (config, sign_in, revoked) = build(&files, &crl_files)?;
        let stamps = stamps(&files, &crl_files);
        Ok(ServerTls {
            files,
            crl_files,
            current: RwLock::new(Arc::new(config)),
            sign_in: RwLock::new(Arc::new(sign_in)),
            revoked: RwLock::new(Arc::new(revoked)),
            stamps: Mutex::new(stamps),
        })
    }

    /// The certificates the current CRLs revoke.
    pub fn revoked(&self) -> Arc<Revoked> {
        self.revoked
            .read()
            .map(|revoked| revoked.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .map(|config| config.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The configuration new connections to the sign-in port use.
    pub fn sign_in(&self) -> Arc<ServerConfig> {
        self.sign_in
            .read()
            .map(|config| config.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Rebuilds the configuration from the files. On error the running configuration stays.
    pub fn reload(&self) -> Result<(), GatewayError> {
        let (config, sign_in, revoked) = build(&self.files, &self.crl_files)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(config);
        }
        if let Ok(mut current) = self.sign_in.write() {
            *current = Arc::new(sign_in);
        }
        if let Ok(mut current) = self.revoked.write() {
            *current = Arc::new(revoked);
        }
        if let Ok(mut stamps) = self.stamps.lock() {
            *stamps = self::stamps(&self.files, &self.crl_files);
        }
        tracing::info!("gateway TLS certificate and CRLs reloaded");
        Ok(())
    }

    /// Reloads if any file's modification time changed since the last load; true if it did.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.files, &self.crl_files);
        let changed = self.stamps.lock().map(|old| *old != now).unwrap_or(true);
        if !changed {
            return false;
        }
        match self.reload() {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "gateway TLS reload failed; keeping the previous configuration");
                false
            }
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

fn build(
    files: &TlsFiles,
    crl_files: &[PathBuf],
) -> Result<(ServerConfig, ServerConfig, Revoked), GatewayError> {
    let tls_error = |e: &dyn std::fmt::Display| GatewayError::Config(format!("gateway tls: {e}"));
    let roots = Arc::new(tls::load_roots(&files.ca).map_err(|e| tls_error(&e))?);
    let mut crls = Vec::new();
    for path in crl_files {
        crls.extend(load_crls(path)?);
    }
    let revoked = Revoked::from_crls(&crls)?;
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
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| tls_error(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut sign_in = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&e))?;
    sign_in.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, sign_in, revoked))
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
