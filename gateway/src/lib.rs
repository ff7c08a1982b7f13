//! The gateway: the one door into the suite (docs/design.md, "Identity and authorisation").
//!
//! Clients connect with a device certificate (mTLS) and a bearer token. The gateway checks both,
//! applies the access rule the contract declares for the method, strips any identity a client
//! tried to send, adds the verified one, and forwards the call to a service over internal mTLS,
//! streaming both ways. Modules, outermost first:
//!
//! - [`server`]: TLS handshakes, HTTP/2 connections, their deadlines and drain;
//! - [`workers`]: the threads serving connections, a connection and its calls on one thread;
//! - [`connections`]: connections per address and per certificate, closing revoked ones;
//! - [`tls`]: the client-facing TLS configuration (client certificates, CRLs, hot reload);
//! - [`proxy`]: the per-call pipeline;
//! - [`auth`] and [`jwks`]: token verification, certificate binding, the verified-token cache;
//! - [`follow`]: the auth service's signing keys and CRL, fetched and kept as files;
//! - [`grpc_web`]: gRPC-Web calls of browsers turned into gRPC and back, CORS;
//! - [`fhir`]: the read-only FHIR R4 API under `/fhir`, made of the contract's RPCs;
//! - [`web`]: the web client's files (`GET`), with its Content-Security-Policy;
//! - [`policy`]: the per-RPC rules from the descriptor set;
//! - [`ratelimit`], [`lockout`], [`streams`], [`deadline`], [`body`]: limits on calls, failed
//!   attempts, open streams, deadlines and messages;
//! - [`upstream`]: service endpoints, connection reuse, balancing and ejection;
//! - [`local`]: health and reflection;
//! - [`error`]: refusals and their statuses.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod connections;
pub mod crypto;
pub mod deadline;
pub mod error;
mod fetch;
pub mod fhir;
pub mod follow;
pub mod grpc_web;
pub mod jwks;
pub mod local;
pub mod lockout;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod streams;
pub mod tls;
pub mod upstream;
pub mod web;
pub mod workers;

use std::{collections::HashMap, sync::Arc, time::Duration};

use telehealth_kit::{Part, Settings, health::Dependencies, metrics::Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Authenticator,
    connections::Connections,
    error::GatewayError,
    follow::AuthFollower,
    jwks::{JwksSource, KeyStore},
    local::LocalServices,
    lockout::Lockout,
    policy::Policy,
    proxy::{Gateway, Port},
    ratelimit::RateLimiter,
    streams::SubjectStreams,
    tls::ServerTls,
    upstream::Upstreams,
};

/// A gateway ready to serve: configuration loaded, keys fetched, policy read.
pub struct GatewayServer {
    gateway: Arc<Gateway>,
    tls: Arc<ServerTls>,
    reload_interval: Duration,
    resolve_interval: Duration,
    drain: Duration,
    /// Threads serving client connections, started with the server so that a failure to start
    /// them is an error of [`GatewayServer::new`], not a server that never serves.
    workers: Arc<workers::Workers>,
    sign_in: Option<TcpListener>,
    follower: Option<Arc<AuthFollower>>,
    /// Each service's health, reported as `dependency/<service>` and in the metrics.
    upstream_checks: Dependencies,
    metrics: Metrics,
}

impl GatewayServer {
    /// Builds the gateway from `settings`, forwarding to each service's configured endpoints.
    pub async fn build(
        settings: &Settings,
        metrics: &Metrics,
    ) -> Result<GatewayServer, GatewayError> {
        crypto::install();
        let gateway_settings = &settings.gateway;
        let jwt = &gateway_settings.jwt;
        let mut crl_files = gateway_settings.crl_files.clone();
        let follower = if gateway_settings.follow_auth {
            if jwt.jwks_url.is_some() {
                return Err(GatewayError::Config(
                    "gateway.jwt.jwks_url and gateway.follow_auth exclude each other: the suite's \
                     tokens are signed by its auth service (turn follow_auth off only for a \
                     suite whose tokens come from another issuer)"
                        .into(),
                ));
            }
            let follower = AuthFollower::new(settings)?;
            follower.first_sync().await?;
            crl_files.push(follower.crl_file().to_owned());
            Some(Arc::new(follower))
        } else {
            None
        };
        let tls = ServerTls::load(settings.gateway_server_tls(), crl_files)?;
        let source = match &jwt.jwks_url {
            Some(url) => JwksSource::Url {
                url: url.clone(),
                ca_file: jwt.jwks_ca_file.clone(),
            },
            None => JwksSource::Files(settings.jwks_files()),
        };
        let keys = KeyStore::load(source, auth::min_refresh_interval(jwt)).await?;
        let endpoints: HashMap<Part, Vec<String>> = Part::SERVICES
            .into_iter()
            .map(|part| (part, settings.service_endpoints(part)))
            .collect();
        let upstream = &gateway_settings.upstream;
        let upstreams = Upstreams::new(
            endpoints,
            &settings.internal_tls(Part::Gateway),
            Duration::from_millis(upstream.connect_timeout_ms),
            Duration::from_millis(upstream.ejection_ms),
        )?;
        let limits = gateway_settings.limits.clone();
        metrics.watch_certificate("gateway-server", settings.gateway_server_tls().cert);
        metrics.watch_certificate(
            "gateway-internal",
            settings.internal_tls(Part::Gateway).cert,
        );
        let connections = Connections::new(
            limits.max_connections_per_address,
            limits.max_connections_per_certificate,
        );
        let gateway = Gateway {
            auth: Authenticator::new(Arc::new(keys), jwt.clone()),
            policy: Policy::builtin()?,
            limiter: RateLimiter::new(limits.requests_per_second, limits.burst),
            upstreams,
            local: LocalServices::new()?,
            lockout: Lockout::new(
                limits.failed_auth_per_minute_per_address,
                limits.failed_auth_per_minute_per_certificate,
            ),
            streams: SubjectStreams::new(limits.max_streams_per_subject),
            metrics: metrics::GatewayMetrics::new(metrics, connections.clone())
                .map_err(|e| GatewayError::Config(e.to_string()))?,
            connections,
            web_origins: grpc_web::AllowedOrigins::new(&gateway_settings.web_allowed_origins),
            web: web::WebRoot::new(gateway_settings.web_root.clone()),
            limits,
        };
        Ok(GatewayServer {
            gateway: Arc::new(gateway),
            tls: Arc::new(tls),
            resolve_interval: Duration::from_secs(upstream.resolve_interval_seconds),
            reload_interval: Duration::from_secs(gateway_settings.reload_interval_seconds.max(1)),
            drain: settings.drain_deadline(),
            workers: Arc::new(
                workers::Workers::start(gateway_settings.workers).map_err(|e| {
                    GatewayError::Config(format!(
                        "could not start the gateway's worker threads: {e}"
                    ))
                })?,
            ),
            sign_in: None,
            follower,
            upstream_checks: upstream_checks(settings)?,
            metrics: metrics.clone(),
        })
    }

    /// Also serves the sign-in port on `listener`: sign-in and enrolment RPCs only, for clients
    /// without a certificate.
    pub fn with_sign_in_port(mut self, listener: TcpListener) -> Self {
        self.sign_in = Some(listener);
        self
    }

    /// Serves clients on `listener` until `shutdown`, reloading certificates, CRLs and keys when
    /// their files change (or on SIGHUP), then drains.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let reloader = tokio::spawn(reload_loop(
            self.gateway.clone(),
            self.tls.clone(),
            self.follower.clone(),
            self.reload_interval,
            shutdown.clone(),
        ));
        self.gateway.upstreams.resolve_all().await;
        let resolver = tokio::spawn(resolve_loop(
            self.gateway.clone(),
            self.resolve_interval,
            shutdown.clone(),
        ));
        let health = self.gateway.local.health().clone();
        let upstreams = telehealth_kit::health::spawn_dependency_checks(
            health.clone(),
            "gateway",
            self.upstream_checks,
            &self.metrics,
            shutdown.clone(),
        );
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        // Both ports' connections are served by the same worker threads.
        let workers = self.workers;
        let sign_in = self.sign_in.map(|listener| {
            tokio::spawn(server::serve(
                self.gateway.clone(),
                self.tls.clone(),
                (listener, Port::SignIn),
                workers.clone(),
                shutdown.clone(),
                self.drain,
            ))
        });
        server::serve(
            self.gateway,
            self.tls,
            (listener, Port::Devices),
            workers,
            shutdown,
            self.drain,
        )
        .await;
        if let Some(sign_in) = sign_in {
            let _ = sign_in.await;
        }
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        reloader.abort();
        resolver.abort();
        upstreams.abort();
    }
}

/// Re-resolves the services' endpoint names every `interval` (never when zero).
async fn resolve_loop(gateway: Arc<Gateway>, interval: Duration, shutdown: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => gateway.upstreams.resolve_all().await,
        }
    }
}

/// Closes the open connections of the certificates the freshly loaded CRLs revoke (TLS only
/// checked them at their handshake).
fn close_revoked(gateway: &Gateway, tls: &ServerTls) {
    let closed = gateway.connections.close_revoked(&tls.revoked());
    if closed > 0 {
        tracing::info!(closed, "closed the connections of revoked certificates");
    }
}

/// Asks the auth service for its keys and CRL (the files change when they did).
async fn follow(follower: Option<&AuthFollower>) {
    if let Some(follower) = follower
        && let Err(error) = follower.sync().await
    {
        tracing::warn!(%error, "the auth service's keys and CRL could not be fetched; keeping the previous ones");
    }
}

async fn reload_loop(
    gateway: Arc<Gateway>,
    tls: Arc<ServerTls>,
    follower: Option<Arc<AuthFollower>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(interval);
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = std::future::pending::<()>();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = hangup_received => {
                tracing::info!("SIGHUP: reloading certificates, CRLs and keys");
                follow(follower.as_deref()).await;
                match tls.reload() {
                    Ok(()) => close_revoked(&gateway, &tls),
                    Err(error) => {
                        tracing::error!(%error, "TLS reload failed; keeping the previous configuration");
                    }
                }
                if let Err(error) = gateway.auth.keys().refresh().await {
                    tracing::warn!(%error, "JWKS reload failed; keeping the previous keys");
                }
            }
            _ = tick.tick() => {
                follow(follower.as_deref()).await;
                if tls.reload_if_changed() {
                    close_revoked(&gateway, &tls);
                }
                gateway.auth.keys().reload_if_changed().await;
            }
        }
    }
}

/// A health check of each service, over the gateway's internal mTLS, at its first endpoint
/// (connected on first use, so a service down at start is reported, not fatal).
fn upstream_checks(settings: &Settings) -> Result<Dependencies, GatewayError> {
    let config = |e: &dyn std::fmt::Display| GatewayError::Config(format!("upstream health: {e}"));
    let tls = telehealth_kit::tls::client_tls(&settings.internal_tls(Part::Gateway))
        .map_err(|e| config(&e))?;
    let checks = Dependencies::default();
    for part in Part::SERVICES {
        let (Some(endpoint), Some(service)) = (
            settings.service_endpoints(part).into_iter().next(),
            part.grpc_service(),
        ) else {
            continue;
        };
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .map_err(|e| config(&e))?
            .tls_config(tls.clone())
            .map_err(|e| config(&e))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .connect_lazy();
        checks.add(part.name(), move || {
            let channel = channel.clone();
            async move {
                match telehealth_kit::health::check(channel, service).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!("{service} is not serving")),
                    Err(error) => Err(error.to_string()),
                }
            }
        });
    }
    Ok(checks)
}
