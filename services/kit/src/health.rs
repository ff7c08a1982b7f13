//! `grpc.health.v1`: served by every part, readiness following the database.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, pb::health_client::HealthClient, server::HealthReporter};

use crate::{db::Database, error::KitError};

/// How often readiness re-checks the database.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the health status of `service` (and the server-wide `""` entry) in step with the
/// database until `shutdown`, then reports NOT_SERVING so balancers stop sending calls while the
/// server drains.
pub fn spawn_readiness(
    reporter: HealthReporter,
    service: &'static str,
    db: Database,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
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
