//! Client connections: TLS handshake with the current configuration, HTTP/2 with per-connection
//! limits, idle timeout, and graceful drain on shutdown.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use telehealth_kit::{config::MAX_HEADER_LIST_BYTES, identity::cert_thumbprint};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    body::InFlight,
    proxy::{ConnectionInfo, Gateway},
    tls::ServerTls,
};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts client connections on `listener` until `shutdown`, then lets open calls finish for at
/// most `drain` before returning.
pub async fn serve(
    gateway: Arc<Gateway>,
    tls: Arc<ServerTls>,
    listener: TcpListener,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (gateway, tls, shutdown) = (gateway.clone(), tls.clone(), shutdown.clone());
        connections.spawn(async move {
            serve_connection(gateway, &tls, tcp, remote, shutdown).await;
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "drain deadline passed, cutting remaining client calls"
        );
    }
}

async fn serve_connection(
    gateway: Arc<Gateway>,
    tls: &ServerTls,
    tcp: TcpStream,
    remote: SocketAddr,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls.current());
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(%remote, %error, "client refused at TLS");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "client TLS handshake timed out");
            return;
        }
    };
    let thumbprint = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| cert_thumbprint(leaf.as_ref()));
    let info = Arc::new(ConnectionInfo { thumbprint, remote });
    let in_flight = Arc::new(AtomicUsize::new(0));

    let limits = &gateway.limits;
    let idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024)
        // The HTTP/2 library answers 431 by itself above this, which gRPC clients read as
        // UNKNOWN; the gateway refuses lists over `max_header_bytes` (far below) itself, with
        // UNAUTHENTICATED.
        .max_header_list_size(MAX_HEADER_LIST_BYTES);
    let service = {
        let (gateway, info, in_flight) = (gateway.clone(), info.clone(), in_flight.clone());
        service_fn(move |request| {
            let call = InFlight::start(&in_flight);
            let gateway = gateway.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(gateway.handle(request, info, call).await) }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);

    let mut idle_since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle_timeout));
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "client connection ended with an error");
                }
                break;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if !draining => {
                if in_flight.load(Ordering::Acquire) > 0 {
                    idle_since = Instant::now();
                } else if idle_since.elapsed() >= idle_timeout {
                    tracing::debug!(%remote, "closing idle client connection");
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
