//! Wound monitoring: home nurses' assessments and photos, PUSH score, healing trend and alerts to the referring doctor (DESIGN §4).
//!
//! This crate plugs into the shared kit as a [`ServiceDefinition`]: its own database (SQLite
//! file or PostgreSQL schema `wound`) with its own migrations, internal mTLS, `grpc.health.v1`
//! and graceful drain all come from `telehealth-kit`. Its public gRPC API is declared in
//! `proto/telehealth/v1/wound.proto`; the RPC handlers arrive with issue #7, and until then
//! a call to them is answered `UNIMPLEMENTED` by the server, never by a stub.

#![forbid(unsafe_code)]

use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    db::Migrations,
    serve::{RoutesFuture, ServiceContext, ServiceDefinition},
};
use tonic::service::RoutesBuilder;

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

fn routes(_context: ServiceContext) -> RoutesFuture {
    Box::pin(async { Ok(RoutesBuilder::default()) })
}
