//! Client connections, from `accept` to close: every stage has a deadline or a cap, so that no
//! client holds a connection the gateway has not agreed to.
//!
//! 1. `accept`: an address that is locked out (failed attempts) or already holds its cap of
//!    connections is closed at once;
//! 2. TLS handshake within `handshake_timeout_seconds` (a refused handshake is a failed attempt
//!    of the address); the certificate is then counted against its cap and registered so that a
//!    CRL reload can close the connection;
//! 3. the HTTP/2 preface within `preface_timeout_seconds` ([`preface`]);
//! 4. HTTP/2 with per-connection limits; a connection without calls for
//!    `idle_timeout_seconds`, or older than `max_connection_age_seconds` (with 10 % jitter), is
//!    sent GOAWAY, and cut `max_connection_age_grace_seconds` later if calls are still open;
//! 5. a connection whose certificate a reloaded CRL revokes takes no new call at once (GOAWAY)
//!    and is cut [`REVOKED_GRACE`] later; on shutdown every connection gets GOAWAY and the server
//!    waits for open calls up to the drain deadline.

mod preface;

/// How long the calls already admitted on a connection whose certificate was just revoked may
/// take to end: the device renewal that revoked it must get its answer (with the new
/// certificate) on that very connection.
const REVOKED_GRACE: Duration = Duration::from_secs(2);

use std::{
    convert::Infallible,
    hash::BuildHasher,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use telehealth_kit::{config::MAX_HEADER_LIST_BYTES, identity::cert_thumbprint};
use tokio::{
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    body::InFlight,
    proxy::{ConnectionInfo, Gateway, Port},
    tls::{CertificateId, ServerTls},
    workers::Workers,
};

/// Accepts client connections on `listener` until `shutdown`, serving each on one of `workers`,
/// then lets open calls finish for at most `drain` before returning.
pub async fn serve(
    gateway: Arc<Gateway>,
    tls: Arc<ServerTls>,
    (listener, port): (TcpListener, Port),
    workers: Arc<Workers>,
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
        // Refusals here are logged at debug only: a flood of them must not flood the logs.
        if gateway.lockout.address_locked(remote.ip()).is_some() {
            tracing::debug!(%remote, "connection refused: too many failed attempts");
            continue;
        }
        let Some(address_slot) = gateway.connections.admit_address(remote.ip()) else {
            tracing::debug!(%remote, "connection refused: the address holds its cap");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (gateway, tls, shutdown) = (gateway.clone(), tls.clone(), shutdown.clone());
        workers.serve(tcp, &connections, move |tcp| async move {
            serve_connection(gateway, &tls, tcp, remote, port, shutdown).await;
            drop(address_slot);
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
    port: Port,
    shutdown: CancellationToken,
) {
    let limits = &gateway.limits;
    let acceptor = TlsAcceptor::from(match port {
        Port::Devices => tls.current(),
        Port::SignIn => tls.sign_in(),
    });
    let handshake_timeout = Duration::from_secs(limits.handshake_timeout_seconds);
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            // A refused certificate or a broken handshake is a failed attempt; a peer that
            // merely closed (a TCP health check, a lost network) is not.
            if error.kind() == std::io::ErrorKind::InvalidData {
                gateway.lockout.record_failure(remote.ip(), None);
            }
            tracing::info!(%remote, %error, "client refused at TLS");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "client TLS handshake timed out");
            return;
        }
    };
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| leaf.as_ref().to_vec());
    let thumbprint = leaf.as_deref().map(cert_thumbprint);
    let certificate = leaf.as_deref().and_then(CertificateId::of);

    let close = CancellationToken::new();
    let _certificate_slot = match &thumbprint {
        Some(thumbprint) => {
            match gateway.connections.admit_certificate(
                thumbprint,
                certificate.clone(),
                close.clone(),
            ) {
                Some(slot) => Some(slot),
                None => {
                    tracing::info!(%remote, "connection refused: the certificate holds its cap");
                    return;
                }
            }
        }
        None => None,
    };
    // Revoked by a CRL loaded between this handshake and the registration just above.
    if certificate
        .as_ref()
        .is_some_and(|id| tls.revoked().contains(id))
    {
        tracing::info!(%remote, "connection closed: its certificate is revoked");
        return;
    }

    let preface_timeout = Duration::from_secs(limits.preface_timeout_seconds);
    let stream = match tokio::time::timeout(preface_timeout, preface::read(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(%remote, %error, "client did not speak HTTP/2");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "client sent no HTTP/2 preface in time");
            return;
        }
    };

    let info = Arc::new(ConnectionInfo {
        thumbprint,
        remote,
        port,
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
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
            async move { Ok::<_, Infallible>(gateway.serve(request, info, call).await) }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);

    let idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    let grace = Duration::from_secs(limits.max_connection_age_grace_seconds);
    let opened = Instant::now();
    let max_age = (limits.max_connection_age_seconds > 0).then(|| {
        jittered(
            Duration::from_secs(limits.max_connection_age_seconds),
            remote,
        )
    });
    let mut idle_since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle_timeout));
    // Set once GOAWAY is sent for age or idleness: calls still open then are cut.
    let mut cut_at: Option<Instant> = None;
    let mut draining = false;
    let mut revoked = false;
    loop {
        let aged = async {
            match max_age {
                Some(age) => tokio::time::sleep_until(opened + age).await,
                None => std::future::pending().await,
            }
        };
        let grace_over = async {
            match cut_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "client connection ended with an error");
                }
                break;
            }
            () = close.cancelled(), if !revoked => {
                // No new call from now on (GOAWAY); the calls already admitted get a moment to
                // end, so that the answer of the call that revoked it (a device renewal) is not
                // cut off; then the connection is cut, whatever is still open.
                tracing::info!(%remote, "closing the connection of a revoked certificate");
                revoked = true;
                draining = true;
                connection.as_mut().graceful_shutdown();
                let at = Instant::now() + REVOKED_GRACE;
                cut_at = Some(cut_at.map_or(at, |earlier| earlier.min(at)));
            }
            () = shutdown.cancelled(), if !draining => {
                // The drain deadline of `serve` bounds what follows.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = aged, if !draining => {
                tracing::debug!(%remote, "client connection reached its maximum age");
                draining = true;
                connection.as_mut().graceful_shutdown();
                cut_at = Some(Instant::now() + grace);
            }
            () = grace_over => {
                tracing::debug!(%remote, "grace over, cutting the calls still open");
                break;
            }
            _ = tick.tick(), if !draining => {
                if in_flight.load(Ordering::Acquire) > 0 {
                    idle_since = Instant::now();
                } else if idle_since.elapsed() >= idle_timeout {
                    tracing::debug!(%remote, "closing idle client connection");
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                    cut_at = Some(Instant::now() + grace);
                }
            }
        }
    }
}

/// `age` give or take 10 %, so that connections opened together (after a restart) do not all
/// come back at once.
fn jittered(age: Duration, remote: SocketAddr) -> Duration {
    let random = std::collections::hash_map::RandomState::new().hash_one(remote);
    let factor = 0.9 + 0.2 * (random as f64 / u64::MAX as f64);
    age.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_jittered_within_ten_percent() {
        let remote: SocketAddr = "192.0.2.1:4000".parse().expect("addr");
        let age = Duration::from_secs(3600);
        let ages: Vec<Duration> = (0..50).map(|_| jittered(age, remote)).collect();
        assert!(
            ages.iter()
                .all(|a| *a >= age.mul_f64(0.9) && *a <= age.mul_f64(1.1)),
            "{ages:?}"
        );
        assert!(
            ages.iter().any(|a| *a != ages[0]),
            "not all the same: {ages:?}"
        );
    }
}
