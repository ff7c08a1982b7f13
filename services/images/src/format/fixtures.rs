//! Real images for tests: encoded with `jpeg-encoder` / `png`, carrying the identifying
//! metadata phones and cameras write, plus helpers to look inside the results and hostile
//! inputs. The EXIF writer and reader here are independent of the sanitizer's own, so tests do
//! not check the sanitizer against itself.
//!
//! Fixtures panic on misuse (they are test code), never on the images they inspect being bad:
//! the inspection helpers return what they can read.

/// Pixels of a `width` × `height` RGB test pattern: gradients plus deterministic noise, so the
/// JPEG has real entropy-coded data.
pub fn test_pattern(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 32) as u32;
            pixels.push(((x * 255 / width.max(1) + noise) % 256) as u8);
            pixels.push(((y * 255 / height.max(1) + noise) % 256) as u8);
            pixels.push((((x + y) * 128 / (width + height).max(1)) + noise) as u8);
        }
    }
    pixels
}

fn dimensions(width: u32, height: u32) -> (u16, u16) {
    (
        u16::try_from(width).expect("JPEG fixtures are at most 65535 px wide"),
        u16::try_from(height).expect("JPEG fixtures are at most 65535 px high"),
    )
}

/// How a JPEG fixture is encoded.
#[derive(Debug, Clone, Copy, Default)]
struct JpegOptions {
    progressive: bool,
    restart_interval: Option<u16>,
}

fn encode_jpeg(
    width: u32,
    height: u32,
    options: JpegOptions,
    app_segments: Vec<(u8, Vec<u8>)>,
) -> Vec<u8> {
    let (w, h) = dimensions(width, height);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.set_progressive(options.progressive);
    if let Some(interval) = options.restart_interval {
        encoder.set_restart_interval(interval);
    }
    for (number, data) in app_segments {
        encoder
            .add_app_segment(number, data)
            .expect("fixture segments are small");
    }
    encoder
        .encode(
            &test_pattern(width, height),
            w,
            h,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encoding a fixture");
    out
}

/// A baseline JPEG without metadata beyond JFIF.
pub fn jpeg_plain(width: u32, height: u32) -> Vec<u8> {
    encode_jpeg(width, height, JpegOptions::default(), Vec::new())
}

/// A progressive JPEG (several scans with tables in between), without metadata.
pub fn progressive_jpeg(width: u32, height: u32) -> Vec<u8> {
    let options = JpegOptions {
        progressive: true,
        ..JpegOptions::default()
    };
    encode_jpeg(width, height, options, Vec::new())
}

/// A baseline JPEG with restart markers (`RSTn`) in its entropy-coded data.
pub fn jpeg_with_restart_markers(width: u32, height: u32) -> Vec<u8> {
    let options = JpegOptions {
        restart_interval: Some(2),
        ..JpegOptions::default()
    };
    encode_jpeg(width, height, options, Vec::new())
}

/// A baseline JPEG carrying everything a phone or camera writes that identifies a place or a
/// person: EXIF (Make, Model, Artist, Copyright, ImageDescription, Orientation = 6; Exif IFD
/// with DateTimeOriginal, BodySerialNumber, ImageUniqueID, CameraOwnerName, UserComment,
/// MakerNote; GPS IFD in Paris; IFD1 with a JPEG thumbnail), an XMP packet, a Photoshop IPTC
/// block with a by-line and a `COM` comment.
pub fn jpeg_with_identifying_metadata(width: u32, height: u32) -> Vec<u8> {
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&identifying_tiff(ByteOrder::Little, 6));
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend_from_slice(XMP_PACKET.as_bytes());
    let jpeg = encode_jpeg(
        width,
        height,
        JpegOptions::default(),
        vec![(1, exif), (1, xmp), (13, photoshop_iptc())],
    );
    insert_after_soi(&jpeg, 0xFE, b"Patient Jean Dupont, 12 rue de Rivoli, Paris")
}

/// A JPEG with an `APP2` MPF segment followed, after its `EOI`, by a second JPEG (the preview
/// image phones append).
pub fn jpeg_with_mpf_preview(width: u32, height: u32) -> Vec<u8> {
    // Minimal MP header: "MPF\0", a TIFF header and an empty index IFD.
    let mut mpf = b"MPF\0".to_vec();
    mpf.extend_from_slice(b"II*\0");
    mpf.extend_from_slice(&8u32.to_le_bytes());
    mpf.extend_from_slice(&0u16.to_le_bytes());
    mpf.extend_from_slice(&0u32.to_le_bytes());
    let mut jpeg = encode_jpeg(width, height, JpegOptions::default(), vec![(2, mpf)]);
    jpeg.extend_from_slice(&jpeg_with_identifying_metadata(32, 24));
    jpeg
}

/// Inserts a marker segment right after `SOI`.
pub fn insert_after_soi(jpeg: &[u8], marker: u8, body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(body.len() + 2).expect("segment bodies are below 64 KiB");
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&jpeg[2..]);
    out
}

const XMP_PACKET: &str = concat!(
    "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>",
    "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF ",
    "xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">",
    "<rdf:Description xmlns:dc=\"http://purl.org/dc/elements/1.1/\" ",
    "xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" exif:GPSLatitude=\"48,51.4N\" ",
    "exif:GPSLongitude=\"2,21.05E\"><dc:creator><rdf:Seq><rdf:li>Jean Dupont</rdf:li>",
    "</rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>",
    "<?xpacket end=\"w\"?>"
);

/// `Photoshop 3.0` image resource block with an IPTC-NAA record holding a by-line (2:80).
fn photoshop_iptc() -> Vec<u8> {
    let by_line = b"Jean Dupont";
    let mut iptc = vec![0x1C, 0x02, 0x50];
    iptc.extend_from_slice(&(by_line.len() as u16).to_be_bytes());
    iptc.extend_from_slice(by_line);
    let mut block = b"Photoshop 3.0\0".to_vec();
    block.extend_from_slice(b"8BIM");
    block.extend_from_slice(&0x0404u16.to_be_bytes());
    block.extend_from_slice(&[0, 0]); // empty Pascal name, padded to even
    block.extend_from_slice(&(iptc.len() as u32).to_be_bytes());
    block.extend_from_slice(&iptc);
    if iptc.len() % 2 == 1 {
        block.push(0);
    }
    block
}

/// A PNG encoded from the test pattern (8-bit RGB), without metadata.
pub fn png_plain(width: u32, height: u32) -> Vec<u8> {
    png_image(width, height, png::ColorType::Rgb, png::BitDepth::Eight)
}

/// A PNG of the test pattern in the given colour type and bit depth (palette images get a
/// 256-entry grey ramp; alpha is a horizontal ramp so compositing shows).
pub fn png_image(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if color == png::ColorType::Indexed {
            encoder.set_palette((0..=255u8).flat_map(|v| [v, v, v]).collect::<Vec<_>>());
        }
        let mut writer = encoder.write_header().expect("writing a fixture header");
        writer
            .write_image_data(&png_samples(width, height, color, depth))
            .expect("writing fixture pixels");
    }
    out
}

fn png_samples(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
    let rgb = test_pattern(width, height);
    let bits = depth as usize;
    let mut data = Vec::new();
    for y in 0..height as usize {
        let mut bit_row: Vec<u8> = Vec::new();
        let mut acc: u16 = 0;
        let mut acc_bits = 0usize;
        for x in 0..width as usize {
            let p = &rgb[(y * width as usize + x) * 3..][..3];
            let grey = ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8;
            let alpha = (x * 255 / (width as usize).max(1)) as u8;
            let samples: Vec<u8> = match color {
                png::ColorType::Grayscale | png::ColorType::Indexed => vec![grey],
                png::ColorType::GrayscaleAlpha => vec![grey, alpha],
                png::ColorType::Rgb => p.to_vec(),
                png::ColorType::Rgba => vec![p[0], p[1], p[2], alpha],
            };
            for sample in samples {
                if bits == 16 {
                    bit_row.extend_from_slice(&[sample, sample]);
                } else if bits == 8 {
                    bit_row.push(sample);
                } else {
                    acc = (acc << bits) | u16::from(sample >> (8 - bits));
                    acc_bits += bits;
                    if acc_bits == 8 {
                        bit_row.push(acc as u8);
                        acc = 0;
                        acc_bits = 0;
                    }
                }
            }
        }
        if acc_bits > 0 {
            bit_row.push((acc << (8 - acc_bits)) as u8);
        }
        data.extend_from_slice(&bit_row);
    }
    data
}

/// A PNG carrying `tEXt` Author, `zTXt` comment, `iTXt` XMP, `eXIf` with GPS and
/// Orientation = 3, `tIME` and a private ancillary chunk.
pub fn png_with_identifying_metadata(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .add_text_chunk("Author".to_owned(), "Jean Dupont".to_owned())
            .expect("tEXt");
        encoder
            .add_ztxt_chunk(
                "Comment".to_owned(),
                "taken at 12 rue de Rivoli, Paris".to_owned(),
            )
            .expect("zTXt");
        encoder
            .add_itxt_chunk("XML:com.adobe.xmp".to_owned(), XMP_PACKET.to_owned())
            .expect("iTXt");
        let mut writer = encoder.write_header().expect("writing a fixture header");
        writer
            .write_chunk(
                png::chunk::ChunkType(*b"eXIf"),
                &identifying_tiff(ByteOrder::Big, 3),
            )
            .expect("eXIf");
        writer
            .write_chunk(
                png::chunk::ChunkType(*b"tIME"),
                &[0x07, 0xE8, 5, 1, 10, 30, 0],
            )
            .expect("tIME");
        writer
            .write_chunk(
                png::chunk::ChunkType(*b"prVt"),
                b"device=SM-S918B serial=R5CT1234",
            )
            .expect("private chunk");
        writer
            .write_image_data(&test_pattern(width, height))
            .expect("writing fixture pixels");
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

/// A fixture TIFF entry: tag, type, count and value bytes (already in the file's byte order).
struct TiffEntry {
    tag: u16,
    kind: u16,
    count: u32,
    value: Vec<u8>,
}

struct TiffWriter {
    order: ByteOrder,
}

impl TiffWriter {
    fn u16(&self, v: u16) -> Vec<u8> {
        match self.order {
            ByteOrder::Little => v.to_le_bytes().to_vec(),
            ByteOrder::Big => v.to_be_bytes().to_vec(),
        }
    }

    fn u32(&self, v: u32) -> Vec<u8> {
        match self.order {
            ByteOrder::Little => v.to_le_bytes().to_vec(),
            ByteOrder::Big => v.to_be_bytes().to_vec(),
        }
    }

    fn ascii(&self, tag: u16, text: &str) -> TiffEntry {
        let mut value = text.as_bytes().to_vec();
        value.push(0);
        TiffEntry {
            tag,
            kind: 2,
            count: value.len() as u32,
            value,
        }
    }

    fn undefined(&self, tag: u16, bytes: &[u8]) -> TiffEntry {
        TiffEntry {
            tag,
            kind: 7,
            count: bytes.len() as u32,
            value: bytes.to_vec(),
        }
    }

    fn short(&self, tag: u16, v: u16) -> TiffEntry {
        TiffEntry {
            tag,
            kind: 3,
            count: 1,
            value: self.u16(v),
        }
    }

    fn long(&self, tag: u16, v: u32) -> TiffEntry {
        TiffEntry {
            tag,
            kind: 4,
            count: 1,
            value: self.u32(v),
        }
    }

    fn rationals(&self, tag: u16, values: &[(u32, u32)]) -> TiffEntry {
        TiffEntry {
            tag,
            kind: 5,
            count: values.len() as u32,
            value: values
                .iter()
                .flat_map(|&(n, d)| [self.u32(n), self.u32(d)].concat())
                .collect(),
        }
    }

    /// Lays out IFD0, Exif, GPS and IFD1 (in that order) then all out-of-line values and the
    /// thumbnail. Pointer tags (0x8769, 0x8825, 0x0201) are filled in here.
    fn write(
        &self,
        mut ifd0: Vec<TiffEntry>,
        exif: Vec<TiffEntry>,
        gps: Vec<TiffEntry>,
        mut ifd1: Vec<TiffEntry>,
        thumbnail: &[u8],
    ) -> Vec<u8> {
        let size = |n: usize| 2 + 12 * n + 4;
        // Pointer entries first, so the IFD sizes are final.
        ifd0.push(self.long(0x8769, 0));
        ifd0.push(self.long(0x8825, 0));
        ifd1.push(self.long(0x0201, 0));
        ifd1.push(self.long(0x0202, thumbnail.len() as u32));
        let off0 = 8;
        let off_exif = off0 + size(ifd0.len());
        let off_gps = off_exif + size(exif.len());
        let off_ifd1 = off_gps + size(gps.len());
        let off_thumb = off_ifd1 + size(ifd1.len());
        let mut data_at = off_thumb + thumbnail.len();
        for entry in ifd0.iter_mut().chain(ifd1.iter_mut()) {
            match entry.tag {
                0x8769 => entry.value = self.u32(off_exif as u32),
                0x8825 => entry.value = self.u32(off_gps as u32),
                0x0201 => entry.value = self.u32(off_thumb as u32),
                _ => {}
            }
        }
        for ifd in [&mut ifd0, &mut ifd1] {
            ifd.sort_by_key(|e| e.tag);
        }
        let mut out = match self.order {
            ByteOrder::Little => b"II".to_vec(),
            ByteOrder::Big => b"MM".to_vec(),
        };
        out.extend(self.u16(42));
        out.extend(self.u32(off0 as u32));
        let mut data = Vec::new();
        let ifds = [(&ifd0, off_ifd1 as u32), (&exif, 0), (&gps, 0), (&ifd1, 0)];
        for (entries, next) in ifds {
            out.extend(self.u16(entries.len() as u16));
            for entry in entries {
                out.extend(self.u16(entry.tag));
                out.extend(self.u16(entry.kind));
                out.extend(self.u32(entry.count));
                if entry.value.len() <= 4 {
                    let mut field = entry.value.clone();
                    field.resize(4, 0);
                    out.extend(field);
                } else {
                    out.extend(self.u32(data_at as u32));
                    data.extend_from_slice(&entry.value);
                    if entry.value.len() % 2 == 1 {
                        data.push(0);
                    }
                    data_at = off_thumb + thumbnail.len() + data.len();
                }
            }
            out.extend(self.u32(next));
        }
        assert_eq!(out.len(), off_thumb, "fixture TIFF layout");
        out.extend_from_slice(thumbnail);
        out.extend_from_slice(&data);
        out
    }
}

/// The identifying EXIF block shared by the JPEG and PNG fixtures.
fn identifying_tiff(order: ByteOrder, orientation: u16) -> Vec<u8> {
    let w = TiffWriter { order };
    let ifd0 = vec![
        w.ascii(0x010E, "Lesion on the left forearm of Jean Dupont"),
        w.ascii(0x010F, "Samsung"),
        w.ascii(0x0110, "SM-S918B"),
        w.short(0x0112, orientation),
        w.ascii(0x0132, "2024:05:01 10:30:00"),
        w.ascii(0x013B, "Jean Dupont"),
        w.ascii(0x8298, "(c) Jean Dupont"),
    ];
    let mut user_comment = b"ASCII\0\0\0".to_vec();
    user_comment.extend_from_slice(b"at home, 12 rue de Rivoli");
    let exif = vec![
        w.ascii(0x9003, "2024:05:01 10:30:00"),
        w.undefined(0x927C, b"SAMSUNG maker note: serial R5CT1234 GPS 48.8566"),
        w.undefined(0x9286, &user_comment),
        w.ascii(0xA420, "F12LLMF00SM"),
        w.ascii(0xA430, "Jean Dupont"),
        w.ascii(0xA431, "R5CT1234567"),
    ];
    // 48°51'24"N 2°21'03"E: the Hôtel de Ville, Paris.
    let gps = vec![
        w.ascii(0x0001, "N"),
        w.rationals(0x0002, &[(48, 1), (51, 1), (24, 1)]),
        w.ascii(0x0003, "E"),
        w.rationals(0x0004, &[(2, 1), (21, 1), (3, 1)]),
    ];
    let ifd1 = vec![w.short(0x0103, 6)];
    w.write(ifd0, exif, gps, ifd1, &jpeg_plain(16, 16))
}

/// The entropy-coded data of every scan, concatenated: the bytes after each `SOS` header up to
/// the next marker that is neither byte stuffing (`FF00`) nor a restart marker.
pub fn entropy_coded_segments(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            break;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let length = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        i += 2 + length;
        if marker != 0xDA {
            continue;
        }
        let start = i.min(jpeg.len());
        while i + 1 < jpeg.len() {
            if jpeg[i] == 0xFF && !matches!(jpeg[i + 1], 0x00 | 0xD0..=0xD7) {
                break;
            }
            i += 1;
        }
        out.extend_from_slice(&jpeg[start..i.min(jpeg.len())]);
    }
    out
}

/// The PNG chunks as (type, data), in file order (without checking CRCs).
pub fn png_chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let length = u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]) as usize;
        let kind = [png[i + 4], png[i + 5], png[i + 6], png[i + 7]];
        let Some(data) = png.get(i + 8..i + 8 + length) else {
            break;
        };
        chunks.push((kind, data.to_vec()));
        i += 12 + length;
    }
    chunks
}

/// The concatenated data of the `IDAT` chunks.
pub fn idat_payload(png: &[u8]) -> Vec<u8> {
    png_chunks(png)
        .into_iter()
        .filter(|(kind, _)| kind == b"IDAT")
        .flat_map(|(_, data)| data)
        .collect()
}

/// The EXIF tags present in a JPEG (first `APP1` Exif) or PNG (`eXIf`), as (IFD, tag) with IFD
/// one of `IFD0`, `Exif`, `GPS`, `IFD1`. Empty when there is no (readable) EXIF.
pub fn exif_tags(file: &[u8]) -> Vec<(String, u16)> {
    exif_block(file)
        .map(|tiff| read_tiff_tags(&tiff))
        .unwrap_or_default()
}

/// The value of an EXIF tag as raw bytes (inline or out of line), if present.
pub fn exif_value(file: &[u8], ifd: &str, tag: u16) -> Option<Vec<u8>> {
    let tiff = exif_block(file)?;
    read_tiff(&tiff)
        .into_iter()
        .find(|(name, entry_tag, _)| name == ifd && *entry_tag == tag)
        .map(|(_, _, value)| value)
}

fn exif_block(file: &[u8]) -> Option<Vec<u8>> {
    if file.starts_with(&[0x89, b'P', b'N', b'G']) {
        return png_chunks(file)
            .into_iter()
            .find(|(kind, _)| kind == b"eXIf")
            .map(|(_, data)| data);
    }
    let mut i = 2;
    while i + 4 <= file.len() && file[i] == 0xFF {
        let marker = file[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let length = usize::from(u16::from_be_bytes([file[i + 2], file[i + 3]]));
        let body = file.get(i + 4..i + 2 + length)?;
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return Some(body[6..].to_vec());
        }
        i += 2 + length;
    }
    None
}

fn read_tiff_tags(tiff: &[u8]) -> Vec<(String, u16)> {
    read_tiff(tiff)
        .into_iter()
        .map(|(ifd, tag, _)| (ifd, tag))
        .collect()
}

/// Tag, type, count and the position of the value field.
type RawEntry = (u16, u16, u32, usize);

/// (IFD name, tag, value bytes) for IFD0 and its Exif, GPS sub-IFDs and IFD1.
fn read_tiff(tiff: &[u8]) -> Vec<(String, u16, Vec<u8>)> {
    let little = tiff.starts_with(b"II");
    let u16_at = |at: usize| -> Option<u16> {
        let b = tiff.get(at..at + 2)?;
        Some(if little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = tiff.get(at..at + 4)?;
        Some(if little {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        })
    };
    let read_ifd = |offset: usize| -> Option<(Vec<RawEntry>, u32)> {
        let count = usize::from(u16_at(offset)?);
        let mut entries = Vec::new();
        for i in 0..count {
            let at = offset + 2 + 12 * i;
            entries.push((u16_at(at)?, u16_at(at + 2)?, u32_at(at + 4)?, at + 8));
        }
        Some((entries, u32_at(offset + 2 + 12 * count).unwrap_or(0)))
    };
    let value = |kind: u16, count: u32, field: usize| -> Vec<u8> {
        let unit = match kind {
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 => 8,
            _ => 1,
        };
        let len = unit * count as usize;
        let at = if len <= 4 {
            Some(field)
        } else {
            u32_at(field).map(|o| o as usize)
        };
        at.and_then(|at| tiff.get(at..at.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let Some(ifd0_offset) = u32_at(4) else {
        return out;
    };
    let Some((ifd0, next)) = read_ifd(ifd0_offset as usize) else {
        return out;
    };
    for &(tag, kind, count, field) in &ifd0 {
        out.push(("IFD0".to_owned(), tag, value(kind, count, field)));
        let sub = match tag {
            0x8769 => "Exif",
            0x8825 => "GPS",
            _ => continue,
        };
        if let Some((entries, _)) = u32_at(field).and_then(|o| read_ifd(o as usize)) {
            for (tag, kind, count, field) in entries {
                out.push((sub.to_owned(), tag, value(kind, count, field)));
            }
        }
    }
    if next != 0
        && let Some((entries, _)) = read_ifd(next as usize)
    {
        for (tag, kind, count, field) in entries {
            out.push(("IFD1".to_owned(), tag, value(kind, count, field)));
        }
    }
    out
}

/// A JPEG followed by a ZIP archive (local file header, data, central directory): a polyglot.
pub fn polyglot_jpeg_zip() -> Vec<u8> {
    let name = b"payload.txt";
    let content = b"this archive hides inside an image";
    let crc = crc32fast::hash(content);
    let mut zip = Vec::new();
    zip.extend_from_slice(b"PK\x03\x04");
    zip.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
    zip.extend_from_slice(&crc.to_le_bytes());
    zip.extend_from_slice(&(content.len() as u32).to_le_bytes());
    zip.extend_from_slice(&(content.len() as u32).to_le_bytes());
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(name);
    zip.extend_from_slice(content);
    let central_at = zip.len() as u32;
    let mut central = Vec::new();
    central.extend_from_slice(b"PK\x01\x02");
    central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    central.extend_from_slice(&crc.to_le_bytes());
    central.extend_from_slice(&(content.len() as u32).to_le_bytes());
    central.extend_from_slice(&(content.len() as u32).to_le_bytes());
    central.extend_from_slice(&(name.len() as u16).to_le_bytes());
    central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
    central.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    central.extend_from_slice(name);
    zip.extend_from_slice(&central);
    zip.extend_from_slice(b"PK\x05\x06");
    zip.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
    zip.extend_from_slice(&central_at.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    let mut file = jpeg_plain(64, 48);
    file.extend_from_slice(&zip);
    file
}

/// A small JPEG whose frame header declares `width` × `height` (e.g. 65000 × 65000).
pub fn jpeg_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = jpeg_plain(16, 16);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline fixture has SOF0");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A small PNG whose `IHDR` declares `width` × `height`, with a valid CRC.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_plain(16, 16);
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// The start of a DICOM Part 10 file: a 128-byte preamble, `DICM`, a meta element.
pub fn dicom_header() -> Vec<u8> {
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend_from_slice(&[
        0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00, 0xC8, 0, 0, 0,
    ]);
    file
}

/// A greyscale baseline JPEG of any size whose every block is flat mid-grey, built by hand
/// (Huffman tables with one 1-bit code each, so each 8×8 block costs 2 bits): an 8000×6000
/// image weighs ~190 KB and is made in milliseconds.
pub fn flat_grey_jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    let mut segment = |marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    };
    let mut dqt = vec![0x00];
    dqt.extend_from_slice(&[1; 64]);
    segment(0xDB, &dqt);
    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    sof.extend_from_slice(&[1, 1, 0x11, 0]);
    segment(0xC0, &sof);
    // DC table 0 and AC table 0: a single 1-bit code ("0") for symbol 0 (DC diff 0 / EOB).
    let mut dht = Vec::new();
    for class in [0x00, 0x10] {
        dht.push(class);
        let mut counts = [0u8; 16];
        counts[0] = 1;
        dht.extend_from_slice(&counts);
        dht.push(0);
    }
    segment(0xC4, &dht);
    segment(0xDA, &[1, 1, 0x00, 0, 63, 0]);
    let blocks = usize::from(width).div_ceil(8) * usize::from(height).div_ceil(8);
    let bits = blocks * 2;
    out.resize(out.len() + bits / 8, 0);
    if bits % 8 != 0 {
        // Pad the last byte with 1-bits, as the standard asks.
        out.push(0xFF >> (bits % 8));
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// Writes `data` to a `Vec` in pieces of the given sizes (cycled), for split tests.
pub fn pieces<'a>(data: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        Some(piece)
    })
}

/// An Adam7-interlaced 8-bit greyscale PNG with the same pixels as
/// `png_image(width, height, Grayscale, Eight)`. Built by hand (the `png` encoder does not
/// interlace), with an uncompressed zlib stream.
pub fn png_grey_interlaced(width: u32, height: u32) -> Vec<u8> {
    let grey = png_samples(
        width,
        height,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
    );
    let passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in passes {
        if x0 >= width || y0 >= height {
            continue;
        }
        for y in (y0..height).step_by(dy) {
            raw.push(0); // filter type None
            for x in (x0..width).step_by(dx) {
                raw.push(grey[(y * width + x) as usize]);
            }
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 1]);
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &zlib), (b"IEND", &Vec::new())] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    png
}

/// What a dermatoscope writes: `jpeg` inside a DICOM VL Photographic Image (Dermoscopy) naming
/// its patient `DUPONT^Jeanne`, PatientID `DERMATO-0042`, taken at `taken_at`.
pub fn dermatoscope_dicom(jpeg: &[u8], taken_at: jiff::Timestamp) -> Vec<u8> {
    use telehealth_dicom::{
        Acquisition, DicomPatient, PhotoExport, PhotoKind, Sex, Study, vl_photographic,
    };
    vl_photographic(&PhotoExport {
        patient: DicomPatient {
            id: "DERMATO-0042".into(),
            family_name: "DUPONT".into(),
            given_names: "Jeanne".into(),
            birth_date: Some(jiff::civil::date(1951, 6, 3)),
            sex: Sex::Female,
            ins: None,
        },
        study: Study {
            instance_uid: None,
            accession_number: String::new(),
            description: "Dermatoscopie".into(),
            referring_physician: None,
            started_at: taken_at,
        },
        series_instance_uid: None,
        acquisition: Acquisition {
            taken_at,
            kind: PhotoKind::Dermoscopy {
                polarized: Some(true),
                contact: Some(true),
            },
            body_site: None,
            laterality: None,
            manufacturer: "Heine Optotechnik".into(),
            model: "DELTAone".into(),
            instance_number: Some(1),
        },
        institution_name: "Cabinet de dermatologie".into(),
        jpeg,
    })
    .expect("a DICOM file around the JPEG")
}
