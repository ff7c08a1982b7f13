//! What a submission ends in: delivered (perhaps not to every recipient), or an error that
//! says whether trying again later may succeed.

use std::io;

/// The server accepted the message for these recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub accepted: Vec<String>,
    /// Recipients the server refused at `RCPT TO`, with its reply; the message went to the
    /// others. Each needs attention (a 5xx will not change on retry).
    pub refused: Vec<Refused>,
    /// The server's reply to the end of data (usually names its queue id).
    pub reply: String,
}

/// A recipient the server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub recipient: String,
    pub code: u16,
    pub text: String,
}

/// Why a message was not sent. See [`SendError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("invalid mail configuration: {0}")]
    Config(String),
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    #[error("no recipient")]
    NoRecipient,
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("timed out during {step}")]
    Timeout { step: &'static str },
    #[error("connection lost during {step}: {source}")]
    Io {
        step: &'static str,
        source: io::Error,
    },
    /// The server refused our certificate, or we refused its certificate.
    #[error("TLS certificate refused during {step}: {reason}")]
    Certificate { step: &'static str, reason: String },
    #[error("TLS failure during {step}: {reason}")]
    Tls { step: &'static str, reason: String },
    /// Sending in clear would expose health data: never done.
    #[error("the server does not offer STARTTLS; nothing is sent in clear")]
    StartTlsNotOffered,
    #[error("the server answered {code} to {step}: {text}")]
    Rejected {
        step: &'static str,
        code: u16,
        text: String,
    },
    #[error("every recipient was refused")]
    AllRecipientsRefused(Vec<Refused>),
    #[error("SMTP protocol error during {step}: {reason}")]
    Protocol { step: &'static str, reason: String },
}

impl SendError {
    /// Whether sending the same message later may succeed: connection failures, timeouts and
    /// temporary (4xx) replies are; permanent (5xx) replies, certificate and configuration
    /// errors are not, and need a person (a wrong address, an expired certificate…).
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Connect { .. } | SendError::Timeout { .. } | SendError::Io { .. } => true,
            SendError::Rejected { code, .. } => (400..500).contains(code),
            SendError::AllRecipientsRefused(refused) => {
                refused.iter().all(|r| (400..500).contains(&r.code))
            }
            SendError::Config(_)
            | SendError::InvalidAddress(_)
            | SendError::NoRecipient
            | SendError::Certificate { .. }
            | SendError::Tls { .. }
            | SendError::StartTlsNotOffered
            | SendError::Protocol { .. } => false,
        }
    }
}
