//! Wound monitoring benchmark, through the real gateway over mTLS, on PostgreSQL.
//!
//! `cargo bench --bench wound` (PostgreSQL from `TELEHEALTH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `-- --seconds N` per phase, default 10).
//!
//! 1. Recording assessments (no photo): 16 concurrent nurses, each on her own wounds, every call
//!    a new assessment (idempotency key, validation, PUSH and reductions, alert rules, series
//!    summary, audit, all in one transaction).
//! 2. Reading a 52-week trend (52 weekly assessments, the whole current episode) by the
//!    referring doctor: one client in a closed loop (latency), then 16 (throughput).
//!
//! Prints calls/s and p50/p99 latency per phase. Everything runs on this machine's cores (load
//! generator, gateway, services and PostgreSQL together). Target: trend read p50 under 5 ms.
//!
//! Measured on the 2-core reference machine (2026-11-27, `-- --seconds 8`, other engineers'
//! builds running, load average 3.4): recording 692 assessments/s, p50 20 ms, p99 59 ms
//! (16 nurses); 52-week trend (52 points) p50 2.1 ms, p99 10 ms with one client, 819 reads/s
//! (p50 19 ms) with 16.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
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
    patient_service_client::PatientServiceClient, wound_service_client::WoundServiceClient,
};
use telehealth_testkit::harness::Bearer;
use telehealth_testkit::measure::percentile;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

const ORG: &str = "cds-bench";
const DOCTOR: &str = "dr-bench";
const CLIENTS: usize = 16;
const CONNECTIONS: usize = 4;
/// Wounds each nurse records on in phase 1 (spreads the per-wound lock).
const WOUNDS_PER_NURSE: usize = 8;

type Client = WoundServiceClient<InterceptedService<Channel, Bearer>>;

fn report(name: &str, calls: usize, ok: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    println!(
        "| {name} | {calls} | {ok} | {:.0} | {:.2} | {:.2} |",
        calls as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

/// Clients acting as `subject` with `role`, over `connections` connections.
async fn clients(
    suite: &RunningSuite,
    (subject, role, device): (&str, Role, &str),
    connections: usize,
) -> anyhow::Result<Vec<Client>> {
    let settings = &suite.settings;
    let files = DevPki::new(settings.pki_dir()).device_files(device);
    let token = DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
        subject: subject.into(),
        roles: vec![role],
        org: ORG.into(),
        specialty: None,
        cert_thumbprint: Some(thumbprint_of_pem_file(&files.cert)?),
        ttl: Duration::from_secs(3600),
        audience: DEFAULT_AUDIENCE.into(),
    })?;
    let bearer = Bearer::new(&token);
    let mut all = Vec::new();
    for _ in 0..connections {
        let channel = telehealth_testkit::harness::channel_to(
            suite.gateway,
            settings,
            &(files.cert.clone(), files.key.clone()),
        )
        .await?;
        if all.is_empty() {
            // A member of the centre before anyone names them (care teams are checked).
            DirectoryServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .register_self(pb::RegisterSelfRequest {})
                .await?;
        }
        all.push(WoundServiceClient::with_interceptor(
            channel,
            bearer.clone(),
        ));
    }
    Ok(all)
}

/// A patient of the centre, registered by the doctor, who consented to wound monitoring.
async fn consenting_patient(suite: &RunningSuite, n: usize) -> anyhow::Result<String> {
    let settings = &suite.settings;
    let files = DevPki::new(settings.pki_dir()).device_files("doctor-workstation");
    let token = DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
        subject: DOCTOR.into(),
        roles: vec![Role::Doctor],
        org: ORG.into(),
        specialty: None,
        cert_thumbprint: Some(thumbprint_of_pem_file(&files.cert)?),
        ttl: Duration::from_secs(3600),
        audience: DEFAULT_AUDIENCE.into(),
    })?;
    let channel =
        telehealth_testkit::harness::channel_to(suite.gateway, settings, &(files.cert, files.key))
            .await?;
    let mut register = PatientServiceClient::with_interceptor(channel, Bearer::new(&token));
    let letters: String = format!("{n:x}")
        .chars()
        .map(|c| (b'A' + c.to_digit(16).unwrap_or(0) as u8) as char)
        .collect();
    let patient = register
        .create_patient(pb::CreatePatientRequest {
            identity: Some(pb::IdentityTraits {
                birth_name: format!("BANC {letters}"),
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
    register
        .record_consent(pb::RecordConsentRequest {
            patient_id: patient.clone(),
            act: pb::ConsentAct::WoundMonitoring as i32,
            decision: pb::ConsentDecision::Given as i32,
            method: pb::ConsentMethod::Oral as i32,
            ..Default::default()
        })
        .await?;
    Ok(patient)
}

fn description() -> pb::WoundDescription {
    pb::WoundDescription {
        body_site: Some(pb::BodySite {
            region: pb::BodyRegion::LowerLeg as i32,
            laterality: pb::Laterality::Right as i32,
            description: String::new(),
            snomed_ct_code: String::new(),
        }),
        aetiology: pb::Aetiology::VenousLegUlcer as i32,
        pressure_ulcer_stage: 0,
        aetiology_details: String::new(),
        onset_date: String::new(),
        planned_assessment_interval_days: 7,
    }
}

async fn register(doctor: &mut Client, patient: &str, nurse: &str) -> anyhow::Result<String> {
    Ok(doctor
        .register_wound(pb::RegisterWoundRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            patient: Some(pb::PatientRef {
                pseudonym: patient.into(),
            }),
            description: Some(description()),
            referring_doctor_subject: String::new(),
            care_team_nurse_subjects: vec![nurse.into()],
        })
        .await?
        .into_inner()
        .wound
        .map(|w| w.wound_id)
        .unwrap_or_default())
}

fn assessment(wound_id: &str, at: Timestamp, n: u64) -> pb::RecordAssessmentRequest {
    // A slowly healing venous ulcer: 6 × 4 cm shrinking a little each time, with noise.
    let shrink = (n % 50) as f64 * 0.05;
    pb::RecordAssessmentRequest {
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        wound_id: wound_id.into(),
        measurements: Some(pb::AssessmentMeasurements {
            assessed_at: Some(ts(at)),
            length_cm: 6.0 - shrink,
            width_cm: 4.0 - shrink / 2.0 + (n % 3) as f64 * 0.1,
            depth_cm: Some(0.4),
            tissue_type: pb::TissueType::Granulation as i32,
            exudate: pb::ExudateAmount::Light as i32,
            pain_score: Some(3),
            infection_signs: Vec::new(),
            notes: "bande de compression, hydrofibre".into(),
            photo_image_ids: Vec::new(),
        }),
    }
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
    // Many people on one sample device certificate, each on connections of its own.
    settings.gateway.limits.max_connections_per_certificate = 10_000;
    settings.database.url = Some(url.clone());
    let prefix = format!("bench{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    settings.database.schema_prefix = prefix.clone();
    settings.database.max_connections = 24;
    let mut suite = RunningSuite::start(settings).await?;
    suite.wait_healthy(Duration::from_secs(30)).await?;

    let mut doctors = clients(
        &suite,
        (DOCTOR, Role::Doctor, "doctor-workstation"),
        CONNECTIONS,
    )
    .await?;
    let now = Timestamp::now();

    // The 52-week wound: one assessment a week for a year, oldest first.
    print!("recording a 52-week series… ");
    let mut trend_nurse = clients(&suite, ("nurse-trend", Role::Nurse, "nurse-tablet"), 1).await?;
    let trend_patient = consenting_patient(&suite, 0).await?;
    let trend_wound = register(&mut doctors[0], &trend_patient, "nurse-trend").await?;
    for week in 0..52_u64 {
        let at = now - SignedDuration::from_hours(24 * 7 * (52 - week as i64));
        trend_nurse[0]
            .record_assessment(assessment(&trend_wound, at, week))
            .await?;
    }
    println!("done");

    // Phase 1 wounds: each nurse her own.
    let mut nurse_clients = Vec::new();
    let mut nurse_wounds = Vec::new();
    for n in 0..CLIENTS {
        let subject = format!("nurse-{n:02}");
        let mut client = clients(&suite, (&subject, Role::Nurse, "nurse-tablet"), 1).await?;
        nurse_clients.push(client.remove(0));
        let mut own = Vec::new();
        for w in 0..WOUNDS_PER_NURSE {
            let patient = consenting_patient(&suite, 1 + n * WOUNDS_PER_NURSE + w).await?;
            own.push(register(&mut doctors[0], &patient, &subject).await?);
        }
        nurse_wounds.push(own);
    }

    println!();
    println!("| phase | calls | succeeded | calls/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");

    // 1. Record assessments.
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let duration = Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (worker, mut client) in nurse_clients.into_iter().enumerate() {
        let wounds = nurse_wounds[worker].clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut latencies) = (0, Vec::new());
            while started.elapsed() < duration {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let wound = &wounds[(n as usize) % wounds.len()];
                // Visits in the past, a few minutes apart, never in the future.
                let at = now - SignedDuration::from_secs(3600 * 24 * 300)
                    + SignedDuration::from_secs(60 * n as i64);
                let at_call = Instant::now();
                if client
                    .record_assessment(assessment(wound, at, n))
                    .await
                    .is_ok()
                {
                    ok += 1;
                }
                latencies.push(at_call.elapsed());
            }
            (ok, latencies)
        }));
    }
    let (mut ok, mut all) = (0, Vec::new());
    for task in tasks {
        let (worker_ok, latencies) = task.await?;
        ok += worker_ok;
        all.extend(latencies);
    }
    report(
        &format!("record assessment ({CLIENTS} nurses, no photo)"),
        all.len(),
        ok,
        started.elapsed(),
        all,
    );

    // 2. Trend reads.
    let request = pb::GetWoundTrendRequest {
        wound_id: trend_wound.clone(),
        area_method: pb::AreaMethod::Rectangle as i32,
        range: None,
        all_episodes: false,
    };
    let points = doctors[0]
        .get_wound_trend(request.clone())
        .await?
        .into_inner()
        .trend
        .map_or(0, |t| t.points.len());
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut client = doctors[0].clone();
    while started.elapsed() < duration {
        let at = Instant::now();
        client.get_wound_trend(request.clone()).await?;
        latencies.push(at.elapsed());
    }
    let calls = latencies.len();
    report(
        &format!("52-week trend, 1 client ({points} points)"),
        calls,
        calls,
        started.elapsed(),
        latencies,
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let mut client = doctors[worker % doctors.len()].clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut latencies) = (0, Vec::new());
            while started.elapsed() < duration {
                let at = Instant::now();
                if client.get_wound_trend(request.clone()).await.is_ok() {
                    ok += 1;
                }
                latencies.push(at.elapsed());
            }
            (ok, latencies)
        }));
    }
    let (mut ok, mut all) = (0, Vec::new());
    for task in tasks {
        let (worker_ok, latencies) = task.await?;
        ok += worker_ok;
        all.extend(latencies);
    }
    report(
        &format!("52-week trend, {CLIENTS} clients"),
        all.len(),
        ok,
        started.elapsed(),
        all,
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
