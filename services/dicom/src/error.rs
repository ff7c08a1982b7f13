//! The crate's error for files (writing and reading them); sending has its own
//! [`crate::SendError`], because what a caller does with it (retry or not) is a different question.

/// Why a DICOM file could not be written or read. Messages are lowercase, without a trailing
/// period, and say what to do when there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The photo is not a JPEG this crate can wrap without re-encoding it.
    #[error("unsupported JPEG: {0}")]
    UnsupportedJpeg(String),
    /// The photo is not a JPEG, or its structure is broken before the image data.
    #[error("not a usable JPEG: {0}")]
    InvalidJpeg(String),
    /// A value cannot be written in its DICOM attribute (too long, forbidden characters).
    #[error("{attribute} cannot be written in DICOM: {reason}")]
    InvalidValue {
        attribute: &'static str,
        reason: String,
    },
    /// The input is larger than the configured limit.
    #[error("DICOM file too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Not a DICOM Part 10 file (no `DICM` after the 128-byte preamble).
    #[error(
        "not a DICOM file (no DICM marker after the preamble); export the image as DICOM Part 10 or JPEG"
    )]
    NotDicom,
    /// The structure of the file is broken or hostile (lengths past the end, too deep).
    #[error("malformed DICOM file: {0}")]
    Malformed(String),
    /// A DICOM file this suite does not take (SOP class, transfer syntax, multi-frame...).
    #[error("unsupported DICOM file: {0}")]
    Unsupported(String),
    /// dicom-rs could not encode the object; a bug on our side, not the caller's.
    #[error("could not encode the DICOM file: {0}")]
    Encode(String),
}
