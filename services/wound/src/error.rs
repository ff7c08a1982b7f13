//! Everything that can go wrong in wound monitoring, and which gRPC code each is.

use telehealth_images::ImageError;
use telehealth_kit::{
    ApiError, ErrorCode, KitError, error::database_code, idempotency::IdempotencyError,
    identity::IdentityError,
};

/// A wound monitoring failure.
#[derive(Debug, thiserror::Error)]
pub enum WoundError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The record does not exist or the caller may not know it does: the message is the same
    /// in both cases.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the {record} changed since you read it (version {current}); read it again")]
    VersionMismatch { record: &'static str, current: i64 },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A refusal of the kit's idempotency keys (another request under the key, a lost race).
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Unavailable(String),
    /// A refusal or failure of the shared image pipeline (photos), with the pipeline's code.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl WoundError {
    /// INVALID_ARGUMENT about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        WoundError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl ApiError for WoundError {
    fn code(&self) -> ErrorCode {
        match self {
            WoundError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            WoundError::NotFound(_) => ErrorCode::NotFound,
            WoundError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            WoundError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            WoundError::VersionMismatch { .. } => ErrorCode::Aborted,
            WoundError::Identity(error) => error.code(),
            WoundError::Idempotency(error) => error.code(),
            WoundError::Kit(error) => error.code(),
            WoundError::Database(error) => database_code(error),
            WoundError::Corrupt(_) => ErrorCode::Internal,
            WoundError::Unavailable(_) => ErrorCode::Unavailable,
            WoundError::Image(error) => error.code(),
        }
    }
}

impl From<WoundError> for tonic::Status {
    fn from(error: WoundError) -> Self {
        telehealth_kit::error::to_status(&error)
    }
}
