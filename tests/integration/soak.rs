//! The soak: the three roles at work for a long while through the gateway, in microservice mode
//! (each service its own `telehealth serve` process) on PostgreSQL and the S3 store, watched for
//! errors, memory and database growth.
//!
//! `cargo test` (and so CI) runs 60 s of it; the long run:
//!
//! ```sh
//! TELEHEALTH_TEST_SOAK_SECONDS=1800 cargo test --release --test integration -- soak --nocapture
//! ```
//!
//! The load, each a client in a closed loop with a pause (a working day sped up, not a
//! throughput test): a doctor booking and cancelling appointments while a coordinator watches the
//! agenda; a nurse photographing wounds; a doctor and a patient meeting in video rooms (join,
//! offer, answer, candidates); a doctor sending tele-expertise requests with an image while a
//! specialist reads the inbox. It prints the calls made, the resident memory of every process
//! over time with its slope over the second half, and what the database holds.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use telehealth_proto::v1::{
    self as pb, directory_service_client::DirectoryServiceClient, signal_request::Message as In,
    signal_response::Event as Out, wound_service_client::WoundServiceClient,
};
use telehealth_testkit::{cluster::Cluster, suite::Person};

use crate::replicas::{
    OFFER, Stream, bearer, booking, draft_content, expertise, open_room, publish_availability,
    registered_patient, scheduling, ten_oclock_in,
};

const CENTRE: &str = "cds-bourganeuf";
/// How often memory and the database are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The most resident memory a process may gain per minute over the second half of the run.
const MAX_RSS_SLOPE_KIB_PER_MIN: f64 = 2048.0;
/// Rows of the audit outbox left undelivered, at most (it is drained continuously).
const MAX_AUDIT_OUTBOX_ROWS: i64 = 500;

fn soak_duration() -> Duration {
    let seconds = std::env::var("TELEHEALTH_TEST_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// Calls made and failed, by kind.
#[derive(Default)]
struct Tally {
    calls: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn ok(&self, kind: &'static str) {
        *self.calls.lock().expect("lock").entry(kind).or_default() += 1;
    }

    fn check<T>(&self, kind: &'static str, result: Result<T, tonic::Status>) -> Option<T> {
        match result {
            Ok(value) => {
                self.ok(kind);
                Some(value)
            }
            Err(status) => {
                self.errors.lock().expect("lock").push(format!(
                    "{kind}: {:?} {}",
                    status.code(),
                    status.message()
                ));
                None
            }
        }
    }

    fn count(&self, kind: &str) -> u64 {
        self.calls
            .lock()
            .expect("lock")
            .get(kind)
            .copied()
            .unwrap_or(0)
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Least-squares slope of `points` (minutes, KiB), in KiB per minute.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// Rows of `table` over every schema of the run, and the run's total table size in bytes.
async fn database_figures(cluster: &Cluster) -> BTreeMap<String, i64> {
    let url = cluster
        .settings
        .database
        .url
        .as_deref()
        .expect("PostgreSQL");
    let prefix = &cluster.settings.database.schema_prefix;
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let mut figures = BTreeMap::new();
    let size: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE $1 AND c.relkind = 'r'",
    )
    .bind(format!("{prefix}%"))
    .fetch_one(&pool)
    .await
    .expect("size");
    figures.insert("bytes".to_owned(), size);
    for table in [
        "appointments",
        "holds",
        "idempotency_records",
        "audit_log",
        "audit_outbox",
        "images",
        "image_uploads",
        "image_blob_garbage",
    ] {
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT table_schema::TEXT FROM information_schema.tables \
             WHERE table_schema LIKE $1 AND table_name = $2",
        )
        .bind(format!("{prefix}%"))
        .bind(table)
        .fetch_all(&pool)
        .await
        .expect("schemas");
        let mut rows = 0i64;
        for schema in schemas {
            let count: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*)::BIGINT FROM {schema}.{table}"))
                    .fetch_one(&pool)
                    .await
                    .expect("count");
            rows += count;
        }
        figures.insert(table.to_owned(), rows);
    }
    pool.close().await;
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_the_three_roles_through_the_gateway_without_errors_or_growing_memory() {
    let Some(cluster) = Cluster::start(env!("CARGO_BIN_EXE_telehealth").into(), 1).await else {
        return;
    };
    let duration = soak_duration();
    let gateway = cluster.gateway;
    let doctor = Person::doctor("dr-soak", CENTRE);
    let coordinator = Person::coordinator("coord-soak", CENTRE);
    let nurse = Person::nurse("nurse-soak", CENTRE);
    let patient_account = Person::patient("pat-soak", CENTRE);
    let specialist = Person::specialist("dr-durand", "chu-limoges").in_specialty("dermatology");
    // Everyone a member of their organisation before the care teams name them.
    for person in [&doctor, &coordinator, &nurse, &specialist] {
        DirectoryServiceClient::with_interceptor(
            cluster.channel(gateway, person.device).await,
            bearer(&cluster, person),
        )
        .register_self(pb::RegisterSelfRequest {})
        .await
        .expect("registered");
    }
    publish_availability(&cluster, gateway, &doctor).await;
    let patient = registered_patient(&cluster, gateway).await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let watched = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();

    // The coordinator's agenda, live for the whole run.
    let mut agenda = scheduling(&cluster, gateway, &coordinator).await;
    let mut watch = agenda
        .watch_appointments(pb::WatchAppointmentsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert!(matches!(
        watch.next().await.expect("ready").expect("ok").payload,
        Some(pb::watch_appointments_response::Payload::Ready(_))
    ));
    {
        let (watched, tally) = (watched.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(message) = watch.next().await {
                match message {
                    Ok(pb::WatchAppointmentsResponse {
                        payload: Some(pb::watch_appointments_response::Payload::Change(_)),
                        ..
                    }) => {
                        watched.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(status) => {
                        tally.check::<()>("watch", Err(status));
                        return;
                    }
                }
            }
        }));
    }
    // The doctor: book a slot, then cancel it (the slot is free again for a later round).
    {
        let (stop, tally, patient) = (stop.clone(), tally.clone(), patient.clone());
        let mut client = scheduling(&cluster, gateway, &doctor).await;
        tasks.push(tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let slot = round % 200;
                let start = ten_oclock_in(3 + (slot / 20) as i64)
                    + jiff::SignedDuration::from_mins(30 * (slot % 20) as i64);
                let request = booking(&patient, &format!("soak-{round}"), "dr-soak", start);
                if let Some(booked) = tally.check("book", client.book_appointment(request).await) {
                    let id = booked
                        .into_inner()
                        .appointment
                        .expect("appointment")
                        .appointment_id;
                    tally.check(
                        "cancel",
                        client
                            .cancel_appointment(pb::CancelAppointmentRequest {
                                appointment_id: id,
                                reason: pb::CancellationReason::PatientRequest as i32,
                                comment: "soak".into(),
                                expected_version: 0,
                            })
                            .await,
                    );
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // The nurse: a photo at a time, a new wound every 20 photos.
    {
        let (stop, tally, patient) = (stop.clone(), tally.clone(), patient.clone());
        let mut by_doctor = WoundServiceClient::with_interceptor(
            cluster.channel(gateway, doctor.device).await,
            bearer(&cluster, &doctor),
        );
        let mut by_nurse = WoundServiceClient::with_interceptor(
            cluster.channel(gateway, nurse.device).await,
            bearer(&cluster, &nurse),
        );
        let nurse = nurse.clone();
        tasks.push(tokio::spawn(async move {
            let mut wound_id = String::new();
            let mut photos = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if photos.is_multiple_of(20) {
                    wound_id = crate::wound::register(&mut by_doctor, &patient, &[&nurse])
                        .await
                        .wound_id;
                    tally.ok("register wound");
                }
                let photo = telehealth_images::format::fixtures::jpeg_plain(320 + photos % 64, 240);
                crate::wound::upload_one(&mut by_nurse, &wound_id, &photo).await;
                tally.ok("upload photo");
                photos += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Tele-expertise: a draft with an image, submitted; the specialist reads the inbox.
    {
        let (stop, tally, patient) = (stop.clone(), tally.clone(), patient.clone());
        let mut by_doctor = expertise(&cluster, gateway, &doctor).await;
        let mut by_specialist = expertise(&cluster, gateway, &specialist).await;
        tasks.push(tokio::spawn(async move {
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let Some(draft) = tally.check(
                    "create request",
                    by_doctor
                        .create_draft(pb::CreateDraftRequest {
                            idempotency_key: format!("soak-request-{round}"),
                            content: Some(draft_content(&patient)),
                        })
                        .await,
                ) else {
                    continue;
                };
                let id = draft.into_inner().request.expect("request").request_id;
                let image = telehealth_images::format::fixtures::jpeg_plain(200 + round % 50, 150);
                tally.check(
                    "attach image",
                    by_doctor
                        .attach_image(futures::stream::iter(crate::expertise::upload(&id, &image)))
                        .await,
                );
                tally.check(
                    "submit request",
                    by_doctor
                        .submit_request(pb::SubmitRequestRequest {
                            request_id: id,
                            ..Default::default()
                        })
                        .await,
                );
                tally.check(
                    "read inbox",
                    by_specialist
                        .list_inbox(pb::ListInboxRequest::default())
                        .await,
                );
                round += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }

    // A doctor and a patient meeting in a room (join, offer, answer), in this task beside the
    // sampling: both read the cluster.
    let rooms = async {
        while !stop.load(Ordering::Relaxed) {
            let room = open_room(&cluster, &doctor, &patient_account).await;
            let mut by_doctor = Stream::open(&cluster, gateway, &doctor).await;
            let joined = by_doctor.join(&room).await;
            let mut by_patient = Stream::open(&cluster, gateway, &patient_account).await;
            let patient_joined = by_patient.join(&room).await;
            assert!(matches!(by_doctor.event().await, Out::PeerJoined(_)));
            by_doctor
                .send(In::Offer(pb::SdpOffer {
                    to_participant_id: patient_joined.participant_id.clone(),
                    sdp: OFFER.into(),
                }))
                .await;
            assert!(matches!(by_patient.event().await, Out::Offer(_)));
            by_patient
                .send(In::Answer(pb::SdpAnswer {
                    to_participant_id: joined.participant_id.clone(),
                    sdp: OFFER.replace("a=setup:actpass", "a=setup:active"),
                }))
                .await;
            assert!(matches!(by_doctor.event().await, Out::Answer(_)));
            tally.ok("video room");
            drop((by_doctor, by_patient));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    // Samples until the end.
    let started = Instant::now();
    let processes = cluster.processes();
    let first_figures = database_figures(&cluster).await;
    let sampling = async {
        let mut memory: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        while started.elapsed() < duration {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let minutes = started.elapsed().as_secs_f64() / 60.0;
            for (name, pid) in &processes {
                if let Some(kib) = rss_kib(*pid) {
                    memory
                        .entry(name.clone())
                        .or_default()
                        .push((minutes, kib as f64));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        memory
    };
    let ((), memory) = tokio::join!(rooms, sampling);
    let workers = tasks.split_off(1);
    for task in workers {
        task.await.expect("a role's client ended cleanly");
    }
    // Every booking and cancellation reaches the watching coordinator.
    let expected = tally.count("book") + tally.count("cancel");
    let deadline = Instant::now() + Duration::from_secs(10);
    while watched.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tasks.pop().expect("watch task").abort();
    let last_figures = database_figures(&cluster).await;

    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!("## Soak: {minutes:.1} minutes, microservice mode on PostgreSQL and S3\n");
    println!("| calls | count | per minute |\n|---|---|---|");
    for (kind, count) in tally.calls.lock().expect("lock").iter() {
        println!("| {kind} | {count} | {:.0} |", *count as f64 / minutes);
    }
    println!(
        "| changes seen by the watching coordinator | {} | of {expected} |",
        watched.load(Ordering::Relaxed)
    );
    println!(
        "\n| process | RSS first (MiB) | RSS last (MiB) | slope over the second half (KiB/min) |\n|---|---|---|---|"
    );
    let mut slopes = Vec::new();
    for (name, points) in &memory {
        let second_half: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(m, _)| *m >= minutes / 2.0)
            .collect();
        let rate = slope(&second_half);
        slopes.push((name.clone(), rate));
        println!(
            "| {name} | {:.1} | {:.1} | {rate:+.0} |",
            points.first().map_or(0.0, |p| p.1 / 1024.0),
            points.last().map_or(0.0, |p| p.1 / 1024.0),
        );
    }
    println!("\n| database | start | end |\n|---|---|---|");
    for (name, end) in &last_figures {
        println!(
            "| {name} | {} | {end} |",
            first_figures.get(name).copied().unwrap_or(0)
        );
    }
    let operations = tally
        .calls
        .lock()
        .expect("lock")
        .values()
        .sum::<u64>()
        .max(1);
    let growth = last_figures["bytes"] - first_figures["bytes"];
    println!(
        "\ndatabase growth: {growth} bytes, {} bytes per call",
        growth / operations as i64
    );

    let errors = tally.errors.lock().expect("lock").clone();
    if !errors.is_empty() {
        cluster.print_logs();
    }
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(20)]
    );
    assert_eq!(
        watched.load(Ordering::Relaxed),
        expected,
        "every change reached the watch"
    );
    for (name, rate) in &slopes {
        assert!(
            *rate < MAX_RSS_SLOPE_KIB_PER_MIN,
            "{name}: memory grows {rate:.0} KiB/min over the second half"
        );
    }
    assert!(
        last_figures["audit_outbox"] <= MAX_AUDIT_OUTBOX_ROWS,
        "the audit outbox is drained: {} rows",
        last_figures["audit_outbox"]
    );
    assert_eq!(
        last_figures["image_blob_garbage"], 0,
        "deleted blobs are collected"
    );
    cluster.stop().await;
}
