//! Every SQL statement of the wound service, one function per question or change, in the
//! dialect SQLite and PostgreSQL share (through `sqlx::AnyPool`).
//!
//! Functions take a connection (`&mut AnyConnection`), so the core decides the transaction
//! boundaries. Instants are Unix microseconds, lengths whole millimetres.
//!
//! - [`wounds`]: wounds, care teams, episodes, the nurse's and doctor's lists;
//! - [`assessments`]: assessment versions and photos;
//! - [`alerts`]: alerts, raised once per dedupe key.

pub mod alerts;
pub mod assessments;
pub mod wounds;

use jiff::Timestamp;
use sqlx::{AnyConnection, Row};

use crate::{error::WoundError, model::ActorRecord};

pub(crate) use telehealth_kit::record::json;
pub use telehealth_kit::record::{instant, micros};

pub(crate) type Result<T> = std::result::Result<T, WoundError>;

pub(crate) fn actor(text: &str) -> ActorRecord {
    serde_json::from_str(text).unwrap_or_default()
}

/// An `i32` column stored as a 64-bit integer.
pub(crate) fn small(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(0)
}

/// The result recorded for an idempotency key: (request hash, result id).
pub async fn idempotent_result(
    conn: &mut AnyConnection,
    caller: &str,
    operation: &str,
    key: &str,
) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT request_hash, result_id FROM idempotency_keys \
         WHERE caller = $1 AND operation = $2 AND idempotency_key = $3",
    )
    .bind(caller)
    .bind(operation)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| Ok((row.try_get("request_hash")?, row.try_get("result_id")?)))
        .transpose()
}

/// Records the result of an idempotency key (a unique violation if it is already taken: the
/// caller then replays the first result).
pub async fn remember_result(
    conn: &mut AnyConnection,
    (caller, operation, key): (&str, &str, &str),
    request_hash: &str,
    result_id: &str,
    at: Timestamp,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, operation, idempotency_key, request_hash, result_id, created_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(caller)
    .bind(operation)
    .bind(key)
    .bind(request_hash)
    .bind(result_id)
    .bind(micros(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets idempotency keys older than `before` (the contract keeps them at least 24 hours).
pub async fn purge_idempotency_keys(conn: &mut AnyConnection, before: Timestamp) -> Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at_us < $1")
        .bind(micros(before))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}
