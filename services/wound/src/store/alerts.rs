//! Alerts: raised once per dedupe key, acknowledged once.

use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, actor, instant, json, micros};
use crate::{
    domain::AlertCause,
    error::WoundError,
    model::{Acknowledgement, Alert, AlertStatus},
};

const ALERT_COLUMNS: &str = "a.alert_id, a.wound_id, w.patient_pseudonym, a.cause, a.status, a.raised_at_us, \
     a.recipient_doctor, a.assessment_id, a.compared_assessment_id, a.previous_value_milli, a.current_value_milli, \
     a.threshold_milli, a.due_at_us, a.summary, a.acknowledged_by_json, a.acknowledged_at_us, a.acknowledgement_comment";

fn alert_row(row: &AnyRow) -> Result<Alert> {
    let cause: i64 = row.try_get("cause")?;
    let status: String = row.try_get("status")?;
    let acknowledgement = match row.try_get::<Option<String>, _>("acknowledged_by_json")? {
        Some(by) => Some(Acknowledgement {
            by: actor(&by),
            at: instant(
                row.try_get::<Option<i64>, _>("acknowledged_at_us")?
                    .unwrap_or(0),
            ),
            comment: row.try_get("acknowledgement_comment")?,
        }),
        None => None,
    };
    Ok(Alert {
        id: row.try_get("alert_id")?,
        wound_id: row.try_get("wound_id")?,
        patient_pseudonym: row.try_get("patient_pseudonym")?,
        cause: AlertCause::from_number(cause)
            .ok_or_else(|| WoundError::Corrupt(format!("alert cause {cause}")))?,
        status: AlertStatus::parse(&status)
            .ok_or_else(|| WoundError::Corrupt(format!("alert status {status}")))?,
        raised_at: instant(row.try_get("raised_at_us")?),
        recipient_doctor: row.try_get("recipient_doctor")?,
        assessment_id: row.try_get("assessment_id")?,
        compared_assessment_id: row.try_get("compared_assessment_id")?,
        previous_value: row
            .try_get::<Option<i64>, _>("previous_value_milli")?
            .map(from_milli),
        current_value: row
            .try_get::<Option<i64>, _>("current_value_milli")?
            .map(from_milli),
        threshold: row
            .try_get::<Option<i64>, _>("threshold_milli")?
            .map(from_milli),
        due_at: row.try_get::<Option<i64>, _>("due_at_us")?.map(instant),
        summary: row.try_get("summary")?,
        acknowledgement,
    })
}

/// A value stored in thousandths. Alert values are areas (0.01 cm²), PUSH points, percents
/// (0.1 %) and thresholds: a thousandth keeps all of them exactly.
fn to_milli(value: f64) -> i64 {
    // Bounded by the domain (areas ≤ 10,000 cm², percents ≤ a few thousand), so no overflow.
    (value * 1000.0).round() as i64
}

fn from_milli(value: i64) -> f64 {
    value as f64 / 1000.0
}

/// Stores `alert` unless an alert with `dedupe_key` exists; true if it was stored (raised).
pub async fn insert_alert(
    conn: &mut AnyConnection,
    alert: &Alert,
    dedupe_key: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO alerts (alert_id, dedupe_key, wound_id, cause, status, raised_at_us, recipient_doctor, \
         assessment_id, compared_assessment_id, previous_value_milli, current_value_milli, threshold_milli, due_at_us, summary, \
         acknowledgement_comment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, '') \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&alert.id)
    .bind(dedupe_key)
    .bind(&alert.wound_id)
    .bind(alert.cause as i64)
    .bind(alert.status.as_str())
    .bind(micros(alert.raised_at))
    .bind(&alert.recipient_doctor)
    .bind(&alert.assessment_id)
    .bind(&alert.compared_assessment_id)
    .bind(alert.previous_value.map(to_milli))
    .bind(alert.current_value.map(to_milli))
    .bind(alert.threshold.map(to_milli))
    .bind(alert.due_at.map(micros))
    .bind(&alert.summary)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One alert by id.
pub async fn alert(conn: &mut AnyConnection, id: &str) -> Result<Option<Alert>> {
    let row = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a JOIN wounds w ON w.wound_id = a.wound_id WHERE a.alert_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(alert_row).transpose()
}

/// The alerts an assessment triggered, oldest first.
pub async fn alerts_of_assessment(
    conn: &mut AnyConnection,
    assessment_id: &str,
) -> Result<Vec<Alert>> {
    let rows = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a JOIN wounds w ON w.wound_id = a.wound_id \
         WHERE a.assessment_id = $1 ORDER BY a.raised_at_us, a.cause"
    ))
    .bind(assessment_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(alert_row).collect()
}

/// Records the acknowledgement of an open alert; false if it was no longer open.
pub async fn acknowledge(
    conn: &mut AnyConnection,
    id: &str,
    acknowledgement: &Acknowledgement,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE alerts SET status = 'acknowledged', acknowledged_by_json = $2, acknowledged_at_us = $3, \
         acknowledgement_comment = $4 WHERE alert_id = $1 AND status = 'open'",
    )
    .bind(id)
    .bind(json(&acknowledgement.by))
    .bind(micros(acknowledgement.at))
    .bind(&acknowledgement.comment)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The open alerts of a wound, newest first, at most `limit`.
pub async fn open_alerts(
    conn: &mut AnyConnection,
    wound_id: &str,
    limit: i64,
) -> Result<Vec<Alert>> {
    let rows = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a JOIN wounds w ON w.wound_id = a.wound_id \
         WHERE a.wound_id = $1 AND a.status = 'open' ORDER BY a.raised_at_us DESC, a.alert_id DESC LIMIT $2"
    ))
    .bind(wound_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(alert_row).collect()
}

/// Which alerts a listing covers.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// One wound's alerts…
    pub wound_id: Option<String>,
    /// …or those of the wounds this person follows (refers, or is in the care team of).
    pub follower: Option<String>,
    pub statuses: Vec<AlertStatus>,
}

/// Alerts matching `filter`, newest first (raised_at then alert id, both descending), after the
/// keyset `after`, at most `limit`.
pub async fn list_alerts(
    conn: &mut AnyConnection,
    filter: &AlertFilter,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Alert>> {
    let mut sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a JOIN wounds w ON w.wound_id = a.wound_id WHERE 1 = 1"
    );
    let mut texts: Vec<String> = Vec::new();
    if let Some(wound) = &filter.wound_id {
        texts.push(wound.clone());
        sql.push_str(&format!(" AND a.wound_id = ${}", texts.len()));
    }
    if let Some(follower) = &filter.follower {
        texts.push(follower.clone());
        let n = texts.len();
        sql.push_str(&format!(
            " AND (w.referring_doctor = ${n} OR EXISTS (SELECT 1 FROM care_team c \
             WHERE c.wound_id = a.wound_id AND c.nurse_subject = ${n}))"
        ));
    }
    if !filter.statuses.is_empty() {
        let mut placeholders = Vec::new();
        for status in &filter.statuses {
            texts.push(status.as_str().to_owned());
            placeholders.push(format!("${}", texts.len()));
        }
        sql.push_str(&format!(" AND a.status IN ({})", placeholders.join(", ")));
    }
    let n = texts.len();
    if after.is_some() {
        sql.push_str(&format!(
            " AND (a.raised_at_us < ${a} OR (a.raised_at_us = ${a} AND a.alert_id < ${b}))",
            a = n + 1,
            b = n + 2
        ));
    }
    let limit_at = if after.is_some() { n + 3 } else { n + 1 };
    sql.push_str(&format!(
        " ORDER BY a.raised_at_us DESC, a.alert_id DESC LIMIT ${limit_at}"
    ));
    let mut query = sqlx::query(&sql);
    for text in &texts {
        query = query.bind(text.clone());
    }
    if let Some((raised, id)) = after {
        query = query.bind(raised).bind(id);
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(alert_row).collect()
}
