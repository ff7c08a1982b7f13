//! Import: what the suite exported comes back identical, and hostile files are errors, never
//! panics or huge allocations.

mod support;

use support::{dermoscopy, jpeg, photo};
use telehealth_dicom::{Error, ImportLimits, Laterality, Pixels, import, uids, vl_photographic};

fn exported() -> (Vec<u8>, Vec<u8>) {
    let image = jpeg(64, 48);
    let file = vl_photographic(&photo(dermoscopy(), true, &image)).expect("export");
    (image, file)
}

#[test]
fn an_exported_file_imports_as_the_same_jpeg_with_its_metadata() {
    let (image, file) = exported();
    let imported = import(&file, &ImportLimits::default()).expect("import");
    assert_eq!(
        imported.pixels,
        Pixels::Jpeg(image),
        "the JPEG comes back byte for byte"
    );
    assert_eq!(imported.sop_class, uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE);
    assert_eq!(imported.patient.id.as_deref(), Some("PAT-0042"));
    assert_eq!(
        imported.patient.family_name.as_deref(),
        Some("LEFÈVRE-ÉTIENNE")
    );
    assert_eq!(imported.patient.given_names.as_deref(), Some("Zoé Hélène"));
    assert_eq!(imported.patient.sex.as_deref(), Some("F"));
    assert_eq!(
        imported.patient.birth_date,
        Some(jiff::civil::date(1957, 2, 28))
    );
    assert_eq!(
        imported.acquired_at,
        Some(jiff::civil::date(2026, 7, 1).at(10, 15, 42, 0))
    );
    assert_eq!(imported.utc_offset.map(|o| o.seconds()), Some(7200));
    assert_eq!(imported.body_site.as_deref(), Some("Skin structure"));
    assert_eq!(imported.laterality, Some(Laterality::Left));
    assert_eq!(imported.manufacturer.as_deref(), Some("Heine Optotechnik"));
    assert_eq!(imported.model.as_deref(), Some("DELTAone"));
}

#[test]
fn an_odd_length_jpeg_comes_back_without_its_pad_byte() {
    let mut image = jpeg(33, 17);
    if image.len().is_multiple_of(2) {
        image.splice(2..2, [0xFF, 0xFE, 0x00, 0x03, b'x']);
    }
    let file = vl_photographic(&photo(dermoscopy(), false, &image)).expect("export");
    let imported = import(&file, &ImportLimits::default()).expect("import");
    assert_eq!(imported.pixels, Pixels::Jpeg(image));
}

#[test]
fn a_file_truncated_anywhere_is_an_error() {
    let (_, file) = exported();
    // Every offset in the headers, then every 97th byte through the pixel data.
    let cuts = (0..file.len().min(2048)).chain((2048..file.len()).step_by(97));
    for cut in cuts {
        assert!(
            import(&file[..cut], &ImportLimits::default()).is_err(),
            "truncated at {cut} of {}",
            file.len()
        );
    }
}

#[test]
fn a_huge_declared_length_is_refused_before_any_allocation() {
    let (_, file) = exported();
    // Patient's Name's length (short form, explicit VR: tag, "PN", u16) set to the maximum, and
    // the pixel data fragment's 32-bit length set to 4 GiB - 2.
    let mut short = file.clone();
    let at = find(&short, &[0x10, 0x00, 0x10, 0x00, b'P', b'N']).expect("PatientName");
    short[at + 6..at + 8].copy_from_slice(&0xFFFEu16.to_le_bytes());
    let mut long = file.clone();
    let pixel = find(&long, &[0xE0, 0x7F, 0x10, 0x00]).expect("PixelData");
    let fragment =
        find(&long[pixel + 12 + 8..], &[0xFE, 0xFF, 0x00, 0xE0]).expect("fragment") + pixel + 20;
    long[fragment + 4..fragment + 8].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    for (case, bytes) in [("short length", short), ("fragment length", long)] {
        match import(&bytes, &ImportLimits::default()) {
            Err(Error::Malformed(message)) => {
                assert!(message.contains("past the end"), "{case}: {message}")
            }
            other => panic!("{case}: expected a malformed-file error, got {other:?}"),
        }
    }
}

#[test]
fn deep_sequences_too_many_bytes_non_dicom_and_other_classes_are_refused() {
    let (_, file) = exported();
    let limits = ImportLimits::default();

    let small = ImportLimits {
        max_bytes: 1000,
        ..limits
    };
    assert!(
        matches!(import(&file, &small), Err(Error::TooLarge { .. })),
        "over the byte limit"
    );

    assert!(matches!(
        import(b"\xFF\xD8\xFF\xE0 not dicom", &limits),
        Err(Error::NotDicom)
    ));
    assert!(matches!(import(&[0u8; 200], &limits), Err(Error::NotDicom)));

    // A CT image: same bytes, another SOP class (same length, in the meta and the data set).
    let ct = replace_all(
        &file,
        uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE.as_bytes(),
        b"1.2.840.10008.5.1.4.1.1.2\0\0\0\0\0",
    );
    match import(&ct, &limits) {
        Err(Error::Unsupported(message)) => {
            assert!(message.contains("1.2.840.10008.5.1.4.1.1.2"), "{message}")
        }
        other => panic!("a CT image must be refused, got {other:?}"),
    }

    // Another transfer syntax (big endian) is refused by name.
    let big = replace_all(
        &file,
        uids::JPEG_BASELINE.as_bytes(),
        b"1.2.840.10008.1.2.2\0\0\0",
    );
    assert!(
        matches!(import(&big, &limits), Err(Error::Unsupported(_))),
        "big endian"
    );

    // 10,000 nested sequences of undefined length after the meta information.
    let start = meta_end(&file);
    let mut deep = file[..start].to_vec();
    for _ in 0..10_000 {
        // (0040,0555) SQ undefined length, then an item of undefined length.
        deep.extend_from_slice(&[
            0x40, 0x00, 0x55, 0x05, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    match import(&deep, &limits) {
        Err(Error::Malformed(message)) => assert!(message.contains("deeper"), "{message}"),
        other => panic!("deep nesting must be refused, got {other:?}"),
    }
}

#[test]
fn random_corruption_never_panics() {
    let (_, file) = exported();
    // A deterministic xorshift: flips bytes in the headers, where the structure is.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let header_end = find(&file, &[0xE0, 0x7F, 0x10, 0x00]).expect("PixelData") + 40;
    for _ in 0..3000 {
        let mut bytes = file.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = 128 + (state as usize) % (header_end - 128);
            bytes[at] = (state >> 32) as u8;
        }
        let _ = import(&bytes, &ImportLimits::default());
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(
        from.len(),
        to.len(),
        "same-length replacement keeps the lengths valid"
    );
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(found) = find(&out[at..], from) {
        out[at + found..at + found + to.len()].copy_from_slice(to);
        at += found + to.len();
    }
    out
}

/// End of the file meta group: its group length (0002,0000) UL counts the bytes after it.
fn meta_end(file: &[u8]) -> usize {
    let length = u32::from_le_bytes([file[140], file[141], file[142], file[143]]);
    144 + length as usize
}
