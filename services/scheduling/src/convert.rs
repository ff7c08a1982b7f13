//! Conversions between the contract's messages and the domain values, with validation of
//! everything a client sends (INVALID_ARGUMENT naming the field).

use jiff::{SignedDuration, Timestamp, civil::Weekday};
use prost::Message;
use telehealth_kit::identity::{Caller, Role};
use telehealth_kit::ids::Id;
use telehealth_proto::v1 as pb;
use tonic::Status;

use crate::{
    domain::{
        Interval, MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, Subject, WeeklyRange, Zone, hhmm,
        parse_hhmm,
    },
    error::{Conflict, ConflictKind, SchedulingError},
    model::{Appointment, HistoryEvent, ParticipantRole, Status as AppointmentStatus},
    store::{AvailabilityRow, ExceptionRow},
};

use telehealth_kit::record::opt_timestamp;
pub use telehealth_kit::record::timestamp;

type Result<T> = std::result::Result<T, SchedulingError>;

// ---- errors ----------------------------------------------------------------------------------

impl From<SchedulingError> for Status {
    fn from(error: SchedulingError) -> Status {
        status(&error)
    }
}

/// The status of a scheduling error; booking conflicts carry `BookingConflicts` details.
pub fn status(error: &SchedulingError) -> Status {
    let status = telehealth_kit::error::to_status(error);
    let SchedulingError::Conflicts(conflicts) = error else {
        return status;
    };
    let details = pb::BookingConflicts {
        conflicts: conflicts.iter().map(conflict).collect(),
    };
    let rich = tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/telehealth.v1.BookingConflicts".to_owned(),
            value: details.encode_to_vec(),
        }],
    };
    Status::with_details(status.code(), status.message(), rich.encode_to_vec().into())
}

fn conflict(conflict: &Conflict) -> pb::BookingConflict {
    let kind = match conflict.kind {
        ConflictKind::OverlappingAppointment => pb::BookingConflictKind::OverlappingAppointment,
        ConflictKind::Buffer => pb::BookingConflictKind::Buffer,
        ConflictKind::Held => pb::BookingConflictKind::Held,
        ConflictKind::OutsideAvailability => pb::BookingConflictKind::OutsideAvailability,
        ConflictKind::Exception => pb::BookingConflictKind::Exception,
        ConflictKind::InThePast => pb::BookingConflictKind::InThePast,
        ConflictKind::MinimumNotice => pb::BookingConflictKind::MinimumNotice,
    };
    pb::BookingConflict {
        kind: kind as i32,
        practitioner_subject: conflict.practitioner.clone(),
        time: Some(time_range(conflict.time)),
        appointment_id: conflict.appointment_id.clone().unwrap_or_default(),
        exception_id: conflict.exception_id.clone().unwrap_or_default(),
        message: conflict.message.clone(),
    }
}

// ---- scalars ---------------------------------------------------------------------------------

/// Who joined a room: the contract's `ParticipantRole`, unset or unknown refused.
pub fn participant_role(value: i32) -> Result<ParticipantRole> {
    ParticipantRole::from_number(i64::from(value)).ok_or_else(|| {
        SchedulingError::invalid("participant_role", "must be DOCTOR, NURSE or PATIENT")
    })
}

/// A required subject (the contract's rule, [`Subject::parse`]).
pub fn subject(field: &'static str, value: &str) -> Result<Subject> {
    Ok(Subject::parse(field, value)?)
}

/// A subject where the contract says "empty means the caller": an empty value is the caller's
/// own subject when he holds one of `roles` (any role when `roles` is empty); otherwise the
/// field is required (e.g. a coordinator names the doctor he books for).
pub fn subject_or_caller(
    field: &'static str,
    value: &str,
    caller: &Caller,
    roles: &[Role],
) -> Result<Subject> {
    if !value.is_empty() {
        return Ok(Subject::parse(field, value)?);
    }
    match caller {
        Caller::Person(identity)
            if roles.is_empty() || roles.iter().any(|role| identity.has_role(*role)) =>
        {
            Ok(Subject::parse(field, &identity.subject)?)
        }
        Caller::Person(_) => {
            let who = roles
                .iter()
                .map(|role| format!("a {}", role.as_str()))
                .collect::<Vec<_>>()
                .join(" or ");
            Err(SchedulingError::invalid(
                field,
                format!("is required: empty means yourself, only for {who}"),
            ))
        }
        Caller::Service(_) => Err(SchedulingError::invalid(field, "is required")),
    }
}

/// An optional subject (empty means none).
pub fn optional_subject(field: &'static str, value: &str) -> Result<Option<Subject>> {
    if value.is_empty() {
        Ok(None)
    } else {
        Ok(Some(Subject::parse(field, value)?))
    }
}

/// A required UUID id.
pub fn id<K>(field: &'static str, value: &str) -> Result<Id<K>> {
    Ok(Id::parse(field, value)?)
}

/// A required instant on a whole minute.
pub fn instant(field: &'static str, value: Option<&prost_types::Timestamp>) -> Result<Timestamp> {
    let value = value.ok_or_else(|| SchedulingError::invalid(field, "is required"))?;
    let at = telehealth_kit::record::from_wire(value)
        .ok_or_else(|| SchedulingError::invalid(field, "is not a valid timestamp"))?;
    Ok(at)
}

/// A required range, at most `max_days` long.
pub fn range(
    field: &'static str,
    value: Option<&pb::TimeRange>,
    max_days: i64,
) -> Result<Interval> {
    let value = value.ok_or_else(|| SchedulingError::invalid(field, "is required"))?;
    let start = instant(field, value.start_time.as_ref())?;
    let end = instant(field, value.end_time.as_ref())?;
    if end <= start {
        return Err(SchedulingError::invalid(
            field,
            "end_time must be after start_time",
        ));
    }
    if end.duration_since(start) > SignedDuration::from_hours(24 * max_days) {
        return Err(SchedulingError::invalid(
            field,
            format!("must not span more than {max_days} days"),
        ));
    }
    Ok(Interval { start, end })
}

/// An appointment duration in minutes: 5-480, a multiple of 5.
pub fn duration(field: &'static str, minutes: i32) -> Result<SignedDuration> {
    let minutes = i64::from(minutes);
    if !(MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&minutes) || minutes % 5 != 0 {
        return Err(SchedulingError::invalid(
            field,
            format!(
                "must be a multiple of 5 between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES} minutes"
            ),
        ));
    }
    Ok(SignedDuration::from_mins(minutes))
}

/// A required start instant on a whole minute.
pub fn start_minute(
    field: &'static str,
    start: Option<&prost_types::Timestamp>,
) -> Result<Timestamp> {
    let start = instant(field, start)?;
    if start.as_second() % 60 != 0 || start.subsec_nanosecond() != 0 {
        return Err(SchedulingError::invalid(field, "must be on a whole minute"));
    }
    Ok(start)
}

/// The appointment interval from a start on a whole minute and a duration.
pub fn appointment_time(
    start: Option<&prost_types::Timestamp>,
    minutes: i32,
    field: &'static str,
) -> Result<Interval> {
    let start = start_minute(field, start)?;
    let length = duration("duration_minutes", minutes)?;
    Ok(Interval {
        start,
        end: start + length,
    })
}

/// A repeated field of at most `max` values, checked before anything is done with them.
pub fn bounded<'a, T>(field: &'static str, values: &'a [T], max: usize) -> Result<&'a [T]> {
    if values.len() > max {
        return Err(SchedulingError::invalid(
            field,
            format!("at most {max} values, got {}", values.len()),
        ));
    }
    Ok(values)
}

/// A client-generated idempotency key, as the kit accepts it (1-128 characters, surrounding
/// spaces ignored).
pub fn idempotency_key(value: &str) -> Result<String> {
    telehealth_kit::idempotency::parse_key(value)
        .map_err(|reason| SchedulingError::invalid("idempotency_key", reason))
}

/// Optional free text, trimmed (the contract: "trimmed by the server"), of at most `max`
/// characters once trimmed; empty or only spaces is empty.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(SchedulingError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(SchedulingError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// Required free text: as [`text`], and not empty once trimmed.
pub fn required_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let text = text(field, value, max)?;
    if text.is_empty() {
        return Err(SchedulingError::invalid(
            field,
            format!("is required (1 to {max} characters, not only spaces)"),
        ));
    }
    Ok(text)
}

/// A patient pseudonym: 1-64 characters of `[A-Za-z0-9._:-]`.
pub fn pseudonym(value: Option<&pb::PatientRef>) -> Result<String> {
    let pseudonym = value.map(|p| p.pseudonym.as_str()).unwrap_or_default();
    Ok(telehealth_kit::ids::pseudonym(
        "patient.pseudonym",
        pseudonym,
    )?)
}

/// A weekday of the contract.
pub fn weekday(value: i32) -> Result<Weekday> {
    let day = pb::DayOfWeek::try_from(value).unwrap_or(pb::DayOfWeek::Unspecified);
    let offset = day as i8;
    if day == pb::DayOfWeek::Unspecified {
        return Err(SchedulingError::invalid(
            "weekly_ranges.day",
            "must be MONDAY to SUNDAY",
        ));
    }
    Weekday::from_monday_one_offset(offset)
        .map_err(|_| SchedulingError::invalid("weekly_ranges.day", "unknown day"))
}

/// Weekly ranges of the contract.
pub fn weekly_ranges(ranges: &[pb::WeeklyRange]) -> Result<Vec<WeeklyRange>> {
    ranges
        .iter()
        .map(|r| {
            Ok(WeeklyRange {
                day: weekday(r.day)?,
                start: parse_hhmm("weekly_ranges.start_local_time", &r.start_local_time)?,
                end: parse_hhmm("weekly_ranges.end_local_time", &r.end_local_time)?,
            })
        })
        .collect()
}

/// A time zone (empty = Europe/Paris).
pub fn zone(value: &str) -> Result<Zone> {
    if value.is_empty() {
        Ok(Zone::paris())
    } else {
        Ok(Zone::parse("time_zone", value)?)
    }
}

// ---- records ---------------------------------------------------------------------------------

/// A time range of the contract.
pub fn time_range(interval: Interval) -> pb::TimeRange {
    pb::TimeRange {
        start_time: Some(timestamp(interval.start)),
        end_time: Some(timestamp(interval.end)),
    }
}

/// The contract's status number.
pub fn status_number(status: AppointmentStatus) -> i32 {
    crate::store::status_number(status) as i32
}

/// The domain status of a contract status.
pub fn status_of(value: i32) -> Result<AppointmentStatus> {
    match pb::AppointmentStatus::try_from(value).unwrap_or(pb::AppointmentStatus::Unspecified) {
        pb::AppointmentStatus::Booked => Ok(AppointmentStatus::Booked),
        pb::AppointmentStatus::Arrived => Ok(AppointmentStatus::Arrived),
        pb::AppointmentStatus::InProgress => Ok(AppointmentStatus::InProgress),
        pb::AppointmentStatus::Fulfilled => Ok(AppointmentStatus::Fulfilled),
        pb::AppointmentStatus::Cancelled => Ok(AppointmentStatus::Cancelled),
        pb::AppointmentStatus::Noshow => Ok(AppointmentStatus::NoShow),
        pb::AppointmentStatus::Unspecified => {
            Err(SchedulingError::invalid("statuses", "unknown status"))
        }
    }
}

/// An appointment of the contract.
pub fn appointment(a: &Appointment) -> pb::Appointment {
    pb::Appointment {
        appointment_id: a.id.clone(),
        org_id: a.org_id.clone(),
        status: status_number(a.status),
        time: Some(time_range(a.time)),
        duration_minutes: i32::try_from(a.time.duration().as_mins()).unwrap_or(0),
        time_zone: a.time_zone.clone(),
        doctor_subject: a.doctor.clone(),
        nurse_subject: a.nurse.clone().unwrap_or_default(),
        patient: Some(pb::PatientRef {
            pseudonym: a.patient_pseudonym.clone(),
        }),
        patient_subject: a.patient_subject.clone().unwrap_or_default(),
        reason: a.reason.clone(),
        room_id: a.room_id.clone().unwrap_or_default(),
        reschedule_count: i32::try_from(a.reschedule_count).unwrap_or(i32::MAX),
        cancellation: a.cancellation.as_ref().map(|c| pb::Cancellation {
            cancelled_by: Some(c.by.to_proto()),
            cancelled_at: Some(timestamp(c.at)),
            reason: c.reason,
            comment: c.comment.clone(),
        }),
        arrived_at: opt_timestamp(a.arrived_at),
        started_at: opt_timestamp(a.started_at),
        finished_at: opt_timestamp(a.finished_at),
        no_show_at: opt_timestamp(a.no_show_at),
        created_at: Some(timestamp(a.created_at)),
        created_by: Some(a.created_by.to_proto()),
        updated_at: Some(timestamp(a.updated_at)),
        version: a.version,
        consent_id: a.consent_id.clone().unwrap_or_default(),
    }
}

/// A history event of the contract.
pub fn event(e: &HistoryEvent) -> pb::AppointmentEvent {
    pb::AppointmentEvent {
        event_id: e.id.clone(),
        appointment_id: e.appointment_id.clone(),
        sequence: e.sequence,
        kind: e.kind as i32,
        occurred_at: Some(timestamp(e.occurred_at)),
        actor: Some(e.actor.to_proto()),
        previous_status: e.previous_status.map_or(0, status_number),
        new_status: status_number(e.new_status),
        previous_time: e.previous_time.map(time_range),
        new_time: e.new_time.map(time_range),
        participant_subject: e.participant_subject.clone(),
        participant_role: e.participant_role.map_or(0, |role| role as i32),
        comment: e.comment.clone(),
    }
}

/// An availability of the contract.
pub fn availability(row: &AvailabilityRow) -> Result<pb::Availability> {
    let weekly = row.weekly()?;
    Ok(pb::Availability {
        practitioner_subject: row.practitioner.clone(),
        org_id: row.org_id.clone(),
        time_zone: row.time_zone.clone(),
        weekly_ranges: weekly
            .ranges
            .iter()
            .map(|r| pb::WeeklyRange {
                day: i32::from(r.day.to_monday_one_offset()),
                start_local_time: hhmm(r.start),
                end_local_time: if r.end == jiff::civil::Time::MAX {
                    "24:00".into()
                } else {
                    hhmm(r.end)
                },
            })
            .collect(),
        buffer_minutes: i32::try_from(row.buffer_minutes).unwrap_or(0),
        version: row.version,
        updated_at: Some(timestamp(row.updated_at)),
        updated_by: Some(row.updated_by.to_proto()),
    })
}

/// An exception of the contract.
pub fn exception(row: &ExceptionRow) -> pb::AvailabilityException {
    let kind = match row.kind.as_str() {
        "leave" => pb::AvailabilityExceptionKind::Leave,
        "closure" => pb::AvailabilityExceptionKind::Closure,
        _ => pb::AvailabilityExceptionKind::ExtraHours,
    };
    pb::AvailabilityException {
        exception_id: row.exception_id.clone(),
        kind: kind as i32,
        practitioner_subject: row.practitioner.clone().unwrap_or_default(),
        org_wide: row.practitioner.is_none(),
        start_date: row.start_date.clone(),
        end_date: row.end_date.clone(),
        start_local_time: row.start_local.clone().unwrap_or_default(),
        end_local_time: row.end_local.clone().unwrap_or_default(),
        time_zone: row.time_zone.clone(),
        note: row.note.clone(),
        created_at: Some(timestamp(row.created_at)),
        created_by: Some(row.created_by.to_proto()),
    }
}
