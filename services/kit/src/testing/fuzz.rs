//! A mutation fuzzer for the parsers of untrusted bytes, on the stable toolchain.
//!
//! Coverage-guided fuzzing (libFuzzer through `cargo fuzz`) needs a nightly compiler, which this
//! project does not build with; this harness does what stable allows. It starts from a committed
//! corpus of valid and hostile inputs (`<crate>/tests/corpus/<target>/`), replays every file, then
//! runs a bounded number of mutated inputs (bit flips, boundary bytes, insertions, deletions,
//! duplications, splices of two corpus files, truncations) from a fixed seed, so a CI run is
//! repeatable, and a different seed explores further (`TELEHEALTH_TEST_FUZZ_SEED`,
//! `TELEHEALTH_TEST_FUZZ_ITERATIONS`).
//!
//! Each input must not panic, and must not make the process hold more than its declared bound
//! of memory: the test binary installs [`Cap`] as its global allocator and the harness lowers its
//! limit around each call, so an allocation beyond the bound aborts the run. The input being
//! tried is written to `$TMPDIR/telehealth-fuzz/<target>.input` first, so an abort leaves it
//! behind; a panic also keeps it, under `<target>-<sha256>.crash`, and names it.

use std::{
    alloc::System,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

pub use cap::Cap;
use sha2::Digest;

/// The allocator a fuzz test binary installs:
/// `#[global_allocator] static ALLOCATOR: Allocator = Cap::new(System, usize::MAX);`
pub type Allocator = Cap<System>;

/// Mutated inputs per target when `TELEHEALTH_TEST_FUZZ_ITERATIONS` is not set (CI's bounded run).
pub const DEFAULT_ITERATIONS: u64 = 3_000;
/// The seed when `TELEHEALTH_TEST_FUZZ_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x7e1e_5a17_e000_0001;

/// One parser under test.
pub struct Target<'a> {
    /// Short name, e.g. `sdp`.
    pub name: &'a str,
    /// The folder of committed inputs.
    pub corpus: PathBuf,
    /// Inputs made when the test runs (e.g. a token signed with a key made for the test).
    pub made_seeds: Vec<Vec<u8>>,
    /// Inputs longer than this are cut to it (the size the caller admits before parsing).
    pub max_input_bytes: usize,
    /// The most memory one call may hold at once, for an input of the given length.
    pub memory_bound: fn(usize) -> usize,
}

/// What a run did, printed by the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub corpus_files: usize,
    pub runs: u64,
}

/// Runs `parse` on every corpus file of `target` and on mutations of them. `parse` returns
/// whatever it likes (errors are expected); it must not panic nor exceed the memory bound.
///
/// # Panics
/// When an input makes `parse` panic (naming the saved input), or when the corpus is empty.
pub fn run<R>(
    allocator: &'static Allocator,
    target: &Target<'_>,
    parse: impl Fn(&[u8]) -> R,
) -> Report {
    let mut corpus = read_corpus(&target.corpus);
    corpus.extend(target.made_seeds.iter().cloned());
    assert!(
        !corpus.is_empty(),
        "{}: the corpus {} is empty",
        target.name,
        target.corpus.display()
    );
    let iterations = env_u64("TELEHEALTH_TEST_FUZZ_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS);
    let seed = env_u64("TELEHEALTH_TEST_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let folder = std::env::temp_dir().join("telehealth-fuzz");
    std::fs::create_dir_all(&folder).expect("fuzz folder");
    let last = folder.join(format!("{}.input", target.name));

    let mut rng = SplitMix(seed ^ hash_name(target.name));
    let mut report = Report {
        corpus_files: corpus.len(),
        runs: 0,
    };
    let mut try_one = |input: &[u8]| {
        let input = &input[..input.len().min(target.max_input_bytes)];
        std::fs::write(&last, input).expect("keep the input being tried");
        let bound = (target.memory_bound)(input.len());
        let before = allocator.allocated();
        let previous_limit = allocator.limit();
        allocator
            .set_limit(before.saturating_add(bound))
            .expect("limit above what is held");
        let outcome = catch_unwind(AssertUnwindSafe(|| drop(parse(input))));
        allocator.set_limit(previous_limit).expect("limit restored");
        if outcome.is_err() {
            let digest = hex::encode(sha2::Sha256::digest(input));
            let saved = folder.join(format!("{}-{}.crash", target.name, &digest[..16]));
            std::fs::write(&saved, input).expect("keep the crashing input");
            panic!(
                "{}: input {} made the parser panic (seed {seed:#x})",
                target.name,
                saved.display()
            );
        }
        report.runs += 1;
    };
    for input in &corpus {
        try_one(input);
    }
    for _ in 0..iterations {
        let input = mutate(&corpus, &mut rng, target.max_input_bytes);
        try_one(&input);
    }
    report
}

fn read_corpus(folder: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", folder.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read(path).expect("corpus file"))
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64: small, fast, and the same sequence everywhere for a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that sit on boundaries parsers get wrong.
const BOUNDARY_BYTES: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, b'\n', b'\r', b'=', b':'];

/// One to four mutations of a corpus file.
fn mutate(corpus: &[Vec<u8>], rng: &mut SplitMix, max_len: usize) -> Vec<u8> {
    let mut data = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = BOUNDARY_BYTES[rng.below(BOUNDARY_BYTES.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let from = rng.below(len);
                let to = (from + 1 + rng.below(64)).min(len);
                data.drain(from..to);
            }
            4 if len > 0 => {
                // A piece repeated: lengths, counts and nesting that grow.
                let from = rng.below(len);
                let to = (from + 1 + rng.below(32)).min(len);
                let piece = data[from..to].to_vec();
                let times = 1 + rng.below(64);
                let at = rng.below(len + 1);
                let repeated: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                data.splice(at..at, repeated);
            }
            5 => {
                // The head of one file with the tail of another.
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => data.truncate(rng.below(len)),
            7 if len >= 4 => {
                // A 16- or 32-bit field set to an extreme (lengths, counts, sizes).
                let at = rng.below(len - 3);
                let value: [u8; 4] = match rng.below(4) {
                    0 => [0xff; 4],
                    1 => [0x7f, 0xff, 0xff, 0xff],
                    2 => [0, 0, 0, 0],
                    _ => [0x80, 0, 0, 0],
                };
                let width = if rng.below(2) == 0 { 2 } else { 4 };
                data[at..at + width].copy_from_slice(&value[..width]);
            }
            _ if len > 1 => {
                // Two bytes swapped.
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(max_len);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_the_same_for_a_seed_and_stay_within_the_size_bound() {
        let corpus = vec![
            b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".to_vec(),
            vec![0xff, 0xd8, 0xff],
        ];
        let run = |seed| {
            let mut rng = SplitMix(seed);
            (0..200)
                .map(|_| mutate(&corpus, &mut rng, 40))
                .collect::<Vec<_>>()
        };
        let first = run(1);
        assert_eq!(first, run(1));
        assert_ne!(first, run(2));
        assert!(first.iter().all(|input| input.len() <= 40));
        assert!(first.iter().any(|input| !corpus.contains(input)));
    }
}
