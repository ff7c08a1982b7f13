//! Image pipeline benchmark, through the real gateway over mTLS, into the
//! tele-expertise service (`AttachImage`, `DownloadImage`) and the local blob store.
//!
//! `CARGO_TARGET_DIR=/var/cache/telehealth/target cargo bench --bench images`
//!
//! Measured (2 cores, loopback, SQLite and the local blob folder; two runs): 500 MiB upload
//! 141 MB/s, server memory +26.6 MiB (target < 64); 20 MiB uploads one at a time 152–165 MB/s
//! median (target ≥ 150); 8 concurrent 147–201 MB/s aggregate, +105 MiB; downloads 240–333 MB/s.
//!
//! The suite runs in a child process (this binary re-executed with `--child`, SQLite and the
//! local blob folder of its data dir), so that memory figures are the server's alone: its VmRSS
//! is sampled every 5 ms during each phase, and the figure is the peak minus the RSS just
//! before the phase. The load generator (this process) builds each chunk on the fly and never
//! holds a whole file.
//!
//! The files are structurally valid JPEGs (real SOI/DQT/SOF/DHT/SOS headers of a 16,000 ×
//! 12,000 image, then entropy-coded bytes, then EOI): the pipeline checks structure, strips
//! metadata and copies the entropy-coded data without decoding it, so its cost depends on the
//! size, not on the picture; a 20 MiB photo of real content would need a decodable encoder
//! output of that size, which changes nothing for the upload path. Thumbnails are not made at
//! upload (on first request only), so they are not part of these figures.
//!
//! Phases, after one warm-up upload: one 500 MiB upload (server memory growth; the target is
//! < 64 MiB, i.e. bounded by parts, not by the file's size); one 20 MiB upload at a time (5 runs,
//! median MB/s); 8 concurrent 20 MiB uploads (aggregate MB/s, server memory growth); 20 MiB
//! downloads (5 runs, median MB/s).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use telehealth_images::format::fixtures;
use telehealth_kit::{
    Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::v1::{
    self as pb, attach_image_request::Part as Upload, download_image_response::Part as Download,
    expertise_service_client::ExpertiseServiceClient,
};
use telehealth_testkit::harness::Bearer;
use telehealth_testkit::measure::rss_kib;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use telehealth_testkit::child::{self as child_suite, ChildSuite};

const MIB: u64 = 1024 * 1024;
const SMALL_FILE: u64 = 20 * MIB;
const LARGE_FILE: u64 = 500 * MIB;
const RUNS: usize = 5;
const CONCURRENT: usize = 8;
const ORG: &str = "cds-bench";

type Expertise = ExpertiseServiceClient<InterceptedService<Channel, Bearer>>;

fn bench_settings(dir: &Path) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    settings.gateway.listen = "127.0.0.1:0".parse()?;
    settings.gateway.limits.requests_per_second = 1_000_000.0;
    settings.gateway.limits.burst = 1_000_000;
    settings.images.max_size_bytes = LARGE_FILE + MIB;
    Ok(settings)
}

/// `--child <dir>`: the suite of this bench (see `telehealth_testkit::child`).
async fn child(args: &[String]) -> anyhow::Result<()> {
    child_suite::serve(bench_settings(&PathBuf::from(&args[0]))?).await
}

/// Samples the server's RSS until dropped; `growth_mib` is the peak above the starting RSS.
struct MemoryProbe {
    before: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemoryProbe {
    fn start(pid: u32) -> MemoryProbe {
        let before = rss_kib(&pid.to_string());
        let peak = Arc::new(AtomicU64::new(before));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(&pid.to_string()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        MemoryProbe {
            before,
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// (RSS before, peak) in MiB.
    fn finish(mut self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (
            self.before as f64 / 1024.0,
            self.peak.load(Ordering::Relaxed) as f64 / 1024.0,
        )
    }
}

/// A structurally valid JPEG of exactly `size` bytes, produced chunk by chunk.
struct SyntheticJpeg {
    header: Vec<u8>,
    filler: Vec<u8>,
    size: u64,
}

impl SyntheticJpeg {
    fn new(size: u64) -> SyntheticJpeg {
        // The real headers of a 16,000 × 12,000 JPEG (192 megapixels, under the limits), up to
        // the end of its SOS segment.
        let real = fixtures::flat_grey_jpeg(16_000, 12_000);
        let sos = real
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("an SOS marker");
        let sos_length = usize::from(u16::from_be_bytes([real[sos + 2], real[sos + 3]]));
        let header = real[..sos + 2 + sos_length].to_vec();
        // Entropy-coded bytes never contain 0xFF (no marker, no stuffing needed).
        let filler = (0..MIB as usize)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 0xFF)
            .collect();
        SyntheticJpeg {
            header,
            filler,
            size,
        }
    }

    /// The bytes at `[offset, offset + len)`, copied by slices (the load generator must not be
    /// the bottleneck).
    fn chunk(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let end = offset + len as u64;
        let header_end = self.header.len() as u64;
        let data_end = self.size - 2;
        let mut at = offset;
        while at < end {
            if at < header_end {
                let stop = end.min(header_end);
                out.extend_from_slice(&self.header[at as usize..stop as usize]);
                at = stop;
            } else if at < data_end {
                let within = (at % self.filler.len() as u64) as usize;
                let stop = end
                    .min(data_end)
                    .min(at + (self.filler.len() - within) as u64);
                out.extend_from_slice(&self.filler[within..within + (stop - at) as usize]);
                at = stop;
            } else {
                out.push(if at == data_end { 0xFF } else { 0xD9 });
                at += 1;
            }
        }
        out
    }
}

struct Client {
    gateway: SocketAddr,
    dir: PathBuf,
    settings: Settings,
}

impl Client {
    async fn expertise(&self) -> anyhow::Result<Expertise> {
        let pki = DevPki::new(self.settings.pki_dir());
        let files = pki.device_files("doctor-workstation");
        let token = DevSigner::new(self.dir.join("jwt")).mint(&MintRequest {
            subject: "dr-bench".into(),
            roles: vec![Role::Doctor],
            org: ORG.into(),
            specialty: None,
            cert_thumbprint: Some(thumbprint_of_pem_file(&files.cert)?),
            ttl: Duration::from_secs(3600),
            audience: DEFAULT_AUDIENCE.to_owned(),
        })?;
        let channel = telehealth_testkit::harness::channel_to(
            self.gateway,
            &self.settings,
            &(files.cert, files.key),
        )
        .await?;
        let bearer = Bearer::new(&token);
        Ok(ExpertiseServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(4 * MIB as usize)
            .max_encoding_message_size(4 * MIB as usize))
    }
}

async fn draft(client: &mut Expertise) -> anyhow::Result<String> {
    let targets = client
        .list_targets(pb::ListTargetsRequest::default())
        .await?
        .into_inner()
        .targets;
    let target = targets
        .first()
        .ok_or_else(|| anyhow::anyhow!("no tele-expertise target configured"))?;
    let request = client
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            content: Some(pb::ExpertiseRequestContent {
                target_org_id: target.org_id.clone(),
                specialty: target.specialty.clone(),
                clinical_question: "Benchmark upload".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .request
        .ok_or_else(|| anyhow::anyhow!("no request returned"))?;
    Ok(request.request_id)
}

/// Uploads a synthetic file of `size` bytes; returns the image id.
async fn upload(
    client: &mut Expertise,
    request_id: &str,
    file: Arc<SyntheticJpeg>,
) -> anyhow::Result<String> {
    let size = file.size;
    let header = pb::AttachImageRequest {
        part: Some(Upload::Header(pb::AttachImageHeader {
            request_id: request_id.to_owned(),
            image: Some(pb::ImageUploadHeader {
                upload_session_id: uuid::Uuid::new_v4().to_string(),
                total_size_bytes: size as i64,
                declared_kind: pb::ImageKind::Dermatoscopy.into(),
                body_site: Some(pb::BodySite {
                    region: pb::BodyRegion::Forearm.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })),
    };
    let chunks = futures::stream::iter((0..size.div_ceil(MIB)).map(move |i| {
        let offset = i * MIB;
        let len = MIB.min(size - offset) as usize;
        pb::AttachImageRequest {
            part: Some(Upload::Chunk(pb::ImageChunk {
                offset: offset as i64,
                data: file.chunk(offset, len),
            })),
        }
    }));
    let stream = futures::stream::iter([header]).chain(chunks);
    let result = client.attach_image(stream).await?.into_inner().result;
    let image = result
        .and_then(|r| r.image)
        .ok_or_else(|| anyhow::anyhow!("no image returned"))?;
    anyhow::ensure!(image.original_size_bytes == size as i64, "size mismatch");
    Ok(image.image_id)
}

async fn download(client: &mut Expertise, request_id: &str, image_id: &str) -> anyhow::Result<u64> {
    let mut stream = client
        .download_image(pb::DownloadImageRequest {
            request_id: request_id.to_owned(),
            image_id: image_id.to_owned(),
            offset: 0,
        })
        .await?
        .into_inner();
    let mut bytes = 0;
    while let Some(message) = stream.message().await? {
        if let Some(Download::Chunk(chunk)) = message.part {
            bytes += chunk.data.len() as u64;
        }
    }
    Ok(bytes)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn measure(client: &Client, pid: u32) -> anyhow::Result<()> {
    let mut expertise = client.expertise().await?;
    let small = Arc::new(SyntheticJpeg::new(SMALL_FILE));
    let request_id = draft(&mut expertise).await?;
    // Warm-up.
    upload(&mut expertise, &request_id, small.clone()).await?;

    // The large upload first, so that its memory growth is measured from the warm baseline
    // rather than from an RSS the allocator kept after the concurrent phase.
    let large = Arc::new(SyntheticJpeg::new(LARGE_FILE));
    let big_request = draft(&mut expertise).await?;
    let probe = MemoryProbe::start(pid);
    let started = Instant::now();
    upload(&mut expertise, &big_request, large).await?;
    let elapsed = started.elapsed();
    let (before, peak) = probe.finish();
    println!(
        "upload 500 MiB: {:.0} MB/s; server RSS {before:.1} → peak {peak:.1} MiB (+{:.1}; target < 64)",
        mb_per_s(LARGE_FILE, elapsed),
        peak - before
    );

    let mut rates = Vec::new();
    let mut image_ids = Vec::new();
    let probe = MemoryProbe::start(pid);
    for _ in 0..RUNS {
        let request_id = draft(&mut expertise).await?;
        let started = Instant::now();
        let image_id = upload(&mut expertise, &request_id, small.clone()).await?;
        rates.push(mb_per_s(SMALL_FILE, started.elapsed()));
        image_ids.push((request_id, image_id));
    }
    let (before, peak) = probe.finish();
    println!(
        "upload 20 MiB, one at a time: median {:.0} MB/s (runs: {}); server RSS {before:.1} → peak {peak:.1} MiB (+{:.1})",
        median(rates.clone()),
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        peak - before
    );

    let probe = MemoryProbe::start(pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT {
        let mut client = client.expertise().await?;
        let file = small.clone();
        tasks.push(tokio::spawn(async move {
            let request_id = draft(&mut client).await?;
            upload(&mut client, &request_id, file).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let (before, peak) = probe.finish();
    println!(
        "upload 20 MiB × {CONCURRENT} concurrent: {:.0} MB/s aggregate; server RSS {before:.1} → peak {peak:.1} MiB (+{:.1})",
        mb_per_s(SMALL_FILE * CONCURRENT as u64, elapsed),
        peak - before
    );

    let mut rates = Vec::new();
    for (request_id, image_id) in &image_ids {
        let started = Instant::now();
        let bytes = download(&mut expertise, request_id, image_id).await?;
        rates.push(mb_per_s(bytes, started.elapsed()));
    }
    println!(
        "download 20 MiB: median {:.0} MB/s (runs: {})",
        median(rates.clone()),
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        return child(&args[at + 1..]).await;
    }
    let dir = tempfile::tempdir()?;
    let server = ChildSuite::start(&[dir.path().as_os_str()])?;
    let client = Client {
        gateway: server.gateway,
        dir: dir.path().to_path_buf(),
        settings: bench_settings(dir.path())?,
    };
    let result = measure(&client, server.pid()).await;
    server.stop()?;
    result
}
