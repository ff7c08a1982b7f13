//! Idempotency keys, as common.proto states them for every RPC that takes one.
//!
//! A client-generated key (1 to 128 characters) is scoped to the caller (subject) and the RPC.
//! The first successful call records, **in the transaction of its change**, the id of what it
//! created with a hash of the request's content (everything but the key); a retry with the same
//! key and content gets that first result back instead of acting twice, and the same key with
//! other content is refused ([`IdempotencyError::Conflict`], which every service answers as
//! `FAILED_PRECONDITION`). A refused call records nothing, so it may be retried with its key.
//! Keys are forgotten after `idempotency.retention_hours` by [`spawn_purge`].
//!
//! Because the result is written with the change, a retry racing its first attempt must queue
//! behind it to replay it rather than act a second time. Each service chooses where it queues,
//! and this module gives the three ways they use:
//!
//! - [`KeyedRequest::claim`] as the transaction's **first write**: a concurrent retry with the same
//!   key waits on the key itself (PostgreSQL's unique index, SQLite's write lock), then replays;
//! - after a lock the operation takes anyway (a practitioner's or a request's row): either
//!   [`KeyedRequest::replay`], then [`KeyedRequest::record`] with the change, or, in one
//!   statement, [`KeyedRequest::claim`] right after the lock (scheduling's bookings: a refusal
//!   rolls the claim back with the rest);
//! - [`lock`], a row per caller and RPC, when the operation has no row of its own to lock yet;
//!   and [`KeyedRequest::claim`] as the **last write**, which makes a retry that lost the race roll
//!   back its own change and replay the winner's.
//!
//! SQL on `idempotency_records` (kit migration 0004, in every service's database).

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;

use crate::{
    config::IdempotencySettings,
    db::Database,
    error::{ApiError, ErrorCode},
    record::micros,
};

/// The longest key common.proto allows, in characters.
pub const MAX_KEY_CHARS: usize = 128;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was already used by this caller for this RPC with a different request.
    #[error("this idempotency key was already used with a different request")]
    Conflict,
    /// A concurrent call with the key changed it between two statements (recorded it first, or
    /// it was purged); a retry replays or acts.
    #[error("a concurrent request with this idempotency key interfered; retry")]
    Raced,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ApiError for IdempotencyError {
    fn code(&self) -> ErrorCode {
        match self {
            IdempotencyError::Conflict => ErrorCode::FailedPrecondition,
            IdempotencyError::Raced => ErrorCode::Unavailable,
            IdempotencyError::Database(error) => crate::error::database_code(error),
        }
    }
}

/// A client's key as the contract accepts it: surrounding spaces ignored, then 1 to
/// [`MAX_KEY_CHARS`] characters. The error is the reason, for the service to name the field.
pub fn parse_key(value: &str) -> Result<String, &'static str> {
    let key = value.trim();
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err("is required (1-128 characters, e.g. a UUID)");
    }
    Ok(key.to_owned())
}

/// What [`KeyedRequest::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is now this call's: its result is recorded when the transaction commits.
    First,
    /// An earlier call with the same key and content recorded this result id: answer with it.
    Replay(String),
}

/// One request under its idempotency key: who asks, which RPC, the client's key, and the hash
/// of what is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest {
    subject: String,
    operation: &'static str,
    key: String,
    hash: String,
}

impl KeyedRequest {
    /// `content` is a canonical encoding of the request without its key: two requests are the
    /// same when their contents are equal (it is stored as its SHA-256).
    pub fn new(
        subject: &str,
        operation: &'static str,
        key: &str,
        content: impl AsRef<[u8]>,
    ) -> KeyedRequest {
        KeyedRequest {
            subject: subject.to_owned(),
            operation,
            key: key.to_owned(),
            hash: hex::encode(Sha256::digest(content.as_ref())),
        }
    }

    /// The RPC this key belongs to.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The result id an earlier call with this key recorded, if any; [`IdempotencyError::Conflict`]
    /// if that call asked something else.
    pub async fn replay(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<String>, IdempotencyError> {
        let row = sqlx::query(
            "SELECT request_hash, result_id FROM idempotency_records \
             WHERE subject = $1 AND operation = $2 AND idempotency_key = $3",
        )
        .bind(&self.subject)
        .bind(self.operation)
        .bind(&self.key)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get("request_hash")?;
        if stored != self.hash {
            return Err(IdempotencyError::Conflict);
        }
        Ok(Some(row.try_get("result_id")?))
    }

    /// Takes the key for `result_id`, about to be written in the same transaction, or finds the
    /// earlier call's result. A concurrent call holding the key makes this wait until it commits
    /// or rolls back (PostgreSQL waits on the key, SQLite on the write lock).
    pub async fn claim(
        &self,
        conn: &mut AnyConnection,
        result_id: &str,
        at: Timestamp,
    ) -> Result<Claim, IdempotencyError> {
        let done = sqlx::query(
            "INSERT INTO idempotency_records \
             (subject, operation, idempotency_key, request_hash, result_id, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (subject, operation, idempotency_key) DO NOTHING",
        )
        .bind(&self.subject)
        .bind(self.operation)
        .bind(&self.key)
        .bind(&self.hash)
        .bind(result_id)
        .bind(micros(at))
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Claim::First);
        }
        match self.replay(conn).await? {
            Some(first) => Ok(Claim::Replay(first)),
            // Purged between the two statements.
            None => Err(IdempotencyError::Raced),
        }
    }

    /// Records `result_id` for the key, in the transaction of the change, once the caller has
    /// made sure (under a lock, after [`replay`](Self::replay)) that no other call holds it:
    /// [`IdempotencyError::Raced`] if one does.
    pub async fn record(
        &self,
        conn: &mut AnyConnection,
        result_id: &str,
        at: Timestamp,
    ) -> Result<(), IdempotencyError> {
        match self.claim(conn, result_id, at).await? {
            Claim::First => Ok(()),
            Claim::Replay(_) => Err(IdempotencyError::Raced),
        }
    }
}

/// Queues the transactions of one caller's `operation` behind each other, across replicas: the
/// lock is a row of the table with an empty key (never a client's key), updated as the
/// transaction's first write. For operations that have no row of their own to lock before they
/// know whether the key is new (creating a draft).
pub async fn lock(
    conn: &mut AnyConnection,
    subject: &str,
    operation: &'static str,
    at: Timestamp,
) -> Result<(), IdempotencyError> {
    sqlx::query(
        "INSERT INTO idempotency_records \
         (subject, operation, idempotency_key, request_hash, result_id, created_at_us) \
         VALUES ($1, $2, '', '', '', $3) \
         ON CONFLICT (subject, operation, idempotency_key) DO UPDATE SET created_at_us = $3",
    )
    .bind(subject)
    .bind(operation)
    .bind(micros(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets keys (and idle locks) recorded before `before`; returns how many.
pub async fn purge(conn: &mut AnyConnection, before: Timestamp) -> Result<u64, IdempotencyError> {
    purge_with(conn, before, &[]).await
}

/// [`purge`], then each statement of `also` with the same instant as `$1` (µs): a service's own
/// records that are kept exactly as long as request keys (scheduling's ended holds). Returns the
/// rows removed in all.
pub async fn purge_with(
    conn: &mut AnyConnection,
    before: Timestamp,
    also: &[&str],
) -> Result<u64, IdempotencyError> {
    let mut removed = 0;
    for statement in std::iter::once("DELETE FROM idempotency_records WHERE created_at_us < $1")
        .chain(also.iter().copied())
    {
        let done = sqlx::query(statement)
            .bind(micros(before))
            .execute(&mut *conn)
            .await?;
        removed += done.rows_affected();
    }
    Ok(removed)
}

/// Purges keys (and the records of `also`, see [`purge_with`]) past `settings`' retention every
/// `purge_interval_seconds`, until `shutdown`. Started by each service that stores keys; every
/// replica runs it (deleting is idempotent).
pub fn spawn_purge(
    db: Database,
    settings: &IdempotencySettings,
    also: &'static [&'static str],
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let retention = settings.retention();
    let period = std::time::Duration::from_secs(settings.purge_interval_seconds);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let purged = async {
                let mut conn = db.pool().acquire().await?;
                purge_with(&mut conn, Timestamp::now() - retention, also).await
            }
            .await;
            match purged {
                Ok(0) => {}
                Ok(purged) => {
                    tracing::info!(purged, "records past the idempotency retention forgotten")
                }
                Err(error) => {
                    tracing::warn!(%error, "idempotency purge failed; retried at the next interval");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_trimmed_and_holds_1_to_128_characters() {
        let cases = [
            ("  a-uuid ", Some("a-uuid")),
            ("", None),
            ("   ", None),
            (&*"é".repeat(128), Some(&*"é".repeat(128))),
            (&*"x".repeat(129), None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_key(input).ok().as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn the_content_hash_ignores_the_key_and_tells_requests_apart() {
        let first = KeyedRequest::new("dr-a", "Book", "k1", "slot 9:00");
        let other_key = KeyedRequest::new("dr-a", "Book", "k2", "slot 9:00");
        let other_content = KeyedRequest::new("dr-a", "Book", "k1", "slot 10:00");
        assert_eq!(first.hash, other_key.hash, "the key is not content");
        assert_ne!(first.hash, other_content.hash, "other content, other hash");
        assert_eq!(first.hash.len(), 64, "SHA-256 in hex");
    }
}
