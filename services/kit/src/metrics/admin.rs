//! The admin listener: `GET /metrics` in the Prometheus text format, on an address of its own
//! (`admin.listen`), never the public port. Plain HTTP/1.1: it is meant for the cluster's
//! scraper on the pod network (the NetworkPolicy admits only the monitoring namespace).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Starts the admin listener on `listen`, when one is configured; its bound address.
pub async fn start(
    listen: Option<SocketAddr>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<SocketAddr>, crate::error::KitError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(listen).await.map_err(|error| {
        crate::error::KitError::Config(format!(
            "telemetry.admin_listen: cannot listen on {listen}: {error}"
        ))
    })?;
    let address = listener.local_addr().map_err(|error| {
        crate::error::KitError::Config(format!("telemetry.admin_listen: {error}"))
    })?;
    tokio::spawn(serve(listener, metrics.clone(), shutdown.clone()));
    Ok(Some(address))
}

/// Serves `metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin listener: accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics, remote)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

fn answer(
    request: &Request<Incoming>,
    metrics: &Metrics,
    remote: SocketAddr,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if request.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    match metrics.render() {
        Ok(text) => reply(StatusCode::OK, text),
        Err(error) => {
            tracing::warn!(%error, %remote, "metrics could not be collected");
            reply(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"))
        }
    }
}
