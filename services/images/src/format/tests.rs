//! Behaviour of the sanitizer and the thumbnailer on real images built by [`super::fixtures`].

use super::fixtures::*;
use super::*;
use StrippedCategory as C;

fn sanitize_with(
    input: &[u8],
    options: SanitizeOptions,
) -> Result<(Vec<u8>, ImageFacts), FormatError> {
    let mut sanitizer = Sanitizer::new(options);
    let mut out = Vec::new();
    sanitizer.push(input, &mut out)?;
    let facts = sanitizer.finish(&mut out)?;
    Ok((out, facts))
}

fn sanitize(input: &[u8]) -> Result<(Vec<u8>, ImageFacts), FormatError> {
    sanitize_with(input, SanitizeOptions::default())
}

fn sanitize_in_pieces(input: &[u8], sizes: &[usize]) -> Result<(Vec<u8>, ImageFacts), FormatError> {
    let mut sanitizer = Sanitizer::new(SanitizeOptions::default());
    let mut out = Vec::new();
    for piece in pieces(input, sizes) {
        sanitizer.push(piece, &mut out)?;
    }
    let facts = sanitizer.finish(&mut out)?;
    Ok((out, facts))
}

fn ok(input: &[u8]) -> (Vec<u8>, ImageFacts) {
    sanitize(input).expect("the fixture is a valid image")
}

fn tags(facts: &ImageFacts) -> Vec<&str> {
    facts.stripped_tags.iter().map(String::as_str).collect()
}

fn decode_jpeg(bytes: &[u8]) -> Vec<u8> {
    jpeg_decoder::Decoder::new(bytes)
        .decode()
        .expect("decodable JPEG")
}

fn decode_png(bytes: &[u8]) -> Vec<u8> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("small image")];
    let info = reader.next_frame(&mut pixels).expect("PNG data");
    pixels.truncate(info.buffer_size());
    pixels
}

/// A small xorshift generator: deterministic "random" tests without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ----- JPEG: what is removed, what is kept -----

#[test]
fn a_phone_jpeg_loses_every_identifying_tag_with_the_right_categories() {
    let (out, facts) = ok(&jpeg_with_identifying_metadata(96, 64));

    assert_eq!(facts.content_type, ContentType::Jpeg);
    assert_eq!((facts.width, facts.height), (96, 64));
    let expected: BTreeSet<_> = [
        C::GpsLocation,
        C::DeviceIdentifiers,
        C::PersonNames,
        C::EmbeddedThumbnail,
        C::MakerNotes,
        C::Xmp,
        C::Iptc,
        C::TextComments,
    ]
    .into();
    assert_eq!(facts.stripped, expected);
    let names = tags(&facts);
    for name in [
        "EXIF:ImageDescription",
        "EXIF:Make",
        "EXIF:Model",
        "EXIF:Artist",
        "EXIF:Copyright",
        "EXIF:MakerNote",
        "EXIF:UserComment",
        "EXIF:ImageUniqueID",
        "EXIF:CameraOwnerName",
        "EXIF:BodySerialNumber",
        "EXIF:GPSLatitudeRef",
        "EXIF:GPSLatitude",
        "EXIF:GPSLongitudeRef",
        "EXIF:GPSLongitude",
        "EXIF:IFD1",
        "JPEG:XMP",
        "JPEG:APP13",
        "JPEG:COM",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let unique: HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "tag names are deduplicated");

    for needle in [
        "Dupont",
        "Rivoli",
        "R5CT",
        "Samsung",
        "SM-S918B",
        "xmpmeta",
        "Photoshop",
    ] {
        assert!(
            !out.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} still in the output"
        );
    }
}

#[test]
fn the_jpeg_keeps_orientation_and_capture_date_and_nothing_else_of_exif() {
    let (out, facts) = ok(&jpeg_with_identifying_metadata(96, 64));

    assert_eq!(facts.exif_orientation, Some(6));
    let left: Vec<(String, u16)> = exif_tags(&out);
    assert_eq!(
        left,
        vec![
            ("IFD0".to_owned(), 0x0112),
            ("IFD0".to_owned(), 0x8769),
            ("Exif".to_owned(), 0x9003),
        ]
    );
    assert_eq!(
        exif_value(&out, "IFD0", 0x0112),
        Some(vec![6, 0]),
        "little-endian kept"
    );
    assert_eq!(
        exif_value(&out, "Exif", 0x9003),
        Some(b"2024:05:01 10:30:00\0".to_vec())
    );
}

#[test]
fn stripping_the_capture_date_is_reported_and_leaves_only_the_orientation() {
    let options = SanitizeOptions {
        strip_capture_date_time: true,
        ..SanitizeOptions::default()
    };
    let (out, facts) =
        sanitize_with(&jpeg_with_identifying_metadata(64, 48), options).expect("valid");

    assert!(facts.stripped.contains(&C::CaptureDateTime));
    assert!(tags(&facts).contains(&"EXIF:DateTimeOriginal"));
    assert_eq!(exif_tags(&out), vec![("IFD0".to_owned(), 0x0112)]);
}

#[test]
fn exif_with_nothing_worth_keeping_is_dropped_entirely() {
    let options = SanitizeOptions {
        strip_capture_date_time: true,
        ..SanitizeOptions::default()
    };
    // The PNG-style big-endian block rewritten into a JPEG without orientation.
    let mut tiff = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&[
        0, 1, 0x01, 0x3B, 0, 2, 0, 0, 0, 4, b'J', b'e', b'a', 0, 0, 0, 0, 0,
    ]);
    let jpeg = insert_after_soi(&jpeg_plain(32, 32), 0xE1, &tiff);
    let (out, facts) = sanitize_with(&jpeg, options).expect("valid");

    assert!(exif_tags(&out).is_empty());
    assert!(!out.windows(4).any(|w| w == b"Exif"));
    assert_eq!(tags(&facts), vec!["EXIF:Artist"]);
}

#[test]
fn jpeg_entropy_coded_data_is_byte_identical_and_decodes_to_the_same_pixels() {
    for (name, input) in [
        ("identifying", jpeg_with_identifying_metadata(120, 80)),
        ("progressive", progressive_jpeg(120, 80)),
        ("restart markers", jpeg_with_restart_markers(120, 80)),
        ("plain", jpeg_plain(33, 17)),
    ] {
        let (out, _) = ok(&input);
        let segments = entropy_coded_segments(&input);
        assert!(!segments.is_empty(), "{name}");
        assert_eq!(entropy_coded_segments(&out), segments, "{name}");
        assert_eq!(decode_jpeg(&out), decode_jpeg(&input), "{name}");
    }
}

#[test]
fn restart_markers_and_progressive_scans_pass_through() {
    let input = jpeg_with_restart_markers(64, 64);
    assert!(
        entropy_coded_segments(&input)
            .windows(2)
            .any(|w| w == [0xFF, 0xD0])
    );
    let (out, _) = ok(&input);
    assert_eq!(
        out, input,
        "a JPEG without metadata beyond JFIF is copied as is"
    );

    let input = progressive_jpeg(64, 64);
    let scans = input.windows(2).filter(|w| *w == [0xFF, 0xDA]).count();
    assert!(scans > 1);
    let (out, facts) = ok(&input);
    assert_eq!(out, input);
    assert!(facts.stripped.is_empty() && facts.stripped_tags.is_empty());
}

#[test]
fn segments_between_progressive_scans_are_filtered_like_header_segments() {
    let input = progressive_jpeg(48, 48);
    // Put a COM segment just before the second scan.
    let second_sos = input
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xDA])
        .nth(1)
        .map(|(i, _)| i)
        .expect("several scans");
    let mut with_comment = input[..second_sos].to_vec();
    with_comment.extend_from_slice(&[0xFF, 0xFE, 0, 7, b'h', b'e', b'l', b'l', b'o']);
    with_comment.extend_from_slice(&input[second_sos..]);

    let (out, facts) = ok(&with_comment);
    assert_eq!(out, input);
    assert_eq!(tags(&facts), vec!["JPEG:COM"]);
}

#[test]
fn an_embedded_jfif_thumbnail_is_cut_out_of_app0() {
    let plain = jpeg_plain(16, 16);
    // Replace the encoder's APP0 by one with a 1×1 thumbnail.
    let app0_len = usize::from(u16::from_be_bytes([plain[4], plain[5]]));
    let mut jfif = plain[6..4 + app0_len].to_vec();
    jfif[12] = 1;
    jfif[13] = 1;
    jfif.extend_from_slice(&[255, 0, 0]);
    let mut input = plain[..2].to_vec();
    input.extend_from_slice(&[0xFF, 0xE0]);
    input.extend_from_slice(&((jfif.len() + 2) as u16).to_be_bytes());
    input.extend_from_slice(&jfif);
    input.extend_from_slice(&plain[4 + app0_len..]);

    let (out, facts) = ok(&input);
    assert_eq!(out, plain);
    assert_eq!(tags(&facts), vec!["JFIF:thumbnail"]);
    assert!(facts.stripped.contains(&C::EmbeddedThumbnail));
}

#[test]
fn icc_profile_and_adobe_segments_are_kept_and_other_app_segments_dropped() {
    let mut icc = b"ICC_PROFILE\0\x01\x01".to_vec();
    icc.extend_from_slice(&[7; 40]);
    let mut adobe = b"Adobe".to_vec();
    adobe.extend_from_slice(&[0, 100, 0, 0, 0, 0, 1]);
    let plain = jpeg_plain(16, 16);
    let input = insert_after_soi(&plain, 0xE2, &icc);
    let input = insert_after_soi(&input, 0xEE, &adobe);
    let input = insert_after_soi(&input, 0xEB, b"HDR_RI ver=11");
    let input = insert_after_soi(&input, 0xE2, b"FPXR\0\0\0");

    let (out, facts) = ok(&input);
    let expected = insert_after_soi(&insert_after_soi(&plain, 0xE2, &icc), 0xEE, &adobe);
    assert_eq!(out, expected);
    assert_eq!(tags(&facts), vec!["JPEG:APP2", "JPEG:APP11"]);
}

// ----- Split at any boundary -----

#[test]
fn pushing_one_byte_at_a_time_or_random_pieces_gives_the_same_output_and_facts() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (name, input) in [
        ("jpeg", jpeg_with_identifying_metadata(80, 60)),
        ("progressive", progressive_jpeg(40, 30)),
        ("restarts", jpeg_with_restart_markers(40, 30)),
        ("mpf", jpeg_with_mpf_preview(40, 30)),
        ("png", png_with_identifying_metadata(80, 60)),
    ] {
        let whole = ok(&input);
        let bytewise = sanitize_in_pieces(&input, &[1]).expect("valid");
        assert_eq!(bytewise, whole, "{name}: one byte at a time");
        for round in 0..20 {
            let sizes: Vec<usize> = (0..16).map(|_| 1 + rng.below(700)).collect();
            let pieces = sanitize_in_pieces(&input, &sizes).expect("valid");
            assert_eq!(pieces, whole, "{name}: round {round}, sizes {sizes:?}");
        }
    }
}

#[test]
fn output_is_emitted_as_input_arrives() {
    let input = jpeg_plain(256, 256);
    let mut sanitizer = Sanitizer::new(SanitizeOptions::default());
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in pieces(&input, &[4096]) {
        out.clear();
        sanitizer.push(piece, &mut out).expect("valid");
        fed += piece.len();
        if fed > 1024 && fed < input.len() {
            // Entropy data passes straight through, at most one `FF` held back.
            assert!(
                out.len() + 1 >= piece.len(),
                "{} of {}",
                out.len(),
                piece.len()
            );
        }
    }
}

// ----- PNG -----

#[test]
fn a_png_loses_text_xmp_gps_and_private_chunks_and_keeps_orientation_and_time() {
    let input = png_with_identifying_metadata(64, 48);
    let (out, facts) = ok(&input);

    assert_eq!(facts.content_type, ContentType::Png);
    assert_eq!((facts.width, facts.height), (64, 48));
    assert_eq!(facts.exif_orientation, Some(3));
    let names = tags(&facts);
    for name in [
        "PNG:tEXt",
        "PNG:zTXt",
        "PNG:iTXt",
        "PNG:prVt",
        "EXIF:GPSLatitude",
        "EXIF:GPSLongitude",
        "EXIF:Make",
        "EXIF:IFD1",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for category in [
        C::GpsLocation,
        C::Xmp,
        C::TextComments,
        C::PersonNames,
        C::EmbeddedThumbnail,
    ] {
        assert!(facts.stripped.contains(&category), "{category:?}");
    }
    assert!(!facts.stripped.contains(&C::CaptureDateTime));

    let kinds: Vec<[u8; 4]> = png_chunks(&out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [*b"IHDR", *b"eXIf", *b"tIME", *b"IDAT", *b"IEND"]);
    assert_eq!(
        exif_tags(&out),
        vec![
            ("IFD0".to_owned(), 0x0112),
            ("IFD0".to_owned(), 0x8769),
            ("Exif".to_owned(), 0x9003),
        ]
    );
    assert_eq!(
        exif_value(&out, "IFD0", 0x0112),
        Some(vec![0, 3]),
        "big-endian kept"
    );
    assert_eq!(idat_payload(&out), idat_payload(&input));
    assert_eq!(decode_png(&out), decode_png(&input));
    for needle in ["Dupont", "Rivoli", "R5CT", "xmpmeta"] {
        assert!(
            !out.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle}"
        );
    }
}

#[test]
fn png_time_is_dropped_when_capture_dates_are_stripped() {
    let options = SanitizeOptions {
        strip_capture_date_time: true,
        ..SanitizeOptions::default()
    };
    let (out, facts) =
        sanitize_with(&png_with_identifying_metadata(16, 16), options).expect("valid");
    assert!(facts.stripped.contains(&C::CaptureDateTime));
    assert!(tags(&facts).contains(&"PNG:tIME"));
    let kinds: Vec<[u8; 4]> = png_chunks(&out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [*b"IHDR", *b"eXIf", *b"IDAT", *b"IEND"]);
}

#[test]
fn a_plain_png_is_copied_unchanged() {
    for input in [
        png_plain(40, 30),
        png_image(17, 5, png::ColorType::Indexed, png::BitDepth::Four),
        png_image(9, 9, png::ColorType::GrayscaleAlpha, png::BitDepth::Sixteen),
    ] {
        let (out, facts) = ok(&input);
        assert_eq!(out, input);
        assert_eq!(facts.exif_orientation, None);
        assert!(facts.stripped_tags.is_empty());
    }
}

// ----- Refusals -----

/// Whether a refusal is the expected one.
type IsExpected = fn(&FormatError) -> bool;

fn refusal(input: &[u8]) -> FormatError {
    let error = sanitize(input).expect_err("must be refused");
    // The same refusal whatever the chunking.
    assert_eq!(
        sanitize_in_pieces(input, &[1]).expect_err("must be refused"),
        error
    );
    error
}

#[test]
fn every_malformed_or_hostile_input_is_refused_with_its_own_error() {
    let jpeg = jpeg_plain(32, 32);
    let png = png_plain(32, 32);
    let mut bad_crc = png.clone();
    bad_crc[45] ^= 0x01; // inside the IDAT data (IDAT starts at 33)
    let mut garbage_dht = jpeg.clone();
    let dht = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC4])
        .expect("DHT");
    garbage_dht[dht + 4] = 0x7F;
    let mut bad_length = jpeg.clone();
    bad_length[4..6].copy_from_slice(&[0, 1]);
    let mut sos_first = jpeg[..2].to_vec();
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    sos_first.extend_from_slice(&jpeg[sos..]);
    let mut not_ihdr_first = png[..8].to_vec();
    not_ihdr_first.extend_from_slice(&png[33..]);
    let mut critical = png[..33].to_vec();
    critical.extend_from_slice(&[0, 0, 0, 0, b'C', b'g', b'B', b'I']);
    critical.extend_from_slice(&crc32fast::hash(b"CgBI").to_be_bytes());
    critical.extend_from_slice(&png[33..]);
    let mut huge_chunk = png[..33].to_vec();
    huge_chunk.extend_from_slice(&[0x80, 0, 0, 0, b't', b'E', b'X', b't']);
    let mut trailing_png = png.clone();
    trailing_png.extend_from_slice(b"PK\x03\x04 hidden");
    let zero_png = png_bomb(0, 16);

    let text = b"<html><body>not an image at all, just some text that is long enough to pass the \
        DICOM preamble length of one hundred and twenty-eight bytes</body></html>";
    let cases: Vec<(&str, Vec<u8>, IsExpected)> = vec![
        ("text", text.to_vec(), |e| {
            matches!(e, FormatError::NotAnImage { .. })
        }),
        ("short text", b"hello".to_vec(), |e| {
            matches!(e, FormatError::NotAnImage { .. })
        }),
        ("empty", Vec::new(), |e| {
            matches!(e, FormatError::NotAnImage { .. })
        }),
        ("dicom", dicom_header(), |e| {
            *e == FormatError::DicomNotAccepted
        }),
        ("truncated jpeg", jpeg[..jpeg.len() - 2].to_vec(), |e| {
            matches!(
                e,
                FormatError::Truncated {
                    format: ContentType::Jpeg,
                    ..
                }
            )
        }),
        ("jpeg header only", jpeg[..100].to_vec(), |e| {
            matches!(
                e,
                FormatError::Truncated {
                    format: ContentType::Jpeg,
                    ..
                }
            )
        }),
        ("jpeg signature only", vec![0xFF, 0xD8], |e| {
            matches!(
                e,
                FormatError::Truncated {
                    format: ContentType::Jpeg,
                    ..
                }
            )
        }),
        ("truncated png", png[..png.len() - 12].to_vec(), |e| {
            matches!(
                e,
                FormatError::Truncated {
                    format: ContentType::Png,
                    ..
                }
            )
        }),
        ("png signature only", png[..5].to_vec(), |e| {
            matches!(
                e,
                FormatError::Truncated {
                    format: ContentType::Png,
                    ..
                }
            )
        }),
        (
            "zip after jpeg",
            polyglot_jpeg_zip(),
            |e| matches!(e, FormatError::TrailingData { format: ContentType::Jpeg, bytes } if *bytes > 100),
        ),
        ("data after png", trailing_png, |e| {
            *e == FormatError::TrailingData {
                format: ContentType::Png,
                bytes: 11,
            }
        }),
        ("jpeg bomb by side", jpeg_bomb(65_000, 100), |e| {
            matches!(e, FormatError::DimensionsTooLarge { width: 65_000, .. })
        }),
        ("jpeg bomb by pixels", jpeg_bomb(15_000, 15_000), |e| {
            matches!(e, FormatError::DimensionsTooLarge { .. })
        }),
        ("png bomb", png_bomb(100_000, 100_000), |e| {
            matches!(e, FormatError::DimensionsTooLarge { .. })
        }),
        ("png bomb by pixels", png_bomb(19_000, 19_000), |e| {
            matches!(e, FormatError::DimensionsTooLarge { .. })
        }),
        ("zero-width png", zero_png, |e| {
            matches!(
                e,
                FormatError::ZeroDimensions {
                    format: ContentType::Png
                }
            )
        }),
        ("zero-height jpeg", jpeg_bomb(32, 0), |e| {
            matches!(
                e,
                FormatError::ZeroDimensions {
                    format: ContentType::Jpeg
                }
            )
        }),
        ("bad crc", bad_crc, |e| {
            matches!(e, FormatError::Corrupt { .. })
        }),
        ("garbage in DHT", garbage_dht, |e| {
            matches!(e, FormatError::Corrupt { .. })
        }),
        ("segment length 1", bad_length, |e| {
            matches!(e, FormatError::Corrupt { .. })
        }),
        ("SOS before SOF", sos_first, |e| {
            matches!(e, FormatError::Corrupt { .. })
        }),
        ("IHDR not first", not_ihdr_first, |e| {
            matches!(e, FormatError::Corrupt { .. })
        }),
        ("unknown critical chunk", critical, |e| {
            matches!(e, FormatError::Unsupported { .. })
        }),
        ("chunk over 2^31", huge_chunk, |e| {
            matches!(e, FormatError::Corrupt { .. })
        }),
    ];
    for (name, input, expected) in cases {
        let error = refusal(&input);
        assert!(expected(&error), "{name}: got {error:?}");
        let message = error.to_string();
        assert!(!message.ends_with('.'), "{name}: {message}");
    }
}

#[test]
fn bombs_are_refused_as_soon_as_the_header_arrives() {
    let bomb = jpeg_bomb(65_000, 65_000);
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF");
    let mut sanitizer = Sanitizer::new(SanitizeOptions::default());
    let mut out = Vec::new();
    let error = sanitizer
        .push(&bomb[..sof + 19], &mut out)
        .expect_err("bomb");
    assert!(matches!(error, FormatError::DimensionsTooLarge { .. }));
    assert!(matches!(
        sanitizer.push(&bomb[sof + 19..], &mut out),
        Err(FormatError::AlreadyFailed(_))
    ));

    let bomb = png_bomb(100_000, 100_000);
    let mut sanitizer = Sanitizer::new(SanitizeOptions::default());
    assert!(sanitizer.push(&bomb[..33], &mut out).is_err());
}

#[test]
fn limits_are_configurable() {
    let options = SanitizeOptions {
        max_side_px: 100,
        max_pixels: 5_000,
        ..SanitizeOptions::default()
    };
    assert!(sanitize_with(&jpeg_plain(60, 60), options).is_ok());
    assert!(sanitize_with(&jpeg_plain(101, 10), options).is_err());
    assert!(sanitize_with(&png_plain(80, 80), options).is_err());
}

#[test]
fn the_error_message_shows_the_first_bytes_of_a_non_image() {
    let error = refusal(
        b"%PDF-1.7 with enough bytes to be sure it is not a DICOM file either, \
        since a DICOM file needs one hundred and thirty-two bytes",
    );
    assert_eq!(
        error.to_string(),
        "not an image (first bytes 25 50 44 46 2D 31 2E 37); upload a JPEG or PNG photo"
    );
}

// ----- Malformed EXIF -----

fn jpeg_with_exif(tiff: &[u8]) -> Vec<u8> {
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(tiff);
    insert_after_soi(&jpeg_plain(24, 24), 0xE1, &body)
}

#[test]
fn malformed_exif_is_dropped_and_reported_without_failing_the_upload() {
    let ifd = |entries: &[[u8; 12]], next: u32| {
        let mut t = b"II*\0\x08\0\0\0".to_vec();
        t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for e in entries {
            t.extend_from_slice(e);
        }
        t.extend_from_slice(&next.to_le_bytes());
        t
    };
    let entry = |tag: u16, kind: u16, count: u32, value: u32| {
        let mut e = [0u8; 12];
        e[..2].copy_from_slice(&tag.to_le_bytes());
        e[2..4].copy_from_slice(&kind.to_le_bytes());
        e[4..8].copy_from_slice(&count.to_le_bytes());
        e[8..].copy_from_slice(&value.to_le_bytes());
        e
    };
    let orientation = entry(0x0112, 3, 1, 6);
    let cases = [
        (
            "gps offset out of range",
            ifd(&[orientation, entry(0x8825, 4, 1, 0xFFFF_0000)], 0),
        ),
        (
            "exif ifd loops to ifd0",
            ifd(&[orientation, entry(0x8769, 4, 1, 8)], 0),
        ),
        ("ifd1 loops to ifd0", ifd(&[orientation], 8)),
        (
            "value out of range",
            ifd(&[orientation, entry(0x010F, 2, 0x0100_0000, 20)], 0),
        ),
        (
            "count overflow",
            ifd(&[orientation, entry(0x010F, 12, u32::MAX, 20)], 0),
        ),
        ("not tiff", b"XX*\0\x08\0\0\0".to_vec()),
        ("truncated ifd", ifd(&[orientation], 0)[..14].to_vec()),
    ];
    for (name, tiff) in cases {
        let (out, facts) =
            sanitize(&jpeg_with_exif(&tiff)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(exif_tags(&out).is_empty(), "{name}: APP1 dropped");
        assert_eq!(facts.exif_orientation, None, "{name}");
        assert_eq!(tags(&facts), vec!["EXIF:malformed"], "{name}");
    }
}

// ----- MPF -----

#[test]
fn mpf_preview_images_after_the_primary_image_are_dropped() {
    let input = jpeg_with_mpf_preview(64, 48);
    let (out, facts) = ok(&input);

    assert!(facts.stripped.contains(&C::EmbeddedThumbnail));
    assert_eq!(tags(&facts), vec!["JPEG:MPF"]);
    assert_eq!(out.windows(2).filter(|w| *w == [0xFF, 0xD9]).count(), 1);
    assert!(out.ends_with(&[0xFF, 0xD9]));
    assert!(!out.windows(6).any(|w| w == b"Dupont"));
    assert_eq!(decode_jpeg(&out), decode_jpeg(&input));
}

// ----- Thumbnails -----

#[test]
fn thumbnails_apply_every_orientation() {
    let jpeg = jpeg_plain(300, 200);
    let png = png_plain(300, 200);
    for orientation in 1..=8u8 {
        let upright = orientation <= 4;
        let expected = if upright { (256, 171) } else { (171, 256) };
        for (format, bytes) in [(ContentType::Jpeg, &jpeg), (ContentType::Png, &png)] {
            let thumb = thumbnail(bytes.as_slice(), format, Some(orientation), 256)
                .unwrap_or_else(|e| panic!("{format} {orientation}: {e}"));
            assert_eq!(
                (thumb.width, thumb.height),
                expected,
                "{format} {orientation}"
            );
            let decoded = jpeg_decoder::Decoder::new(thumb.jpeg.as_slice());
            let mut decoded = decoded;
            decoded.decode().expect("the thumbnail is a valid JPEG");
            let info = decoded.info().expect("decoded");
            assert_eq!(
                (u32::from(info.width), u32::from(info.height)),
                expected,
                "{format} {orientation}"
            );
            assert_eq!(
                info.coding_process,
                jpeg_decoder::CodingProcess::DctSequential
            );
        }
    }
}

#[test]
fn the_preview_of_a_rotated_image_shows_the_right_corner_on_top() {
    // A PNG black on its left half, white on its right half; orientation 6 turns it so the
    // left half (black) ends up on top.
    let (w, h) = (64u32, 32u32);
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().expect("header");
        let pixels: Vec<u8> = (0..h)
            .flat_map(|_| (0..w).map(|x| if x < w / 2 { 0 } else { 255 }))
            .collect();
        writer.write_image_data(&pixels).expect("pixels");
    }
    let thumb = thumbnail(out.as_slice(), ContentType::Png, Some(6), 64).expect("thumbnail");
    assert_eq!((thumb.width, thumb.height), (32, 64));
    let pixels = decode_jpeg(&thumb.jpeg);
    let top = pixels[(5 * 32 + 16) * 3];
    let bottom = pixels[(58 * 32 + 16) * 3];
    assert!(top < 40 && bottom > 215, "top {top}, bottom {bottom}");
}

#[test]
fn a_big_baseline_jpeg_is_previewed_from_a_dct_scaled_decode() {
    // 8000×6000 decoded at full size would need 48 MB, above the 32 MiB decode cap: success
    // proves the decoder worked at 1/8 scale.
    let big = flat_grey_jpeg(8000, 6000);
    const { assert!(8000 * 6000 > MAX_DECODED_PREVIEW_BYTES) };
    let (_, facts) = ok(&big);
    assert_eq!((facts.width, facts.height), (8000, 6000));
    let thumb = thumbnail(big.as_slice(), ContentType::Jpeg, None, 256).expect("thumbnail");
    assert_eq!((thumb.width, thumb.height), (256, 192));
    assert!(thumb.jpeg.len() < 256 * 1024);
    let pixels = decode_jpeg(&thumb.jpeg);
    assert!(pixels.iter().all(|&p| (120..=136).contains(&p)), "mid-grey");
}

#[test]
fn a_huge_progressive_jpeg_is_refused_for_previews() {
    let mut big = progressive_jpeg(16, 16);
    let sof = big
        .windows(2)
        .position(|w| w == [0xFF, 0xC2])
        .expect("SOF2");
    big[sof + 5..sof + 7].copy_from_slice(&6000u16.to_be_bytes());
    big[sof + 7..sof + 9].copy_from_slice(&5000u16.to_be_bytes());
    let error = thumbnail(big.as_slice(), ContentType::Jpeg, None, 256).expect_err("refused");
    assert!(
        matches!(error, FormatError::PreviewTooExpensive { .. }),
        "{error:?}"
    );
}

#[test]
fn thumbnails_of_every_png_kind_and_of_progressive_jpeg_are_small_jpegs() {
    use png::{BitDepth as D, ColorType as T};
    let inputs = [
        (ContentType::Png, png_image(200, 120, T::Indexed, D::Eight)),
        (ContentType::Png, png_image(200, 120, T::Indexed, D::Two)),
        (ContentType::Png, png_image(200, 120, T::Grayscale, D::One)),
        (
            ContentType::Png,
            png_image(200, 120, T::Grayscale, D::Sixteen),
        ),
        (
            ContentType::Png,
            png_image(200, 120, T::GrayscaleAlpha, D::Eight),
        ),
        (ContentType::Png, png_image(200, 120, T::Rgba, D::Sixteen)),
        (ContentType::Png, png_image(200, 120, T::Rgba, D::Eight)),
        (ContentType::Jpeg, progressive_jpeg(200, 120)),
        (
            ContentType::Jpeg,
            jpeg_with_identifying_metadata(2000, 1200),
        ),
    ];
    for (i, (format, bytes)) in inputs.iter().enumerate() {
        let thumb =
            thumbnail(bytes.as_slice(), *format, None, 128).unwrap_or_else(|e| panic!("{i}: {e}"));
        assert_eq!((thumb.width, thumb.height), (128, 77), "{i}");
        assert!(thumb.jpeg.len() < 256 * 1024, "{i}");
        assert!(
            !thumb.jpeg.windows(4).any(|w| w == b"Exif"),
            "{i}: no metadata"
        );
    }
    // Transparent pixels are composited on white.
    let thumb = thumbnail(
        png_image(64, 64, T::Rgba, D::Eight).as_slice(),
        ContentType::Png,
        None,
        64,
    )
    .expect("thumbnail");
    let pixels = decode_jpeg(&thumb.jpeg);
    assert!(
        pixels[..3].iter().all(|&p| p > 230),
        "fully transparent column is white"
    );
}

#[test]
fn the_largest_thumbnail_of_noise_fits_the_contract() {
    let thumb = thumbnail(
        jpeg_plain(1024, 1024).as_slice(),
        ContentType::Jpeg,
        Some(1),
        512,
    )
    .expect("thumbnail");
    assert_eq!((thumb.width, thumb.height), (512, 512));
    assert!(thumb.jpeg.len() < 256 * 1024, "{} bytes", thumb.jpeg.len());
}

#[test]
fn thumbnail_sizes_outside_the_range_and_corrupt_data_are_errors() {
    let jpeg = jpeg_plain(64, 64);
    assert!(matches!(
        thumbnail(jpeg.as_slice(), ContentType::Jpeg, None, 16),
        Err(FormatError::InvalidThumbnailSize { requested: 16 })
    ));
    let mut corrupt = jpeg.clone();
    let sos = corrupt
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    corrupt.truncate(sos + 20);
    assert!(thumbnail(corrupt.as_slice(), ContentType::Jpeg, None, 64).is_err());
    assert!(thumbnail(&b"not a png"[..], ContentType::Png, None, 64).is_err());
    assert!(
        thumbnail(
            png_bomb(100_000, 100_000).as_slice(),
            ContentType::Png,
            None,
            64
        )
        .is_err()
    );
}

// ----- Hostile mutations -----

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    match rng.below(5) {
        0 => bytes.truncate(rng.below(bytes.len())),
        1 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let at = rng.below(bytes.len());
            bytes[at] = [0x00, 0xFF, 0x7F, 0x80][rng.below(4)];
        }
        3 => {
            // Overwrite a length/offset-sized field with an extreme value.
            let at = rng.below(bytes.len().saturating_sub(4));
            let value = [0u32, 1, 0xFFFF, 0xFFFF_FFFF, 8][rng.below(5)];
            bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        _ => {
            let at = rng.below(bytes.len());
            let len = rng.below(64).min(bytes.len() - at);
            bytes.drain(at..at + len);
        }
    }
    bytes
}

#[test]
fn thousands_of_mutated_files_never_panic_the_sanitizer_or_the_thumbnailer() {
    let seeds = [
        (ContentType::Jpeg, jpeg_with_identifying_metadata(48, 32)),
        (ContentType::Jpeg, progressive_jpeg(32, 24)),
        (ContentType::Jpeg, jpeg_with_mpf_preview(24, 16)),
        (ContentType::Png, png_with_identifying_metadata(48, 32)),
    ];
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let mut accepted = 0;
    for round in 0..3000 {
        let (format, seed) = &seeds[round % seeds.len()];
        let input = mutate(&mut rng, seed);
        let sizes = [1 + rng.below(300), 1 + rng.below(50)];
        if let Ok((out, facts)) = sanitize_in_pieces(&input, &sizes) {
            accepted += 1;
            assert_eq!(facts.content_type, *format);
            // Whatever was accepted sanitizes to itself.
            let again = sanitize(&out).expect("sanitized output is valid");
            assert_eq!(again.0, out, "round {round}: idempotent");
        }
        if round % 4 == 0 {
            let _ = thumbnail(input.as_slice(), *format, Some(rng.below(10) as u8), 32);
        }
    }
    assert!(
        accepted > 100,
        "mutations should not all be refused ({accepted})"
    );
}

#[test]
fn an_interlaced_png_is_sanitized_unchanged_and_previewed_like_its_progressive_twin() {
    for (w, h) in [(37, 23), (300, 200), (5, 3)] {
        let interlaced = png_grey_interlaced(w, h);
        let plain = png_image(w, h, png::ColorType::Grayscale, png::BitDepth::Eight);
        assert_eq!(
            decode_png(&interlaced),
            decode_png(&plain),
            "{w}x{h} fixture"
        );
        let (out, _) = ok(&interlaced);
        assert_eq!(out, interlaced);

        let a = thumbnail(interlaced.as_slice(), ContentType::Png, Some(5), 64).expect("thumbnail");
        let b = thumbnail(plain.as_slice(), ContentType::Png, Some(5), 64).expect("thumbnail");
        assert_eq!(a, b, "{w}x{h}");
    }
}

#[test]
fn a_wide_sixteen_bit_png_is_previewed_row_by_row() {
    let wide = png_image(12_000, 24, png::ColorType::Rgba, png::BitDepth::Sixteen);
    let thumb = thumbnail(wide.as_slice(), ContentType::Png, None, 512).expect("thumbnail");
    assert_eq!((thumb.width, thumb.height), (512, 1));
}

#[test]
fn a_cmyk_jpeg_preview_has_the_right_colours() {
    // Left half no ink (white), right half full cyan (no red).
    let (w, h) = (32u16, 16u16);
    let cmyk: Vec<u8> = (0..h)
        .flat_map(|_| {
            (0..w).flat_map(|x| {
                if x < w / 2 {
                    [0, 0, 0, 0]
                } else {
                    [255, 0, 0, 0]
                }
            })
        })
        .collect();
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 95)
        .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
        .expect("encoding");
    let (out, _) = ok(&jpeg);
    let thumb = thumbnail(out.as_slice(), ContentType::Jpeg, None, 32).expect("thumbnail");
    let pixels = decode_jpeg(&thumb.jpeg);
    let at = |x: usize, y: usize| &pixels[(y * 32 + x) * 3..][..3];
    assert!(at(4, 8).iter().all(|&c| c > 230), "white: {:?}", at(4, 8));
    let cyan = at(28, 8);
    assert!(
        cyan[0] < 40 && cyan[1] > 200 && cyan[2] > 200,
        "cyan: {cyan:?}"
    );
}
