//! Everything that can go wrong in tele-expertise, and which gRPC code each is.

use telehealth_images::ImageError;
use telehealth_kit::{
    ApiError, ErrorCode, KitError, audit::Outcome, error::database_code,
    idempotency::IdempotencyError, identity::IdentityError,
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

    /// What the audit trail records for this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            ExpertiseError::NotFound(_) => Outcome::NotFound,
            ExpertiseError::PermissionDenied(_) | ExpertiseError::Identity(_) => Outcome::Denied,
            ExpertiseError::InvalidArgument { .. }
            | ExpertiseError::FailedPrecondition(_)
            | ExpertiseError::AlreadyExists(_)
            | ExpertiseError::VersionMismatch { .. } => Outcome::Invalid,
            ExpertiseError::Kit(_) | ExpertiseError::Database(_) => Outcome::Failed,
            ExpertiseError::Image(error) => match error.code() {
                ErrorCode::NotFound => Outcome::NotFound,
                ErrorCode::PermissionDenied => Outcome::Denied,
                ErrorCode::Internal | ErrorCode::Unavailable => Outcome::Failed,
                _ => Outcome::Invalid,
            },
        }
    }
}

/// The kit's idempotency refusals as this service answers them: another request under the same
/// key is `FAILED_PRECONDITION` (common.proto), a lost race is retried.
impl From<IdempotencyError> for ExpertiseError {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::Conflict => ExpertiseError::FailedPrecondition(error.to_string()),
            IdempotencyError::Raced => {
                ExpertiseError::Kit(KitError::Unavailable(error.to_string()))
            }
            IdempotencyError::Database(error) => ExpertiseError::Database(error),
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
