//! What can go wrong in the image pipeline, and the gRPC code each maps to.

use telehealth_kit::error::{ApiError, ErrorCode, database_code};

use super::format::FormatError;

/// An image pipeline failure; messages are written for the client developer.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("image refused: {0}")]
    Refused(#[from] FormatError),
    #[error(
        "checksum mismatch: the bytes received hash to {actual}, the header said {declared}; nothing was kept, upload again with a new session id"
    )]
    ChecksumMismatch { declared: String, actual: String },
    #[error(
        "upload session not found (unknown, expired or refused): start again at offset 0 with a new session id"
    )]
    SessionNotFound,
    /// The caller's own session with this id was refused or expired and its bytes are being
    /// deleted (another user's session is never reported: it is not found).
    #[error(
        "this upload session id was refused or expired and cannot be reused: choose a new session id"
    )]
    SessionTaken,
    #[error(
        "resume offset {given} is not the acknowledged offset {acknowledged}: resume from {acknowledged}"
    )]
    ResumeOffset { given: i64, acknowledged: i64 },
    #[error(
        "the resume header differs from the session's original header ({0}): resume with the original header, or start a new session"
    )]
    HeaderChanged(&'static str),
    #[error(
        "upload incomplete: {acknowledged} of {total} bytes stored; resume from offset {acknowledged}"
    )]
    Incomplete { acknowledged: i64, total: i64 },
    #[error(
        "another stream of this upload session moved it on; ask the upload status and resume from its acknowledged offset"
    )]
    Superseded,
    #[error("too many image uploads in progress on this server; retry in a few seconds")]
    Busy,
    #[error("the client's stream failed: {0}")]
    ClientStream(String),
    #[error("image not found")]
    ImageNotFound,
    #[error("no thumbnail can be made of this image: {0}")]
    NoThumbnail(String),
    /// Refused by the service the image is for (e.g. the request left the draft status).
    #[error("{message}")]
    Target { code: ErrorCode, message: String },
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored image record unreadable: {0}")]
    Corrupt(String),
    /// The task receiving an upload failed (a panic): a bug, never the client's doing.
    #[error("the upload's receiving task failed: {0}")]
    Task(String),
}

impl ApiError for ImageError {
    fn code(&self) -> ErrorCode {
        match self {
            ImageError::InvalidArgument(_)
            | ImageError::Refused(_)
            | ImageError::ChecksumMismatch { .. } => ErrorCode::InvalidArgument,
            ImageError::SessionNotFound | ImageError::ImageNotFound => ErrorCode::NotFound,
            ImageError::SessionTaken => ErrorCode::AlreadyExists,
            ImageError::ResumeOffset { .. }
            | ImageError::HeaderChanged(_)
            | ImageError::Incomplete { .. }
            | ImageError::NoThumbnail(_) => ErrorCode::FailedPrecondition,
            ImageError::Superseded | ImageError::ClientStream(_) => ErrorCode::Aborted,
            ImageError::Busy => ErrorCode::ResourceExhausted,
            ImageError::Target { code, .. } => *code,
            ImageError::Store(_) => ErrorCode::Unavailable,
            ImageError::Database(error) => database_code(error),
            ImageError::Corrupt(_) | ImageError::Task(_) => ErrorCode::Internal,
        }
    }
}
