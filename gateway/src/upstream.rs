//! The services behind the gateway: endpoints, HTTP/2 connections over internal mTLS, balancing
//! and ejection.
//!
//! Each endpoint keeps one multiplexed HTTP/2 connection per worker thread (see
//! [`crate::workers`]), reused by every call that worker serves. Calls go round
//! robin over the endpoints that are up. An endpoint whose connection cannot be made is ejected
//! for a while (doubling up to 30 s) and the call moves on to the next endpoint *before* any of
//! its body is sent, so failing over loses nothing. A connection that dies is replaced on the
//! next call.
//!
//! A configured name stands for every address it resolves to (a Kubernetes headless Service:
//! one endpoint per pod). Names are re-resolved every `gateway.upstream.resolve_interval_seconds`;
//! addresses still listed keep their endpoint and connection, new ones are added, vanished ones
//! dropped, and a name that stops resolving keeps its last addresses. TLS still checks the
//! configured name.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock,
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

use crate::{error::GatewayError, workers};

/// Longest ejection of a failing endpoint.
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// The request body the gateway sends upstream.
pub type UpstreamBody = tonic::body::Body;

/// One address of a service.
pub struct Endpoint {
    /// `host:port`, also the `:authority` of forwarded calls.
    pub authority: String,
    host: String,
    /// The resolved address to dial; `None`: dial `authority` (resolved by the system at connect).
    address: Option<SocketAddr>,
    state: Mutex<EndpointState>,
}

impl Endpoint {
    fn new(host: &str, port: u16, address: Option<SocketAddr>) -> Endpoint {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Endpoint {
            authority: format!("{host}:{port}"),
            host: bare.to_owned(),
            address,
            state: Mutex::new(EndpointState::default()),
        }
    }
}

#[derive(Default)]
struct EndpointState {
    /// The live connection of each worker (index [`workers::current`]), made on that worker so
    /// that its I/O runs there.
    senders: Vec<Option<SendRequest<UpstreamBody>>>,
    ejected_until: Option<Instant>,
    ejection: Duration,
}

/// Every endpoint of one service.
pub struct Upstream {
    part: Part,
    /// The configured `(host, port)`s, in order (a name may be listed several times: weight).
    configured: Vec<(String, u16)>,
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    next: AtomicUsize,
}

impl Upstream {
    fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        match self.endpoints.read() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-resolves the configured names (see the module documentation).
    pub async fn resolve(&self) {
        let current = self.endpoints();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        for (host, port) in &self.configured {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let known = |address: Option<SocketAddr>| {
                current
                    .iter()
                    .find(|e| {
                        e.host == bare
                            && e.address == address
                            && e.authority.ends_with(&format!(":{port}"))
                    })
                    .cloned()
            };
            if bare.parse::<IpAddr>().is_ok() {
                next.push(
                    known(None).unwrap_or_else(|| Arc::new(Endpoint::new(host, *port, None))),
                );
                continue;
            }
            let resolved: Vec<SocketAddr> = match tokio::net::lookup_host((bare, *port)).await {
                Ok(addresses) => {
                    let mut addresses: Vec<SocketAddr> = addresses.collect();
                    addresses.sort();
                    addresses.dedup();
                    addresses
                }
                Err(error) => {
                    tracing::warn!(service = %self.part, %host, %error, "upstream name does not resolve; keeping its last addresses");
                    Vec::new()
                }
            };
            if resolved.is_empty() {
                let kept: Vec<_> = current.iter().filter(|e| e.host == bare).cloned().collect();
                if kept.is_empty() {
                    next.push(Arc::new(Endpoint::new(host, *port, None)));
                } else {
                    next.extend(kept);
                }
                continue;
            }
            for address in resolved {
                next.push(
                    known(Some(address))
                        .unwrap_or_else(|| Arc::new(Endpoint::new(host, *port, Some(address)))),
                );
            }
        }
        let same = next.len() == current.len()
            && next
                .iter()
                .zip(current.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            tracing::info!(
                service = %self.part,
                endpoints = ?next.iter().map(|e| e.address.map_or_else(|| e.authority.clone(), |a| a.to_string())).collect::<Vec<_>>(),
                "upstream endpoints updated"
            );
            if let Ok(mut list) = self.endpoints.write() {
                *list = Arc::new(next);
            }
        }
    }
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
            if part.grpc_services().is_empty() {
                continue;
            }
            let mut list = Vec::new();
            let mut configured = Vec::new();
            for url in urls {
                let uri: http::Uri = url.parse().map_err(|e| config_error(&e))?;
                let host = uri
                    .host()
                    .ok_or_else(|| config_error(&format!("{url}: no host")))?;
                let port = uri.port_u16().unwrap_or(443);
                list.push(Arc::new(Endpoint::new(host, port, None)));
                configured.push((host.to_owned(), port));
            }
            if list.is_empty() {
                return Err(config_error(&format!("{part} has no endpoint")));
            }
            // One upstream per part, shared by every gRPC service the part serves.
            let upstream = Arc::new(Upstream {
                part,
                configured,
                endpoints: RwLock::new(Arc::new(list)),
                next: AtomicUsize::new(0),
            });
            for service in part.grpc_services() {
                by_service.insert(*service, upstream.clone());
            }
        }
        Ok(Upstreams {
            by_service,
            tls: Arc::new(config),
            connect_timeout,
            first_ejection,
        })
    }

    /// Re-resolves every service's configured names.
    pub async fn resolve_all(&self) {
        let mut resolved: Vec<Part> = Vec::new();
        for upstream in self.by_service.values() {
            if !resolved.contains(&upstream.part) {
                resolved.push(upstream.part);
                upstream.resolve().await;
            }
        }
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
        let endpoints = upstream.endpoints();
        let count = endpoints.len();
        let start = upstream.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut order: Vec<&Arc<Endpoint>> = (0..count)
            .map(|i| &endpoints[(start + i) % count])
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

    /// Marks an endpoint whose call failed at the transport level: its connections are dropped
    /// and it is ejected.
    pub async fn report_failure(&self, endpoint: &Endpoint) {
        let mut state = endpoint.state.lock().await;
        state.senders.clear();
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
        let worker = workers::current();
        // Fast path: reuse the live connection without holding the lock while waiting on it.
        let existing = endpoint
            .state
            .lock()
            .await
            .senders
            .get(worker)
            .cloned()
            .flatten();
        if let Some(mut sender) = existing.filter(|s| !s.is_closed())
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        let mut state = endpoint.state.lock().await;
        // Another call may have reconnected while this one waited for the lock.
        if state.senders.len() <= worker {
            state.senders.resize(worker + 1, None);
        }
        if let Some(sender) = state.senders[worker]
            .clone()
            .filter(|s| !s.is_closed() && s.is_ready())
        {
            return Ok(sender);
        }
        state.senders[worker] = None;
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
                state.senders[worker] = Some(sender.clone());
                Ok(sender)
            }
            Err(error) => {
                self.eject(&mut state);
                Err(error)
            }
        }
    }

    async fn handshake(&self, endpoint: &Endpoint) -> Result<SendRequest<UpstreamBody>, String> {
        let tcp = match endpoint.address {
            Some(address) => TcpStream::connect(address).await,
            None => TcpStream::connect(&endpoint.authority).await,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(configured: &[(&str, u16)]) -> Upstream {
        Upstream {
            part: Part::Wound,
            configured: configured
                .iter()
                .map(|(host, port)| ((*host).to_owned(), *port))
                .collect(),
            endpoints: RwLock::new(Arc::new(Vec::new())),
            next: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn a_name_stands_for_all_its_addresses_and_known_ones_keep_their_endpoint() {
        let upstream = upstream(&[("localhost", 7103), ("127.0.0.1", 7203)]);
        upstream.resolve().await;
        let first = upstream.endpoints();
        let by_name: Vec<SocketAddr> = first
            .iter()
            .filter(|e| e.host == "localhost")
            .filter_map(|e| e.address)
            .collect();
        assert!(
            by_name.contains(&SocketAddr::from(([127, 0, 0, 1], 7103))),
            "localhost resolved to its addresses: {by_name:?}"
        );
        assert!(by_name.iter().all(|a| a.ip().is_loopback()));
        let literal: Vec<_> = first.iter().filter(|e| e.host == "127.0.0.1").collect();
        assert_eq!(literal.len(), 1);
        assert_eq!(
            literal[0].address, None,
            "an address literal is dialled as given"
        );
        assert_eq!(literal[0].authority, "127.0.0.1:7203");

        // Resolving again changes nothing: the same endpoints (and their connections) stay.
        upstream.resolve().await;
        let second = upstream.endpoints();
        assert_eq!(first.len(), second.len());
        assert!(
            first
                .iter()
                .zip(second.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
    }

    #[tokio::test]
    async fn a_name_that_stops_resolving_keeps_its_last_endpoints() {
        let upstream = upstream(&[("wound.telehealth.invalid", 7103)]);
        upstream.resolve().await;
        let endpoints = upstream.endpoints();
        assert_eq!(endpoints.len(), 1, "dialled by name when it never resolved");
        assert_eq!(endpoints[0].address, None);
        assert_eq!(endpoints[0].authority, "wound.telehealth.invalid:7103");
    }
}
