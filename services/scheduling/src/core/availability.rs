//! Weekly availability and its exceptions.

use jiff::civil::Date;
use telehealth_kit::{
    audit::Outcome,
    idempotency::{Claim, KeyedRequest},
    identity::{Caller, Identity, Role},
};

use super::{PRACTITIONER_ROLES, Scheduler, person};
use crate::{
    domain::{ExceptionKind, Subject, WeeklyAvailability, Zone, end_text, hhmm},
    error::SchedulingError,
    model::ExceptionId,
    store::{self, AvailabilityRow, ExceptionRow},
};
use telehealth_kit::record::ActorRecord;

/// A new exception, validated.
#[derive(Debug, Clone)]
pub struct NewException {
    /// The client's idempotency key (scoped to the caller).
    pub idempotency_key: String,
    pub kind: ExceptionKind,
    pub practitioner: Option<Subject>,
    pub org_wide: bool,
    pub start_date: Date,
    pub end_date: Date,
    pub window: Option<(jiff::civil::Time, jiff::civil::Time)>,
    pub zone: Zone,
    pub note: String,
}

/// What `AddAvailabilityException` answers.
#[derive(Debug, Clone)]
pub struct AddedException {
    pub exception: ExceptionRow,
    /// Visible BOOKED or ARRIVED appointments in the leave or closure.
    pub affected_appointment_ids: Vec<String>,
    /// True when this answers an earlier request with the same idempotency key.
    pub replay: bool,
}

/// The idempotency scope of `AddAvailabilityException`.
const ADD_EXCEPTION: &str = "AddAvailabilityException";

/// What identifies an exception request for idempotency (everything but the key), with the
/// practitioner as resolved (empty = the caller).
fn exception_content(new: &NewException, practitioner: Option<&str>) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        kind_name(new.kind),
        practitioner.unwrap_or(""),
        new.org_wide,
        new.start_date,
        new.end_date,
        new.window
            .map(|(start, end)| format!("{}-{}", hhmm(start), end_text(end)))
            .unwrap_or_default(),
        new.zone.name(),
        new.note,
    )
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
        let mut tx = self.base.db().pool().begin().await?;
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
        let mut row = AvailabilityRow {
            practitioner: practitioner.as_str().to_owned(),
            org_id: org,
            time_zone: availability.zone.name().to_owned(),
            ranges_json: store::ranges_json(&availability.ranges),
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
        let mut conn = self.base.db().pool().acquire().await?;
        match store::availability_of(&mut conn, practitioner.as_str()).await? {
            Some(row) if row.org_id == identity.org || row.practitioner == identity.subject => {
                Ok(row)
            }
            _ => Err(SchedulingError::NotFound("availability")),
        }
    }

    /// Adds an exception; returns it with the appointments it affects. A retry with the same
    /// idempotency key and the same request returns the first exception (`replay`), with the
    /// appointments it affects now; the same key with another request is FAILED_PRECONDITION.
    pub async fn add_exception(
        &self,
        caller: &Caller,
        new: NewException,
    ) -> Result<AddedException, SchedulingError> {
        let identity = person(caller)?;
        if new.org_wide && !identity.has_role(Role::Coordinator) {
            return Err(SchedulingError::PermissionDenied(
                "only a coordinator may close the whole centre",
            ));
        }
        let practitioner = match (&new.practitioner, new.org_wide) {
            (_, true) => None,
            (Some(p), false) => {
                let mut conn = self.base.db().pool().acquire().await?;
                let calendar = store::availability_of(&mut conn, p.as_str()).await?;
                drop(conn);
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
        let keyed = KeyedRequest::new(
            &identity.subject,
            ADD_EXCEPTION,
            &new.idempotency_key,
            exception_content(&new, practitioner.as_deref()),
        );
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
            note: new.note.clone(),
            created_at: self.now(),
            created_by: ActorRecord::of(caller),
        };
        let mut tx = self.base.db().pool().begin().await?;
        // The key is claimed by the transaction's first write, so a retry racing with the first
        // attempt waits for it and then replays it; a refused request leaves no key behind.
        let (row, replay) = match keyed
            .claim(&mut tx, &row.exception_id, row.created_at)
            .await?
        {
            Claim::First => {
                store::insert_exception(&mut tx, &row).await?;
                tx.commit().await?;
                (row, false)
            }
            Claim::Replay(id) => {
                let first = store::exception_ever(&mut tx, &id).await?.ok_or_else(|| {
                    SchedulingError::Unavailable(
                        "the first exception of this key is missing".into(),
                    )
                })?;
                (first, true)
            }
        };
        let affected = self.affected_by(identity, &row).await?;
        self.audit(
            caller,
            ADD_EXCEPTION,
            "availability_exception",
            &row.exception_id,
            Outcome::Ok,
        )
        .await;
        Ok(AddedException {
            exception: row,
            affected_appointment_ids: affected,
            replay,
        })
    }

    /// The visible BOOKED or ARRIVED appointments that fall in a leave or closure (none for
    /// extra hours): they are kept, and reported so they can be moved.
    async fn affected_by(
        &self,
        identity: &Identity,
        row: &ExceptionRow,
    ) -> Result<Vec<String>, SchedulingError> {
        let domain = row.exception()?;
        if domain.kind == ExceptionKind::ExtraHours {
            return Ok(Vec::new());
        }
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
            doctor: row.practitioner.clone(),
            window: Some(crate::domain::Interval { start, end }),
            statuses: vec![crate::model::Status::Booked, crate::model::Status::Arrived],
            ..Default::default()
        };
        let mut conn = self.base.db().pool().acquire().await?;
        let mut affected = Vec::new();
        for appointment in store::list_appointments(&mut conn, &filter, None, 1000).await? {
            let inside_window = match domain.window {
                None => true,
                Some((from, to)) => {
                    let tz = domain.zone.tz().clone();
                    let starts = appointment.time.start.to_zoned_datetime(tz.clone()).time();
                    let ends = appointment.time.end.to_zoned_datetime(tz).time();
                    starts < to && from < ends
                }
            };
            if inside_window {
                affected.push(appointment.id);
            }
        }
        Ok(affected)
    }

    /// Removes an exception the caller manages.
    pub async fn remove_exception(
        &self,
        caller: &Caller,
        id: &ExceptionId,
    ) -> Result<ExceptionRow, SchedulingError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
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

    /// Exceptions of `practitioner` (and his org's closures) between two local dates: `from`
    /// defaults to today in the practitioner's zone (Europe/Paris without published
    /// availability), `to` to 366 days after `from`.
    pub async fn exceptions(
        &self,
        caller: &Caller,
        practitioner: &Subject,
        from: Option<Date>,
        to: Option<Date>,
    ) -> Result<Vec<ExceptionRow>, SchedulingError> {
        let identity = person(caller)?;
        // The exceptions a member of the caller's org has there (never another org's).
        self.require_member(
            identity,
            practitioner.as_str(),
            &PRACTITIONER_ROLES,
            "practitioner",
        )
        .await?;
        let mut conn = self.base.db().pool().acquire().await?;
        let from = match from {
            Some(from) => from,
            None => {
                let zone = match store::availability_of(&mut conn, practitioner.as_str()).await? {
                    Some(row) if row.org_id == identity.org => {
                        Zone::parse("time_zone", &row.time_zone)?
                    }
                    _ => Zone::paris(),
                };
                self.now().to_zoned_datetime(zone.tz().clone()).date()
            }
        };
        let to = match to {
            Some(to) => to,
            None => from
                .checked_add(jiff::Span::new().days(366))
                .map_err(|e| SchedulingError::invalid("from_date", e.to_string()))?,
        };
        if to < from || from.until(to).map_or(true, |span| span.get_days() > 366) {
            return Err(SchedulingError::invalid(
                "to_date",
                "must be on or after from_date, at most 366 days later",
            ));
        }
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
