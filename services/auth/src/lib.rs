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

pub mod keys;
pub mod logins;
pub mod oidc;
pub mod sessions;
pub mod tokens;

use sqlx::migrate::Migrator;
use telehealth_kit::db::Migrations;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The auth service's tables (sessions and refresh tokens), after the kit's.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};
