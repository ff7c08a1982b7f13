//! Tele-expertise: requests from centre doctors to hospital specialists, with images, claims,
//! structured answers, messages, live events and the monthly activity report (docs/design.md, "Tele-expertise"; rules in docs/expertise.md).
//!
//! - [`model`]: requests, their content, statuses and the lifecycle (pure);
//! - [`billing`]: which acts are billable and for how much, from rules that are data (pure);
//! - [`core`]: every operation with its authorisation, transaction and audit;
//! - [`store`]: the SQL (the same on SQLite and PostgreSQL);
//! - [`render`]: the answer report as French text; [`report`]: the same as the PDF sent by mail;
//! - [`delivery`]: the report's deliveries by secure mail (who, where they stand, retries);
//! - [`filing`]: the request's images filed in the answering hospital's PACS as DICOM;
//! - [`convert`] and [`grpc`]: the tonic adapter;
//! - [`error`]: what can go wrong, as gRPC codes.
//!
//! The crate plugs into the shared kit as a [`ServiceDefinition`]: its own database (SQLite file
//! or PostgreSQL schema `expertise`) with its own migrations, internal mTLS, `grpc.health.v1`
//! and graceful drain all come from `telehealth-kit`.

#![forbid(unsafe_code)]

pub mod billing;
pub mod convert;
pub mod core;
pub mod delivery;
pub mod error;
pub mod filing;
pub mod grpc;
pub mod model;
pub mod render;
pub mod report;
pub mod store;

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};
use std::time::Duration;

use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    db::Migrations,
    events::EventBus,
    identity::IdentityInterceptor,
    serve::{MAX_MESSAGE_BYTES, RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_proto::v1::expertise_service_server::ExpertiseServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::core::Expertise;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// How the kit runs this service.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition {
        part: Part::Expertise,
        migrations: Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        },
        routes,
    }
}

fn routes(context: ServiceContext) -> RoutesFuture {
    Box::pin(async move {
        let bus = EventBus::of_service(&context).await?;
        let clock = telehealth_kit::service_core::system_clock();
        let images = telehealth_images::ImageStore::open(&context).await?;
        let core = Expertise::new(
            context.db.clone(),
            bus,
            context.settings.expertise_rules.clone(),
            clock,
            images,
            telehealth_kit::consent::Consents::new(context.channel_to(Part::Directory)?),
            telehealth_kit::directory::Directory::new(context.channel_to(Part::Directory)?),
        )
        .with_pacs(context.settings.pacs.clone());
        let overdue = Arc::new(AtomicI64::new(0));
        let seen = overdue.clone();
        context
            .metrics
            .meter("telehealth.expertise")
            .i64_observable_gauge("expertise.requests.overdue")
            .with_description("Tele-expertise requests past their due time without an answer")
            .with_callback(move |observer| observer.observe(seen.load(Ordering::Relaxed), &[]))
            .build();
        tokio::spawn(sweep_periodically(
            core.clone(),
            overdue,
            context.shutdown.clone(),
        ));
        let mailer = crate::core::delivery::Mailer::from_settings(&context.settings.report_mail)
            .map_err(telehealth_kit::KitError::Config)?;
        tokio::spawn(deliver_reports_periodically(
            core.clone(),
            mailer,
            Duration::from_secs(context.settings.report_mail.interval_seconds),
            context.shutdown.clone(),
        ));
        // Every replica forgets the idempotency keys past their retention.
        telehealth_kit::idempotency::spawn_purge(
            context.db.clone(),
            &context.settings.idempotency,
            &[],
            context.shutdown.clone(),
        );
        let api = grpc::ExpertiseApi::new(core, context.pages.clone(), context.shutdown.clone());
        let server = ExpertiseServiceServer::new(api)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut routes = RoutesBuilder::default();
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            server,
            IdentityInterceptor::new(Part::Expertise),
        ));
        Ok(routes)
    })
}

/// Announces overdue requests and closes old answers every `sweep_interval_seconds`, until
/// shutdown. Every replica runs it; each change is applied by exactly one of them.
/// Also counts the requests overdue into `overdue`, for the metrics.
async fn sweep_periodically(core: Expertise, overdue: Arc<AtomicI64>, shutdown: CancellationToken) {
    let period = Duration::from_secs(core.rules().sweep_interval_seconds);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {
                match core.sweep().await {
                    Ok((0, 0)) => {}
                    Ok((overdue, closed)) => tracing::info!(overdue, closed, "expertise sweep"),
                    Err(error) => tracing::warn!(%error, "expertise sweep failed; retrying at the next tick"),
                }
                match core.overdue_count().await {
                    Ok(count) => overdue.store(count, Ordering::Relaxed),
                    Err(error) => tracing::warn!(%error, "could not count the overdue requests"),
                }
            }
        }
    }
}

/// Sends the answer reports and the PACS transfers that are due every `period`, until shutdown.
/// Every replica runs it; each delivery or transfer is attempted by one of them at a time.
async fn deliver_reports_periodically(
    core: Expertise,
    mailer: Option<crate::core::delivery::Mailer>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {
                match core.deliver_due(mailer.as_ref()).await {
                    Ok(0) => {}
                    Ok(attempted) => tracing::info!(attempted, "answer reports sent"),
                    Err(error) => tracing::warn!(%error, "sending answer reports failed; retrying at the next tick"),
                }
                match core.transfer_due().await {
                    Ok(0) => {}
                    Ok(attempted) => tracing::info!(attempted, "images sent to PACS"),
                    Err(error) => tracing::warn!(%error, "sending images to PACS failed; retrying at the next tick"),
                }
            }
        }
    }
}
