//! A minimal HTTP(S) GET for the identity provider's JWKS URL.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use telehealth_kit::tls;
use tokio::net::TcpStream;

use crate::error::GatewayError;

/// Largest JWKS document accepted.
const MAX_BODY: usize = 1024 * 1024;
/// Deadline of the whole request.
const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `url` and returns the body of a 200 response.
pub async fn get(url: &str, ca_file: Option<&Path>) -> Result<Vec<u8>, GatewayError> {
    tokio::time::timeout(TIMEOUT, get_inner(url, ca_file))
        .await
        .map_err(|_| GatewayError::Config(format!("jwks url {url}: timed out")))?
}

async fn get_inner(url: &str, ca_file: Option<&Path>) -> Result<Vec<u8>, GatewayError> {
    let error = |e: &dyn std::fmt::Display| GatewayError::Config(format!("jwks url {url}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| error(&e))?;
    let host = uri.host().ok_or_else(|| error(&"no host"))?.to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| error(&e))?;
    let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, &host)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| error(&e))?;

    let response = if https {
        let ca = ca_file.ok_or_else(|| error(&"https needs gateway.jwt.jwks_ca_file"))?;
        let roots = tls::load_roots(ca).map_err(|e| error(&e))?;
        let config = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| error(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.clone()).map_err(|e| error(&e))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| error(&e))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
    .map_err(|e| error(&e))?;

    if response.status() != http::StatusCode::OK {
        return Err(error(&format!("status {}", response.status())));
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| error(&e))?;
    Ok(body.to_bytes().to_vec())
}

async fn send<T>(
    io: T,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}
