//! The services behind the gateway: endpoints, HTTP/2 connections over internal mTLS, balancing
//! and ejection.
//!
//! Each endpoint keeps one multiplexed HTTP/2 connection, reused by every call. Calls go round
//! robin over the endpoints that are up. An endpoint whose connection cannot be made is ejected
//! for a while (doubling up to 30 s) and the call moves on to the next endpoint *before* any of
//! its body is sent, so failing over loses nothing. A connection that dies is replaced on the
//! next call.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use telehealth_kit::{Part, config::TlsFiles, tls};
use tokio::{net::TcpStream, sync::Mutex};

use crate::error::GatewayError;

/// Longest ejection of a failing endpoint.
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// The request body the gateway sends upstream.
pub type UpstreamBody = tonic::body::Body;

/// One address of a service.
pub struct Endpoint {
    /// `host:port`, also the `:authority` of forwarded calls.
    pub authority: String,
    host: String,
    state: Mutex<EndpointState>,
}

#[derive(Default)]
struct EndpointState {
    sender: Option<SendRequest<UpstreamBody>>,
    ejected_until: Option<Instant>,
    ejection: Duration,
}

/// Every endpoint of one service.
pub struct Upstream {
    part: Part,
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

/// All services, by gRPC service name.
pub struct Upstreams {
    by_service: HashMap<&'static str, Arc<Upstream>>,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    first_ejection: Duration,
}

impl Upstreams {
    /// Upstreams for `endpoints` (URLs per part), connecting with the gateway's internal identity.
    pub fn new(
        endpoints: HashMap<Part, Vec<String>>,
        internal: &TlsFiles,
        connect_timeout: Duration,
        first_ejection: Duration,
    ) -> Result<Self, GatewayError> {
        let config_error =
            |e: &dyn std::fmt::Display| GatewayError::Config(format!("upstream: {e}"));
        let roots = tls::load_roots(&internal.ca).map_err(|e| config_error(&e))?;
        // The gateway's internal certificate is re-read when renewed (new connections use it).
        let identity = tls::ReloadingCertifiedKey::load(&internal.cert, &internal.key)
            .map_err(|e| config_error(&e))?;
        let mut config = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(&e))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(identity));
        config.alpn_protocols = vec![b"h2".to_vec()];

        let mut by_service = HashMap::new();
        for (part, urls) in endpoints {
            let Some(service) = part.grpc_service() else {
                continue;
            };
            let mut list = Vec::new();
            for url in urls {
                let uri: http::Uri = url.parse().map_err(|e| config_error(&e))?;
                let host = uri
                    .host()
                    .ok_or_else(|| config_error(&format!("{url}: no host")))?;
                let port = uri.port_u16().unwrap_or(443);
                list.push(Arc::new(Endpoint {
                    authority: format!("{host}:{port}"),
                    host: host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                    state: Mutex::new(EndpointState::default()),
                }));
            }
            if list.is_empty() {
                return Err(config_error(&format!("{part} has no endpoint")));
            }
            by_service.insert(
                service,
                Arc::new(Upstream {
                    part,
                    endpoints: list,
                    next: AtomicUsize::new(0),
                }),
            );
        }
        Ok(Upstreams {
            by_service,
            tls: Arc::new(config),
            connect_timeout,
            first_ejection,
        })
    }

    /// The upstream serving the gRPC service `service` (`telehealth.v1.WoundService`).
    pub fn for_service(&self, service: &str) -> Option<&Arc<Upstream>> {
        self.by_service.get(service)
    }

    /// A ready connection to one endpoint of `upstream`, trying each endpoint at most once,
    /// starting with the next in round-robin order and skipping ejected ones (unless all are).
    pub async fn ready_sender(
        &self,
        upstream: &Upstream,
    ) -> Result<(Arc<Endpoint>, SendRequest<UpstreamBody>), GatewayError> {
        let count = upstream.endpoints.len();
        let start = upstream.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut order: Vec<&Arc<Endpoint>> = (0..count)
            .map(|i| &upstream.endpoints[(start + i) % count])
            .collect();
        // Endpoints out of ejection first; ejected ones last, soonest back first.
        let mut ejected = Vec::new();
        let mut up = Vec::new();
        for endpoint in order.drain(..) {
            match endpoint.state.lock().await.ejected_until {
                Some(until) if until > now => ejected.push((until, endpoint)),
                _ => up.push(endpoint),
            }
        }
        ejected.sort_by_key(|(until, _)| *until);
        for endpoint in up.into_iter().chain(ejected.into_iter().map(|(_, e)| e)) {
            match self.connect(endpoint).await {
                Ok(sender) => return Ok((endpoint.clone(), sender)),
                Err(error) => {
                    tracing::warn!(service = %upstream.part, endpoint = %endpoint.authority, %error, "upstream endpoint unavailable")
                }
            }
        }
        Err(GatewayError::NoUpstream {
            service: upstream.part.to_string(),
        })
    }

    /// Marks an endpoint whose call failed at the transport level: its connection is dropped
    /// and it is ejected.
    pub async fn report_failure(&self, endpoint: &Endpoint) {
        let mut state = endpoint.state.lock().await;
        state.sender = None;
        self.eject(&mut state);
    }

    fn eject(&self, state: &mut EndpointState) {
        state.ejection = if state.ejection.is_zero() {
            self.first_ejection
        } else {
            (state.ejection * 2).min(MAX_EJECTION)
        };
        state.ejected_until = Some(Instant::now() + state.ejection);
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<SendRequest<UpstreamBody>, String> {
        // Fast path: reuse the live connection without holding the lock while waiting on it.
        let existing = endpoint.state.lock().await.sender.clone();
        if let Some(mut sender) = existing.filter(|s| !s.is_closed())
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        let mut state = endpoint.state.lock().await;
        // Another call may have reconnected while this one waited for the lock.
        if let Some(sender) = state
            .sender
            .clone()
            .filter(|s| !s.is_closed() && s.is_ready())
        {
            return Ok(sender);
        }
        state.sender = None;
        let connected =
            match tokio::time::timeout(self.connect_timeout, self.handshake(endpoint)).await {
                Ok(Ok(mut sender)) => sender
                    .ready()
                    .await
                    .map(|()| sender)
                    .map_err(|e| e.to_string()),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(format!("no connection within {:?}", self.connect_timeout)),
            };
        match connected {
            Ok(sender) => {
                state.ejected_until = None;
                state.ejection = Duration::ZERO;
                state.sender = Some(sender.clone());
                Ok(sender)
            }
            Err(error) => {
                self.eject(&mut state);
                Err(error)
            }
        }
    }

    async fn handshake(&self, endpoint: &Endpoint) -> Result<SendRequest<UpstreamBody>, String> {
        let tcp = TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .initial_stream_window_size(1024 * 1024)
            .initial_connection_window_size(4 * 1024 * 1024)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http/2: {e}"))?;
        let authority = endpoint.authority.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(endpoint = %authority, %error, "upstream connection closed");
            }
        });
        Ok(sender)
    }
}
