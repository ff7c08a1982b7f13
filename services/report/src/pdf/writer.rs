//! The PDF 1.4 file: objects, the cross-reference table with byte offsets, the trailer.
//!
//! Object numbers are fixed by the order of the pages and images, and nothing random or
//! clock-dependent is written (no `/ID`, the creation date is the act's), so one report always
//! gives the same bytes and can be hashed and signed.

use std::fmt::Write as _;

use super::jpeg::JpegInfo;
use super::layout::{PAGE_HEIGHT, PAGE_WIDTH, Page};

/// An image to embed as it is (`/DCTDecode`).
pub(crate) struct Image<'a> {
    pub(crate) info: JpegInfo,
    pub(crate) bytes: &'a [u8],
}

/// The document information dictionary.
pub(crate) struct Info<'a> {
    pub(crate) title: &'a str,
    /// `D:YYYYMMDDHHmmSS+HH'mm'`
    pub(crate) creation_date: &'a str,
}

const CATALOG: usize = 1;
const PAGES: usize = 2;
const HELVETICA: usize = 3;
const HELVETICA_BOLD: usize = 4;
const INFO: usize = 5;
const FIRST_IMAGE: usize = 6;

pub(crate) fn write(pages: &[Page], images: &[Image<'_>], info: &Info<'_>) -> Vec<u8> {
    let first_page = FIRST_IMAGE + images.len();
    // Each page is two objects: the page, then its content stream.
    let page_object = |index: usize| first_page + 2 * index;
    let object_count = first_page + 2 * pages.len();

    let mut out = Vec::new();
    // The comment of high bytes tells transfer tools the file is binary.
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
    let mut offsets = vec![0usize; object_count];

    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", page_object(i)))
        .collect();
    let fixed: [(usize, String); 5] = [
        (CATALOG, format!("<< /Type /Catalog /Pages {PAGES} 0 R >>")),
        (
            PAGES,
            format!(
                "<< /Type /Pages /Kids [{}] /Count {} >>",
                kids.join(" "),
                pages.len()
            ),
        ),
        (HELVETICA, font("Helvetica")),
        (HELVETICA_BOLD, font("Helvetica-Bold")),
        (
            INFO,
            format!(
                "<< /Title {} /Producer (telehealth-report) /CreationDate ({}) >>",
                utf16_string(info.title),
                info.creation_date
            ),
        ),
    ];
    for (number, body) in fixed {
        offsets[number] = out.len();
        out.extend_from_slice(format!("{number} 0 obj\n{body}\nendobj\n").as_bytes());
    }

    for (index, image) in images.iter().enumerate() {
        let number = FIRST_IMAGE + index;
        offsets[number] = out.len();
        let (colour_space, decode) = match image.info.components {
            1 => ("/DeviceGray", ""),
            // Adobe's CMYK JPEGs are stored inverted.
            4 if image.info.adobe => ("/DeviceCMYK", " /Decode [1 0 1 0 1 0 1 0]"),
            4 => ("/DeviceCMYK", ""),
            _ => ("/DeviceRGB", ""),
        };
        let header = format!(
            "{number} 0 obj\n<< /Type /XObject /Subtype /Image /Width {} /Height {} \
             /ColorSpace {colour_space} /BitsPerComponent 8{decode} /Filter /DCTDecode \
             /Length {} >>\nstream\n",
            image.info.width,
            image.info.height,
            image.bytes.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(image.bytes);
        out.extend_from_slice(b"\nendstream\nendobj\n");
    }

    for (index, page) in pages.iter().enumerate() {
        let number = page_object(index);
        let mut xobjects = String::new();
        for image in &page.images {
            let _ = write!(xobjects, " /Im{image} {} 0 R", FIRST_IMAGE + image);
        }
        let xobjects = if xobjects.is_empty() {
            String::new()
        } else {
            format!(" /XObject <<{xobjects} >>")
        };
        offsets[number] = out.len();
        out.extend_from_slice(
            format!(
                "{number} 0 obj\n<< /Type /Page /Parent {PAGES} 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                 /Resources << /Font << /F1 {HELVETICA} 0 R /F2 {HELVETICA_BOLD} 0 R >>{xobjects} >> \
                 /Contents {} 0 R >>\nendobj\n",
                number + 1
            )
            .as_bytes(),
        );
        offsets[number + 1] = out.len();
        out.extend_from_slice(
            format!(
                "{} 0 obj\n<< /Length {} >>\nstream\n",
                number + 1,
                page.content.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(page.content.as_bytes());
        out.extend_from_slice(b"\nendstream\nendobj\n");
    }

    let xref = out.len();
    let mut table = format!("xref\n0 {object_count}\n0000000000 65535 f\r\n");
    for offset in offsets.iter().skip(1) {
        // Each entry is exactly 20 bytes, end of line included.
        let _ = write!(table, "{offset:010} 00000 n\r\n");
    }
    let _ = write!(
        table,
        "trailer\n<< /Size {object_count} /Root {CATALOG} 0 R /Info {INFO} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    );
    out.extend_from_slice(table.as_bytes());
    out
}

fn font(name: &str) -> String {
    format!("<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>")
}

/// A text string outside content streams (the document title) in UTF-16BE with its byte order
/// mark, the one encoding PDF readers accept there for any character.
fn utf16_string(text: &str) -> String {
    let mut out = String::from("<FEFF");
    for unit in text.encode_utf16() {
        let _ = write!(out, "{unit:04X}");
    }
    out.push('>');
    out
}
