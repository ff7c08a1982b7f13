//! The tele-expertise report: a PDF in French, and its delivery by MSSanté secure mail.
//!
//! When a hospital expert answers a tele-expertise request, the requesting professional (and
//! the patient's file) must receive a report that stands on its own: who asked, who answered,
//! which patient (with the INS only for a qualified identity), the question and the answer, the
//! images looked at, and the items that article R6316-4 of the code de la santé publique
//! requires to be recorded for every telemedicine act. In France such a document travels by
//! MSSanté, the health professionals' secure mail: plain SMTP submission, but over TLS with a
//! client certificate identifying the sending structure.
//!
//! * [`render_pdf`] writes the report (hand-written PDF 1.4; deterministic bytes).
//! * [`build_message`] makes the RFC 5322 / MIME message with the PDF attached.
//! * [`send`] submits it over SMTP with STARTTLS or implicit TLS and a client certificate, and
//!   says with [`SendError::is_retryable`] whether trying later can help.
//!
//! Nothing here reads the database or knows the gRPC contract: the expertise service fills the
//! plain structs of [`report`] and decides when to send.

mod error;
mod french;
pub mod mail;
mod pdf;
pub mod report;

pub use error::Error;
pub use mail::{
    Attachment, ClientIdentity, Delivered, MailConfig, Message, Refused, Roots, SendError, TlsMode,
    build_message, send,
};
pub use pdf::{MAX_TEXT_BYTES, render_pdf};
pub use report::{
    Act, Answer, ExpertiseReport, IdentityStatus, Ins, Patient, Professional, Sex, Thumbnail,
    Urgency,
};
