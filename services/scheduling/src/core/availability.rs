//! Weekly availability and its exceptions.

use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Serialize};
use telehealth_kit::{
    audit::Outcome,
    identity::{Caller, Role},
};

use super::{PRACTITIONER_ROLES, Scheduler, person};
use crate::{
    domain::{
        AvailabilityException, ExceptionKind, Subject, WeeklyAvailability, WeeklyRange, Zone, hhmm,
        parse_date, parse_hhmm,
    },
    error::SchedulingError,
    store::{self, AvailabilityRow, ExceptionRow},
};
use telehealth_kit::record::ActorRecord;

/// How ranges are stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRange {
    day: i8,
    start: String,
    end: String,
}

/// A new exception, validated.
#[derive(Debug, Clone)]
pub struct NewException {
    pub kind: ExceptionKind,
    pub practitioner: Option<Subject>,
    pub org_wide: bool,
    pub start_date: Date,
    pub end_date: Date,
    pub window: Option<(jiff::civil::Time, jiff::civil::Time)>,
    pub zone: Zone,
    pub note: String,
}

/// Reads a stored availability back into the domain type.
pub fn weekly(row: &AvailabilityRow) -> Result<WeeklyAvailability, SchedulingError> {
    let zone = Zone::parse("time_zone", &row.time_zone)?;
    let stored: Vec<StoredRange> = serde_json::from_str(&row.ranges_json).map_err(|e| {
        SchedulingError::Unavailable(format!("stored availability is unreadable: {e}"))
    })?;
    let ranges = stored
        .iter()
        .map(|r| {
            Ok(WeeklyRange {
                day: Weekday::from_monday_one_offset(r.day).map_err(|_| {
                    SchedulingError::Unavailable("stored weekday is invalid".into())
                })?,
                start: parse_hhmm("weekly_ranges", &r.start)?,
                end: parse_hhmm("weekly_ranges", &r.end)?,
            })
        })
        .collect::<Result<Vec<_>, SchedulingError>>()?;
    WeeklyAvailability::new(zone, ranges, row.buffer_minutes)
}

/// Reads a stored exception back into the domain type.
pub fn exception(row: &ExceptionRow) -> Result<AvailabilityException, SchedulingError> {
    let kind = match row.kind.as_str() {
        "leave" => ExceptionKind::Leave,
        "closure" => ExceptionKind::Closure,
        _ => ExceptionKind::ExtraHours,
    };
    let window = match (&row.start_local, &row.end_local) {
        (Some(start), Some(end)) => Some((
            parse_hhmm("start_local_time", start)?,
            parse_hhmm("end_local_time", end)?,
        )),
        _ => None,
    };
    Ok(AvailabilityException {
        id: row.exception_id.clone(),
        kind,
        practitioner: row
            .practitioner
            .as_deref()
            .map(|p| Subject::parse("practitioner_subject", p))
            .transpose()?,
        start_date: parse_date("start_date", &row.start_date)?,
        end_date: parse_date("end_date", &row.end_date)?,
        window,
        zone: Zone::parse("time_zone", &row.time_zone)?,
    })
}

fn kind_name(kind: ExceptionKind) -> &'static str {
    match kind {
        ExceptionKind::Leave => "leave",
        ExceptionKind::Closure => "closure",
        ExceptionKind::ExtraHours => "extra_hours",
    }
}

impl Scheduler {
    /// Replaces `practitioner`'s weekly availability.
    pub async fn set_availability(
        &self,
        caller: &Caller,
        practitioner: &Subject,
        availability: &WeeklyAvailability,
        expected_version: i64,
    ) -> Result<AvailabilityRow, SchedulingError> {
        let identity = person(caller)?;
        let mut tx = self.db.pool().begin().await?;
        // Write first: queue with bookings of this practitioner (and keep SQLite from upgrading
        // a read snapshot).
        store::lock_practitioners(&mut tx, &[practitioner.as_str()]).await?;
        let existing = store::availability_of(&mut tx, practitioner.as_str()).await?;
        // A calendar belongs to the org of its publisher, who is the practitioner or a
        // coordinator of an org the practitioner is a member of (never to a first writer).
        self.require_manager(
            identity,
            practitioner.as_str(),
            existing.as_ref().map(|e| e.org_id.as_str()),
        )
        .await?;
        let org = existing
            .as_ref()
            .map_or(identity.org.clone(), |e| e.org_id.clone());
        let ranges: Vec<StoredRange> = availability
            .ranges
            .iter()
            .map(|r| StoredRange {
                day: r.day.to_monday_one_offset(),
                start: hhmm(r.start),
                end: end_text(r.end),
            })
            .collect();
        let mut row = AvailabilityRow {
            practitioner: practitioner.as_str().to_owned(),
            org_id: org,
            time_zone: availability.zone.name().to_owned(),
            ranges_json: serde_json::to_string(&ranges).unwrap_or_else(|_| "[]".into()),
            buffer_minutes: availability.buffer_minutes,
            version: 0,
            updated_at: self.now(),
            updated_by: ActorRecord::of(caller),
        };
        row.version = store::save_availability(&mut tx, &row, expected_version).await?;
        tx.commit().await?;
        self.audit(
            caller,
            "SetWeeklyAvailability",
            "availability",
            practitioner.as_str(),
            Outcome::Ok,
        )
        .await;
        Ok(row)
    }

    /// `practitioner`'s availability, for callers of the same org.
    pub async fn availability(
        &self,
        caller: &Caller,
        practitioner: &Subject,
    ) -> Result<AvailabilityRow, SchedulingError> {
        let identity = person(caller)?;
        let mut conn = self.db.pool().acquire().await?;
        match store::availability_of(&mut conn, practitioner.as_str()).await? {
            Some(row) if row.org_id == identity.org || row.practitioner == identity.subject => {
                Ok(row)
            }
            _ => Err(SchedulingError::NotFound("availability")),
        }
    }

    /// Adds an exception; returns it with the appointments it affects.
    pub async fn add_exception(
        &self,
        caller: &Caller,
        new: NewException,
    ) -> Result<(ExceptionRow, Vec<String>), SchedulingError> {
        let identity = person(caller)?;
        if new.org_wide && !identity.has_role(Role::Coordinator) {
            return Err(SchedulingError::PermissionDenied(
                "only a coordinator may close the whole centre",
            ));
        }
        let mut conn = self.db.pool().acquire().await?;
        let practitioner = match (&new.practitioner, new.org_wide) {
            (_, true) => None,
            (Some(p), false) => {
                let calendar = store::availability_of(&mut conn, p.as_str()).await?;
                self.require_manager(
                    identity,
                    p.as_str(),
                    calendar.as_ref().map(|r| r.org_id.as_str()),
                )
                .await?;
                Some(p.as_str().to_owned())
            }
            (None, false) => Some(identity.subject.clone()),
        };
        let row = ExceptionRow {
            exception_id: uuid::Uuid::new_v4().to_string(),
            org_id: identity.org.clone(),
            practitioner: practitioner.clone(),
            kind: kind_name(new.kind).to_owned(),
            start_date: new.start_date.to_string(),
            end_date: new.end_date.to_string(),
            start_local: new.window.map(|(s, _)| hhmm(s)),
            end_local: new.window.map(|(_, e)| end_text(e)),
            time_zone: new.zone.name().to_owned(),
            note: new.note,
            created_at: self.now(),
            created_by: ActorRecord::of(caller),
        };
        store::insert_exception(&mut conn, &row).await?;
        // Appointments kept during a leave or closure are reported so they can be moved.
        let mut affected = Vec::new();
        if new.kind != ExceptionKind::ExtraHours {
            let domain = exception(&row)?;
            let start = domain
                .start_date
                .to_zoned_datetime(domain.zone.tz().clone())
                .map_err(|e| SchedulingError::invalid("start_date", e.to_string()))?
                .timestamp();
            let end = domain
                .end_date
                .tomorrow()
                .and_then(|d| d.to_zoned_datetime(domain.zone.tz().clone()))
                .map_err(|e| SchedulingError::invalid("end_date", e.to_string()))?
                .timestamp();
            let filter = store::AppointmentFilter {
                org_id: Some(identity.org.clone()),
                doctor: practitioner.clone(),
                window: Some(crate::domain::Interval { start, end }),
                statuses: vec![crate::model::Status::Booked, crate::model::Status::Arrived],
                ..Default::default()
            };
            for appointment in store::list_appointments(&mut conn, &filter, None, 1000).await? {
                let inside_window = match domain.window {
                    None => true,
                    Some((from, to)) => {
                        let local = appointment
                            .time
                            .start
                            .to_zoned_datetime(domain.zone.tz().clone());
                        local.time() < to
                            && from
                                < appointment
                                    .time
                                    .end
                                    .to_zoned_datetime(domain.zone.tz().clone())
                                    .time()
                    }
                };
                if inside_window {
                    affected.push(appointment.id);
                }
            }
        }
        drop(conn);
        self.audit(
            caller,
            "AddAvailabilityException",
            "availability_exception",
            &row.exception_id,
            Outcome::Ok,
        )
        .await;
        Ok((row, affected))
    }

    /// Removes an exception the caller manages.
    pub async fn remove_exception(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ExceptionRow, SchedulingError> {
        let identity = person(caller)?;
        let mut conn = self.db.pool().acquire().await?;
        let row = store::exception(&mut conn, id)
            .await?
            .ok_or(SchedulingError::NotFound("exception"))?;
        let allowed = match &row.practitioner {
            Some(p) => {
                row.org_id == identity.org
                    && self
                        .require_manager(identity, p, Some(&row.org_id))
                        .await
                        .is_ok()
            }
            None => identity.has_role(Role::Coordinator) && identity.org == row.org_id,
        };
        if !allowed {
            self.audit(
                caller,
                "RemoveAvailabilityException",
                "availability_exception",
                id,
                Outcome::NotFound,
            )
            .await;
            return Err(SchedulingError::NotFound("exception"));
        }
        store::remove_exception(&mut conn, id, self.now()).await?;
        drop(conn);
        self.audit(
            caller,
            "RemoveAvailabilityException",
            "availability_exception",
            id,
            Outcome::Ok,
        )
        .await;
        Ok(row)
    }

    /// Exceptions of `practitioner` (and his org's closures) between two local dates.
    pub async fn exceptions(
        &self,
        caller: &Caller,
        practitioner: &Subject,
        from: Date,
        to: Date,
    ) -> Result<Vec<ExceptionRow>, SchedulingError> {
        let identity = person(caller)?;
        let mut conn = self.db.pool().acquire().await?;
        // The exceptions a member of the caller's org has there (never another org's).
        self.require_member(
            identity,
            practitioner.as_str(),
            &PRACTITIONER_ROLES,
            "practitioner",
        )
        .await?;
        let rows = store::exceptions_between(
            &mut conn,
            practitioner.as_str(),
            &identity.org,
            &from.to_string(),
            &to.to_string(),
        )
        .await?
        .into_iter()
        // A practitioner of several orgs: another org's records stay with that org.
        .filter(|row| row.org_id == identity.org)
        .collect();
        Ok(rows)
    }
}

/// `HH:MM` of a range end, with the end of day written `24:00`.
fn end_text(time: jiff::civil::Time) -> String {
    if time == jiff::civil::Time::MAX {
        "24:00".to_owned()
    } else {
        hhmm(time)
    }
}
