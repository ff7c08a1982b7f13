//! Reading a dermatoscope's DICOM file: the image and what the request needs from its
//! attributes. The file is untrusted: size and structure are checked before dicom-object
//! parses it (see `scan`), and only single-frame photographic classes are taken.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions, file::ReadPreamble};
use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;

use crate::{Error, Laterality, scan, uids};

/// Bounds on what [`import`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Largest file, in bytes. Default 64 MiB.
    pub max_bytes: usize,
    /// Deepest sequence nesting. Default 8 (photographs use 2 or 3).
    pub max_depth: usize,
    /// Most data elements, counting those in sequences and pixel data fragments. Default 20,000.
    pub max_elements: usize,
    /// Largest width or height in pixels. Default 20,000, as for uploaded photos.
    pub max_side_px: u32,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 8,
            max_elements: 20_000,
            max_side_px: 20_000,
        }
    }
}

/// What a DICOM file brought.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedImage {
    /// SOP Class UID (one of the accepted ones).
    pub sop_class: String,
    pub pixels: Pixels,
    /// Acquisition (else content) date and time, as written: DICOM times are local.
    pub acquired_at: Option<DateTime>,
    /// The UTC offset of `acquired_at`, when the file says it.
    pub utc_offset: Option<Offset>,
    /// Anatomic Region's code meaning, else Body Part Examined, else Image Comments.
    pub body_site: Option<String>,
    pub laterality: Option<Laterality>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub device_serial_number: Option<String>,
    /// The patient as the file names them: for a warning when it is not the request's patient.
    pub patient: ImportedPatient,
}

/// The image itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pixels {
    /// The JPEG of encapsulated pixel data, as the device wrote it (the image pipeline checks it
    /// as any uploaded photo).
    Jpeg(Vec<u8>),
    /// Uncompressed 8-bit samples, interleaved (RGBRGB… or grey), row by row.
    Raw {
        width: u32,
        height: u32,
        /// 1 (greyscale) or 3 (RGB).
        samples_per_pixel: u8,
        data: Vec<u8>,
    },
}

/// Patient attributes of an imported file, as written there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedPatient {
    /// Patient ID (0010,0020).
    pub id: Option<String>,
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<Date>,
    /// `M`, `F` or `O`.
    pub sex: Option<String>,
}

/// Reads `bytes` as a DICOM Part 10 file from a dermatoscope or camera.
///
/// Accepted: VL Photographic, Dermoscopic Photography and Secondary Capture images, one frame,
/// either JPEG (baseline or extended, encapsulated) or uncompressed 8-bit RGB / MONOCHROME2.
/// Everything else is an error; nothing here panics or allocates much beyond the input's size.
pub fn import(bytes: &[u8], limits: &ImportLimits) -> Result<ImportedImage, Error> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let layout = scan::walk(bytes, limits.max_depth, limits.max_elements)?;
    if ![
        uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
        uids::DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE,
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    ]
    .contains(&layout.sop_class.as_str())
    {
        return Err(Error::Unsupported(format!(
            "SOP class {} is not a photograph (VL Photographic, Dermoscopic Photography or Secondary Capture)",
            layout.sop_class
        )));
    }
    // The walk bounded every length by the input, which is itself bounded: parsing can go ahead.
    let file = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(|error| Error::Malformed(error.to_string()))?;
    let obj: &InMemDicomObject = &file;
    let class = string(obj, tags::SOP_CLASS_UID);
    if class.as_deref() != Some(layout.sop_class.as_str()) {
        return Err(Error::Malformed(
            "the SOP class differs from the file meta's".into(),
        ));
    }
    if let Some(frames) = string(obj, tags::NUMBER_OF_FRAMES)
        && frames.parse::<u32>().ok() != Some(1)
    {
        return Err(Error::Unsupported(format!(
            "{frames} frames; send one image per file"
        )));
    }
    let pixels = pixels(obj, &layout.transfer_syntax, limits)?;
    let (acquired_at, utc_offset) = acquisition_time(obj);
    let laterality = string(obj, tags::IMAGE_LATERALITY)
        .or_else(|| string(obj, tags::LATERALITY))
        .and_then(|code| match code.as_str() {
            "L" => Some(Laterality::Left),
            "R" => Some(Laterality::Right),
            "B" => Some(Laterality::Both),
            "U" => Some(Laterality::Unpaired),
            _ => None,
        });
    let body_site = first_item(obj, tags::ANATOMIC_REGION_SEQUENCE)
        .and_then(|item| string(item, tags::CODE_MEANING))
        .or_else(|| string(obj, tags::BODY_PART_EXAMINED))
        .or_else(|| string(obj, tags::IMAGE_COMMENTS));
    let (family_name, given_names) = match string(obj, tags::PATIENT_NAME) {
        Some(name) => {
            // Only the alphabetic representation (before any `=`).
            let alphabetic = name.split('=').next().unwrap_or_default();
            let mut parts = alphabetic.split('^');
            let family = parts
                .next()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            let given = parts
                .next()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            (family, given)
        }
        None => (None, None),
    };
    Ok(ImportedImage {
        sop_class: layout.sop_class,
        pixels,
        acquired_at,
        utc_offset,
        body_site,
        laterality,
        manufacturer: string(obj, tags::MANUFACTURER),
        model: string(obj, tags::MANUFACTURER_MODEL_NAME),
        device_serial_number: string(obj, tags::DEVICE_SERIAL_NUMBER),
        patient: ImportedPatient {
            id: string(obj, tags::PATIENT_ID),
            family_name,
            given_names,
            birth_date: string(obj, tags::PATIENT_BIRTH_DATE).and_then(|d| date(&d)),
            sex: string(obj, tags::PATIENT_SEX),
        },
    })
}

fn pixels(
    obj: &InMemDicomObject,
    transfer_syntax: &str,
    limits: &ImportLimits,
) -> Result<Pixels, Error> {
    let number = |tag: Tag, name: &str| -> Result<u32, Error> {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u32>().ok())
            .ok_or_else(|| Error::Malformed(format!("no usable {name}")))
    };
    let (rows, columns) = (
        number(tags::ROWS, "Rows")?,
        number(tags::COLUMNS, "Columns")?,
    );
    if rows == 0 || columns == 0 || rows > limits.max_side_px || columns > limits.max_side_px {
        return Err(Error::Unsupported(format!(
            "{columns}x{rows} pixels; the limit is {} per side",
            limits.max_side_px
        )));
    }
    let data = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or_else(|| Error::Malformed("no Pixel Data".into()))?;
    if transfer_syntax == uids::JPEG_BASELINE || transfer_syntax == uids::JPEG_EXTENDED {
        let fragments = data.value().fragments().ok_or_else(|| {
            Error::Malformed("JPEG transfer syntax without encapsulated pixel data".into())
        })?;
        // One frame may span several fragments; they concatenate into one JPEG stream.
        let mut jpeg = Vec::with_capacity(fragments.iter().map(Vec::len).sum());
        for fragment in fragments {
            jpeg.extend_from_slice(fragment);
        }
        // Fragments are padded to an even length with one zero byte after EOI; the image
        // pipeline would take any byte after EOI for a smuggled payload.
        if jpeg.ends_with(&[0xFF, 0xD9, 0x00]) {
            jpeg.pop();
        }
        if !jpeg.starts_with(&[0xFF, 0xD8]) {
            return Err(Error::Malformed(
                "the pixel data is not a JPEG stream".into(),
            ));
        }
        return Ok(Pixels::Jpeg(jpeg));
    }
    let samples = number(tags::SAMPLES_PER_PIXEL, "Samples per Pixel")?;
    let bits = number(tags::BITS_ALLOCATED, "Bits Allocated")?;
    let photometric = string(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    let planar = number(tags::PLANAR_CONFIGURATION, "Planar Configuration").unwrap_or(0);
    let signed = number(tags::PIXEL_REPRESENTATION, "Pixel Representation").unwrap_or(0);
    match (samples, bits, photometric.as_str(), signed) {
        (1, 8, "MONOCHROME2", 0) | (3, 8, "RGB", 0) => {}
        _ => {
            return Err(Error::Unsupported(format!(
                "{photometric} pixels with {samples} samples of {bits} bits; only 8-bit RGB, MONOCHROME2 or JPEG are read"
            )));
        }
    }
    let bytes = data
        .to_bytes()
        .map_err(|_| Error::Malformed("unreadable Pixel Data".into()))?;
    let plane = rows as usize * columns as usize;
    let size = plane * samples as usize;
    let Some(bytes) = bytes.get(..size) else {
        return Err(Error::Malformed(format!(
            "{} bytes of pixel data for {columns}x{rows}x{samples}",
            bytes.len()
        )));
    };
    let data = if samples == 3 && planar == 1 {
        // RRR…GGG…BBB… to RGBRGB…
        let mut interleaved = Vec::with_capacity(size);
        for i in 0..plane {
            interleaved.extend_from_slice(&[bytes[i], bytes[plane + i], bytes[2 * plane + i]]);
        }
        interleaved
    } else {
        bytes.to_vec()
    };
    Ok(Pixels::Raw {
        width: columns,
        height: rows,
        samples_per_pixel: samples as u8,
        data,
    })
}

/// A string attribute, trimmed, `None` when absent or empty.
fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.element_opt(tag).ok().flatten()?.to_str().ok()?;
    let value = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!value.is_empty()).then(|| value.to_owned())
}

fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.element_opt(tag).ok().flatten()?.items()?.first()
}

fn acquisition_time(obj: &InMemDicomObject) -> (Option<DateTime>, Option<Offset>) {
    let zone = string(obj, tags::TIMEZONE_OFFSET_FROM_UTC).and_then(|z| offset(&z));
    if let Some(value) = string(obj, tags::ACQUISITION_DATE_TIME) {
        // DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX, any part after the date optional.
        let (local, own) = match value.find(['+', '-']) {
            Some(at) => (&value[..at], offset(&value[at..])),
            None => (value.as_str(), None),
        };
        if let Some(at) = local.get(..8).and_then(date) {
            let time = local.get(8..).and_then(time).unwrap_or_default();
            return (Some(at.to_datetime(time)), own.or(zone));
        }
    }
    for (date_tag, time_tag) in [
        (tags::ACQUISITION_DATE, tags::ACQUISITION_TIME),
        (tags::CONTENT_DATE, tags::CONTENT_TIME),
    ] {
        if let Some(at) = string(obj, date_tag).and_then(|d| date(&d)) {
            let time = string(obj, time_tag)
                .and_then(|t| time(&t))
                .unwrap_or_default();
            return (Some(at.to_datetime(time)), zone);
        }
    }
    (None, zone)
}

fn digits(text: &str) -> Option<i32> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok())?
}

/// DA: `YYYYMMDD`.
fn date(text: &str) -> Option<Date> {
    let (y, m, d) = (text.get(..4)?, text.get(4..6)?, text.get(6..8)?);
    if text.len() != 8 {
        return None;
    }
    Date::new(digits(y)? as i16, digits(m)? as i8, digits(d)? as i8).ok()
}

/// TM: `HH[MM[SS[.F…]]]`, fraction ignored.
fn time(text: &str) -> Option<jiff::civil::Time> {
    let whole = text.split('.').next()?;
    let part = |range: std::ops::Range<usize>| whole.get(range).map_or(Some(0), digits);
    if whole.len() < 2 || whole.len() > 6 || !whole.len().is_multiple_of(2) {
        return None;
    }
    jiff::civil::Time::new(
        part(0..2)? as i8,
        part(2..4)? as i8,
        part(4..6)?.min(59) as i8,
        0,
    )
    .ok()
}

/// `+HHMM` / `-HHMM`.
fn offset(text: &str) -> Option<Offset> {
    let sign = match text.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let (hours, minutes) = (digits(text.get(1..3)?)?, digits(text.get(3..5)?)?);
    if text.len() != 5 || minutes > 59 {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_dates_times_and_offsets_are_parsed_strictly() {
        assert_eq!(date("20260314"), Date::new(2026, 3, 14).ok());
        assert_eq!(date("2026031"), None);
        assert_eq!(date("2026-03-14"), None);
        assert_eq!(date("20261340"), None);
        assert_eq!(
            time("101530.123"),
            jiff::civil::Time::new(10, 15, 30, 0).ok()
        );
        assert_eq!(time("10"), jiff::civil::Time::new(10, 0, 0, 0).ok());
        assert_eq!(time("1"), None);
        assert_eq!(offset("+0100"), Offset::from_seconds(3600).ok());
        assert_eq!(offset("-0230"), Offset::from_seconds(-9000).ok());
        assert_eq!(offset("0100"), None);
        assert_eq!(offset("+01"), None);
    }
}
