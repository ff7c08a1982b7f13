//! Fuzzing of the DICOM import, which reads a dermatoscope's file sent by a user (see
//! `telehealth_kit::testing::fuzz`). One test, so nothing else allocates while a bound is set.

mod support;

use std::alloc::System;

use support::{dermoscopy, jpeg, photo};
use telehealth_dicom::{ImportLimits, import, vl_photographic};
use telehealth_kit::testing::fuzz::{self, Allocator, Cap, Target};

#[global_allocator]
static ALLOCATOR: Allocator = Cap::new(System, usize::MAX);

fn corpus() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/dicom")
}

#[test]
fn dicom_import_never_panics_and_stays_within_its_memory_bound() {
    // The file is held whole (the caller read it from the upload's parts); the import walks its
    // structure before parsing and keeps one copy of the photograph.
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "dicom",
            corpus: corpus(),
            made_seeds: Vec::new(),
            max_input_bytes: 1024 * 1024,
            memory_bound: |n| 4 * n + 4 * 1024 * 1024,
        },
        |input| import(input, &ImportLimits::default()).ok(),
    );
    println!("dicom: {report:?}");
}

/// Writes the corpus seeds made by the export (run after changing it; hand-made hostile seeds
/// in the folder are kept).
#[test]
#[ignore = "writes tests/corpus/dicom: run it by name after changing the export"]
fn write_generated_corpus() {
    let image = jpeg(32, 24);
    let qualified = vl_photographic(&photo(dermoscopy(), true, &image)).expect("export");
    let provisional = vl_photographic(&photo(dermoscopy(), false, &jpeg(17, 9))).expect("export");
    // 500 nested sequences of undefined length after the meta information.
    let meta_end = 144
        + u32::from_le_bytes([
            qualified[140],
            qualified[141],
            qualified[142],
            qualified[143],
        ]) as usize;
    let mut deep = qualified[..meta_end].to_vec();
    for _ in 0..500 {
        deep.extend_from_slice(&[
            0x40, 0x00, 0x55, 0x05, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for (name, bytes) in [
        ("dermoscopy-qualified.dcm", qualified),
        ("dermoscopy-provisional.dcm", provisional),
        ("deep-sequences.dcm", deep),
    ] {
        std::fs::write(corpus().join(name), bytes).expect("write a seed");
    }
}
