//! Sign-ins in progress: what [`RelyingParty::begin`] returns is kept server side (never in the
//! browser), for minutes, and used once. The provider's callback must name a sign-in started
//! here, for the same provider, not yet finished and not expired; a replayed or forged callback
//! finds nothing and never reaches the provider's token endpoint.

use sha2::{Digest, Sha256};
use sqlx::Row;
use telehealth_kit::Database;

use crate::oidc::{OidcError, PendingLogin, RelyingParty, VerifiedPerson};

/// Why a sign-in could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this sign-in was not started here, or is already finished: start again")]
    UnknownState,
    #[error("this sign-in took too long: start again")]
    Expired,
    #[error(transparent)]
    Provider(#[from] OidcError),
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// A finished sign-in: the person the provider vouched for, and the device key that started it.
#[derive(Debug, Clone)]
pub struct FinishedLogin {
    pub person: VerifiedPerson,
    /// The device key that started it (SHA-256 of its public key, from its signing request).
    pub device_key: String,
}

/// The sign-ins in progress.
#[derive(Debug, Clone)]
pub struct Logins {
    db: Database,
    /// How long a started sign-in may wait for its callback, in microseconds.
    ttl_us: i64,
}

impl Logins {
    /// Sign-ins kept in `db` (migrated with [`crate::MIGRATIONS`]) for at most `ttl`.
    pub fn new(db: Database, ttl: std::time::Duration) -> Logins {
        Logins {
            db,
            ttl_us: i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Starts a sign-in with `provider` (named `provider_name`) from the device
    /// whose key is `device_key` (column `device_thumbprint`): the URL to send the browser to.
    pub async fn start(
        &self,
        provider: &RelyingParty,
        provider_name: &str,
        device_key: &str,
        login_hint: Option<&str>,
        now_us: i64,
    ) -> Result<String, LoginError> {
        let (url, pending) = provider.begin(login_hint);
        sqlx::query(
            "INSERT INTO auth_pending_logins (state_hash, provider, nonce, pkce_verifier, \
             device_thumbprint, created_us, expires_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(digest(&pending.state))
        .bind(provider_name)
        .bind(&pending.nonce)
        .bind(&pending.pkce_verifier)
        .bind(device_key)
        .bind(now_us)
        .bind(now_us.saturating_add(self.ttl_us))
        .execute(self.db.pool())
        .await?;
        Ok(url)
    }

    /// Finishes the sign-in the provider's callback names (`state`, `code`): once only.
    pub async fn finish(
        &self,
        provider: &RelyingParty,
        provider_name: &str,
        state: &str,
        code: &str,
        now_us: i64,
    ) -> Result<FinishedLogin, LoginError> {
        // Taken out and read in one statement: of two callbacks with one state, one finds it.
        let row = sqlx::query(
            "DELETE FROM auth_pending_logins WHERE state_hash = $1 AND provider = $2 \
             RETURNING nonce, pkce_verifier, device_thumbprint, expires_us",
        )
        .bind(digest(state))
        .bind(provider_name)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(LoginError::UnknownState)?;
        let expires_us: i64 = row.try_get("expires_us")?;
        if now_us >= expires_us {
            return Err(LoginError::Expired);
        }
        let pending = PendingLogin {
            state: state.to_owned(),
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
        };
        let person = provider.complete(&pending, state, code).await?;
        Ok(FinishedLogin {
            person,
            device_key: row.try_get("device_thumbprint")?,
        })
    }

    /// Forgets the sign-ins that expired before `now_us`; how many.
    pub async fn purge(&self, now_us: i64) -> Result<u64, LoginError> {
        Ok(
            sqlx::query("DELETE FROM auth_pending_logins WHERE expires_us <= $1")
                .bind(now_us)
                .execute(self.db.pool())
                .await?
                .rows_affected(),
        )
    }
}

fn digest(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}
