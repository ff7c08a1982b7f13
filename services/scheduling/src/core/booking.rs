//! Free slots, holds, bookings and reschedules. The guarantee: no practitioner is ever
//! double-booked. Every transaction that takes a practitioner's time first updates that
//! practitioner's row in `practitioner_locks` (sorted, so two practitioners are always locked in
//! the same order). The database queues such transactions, across replicas and on both engines
//! (PostgreSQL row lock, SQLite write lock), so the conflict check that follows sees every
//! committed booking and nothing can slip in before the insert.

use jiff::{SignedDuration, Timestamp, civil::Weekday};
use sqlx::AnyConnection;
use telehealth_kit::{
    audit::{AuditEntry, Outcome},
    idempotency::{Claim, KeyedRequest},
    identity::{Caller, Identity, Role},
};

use super::{PRACTITIONER_ROLES, Scheduler, person};
use crate::{
    domain::{Interval, Subject, WeeklyAvailability, WeeklyRange, Zone},
    error::SchedulingError,
    model::{Appointment, AppointmentId, EventKind, HistoryEvent, HoldId, Status},
    slots::{self, PractitionerCalendar, Slot},
    store::{self, HoldEnd, HoldRow},
};
use telehealth_kit::record::ActorRecord;

/// A validated booking request.
#[derive(Debug, Clone)]
pub struct BookingRequest {
    pub idempotency_key: String,
    pub doctor: Subject,
    pub nurse: Option<Subject>,
    pub patient_pseudonym: String,
    pub patient_subject: Option<Subject>,
    pub time: Interval,
    pub reason: String,
    pub hold_id: Option<HoldId>,
}

/// A free slot of one or several practitioners.
#[derive(Debug, Clone)]
pub struct FreeSlot {
    pub practitioners: Vec<String>,
    pub slot: Slot,
    pub time_zone: String,
}

/// Longest appointment plus the largest buffer: how far around a time busy intervals matter.
const LOOKAROUND: SignedDuration = SignedDuration::from_hours(11);

impl Scheduler {
    /// Free start times of `practitioners` in `range` for `duration`, every `step`; with `all`,
    /// only times when all of them are free together.
    pub async fn free_slots(
        &self,
        caller: &Caller,
        practitioners: &[Subject],
        range: Interval,
        duration: SignedDuration,
        step: SignedDuration,
        all: bool,
    ) -> Result<Vec<FreeSlot>, SchedulingError> {
        let identity = person(caller)?;
        let now = self.now();
        let not_before = now + self.rules.minimum_notice;
        let mut conn = self.base.db().pool().acquire().await?;
        let mut calendars = Vec::new();
        for practitioner in practitioners {
            let (calendar, org) = self
                .calendar(&mut conn, practitioner, range, now, true)
                .await?
                .ok_or(SchedulingError::NotFound("practitioner availability"))?;
            if org != identity.org && practitioner.as_str() != identity.subject {
                return Err(SchedulingError::NotFound("practitioner availability"));
            }
            self.require_member(
                identity,
                practitioner.as_str(),
                &PRACTITIONER_ROLES,
                "practitioner availability",
            )
            .await?;
            calendars.push(calendar);
        }
        drop(conn);
        let mut found = Vec::new();
        if all {
            let zone = calendars
                .first()
                .map(|c| c.availability.zone.name().to_owned())
                .unwrap_or_default();
            let subjects: Vec<String> = calendars
                .iter()
                .map(|c| c.subject.as_str().to_owned())
                .collect();
            for slot in slots::common_slots(&calendars, range, duration, step, not_before) {
                found.push(FreeSlot {
                    practitioners: subjects.clone(),
                    slot,
                    time_zone: zone.clone(),
                });
            }
        } else {
            for calendar in &calendars {
                for slot in slots::free_slots(calendar, range, duration, step, not_before) {
                    found.push(FreeSlot {
                        practitioners: vec![calendar.subject.as_str().to_owned()],
                        slot,
                        time_zone: calendar.availability.zone.name().to_owned(),
                    });
                }
            }
            found.sort_by(|a, b| {
                (a.slot.start, &a.practitioners).cmp(&(b.slot.start, &b.practitioners))
            });
        }
        Ok(found)
    }

    /// Holds `time` for the doctor (and nurse) for a few minutes.
    pub async fn hold(
        &self,
        caller: &Caller,
        doctor: &Subject,
        nurse: Option<&Subject>,
        time: Interval,
    ) -> Result<HoldRow, SchedulingError> {
        self.require_participants(person(caller)?, doctor, nurse)
            .await?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        let (org, _) = self
            .lock_and_check(&mut tx, caller, doctor, nurse, time, now, None, None)
            .await?;
        let hold = HoldRow {
            hold_id: uuid::Uuid::new_v4().to_string(),
            org_id: org,
            doctor: doctor.as_str().to_owned(),
            nurse: nurse.map(|n| n.as_str().to_owned()),
            time,
            expires_at: now + self.rules.hold,
            created_by: ActorRecord::of(caller),
            ended: None,
        };
        store::insert_hold(&mut tx, &hold).await?;
        for practitioner in std::iter::once(doctor).chain(nurse) {
            store::occupy(
                &mut tx,
                practitioner.as_str(),
                &hold.hold_id,
                time,
                Some(hold.expires_at),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(hold)
    }

    /// Releases a hold: true if it was active; false if it had already expired, been consumed
    /// by a booking or been released. A hold the caller may not release (neither its creator nor
    /// a coordinator of its org) is answered exactly as one that does not exist.
    pub async fn release_hold(
        &self,
        caller: &Caller,
        hold_id: &HoldId,
    ) -> Result<bool, SchedulingError> {
        let identity = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        // Write first (see store::lock_appointment): the hold's busy rows are what we change.
        store::lock_hold(&mut tx, hold_id).await?;
        let hold = store::hold(&mut tx, hold_id)
            .await?
            .filter(|hold| {
                hold.created_by.subject == identity.subject
                    || (identity.has_role(Role::Coordinator) && identity.org == hold.org_id)
            })
            .ok_or(SchedulingError::NotFound("hold"))?;
        if hold.ended.is_some() || hold.expires_at <= now {
            return Ok(false);
        }
        store::end_hold(&mut tx, hold_id, HoldEnd::Released, now).await?;
        tx.commit().await?;
        tracing::info!(%hold_id, "hold released");
        Ok(true)
    }

    /// Books an appointment; returns it and whether it is the replay of an earlier booking with
    /// the same idempotency key.
    pub async fn book(
        &self,
        caller: &Caller,
        request: &BookingRequest,
    ) -> Result<(Appointment, bool), SchedulingError> {
        let identity = person(caller)?;
        if identity.has_role(Role::Doctor)
            && !identity.has_role(Role::Coordinator)
            && request.doctor.as_str() != identity.subject
        {
            return Err(SchedulingError::PermissionDenied(
                "a doctor books his own appointments",
            ));
        }
        // The patient is one of the organisation's register (an alias books the survivor).
        let request = &BookingRequest {
            patient_pseudonym: self
                .consents
                .resolve(&identity.org, &request.patient_pseudonym)
                .await?,
            ..request.clone()
        };
        let keyed = KeyedRequest::new(
            &identity.subject,
            "BookAppointment",
            &request.idempotency_key,
            request_content(request),
        );
        if let Err(refusal) = self
            .require_participants(identity, &request.doctor, request.nurse.as_ref())
            .await
        {
            // A retry of a booking made before the membership ended still gets its answer.
            return match self.replay(&keyed).await? {
                Some(replay) => Ok((replay, true)),
                None => Err(refusal),
            };
        }

        let now = self.now();
        let appointment_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.base.db().pool().begin().await?;
        let checked = self
            .lock_and_check(
                &mut tx,
                caller,
                &request.doctor,
                request.nurse.as_ref(),
                request.time,
                now,
                request.hold_id.as_deref(),
                None,
            )
            .await;
        // After the locks, whatever the check found: a retry queued behind its first attempt
        // finds the key taken and answers the first result. The key is this call's only if the
        // booking commits (a refusal rolls it back).
        if let Claim::Replay(first) = keyed.claim(&mut tx, &appointment_id, now).await? {
            let replay = store::appointment(&mut tx, &first)
                .await?
                .ok_or(SchedulingError::NotFound("appointment"))?;
            return Ok((replay, true));
        }
        let (org, time_zone) = checked?;

        let appointment = Appointment {
            id: appointment_id,
            org_id: org,
            status: Status::Booked,
            time: request.time,
            time_zone,
            doctor: request.doctor.as_str().to_owned(),
            nurse: request.nurse.as_ref().map(|n| n.as_str().to_owned()),
            patient_pseudonym: request.patient_pseudonym.clone(),
            patient_subject: request
                .patient_subject
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            reason: request.reason.clone(),
            room_id: None,
            reschedule_count: 0,
            cancellation: None,
            arrived_at: None,
            started_at: None,
            finished_at: None,
            no_show_at: None,
            created_at: now,
            created_by: ActorRecord::of(caller),
            updated_at: now,
            version: 1,
            consent_id: None,
        };
        store::insert_appointment(&mut tx, &appointment).await?;
        for practitioner in std::iter::once(&request.doctor).chain(request.nurse.as_ref()) {
            store::occupy(
                &mut tx,
                practitioner.as_str(),
                &appointment.id,
                request.time,
                None,
            )
            .await?;
        }
        if let Some(hold_id) = &request.hold_id {
            store::end_hold(&mut tx, hold_id, HoldEnd::Consumed, now).await?;
        }
        let event = HistoryEvent {
            id: uuid::Uuid::new_v4().to_string(),
            appointment_id: appointment.id.clone(),
            sequence: 0,
            kind: EventKind::Booked,
            occurred_at: now,
            actor: ActorRecord::of(caller),
            previous_status: None,
            new_status: Status::Booked,
            previous_time: None,
            new_time: Some(request.time),
            participant_subject: String::new(),
            participant_role: None,
            comment: String::new(),
        };
        let sequence = store::append_event(&mut tx, &event).await?;
        let entry = AuditEntry::new(
            caller,
            "BookAppointment",
            "appointment",
            &appointment.id,
            Outcome::Ok,
        );
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let announcement = self.announce(&mut tx, &appointment, sequence).await?;
        tx.commit().await?;
        self.flush_audit().await;
        announcement.send();
        tracing::info!(appointment_id = %appointment.id, doctor = %appointment.doctor, "booked");
        Ok((appointment, false))
    }

    /// Moves a booked appointment to a new start, with a new length or its current one (its
    /// history keeps the old time).
    pub async fn reschedule(
        &self,
        caller: &Caller,
        appointment_id: &AppointmentId,
        (new_start, new_length): (Timestamp, Option<SignedDuration>),
        hold_id: Option<&HoldId>,
        comment: &str,
        expected_version: i64,
    ) -> Result<Appointment, SchedulingError> {
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_appointment(&mut tx, appointment_id).await?;
        let current = store::appointment(&mut tx, appointment_id)
            .await?
            .ok_or(SchedulingError::NotFound("appointment"))?;
        self.authorize_change(caller, &current, crate::model::Transition::Reschedule)?;
        if expected_version != 0 && expected_version != current.version {
            return Err(SchedulingError::VersionMismatch {
                current: current.version,
            });
        }
        crate::model::apply(current.status, crate::model::Transition::Reschedule)?;
        let new_time = Interval {
            start: new_start,
            end: new_start + new_length.unwrap_or_else(|| current.time.duration()),
        };
        let doctor = Subject::parse("doctor_subject", &current.doctor)?;
        let nurse = current
            .nurse
            .as_deref()
            .map(|n| Subject::parse("nurse_subject", n))
            .transpose()?;
        self.lock_and_check(
            &mut tx,
            caller,
            &doctor,
            nurse.as_ref(),
            new_time,
            now,
            hold_id.map(|id| id.as_str()),
            Some(&current.id),
        )
        .await?;
        let mut updated = current.clone();
        updated.time = new_time;
        updated.reschedule_count += 1;
        updated.updated_at = now;
        updated.version += 1;
        store::update_appointment(&mut tx, &updated).await?;
        store::release(&mut tx, &current.id).await?;
        for practitioner in std::iter::once(&doctor).chain(nurse.as_ref()) {
            store::occupy(&mut tx, practitioner.as_str(), &current.id, new_time, None).await?;
        }
        if let Some(hold_id) = hold_id {
            store::end_hold(&mut tx, hold_id, HoldEnd::Consumed, now).await?;
        }
        let event = HistoryEvent {
            id: uuid::Uuid::new_v4().to_string(),
            appointment_id: current.id.clone(),
            sequence: 0,
            kind: EventKind::Rescheduled,
            occurred_at: now,
            actor: ActorRecord::of(caller),
            previous_status: Some(current.status),
            new_status: updated.status,
            previous_time: Some(current.time),
            new_time: Some(new_time),
            participant_subject: String::new(),
            participant_role: None,
            comment: comment.to_owned(),
        };
        let sequence = store::append_event(&mut tx, &event).await?;
        let entry = AuditEntry::new(
            caller,
            "RescheduleAppointment",
            "appointment",
            &current.id,
            Outcome::Ok,
        );
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let announcement = self.announce(&mut tx, &updated, sequence).await?;
        tx.commit().await?;
        self.flush_audit().await;
        announcement.send();
        Ok(updated)
    }

    /// Locks the practitioners, checks the caller may book them and that `time` is free
    /// (ignoring `hold_id`, which the caller consumes, and `moving`, the appointment being
    /// rescheduled); returns the doctor's org and time zone.
    #[allow(clippy::too_many_arguments)]
    async fn lock_and_check(
        &self,
        conn: &mut AnyConnection,
        caller: &Caller,
        doctor: &Subject,
        nurse: Option<&Subject>,
        time: Interval,
        now: Timestamp,
        hold_id: Option<&str>,
        moving: Option<&str>,
    ) -> Result<(String, String), SchedulingError> {
        let identity = person(caller)?;
        let mut practitioners = vec![doctor.as_str()];
        practitioners.extend(nurse.map(Subject::as_str));
        store::lock_practitioners(conn, &practitioners).await?;

        let Some((doctor_calendar, org)) = self.calendar(conn, doctor, time, now, true).await?
        else {
            return Err(SchedulingError::FailedPrecondition(format!(
                "{doctor} has not published any availability"
            )));
        };
        let zone = doctor_calendar.availability.zone.name().to_owned();
        // Membership was checked before the transaction (`require_participants`); here the
        // calendar must be the caller's org's, and the caller the doctor or a coordinator.
        if org != identity.org && doctor.as_str() != identity.subject {
            return Err(SchedulingError::NotFound("practitioner"));
        }
        if doctor.as_str() != identity.subject && !identity.has_role(Role::Coordinator) {
            return Err(SchedulingError::PermissionDenied(
                "you may not book this practitioner",
            ));
        }
        if let Some(hold_id) = hold_id {
            // A hold neither the caller's own nor his org's is answered as one that does not
            // exist.
            let hold = store::hold(conn, hold_id)
                .await?
                .filter(|hold| {
                    hold.created_by.subject == identity.subject || hold.org_id == identity.org
                })
                .ok_or_else(|| SchedulingError::invalid("hold_id", "unknown hold"))?;
            let matches = hold.doctor == doctor.as_str()
                && hold.nurse.as_deref() == nurse.map(Subject::as_str)
                && hold.time == time
                && hold.org_id == org;
            if !matches {
                return Err(SchedulingError::invalid(
                    "hold_id",
                    "the hold is for another time or other practitioners",
                ));
            }
        }
        let ignore = |busy: &slots::Busy| {
            Some(busy.id.as_str()) == hold_id || Some(busy.id.as_str()) == moving
        };
        let not_before = now + self.rules.minimum_notice;
        let mut doctor_calendar = doctor_calendar;
        doctor_calendar.busy.retain(|b| !ignore(b));
        let mut conflicts = slots::conflicts(&doctor_calendar, time, now, not_before);
        if let Some(nurse) = nurse {
            let (mut nurse_calendar, _) = self
                .calendar(conn, nurse, time, now, false)
                .await?
                .ok_or(SchedulingError::NotFound("nurse"))?;
            nurse_calendar.busy.retain(|b| !ignore(b));
            let nurse_conflicts = slots::conflicts(&nurse_calendar, time, now, not_before);
            conflicts.extend(nurse_conflicts.into_iter().filter(|c| {
                !matches!(
                    c.kind,
                    crate::error::ConflictKind::InThePast
                        | crate::error::ConflictKind::MinimumNotice
                )
            }));
        }
        if conflicts.is_empty() {
            Ok((org, zone))
        } else {
            let conflicts = redact_conflicts(conn, identity, conflicts, time).await?;
            Err(SchedulingError::Conflicts(conflicts))
        }
    }

    /// The calendar of `practitioner` around `time`, and the org it belongs to. Without
    /// published availability: `None` if `required`, else a calendar open at all times (a nurse
    /// who publishes none is only protected from double booking).
    pub(crate) async fn calendar(
        &self,
        conn: &mut AnyConnection,
        practitioner: &Subject,
        time: Interval,
        now: Timestamp,
        required: bool,
    ) -> Result<Option<(PractitionerCalendar, String)>, SchedulingError> {
        let row = store::availability_of(conn, practitioner.as_str()).await?;
        let (availability, org) = match row {
            Some(row) => (row.weekly()?, row.org_id),
            None if required => return Ok(None),
            None => (always_open()?, String::new()),
        };
        let zone = availability.zone.tz().clone();
        let from = (time.start - LOOKAROUND)
            .to_zoned_datetime(zone.clone())
            .date()
            .yesterday()
            .unwrap_or(jiff::civil::Date::MIN);
        let to = (time.end + LOOKAROUND)
            .to_zoned_datetime(zone)
            .date()
            .tomorrow()
            .unwrap_or(jiff::civil::Date::MAX);
        let exceptions = store::exceptions_between(
            conn,
            practitioner.as_str(),
            &org,
            &from.to_string(),
            &to.to_string(),
        )
        .await?
        .iter()
        .map(store::ExceptionRow::exception)
        .collect::<Result<Vec<_>, _>>()?;
        let window = Interval {
            start: time.start - LOOKAROUND,
            end: time.end + LOOKAROUND,
        };
        let busy = store::busy_during(conn, practitioner.as_str(), window, now).await?;
        Ok(Some((
            PractitionerCalendar {
                subject: practitioner.clone(),
                availability,
                exceptions,
                busy,
            },
            org,
        )))
    }

    /// Succeeds when the doctor and the nurse a booking names are active members of the
    /// caller's org as a doctor and a nurse (the caller stands for himself); anyone else is
    /// answered as unknown. Asked before the booking transaction, not while it holds locks.
    async fn require_participants(
        &self,
        identity: &Identity,
        doctor: &Subject,
        nurse: Option<&Subject>,
    ) -> Result<(), SchedulingError> {
        self.require_member(identity, doctor.as_str(), &[Role::Doctor], "doctor")
            .await?;
        if let Some(nurse) = nurse {
            self.require_member(identity, nurse.as_str(), &[Role::Nurse], "nurse")
                .await?;
        }
        Ok(())
    }

    /// The appointment an earlier booking with this key made, if any.
    async fn replay(&self, keyed: &KeyedRequest) -> Result<Option<Appointment>, SchedulingError> {
        let mut conn = self.base.db().pool().acquire().await?;
        match keyed.replay(&mut conn).await? {
            None => Ok(None),
            Some(id) => store::appointment(&mut conn, &id).await,
        }
    }
}

/// A calendar open every day, all day (for practitioners without published availability).
fn always_open() -> Result<WeeklyAvailability, SchedulingError> {
    let days = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    let ranges = days
        .into_iter()
        .map(|day| WeeklyRange {
            day,
            start: jiff::civil::Time::MIN,
            end: jiff::civil::Time::MAX,
        })
        .collect();
    Ok(WeeklyAvailability::new(
        Zone::parse("time_zone", "UTC")?,
        ranges,
        0,
    )?)
}

/// What identifies a booking request for idempotency (everything but the key).
fn request_content(request: &BookingRequest) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        request.doctor,
        request.nurse.as_ref().map_or("", Subject::as_str),
        request.patient_pseudonym,
        request.patient_subject.as_ref().map_or("", Subject::as_str),
        request.time.start,
        request.time.end,
        request.reason,
        request.hold_id.as_deref().unwrap_or(""),
    )
}

/// The conflicts as `identity` may see them: an appointment, hold or exception the caller may
/// not read is reported only as "busy at the requested time", without its id or its times.
async fn redact_conflicts(
    conn: &mut AnyConnection,
    identity: &Identity,
    conflicts: Vec<crate::error::Conflict>,
    requested: Interval,
) -> Result<Vec<crate::error::Conflict>, SchedulingError> {
    let mut shown = Vec::with_capacity(conflicts.len());
    for mut conflict in conflicts {
        let mut visible = true;
        if let Some(id) = &conflict.appointment_id {
            visible = match store::appointment(conn, id).await? {
                Some(appointment) => super::appointments::can_see(identity, &appointment),
                None => store::hold(conn, id).await?.is_some_and(|hold| {
                    hold.created_by.subject == identity.subject
                        || (identity.has_role(Role::Coordinator) && identity.org == hold.org_id)
                }),
            };
        }
        if let Some(id) = &conflict.exception_id {
            visible &= store::exception(conn, id)
                .await?
                .is_some_and(|exception| exception.org_id == identity.org);
        }
        if !visible {
            conflict.appointment_id = None;
            conflict.exception_id = None;
            conflict.time = requested;
            conflict.message = format!("{} is not available at this time", conflict.practitioner);
        }
        shown.push(conflict);
    }
    Ok(shown)
}
