//! Just enough JPEG parsing to describe an image in DICOM without decoding it: the frame header
//! (`SOFn`) gives the size, the number of components and the sample precision, and its marker
//! tells which DICOM transfer syntax can carry the bytes unchanged.

use crate::Error;

/// What the frame header of a JPEG says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegFrame {
    /// Height in pixels (DICOM Rows).
    pub rows: u16,
    /// Width in pixels (DICOM Columns).
    pub columns: u16,
    /// 1 (greyscale) or 3 (colour).
    pub components: u8,
    /// Bits per sample: 8, or 12 for extended sequential.
    pub precision: u8,
    /// Baseline (`SOF0`) or extended sequential Huffman (`SOF1`).
    pub process: JpegProcess,
}

/// The JPEG coding processes that have a DICOM transfer syntax this crate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegProcess {
    /// `SOF0`, 8 bits: JPEG Baseline (Process 1), 1.2.840.10008.1.2.4.50.
    Baseline,
    /// `SOF1`, 8 or 12 bits: JPEG Extended (Process 2 & 4), 1.2.840.10008.1.2.4.51.
    Extended,
}

impl JpegFrame {
    /// The DICOM transfer syntax that carries this JPEG's bytes as they are.
    pub fn transfer_syntax(&self) -> &'static str {
        // An 8-bit SOF1 image is also decodable as Process 2, but only 4.51 promises that;
        // Baseline (4.50) is for SOF0 alone.
        match self.process {
            JpegProcess::Baseline => crate::uids::JPEG_BASELINE,
            JpegProcess::Extended => crate::uids::JPEG_EXTENDED,
        }
    }
}

/// Reads the markers up to the frame header. Refuses progressive, lossless, hierarchical and
/// arithmetic-coded JPEGs: DICOM has transfer syntaxes for some of them, but viewers and PACS
/// rarely decode them, and a camera or phone produces baseline images anyway.
pub fn frame(jpeg: &[u8]) -> Result<JpegFrame, Error> {
    let invalid = |what: &str| Error::InvalidJpeg(what.to_owned());
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err(invalid("no SOI marker at the start"));
    }
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while jpeg.get(pos) == Some(&0xFF) && jpeg.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(pos), jpeg.get(pos + 1)) else {
            return Err(invalid("marker expected before the frame header"));
        };
        pos += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // standalone markers, no length
        }
        let Some(length) = jpeg.get(pos..pos + 2) else {
            return Err(invalid("truncated marker segment"));
        };
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        if length < 2 {
            return Err(invalid("marker segment length below 2"));
        }
        let Some(segment) = jpeg.get(pos + 2..pos + length) else {
            return Err(invalid("marker segment past the end of the file"));
        };
        let process = match marker {
            0xC0 => Some(JpegProcess::Baseline),
            0xC1 => Some(JpegProcess::Extended),
            0xC2 | 0xC6 | 0xCA | 0xCE => {
                return Err(Error::UnsupportedJpeg(
                    "progressive JPEG; re-export the photo as baseline JPEG".into(),
                ));
            }
            0xC3 | 0xC5 | 0xC7 | 0xCB | 0xCD | 0xCF => {
                return Err(Error::UnsupportedJpeg(
                    "lossless or hierarchical JPEG; re-export the photo as baseline JPEG".into(),
                ));
            }
            0xC9 => {
                return Err(Error::UnsupportedJpeg(
                    "arithmetic-coded JPEG; re-export the photo as baseline JPEG".into(),
                ));
            }
            0xDA | 0xD9 => return Err(invalid("no frame header before the image data")),
            _ => None,
        };
        if let Some(process) = process {
            return frame_header(segment, process);
        }
        pos += length;
    }
}

fn frame_header(segment: &[u8], process: JpegProcess) -> Result<JpegFrame, Error> {
    let [precision, r0, r1, c0, c1, components, ..] = *segment else {
        return Err(Error::InvalidJpeg("frame header too short".into()));
    };
    let rows = u16::from_be_bytes([r0, r1]);
    let columns = u16::from_be_bytes([c0, c1]);
    if rows == 0 || columns == 0 {
        // A height of 0 means "given later by a DNL marker", which DICOM cannot describe.
        return Err(Error::UnsupportedJpeg(
            "the frame header gives no height or width".into(),
        ));
    }
    if segment.len() < 6 + 3 * usize::from(components) {
        return Err(Error::InvalidJpeg(
            "frame header too short for its components".into(),
        ));
    }
    match (process, precision, components) {
        (JpegProcess::Baseline, 8, 1 | 3) | (JpegProcess::Extended, 8 | 12, 1 | 3) => {
            Ok(JpegFrame {
                rows,
                columns,
                components,
                precision,
                process,
            })
        }
        (_, _, 1 | 3) => Err(Error::UnsupportedJpeg(format!(
            "{precision}-bit samples are not allowed for this JPEG process"
        ))),
        _ => Err(Error::UnsupportedJpeg(format!(
            "{components} colour components (only greyscale and 3-component colour are written)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sof(marker: u8, precision: u8, rows: u16, cols: u16, components: u8) -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, marker];
        let length = 8 + 3 * u16::from(components);
        jpeg.extend_from_slice(&length.to_be_bytes());
        jpeg.push(precision);
        jpeg.extend_from_slice(&rows.to_be_bytes());
        jpeg.extend_from_slice(&cols.to_be_bytes());
        jpeg.push(components);
        for id in 0..components {
            jpeg.extend_from_slice(&[id + 1, 0x11, 0]);
        }
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        jpeg
    }

    #[test]
    fn the_frame_header_gives_size_components_and_transfer_syntax() {
        let cases = [
            (
                0xC0,
                8,
                3,
                Ok(crate::uids::JPEG_BASELINE),
                "baseline colour",
            ),
            (
                0xC0,
                8,
                1,
                Ok(crate::uids::JPEG_BASELINE),
                "baseline greyscale",
            ),
            (
                0xC1,
                12,
                1,
                Ok(crate::uids::JPEG_EXTENDED),
                "12-bit extended",
            ),
            (0xC0, 12, 3, Err(()), "12 bits are not baseline"),
            (0xC2, 8, 3, Err(()), "progressive"),
            (0xC3, 8, 3, Err(()), "lossless"),
            (0xC9, 8, 3, Err(()), "arithmetic"),
            (0xC0, 8, 4, Err(()), "CMYK"),
        ];
        for (marker, precision, components, expected, case) in cases {
            let result = frame(&sof(marker, precision, 480, 640, components));
            match expected {
                Ok(syntax) => {
                    let found = result.unwrap_or_else(|error| panic!("{case}: {error}"));
                    assert_eq!((found.rows, found.columns), (480, 640), "{case}");
                    assert_eq!(found.components, components, "{case}");
                    assert_eq!(found.transfer_syntax(), syntax, "{case}");
                }
                Err(()) => assert!(result.is_err(), "{case} must be refused"),
            }
        }
    }

    #[test]
    fn truncated_or_foreign_bytes_are_errors_not_panics() {
        let good = sof(0xC0, 8, 10, 10, 3);
        for cut in 0..good.len() - 2 {
            assert!(frame(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(frame(b"\x89PNG\r\n\x1a\n").is_err());
        assert!(
            frame(&sof(0xC0, 8, 0, 10, 3)).is_err(),
            "height given by DNL"
        );
    }
}
