//! The SQL of enrolled devices, verified sign-ins waiting for the organisation choice (tickets)
//! and device sign-ins waiting for approval. Secrets (tickets, device sign-in ids) are stored as
//! their SHA-256 only.

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row, any::AnyRow};

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub org_id: String,
    pub subject: String,
    pub name: String,
    pub thumbprint: String,
    pub serial_hex: String,
    pub enrolled_us: i64,
    pub expires_us: i64,
    pub revoked_us: Option<i64>,
}

/// A verified sign-in waiting for its organisation choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub provider: String,
    pub device_key: String,
    pub rpps_number: String,
    pub expires_us: i64,
}

/// A device sign-in waiting for the person's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLogin {
    pub provider: String,
    pub device_key: String,
    pub authorization: String,
    pub interval_s: i64,
    pub next_poll_us: i64,
    pub expires_us: i64,
}

/// SHA-256 (hex) of a secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

const DEVICE_COLUMNS: &str =
    "device_id, org_id, subject, name, thumbprint, serial_hex, enrolled_us, expires_us, revoked_us";

fn device_row(row: &AnyRow) -> Result<DeviceRecord, sqlx::Error> {
    Ok(DeviceRecord {
        device_id: row.try_get("device_id")?,
        org_id: row.try_get("org_id")?,
        subject: row.try_get("subject")?,
        name: row.try_get("name")?,
        thumbprint: row.try_get("thumbprint")?,
        serial_hex: row.try_get("serial_hex")?,
        enrolled_us: row.try_get("enrolled_us")?,
        expires_us: row.try_get("expires_us")?,
        revoked_us: row.try_get("revoked_us")?,
    })
}

pub async fn insert_device(conn: &mut AnyConnection, d: &DeviceRecord) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO auth_devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&d.device_id)
    .bind(&d.org_id)
    .bind(&d.subject)
    .bind(&d.name)
    .bind(&d.thumbprint)
    .bind(&d.serial_hex)
    .bind(d.enrolled_us)
    .bind(d.expires_us)
    .bind(d.revoked_us)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn device(
    conn: &mut AnyConnection,
    device_id: &str,
) -> Result<Option<DeviceRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM auth_devices WHERE device_id = $1"
    ))
    .bind(device_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(device_row)
    .transpose()
}

pub async fn device_by_thumbprint(
    conn: &mut AnyConnection,
    thumbprint: &str,
) -> Result<Option<DeviceRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM auth_devices WHERE thumbprint = $1"
    ))
    .bind(thumbprint)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(device_row)
    .transpose()
}

/// The devices of `org` (of `subject` only, when given), newest first, at most 1,000.
pub async fn devices(
    conn: &mut AnyConnection,
    org: &str,
    subject: Option<&str>,
) -> Result<Vec<DeviceRecord>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM auth_devices WHERE org_id = $1 \
         AND ($2 = '' OR subject = $2) ORDER BY enrolled_us DESC, device_id LIMIT 1000"
    ))
    .bind(org)
    .bind(subject.unwrap_or(""))
    .fetch_all(conn)
    .await?;
    rows.iter().map(device_row).collect()
}

/// Marks a device revoked at `now_us`; false when it already was.
pub async fn revoke_device(
    conn: &mut AnyConnection,
    device_id: &str,
    now_us: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE auth_devices SET revoked_us = $2 WHERE device_id = $1 AND revoked_us IS NULL",
    )
    .bind(device_id)
    .bind(now_us)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Serials of the revoked certificates that have not expired yet (what the CRL lists).
pub async fn revoked_serials(
    conn: &mut AnyConnection,
    now_us: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT serial_hex FROM auth_devices WHERE revoked_us IS NOT NULL AND expires_us > $1 \
         ORDER BY serial_hex",
    )
    .bind(now_us)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|row| row.try_get("serial_hex")).collect()
}

pub async fn insert_ticket(
    conn: &mut AnyConnection,
    ticket: &str,
    t: &Ticket,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_sign_in_tickets (ticket_hash, provider, device_key, rpps_number, \
         expires_us) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(digest(ticket))
    .bind(&t.provider)
    .bind(&t.device_key)
    .bind(&t.rpps_number)
    .bind(t.expires_us)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a ticket out (once: of two calls with one ticket, one finds it).
pub async fn take_ticket(
    conn: &mut AnyConnection,
    ticket: &str,
) -> Result<Option<Ticket>, sqlx::Error> {
    let row = sqlx::query(
        "DELETE FROM auth_sign_in_tickets WHERE ticket_hash = $1 \
         RETURNING provider, device_key, rpps_number, expires_us",
    )
    .bind(digest(ticket))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(Ticket {
            provider: row.try_get("provider")?,
            device_key: row.try_get("device_key")?,
            rpps_number: row.try_get("rpps_number")?,
            expires_us: row.try_get("expires_us")?,
        })
    })
    .transpose()
}

pub async fn insert_device_login(
    conn: &mut AnyConnection,
    id: &str,
    d: &DeviceLogin,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_device_logins (id_hash, provider, device_key, provider_answer, \
         interval_s, next_poll_us, expires_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(digest(id))
    .bind(&d.provider)
    .bind(&d.device_key)
    .bind(&d.authorization)
    .bind(d.interval_s)
    .bind(d.next_poll_us)
    .bind(d.expires_us)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn device_login(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<DeviceLogin>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT provider, device_key, provider_answer, interval_s, next_poll_us, expires_us \
         FROM auth_device_logins WHERE id_hash = $1",
    )
    .bind(digest(id))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(DeviceLogin {
            provider: row.try_get("provider")?,
            device_key: row.try_get("device_key")?,
            authorization: row.try_get("provider_answer")?,
            interval_s: row.try_get("interval_s")?,
            next_poll_us: row.try_get("next_poll_us")?,
            expires_us: row.try_get("expires_us")?,
        })
    })
    .transpose()
}

/// Claims the next poll of a device sign-in: true when it was due (and is now pushed back by
/// its interval), false when another poll came too soon or already claimed it.
pub async fn claim_poll(
    conn: &mut AnyConnection,
    id: &str,
    now_us: i64,
    next_poll_us: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE auth_device_logins SET next_poll_us = $3 WHERE id_hash = $1 AND next_poll_us <= $2",
    )
    .bind(digest(id))
    .bind(now_us)
    .bind(next_poll_us)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Removes a device sign-in (approved, refused or expired); true when it was there.
pub async fn take_device_login(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM auth_device_logins WHERE id_hash = $1")
            .bind(digest(id))
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Forgets tickets and device sign-ins that expired before `now_us`.
pub async fn purge(conn: &mut AnyConnection, now_us: i64) -> Result<u64, sqlx::Error> {
    let mut purged = 0;
    for table in ["auth_sign_in_tickets", "auth_device_logins"] {
        purged += sqlx::query(&format!("DELETE FROM {table} WHERE expires_us <= $1"))
            .bind(now_us)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(purged)
}

/// A stored signing key: `(generation, kid, sealed PKCS#8, signs from (Unix seconds))`.
pub type StoredSigningKey = (i64, String, String, i64);

/// The ring of signing keys, oldest first.
pub async fn signing_keys(conn: &mut AnyConnection) -> Result<Vec<StoredSigningKey>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT generation, kid, sealed_pkcs8, signs_from_s FROM auth_signing_keys \
         ORDER BY generation",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("generation")?,
                row.try_get("kid")?,
                row.try_get("sealed_pkcs8")?,
                row.try_get("signs_from_s")?,
            ))
        })
        .collect()
}

/// Adds a signing key; false when another replica added this generation first.
pub async fn insert_signing_key(
    conn: &mut AnyConnection,
    (generation, kid, sealed, signs_from): &StoredSigningKey,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO auth_signing_keys (generation, kid, sealed_pkcs8, signs_from_s) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (generation) DO NOTHING",
    )
    .bind(generation)
    .bind(kid)
    .bind(sealed)
    .bind(signs_from)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Forgets the signing key `kid` (no unexpired token names it).
pub async fn delete_signing_key(conn: &mut AnyConnection, kid: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_signing_keys WHERE kid = $1")
        .bind(kid)
        .execute(conn)
        .await?;
    Ok(())
}
