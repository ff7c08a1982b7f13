//! Everything that can go wrong in scheduling, and which gRPC code each is.

use telehealth_kit::{
    ApiError, ErrorCode, KitError, error::database_code, idempotency::IdempotencyError,
    identity::IdentityError,
};

use crate::domain::{Interval, Invalid};

/// Why a time cannot be booked (every one of them is reported, not only the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub practitioner: String,
    pub time: Interval,
    /// The appointment or hold in the way, if any.
    pub appointment_id: Option<String>,
    /// The exception in the way, if any.
    pub exception_id: Option<String>,
    pub message: String,
}

/// The kinds of booking conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    OverlappingAppointment,
    Buffer,
    Held,
    OutsideAvailability,
    Exception,
    InThePast,
    MinimumNotice,
}

impl ConflictKind {
    /// True when the time is taken by someone (ALREADY_EXISTS) rather than not bookable.
    pub fn is_taken(self) -> bool {
        matches!(
            self,
            ConflictKind::OverlappingAppointment | ConflictKind::Buffer | ConflictKind::Held
        )
    }
}

/// A scheduling failure.
#[derive(Debug, thiserror::Error)]
pub enum SchedulingError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the record changed since you read it (version {current}); read it again")]
    VersionMismatch { current: i64 },
    #[error("the time is not free: {}", describe(.0))]
    Conflicts(Vec<Conflict>),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A refusal of the kit's idempotency keys (another request under the key, a lost race).
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Unavailable(String),
}

fn describe(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl SchedulingError {
    /// INVALID_ARGUMENT about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SchedulingError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<Invalid> for SchedulingError {
    fn from(invalid: Invalid) -> Self {
        SchedulingError::InvalidArgument {
            field: invalid.field,
            reason: invalid.reason,
        }
    }
}

impl ApiError for SchedulingError {
    fn code(&self) -> ErrorCode {
        match self {
            SchedulingError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            SchedulingError::NotFound(_) => ErrorCode::NotFound,
            SchedulingError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            SchedulingError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            SchedulingError::VersionMismatch { .. } => ErrorCode::Aborted,
            SchedulingError::Conflicts(conflicts) => {
                if conflicts.iter().any(|c| c.kind.is_taken()) {
                    ErrorCode::AlreadyExists
                } else {
                    ErrorCode::FailedPrecondition
                }
            }
            SchedulingError::Identity(error) => error.code(),
            SchedulingError::Idempotency(error) => error.code(),
            SchedulingError::Kit(error) => error.code(),
            SchedulingError::Database(error) => database_code(error),
            SchedulingError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}
