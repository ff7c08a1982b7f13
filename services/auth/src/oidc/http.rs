//! The HTTP client the relying party talks to providers with: the process's reqwest (rustls
//! with ring), adapted to the library's client trait (its own reqwest support is for an older
//! major version, which would build a second HTTP and TLS stack). Redirects are never followed:
//! a provider's endpoint answering with a redirect is an error, not a place to go.

use std::{future::Future, pin::Pin, time::Duration};

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

/// Largest answer read from a provider (discovery, keys, tokens, userinfo).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A provider-facing HTTP client; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient(reqwest::Client);

/// Why a request to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Request(#[from] reqwest::Error),
    #[error(transparent)]
    Http(#[from] openidconnect::http::Error),
    #[error("the answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("not the JSON expected: {0}")]
    Json(#[from] serde_json::Error),
}

impl HttpClient {
    /// A client trusting the system's roots (or only `extra_roots` when given, PEM).
    pub fn new(extra_roots: Option<&[u8]>) -> Result<HttpClient, HttpError> {
        // reqwest is built without a bundled provider: use ring, as the rest of the process
        // does (an error only means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = extra_roots {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(HttpClient(builder.build()?))
    }

    /// GETs `url` and parses its JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, HttpError> {
        let response = self.0.get(url).send().await?;
        if !response.status().is_success() {
            return Err(HttpError::Status(response.status().as_u16()));
        }
        let body = bounded_body(response).await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(reqwest::Request::try_from(request)?).await?;
            let mut builder = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            Ok(builder.body(bounded_body(response).await?)?)
        })
    }
}
