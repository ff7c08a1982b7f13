//! Errors of making a report or a message. Sending has its own error, [`crate::SendError`],
//! because its callers need one more thing from it: whether trying again later can help.

/// Why a report or a mail message could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{field} is too long ({length} bytes, at most {max})")]
    TooLong {
        field: &'static str,
        length: usize,
        max: usize,
    },
    /// A line break in a header value would let the value add headers of its own.
    #[error("{field} contains a line break or a control character")]
    HeaderInjection { field: &'static str },
    #[error("{field} is not a valid mail address: {address:?}")]
    InvalidAddress {
        field: &'static str,
        address: String,
    },
    #[error("the message has no recipient")]
    NoRecipient,
    #[error("the message date cannot be written in a mail header")]
    InvalidDate,
}
