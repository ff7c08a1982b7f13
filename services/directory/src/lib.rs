//! The care directory: which people are members of which organisation, with which roles and
//! for which period, and the register of the patients they care for ([`patients`]).
//!
//! Membership comes from an authority: the person's own verified token (`RegisterSelf`, the
//! first verified sign-in) or an administrator of the organisation. The other services ask it,
//! through the kit's [`telehealth_kit::directory`] client, before accepting a request that names
//! a practitioner or a nurse.
//!
//! - [`model`]: a membership;
//! - [`organisations`]: centres and hospitals with their FINESS number;
//! - [`partnerships`]: centre ↔ hospital partnerships;
//! - [`core`]: every operation with its authorisation, transaction and audit;
//! - [`store`]: the SQL;
//! - [`convert`] and [`grpc`]: the tonic adapter;
//! - [`error`]: what can go wrong, as gRPC codes.

#![forbid(unsafe_code)]

pub mod convert;
pub mod core;
pub mod error;
pub mod grpc;
pub mod model;
pub mod organisations;
pub mod partnerships;
pub mod patients;
pub mod store;

use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    db::Migrations,
    identity::IdentityInterceptor,
    serve::{RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_kit::{sealed::KeyRing, service_core::ServiceCore};
use telehealth_proto::v1::{
    directory_service_server::DirectoryServiceServer, patient_service_server::PatientServiceServer,
};
use tonic::service::RoutesBuilder;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Largest message the directory accepts or sends.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest message the register sends (a patient's export archive).
const MAX_ENCODING_BYTES: usize = 4 * 1024 * 1024;

/// How the kit runs this service.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition {
        part: Part::Directory,
        migrations: Migrations {
            sqlite: &SQLITE,
            postgres: &POSTGRES,
        },
        routes,
    }
}

fn routes(context: ServiceContext) -> RoutesFuture {
    Box::pin(async move {
        let clock = telehealth_kit::service_core::system_clock();
        let directory = core::Directory::new(context.db.clone(), clock.clone());
        let keys = KeyRing::load(&context.settings.patient_key_file())?;
        let register = patients::core::Register::new(
            ServiceCore::new(context.db.clone(), clock),
            patients::vault::Vault::new(keys),
        );
        let server =
            DirectoryServiceServer::new(grpc::DirectoryApi::new(directory, context.pages.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut routes = RoutesBuilder::default();
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            server,
            IdentityInterceptor::new(Part::Directory),
        ));
        let patients = PatientServiceServer::new(patients::grpc::PatientApi::new(register))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_ENCODING_BYTES);
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            patients,
            IdentityInterceptor::new(Part::Directory),
        ));
        Ok(routes)
    })
}
