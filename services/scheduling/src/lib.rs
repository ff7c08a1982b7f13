//! Scheduling: practitioners' availability, teleconsultation bookings without double-booking,
//! and the appointment lifecycle up to the video room (docs/design.md, "Scheduling").
//!
//! - [`domain`]: validated values (subjects, zones, intervals, weekly availability);
//! - [`slots`]: free-slot and conflict computation, DST-correct (pure);
//! - [`model`]: appointments, statuses (FHIR R4 mapping) and the lifecycle;
//! - [`core`]: every operation with its authorisation, transaction and audit;
//! - [`store`]: the SQL;
//! - [`ical`]: iCalendar (RFC 5545) rendering;
//! - [`convert`] and [`grpc`]: the tonic adapter;
//! - [`error`]: what can go wrong, as gRPC codes.

#![forbid(unsafe_code)]

pub mod convert;
pub mod core;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod ical;
pub mod model;
pub mod slots;
pub mod store;

use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    db::Migrations,
    directory::Directory,
    events::EventBus,
    identity::IdentityInterceptor,
    serve::{MAX_MESSAGE_BYTES, RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_proto::v1::scheduling_service_server::SchedulingServiceServer;
use tonic::service::RoutesBuilder;

use crate::core::{Rules, Scheduler};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// How the kit runs this service.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition {
        part: Part::Scheduling,
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
        let rooms = core::rooms::Rooms::new(context.channel_to(Part::Signalling)?);
        let directory = Directory::new(context.channel_to(Part::Directory)?);
        let scheduler = Scheduler::new(
            context.db.clone(),
            bus,
            Rules::from_settings(&context.settings.scheduling_rules),
            clock,
            rooms,
            directory,
            telehealth_kit::consent::Consents::new(context.channel_to(Part::Directory)?),
        );
        // Every replica forgets the idempotency keys, and the holds that ended, past their retention.
        telehealth_kit::idempotency::spawn_purge(
            context.db.clone(),
            &context.settings.idempotency,
            &store::PURGE_ENDED_HOLDS,
            context.shutdown.clone(),
        );
        let api = grpc::SchedulingApi::new(
            scheduler,
            context.pages.clone(),
            context.shutdown.clone(),
            &context.metrics,
        );
        let server = SchedulingServiceServer::new(api)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut routes = RoutesBuilder::default();
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            server,
            IdentityInterceptor::new(Part::Scheduling),
        ));
        Ok(routes)
    })
}
