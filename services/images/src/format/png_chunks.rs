//! Streaming PNG sanitizer: walks the chunks, verifies every CRC, copies the whitelisted chunks
//! (image data included) as they arrive and drops or rewrites the rest.

use super::exif;
use super::{
    ContentType, FormatError, Outcome, SanitizeOptions, StripReport, StrippedCategory,
    check_dimensions, fill,
};

const PNG: ContentType = ContentType::Png;
const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// The PNG specification caps chunk lengths at 2^31 - 1.
const MAX_CHUNK_LEN: u32 = 0x7FFF_FFFF;
/// Largest `eXIf` chunk read and rewritten; a larger one is dropped unread (JPEG's EXIF cannot
/// exceed 64 KiB either, so real camera data fits).
const MAX_EXIF_LEN: u32 = 64 * 1024;
/// Enough of a text chunk to read its keyword (1-79 bytes plus the NUL separator).
const KEYWORD_PREFIX: usize = 80;

/// Ancillary chunks needed to render the image faithfully, copied as they are.
const KEPT_ANCILLARY: [&[u8; 4]; 9] = [
    b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"cICP", b"pHYs", b"sBIT", b"tRNS", b"bKGD",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Signature,
    ChunkHeader,
    ChunkData,
    Crc,
    End,
}

/// What happens to the current chunk's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Copied to the output as it arrives (header already written).
    Copy,
    /// Read whole, checked, then written (IHDR) or rewritten (eXIf).
    Collect,
    /// Discarded; the first bytes are kept to classify a text chunk by its keyword.
    Drop,
}

#[derive(Debug)]
pub(crate) struct PngSanitizer {
    options: SanitizeOptions,
    state: State,
    /// The current chunk's header, collected data (IHDR, eXIf ≤ 64 KiB) or keyword prefix.
    buf: Vec<u8>,
    /// The 4 CRC bytes of the current chunk.
    crc_bytes: Vec<u8>,
    chunk_type: [u8; 4],
    remaining: u32,
    disposition: Disposition,
    crc: crc32fast::Hasher,
    header: Option<Header>,
    saw_palette: bool,
    saw_idat: bool,
    idat_finished: bool,
    exif_kept: bool,
    orientation: Option<u8>,
    trailing: u64,
}

#[derive(Debug, Clone, Copy)]
struct Header {
    width: u32,
    height: u32,
    color_type: u8,
}

impl PngSanitizer {
    pub(crate) fn new(options: SanitizeOptions) -> PngSanitizer {
        PngSanitizer {
            options,
            state: State::Signature,
            buf: Vec::new(),
            crc_bytes: Vec::with_capacity(4),
            chunk_type: [0; 4],
            remaining: 0,
            disposition: Disposition::Drop,
            crc: crc32fast::Hasher::new(),
            header: None,
            saw_palette: false,
            saw_idat: false,
            idat_finished: false,
            exif_kept: false,
            orientation: None,
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
            self.step(&mut input, out, report)?;
        }
        Ok(())
    }

    fn step(
        &mut self,
        input: &mut &[u8],
        out: &mut Vec<u8>,
        report: &mut StripReport,
    ) -> Result<(), FormatError> {
        match self.state {
            State::Signature => {
                if fill(&mut self.buf, SIGNATURE.len(), input) {
                    if self.buf != SIGNATURE {
                        return Err(FormatError::corrupt(PNG, "bad signature"));
                    }
                    out.extend_from_slice(&SIGNATURE);
                    self.buf.clear();
                    self.state = State::ChunkHeader;
                }
            }
            State::ChunkHeader => {
                if fill(&mut self.buf, 8, input) {
                    let header = std::mem::take(&mut self.buf);
                    self.on_chunk_header(&header, out, report)?;
                }
            }
            State::ChunkData => {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (data, rest) = input.split_at(take);
                self.crc.update(data);
                match self.disposition {
                    Disposition::Copy => out.extend_from_slice(data),
                    Disposition::Collect => self.buf.extend_from_slice(data),
                    Disposition::Drop => {
                        let room = KEYWORD_PREFIX
                            .saturating_sub(self.buf.len())
                            .min(data.len());
                        self.buf.extend_from_slice(&data[..room]);
                    }
                }
                // `take` is at most `remaining`, a u32.
                self.remaining -= take as u32;
                *input = rest;
                if self.remaining == 0 {
                    self.state = State::Crc;
                }
            }
            State::Crc => {
                if fill(&mut self.crc_bytes, 4, input) {
                    let crc = [
                        self.crc_bytes[0],
                        self.crc_bytes[1],
                        self.crc_bytes[2],
                        self.crc_bytes[3],
                    ];
                    self.crc_bytes.clear();
                    self.on_chunk_end(crc, out, report)?;
                }
            }
            State::End => {
                self.trailing += input.len() as u64;
                *input = &[];
            }
        }
        Ok(())
    }

    fn on_chunk_header(
        &mut self,
        header: &[u8],
        out: &mut Vec<u8>,
        report: &mut StripReport,
    ) -> Result<(), FormatError> {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        let name = String::from_utf8_lossy(&kind).into_owned();
        if length > MAX_CHUNK_LEN {
            return Err(FormatError::corrupt(
                PNG,
                format!("chunk length {length} over 2^31 - 1"),
            ));
        }
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(FormatError::corrupt(PNG, "invalid chunk type"));
        }
        if self.header.is_none() && &kind != b"IHDR" {
            return Err(FormatError::corrupt(
                PNG,
                format!("first chunk is {name}, not IHDR"),
            ));
        }
        if self.saw_idat && &kind != b"IDAT" {
            self.idat_finished = true;
        }
        let critical = kind[0].is_ascii_uppercase();
        let disposition = match &kind {
            b"IHDR" => {
                if self.header.is_some() || length != 13 {
                    return Err(FormatError::corrupt(
                        PNG,
                        "duplicate or malformed IHDR chunk",
                    ));
                }
                Disposition::Collect
            }
            b"PLTE" => {
                if self.saw_idat || self.saw_palette {
                    return Err(FormatError::corrupt(
                        PNG,
                        "misplaced or duplicate PLTE chunk",
                    ));
                }
                self.saw_palette = true;
                Disposition::Copy
            }
            b"IDAT" => {
                if self.idat_finished {
                    return Err(FormatError::corrupt(PNG, "IDAT chunks are not consecutive"));
                }
                let palette_needed = self.header.is_some_and(|h| h.color_type == 3);
                if palette_needed && !self.saw_palette {
                    return Err(FormatError::corrupt(
                        PNG,
                        "palette image without a PLTE chunk",
                    ));
                }
                self.saw_idat = true;
                Disposition::Copy
            }
            b"IEND" => {
                if length != 0 {
                    return Err(FormatError::corrupt(PNG, "IEND chunk with data"));
                }
                if !self.saw_idat {
                    return Err(FormatError::corrupt(PNG, "no image data (IDAT chunk)"));
                }
                Disposition::Copy
            }
            _ if critical => {
                return Err(FormatError::unsupported(
                    PNG,
                    format!("unknown critical chunk {name}"),
                ));
            }
            kind if KEPT_ANCILLARY.contains(&kind) => Disposition::Copy,
            b"eXIf" if length <= MAX_EXIF_LEN => Disposition::Collect,
            b"eXIf" => {
                report.strip("PNG:eXIf", None);
                report.strip("EXIF:oversized", None);
                Disposition::Drop
            }
            b"tIME" if self.options.strip_capture_date_time => {
                report.strip("PNG:tIME", Some(StrippedCategory::CaptureDateTime));
                Disposition::Drop
            }
            b"tIME" if length == 7 => Disposition::Copy,
            // Text chunks are classified by keyword once their first bytes are in.
            b"tEXt" | b"zTXt" | b"iTXt" => Disposition::Drop,
            _ => {
                report.strip(&format!("PNG:{name}"), None);
                Disposition::Drop
            }
        };
        self.chunk_type = kind;
        self.remaining = length;
        self.disposition = disposition;
        self.crc = crc32fast::Hasher::new();
        self.crc.update(&kind);
        self.buf.clear();
        if disposition == Disposition::Copy {
            out.extend_from_slice(header);
        }
        self.state = if length == 0 {
            State::Crc
        } else {
            State::ChunkData
        };
        Ok(())
    }

    fn on_chunk_end(
        &mut self,
        crc: [u8; 4],
        out: &mut Vec<u8>,
        report: &mut StripReport,
    ) -> Result<(), FormatError> {
        let computed = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        if computed != u32::from_be_bytes(crc) {
            return Err(FormatError::corrupt(
                PNG,
                format!(
                    "CRC mismatch in {} chunk",
                    String::from_utf8_lossy(&self.chunk_type)
                ),
            ));
        }
        let data = std::mem::take(&mut self.buf);
        self.state = State::ChunkHeader;
        match (&self.chunk_type, self.disposition) {
            (_, Disposition::Copy) => {
                out.extend_from_slice(&crc);
                if &self.chunk_type == b"IEND" {
                    self.state = State::End;
                }
            }
            (b"IHDR", _) => {
                self.on_header(&data)?;
                write_chunk(out, b"IHDR", &data);
            }
            (b"eXIf", Disposition::Collect) => self.on_exif(&data, out, report),
            (b"tEXt" | b"zTXt" | b"iTXt", _) => {
                let name = format!("PNG:{}", String::from_utf8_lossy(&self.chunk_type));
                let keyword_end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                let category = match &data[..keyword_end] {
                    b"XML:com.adobe.xmp" | b"Raw profile type xmp" => StrippedCategory::Xmp,
                    b"Raw profile type iptc" | b"Raw profile type 8bim" => StrippedCategory::Iptc,
                    b"Author" | b"Copyright" => {
                        report.strip(&name, Some(StrippedCategory::PersonNames));
                        StrippedCategory::TextComments
                    }
                    _ => StrippedCategory::TextComments,
                };
                report.strip(&name, Some(category));
            }
            _ => {}
        }
        Ok(())
    }

    fn on_header(&mut self, data: &[u8]) -> Result<(), FormatError> {
        let width = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let height = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let (depth, color_type) = (data[8], data[9]);
        let depth_ok = match color_type {
            0 => matches!(depth, 1 | 2 | 4 | 8 | 16),
            3 => matches!(depth, 1 | 2 | 4 | 8),
            2 | 4 | 6 => matches!(depth, 8 | 16),
            _ => false,
        };
        if !depth_ok || data[10] != 0 || data[11] != 0 || data[12] > 1 {
            return Err(FormatError::corrupt(
                PNG,
                "invalid IHDR (colour type, bit depth or method)",
            ));
        }
        check_dimensions(PNG, width, height, &self.options)?;
        self.header = Some(Header {
            width,
            height,
            color_type,
        });
        Ok(())
    }

    fn on_exif(&mut self, data: &[u8], out: &mut Vec<u8>, report: &mut StripReport) {
        // Some writers wrongly keep JPEG's `Exif\0\0` prefix in eXIf; accept it.
        let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
        match exif::rewrite(tiff, self.options.strip_capture_date_time) {
            Ok(rewritten) => {
                for (tag, category) in &rewritten.removed {
                    report.strip(tag, *category);
                }
                match rewritten.tiff {
                    Some(tiff) if !self.exif_kept => {
                        write_chunk(out, b"eXIf", &tiff);
                        self.exif_kept = true;
                        self.orientation = rewritten.orientation;
                    }
                    Some(_) => report.strip("PNG:eXIf", None),
                    None => {}
                }
            }
            Err(exif::Malformed(_)) => {
                report.strip("PNG:eXIf", None);
                report.strip("EXIF:malformed", None);
            }
        }
    }

    pub(crate) fn finish(self, _report: &mut StripReport) -> Result<Outcome, FormatError> {
        if self.state != State::End {
            return Err(FormatError::truncated(
                PNG,
                "the file ends before the IEND chunk",
            ));
        }
        if self.trailing > 0 {
            return Err(FormatError::TrailingData {
                format: PNG,
                bytes: self.trailing,
            });
        }
        let header = self
            .header
            .expect("IEND is only accepted after IHDR, which is required first");
        Ok(Outcome {
            content_type: PNG,
            width: header.width,
            height: header.height,
            orientation: self.orientation,
        })
    }
}

fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("rewritten chunks are at most 64 KiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}
