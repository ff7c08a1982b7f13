//! The tonic adapter: each RPC converts its request (validating it), calls the core, converts
//! the result back. No rule lives here.

use std::time::Duration;

use futures::StreamExt;
use jiff::SignedDuration;
use telehealth_kit::{
    error::reply,
    identity::{Role, require_caller},
    metrics::{Counter, Metrics},
    page_scope,
    paging::{self, PageTokens},
    watch::{self, Frame},
};
use telehealth_proto::v1::{self as pb, scheduling_service_server::SchedulingService};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    convert::{self, status},
    core::{Scheduler, availability::NewException, booking::BookingRequest},
    domain::{ExceptionKind, MAX_WEEKLY_RANGES, WeeklyAvailability, parse_date, parse_hhmm},
    error::SchedulingError,
    model::Transition,
    store::{self, AppointmentFilter},
};

/// How often an idle watch stream gets a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Bounds of the repeated fields of requests (with `MAX_WEEKLY_RANGES`), checked before anything
/// else is done with them. Practitioners of one free-slot search:
const MAX_SLOT_PRACTITIONERS: usize = 20;
/// Status filters of a listing: one of each status.
const MAX_STATUS_FILTERS: usize = 6;

/// Who may leave the practitioner of a weekly availability empty (meaning himself).
const PRACTITIONER_ROLES: [Role; 2] = [Role::Doctor, Role::Nurse];

/// The gRPC face of the [`Scheduler`].
pub struct SchedulingApi {
    core: Scheduler,
    pages: PageTokens,
    shutdown: CancellationToken,
    /// Appointments booked (idempotent replays not counted).
    bookings: Counter<u64>,
}

impl SchedulingApi {
    /// The API over `core`, paging with `pages`; watch streams end when `shutdown` fires.
    pub fn new(
        core: Scheduler,
        pages: PageTokens,
        shutdown: CancellationToken,
        metrics: &Metrics,
    ) -> Self {
        SchedulingApi {
            core,
            pages,
            shutdown,
            bookings: metrics
                .meter("telehealth.scheduling")
                .u64_counter("scheduling.bookings")
                .with_description("Appointments booked (idempotent replays not counted)")
                .build(),
        }
    }
}

#[tonic::async_trait]
impl SchedulingService for SchedulingApi {
    async fn set_weekly_availability(
        &self,
        request: Request<pb::SetWeeklyAvailabilityRequest>,
    ) -> Result<Response<pb::SetWeeklyAvailabilityResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let ranges = convert::bounded("weekly_ranges", &r.weekly_ranges, MAX_WEEKLY_RANGES)?;
            let practitioner = convert::subject_or_caller(
                "practitioner_subject",
                &r.practitioner_subject,
                &caller,
                &PRACTITIONER_ROLES,
            )?;
            let availability = WeeklyAvailability::new(
                convert::zone(&r.time_zone)?,
                convert::weekly_ranges(ranges)?,
                i64::from(r.buffer_minutes),
            )?;
            let row = self
                .core
                .set_availability(&caller, &practitioner, &availability, r.expected_version)
                .await?;
            convert::availability(&row)
        }
        .await;
        reply(result, |availability| pb::SetWeeklyAvailabilityResponse {
            availability: Some(availability),
        })
    }

    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let practitioner = convert::subject_or_caller(
                "practitioner_subject",
                &request.get_ref().practitioner_subject,
                &caller,
                &[],
            )?;
            convert::availability(&self.core.availability(&caller, &practitioner).await?)
        }
        .await;
        reply(result, |availability| pb::GetAvailabilityResponse {
            availability: Some(availability),
        })
    }

    async fn add_availability_exception(
        &self,
        request: Request<pb::AddAvailabilityExceptionRequest>,
    ) -> Result<Response<pb::AddAvailabilityExceptionResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let idempotency_key = convert::idempotency_key(&r.idempotency_key)?;
            let kind = match pb::AvailabilityExceptionKind::try_from(r.kind)
                .unwrap_or(pb::AvailabilityExceptionKind::Unspecified)
            {
                pb::AvailabilityExceptionKind::Leave => ExceptionKind::Leave,
                pb::AvailabilityExceptionKind::Closure => ExceptionKind::Closure,
                pb::AvailabilityExceptionKind::ExtraHours => ExceptionKind::ExtraHours,
                pb::AvailabilityExceptionKind::Unspecified => {
                    return Err(SchedulingError::invalid(
                        "kind",
                        "must be LEAVE, CLOSURE or EXTRA_HOURS",
                    ));
                }
            };
            let start_date = parse_date("start_date", &r.start_date)?;
            let end_date = if r.end_date.is_empty() {
                start_date
            } else {
                parse_date("end_date", &r.end_date)?
            };
            if end_date < start_date {
                return Err(SchedulingError::invalid(
                    "end_date",
                    "must not be before start_date",
                ));
            }
            if start_date
                .until(end_date)
                .map_or(true, |span| span.get_days() > 366)
            {
                return Err(SchedulingError::invalid(
                    "end_date",
                    "an exception spans at most 366 days",
                ));
            }
            let window = match (r.start_local_time.is_empty(), r.end_local_time.is_empty()) {
                (true, true) => None,
                (false, false) => {
                    let start = parse_hhmm("start_local_time", &r.start_local_time)?;
                    let end = parse_hhmm("end_local_time", &r.end_local_time)?;
                    if end <= start {
                        return Err(SchedulingError::invalid(
                            "end_local_time",
                            "must be after start_local_time",
                        ));
                    }
                    Some((start, end))
                }
                _ => {
                    return Err(SchedulingError::invalid(
                        "start_local_time",
                        "give both times or neither",
                    ));
                }
            };
            if kind == ExceptionKind::ExtraHours && window.is_none() {
                return Err(SchedulingError::invalid(
                    "start_local_time",
                    "extra hours need a start and an end time",
                ));
            }
            let new = NewException {
                idempotency_key,
                kind,
                practitioner: convert::optional_subject(
                    "practitioner_subject",
                    &r.practitioner_subject,
                )?,
                org_wide: r.org_wide,
                start_date,
                end_date,
                window,
                zone: convert::zone(&r.time_zone)?,
                note: convert::text("note", &r.note, 200)?,
            };
            self.core.add_exception(&caller, new).await
        }
        .await;
        reply(result, |added| pb::AddAvailabilityExceptionResponse {
            exception: Some(convert::exception(&added.exception)),
            affected_appointment_ids: added.affected_appointment_ids,
            idempotent_replay: added.replay,
        })
    }

    async fn remove_availability_exception(
        &self,
        request: Request<pb::RemoveAvailabilityExceptionRequest>,
    ) -> Result<Response<pb::RemoveAvailabilityExceptionResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("exception_id", &request.get_ref().exception_id)?;
            self.core.remove_exception(&caller, &id).await
        }
        .await;
        reply(result, |row| pb::RemoveAvailabilityExceptionResponse {
            exception: Some(convert::exception(&row)),
        })
    }

    async fn list_availability_exceptions(
        &self,
        request: Request<pb::ListAvailabilityExceptionsRequest>,
    ) -> Result<Response<pb::ListAvailabilityExceptionsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let practitioner = convert::subject_or_caller(
                "practitioner_subject",
                &r.practitioner_subject,
                &caller,
                &[],
            )?;
            let optional_date = |field, text: &str| {
                (!text.is_empty())
                    .then(|| parse_date(field, text))
                    .transpose()
            };
            let from = optional_date("from_date", &r.from_date)?;
            let to = optional_date("to_date", &r.to_date)?;
            let size = paging::page_size(r.page_size, 100, 500)?;
            let scope = page_scope!("ListAvailabilityExceptions", &caller, &r);
            let offset = self.pages.position::<u64>(&scope, &r.page_token)?;
            let rows = self
                .core
                .exceptions(&caller, &practitioner, from, to)
                .await?;
            Ok(self.offset_page(&scope, rows, offset, size))
        }
        .await;
        reply(result, |(rows, next)| {
            pb::ListAvailabilityExceptionsResponse {
                exceptions: rows.iter().map(convert::exception).collect(),
                next_page_token: next,
            }
        })
    }

    async fn list_free_slots(
        &self,
        request: Request<pb::ListFreeSlotsRequest>,
    ) -> Result<Response<pb::ListFreeSlotsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let subjects = convert::bounded(
                "practitioner_subjects",
                &r.practitioner_subjects,
                MAX_SLOT_PRACTITIONERS,
            )?;
            if subjects.is_empty() {
                return Err(SchedulingError::invalid(
                    "practitioner_subjects",
                    format!("give 1 to {MAX_SLOT_PRACTITIONERS} practitioners"),
                ));
            }
            let practitioners = subjects
                .iter()
                .map(|p| convert::subject("practitioner_subjects", p))
                .collect::<Result<Vec<_>, _>>()?;
            let range = convert::range("range", r.range.as_ref(), 31)?;
            let duration = convert::duration("duration_minutes", r.duration_minutes)?;
            let step = match r.step_minutes {
                0 => SignedDuration::from_mins(15),
                n if (5..=60).contains(&n) => SignedDuration::from_mins(i64::from(n)),
                _ => {
                    return Err(SchedulingError::invalid(
                        "step_minutes",
                        "must be between 5 and 60",
                    ));
                }
            };
            let all = r.r#match == pb::SlotMatch::All as i32;
            let size = paging::page_size(r.page_size, 500, 2000)?;
            let scope = page_scope!("ListFreeSlots", &caller, &r);
            let offset = self.pages.position::<u64>(&scope, &r.page_token)?;
            let slots = self
                .core
                .free_slots(&caller, &practitioners, range, duration, step, all)
                .await?;
            Ok(self.offset_page(&scope, slots, offset, size))
        }
        .await;
        reply(result, |(slots, next)| pb::ListFreeSlotsResponse {
            slots: slots
                .iter()
                .map(|s| pb::FreeSlot {
                    practitioner_subjects: s.practitioners.clone(),
                    time: Some(convert::time_range(crate::domain::Interval {
                        start: s.slot.start,
                        end: s.slot.end,
                    })),
                    local_start: s.slot.local_start.strftime("%Y-%m-%dT%H:%M").to_string(),
                    time_zone: s.time_zone.clone(),
                    utc_offset: offset_text(s.slot.utc_offset),
                })
                .collect(),
            next_page_token: next,
        })
    }

    async fn hold_slot(
        &self,
        request: Request<pb::HoldSlotRequest>,
    ) -> Result<Response<pb::HoldSlotResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let doctor = convert::subject_or_caller(
                "doctor_subject",
                &r.doctor_subject,
                &caller,
                &[Role::Doctor],
            )?;
            let nurse = convert::optional_subject("nurse_subject", &r.nurse_subject)?;
            let time =
                convert::appointment_time(r.start_time.as_ref(), r.duration_minutes, "start_time")?;
            self.core.hold(&caller, &doctor, nurse.as_ref(), time).await
        }
        .await;
        reply(result, |hold| pb::HoldSlotResponse {
            hold: Some(pb::SlotHold {
                hold_id: hold.hold_id.clone(),
                doctor_subject: hold.doctor.clone(),
                nurse_subject: hold.nurse.clone().unwrap_or_default(),
                time: Some(convert::time_range(hold.time)),
                expires_at: Some(convert::timestamp(hold.expires_at)),
                created_by: Some(hold.created_by.to_proto()),
            }),
        })
    }

    async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::ReleaseHoldResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("hold_id", &request.get_ref().hold_id)?;
            self.core.release_hold(&caller, &id).await
        }
        .await;
        reply(result, |released| pb::ReleaseHoldResponse { released })
    }

    async fn book_appointment(
        &self,
        request: Request<pb::BookAppointmentRequest>,
    ) -> Result<Response<pb::BookAppointmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let booking = BookingRequest {
                idempotency_key: convert::idempotency_key(&r.idempotency_key)?,
                doctor: convert::subject_or_caller(
                    "doctor_subject",
                    &r.doctor_subject,
                    &caller,
                    &[Role::Doctor],
                )?,
                nurse: convert::optional_subject("nurse_subject", &r.nurse_subject)?,
                patient_pseudonym: convert::pseudonym(r.patient.as_ref())?,
                patient_subject: convert::optional_subject("patient_subject", &r.patient_subject)?,
                time: convert::appointment_time(
                    r.start_time.as_ref(),
                    r.duration_minutes,
                    "start_time",
                )?,
                reason: convert::required_text("reason", &r.reason, 500)?,
                hold_id: if r.hold_id.is_empty() {
                    None
                } else {
                    Some(convert::id("hold_id", &r.hold_id)?)
                },
            };
            self.core.book(&caller, &booking).await
        }
        .await;
        if let Ok((_, false)) = &result {
            self.bookings.add(1, &[]);
        }
        reply(result, |(appointment, replay)| {
            pb::BookAppointmentResponse {
                appointment: Some(convert::appointment(&appointment)),
                idempotent_replay: replay,
            }
        })
    }

    async fn get_appointment(
        &self,
        request: Request<pb::GetAppointmentRequest>,
    ) -> Result<Response<pb::GetAppointmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &request.get_ref().appointment_id)?;
            self.core.appointment(&caller, &id).await
        }
        .await;
        reply(result, |a| pb::GetAppointmentResponse {
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn list_appointments(
        &self,
        request: Request<pb::ListAppointmentsRequest>,
    ) -> Result<Response<pb::ListAppointmentsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let statuses = convert::bounded("statuses", &r.statuses, MAX_STATUS_FILTERS)?;
            let by_patient = r.patient.as_ref().is_some_and(|p| !p.pseudonym.is_empty());
            // A patient's appointments are few: their whole history may be asked at once.
            let max_days = if by_patient { 36_600 } else { 366 };
            let window = match &r.period {
                None => None,
                Some(pb::list_appointments_request::Period::Range(range)) => {
                    Some(convert::range("range", Some(range), max_days)?)
                }
                Some(pb::list_appointments_request::Period::Day(day)) => {
                    let date = parse_date("day.date", &day.date)?;
                    let zone = convert::zone(&day.time_zone)?;
                    let start = date
                        .to_zoned_datetime(zone.tz().clone())
                        .map_err(|e| SchedulingError::invalid("day", e.to_string()))?;
                    let end = start
                        .tomorrow()
                        .map_err(|e| SchedulingError::invalid("day", e.to_string()))?;
                    Some(crate::domain::Interval {
                        start: start.timestamp(),
                        end: end.timestamp(),
                    })
                }
            };
            let filter = AppointmentFilter {
                doctor: convert::optional_subject("doctor_subject", &r.doctor_subject)?
                    .map(|s| s.as_str().to_owned()),
                nurse: convert::optional_subject("nurse_subject", &r.nurse_subject)?
                    .map(|s| s.as_str().to_owned()),
                patient_pseudonyms: match &r.patient {
                    Some(patient) if by_patient => vec![convert::pseudonym(Some(patient))?],
                    _ => Vec::new(),
                },
                window,
                statuses: statuses
                    .iter()
                    .map(|s| convert::status_of(*s))
                    .collect::<Result<_, _>>()?,
                ..Default::default()
            };
            let size = paging::page_size(r.page_size, 100, 500)?;
            let scope = page_scope!("ListAppointments", &caller, &r);
            let after = self
                .pages
                .position::<(i64, String)>(&scope, &r.page_token)?;
            let found = self
                .core
                .appointments(&caller, filter, after, size + 1)
                .await?;
            Ok(self.pages.page(&scope, found, size, |a| {
                (store::micros(a.time.start), a.id.clone())
            }))
        }
        .await;
        reply(result, |(appointments, next)| {
            pb::ListAppointmentsResponse {
                appointments: appointments.iter().map(convert::appointment).collect(),
                next_page_token: next,
            }
        })
    }

    async fn cancel_appointment(
        &self,
        request: Request<pb::CancelAppointmentRequest>,
    ) -> Result<Response<pb::CancelAppointmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &r.appointment_id)?;
            if pb::CancellationReason::try_from(r.reason)
                .unwrap_or(pb::CancellationReason::Unspecified)
                == pb::CancellationReason::Unspecified
            {
                return Err(SchedulingError::invalid(
                    "reason",
                    "give a cancellation reason",
                ));
            }
            let comment = convert::text("comment", &r.comment, 500)?;
            if r.reason == pb::CancellationReason::Other as i32 && comment.is_empty() {
                return Err(SchedulingError::invalid(
                    "comment",
                    "is required when the reason is CANCELLATION_REASON_OTHER: say why",
                ));
            }
            self.core
                .transition(
                    &caller,
                    &id,
                    Transition::Cancel,
                    Some((r.reason, comment)),
                    r.expected_version,
                )
                .await
        }
        .await;
        reply(result, |a| pb::CancelAppointmentResponse {
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn reschedule_appointment(
        &self,
        request: Request<pb::RescheduleAppointmentRequest>,
    ) -> Result<Response<pb::RescheduleAppointmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &r.appointment_id)?;
            let start = convert::start_minute("new_start_time", r.new_start_time.as_ref())?;
            // 0 keeps the current duration, which the core reads in its transaction.
            let length = match r.new_duration_minutes {
                0 => None,
                minutes => Some(convert::duration("new_duration_minutes", minutes)?),
            };
            let hold = if r.hold_id.is_empty() {
                None
            } else {
                Some(convert::id("hold_id", &r.hold_id)?)
            };
            let comment = convert::text("comment", &r.comment, 500)?;
            self.core
                .reschedule(
                    &caller,
                    &id,
                    (start, length),
                    hold.as_ref(),
                    &comment,
                    r.expected_version,
                )
                .await
        }
        .await;
        reply(result, |a| pb::RescheduleAppointmentResponse {
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn check_in(
        &self,
        request: Request<pb::CheckInRequest>,
    ) -> Result<Response<pb::CheckInResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &request.get_ref().appointment_id)?;
            self.core
                .transition(&caller, &id, Transition::CheckIn, None, 0)
                .await
        }
        .await;
        reply(result, |a| pb::CheckInResponse {
            room_id: a.room_id.clone().unwrap_or_default(),
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn start_teleconsultation(
        &self,
        request: Request<pb::StartTeleconsultationRequest>,
    ) -> Result<Response<pb::StartTeleconsultationResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &request.get_ref().appointment_id)?;
            self.core
                .transition(&caller, &id, Transition::Start, None, 0)
                .await
        }
        .await;
        let rules = &self.core.rules;
        reply(result, |a| pb::StartTeleconsultationResponse {
            room_id: a.room_id.clone().unwrap_or_default(),
            room_window: Some(convert::time_range(crate::domain::Interval {
                start: a.time.start - rules.room_opens_before,
                end: a.time.end + rules.room_closes_after,
            })),
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn finish_appointment(
        &self,
        request: Request<pb::FinishAppointmentRequest>,
    ) -> Result<Response<pb::FinishAppointmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &request.get_ref().appointment_id)?;
            self.core
                .transition(&caller, &id, Transition::Finish, None, 0)
                .await
        }
        .await;
        reply(result, |a| pb::FinishAppointmentResponse {
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn mark_no_show(
        &self,
        request: Request<pb::MarkNoShowRequest>,
    ) -> Result<Response<pb::MarkNoShowResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &r.appointment_id)?;
            let comment = convert::text("comment", &r.comment, 500)?;
            self.core
                .transition(&caller, &id, Transition::NoShow, Some((0, comment)), 0)
                .await
        }
        .await;
        reply(result, |a| pb::MarkNoShowResponse {
            appointment: Some(convert::appointment(&a)),
        })
    }

    async fn get_appointment_history(
        &self,
        request: Request<pb::GetAppointmentHistoryRequest>,
    ) -> Result<Response<pb::GetAppointmentHistoryResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &r.appointment_id)?;
            let size = paging::page_size(r.page_size, 100, 500)?;
            let scope = page_scope!("GetAppointmentHistory", &caller, &r);
            let after = self
                .pages
                .position::<i64>(&scope, &r.page_token)?
                .unwrap_or(0);
            let events = self.core.history(&caller, &id, after, size + 1).await?;
            Ok(self.pages.page(&scope, events, size, |e| e.sequence))
        }
        .await;
        reply(result, |(events, next)| pb::GetAppointmentHistoryResponse {
            events: events.iter().map(convert::event).collect(),
            next_page_token: next,
        })
    }

    type WatchAppointmentsStream = watch::ServerStream<pb::WatchAppointmentsResponse>;

    async fn watch_appointments(
        &self,
        request: Request<pb::WatchAppointmentsRequest>,
    ) -> Result<Response<Self::WatchAppointmentsStream>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let practitioner =
            convert::optional_subject("practitioner_subject", &r.practitioner_subject)
                .map_err(|e| status(&e))?
                .map(|p| p.as_str().to_owned());
        let changes = self
            .core
            .watch(&caller, practitioner)
            .await
            .map_err(|e| status(&e))?;
        let changes = changes.filter_map(|change| async move {
            match change {
                Ok(change) => Some(Ok(change)),
                // A change the caller may no longer see, or one that vanished: skip it.
                Err(SchedulingError::NotFound(_)) => None,
                Err(error) => Some(Err(status(&error))),
            }
        });
        use pb::watch_appointments_response::Payload;
        let stream = watch::server_stream(changes, HEARTBEAT, self.shutdown.clone(), |frame| {
            let payload = match frame {
                Frame::Ready(at) => Payload::Ready(pb::WatchReady {
                    server_time: Some(at),
                }),
                Frame::Event((event, appointment)) => Payload::Change(pb::AppointmentChange {
                    event: Some(convert::event(&event)),
                    appointment: Some(convert::appointment(&appointment)),
                }),
                Frame::Heartbeat(at) => Payload::Heartbeat(pb::WatchHeartbeat {
                    server_time: Some(at),
                }),
            };
            pb::WatchAppointmentsResponse {
                payload: Some(payload),
            }
        });
        Ok(Response::new(stream))
    }

    async fn export_calendar(
        &self,
        request: Request<pb::ExportCalendarRequest>,
    ) -> Result<Response<pb::ExportCalendarResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let practitioner = convert::subject_or_caller(
                "practitioner_subject",
                &r.practitioner_subject,
                &caller,
                &[],
            )?;
            let range = convert::range("range", r.range.as_ref(), 366)?;
            let (ics, count) = self
                .core
                .export_calendar(
                    &caller,
                    &practitioner,
                    range,
                    r.include_cancelled,
                    r.include_patient_details,
                )
                .await?;
            let file_name = format!("appointments-{}.ics", range.start.strftime("%Y-%m"));
            Ok((ics, count, file_name))
        }
        .await;
        reply(result, |(ics, count, file_name)| {
            pb::ExportCalendarResponse {
                ics,
                file_name,
                event_count: i32::try_from(count).unwrap_or(i32::MAX),
            }
        })
    }

    async fn mark_waiting_room(
        &self,
        request: Request<pb::MarkWaitingRoomRequest>,
    ) -> Result<Response<pb::MarkWaitingRoomResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SchedulingError> = async {
            let id = convert::id("appointment_id", &r.appointment_id)?;
            let participant = convert::subject("participant_subject", &r.participant_subject)?;
            let role = convert::participant_role(r.participant_role)?;
            self.core
                .mark_waiting_room(&caller, &id, participant.as_str(), Some(role))
                .await
        }
        .await;
        reply(result, |(new_status, changed)| {
            pb::MarkWaitingRoomResponse {
                status: convert::status_number(new_status),
                changed,
            }
        })
    }
}

/// `+HH:MM` / `-HH:MM`, as the contract writes offsets.
fn offset_text(offset: jiff::tz::Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

impl SchedulingApi {
    /// A page of a fully computed, deterministic list, from `offset` (the token's position).
    fn offset_page<T>(
        &self,
        scope: &str,
        all: Vec<T>,
        offset: Option<u64>,
        size: i64,
    ) -> (Vec<T>, String) {
        let offset = usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let window: Vec<(usize, T)> = all
            .into_iter()
            .enumerate()
            .skip(offset)
            .take(usize::try_from(size).unwrap_or(0).saturating_add(1))
            .collect();
        let (items, next) = self.pages.page(scope, window, size, |(index, _)| {
            u64::try_from(index + 1).unwrap_or(u64::MAX)
        });
        (items.into_iter().map(|(_, item)| item).collect(), next)
    }
}
