//! Internal mTLS: certificates from PEM files, the services' server side, the callers' side.
//!
//! Services only accept connections whose client certificate chains to the internal CA; which
//! internal peer it is (gateway or another service) is then read from the certificate by
//! [`crate::identity`]. TLS handshakes run concurrently, each with a deadline, so a slow or
//! hostile client cannot stall the accept loop.

use std::{path::Path, sync::Arc, time::Duration};

use rustls::{RootCertStore, ServerConfig, crypto::CryptoProvider, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{config::TlsFiles, error::KitError};

mod reload;

pub use reload::ReloadingCertifiedKey;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider of the whole suite (ring: no C toolchain beyond `cc` needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
/// When the first certificate of the PEM file at `path` expires (Unix seconds); `None` if it
/// cannot be read.
pub fn not_after(path: &Path) -> Option<i64> {
    let certs = load_certs(path).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, KitError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| KitError::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KitError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(KitError::Tls(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, KitError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| KitError::Tls(format!("{}: no usable private key: {e}", path.display())))
}

/// A root store holding every certificate of a PEM bundle.
pub fn load_roots(path: &Path) -> Result<RootCertStore, KitError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| KitError::Tls(format!("{}: not a usable CA: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The server side of internal mTLS: this part's certificate (re-read when its files change),
/// client certificates required and checked against the internal CA, HTTP/2 only.
pub fn internal_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, KitError> {
    let roots = Arc::new(load_roots(&files.ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| KitError::Tls(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| KitError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ReloadingCertifiedKey::load(
            &files.cert,
            &files.key,
        )?));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of mTLS for tonic channels: trust `files.ca`, present `files.cert`/`key`
/// (internal calls to a service, or a device calling the gateway).
pub fn client_tls(files: &TlsFiles) -> Result<tonic::transport::ClientTlsConfig, KitError> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| KitError::io(path, e));
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(&files.ca)?))
        .identity(tonic::transport::Identity::from_pem(
            read(&files.cert)?,
            read(&files.key)?,
        )))
}

/// Accepts TCP connections on `listener` and yields them once their TLS handshake succeeds,
/// until `shutdown` is cancelled. Handshakes run in their own tasks, each with a deadline.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually EMFILE; back off a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::info!(%remote, %error, "tls handshake refused"),
                    Err(_) => tracing::info!(%remote, "tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
