//! Scheduling benchmark, through the real gateway over mTLS, on PostgreSQL.
//!
//! `cargo bench --bench scheduling` (PostgreSQL from `TELEHEALTH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `-- --seconds N` per phase, default 10).
//!
//! 1. Bookings without conflicts: 32 concurrent clients over 1,000 practitioners, every booking
//!    on a distinct (practitioner, slot).
//! 2. Bookings with conflicts: the 32 clients fight over the same 8 slots of one practitioner.
//! 3. Free slots of one practitioner over 31 days (15-minute steps, 30-minute slots).
//!
//! Prints calls/s and p50/p99 latency per phase. Everything runs on this machine's cores
//! (load generator, gateway, services and PostgreSQL together).
//!
//! Measured on the 2-core reference machine (2026-12-05, `-- --seconds 10`, 6 runs): no
//! conflicts median 1,063 bookings/s (1,011–1,111), p50 28–31 ms (target 1,000/s); all
//! conflicting 847–893 calls/s; 31-day free slots p50 2.5–2.6 ms, p99 3.4–4.9 ms (target p50
//! < 5 ms). `benches/README.md` keeps the history (461/s before audit appends were
//! group-committed) and how much the figure moves between machines.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

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
use telehealth_testkit::harness::Bearer;
use telehealth_testkit::measure::percentile;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

const ORG: &str = "cds-bench";
const PRACTITIONERS: u64 = 1000;
const CLIENTS: usize = 32;
const CONNECTIONS: usize = 4;

type Client = SchedulingServiceClient<InterceptedService<Channel, Bearer>>;

fn practitioner(n: u64) -> String {
    format!("dr-{n:04}")
}

/// 08:00 Paris on the day `days` from now, plus `slot` half hours.
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

fn report(name: &str, calls: usize, ok: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    println!(
        "| {name} | {calls} | {ok} | {:.0} | {:.2} | {:.2} |",
        calls as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let url = std::env::var("TELEHEALTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| telehealth_kit::testing::DEFAULT_TEST_POSTGRES_URL.to_owned());
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    settings.gateway.listen = "127.0.0.1:0".parse()?;
    settings.gateway.limits.requests_per_second = 1_000_000.0;
    settings.gateway.limits.burst = 1_000_000;
    settings.database.url = Some(url.clone());
    let prefix = format!("bench{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    settings.database.schema_prefix = prefix.clone();
    settings.database.max_connections = 24;
    let mut suite = RunningSuite::start(settings).await?;
    suite.wait_healthy(Duration::from_secs(30)).await?;
    let settings = suite.settings.clone();

    // A coordinator of the centre books for every practitioner.
    let device = DevPki::new(settings.pki_dir()).device_files("doctor-workstation");
    let token = mint(
        &settings,
        &device.cert,
        "coord-bench",
        vec![Role::Coordinator, Role::Doctor],
    )?;
    let bearer = Bearer::new(&token);
    let device_files = (device.cert.clone(), device.key.clone());
    let connect =
        || telehealth_testkit::harness::channel_to(suite.gateway, &settings, &device_files);
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = connect().await?;
        clients.push(SchedulingServiceClient::with_interceptor(
            channel,
            bearer.clone(),
        ));
    }

    // The patient every booking names, in the centre's register.
    let mut register = PatientServiceClient::with_interceptor(connect().await?, bearer.clone());
    let patient = register
        .create_patient(pb::CreatePatientRequest {
            identity: Some(pb::IdentityTraits {
                birth_name: "BANC".into(),
                first_names: "Marie".into(),
                sex: pb::Sex::Female as i32,
                birth_date: "1940-01-01".into(),
                ..Default::default()
            }),
            confirm_distinct: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .patient
        .map(|p| p.id)
        .unwrap_or_default();

    // The practitioners are doctors of the centre in its directory (the scheduling service books
    // only active members), put there by its administrator.
    let admin = mint(&settings, &device.cert, "admin-bench", vec![Role::Admin])?;
    let mut directory =
        DirectoryServiceClient::with_interceptor(connect().await?, Bearer::new(&admin));
    print!("adding {PRACTITIONERS} doctors to the directory… ");
    for n in 0..PRACTITIONERS {
        directory
            .put_member(pb::PutMemberRequest {
                subject: practitioner(n),
                roles: vec![pb::Role::Doctor as i32],
                ..Default::default()
            })
            .await?;
    }
    println!("done");
    print!("publishing availability of {PRACTITIONERS} practitioners… ");
    for n in 0..PRACTITIONERS {
        clients[0]
            .clone()
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: practitioner(n),
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
    println!("done");
    println!();
    println!("| phase | calls | succeeded | calls/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");

    // 1. No conflicts: booking n goes to practitioner n % 1000, slot n / 1000.
    let next = Arc::new(AtomicU64::new(0));
    let (calls, ok, elapsed, latencies) = run(&clients, Duration::from_secs(seconds), {
        let (next, patient) = (next.clone(), patient.clone());
        move |_| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let slot = (n / PRACTITIONERS) as i64;
            let start = slot_start(2 + slot / 24, slot % 24);
            booking(
                &patient,
                &format!("nc-{n}"),
                &practitioner(n % PRACTITIONERS),
                start,
            )
        }
    })
    .await;
    report(
        "book, no conflicts (32 clients, 1,000 practitioners)",
        calls,
        ok,
        elapsed,
        latencies,
    );

    // 2. Conflicts: everyone fights over 8 slots of one practitioner.
    let next = Arc::new(AtomicU64::new(0));
    let (calls, ok, elapsed, latencies) = run(&clients, Duration::from_secs(seconds), {
        let (next, patient) = (next.clone(), patient.clone());
        move |_| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            booking(
                &patient,
                &format!("c-{n}"),
                &practitioner(PRACTITIONERS - 1),
                slot_start(40, (n % 8) as i64),
            )
        }
    })
    .await;
    report(
        "book, all conflicting (32 clients, 8 slots)",
        calls,
        ok,
        elapsed,
        latencies,
    );

    // 3. Free slots of one practitioner over 31 days.
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut client = clients[0].clone();
    let range_start = slot_start(1, 0);
    let request = pb::ListFreeSlotsRequest {
        practitioner_subjects: vec![practitioner(7)],
        range: Some(pb::TimeRange {
            start_time: Some(ts(range_start)),
            end_time: Some(ts(range_start + SignedDuration::from_hours(24 * 31))),
        }),
        duration_minutes: 30,
        step_minutes: 15,
        r#match: 0,
        page_size: 2000,
        page_token: String::new(),
    };
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let at = Instant::now();
        let slots = client
            .list_free_slots(request.clone())
            .await?
            .into_inner()
            .slots
            .len();
        latencies.push(at.elapsed());
        count = slots;
    }
    let calls = latencies.len();
    report(
        &format!("free slots, 31 days ({count} slots per answer)"),
        calls,
        calls,
        started.elapsed(),
        latencies,
    );

    suite.shutdown_token().cancel();
    suite.join().await?;
    let pool = sqlx::AnyPool::connect(&url).await?;
    for part in telehealth_kit::Part::SERVICES {
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS {prefix}{} CASCADE",
            part.name()
        ))
        .execute(&pool)
        .await?;
    }
    Ok(())
}

/// A token of `subject` of the centre with `roles`, bound to the device certificate `cert`.
fn mint(
    settings: &Settings,
    cert: &std::path::Path,
    subject: &str,
    roles: Vec<Role>,
) -> anyhow::Result<String> {
    Ok(
        DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
            subject: subject.into(),
            roles,
            org: ORG.into(),
            specialty: None,
            cert_thumbprint: Some(thumbprint_of_pem_file(cert)?),
            ttl: Duration::from_secs(3600),
            audience: DEFAULT_AUDIENCE.into(),
        })?,
    )
}

fn booking(patient: &str, key: &str, doctor: &str, start: Timestamp) -> pb::BookAppointmentRequest {
    pb::BookAppointmentRequest {
        idempotency_key: key.into(),
        doctor_subject: doctor.into(),
        nurse_subject: String::new(),
        patient: Some(pb::PatientRef {
            pseudonym: patient.into(),
        }),
        patient_subject: String::new(),
        start_time: Some(ts(start)),
        duration_minutes: 30,
        reason: "bench".into(),
        hold_id: String::new(),
    }
}

/// Runs `CLIENTS` closed loops for `duration`; returns calls, successes, elapsed time and
/// per-call latencies.
async fn run<F>(
    clients: &[Client],
    duration: Duration,
    make: F,
) -> (usize, usize, Duration, Vec<Duration>)
where
    F: Fn(usize) -> pb::BookAppointmentRequest + Clone + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let mut client = clients[worker % clients.len()].clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ok = 0;
            while started.elapsed() < duration {
                let at = Instant::now();
                if client.book_appointment(make(worker)).await.is_ok() {
                    ok += 1;
                }
                latencies.push(at.elapsed());
            }
            (ok, latencies)
        }));
    }
    let mut all = Vec::new();
    let mut ok = 0;
    for task in tasks {
        if let Ok((worker_ok, latencies)) = task.await {
            ok += worker_ok;
            all.extend(latencies);
        }
    }
    (all.len(), ok, started.elapsed(), all)
}
