//! Fault drills: a dependency fails while people work, and what they were told stays true.
//!
//! - PostgreSQL restarted during a booking load;
//! - the S3 store (Garage) killed during photo uploads, then started again;
//! - scheduling and signalling killed (SIGKILL) under a watch and a video room, then restarted;
//! - network faults between the gateway and scheduling (latency, answers held back, everything
//!   held, every connection cut), through a faulty TCP link.
//!
//! Each on a server of the test's own: the machine's are shared with the tests running beside.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use telehealth_proto::v1::{self as pb};
use telehealth_testkit::{
    postgres::PrivatePostgres,
    suite::{Backend, Person, Suite},
};
use tonic::{Code, Status};

use crate::scheduling::{booking, publish_availability, ten_oclock_in};

const CENTRE: &str = "cds-la-souterraine";

/// Bookings written during the drill, by this many clients at once.
const WRITES: usize = 160;
const WRITERS: usize = 4;
/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(3);
/// After the database is back, how long clients may still see failures (pools reconnect).
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// A client gives up on one booking after this long.
const CLIENT_PATIENCE: Duration = Duration::from_secs(60);

/// The `index`th booking's start: 20 half-hour slots from 10:00 Paris each day, from in 3 days.
fn slot(index: usize) -> jiff::Timestamp {
    ten_oclock_in(3 + (index / 20) as i64)
        .checked_add(jiff::SignedDuration::from_mins(30 * (index % 20) as i64))
        .expect("slot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_during_bookings_loses_and_duplicates_nothing() {
    let Some(server) = PrivatePostgres::start() else {
        return;
    };
    let url = server.url();
    let Some(mut suite) = Suite::start_with(Backend::Postgres, move |settings| {
        settings.database.url = Some(url);
        // A client waits at most this long for a connection while the server is down.
        settings.database.acquire_timeout_seconds = 2;
    })
    .await
    else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let patient = suite
        .consenting_patient(&Person::coordinator("coord-drill", CENTRE))
        .await;
    publish_availability(&suite, &doctor).await;
    let client = suite.scheduling(&doctor).await;

    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(BTreeMap::<usize, String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<(Instant, Status)>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (next, acknowledged, failures) =
                (next.clone(), acknowledged.clone(), failures.clone());
            let (mut client, patient) = (client.clone(), patient.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= WRITES {
                        return;
                    }
                    let request = booking(
                        &patient,
                        &format!("drill-{index}"),
                        "dr-martin",
                        "p",
                        slot(index),
                    );
                    let started = Instant::now();
                    // The same request again until it is answered, as a client app retries.
                    let id = loop {
                        match client.book_appointment(request.clone()).await {
                            Ok(booked) => {
                                break booked
                                    .into_inner()
                                    .appointment
                                    .expect("appointment")
                                    .appointment_id;
                            }
                            Err(status) => {
                                failures
                                    .lock()
                                    .expect("lock")
                                    .push((Instant::now(), status));
                                assert!(
                                    started.elapsed() < CLIENT_PATIENCE,
                                    "booking {index} still failing after {CLIENT_PATIENCE:?}"
                                );
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    };
                    acknowledged.lock().expect("lock").insert(index, id);
                }
            })
        })
        .collect();

    while acknowledged.lock().expect("lock").len() < WRITES / 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A doctor watching through the outage: the notifications sent while the service cannot
    // hear them are lost, so the watch must end (UNAVAILABLE) rather than go quiet.
    let mut watched_through = suite
        .scheduling(&doctor)
        .await
        .watch_appointments(pb::WatchAppointmentsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert!(matches!(
        watched_through
            .next()
            .await
            .expect("first")
            .expect("ok")
            .payload,
        Some(pb::watch_appointments_response::Payload::Ready(_))
    ));
    let server = Arc::new(server);
    let stopping = server.clone();
    let down_at = Instant::now();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .expect("stop");
    let during: usize = acknowledged.lock().expect("lock").len();
    tokio::time::sleep(OUTAGE).await;
    let starting = server.clone();
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .expect("start");
    let up_at = Instant::now();
    for writer in writers {
        writer.await.expect("a client finished its bookings");
    }

    let acknowledged = acknowledged.lock().expect("lock").clone();
    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    println!(
        "drill: {WRITES} bookings, {during} acknowledged when PostgreSQL stopped, down {:?}, {} \
         failed attempts, last one {:?} after the restart",
        up_at - down_at,
        failures.len(),
        failures
            .iter()
            .map(|(at, _)| at.saturating_duration_since(up_at))
            .max()
    );
    assert_eq!(
        acknowledged.len(),
        WRITES,
        "every booking acknowledged in the end"
    );
    assert!(!failures.is_empty(), "the outage was seen by the clients");
    let wrong: Vec<_> = failures
        .iter()
        .filter(|(_, status)| status.code() != Code::Unavailable)
        .map(|(_, status)| format!("{:?}: {}", status.code(), status.message()))
        .collect();
    assert!(
        wrong.is_empty(),
        "only UNAVAILABLE while it is down: {wrong:?}"
    );
    let outside: Vec<_> = failures
        .iter()
        .filter(|(at, _)| *at < down_at || *at > up_at + RECOVERY_BOUND)
        .map(|(at, status)| {
            format!(
                "{:?} after the restart: {}",
                at.saturating_duration_since(up_at),
                status.message()
            )
        })
        .collect();
    assert!(
        outside.is_empty(),
        "failures outside the outage: {outside:?}"
    );

    // Nothing lost, nothing twice: the doctor's agenda holds exactly the acknowledged bookings,
    // and a retry of any of them answers the same appointment.
    let mut agenda = BTreeSet::new();
    let mut page_token = String::new();
    let mut scheduling = suite.scheduling(&doctor).await;
    loop {
        let page = scheduling
            .list_appointments(pb::ListAppointmentsRequest {
                doctor_subject: "dr-martin".into(),
                period: Some(pb::list_appointments_request::Period::Range(
                    pb::TimeRange {
                        start_time: Some(telehealth_kit::record::timestamp(slot(0))),
                        end_time: Some(telehealth_kit::record::timestamp(
                            slot(WRITES)
                                .checked_add(jiff::SignedDuration::from_hours(24))
                                .expect("end"),
                        )),
                    },
                )),
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("agenda")
            .into_inner();
        for appointment in page.appointments {
            assert!(
                agenda.insert(appointment.appointment_id.clone()),
                "listed twice: {}",
                appointment.appointment_id
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let told: BTreeSet<String> = acknowledged.values().cloned().collect();
    assert_eq!(told.len(), WRITES, "one appointment per booking");
    assert_eq!(agenda, told, "the agenda is exactly what clients were told");
    for (index, id) in acknowledged.iter().step_by(7) {
        let replay = scheduling
            .book_appointment(booking(
                &patient,
                &format!("drill-{index}"),
                "dr-martin",
                "p",
                slot(*index),
            ))
            .await
            .expect("replay")
            .into_inner()
            .appointment
            .expect("appointment");
        assert_eq!(
            &replay.appointment_id, id,
            "a retry answers the same appointment"
        );
    }

    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watched_through.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the watch open through the outage ends")
    .expect("with an error, not as if nothing had been missed");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");

    // The services came back by themselves: every part SERVING, the event bus listening again
    // (its own health entry), and a change reaches a watch opened now.
    suite
        .running
        .as_mut()
        .expect("running")
        .wait_healthy(RECOVERY_BOUND)
        .await
        .expect("every part serving again");
    let address =
        suite.running.as_ref().expect("running").services[&telehealth_kit::Part::Scheduling];
    let health = suite
        .internal_channel(telehealth_kit::Part::Gateway, address)
        .await;
    let listening = tokio::time::timeout(RECOVERY_BOUND, async {
        while !telehealth_kit::health::check(health.clone(), "dependency/events")
            .await
            .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(listening.is_ok(), "the event bus listens again");
    let mut watch = scheduling
        .watch_appointments(pb::WatchAppointmentsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let ready = watch.next().await.expect("first").expect("ok");
    assert!(matches!(
        ready.payload,
        Some(pb::watch_appointments_response::Payload::Ready(_))
    ));
    let after = scheduling
        .book_appointment(booking(
            &patient,
            "drill-after",
            "dr-martin",
            "p",
            slot(WRITES + 1),
        ))
        .await
        .expect("a booking after the drill")
        .into_inner()
        .appointment
        .expect("appointment")
        .appointment_id;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = watch.next().await {
            if let Some(pb::watch_appointments_response::Payload::Change(change)) =
                message.expect("ok").payload
                && change
                    .appointment
                    .as_ref()
                    .map(|a| a.appointment_id.as_str())
                    == Some(&after)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the new booking reaches the watch");
    suite.stop().await;
}

/// Photos uploaded while the S3 store is down.
const PHOTOS: usize = 12;

/// Uploads `photo` to `wound_id` as a phone app does: from the acknowledged offset again after
/// each failure, until it completes. Returns the stored image and every failure seen.
async fn upload_resuming(
    client: &mut telehealth_testkit::suite::Wounds,
    wound_id: &str,
    photo: &[u8],
    failures: &Mutex<Vec<(Instant, Status)>>,
) -> pb::ImageInfo {
    let session = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut offset = 0usize;
    loop {
        let mut messages = vec![crate::wound::photo_header(
            wound_id,
            &session,
            offset as i64,
            photo,
        )];
        messages.extend(crate::wound::photo_chunks(photo, offset, photo.len()));
        let failure = match client.upload_photo(futures::stream::iter(messages)).await {
            Ok(response) => {
                let result = response.into_inner().result.expect("result");
                return result.image.expect("stored image");
            }
            Err(status) => status,
        };
        failures
            .lock()
            .expect("lock")
            .push((Instant::now(), failure));
        assert!(
            started.elapsed() < CLIENT_PATIENCE,
            "an upload still failing after {CLIENT_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Where to resume: what the service acknowledged (nothing if it cannot say yet).
        offset = client
            .get_photo_upload_status(pb::GetPhotoUploadStatusRequest {
                wound_id: wound_id.into(),
                upload_session_id: session.clone(),
            })
            .await
            .ok()
            .and_then(|status| status.into_inner().status)
            .map_or(0, |status| status.acknowledged_offset as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_stopped_during_uploads_answers_unavailable_and_every_photo_arrives_intact() {
    let Some(mut garage) = telehealth_testkit::garage::PrivateGarage::start() else {
        return;
    };
    let blobs = garage.blob_settings();
    let Some(suite) = Suite::start_with(Backend::Sqlite, move |settings| {
        settings.blobs = blobs;
        // Small parts: what arrived before the store went down is acknowledged and kept.
        settings.images.part_size_bytes = 64 * 1024;
    })
    .await
    else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let nurse = Person::nurse("nurse-claire", CENTRE);
    let patient = suite.consenting_patient(&doctor).await;
    let mut by_doctor = suite.wounds(&doctor).await;
    let mut by_nurse = suite.wounds(&nurse).await;
    let wound = crate::wound::register(&mut by_doctor, &patient, &[&nurse]).await;
    let photos: Vec<Vec<u8>> = (0..PHOTOS)
        .map(|i| {
            telehealth_images::format::fixtures::jpeg_with_identifying_metadata(480 + i as u32, 360)
        })
        .collect();

    let failures = Arc::new(Mutex::new(Vec::new()));
    let uploads = {
        let (photos, failures, wound_id) =
            (photos.clone(), failures.clone(), wound.wound_id.clone());
        tokio::spawn(async move {
            let mut stored = Vec::new();
            for photo in &photos {
                stored.push(upload_resuming(&mut by_nurse, &wound_id, photo, &failures).await);
            }
            stored
        })
    };
    // The store dies after the first photos, and comes back 3 s later.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let down_at = Instant::now();
    garage.stop();
    tokio::time::sleep(OUTAGE).await;
    let garage = tokio::task::spawn_blocking(move || {
        garage.start_again();
        garage
    })
    .await
    .expect("restart");
    let up_at = Instant::now();
    let stored = uploads.await.expect("every upload completed");

    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    println!(
        "drill: {PHOTOS} photos, S3 store down {:?}, {} failed attempts",
        up_at - down_at,
        failures.len()
    );
    assert!(
        !failures.is_empty(),
        "the outage was seen by the nurse's phone"
    );
    let wrong: Vec<_> = failures
        .iter()
        .filter(|(_, status)| status.code() != Code::Unavailable)
        .map(|(_, status)| format!("{:?}: {}", status.code(), status.message()))
        .collect();
    assert!(
        wrong.is_empty(),
        "only UNAVAILABLE while the store is down: {wrong:?}"
    );
    assert!(
        failures
            .iter()
            .all(|(at, _)| *at >= down_at && *at <= up_at + RECOVERY_BOUND),
        "failures only during the outage"
    );
    // Every photo is what was sent (its original's hash), and what is stored is what is served.
    for (photo, info) in photos.iter().zip(&stored) {
        assert_eq!(info.original_sha256_hex, crate::wound::sha256_hex(photo));
        let mut download = by_doctor
            .download_photo(pb::DownloadPhotoRequest {
                wound_id: wound.wound_id.clone(),
                image_id: info.image_id.clone(),
                offset: 0,
            })
            .await
            .expect("download")
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(message) = download.next().await {
            if let Some(pb::download_photo_response::Part::Chunk(chunk)) =
                message.expect("chunk").part
            {
                bytes.extend(chunk.data);
            }
        }
        assert_eq!(crate::wound::sha256_hex(&bytes), info.sha256_hex);
    }
    let checks = telehealth::backup::check_services(
        &suite.settings,
        &suite.settings.data_dir,
        &suite.settings.blob_dir(),
    )
    .await
    .expect("checks");
    let wound_check = checks.iter().find(|c| c.part == "wound").expect("wound");
    assert_eq!(wound_check.images, PHOTOS as u64);
    assert!(
        wound_check.image_problems.is_empty(),
        "{:?}",
        wound_check.image_problems
    );
    suite.stop().await;
    drop(garage);
}

/// How long after a SIGKILL the streams and calls through the gateway may take to fail.
const FAILS_WITHIN: Duration = Duration::from_secs(2);

/// Opens the agenda watch again and again until it is ready (the service restarting).
async fn watch_again(
    agenda: &mut crate::replicas::Scheduling,
) -> tonic::Streaming<pb::WatchAppointmentsResponse> {
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        if let Ok(response) = agenda
            .watch_appointments(pb::WatchAppointmentsRequest::default())
            .await
        {
            let mut watch = response.into_inner();
            if let Some(Ok(pb::WatchAppointmentsResponse {
                payload: Some(pb::watch_appointments_response::Payload::Ready(_)),
                ..
            })) = watch.next().await
            {
                return watch;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the watch is back within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next appointment change of `watch` (heartbeats skipped).
async fn next_change(
    watch: &mut tonic::Streaming<pb::WatchAppointmentsResponse>,
) -> pb::AppointmentChange {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a change within 10 s")
            .expect("the watch is open")
            .expect("no error");
        if let Some(pb::watch_appointments_response::Payload::Change(change)) = message.payload {
            return change;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_during_watches_and_calls_fails_them_at_once_and_they_resume_after() {
    use crate::replicas::{
        Stream, open_room, publish_availability, registered_patient, scheduling,
    };
    use telehealth_kit::Part;
    use telehealth_proto::v1::{signal_request::Message as In, signal_response::Event as Out};
    use telehealth_testkit::cluster::Cluster;

    let Some(mut cluster) = Cluster::start(env!("CARGO_BIN_EXE_telehealth").into(), 1).await else {
        return;
    };
    let gateway = cluster.gateway;
    let doctor = Person::doctor("dr-durand", "cds-bourganeuf");
    let coordinator = Person::coordinator("coord-drill", "cds-bourganeuf");
    let patient_account = Person::patient("pat-drill", "cds-bourganeuf");
    publish_availability(&cluster, gateway, &doctor).await;
    let patient = registered_patient(&cluster, gateway).await;
    let mut agenda = scheduling(&cluster, gateway, &coordinator).await;
    let mut by_doctor = scheduling(&cluster, gateway, &doctor).await;
    let mut watch = watch_again(&mut agenda).await;
    let room = open_room(&cluster, &doctor, &patient_account).await;
    let mut doctor_stream = Stream::open(&cluster, gateway, &doctor).await;
    let doctor_joined = doctor_stream.join(&room).await;
    let mut patient_stream = Stream::open(&cluster, gateway, &patient_account).await;
    patient_stream.join(&room).await;
    assert!(matches!(doctor_stream.event().await, Out::PeerJoined(_)));
    let book = |key: &str, day: i64| {
        crate::replicas::booking(&patient, key, "dr-durand", ten_oclock_in(day))
    };
    let before = by_doctor
        .book_appointment(book("kill-before", 3))
        .await
        .expect("booked")
        .into_inner()
        .appointment
        .expect("appointment")
        .appointment_id;
    assert_eq!(
        next_change(&mut watch)
            .await
            .appointment
            .expect("appointment")
            .appointment_id,
        before
    );

    // SIGKILL of scheduling and signalling: every open stream fails at once, with UNAVAILABLE.
    let killed_at = cluster.kill(Part::Scheduling, 0);
    cluster.kill(Part::Signalling, 0);
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends")
        .expect("with a status")
        .expect_err("an error");
    let watch_failed_after = killed_at.elapsed();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    for stream in [&mut doctor_stream, &mut patient_stream] {
        let status = stream.ended().await;
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let streams_failed_after = killed_at.elapsed();
    let asked = Instant::now();
    let refused = by_doctor
        .list_appointments(pb::ListAppointmentsRequest::default())
        .await
        .expect_err("scheduling is down");
    let call_failed_after = asked.elapsed();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    println!(
        "drill: after SIGKILL the watch failed in {watch_failed_after:?}, the video streams in \
         {streams_failed_after:?}, a new call in {call_failed_after:?}"
    );
    assert!(
        streams_failed_after < FAILS_WITHIN,
        "{streams_failed_after:?}"
    );
    assert!(call_failed_after < FAILS_WITHIN, "{call_failed_after:?}");

    // Both come back (as a supervisor restarts them); the clients reconnect by themselves.
    cluster.restart(Part::Scheduling, 0).await;
    cluster.restart(Part::Signalling, 0).await;
    let restarted = Instant::now();
    let mut watch = watch_again(&mut agenda).await;
    // What happened while the watch was away is read back, then changes arrive live again.
    let listed = agenda
        .list_appointments(pb::ListAppointmentsRequest {
            doctor_subject: "dr-durand".into(),
            ..Default::default()
        })
        .await
        .expect("the agenda")
        .into_inner()
        .appointments;
    assert!(
        listed.iter().any(|a| a.appointment_id == before),
        "nothing lost"
    );
    let after = by_doctor
        .book_appointment(book("kill-after", 4))
        .await
        .expect("booked after the restart")
        .into_inner()
        .appointment
        .expect("appointment")
        .appointment_id;
    assert_eq!(
        next_change(&mut watch)
            .await
            .appointment
            .expect("appointment")
            .appointment_id,
        after
    );
    // The doctor and the patient join the room again and exchange again.
    let mut doctor_stream = Stream::open(&cluster, gateway, &doctor).await;
    let rejoined = doctor_stream.join(&room).await;
    assert_eq!(
        rejoined.participant_id, doctor_joined.participant_id,
        "the same participant"
    );
    let mut patient_stream = Stream::open(&cluster, gateway, &patient_account).await;
    let patient_rejoined = patient_stream.join(&room).await;
    assert!(
        patient_rejoined
            .peers
            .iter()
            .any(|p| p.participant_id == doctor_joined.participant_id),
        "the doctor is there again"
    );
    doctor_stream
        .send(In::Offer(pb::SdpOffer {
            to_participant_id: patient_rejoined.participant_id.clone(),
            sdp: crate::replicas::OFFER.into(),
        }))
        .await;
    loop {
        match patient_stream.event().await {
            Out::Offer(offer) => {
                assert_eq!(offer.from_participant_id, doctor_joined.participant_id);
                break;
            }
            Out::PeerJoined(_) | Out::PeerReplaced(_) => continue,
            other => panic!("the patient expected the offer, got {other:?}"),
        }
    }
    println!(
        "drill: watch and video room back {:?} after the restart",
        restarted.elapsed()
    );
    cluster.stop().await;
}

/// Ended by its deadline: by the gateway or service (`DEADLINE_EXCEEDED`), or by the client's own
/// timer (`CANCELLED`, "Timeout expired"); or, while the service is out of reach, `UNAVAILABLE`.
fn ended_by_deadline(status: &Status) -> bool {
    matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable)
        || (status.code() == Code::Cancelled && status.message().contains("Timeout expired"))
}

/// A call with a deadline: its status and how long the client waited.
async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> (Result<T, Status>, Duration) {
    let started = Instant::now();
    let result = call.await.map(tonic::Response::into_inner);
    (result, started.elapsed())
}

/// `message` with a deadline (`grpc-timeout`; tonic's channel also keeps a timer of its own, and
/// whichever ends the call first, the call must be over by then).
fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("{}m", deadline.as_millis()).parse().expect("ascii");
    request.metadata_mut().insert("grpc-timeout", value);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_faults_between_gateway_and_service_keep_deadlines_and_apply_nothing_twice() {
    use telehealth_testkit::faults::{Fault, FaultyLink};

    let Some(suite) = Suite::start(Backend::Sqlite).await else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let patient = suite
        .consenting_patient(&Person::coordinator("coord-drill", CENTRE))
        .await;
    publish_availability(&suite, &doctor).await;
    // A second gateway whose way to scheduling goes through the faulty link.
    let service =
        suite.running.as_ref().expect("running").services[&telehealth_kit::Part::Scheduling];
    let link = FaultyLink::to(service).await;
    let (gateway, _stop) = suite
        .extra_gateway(telehealth_kit::Part::Scheduling, &[link.address])
        .await;
    let mut client = suite.scheduling_via(gateway, &doctor).await;
    let margin = Duration::from_millis(300);

    // Latency of 400 ms each way: a 250 ms deadline ends at 250 ms, a 10 s one is met.
    link.set(Fault::Delay(Duration::from_millis(400)));
    let deadline = Duration::from_millis(250);
    let (result, under_latency) = timed(client.list_appointments(with_deadline(
        pb::ListAppointmentsRequest::default(),
        deadline,
    )))
    .await;
    let status = result.expect_err("past its deadline");
    assert!(ended_by_deadline(&status), "{status:?}");
    assert!(
        under_latency < deadline + margin,
        "answered after {under_latency:?}"
    );
    let (result, slow) = timed(client.list_appointments(with_deadline(
        pb::ListAppointmentsRequest::default(),
        Duration::from_secs(10),
    )))
    .await;
    result.expect("a slow call within its deadline");
    assert!(
        slow >= Duration::from_millis(800),
        "the latency was there: {slow:?}"
    );

    // The service's answer held back: the booking is made, the client's deadline passes; the
    // retry with the same key answers the same appointment, and there is one.
    link.set(Fault::HoldAnswers);
    let request = booking(&patient, "netfault-1", "dr-martin", "p", slot(0));
    let deadline = Duration::from_secs(1);
    let (result, waited) =
        timed(client.book_appointment(with_deadline(request.clone(), deadline))).await;
    let status = result.expect_err("the answer never came");
    assert!(ended_by_deadline(&status), "{status:?}");
    assert!(waited < deadline + margin, "answered after {waited:?}");
    link.set(Fault::None);
    let mut retried = None;
    for _ in 0..50 {
        match client.book_appointment(request.clone()).await {
            Ok(response) => {
                retried = response.into_inner().appointment;
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let retried = retried.expect("the retry succeeds once the network is back");
    let agenda = suite
        .scheduling(&doctor)
        .await
        .list_appointments(pb::ListAppointmentsRequest {
            doctor_subject: "dr-martin".into(),
            ..Default::default()
        })
        .await
        .expect("agenda")
        .into_inner()
        .appointments;
    let at_that_time: Vec<_> = agenda.iter().filter(|a| a.time == retried.time).collect();
    assert_eq!(at_that_time.len(), 1, "applied once: {at_that_time:?}");
    assert_eq!(at_that_time[0].appointment_id, retried.appointment_id);

    // Everything held, then every connection cut: calls end by their deadline or UNAVAILABLE,
    // and the next ones go through a new connection.
    link.set(Fault::Hold);
    let (result, waited) = timed(client.list_appointments(with_deadline(
        pb::ListAppointmentsRequest::default(),
        Duration::from_secs(1),
    )))
    .await;
    let status = result.expect_err("nothing gets through");
    assert!(ended_by_deadline(&status), "{status:?}");
    assert!(
        waited < Duration::from_secs(1) + margin,
        "answered after {waited:?}"
    );
    link.set(Fault::None);
    link.cut_all();
    let mut recovered = None;
    let cut_at = Instant::now();
    while cut_at.elapsed() < RECOVERY_BOUND {
        match client
            .list_appointments(with_deadline(
                pb::ListAppointmentsRequest::default(),
                Duration::from_secs(2),
            ))
            .await
        {
            Ok(_) => {
                recovered = Some(cut_at.elapsed());
                break;
            }
            Err(status) => {
                assert!(ended_by_deadline(&status), "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let recovered = recovered.expect("calls go through again after the cut");
    println!(
        "drill: network faults: a 250 ms deadline ended at {under_latency:?} under 400 ms of \
         latency, a 1 s one at {waited:?} with everything held; the booking whose answer was \
         lost retried and applied once; calls back {recovered:?} after a cut"
    );
    suite.stop().await;
}
