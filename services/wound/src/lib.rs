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

use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    consent::Consents,
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

fn routes(context: ServiceContext) -> RoutesFuture {
    Box::pin(async move {
        let bus = EventBus::of_service(&context).await?;
        let clock = telehealth_kit::service_core::system_clock();
        let images = telehealth_images::ImageStore::open(&context).await?;
        let monitor = WoundMonitor::new(
            context.db.clone(),
            bus,
            Rules::from_settings(&context.settings.wound_rules),
            clock,
            core::Peers {
                directory: Directory::new(context.channel_to(Part::Directory)?),
                consents: Consents::new(context.channel_to(Part::Directory)?),
                expertise: core::expertise::ExpertiseRequests::new(
                    context.channel_to(Part::Expertise)?,
                ),
            },
            images,
        )
        .with_metrics(&context.metrics);
        // Every replica sweeps; the database raises each overdue alert once.
        tokio::spawn(monitor.clone().run_sweeper(context.shutdown.clone()));
        // Every replica forgets the idempotency keys past their retention.
        telehealth_kit::idempotency::spawn_purge(
            context.db.clone(),
            &context.settings.idempotency,
            &[],
            context.shutdown.clone(),
        );
        let api = grpc::WoundApi::new(monitor, context.pages.clone(), context.shutdown.clone());
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
