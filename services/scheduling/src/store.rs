//! Every SQL statement of the scheduling service, one function per question or change.
//!
//! Functions take a connection (`&mut AnyConnection`), so the service decides the transaction
//! boundaries. Instants are stored as Unix microseconds.

use jiff::Timestamp;
use sqlx::{AnyConnection, Row, any::AnyRow};

use jiff::civil::Weekday;
use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        AvailabilityException, ExceptionKind, Interval, Subject, WeeklyAvailability, WeeklyRange,
        Zone, end_text, hhmm, parse_date, parse_hhmm,
    },
    error::SchedulingError,
    model::{
        ActorRecord, Appointment, Cancellation, EventKind, HistoryEvent, ParticipantRole, Status,
    },
    slots::Busy,
};

pub use telehealth_kit::record::{instant, micros};
use telehealth_kit::record::{json, opt_instant};

type Result<T> = std::result::Result<T, SchedulingError>;

fn actor(text: &str) -> ActorRecord {
    serde_json::from_str(text).unwrap_or_default()
}

// ---- availability ----------------------------------------------------------------------------

/// A stored weekly availability.
#[derive(Debug, Clone)]
pub struct AvailabilityRow {
    pub practitioner: String,
    pub org_id: String,
    pub time_zone: String,
    pub ranges_json: String,
    pub buffer_minutes: i64,
    pub version: i64,
    pub updated_at: Timestamp,
    pub updated_by: ActorRecord,
}

/// The availability of `practitioner`, if published.
pub async fn availability_of(
    conn: &mut AnyConnection,
    practitioner: &str,
) -> Result<Option<AvailabilityRow>> {
    let row = sqlx::query(
        "SELECT practitioner, org_id, time_zone, ranges_json, buffer_minutes, version, updated_at_us, updated_by \
         FROM availability WHERE practitioner = $1",
    )
    .bind(practitioner)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(AvailabilityRow {
            practitioner: row.try_get("practitioner")?,
            org_id: row.try_get("org_id")?,
            time_zone: row.try_get("time_zone")?,
            ranges_json: row.try_get("ranges_json")?,
            buffer_minutes: row.try_get("buffer_minutes")?,
            version: row.try_get("version")?,
            updated_at: instant(row.try_get("updated_at_us")?),
            updated_by: actor(&row.try_get::<String, _>("updated_by")?),
        })
    })
    .transpose()
}

/// Inserts or replaces an availability; `expected_version` 0 skips the version check.
pub async fn save_availability(
    conn: &mut AnyConnection,
    row: &AvailabilityRow,
    expected_version: i64,
) -> Result<i64> {
    let current = availability_of(conn, &row.practitioner).await?;
    let current_version = current.as_ref().map_or(0, |c| c.version);
    if expected_version != 0 && expected_version != current_version {
        return Err(SchedulingError::VersionMismatch {
            current: current_version,
        });
    }
    let version = current_version + 1;
    if current.is_some() {
        sqlx::query(
            "UPDATE availability SET org_id = $2, time_zone = $3, ranges_json = $4, buffer_minutes = $5, \
             version = $6, updated_at_us = $7, updated_by = $8 WHERE practitioner = $1 AND version = $9",
        )
        .bind(&row.practitioner)
        .bind(&row.org_id)
        .bind(&row.time_zone)
        .bind(&row.ranges_json)
        .bind(row.buffer_minutes)
        .bind(version)
        .bind(micros(row.updated_at))
        .bind(json(&row.updated_by))
        .bind(current_version)
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO availability (practitioner, org_id, time_zone, ranges_json, buffer_minutes, version, \
             updated_at_us, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.practitioner)
        .bind(&row.org_id)
        .bind(&row.time_zone)
        .bind(&row.ranges_json)
        .bind(row.buffer_minutes)
        .bind(version)
        .bind(micros(row.updated_at))
        .bind(json(&row.updated_by))
        .execute(&mut *conn)
        .await?;
    }
    Ok(version)
}

// ---- exceptions ------------------------------------------------------------------------------

/// A stored availability exception.
#[derive(Debug, Clone)]
pub struct ExceptionRow {
    pub exception_id: String,
    pub org_id: String,
    pub practitioner: Option<String>,
    pub kind: String,
    pub start_date: String,
    pub end_date: String,
    pub start_local: Option<String>,
    pub end_local: Option<String>,
    pub time_zone: String,
    pub note: String,
    pub created_at: Timestamp,
    pub created_by: ActorRecord,
}

/// How weekly ranges are stored (`ranges_json`).
#[derive(Debug, Serialize, Deserialize)]
struct StoredRange {
    day: i8,
    start: String,
    end: String,
}

/// The stored form of weekly ranges.
pub fn ranges_json(ranges: &[WeeklyRange]) -> String {
    let stored: Vec<StoredRange> = ranges
        .iter()
        .map(|r| StoredRange {
            day: r.day.to_monday_one_offset(),
            start: hhmm(r.start),
            end: end_text(r.end),
        })
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".into())
}

impl AvailabilityRow {
    /// Reads a stored availability back into the domain type.
    pub fn weekly(&self) -> Result<WeeklyAvailability> {
        let zone = Zone::parse("time_zone", &self.time_zone)?;
        let stored: Vec<StoredRange> = serde_json::from_str(&self.ranges_json).map_err(|e| {
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
            .collect::<Result<Vec<_>>>()?;
        Ok(WeeklyAvailability::new(zone, ranges, self.buffer_minutes)?)
    }
}

impl ExceptionRow {
    /// Reads a stored exception back into the domain type.
    pub fn exception(&self) -> Result<AvailabilityException> {
        let kind = match self.kind.as_str() {
            "leave" => ExceptionKind::Leave,
            "closure" => ExceptionKind::Closure,
            _ => ExceptionKind::ExtraHours,
        };
        let window = match (&self.start_local, &self.end_local) {
            (Some(start), Some(end)) => Some((
                parse_hhmm("start_local_time", start)?,
                parse_hhmm("end_local_time", end)?,
            )),
            _ => None,
        };
        Ok(AvailabilityException {
            id: self.exception_id.clone(),
            kind,
            practitioner: self
                .practitioner
                .as_deref()
                .map(|p| Subject::parse("practitioner_subject", p))
                .transpose()?,
            start_date: parse_date("start_date", &self.start_date)?,
            end_date: parse_date("end_date", &self.end_date)?,
            window,
            zone: Zone::parse("time_zone", &self.time_zone)?,
        })
    }
}

const EXCEPTION_COLUMNS: &str = "exception_id, org_id, practitioner, kind, start_date, end_date, start_local, \
     end_local, time_zone, note, created_at_us, created_by";

fn exception_row(row: &AnyRow) -> Result<ExceptionRow> {
    Ok(ExceptionRow {
        exception_id: row.try_get("exception_id")?,
        org_id: row.try_get("org_id")?,
        practitioner: row.try_get("practitioner")?,
        kind: row.try_get("kind")?,
        start_date: row.try_get("start_date")?,
        end_date: row.try_get("end_date")?,
        start_local: row.try_get("start_local")?,
        end_local: row.try_get("end_local")?,
        time_zone: row.try_get("time_zone")?,
        note: row.try_get("note")?,
        created_at: instant(row.try_get("created_at_us")?),
        created_by: actor(&row.try_get::<String, _>("created_by")?),
    })
}

/// Records a new exception.
pub async fn insert_exception(conn: &mut AnyConnection, row: &ExceptionRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO availability_exceptions ({EXCEPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&row.exception_id)
    .bind(&row.org_id)
    .bind(&row.practitioner)
    .bind(&row.kind)
    .bind(&row.start_date)
    .bind(&row.end_date)
    .bind(&row.start_local)
    .bind(&row.end_local)
    .bind(&row.time_zone)
    .bind(&row.note)
    .bind(micros(row.created_at))
    .bind(json(&row.created_by))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An exception by id, removed or not (what an idempotent replay returns).
pub async fn exception_ever(conn: &mut AnyConnection, id: &str) -> Result<Option<ExceptionRow>> {
    let row = sqlx::query(&format!(
        "SELECT {EXCEPTION_COLUMNS} FROM availability_exceptions WHERE exception_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(exception_row).transpose()
}

/// A live (not removed) exception by id.
pub async fn exception(conn: &mut AnyConnection, id: &str) -> Result<Option<ExceptionRow>> {
    let row = sqlx::query(&format!(
        "SELECT {EXCEPTION_COLUMNS} FROM availability_exceptions WHERE exception_id = $1 AND removed_at_us IS NULL"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(exception_row).transpose()
}

/// Marks an exception removed.
pub async fn remove_exception(conn: &mut AnyConnection, id: &str, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE availability_exceptions SET removed_at_us = $2 WHERE exception_id = $1")
        .bind(id)
        .bind(micros(at))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Live exceptions of `practitioner` and the org-wide ones of `org_id` overlapping the local
/// dates `[from, to]` (ISO dates compare as text), ordered by start date then id.
pub async fn exceptions_between(
    conn: &mut AnyConnection,
    practitioner: &str,
    org_id: &str,
    from: &str,
    to: &str,
) -> Result<Vec<ExceptionRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {EXCEPTION_COLUMNS} FROM availability_exceptions \
         WHERE removed_at_us IS NULL AND (practitioner = $1 OR (practitioner IS NULL AND org_id = $2)) \
         AND start_date <= $4 AND end_date >= $3 ORDER BY start_date, exception_id"
    ))
    .bind(practitioner)
    .bind(org_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(exception_row).collect()
}

// ---- locks and busy time ---------------------------------------------------------------------

/// Takes the booking lock of each practitioner (in sorted order, so two bookings of the same
/// pair cannot deadlock). Must be the first statement of a booking transaction.
pub async fn lock_practitioners(conn: &mut AnyConnection, practitioners: &[&str]) -> Result<()> {
    let mut sorted = practitioners.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for practitioner in sorted {
        sqlx::query(
            "INSERT INTO practitioner_locks (practitioner, bookings) VALUES ($1, 1) \
             ON CONFLICT (practitioner) DO UPDATE SET bookings = practitioner_locks.bookings + 1",
        )
        .bind(practitioner)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Time `practitioner` is busy overlapping `window`: appointments and unexpired holds.
pub async fn busy_during(
    conn: &mut AnyConnection,
    practitioner: &str,
    window: Interval,
    now: Timestamp,
) -> Result<Vec<Busy>> {
    let rows = sqlx::query(
        "SELECT owner_id, is_hold, start_us, end_us FROM busy_time WHERE practitioner = $1 \
         AND start_us < $3 AND end_us > $2 AND (is_hold = 0 OR expires_at_us > $4) ORDER BY start_us",
    )
    .bind(practitioner)
    .bind(micros(window.start))
    .bind(micros(window.end))
    .bind(micros(now))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Busy {
                time: Interval {
                    start: instant(row.try_get("start_us")?),
                    end: instant(row.try_get("end_us")?),
                },
                id: row.try_get("owner_id")?,
                is_hold: row.try_get::<i64, _>("is_hold")? != 0,
            })
        })
        .collect()
}

/// Marks `practitioner` busy during `time` for `owner_id` (an appointment or a hold).
pub async fn occupy(
    conn: &mut AnyConnection,
    practitioner: &str,
    owner_id: &str,
    time: Interval,
    hold_expires: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO busy_time (practitioner, owner_id, is_hold, start_us, end_us, expires_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(practitioner)
    .bind(owner_id)
    .bind(i64::from(hold_expires.is_some()))
    .bind(micros(time.start))
    .bind(micros(time.end))
    .bind(hold_expires.map(micros))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Frees the time held by `owner_id`.
pub async fn release(conn: &mut AnyConnection, owner_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM busy_time WHERE owner_id = $1")
        .bind(owner_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// ---- holds -----------------------------------------------------------------------------------

/// A hold on a slot.
#[derive(Debug, Clone)]
pub struct HoldRow {
    pub hold_id: String,
    pub org_id: String,
    pub doctor: String,
    pub nurse: Option<String>,
    pub time: Interval,
    pub expires_at: Timestamp,
    pub created_by: ActorRecord,
    /// How it ended before expiring, if it did; a hold without one is active until `expires_at`.
    pub ended: Option<HoldEnd>,
}

/// How a hold ended before its expiry (the `outcome` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Released by `ReleaseHold`.
    Released,
    /// Consumed by the booking or reschedule that named it.
    Consumed,
}

impl HoldEnd {
    fn as_str(self) -> &'static str {
        match self {
            HoldEnd::Released => "released",
            HoldEnd::Consumed => "consumed",
        }
    }

    fn parse(text: &str) -> Option<HoldEnd> {
        match text {
            "released" => Some(HoldEnd::Released),
            "consumed" => Some(HoldEnd::Consumed),
            _ => None,
        }
    }
}

/// Records a hold (its busy time is recorded separately with [`occupy`]).
pub async fn insert_hold(conn: &mut AnyConnection, hold: &HoldRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO holds (hold_id, org_id, doctor_subject, nurse_subject, start_us, end_us, expires_at_us, \
         created_by_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&hold.hold_id)
    .bind(&hold.org_id)
    .bind(&hold.doctor)
    .bind(&hold.nurse)
    .bind(micros(hold.time.start))
    .bind(micros(hold.time.end))
    .bind(micros(hold.expires_at))
    .bind(json(&hold.created_by))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Takes the write lock on a hold before reading it (see [`lock_appointment`]).
pub async fn lock_hold(conn: &mut AnyConnection, hold_id: &str) -> Result<()> {
    sqlx::query("UPDATE holds SET expires_at_us = expires_at_us WHERE hold_id = $1")
        .bind(hold_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A hold by id (active, expired or ended: holds are kept, so a late release can be told from
/// one of a hold that never existed).
pub async fn hold(conn: &mut AnyConnection, hold_id: &str) -> Result<Option<HoldRow>> {
    let row = sqlx::query(
        "SELECT hold_id, org_id, doctor_subject, nurse_subject, start_us, end_us, expires_at_us, created_by_json, \
         outcome FROM holds WHERE hold_id = $1",
    )
    .bind(hold_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(HoldRow {
            hold_id: row.try_get("hold_id")?,
            org_id: row.try_get("org_id")?,
            doctor: row.try_get("doctor_subject")?,
            nurse: row.try_get("nurse_subject")?,
            time: Interval {
                start: instant(row.try_get("start_us")?),
                end: instant(row.try_get("end_us")?),
            },
            expires_at: instant(row.try_get("expires_at_us")?),
            created_by: actor(&row.try_get::<String, _>("created_by_json")?),
            ended: row
                .try_get::<Option<String>, _>("outcome")?
                .as_deref()
                .and_then(HoldEnd::parse),
        })
    })
    .transpose()
}

/// Forgets the holds that ended before `$1` (µs) — released, consumed or lapsed — and the busy
/// time left by lapsed ones; run by the kit's idempotency purge, so a hold is remembered (and
/// `ReleaseHold` answers `released: false` rather than `NOT_FOUND`) as long as request keys are.
pub const PURGE_ENDED_HOLDS: [&str; 2] = [
    "DELETE FROM busy_time WHERE is_hold = 1 AND expires_at_us < $1",
    "DELETE FROM holds WHERE COALESCE(ended_at_us, expires_at_us) < $1",
];

/// Ends a hold that has not ended yet (`how`, at `at`) and frees its busy time; the row stays.
pub async fn end_hold(
    conn: &mut AnyConnection,
    hold_id: &str,
    how: HoldEnd,
    at: Timestamp,
) -> Result<()> {
    release(conn, hold_id).await?;
    sqlx::query(
        "UPDATE holds SET outcome = $2, ended_at_us = $3 WHERE hold_id = $1 AND outcome IS NULL",
    )
    .bind(hold_id)
    .bind(how.as_str())
    .bind(micros(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---- appointments ----------------------------------------------------------------------------

const APPOINTMENT_COLUMNS: &str = "appointment_id, org_id, status, start_us, end_us, time_zone, doctor_subject, \
     nurse_subject, patient_pseudonym, patient_subject, reason, room_id, reschedule_count, cancelled_by_json, \
     cancelled_at_us, cancel_reason, cancel_comment, arrived_at_us, started_at_us, finished_at_us, no_show_at_us, \
     created_at_us, created_by_json, updated_at_us, version, consent_id";

fn appointment_row(row: &AnyRow) -> Result<Appointment> {
    let status: String = row.try_get("status")?;
    let cancelled_by: Option<String> = row.try_get("cancelled_by_json")?;
    let cancellation = match cancelled_by {
        Some(by) => Some(Cancellation {
            by: actor(&by),
            at: instant(
                row.try_get::<Option<i64>, _>("cancelled_at_us")?
                    .unwrap_or(0),
            ),
            reason: i32::try_from(row.try_get::<Option<i64>, _>("cancel_reason")?.unwrap_or(0))
                .unwrap_or(0),
            comment: row
                .try_get::<Option<String>, _>("cancel_comment")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Appointment {
        id: row.try_get("appointment_id")?,
        org_id: row.try_get("org_id")?,
        status: Status::parse(&status).ok_or_else(|| {
            SchedulingError::Unavailable(format!("unknown stored status {status}"))
        })?,
        time: Interval {
            start: instant(row.try_get("start_us")?),
            end: instant(row.try_get("end_us")?),
        },
        time_zone: row.try_get("time_zone")?,
        doctor: row.try_get("doctor_subject")?,
        nurse: row.try_get("nurse_subject")?,
        patient_pseudonym: row.try_get("patient_pseudonym")?,
        patient_subject: row.try_get("patient_subject")?,
        reason: row.try_get("reason")?,
        room_id: row.try_get("room_id")?,
        reschedule_count: row.try_get("reschedule_count")?,
        cancellation,
        arrived_at: opt_instant(row.try_get("arrived_at_us")?),
        started_at: opt_instant(row.try_get("started_at_us")?),
        finished_at: opt_instant(row.try_get("finished_at_us")?),
        no_show_at: opt_instant(row.try_get("no_show_at_us")?),
        created_at: instant(row.try_get("created_at_us")?),
        created_by: actor(&row.try_get::<String, _>("created_by_json")?),
        updated_at: instant(row.try_get("updated_at_us")?),
        version: row.try_get("version")?,
        consent_id: row.try_get("consent_id")?,
    })
}

/// Stores a new appointment.
pub async fn insert_appointment(conn: &mut AnyConnection, a: &Appointment) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO appointments ({APPOINTMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, $14, $15, $16, $17, NULL)"
    ))
    .bind(&a.id)
    .bind(&a.org_id)
    .bind(a.status.as_str())
    .bind(micros(a.time.start))
    .bind(micros(a.time.end))
    .bind(&a.time_zone)
    .bind(&a.doctor)
    .bind(&a.nurse)
    .bind(&a.patient_pseudonym)
    .bind(&a.patient_subject)
    .bind(&a.reason)
    .bind(&a.room_id)
    .bind(a.reschedule_count)
    .bind(micros(a.created_at))
    .bind(json(&a.created_by))
    .bind(micros(a.updated_at))
    .bind(a.version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the mutable fields of `a`, if its stored version is still `a.version - 1`.
pub async fn update_appointment(conn: &mut AnyConnection, a: &Appointment) -> Result<()> {
    let cancellation = a.cancellation.as_ref();
    let done = sqlx::query(
        "UPDATE appointments SET status = $2, start_us = $3, end_us = $4, room_id = $5, reschedule_count = $6, \
         cancelled_by_json = $7, cancelled_at_us = $8, cancel_reason = $9, cancel_comment = $10, \
         arrived_at_us = $11, started_at_us = $12, finished_at_us = $13, no_show_at_us = $14, \
         updated_at_us = $15, version = $16, consent_id = $18 WHERE appointment_id = $1 AND version = $17",
    )
    .bind(&a.id)
    .bind(a.status.as_str())
    .bind(micros(a.time.start))
    .bind(micros(a.time.end))
    .bind(&a.room_id)
    .bind(a.reschedule_count)
    .bind(cancellation.map(|c| json(&c.by)))
    .bind(cancellation.map(|c| micros(c.at)))
    .bind(cancellation.map(|c| i64::from(c.reason)))
    .bind(cancellation.map(|c| c.comment.clone()))
    .bind(a.arrived_at.map(micros))
    .bind(a.started_at.map(micros))
    .bind(a.finished_at.map(micros))
    .bind(a.no_show_at.map(micros))
    .bind(micros(a.updated_at))
    .bind(a.version)
    .bind(a.version - 1)
    .bind(&a.consent_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(SchedulingError::VersionMismatch {
            current: a.version - 1,
        });
    }
    Ok(())
}

/// Takes the write lock on an appointment before reading it (PostgreSQL row lock, SQLite write
/// lock): concurrent changes of one appointment queue, and a SQLite transaction never has to
/// upgrade a read snapshot to a write (which fails under concurrency).
pub async fn lock_appointment(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE appointments SET version = version WHERE appointment_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One appointment by id.
pub async fn appointment(conn: &mut AnyConnection, id: &str) -> Result<Option<Appointment>> {
    let row = sqlx::query(&format!(
        "SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(appointment_row).transpose()
}

/// Which appointments a listing covers.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    pub org_id: Option<String>,
    pub doctor: Option<String>,
    pub nurse: Option<String>,
    /// Any of these patient ids (a patient's surviving id and the ids merged into it); empty:
    /// any patient.
    pub patient_pseudonyms: Vec<String>,
    pub patient_subject: Option<String>,
    /// Any participant (doctor, nurse or patient account) is this subject.
    pub participant: Option<String>,
    pub window: Option<Interval>,
    pub statuses: Vec<Status>,
}

/// Appointments matching `filter`, ordered by start then id, after the keyset `after`
/// (start, id), at most `limit`.
pub async fn list_appointments(
    conn: &mut AnyConnection,
    filter: &AppointmentFilter,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Appointment>> {
    let mut sql = format!("SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE 1 = 1");
    let mut texts: Vec<String> = Vec::new();
    let mut push = |sql: &mut String, clause: &str, value: &str| {
        texts.push(value.to_owned());
        sql.push_str(&clause.replace('?', &format!("${}", texts.len())));
    };
    if let Some(org) = &filter.org_id {
        push(&mut sql, " AND org_id = ?", org);
    }
    if let Some(doctor) = &filter.doctor {
        push(&mut sql, " AND doctor_subject = ?", doctor);
    }
    if let Some(nurse) = &filter.nurse {
        push(&mut sql, " AND nurse_subject = ?", nurse);
    }
    if let Some(subject) = &filter.patient_subject {
        push(&mut sql, " AND patient_subject = ?", subject);
    }
    if let Some(participant) = &filter.participant {
        texts.push(participant.clone());
        let n = texts.len();
        sql.push_str(&format!(
            " AND (doctor_subject = ${n} OR nurse_subject = ${n} OR patient_subject = ${n})"
        ));
    }
    if !filter.patient_pseudonyms.is_empty() {
        let mut placeholders = Vec::new();
        for pseudonym in &filter.patient_pseudonyms {
            texts.push(pseudonym.clone());
            placeholders.push(format!("${}", texts.len()));
        }
        sql.push_str(&format!(
            " AND patient_pseudonym IN ({})",
            placeholders.join(", ")
        ));
    }
    if !filter.statuses.is_empty() {
        let mut placeholders = Vec::new();
        for status in &filter.statuses {
            texts.push(status.as_str().to_owned());
            placeholders.push(format!("${}", texts.len()));
        }
        sql.push_str(&format!(" AND status IN ({})", placeholders.join(", ")));
    }
    let mut n = texts.len();
    let mut ints: Vec<i64> = Vec::new();
    if let Some(window) = filter.window {
        sql.push_str(&format!(
            " AND start_us < ${} AND end_us > ${}",
            n + 1,
            n + 2
        ));
        ints.push(micros(window.end));
        ints.push(micros(window.start));
        n += 2;
    }
    let after_id = if let Some((start, id)) = after {
        sql.push_str(&format!(
            " AND (start_us > ${a} OR (start_us = ${a} AND appointment_id > ${b}))",
            a = n + 1,
            b = n + 2
        ));
        ints.push(start);
        n += 2;
        Some(id)
    } else {
        None
    };
    sql.push_str(&format!(
        " ORDER BY start_us, appointment_id LIMIT ${}",
        n + 1
    ));

    let mut query = sqlx::query(&sql);
    for text in &texts {
        query = query.bind(text.clone());
    }
    let mut ints = ints.into_iter();
    if filter.window.is_some() {
        query = query
            .bind(ints.next().unwrap_or(0))
            .bind(ints.next().unwrap_or(0));
    }
    if let Some(id) = after_id {
        query = query.bind(ints.next().unwrap_or(0)).bind(id);
    }
    query = query.bind(limit);
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(appointment_row).collect()
}

// ---- history ---------------------------------------------------------------------------------

/// Appends an event to an appointment's history (sequence numbers without gaps: the caller's
/// transaction holds the appointment, or has just created it); returns its sequence number.
pub async fn append_event(conn: &mut AnyConnection, event: &HistoryEvent) -> Result<i64> {
    // One statement: the next number is read where it is written.
    let sequence: i64 = sqlx::query(
        "INSERT INTO appointment_events (event_id, appointment_id, sequence, kind, occurred_at_us, actor_json, \
         previous_status, new_status, previous_start_us, previous_end_us, new_start_us, new_end_us, \
         participant_subject, participant_role, comment) \
         SELECT $1, $2, COALESCE(MAX(sequence), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 \
         FROM appointment_events WHERE appointment_id = $2 \
         RETURNING sequence",
    )
    .bind(&event.id)
    .bind(&event.appointment_id)
    .bind(event.kind as i64)
    .bind(micros(event.occurred_at))
    .bind(json(&event.actor))
    .bind(event.previous_status.map_or(0, status_number))
    .bind(status_number(event.new_status))
    .bind(event.previous_time.map(|t| micros(t.start)))
    .bind(event.previous_time.map(|t| micros(t.end)))
    .bind(event.new_time.map(|t| micros(t.start)))
    .bind(event.new_time.map(|t| micros(t.end)))
    .bind(&event.participant_subject)
    .bind(event.participant_role.map_or(0, |role| role as i64))
    .bind(&event.comment)
    .fetch_one(&mut *conn)
    .await?
    .try_get("sequence")?;
    Ok(sequence)
}

/// The history of an appointment after sequence `after`, oldest first, at most `limit`.
pub async fn history(
    conn: &mut AnyConnection,
    appointment_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<HistoryEvent>> {
    let rows = sqlx::query(
        "SELECT event_id, appointment_id, sequence, kind, occurred_at_us, actor_json, previous_status, new_status, \
         previous_start_us, previous_end_us, new_start_us, new_end_us, participant_subject, participant_role, comment \
         FROM appointment_events WHERE appointment_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
    )
    .bind(appointment_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let interval = |start: Option<i64>, end: Option<i64>| match (start, end) {
                (Some(s), Some(e)) => Some(Interval {
                    start: instant(s),
                    end: instant(e),
                }),
                _ => None,
            };
            Ok(HistoryEvent {
                id: row.try_get("event_id")?,
                appointment_id: row.try_get("appointment_id")?,
                sequence: row.try_get("sequence")?,
                kind: EventKind::from_number(row.try_get("kind")?).ok_or_else(|| {
                    sqlx::Error::Decode("appointment_events.kind holds an unknown kind".into())
                })?,
                occurred_at: instant(row.try_get("occurred_at_us")?),
                actor: actor(&row.try_get::<String, _>("actor_json")?),
                previous_status: status_of_number(row.try_get("previous_status")?),
                new_status: status_of_number(row.try_get("new_status")?).unwrap_or(Status::Booked),
                previous_time: interval(
                    row.try_get("previous_start_us")?,
                    row.try_get("previous_end_us")?,
                ),
                new_time: interval(row.try_get("new_start_us")?, row.try_get("new_end_us")?),
                participant_subject: row.try_get("participant_subject")?,
                participant_role: ParticipantRole::from_number(row.try_get("participant_role")?),
                comment: row.try_get("comment")?,
            })
        })
        .collect()
}

/// The contract's `AppointmentStatus` number of a status.
pub fn status_number(status: Status) -> i64 {
    match status {
        Status::Booked => 1,
        Status::Arrived => 2,
        Status::InProgress => 3,
        Status::Fulfilled => 4,
        Status::Cancelled => 5,
        Status::NoShow => 6,
    }
}

fn status_of_number(number: i64) -> Option<Status> {
    [
        Status::Booked,
        Status::Arrived,
        Status::InProgress,
        Status::Fulfilled,
        Status::Cancelled,
        Status::NoShow,
    ]
    .into_iter()
    .find(|s| status_number(*s) == number)
}
