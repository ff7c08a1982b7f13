//! Sign-in sessions and their refresh tokens.
//!
//! A session is one sign-in of a person, for one organisation, on one device (its certificate's
//! thumbprint). Its refresh token is a random secret the service stores only as a SHA-256; each
//! refresh uses it once and returns the next one. A refresh token used a second time means it
//! was copied: the whole session ends (OAuth 2.0 security best practice, refresh token
//! rotation), and the person signs in again. Two refreshes racing with one token are the same
//! case: one wins, the session ends for both.

use base64::Engine;
use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use telehealth_kit::{Database, identity::Role};

/// Why a session could not be opened, refreshed or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("this refresh token is not known: sign in again")]
    Unknown,
    #[error("the session has ended ({0}): sign in again")]
    Ended(String),
    #[error("the session has expired: sign in again")]
    Expired,
    #[error("this refresh token belongs to another device")]
    OtherDevice,
    #[error("this refresh token was already used: the session has ended, sign in again")]
    Reused,
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("no random bytes")]
    Random,
}

/// Why a session ended.
pub mod end_reason {
    pub const SIGNED_OUT: &str = "signed out";
    pub const ENDED_BY_ADMINISTRATOR: &str = "ended by an administrator";
    pub const REFRESH_TOKEN_REUSED: &str = "a refresh token was used twice";
}

/// What a sign-in grants: who, for which organisation, on which device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    pub subject: String,
    pub org: String,
    pub roles: Vec<Role>,
    pub specialty: Option<String>,
    /// `x5t#S256` of the device's client certificate.
    pub device_thumbprint: String,
    /// The provider the person signed in with.
    pub provider: String,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub grant: SessionGrant,
    pub created_us: i64,
    pub last_used_us: i64,
    pub expires_us: i64,
    pub ended_us: Option<i64>,
    pub end_reason: Option<String>,
}

/// A session and the refresh token to give its holder (shown once, never stored).
#[derive(Debug, Clone)]
pub struct Issued {
    pub session: Session,
    pub refresh_token: String,
}

/// The sessions of the suite.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Database,
    /// Longest life of a session, whatever its refreshes, in microseconds.
    lifetime_us: i64,
}

impl Sessions {
    /// Sessions in `db` (migrated with [`crate::MIGRATIONS`]) that last at most `lifetime`.
    pub fn new(db: Database, lifetime: std::time::Duration) -> Sessions {
        Sessions {
            db,
            lifetime_us: i64::try_from(lifetime.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Opens a session for `grant` at `now_us`, with its first refresh token.
    pub async fn open(&self, grant: SessionGrant, now_us: i64) -> Result<Issued, SessionError> {
        let session = Session {
            id: uuid::Uuid::new_v4().to_string(),
            grant,
            created_us: now_us,
            last_used_us: now_us,
            expires_us: now_us.saturating_add(self.lifetime_us),
            ended_us: None,
            end_reason: None,
        };
        let refresh_token = new_secret()?;
        let mut tx = self.db.pool().begin().await?;
        insert_session(&mut tx, &session).await?;
        insert_token(&mut tx, &session.id, &refresh_token, 1, now_us).await?;
        tx.commit().await?;
        Ok(Issued {
            session,
            refresh_token,
        })
    }

    /// Uses `refresh_token` from the device `device_thumbprint`: the session and the next
    /// refresh token. A token used before ends its session.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        device_thumbprint: &str,
        now_us: i64,
    ) -> Result<Issued, SessionError> {
        let hash = digest(refresh_token);
        let mut tx = self.db.pool().begin().await?;
        // Write first: concurrent refreshes queue here (a row lock on PostgreSQL, the write lock
        // on SQLite), and only the first use marks the token; any other finds it marked.
        let first_use = sqlx::query(
            "UPDATE auth_refresh_tokens SET used_us = $2 WHERE token_hash = $1 AND used_us IS NULL",
        )
        .bind(&hash)
        .bind(now_us)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // Every refusal below but reuse leaves the token as it was (the transaction is dropped).
        let Some((session_id, generation)) = token(&mut tx, &hash).await? else {
            return Err(SessionError::Unknown);
        };
        let Some(mut session) = session(&mut tx, &session_id).await? else {
            return Err(SessionError::Unknown);
        };
        if let Some(reason) = &session.end_reason {
            return Err(SessionError::Ended(reason.clone()));
        }
        if session.grant.device_thumbprint != device_thumbprint {
            return Err(SessionError::OtherDevice);
        }
        if now_us >= session.expires_us {
            return Err(SessionError::Expired);
        }
        if !first_use {
            end_session(
                &mut tx,
                &session_id,
                end_reason::REFRESH_TOKEN_REUSED,
                now_us,
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(%session_id, "a refresh token was used twice: the session ends");
            return Err(SessionError::Reused);
        }
        let next = new_secret()?;
        insert_token(&mut tx, &session_id, &next, generation + 1, now_us).await?;
        sqlx::query("UPDATE auth_sessions SET last_used_us = $2 WHERE session_id = $1")
            .bind(&session_id)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        session.last_used_us = now_us;
        Ok(Issued {
            session,
            refresh_token: next,
        })
    }

    /// Moves open session `id` from the device certificate `old` to `new` (a renewed
    /// certificate): every unused refresh token of it is spent and the next is returned.
    /// `None` when the session is not open on `old`.
    pub async fn rebind(
        &self,
        id: &str,
        old: &str,
        new: &str,
        now_us: i64,
    ) -> Result<Option<Issued>, SessionError> {
        let mut tx = self.db.pool().begin().await?;
        let moved = sqlx::query(
            "UPDATE auth_sessions SET device_thumbprint = $3, last_used_us = $4 \
             WHERE session_id = $1 AND device_thumbprint = $2 AND ended_us IS NULL",
        )
        .bind(id)
        .bind(old)
        .bind(new)
        .bind(now_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Ok(None);
        }
        let generation: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(generation), 0) FROM auth_refresh_tokens WHERE session_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE auth_refresh_tokens SET used_us = $2 WHERE session_id = $1 AND used_us IS NULL",
        )
        .bind(id)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        let next = new_secret()?;
        insert_token(&mut tx, id, &next, generation + 1, now_us).await?;
        let Some(session) = session(&mut tx, id).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(Issued {
            session,
            refresh_token: next,
        }))
    }

    /// Ends session `id` for `reason`; false when it had already ended or does not exist.
    pub async fn end(&self, id: &str, reason: &str, now_us: i64) -> Result<bool, SessionError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(end_session(&mut conn, id, reason, now_us).await?)
    }

    /// One session, ended or not.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, SessionError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(session(&mut conn, id).await?)
    }

    /// The sessions of `subject` in `org` still open at `now_us`, newest first.
    pub async fn of_person(
        &self,
        subject: &str,
        org: &str,
        now_us: i64,
    ) -> Result<Vec<Session>, SessionError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM auth_sessions WHERE subject = $1 AND org_id = $2 \
             AND ended_us IS NULL AND expires_us > $3 ORDER BY created_us DESC, session_id"
        ))
        .bind(subject)
        .bind(org)
        .bind(now_us)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(session_row).collect::<Result<_, _>>()?)
    }

    /// The open sessions of organisation `org` at `now_us`, newest first (at most 1,000).
    pub async fn of_org(&self, org: &str, now_us: i64) -> Result<Vec<Session>, SessionError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM auth_sessions WHERE org_id = $1 \
             AND ended_us IS NULL AND expires_us > $2 ORDER BY created_us DESC, session_id \
             LIMIT 1000"
        ))
        .bind(org)
        .bind(now_us)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(session_row).collect::<Result<_, _>>()?)
    }

    /// Ends every open session bound to the device certificate `thumbprint`; how many.
    pub async fn end_of_device(
        &self,
        thumbprint: &str,
        reason: &str,
        now_us: i64,
    ) -> Result<u64, SessionError> {
        Ok(sqlx::query(
            "UPDATE auth_sessions SET ended_us = $2, end_reason = $3 \
             WHERE device_thumbprint = $1 AND ended_us IS NULL",
        )
        .bind(thumbprint)
        .bind(now_us)
        .bind(reason)
        .execute(self.db.pool())
        .await?
        .rows_affected())
    }
}

const COLUMNS: &str = "session_id, subject, org_id, roles, specialty, device_thumbprint, \
     provider, created_us, last_used_us, expires_us, ended_us, end_reason";

/// A new refresh token: 256 random bits, base64url.
fn new_secret() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SessionError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How a refresh token is stored: its SHA-256 (a stolen database gives no usable token).
fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn insert_session(conn: &mut AnyConnection, s: &Session) -> Result<(), sqlx::Error> {
    let roles: Vec<&str> = s.grant.roles.iter().map(|r| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO auth_sessions (session_id, subject, org_id, roles, specialty, \
         device_thumbprint, provider, created_us, last_used_us, expires_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&s.id)
    .bind(&s.grant.subject)
    .bind(&s.grant.org)
    .bind(roles.join(","))
    .bind(&s.grant.specialty)
    .bind(&s.grant.device_thumbprint)
    .bind(&s.grant.provider)
    .bind(s.created_us)
    .bind(s.last_used_us)
    .bind(s.expires_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_token(
    conn: &mut AnyConnection,
    session_id: &str,
    token: &str,
    generation: i64,
    now_us: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_refresh_tokens (token_hash, session_id, generation, issued_us) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(digest(token))
    .bind(session_id)
    .bind(generation)
    .bind(now_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn token(conn: &mut AnyConnection, hash: &str) -> Result<Option<(String, i64)>, sqlx::Error> {
    let row =
        sqlx::query("SELECT session_id, generation FROM auth_refresh_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|r| Ok((r.try_get("session_id")?, r.try_get("generation")?)))
        .transpose()
}

async fn session(conn: &mut AnyConnection, id: &str) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM auth_sessions WHERE session_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(session_row).transpose()
}

async fn end_session(
    conn: &mut AnyConnection,
    id: &str,
    reason: &str,
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE auth_sessions SET ended_us = $2, end_reason = $3 \
         WHERE session_id = $1 AND ended_us IS NULL",
    )
    .bind(id)
    .bind(now_us)
    .bind(reason)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(ended > 0)
}

fn session_row(row: &sqlx::any::AnyRow) -> Result<Session, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    Ok(Session {
        id: row.try_get("session_id")?,
        grant: SessionGrant {
            subject: row.try_get("subject")?,
            org: row.try_get("org_id")?,
            roles: roles
                .split(',')
                .filter_map(|name| name.parse().ok())
                .collect(),
            specialty: row.try_get("specialty")?,
            device_thumbprint: row.try_get("device_thumbprint")?,
            provider: row.try_get("provider")?,
        },
        created_us: row.try_get("created_us")?,
        last_used_us: row.try_get("last_used_us")?,
        expires_us: row.try_get("expires_us")?,
        ended_us: row.try_get("ended_us")?,
        end_reason: row.try_get("end_reason")?,
    })
}
