//! Wounds, their care teams and episodes, and the lists built on them.

use jiff::Timestamp;
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, actor, instant, json, micros, small};
use crate::{
    domain::{Aetiology, BodySite, ClosureReason, WoundDescription},
    error::WoundError,
    model::{ActorRecord, Closure, Wound, WoundStatus},
};

const WOUND_COLUMNS: &str = "w.wound_id, w.org_id, w.patient_pseudonym, w.body_region, w.laterality, \
     w.body_site_description, w.snomed_ct_code, w.aetiology, w.pressure_ulcer_stage, w.aetiology_details, \
     w.onset_date, w.interval_days, w.referring_doctor, w.status, w.closure_reason, w.closure_comment, \
     w.closed_by_json, w.closed_at_us, w.episode, w.episode_started_at_us, w.baseline_assessment_id, \
     w.last_assessment_id, w.last_assessed_at_us, w.next_due_at_us, w.latest_open_alert_at_us, \
     w.registered_at_us, w.registered_by_json, w.updated_at_us, w.version, w.consent_id, \
     (SELECT COUNT(*) FROM alerts a WHERE a.wound_id = w.wound_id AND a.status = 'open') AS open_alerts";

/// The position of a wound in the doctor's list (see [`doctor_wounds`]).
pub type DoctorKey = (i64, i64, i64, String);

fn wound_row(row: &AnyRow) -> Result<(Wound, Option<i64>)> {
    let status: String = row.try_get("status")?;
    let aetiology: i64 = row.try_get("aetiology")?;
    let closure = match row.try_get::<Option<i64>, _>("closure_reason")? {
        Some(reason) => Some(Closure {
            reason: ClosureReason::from_number(reason)
                .ok_or_else(|| WoundError::Corrupt(format!("closure reason {reason}")))?,
            comment: row
                .try_get::<Option<String>, _>("closure_comment")?
                .unwrap_or_default(),
            by: actor(
                &row.try_get::<Option<String>, _>("closed_by_json")?
                    .unwrap_or_default(),
            ),
            at: instant(row.try_get::<Option<i64>, _>("closed_at_us")?.unwrap_or(0)),
        }),
        None => None,
    };
    let wound = Wound {
        id: row.try_get("wound_id")?,
        org_id: row.try_get("org_id")?,
        patient_pseudonym: row.try_get("patient_pseudonym")?,
        description: WoundDescription {
            body_site: BodySite {
                region: small(row.try_get("body_region")?),
                laterality: small(row.try_get("laterality")?),
                description: row.try_get("body_site_description")?,
                snomed_ct_code: row.try_get("snomed_ct_code")?,
            },
            aetiology: Aetiology::from_number(aetiology)
                .ok_or_else(|| WoundError::Corrupt(format!("aetiology {aetiology}")))?,
            pressure_ulcer_stage: small(row.try_get("pressure_ulcer_stage")?),
            aetiology_details: row.try_get("aetiology_details")?,
            onset_date: row.try_get("onset_date")?,
            interval_days: row.try_get("interval_days")?,
        },
        referring_doctor: row.try_get("referring_doctor")?,
        nurses: Vec::new(),
        status: WoundStatus::parse(&status)
            .ok_or_else(|| WoundError::Corrupt(format!("wound status {status}")))?,
        closure,
        episode: row.try_get("episode")?,
        episode_started_at: instant(row.try_get("episode_started_at_us")?),
        baseline_assessment_id: row.try_get("baseline_assessment_id")?,
        last_assessment_id: row.try_get("last_assessment_id")?,
        last_assessed_at: row
            .try_get::<Option<i64>, _>("last_assessed_at_us")?
            .map(instant),
        next_due_at: row
            .try_get::<Option<i64>, _>("next_due_at_us")?
            .map(instant),
        open_alert_count: row.try_get("open_alerts")?,
        registered_at: instant(row.try_get("registered_at_us")?),
        registered_by: actor(&row.try_get::<String, _>("registered_by_json")?),
        updated_at: instant(row.try_get("updated_at_us")?),
        version: row.try_get("version")?,
        consent_id: row.try_get("consent_id")?,
    };
    Ok((wound, row.try_get("latest_open_alert_at_us")?))
}

async fn with_nurses(conn: &mut AnyConnection, mut wound: Wound) -> Result<Wound> {
    wound.nurses = care_team(conn, &wound.id).await?;
    Ok(wound)
}

/// The care-team nurses of a wound, sorted.
pub async fn care_team(conn: &mut AnyConnection, wound_id: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT nurse_subject FROM care_team WHERE wound_id = $1 ORDER BY nurse_subject",
    )
    .bind(wound_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok(row.try_get("nurse_subject")?))
        .collect()
}

/// One wound by id, with its care team.
pub async fn wound(conn: &mut AnyConnection, id: &str) -> Result<Option<Wound>> {
    let row = sqlx::query(&format!(
        "SELECT {WOUND_COLUMNS} FROM wounds w WHERE w.wound_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => {
            let (wound, _) = wound_row(&row)?;
            Ok(Some(with_nurses(conn, wound).await?))
        }
        None => Ok(None),
    }
}

/// Takes the write lock on a wound before reading it (PostgreSQL row lock, SQLite write lock):
/// every change of a wound and of its assessments and alerts queues behind it, across replicas,
/// so the series a change computes from is the committed one.
pub async fn lock_wound(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE wounds SET version = version WHERE wound_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores a new wound, its care team and its first episode.
pub async fn insert_wound(conn: &mut AnyConnection, w: &Wound) -> Result<()> {
    let d = &w.description;
    sqlx::query(
        "INSERT INTO wounds (wound_id, org_id, patient_pseudonym, body_region, laterality, body_site_description, \
         snomed_ct_code, aetiology, pressure_ulcer_stage, aetiology_details, onset_date, interval_days, \
         referring_doctor, status, episode, episode_started_at_us, next_due_at_us, registered_at_us, \
         registered_by_json, updated_at_us, version, consent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
    )
    .bind(&w.id)
    .bind(&w.org_id)
    .bind(&w.patient_pseudonym)
    .bind(i64::from(d.body_site.region))
    .bind(i64::from(d.body_site.laterality))
    .bind(&d.body_site.description)
    .bind(&d.body_site.snomed_ct_code)
    .bind(d.aetiology as i64)
    .bind(i64::from(d.pressure_ulcer_stage))
    .bind(&d.aetiology_details)
    .bind(&d.onset_date)
    .bind(d.interval_days)
    .bind(&w.referring_doctor)
    .bind(w.status.as_str())
    .bind(w.episode)
    .bind(micros(w.episode_started_at))
    .bind(w.next_due_at.map(micros))
    .bind(micros(w.registered_at))
    .bind(json(&w.registered_by))
    .bind(micros(w.updated_at))
    .bind(w.version)
    .bind(&w.consent_id)
    .execute(&mut *conn)
    .await?;
    set_care_team(conn, &w.id, &w.nurses).await?;
    insert_episode(conn, &w.id, 1, w.registered_at, &w.registered_by, "").await
}

/// Writes the record fields of `w` (description, referring doctor, status, closure, episode,
/// due date), if its stored version is still `w.version - 1`.
pub async fn update_wound(conn: &mut AnyConnection, w: &Wound) -> Result<()> {
    let d = &w.description;
    let closure = w.closure.as_ref();
    let done = sqlx::query(
        "UPDATE wounds SET body_region = $2, laterality = $3, body_site_description = $4, snomed_ct_code = $5, \
         aetiology = $6, pressure_ulcer_stage = $7, aetiology_details = $8, onset_date = $9, interval_days = $10, \
         referring_doctor = $11, status = $12, closure_reason = $13, closure_comment = $14, closed_by_json = $15, \
         closed_at_us = $16, episode = $17, episode_started_at_us = $18, baseline_assessment_id = $19, \
         last_assessment_id = $20, last_assessed_at_us = $21, next_due_at_us = $22, updated_at_us = $23, \
         version = $24 WHERE wound_id = $1 AND version = $25",
    )
    .bind(&w.id)
    .bind(i64::from(d.body_site.region))
    .bind(i64::from(d.body_site.laterality))
    .bind(&d.body_site.description)
    .bind(&d.body_site.snomed_ct_code)
    .bind(d.aetiology as i64)
    .bind(i64::from(d.pressure_ulcer_stage))
    .bind(&d.aetiology_details)
    .bind(&d.onset_date)
    .bind(d.interval_days)
    .bind(&w.referring_doctor)
    .bind(w.status.as_str())
    .bind(closure.map(|c| c.reason as i64))
    .bind(closure.map(|c| c.comment.clone()))
    .bind(closure.map(|c| json(&c.by)))
    .bind(closure.map(|c| micros(c.at)))
    .bind(w.episode)
    .bind(micros(w.episode_started_at))
    .bind(w.baseline_assessment_id.clone())
    .bind(w.last_assessment_id.clone())
    .bind(w.last_assessed_at.map(micros))
    .bind(w.next_due_at.map(micros))
    .bind(micros(w.updated_at))
    .bind(w.version)
    .bind(w.version - 1)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(WoundError::VersionMismatch {
            record: "wound",
            current: w.version - 1,
        });
    }
    Ok(())
}

/// Updates what a wound shows of its current episode's assessments (not a change of the wound
/// record: its version stays).
pub async fn set_series_summary(
    conn: &mut AnyConnection,
    wound_id: &str,
    (baseline, last, last_at): (Option<&str>, Option<&str>, Option<Timestamp>),
    next_due_at: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "UPDATE wounds SET baseline_assessment_id = $2, last_assessment_id = $3, last_assessed_at_us = $4, \
         next_due_at_us = $5 WHERE wound_id = $1",
    )
    .bind(wound_id)
    .bind(baseline.map(str::to_owned))
    .bind(last.map(str::to_owned))
    .bind(last_at.map(micros))
    .bind(next_due_at.map(micros))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces the care team of a wound.
pub async fn set_care_team(
    conn: &mut AnyConnection,
    wound_id: &str,
    nurses: &[String],
) -> Result<()> {
    sqlx::query("DELETE FROM care_team WHERE wound_id = $1")
        .bind(wound_id)
        .execute(&mut *conn)
        .await?;
    for nurse in nurses {
        sqlx::query("INSERT INTO care_team (wound_id, nurse_subject) VALUES ($1, $2)")
            .bind(wound_id)
            .bind(nurse)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records the start of an episode.
pub async fn insert_episode(
    conn: &mut AnyConnection,
    wound_id: &str,
    episode: i64,
    at: Timestamp,
    by: &ActorRecord,
    comment: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO episodes (wound_id, episode, started_at_us, started_by_json, comment) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(wound_id)
    .bind(episode)
    .bind(micros(at))
    .bind(json(by))
    .bind(comment)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Recomputes the newest open alert of a wound (the doctor's list puts those wounds first).
pub async fn refresh_open_alert_marker(conn: &mut AnyConnection, wound_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE wounds SET latest_open_alert_at_us = \
         (SELECT MAX(a.raised_at_us) FROM alerts a WHERE a.wound_id = $1 AND a.status = 'open') \
         WHERE wound_id = $1",
    )
    .bind(wound_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Open wounds whose next assessment was due before `now` and that have no overdue alert for
/// that due date yet: (wound id, episode, due at).
pub async fn overdue_without_alert(
    conn: &mut AnyConnection,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<(String, i64, Timestamp)>> {
    let rows = sqlx::query(
        "SELECT w.wound_id, w.episode, w.next_due_at_us FROM wounds w \
         WHERE w.status = 'open' AND w.next_due_at_us < $1 AND NOT EXISTS (SELECT 1 FROM alerts a \
         WHERE a.dedupe_key = 'overdue:' || w.wound_id || ':' || CAST(w.episode AS TEXT) || ':' || \
         CAST(w.next_due_at_us AS TEXT)) ORDER BY w.next_due_at_us, w.wound_id LIMIT $2",
    )
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("wound_id")?,
                row.try_get("episode")?,
                instant(row.try_get("next_due_at_us")?),
            ))
        })
        .collect()
}

/// A nurse's round: open wounds of her care teams due before `due_before` (if given), by next
/// due date then id, after the keyset `after` (due, id), at most `limit`.
pub async fn nurse_round(
    conn: &mut AnyConnection,
    nurse: &str,
    due_before: Option<Timestamp>,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Wound>> {
    let mut sql = format!(
        "SELECT {WOUND_COLUMNS} FROM wounds w JOIN care_team c ON c.wound_id = w.wound_id \
         WHERE c.nurse_subject = $1 AND w.status = 'open' AND w.next_due_at_us < $2"
    );
    if after.is_some() {
        sql.push_str(" AND (w.next_due_at_us > $3 OR (w.next_due_at_us = $3 AND w.wound_id > $4))");
    }
    sql.push_str(&format!(
        " ORDER BY w.next_due_at_us, w.wound_id LIMIT ${}",
        if after.is_some() { 5 } else { 3 }
    ));
    let mut query = sqlx::query(&sql)
        .bind(nurse)
        .bind(due_before.map_or(i64::MAX, micros));
    if let Some((due, id)) = after {
        query = query.bind(due).bind(id);
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    let mut wounds = Vec::with_capacity(rows.len());
    for row in &rows {
        let (wound, _) = wound_row(row)?;
        wounds.push(with_nurses(conn, wound).await?);
    }
    Ok(wounds)
}

/// Which wounds a doctor's list covers.
#[derive(Debug, Clone, Default)]
pub struct DoctorFilter {
    /// Wounds this doctor refers…
    pub referring_doctor: Option<String>,
    /// …or all wounds of this org.
    pub org_id: Option<String>,
    pub statuses: Vec<WoundStatus>,
    /// Any of these patient ids (a patient's surviving id and the ids merged into it); empty:
    /// any patient.
    pub patients: Vec<String>,
}

/// The sort key of the doctor's list: wounds with open alerts first (newest open alert first),
/// then by next due date (closed wounds last), then id.
const DOCTOR_KEY: &str = "CAST(CASE WHEN w.latest_open_alert_at_us IS NULL THEN 1 ELSE 0 END AS BIGINT), \
     CAST(0 - COALESCE(w.latest_open_alert_at_us, 0) AS BIGINT), \
     CAST(COALESCE(w.next_due_at_us, 9223372036854775807) AS BIGINT), w.wound_id";

/// The doctor's list position of a wound.
pub fn doctor_key(wound: &Wound, latest_open_alert_us: Option<i64>) -> DoctorKey {
    (
        i64::from(latest_open_alert_us.is_none()),
        -latest_open_alert_us.unwrap_or(0),
        wound.next_due_at.map_or(i64::MAX, micros),
        wound.id.clone(),
    )
}

/// Wounds matching `filter` in the doctor's order, after the keyset `after`, at most `limit`;
/// each with its list position.
pub async fn doctor_wounds(
    conn: &mut AnyConnection,
    filter: &DoctorFilter,
    after: Option<DoctorKey>,
    limit: i64,
) -> Result<Vec<(Wound, DoctorKey)>> {
    let mut sql = format!("SELECT {WOUND_COLUMNS} FROM wounds w WHERE 1 = 1");
    let mut texts: Vec<String> = Vec::new();
    let mut push = |sql: &mut String, clause: &str, value: &str| {
        texts.push(value.to_owned());
        sql.push_str(&clause.replace('?', &format!("${}", texts.len())));
    };
    if let Some(doctor) = &filter.referring_doctor {
        push(&mut sql, " AND w.referring_doctor = ?", doctor);
    }
    if let Some(org) = &filter.org_id {
        push(&mut sql, " AND w.org_id = ?", org);
    }
    if !filter.patients.is_empty() {
        let mut placeholders = Vec::new();
        for patient in &filter.patients {
            texts.push(patient.clone());
            placeholders.push(format!("${}", texts.len()));
        }
        sql.push_str(&format!(
            " AND w.patient_pseudonym IN ({})",
            placeholders.join(", ")
        ));
    }
    if !filter.statuses.is_empty() {
        let mut placeholders = Vec::new();
        for status in &filter.statuses {
            texts.push(status.as_str().to_owned());
            placeholders.push(format!("${}", texts.len()));
        }
        sql.push_str(&format!(" AND w.status IN ({})", placeholders.join(", ")));
    }
    let n = texts.len();
    if after.is_some() {
        sql.push_str(&format!(
            " AND ({DOCTOR_KEY}) > (${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        ));
    }
    let limit_at = if after.is_some() { n + 5 } else { n + 1 };
    sql.push_str(&format!(" ORDER BY {DOCTOR_KEY} LIMIT ${limit_at}"));
    let mut query = sqlx::query(&sql);
    for text in &texts {
        query = query.bind(text.clone());
    }
    if let Some((a, b, c, id)) = after {
        query = query.bind(a).bind(b).bind(c).bind(id);
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    let mut wounds = Vec::with_capacity(rows.len());
    for row in &rows {
        let (wound, latest) = wound_row(row)?;
        let key = doctor_key(&wound, latest);
        wounds.push((with_nurses(conn, wound).await?, key));
    }
    Ok(wounds)
}

/// Links the tele-expertise request `request_id` to `wound_id` (idempotent).
pub async fn link_expertise_request(
    conn: &mut AnyConnection,
    wound_id: &str,
    request_id: &str,
    requested_by_json: &str,
    requested_at_us: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO wound_expertise_requests (wound_id, request_id, requested_by_json, requested_at_us) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(wound_id)
    .bind(request_id)
    .bind(requested_by_json)
    .bind(requested_at_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The tele-expertise requests asked about `wound_id`, oldest first.
pub async fn expertise_requests(conn: &mut AnyConnection, wound_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT request_id FROM wound_expertise_requests WHERE wound_id = $1 \
         ORDER BY requested_at_us, request_id",
    )
    .bind(wound_id)
    .fetch_all(&mut *conn)
    .await?)
}
