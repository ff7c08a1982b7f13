//! How long [`telehealth_dicom::vl_photographic`] adds to an export of a large photo: a ~20 MiB
//! baseline JPEG (noise, which compresses badly) wrapped N times; prints p50 and max in ms.
//!
//! `cargo run --release -p telehealth-dicom --example convert_bench [N]` (default N = 20).
//! The target is < 200 ms for 20 MiB; the work is two copies of the JPEG and the attributes.

use std::time::Instant;

use jiff::Timestamp;
use telehealth_dicom::{
    Acquisition, DicomPatient, PhotoExport, PhotoKind, Sex, Study, vl_photographic,
};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let jpeg = noisy_jpeg(20 * 1024 * 1024);
    let now = Timestamp::now();
    let photo = PhotoExport {
        patient: DicomPatient {
            id: "PAT-1".into(),
            family_name: "Dupré".into(),
            given_names: "Léa".into(),
            birth_date: None,
            sex: Sex::Unknown,
            ins: None,
        },
        study: Study {
            instance_uid: None,
            accession_number: "BENCH-1".into(),
            description: String::new(),
            referring_physician: None,
            started_at: now,
        },
        series_instance_uid: None,
        acquisition: Acquisition {
            taken_at: now,
            kind: PhotoKind::Wound,
            body_site: None,
            laterality: None,
            manufacturer: String::new(),
            model: String::new(),
            instance_number: None,
        },
        institution_name: String::new(),
        jpeg: &jpeg,
    };
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let file = vl_photographic(&photo).expect("conversion");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        size = file.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "vl_photographic: JPEG {:.1} MiB -> DICOM {:.1} MiB, {runs} runs: p50 {:.1} ms, max {:.1} ms",
        jpeg.len() as f64 / 1048576.0,
        size as f64 / 1048576.0,
        times[times.len() / 2],
        times[times.len() - 1],
    );
}

/// A baseline JPEG of at least `target` bytes: random pixels at quality 100 barely compress.
fn noisy_jpeg(target: usize) -> Vec<u8> {
    // About 4 bytes per pixel at quality 100 on noise; sized a little above the target.
    let side = ((target as f64 / 4.0).sqrt() as u16).min(u16::MAX - 1);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut pixels = vec![0u8; usize::from(side) * usize::from(side) * 3];
    for byte in &mut pixels {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = (state >> 24) as u8;
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 100)
        .encode(&pixels, side, side, jpeg_encoder::ColorType::Rgb)
        .expect("encoding the benchmark JPEG");
    out
}
