//! Fuzzing of the page cursors: what a client sends back as `page_token` (see
//! `telehealth_kit::testing::fuzz`). One test, so nothing else allocates while a bound is set.

use std::alloc::System;

use telehealth_kit::{
    paging::PageTokens,
    testing::fuzz::{self, Allocator, Cap, Target},
};

#[global_allocator]
static ALLOCATOR: Allocator = Cap::new(System, usize::MAX);

const SCOPE: &str = "scheduling.ListAppointments|dr-martin|cds-bourganeuf|";

fn corpus(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

#[test]
fn page_cursors_never_panic_and_stay_within_their_memory_bound() {
    let tokens = PageTokens::with_key([42; 32]);
    // The whole token as a client sends it: refused at the MAC unless it was ours.
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "cursor",
            corpus: corpus("cursor"),
            made_seeds: Vec::new(),
            max_input_bytes: 64 * 1024,
            memory_bound: |n| 4 * n + 16 * 1024,
        },
        |input| {
            let token = String::from_utf8_lossy(input);
            tokens.position::<(i64, String)>(SCOPE, &token).ok()
        },
    );
    println!("cursor: {report:?}");
    // Behind the MAC: the payload's parser, reached with tokens made for any payload.
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "cursor-payload",
            corpus: corpus("cursor-payload"),
            made_seeds: Vec::new(),
            max_input_bytes: 16 * 1024,
            memory_bound: |n| 16 * n + 16 * 1024,
        },
        |input| {
            let token = tokens.token_for_payload(SCOPE, input);
            let two = tokens.position::<(i64, String)>(SCOPE, &token).ok();
            let three = tokens.position::<(u64, String, String)>(SCOPE, &token).ok();
            (two, three)
        },
    );
    println!("cursor-payload: {report:?}");
}
