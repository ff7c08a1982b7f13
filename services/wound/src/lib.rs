//! Wound monitoring: home nurses' assessments and photos, PUSH score, healing trend and alerts
//! to the referring doctor (docs/design.md, "Wound monitoring"; rules in docs/wound.md).
//!
//! - [`domain`]: validated values (measurements in millimetres, tissue, exudate, aetiology...);
//! - [`scoring`]: areas, the PUSH score, reductions, the healing trend and the alert rules (pure);
//! - [`model`]: wounds, assessment versions, alerts, and who may see or change a wound;
//! - [`core`]: every operation with its authorisation, transaction and audit, and the sweeper
//!   that raises overdue alerts;
//! - [`store`]: the SQL;
//! - [`convert`] and [`grpc`]: the tonic adapter;
//! - [`error`]: what can go wrong, as gRPC codes.
//!
//! Clinical rationale of every rule and threshold: `docs/wound.md`.

#![forbid(unsafe_code)]

pub mod convert;
pub mod core;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod model;
pub mod scoring;
pub mod store;

use std::sync::Arc;

use jiff::SignedDuration;
use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    db::Migrations,
    directory::Directory,
    events::EventBus,
    identity::IdentityInterceptor,
    serve::{MAX_MESSAGE_BYTES, RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_proto::v1::wound_service_server::WoundServiceServer;
use tonic::service::RoutesBuilder;

use crate::{core::WoundMonitor, scoring::Rules};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// How the kit runs this service.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition {
        part: Part::Wound,
        migrations: Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        },
        routes,
    }
}

/// The clinical rules from the configuration.
pub fn rules(settings: &telehealth_kit::config::WoundRules) -> Rules {
    let days = |d: u32| SignedDuration::from_hours(24 * i64::from(d));
    Rules {
        area_increase_percent: settings.area_increase_alert_percent,
        push_increase_points: i32::try_from(settings.push_increase_alert_points).unwrap_or(2),
        min_reduction_percent: settings.four_week_min_reduction_percent,
        follow_up: days(settings.four_week_follow_up_days),
        default_interval_days: i64::from(settings.default_assessment_interval_days),
        overdue_check: std::time::Duration::from_secs(settings.overdue_check_interval_seconds),
        pending_photo_lifetime: SignedDuration::from_hours(i64::from(
            settings.pending_photo_lifetime_hours,
        )),
        trend_area_percent: settings.trend_area_change_percent,
        trend_push_points: i32::try_from(settings.trend_push_change_points).unwrap_or(2),
        trend_min_span: days(settings.trend_min_span_days),
    }
}

fn routes(context: ServiceContext) -> RoutesFuture {
    Box::pin(async move {
        let bus = EventBus::start(&context.db, context.shutdown.clone()).await?;
        let clock: core::Clock = Arc::new(jiff::Timestamp::now);
        let monitor = WoundMonitor::new(
            context.db.clone(),
            bus,
            rules(&context.settings.wound_rules),
            clock,
            Directory::new(context.channel_to(Part::Directory)?),
        );
        // Every replica sweeps; the database raises each overdue alert once.
        tokio::spawn(monitor.clone().run_sweeper(context.shutdown.clone()));
        // Every replica forgets the idempotency keys past their retention.
        telehealth_kit::idempotency::spawn_purge(
            context.db.clone(),
            &context.settings.idempotency,
            context.shutdown.clone(),
        );
        let images = telehealth_kit::images::ImageStore::open(&context).await?;
        let photos = grpc::Photos::new(images, context.db.clone());
        let api = grpc::WoundApi::new(monitor, photos, context.shutdown.clone());
        let server = WoundServiceServer::new(api)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut routes = RoutesBuilder::default();
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            server,
            IdentityInterceptor::new(Part::Wound),
        ));
        Ok(routes)
    })
}
