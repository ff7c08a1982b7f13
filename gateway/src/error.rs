//! Why the gateway refuses a call, and the one place that turns it into a gRPC status.
//!
//! Token problems all become the same `UNAUTHENTICATED` message: which check failed is only in
//! the server log, so a caller probing the gateway learns nothing about keys, claims or binding.

use std::time::Duration;

use telehealth_kit::{ApiError, ErrorCode};
use tonic::Status;

/// Why a token or certificate did not authenticate (logged, never sent to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no authorization header")]
    MissingToken,
    #[error("more than one authorization header")]
    SeveralAuthorizationHeaders,
    #[error("request headers of {size} bytes, over the {limit} allowed")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("token header marks extensions as critical: {0}")]
    CriticalExtension(String),
    #[error("token claim {name} is {reason}")]
    UnusableClaim {
        name: &'static str,
        reason: &'static str,
    },
    #[error("authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("token is not a well-formed JWT: {0}")]
    MalformedToken(String),
    #[error("algorithm {0} is not accepted (only ES256, RS256, EdDSA)")]
    AlgorithmNotAllowed(String),
    #[error("token has no kid")]
    MissingKid,
    #[error("no key with kid {0}")]
    UnknownKid(String),
    #[error("key {kid} is for {key} but the token says {token}")]
    AlgorithmMismatch {
        kid: String,
        key: String,
        token: String,
    },
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token is not bound to a certificate (no cnf.x5t#S256)")]
    UnboundToken,
    #[error("token is bound to another certificate")]
    BindingMismatch,
    #[error("connection has no client certificate")]
    NoClientCertificate,
}

/// A refused or failed call.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("missing or invalid credentials")]
    Unauthenticated(AuthFailure),
    #[error("your role may not call {method}")]
    RoleNotAllowed { method: String },
    #[error("{method} is internal to the suite and cannot be called through the gateway")]
    InternalOnly { method: String },
    #[error(
        "this port serves sign-in and device enrolment only; call {method} on the gateway's main port with the device's certificate"
    )]
    SignInPortOnly { method: String },
    #[error("unknown method {0}")]
    UnknownMethod(String),
    #[error("too many calls; retry in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    #[error("too many failed authentications from this client; retry in {} s", retry_after.as_secs().max(1))]
    LockedOut { retry_after: Duration },
    #[error(
        "too many open streams for this user: at most {limit} at once; end one before opening another"
    )]
    TooManyStreams { limit: u32 },
    #[error("{service} is unavailable, retry later")]
    NoUpstream { service: String },
    #[error("a message is larger than the {limit} bytes allowed")]
    MessageTooLarge { limit: u32 },
    #[error("malformed grpc-timeout header")]
    BadTimeout,
    #[error("configuration: {0}")]
    Config(String),
}

impl GatewayError {
    /// The refusal's kind, a metric label (bounded: never a value from the request).
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated(_) => "unauthenticated",
            GatewayError::RoleNotAllowed { .. } => "role_not_allowed",
            GatewayError::InternalOnly { .. } => "internal_only",
            GatewayError::SignInPortOnly { .. } => "sign_in_port_only",
            GatewayError::UnknownMethod(_) => "unknown_method",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::LockedOut { .. } => "locked_out",
            GatewayError::TooManyStreams { .. } => "too_many_streams",
            GatewayError::NoUpstream { .. } => "no_upstream",
            GatewayError::MessageTooLarge { .. } => "message_too_large",
            GatewayError::BadTimeout => "bad_timeout",
            GatewayError::Config(_) => "config",
        }
    }
}

impl ApiError for GatewayError {
    fn code(&self) -> ErrorCode {
        match self {
            GatewayError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            GatewayError::RoleNotAllowed { .. }
            | GatewayError::InternalOnly { .. }
            | GatewayError::SignInPortOnly { .. } => ErrorCode::PermissionDenied,
            GatewayError::UnknownMethod(_) => ErrorCode::Internal,
            GatewayError::RateLimited { .. }
            | GatewayError::LockedOut { .. }
            | GatewayError::TooManyStreams { .. }
            | GatewayError::MessageTooLarge { .. } => ErrorCode::ResourceExhausted,
            GatewayError::NoUpstream { .. } => ErrorCode::Unavailable,
            GatewayError::BadTimeout => ErrorCode::InvalidArgument,
            GatewayError::Config(_) => ErrorCode::Internal,
        }
    }
}

impl GatewayError {
    /// The status sent to the caller.
    pub fn to_status(&self) -> Status {
        match self {
            // Not an error of ours: the contract has no such method.
            GatewayError::UnknownMethod(_) => Status::unimplemented(self.to_string()),
            GatewayError::NoUpstream { .. } => Status::unavailable(self.to_string()),
            GatewayError::RateLimited { retry_after } | GatewayError::LockedOut { retry_after } => {
                use tonic_types::{ErrorDetails, StatusExt};
                Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    self.to_string(),
                    ErrorDetails::with_retry_info(Some(*retry_after)),
                )
            }
            other => telehealth_kit::error::to_status(other),
        }
    }
}
