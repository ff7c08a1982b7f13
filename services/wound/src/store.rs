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
