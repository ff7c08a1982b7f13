//! FHIR API benchmark, through the real gateway over mTLS, on PostgreSQL (or `--sqlite`).
//!
//! `cargo bench --bench fhir` (PostgreSQL from `TELEHEALTH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `-- --sqlite` for the embedded backend;
//! `-- --appointments N --patients M`, default 10,000 and 1,000).
//!
//! Seeds M patients and N appointments (over 20 doctors, 500 each, through the gRPC API), then
//! measures, as a doctor of the centre, each page of 50 of:
//! 1. `Appointment?practitioner=…&date=ge…&date=lt…` over a week, following `next` links;
//! 2. `Appointment?patient=…` (a patient's appointments over the default period);
//! 3. `Patient?family=…&birthdate=…` (each hit read as a `GetPatient`, as the API does).
//!
//! Prints pages, p50 and p99 per query. Target (issue 18): p50 < 50 ms per page of 50. Load
//! generator, gateway, services and database share this machine's cores.

use std::time::{Duration, Instant};

use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use telehealth::suite::RunningSuite;
use telehealth_kit::record::timestamp as ts;
use telehealth_kit::{
    Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::v1::{
    self as pb, directory_service_client::DirectoryServiceClient,
    patient_service_client::PatientServiceClient,
    scheduling_service_client::SchedulingServiceClient,
};
use telehealth_testkit::{harness::Bearer, measure::percentile};
use tonic::{body::Body, transport::Channel};
use tower::ServiceExt;

const ORG: &str = "cds-bench";
const DOCTORS: u64 = 20;
const WRITERS: usize = 16;
const SAMPLES: usize = 200;

fn doctor(n: u64) -> String {
    format!("dr-{n:02}")
}

/// Patient `n`'s birth name: names take letters only, so its digits spelled with A–J.
fn family(n: u64) -> String {
    let letters: String = format!("{n:05}")
        .bytes()
        .map(|d| char::from(b'A' + d - b'0'))
        .collect();
    format!("BANC-{letters}")
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// 08:00 Paris `days` from today, plus `slot` half hours.
fn slot_start(days: i64, slot: i64) -> Timestamp {
    let paris = TimeZone::get("Europe/Paris").expect("tz");
    let today = Timestamp::now().to_zoned_datetime(paris.clone()).date();
    today
        .checked_add(jiff::Span::new().days(days))
        .expect("date")
        .at(8, 0, 0, 0)
        .to_zoned_datetime(paris)
        .expect("zoned")
        .timestamp()
        + SignedDuration::from_mins(30 * slot)
}

fn day(days: i64) -> String {
    let paris = TimeZone::get("Europe/Paris").expect("tz");
    Timestamp::now()
        .to_zoned_datetime(paris)
        .date()
        .checked_add(jiff::Span::new().days(days))
        .expect("date")
        .to_string()
}

/// `GET /fhir/<path>`: the time it took and the Bundle.
async fn get(channel: &Channel, bearer: &str, path: &str) -> (Duration, serde_json::Value) {
    let request = Request::get(format!("https://localhost/fhir/{path}"))
        .header(header::AUTHORIZATION, bearer)
        .body(Body::empty())
        .expect("request");
    let started = Instant::now();
    let response = channel.clone().oneshot(request).await.expect("answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let elapsed = started.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    (elapsed, serde_json::from_slice(&bytes).expect("JSON"))
}

fn next_link(bundle: &serde_json::Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()?
        .split_once("/fhir/")
        .map(|(_, rest)| rest.to_owned())
}

fn entries(bundle: &serde_json::Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}

fn row(name: &str, mut latencies: Vec<Duration>, results: usize) {
    latencies.sort_unstable();
    println!(
        "| {name} | {} | {results} | {:.1} | {:.1} |",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let appointments: u64 = arg("--appointments", 10_000);
    let patients: u64 = arg("--patients", 1_000);
    let sqlite = std::env::args().any(|a| a == "--sqlite");
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    settings.gateway.listen = "127.0.0.1:0".parse()?;
    settings.gateway.limits.requests_per_second = 1_000_000.0;
    settings.gateway.limits.burst = 1_000_000;
    if !sqlite {
        let url = std::env::var("TELEHEALTH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| telehealth_kit::testing::DEFAULT_TEST_POSTGRES_URL.to_owned());
        settings.database.url = Some(url);
        settings.database.schema_prefix =
            format!("bench{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        settings.database.max_connections = 24;
    }
    let mut suite = RunningSuite::start(settings).await?;
    suite.wait_healthy(Duration::from_secs(30)).await?;
    let settings = suite.settings.clone();
    let device = DevPki::new(settings.pki_dir()).device_files("doctor-workstation");
    let token = DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
        subject: "dr-00".into(),
        roles: vec![Role::Coordinator, Role::Doctor],
        org: ORG.into(),
        specialty: None,
        cert_thumbprint: Some(thumbprint_of_pem_file(&device.cert)?),
        ttl: Duration::from_secs(3600),
        audience: DEFAULT_AUDIENCE.into(),
    })?;
    let bearer = Bearer::new(&token);
    let files = (device.cert.clone(), device.key.clone());
    let channel = telehealth_testkit::harness::channel_to(suite.gateway, &settings, &files).await?;

    print!("seeding {patients} patients and {appointments} appointments… ");
    let seeding = Instant::now();
    let register = PatientServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut ids = Vec::new();
    for chunk in (0..patients).collect::<Vec<_>>().chunks(WRITERS) {
        let mut tasks = Vec::new();
        for &n in chunk {
            let mut register = register.clone();
            tasks.push(tokio::spawn(async move {
                register
                    .create_patient(pb::CreatePatientRequest {
                        identity: Some(pb::IdentityTraits {
                            birth_name: family(n),
                            first_names: "Marie".into(),
                            sex: pb::Sex::Female as i32,
                            birth_date: format!("19{:02}-0{}-1{}", 30 + n % 60, 1 + n % 9, n % 10),
                            ..Default::default()
                        }),
                        confirm_distinct: true,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().patient.map(|p| p.id).unwrap_or_default())
            }));
        }
        for task in tasks {
            ids.push(task.await??);
        }
    }
    let scheduling = SchedulingServiceClient::with_interceptor(channel.clone(), bearer.clone());
    for n in 0..DOCTORS {
        // Each doctor a member of the centre before availability is set for them.
        let own = DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
            subject: doctor(n),
            roles: vec![Role::Doctor],
            org: ORG.into(),
            specialty: None,
            cert_thumbprint: Some(thumbprint_of_pem_file(&device.cert)?),
            ttl: Duration::from_secs(600),
            audience: DEFAULT_AUDIENCE.into(),
        })?;
        DirectoryServiceClient::with_interceptor(channel.clone(), Bearer::new(&own))
            .register_self(pb::RegisterSelfRequest {})
            .await?;
        scheduling
            .clone()
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: doctor(n),
                time_zone: "Europe/Paris".into(),
                weekly_ranges: (1..=7)
                    .map(|day| pb::WeeklyRange {
                        day,
                        start_local_time: "08:00".into(),
                        end_local_time: "20:00".into(),
                    })
                    .collect(),
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await?;
    }
    // Booking n: doctor n % 20, the k-th slot of that doctor (24 a day from the day after
    // tomorrow), a patient among the M.
    for chunk in (0..appointments).collect::<Vec<_>>().chunks(WRITERS * 4) {
        let mut tasks = Vec::new();
        for &n in chunk {
            let mut scheduling = scheduling.clone();
            let patient = ids[(n % patients) as usize].clone();
            tasks.push(tokio::spawn(async move {
                let k = (n / DOCTORS) as i64;
                scheduling
                    .book_appointment(pb::BookAppointmentRequest {
                        idempotency_key: format!("fhir-bench-{n}"),
                        doctor_subject: doctor(n % DOCTORS),
                        patient: Some(pb::PatientRef { pseudonym: patient }),
                        start_time: Some(ts(slot_start(2 + k / 24, k % 24))),
                        duration_minutes: 30,
                        reason: "bench".into(),
                        ..Default::default()
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await??;
        }
    }
    println!("done in {:.0} s", seeding.elapsed().as_secs_f64());
    println!();
    println!("| query | pages | results | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");

    let auth = format!("Bearer {token}");
    // 1. A doctor's week, page by page (≈ 24 × 7 = 168 appointments: 4 pages).
    let mut latencies = Vec::new();
    let mut results = 0;
    let mut round = 0;
    while latencies.len() < SAMPLES {
        let n = round % DOCTORS;
        round += 1;
        let mut path = Some(format!(
            "Appointment?practitioner=Practitioner/{}&date=ge{}&date=lt{}&_count=50",
            doctor(n),
            day(2),
            day(9)
        ));
        while let Some(p) = path {
            let (elapsed, bundle) = get(&channel, &auth, &p).await;
            latencies.push(elapsed);
            results += entries(&bundle);
            path = next_link(&bundle);
        }
    }
    row(
        "Appointment by practitioner and week, _count=50",
        latencies,
        results,
    );

    // 2. A patient's appointments.
    let mut latencies = Vec::new();
    let mut results = 0;
    for i in 0..SAMPLES {
        let patient = &ids[(i * 7919) % ids.len()];
        let (elapsed, bundle) = get(
            &channel,
            &auth,
            &format!("Appointment?patient={patient}&_count=50"),
        )
        .await;
        latencies.push(elapsed);
        results += entries(&bundle);
    }
    row("Appointment by patient, _count=50", latencies, results);

    // 3. Patients by name and birth date (each hit read in full).
    let mut latencies = Vec::new();
    let mut results = 0;
    for i in 0..SAMPLES as u64 {
        let n = (i * 7919) % patients;
        let (elapsed, bundle) = get(
            &channel,
            &auth,
            &format!(
                "Patient?family={}&birthdate=19{:02}-0{}-1{}&_count=50",
                family(n),
                30 + n % 60,
                1 + n % 9,
                n % 10
            ),
        )
        .await;
        latencies.push(elapsed);
        results += entries(&bundle);
    }
    row("Patient by family + birthdate", latencies, results);
    suite.stop().await?;
    Ok(())
}
