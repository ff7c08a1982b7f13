//! Assessment versions and the photos attached to them.

use std::collections::HashMap;

use jiff::Timestamp;
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, actor, instant, json, micros};
use crate::{
    domain::{Exudate, Measurements, Tissue},
    error::WoundError,
    model::AssessmentVersion,
};

const VERSION_COLUMNS: &str = "assessment_id, version, wound_id, episode, is_current, assessed_at_us, \
     length_mm, width_mm, depth_mm, tissue_type, exudate, pain_score, infection_signs, notes, recorded_at_us, \
     recorded_by_json, correction_reason";

fn version_row(row: &AnyRow) -> Result<AssessmentVersion> {
    let tissue: i64 = row.try_get("tissue_type")?;
    let exudate: i64 = row.try_get("exudate")?;
    let signs: String = row.try_get("infection_signs")?;
    Ok(AssessmentVersion {
        assessment_id: row.try_get("assessment_id")?,
        version: row.try_get("version")?,
        current: row.try_get::<i64, _>("is_current")? != 0,
        wound_id: row.try_get("wound_id")?,
        episode: row.try_get("episode")?,
        measurements: Measurements {
            assessed_at: instant(row.try_get("assessed_at_us")?),
            length_mm: row.try_get("length_mm")?,
            width_mm: row.try_get("width_mm")?,
            depth_mm: row.try_get("depth_mm")?,
            tissue: Tissue::from_number(tissue)
                .ok_or_else(|| WoundError::Corrupt(format!("tissue {tissue}")))?,
            exudate: Exudate::from_number(exudate)
                .ok_or_else(|| WoundError::Corrupt(format!("exudate {exudate}")))?,
            pain_score: row.try_get("pain_score")?,
            infection_signs: signs
                .split(',')
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect(),
            notes: row.try_get("notes")?,
            photo_image_ids: Vec::new(),
        },
        recorded_at: instant(row.try_get("recorded_at_us")?),
        recorded_by: actor(&row.try_get::<String, _>("recorded_by_json")?),
        correction_reason: row.try_get("correction_reason")?,
    })
}

/// Stores a version (its photos are attached with [`attach_photo`]).
pub async fn insert_version(conn: &mut AnyConnection, v: &AssessmentVersion) -> Result<()> {
    let m = &v.measurements;
    let signs = m
        .infection_signs
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    sqlx::query(&format!(
        "INSERT INTO assessment_versions ({VERSION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(&v.assessment_id)
    .bind(v.version)
    .bind(&v.wound_id)
    .bind(v.episode)
    .bind(i64::from(v.current))
    .bind(micros(m.assessed_at))
    .bind(m.length_mm)
    .bind(m.width_mm)
    .bind(m.depth_mm)
    .bind(m.tissue as i64)
    .bind(m.exudate as i64)
    .bind(m.pain_score)
    .bind(signs)
    .bind(&m.notes)
    .bind(micros(v.recorded_at))
    .bind(json(&v.recorded_by))
    .bind(&v.correction_reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the current version of an assessment as superseded.
pub async fn retire_current(conn: &mut AnyConnection, assessment_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE assessment_versions SET is_current = 0 WHERE assessment_id = $1 AND is_current = 1",
    )
    .bind(assessment_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One version of an assessment (`None`: the current one), with its photos.
pub async fn version(
    conn: &mut AnyConnection,
    assessment_id: &str,
    version: Option<i64>,
) -> Result<Option<AssessmentVersion>> {
    let row = match version {
        None => {
            sqlx::query(&format!(
                "SELECT {VERSION_COLUMNS} FROM assessment_versions WHERE assessment_id = $1 AND is_current = 1"
            ))
            .bind(assessment_id)
            .fetch_optional(&mut *conn)
            .await?
        }
        Some(v) => {
            sqlx::query(&format!(
                "SELECT {VERSION_COLUMNS} FROM assessment_versions WHERE assessment_id = $1 AND version = $2"
            ))
            .bind(assessment_id)
            .bind(v)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let mut found = version_row(&row)?;
    let photos = photos_of(conn, assessment_id).await?;
    found.measurements.photo_image_ids = visible_photos(&photos, found.version);
    Ok(Some(found))
}

/// The versions of an assessment after `after`, oldest first, at most `limit`, with photos.
pub async fn versions(
    conn: &mut AnyConnection,
    assessment_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<AssessmentVersion>> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM assessment_versions WHERE assessment_id = $1 AND version > $2 \
         ORDER BY version LIMIT $3"
    ))
    .bind(assessment_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let photos = photos_of(conn, assessment_id).await?;
    rows.iter()
        .map(|row| {
            let mut v = version_row(row)?;
            v.measurements.photo_image_ids = visible_photos(&photos, v.version);
            Ok(v)
        })
        .collect()
}

/// The current versions of a wound's assessments (of one episode, or all), by assessed_at then
/// assessment id, with their photos.
pub async fn series(
    conn: &mut AnyConnection,
    wound_id: &str,
    episode: Option<i64>,
) -> Result<Vec<AssessmentVersion>> {
    let rows = match episode {
        Some(episode) => sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM assessment_versions WHERE wound_id = $1 AND is_current = 1 \
             AND episode = $2 ORDER BY assessed_at_us, assessment_id"
        ))
        .bind(wound_id)
        .bind(episode)
        .fetch_all(&mut *conn)
        .await?,
        None => sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM assessment_versions WHERE wound_id = $1 AND is_current = 1 \
             ORDER BY assessed_at_us, assessment_id"
        ))
        .bind(wound_id)
        .fetch_all(&mut *conn)
        .await?,
    };
    let photo_rows = sqlx::query(
        "SELECT image_id, assessment_id, from_version FROM wound_photos \
         WHERE wound_id = $1 AND assessment_id IS NOT NULL ORDER BY uploaded_at_us, image_id",
    )
    .bind(wound_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut photos: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for row in &photo_rows {
        let assessment: String = row.try_get("assessment_id")?;
        photos.entry(assessment).or_default().push((
            row.try_get("image_id")?,
            row.try_get::<Option<i64>, _>("from_version")?.unwrap_or(1),
        ));
    }
    rows.iter()
        .map(|row| {
            let mut v = version_row(row)?;
            if let Some(attached) = photos.get(&v.assessment_id) {
                v.measurements.photo_image_ids = visible_photos(attached, v.version);
            }
            Ok(v)
        })
        .collect()
}

/// Photos attached to an assessment: (image id, first version showing it), in upload order.
pub async fn photos_of(
    conn: &mut AnyConnection,
    assessment_id: &str,
) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT image_id, from_version FROM wound_photos WHERE assessment_id = $1 \
         ORDER BY uploaded_at_us, image_id",
    )
    .bind(assessment_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("image_id")?,
                row.try_get::<Option<i64>, _>("from_version")?.unwrap_or(1),
            ))
        })
        .collect()
}

fn visible_photos(photos: &[(String, i64)], version: i64) -> Vec<String> {
    photos
        .iter()
        .filter(|(_, from)| *from <= version)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The wound and assessment of a stored photo (`None` for the assessment while pending).
pub async fn photo(
    conn: &mut AnyConnection,
    image_id: &str,
) -> Result<Option<(String, Option<String>)>> {
    let row = sqlx::query("SELECT wound_id, assessment_id FROM wound_photos WHERE image_id = $1")
        .bind(image_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| Ok((row.try_get("wound_id")?, row.try_get("assessment_id")?)))
        .transpose()
}

/// How many photos of `wound_id` wait for an assessment at `now` (pending, not yet expired).
pub async fn pending_photo_count(
    conn: &mut AnyConnection,
    wound_id: &str,
    now: Timestamp,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS pending FROM wound_photos \
         WHERE wound_id = $1 AND assessment_id IS NULL AND pending_until_us >= $2",
    )
    .bind(wound_id)
    .bind(micros(now))
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("pending")?)
}

/// Records a completed photo of a wound: attached to `assessment` (id, from version) or
/// pending until `pending_until`.
pub async fn insert_photo(
    conn: &mut AnyConnection,
    image_id: &str,
    wound_id: &str,
    assessment: Option<(&str, i64)>,
    uploaded_by: &str,
    at: Timestamp,
    pending_until: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO wound_photos (image_id, wound_id, assessment_id, from_version, uploaded_by, \
         uploaded_at_us, pending_until_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(image_id)
    .bind(wound_id)
    .bind(assessment.map(|(id, _)| id.to_owned()))
    .bind(assessment.map(|(_, version)| version))
    .bind(uploaded_by)
    .bind(micros(at))
    .bind(pending_until.map(micros))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Attaches a pending photo of `wound_id` to an assessment from `version` on; false if it is not
/// a pending photo of that wound (unknown, of another wound, or already attached).
pub async fn attach_photo(
    conn: &mut AnyConnection,
    wound_id: &str,
    image_id: &str,
    assessment_id: &str,
    version: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE wound_photos SET assessment_id = $3, from_version = $4, pending_until_us = NULL \
         WHERE image_id = $1 AND wound_id = $2 AND assessment_id IS NULL",
    )
    .bind(image_id)
    .bind(wound_id)
    .bind(assessment_id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending photos whose time ran out before `now`.
pub async fn expired_pending_photos(
    conn: &mut AnyConnection,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT image_id, wound_id FROM wound_photos WHERE assessment_id IS NULL AND pending_until_us < $1 \
         ORDER BY pending_until_us LIMIT $2",
    )
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("image_id")?, row.try_get("wound_id")?)))
        .collect()
}

/// Forgets a pending photo (true if it was still pending).
pub async fn delete_pending_photo(conn: &mut AnyConnection, image_id: &str) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM wound_photos WHERE image_id = $1 AND assessment_id IS NULL")
            .bind(image_id)
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected() == 1)
}
