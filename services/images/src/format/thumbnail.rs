//! Small previews for lists: decode at reduced size, box-filter down, apply the EXIF
//! orientation, encode a baseline JPEG without any metadata.
//!
//! Memory stays bounded on big images:
//! * baseline JPEG is decoded with DCT-domain scaling (1/2, 1/4 or 1/8), so a 200-megapixel
//!   photo decodes to at most ~3 megapixels; the decoded buffer is capped at
//!   [`MAX_DECODED_PREVIEW_BYTES`];
//! * progressive JPEG keeps every DCT coefficient of the image while decoding (2 bytes per
//!   sample: ~75 MB for a 25-megapixel 4:2:0 colour photo, ~150 MB at 4:4:4), so it is refused
//!   above [`MAX_FULL_DECODE_PIXELS`]; lossless JPEG cannot be scaled and is not previewed;
//! * PNG is decoded row by row and averaged on the fly into the thumbnail grid (one row buffer
//!   plus the grid), whatever its size; Adam7 interlaced passes are placed at their real
//!   coordinates.
//!
//! The decoders are pure Rust; they are additionally run under `catch_unwind` so that a bug in
//! them on hostile input becomes an error instead of taking the task down (this needs
//! `panic = "unwind"`, the default).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{ContentType, FormatError, SanitizeOptions, check_dimensions};

/// Largest progressive JPEG (width × height) previewed; see the module documentation.
pub const MAX_FULL_DECODE_PIXELS: u64 = 25_000_000;
/// Largest decoded (already DCT-scaled) JPEG buffer, in bytes (32 MiB).
pub const MAX_DECODED_PREVIEW_BYTES: usize = 32 * 1024 * 1024;
/// Bytes the PNG decoder may allocate for its own state (row buffers, palette, inflate window).
const PNG_DECODER_LIMIT_BYTES: usize = 16 * 1024 * 1024;
/// The contract's ceiling for `Thumbnail.jpeg_data`.
const MAX_THUMBNAIL_BYTES: usize = 256 * 1024;
/// Tried in turn until the preview fits in [`MAX_THUMBNAIL_BYTES`].
const QUALITIES: [u8; 4] = [80, 65, 50, 35];

/// A small preview: baseline JPEG, orientation applied, no metadata, longest side <= max_side
/// (32..=512).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The JPEG bytes (baseline, no EXIF, no ICC, < 256 KiB).
    pub jpeg: Vec<u8>,
    /// Width in pixels, after orientation.
    pub width: u32,
    /// Height in pixels, after orientation.
    pub height: u32,
}

/// Makes a preview of an image that went through the sanitizer (or any JPEG/PNG: every input is
/// treated as hostile). `exif_orientation` is [`super::ImageFacts::exif_orientation`]; values
/// outside 1-8 are ignored. Images above the default limits of [`SanitizeOptions`] are refused.
pub fn thumbnail(
    input: impl Read,
    content_type: ContentType,
    exif_orientation: Option<u8>,
    max_side: u32,
) -> Result<Thumbnail, FormatError> {
    if !(32..=512).contains(&max_side) {
        return Err(FormatError::InvalidThumbnailSize {
            requested: max_side,
        });
    }
    let decoded = catch_unwind(AssertUnwindSafe(|| match content_type {
        ContentType::Jpeg => decode_jpeg(input, max_side),
        ContentType::Png => decode_png(input, max_side),
    }))
    .map_err(|_| FormatError::corrupt(content_type, "the image data cannot be decoded"))??;
    let oriented = orient(&decoded, exif_orientation.unwrap_or(1));
    encode(&oriented)
}

/// An 8-bit RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rgb {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// The thumbnail size for a `width` × `height` image: longest side `max_side`, never enlarged.
fn target_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest);
        // At most `max_side`, so it fits.
        (scaled as u32).max(1)
    };
    (scale(width), scale(height))
}

fn decode_jpeg(input: impl Read, max_side: u32) -> Result<Rgb, FormatError> {
    use jpeg_decoder::{CodingProcess, PixelFormat};
    const JPEG: ContentType = ContentType::Jpeg;
    let corrupt = |e: jpeg_decoder::Error| FormatError::corrupt(JPEG, e.to_string());

    let mut decoder = jpeg_decoder::Decoder::new(BufReader::new(input));
    decoder.set_max_decoding_buffer_size(MAX_DECODED_PREVIEW_BYTES);
    decoder.read_info().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| FormatError::corrupt(JPEG, "no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_dimensions(JPEG, width, height, &SanitizeOptions::default())?;
    match info.coding_process {
        CodingProcess::Lossless => {
            return Err(FormatError::unsupported(JPEG, "previews of lossless JPEG"));
        }
        CodingProcess::DctProgressive
            if u64::from(width) * u64::from(height) > MAX_FULL_DECODE_PIXELS =>
        {
            return Err(FormatError::PreviewTooExpensive {
                detail: format!(
                    "progressive JPEG of {width}x{height} pixels, the limit is {MAX_FULL_DECODE_PIXELS} pixels"
                ),
            });
        }
        _ => {}
    }
    let (target_w, target_h) = target_size(width, height, max_side);
    // Both at most 512 here.
    let (scaled_w, scaled_h) = decoder
        .scale(target_w as u16, target_h as u16)
        .map_err(corrupt)?;
    let samples = usize::from(scaled_w) * usize::from(scaled_h) * info.pixel_format.pixel_bytes();
    if samples > MAX_DECODED_PREVIEW_BYTES {
        return Err(FormatError::PreviewTooExpensive {
            detail: format!("decoding {scaled_w}x{scaled_h} pixels"),
        });
    }
    let raw = decoder.decode().map_err(corrupt)?;
    let pixel_count = usize::from(scaled_w) * usize::from(scaled_h);
    if raw.len() < pixel_count * info.pixel_format.pixel_bytes() {
        return Err(FormatError::corrupt(
            JPEG,
            "the decoder returned too few pixels",
        ));
    }
    let pixels = match info.pixel_format {
        PixelFormat::RGB24 => raw,
        PixelFormat::L8 => raw.iter().flat_map(|&l| [l, l, l]).collect(),
        // The decoder returns inverted-CMYK-corrected values (0 = no ink): a naive conversion
        // is enough for a preview.
        PixelFormat::CMYK32 => raw
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                let ink = |c: u8| ((255 - u16::from(c)) * (255 - k) / 255) as u8;
                [ink(p[0]), ink(p[1]), ink(p[2])]
            })
            .collect(),
        PixelFormat::L16 => {
            return Err(FormatError::unsupported(JPEG, "previews of 16-bit JPEG"));
        }
    };
    let decoded = Rgb {
        width: u32::from(scaled_w),
        height: u32::from(scaled_h),
        pixels,
    };
    Ok(resize_area(&decoded, target_w, target_h))
}

/// Area-average resize of an in-memory image (the DCT-scaled JPEG, at most 8× the target).
fn resize_area(image: &Rgb, width: u32, height: u32) -> Rgb {
    if image.width == width && image.height == height {
        return image.clone();
    }
    let span = |i: u32, dst: u32, src: u32| {
        let start = u64::from(i) * u64::from(src) / u64::from(dst);
        let end = (u64::from(i + 1) * u64::from(src) / u64::from(dst)).max(start + 1);
        (start as usize, end.min(u64::from(src)) as usize)
    };
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    let stride = image.width as usize * 3;
    for y in 0..height {
        let (y0, y1) = span(y, height, image.height);
        for x in 0..width {
            let (x0, x1) = span(x, width, image.width);
            let mut sum = [0u64; 3];
            for row in image.pixels[y0 * stride..y1 * stride].chunks_exact(stride) {
                for p in row[x0 * 3..x1 * 3].chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]);
                    }
                }
            }
            let count = ((y1 - y0) * (x1 - x0)).max(1) as u64;
            pixels.extend(sum.iter().map(|&s| ((s + count / 2) / count) as u8));
        }
    }
    Rgb {
        width,
        height,
        pixels,
    }
}

/// The png crate asks for `Seek` but does not use it; this adapter offers it on a plain reader.
struct ForwardOnly<R>(BufReader<R>);

impl<R: Read> Read for ForwardOnly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> BufRead for ForwardOnly<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.0.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.0.consume(amount);
    }
}

impl<R: Read> Seek for ForwardOnly<R> {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        match position {
            SeekFrom::Current(0) => Ok(0),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the upload stream cannot seek",
            )),
        }
    }
}

fn decode_png(input: impl Read, max_side: u32) -> Result<Rgb, FormatError> {
    use png::{ColorType, Transformations};
    const PNG: ContentType = ContentType::Png;
    let corrupt = |e: png::DecodingError| FormatError::corrupt(PNG, e.to_string());

    let mut decoder = png::Decoder::new_with_limits(
        ForwardOnly(BufReader::new(input)),
        png::Limits {
            bytes: PNG_DECODER_LIMIT_BYTES,
        },
    );
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height, interlaced) = {
        let info = reader.info();
        (info.width, info.height, info.interlaced)
    };
    check_dimensions(PNG, width, height, &SanitizeOptions::default())?;
    let channels = match reader.output_color_type() {
        (ColorType::Grayscale, png::BitDepth::Eight) => 1,
        (ColorType::GrayscaleAlpha, png::BitDepth::Eight) => 2,
        (ColorType::Rgb, png::BitDepth::Eight) => 3,
        (ColorType::Rgba, png::BitDepth::Eight) => 4,
        other => {
            return Err(FormatError::unsupported(
                PNG,
                format!("previews of {other:?} pixels"),
            ));
        }
    };
    let (target_w, target_h) = target_size(width, height, max_side);
    let mut grid = BoxGrid::new(width, height, target_w, target_h);
    let mut rows = RowPositions::new(width, height, interlaced);
    while let Some(row) = reader.next_row().map_err(corrupt)? {
        let Some(position) = rows.next() else {
            return Err(FormatError::corrupt(
                PNG,
                "more rows than the header declares",
            ));
        };
        for (i, pixel) in row.data().chunks_exact(channels).enumerate() {
            let x = position.x0 + i as u32 * position.dx;
            if x >= width {
                break;
            }
            grid.add(x, position.y, on_white(pixel));
        }
    }
    Ok(grid.finish())
}

/// An 8-bit grey/grey+alpha/RGB/RGBA pixel composited on white.
fn on_white(pixel: &[u8]) -> [u8; 3] {
    let (rgb, alpha) = match *pixel {
        [l] => ([l, l, l], 255),
        [l, a] => ([l, l, l], a),
        [r, g, b] => ([r, g, b], 255),
        [r, g, b, a] => ([r, g, b], a),
        _ => ([255, 255, 255], 255),
    };
    let alpha = u16::from(alpha);
    rgb.map(|c| ((u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255) as u8)
}

/// Where each decoded PNG row lands: plain rows, or Adam7 pass rows.
struct RowPositions {
    width: u32,
    height: u32,
    interlaced: bool,
    pass: usize,
    line: u32,
}

#[derive(Debug, Clone, Copy)]
struct RowPosition {
    y: u32,
    x0: u32,
    dx: u32,
}

/// Adam7 passes: (x0, y0, dx, dy).
const ADAM7: [(u32, u32, u32, u32); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

impl RowPositions {
    fn new(width: u32, height: u32, interlaced: bool) -> RowPositions {
        RowPositions {
            width,
            height,
            interlaced,
            pass: 0,
            line: 0,
        }
    }
}

impl Iterator for RowPositions {
    type Item = RowPosition;

    fn next(&mut self) -> Option<RowPosition> {
        if !self.interlaced {
            let y = self.line;
            self.line += 1;
            return (y < self.height).then_some(RowPosition { y, x0: 0, dx: 1 });
        }
        // Same order as the decoder, which skips empty passes.
        while let Some(&(x0, y0, dx, dy)) = ADAM7.get(self.pass) {
            let columns = self.width.saturating_sub(x0).div_ceil(dx);
            let lines = self.height.saturating_sub(y0).div_ceil(dy);
            if columns > 0 && self.line < lines {
                let y = y0 + self.line * dy;
                self.line += 1;
                return Some(RowPosition { y, x0, dx });
            }
            self.pass += 1;
            self.line = 0;
        }
        None
    }
}

/// Averages a streamed image into a `width` × `height` grid (the thumbnail).
struct BoxGrid {
    column_of: Vec<u32>,
    src_height: u32,
    width: u32,
    height: u32,
    sums: Vec<u64>,
    counts: Vec<u32>,
}

impl BoxGrid {
    fn new(src_width: u32, src_height: u32, width: u32, height: u32) -> BoxGrid {
        let column_of = (0..src_width)
            .map(|x| (u64::from(x) * u64::from(width) / u64::from(src_width)) as u32)
            .collect();
        let cells = width as usize * height as usize;
        BoxGrid {
            column_of,
            src_height,
            width,
            height,
            sums: vec![0; cells * 3],
            counts: vec![0; cells],
        }
    }

    fn add(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        let row = u64::from(y) * u64::from(self.height) / u64::from(self.src_height);
        let cell = row as usize * self.width as usize + self.column_of[x as usize] as usize;
        for (c, value) in rgb.iter().enumerate() {
            self.sums[cell * 3 + c] += u64::from(*value);
        }
        self.counts[cell] += 1;
    }

    fn finish(self) -> Rgb {
        let pixels = self
            .sums
            .chunks_exact(3)
            .zip(&self.counts)
            .flat_map(|(sum, &count)| {
                // A cell without pixels (truncated data) stays white.
                let count = u64::from(count);
                sum.iter()
                    .map(move |&s| {
                        (s + count / 2)
                            .checked_div(count)
                            .map_or(255, |mean| mean as u8)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Rgb {
            width: self.width,
            height: self.height,
            pixels,
        }
    }
}

/// Applies an EXIF orientation (1-8) so the preview shows the image upright.
fn orient(image: &Rgb, orientation: u8) -> Rgb {
    let (w, h) = (image.width as usize, image.height as usize);
    let transposed = matches!(orientation, 5..=8);
    let (out_w, out_h) = if transposed { (h, w) } else { (w, h) };
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for y in 0..out_h {
        for x in 0..out_w {
            // The stored pixel shown at (x, y).
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                8 => (w - 1 - y, x),
                _ => (x, y),
            };
            let at = (sy * w + sx) * 3;
            pixels.extend_from_slice(&image.pixels[at..at + 3]);
        }
    }
    Rgb {
        width: out_w as u32,
        height: out_h as u32,
        pixels,
    }
}

fn encode(image: &Rgb) -> Result<Thumbnail, FormatError> {
    // At most 512 × 512 here.
    let (width, height) = (image.width as u16, image.height as u16);
    for quality in QUALITIES {
        let mut jpeg = Vec::new();
        let encoder = jpeg_encoder::Encoder::new(&mut jpeg, quality);
        encoder
            .encode(&image.pixels, width, height, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| FormatError::PreviewTooExpensive {
                detail: format!("encoding failed: {e}"),
            })?;
        if jpeg.len() < MAX_THUMBNAIL_BYTES {
            return Ok(Thumbnail {
                jpeg,
                width: image.width,
                height: image.height,
            });
        }
    }
    Err(FormatError::PreviewTooExpensive {
        detail: "the preview does not fit in 256 KiB".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 image whose pixels are numbered 0..6 (value in every channel).
    fn numbered() -> Rgb {
        Rgb {
            width: 3,
            height: 2,
            pixels: (0..6u8).flat_map(|v| [v, v, v]).collect(),
        }
    }

    fn values(image: &Rgb) -> Vec<u8> {
        image.pixels.iter().step_by(3).copied().collect()
    }

    #[test]
    fn every_orientation_shows_the_image_upright() {
        // Stored:      Displayed for each orientation (EXIF / TIFF 6.0 definitions):
        //   0 1 2
        //   3 4 5
        let cases: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [0, 1, 2, 3, 4, 5]),
            (2, (3, 2), [2, 1, 0, 5, 4, 3]),
            (3, (3, 2), [5, 4, 3, 2, 1, 0]),
            (4, (3, 2), [3, 4, 5, 0, 1, 2]),
            (5, (2, 3), [0, 3, 1, 4, 2, 5]),
            (6, (2, 3), [3, 0, 4, 1, 5, 2]),
            (7, (2, 3), [5, 2, 4, 1, 3, 0]),
            (8, (2, 3), [2, 5, 1, 4, 0, 3]),
        ];
        for (orientation, size, expected) in cases {
            let out = orient(&numbered(), orientation);
            assert_eq!((out.width, out.height), size, "orientation {orientation}");
            assert_eq!(values(&out), expected, "orientation {orientation}");
        }
    }

    #[test]
    fn target_size_keeps_the_aspect_ratio_and_never_enlarges() {
        assert_eq!(target_size(300, 200, 256), (256, 171));
        assert_eq!(target_size(8000, 6000, 256), (256, 192));
        assert_eq!(target_size(100, 50, 256), (100, 50));
        assert_eq!(target_size(20_000, 1, 32), (32, 1));
    }

    #[test]
    fn adam7_rows_cover_every_pixel_exactly_once() {
        for (w, h) in [(1, 1), (3, 5), (8, 8), (13, 7)] {
            let mut hits = vec![0u32; (w * h) as usize];
            for row in RowPositions::new(w, h, true) {
                let mut x = row.x0;
                while x < w {
                    hits[(row.y * w + x) as usize] += 1;
                    x += row.dx;
                }
            }
            assert!(hits.iter().all(|&n| n == 1), "{w}x{h}");
        }
    }
}
