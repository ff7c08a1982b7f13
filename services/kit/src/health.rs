//! `grpc.health.v1`: served by every part, readiness following the database.
//!
//! Each dependency is also reported on its own, as the health entry `dependency/<name>` and the
//! gauge `telehealth_dependency_up{dependency, part}` (1 reachable, 0 not; `part` is who checks): `database` for every
//! service, plus what a service registers in its [`Dependencies`] (the blob store, the event
//! bus's listener). Only the
//! database decides readiness: a service without its blob store still answers everything else.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, pb::health_client::HealthClient, server::HealthReporter};

use crate::{db::Database, error::KitError, metrics::Metrics};

type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The dependencies a service checks besides its database (registered while it builds its
/// routes). Cheap to clone.
#[derive(Clone, Default)]
pub struct Dependencies {
    checks: Arc<Mutex<Vec<(&'static str, Check)>>>,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dependencies")
    }
}

impl Dependencies {
    /// Adds `name`, reachable when `check` succeeds (its error says why not).
    pub fn add<F, Fut>(&self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        if let Ok(mut checks) = self.checks.lock() {
            checks.push((name, check));
        }
    }

    pub(crate) fn all(&self) -> Vec<(&'static str, Check)> {
        self.checks.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The last state of each dependency, as the gauge reads it.
type States = Arc<Mutex<BTreeMap<&'static str, i64>>>;

fn report_states(metrics: &Metrics, part: &'static str) -> States {
    let states: States = Arc::default();
    let seen = states.clone();
    metrics
        .meter("telehealth")
        .i64_observable_gauge("telehealth.dependency.up")
        .with_description("Whether each dependency answered its last check (1) or not (0)")
        .with_callback(move |observer| {
            for (name, up) in seen.lock().map(|s| s.clone()).unwrap_or_default() {
                observer.observe(
                    up,
                    &[
                        opentelemetry::KeyValue::new("dependency", name),
                        opentelemetry::KeyValue::new("part", part),
                    ],
                );
            }
        })
        .build();
    states
}

/// How often readiness re-checks the database.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the health status of `service` (and the server-wide `""` entry) in step with the
/// database until `shutdown`, then reports NOT_SERVING so balancers stop sending calls while the
/// server drains.
pub fn spawn_readiness(
    reporter: HealthReporter,
    service: &'static str,
    db: Database,
    dependencies: Dependencies,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut each = DependencyReports::new(reporter.clone(), dependencies, metrics, service);
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = match db.ping().await {
                Ok(()) => ServingStatus::Serving,
                Err(error) => {
                    tracing::warn!(%service, %error, "database unreachable: not ready");
                    ServingStatus::NotServing
                }
            };
            if last != Some(status) {
                reporter.set_service_status(service, status).await;
                reporter.set_service_status("", status).await;
                last = Some(status);
            }
            each.report("database", status).await;
            each.check_all().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(READINESS_INTERVAL) => {}
            }
        }
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    })
}

/// Checks `dependencies` every [`READINESS_INTERVAL`] until `shutdown`, reporting each one
/// (the gateway's upstreams): readiness itself is left to the caller.
pub fn spawn_dependency_checks(
    reporter: HealthReporter,
    part: &'static str,
    dependencies: Dependencies,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut each = DependencyReports::new(reporter, dependencies, metrics, part);
    tokio::spawn(async move {
        loop {
            each.check_all().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(READINESS_INTERVAL) => {}
            }
        }
    })
}

/// Where each dependency's state goes: its health entry (on change) and the gauge.
struct DependencyReports {
    reporter: HealthReporter,
    dependencies: Dependencies,
    states: States,
    last: BTreeMap<&'static str, ServingStatus>,
}

impl DependencyReports {
    fn new(
        reporter: HealthReporter,
        dependencies: Dependencies,
        metrics: &Metrics,
        part: &'static str,
    ) -> Self {
        DependencyReports {
            reporter,
            dependencies,
            states: report_states(metrics, part),
            last: BTreeMap::new(),
        }
    }

    async fn check_all(&mut self) {
        for (name, check) in self.dependencies.all() {
            let status = match check().await {
                Ok(()) => ServingStatus::Serving,
                Err(error) => {
                    tracing::warn!(dependency = name, %error, "dependency unreachable");
                    ServingStatus::NotServing
                }
            };
            self.report(name, status).await;
        }
    }

    async fn report(&mut self, name: &'static str, status: ServingStatus) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(name, i64::from(status == ServingStatus::Serving));
        }
        if self.last.insert(name, status) != Some(status) {
            self.reporter
                .set_service_status(format!("dependency/{name}"), status)
                .await;
        }
    }
}

/// Asks the server behind `channel` whether `service` (`""` for the whole server) is serving.
pub async fn check(channel: tonic::transport::Channel, service: &str) -> Result<bool, KitError> {
    let response = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| KitError::Unavailable(format!("health check failed: {status}")))?;
    Ok(response.into_inner().status
        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}
