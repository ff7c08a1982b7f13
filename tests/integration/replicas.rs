//! Several replicas, proven: the suite in microservice mode as separate processes —
//! two `telehealth serve <part>` for each service and `telehealth serve gateway` in front — on
//! PostgreSQL and the S3 store (Garage), called through the gateway with real mTLS and tokens.
//!
//! Where a call must reach one given instance, it goes through a gateway whose endpoints name
//! only that instance ("gateway A", "gateway B"); the services stay separate processes.
//!
//! One cluster serves every step (starting nine processes is the expensive part and the machine
//! is shared); the steps run in order, each named for what it shows, and the SIGKILL comes last.

use std::{
    net::SocketAddr,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use sha2::{Digest, Sha256};
use telehealth_kit::Part;
use telehealth_proto::v1::{
    self as pb, expertise_service_client::ExpertiseServiceClient,
    patient_service_client::PatientServiceClient,
    scheduling_service_client::SchedulingServiceClient, signal_request::Message as In,
    signal_response::Event as Out, signalling_service_client::SignallingServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Code, Request, Status, Streaming, service::interceptor::InterceptedService, transport::Channel,
};

use telehealth_kit::record::timestamp as ts;
use telehealth_testkit::cluster::Cluster;
use telehealth_testkit::harness::Bearer;
use telehealth_testkit::suite::Person;

const CENTRE: &str = "cds-bourganeuf";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_behave_as_one_and_survive_a_sigkill() {
    let started = Instant::now();
    let Some(mut cluster) = Cluster::start(env!("CARGO_BIN_EXE_telehealth").into(), 2).await else {
        return;
    };
    println!(
        "replicas: 8 service processes and the gateway serving in {:?}",
        started.elapsed()
    );
    let only_a = cluster.only_instance(0);
    let only_b = cluster.only_instance(1);
    let via = Gateways {
        both: cluster.gateway,
        a: cluster.in_process_gateway(&only_a).await,
        b: cluster.in_process_gateway(&only_b).await,
    };

    let outcome = AssertUnwindSafe(async {
        bookings_of_one_slot_on_both_instances_have_exactly_one_winner(&cluster, &via).await;
        a_watch_on_one_instance_receives_the_bookings_made_on_the_other(&cluster, &via).await;
        participants_on_two_signalling_instances_complete_their_exchange(&cluster, &via).await;
        an_upload_started_on_one_expertise_instance_resumes_on_the_other(&cluster, &via).await;
        a_sigkill_loses_no_acknowledged_booking_and_calls_move_to_the_survivor(&mut cluster, &via)
            .await;
    })
    .catch_unwind()
    .await;
    if outcome.is_err() {
        cluster.print_logs();
    }
    cluster.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    println!("replicas: whole test {:?}", started.elapsed());
}

/// The gateways of the test: in front of both instances, of instance A only, of B only.
struct Gateways {
    both: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
}

// ---- 1. exclusive bookings -------------------------------------------------------------------

async fn bookings_of_one_slot_on_both_instances_have_exactly_one_winner(
    cluster: &Cluster,
    via: &Gateways,
) {
    let doctor = Person::doctor("dr-martin", CENTRE);
    publish_availability(cluster, via.both, &doctor).await;
    let on_a = scheduling(cluster, via.a, &doctor).await;
    let on_b = scheduling(cluster, via.b, &doctor).await;
    let start = ten_oclock_in(3);
    let patient = registered_patient(cluster, via.both).await;
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let patient = patient.clone();
            let mut client = if i % 2 == 0 {
                on_a.clone()
            } else {
                on_b.clone()
            };
            tokio::spawn(async move {
                let request = booking(&patient, &format!("same-{i}"), "dr-martin", start);
                client.book_appointment(request).await
            })
        })
        .collect();
    let mut booked = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(_) => booked += 1,
            Err(status) => assert_eq!(
                status.code(),
                Code::AlreadyExists,
                "a losing booking is refused as time already taken: {status:?}"
            ),
        }
    }
    assert_eq!(
        booked, 1,
        "exactly one of 20 concurrent bookings of one slot, 10 on each instance, wins"
    );
}

// ---- 2. events across instances --------------------------------------------------------------

async fn a_watch_on_one_instance_receives_the_bookings_made_on_the_other(
    cluster: &Cluster,
    via: &Gateways,
) {
    let doctor = Person::doctor("dr-bernard", CENTRE);
    publish_availability(cluster, via.both, &doctor).await;
    let mut watch = scheduling(cluster, via.a, &doctor)
        .await
        .watch_appointments(pb::WatchAppointmentsRequest {
            practitioner_subject: String::new(),
        })
        .await
        .expect("watch on instance A")
        .into_inner();
    let ready = watch.next().await.expect("first message").expect("ok");
    assert!(
        matches!(
            ready.payload,
            Some(pb::watch_appointments_response::Payload::Ready(_))
        ),
        "the watch starts with ready: {ready:?}"
    );

    let booked = scheduling(cluster, via.b, &doctor)
        .await
        .book_appointment(booking(
            &registered_patient(cluster, via.both).await,
            "watched-1",
            "dr-bernard",
            ten_oclock_in(4),
        ))
        .await
        .expect("booked on instance B")
        .into_inner()
        .appointment
        .expect("appointment");

    let change = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the booking made on B reaches the watch on A within 10 s")
            .expect("the watch is open")
            .expect("ok");
        match message.payload {
            Some(pb::watch_appointments_response::Payload::Change(change)) => break change,
            Some(pb::watch_appointments_response::Payload::Heartbeat(_)) => continue,
            other => panic!("expected a change, got {other:?}"),
        }
    };
    assert_eq!(
        change.appointment.map(|a| a.appointment_id),
        Some(booked.appointment_id),
        "the change is the booking made on B"
    );
    assert_eq!(
        change.event.map(|e| e.kind),
        Some(pb::AppointmentEventKind::Booked as i32)
    );
}

// ---- 3. video signalling across instances ----------------------------------------------------

/// A minimal valid SDP offer (one data channel), and its answer.
pub(crate) const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAwLgXjQrUaRnRa\r\na=ice-pwd:bPHsiNMPrMMPyYHwJZtmqdYDejBJmfGG\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5A\r\n\
a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

async fn participants_on_two_signalling_instances_complete_their_exchange(
    cluster: &Cluster,
    via: &Gateways,
) {
    let doctor = Person::doctor("dr-martin", CENTRE);
    let patient = Person::patient("pat-7f3a", CENTRE);
    let room_id = open_room(cluster, &doctor, &patient).await;

    // The doctor through gateway A (signalling instance A), the patient through gateway B.
    let mut doctor_stream = Stream::open(cluster, via.a, &doctor).await;
    let doctor_joined = doctor_stream.join(&room_id).await;
    let mut patient_stream = Stream::open(cluster, via.b, &patient).await;
    let patient_joined = patient_stream.join(&room_id).await;
    assert_eq!(
        patient_joined
            .peers
            .iter()
            .map(|p| p.participant_id.as_str())
            .collect::<Vec<_>>(),
        vec![doctor_joined.participant_id.as_str()],
        "the doctor connected to the other instance is listed as a peer"
    );
    assert!(
        matches!(doctor_stream.event().await, Out::PeerJoined(_)),
        "the doctor is told the patient joined on the other instance"
    );

    let answer_sdp = OFFER.replace("a=setup:actpass", "a=setup:active");
    doctor_stream
        .send(In::Offer(pb::SdpOffer {
            to_participant_id: patient_joined.participant_id.clone(),
            sdp: OFFER.into(),
        }))
        .await;
    match patient_stream.event().await {
        Out::Offer(offer) => {
            assert_eq!(offer.sdp, OFFER);
            assert_eq!(offer.from_participant_id, doctor_joined.participant_id);
        }
        other => panic!("the patient expected the offer, got {other:?}"),
    }
    patient_stream
        .send(In::Answer(pb::SdpAnswer {
            to_participant_id: doctor_joined.participant_id.clone(),
            sdp: answer_sdp.clone(),
        }))
        .await;
    match doctor_stream.event().await {
        Out::Answer(answer) => assert_eq!(answer.sdp, answer_sdp),
        other => panic!("the doctor expected the answer, got {other:?}"),
    }
    // ICE candidates both ways.
    for (from, to, port) in [
        (&mut doctor_stream, &patient_joined, 5000),
        (&mut patient_stream, &doctor_joined, 5001),
    ] {
        from.send(In::IceCandidate(pb::IceCandidate {
            to_participant_id: to.participant_id.clone(),
            candidate: format!("candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"),
            sdp_mid: "0".into(),
            sdp_m_line_index: Some(0),
            username_fragment: String::new(),
        }))
        .await;
    }
    for (stream, port) in [(&mut patient_stream, 5000), (&mut doctor_stream, 5001)] {
        match stream.event().await {
            Out::IceCandidate(candidate) => assert!(
                candidate.candidate.ends_with(&format!("{port} typ host")),
                "{candidate:?}"
            ),
            other => panic!("expected the peer's ICE candidate, got {other:?}"),
        }
    }
}

pub(crate) type Signalling = SignallingServiceClient<InterceptedService<Channel, Bearer>>;

/// Opens the room of a (made-up) appointment starting in 5 minutes, as scheduling does, directly
/// on signalling instance A with scheduling's internal identity; returns the room id.
pub(crate) async fn open_room(cluster: &Cluster, doctor: &Person, patient: &Person) -> String {
    let tls = telehealth_kit::tls::client_tls(&cluster.settings.internal_tls(Part::Scheduling))
        .expect("scheduling's internal identity");
    let channel = Channel::from_shared(format!("https://{}", cluster.address(Part::Signalling, 0)))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connects to signalling");
    let start = Timestamp::now() + SignedDuration::from_mins(5);
    SignallingServiceClient::new(channel)
        .open_room(pb::OpenRoomRequest {
            appointment_id: uuid::Uuid::new_v4().to_string(),
            org_id: CENTRE.into(),
            participants: vec![
                pb::RoomParticipant {
                    subject: doctor.subject.into(),
                    role: pb::ParticipantRole::Doctor as i32,
                },
                pb::RoomParticipant {
                    subject: patient.subject.into(),
                    role: pb::ParticipantRole::Patient as i32,
                },
            ],
            scheduled_time: Some(pb::TimeRange {
                start_time: Some(ts(start)),
                end_time: Some(ts(start + SignedDuration::from_mins(30))),
            }),
        })
        .await
        .expect("room opened")
        .into_inner()
        .room_id
}

/// One open `Signal` stream (the minimal part of `signalling.rs`'s helper).
pub(crate) struct Stream {
    sender: mpsc::Sender<pb::SignalRequest>,
    events: Streaming<pb::SignalResponse>,
    sequence: u64,
}

impl Stream {
    pub(crate) async fn open(cluster: &Cluster, gateway: SocketAddr, person: &Person) -> Stream {
        let mut client: Signalling = SignallingServiceClient::with_interceptor(
            cluster.channel(gateway, person.device).await,
            bearer(cluster, person),
        );
        let (sender, receiver) = mpsc::channel(16);
        let events = client
            .signal(ReceiverStream::new(receiver))
            .await
            .expect("signal stream opens")
            .into_inner();
        Stream {
            sender,
            events,
            sequence: 0,
        }
    }

    pub(crate) async fn send(&mut self, message: In) {
        self.sequence += 1;
        self.sender
            .send(pb::SignalRequest {
                client_sequence: self.sequence,
                message: Some(message),
            })
            .await
            .expect("the stream accepts messages");
    }

    pub(crate) async fn join(&mut self, room_id: &str) -> pb::Joined {
        self.send(In::Join(pb::Join {
            room_id: room_id.into(),
            client_platform: "replicas test".into(),
        }))
        .await;
        match self.event().await {
            Out::Joined(joined) => joined,
            other => panic!("expected joined, got {other:?}"),
        }
    }

    /// How the stream ended: its error status (panics on an event, or on a clean end).
    pub(crate) async fn ended(&mut self) -> Status {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.events.message())
                .await
                .expect("the stream ends within 10 s");
            match message {
                Ok(Some(pb::SignalResponse {
                    event: Some(Out::KeepAliveAck(_)),
                    ..
                })) => continue,
                Err(status) => return status,
                other => panic!("expected the stream to fail, got {other:?}"),
            }
        }
    }

    /// The next event other than a keep-alive acknowledgement.
    pub(crate) async fn event(&mut self) -> Out {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.events.message())
                .await
                .expect("an event within 10 s");
            match message {
                Ok(Some(pb::SignalResponse {
                    event: Some(Out::KeepAliveAck(_)),
                    ..
                })) => continue,
                Ok(Some(pb::SignalResponse {
                    event: Some(event), ..
                })) => return event,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }
}

// ---- 4. resumable upload across instances ----------------------------------------------------

pub(crate) type Expertise = ExpertiseServiceClient<InterceptedService<Channel, Bearer>>;

const CHUNK: usize = 16 * 1024;
const PART: i64 = 64 * 1024;

async fn an_upload_started_on_one_expertise_instance_resumes_on_the_other(
    cluster: &Cluster,
    via: &Gateways,
) {
    let doctor = Person::doctor("dr-lefevre", CENTRE);
    let mut on_a = expertise(cluster, via.a, &doctor).await;
    let on_b = expertise(cluster, via.b, &doctor).await;
    let request_id = on_a
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: "replicas-upload".into(),
            content: Some(draft_content(&registered_patient(cluster, via.both).await)),
        })
        .await
        .expect("draft created")
        .into_inner()
        .request
        .expect("request")
        .request_id;
    let file = telehealth_images::format::fixtures::jpeg_with_identifying_metadata(1024, 768);
    let total = file.len() as i64;
    assert!(
        total > 6 * PART,
        "the test image ({total} bytes) spans several 64 KiB parts"
    );
    let sha256 = format!("{:x}", Sha256::digest(&file));
    let session = uuid::Uuid::new_v4().to_string();
    let header = |resume_offset| pb::AttachImageRequest {
        part: Some(pb::attach_image_request::Part::Header(
            pb::AttachImageHeader {
                request_id: request_id.clone(),
                image: Some(pb::ImageUploadHeader {
                    upload_session_id: session.clone(),
                    resume_offset,
                    total_size_bytes: total,
                    declared_kind: pb::ImageKind::Dermatoscopy as i32,
                    body_site: Some(pb::BodySite {
                        region: pb::BodyRegion::UpperBack as i32,
                        ..Default::default()
                    }),
                    client_sha256_hex: sha256.clone(),
                    ..Default::default()
                }),
            },
        )),
    };
    let chunk = |offset: usize| pb::AttachImageRequest {
        part: Some(pb::attach_image_request::Part::Chunk(pb::ImageChunk {
            offset: offset as i64,
            data: file[offset..(offset + CHUNK).min(file.len())].to_vec(),
        })),
    };

    // Half the file through A; B sees the parts A acknowledged; then the stream breaks.
    let (sender, receiver) = mpsc::channel(4);
    let mut client = on_a.clone();
    let upload =
        tokio::spawn(async move { client.attach_image(ReceiverStream::new(receiver)).await });
    sender.send(header(0)).await.expect("header sent");
    for offset in (0..file.len() / 2).step_by(CHUNK) {
        sender.send(chunk(offset)).await.expect("chunk sent");
    }
    let try_status = |client: &Expertise| {
        let mut client = client.clone();
        let request = pb::GetImageUploadStatusRequest {
            request_id: request_id.clone(),
            upload_session_id: session.clone(),
        };
        async move {
            let response = client.get_image_upload_status(request).await?;
            Ok::<_, Status>(response.into_inner().status.expect("status"))
        }
    };
    let status = |client| {
        let status = try_status(client);
        async move { status.await.expect("upload status") }
    };
    let waiting = Instant::now();
    loop {
        match try_status(&on_b).await {
            Ok(status) if status.acknowledged_offset >= 2 * PART => break,
            Ok(_) => {}
            // The session exists once A has read the header.
            Err(status) if status.code() == Code::NotFound && !upload.is_finished() => {}
            Err(status) => panic!("upload status on B: {status:?}"),
        }
        if upload.is_finished() {
            panic!("the stream through A ended by itself: {:?}", upload.await);
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "instance B sees the parts acknowledged on A within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    upload.abort(); // drops the call: the stream is reset mid-way
    drop(sender);
    // What A keeps of the broken stream settles; then B tells where to resume.
    let mut acknowledged = status(&on_b).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = status(&on_b).await;
        if now.acknowledged_offset == acknowledged.acknowledged_offset {
            break;
        }
        acknowledged = now;
    }
    assert_eq!(
        acknowledged.state,
        pb::ImageUploadState::InProgress as i32,
        "{acknowledged:?}"
    );
    let resume_at = acknowledged.acknowledged_offset;
    assert!(
        (2 * PART..total).contains(&resume_at),
        "a partial upload has acknowledged bytes: {acknowledged:?}"
    );

    // The rest through B, from the acknowledged offset.
    let (sender, receiver) = mpsc::channel(4);
    let mut client = on_b.clone();
    let upload =
        tokio::spawn(async move { client.attach_image(ReceiverStream::new(receiver)).await });
    sender.send(header(resume_at)).await.expect("header sent");
    for offset in (resume_at as usize..file.len()).step_by(CHUNK) {
        sender.send(chunk(offset)).await.expect("chunk sent");
    }
    drop(sender);
    let result = upload
        .await
        .expect("task")
        .expect("the upload resumed on B completes")
        .into_inner()
        .result
        .expect("result");
    let image = result.image.expect("image");
    assert!(!result.already_completed);
    assert_eq!(image.original_sha256_hex, sha256, "every byte arrived once");
    assert_eq!(image.original_size_bytes, total);
    assert!(
        !image.stripped_metadata.is_empty(),
        "identifying metadata was stripped"
    );

    // Instance A reports the same completed session.
    let done = status(&on_a).await;
    assert_eq!(done.state, pb::ImageUploadState::Completed as i32);
    assert_eq!(
        done.result
            .and_then(|r| r.image)
            .map(|i| i.original_sha256_hex),
        Some(sha256)
    );
    println!("replicas: upload of {total} bytes broken on A at {resume_at}, completed on B");
}

pub(crate) async fn expertise(
    cluster: &Cluster,
    gateway: SocketAddr,
    person: &Person,
) -> Expertise {
    ExpertiseServiceClient::with_interceptor(
        cluster.channel(gateway, person.device).await,
        bearer(cluster, person),
    )
}

pub(crate) fn draft_content(patient: &str) -> pb::ExpertiseRequestContent {
    pb::ExpertiseRequestContent {
        target_org_id: "chu-limoges".into(),
        specialty: "dermatology".into(),
        patient: Some(pb::ExpertisePatient {
            patient: Some(pb::PatientRef {
                pseudonym: patient.into(),
            }),
            age_years: 54,
            age_months: 0,
            sex: pb::Sex::Female as i32,
        }),
        clinical_question: "Lésion pigmentée du dos, asymétrique : mélanome ?".into(),
        urgency: pb::Urgency::Routine as i32,
        ..Default::default()
    }
}

// ---- 5. SIGKILL during traffic ---------------------------------------------------------------

/// Bookings written while a scheduling instance is killed, by this many concurrent clients.
const WRITES: usize = 96;
const WRITERS: usize = 4;
/// How long failures may go on after the kill.
const SWITCH_BOUND: Duration = Duration::from_secs(10);

/// A failed attempt: when, and with what.
struct Failure {
    at: Instant,
    status: Status,
}

async fn a_sigkill_loses_no_acknowledged_booking_and_calls_move_to_the_survivor(
    cluster: &mut Cluster,
    via: &Gateways,
) {
    let doctor = Person::doctor("dr-durand", CENTRE);
    publish_availability(cluster, via.both, &doctor).await;
    let client = scheduling(cluster, via.both, &doctor).await;
    let patient = registered_patient(cluster, via.both).await;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<Failure>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (mut client, next, done, failures, patient) = (
                client.clone(),
                next.clone(),
                done.clone(),
                failures.clone(),
                patient.clone(),
            );
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= WRITES {
                        return acknowledged;
                    }
                    // One booking per slot, 24 half-hour slots a day from 08:00; a failed
                    // attempt is retried with the same idempotency key, as a client would.
                    let start = eight_oclock_in(10 + n as i64 / 24)
                        + SignedDuration::from_mins(30 * (n as i64 % 24));
                    let request = booking(&patient, &format!("kill-{n}"), "dr-durand", start);
                    let first_try = Instant::now();
                    loop {
                        let mut call = Request::new(request.clone());
                        call.set_timeout(Duration::from_secs(5));
                        match client.book_appointment(call).await {
                            Ok(response) => {
                                let appointment = response.into_inner().appointment.expect("a");
                                acknowledged.push((n, start, appointment.appointment_id));
                                done.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(status) => {
                                failures.lock().expect("lock").push(Failure {
                                    at: Instant::now(),
                                    status,
                                });
                                assert!(
                                    first_try.elapsed() < 3 * SWITCH_BOUND,
                                    "booking {n} still failing after {:?}",
                                    3 * SWITCH_BOUND
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    while done.load(Ordering::Relaxed) < WRITES / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = cluster.kill(Part::Scheduling, 1);
    let done_at_kill = done.load(Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    let finished_at = Instant::now();

    // Failures: only UNAVAILABLE, only around the kill, and over within the bound.
    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    let described: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "{:?} after the kill: {:?} {}",
                f.at.saturating_duration_since(killed_at),
                f.status.code(),
                f.status.message()
            )
        })
        .collect();
    for failure in &failures {
        assert!(
            failure.at >= killed_at,
            "no call fails before the kill: {described:#?}"
        );
        assert_eq!(
            failure.status.code(),
            Code::Unavailable,
            "a call broken by the kill is UNAVAILABLE (retryable): {described:#?}"
        );
    }
    let switch = failures
        .iter()
        .map(|f| f.at - killed_at)
        .max()
        .unwrap_or_default();
    assert!(
        switch <= SWITCH_BOUND,
        "calls stop failing within {SWITCH_BOUND:?} of the kill, took {switch:?}: {described:#?}"
    );
    println!(
        "replicas: SIGKILL of scheduling-1 after {done_at_kill} of {WRITES} bookings: {} failed \
         attempts (all UNAVAILABLE), last one {switch:?} after the kill; the rest took {:?}",
        failures.len(),
        finished_at - killed_at
    );

    // Every acknowledged booking is readable, once, at its time (served by the survivor).
    assert_eq!(acknowledged.len(), WRITES, "every booking was acknowledged");
    let mut reader = scheduling(cluster, via.both, &doctor).await;
    for (n, start, id) in &acknowledged {
        let appointment = reader
            .get_appointment(pb::GetAppointmentRequest {
                appointment_id: id.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("acknowledged booking {n} ({id}) is readable: {s:?}"))
            .into_inner()
            .appointment
            .expect("appointment");
        assert_eq!(
            appointment
                .time
                .and_then(|t| t.start_time)
                .map(|t| t.seconds),
            Some(start.as_second()),
            "booking {n} is at its time"
        );
    }
    let listed = reader
        .list_appointments(pb::ListAppointmentsRequest {
            doctor_subject: "dr-durand".into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .appointments;
    assert_eq!(
        listed.len(),
        WRITES,
        "no booking was written twice by the retries"
    );

    // The killed instance's interrupted transactions left the audit chain intact.
    let verify = cluster.run_command(&["audit", "verify", "scheduling"]);
    assert!(
        verify.status.success(),
        "audit chain intact after the SIGKILL: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

// ---- clients and requests ----------------------------------------------------------------------

pub(crate) fn bearer(cluster: &Cluster, person: &Person) -> Bearer {
    let token = cluster.token(
        person.subject,
        &person.roles,
        person.org,
        None,
        person.device,
    );
    Bearer::new(&token)
}

pub(crate) type Scheduling = SchedulingServiceClient<InterceptedService<Channel, Bearer>>;

pub(crate) async fn scheduling(
    cluster: &Cluster,
    gateway: SocketAddr,
    person: &Person,
) -> Scheduling {
    SchedulingServiceClient::with_interceptor(
        cluster.channel(gateway, person.device).await,
        bearer(cluster, person),
    )
}

/// Publishes `doctor`'s availability: every day 08:00-20:00 Paris, no buffer.
pub(crate) async fn publish_availability(cluster: &Cluster, gateway: SocketAddr, doctor: &Person) {
    scheduling(cluster, gateway, doctor)
        .await
        .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
            practitioner_subject: doctor.subject.into(),
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
        .await
        .expect("availability published");
}

/// A patient of the centre's register, registered through `gateway` by its coordinator, who
/// consented to teleconsultations, tele-expertise and wound monitoring.
pub(crate) async fn registered_patient(cluster: &Cluster, gateway: SocketAddr) -> String {
    let coordinator = Person::coordinator("coord-replicas", CENTRE);
    let mut register = PatientServiceClient::with_interceptor(
        cluster.channel(gateway, coordinator.device).await,
        bearer(cluster, &coordinator),
    );
    let patient = register
        .create_patient(pb::CreatePatientRequest {
            identity: Some(pb::IdentityTraits {
                birth_name: "REPLIQUE".into(),
                first_names: "Jeanne".into(),
                sex: pb::Sex::Female as i32,
                birth_date: "1950-05-05".into(),
                ..Default::default()
            }),
            confirm_distinct: true,
            ..Default::default()
        })
        .await
        .expect("patient registered")
        .into_inner()
        .patient
        .expect("patient")
        .id;
    for act in [
        pb::ConsentAct::Teleconsultation,
        pb::ConsentAct::TeleExpertise,
        pb::ConsentAct::WoundMonitoring,
    ] {
        register
            .record_consent(pb::RecordConsentRequest {
                patient_id: patient.clone(),
                act: act as i32,
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::Oral as i32,
                ..Default::default()
            })
            .await
            .expect("consent recorded");
    }
    patient
}

pub(crate) fn booking(
    patient: &str,
    key: &str,
    doctor: &str,
    start: Timestamp,
) -> pb::BookAppointmentRequest {
    pb::BookAppointmentRequest {
        idempotency_key: key.into(),
        doctor_subject: doctor.into(),
        patient: Some(pb::PatientRef {
            pseudonym: patient.into(),
        }),
        start_time: Some(ts(start)),
        duration_minutes: 30,
        reason: "suivi plaie".into(),
        ..Default::default()
    }
}

/// `hour`:00 Paris, `days` days from now.
fn at_hour_in(days: i64, hour: i8) -> Timestamp {
    let paris = TimeZone::get("Europe/Paris").expect("tz");
    Timestamp::now()
        .to_zoned_datetime(paris.clone())
        .date()
        .checked_add(jiff::Span::new().days(days))
        .expect("date")
        .at(hour, 0, 0, 0)
        .to_zoned_datetime(paris)
        .expect("zoned")
        .timestamp()
}

pub(crate) fn ten_oclock_in(days: i64) -> Timestamp {
    at_hour_in(days, 10)
}

fn eight_oclock_in(days: i64) -> Timestamp {
    at_hour_in(days, 8)
}
