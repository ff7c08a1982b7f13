//! What can go wrong in the auth service, as gRPC codes. Messages say what to do; they never
//! carry a token, a code or a secret.

use telehealth_kit::{ApiError, ErrorCode, KitError};

use crate::{keys::KeyError, logins::LoginError, oidc::OidcError, sessions::SessionError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    /// Start again: an unknown, used or expired sign-in or ticket.
    #[error("{0}")]
    StartAgain(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Expired(String),
    #[error("the sign-in provider is unavailable, retry: {0}")]
    ProviderUnavailable(String),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

impl ApiError for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Invalid(_) => ErrorCode::InvalidArgument,
            AuthError::StartAgain(_) => ErrorCode::FailedPrecondition,
            AuthError::Refused(_) => ErrorCode::PermissionDenied,
            AuthError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AuthError::NotFound(_) => ErrorCode::NotFound,
            AuthError::Expired(_) => ErrorCode::DeadlineExceeded,
            AuthError::ProviderUnavailable(_) => ErrorCode::Unavailable,
            AuthError::Kit(error) => error.code(),
            AuthError::Keys(_) => ErrorCode::Internal,
            AuthError::Database(error) => telehealth_kit::error::database_code(error),
        }
    }
}

impl From<OidcError> for AuthError {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::Discovery(_) | OidcError::UserInfo(_) => {
                AuthError::ProviderUnavailable(error.to_string())
            }
            OidcError::StateMismatch => AuthError::StartAgain(error.to_string()),
            OidcError::NoDeviceSignIn => AuthError::StartAgain(error.to_string()),
            OidcError::DeviceDenied => AuthError::Refused(error.to_string()),
            OidcError::DeviceExpired => AuthError::Expired(error.to_string()),
            OidcError::Config(_) => AuthError::Kit(KitError::Config(error.to_string())),
            OidcError::CodeRefused(_)
            | OidcError::NoIdToken
            | OidcError::IdToken(_)
            | OidcError::UnknownKey
            | OidcError::InsufficientAcr { .. } => AuthError::Unauthenticated(format!(
                "the provider's answer is not accepted ({error}): sign in again"
            )),
        }
    }
}

impl From<LoginError> for AuthError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::UnknownState | LoginError::Expired => {
                AuthError::StartAgain(error.to_string())
            }
            LoginError::Provider(error) => error.into(),
            LoginError::Database(error) => error.into(),
        }
    }
}

impl From<SessionError> for AuthError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Database(error) => error.into(),
            SessionError::Random => AuthError::Kit(KitError::Config(error.to_string())),
            other => AuthError::Unauthenticated(other.to_string()),
        }
    }
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;
