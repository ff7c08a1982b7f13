//! Everything that can go wrong in signalling, and which gRPC code each is.
//!
//! Problems with one message inside a `Signal` stream are not errors of this kind: they become
//! `error` events ([`crate::domain::MessageError`]) and the stream goes on.

use telehealth_kit::{
    ApiError, ErrorCode, KitError, error::database_code, identity::IdentityError,
};

/// A signalling failure (a refused call, or the status a `Signal` stream ends with).
#[derive(Debug, thiserror::Error)]
pub enum SignallingError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The stream was replaced by a newer one of the same participant.
    #[error("{0}")]
    Aborted(String),
    /// Flooding after `RATE_LIMITED` errors.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Keep-alive timeout, server shutting down, a dependency down: the client reconnects.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl SignallingError {
    /// INVALID_ARGUMENT about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SignallingError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The refusal for a room the caller may not enter, or that does not exist: the same
    /// message either way, so the answer says nothing about which.
    pub fn not_admitted() -> Self {
        SignallingError::PermissionDenied("you are not a participant of this room")
    }
}

impl ApiError for SignallingError {
    fn code(&self) -> ErrorCode {
        match self {
            SignallingError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            SignallingError::NotFound(_) => ErrorCode::NotFound,
            SignallingError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            SignallingError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            SignallingError::Aborted(_) => ErrorCode::Aborted,
            SignallingError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            SignallingError::Identity(error) => error.code(),
            SignallingError::Kit(error) => error.code(),
            SignallingError::Database(error) => database_code(error),
            SignallingError::Internal(_) => ErrorCode::Internal,
            SignallingError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}
