//! What an upload's bytes become: a photo goes through the sanitizer as it streams; a
//! dermatoscope's DICOM file, where the target takes one, is recognised by its first bytes and
//! imported whole at completion (its photograph then goes through the same sanitizer).
//!
//! A DICOM file is never kept: the suite stores the photograph inside it (the device's JPEG,
//! byte for byte, or lossless PNG for uncompressed pixels), and its attributes, which name the
//! patient, the institution and the device, are dropped and reported like stripped EXIF. The
//! image belongs to the request's patient, as any photo the requester attaches.

use jiff::{Timestamp, tz::TimeZone};
use telehealth_dicom::{ImportLimits, ImportedImage, Pixels};

use super::ImageError;
use super::format::{FormatError, ImageFacts, Sanitizer, StrippedCategory};

/// A DICOM Part 10 file: a 128-byte preamble, then `DICM`.
const DICOM_HEAD: usize = 132;
const JPEG_SIGNATURE: [u8; 3] = [0xFF, 0xD8, 0xFF];
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// DICOM times are local and most devices do not write their offset: read in French time.
const DEVICE_TIME_ZONE: &str = "Europe/Paris";

/// The upload's bytes, from offset 0, on their way to the stored image.
#[derive(Debug)]
pub(super) struct Intake {
    state: State,
}

#[derive(Debug)]
enum State {
    /// The first bytes, while a DICOM file is still possible.
    Head(Vec<u8>, Sanitizer),
    Image(Sanitizer),
    /// A DICOM file: its bytes are in the upload's stored parts, read back at completion.
    Dicom,
    Finished,
}

/// What the bytes turned out to be.
#[derive(Debug)]
pub(super) enum Taken {
    Image(ImageFacts),
    Dicom,
}

impl Intake {
    /// `dicom`: whether the target takes a DICOM file; otherwise one is refused by the
    /// sanitizer, with a message saying so.
    pub(super) fn new(sanitizer: Sanitizer, dicom: bool) -> Intake {
        Intake {
            state: if dicom {
                State::Head(Vec::with_capacity(DICOM_HEAD), sanitizer)
            } else {
                State::Image(sanitizer)
            },
        }
    }

    /// Takes the next bytes; sanitized output is appended to `out`.
    pub(super) fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ImageError> {
        match &mut self.state {
            State::Image(sanitizer) => Ok(sanitizer.push(bytes, out)?),
            State::Dicom => Ok(()),
            State::Finished => Err(ImageError::Corrupt("intake already finished".into())),
            State::Head(head, _) => {
                let wanted = DICOM_HEAD - head.len();
                head.extend_from_slice(&bytes[..wanted.min(bytes.len())]);
                let rest = &bytes[wanted.min(bytes.len())..];
                if head.len() < DICOM_HEAD && !looks_like_a_photo(head) {
                    return Ok(());
                }
                self.decide(out)?;
                self.push(rest, out)
            }
        }
    }

    /// The end of the file: the sanitizer's verdict, or that a DICOM file is to be imported.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> Result<Taken, ImageError> {
        if matches!(self.state, State::Head(..)) {
            self.decide(out)?;
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Image(sanitizer) => Ok(Taken::Image(sanitizer.finish(out)?)),
            State::Dicom => Ok(Taken::Dicom),
            State::Head(..) | State::Finished => {
                Err(ImageError::Corrupt("intake already finished".into()))
            }
        }
    }

    /// Leaves the head state: a DICOM file, or the head goes through the sanitizer.
    fn decide(&mut self, out: &mut Vec<u8>) -> Result<(), ImageError> {
        let State::Head(head, sanitizer) = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Ok(());
        };
        if is_dicom(&head) {
            self.state = State::Dicom;
            return Ok(());
        }
        let mut sanitizer = sanitizer;
        sanitizer.push(&head, out)?;
        self.state = State::Image(sanitizer);
        Ok(())
    }
}

fn looks_like_a_photo(head: &[u8]) -> bool {
    head.starts_with(&JPEG_SIGNATURE) || head.starts_with(&PNG_SIGNATURE)
}

fn is_dicom(head: &[u8]) -> bool {
    head.len() >= DICOM_HEAD && &head[128..DICOM_HEAD] == b"DICM" && !looks_like_a_photo(head)
}

/// The photograph of an imported DICOM file, ready for the sanitizer, and what was dropped.
#[derive(Debug)]
pub(super) struct FromDicom {
    /// The device's JPEG as it was inside the file, or PNG for uncompressed pixels.
    pub photo: Vec<u8>,
    /// Acquisition (else content) time written in the file.
    pub captured_at: Option<Timestamp>,
    /// The file's attributes that were not kept, as `DICOM:<keyword>`.
    pub dropped: Vec<String>,
}

/// Reads a whole DICOM file (CPU work: call it off the async threads).
pub(super) fn import(file: &[u8], max_side_px: u32) -> Result<FromDicom, ImageError> {
    let limits = ImportLimits {
        max_bytes: file.len(),
        max_side_px,
        ..ImportLimits::default()
    };
    let imported = telehealth_dicom::import(file, &limits).map_err(|error| {
        ImageError::Refused(FormatError::Dicom {
            detail: error.to_string(),
        })
    })?;
    let dropped = dropped_attributes(&imported);
    let captured_at = captured_at(&imported);
    let photo = match imported.pixels {
        Pixels::Jpeg(jpeg) => jpeg,
        Pixels::Raw {
            width,
            height,
            samples_per_pixel,
            data,
        } => png_of(width, height, samples_per_pixel, &data)?,
    };
    Ok(FromDicom {
        photo,
        captured_at,
        dropped,
    })
}

/// Adds what the DICOM file lost to the sanitizer's report of its photograph.
pub(super) fn report_dropped(facts: &mut ImageFacts, dropped: &[String]) {
    facts.stripped.insert(StrippedCategory::DicomIdentifiers);
    if dropped.iter().any(|tag| {
        matches!(
            tag.as_str(),
            "DICOM:Manufacturer" | "DICOM:ManufacturerModelName" | "DICOM:DeviceSerialNumber"
        )
    }) {
        facts.stripped.insert(StrippedCategory::DeviceIdentifiers);
    }
    let mut tags = dropped.to_vec();
    tags.extend(std::mem::take(&mut facts.stripped_tags));
    facts.stripped_tags = tags;
}

fn dropped_attributes(image: &ImportedImage) -> Vec<String> {
    let patient = &image.patient;
    [
        ("PatientID", patient.id.is_some()),
        (
            "PatientName",
            patient.family_name.is_some() || patient.given_names.is_some(),
        ),
        ("PatientBirthDate", patient.birth_date.is_some()),
        ("PatientSex", patient.sex.is_some()),
        ("Manufacturer", image.manufacturer.is_some()),
        ("ManufacturerModelName", image.model.is_some()),
        ("DeviceSerialNumber", image.device_serial_number.is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| *present)
    .map(|(keyword, _)| format!("DICOM:{keyword}"))
    .collect()
}

fn captured_at(image: &ImportedImage) -> Option<Timestamp> {
    let local = image.acquired_at?;
    let zone = match image.utc_offset {
        Some(offset) => TimeZone::fixed(offset),
        None => TimeZone::get(DEVICE_TIME_ZONE).ok()?,
    };
    // Compatible disambiguation: the autumn's repeated hour takes its earlier instant, the
    // spring's skipped hour its later one (the device cannot tell either).
    local.to_zoned_datetime(zone).ok().map(|z| z.timestamp())
}

fn png_of(width: u32, height: u32, samples: u8, data: &[u8]) -> Result<Vec<u8>, ImageError> {
    let colour = match samples {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        other => {
            return Err(ImageError::Refused(FormatError::Dicom {
                detail: format!("{other} samples per pixel; send RGB or greyscale"),
            }));
        }
    };
    let failed = |error: png::EncodingError| ImageError::Corrupt(format!("PNG encoding: {error}"));
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(colour);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(data).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SanitizeOptions;

    fn intake() -> Intake {
        Intake::new(Sanitizer::new(SanitizeOptions::default()), true)
    }

    fn dicom_head() -> Vec<u8> {
        let mut head = vec![0; 128];
        head.extend_from_slice(b"DICM");
        head.extend_from_slice(&[2, 0, 0, 0]);
        head
    }

    #[test]
    fn a_dicom_file_is_recognised_whatever_the_split() {
        let file = dicom_head();
        for split in [1, 7, 128, 131, 132] {
            let mut intake = intake();
            let mut out = Vec::new();
            for piece in file.chunks(split) {
                intake.push(piece, &mut out).expect("ok");
            }
            assert!(matches!(intake.finish(&mut out).expect("ok"), Taken::Dicom));
            assert!(
                out.is_empty(),
                "nothing of a DICOM file is written as it streams"
            );
        }
    }

    #[test]
    fn a_photo_streams_through_the_sanitizer_at_once() {
        let photo = crate::format::fixtures::jpeg_plain(64, 48);
        let mut intake = intake();
        let mut out = Vec::new();
        intake.push(&photo[..3], &mut out).expect("ok");
        assert!(!out.is_empty(), "a JPEG is known from its signature");
        intake.push(&photo[3..], &mut out).expect("ok");
        assert!(matches!(
            intake.finish(&mut out).expect("ok"),
            Taken::Image(_)
        ));
    }

    #[test]
    fn a_short_file_that_is_neither_is_refused_by_the_sanitizer() {
        let mut intake = intake();
        let mut out = Vec::new();
        intake.push(b"hello", &mut out).expect("ok");
        let error = intake.finish(&mut out).expect_err("refused");
        assert!(error.to_string().contains("not an image"), "{error}");
    }

    #[test]
    fn a_target_without_dicom_refuses_it_with_a_message() {
        let mut intake = Intake::new(Sanitizer::new(SanitizeOptions::default()), false);
        let mut out = Vec::new();
        let refused = intake
            .push(&dicom_head(), &mut out)
            .and_then(|()| intake.finish(&mut out).map(|_| ()));
        let error = refused.expect_err("refused");
        assert!(
            error.to_string().contains("DICOM files are not accepted"),
            "{error}"
        );
    }

    #[test]
    fn hostile_dicom_is_refused_not_panicking() {
        let mut file = dicom_head();
        file.extend_from_slice(&[0xFF; 300]);
        let error = import(&file, 20_000).expect_err("refused");
        assert!(error.to_string().contains("DICOM"), "{error}");
    }

    #[test]
    fn uncompressed_pixels_become_a_lossless_png() {
        let data: Vec<u8> = (0..(4 * 3 * 3)).map(|n| n as u8).collect();
        let png = png_of(4, 3, 3, &data).expect("ok");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("ok");
        let mut pixels = vec![0; reader.output_buffer_size().expect("ok")];
        reader.next_frame(&mut pixels).expect("ok");
        assert_eq!(pixels, data);
    }
}
