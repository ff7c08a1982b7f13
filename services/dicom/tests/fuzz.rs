//! Fuzzing of the DICOM import, which reads a dermatoscope's file sent by a user (see
//! `telehealth_kit::testing::fuzz`). The corpus holds two files of the suite's own export (a
//! qualified and a provisional identity) and one with 500 nested sequences after its meta
//! information; the export writes new UIDs each time, so they are kept as they were made.
//! One test, so nothing else allocates while a bound is set.

use std::alloc::System;

use telehealth_dicom::{ImportLimits, import};
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
