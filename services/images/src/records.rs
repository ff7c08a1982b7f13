//! The image pipeline's rows: upload sessions, their parts, completed images, and blobs
//! waiting to be deleted. Plain SQL that runs on SQLite and PostgreSQL alike.
//!
//! A session is stored under its *key* (column `session_id`), a hash of the organisation, the
//! subject, the target and the client-chosen id ([`super::session_key`]), never under the
//! client's id itself: another user's id names nothing here.

use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

/// An upload session as stored.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The stored key (see [`super::session_key`]), not the client's id.
    pub key: String,
    pub owner_subject: String,
    pub target_kind: String,
    pub target_id: String,
    pub header_pb: Vec<u8>,
    pub total_size: i64,
    pub acknowledged: i64,
    pub completed: bool,
    /// Refused or expired: kept as a tombstone for a while so that its id is not reused while
    /// its bytes are being deleted.
    pub discarded: bool,
    pub image_id: Option<String>,
    pub expires_at_us: i64,
}

/// One stored part of a session.
#[derive(Debug, Clone)]
pub struct PartRow {
    pub start_offset: i64,
    pub size: i64,
    pub blob_key: String,
}

/// A completed image as stored.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub image_id: String,
    pub target_kind: String,
    pub target_id: String,
    pub blob_key: String,
    pub size_bytes: i64,
    pub info_pb: Vec<u8>,
}

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
const DISCARDED: &str = "discarded";

fn session(row: &AnyRow) -> Result<SessionRow, sqlx::Error> {
    Ok(SessionRow {
        key: row.try_get("session_id")?,
        owner_subject: row.try_get("owner_subject")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        header_pb: row.try_get("header_pb")?,
        total_size: row.try_get("total_size")?,
        acknowledged: row.try_get("acknowledged")?,
        completed: row.try_get::<String, _>("state")? == COMPLETED,
        discarded: row.try_get::<String, _>("state")? == DISCARDED,
        image_id: row.try_get("image_id")?,
        expires_at_us: row.try_get("expires_at_us")?,
    })
}

fn image(row: &AnyRow) -> Result<ImageRow, sqlx::Error> {
    Ok(ImageRow {
        image_id: row.try_get("image_id")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        blob_key: row.try_get("blob_key")?,
        size_bytes: row.try_get("size_bytes")?,
        info_pb: row.try_get("info_pb")?,
    })
}

const SESSION_COLUMNS: &str = "session_id, owner_subject, target_kind, target_id, header_pb, \
     total_size, acknowledged, state, image_id, expires_at_us";

pub async fn find_session(pool: &AnyPool, key: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM image_uploads WHERE session_id = $1");
    sqlx::query(&sql)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(session)
        .transpose()
}

/// Creates a session at offset 0; false if its key is already taken (by an earlier stream of
/// the same caller, target and id).
pub async fn insert_session(
    pool: &AnyPool,
    row: &SessionRow,
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO image_uploads (session_id, owner_subject, target_kind, target_id, header_pb, \
         total_size, acknowledged, state, image_id, created_at_us, updated_at_us, expires_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, $8, $8, $9) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(&row.key)
    .bind(&row.owner_subject)
    .bind(&row.target_kind)
    .bind(&row.target_id)
    .bind(&row.header_pb)
    .bind(row.total_size)
    .bind(IN_PROGRESS)
    .bind(now_us)
    .bind(row.expires_at_us)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records a stored part and advances the acknowledged offset, if (and only if) the session is
/// still in progress at `start_offset`: two streams racing on one session cannot both advance it.
pub async fn append_part(
    pool: &AnyPool,
    key: &str,
    part: &PartRow,
    now_us: i64,
    expires_at_us: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let advanced = sqlx::query(
        "UPDATE image_uploads SET acknowledged = $1, updated_at_us = $2, expires_at_us = $3 \
         WHERE session_id = $4 AND acknowledged = $5 AND state = $6",
    )
    .bind(part.start_offset + part.size)
    .bind(now_us)
    .bind(expires_at_us)
    .bind(key)
    .bind(part.start_offset)
    .bind(IN_PROGRESS)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !advanced {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO image_upload_parts (session_id, start_offset, size, blob_key) VALUES ($1, $2, $3, $4)",
    )
    .bind(key)
    .bind(part.start_offset)
    .bind(part.size)
    .bind(&part.blob_key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn parts(pool: &AnyPool, key: &str) -> Result<Vec<PartRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT start_offset, size, blob_key FROM image_upload_parts WHERE session_id = $1 \
         ORDER BY start_offset",
    )
    .bind(key)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PartRow {
                start_offset: row.try_get("start_offset")?,
                size: row.try_get("size")?,
                blob_key: row.try_get("blob_key")?,
            })
        })
        .collect()
}

/// Marks a fully received session completed with its image, inside the caller's transaction;
/// false if another stream (or replica) completed or discarded it first.
pub async fn complete_session(
    conn: &mut AnyConnection,
    key: &str,
    image: &ImageRow,
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    let completed = sqlx::query(
        "UPDATE image_uploads SET state = $1, image_id = $2, updated_at_us = $3 \
         WHERE session_id = $4 AND state = $5 AND acknowledged = total_size",
    )
    .bind(COMPLETED)
    .bind(&image.image_id)
    .bind(now_us)
    .bind(key)
    .bind(IN_PROGRESS)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !completed {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO images (image_id, session_id, target_kind, target_id, blob_key, size_bytes, \
         info_pb, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&image.image_id)
    .bind(key)
    .bind(&image.target_kind)
    .bind(&image.target_id)
    .bind(&image.blob_key)
    .bind(image.size_bytes)
    .bind(&image.info_pb)
    .bind(now_us)
    .execute(&mut *conn)
    .await?;
    // The staged parts are no longer needed: their bytes go to the sweeper.
    sqlx::query("DELETE FROM image_upload_parts WHERE session_id = $1")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    add_garbage(&mut *conn, &staging_prefix(key), now_us).await?;
    Ok(true)
}

/// Turns an in-progress session into a tombstone (until `tombstone_until`) and hands its bytes
/// to the sweeper. With `expired_before`, only if it made no progress since then (the sweeper
/// must not discard a session that just moved).
pub async fn discard_session(
    pool: &AnyPool,
    key: &str,
    expired_before: Option<i64>,
    now_us: i64,
    tombstone_until: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query(
        "UPDATE image_uploads SET state = $1, updated_at_us = $2, expires_at_us = $3 \
         WHERE session_id = $4 AND state = $5 AND expires_at_us < $6",
    )
    .bind(DISCARDED)
    .bind(now_us)
    .bind(tombstone_until)
    .bind(key)
    .bind(IN_PROGRESS)
    .bind(expired_before.unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if deleted {
        sqlx::query("DELETE FROM image_upload_parts WHERE session_id = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        add_garbage(&mut tx, &staging_prefix(key), now_us).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Keys of the sessions in progress whose expiry passed.
pub async fn expired_sessions(
    pool: &AnyPool,
    now_us: i64,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT session_id FROM image_uploads WHERE state = $1 AND expires_at_us < $2 \
         ORDER BY expires_at_us LIMIT $3",
    )
    .bind(IN_PROGRESS)
    .bind(now_us)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| row.try_get("session_id")).collect()
}

/// Forgets tombstones whose time is up (their bytes were deleted long before).
pub async fn purge_tombstones(pool: &AnyPool, now_us: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM image_uploads WHERE state = $1 AND expires_at_us < $2")
            .bind(DISCARDED)
            .bind(now_us)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Where a session's parts are stored (a prefix: deleting it deletes them all).
pub fn staging_prefix(key: &str) -> String {
    format!("uploads/{key}/")
}

/// Where an image's thumbnails are cached.
pub fn thumbnail_prefix(image_id: &str) -> String {
    format!("thumbnails/{image_id}/")
}

/// Queues `key` (or, ending in `/`, a whole prefix) for deletion by the sweeper.
pub async fn add_garbage(
    conn: &mut AnyConnection,
    key: &str,
    now_us: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO image_blob_garbage (blob_key, since_us) VALUES ($1, $2) ON CONFLICT (blob_key) DO NOTHING",
    )
    .bind(key)
    .bind(now_us)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn garbage(pool: &AnyPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT blob_key FROM image_blob_garbage ORDER BY since_us LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| row.try_get("blob_key")).collect()
}

pub async fn forget_garbage(pool: &AnyPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM image_blob_garbage WHERE blob_key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

const IMAGE_COLUMNS: &str = "image_id, target_kind, target_id, blob_key, size_bytes, info_pb";

pub async fn find_image(pool: &AnyPool, image_id: &str) -> Result<Option<ImageRow>, sqlx::Error> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE image_id = $1");
    sqlx::query(&sql)
        .bind(image_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(image)
        .transpose()
}

/// Up to `limit` images whose id sorts after `after`, in id order (a walk over every image).
pub async fn images_after(
    pool: &AnyPool,
    after: &str,
    limit: i64,
) -> Result<Vec<ImageRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE image_id > $1 ORDER BY image_id LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(image).collect()
}

/// The images of a target, oldest first.
pub async fn images_of(
    conn: &mut AnyConnection,
    target_kind: &str,
    target_id: &str,
) -> Result<Vec<ImageRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE target_kind = $1 AND target_id = $2 \
         ORDER BY created_at_us, image_id"
    );
    let rows = sqlx::query(&sql)
        .bind(target_kind)
        .bind(target_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(image).collect()
}

/// Removes an image of a target and queues its bytes for deletion; false if there was none.
pub async fn delete_image(
    conn: &mut AnyConnection,
    target_kind: &str,
    target_id: &str,
    image_id: &str,
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "DELETE FROM images WHERE image_id = $1 AND target_kind = $2 AND target_id = $3 \
         RETURNING blob_key, session_id",
    )
    .bind(image_id)
    .bind(target_kind)
    .bind(target_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let blob_key: String = row.try_get("blob_key")?;
    let session_id: String = row.try_get("session_id")?;
    sqlx::query("DELETE FROM image_uploads WHERE session_id = $1")
        .bind(&session_id)
        .execute(&mut *conn)
        .await?;
    add_garbage(&mut *conn, &blob_key, now_us).await?;
    add_garbage(&mut *conn, &thumbnail_prefix(image_id), now_us).await?;
    Ok(true)
}
