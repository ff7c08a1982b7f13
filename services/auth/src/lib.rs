//! Sign-in for the suite (docs/sign-in.md).
//!
//! [`oidc`] is the OpenID Connect relying party: discovery, the authorization code flow with
//! PKCE, `state` and `nonce`, a confidential client (`client_secret_basic` or
//! `private_key_jwt`), the requested `acr` checked in the ID token, the provider's keys
//! refreshed on rotation, and userinfo, with the claims Pro Santé Connect returns for a
//! professional's national identifier and activities.
//!
//! [`keys`] is the ring of the service's own signing keys for the suite's access tokens, with
//! rotation and overlap, and the JWKS the gateway verifies them with; [`tokens`] the access
//! tokens it signs, bound to the device; [`sessions`] the sign-in sessions and their rotating
//! refresh tokens, with reuse detection; [`logins`] the sign-ins in progress, kept server side
//! and finished once.

pub mod bundle;
pub mod core;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod logins;
pub mod oidc;
pub mod sessions;
pub mod store;
pub mod tokens;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sqlx::migrate::Migrator;
use telehealth_kit::{
    Part,
    db::Migrations,
    directory::Directory,
    pki::DevPki,
    record::now_micros,
    serve::{RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_proto::v1::auth_service_server::AuthServiceServer;
use tonic::service::RoutesBuilder;

use crate::{
    core::{Auth, ProviderSlot, Signing},
    keys::KeyRing,
    logins::Logins,
    sessions::Sessions,
    tokens::TokenPolicy,
};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The auth service's tables (sessions, refresh tokens, sign-ins in progress, devices), after
/// the kit's.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// Largest message the service accepts or sends.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How often the signing keys are read again (a replica learns another's new key well within
/// the hour it is published before it signs) and rotated if due, and expired sign-ins forgotten.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);

/// How the kit runs this service.
pub fn definition() -> ServiceDefinition {
    ServiceDefinition {
        part: Part::Auth,
        migrations: MIGRATIONS,
        routes,
    }
}

fn routes(context: ServiceContext) -> RoutesFuture {
    Box::pin(async move {
        let settings = &context.settings;
        let rules = &settings.sign_in;
        let now_s = u64::try_from(now_micros() / 1_000_000).unwrap_or(0);
        let signing = Signing {
            ring: std::sync::Mutex::new(KeyRing::default()),
            sealer: telehealth_kit::sealed::KeyRing::load(&settings.auth_key_file())?,
            policy: TokenPolicy {
                issuer: settings.gateway.jwt.issuer.clone(),
                audience: settings.gateway.jwt.audience.clone(),
                lifetime: Duration::from_secs(rules.access_token_minutes.max(1) * 60),
            },
            rotation: Duration::from_secs(rules.key_rotation_days.max(1) * 86_400),
        };
        signing
            .maintain(&context.db, now_s)
            .await
            .map_err(|e| telehealth_kit::KitError::Config(format!("signing keys: {e}")))?;
        let providers: BTreeMap<String, ProviderSlot> = rules
            .providers
            .iter()
            .map(|config| (config.id.clone(), ProviderSlot::new(config.clone())))
            .collect();
        let auth = Arc::new(Auth {
            db: context.db.clone(),
            sessions: Sessions::new(
                context.db.clone(),
                Duration::from_secs(rules.session_hours.max(1) * 3600),
            ),
            logins: Logins::new(
                context.db.clone(),
                Duration::from_secs(rules.sign_in_minutes.max(1) * 60),
            ),
            providers,
            directory: Directory::new(context.channel_to(Part::Directory)?),
            signing,
            device_ca: DevPki::new(settings.device_ca_dir()),
            certificate_days: rules.device_certificate_days.max(1),
            development: rules.development,
            crl: std::sync::Mutex::new(None),
        });
        tokio::spawn(maintain(auth.clone(), context.shutdown.clone()));
        let server = AuthServiceServer::new(grpc::AuthApi::new(auth))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut routes = RoutesBuilder::default();
        routes.add_service(server);
        Ok(routes)
    })
}

/// Rotates the signing keys when due and forgets expired sign-ins, until shutdown.
async fn maintain(auth: Arc<Auth>, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
        }
        let now_s = u64::try_from(now_micros() / 1_000_000).unwrap_or(0);
        if let Err(error) = auth.signing.maintain(&auth.db, now_s).await {
            tracing::error!(%error, "signing key maintenance failed");
        }
        if let Err(error) = auth.purge().await {
            tracing::warn!(%error, "purging expired sign-ins failed");
        }
    }
}
