//! Every SQL statement of the signalling service, one function per question or change.
//!
//! Functions take a connection (`&mut AnyConnection`), so the core decides the transaction
//! boundaries. Instants are stored as Unix microseconds; enums as their contract numbers.

use jiff::Timestamp;
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::{
    domain::{
        CloseReason, Incident, IncidentKind, IncidentSource, Participant, PeerInfo, Role, Room,
        Window,
    },
    error::SignallingError,
};

pub use telehealth_kit::record::{instant, micros};

type Result<T> = std::result::Result<T, SignallingError>;

fn role(number: i64) -> Role {
    Role::from_number(i32::try_from(number).unwrap_or(0)).unwrap_or(Role::Patient)
}

fn int(row: &AnyRow, column: &str) -> Result<i32> {
    let value: i64 = row.try_get(column)?;
    Ok(i32::try_from(value).unwrap_or(0))
}

// ---- rooms -----------------------------------------------------------------------------------

const ROOM_COLUMNS: &str = "room_id, appointment_id, org_id, scheduled_start_us, scheduled_end_us, \
     opens_at_us, closes_at_us, closed_at_us, close_reason";

async fn room_from(conn: &mut AnyConnection, row: AnyRow) -> Result<Room> {
    let room_id: String = row.try_get("room_id")?;
    let closed_at: Option<i64> = row.try_get("closed_at_us")?;
    let close_reason: Option<i64> = row.try_get("close_reason")?;
    let closed = closed_at.map(|at| {
        let reason = close_reason
            .and_then(|r| CloseReason::from_number(i32::try_from(r).unwrap_or(0)))
            .unwrap_or(CloseReason::Expired);
        (instant(at), reason)
    });
    let participants = participants(conn, &room_id).await?;
    Ok(Room {
        appointment_id: row.try_get("appointment_id")?,
        org_id: row.try_get("org_id")?,
        scheduled: Window {
            start: instant(row.try_get("scheduled_start_us")?),
            end: instant(row.try_get("scheduled_end_us")?),
        },
        admission: Window {
            start: instant(row.try_get("opens_at_us")?),
            end: instant(row.try_get("closes_at_us")?),
        },
        closed,
        participants,
        room_id,
    })
}

/// The room `room_id`, with its participants.
pub async fn room(conn: &mut AnyConnection, room_id: &str) -> Result<Option<Room>> {
    let row = sqlx::query(&format!(
        "SELECT {ROOM_COLUMNS} FROM rooms WHERE room_id = $1"
    ))
    .bind(room_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(room_from(conn, row).await?)),
        None => Ok(None),
    }
}

/// The room of `appointment_id`, with its participants.
pub async fn room_of_appointment(
    conn: &mut AnyConnection,
    appointment_id: &str,
) -> Result<Option<Room>> {
    let row = sqlx::query(&format!(
        "SELECT {ROOM_COLUMNS} FROM rooms WHERE appointment_id = $1"
    ))
    .bind(appointment_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(room_from(conn, row).await?)),
        None => Ok(None),
    }
}

/// The participants of a room, doctor first.
pub async fn participants(conn: &mut AnyConnection, room_id: &str) -> Result<Vec<Participant>> {
    let rows = sqlx::query(
        "SELECT participant_id, subject, role FROM room_participants WHERE room_id = $1 ORDER BY role, subject",
    )
    .bind(room_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Participant {
                participant_id: row.try_get("participant_id")?,
                subject: row.try_get("subject")?,
                role: role(row.try_get("role")?),
            })
        })
        .collect()
}

/// Inserts a new room (without participants) unless its appointment has one; true if
/// inserted. Being a write, it also takes the write lock first (SQLite: a transaction that reads
/// before it writes can fail with SQLITE_BUSY when another connection wrote meanwhile).
pub async fn insert_room(conn: &mut AnyConnection, room: &Room, now: Timestamp) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO rooms (room_id, appointment_id, org_id, scheduled_start_us, scheduled_end_us, \
         opens_at_us, closes_at_us, created_at_us, updated_at_us, closed_at_us, close_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL, NULL) \
         ON CONFLICT (appointment_id) DO NOTHING",
    )
    .bind(&room.room_id)
    .bind(&room.appointment_id)
    .bind(&room.org_id)
    .bind(micros(room.scheduled.start))
    .bind(micros(room.scheduled.end))
    .bind(micros(room.admission.start))
    .bind(micros(room.admission.end))
    .bind(micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Takes the room's row lock (PostgreSQL) or the write lock (SQLite) for the rest of the
/// transaction: joins, reopenings and closings of one room queue here, across replicas.
pub async fn lock_room(conn: &mut AnyConnection, room_id: &str, now: Timestamp) -> Result<()> {
    sqlx::query("UPDATE rooms SET updated_at_us = $2 WHERE room_id = $1")
        .bind(room_id)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Updates the org, schedule and window of an open room.
pub async fn update_room(conn: &mut AnyConnection, room: &Room, now: Timestamp) -> Result<()> {
    sqlx::query(
        "UPDATE rooms SET org_id = $2, scheduled_start_us = $3, scheduled_end_us = $4, \
         opens_at_us = $5, closes_at_us = $6, updated_at_us = $7 WHERE room_id = $1",
    )
    .bind(&room.room_id)
    .bind(&room.org_id)
    .bind(micros(room.scheduled.start))
    .bind(micros(room.scheduled.end))
    .bind(micros(room.admission.start))
    .bind(micros(room.admission.end))
    .bind(micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Admits `participant` to `room_id`.
pub async fn insert_participant(
    conn: &mut AnyConnection,
    room_id: &str,
    participant: &Participant,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO room_participants (room_id, subject, participant_id, role) VALUES ($1, $2, $3, $4)",
    )
    .bind(room_id)
    .bind(&participant.subject)
    .bind(&participant.participant_id)
    .bind(i64::from(participant.role.number()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Changes the role of an admitted subject.
pub async fn update_participant_role(
    conn: &mut AnyConnection,
    participant_id: &str,
    role: Role,
) -> Result<()> {
    sqlx::query("UPDATE room_participants SET role = $2 WHERE participant_id = $1")
        .bind(participant_id)
        .bind(i64::from(role.number()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// No longer admits the participant `participant_id`.
pub async fn remove_participant(conn: &mut AnyConnection, participant_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM room_participants WHERE participant_id = $1")
        .bind(participant_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Closes an open room; false if it was already closed.
pub async fn close_room(
    conn: &mut AnyConnection,
    room_id: &str,
    at: Timestamp,
    reason: CloseReason,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE rooms SET closed_at_us = $2, close_reason = $3, updated_at_us = $2 \
         WHERE room_id = $1 AND closed_at_us IS NULL",
    )
    .bind(room_id)
    .bind(micros(at))
    .bind(i64::from(reason.number()))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Open rooms whose admission window ended before `before`.
pub async fn open_rooms_closing_before(
    conn: &mut AnyConnection,
    before: Timestamp,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT room_id FROM rooms WHERE closed_at_us IS NULL AND closes_at_us < $1 ORDER BY closes_at_us LIMIT 100",
    )
    .bind(micros(before))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get("room_id").map_err(Into::into))
        .collect()
}

// ---- connections -----------------------------------------------------------------------------

/// The current stream of a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub room_id: String,
    pub participant_id: String,
    pub connection_id: String,
    pub instance_id: String,
    pub client_platform: String,
    pub joined_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// The current stream of `participant_id` in `room_id`, if any.
pub async fn connection_of(
    conn: &mut AnyConnection,
    room_id: &str,
    participant_id: &str,
) -> Result<Option<ConnectionRow>> {
    let row = sqlx::query(
        "SELECT room_id, participant_id, connection_id, instance_id, client_platform, joined_at_us, last_seen_at_us \
         FROM connections WHERE room_id = $1 AND participant_id = $2",
    )
    .bind(room_id)
    .bind(participant_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(ConnectionRow {
            room_id: row.try_get("room_id")?,
            participant_id: row.try_get("participant_id")?,
            connection_id: row.try_get("connection_id")?,
            instance_id: row.try_get("instance_id")?,
            client_platform: row.try_get("client_platform")?,
            joined_at: instant(row.try_get("joined_at_us")?),
            last_seen_at: instant(row.try_get("last_seen_at_us")?),
        })
    })
    .transpose()
}

/// Makes `row` the current stream of its participant (replacing any other).
pub async fn put_connection(conn: &mut AnyConnection, row: &ConnectionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO connections (room_id, participant_id, connection_id, instance_id, client_platform, joined_at_us, last_seen_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (room_id, participant_id) DO UPDATE SET connection_id = excluded.connection_id, \
         instance_id = excluded.instance_id, client_platform = excluded.client_platform, \
         joined_at_us = excluded.joined_at_us, last_seen_at_us = excluded.last_seen_at_us",
    )
    .bind(&row.room_id)
    .bind(&row.participant_id)
    .bind(&row.connection_id)
    .bind(&row.instance_id)
    .bind(&row.client_platform)
    .bind(micros(row.joined_at))
    .bind(micros(row.last_seen_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets stream `connection_id` if it is still its participant's current one; true if so.
pub async fn delete_connection(
    conn: &mut AnyConnection,
    room_id: &str,
    participant_id: &str,
    connection_id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM connections WHERE room_id = $1 AND participant_id = $2 AND connection_id = $3",
    )
    .bind(room_id)
    .bind(participant_id)
    .bind(connection_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Forgets every stream of a room (it closed).
pub async fn delete_room_connections(conn: &mut AnyConnection, room_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM connections WHERE room_id = $1")
        .bind(room_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The participants of `room_id` other than `except` whose stream was seen after `seen_after`.
pub async fn connected_peers(
    conn: &mut AnyConnection,
    room_id: &str,
    except: &str,
    seen_after: Timestamp,
) -> Result<Vec<PeerInfo>> {
    let rows = sqlx::query(
        "SELECT c.participant_id, c.connection_id, c.joined_at_us, p.subject, p.role \
         FROM connections c JOIN room_participants p ON p.participant_id = c.participant_id \
         WHERE c.room_id = $1 AND c.participant_id <> $2 AND c.last_seen_at_us > $3 \
         ORDER BY p.role, c.participant_id",
    )
    .bind(room_id)
    .bind(except)
    .bind(micros(seen_after))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PeerInfo {
                participant_id: row.try_get("participant_id")?,
                connection_id: row.try_get("connection_id")?,
                subject: row.try_get("subject")?,
                role: role(row.try_get("role")?),
                joined_at: instant(row.try_get("joined_at_us")?),
            })
        })
        .collect()
}

/// Marks every stream held by `instance_id` as seen at `now` (the replica is alive).
pub async fn touch_instance(
    conn: &mut AnyConnection,
    instance_id: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE connections SET last_seen_at_us = $2 WHERE instance_id = $1")
        .bind(instance_id)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One entry of a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<'a> {
    pub room_id: &'a str,
    pub at: Timestamp,
    /// `joined`, `replaced`, `left`, `dropped`, `closed`…
    pub kind: &'a str,
    pub participant_id: &'a str,
    pub connection_id: &'a str,
    pub detail: &'a str,
}

/// Appends to a room's log.
pub async fn log(conn: &mut AnyConnection, entry: &LogEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO room_log (entry_id, room_id, at_us, kind, participant_id, connection_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(entry.room_id)
    .bind(micros(entry.at))
    .bind(entry.kind)
    .bind(entry.participant_id)
    .bind(entry.connection_id)
    .bind(entry.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The kinds logged for a room, oldest first (for tests and support).
pub async fn log_kinds(conn: &mut AnyConnection, room_id: &str) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT kind FROM room_log WHERE room_id = $1 ORDER BY at_us, entry_id")
        .bind(room_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| r.try_get("kind").map_err(Into::into))
        .collect()
}

// ---- incidents -------------------------------------------------------------------------------

const INCIDENT_COLUMNS: &str = "incident_id, appointment_id, room_id, participant_subject, participant_role, \
     source, kind, occurred_at_us, recorded_at_us, duration_seconds, description, network_type, \
     client_platform, client_incident_id";

fn incident_from(row: &AnyRow) -> Result<Incident> {
    Ok(Incident {
        incident_id: row.try_get("incident_id")?,
        appointment_id: row.try_get("appointment_id")?,
        room_id: row.try_get("room_id")?,
        participant_subject: row.try_get("participant_subject")?,
        participant_role: role(row.try_get("participant_role")?),
        source: IncidentSource::from_number(int(row, "source")?),
        kind: IncidentKind(int(row, "kind")?),
        occurred_at: instant(row.try_get("occurred_at_us")?),
        recorded_at: instant(row.try_get("recorded_at_us")?),
        duration_seconds: int(row, "duration_seconds")?,
        description: row.try_get("description")?,
        network_type: int(row, "network_type")?,
        client_platform: row.try_get("client_platform")?,
        client_incident_id: row.try_get("client_incident_id")?,
    })
}

/// Records an incident, unless the same participant already reported one under the same
/// `client_incident_id`; true if recorded.
pub async fn insert_incident(conn: &mut AnyConnection, incident: &Incident) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO incidents ({INCIDENT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (appointment_id, participant_subject, client_incident_id) DO NOTHING"
    ))
    .bind(&incident.incident_id)
    .bind(&incident.appointment_id)
    .bind(&incident.room_id)
    .bind(&incident.participant_subject)
    .bind(i64::from(incident.participant_role.number()))
    .bind(i64::from(incident.source.number()))
    .bind(i64::from(incident.kind.0))
    .bind(micros(incident.occurred_at))
    .bind(micros(incident.recorded_at))
    .bind(i64::from(incident.duration_seconds))
    .bind(&incident.description)
    .bind(i64::from(incident.network_type))
    .bind(&incident.client_platform)
    .bind(&incident.client_incident_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The incident a participant already reported under `client_incident_id`.
pub async fn reported_incident(
    conn: &mut AnyConnection,
    appointment_id: &str,
    subject: &str,
    client_incident_id: &str,
) -> Result<Option<Incident>> {
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents \
         WHERE appointment_id = $1 AND participant_subject = $2 AND client_incident_id = $3"
    ))
    .bind(appointment_id)
    .bind(subject)
    .bind(client_incident_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(incident_from).transpose()
}

/// Up to `limit` incidents of an appointment after the keyset position `after`
/// (occurred_at, incident id), in that order.
pub async fn incidents(
    conn: &mut AnyConnection,
    appointment_id: &str,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Incident>> {
    let (after_us, after_id) = after.unwrap_or((i64::MIN, String::new()));
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE appointment_id = $1 \
         AND (occurred_at_us > $2 OR (occurred_at_us = $2 AND incident_id > $3)) \
         ORDER BY occurred_at_us, incident_id LIMIT $4"
    ))
    .bind(appointment_id)
    .bind(after_us)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(incident_from).collect()
}

// ---- relayed messages in transit -------------------------------------------------------------

/// Keeps a message too large for the event bus until its addressee's replica takes it.
pub async fn put_spill(
    conn: &mut AnyConnection,
    spill_id: &str,
    body: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("INSERT INTO relay_spill (spill_id, body, created_at_us) VALUES ($1, $2, $3)")
        .bind(spill_id)
        .bind(body)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes (reads and deletes) a spilled message.
pub async fn take_spill(conn: &mut AnyConnection, spill_id: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT body FROM relay_spill WHERE spill_id = $1")
        .bind(spill_id)
        .fetch_optional(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM relay_spill WHERE spill_id = $1")
        .bind(spill_id)
        .execute(&mut *conn)
        .await?;
    row.map(|r| r.try_get("body").map_err(Into::into))
        .transpose()
}

/// Deletes spilled messages nobody took (their addressee left) older than `before`.
pub async fn purge_spills(conn: &mut AnyConnection, before: Timestamp) -> Result<u64> {
    let done = sqlx::query("DELETE FROM relay_spill WHERE created_at_us < $1")
        .bind(micros(before))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}
