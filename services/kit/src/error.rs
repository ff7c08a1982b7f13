//! The one place where errors become gRPC statuses.
//!
//! Every crate of the suite has its own `thiserror` enum. Each variant says which
//! [`ErrorCode`] it is (a deliberately small set, docs/design.md, "Cross-cutting") by implementing [`ApiError`];
//! [`to_status`] turns it into a `tonic::Status`. Internal causes are logged with the current
//! trace id and never sent to the caller, who gets a generic message and the trace id to quote.

use tonic::{Code, Status};

/// The kinds of failure a caller can see. Keep this list short: each maps to one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; the message says what to fix.
    InvalidArgument,
    /// The record does not exist (or the caller may not know it does).
    NotFound,
    /// The caller may not do this; never says whether the record exists.
    PermissionDenied,
    /// No valid identity came with the call.
    Unauthenticated,
    /// The thing being created already exists (e.g. a double booking).
    AlreadyExists,
    /// The record is not in a state that allows this (e.g. an illegal transition).
    FailedPrecondition,
    /// A concurrent change won (e.g. an `expected_version` that is no longer current); read
    /// again and retry.
    Aborted,
    /// A limit was hit; the message says when to retry.
    ResourceExhausted,
    /// A dependency (database, another service) is down; retrying later may work.
    Unavailable,
    /// The call's deadline passed before the work finished.
    DeadlineExceeded,
    /// A bug or an unexpected failure; details are only in the server log.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code for this kind of failure.
    pub fn grpc(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::Aborted => Code::Aborted,
            ErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorCode::Internal => Code::Internal,
        }
    }
}

/// An error that knows which [`ErrorCode`] it is.
///
/// Its `Display` text is sent to the caller for every code except [`ErrorCode::Internal`] and
/// [`ErrorCode::Unavailable`], so it must be actionable and must not leak anything the caller may
/// not know (use lowercase, no trailing period).
pub trait ApiError: std::error::Error {
    /// Which kind of failure this is.
    fn code(&self) -> ErrorCode;
}

/// Converts any [`ApiError`] to a `tonic::Status`, logging what the caller must not see.
pub fn to_status<E: ApiError + ?Sized>(error: &E) -> Status {
    let code = error.code();
    let trace_id = crate::trace_id::current_trace_id();
    match code {
        ErrorCode::Internal | ErrorCode::Unavailable => {
            tracing::error!(error = %error, error.chain = %chain(error), %trace_id, ?code, "request failed");
            let summary = if code == ErrorCode::Internal {
                "internal error"
            } else {
                "a dependency is unavailable, retry later"
            };
            Status::new(code.grpc(), format!("{summary} (trace id {trace_id})"))
        }
        _ => {
            tracing::debug!(error = %error, %trace_id, ?code, "request refused");
            Status::new(code.grpc(), error.to_string())
        }
    }
}

/// A unary answer: the response `build` makes from the core's result, or the error as the
/// service turns it into a status (`From`, usually [`to_status`], with details where the
/// contract adds some).
pub fn reply<T, U, E>(
    result: Result<T, E>,
    build: impl FnOnce(T) -> U,
) -> Result<tonic::Response<U>, Status>
where
    Status: From<E>,
{
    result
        .map(|value| tonic::Response::new(build(value)))
        .map_err(Status::from)
}

/// The error and its sources, for logs.
fn chain<E: std::error::Error + ?Sized>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a database failure is to the caller: `UNAVAILABLE` when the database could not be
/// reached (retrying later may work), `INTERNAL` for anything else. Every crate maps its
/// `sqlx::Error`s through this one rule.
pub fn database_code(error: &sqlx::Error) -> ErrorCode {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => ErrorCode::Unavailable,
        sqlx::Error::Database(db) if db.code().is_some_and(|code| is_unavailable(&code)) => {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    }
}

/// PostgreSQL's states of a server that is going away or not taking sessions yet: a connection
/// exception (class 08), the server shutting down or starting (57P01 to 57P03), no session left
/// (53300). A restart shows these to the sessions it ends.
fn is_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "53300")
}

/// Errors of the shared kit itself.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// A request field the kit reads for every service (a page token) is not acceptable.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("i/o on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Pki(String),
    #[error("token: {0}")]
    Token(String),
    #[error("audit: {0}")]
    Audit(String),
    /// A sealed field does not open (key missing from the key file, or altered data).
    #[error("sealed field: {0}")]
    Sealed(String),
    #[error("{0}")]
    Unavailable(String),
    /// The act needs something recorded first (the patient's consent); the message says what.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A record another service holds is unknown to the caller's organisation (a patient the
    /// register does not know): the message says what to do, the same whether it exists elsewhere.
    #[error("{0}")]
    NotFound(String),
}

impl KitError {
    /// INVALID_ARGUMENT about `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        KitError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        KitError::Io {
            path: path.into(),
            source,
        }
    }
}

impl ApiError for KitError {
    fn code(&self) -> ErrorCode {
        match self {
            KitError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            KitError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            KitError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            KitError::Unavailable(_) => ErrorCode::Unavailable,
            KitError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            KitError::NotFound(_) => ErrorCode::NotFound,
            KitError::Database(error) => database_code(error),
            _ => ErrorCode::Internal,
        }
    }
}

impl From<KitError> for Status {
    fn from(error: KitError) -> Self {
        to_status(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_causes_are_not_sent_to_the_caller() {
        let error = KitError::Config("secret path /etc/shadow".into());
        let status = to_status(&error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("shadow"), "{}", status.message());
        assert!(
            status.message().contains("trace id"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn refusals_keep_their_actionable_message() {
        let status = to_status(&KitError::Unauthenticated("missing caller identity"));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "missing caller identity");
    }

    #[test]
    fn a_server_going_away_is_unavailable_and_a_bad_query_is_internal() {
        for state in ["08006", "08001", "57P01", "57P02", "57P03", "53300"] {
            assert!(is_unavailable(state), "{state}");
        }
        for state in ["42P01", "23505", "40001", "22P02"] {
            assert!(!is_unavailable(state), "{state}");
        }
        assert_eq!(
            database_code(&sqlx::Error::PoolTimedOut),
            ErrorCode::Unavailable
        );
        assert_eq!(
            database_code(&sqlx::Error::RowNotFound),
            ErrorCode::Internal
        );
    }
}
