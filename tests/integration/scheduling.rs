//! Scheduling through the real gateway, on SQLite and on PostgreSQL.

use std::time::Duration;

use futures::StreamExt;
use jiff::{Timestamp, civil::date, tz::TimeZone};
use telehealth_proto::v1::{self as pb};
use tonic::Code;

use telehealth_kit::record::timestamp as ts;
use telehealth_testkit::suite::{Backend, Person, Suite, backends};

const CENTRE: &str = "cds-bourganeuf";
const OTHER_CENTRE: &str = "cds-aubusson";

fn at(time: Option<&prost_types::Timestamp>) -> Timestamp {
    let time = time.expect("timestamp");
    Timestamp::new(time.seconds, time.nanos).expect("valid")
}

/// Every day from `start` to `end` (local times).
fn daily(start: &str, end: &str) -> Vec<pb::WeeklyRange> {
    (1..=7)
        .map(|day| pb::WeeklyRange {
            day,
            start_local_time: start.into(),
            end_local_time: end.into(),
        })
        .collect()
}

/// Every day 08:00-20:00.
fn every_day() -> Vec<pb::WeeklyRange> {
    daily("08:00", "20:00")
}

/// Publishes `doctor`'s availability from `start` to `end` every day (Paris, no buffer).
async fn publish_daily(suite: &Suite, doctor: &Person, start: &str, end: &str) {
    suite
        .scheduling(doctor)
        .await
        .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
            practitioner_subject: doctor.subject.into(),
            time_zone: "Europe/Paris".into(),
            weekly_ranges: daily(start, end),
            buffer_minutes: 0,
            expected_version: 0,
        })
        .await
        .expect("availability published");
}

/// Publishes `doctor`'s availability (every day 08:00-20:00 Paris, no buffer).
pub(crate) async fn publish_availability(suite: &Suite, doctor: &Person) {
    publish_daily(suite, doctor, "08:00", "20:00").await;
}

/// Publishes `doctor`'s availability all day every day (Paris), so that an appointment can
/// start in a few minutes whatever the time the test runs.
async fn publish_round_the_clock(suite: &Suite, doctor: &Person) {
    publish_daily(suite, doctor, "00:00", "24:00").await;
}

/// Dr Martin of the centre with his availability published, his scheduling client, and a
/// consenting patient of the centre's register to book for.
async fn dr_martin_bookable(suite: &Suite) -> (String, telehealth_testkit::suite::Scheduling) {
    let in_register = suite
        .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
        .await;
    let doctor = Person::doctor("dr-martin", CENTRE);
    publish_availability(suite, &doctor).await;
    (in_register, suite.scheduling(&doctor).await)
}

/// The next whole minute plus `minutes`: a start that can be booked now and is inside the
/// check-in window (from 30 minutes before the start) for `minutes` under 30.
fn soon(minutes: i64) -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second((now / 60 + 1 + minutes) * 60).expect("instant")
}

/// 10:00 Paris, `days` days from now.
pub(crate) fn ten_oclock_in(days: i64) -> Timestamp {
    let today = Timestamp::now()
        .to_zoned_datetime(TimeZone::get("Europe/Paris").expect("tz"))
        .date();
    today
        .checked_add(jiff::Span::new().days(days))
        .expect("date")
        .at(10, 0, 0, 0)
        .to_zoned_datetime(TimeZone::get("Europe/Paris").expect("tz"))
        .expect("zoned")
        .timestamp()
}

/// A booking of `patient` (an id of the centre's register) with `doctor`, the patient's own
/// account being `patient_subject`.
pub(crate) fn booking(
    patient: &str,
    key: &str,
    doctor: &str,
    patient_subject: &str,
    start: Timestamp,
) -> pb::BookAppointmentRequest {
    pb::BookAppointmentRequest {
        idempotency_key: key.into(),
        doctor_subject: doctor.into(),
        nurse_subject: String::new(),
        patient: Some(pb::PatientRef {
            pseudonym: patient.into(),
        }),
        patient_subject: patient_subject.into(),
        start_time: Some(ts(start)),
        duration_minutes: 30,
        reason: "suivi diabète".into(),
        hold_id: String::new(),
    }
}

#[tokio::test]
async fn free_slots_stay_at_local_time_across_dst_changes_and_far_zones() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let cases = [
            // (zone, range start (local date), day after the change, expected UTC hour before, after)
            ("Europe/Paris", date(2027, 3, 27), date(2027, 3, 29), 8, 7),
            ("Europe/Paris", date(2027, 10, 30), date(2027, 11, 1), 7, 8),
            (
                "America/Los_Angeles",
                date(2027, 3, 13),
                date(2027, 3, 15),
                17,
                16,
            ),
            (
                "Pacific/Noumea",
                date(2027, 3, 27),
                date(2027, 3, 29),
                22,
                22,
            ),
        ];
        for (zone, before, after, hour_before, hour_after) in cases {
            let doctor = Person::doctor("dr-slots", CENTRE);
            let mut client = suite.scheduling(&doctor).await;
            client
                .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                    practitioner_subject: doctor.subject.into(),
                    time_zone: zone.into(),
                    weekly_ranges: (1..=7)
                        .map(|day| pb::WeeklyRange {
                            day,
                            start_local_time: "09:00".into(),
                            end_local_time: "09:30".into(),
                        })
                        .collect(),
                    buffer_minutes: 0,
                    expected_version: 0,
                })
                .await
                .expect("availability");
            let tz = TimeZone::get(zone).expect("tz");
            let start = before
                .to_zoned_datetime(tz.clone())
                .expect("zoned")
                .timestamp();
            let end = after
                .tomorrow()
                .expect("date")
                .to_zoned_datetime(tz)
                .expect("zoned")
                .timestamp();
            let slots = client
                .list_free_slots(pb::ListFreeSlotsRequest {
                    practitioner_subjects: vec![doctor.subject.into()],
                    range: Some(pb::TimeRange {
                        start_time: Some(ts(start)),
                        end_time: Some(ts(end)),
                    }),
                    duration_minutes: 30,
                    step_minutes: 30,
                    r#match: 0,
                    page_size: 0,
                    page_token: String::new(),
                })
                .await
                .expect("slots")
                .into_inner()
                .slots;
            assert_eq!(
                slots.len(),
                3,
                "{zone}: one 09:00 slot a day over three days: {slots:?}"
            );
            for slot in &slots {
                assert!(
                    slot.local_start.ends_with("T09:00"),
                    "{zone}: local start {}",
                    slot.local_start
                );
            }
            let first = at(slots[0].time.as_ref().and_then(|t| t.start_time.as_ref()));
            let last = at(slots[2].time.as_ref().and_then(|t| t.start_time.as_ref()));
            let utc_hour = |t: Timestamp| t.to_zoned_datetime(TimeZone::UTC).hour();
            assert_eq!(utc_hour(first), hour_before, "{zone}: before the change");
            assert_eq!(utc_hour(last), hour_after, "{zone}: after the change");
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn fifty_concurrent_bookings_of_one_slot_give_exactly_one_appointment() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let (in_register, client) = dr_martin_bookable(&suite).await;
        let start = ten_oclock_in(3);
        let attempts: Vec<_> = (0..50)
            .map(|i| {
                let mut client = client.clone();
                let in_register = in_register.clone();
                tokio::spawn(async move {
                    client
                        .book_appointment(booking(
                            &in_register,
                            &format!("key-{i}"),
                            "dr-martin",
                            &format!("p{i}"),
                            start,
                        ))
                        .await
                })
            })
            .collect();
        let mut booked = 0;
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(_) => booked += 1,
                Err(status) => assert!(
                    matches!(
                        status.code(),
                        Code::AlreadyExists | Code::FailedPrecondition
                    ),
                    "{backend:?}: a losing booking is a conflict, got {status:?}"
                ),
            }
        }
        assert_eq!(
            booked, 1,
            "{backend:?}: exactly one of 50 concurrent bookings wins"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_refused_booking_lists_every_conflict() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        suite.enrol(&nurse).await;
        publish_availability(&suite, &doctor).await;
        let mut client = suite.scheduling(&doctor).await;
        let start = ten_oclock_in(4);
        let mut first = booking(&in_register, "k1", "dr-martin", "p1", start);
        first.nurse_subject = nurse.subject.into();
        client.book_appointment(first).await.expect("first booking");

        let mut second = booking(&in_register, "k2", "dr-martin", "p2", start);
        second.nurse_subject = nurse.subject.into();
        let status = client
            .book_appointment(second)
            .await
            .expect_err("both are busy");
        assert_eq!(status.code(), Code::AlreadyExists);
        use prost::Message;
        let rich =
            tonic_types::pb::Status::decode(status.details()).expect("google.rpc.Status details");
        let any = rich.details.first().expect("one detail");
        assert_eq!(
            any.type_url,
            "type.googleapis.com/telehealth.v1.BookingConflicts"
        );
        let conflicts = pb::BookingConflicts::decode(any.value.as_slice())
            .expect("BookingConflicts")
            .conflicts;
        let who: Vec<_> = conflicts
            .iter()
            .map(|c| c.practitioner_subject.as_str())
            .collect();
        assert!(
            who.contains(&"dr-martin") && who.contains(&"nurse-claire"),
            "both conflicts reported: {who:?}"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_booking() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let (in_register, mut client) = dr_martin_bookable(&suite).await;
        let request = booking(
            &in_register,
            "retry-me",
            "dr-martin",
            "p1",
            ten_oclock_in(5),
        );
        let first = client
            .book_appointment(request.clone())
            .await
            .expect("booked")
            .into_inner();
        let again = client
            .book_appointment(request.clone())
            .await
            .expect("replayed")
            .into_inner();
        assert!(!first.idempotent_replay && again.idempotent_replay);
        assert_eq!(
            first.appointment.as_ref().map(|a| &a.appointment_id),
            again.appointment.as_ref().map(|a| &a.appointment_id),
            "the retry returns the same appointment"
        );
        let mut changed = request;
        changed.reason = "autre motif".into();
        let status = client
            .book_appointment(changed)
            .await
            .expect_err("same key, other request");
        assert_eq!(status.code(), Code::FailedPrecondition);
        suite.stop().await;
    }
}

#[tokio::test]
async fn twenty_concurrent_retries_with_one_key_book_once_and_all_get_that_booking() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let (in_register, client) = dr_martin_bookable(&suite).await;
        let request = booking(&in_register, "one-key", "dr-martin", "p1", ten_oclock_in(4));
        let retries: Vec<_> = (0..20)
            .map(|_| {
                let mut client = client.clone();
                let request = request.clone();
                tokio::spawn(async move { client.book_appointment(request).await })
            })
            .collect();
        let mut answers = Vec::new();
        for retry in retries {
            let answer = retry
                .await
                .expect("task")
                .unwrap_or_else(|status| panic!("{backend:?}: a retry was refused: {status:?}"))
                .into_inner();
            answers.push(answer);
        }
        let ids: std::collections::BTreeSet<_> = answers
            .iter()
            .map(|a| {
                a.appointment
                    .as_ref()
                    .expect("appointment")
                    .appointment_id
                    .clone()
            })
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{backend:?}: every retry answers the same booking"
        );
        assert_eq!(
            answers.iter().filter(|a| !a.idempotent_replay).count(),
            1,
            "{backend:?}: exactly one call booked, the others replayed it"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_lifecycle_allows_legal_transitions_and_refuses_the_others() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let patient = Person::patient("patient-42", CENTRE);
        publish_round_the_clock(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let mut pt = suite.scheduling(&patient).await;
        let registered = suite.consenting_patient(&doctor).await;
        let id = dr
            .book_appointment(booking(
                &registered,
                "k",
                "dr-martin",
                "patient-42",
                soon(10),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment")
            .appointment_id;
        let status_of = |a: Option<pb::Appointment>| a.map(|a| a.status).unwrap_or_default();

        let finish_early = dr
            .finish_appointment(pb::FinishAppointmentRequest {
                appointment_id: id.clone(),
            })
            .await;
        assert_eq!(
            finish_early.expect_err("not started").code(),
            Code::FailedPrecondition,
            "{backend:?}"
        );
        let no_show_early = dr
            .mark_no_show(pb::MarkNoShowRequest {
                appointment_id: id.clone(),
                comment: String::new(),
            })
            .await;
        assert_eq!(
            no_show_early.expect_err("before start").code(),
            Code::FailedPrecondition,
            "{backend:?}"
        );

        let checked_in = pt
            .check_in(pb::CheckInRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("check in")
            .into_inner();
        assert_eq!(
            status_of(checked_in.appointment),
            pb::AppointmentStatus::Arrived as i32
        );
        let again = pt
            .check_in(pb::CheckInRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("a retry is a no-op");
        assert_eq!(
            status_of(again.into_inner().appointment),
            pb::AppointmentStatus::Arrived as i32
        );

        let patient_starts = pt.cancel_appointment(pb::CancelAppointmentRequest {
            appointment_id: id.clone(),
            reason: pb::CancellationReason::PatientRequest as i32,
            comment: String::new(),
            expected_version: 0,
        });
        assert_eq!(
            patient_starts
                .await
                .expect_err("patients cannot cancel")
                .code(),
            Code::PermissionDenied
        );

        let started = dr
            .start_teleconsultation(pb::StartTeleconsultationRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("start")
            .into_inner();
        assert!(
            !started.room_id.is_empty(),
            "starting gives the video room id"
        );
        assert_eq!(
            status_of(started.appointment),
            pb::AppointmentStatus::InProgress as i32
        );
        let finished = dr
            .finish_appointment(pb::FinishAppointmentRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("finish");
        assert_eq!(
            status_of(finished.into_inner().appointment),
            pb::AppointmentStatus::Fulfilled as i32
        );

        let cancel_done = dr.cancel_appointment(pb::CancelAppointmentRequest {
            appointment_id: id.clone(),
            reason: pb::CancellationReason::PractitionerUnavailable as i32,
            comment: String::new(),
            expected_version: 0,
        });
        assert_eq!(
            cancel_done.await.expect_err("fulfilled").code(),
            Code::FailedPrecondition,
            "{backend:?}"
        );

        let history = dr
            .get_appointment_history(pb::GetAppointmentHistoryRequest {
                appointment_id: id.clone(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("history")
            .into_inner()
            .events;
        let kinds: Vec<i32> = history.iter().map(|e| e.kind).collect();
        use pb::AppointmentEventKind as K;
        assert_eq!(
            kinds,
            [
                K::Booked as i32,
                K::CheckedIn as i32,
                K::Started as i32,
                K::Finished as i32
            ],
            "{backend:?}"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn cancelling_frees_the_time_and_rescheduling_keeps_the_history() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let start = ten_oclock_in(6);
        let id = dr
            .book_appointment(booking(&in_register, "a", "dr-martin", "p1", start))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        let later = start + jiff::SignedDuration::from_hours(2);
        let moved = dr
            .reschedule_appointment(pb::RescheduleAppointmentRequest {
                appointment_id: id.clone(),
                new_start_time: Some(ts(later)),
                new_duration_minutes: 0,
                hold_id: String::new(),
                comment: "patient indisponible".into(),
                expected_version: 0,
            })
            .await
            .expect("rescheduled")
            .into_inner()
            .appointment
            .expect("a");
        assert_eq!(
            at(moved.time.as_ref().and_then(|t| t.start_time.as_ref())),
            later
        );
        assert_eq!(moved.reschedule_count, 1);
        // The old time is free again.
        dr.book_appointment(booking(&in_register, "b", "dr-martin", "p2", start))
            .await
            .expect("the old slot is free");
        let history = dr
            .get_appointment_history(pb::GetAppointmentHistoryRequest {
                appointment_id: id.clone(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("history")
            .into_inner()
            .events;
        let rescheduled = history
            .iter()
            .find(|e| e.kind == pb::AppointmentEventKind::Rescheduled as i32)
            .expect("event");
        assert_eq!(
            at(rescheduled
                .previous_time
                .as_ref()
                .and_then(|t| t.start_time.as_ref())),
            start,
            "the former time is kept"
        );
        dr.cancel_appointment(pb::CancelAppointmentRequest {
            appointment_id: id,
            reason: pb::CancellationReason::PatientRequest as i32,
            comment: "à la demande du patient".into(),
            expected_version: 0,
        })
        .await
        .expect("cancelled");
        dr.book_appointment(booking(&in_register, "c", "dr-martin", "p3", later))
            .await
            .expect("a cancelled appointment frees its time");
        suite.stop().await;
    }
}

#[tokio::test]
async fn outsiders_cannot_learn_whether_an_appointment_exists() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let id = suite
            .scheduling(&doctor)
            .await
            .book_appointment(booking(
                &in_register,
                "k",
                "dr-martin",
                "p1",
                ten_oclock_in(2),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        let missing = uuid::Uuid::new_v4().to_string();
        for outsider in [
            Person::doctor("dr-other", OTHER_CENTRE),
            Person::coordinator("coord-other", OTHER_CENTRE),
            Person::nurse("nurse-unrelated", CENTRE),
            Person::specialist("dr-derm", "chu-limoges"),
        ] {
            let mut client = suite.scheduling(&outsider).await;
            let existing = client
                .get_appointment(pb::GetAppointmentRequest {
                    appointment_id: id.clone(),
                })
                .await
                .expect_err("refused");
            let absent = client
                .get_appointment(pb::GetAppointmentRequest {
                    appointment_id: missing.clone(),
                })
                .await
                .expect_err("absent");
            assert_eq!(
                (existing.code(), existing.message()),
                (absent.code(), absent.message()),
                "{}: an existing appointment looks exactly like a missing one",
                outsider.subject
            );
            assert!(
                matches!(existing.code(), Code::NotFound | Code::PermissionDenied),
                "{existing:?}"
            );
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_watching_doctor_sees_the_patient_check_in() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let patient = Person::patient("patient-42", CENTRE);
        publish_round_the_clock(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let id = dr
            .book_appointment(booking(
                &in_register,
                "k",
                "dr-martin",
                "patient-42",
                soon(10),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        let mut watch = dr
            .watch_appointments(pb::WatchAppointmentsRequest {
                practitioner_subject: String::new(),
            })
            .await
            .expect("watch")
            .into_inner();
        let ready = watch.next().await.expect("first message").expect("ok");
        assert!(matches!(
            ready.payload,
            Some(pb::watch_appointments_response::Payload::Ready(_))
        ));

        suite
            .scheduling(&patient)
            .await
            .check_in(pb::CheckInRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("check in");
        let mut next_change = async || {
            let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("in time")
                .expect("message")
                .expect("ok");
            let Some(pb::watch_appointments_response::Payload::Change(change)) = change.payload
            else {
                panic!("expected a change, got {change:?}");
            };
            change
        };
        let mut change = next_change().await;
        if change.event.as_ref().map(|e| e.kind) == Some(pb::AppointmentEventKind::Booked as i32) {
            // The booking's own notice may reach a watch opened just after the booking returned.
            change = next_change().await;
        }
        assert_eq!(
            change
                .appointment
                .as_ref()
                .map(|a| a.appointment_id.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            change.event.as_ref().map(|e| e.kind),
            Some(pb::AppointmentEventKind::CheckedIn as i32)
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named_and_nothing_written() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let start = ten_oclock_in(2);
        let cases: Vec<(&str, pb::BookAppointmentRequest, &str)> = vec![
            (
                "zero duration",
                pb::BookAppointmentRequest {
                    duration_minutes: 0,
                    ..booking(&in_register, "a", "dr-martin", "p", start)
                },
                "duration_minutes",
            ),
            (
                "huge duration",
                pb::BookAppointmentRequest {
                    duration_minutes: 100_000,
                    ..booking(&in_register, "a", "dr-martin", "p", start)
                },
                "duration_minutes",
            ),
            (
                "no key",
                pb::BookAppointmentRequest {
                    idempotency_key: String::new(),
                    ..booking(&in_register, "a", "dr-martin", "p", start)
                },
                "idempotency_key",
            ),
            (
                "bad pseudonym",
                pb::BookAppointmentRequest {
                    patient: Some(pb::PatientRef {
                        pseudonym: "Jean Dupont 12/03/1950".into(),
                    }),
                    ..booking(&in_register, "a", "dr-martin", "p", start)
                },
                "patient.pseudonym",
            ),
            (
                "no start",
                pb::BookAppointmentRequest {
                    start_time: None,
                    ..booking(&in_register, "a", "dr-martin", "p", start)
                },
                "start_time",
            ),
        ];
        for (case, request, field) in cases {
            let status = dr.book_appointment(request).await.expect_err(case);
            assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
            assert!(
                status.message().contains(field),
                "{case}: message names {field}: {}",
                status.message()
            );
        }
        let outside = booking(
            &in_register,
            "b",
            "dr-martin",
            "p",
            start + jiff::SignedDuration::from_hours(11),
        );
        let status = dr
            .book_appointment(outside)
            .await
            .expect_err("21:00 is outside availability");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let bad_zone = dr
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: "dr-martin".into(),
                time_zone: "Europe/Gueret".into(),
                weekly_ranges: vec![],
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .expect_err("unknown zone");
        assert_eq!(bad_zone.code(), Code::InvalidArgument);
        let overlapping = dr
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: "dr-martin".into(),
                time_zone: "Europe/Paris".into(),
                weekly_ranges: vec![
                    pb::WeeklyRange {
                        day: 1,
                        start_local_time: "09:00".into(),
                        end_local_time: "12:00".into(),
                    },
                    pb::WeeklyRange {
                        day: 1,
                        start_local_time: "11:00".into(),
                        end_local_time: "13:00".into(),
                    },
                ],
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .expect_err("overlap");
        assert!(
            overlapping.message().contains("overlaps"),
            "{}",
            overlapping.message()
        );
        let listed = dr
            .list_appointments(pb::ListAppointmentsRequest {
                page_size: 0,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .appointments;
        assert!(listed.is_empty(), "nothing was written");
        let big_page = dr
            .list_appointments(pb::ListAppointmentsRequest {
                page_size: 100_000,
                ..Default::default()
            })
            .await;
        assert_eq!(
            big_page.expect_err("page size").code(),
            Code::InvalidArgument
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_icalendar_export_parses_with_an_independent_parser_at_the_right_times() {
    let python_ready = std::process::Command::new("python3")
        .args(["-c", "import icalendar"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with icalendar (pip install icalendar)"
        );
        eprintln!("SKIPPING the iCalendar parser check: pip install icalendar");
        return;
    }
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let mut expected = Vec::new();
        for (days, key) in [(2, "a"), (9, "b")] {
            let start = ten_oclock_in(days);
            let appointment = dr
                .book_appointment(booking(&in_register, key, "dr-martin", key, start))
                .await
                .expect("booked")
                .into_inner()
                .appointment
                .expect("a");
            expected.push((
                appointment.appointment_id,
                start,
                start + jiff::SignedDuration::from_mins(30),
            ));
        }
        let now = Timestamp::now();
        let export = dr
            .export_calendar(pb::ExportCalendarRequest {
                practitioner_subject: String::new(),
                range: Some(pb::TimeRange {
                    start_time: Some(ts(now)),
                    end_time: Some(ts(now + jiff::SignedDuration::from_hours(24 * 30))),
                }),
                include_cancelled: false,
                include_patient_details: false,
            })
            .await
            .expect("export")
            .into_inner();
        assert_eq!(export.event_count, 2);
        assert!(!export.ics.contains("pat-"), "no patient data unless asked");

        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/services/scheduling/tests/fixtures/ical_check.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(export.ics.as_bytes())
            .expect("write");
        let output = child.wait_with_output().expect("parser finishes");
        assert!(
            output.status.success(),
            "the independent parser reads the export"
        );
        let parsed = String::from_utf8(output.stdout).expect("utf-8");
        for (id, start, end) in expected {
            let line = parsed
                .lines()
                .find(|l| l.starts_with(&id))
                .unwrap_or_else(|| panic!("{id} in {parsed}"));
            let fields: Vec<&str> = line.split('\t').collect();
            let utc = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            assert_eq!(fields[1], utc(start), "start of {id}");
            assert_eq!(fields[2], utc(end), "end of {id}");
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn two_scheduling_instances_on_postgres_never_double_book_and_share_changes() {
    let Some(suite) = Suite::start(Backend::Postgres).await else {
        return;
    };
    let in_register = suite
        .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
        .await;
    let running = suite.running.as_ref().expect("running");
    let first = running.services[&telehealth_kit::Part::Scheduling];
    let (second, stop_second) = suite.extra_instance(telehealth_kit::Part::Scheduling).await;
    let (both, stop_both) = suite
        .extra_gateway(telehealth_kit::Part::Scheduling, &[first, second])
        .await;
    let (only_second, stop_only) = suite
        .extra_gateway(telehealth_kit::Part::Scheduling, &[second])
        .await;

    let doctor = Person::doctor("dr-martin", CENTRE);
    publish_round_the_clock(&suite, &doctor).await;
    let client = suite.scheduling_via(both, &doctor).await;
    // Soon enough to be checked in to below.
    let start = soon(10);
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let mut client = client.clone();
            let in_register = in_register.clone();
            tokio::spawn(async move {
                client
                    .book_appointment(booking(
                        &in_register,
                        &format!("k{i}"),
                        "dr-martin",
                        &format!("p{i}"),
                        start,
                    ))
                    .await
            })
        })
        .collect();
    let mut booked = Vec::new();
    for attempt in attempts {
        if let Ok(response) = attempt.await.expect("task") {
            booked.push(response.into_inner().appointment.expect("a").appointment_id);
        }
    }
    assert_eq!(
        booked.len(),
        1,
        "exactly one booking across two instances sharing PostgreSQL"
    );

    // The doctor watches through the first instance; the coordinator checks the patient in
    // through the second.
    let mut watch = suite
        .scheduling(&doctor)
        .await
        .watch_appointments(pb::WatchAppointmentsRequest {
            practitioner_subject: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    watch.next().await.expect("ready").expect("ok");
    let coordinator = Person::coordinator("coord-anne", CENTRE);
    suite
        .scheduling_via(only_second, &coordinator)
        .await
        .check_in(pb::CheckInRequest {
            appointment_id: booked[0].clone(),
        })
        .await
        .expect("check in via the second instance");
    let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("delivered across instances")
        .expect("message")
        .expect("ok");
    assert!(
        matches!(
            change.payload,
            Some(pb::watch_appointments_response::Payload::Change(_))
        ),
        "{change:?}"
    );

    stop_only.cancel();
    stop_both.cancel();
    stop_second.cancel();
    suite.stop().await;
}

#[tokio::test]
async fn a_hold_blocks_the_slot_until_it_expires_by_itself() {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |s| s.scheduling_rules.hold_seconds = 2).await
        else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let coordinator = Person::coordinator("coord-anne", CENTRE);
        publish_availability(&suite, &doctor).await;
        let start = ten_oclock_in(3);
        let hold = suite
            .scheduling(&coordinator)
            .await
            .hold_slot(pb::HoldSlotRequest {
                doctor_subject: "dr-martin".into(),
                nurse_subject: String::new(),
                start_time: Some(ts(start)),
                duration_minutes: 30,
            })
            .await
            .expect("held")
            .into_inner()
            .hold
            .expect("hold");
        let mut dr = suite.scheduling(&doctor).await;
        let status = dr
            .book_appointment(booking(&in_register, "x", "dr-martin", "p1", start))
            .await
            .expect_err("held by the coordinator");
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

        // The holder books with the hold.
        let mut with_hold = booking(&in_register, "y", "dr-martin", "p2", start);
        with_hold.hold_id = hold.hold_id.clone();
        let mut other_time = with_hold.clone();
        other_time.start_time = Some(ts(start + jiff::SignedDuration::from_hours(1)));
        let status = suite
            .scheduling(&coordinator)
            .await
            .book_appointment(other_time)
            .await
            .expect_err("hold for another time");
        assert_eq!(status.code(), Code::InvalidArgument);

        tokio::time::sleep(Duration::from_millis(2500)).await;
        dr.book_appointment(booking(&in_register, "z", "dr-martin", "p3", start))
            .await
            .expect("the hold expired by itself");
        suite.stop().await;
    }
}

#[tokio::test]
async fn minimum_notice_leave_and_buffers_are_respected() {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |s| {
            s.scheduling_rules.minimum_notice_minutes = 3 * 24 * 60
        })
        .await
        else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let mut dr = suite.scheduling(&doctor).await;
        dr.set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
            practitioner_subject: "dr-martin".into(),
            time_zone: "Europe/Paris".into(),
            weekly_ranges: every_day(),
            buffer_minutes: 15,
            expected_version: 0,
        })
        .await
        .expect("availability");

        let status = dr
            .book_appointment(booking(
                &in_register,
                "a",
                "dr-martin",
                "p",
                ten_oclock_in(1),
            ))
            .await
            .expect_err("too soon");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("notice"), "{}", status.message());

        let start = ten_oclock_in(10);
        dr.book_appointment(booking(&in_register, "b", "dr-martin", "p", start))
            .await
            .expect("far enough ahead");
        let in_buffer = start + jiff::SignedDuration::from_mins(40);
        let status = dr
            .book_appointment(booking(&in_register, "c", "dr-martin", "p", in_buffer))
            .await
            .expect_err("10 minutes after the end");
        assert_eq!(
            status.code(),
            Code::AlreadyExists,
            "the buffer keeps 15 minutes free: {status:?}"
        );

        let leave_day = start
            .to_zoned_datetime(TimeZone::get("Europe/Paris").expect("tz"))
            .date()
            .tomorrow()
            .expect("date");
        dr.add_availability_exception(pb::AddAvailabilityExceptionRequest {
            idempotency_key: "leave-1".into(),
            kind: pb::AvailabilityExceptionKind::Leave as i32,
            practitioner_subject: "dr-martin".into(),
            org_wide: false,
            start_date: leave_day.to_string(),
            end_date: leave_day.to_string(),
            start_local_time: String::new(),
            end_local_time: String::new(),
            time_zone: "Europe/Paris".into(),
            note: "congé".into(),
        })
        .await
        .expect("leave added");
        let status = dr
            .book_appointment(booking(
                &in_register,
                "d",
                "dr-martin",
                "p",
                start + jiff::SignedDuration::from_hours(24),
            ))
            .await
            .expect_err("on leave");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        suite.stop().await;
    }
}

#[tokio::test]
async fn listings_are_paginated_in_a_stable_order() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let mut booked = Vec::new();
        for i in 0..7 {
            let start = ten_oclock_in(2) + jiff::SignedDuration::from_mins(30 * i);
            let a = dr
                .book_appointment(booking(
                    &in_register,
                    &format!("k{i}"),
                    "dr-martin",
                    "p",
                    start,
                ))
                .await
                .expect("booked")
                .into_inner();
            booked.push(a.appointment.expect("a").appointment_id);
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = dr
                .list_appointments(pb::ListAppointmentsRequest {
                    doctor_subject: "dr-martin".into(),
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("page")
                .into_inner();
            assert!(page.appointments.len() <= 3);
            seen.extend(page.appointments.into_iter().map(|a| a.appointment_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen, booked, "every appointment once, in start order");
        let bad = dr
            .list_appointments(pb::ListAppointmentsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(bad.expect_err("bad token").code(), Code::InvalidArgument);
        // A real token continues only the listing it came from (the page size may change): not
        // with other filters, not for another caller, not once altered.
        let resized = dr
            .list_appointments(pb::ListAppointmentsRequest {
                doctor_subject: "dr-martin".into(),
                page_size: 3,
                ..Default::default()
            })
            .await
            .expect("first page")
            .into_inner()
            .next_page_token;
        let page_two = dr
            .list_appointments(pb::ListAppointmentsRequest {
                doctor_subject: "dr-martin".into(),
                page_size: 4,
                page_token: resized,
                ..Default::default()
            })
            .await
            .expect("the next page, at another size")
            .into_inner();
        assert_eq!(
            page_two
                .appointments
                .iter()
                .map(|a| a.appointment_id.clone())
                .collect::<Vec<_>>(),
            booked[3..7].to_vec()
        );
        let first = dr
            .list_appointments(pb::ListAppointmentsRequest {
                doctor_subject: "dr-martin".into(),
                page_size: 3,
                ..Default::default()
            })
            .await
            .expect("first page")
            .into_inner()
            .next_page_token;
        let mut altered = first.clone().into_bytes();
        altered[1] = if altered[1] == b'A' { b'B' } else { b'A' };
        let colleague = Person::doctor("dr-bernard", CENTRE);
        let mut other = suite.scheduling(&colleague).await;
        let foreign = [
            dr.list_appointments(pb::ListAppointmentsRequest {
                doctor_subject: "dr-martin".into(),
                statuses: vec![pb::AppointmentStatus::Booked as i32],
                page_size: 3,
                page_token: first.clone(),
                ..Default::default()
            })
            .await,
            other
                .list_appointments(pb::ListAppointmentsRequest {
                    doctor_subject: "dr-martin".into(),
                    page_size: 3,
                    page_token: first.clone(),
                    ..Default::default()
                })
                .await,
            dr.list_appointments(pb::ListAppointmentsRequest {
                doctor_subject: "dr-martin".into(),
                page_size: 3,
                page_token: String::from_utf8(altered).expect("base64url stays ASCII"),
                ..Default::default()
            })
            .await,
        ];
        for (case, result) in ["other filters", "another caller", "altered"]
            .iter()
            .zip(foreign)
        {
            let status = result.expect_err(case);
            assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
            assert!(
                status.message().starts_with("page_token:"),
                "{case}: {}",
                status.message()
            );
        }
        suite.stop().await;
    }
}

// ---- issue fixes: holds, "the caller", the check-in window, idempotent exceptions, text,
// ---- presence, iCalendar UID, bounds, DST days

/// The status of a refusal, for comparing refusals with one another.
fn refusal(status: &tonic::Status) -> (Code, String) {
    (status.code(), status.message().to_owned())
}

fn hold_request(doctor: &str, start: Timestamp) -> pb::HoldSlotRequest {
    pb::HoldSlotRequest {
        doctor_subject: doctor.into(),
        nurse_subject: String::new(),
        start_time: Some(ts(start)),
        duration_minutes: 30,
    }
}

#[tokio::test]
async fn releasing_a_hold_is_not_found_for_others_and_false_once_the_hold_has_ended() {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |s| s.scheduling_rules.hold_seconds = 2).await
        else {
            continue;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let coordinator = Person::coordinator("coord-anne", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let mut coord = suite.scheduling(&coordinator).await;
        let release = |hold_id: &str| pb::ReleaseHoldRequest {
            hold_id: hold_id.into(),
        };
        let hold_of = |response: tonic::Response<pb::HoldSlotResponse>| {
            response.into_inner().hold.expect("hold").hold_id
        };

        // Someone else's hold answers exactly as a hold that does not exist.
        let coordinators = coord
            .hold_slot(hold_request("dr-martin", ten_oclock_in(3)))
            .await
            .map(hold_of)
            .expect("held by the coordinator");
        let ghost = uuid::Uuid::new_v4().to_string();
        for outsider in [
            Person::doctor("dr-other", CENTRE),
            Person::coordinator("coord-other", OTHER_CENTRE),
        ] {
            let mut client = suite.scheduling(&outsider).await;
            let theirs = client
                .release_hold(release(&coordinators))
                .await
                .expect_err("not his hold");
            let missing = client
                .release_hold(release(&ghost))
                .await
                .expect_err("no such hold");
            assert_eq!(theirs.code(), Code::NotFound, "{backend:?}: {theirs:?}");
            assert_eq!(
                refusal(&theirs),
                refusal(&missing),
                "{backend:?}: {} cannot tell another's hold from a missing one",
                outsider.subject
            );
        }

        // Naming it in a booking tells no more than naming a hold that does not exist.
        let stranger = Person::doctor("dr-stranger", OTHER_CENTRE);
        publish_availability(&suite, &stranger).await;
        let mut theirs = booking(
            &in_register,
            "stranger",
            "dr-stranger",
            "p9",
            ten_oclock_in(3),
        );
        theirs.hold_id = coordinators.clone();
        let mut ghostly = theirs.clone();
        ghostly.hold_id = ghost.clone();
        let mut client = suite.scheduling(&stranger).await;
        let with_theirs = client.book_appointment(theirs).await.expect_err("not his");
        let with_ghost = client.book_appointment(ghostly).await.expect_err("no such");
        assert_eq!(
            refusal(&with_theirs),
            refusal(&with_ghost),
            "{backend:?}: a booking cannot tell another org's hold from a missing one"
        );

        // Released once: true, then false.
        let released = |r: tonic::Response<pb::ReleaseHoldResponse>| r.into_inner().released;
        let first = coord
            .release_hold(release(&coordinators))
            .await
            .map(released);
        let again = coord
            .release_hold(release(&coordinators))
            .await
            .map(released);
        assert_eq!(
            (first.expect("release"), again.expect("release again")),
            (true, false),
            "{backend:?}: an active hold is released once"
        );

        // Consumed by the booking that names it: false.
        let start = ten_oclock_in(4);
        let consumed = dr
            .hold_slot(hold_request("dr-martin", start))
            .await
            .map(hold_of)
            .expect("held");
        let mut with_hold = booking(&in_register, "with-hold", "dr-martin", "p1", start);
        with_hold.hold_id = consumed.clone();
        dr.book_appointment(with_hold)
            .await
            .expect("booked on the hold");
        let after_booking = dr.release_hold(release(&consumed)).await.map(released);
        assert!(
            !after_booking.expect("release a consumed hold"),
            "{backend:?}: a consumed hold is not released"
        );

        // Expired by itself: false.
        let expiring = dr
            .hold_slot(hold_request("dr-martin", ten_oclock_in(5)))
            .await
            .map(hold_of)
            .expect("held");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after_expiry = dr.release_hold(release(&expiring)).await.map(released);
        assert!(
            !after_expiry.expect("release an expired hold"),
            "{backend:?}: an expired hold is not released"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_empty_subject_means_the_caller_wherever_the_contract_says_so() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let coordinator = Person::coordinator("coord-anne", CENTRE);
        let mut dr = suite.scheduling(&doctor).await;
        let published = dr
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: String::new(),
                time_zone: "Europe/Paris".into(),
                weekly_ranges: every_day(),
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .expect("SetWeeklyAvailability: empty is the caller")
            .into_inner()
            .availability
            .expect("availability");
        assert_eq!(published.practitioner_subject, "dr-martin");
        let read = dr
            .get_availability(pb::GetAvailabilityRequest {
                practitioner_subject: String::new(),
            })
            .await
            .expect("GetAvailability: empty is the caller")
            .into_inner()
            .availability
            .expect("availability");
        assert_eq!(read.practitioner_subject, "dr-martin");

        let leave_day = (Timestamp::now() + jiff::SignedDuration::from_hours(24 * 20))
            .to_zoned_datetime(TimeZone::get("Europe/Paris").expect("tz"))
            .date();
        let leave = dr
            .add_availability_exception(pb::AddAvailabilityExceptionRequest {
                idempotency_key: "leave".into(),
                kind: pb::AvailabilityExceptionKind::Leave as i32,
                start_date: leave_day.to_string(),
                end_date: leave_day.to_string(),
                ..Default::default()
            })
            .await
            .expect("leave")
            .into_inner()
            .exception
            .expect("exception");
        let listed = dr
            .list_availability_exceptions(pb::ListAvailabilityExceptionsRequest::default())
            .await
            .expect("ListAvailabilityExceptions: empty is the caller, dates default")
            .into_inner()
            .exceptions;
        assert_eq!(
            listed.iter().map(|e| &e.exception_id).collect::<Vec<_>>(),
            [&leave.exception_id],
            "the caller's own exceptions from today on"
        );

        let hold = dr
            .hold_slot(hold_request("", ten_oclock_in(3)))
            .await
            .expect("HoldSlot: empty is the caller")
            .into_inner()
            .hold
            .expect("hold");
        assert_eq!(hold.doctor_subject, "dr-martin");
        let booked = dr
            .book_appointment(booking(
                &in_register,
                "empty-doctor",
                "",
                "p1",
                ten_oclock_in(4),
            ))
            .await
            .expect("BookAppointment: empty is the caller")
            .into_inner()
            .appointment
            .expect("appointment");
        assert_eq!(booked.doctor_subject, "dr-martin");

        // A coordinator is not a doctor: he must name the doctor (and the practitioner).
        let mut coord = suite.scheduling(&coordinator).await;
        let cases = [
            (
                "BookAppointment",
                coord
                    .book_appointment(booking(&in_register, "c", "", "p2", ten_oclock_in(5)))
                    .await
                    .map(|_| ()),
                "doctor_subject",
            ),
            (
                "HoldSlot",
                coord
                    .hold_slot(hold_request("", ten_oclock_in(5)))
                    .await
                    .map(|_| ()),
                "doctor_subject",
            ),
            (
                "SetWeeklyAvailability",
                coord
                    .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                        time_zone: "Europe/Paris".into(),
                        weekly_ranges: every_day(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
                "practitioner_subject",
            ),
        ];
        for (rpc, result, field) in cases {
            let status = result.expect_err(rpc);
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
            assert!(status.message().contains(field), "{rpc}: {status:?}");
        }
        coord
            .list_availability_exceptions(pb::ListAvailabilityExceptionsRequest::default())
            .await
            .expect("a coordinator lists his org's closures with an empty subject");
        suite.stop().await;
    }
}

#[tokio::test]
async fn check_in_and_start_are_refused_outside_the_window_around_the_start() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let patient = Person::patient("patient-42", CENTRE);
        publish_round_the_clock(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let mut pt = suite.scheduling(&patient).await;
        let book = |key: &str, start| booking(&in_register, key, "dr-martin", "patient-42", start);

        // Two months ahead: neither checked in to nor started, and left as it was.
        let far = ten_oclock_in(60);
        let id = dr
            .book_appointment(book("far", far))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        let paris = TimeZone::get("Europe/Paris").expect("tz");
        let opens = (far - jiff::SignedDuration::from_mins(30))
            .to_zoned_datetime(paris)
            .strftime("%Y-%m-%d %H:%M")
            .to_string();
        let check_in = pt
            .check_in(pb::CheckInRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect_err("two months early");
        let start = dr
            .start_teleconsultation(pb::StartTeleconsultationRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect_err("two months early");
        for (rpc, status) in [("CheckIn", check_in), ("StartTeleconsultation", start)] {
            assert_eq!(status.code(), Code::FailedPrecondition, "{rpc}: {status:?}");
            for shown in [
                opens.as_str(),
                "Europe/Paris",
                "UTC",
                "30 minutes",
                "60 minutes",
            ] {
                assert!(
                    status.message().contains(shown),
                    "{rpc}: the message gives the window ({shown}): {}",
                    status.message()
                );
            }
        }
        let unchanged = dr
            .get_appointment(pb::GetAppointmentRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("read")
            .into_inner()
            .appointment
            .expect("a");
        assert_eq!(unchanged.status, pb::AppointmentStatus::Booked as i32);
        assert!(unchanged.room_id.is_empty(), "no room opened");
        dr.cancel_appointment(pb::CancelAppointmentRequest {
            appointment_id: id,
            reason: pb::CancellationReason::PatientRequest as i32,
            comment: String::new(),
            expected_version: 0,
        })
        .await
        .expect("still cancellable");

        // Starting in 10 minutes: inside the window.
        let id = dr
            .book_appointment(book("soon", soon(10)))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        pt.check_in(pb::CheckInRequest {
            appointment_id: id.clone(),
        })
        .await
        .expect("checked in 10 minutes before");
        dr.start_teleconsultation(pb::StartTeleconsultationRequest { appointment_id: id })
            .await
            .expect("started 10 minutes before");
        suite.stop().await;

        // The window is configurable: opening 4 hours before the start.
        let Some(suite) = Suite::start_with(backend, |s| {
            s.scheduling_rules.check_in_opens_before_minutes = 240;
        })
        .await
        else {
            return;
        };
        publish_round_the_clock(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let in_register = suite.consenting_patient(&doctor).await;
        let id = dr
            .book_appointment(booking(
                &in_register,
                "in-3-hours",
                "dr-martin",
                "patient-42",
                soon(180),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        suite
            .scheduling(&patient)
            .await
            .check_in(pb::CheckInRequest { appointment_id: id })
            .await
            .expect("3 hours ahead, inside a 4-hour window");
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_exception_added_twice_with_one_key_is_added_once() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let request = pb::AddAvailabilityExceptionRequest {
            idempotency_key: "leave-2031".into(),
            kind: pb::AvailabilityExceptionKind::Leave as i32,
            practitioner_subject: "dr-martin".into(),
            start_date: "2031-07-01".into(),
            end_date: "2031-07-14".into(),
            time_zone: "Europe/Paris".into(),
            note: "congés".into(),
            ..Default::default()
        };
        let no_key = dr
            .add_availability_exception(pb::AddAvailabilityExceptionRequest {
                idempotency_key: "  ".into(),
                ..request.clone()
            })
            .await
            .expect_err("the key is required");
        assert_eq!(no_key.code(), Code::InvalidArgument, "{backend:?}");
        assert!(no_key.message().contains("idempotency_key"), "{no_key:?}");

        let first = dr
            .add_availability_exception(request.clone())
            .await
            .expect("added")
            .into_inner();
        let again = dr
            .add_availability_exception(request.clone())
            .await
            .expect("replayed")
            .into_inner();
        assert!(
            !first.idempotent_replay && again.idempotent_replay,
            "{backend:?}"
        );
        assert_eq!(
            first.exception, again.exception,
            "{backend:?}: the retry answers the first exception"
        );
        let listed = dr
            .list_availability_exceptions(pb::ListAvailabilityExceptionsRequest {
                practitioner_subject: "dr-martin".into(),
                from_date: "2031-01-01".into(),
                to_date: "2031-12-31".into(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .exceptions;
        assert_eq!(listed.len(), 1, "{backend:?}: one exception, not two");

        let other = dr
            .add_availability_exception(pb::AddAvailabilityExceptionRequest {
                note: "autre chose".into(),
                ..request
            })
            .await
            .expect_err("same key, other request");
        assert_eq!(
            other.code(),
            Code::FailedPrecondition,
            "{backend:?}: the suite's convention (common.proto): {other:?}"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn reasons_and_comments_are_trimmed_and_required_where_the_contract_says() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        for reason in ["", "   ", "\n\t "] {
            let status = dr
                .book_appointment(pb::BookAppointmentRequest {
                    reason: reason.into(),
                    ..booking(&in_register, "blank", "dr-martin", "p1", ten_oclock_in(2))
                })
                .await
                .expect_err("a blank reason is missing");
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{reason:?}: {status:?}"
            );
            assert!(status.message().contains("reason"), "{status:?}");
        }
        let booked = dr
            .book_appointment(pb::BookAppointmentRequest {
                reason: "  suivi diabète \n".into(),
                ..booking(&in_register, "trimmed", "dr-martin", "p1", ten_oclock_in(2))
            })
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a");
        assert_eq!(booked.reason, "suivi diabète", "stored trimmed");

        let cancel = |comment: &str| pb::CancelAppointmentRequest {
            appointment_id: booked.appointment_id.clone(),
            reason: pb::CancellationReason::Other as i32,
            comment: comment.into(),
            expected_version: 0,
        };
        for comment in ["", "   "] {
            let status = dr
                .cancel_appointment(cancel(comment))
                .await
                .expect_err("OTHER needs a comment");
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{comment:?}: {status:?}"
            );
            assert!(status.message().contains("comment"), "{status:?}");
        }
        let cancelled = dr
            .cancel_appointment(cancel("  patient hospitalisé  "))
            .await
            .expect("cancelled")
            .into_inner()
            .appointment
            .expect("a");
        assert_eq!(
            cancelled.cancellation.map(|c| c.comment).as_deref(),
            Some("patient hospitalisé"),
            "stored trimmed"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_patient_joining_the_room_after_check_in_reaches_the_doctors_watch_within_a_second() {
    use telehealth_proto::v1::{signal_request::Message as In, signal_response::Event as Out};
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        let patient = Person::patient("patient-42", CENTRE);
        publish_round_the_clock(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let id = dr
            .book_appointment(booking(
                &in_register,
                "k",
                "dr-martin",
                "patient-42",
                soon(10),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        let mut watch = dr
            .watch_appointments(pb::WatchAppointmentsRequest::default())
            .await
            .expect("watch")
            .into_inner();
        watch.next().await.expect("ready").expect("ok");
        let mut next_change = async || {
            let message = tokio::time::timeout(Duration::from_secs(1), watch.next())
                .await
                .expect("the doctor sees it within a second")
                .expect("message")
                .expect("ok");
            match message.payload {
                Some(pb::watch_appointments_response::Payload::Change(change)) => change,
                other => panic!("expected a change, got {other:?}"),
            }
        };

        // The patient checks in (the room opens), then joins the room before the doctor.
        let room_id = suite
            .scheduling(&patient)
            .await
            .check_in(pb::CheckInRequest {
                appointment_id: id.clone(),
            })
            .await
            .expect("check in")
            .into_inner()
            .room_id;
        let mut checked_in = next_change().await;
        if checked_in.event.as_ref().map(|e| e.kind)
            == Some(pb::AppointmentEventKind::Booked as i32)
        {
            // The booking's own notice may reach a watch opened just after the booking returned.
            checked_in = next_change().await;
        }
        assert_eq!(
            checked_in.event.map(|e| e.kind),
            Some(pb::AppointmentEventKind::CheckedIn as i32)
        );
        let mut signalling = suite.signalling(&patient).await;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let mut events = signalling
            .signal(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .expect("signal stream")
            .into_inner();
        sender
            .send(pb::SignalRequest {
                client_sequence: 1,
                message: Some(In::Join(pb::Join {
                    room_id,
                    client_platform: "integration test".into(),
                })),
            })
            .await
            .expect("join sent");
        let joined = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("joined in time")
            .expect("stream")
            .and_then(|r| r.event);
        assert!(matches!(joined, Some(Out::Joined(_))), "{joined:?}");

        let arrival = next_change().await;
        let event = arrival.event.expect("event");
        assert_eq!(event.kind, pb::AppointmentEventKind::JoinedRoom as i32);
        assert_eq!(event.participant_subject, "patient-42");
        assert_eq!(event.participant_role, pb::ParticipantRole::Patient as i32);
        assert_eq!(
            arrival.appointment.map(|a| a.status),
            Some(pb::AppointmentStatus::Arrived as i32)
        );
        drop(sender);
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_calendar_uid_of_an_appointment_is_its_id() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-martin", CENTRE);
        publish_availability(&suite, &doctor).await;
        let mut dr = suite.scheduling(&doctor).await;
        let id = dr
            .book_appointment(booking(
                &in_register,
                "k",
                "dr-martin",
                "p1",
                ten_oclock_in(2),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("a")
            .appointment_id;
        let now = Timestamp::now();
        let ics = dr
            .export_calendar(pb::ExportCalendarRequest {
                range: Some(pb::TimeRange {
                    start_time: Some(ts(now)),
                    end_time: Some(ts(now + jiff::SignedDuration::from_hours(24 * 30))),
                }),
                ..Default::default()
            })
            .await
            .expect("export")
            .into_inner()
            .ics;
        let uids: Vec<&str> = ics
            .split("\r\n")
            .filter_map(|line| line.strip_prefix("UID:"))
            .collect();
        assert_eq!(
            uids,
            [id.as_str()],
            "UID = appointment id, as the contract says"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn repeated_fields_are_bounded_before_anything_else() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let mut dr = suite.scheduling(&doctor).await;
        // Each request is also wrong in its content: the bound is what is reported.
        let ranges = dr
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: "not a subject!".into(),
                time_zone: "Europe/Paris".into(),
                weekly_ranges: vec![pb::WeeklyRange::default(); 101],
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .map(|_| ());
        let subjects = dr
            .list_free_slots(pb::ListFreeSlotsRequest {
                practitioner_subjects: vec!["not a subject!".into(); 21],
                ..Default::default()
            })
            .await
            .map(|_| ());
        let statuses = dr
            .list_appointments(pb::ListAppointmentsRequest {
                statuses: vec![pb::AppointmentStatus::Booked as i32; 7],
                ..Default::default()
            })
            .await
            .map(|_| ());
        for (result, field, bound) in [
            (ranges, "weekly_ranges", "100"),
            (subjects, "practitioner_subjects", "20"),
            (statuses, "statuses", "6"),
        ] {
            let status = result.expect_err(field);
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(
                status.message().contains(field) && status.message().contains(bound),
                "{field}: the message names the field and its bound {bound}: {}",
                status.message()
            );
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn on_dst_days_the_listed_slots_are_the_bookable_ones_from_the_documented_time() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let in_register = suite
            .consenting_patient(&Person::coordinator("coord-registre", CENTRE))
            .await;
        let doctor = Person::doctor("dr-dst", CENTRE);
        let mut dr = suite.scheduling(&doctor).await;
        dr.set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
            practitioner_subject: doctor.subject.into(),
            time_zone: "Europe/Paris".into(),
            weekly_ranges: vec![pb::WeeklyRange {
                day: pb::DayOfWeek::Sunday as i32,
                start_local_time: "02:30".into(),
                end_local_time: "05:00".into(),
            }],
            buffer_minutes: 0,
            expected_version: 0,
        })
        .await
        .expect("availability");
        let paris = TimeZone::get("Europe/Paris").expect("tz");
        // (case, the change's Sunday, expected local starts with their UTC offsets)
        let cases: [(&str, jiff::civil::Date, &[&str]); 2] = [
            (
                "spring forward: 02:30 does not exist, the first slot is 03:00 CEST",
                date(2027, 3, 28),
                &["03:00+02:00", "03:30+02:00", "04:00+02:00", "04:30+02:00"],
            ),
            (
                "fall back: after 02:30 CEST comes the second 02:00, CET (01:00Z)",
                date(2027, 10, 31),
                &[
                    "02:30+02:00",
                    "02:00+01:00",
                    "02:30+01:00",
                    "03:00+01:00",
                    "03:30+01:00",
                    "04:00+01:00",
                    "04:30+01:00",
                ],
            ),
        ];
        for (case, day, expected) in cases {
            let start = day.to_zoned_datetime(paris.clone()).expect("zoned");
            let end = start.tomorrow().expect("date");
            let slots = dr
                .list_free_slots(pb::ListFreeSlotsRequest {
                    practitioner_subjects: vec![doctor.subject.into()],
                    range: Some(pb::TimeRange {
                        start_time: Some(ts(start.timestamp())),
                        end_time: Some(ts(end.timestamp())),
                    }),
                    duration_minutes: 30,
                    step_minutes: 30,
                    ..Default::default()
                })
                .await
                .expect("slots")
                .into_inner()
                .slots;
            let shown: Vec<String> = slots
                .iter()
                .map(|s| format!("{}{}", &s.local_start[11..], s.utc_offset))
                .collect();
            assert_eq!(shown, expected, "{case}");
            // Every listed slot is bookable (they do not overlap: 30-minute slots every 30 minutes).
            for (index, slot) in slots.iter().enumerate() {
                let start = at(slot.time.as_ref().and_then(|t| t.start_time.as_ref()));
                dr.book_appointment(booking(
                    &in_register,
                    &format!("{day}-{index}"),
                    doctor.subject,
                    &format!("p{index}"),
                    start,
                ))
                .await
                .unwrap_or_else(|status| {
                    panic!("{case}: {start} is listed but refused: {status:?}")
                });
            }
        }
        suite.stop().await;
    }
}
