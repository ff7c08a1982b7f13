//! Just enough of JPEG to embed one in a PDF untouched (`/DCTDecode`): the image's size and
//! number of components, read from its frame header (SOFn). The bytes are not decoded: the
//! suite's image pipeline made them, the viewer decodes them.

/// What the PDF image dictionary needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegInfo {
    pub(crate) width: u16,
    pub(crate) height: u16,
    /// 1 (grey), 3 (YCbCr/RGB) or 4 (CMYK).
    pub(crate) components: u8,
    /// An Adobe APP14 segment is present: its CMYK JPEGs are stored inverted.
    pub(crate) adobe: bool,
}

/// Why a thumbnail was not embedded; printed in the report in place of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotEmbedded {
    NotJpeg,
    Unsupported,
    TooLarge,
}

/// The largest thumbnail embedded: previews are a few tens of KiB; anything much larger is not
/// what the caller meant to pass and would bloat the mail.
pub(crate) const MAX_THUMBNAIL_BYTES: usize = 2 * 1024 * 1024;

/// Reads the frame header of a JPEG, walking the marker segments from SOI.
pub(crate) fn inspect(bytes: &[u8]) -> Result<JpegInfo, NotEmbedded> {
    if bytes.len() > MAX_THUMBNAIL_BYTES {
        return Err(NotEmbedded::TooLarge);
    }
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(NotEmbedded::NotJpeg);
    }
    let mut adobe = false;
    let mut at = 2usize;
    loop {
        // Fill bytes (0xFF repeated) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(NotEmbedded::NotJpeg);
        };
        at += 2;
        match marker {
            // Markers without a length (TEM, RSTn) should not appear before the frame.
            0x01 | 0xD0..=0xD7 => continue,
            // EOI or SOS before a frame header: not a usable image.
            0xD9 | 0xDA => return Err(NotEmbedded::NotJpeg),
            _ => {}
        }
        let length = match (bytes.get(at), bytes.get(at + 1)) {
            (Some(&hi), Some(&lo)) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(NotEmbedded::NotJpeg),
        };
        if length < 2 {
            return Err(NotEmbedded::NotJpeg);
        }
        let segment = bytes.get(at + 2..at + length).ok_or(NotEmbedded::NotJpeg)?;
        match marker {
            0xEE if segment.starts_with(b"Adobe") => adobe = true,
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return frame(marker, segment, adobe);
            }
            _ => {}
        }
        at += length;
    }
}

fn frame(marker: u8, segment: &[u8], adobe: bool) -> Result<JpegInfo, NotEmbedded> {
    let [precision, h1, h0, w1, w0, components, ..] = *segment else {
        return Err(NotEmbedded::NotJpeg);
    };
    let (height, width) = (u16::from_be_bytes([h1, h0]), u16::from_be_bytes([w1, w0]));
    // PDF's DCTDecode takes 8-bit baseline or progressive Huffman JPEGs (SOF0, 1, 2); lossless,
    // arithmetic-coded and 12-bit ones are not reliably displayed. A height of 0 means it is
    // given later (DNL), which the image dictionary cannot express.
    let supported = matches!(marker, 0xC0..=0xC2)
        && precision == 8
        && matches!(components, 1 | 3 | 4)
        && width > 0
        && height > 0;
    if !supported {
        return Err(NotEmbedded::Unsupported);
    }
    Ok(JpegInfo {
        width,
        height,
        components,
        adobe,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal JPEG header (SOI, APP0, SOF0 of `width`×`height`, 3 components, SOS, EOI); not
    /// decodable, but all the writer reads.
    pub(crate) fn header(width: u16, height: u16) -> Vec<u8> {
        let mut out = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x07, b'J', b'F', b'I', b'F', 0,
        ];
        out.extend([0xFF, 0xC0, 0x00, 0x11, 8]);
        out.extend(height.to_be_bytes());
        out.extend(width.to_be_bytes());
        out.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        out.extend([0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9]);
        out
    }

    #[test]
    fn the_size_and_components_come_from_the_frame_header() {
        assert_eq!(
            inspect(&header(120, 80)),
            Ok(JpegInfo {
                width: 120,
                height: 80,
                components: 3,
                adobe: false
            })
        );
    }

    #[test]
    fn anything_else_is_refused_without_panicking() {
        let cases: [(&[u8], NotEmbedded); 5] = [
            (b"\x89PNG\r\n\x1a\n", NotEmbedded::NotJpeg),
            (b"", NotEmbedded::NotJpeg),
            (b"\xFF\xD8", NotEmbedded::NotJpeg),
            (b"\xFF\xD8\xFF\xE0\xFF\xFF", NotEmbedded::NotJpeg),
            (
                b"\xFF\xD8\xFF\xC0\x00\x08\x08\x00\x00\x00\x10\x03",
                NotEmbedded::Unsupported,
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(inspect(bytes), Err(expected), "{bytes:?}");
        }
        for cut in 0..header(10, 10).len() {
            let _ = inspect(&header(10, 10)[..cut]);
        }
    }
}
