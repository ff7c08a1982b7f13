//! Video signalling: rooms for teleconsultations, WebRTC offer/answer/ICE relay between
//! participants, STUN/TURN servers with short-lived TURN credentials, and the record of technical
//! incidents (docs/design.md, "Video signalling"). Media never passes through the suite.
//!
//! - [`domain`]: validated values (rooms, participants, client messages, server events,
//!   incidents);
//! - [`validate`]: SDP (webrtc-rs's `sdp` parser) and ICE candidate checks;
//! - [`turn`]: ICE servers and coturn `use-auth-secret` credentials;
//! - [`ratelimit`]: the per-participant flood guard;
//! - [`core`]: every operation with its authorisation, transaction and audit, the streams and
//!   the fan-out between replicas (see [`core::hub`] for delivery and ordering);
//! - [`store`]: the SQL;
//! - [`presence`]: waiting-room arrivals reported to scheduling;
//! - [`convert`] and [`grpc`]: the tonic adapter;
//! - [`error`]: what can go wrong, as gRPC codes.
//!
//! Rooms and participants live in the database, so every replica admits the same people; the
//! live streams live in the memory of the replica that holds them, and whatever one stream
//! sends another travels through the event bus (PostgreSQL `LISTEN/NOTIFY`, in-process on
//! SQLite).

#![forbid(unsafe_code)]

pub mod convert;
pub mod core;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod presence;
pub mod ratelimit;
pub mod store;
pub mod turn;
pub mod validate;

use std::sync::Arc;

use jiff::SignedDuration;
use sqlx::migrate::Migrator;
use telehealth_kit::{
    KitError, Part,
    db::Migrations,
    events::EventBus,
    identity::IdentityInterceptor,
    serve::{MAX_MESSAGE_BYTES, RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_proto::v1::signalling_service_server::SignallingServiceServer;
use tonic::service::RoutesBuilder;

use crate::{
    core::{Margins, Signalling},
    presence::SchedulingPresence,
};
use telehealth_kit::config::SignallingSettings;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// How the kit runs this service.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition {
        part: Part::Signalling,
        migrations: Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        },
        routes,
    }
}

/// The admission margins of rooms: the same configuration scheduling announces windows with.
pub fn margins(rules: &telehealth_kit::config::SchedulingRules) -> Margins {
    Margins {
        before: SignedDuration::from_mins(rules.room_opens_before_minutes),
        after: SignedDuration::from_mins(rules.room_closes_after_minutes),
    }
}

fn routes(context: ServiceContext) -> RoutesFuture {
    let settings = context.settings.signalling_media.clone();
    routes_with(context, settings)
}

/// The service's routes with explicit `settings` (for a kit configuration section, and for
/// tests that need TURN servers or short keep-alives).
pub fn routes_with(context: ServiceContext, settings: SignallingSettings) -> RoutesFuture {
    Box::pin(async move {
        settings
            .validate()
            .map_err(|e| KitError::Config(format!("signalling: {e}")))?;
        let bus = EventBus::of_service(&context).await?;
        let clock = telehealth_kit::service_core::system_clock();
        let presence = Arc::new(SchedulingPresence::new(
            context.channel_to(Part::Scheduling)?,
        ));
        let core = Signalling::start(
            context.db.clone(),
            bus,
            settings,
            margins(&context.settings.scheduling_rules),
            clock,
            presence,
            context.shutdown.clone(),
        )
        .await
        .map_err(|e| KitError::Config(format!("signalling: {e}")))?;
        core.report_rooms(&context.metrics);
        let server =
            SignallingServiceServer::new(grpc::SignallingApi::new(core, context.pages.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut routes = RoutesBuilder::default();
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            server,
            IdentityInterceptor::new(Part::Signalling),
        ));
        Ok(routes)
    })
}
