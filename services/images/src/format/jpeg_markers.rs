//! Streaming JPEG sanitizer: a marker-level state machine that copies the whitelisted segments
//! and the entropy-coded data untouched, and drops or rewrites the rest.
//!
//! It never decodes the image. Header segments (≤ 64 KiB each) are collected whole so they can
//! be checked; entropy-coded data is scanned for `0xFF` and copied as it arrives.

use super::exif;
use super::{
    ContentType, FormatError, Outcome, SanitizeOptions, StripReport, StrippedCategory,
    check_dimensions, fill,
};

const JPEG: ContentType = ContentType::Jpeg;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DQT: u8 = 0xDB;
const DNL: u8 = 0xDC;
const DRI: u8 = 0xDD;
const DHP: u8 = 0xDE;
const EXP: u8 = 0xDF;
const DHT: u8 = 0xC4;
const JPG: u8 = 0xC8;
const DAC: u8 = 0xCC;
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP13: u8 = 0xED;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

const EXIF_HEADER: &[u8] = b"Exif\0\0";
const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXTENDED_HEADER: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting `FF D8`.
    StartOfImage,
    /// Expecting the `FF` that starts a marker.
    MarkerPrefix,
    /// After `FF`: expecting the marker code (more `FF` are fill bytes).
    MarkerCode,
    /// Collecting the 2-byte segment length of `marker`.
    Length,
    /// Collecting the segment body of `marker`.
    Body,
    /// Inside entropy-coded data; `pending_ff` when the last byte was an unresolved `FF`.
    Entropy { pending_ff: bool },
    /// After `EOI`.
    End,
}

#[derive(Debug)]
pub(crate) struct JpegSanitizer {
    options: SanitizeOptions,
    state: State,
    /// The segment being collected (length field, then body; ≤ 65,533 bytes).
    buf: Vec<u8>,
    marker: u8,
    body_len: usize,
    /// Bytes consumed so far, for error messages.
    offset: u64,
    frame: Option<(u32, u32)>,
    scans: u32,
    jfif_kept: bool,
    exif_kept: bool,
    orientation: Option<u8>,
    mpf: bool,
    trailing: u64,
}

impl JpegSanitizer {
    pub(crate) fn new(options: SanitizeOptions) -> JpegSanitizer {
        JpegSanitizer {
            options,
            state: State::StartOfImage,
            buf: Vec::new(),
            marker: 0,
            body_len: 0,
            offset: 0,
            frame: None,
            scans: 0,
            jfif_kept: false,
            exif_kept: false,
            orientation: None,
            mpf: false,
            trailing: 0,
        }
    }

    pub(crate) fn push(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        report: &mut StripReport,
    ) -> Result<(), FormatError> {
        while !input.is_empty() {
            let before = input.len();
            self.step(&mut input, out, report)?;
            self.offset += (before - input.len()) as u64;
        }
        Ok(())
    }

    /// Consumes some of `input` according to the current state.
    fn step(
        &mut self,
        input: &mut &[u8],
        out: &mut Vec<u8>,
        report: &mut StripReport,
    ) -> Result<(), FormatError> {
        match self.state {
            State::StartOfImage => {
                if fill(&mut self.buf, 2, input) {
                    if self.buf != [0xFF, SOI] {
                        return Err(FormatError::corrupt(JPEG, "missing start-of-image marker"));
                    }
                    out.extend_from_slice(&[0xFF, SOI]);
                    self.buf.clear();
                    self.state = State::MarkerPrefix;
                }
            }
            State::MarkerPrefix => {
                let byte = input[0];
                if byte != 0xFF {
                    return Err(FormatError::corrupt(
                        JPEG,
                        format!(
                            "expected a marker at byte {}, found 0x{byte:02X}",
                            self.offset
                        ),
                    ));
                }
                *input = &input[1..];
                self.state = State::MarkerCode;
            }
            State::MarkerCode => {
                let code = input[0];
                *input = &input[1..];
                self.on_marker(code, out)?;
            }
            State::Length => {
                if fill(&mut self.buf, 2, input) {
                    let length = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
                    self.buf.clear();
                    if length < 2 {
                        return Err(FormatError::corrupt(
                            JPEG,
                            format!(
                                "segment {} has an invalid length {length}",
                                marker_name(self.marker)
                            ),
                        ));
                    }
                    self.body_len = length - 2;
                    self.state = State::Body;
                    if self.body_len == 0 {
                        self.on_segment(out, report)?;
                    }
                }
            }
            State::Body => {
                if fill(&mut self.buf, self.body_len, input) {
                    self.on_segment(out, report)?;
                }
            }
            State::Entropy { pending_ff: true } => {
                let byte = input[0];
                match byte {
                    // Byte stuffing and restart markers belong to the entropy-coded data.
                    0x00 | 0xD0..=0xD7 => {
                        out.extend_from_slice(&[0xFF, byte]);
                        *input = &input[1..];
                        self.state = State::Entropy { pending_ff: false };
                    }
                    // A fill byte before a marker: kept, as it was sent.
                    0xFF => {
                        out.push(0xFF);
                        *input = &input[1..];
                    }
                    // Any other marker ends the scan; it is handled like a header marker.
                    _ => self.state = State::MarkerCode,
                }
            }
            State::Entropy { pending_ff: false } => match input.iter().position(|&b| b == 0xFF) {
                Some(at) => {
                    out.extend_from_slice(&input[..at]);
                    *input = &input[at + 1..];
                    self.state = State::Entropy { pending_ff: true };
                }
                None => {
                    out.extend_from_slice(input);
                    *input = &[];
                }
            },
            State::End => {
                // Counted, never copied: refused at `finish` unless they are MPF images.
                self.trailing += input.len() as u64;
                *input = &[];
            }
        }
        Ok(())
    }

    fn on_marker(&mut self, code: u8, out: &mut Vec<u8>) -> Result<(), FormatError> {
        match code {
            // Fill bytes before a marker.
            0xFF => {}
            EOI => {
                if self.scans == 0 {
                    return Err(FormatError::corrupt(
                        JPEG,
                        "end-of-image marker before any image data",
                    ));
                }
                out.extend_from_slice(&[0xFF, EOI]);
                self.state = State::End;
            }
            SOI => return Err(FormatError::corrupt(JPEG, "a second start-of-image marker")),
            0x00 | 0x01 | 0xD0..=0xD7 => {
                return Err(FormatError::corrupt(
                    JPEG,
                    format!(
                        "unexpected marker 0x{code:02X} at byte {}",
                        self.offset.saturating_sub(1)
                    ),
                ));
            }
            _ => {
                self.marker = code;
                self.buf.clear();
                self.state = State::Length;
            }
        }
        Ok(())
    }

    /// A whole marker segment is in `buf`: check, keep, rewrite or drop it.
    fn on_segment(
        &mut self,
        out: &mut Vec<u8>,
        report: &mut StripReport,
    ) -> Result<(), FormatError> {
        let body = std::mem::take(&mut self.buf);
        let marker = self.marker;
        self.state = State::MarkerPrefix;
        match marker {
            0xC0..=0xCF if !matches!(marker, DHT | JPG | DAC) => {
                self.on_frame_header(&body)?;
                emit(out, marker, &body);
            }
            DHT => {
                check_huffman_tables(&body)?;
                emit(out, marker, &body);
            }
            DQT => {
                check_quantization_tables(&body)?;
                emit(out, marker, &body);
            }
            DRI => {
                if body.len() != 2 {
                    return Err(FormatError::corrupt(
                        JPEG,
                        "restart interval segment of the wrong length",
                    ));
                }
                emit(out, marker, &body);
            }
            DAC => {
                if body.is_empty() || !body.len().is_multiple_of(2) {
                    return Err(FormatError::corrupt(
                        JPEG,
                        "arithmetic conditioning segment of the wrong length",
                    ));
                }
                emit(out, marker, &body);
            }
            SOS => {
                self.check_scan_header(&body)?;
                emit(out, marker, &body);
                self.scans += 1;
                self.state = State::Entropy { pending_ff: false };
            }
            APP0 => self.on_app0(&body, out, report),
            APP1 => self.on_app1(&body, out, report),
            APP2 => {
                if body.starts_with(b"ICC_PROFILE\0") {
                    emit(out, marker, &body);
                } else if body.starts_with(b"MPF\0") {
                    self.mpf = true;
                    report.strip("JPEG:MPF", Some(StrippedCategory::EmbeddedThumbnail));
                } else {
                    report.strip("JPEG:APP2", None);
                }
            }
            APP13 => report.strip("JPEG:APP13", Some(StrippedCategory::Iptc)),
            APP14 => {
                if body.starts_with(b"Adobe") && body.len() >= 12 {
                    emit(out, marker, &body);
                } else {
                    report.strip("JPEG:APP14", None);
                }
            }
            0xE3..=0xEF => report.strip(&format!("JPEG:APP{}", marker - APP0), None),
            COM => report.strip("JPEG:COM", Some(StrippedCategory::TextComments)),
            DNL | DHP | EXP | JPG | 0xF0..=0xFD => {
                return Err(FormatError::unsupported(
                    JPEG,
                    format!(
                        "{} segments (hierarchical or JPEG extension coding)",
                        marker_name(marker)
                    ),
                ));
            }
            _ => {
                return Err(FormatError::corrupt(
                    JPEG,
                    format!("unknown marker {}", marker_name(marker)),
                ));
            }
        }
        Ok(())
    }

    fn on_frame_header(&mut self, body: &[u8]) -> Result<(), FormatError> {
        if self.frame.is_some() {
            return Err(FormatError::corrupt(
                JPEG,
                "more than one frame header (SOF)",
            ));
        }
        let corrupt = || FormatError::corrupt(JPEG, "malformed frame header (SOF)");
        if body.len() < 6 {
            return Err(corrupt());
        }
        let precision = body[0];
        let height = u32::from(u16::from_be_bytes([body[1], body[2]]));
        let width = u32::from(u16::from_be_bytes([body[3], body[4]]));
        let components = usize::from(body[5]);
        if !(2..=16).contains(&precision)
            || !(1..=4).contains(&components)
            || body.len() != 6 + 3 * components
        {
            return Err(corrupt());
        }
        for component in body[6..].chunks_exact(3) {
            let (h, v) = (component[1] >> 4, component[1] & 0x0F);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || component[2] > 3 {
                return Err(corrupt());
            }
        }
        check_dimensions(JPEG, width, height, &self.options)?;
        self.frame = Some((width, height));
        Ok(())
    }

    fn check_scan_header(&self, body: &[u8]) -> Result<(), FormatError> {
        if self.frame.is_none() {
            return Err(FormatError::corrupt(
                JPEG,
                "image data (SOS) before the frame header (SOF)",
            ));
        }
        let components = usize::from(body.first().copied().unwrap_or(0));
        if !(1..=4).contains(&components) || body.len() != 1 + 2 * components + 3 {
            return Err(FormatError::corrupt(JPEG, "malformed scan header (SOS)"));
        }
        Ok(())
    }

    fn on_app0(&mut self, body: &[u8], out: &mut Vec<u8>, report: &mut StripReport) {
        if body.starts_with(b"JFIF\0") && body.len() >= 14 && !self.jfif_kept {
            // Version, units and densities are kept; an embedded thumbnail is cut out.
            let mut kept = body[..14].to_vec();
            if body.len() > 14 || body[12] != 0 || body[13] != 0 {
                kept[12] = 0;
                kept[13] = 0;
                report.strip("JFIF:thumbnail", Some(StrippedCategory::EmbeddedThumbnail));
            }
            emit(out, APP0, &kept);
            self.jfif_kept = true;
        } else if body.starts_with(b"JFXX\0") {
            report.strip("JPEG:JFXX", Some(StrippedCategory::EmbeddedThumbnail));
        } else {
            report.strip("JPEG:APP0", None);
        }
    }

    fn on_app1(&mut self, body: &[u8], out: &mut Vec<u8>, report: &mut StripReport) {
        if body.starts_with(XMP_HEADER) || body.starts_with(XMP_EXTENDED_HEADER) {
            report.strip("JPEG:XMP", Some(StrippedCategory::Xmp));
            return;
        }
        let Some(tiff) = body.strip_prefix(EXIF_HEADER) else {
            report.strip("JPEG:APP1", None);
            return;
        };
        match exif::rewrite(tiff, self.options.strip_capture_date_time) {
            Ok(rewritten) => {
                for (tag, category) in &rewritten.removed {
                    report.strip(tag, *category);
                }
                if self.exif_kept {
                    // Only the first EXIF block is kept; a second one is an anomaly.
                    report.strip("JPEG:APP1", None);
                    return;
                }
                if let Some(tiff) = rewritten.tiff {
                    let mut segment = EXIF_HEADER.to_vec();
                    segment.extend_from_slice(&tiff);
                    emit(out, APP1, &segment);
                    self.exif_kept = true;
                    self.orientation = rewritten.orientation;
                }
            }
            Err(exif::Malformed(_)) => report.strip("EXIF:malformed", None),
        }
    }

    pub(crate) fn finish(self, report: &mut StripReport) -> Result<Outcome, FormatError> {
        let detail = match self.state {
            State::End => {
                if self.trailing > 0 {
                    if !self.mpf {
                        return Err(FormatError::TrailingData {
                            format: JPEG,
                            bytes: self.trailing,
                        });
                    }
                    report.strip("JPEG:MPF", Some(StrippedCategory::EmbeddedThumbnail));
                }
                let (width, height) = self
                    .frame
                    .expect("EOI is only accepted after a scan, which needs a frame header");
                return Ok(Outcome {
                    content_type: JPEG,
                    width,
                    height,
                    orientation: self.orientation,
                });
            }
            State::Entropy { .. } => {
                "the file ends inside the image data, before the end-of-image marker"
            }
            State::Length | State::Body => "the file ends inside a header segment",
            State::StartOfImage | State::MarkerPrefix | State::MarkerCode => {
                "the file ends before the end-of-image marker"
            }
        };
        Err(FormatError::truncated(JPEG, detail))
    }
}

fn emit(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    // Bodies come from a 16-bit length field or are rewritten smaller, so this cannot overflow.
    let length = u16::try_from(body.len() + 2).expect("segment bodies are at most 65,533 bytes");
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
}

fn check_quantization_tables(mut body: &[u8]) -> Result<(), FormatError> {
    let corrupt = || FormatError::corrupt(JPEG, "malformed quantization table (DQT)");
    if body.is_empty() {
        return Err(corrupt());
    }
    while let Some((&spec, rest)) = body.split_first() {
        let (precision, id) = (spec >> 4, spec & 0x0F);
        if precision > 1 || id > 3 {
            return Err(corrupt());
        }
        let size = 64 * (usize::from(precision) + 1);
        body = rest.get(size..).ok_or_else(corrupt)?;
    }
    Ok(())
}

fn check_huffman_tables(mut body: &[u8]) -> Result<(), FormatError> {
    let corrupt = || FormatError::corrupt(JPEG, "malformed Huffman table (DHT)");
    if body.is_empty() {
        return Err(corrupt());
    }
    while let Some((&spec, rest)) = body.split_first() {
        let (class, id) = (spec >> 4, spec & 0x0F);
        if class > 1 || id > 3 {
            return Err(corrupt());
        }
        let counts = rest.get(..16).ok_or_else(corrupt)?;
        let symbols: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if symbols > 256 {
            return Err(corrupt());
        }
        body = rest.get(16 + symbols..).ok_or_else(corrupt)?;
    }
    Ok(())
}

fn marker_name(marker: u8) -> String {
    match marker {
        0xC0..=0xCF if !matches!(marker, DHT | JPG | DAC) => format!("SOF{}", marker - 0xC0),
        0xE0..=0xEF => format!("APP{}", marker - APP0),
        DHT => "DHT".to_owned(),
        DQT => "DQT".to_owned(),
        DRI => "DRI".to_owned(),
        DNL => "DNL".to_owned(),
        DHP => "DHP".to_owned(),
        EXP => "EXP".to_owned(),
        SOS => "SOS".to_owned(),
        COM => "COM".to_owned(),
        _ => format!("0x{marker:02X}"),
    }
}
