//! Fuzzing of what participants send each other: SDP offers and answers, trickled ICE
//! candidates (see `telehealth_kit::testing::fuzz`). One test, so nothing else allocates while a
//! bound is set.

use std::alloc::System;

use telehealth_kit::testing::fuzz::{self, Allocator, Cap, Target};
use telehealth_signalling::validate::{self, SdpType};

#[global_allocator]
static ALLOCATOR: Allocator = Cap::new(System, usize::MAX);

/// The default `signalling.max_sdp_bytes`.
const MAX_SDP_BYTES: usize = 65_536;

fn corpus(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

#[test]
fn sdp_and_candidates_never_panic_and_stay_within_their_memory_bound() {
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "sdp",
            corpus: corpus("sdp"),
            made_seeds: Vec::new(),
            // A little over the limit, so that the size check is fuzzed too.
            max_input_bytes: MAX_SDP_BYTES + 1024,
            memory_bound: |n| 16 * n + 64 * 1024,
        },
        |input| {
            let text = String::from_utf8_lossy(input);
            (
                validate::sdp(SdpType::Offer, &text, MAX_SDP_BYTES).is_ok(),
                validate::sdp(SdpType::Answer, &text, MAX_SDP_BYTES).is_ok(),
            )
        },
    );
    println!("sdp: {report:?}");
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "candidate",
            corpus: corpus("candidate"),
            made_seeds: Vec::new(),
            max_input_bytes: 4096,
            memory_bound: |n| 16 * n + 16 * 1024,
        },
        |input| {
            let text = String::from_utf8_lossy(input);
            validate::candidate(&text, "0", "EsAw").is_ok()
        },
    );
    println!("candidate: {report:?}");
}
