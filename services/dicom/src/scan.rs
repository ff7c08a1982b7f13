//! A structural walk over an untrusted Part 10 file **before** dicom-object parses it.
//!
//! dicom-rs allocates a value's declared length before reading it, and builds nested sequences
//! recursively; a 40-byte file declaring a 4 GiB value, or a few kilobytes of sequences nested
//! a hundred thousand deep, would exhaust memory or the stack. This walk reads only the headers
//! and checks, without allocating: every defined length fits in what remains of its container,
//! sequences nest at most [`crate::ImportLimits::max_depth`] deep, there are at most
//! `max_elements` elements, and the transfer syntax is one this crate reads. After it, every
//! allocation dicom-object makes is bounded by the input's size.

use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use crate::{Error, uids};

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// What the walk learnt about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Transfer Syntax UID of the data set.
    pub transfer_syntax: String,
    /// Media Storage SOP Class UID of the meta information.
    pub sop_class: String,
    /// Media Storage SOP Instance UID of the meta information.
    pub sop_instance: String,
    /// Offset of the data set (just after the file meta group).
    pub dataset_start: usize,
}

struct Walker<'a> {
    bytes: &'a [u8],
    explicit: bool,
    elements: usize,
    max_elements: usize,
    max_depth: usize,
}

fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed(what.into())
}

/// Walks the whole file; see the module documentation.
pub fn walk(bytes: &[u8], max_depth: usize, max_elements: usize) -> Result<Layout, Error> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(Error::NotDicom);
    }
    // File meta information: always explicit VR little endian, group 0002.
    let mut walker = Walker {
        bytes,
        explicit: true,
        elements: 0,
        max_elements,
        max_depth,
    };
    let mut pos = 132;
    let (mut transfer_syntax, mut sop_class, mut sop_instance) = (None, None, None);
    while pos + 4 <= bytes.len() && u16_at(bytes, pos) == 0x0002 {
        let header = walker.header(pos, bytes.len())?;
        let value_end = header
            .value_start
            .checked_add(header.length as usize)
            .filter(|end| *end <= bytes.len() && header.length != UNDEFINED)
            .ok_or_else(|| malformed("file meta element with a length past the end"))?;
        let text = || {
            String::from_utf8_lossy(&bytes[header.value_start..value_end])
                .trim_end_matches(['\0', ' '])
                .to_owned()
        };
        match header.tag.1 {
            0x0002 => sop_class = Some(text()),
            0x0003 => sop_instance = Some(text()),
            0x0010 => transfer_syntax = Some(text()),
            _ => {}
        }
        pos = value_end;
    }
    let transfer_syntax =
        transfer_syntax.ok_or_else(|| malformed("no Transfer Syntax UID in the file meta"))?;
    walker.explicit = match transfer_syntax.as_str() {
        uids::IMPLICIT_VR_LITTLE_ENDIAN => false,
        uids::EXPLICIT_VR_LITTLE_ENDIAN | uids::JPEG_BASELINE | uids::JPEG_EXTENDED => true,
        other => {
            return Err(Error::Unsupported(format!(
                "transfer syntax {other}; export as JPEG baseline or uncompressed little endian"
            )));
        }
    };
    let dataset_start = pos;
    walker.dataset(pos, bytes.len(), 0, false)?;
    Ok(Layout {
        transfer_syntax,
        sop_class: sop_class.ok_or_else(|| malformed("no Media Storage SOP Class UID"))?,
        sop_instance: sop_instance.ok_or_else(|| malformed("no Media Storage SOP Instance UID"))?,
        dataset_start,
    })
}

struct Header {
    tag: (u16, u16),
    vr: Option<VR>,
    length: u32,
    value_start: usize,
}

fn u16_at(bytes: &[u8], pos: usize) -> u16 {
    u16::from_le_bytes([bytes[pos], bytes[pos + 1]])
}

fn u32_at(bytes: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
}

impl Walker<'_> {
    /// Reads an element header at `pos`, which must end before `end`.
    fn header(&mut self, pos: usize, end: usize) -> Result<Header, Error> {
        self.elements += 1;
        if self.elements > self.max_elements {
            return Err(malformed(format!(
                "more than {} elements",
                self.max_elements
            )));
        }
        let need = |n: usize| {
            if pos + n <= end {
                Ok(())
            } else {
                Err(malformed(format!(
                    "truncated element header at offset {pos}"
                )))
            }
        };
        need(8)?;
        let tag = (u16_at(self.bytes, pos), u16_at(self.bytes, pos + 2));
        if tag.0 == 0xFFFE || !self.explicit {
            // Items and delimiters have no VR, whatever the transfer syntax.
            return Ok(Header {
                tag,
                vr: None,
                length: u32_at(self.bytes, pos + 4),
                value_start: pos + 8,
            });
        }
        let vr = VR::from_binary([self.bytes[pos + 4], self.bytes[pos + 5]])
            .ok_or_else(|| malformed(format!("unknown VR at offset {}", pos + 4)))?;
        let long = matches!(
            vr,
            VR::OB
                | VR::OD
                | VR::OF
                | VR::OL
                | VR::OV
                | VR::OW
                | VR::SQ
                | VR::SV
                | VR::UC
                | VR::UN
                | VR::UR
                | VR::UT
                | VR::UV
        );
        if long {
            need(12)?;
            Ok(Header {
                tag,
                vr: Some(vr),
                length: u32_at(self.bytes, pos + 8),
                value_start: pos + 12,
            })
        } else {
            Ok(Header {
                tag,
                vr: Some(vr),
                length: u32::from(u16_at(self.bytes, pos + 6)),
                value_start: pos + 8,
            })
        }
    }

    /// Walks the elements of a data set in `[pos, end)`; with `until_item_end`, stops after an
    /// item delimiter (an item of undefined length). Returns where it stopped.
    fn dataset(
        &mut self,
        mut pos: usize,
        end: usize,
        depth: usize,
        until_item_end: bool,
    ) -> Result<usize, Error> {
        if depth > self.max_depth {
            return Err(malformed(format!(
                "sequences nested deeper than {}",
                self.max_depth
            )));
        }
        while pos < end {
            let header = self.header(pos, end)?;
            if header.tag == ITEM_END {
                return if until_item_end {
                    Ok(header.value_start)
                } else {
                    Err(malformed(format!(
                        "item delimiter outside an item at offset {pos}"
                    )))
                };
            }
            if header.tag.0 == 0xFFFE {
                return Err(malformed(format!(
                    "unexpected item or delimiter at offset {pos}"
                )));
            }
            let vr = header.vr.or_else(|| {
                // Implicit VR: what dicom-rs will decide, from the same dictionary.
                StandardDataDictionary
                    .by_tag(Tag(header.tag.0, header.tag.1))
                    .and_then(|entry| entry.vr.exact())
            });
            pos = if header.length == UNDEFINED {
                if header.tag == (0x7FE0, 0x0010) {
                    self.fragments(header.value_start, end)?
                } else if matches!(vr, Some(VR::SQ) | Some(VR::UN) | None) {
                    self.sequence(header.value_start, end, depth + 1, None)?
                } else {
                    return Err(malformed(format!(
                        "undefined length on a non-sequence at offset {pos}"
                    )));
                }
            } else {
                let value_end = self.fits(header.value_start, header.length, end)?;
                if vr == Some(VR::SQ) {
                    self.sequence(header.value_start, value_end, depth + 1, Some(value_end))?;
                }
                value_end
            };
        }
        if until_item_end {
            return Err(malformed("item without its delimiter"));
        }
        Ok(pos)
    }

    /// Walks the items of a sequence starting at `pos`: up to `defined_end`, or until the
    /// sequence delimiter.
    fn sequence(
        &mut self,
        mut pos: usize,
        end: usize,
        depth: usize,
        defined_end: Option<usize>,
    ) -> Result<usize, Error> {
        if depth > self.max_depth {
            return Err(malformed(format!(
                "sequences nested deeper than {}",
                self.max_depth
            )));
        }
        loop {
            if defined_end == Some(pos) {
                return Ok(pos);
            }
            let header = self.header(pos, end)?;
            match header.tag {
                SEQUENCE_END if defined_end.is_none() => return Ok(header.value_start),
                ITEM if header.length == UNDEFINED => {
                    pos = self.dataset(header.value_start, end, depth, true)?;
                }
                ITEM => {
                    let item_end = self.fits(header.value_start, header.length, end)?;
                    self.dataset(header.value_start, item_end, depth, false)?;
                    pos = item_end;
                }
                _ => {
                    return Err(malformed(format!(
                        "item expected in a sequence at offset {pos}"
                    )));
                }
            }
        }
    }

    /// Encapsulated pixel data: items of defined length up to the sequence delimiter.
    fn fragments(&mut self, mut pos: usize, end: usize) -> Result<usize, Error> {
        loop {
            let header = self.header(pos, end)?;
            match header.tag {
                SEQUENCE_END => return Ok(header.value_start),
                ITEM if header.length != UNDEFINED => {
                    pos = self.fits(header.value_start, header.length, end)?;
                }
                _ => {
                    return Err(malformed(format!(
                        "pixel data fragment expected at offset {pos}"
                    )));
                }
            }
        }
    }

    fn fits(&self, start: usize, length: u32, end: usize) -> Result<usize, Error> {
        start
            .checked_add(length as usize)
            .filter(|value_end| *value_end <= end)
            .ok_or_else(|| {
                malformed(format!(
                    "length {length} at offset {start} runs past the end of its container"
                ))
            })
    }
}
