//! Everything that can go wrong in tele-expertise, and which gRPC code each is.

use telehealth_images::ImageError;
use telehealth_kit::{
    ApiError, ErrorCode, KitError, error::database_code, idempotency::IdempotencyError,
    identity::IdentityError,
};

/// A tele-expertise failure.
#[derive(Debug, thiserror::Error)]
pub enum ExpertiseError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// Also what a caller gets for a record he may not see (never "exists but hidden").
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the request changed since you read it (version {current}); read it again")]
    VersionMismatch { current: i64 },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A refusal of the kit's idempotency keys (another request under the key, a lost race).
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl ExpertiseError {
    /// INVALID_ARGUMENT about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ExpertiseError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl ApiError for ExpertiseError {
    fn code(&self) -> ErrorCode {
        match self {
            ExpertiseError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            ExpertiseError::NotFound(_) => ErrorCode::NotFound,
            ExpertiseError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            ExpertiseError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            ExpertiseError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            ExpertiseError::VersionMismatch { .. } => ErrorCode::Aborted,
            ExpertiseError::Identity(error) => error.code(),
            ExpertiseError::Idempotency(error) => error.code(),
            ExpertiseError::Kit(error) => error.code(),
            ExpertiseError::Database(error) => database_code(error),
            ExpertiseError::Image(error) => error.code(),
        }
    }
}

/// The one place an expertise error becomes a status.
pub fn status(error: &ExpertiseError) -> tonic::Status {
    telehealth_kit::error::to_status(error)
}
