//! Delivery of the report by MSSanté, the French health professionals' secure mail.
//!
//! MSSanté is ordinary Internet mail inside a trust space: the operator's submission server
//! speaks SMTP (STARTTLS on port 587, or implicit TLS on 465) and authenticates the sending
//! application by the **client certificate** it presents in the TLS handshake (a certificate
//! of the IGC Santé issued to the structure for its application mailbox). So a small client is
//! enough: EHLO, STARTTLS, EHLO, MAIL, RCPT per recipient, DATA, QUIT, each step bounded in
//! time and in reply size. Written here rather than taken from a mail crate because the whole
//! protocol needed is these few commands, and the TLS stack (rustls with ring, the suite's
//! only crypto provider) is already in the tree.
//!
//! * [`build_message`] makes the RFC 5322 message (MIME multipart/mixed: a UTF-8 text part in
//!   quoted-printable, the PDF in base64), refusing header injection.
//! * [`send`] submits it; [`SendError::is_retryable`] tells a temporary failure (connection,
//!   timeout, 4xx) from a permanent one (5xx, certificate refused, no STARTTLS offered).

mod config;
mod message;
mod outcome;
mod reply;
mod smtp;

pub use config::{ClientIdentity, MailConfig, Roots, TlsMode};
pub use message::{Attachment, Message, build_message};
pub use outcome::{Delivered, Refused, SendError};
pub use smtp::send;
