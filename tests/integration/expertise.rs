//! Tele-expertise through the real gateway (mTLS, tokens with a `specialty` claim), on SQLite and
//! on PostgreSQL.

use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp, civil::date, tz::TimeZone};
use telehealth_kit::{Part, identity::Role};
use telehealth_proto::v1 as pb;
use tonic::Code;

use telehealth_testkit::suite::{Backend, Expertise, Person, Suite, backends};

const CENTRE: &str = "cds-bourganeuf";
const OTHER_CENTRE: &str = "cds-aubusson";
const HOSPITAL: &str = "chu-limoges";
const OTHER_HOSPITAL: &str = "ch-gueret";
const DERMATOLOGY: &str = "dermatology";

fn doctor(subject: &'static str, org: &'static str) -> Person {
    Person::doctor(subject, org)
}

fn specialist(subject: &'static str, org: &'static str, specialty: &'static str) -> Person {
    Person::specialist(subject, org).in_specialty(specialty)
}

fn with_role(subject: &'static str, org: &'static str, role: Role) -> Person {
    Person::with_roles(subject, org, &[role])
}

fn content(pseudonym: &str, urgency: pb::Urgency) -> pb::ExpertiseRequestContent {
    pb::ExpertiseRequestContent {
        target_org_id: HOSPITAL.into(),
        specialty: DERMATOLOGY.into(),
        patient: Some(pb::ExpertisePatient {
            patient: Some(pb::PatientRef {
                pseudonym: pseudonym.into(),
            }),
            age_years: 54,
            age_months: 0,
            sex: pb::Sex::Female as i32,
        }),
        clinical_question: "Lésion pigmentée du dos, asymétrique : mélanome ?".into(),
        context: Some(pb::ClinicalContext {
            medical_history: "Mère traitée pour un mélanome".into(),
            body_site: Some(pb::BodySite {
                region: pb::BodyRegion::UpperBack as i32,
                laterality: pb::Laterality::Left as i32,
                description: "omoplate gauche".into(),
                snomed_ct_code: String::new(),
            }),
            lesion_duration: "3 mois".into(),
            evolution: pb::LesionEvolution::Growing as i32,
            evolution_details: String::new(),
            symptoms: "prurit".into(),
            treatments_tried: String::new(),
        }),
        urgency: urgency as i32,
        general_practitioner: Some(pb::GeneralPractitioner {
            is_requester: true,
            ..Default::default()
        }),
        requester_mssante_address: String::new(),
        wound: None,
    }
}

fn answer() -> pb::ExpertAnswer {
    pb::ExpertAnswer {
        impression: "Naevus dysplasique probable".into(),
        recommendation: pb::Recommendation::Monitor as i32,
        monitor_interval_months: 6,
        recommendation_details: String::new(),
        free_text: "Photographies de contrôle à 6 mois.".into(),
    }
}

/// Creates and submits a request of `requester`; returns it.
async fn submitted(dr: &mut Expertise, key: &str, pseudonym: &str) -> pb::ExpertiseRequest {
    let draft = dr
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: key.into(),
            content: Some(content(pseudonym, pb::Urgency::Routine)),
        })
        .await
        .expect("draft")
        .into_inner()
        .request
        .expect("request");
    dr.submit_request(pb::SubmitRequestRequest {
        request_id: draft.request_id,
        expected_version: 0,
    })
    .await
    .expect("submitted")
    .into_inner()
    .request
    .expect("request")
}

/// Downloads image `image_id` of request `id` whole, checking the stream names that image.
async fn download_whole(client: &mut Expertise, id: &str, image_id: &str) -> Vec<u8> {
    let mut download = client
        .download_image(pb::DownloadImageRequest {
            request_id: id.to_owned(),
            image_id: image_id.to_owned(),
            offset: 0,
        })
        .await
        .expect("download")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = download.next().await {
        match message.expect("ok").part {
            Some(pb::download_image_response::Part::Chunk(chunk)) => bytes.extend(chunk.data),
            Some(pb::download_image_response::Part::Image(first)) => {
                assert_eq!(first.image_id, image_id)
            }
            None => panic!("empty message"),
        }
    }
    bytes
}

fn at(time: Option<&prost_types::Timestamp>) -> Timestamp {
    let time = time.expect("timestamp");
    Timestamp::new(time.seconds, time.nanos).expect("valid")
}

async fn next_event(watch: &mut tonic::Streaming<pb::WatchRequestsResponse>) -> pb::ExpertiseEvent {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("ok");
        match message.payload {
            Some(pb::watch_requests_response::Payload::Event(event)) => return event,
            Some(pb::watch_requests_response::Payload::Heartbeat(_)) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

async fn watch(
    client: &mut Expertise,
    request: pb::WatchRequestsRequest,
) -> tonic::Streaming<pb::WatchRequestsResponse> {
    let mut stream = client
        .watch_requests(request)
        .await
        .expect("watch")
        .into_inner();
    let first = stream.next().await.expect("first").expect("ok");
    assert!(
        matches!(
            first.payload,
            Some(pb::watch_requests_response::Payload::Ready(_))
        ),
        "the first message is ready: {first:?}"
    );
    stream
}

/// The expertise database of a running suite (to set dates the API cannot set).
async fn database(suite: &Suite) -> telehealth_kit::Database {
    telehealth_kit::Database::connect(
        &suite.settings.database,
        &suite.settings.data_dir,
        Part::Expertise,
    )
    .await
    .expect("expertise database")
}

#[tokio::test]
async fn the_whole_workflow_with_a_doctor_and_two_specialists() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let dr_who = doctor("dr-martin", CENTRE);
        let (a_who, b_who) = (
            specialist("dr-derm-a", HOSPITAL, DERMATOLOGY),
            specialist("dr-derm-b", HOSPITAL, DERMATOLOGY),
        );
        let mut dr = suite.expertise(&dr_who).await;
        let registered = suite.consenting_patient(&dr_who).await;
        let mut a = suite.expertise(&a_who).await;
        let mut b = suite.expertise(&b_who).await;

        let targets = dr
            .list_targets(pb::ListTargetsRequest {
                specialty: DERMATOLOGY.into(),
            })
            .await
            .expect("targets")
            .into_inner()
            .targets;
        let limoges = targets
            .iter()
            .find(|t| t.org_id == HOSPITAL)
            .expect("the embedded configuration offers the CHU de Limoges");
        assert_eq!(
            limoges.routine_delay.as_ref().map(|d| d.seconds),
            Some(7 * 86_400)
        );
        assert_eq!(
            limoges.urgent_delay.as_ref().map(|d| d.seconds),
            Some(48 * 3600)
        );

        // A draft may be incomplete; a retry with its key returns it; other content is refused.
        let incomplete = pb::ExpertiseRequestContent {
            target_org_id: HOSPITAL.into(),
            specialty: DERMATOLOGY.into(),
            ..Default::default()
        };
        let create = |content| pb::CreateDraftRequest {
            idempotency_key: "draft-1".into(),
            content: Some(content),
        };
        let draft = dr
            .create_draft(create(incomplete.clone()))
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request");
        let again = dr
            .create_draft(create(incomplete.clone()))
            .await
            .expect("replay")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            again.request_id, draft.request_id,
            "{backend:?}: idempotent retry"
        );
        let reused = dr
            .create_draft(create(content(&registered, pb::Urgency::Routine)))
            .await
            .expect_err("same key, other content");
        assert_eq!(reused.code(), Code::FailedPrecondition);

        let refused = dr
            .submit_request(pb::SubmitRequestRequest {
                request_id: draft.request_id.clone(),
                expected_version: 0,
            })
            .await
            .expect_err("incomplete");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        for field in ["patient", "clinical_question", "urgency"] {
            assert!(
                refused.message().contains(field),
                "{field} named in {}",
                refused.message()
            );
        }
        let stale = dr
            .update_draft(pb::UpdateDraftRequest {
                request_id: draft.request_id.clone(),
                content: Some(content(&registered, pb::Urgency::Routine)),
                expected_version: draft.version + 7,
            })
            .await
            .expect_err("stale version");
        assert_eq!(stale.code(), Code::Aborted);
        let draft = dr
            .update_draft(pb::UpdateDraftRequest {
                request_id: draft.request_id.clone(),
                content: Some(content(&registered, pb::Urgency::Routine)),
                expected_version: draft.version,
            })
            .await
            .expect("updated")
            .into_inner()
            .request
            .expect("request");
        let id = draft.request_id.clone();

        // Both specialists watch their inbox; the doctor watches his requests.
        let mut a_watch = watch(&mut a, pb::WatchRequestsRequest::default()).await;
        let mut dr_watch = watch(&mut dr, pb::WatchRequestsRequest::default()).await;

        let submitted = dr
            .submit_request(pb::SubmitRequestRequest {
                request_id: id.clone(),
                expected_version: draft.version,
            })
            .await
            .expect("submitted")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(submitted.status, pb::ExpertiseStatus::Submitted as i32);
        assert_eq!(
            at(submitted.due_at.as_ref()).duration_since(at(submitted.submitted_at.as_ref())),
            SignedDuration::from_hours(168),
            "{backend:?}: routine due date"
        );
        let event = next_event(&mut a_watch).await;
        assert_eq!(event.kind, pb::ExpertiseEventKind::Submitted as i32);
        assert_eq!(
            event.request.as_ref().map(|r| r.request_id.as_str()),
            Some(id.as_str())
        );

        let inbox = b
            .list_inbox(pb::ListInboxRequest::default())
            .await
            .expect("inbox")
            .into_inner()
            .requests;
        assert!(
            inbox.iter().any(|r| r.request_id == id),
            "{backend:?}: in B's inbox"
        );

        // A claims; B loses; A's retry is a no-op.
        let claimed = a
            .claim_request(pb::ClaimRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect("claimed")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            claimed.claimed_by.as_ref().map(|c| c.subject.as_str()),
            Some("dr-derm-a")
        );
        let lost = b
            .claim_request(pb::ClaimRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect_err("already claimed");
        assert_eq!(lost.code(), Code::AlreadyExists, "{backend:?}: {lost:?}");
        let retry = a
            .claim_request(pb::ClaimRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect("repeat is a no-op")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(retry.version, claimed.version);
        assert_eq!(
            next_event(&mut dr_watch).await.kind,
            pb::ExpertiseEventKind::Submitted as i32
        );
        assert_eq!(
            next_event(&mut dr_watch).await.kind,
            pb::ExpertiseEventKind::Claimed as i32
        );

        let denied = b
            .answer_request(pb::AnswerRequestRequest {
                request_id: id.clone(),
                answer: Some(answer()),
            })
            .await
            .expect_err("not the claimer");
        assert_eq!(denied.code(), Code::PermissionDenied);
        let denied = b
            .post_message(pb::PostMessageRequest {
                request_id: id.clone(),
                idempotency_key: "m".into(),
                text: "moi aussi".into(),
            })
            .await
            .expect_err("not a party");
        assert_eq!(denied.code(), Code::PermissionDenied);

        // Messages, in order, idempotent.
        let post = |key: &str, text: &str| pb::PostMessageRequest {
            request_id: id.clone(),
            idempotency_key: key.into(),
            text: text.into(),
        };
        let first = a
            .post_message(post("q1", "Avez-vous une image dermoscopique plus nette ?"))
            .await
            .expect("posted")
            .into_inner()
            .message
            .expect("message");
        let event = next_event(&mut dr_watch).await;
        assert_eq!(event.kind, pb::ExpertiseEventKind::MessagePosted as i32);
        assert_eq!(event.message.as_ref().map(|m| m.sequence), Some(1));
        let reply = dr
            .post_message(post("r1", "Oui, je l'ajoute."))
            .await
            .expect("reply")
            .into_inner()
            .message
            .expect("message");
        let replay = dr
            .post_message(post("r1", "Oui, je l'ajoute."))
            .await
            .expect("replay")
            .into_inner()
            .message
            .expect("message");
        assert_eq!(
            replay.message_id, reply.message_id,
            "{backend:?}: idempotent message"
        );
        let own = next_event(&mut dr_watch).await;
        assert_eq!(
            own.message.map(|m| m.sequence),
            Some(2),
            "{backend:?}: the doctor's stream carries his own message once"
        );
        let messages = b
            .list_messages(pb::ListMessagesRequest {
                request_id: id.clone(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("messages")
            .into_inner()
            .messages;
        let order: Vec<(i64, &str)> = messages
            .iter()
            .map(|m| (m.sequence, m.text.as_str()))
            .collect();
        assert_eq!(
            order,
            [(1, first.text.as_str()), (2, reply.text.as_str())],
            "{backend:?}: in order, once"
        );

        // The answer: validated, then given; the doctor hears of it.
        let bad = a
            .answer_request(pb::AnswerRequestRequest {
                request_id: id.clone(),
                answer: Some(pb::ExpertAnswer {
                    monitor_interval_months: 0,
                    ..answer()
                }),
            })
            .await
            .expect_err("MONITOR needs months");
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(
            bad.message().contains("monitor_interval_months"),
            "{}",
            bad.message()
        );
        let answered = a
            .answer_request(pb::AnswerRequestRequest {
                request_id: id.clone(),
                answer: Some(answer()),
            })
            .await
            .expect("answered")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(answered.status, pb::ExpertiseStatus::Answered as i32);
        assert!(!answered.answered_late);
        assert_eq!(
            next_event(&mut dr_watch).await.kind,
            pb::ExpertiseEventKind::Answered as i32
        );

        let report = dr
            .get_answer_report(pb::GetAnswerReportRequest {
                request_id: id.clone(),
            })
            .await
            .expect("report")
            .into_inner()
            .report
            .expect("report");
        assert_eq!(
            report.expert.as_ref().map(|e| e.subject.as_str()),
            Some("dr-derm-a")
        );
        assert_eq!(report.expert_org_id, HOSPITAL);
        assert!(
            report.text.contains("Naevus dysplasique probable"),
            "{}",
            report.text
        );
        assert!(
            report.text.contains("revoir dans 6 mois"),
            "{}",
            report.text
        );
        let other = b
            .get_answer_report(pb::GetAnswerReportRequest {
                request_id: id.clone(),
            })
            .await
            .expect_err("not the answering specialist");
        assert_eq!(other.code(), Code::PermissionDenied);

        let late = dr
            .withdraw_request(pb::WithdrawRequestRequest {
                request_id: id.clone(),
                reason: String::new(),
            })
            .await
            .expect_err("answered");
        assert_eq!(late.code(), Code::FailedPrecondition);
        let closed = dr
            .close_request(pb::CloseRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect("closed")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(closed.status, pb::ExpertiseStatus::Closed as i32);
        assert_eq!(closed.message_count, 2);
        suite.stop().await;
    }
}

#[tokio::test]
async fn twenty_concurrent_claims_have_exactly_one_winner() {
    const NAMES: [&str; 20] = [
        "s00", "s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11", "s12",
        "s13", "s14", "s15", "s16", "s17", "s18", "s19",
    ];
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let mut dr = suite.expertise(&doctor("dr-martin", CENTRE)).await;
        let id = submitted(
            &mut dr,
            "race",
            &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
        )
        .await
        .request_id;
        let mut clients = Vec::new();
        for name in NAMES {
            clients.push(
                suite
                    .expertise(&specialist(name, HOSPITAL, DERMATOLOGY))
                    .await,
            );
        }
        let attempts: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                let id = id.clone();
                tokio::spawn(async move {
                    c.claim_request(pb::ClaimRequestRequest { request_id: id })
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(response) => winners.push(
                    response
                        .into_inner()
                        .request
                        .and_then(|r| r.claimed_by)
                        .map(|c| c.subject)
                        .unwrap_or_default(),
                ),
                Err(status) => assert_eq!(
                    status.code(),
                    Code::AlreadyExists,
                    "{backend:?}: a losing claim is ALREADY_EXISTS: {status:?}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{backend:?}: exactly one of 20 claims wins"
        );
        let stored = dr
            .get_request(pb::GetRequestRequest { request_id: id })
            .await
            .expect("read")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            stored.claimed_by.map(|c| c.subject),
            Some(winners[0].clone()),
            "{backend:?}: the stored claimer is the winner"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn outsiders_cannot_learn_whether_a_request_exists() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let mut dr = suite.expertise(&doctor("dr-martin", CENTRE)).await;
        let registered = suite.consenting_patient(&doctor("dr-martin", CENTRE)).await;
        let id = submitted(
            &mut dr,
            "k",
            &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
        )
        .await
        .request_id;
        let draft = dr
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: "draft".into(),
                content: Some(content(&registered, pb::Urgency::Urgent)),
            })
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request")
            .request_id;
        let missing = uuid::Uuid::new_v4().to_string();

        let outsiders = [
            ("another centre's doctor", doctor("dr-other", OTHER_CENTRE)),
            (
                "a specialist of another specialty",
                specialist("dr-cardio", HOSPITAL, "cardiology"),
            ),
            (
                "a dermatologist of another hospital",
                specialist("dr-derm-g", OTHER_HOSPITAL, DERMATOLOGY),
            ),
            (
                "a specialist without a specialty claim",
                Person::specialist("dr-nospec", HOSPITAL),
            ),
        ];
        for (who, person) in &outsiders {
            let mut c = suite.expertise(person).await;
            let read = |request_id: String| {
                let mut c = c.clone();
                async move {
                    c.get_request(pb::GetRequestRequest { request_id })
                        .await
                        .expect_err("not visible")
                }
            };
            let existing = read(id.clone()).await;
            let absent = read(missing.clone()).await;
            assert_eq!(existing.code(), Code::NotFound, "{who}");
            assert_eq!(
                (existing.code(), existing.message()),
                (absent.code(), absent.message()),
                "{who}: an existing request looks exactly like a missing one"
            );
            let messages = c
                .list_messages(pb::ListMessagesRequest {
                    request_id: id.clone(),
                    ..Default::default()
                })
                .await
                .expect_err("messages not visible");
            assert_eq!(messages.code(), Code::NotFound, "{who}");
        }
        // The dermatologist of another hospital cannot claim either, and nobody sees the draft.
        let mut elsewhere = suite
            .expertise(&specialist("dr-derm-g", OTHER_HOSPITAL, DERMATOLOGY))
            .await;
        let claim = elsewhere
            .claim_request(pb::ClaimRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect_err("not his hospital");
        assert_eq!(claim.code(), Code::NotFound);
        let mut target = suite
            .expertise(&specialist("dr-derm-a", HOSPITAL, DERMATOLOGY))
            .await;
        let hidden = target
            .get_request(pb::GetRequestRequest {
                request_id: draft.clone(),
            })
            .await
            .expect_err("a draft is the centre's only");
        assert_eq!(hidden.code(), Code::NotFound);

        // A nurse of the centre reads only the requests she made: a doctor's is answered as a
        // request that does not exist.
        let mut nurse = suite
            .expertise(&Person::nurse("nurse-claire", CENTRE))
            .await;
        let mut refusals = Vec::new();
        for request_id in [id.clone(), missing.clone()] {
            let refused = nurse
                .get_request(pb::GetRequestRequest { request_id })
                .await
                .expect_err("not her request");
            refusals.push((refused.code(), refused.message().to_owned()));
        }
        assert_eq!(refusals[0].0, Code::NotFound);
        assert_eq!(
            refusals[0], refusals[1],
            "the same answer whether it exists or not"
        );

        // A colleague of the same centre reads the request but may not change it.
        let mut colleague = suite.expertise(&doctor("dr-colleague", CENTRE)).await;
        colleague
            .get_request(pb::GetRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect("the centre's doctors see its requests");
        let update = colleague
            .update_draft(pb::UpdateDraftRequest {
                request_id: draft,
                content: Some(content(&registered, pb::Urgency::Routine)),
                expected_version: 0,
            })
            .await
            .expect_err("only the requester edits");
        assert_eq!(update.code(), Code::PermissionDenied);
        let withdraw = colleague
            .withdraw_request(pb::WithdrawRequestRequest {
                request_id: id,
                reason: String::new(),
            })
            .await
            .expect_err("only the requester withdraws");
        assert_eq!(withdraw.code(), Code::PermissionDenied);

        let malformed = dr
            .get_request(pb::GetRequestRequest {
                request_id: "not-a-uuid".into(),
            })
            .await
            .expect_err("malformed id");
        assert_eq!(malformed.code(), Code::InvalidArgument);
        suite.stop().await;
    }
}

#[tokio::test]
async fn status_filters_are_bounded_before_any_work() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let mut dr = suite.expertise(&doctor("dr-a", CENTRE)).await;
        let mut spec = suite
            .expertise(&specialist("spec-x", HOSPITAL, DERMATOLOGY))
            .await;
        let bound = "statuses: at most 10 statuses (got 11)";
        // Checked before anything else, even a page token that would be refused too.
        let inbox = spec
            .list_inbox(pb::ListInboxRequest {
                statuses: vec![pb::ExpertiseStatus::Submitted as i32; 11],
                page_token: "not a token".into(),
                ..Default::default()
            })
            .await
            .expect_err("eleven statuses");
        assert_eq!(inbox.code(), Code::InvalidArgument);
        assert_eq!(inbox.message(), bound);
        let mine = dr
            .list_my_requests(pb::ListMyRequestsRequest {
                statuses: vec![pb::ExpertiseStatus::Draft as i32; 11],
                page_token: "not a token".into(),
                ..Default::default()
            })
            .await
            .expect_err("eleven statuses");
        assert_eq!(mine.code(), Code::InvalidArgument);
        assert_eq!(mine.message(), bound);
        // Ten is fine: every status there is, and a few repeats.
        let every: Vec<i32> = (0..10).map(|i| i % 8).collect();
        dr.list_my_requests(pb::ListMyRequestsRequest {
            statuses: every,
            ..Default::default()
        })
        .await
        .expect("ten statuses");
        spec.list_inbox(pb::ListInboxRequest {
            statuses: vec![pb::ExpertiseStatus::Submitted as i32; 10],
            ..Default::default()
        })
        .await
        .expect("ten statuses");
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_inbox_lists_overdue_first_and_lists_page_stably() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let mut dr = suite.expertise(&doctor("dr-martin", CENTRE)).await;
        let registered = suite.consenting_patient(&doctor("dr-martin", CENTRE)).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                submitted(
                    &mut dr,
                    &format!("k{i}"),
                    &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
                )
                .await
                .request_id,
            );
        }
        // Requests 3 and 1 are past due (3 the most).
        let db = database(&suite).await;
        let now = Timestamp::now();
        for (index, days_late) in [(3, 3), (1, 1)] {
            sqlx::query("UPDATE expertise_requests SET due_at_us = $1 WHERE request_id = $2")
                .bind((now - SignedDuration::from_hours(24 * days_late)).as_microsecond())
                .bind(&ids[index])
                .execute(db.pool())
                .await
                .expect("backdated");
        }
        let mut spec = suite
            .expertise(&specialist("dr-derm-a", HOSPITAL, DERMATOLOGY))
            .await;
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = spec
                .list_inbox(pb::ListInboxRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("page")
                .into_inner();
            assert!(page.requests.len() <= 2);
            seen.extend(
                page.requests
                    .iter()
                    .map(|r| (r.request_id.clone(), r.overdue)),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let expected: Vec<(String, bool)> = [3, 1, 0, 2, 4]
            .into_iter()
            .map(|i| (ids[i].clone(), i == 3 || i == 1))
            .collect();
        assert_eq!(seen, expected, "overdue first, then by due date");
        let overdue = spec
            .list_inbox(pb::ListInboxRequest {
                overdue_only: true,
                ..Default::default()
            })
            .await
            .expect("overdue only")
            .into_inner()
            .requests;
        assert_eq!(overdue.len(), 2);
        let drafts = spec
            .list_inbox(pb::ListInboxRequest {
                statuses: vec![pb::ExpertiseStatus::Draft as i32],
                ..Default::default()
            })
            .await
            .expect_err("no drafts in an inbox");
        assert_eq!(drafts.code(), Code::InvalidArgument);

        // My requests: newest first, in pages; a token is only valid with its filters.
        let first = dr
            .list_my_requests(pb::ListMyRequestsRequest {
                page_size: 3,
                ..Default::default()
            })
            .await
            .expect("mine")
            .into_inner();
        let second = dr
            .list_my_requests(pb::ListMyRequestsRequest {
                page_size: 3,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("mine, page 2")
            .into_inner();
        let mine: Vec<String> = first
            .requests
            .iter()
            .chain(&second.requests)
            .map(|r| r.request_id.clone())
            .collect();
        let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(mine, newest_first);
        assert!(second.next_page_token.is_empty());
        let mismatch = dr
            .list_my_requests(pb::ListMyRequestsRequest {
                page_size: 3,
                whole_org: true,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await
            .expect_err("a token of other filters");
        assert_eq!(mismatch.code(), Code::InvalidArgument);
        let mut other = suite.expertise(&doctor("dr-other", OTHER_CENTRE)).await;
        let theirs = other
            .list_my_requests(pb::ListMyRequestsRequest {
                whole_org: true,
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(
            theirs.into_inner().requests.is_empty(),
            "another centre sees none"
        );
        // A draft withdrawn before submission never reaches the hospital, not even as WITHDRAWN.
        let never_sent = dr
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: "never-sent".into(),
                content: Some(content(&registered, pb::Urgency::Routine)),
            })
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request")
            .request_id;
        dr.withdraw_request(pb::WithdrawRequestRequest {
            request_id: never_sent.clone(),
            reason: String::new(),
        })
        .await
        .expect("withdrawn draft");
        let withdrawn = spec
            .list_inbox(pb::ListInboxRequest {
                statuses: vec![pb::ExpertiseStatus::Withdrawn as i32],
                ..Default::default()
            })
            .await
            .expect("withdrawn ones")
            .into_inner()
            .requests;
        assert!(
            withdrawn.iter().all(|r| r.request_id != never_sent),
            "a never-submitted draft stays the requester's"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_sweep_announces_overdue_requests_and_closes_old_answers() {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |settings| {
            settings.expertise_rules.sweep_interval_seconds = 1;
            settings.expertise_rules.watch_heartbeat_seconds = 1;
        })
        .await
        else {
            return;
        };
        let mut dr = suite.expertise(&doctor("dr-martin", CENTRE)).await;
        let mut spec = suite
            .expertise(&specialist("dr-derm-a", HOSPITAL, DERMATOLOGY))
            .await;
        let late = submitted(
            &mut dr,
            "late",
            &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
        )
        .await
        .request_id;
        let old = submitted(
            &mut dr,
            "old",
            &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
        )
        .await
        .request_id;
        spec.claim_request(pb::ClaimRequestRequest {
            request_id: old.clone(),
        })
        .await
        .expect("claim");
        spec.answer_request(pb::AnswerRequestRequest {
            request_id: old.clone(),
            answer: Some(answer()),
        })
        .await
        .expect("answer");

        let mut spec_watch = watch(&mut spec, pb::WatchRequestsRequest::default()).await;
        let mut dr_watch = watch(
            &mut dr,
            pb::WatchRequestsRequest {
                request_id: old.clone(),
                whole_org: false,
            },
        )
        .await;
        // A quiet stream gets heartbeats.
        let beat = tokio::time::timeout(Duration::from_secs(5), dr_watch.next())
            .await
            .expect("in time")
            .expect("message")
            .expect("ok");
        assert!(matches!(
            beat.payload,
            Some(pb::watch_requests_response::Payload::Heartbeat(_))
        ));

        let db = database(&suite).await;
        let now = Timestamp::now();
        sqlx::query("UPDATE expertise_requests SET due_at_us = $1 WHERE request_id = $2")
            .bind((now - SignedDuration::from_hours(1)).as_microsecond())
            .bind(&late)
            .execute(db.pool())
            .await
            .expect("late");
        sqlx::query("UPDATE expertise_requests SET answered_at_us = $1 WHERE request_id = $2")
            .bind((now - SignedDuration::from_hours(31 * 24)).as_microsecond())
            .bind(&old)
            .execute(db.pool())
            .await
            .expect("old answer");

        let event = next_event(&mut spec_watch).await;
        assert_eq!(event.kind, pb::ExpertiseEventKind::BecameOverdue as i32);
        assert_eq!(
            event
                .request
                .as_ref()
                .map(|r| (r.request_id.as_str(), r.overdue)),
            Some((late.as_str(), true))
        );
        assert_eq!(
            event.actor.as_ref().map(|a| a.service.as_str()),
            Some("expertise")
        );
        let event = next_event(&mut dr_watch).await;
        assert_eq!(event.kind, pb::ExpertiseEventKind::Closed as i32);
        let closed = event.request.expect("request");
        assert_eq!(closed.status, pb::ExpertiseStatus::Closed as i32);
        assert_eq!(
            closed.closed_by.map(|c| c.service),
            Some("expertise".to_owned())
        );
        // Announced once, not at every sweep.
        let again = tokio::time::timeout(Duration::from_millis(2500), async {
            loop {
                if let Some(Ok(message)) = spec_watch.next().await
                    && let Some(pb::watch_requests_response::Payload::Event(e)) = message.payload
                    && e.kind == pb::ExpertiseEventKind::BecameOverdue as i32
                {
                    return e;
                }
            }
        })
        .await;
        assert!(again.is_err(), "the overdue event is published once");
        suite.stop().await;
    }
}

#[tokio::test]
async fn events_reach_a_watcher_connected_to_another_replica() {
    let Some(suite) = Suite::start(Backend::Postgres).await else {
        return;
    };
    let (second, stop_second) = suite.extra_instance(Part::Expertise).await;
    let (only_second, stop_gateway) = suite.extra_gateway(Part::Expertise, &[second]).await;
    let dr_who = doctor("dr-martin", CENTRE);
    let spec_who = specialist("dr-derm-a", HOSPITAL, DERMATOLOGY);
    let mut spec = suite.expertise(&spec_who).await;
    let mut spec_watch = watch(&mut spec, pb::WatchRequestsRequest::default()).await;
    let mut dr = suite.expertise_via(only_second, &dr_who).await;
    let id = submitted(
        &mut dr,
        "k",
        &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
    )
    .await
    .request_id;
    let event = next_event(&mut spec_watch).await;
    assert_eq!(event.kind, pb::ExpertiseEventKind::Submitted as i32);
    assert_eq!(event.request.map(|r| r.request_id), Some(id));
    stop_gateway.cancel();
    stop_second.cancel();
    suite.stop().await;
}

/// Paris local time.
fn paris(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
    date(y, m, d)
        .at(h, min, 0, 0)
        .to_zoned_datetime(TimeZone::get("Europe/Paris").expect("tz"))
        .expect("zoned")
        .timestamp()
}

struct Case {
    requester: &'static Person,
    expert: Option<&'static Person>,
    pseudonym: &'static str,
    urgency: pb::Urgency,
    submitted: Timestamp,
    answered: Option<Timestamp>,
    withdrawn: bool,
}

/// Plays `case` through the API, then moves its dates to the case's.
/// The registered patient (with consents) standing for each `(org, pseudonym)` of the cases.
type CasePatients = std::collections::BTreeMap<(&'static str, &'static str), String>;

async fn play(
    suite: &Suite,
    db: &telehealth_kit::Database,
    key: usize,
    case: &Case,
    patients: &mut CasePatients,
) -> String {
    let mut dr = suite.expertise(case.requester).await;
    let label = (case.requester.org, case.pseudonym);
    if let std::collections::btree_map::Entry::Vacant(entry) = patients.entry(label) {
        entry.insert(suite.consenting_patient(case.requester).await);
    }
    let draft = dr
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: format!("case-{key}"),
            content: Some(content(&patients[&label], case.urgency)),
        })
        .await
        .expect("draft")
        .into_inner()
        .request
        .expect("request");
    let id = draft.request_id;
    dr.submit_request(pb::SubmitRequestRequest {
        request_id: id.clone(),
        expected_version: 0,
    })
    .await
    .expect("submit");
    if case.withdrawn {
        dr.withdraw_request(pb::WithdrawRequestRequest {
            request_id: id.clone(),
            reason: "patient vu en consultation".into(),
        })
        .await
        .expect("withdraw");
    }
    if let Some(expert) = case.expert {
        let mut spec = suite.expertise(expert).await;
        spec.claim_request(pb::ClaimRequestRequest {
            request_id: id.clone(),
        })
        .await
        .expect("claim");
        if case.answered.is_some() {
            spec.answer_request(pb::AnswerRequestRequest {
                request_id: id.clone(),
                answer: Some(answer()),
            })
            .await
            .expect("answer");
        }
    }
    let delay = if case.urgency == pb::Urgency::Urgent {
        48
    } else {
        168
    };
    let s = case.submitted.as_microsecond();
    sqlx::query(
        "UPDATE expertise_requests SET created_at_us = $1, submitted_at_us = $1, claimed_at_us = \
         CASE WHEN claimed_at_us IS NULL THEN NULL ELSE $1 END, due_at_us = $2, answered_at_us = $3, \
         withdrawn_at_us = CASE WHEN withdrawn_at_us IS NULL THEN NULL ELSE $4 END WHERE request_id = $5",
    )
    .bind(s)
    .bind((case.submitted + SignedDuration::from_hours(delay)).as_microsecond())
    .bind(case.answered.map(|a| a.as_microsecond()))
    .bind((case.submitted + SignedDuration::from_hours(20)).as_microsecond())
    .bind(&id)
    .execute(db.pool())
    .await
    .expect("dates set");
    id
}

#[tokio::test]
async fn the_activity_report_counts_and_bills_a_fixed_data_set() {
    let leak = |who: Person| -> &'static Person { Box::leak(Box::new(who)) };
    let dr_a = leak(doctor("dr-a", CENTRE));
    let dr_b = leak(doctor("dr-b", CENTRE));
    let dr_h = leak(doctor("dr-h", HOSPITAL));
    let spec_x = leak(specialist("spec-x", HOSPITAL, DERMATOLOGY));
    let spec_y = leak(specialist("spec-y", HOSPITAL, DERMATOLOGY));
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let db = database(&suite).await;
        let case = |requester: &'static Person,
                    expert: Option<&'static Person>,
                    pseudonym: &'static str,
                    submitted: Timestamp,
                    hours: Option<i64>| Case {
            requester,
            expert,
            pseudonym,
            urgency: pb::Urgency::Routine,
            submitted,
            answered: hours.map(|h| submitted + SignedDuration::from_hours(h)),
            withdrawn: false,
        };
        let cases = [
            // Patient P1 with spec-x: three acts earlier in 2025, the 4th and 5th in December.
            case(dr_a, Some(spec_x), "P1", paris(2025, 3, 10, 9, 0), Some(24)),
            case(dr_a, Some(spec_x), "P1", paris(2025, 6, 10, 9, 0), Some(24)),
            case(dr_a, Some(spec_x), "P1", paris(2025, 9, 10, 9, 0), Some(24)),
            case(dr_a, Some(spec_x), "P1", paris(2025, 12, 1, 9, 0), Some(24)),
            case(dr_b, Some(spec_x), "P1", paris(2025, 12, 8, 9, 0), Some(24)),
            // A routine request answered after 9 days (past the 7-day deadline).
            case(
                dr_a,
                Some(spec_y),
                "P2",
                paris(2025, 12, 1, 10, 0),
                Some(216),
            ),
            // Requester and expert in the same hospital.
            case(dr_h, Some(spec_x), "P3", paris(2025, 12, 15, 9, 0), Some(4)),
            // Urgent, answered in 6 hours.
            Case {
                urgency: pb::Urgency::Urgent,
                ..case(dr_b, Some(spec_y), "P4", paris(2025, 12, 20, 8, 0), Some(6))
            },
            // Still waiting at the end of the month, due in January: not overdue.
            case(dr_a, None, "P5", paris(2025, 12, 28, 9, 0), None),
            // Claimed, due on 12 December, unanswered: overdue.
            case(dr_a, Some(spec_y), "P6", paris(2025, 12, 5, 9, 0), None),
            // Withdrawn.
            Case {
                withdrawn: true,
                ..case(dr_b, None, "P7", paris(2025, 12, 3, 9, 0), None)
            },
            // Answered at 00:30 on 1 January in Paris (still 31 December in UTC): a January act
            // at the 2026 tariff.
            Case {
                answered: Some(paris(2026, 1, 1, 0, 30)),
                ..case(dr_a, Some(spec_x), "P2", paris(2025, 12, 31, 20, 0), None)
            },
        ];
        let mut ids = Vec::new();
        let mut patients = CasePatients::new();
        for (i, c) in cases.iter().enumerate() {
            ids.push(play(&suite, &db, i, c, &mut patients).await);
        }

        // The hospital's administrator sees the hospital's report.
        let admin = with_role("admin-1", HOSPITAL, Role::Admin);
        let mut admin = suite.expertise(&admin).await;
        let report = |org: &str, month: &str| pb::GetActivityReportRequest {
            org_id: org.into(),
            month: month.into(),
            time_zone: String::new(),
        };
        let december = admin
            .get_activity_report(report(HOSPITAL, "2025-12"))
            .await
            .expect("report")
            .into_inner()
            .report
            .expect("report");
        assert_eq!(december.time_zone, "Europe/Paris");
        let expert = december.as_expert.expect("expert side");
        assert_eq!(expert.submitted_count, 9, "{backend:?}");
        let counts: Vec<(i32, i32)> = expert
            .counts_by_status
            .iter()
            .map(|c| (c.status, c.count))
            .collect();
        assert_eq!(
            counts,
            [
                (pb::ExpertiseStatus::Submitted as i32, 1),
                (pb::ExpertiseStatus::Claimed as i32, 1),
                (pb::ExpertiseStatus::Answered as i32, 6),
                (pb::ExpertiseStatus::Withdrawn as i32, 1),
            ],
            "{backend:?}"
        );
        assert_eq!(expert.answered_count, 5, "{backend:?}");
        assert_eq!(expert.median_turnaround.map(|d| d.seconds), Some(24 * 3600));
        assert_eq!(expert.p90_turnaround.map(|d| d.seconds), Some(216 * 3600));
        assert_eq!(
            expert.overdue_count, 2,
            "{backend:?}: one late answer, one open past due"
        );
        let requester = december.as_requester.expect("requester side");
        assert_eq!(
            (
                requester.submitted_count,
                requester.answered_count,
                requester.overdue_count
            ),
            (1, 1, 0)
        );
        assert_eq!(
            requester.median_turnaround.map(|d| d.seconds),
            Some(4 * 3600)
        );

        let acts: Vec<(String, i32, String, bool, i64, i32)> = december
            .acts
            .iter()
            .map(|a| {
                (
                    a.practitioner_subject.clone(),
                    a.code,
                    a.act_date.clone(),
                    a.billable,
                    a.amount_cents,
                    a.non_billable_reason,
                )
            })
            .collect();
        let (rqd, te2) = (
            pb::BillableActCode::Rqd as i32,
            pb::BillableActCode::Te2 as i32,
        );
        use pb::NonBillableReason as R;
        let expected = [
            ("dr-h", rqd, "2025-12-15", false, 0, R::SameSite),
            ("spec-x", te2, "2025-12-02", true, 2000, R::Unspecified),
            ("spec-x", te2, "2025-12-09", false, 0, R::AnnualLimitReached),
            ("spec-x", te2, "2025-12-15", false, 0, R::SameSite),
            (
                "spec-y",
                te2,
                "2025-12-10",
                false,
                0,
                R::AnswerDeadlineMissed,
            ),
            ("spec-y", te2, "2025-12-20", true, 2000, R::Unspecified),
        ]
        .map(|(s, c, d, b, a, r)| (s.to_owned(), c, d.to_owned(), b, a, r as i32));
        assert_eq!(acts, expected, "{backend:?}");
        let limit = &december.acts[2];
        assert!(
            limit.reason_details.contains("5th"),
            "{}",
            limit.reason_details
        );
        let totals: Vec<(String, i32, i32, i32, i64)> = december
            .practitioner_totals
            .iter()
            .map(|t| {
                (
                    t.practitioner_subject.clone(),
                    t.code,
                    t.billable_count,
                    t.non_billable_count,
                    t.billable_amount_cents,
                )
            })
            .collect();
        assert_eq!(
            totals,
            [
                ("dr-h".to_owned(), rqd, 0, 1, 0),
                ("spec-x".to_owned(), te2, 1, 2, 2000),
                ("spec-y".to_owned(), te2, 1, 1, 2000),
            ]
        );
        let tariffs: Vec<&str> = december
            .tariffs
            .iter()
            .map(|t| t.tariff_id.as_str())
            .collect();
        assert_eq!(tariffs, ["RQD-2022-04", "TE2-2022-04"]);

        // January: the act answered at 00:30 Paris time, at 23 €.
        let january = admin
            .get_activity_report(report(HOSPITAL, "2026-01"))
            .await
            .expect("january")
            .into_inner()
            .report
            .expect("report");
        let acts: Vec<(&str, &str, i64, &str)> = january
            .acts
            .iter()
            .map(|a| {
                (
                    a.practitioner_subject.as_str(),
                    a.act_date.as_str(),
                    a.amount_cents,
                    a.tariff_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            acts,
            [("spec-x", "2026-01-01", 2300, "TE2-2026-01")],
            "{backend:?}"
        );

        // The centre's coordinator sees the centre's RQD acts, and only his org.
        let mut coordinator = suite
            .expertise(&with_role("coord-anne", CENTRE, Role::Coordinator))
            .await;
        let centre = coordinator
            .get_activity_report(report("", "2025-12"))
            .await
            .expect("own org")
            .into_inner()
            .report
            .expect("report");
        let totals: Vec<(&str, i32, i64)> = centre
            .practitioner_totals
            .iter()
            .map(|t| {
                (
                    t.practitioner_subject.as_str(),
                    t.billable_count,
                    t.billable_amount_cents,
                )
            })
            .collect();
        assert_eq!(
            totals,
            [("dr-a", 2, 2000), ("dr-b", 2, 2000)],
            "{backend:?}"
        );
        let other = coordinator
            .get_activity_report(report(HOSPITAL, "2025-12"))
            .await
            .expect_err("another org");
        assert_eq!(other.code(), Code::PermissionDenied);
        for (month, zone) in [
            ("2099-01", ""),
            ("2025-13", ""),
            ("2025-12", "Mars/Olympus"),
        ] {
            let bad = admin
                .get_activity_report(pb::GetActivityReportRequest {
                    org_id: HOSPITAL.into(),
                    month: month.into(),
                    time_zone: zone.into(),
                })
                .await
                .expect_err("bad month or zone");
            assert_eq!(bad.code(), Code::InvalidArgument, "{month} {zone}");
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_seven_day_answer_deadline_applies_to_urgent_requests_too() {
    let leak = |who: Person| -> &'static Person { Box::leak(Box::new(who)) };
    let dr = leak(doctor("dr-a", CENTRE));
    let spec = leak(specialist("spec-x", HOSPITAL, DERMATOLOGY));
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let db = database(&suite).await;
        let urgent = |pseudonym, submitted, hours| Case {
            requester: dr,
            expert: Some(spec),
            pseudonym,
            urgency: pb::Urgency::Urgent,
            submitted,
            answered: Some(submitted + SignedDuration::from_hours(hours)),
            withdrawn: false,
        };
        let cases = [
            // Urgent, answered after 8 days: late for its due date and for the act's deadline.
            urgent("U1", paris(2025, 11, 3, 9, 0), 8 * 24),
            // Urgent, answered after exactly 7 days: past its 48-hour due date, but within the
            // act's deadline.
            urgent("U2", paris(2025, 11, 10, 9, 0), 7 * 24),
            // Routine, answered after 8 days: late, as before.
            Case {
                urgency: pb::Urgency::Routine,
                ..urgent("R1", paris(2025, 11, 17, 9, 0), 8 * 24)
            },
        ];
        let mut patients = CasePatients::new();
        for (i, c) in cases.iter().enumerate() {
            play(&suite, &db, i, c, &mut patients).await;
        }
        let admin = with_role("admin-1", HOSPITAL, Role::Admin);
        let mut admin = suite.expertise(&admin).await;
        let report = admin
            .get_activity_report(pb::GetActivityReportRequest {
                org_id: HOSPITAL.into(),
                month: "2025-11".into(),
                time_zone: String::new(),
            })
            .await
            .expect("report")
            .into_inner()
            .report
            .expect("report");
        let acts: Vec<(String, bool, i32)> = report
            .acts
            .iter()
            .map(|a| (a.act_date.clone(), a.billable, a.non_billable_reason))
            .collect();
        use pb::NonBillableReason as R;
        let expected = [
            ("2025-11-11", false, R::AnswerDeadlineMissed),
            ("2025-11-17", true, R::Unspecified),
            ("2025-11-25", false, R::AnswerDeadlineMissed),
        ]
        .map(|(d, b, r)| (d.to_owned(), b, r as i32));
        assert_eq!(acts, expected, "{backend:?}: the expert's TE2 acts");
        assert!(
            report.acts[0].reason_details.contains("7-day deadline")
                && !report.acts[0].reason_details.contains("routine"),
            "{}",
            report.acts[0].reason_details
        );
        suite.stop().await;
    }
}

/// The `AttachImage` stream of `bytes` for request `id`, in 64 KiB chunks.
pub(crate) fn upload(id: &str, bytes: &[u8]) -> Vec<pb::AttachImageRequest> {
    let header = pb::AttachImageRequest {
        part: Some(pb::attach_image_request::Part::Header(
            pb::AttachImageHeader {
                request_id: id.into(),
                image: Some(pb::ImageUploadHeader {
                    upload_session_id: uuid::Uuid::new_v4().to_string(),
                    resume_offset: 0,
                    total_size_bytes: bytes.len() as i64,
                    declared_kind: pb::ImageKind::Dermatoscopy as i32,
                    body_site: Some(pb::BodySite {
                        region: pb::BodyRegion::UpperBack as i32,
                        ..Default::default()
                    }),
                    client_sha256_hex: String::new(),
                    caption: "lésion principale".into(),
                    captured_at: None,
                }),
            },
        )),
    };
    let chunks = bytes.chunks(64 * 1024).scan(0_i64, |offset, data| {
        let chunk = pb::AttachImageRequest {
            part: Some(pb::attach_image_request::Part::Chunk(pb::ImageChunk {
                offset: *offset,
                data: data.to_vec(),
            })),
        };
        *offset += data.len() as i64;
        Some(chunk)
    });
    std::iter::once(header).chain(chunks).collect()
}

#[tokio::test]
async fn a_dermatoscope_dicom_file_is_attached_as_its_photograph_without_its_identifiers() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let requester = doctor("dr-martin", CENTRE);
        let mut dr = suite.expertise(&requester).await;
        let id = dr
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: "dicom-import".into(),
                content: Some(content(
                    &suite.consenting_patient(&requester).await,
                    pb::Urgency::Routine,
                )),
            })
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request")
            .request_id;
        let jpeg = telehealth_images::format::fixtures::jpeg_plain(96, 64);
        let taken_at: Timestamp = "2026-10-25T00:30:00Z".parse().expect("instant");
        let file = telehealth_images::format::fixtures::dermatoscope_dicom(&jpeg, taken_at);

        let info = dr
            .attach_image(futures::stream::iter(upload(&id, &file)))
            .await
            .expect("the DICOM file is taken")
            .into_inner()
            .result
            .and_then(|r| r.image)
            .expect("image");
        // The photograph is stored, the file's attributes are not.
        assert_eq!(info.content_type, pb::ImageContentType::Jpeg as i32);
        assert_eq!((info.width_px, info.height_px), (96, 64));
        assert_eq!(info.original_size_bytes, file.len() as i64);
        use sha2::Digest;
        assert_eq!(
            info.original_sha256_hex,
            hex_of(&sha2::Sha256::digest(&file))
        );
        for stripped in [
            pb::StrippedMetadata::DicomIdentifiers,
            pb::StrippedMetadata::DeviceIdentifiers,
        ] {
            assert!(
                info.stripped_metadata.contains(&(stripped as i32)),
                "{info:?}"
            );
        }
        for tag in [
            "DICOM:PatientName",
            "DICOM:PatientID",
            "DICOM:PatientBirthDate",
        ] {
            assert!(info.stripped_tags.iter().any(|t| t == tag), "{info:?}");
        }
        // The acquisition time the device wrote (its local time and offset), to the second.
        assert_eq!(at(info.captured_at.as_ref()), taken_at);

        let bytes = download_whole(&mut dr, &id, &info.image_id).await;
        assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]), "a JPEG is served");
        assert_eq!(hex_of(&sha2::Sha256::digest(&bytes)), info.sha256_hex);
        for name in [&b"DUPONT"[..], b"DERMATO-0042", b"Heine", b"DICM"] {
            assert!(
                !bytes.windows(name.len()).any(|w| w == name),
                "{} left in the stored image",
                String::from_utf8_lossy(name)
            );
        }

        // A broken file (cut in the middle of its pixel data) is refused and not attached.
        let cut = &file[..file.len() - 40];
        let refused = dr
            .attach_image(futures::stream::iter(upload(&id, cut)))
            .await
            .expect_err("a truncated DICOM file");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains("DICOM"), "{}", refused.message());
        let request = dr
            .get_request(pb::GetRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect("read")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            request
                .images
                .iter()
                .map(|i| i.image_id.as_str())
                .collect::<Vec<_>>(),
            [info.image_id.as_str()],
            "only the good file is attached"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn images_are_attached_listed_downloaded_and_kept_from_outsiders() {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |settings| {
            let target = settings
                .expertise_rules
                .targets
                .iter_mut()
                .find(|t| t.org_id == HOSPITAL && t.specialty == DERMATOLOGY)
                .expect("default target");
            target.minimum_images = 1;
        })
        .await
        else {
            return;
        };
        let mut dr = suite.expertise(&doctor("dr-martin", CENTRE)).await;
        let id = dr
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: "with-image".into(),
                content: Some(content(
                    &suite.consenting_patient(&doctor("dr-martin", CENTRE)).await,
                    pb::Urgency::Routine,
                )),
            })
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request")
            .request_id;
        let refused = dr
            .submit_request(pb::SubmitRequestRequest {
                request_id: id.clone(),
                expected_version: 0,
            })
            .await
            .expect_err("this target needs an image");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(
            refused.message().contains("images"),
            "{}",
            refused.message()
        );

        let jpeg = telehealth_images::format::fixtures::jpeg_with_identifying_metadata(64, 48);
        let result = dr
            .attach_image(futures::stream::iter(upload(&id, &jpeg)))
            .await
            .expect("attached")
            .into_inner()
            .result
            .expect("result");
        let info = result.image.expect("image");
        assert!(
            info.stripped_metadata
                .contains(&(pb::StrippedMetadata::GpsLocation as i32)),
            "{info:?}"
        );
        let request = dr
            .submit_request(pb::SubmitRequestRequest {
                request_id: id.clone(),
                expected_version: 0,
            })
            .await
            .expect("submitted with its image")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            request
                .images
                .iter()
                .map(|i| i.image_id.as_str())
                .collect::<Vec<_>>(),
            [info.image_id.as_str()]
        );

        // The target's specialist downloads it whole and gets a thumbnail.
        let mut spec = suite
            .expertise(&specialist("dr-derm-a", HOSPITAL, DERMATOLOGY))
            .await;
        let bytes = download_whole(&mut spec, &id, &info.image_id).await;
        use sha2::Digest;
        assert_eq!(hex_of(&sha2::Sha256::digest(&bytes)), info.sha256_hex);
        let thumbnail = spec
            .get_image_thumbnail(pb::GetImageThumbnailRequest {
                request_id: id.clone(),
                image_id: info.image_id.clone(),
                max_edge_px: 0,
            })
            .await
            .expect("thumbnail")
            .into_inner()
            .thumbnail
            .expect("thumbnail");
        assert!(thumbnail.width_px <= 256 && !thumbnail.jpeg_data.is_empty());

        // Outsiders get NOT_FOUND; a submitted request keeps its images.
        let mut elsewhere = suite
            .expertise(&specialist("dr-derm-g", OTHER_HOSPITAL, DERMATOLOGY))
            .await;
        let hidden = elsewhere
            .download_image(pb::DownloadImageRequest {
                request_id: id.clone(),
                image_id: info.image_id.clone(),
                offset: 0,
            })
            .await
            .expect_err("not his hospital");
        assert_eq!(hidden.code(), Code::NotFound);
        let kept = dr
            .detach_image(pb::DetachImageRequest {
                request_id: id,
                image_id: info.image_id,
            })
            .await
            .expect_err("submitted");
        assert_eq!(kept.code(), Code::FailedPrecondition);
        suite.stop().await;
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_nurse_requests_a_tele_expertise_and_her_request_is_billed_as_a_nurses_rqd() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let nurse = Person::nurse("ide-requerante", CENTRE);
        let colleague = Person::nurse("ide-collegue", CENTRE);
        let patient = suite.consenting_patient(&nurse).await;
        let mut requester = suite.expertise(&nurse).await;
        let request = submitted(&mut requester, "ide-1", &patient).await;
        assert_eq!(
            request.requester.as_ref().expect("requester").subject,
            "ide-requerante",
            "{backend:?}"
        );

        // Another nurse of the centre does not see it; doctors of the centre do.
        let hidden = suite
            .expertise(&colleague)
            .await
            .get_request(pb::GetRequestRequest {
                request_id: request.request_id.clone(),
            })
            .await
            .expect_err("a colleague's request");
        assert_eq!(hidden.code(), Code::NotFound);
        suite
            .expertise(&doctor("dr-centre", CENTRE))
            .await
            .get_request(pb::GetRequestRequest {
                request_id: request.request_id.clone(),
            })
            .await
            .expect("the centre's doctors follow its requests");

        // The dermatologist answers; the nurse reads the answer and the report.
        let mut spec = suite
            .expertise(&specialist("dr-derm", HOSPITAL, DERMATOLOGY))
            .await;
        spec.claim_request(pb::ClaimRequestRequest {
            request_id: request.request_id.clone(),
        })
        .await
        .expect("claimed");
        spec.answer_request(pb::AnswerRequestRequest {
            request_id: request.request_id.clone(),
            answer: Some(answer()),
        })
        .await
        .expect("answered");
        let answered = requester
            .get_request(pb::GetRequestRequest {
                request_id: request.request_id.clone(),
            })
            .await
            .expect("her request")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            answered.answer.expect("answer").impression,
            "Naevus dysplasique probable"
        );
        let mine = requester
            .list_my_requests(pb::ListMyRequestsRequest {
                whole_org: true,
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .requests;
        assert_eq!(mine.len(), 1, "a nurse lists her own requests only");

        // The centre's report bills her request as RQD, profession nurse.
        let month = Timestamp::now()
            .to_zoned_datetime(TimeZone::get("Europe/Paris").expect("tz"))
            .strftime("%Y-%m")
            .to_string();
        let report = suite
            .expertise(&with_role("coord-centre", CENTRE, Role::Coordinator))
            .await
            .get_activity_report(pb::GetActivityReportRequest {
                org_id: CENTRE.into(),
                month,
                time_zone: String::new(),
            })
            .await
            .expect("report")
            .into_inner()
            .report
            .expect("report");
        let act = report
            .acts
            .iter()
            .find(|a| a.request_id == request.request_id)
            .expect("the request's act");
        assert_eq!(act.code, pb::BillableActCode::Rqd as i32);
        assert_eq!(act.practitioner_subject, "ide-requerante");
        assert_eq!(act.practitioner_profession, "nurse");
        suite.stop().await;
    }
}
