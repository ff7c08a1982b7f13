//! Fuzzing of the image formats: the sanitizer every uploaded photo goes through (fed in chunks
//! of varying size, as uploads arrive), and the thumbnail decoder that reads what it let through
//! (see `telehealth_kit::testing::fuzz`). One test, so nothing else allocates while a bound is
//! set.

use std::alloc::System;

use telehealth_images::format::{
    ContentType, MAX_DECODED_PREVIEW_BYTES, SanitizeOptions, Sanitizer, fixtures, thumbnail,
};
use telehealth_kit::testing::fuzz::{self, Allocator, Cap, Target};

#[global_allocator]
static ALLOCATOR: Allocator = Cap::new(System, usize::MAX);

fn corpus() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/image")
}

/// The sanitizer on `input` cut into chunks whose sizes depend on the input, so mutations also
/// move the chunk boundaries; the sanitized bytes and their content type when accepted.
fn sanitize(input: &[u8]) -> Option<(Vec<u8>, ContentType)> {
    let mut sanitizer = Sanitizer::new(SanitizeOptions::default());
    let mut output = Vec::new();
    let step = 1 + input.len() % 7919;
    for chunk in input.chunks(step) {
        sanitizer.push(chunk, &mut output).ok()?;
    }
    let facts = sanitizer.finish(&mut output).ok()?;
    Some((output, facts.content_type))
}

#[test]
fn image_sanitizer_and_thumbnails_never_panic_and_stay_within_their_memory_bound() {
    // The sanitizer streams: what it holds besides the output is one segment or chunk header.
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "image-sanitizer",
            corpus: corpus(),
            made_seeds: Vec::new(),
            max_input_bytes: 1024 * 1024,
            memory_bound: |n| 3 * n + 1024 * 1024,
        },
        sanitize,
    );
    println!("image-sanitizer: {report:?}");
    // What the sanitizer accepted, previewed: bounded by the decoder limits of the thumbnail
    // module (32 MiB decoded preview; a progressive JPEG of at most 25 megapixels keeps its
    // coefficients, 2 bytes per sample, 3 samples per pixel at most: 150 MB).
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "image-thumbnail",
            corpus: corpus(),
            made_seeds: Vec::new(),
            max_input_bytes: 1024 * 1024,
            memory_bound: |n| 4 * n + MAX_DECODED_PREVIEW_BYTES + 160 * 1024 * 1024,
        },
        |input| {
            let (clean, content_type) = sanitize(input)?;
            thumbnail(clean.as_slice(), content_type, None, 128).ok()
        },
    );
    println!("image-thumbnail: {report:?}");
}

/// Writes the corpus seeds made from the fixtures (run after changing them; hand-made hostile
/// seeds in the folder are kept).
#[test]
#[ignore = "writes tests/corpus/image: run it by name after changing the fixtures"]
fn write_generated_corpus() {
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("plain.jpg", fixtures::jpeg_plain(48, 32)),
        ("progressive.jpg", fixtures::progressive_jpeg(40, 24)),
        (
            "restart-markers.jpg",
            fixtures::jpeg_with_restart_markers(64, 16),
        ),
        (
            "identifying-metadata.jpg",
            fixtures::jpeg_with_identifying_metadata(32, 24),
        ),
        ("mpf-preview.jpg", fixtures::jpeg_with_mpf_preview(32, 24)),
        ("plain.png", fixtures::png_plain(24, 16)),
        (
            "grey-alpha-16.png",
            fixtures::png_image(
                17,
                9,
                png::ColorType::GrayscaleAlpha,
                png::BitDepth::Sixteen,
            ),
        ),
        (
            "palette-2bit.png",
            fixtures::png_image(13, 7, png::ColorType::Indexed, png::BitDepth::Two),
        ),
    ];
    for (name, bytes) in seeds {
        std::fs::write(corpus().join(name), bytes).expect("write a seed");
    }
}
