//! EXIF whitelist: parses a TIFF structure (JPEG `APP1` Exif body after `Exif\0\0`, or a PNG
//! `eXIf` chunk) and writes a fresh one holding only the orientation and the capture date/time.
//!
//! The input is hostile: every offset is bounds-checked, each IFD may be visited once (so an
//! offset loop is an error, not an endless walk), the walk has a fixed depth (IFD0, its Exif /
//! GPS / interoperability sub-IFDs, IFD1) and nothing is allocated from a count before the count
//! was checked against the data length.

use super::StrippedCategory;

/// The result of the rewrite.
#[derive(Debug, Default)]
pub(crate) struct ExifRewrite {
    /// The new TIFF structure, `None` when nothing was worth keeping.
    pub(crate) tiff: Option<Vec<u8>>,
    /// The kept orientation.
    pub(crate) orientation: Option<u8>,
    /// Removed tags, in the order met.
    pub(crate) removed: Vec<(String, Option<StrippedCategory>)>,
}

/// The EXIF block cannot be walked safely; the caller drops all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

type Parsed<T> = Result<T, Malformed>;

const TAG_ORIENTATION: u16 = 0x0112;
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_GPS_IFD: u16 = 0x8825;
const TAG_INTEROP_IFD: u16 = 0xA005;
/// Capture date/time tags of the Exif sub-IFD that are kept unless asked otherwise.
const CAPTURE_DATE_TIME_TAGS: [u16; 5] = [0x9003, 0x9004, 0x9010, 0x9011, 0x9012];
/// Longest kept date/time value (`YYYY:MM:DD HH:MM:SS` plus NUL is 20 bytes).
const MAX_DATE_TIME_LEN: u32 = 32;
/// IFDs one EXIF block may hold in this walk (IFD0, Exif, GPS, interoperability, IFD1).
const MAX_IFDS: usize = 5;

const TYPE_ASCII: u16 = 2;
const TYPE_SHORT: u16 = 3;
const TYPE_LONG: u16 = 4;
const TYPE_IFD: u16 = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u16(self, bytes: [u8; 2]) -> u16 {
        match self {
            ByteOrder::Little => u16::from_le_bytes(bytes),
            ByteOrder::Big => u16::from_be_bytes(bytes),
        }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(bytes),
            ByteOrder::Big => u32::from_be_bytes(bytes),
        }
    }

    fn put_u16(self, out: &mut Vec<u8>, value: u16) {
        out.extend_from_slice(&match self {
            ByteOrder::Little => value.to_le_bytes(),
            ByteOrder::Big => value.to_be_bytes(),
        });
    }

    fn put_u32(self, out: &mut Vec<u8>, value: u32) {
        out.extend_from_slice(&match self {
            ByteOrder::Little => value.to_le_bytes(),
            ByteOrder::Big => value.to_be_bytes(),
        });
    }
}

/// One 12-byte IFD entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    /// Where the 4-byte value/offset field sits in the TIFF data.
    field: usize,
}

struct Tiff<'a> {
    data: &'a [u8],
    order: ByteOrder,
    visited: Vec<u32>,
}

impl<'a> Tiff<'a> {
    fn bytes(&self, at: usize, len: usize) -> Parsed<&'a [u8]> {
        at.checked_add(len)
            .and_then(|end| self.data.get(at..end))
            .ok_or(Malformed("offset out of range"))
    }

    fn u16_at(&self, at: usize) -> Parsed<u16> {
        let b = self.bytes(at, 2)?;
        Ok(self.order.u16([b[0], b[1]]))
    }

    fn u32_at(&self, at: usize) -> Parsed<u32> {
        let b = self.bytes(at, 4)?;
        Ok(self.order.u32([b[0], b[1], b[2], b[3]]))
    }

    /// Reads the IFD at `offset`; returns its entries and the next-IFD offset (0 when absent).
    fn ifd(&mut self, offset: u32) -> Parsed<(Vec<Entry>, u32)> {
        if self.visited.contains(&offset) {
            return Err(Malformed("IFD offsets form a loop"));
        }
        if self.visited.len() >= MAX_IFDS {
            return Err(Malformed("too many IFDs"));
        }
        self.visited.push(offset);
        let start = usize::try_from(offset).map_err(|_| Malformed("offset out of range"))?;
        if start < 8 {
            return Err(Malformed("IFD overlaps the TIFF header"));
        }
        let count = usize::from(self.u16_at(start)?);
        // Checked against the data before allocating anything from `count`.
        self.bytes(start + 2, count * 12)?;
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = start + 2 + i * 12;
            let entry = Entry {
                tag: self.u16_at(at)?,
                kind: self.u16_at(at + 2)?,
                count: self.u32_at(at + 4)?,
                field: at + 8,
            };
            // Validates where the value lives even for tags that are dropped: a block with
            // dangling offsets is not trusted at all.
            self.value(&entry)?;
            entries.push(entry);
        }
        let next_at = start + 2 + count * 12;
        let next = if self.bytes(next_at, 4).is_ok() {
            self.u32_at(next_at)?
        } else {
            0
        };
        Ok((entries, next))
    }

    /// The value bytes of an entry, `None` for a type this walk does not know (TIFF readers
    /// must skip those).
    fn value(&self, entry: &Entry) -> Parsed<Option<&'a [u8]>> {
        let unit: u64 = match entry.kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 => 8,
            _ => return Ok(None),
        };
        let len = unit * u64::from(entry.count);
        if len <= 4 {
            let len = usize::try_from(len).map_err(|_| Malformed("value too large"))?;
            return self.bytes(entry.field, len).map(Some);
        }
        let len = usize::try_from(len).map_err(|_| Malformed("value too large"))?;
        let offset = usize::try_from(self.u32_at(entry.field)?)
            .map_err(|_| Malformed("offset out of range"))?;
        self.bytes(offset, len).map(Some)
    }

    /// The IFD offset held by a pointer tag.
    fn pointer(&self, entry: &Entry) -> Parsed<u32> {
        if !matches!(entry.kind, TYPE_LONG | TYPE_IFD) || entry.count != 1 {
            return Err(Malformed("sub-IFD pointer of the wrong type"));
        }
        self.u32_at(entry.field)
    }
}

/// A kept Exif sub-IFD entry, with its value bytes in the input byte order.
struct KeptEntry {
    tag: u16,
    kind: u16,
    count: u32,
    value: Vec<u8>,
}

/// Parses `tiff` and keeps only orientation and (unless `strip_capture_date_time`) the capture
/// date/time.
pub(crate) fn rewrite(
    tiff: &[u8],
    strip_capture_date_time: bool,
) -> Result<ExifRewrite, Malformed> {
    let order = match tiff.get(..4) {
        Some([b'I', b'I', 42, 0]) => ByteOrder::Little,
        Some([b'M', b'M', 0, 42]) => ByteOrder::Big,
        _ => return Err(Malformed("not a TIFF header")),
    };
    let mut t = Tiff {
        data: tiff,
        order,
        visited: Vec::with_capacity(MAX_IFDS),
    };
    let mut out = ExifRewrite::default();
    let mut kept: Vec<KeptEntry> = Vec::new();

    let ifd0_offset = t.u32_at(4)?;
    let (ifd0, next) = t.ifd(ifd0_offset)?;
    for entry in &ifd0 {
        match entry.tag {
            TAG_ORIENTATION => {
                let value = if entry.kind == TYPE_SHORT && entry.count == 1 {
                    t.u16_at(entry.field)?
                } else {
                    0
                };
                match u8::try_from(value) {
                    Ok(v @ 1..=8) if out.orientation.is_none() => out.orientation = Some(v),
                    _ => out.removed.push(("EXIF:Orientation".to_owned(), None)),
                }
            }
            TAG_EXIF_IFD => {
                let (exif, _) = t.ifd(t.pointer(entry)?)?;
                for sub in &exif {
                    if sub.tag == TAG_INTEROP_IFD {
                        t.ifd(t.pointer(sub)?)?;
                        out.removed.push(("EXIF:InteropIFD".to_owned(), None));
                    } else if CAPTURE_DATE_TIME_TAGS.contains(&sub.tag) {
                        let name = format!("EXIF:{}", tag_name(sub.tag).unwrap_or("DateTime"));
                        if strip_capture_date_time {
                            out.removed
                                .push((name, Some(StrippedCategory::CaptureDateTime)));
                        } else if let Some(value) = date_time_value(&t, sub)?
                            && !kept.iter().any(|k| k.tag == sub.tag)
                        {
                            kept.push(KeptEntry {
                                tag: sub.tag,
                                kind: sub.kind,
                                count: sub.count,
                                value: value.to_vec(),
                            });
                        } else {
                            out.removed.push((name, None));
                        }
                    } else {
                        out.removed.push(removed_tag(sub.tag));
                    }
                }
            }
            TAG_GPS_IFD => {
                let (gps, _) = t.ifd(t.pointer(entry)?)?;
                if gps.is_empty() {
                    out.removed.push(("EXIF:GPSInfo".to_owned(), None));
                }
                for sub in &gps {
                    let name = match gps_tag_name(sub.tag) {
                        Some(name) => format!("EXIF:{name}"),
                        None => format!("EXIF:GPS:0x{:04X}", sub.tag),
                    };
                    out.removed
                        .push((name, Some(StrippedCategory::GpsLocation)));
                }
            }
            TAG_INTEROP_IFD => {
                t.ifd(t.pointer(entry)?)?;
                out.removed.push(("EXIF:InteropIFD".to_owned(), None));
            }
            tag => out.removed.push(removed_tag(tag)),
        }
    }
    if next != 0 {
        // IFD1 holds the thumbnail; it is only checked for sanity, never copied.
        t.ifd(next)?;
        out.removed.push((
            "EXIF:IFD1".to_owned(),
            Some(StrippedCategory::EmbeddedThumbnail),
        ));
    }
    kept.sort_by_key(|k| k.tag);
    if out.orientation.is_some() || !kept.is_empty() {
        out.tiff = Some(write(order, out.orientation, &kept));
    }
    Ok(out)
}

/// The value of a capture date/time tag if it looks like one: ASCII made of digits, `:`, space,
/// `+` and `-`, NUL-terminated, short. Anything else (free text hidden in a date tag) is dropped.
fn date_time_value<'a>(t: &Tiff<'a>, entry: &Entry) -> Parsed<Option<&'a [u8]>> {
    if entry.kind != TYPE_ASCII || entry.count == 0 || entry.count > MAX_DATE_TIME_LEN {
        return Ok(None);
    }
    let Some(value) = t.value(entry)? else {
        return Ok(None);
    };
    let text_len = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    let (text, padding) = value.split_at(text_len);
    let plausible = text
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b':' | b' ' | b'+' | b'-'))
        && padding.iter().all(|&b| b == 0);
    Ok(plausible.then_some(value))
}

/// Writes a minimal TIFF: IFD0 (Orientation, Exif pointer), then the Exif IFD, then values.
fn write(order: ByteOrder, orientation: Option<u8>, kept: &[KeptEntry]) -> Vec<u8> {
    let ifd0_entries = usize::from(orientation.is_some()) + usize::from(!kept.is_empty());
    let ifd0_len = 2 + 12 * ifd0_entries + 4;
    let exif_offset = 8 + ifd0_len;
    let exif_len = if kept.is_empty() {
        0
    } else {
        2 + 12 * kept.len() + 4
    };
    let mut data_offset = exif_offset + exif_len;

    let mut out = Vec::with_capacity(data_offset + 64);
    match order {
        ByteOrder::Little => out.extend_from_slice(b"II"),
        ByteOrder::Big => out.extend_from_slice(b"MM"),
    }
    order.put_u16(&mut out, 42);
    order.put_u32(&mut out, 8);

    // Counts and offsets below are bounded by the handful of kept tags (≤ 5 entries of ≤ 32
    // bytes each), so the conversions cannot overflow.
    order.put_u16(&mut out, ifd0_entries as u16);
    if let Some(orientation) = orientation {
        order.put_u16(&mut out, TAG_ORIENTATION);
        order.put_u16(&mut out, TYPE_SHORT);
        order.put_u32(&mut out, 1);
        order.put_u16(&mut out, u16::from(orientation));
        order.put_u16(&mut out, 0);
    }
    if !kept.is_empty() {
        order.put_u16(&mut out, TAG_EXIF_IFD);
        order.put_u16(&mut out, TYPE_LONG);
        order.put_u32(&mut out, 1);
        order.put_u32(&mut out, exif_offset as u32);
    }
    order.put_u32(&mut out, 0);

    if !kept.is_empty() {
        let mut values = Vec::new();
        order.put_u16(&mut out, kept.len() as u16);
        for entry in kept {
            order.put_u16(&mut out, entry.tag);
            order.put_u16(&mut out, entry.kind);
            order.put_u32(&mut out, entry.count);
            if entry.value.len() <= 4 {
                let mut field = [0u8; 4];
                field[..entry.value.len()].copy_from_slice(&entry.value);
                out.extend_from_slice(&field);
            } else {
                order.put_u32(&mut out, data_offset as u32);
                values.extend_from_slice(&entry.value);
                // TIFF values start on a word boundary.
                if entry.value.len() % 2 == 1 {
                    values.push(0);
                }
                data_offset = exif_offset + exif_len + values.len();
            }
        }
        order.put_u32(&mut out, 0);
        out.extend_from_slice(&values);
    }
    out
}

/// Name and category of a removed IFD0 / Exif sub-IFD tag.
fn removed_tag(tag: u16) -> (String, Option<StrippedCategory>) {
    let name = match tag_name(tag) {
        Some(name) => format!("EXIF:{name}"),
        None => format!("EXIF:0x{tag:04X}"),
    };
    (name, tag_category(tag))
}

fn tag_category(tag: u16) -> Option<StrippedCategory> {
    use StrippedCategory as C;
    Some(match tag {
        // Device names and serials: Make, Model, HostComputer, ImageUniqueID, BodySerialNumber,
        // LensMake, LensModel, LensSerialNumber, DNG CameraSerialNumber.
        0x010F | 0x0110 | 0x013C | 0xA420 | 0xA431 | 0xA433 | 0xA434 | 0xA435 | 0xC62F => {
            C::DeviceIdentifiers
        }
        // Artist, Copyright, Windows XPAuthor, CameraOwnerName (a person, per the contract).
        0x013B | 0x8298 | 0x9C9D | 0xA430 => C::PersonNames,
        0x927C => C::MakerNotes,
        // ImageDescription, DocumentName, UserComment, Windows XPTitle/XPComment/XPKeywords/
        // XPSubject.
        0x010E | 0x010D | 0x9286 | 0x9C9B | 0x9C9C | 0x9C9E | 0x9C9F => C::TextComments,
        // XMP and IPTC embedded in TIFF tags.
        0x02BC => C::Xmp,
        0x83BB => C::Iptc,
        // Thumbnail pointers (normally in IFD1).
        0x0201 | 0x0202 => C::EmbeddedThumbnail,
        _ => return None,
    })
}

fn tag_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        0x00FE => "NewSubfileType",
        0x0100 => "ImageWidth",
        0x0101 => "ImageLength",
        0x0102 => "BitsPerSample",
        0x0103 => "Compression",
        0x0106 => "PhotometricInterpretation",
        0x010D => "DocumentName",
        0x010E => "ImageDescription",
        0x010F => "Make",
        0x0110 => "Model",
        0x0111 => "StripOffsets",
        0x0112 => "Orientation",
        0x0115 => "SamplesPerPixel",
        0x011A => "XResolution",
        0x011B => "YResolution",
        0x0128 => "ResolutionUnit",
        0x0131 => "Software",
        0x0132 => "DateTime",
        0x013B => "Artist",
        0x013C => "HostComputer",
        0x013E => "WhitePoint",
        0x013F => "PrimaryChromaticities",
        0x0201 => "JPEGInterchangeFormat",
        0x0202 => "JPEGInterchangeFormatLength",
        0x0211 => "YCbCrCoefficients",
        0x0213 => "YCbCrPositioning",
        0x0214 => "ReferenceBlackWhite",
        0x02BC => "XMLPacket",
        0x8298 => "Copyright",
        0x829A => "ExposureTime",
        0x829D => "FNumber",
        0x83BB => "IPTC-NAA",
        0x8773 => "InterColorProfile",
        0x8822 => "ExposureProgram",
        0x8827 => "ISOSpeedRatings",
        0x8830 => "SensitivityType",
        0x9000 => "ExifVersion",
        0x9003 => "DateTimeOriginal",
        0x9004 => "DateTimeDigitized",
        0x9010 => "OffsetTime",
        0x9011 => "OffsetTimeOriginal",
        0x9012 => "OffsetTimeDigitized",
        0x9101 => "ComponentsConfiguration",
        0x9102 => "CompressedBitsPerPixel",
        0x9201 => "ShutterSpeedValue",
        0x9202 => "ApertureValue",
        0x9203 => "BrightnessValue",
        0x9204 => "ExposureBiasValue",
        0x9205 => "MaxApertureValue",
        0x9206 => "SubjectDistance",
        0x9207 => "MeteringMode",
        0x9208 => "LightSource",
        0x9209 => "Flash",
        0x920A => "FocalLength",
        0x9214 => "SubjectArea",
        0x927C => "MakerNote",
        0x9286 => "UserComment",
        0x9290 => "SubSecTime",
        0x9291 => "SubSecTimeOriginal",
        0x9292 => "SubSecTimeDigitized",
        0x9C9B => "XPTitle",
        0x9C9C => "XPComment",
        0x9C9D => "XPAuthor",
        0x9C9E => "XPKeywords",
        0x9C9F => "XPSubject",
        0xA000 => "FlashpixVersion",
        0xA001 => "ColorSpace",
        0xA002 => "PixelXDimension",
        0xA003 => "PixelYDimension",
        0xA20E => "FocalPlaneXResolution",
        0xA20F => "FocalPlaneYResolution",
        0xA210 => "FocalPlaneResolutionUnit",
        0xA215 => "ExposureIndex",
        0xA217 => "SensingMethod",
        0xA300 => "FileSource",
        0xA301 => "SceneType",
        0xA401 => "CustomRendered",
        0xA402 => "ExposureMode",
        0xA403 => "WhiteBalance",
        0xA404 => "DigitalZoomRatio",
        0xA405 => "FocalLengthIn35mmFilm",
        0xA406 => "SceneCaptureType",
        0xA407 => "GainControl",
        0xA408 => "Contrast",
        0xA409 => "Saturation",
        0xA40A => "Sharpness",
        0xA40C => "SubjectDistanceRange",
        0xA420 => "ImageUniqueID",
        0xA430 => "CameraOwnerName",
        0xA431 => "BodySerialNumber",
        0xA432 => "LensSpecification",
        0xA433 => "LensMake",
        0xA434 => "LensModel",
        0xA435 => "LensSerialNumber",
        0xC4A5 => "PrintImageMatching",
        0xC62F => "CameraSerialNumber",
        _ => return None,
    })
}

fn gps_tag_name(tag: u16) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "GPSVersionID",
        "GPSLatitudeRef",
        "GPSLatitude",
        "GPSLongitudeRef",
        "GPSLongitude",
        "GPSAltitudeRef",
        "GPSAltitude",
        "GPSTimeStamp",
        "GPSSatellites",
        "GPSStatus",
        "GPSMeasureMode",
        "GPSDOP",
        "GPSSpeedRef",
        "GPSSpeed",
        "GPSTrackRef",
        "GPSTrack",
        "GPSImgDirectionRef",
        "GPSImgDirection",
        "GPSMapDatum",
        "GPSDestLatitudeRef",
        "GPSDestLatitude",
        "GPSDestLongitudeRef",
        "GPSDestLongitude",
        "GPSDestBearingRef",
        "GPSDestBearing",
        "GPSDestDistanceRef",
        "GPSDestDistance",
        "GPSProcessingMethod",
        "GPSAreaInformation",
        "GPSDateStamp",
        "GPSDifferential",
        "GPSHPositioningError",
    ];
    NAMES.get(usize::from(tag)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le_tiff_with_ifd0(entries: &[(u16, u16, u32, u32)], next: u32) -> Vec<u8> {
        let mut t = b"II*\0".to_vec();
        t.extend_from_slice(&8u32.to_le_bytes());
        t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for &(tag, kind, count, value) in entries {
            t.extend_from_slice(&tag.to_le_bytes());
            t.extend_from_slice(&kind.to_le_bytes());
            t.extend_from_slice(&count.to_le_bytes());
            t.extend_from_slice(&value.to_le_bytes());
        }
        t.extend_from_slice(&next.to_le_bytes());
        t
    }

    #[test]
    fn an_exif_pointer_back_to_ifd0_is_a_loop_not_an_endless_walk() {
        let tiff = le_tiff_with_ifd0(&[(TAG_ORIENTATION, 3, 1, 6), (TAG_EXIF_IFD, 4, 1, 8)], 0);
        assert_eq!(
            rewrite(&tiff, false).err(),
            Some(Malformed("IFD offsets form a loop"))
        );
    }

    #[test]
    fn an_ifd1_pointing_at_ifd0_is_a_loop() {
        let tiff = le_tiff_with_ifd0(&[(TAG_ORIENTATION, 3, 1, 6)], 8);
        assert!(rewrite(&tiff, false).is_err());
    }

    #[test]
    fn offsets_out_of_range_are_malformed() {
        let cases: [(&str, Vec<u8>); 4] = [
            ("ifd0 offset", {
                let mut t = le_tiff_with_ifd0(&[], 0);
                t[4..8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
                t
            }),
            (
                "gps pointer",
                le_tiff_with_ifd0(&[(TAG_GPS_IFD, 4, 1, 60_000)], 0),
            ),
            (
                "value offset",
                le_tiff_with_ifd0(&[(0x010F, 2, 4_000_000_000, 30)], 0),
            ),
            (
                "ifd1 offset",
                le_tiff_with_ifd0(&[(TAG_ORIENTATION, 3, 1, 1)], 1 << 30),
            ),
        ];
        for (case, tiff) in cases {
            assert!(rewrite(&tiff, false).is_err(), "{case}");
        }
    }

    #[test]
    fn a_huge_entry_count_is_checked_before_allocating() {
        let mut tiff = le_tiff_with_ifd0(&[], 0);
        tiff[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(rewrite(&tiff, false).is_err());
    }

    #[test]
    fn orientation_alone_gives_a_minimal_block_that_reads_back() {
        let tiff = le_tiff_with_ifd0(
            &[(TAG_ORIENTATION, 3, 1, 8), (0x010F, 2, 4, 0x0041_4141)],
            0,
        );
        let rewritten = rewrite(&tiff, false).expect("well formed");
        assert_eq!(rewritten.orientation, Some(8));
        assert_eq!(
            rewritten.removed,
            vec![(
                "EXIF:Make".to_owned(),
                Some(StrippedCategory::DeviceIdentifiers)
            )]
        );
        let again = rewrite(&rewritten.tiff.expect("orientation kept"), false).expect("valid");
        assert_eq!(again.orientation, Some(8));
        assert!(again.removed.is_empty());
    }

    #[test]
    fn free_text_hidden_in_a_date_tag_is_dropped() {
        let mut tiff = le_tiff_with_ifd0(&[(TAG_EXIF_IFD, 4, 1, 26)], 0);
        // Exif IFD at 26: one DateTimeOriginal entry pointing at a text value at 44.
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x9003u16.to_le_bytes());
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&12u32.to_le_bytes());
        tiff.extend_from_slice(&44u32.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(b"Jean Dupont\0");
        let rewritten = rewrite(&tiff, false).expect("well formed");
        assert!(rewritten.tiff.is_none());
        assert_eq!(rewritten.removed[0].0, "EXIF:DateTimeOriginal");
    }
}
