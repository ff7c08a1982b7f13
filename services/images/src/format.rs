//! Image format checks and metadata stripping for uploaded photos (JPEG, PNG).
//!
//! Patients upload photos of their skin and wounds from phones and cameras. Those files carry
//! far more than pixels: GPS coordinates of the patient's home, camera serial numbers, the
//! owner's name, an uncropped preview, free-text comments. This module removes all of it while
//! the upload streams through, **without re-encoding the image data**: the JPEG entropy-coded
//! segments and the PNG `IDAT` chunks leave byte for byte as they came in, so the stored file is
//! clinically identical to what the device produced.
//!
//! # Whitelist, not blacklist
//!
//! Only structures known to be needed to display the image are copied; everything else is
//! dropped and reported (category + tag name, see [`ImageFacts`]).
//!
//! * **JPEG** keeps `SOI`, `APP0` JFIF (its optional embedded thumbnail is cut out), `APP2`
//!   `ICC_PROFILE`, `APP14` Adobe (colour transform), `DQT`, `DHT`, `DAC`, `DRI`, `SOFn`, `SOS`
//!   and the entropy-coded data with its `RSTn` markers, the tables between the scans of a
//!   progressive JPEG, and `EOI`. `APP1` Exif is rewritten into a fresh, minimal EXIF block (see
//!   below). XMP, Photoshop/IPTC (`APP13`), `COM`, MPF and every other `APPn` are dropped.
//! * **PNG** keeps `IHDR`, `PLTE`, `IDAT`, `IEND` and the rendering chunks `iCCP`, `sRGB`,
//!   `gAMA`, `cHRM`, `cICP`, `pHYs`, `sBIT`, `tRNS`, `bKGD`; `tIME` unless
//!   [`SanitizeOptions::strip_capture_date_time`]; `eXIf` rewritten like JPEG's EXIF. Text chunks
//!   (`tEXt`, `zTXt`, `iTXt`) and every other ancillary chunk are dropped. Every chunk's CRC is
//!   verified; an unknown *critical* chunk is refused (the image could not be displayed without
//!   understanding it).
//! * **EXIF** (both formats): a new TIFF structure in the input's byte order holding only IFD0
//!   `Orientation` (1-8) and, in an Exif sub-IFD, the capture date/time tags `DateTimeOriginal`,
//!   `DateTimeDigitized`, `OffsetTime*` (kept by default: clinically useful and not identifying
//!   alone; their value must look like a date, so no free text can hide in them). Every other
//!   tag, the GPS IFD and the IFD1 thumbnail are dropped. If nothing is kept the EXIF block is
//!   dropped entirely. Malformed EXIF (offsets out of range, IFD loops) does not fail the upload:
//!   the whole block is dropped and reported as `EXIF:malformed`.
//!
//! # Multi-picture (MPF) trailers
//!
//! Bytes after the JPEG `EOI` marker are refused as a polyglot file (a valid image followed by
//! another payload, e.g. a ZIP archive), **except** when the image carried an `APP2` `MPF`
//! segment: phones (Samsung, Apple, Google...) store the multi-picture preview/depth images
//! there, after the primary image. Those trailing images are dropped, never copied (they carry
//! their own metadata and an unredacted copy of the scene), and reported as
//! `EMBEDDED_THUMBNAIL` / `JPEG:MPF`. Whatever follows the primary image is therefore never
//! stored, so accepting it cannot smuggle a payload into the blob store.
//!
//! # Limits and memory
//!
//! * Declared dimensions above [`SanitizeOptions::max_side_px`] (default 20,000 px per side) or
//!   [`SanitizeOptions::max_pixels`] (default 200 megapixels) are refused as soon as the JPEG
//!   `SOFn` or PNG `IHDR` is read, before the image data arrives.
//! * The sanitizer holds at most one header structure at a time: a JPEG marker segment
//!   (≤ 64 KiB, a length field is 16 bits), a PNG `IHDR` or an `eXIf` chunk (≤ 64 KiB; a larger
//!   `eXIf` is dropped unread). Image data, ICC profiles and dropped chunks stream through; the
//!   output of each [`Sanitizer::push`] is written immediately (at most one pending `0xFF` byte is
//!   held back in JPEG entropy data).
//! * Not checked here: that the entropy-coded data / zlib stream decode (that needs a decoder;
//!   [`thumbnail`] does it and fails cleanly on corrupt data).
//! * The reported tag list is capped at [`MAX_REPORTED_TAGS`] names.
//!
//! [`thumbnail`] makes a small baseline JPEG preview; see its documentation for its own bounds.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

mod exif;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
mod jpeg_markers;
mod png_chunks;
#[cfg(test)]
mod tests;
mod thumbnail;

pub use thumbnail::{MAX_DECODED_PREVIEW_BYTES, MAX_FULL_DECODE_PIXELS, Thumbnail, thumbnail};

/// At most this many distinct tag names are listed in [`ImageFacts::stripped_tags`]; further
/// ones are summarised by a final `…more` entry. A hostile EXIF block can name thousands of
/// distinct tags; the list goes to the audit log and the API response, so it stays bounded.
pub const MAX_REPORTED_TAGS: usize = 256;

/// How strict the sanitizer is; the defaults follow the image contract (`images.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeOptions {
    /// Largest accepted width or height, in pixels. Default 20,000.
    pub max_side_px: u32,
    /// Largest accepted width × height, in pixels. Default 200,000,000 (200 megapixels).
    pub max_pixels: u64,
    /// Also remove the capture date/time (EXIF `DateTimeOriginal`, `DateTimeDigitized`,
    /// `OffsetTime*`, PNG `tIME`). Default `false`: kept, as clinically useful.
    pub strip_capture_date_time: bool,
}

impl Default for SanitizeOptions {
    fn default() -> Self {
        SanitizeOptions {
            max_side_px: 20_000,
            max_pixels: 200_000_000,
            strip_capture_date_time: false,
        }
    }
}

/// The real content type, detected from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// JPEG / JFIF / EXIF JPEG (`image/jpeg`).
    Jpeg,
    /// PNG (`image/png`).
    Png,
}

impl ContentType {
    /// The MIME type to store and serve the image with.
    pub fn mime_type(self) -> &'static str {
        match self {
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContentType::Jpeg => "JPEG",
            ContentType::Png => "PNG",
        })
    }
}

/// Categories of removed metadata; mirrors `StrippedMetadata` of `images.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StrippedCategory {
    /// EXIF GPS IFD: would reveal the patient's home.
    GpsLocation,
    /// Camera body / lens serial numbers, unique image id, make, model, host computer name.
    DeviceIdentifiers,
    /// `Artist`, `Copyright`, camera owner name, PNG `Author`.
    PersonNames,
    /// EXIF IFD1 thumbnail, JFIF thumbnail, MPF preview images.
    EmbeddedThumbnail,
    /// Manufacturer maker notes.
    MakerNotes,
    /// XMP packets.
    Xmp,
    /// IPTC / Photoshop IRB blocks.
    Iptc,
    /// `COM`, PNG text chunks, EXIF `UserComment` / `ImageDescription`.
    TextComments,
    /// Capture date/time, only when [`SanitizeOptions::strip_capture_date_time`] is set.
    CaptureDateTime,
    /// The attributes of an imported DICOM file (patient, institution, device): only its
    /// photograph is kept (reported by the upload, never by this module's sanitizer).
    DicomIdentifiers,
}

/// What the sanitizer found, reported once the whole image went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// Detected from the bytes.
    pub content_type: ContentType,
    /// Width in pixels as stored (before applying the orientation).
    pub width: u32,
    /// Height in pixels as stored (before applying the orientation).
    pub height: u32,
    /// EXIF orientation kept in the output, 1 to 8.
    pub exif_orientation: Option<u8>,
    /// Categories of metadata found and removed.
    pub stripped: BTreeSet<StrippedCategory>,
    /// Names of the removed tags, segments and chunks, in the order met, without duplicates,
    /// e.g. `EXIF:GPSLatitude`, `JPEG:APP13`, `PNG:tEXt`.
    pub stripped_tags: Vec<String>,
}

/// Why an upload is refused. Every variant is the client's fault (gRPC `INVALID_ARGUMENT`); the
/// messages say what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Neither JPEG nor PNG.
    #[error("not an image (first bytes {first_bytes}); upload a JPEG or PNG photo")]
    NotAnImage {
        /// Hex dump of up to the first 8 bytes.
        first_bytes: String,
    },
    /// A DICOM Part 10 file, which this deployment does not accept.
    #[error("DICOM files are not accepted here; export the image as JPEG or PNG")]
    DicomNotAccepted,
    /// A DICOM file the import refused (structure, class, transfer syntax, size).
    #[error("{detail}; export the image as DICOM VL Photographic (one JPEG frame) or as JPEG")]
    Dicom { detail: String },
    /// The stream ended before the end of the image.
    #[error("truncated {format} image: {detail}; upload the complete file")]
    Truncated { format: ContentType, detail: String },
    /// The structure is broken (markers, lengths, CRCs, order).
    #[error("corrupt {format} image: {detail}; re-export the image and upload it again")]
    Corrupt { format: ContentType, detail: String },
    /// Valid but uses a feature this pipeline does not handle.
    #[error("unsupported {format} image: {detail}; re-export it as a standard JPEG or PNG")]
    Unsupported { format: ContentType, detail: String },
    /// Bytes after the end of the image: a polyglot file carrying another payload.
    #[error(
        "{bytes} bytes after the end of the {format} image (polyglot file); upload the image alone"
    )]
    TrailingData { format: ContentType, bytes: u64 },
    /// Declared dimensions above the limits (image bomb).
    #[error(
        "image too large: {width}x{height} pixels declared, the limit is {max_side_px} pixels per side and {max_pixels} pixels in total; resize it before uploading"
    )]
    DimensionsTooLarge {
        width: u32,
        height: u32,
        max_side_px: u32,
        max_pixels: u64,
    },
    /// A width or height of zero.
    #[error("{format} image declares a zero width or height; re-export the image")]
    ZeroDimensions { format: ContentType },
    /// The preview would need more memory than allowed (see [`thumbnail`]).
    #[error("cannot make a preview: {detail}")]
    PreviewTooExpensive { detail: String },
    /// A thumbnail size outside 32..=512 was asked for (a caller bug).
    #[error("thumbnail size {requested} is outside 32..=512 pixels")]
    InvalidThumbnailSize { requested: u32 },
    /// The sanitizer was used after it had already refused the input.
    #[error("the image was already refused: {0}")]
    AlreadyFailed(Box<FormatError>),
}

impl FormatError {
    pub(crate) fn corrupt(format: ContentType, detail: impl Into<String>) -> FormatError {
        FormatError::Corrupt {
            format,
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(format: ContentType, detail: impl Into<String>) -> FormatError {
        FormatError::Unsupported {
            format,
            detail: detail.into(),
        }
    }

    pub(crate) fn truncated(format: ContentType, detail: impl Into<String>) -> FormatError {
        FormatError::Truncated {
            format,
            detail: detail.into(),
        }
    }
}

/// Checks declared dimensions against the limits, as soon as a header declares them.
pub(crate) fn check_dimensions(
    format: ContentType,
    width: u32,
    height: u32,
    options: &SanitizeOptions,
) -> Result<(), FormatError> {
    if width == 0 || height == 0 {
        return Err(FormatError::ZeroDimensions { format });
    }
    if width > options.max_side_px
        || height > options.max_side_px
        || u64::from(width) * u64::from(height) > options.max_pixels
    {
        return Err(FormatError::DimensionsTooLarge {
            width,
            height,
            max_side_px: options.max_side_px,
            max_pixels: options.max_pixels,
        });
    }
    Ok(())
}

/// The removed categories and tag names, collected while the image streams through.
#[derive(Debug, Default)]
pub(crate) struct StripReport {
    stripped: BTreeSet<StrippedCategory>,
    tags: Vec<String>,
    seen: HashSet<String>,
    overflowed: bool,
}

impl StripReport {
    /// Records that `tag` was removed, with its category when it has one.
    pub(crate) fn strip(&mut self, tag: &str, category: Option<StrippedCategory>) {
        if let Some(category) = category {
            self.stripped.insert(category);
        }
        if self.seen.contains(tag) {
            return;
        }
        if self.tags.len() >= MAX_REPORTED_TAGS {
            if !self.overflowed {
                self.overflowed = true;
                self.tags.push("…more".to_owned());
            }
            return;
        }
        self.seen.insert(tag.to_owned());
        self.tags.push(tag.to_owned());
    }
}

/// Streaming sanitizer: push input, take output.
///
/// Feed the upload with [`push`](Sanitizer::push) in chunks of any size (split anywhere), write
/// what it appends to `output` to the blob store, then call [`finish`](Sanitizer::finish). Any
/// error refuses the whole upload: discard what was written. After an error every further call
/// returns [`FormatError::AlreadyFailed`].
#[derive(Debug)]
pub struct Sanitizer {
    options: SanitizeOptions,
    state: Inner,
    report: StripReport,
    failed: Option<FormatError>,
}

#[derive(Debug)]
enum Inner {
    /// The first bytes, until the content type is known (at most [`SNIFF_LEN`] bytes).
    Sniffing(Vec<u8>),
    Jpeg(jpeg_markers::JpegSanitizer),
    Png(png_chunks::PngSanitizer),
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
const JPEG_SIGNATURE: [u8; 3] = [0xFF, 0xD8, 0xFF];
/// DICOM Part 10: a 128-byte preamble then `DICM`.
const SNIFF_LEN: usize = 132;

enum Sniffed {
    Jpeg,
    Png,
    NeedMore,
}

fn sniff(head: &[u8]) -> Result<Sniffed, FormatError> {
    let is_prefix_of = |signature: &[u8]| {
        let n = head.len().min(signature.len());
        head[..n] == signature[..n]
    };
    if head.len() >= JPEG_SIGNATURE.len() && head.starts_with(&JPEG_SIGNATURE) {
        return Ok(Sniffed::Jpeg);
    }
    if head.len() >= PNG_SIGNATURE.len() && head.starts_with(&PNG_SIGNATURE) {
        return Ok(Sniffed::Png);
    }
    if (is_prefix_of(&JPEG_SIGNATURE) || is_prefix_of(&PNG_SIGNATURE)) && !head.is_empty() {
        return Ok(Sniffed::NeedMore);
    }
    if head.len() < SNIFF_LEN {
        return Ok(Sniffed::NeedMore);
    }
    if &head[128..132] == b"DICM" {
        return Err(FormatError::DicomNotAccepted);
    }
    Err(not_an_image(head))
}

fn not_an_image(head: &[u8]) -> FormatError {
    let first_bytes = if head.is_empty() {
        "none: the upload is empty".to_owned()
    } else {
        head.iter()
            .take(8)
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    FormatError::NotAnImage { first_bytes }
}

impl Sanitizer {
    /// A sanitizer for one upload.
    pub fn new(options: SanitizeOptions) -> Sanitizer {
        Sanitizer {
            options,
            state: Inner::Sniffing(Vec::with_capacity(SNIFF_LEN)),
            report: StripReport::default(),
            failed: None,
        }
    }

    /// Consumes `input`, appending the sanitized bytes to `output` (which the caller drains to
    /// the blob store).
    pub fn push(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<(), FormatError> {
        if let Some(error) = &self.failed {
            return Err(FormatError::AlreadyFailed(Box::new(error.clone())));
        }
        let result = self.push_inner(input, output);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn push_inner(&mut self, mut input: &[u8], output: &mut Vec<u8>) -> Result<(), FormatError> {
        if let Inner::Sniffing(head) = &mut self.state {
            let take = (SNIFF_LEN - head.len()).min(input.len());
            head.extend_from_slice(&input[..take]);
            input = &input[take..];
            let head = std::mem::take(head);
            match sniff(&head)? {
                Sniffed::NeedMore => {
                    self.state = Inner::Sniffing(head);
                    return Ok(());
                }
                Sniffed::Jpeg => {
                    self.state = Inner::Jpeg(jpeg_markers::JpegSanitizer::new(self.options))
                }
                Sniffed::Png => {
                    self.state = Inner::Png(png_chunks::PngSanitizer::new(self.options))
                }
            }
            self.feed(&head, output)?;
        }
        self.feed(input, output)
    }

    fn feed(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<(), FormatError> {
        match &mut self.state {
            Inner::Sniffing(_) => Ok(()),
            Inner::Jpeg(jpeg) => jpeg.push(input, output, &mut self.report),
            Inner::Png(png) => png.push(input, output, &mut self.report),
        }
    }

    /// End of input: checks the image was complete and returns what was found.
    pub fn finish(mut self, output: &mut Vec<u8>) -> Result<ImageFacts, FormatError> {
        if let Some(error) = self.failed {
            return Err(FormatError::AlreadyFailed(Box::new(error)));
        }
        let _ = output; // Nothing is held back at the end of a complete image.
        let outcome = match self.state {
            Inner::Sniffing(head) => {
                let is_strict_prefix = |signature: &[u8]| {
                    !head.is_empty() && head.len() < signature.len() && signature.starts_with(&head)
                };
                return Err(if is_strict_prefix(&PNG_SIGNATURE) {
                    FormatError::truncated(ContentType::Png, "the file ends inside its signature")
                } else if is_strict_prefix(&JPEG_SIGNATURE) {
                    FormatError::truncated(ContentType::Jpeg, "the file ends inside its signature")
                } else {
                    not_an_image(&head)
                });
            }
            Inner::Jpeg(jpeg) => jpeg.finish(&mut self.report)?,
            Inner::Png(png) => png.finish(&mut self.report)?,
        };
        Ok(ImageFacts {
            content_type: outcome.content_type,
            width: outcome.width,
            height: outcome.height,
            exif_orientation: outcome.orientation,
            stripped: self.report.stripped,
            stripped_tags: self.report.tags,
        })
    }
}

/// What a format parser knows at the end of a complete image.
pub(crate) struct Outcome {
    pub(crate) content_type: ContentType,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) orientation: Option<u8>,
}

/// Moves bytes from `input` into `buf` until it holds `need` bytes; true once it does.
pub(crate) fn fill(buf: &mut Vec<u8>, need: usize, input: &mut &[u8]) -> bool {
    let take = need.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..take]);
    *input = &input[take..];
    buf.len() == need
}
