//! Where and how to submit: the operator's server, the TLS mode, the trusted roots and the
//! structure's client certificate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::outcome::SendError;

/// How TLS starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP, then `STARTTLS` (submission port 587). The client refuses to go on in clear
    /// when the server does not offer it.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// The certificate authorities trusted for the server's certificate (for MSSanté: the IGC
/// Santé roots the operator names).
#[derive(Debug, Clone)]
pub enum Roots {
    /// A PEM file of one or more CA certificates.
    PemFile(PathBuf),
    /// Roots already loaded.
    Store(Arc<RootCertStore>),
}

/// The sending structure's certificate and private key, presented in the TLS handshake.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate first, then any intermediate CA certificates (PEM).
    pub cert_chain_pem: Vec<u8>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    // The key is a secret: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field(
                "cert_chain_pem",
                &format_args!("{} bytes", self.cert_chain_pem.len()),
            )
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The submission server and the sender's identity.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Host name or IP address to connect to.
    pub host: String,
    /// 587 for STARTTLS, 465 for implicit TLS.
    pub port: u16,
    pub tls: TlsMode,
    /// The name the server's certificate must carry (usually `host`).
    pub server_name: String,
    pub roots: Roots,
    /// The structure's certificate. MSSanté operators require one for an application mailbox;
    /// `None` only makes sense for a server authenticating otherwise.
    pub client_identity: Option<ClientIdentity>,
    /// The MSSanté address of the sending mailbox (envelope sender and `From`).
    pub sender: String,
    /// The name given in `EHLO` (the sending host's name).
    pub helo_name: String,
    /// Bound on each step: connecting, the TLS handshake, each reply, each write.
    pub timeout: Duration,
}

impl MailConfig {
    /// The TLS client of this configuration: the given roots, the client certificate, ring as
    /// the crypto provider (the suite's only one), TLS 1.2 and 1.3.
    pub(crate) fn connector(&self) -> Result<(TlsConnector, ServerName<'static>), SendError> {
        let config_error =
            |what: &str, e: &dyn std::fmt::Display| SendError::Config(format!("{what}: {e}"));
        let roots = match &self.roots {
            Roots::Store(store) => store.as_ref().clone(),
            Roots::PemFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| config_error(&format!("reading {}", path.display()), &e))?;
                let mut store = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| config_error("CA certificate PEM", &e))?;
                    store
                        .add(cert)
                        .map_err(|e| config_error("CA certificate", &e))?;
                }
                store
            }
        };
        if roots.is_empty() {
            return Err(SendError::Config("no trusted CA certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("TLS versions", &e))?
            .with_root_certificates(roots);
        let config = match &self.client_identity {
            Some(identity) => {
                let chain = CertificateDer::pem_slice_iter(&identity.cert_chain_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| config_error("client certificate PEM", &e))?;
                if chain.is_empty() {
                    return Err(SendError::Config("no client certificate in the PEM".into()));
                }
                let key = PrivateKeyDer::from_pem_slice(&identity.key_pem)
                    .map_err(|e| config_error("client key PEM", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config_error("client certificate", &e))?
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from(self.server_name.clone())
            .map_err(|e| config_error("server name", &e))?;
        Ok((TlsConnector::from(Arc::new(config)), name))
    }
}
