//! Running one service: bind, migrate, serve over internal mTLS, drain on shutdown.
//!
//! A server never binds its own address: it takes a bound [`TcpListener`] and a shutdown token,
//! which is what lets tests run the real suite on port 0 and `telehealth up` start every part in
//! one process.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::RoutesBuilder, transport::Server};

use crate::{
    config::Settings,
    db::{Database, Migrations},
    error::KitError,
    health,
    message_limit::MessageLimitLayer,
    metrics::{
        Metrics,
        rpc::{RpcMetrics, RpcMetricsLayer},
    },
    paging::PageTokens,
    part::Part,
    telemetry, tls,
};

/// What a service's code gets to build its gRPC routes.
#[derive(Clone)]
pub struct ServiceContext {
    pub part: Part,
    pub settings: Arc<Settings>,
    pub db: Database,
    /// Makes and reads the service's page tokens (its key is in `db`).
    pub pages: PageTokens,
    /// Cancelled when the process shuts down: long-lived streams end when they see it.
    pub shutdown: CancellationToken,
    /// The process's metrics, for the service's own instruments.
    pub metrics: Metrics,
    /// What readiness checks besides the database; the service adds its own.
    pub dependencies: health::Dependencies,
}

impl ServiceContext {
    /// A lazily connected channel to another service of the suite over internal mTLS, with this
    /// service's identity, balanced over that service's configured endpoints.
    pub fn channel_to(&self, part: Part) -> Result<tonic::transport::Channel, KitError> {
        if !self.part.calls().contains(&part) {
            return Err(KitError::Config(format!(
                "{} does not call {part}: declare the call in Part::calls (and the NetworkPolicies)",
                self.part
            )));
        }
        let tls = tls::client_tls(&self.settings.internal_tls(self.part))?;
        let mut endpoints = Vec::new();
        for url in self.settings.service_endpoints(part) {
            let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| KitError::Config(format!("{part} endpoint {url}: {e}")))?
                .tls_config(tls.clone())
                .map_err(|e| KitError::Tls(e.to_string()))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10));
            endpoints.push(endpoint);
        }
        if endpoints.is_empty() {
            return Err(KitError::Config(format!("{part} has no endpoint")));
        }
        Ok(tonic::transport::Channel::balance_list(
            endpoints.into_iter(),
        ))
    }
}

/// The future that builds a service's routes.
pub type RoutesFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<RoutesBuilder, KitError>> + Send>>;

/// How a service plugs into [`run_service`].
pub struct ServiceDefinition {
    pub part: Part,
    pub migrations: Migrations,
    /// Builds the service's routes (its gRPC services, already wrapped in the identity
    /// interceptor), after migrations. Health is added by the kit.
    pub routes: fn(ServiceContext) -> RoutesFuture,
}

/// Largest message a service sends, and tonic's own bound on what it decodes. Requests are held
/// to much less before that: each method's `max_request_bytes` from the contract, checked on
/// the wire by [`MessageLimitLayer`] (and by the gateway for clients).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Runs `service` on `listener` until `shutdown` is cancelled, then drains in-flight calls for
/// at most the configured deadline.
pub async fn run_service(
    service: &ServiceDefinition,
    settings: Arc<Settings>,
    listener: TcpListener,
    shutdown: CancellationToken,
    metrics: Metrics,
) -> Result<(), KitError> {
    let part = service.part;
    let calls = RpcMetrics::new(&metrics, "rpc.server")?;
    metrics.watch_certificate(
        &format!("{part}-internal"),
        settings.internal_tls(part).cert,
    );
    let db = Database::connect(&settings.database, &settings.data_dir, part).await?;
    db.migrate(&service.migrations).await?;
    let tls = tls::internal_server_config(&settings.internal_tls(part))?;

    let context = ServiceContext {
        part,
        settings: settings.clone(),
        db: db.clone(),
        pages: PageTokens::load(&db).await?,
        shutdown: shutdown.clone(),
        metrics,
        dependencies: health::Dependencies::default(),
    };
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let grpc_name = part.grpc_service().unwrap_or("");

    let dependencies = context.dependencies.clone();
    let metrics = context.metrics.clone();
    let mut routes = (service.routes)(context).await?;
    // After the routes: they register their dependencies (the blob store) while being built.
    let readiness = health::spawn_readiness(
        reporter,
        grpc_name,
        db.clone(),
        dependencies,
        &metrics,
        shutdown.clone(),
    );
    routes.add_service(health_service);
    let mut server = Server::builder()
        .trace_fn(telemetry::server_span)
        // The contract's request limit of each method, before tonic buffers or decodes.
        .layer(MessageLimitLayer::from_contract()?)
        .layer(RpcMetricsLayer::new(calls));
    let router = server.add_routes(routes.routes());

    tracing::info!(%part, address = %listener.local_addr().map_err(|e| KitError::io("listener", e))?, "serving");
    let incoming = tls::tls_incoming(listener, tls, shutdown.clone());
    let served = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    let result = drain(served, &shutdown, settings.drain_deadline(), part).await;

    readiness.await.ok();
    db.close().await;
    tracing::info!(%part, "stopped");
    result
}

/// Drives `served` to completion; once `shutdown` fires, gives it at most `deadline` to finish
/// in-flight calls and streams, then cuts them.
pub async fn drain<F, E>(
    served: F,
    shutdown: &CancellationToken,
    deadline: Duration,
    part: Part,
) -> Result<(), KitError>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let served = std::pin::pin!(served);
    let outcome = tokio::select! {
        result = served => Some(result),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(deadline).await;
        } => None,
    };
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(error)) => Err(KitError::Config(format!("{part} server failed: {error}"))),
        None => {
            tracing::warn!(%part, ?deadline, "drain deadline passed, cutting remaining calls");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
