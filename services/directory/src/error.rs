//! Everything that can go wrong in the directory and the patient register, and which gRPC code each is.

use telehealth_kit::{
    ApiError, ErrorCode, KitError, error::database_code, identity::IdentityError,
};

/// A directory failure.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The member does not exist or belongs to another organisation: the message is the same.
    #[error("member not found")]
    NotFound,
    /// The patient does not exist or is not visible to the caller's organisation: the message
    /// is the same.
    #[error("patient not found")]
    PatientNotFound,
    /// The consent does not exist or belongs to another organisation.
    #[error("consent not found")]
    ConsentNotFound,
    /// No such partnership (or proposal) of the caller's organisation.
    #[error("partnership not found")]
    PartnershipNotFound,
    #[error("organisation not found")]
    OrganisationNotFound,
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// The record's state does not allow it; the message says what to do first.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the membership changed since you read it (version {current}); read it again")]
    VersionMismatch { current: i64 },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl DirectoryError {
    /// INVALID_ARGUMENT about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DirectoryError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl ApiError for DirectoryError {
    fn code(&self) -> ErrorCode {
        match self {
            DirectoryError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            DirectoryError::NotFound
            | DirectoryError::PatientNotFound
            | DirectoryError::ConsentNotFound
            | DirectoryError::PartnershipNotFound
            | DirectoryError::OrganisationNotFound => ErrorCode::NotFound,
            DirectoryError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            DirectoryError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            DirectoryError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            DirectoryError::VersionMismatch { .. } => ErrorCode::Aborted,
            DirectoryError::Identity(error) => error.code(),
            DirectoryError::Kit(error) => error.code(),
            DirectoryError::Database(error) => database_code(error),
        }
    }
}

impl From<DirectoryError> for tonic::Status {
    fn from(error: DirectoryError) -> Self {
        telehealth_kit::error::to_status(&error)
    }
}
