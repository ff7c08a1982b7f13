//! Every SQL statement of the tele-expertise service, one function per question or change.
//!
//! Functions take a connection (`&mut AnyConnection`), so the core decides the transaction
//! boundaries. Instants are Unix microseconds; the same SQL runs on SQLite and PostgreSQL.

use jiff::Timestamp;
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::{
    delivery::{Delivery, DeliveryStatus, Recipient},
    error::ExpertiseError,
    filing::PacsTransfer,
    model::{ActorRecord, Event, EventKind, Message, Request, Status},
};

pub use telehealth_kit::record::{instant, micros};
use telehealth_kit::record::{json, opt_instant, parse_json};

type Result<T> = std::result::Result<T, ExpertiseError>;

// ---- requests --------------------------------------------------------------------------------

const REQUEST_COLUMNS: &str = "request_id, status, requester_subject, requester_org, requester_json, \
     target_org, specialty, patient_pseudonym, urgency, content_json, created_at_us, updated_at_us, \
     submitted_at_us, due_at_us, overdue_announced, claimed_by_subject, claimed_by_json, claimed_at_us, \
     answer_json, answered_at_us, decline_json, declined_at_us, withdrawal_json, withdrawn_at_us, \
     closed_at_us, closed_by_json, message_count, version, consent_id";

fn request_row(row: &AnyRow) -> Result<Request> {
    let status: String = row.try_get("status")?;
    Ok(Request {
        id: row.try_get("request_id")?,
        status: Status::parse(&status).unwrap_or(Status::Draft),
        requester: parse_json(row.try_get("requester_json")?).unwrap_or_default(),
        requester_org: row.try_get("requester_org")?,
        content: parse_json(row.try_get("content_json")?).unwrap_or_default(),
        created_at: instant(row.try_get("created_at_us")?),
        updated_at: instant(row.try_get("updated_at_us")?),
        submitted_at: opt_instant(row.try_get("submitted_at_us")?),
        due_at: opt_instant(row.try_get("due_at_us")?),
        overdue_announced: row.try_get::<i64, _>("overdue_announced")? != 0,
        claimed_by: parse_json(row.try_get("claimed_by_json")?),
        claimed_at: opt_instant(row.try_get("claimed_at_us")?),
        answer: parse_json(row.try_get("answer_json")?),
        answered_at: opt_instant(row.try_get("answered_at_us")?),
        decline: parse_json(row.try_get("decline_json")?),
        declined_at: opt_instant(row.try_get("declined_at_us")?),
        withdrawal: parse_json(row.try_get("withdrawal_json")?),
        withdrawn_at: opt_instant(row.try_get("withdrawn_at_us")?),
        closed_at: opt_instant(row.try_get("closed_at_us")?),
        closed_by: parse_json(row.try_get("closed_by_json")?),
        message_count: row.try_get("message_count")?,
        version: row.try_get("version")?,
        consent_id: row.try_get("consent_id")?,
    })
}

/// Binds every column of `r` in `REQUEST_COLUMNS` order.
fn bind_request<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    r: &Request,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let patient = r
        .content
        .patient
        .as_ref()
        .map(|p| p.pseudonym.clone())
        .unwrap_or_default();
    query
        .bind(r.id.clone())
        .bind(r.status.as_str())
        .bind(r.requester.subject.clone())
        .bind(r.requester_org.clone())
        .bind(json(&r.requester))
        .bind(r.content.target_org_id.clone())
        .bind(r.content.specialty.clone())
        .bind(patient)
        .bind(i64::from(r.content.urgency.number()))
        .bind(json(&r.content))
        .bind(micros(r.created_at))
        .bind(micros(r.updated_at))
        .bind(r.submitted_at.map(micros))
        .bind(r.due_at.map(micros))
        .bind(i64::from(r.overdue_announced))
        .bind(r.claimed_by.as_ref().map(|a| a.subject.clone()))
        .bind(r.claimed_by.as_ref().map(json))
        .bind(r.claimed_at.map(micros))
        .bind(r.answer.as_ref().map(json))
        .bind(r.answered_at.map(micros))
        .bind(r.decline.as_ref().map(json))
        .bind(r.declined_at.map(micros))
        .bind(r.withdrawal.as_ref().map(json))
        .bind(r.withdrawn_at.map(micros))
        .bind(r.closed_at.map(micros))
        .bind(r.closed_by.as_ref().map(json))
        .bind(r.message_count)
        .bind(r.version)
        .bind(r.consent_id.clone())
}

fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts a new request.
pub async fn insert_request(conn: &mut AnyConnection, r: &Request) -> Result<()> {
    let sql = format!(
        "INSERT INTO expertise_requests ({REQUEST_COLUMNS}) VALUES ({})",
        placeholders(1, 29)
    );
    bind_request(sqlx::query(&sql), r)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes `updated` if the row is still at `previous_version` (it is: the row is locked).
pub async fn save_request(
    conn: &mut AnyConnection,
    updated: &Request,
    previous_version: i64,
) -> Result<()> {
    if update_request(conn, updated, previous_version).await? {
        Ok(())
    } else {
        Err(ExpertiseError::VersionMismatch {
            current: previous_version,
        })
    }
}

/// Replaces a request's row if its version is still `previous_version`; false if it was not
/// (a concurrent change won: the database, not the code, decides).
pub async fn update_request(
    conn: &mut AnyConnection,
    r: &Request,
    previous_version: i64,
) -> Result<bool> {
    let sets = REQUEST_COLUMNS
        .split(", ")
        .enumerate()
        .skip(1)
        .map(|(i, column)| format!("{} = ${}", column.trim(), i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("UPDATE expertise_requests SET {sets} WHERE request_id = $1 AND version = $30");
    let done = bind_request(sqlx::query(&sql), r)
        .bind(previous_version)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes the write lock on a request before reading it (PostgreSQL row lock, SQLite write
/// lock): concurrent changes of one request, also from other replicas, queue here.
pub async fn lock_request(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE expertise_requests SET version = version WHERE request_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One request by id.
pub async fn request(conn: &mut AnyConnection, id: &str) -> Result<Option<Request>> {
    let row = sqlx::query(&format!(
        "SELECT {REQUEST_COLUMNS} FROM expertise_requests WHERE request_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(request_row).transpose()
}

/// Marks BECAME_OVERDUE as announced; true for the one caller (replica) that did it.
pub async fn claim_overdue_announcement(
    conn: &mut AnyConnection,
    id: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE expertise_requests SET overdue_announced = 1 WHERE request_id = $1 \
         AND overdue_announced = 0 AND status IN ('submitted', 'claimed') AND due_at_us < $2",
    )
    .bind(id)
    .bind(micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Open requests past their due date whose overdue event was not published yet.
pub async fn newly_overdue(
    conn: &mut AnyConnection,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT request_id FROM expertise_requests WHERE status IN ('submitted', 'claimed') \
         AND overdue_announced = 0 AND due_at_us < $1 ORDER BY due_at_us, request_id LIMIT $2",
    )
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("request_id")?)).collect()
}

/// How many requests are past their due time without an answer, as of `now`.
pub async fn count_overdue(conn: &mut AnyConnection, now: Timestamp) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM expertise_requests WHERE status IN ('submitted', 'claimed') \
         AND due_at_us < $1",
    )
    .bind(micros(now))
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("n")?)
}

/// Answered requests whose answer is older than `cutoff`.
pub async fn answered_before(
    conn: &mut AnyConnection,
    cutoff: Timestamp,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT request_id FROM expertise_requests WHERE status = 'answered' \
         AND answered_at_us < $1 ORDER BY answered_at_us, request_id LIMIT $2",
    )
    .bind(micros(cutoff))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("request_id")?)).collect()
}

/// What an inbox listing covers (already narrowed to the caller's target).
#[derive(Debug, Clone)]
pub struct InboxFilter {
    pub target_org: String,
    pub specialty: String,
    pub statuses: Vec<Status>,
    pub claimed_by: Option<String>,
    pub overdue_only: bool,
    /// The instant "overdue" is evaluated at (first page's time, kept by the token).
    pub as_of: Timestamp,
}

/// Position in the inbox order: (not overdue 0/1, due, id).
pub type InboxPosition = (i64, i64, String);

/// The inbox: overdue first, then by due date, then id, after `after`, at most `limit`.
pub async fn inbox(
    conn: &mut AnyConnection,
    filter: &InboxFilter,
    after: Option<&InboxPosition>,
    limit: i64,
) -> Result<Vec<(Request, InboxPosition)>> {
    // $1 target, $2 specialty, $3 as_of; then statuses, claimer, keyset, limit. Never submitted
    // requests (drafts, and drafts withdrawn) are the requester's alone.
    let rank =
        "(CASE WHEN status IN ('submitted', 'claimed') AND due_at_us < $3 THEN 0 ELSE 1 END)";
    let mut sql = format!(
        "SELECT {REQUEST_COLUMNS}, {rank} AS late_rank FROM expertise_requests \
         WHERE target_org = $1 AND specialty = $2 AND status <> 'draft' \
         AND submitted_at_us IS NOT NULL"
    );
    let mut n = 3;
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    if !statuses.is_empty() {
        sql.push_str(&format!(
            " AND status IN ({})",
            placeholders(n + 1, statuses.len())
        ));
        n += statuses.len();
    }
    if filter.claimed_by.is_some() {
        n += 1;
        sql.push_str(&format!(" AND claimed_by_subject = ${n}"));
    }
    if filter.overdue_only {
        sql.push_str(&format!(" AND {rank} = 0"));
    }
    if after.is_some() {
        sql.push_str(&format!(
            " AND ({rank} > ${a} OR ({rank} = ${a} AND (due_at_us > ${b} OR (due_at_us = ${b} AND request_id > ${c}))))",
            a = n + 1,
            b = n + 2,
            c = n + 3
        ));
        n += 3;
    }
    sql.push_str(&format!(
        " ORDER BY late_rank, due_at_us, request_id LIMIT ${}",
        n + 1
    ));
    let mut query = sqlx::query(&sql)
        .bind(filter.target_org.clone())
        .bind(filter.specialty.clone())
        .bind(micros(filter.as_of));
    for status in statuses {
        query = query.bind(status);
    }
    if let Some(claimer) = &filter.claimed_by {
        query = query.bind(claimer.clone());
    }
    if let Some((rank, due, id)) = after {
        query = query.bind(*rank).bind(*due).bind(id.clone());
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            let request = request_row(row)?;
            let position = (
                row.try_get::<i64, _>("late_rank")?,
                row.try_get::<Option<i64>, _>("due_at_us")?.unwrap_or(0),
                request.id.clone(),
            );
            Ok((request, position))
        })
        .collect()
}

/// What a "my requests" listing covers.
#[derive(Debug, Clone)]
pub struct MineFilter {
    pub requester_org: String,
    /// `None` with `whole_org`.
    pub requester: Option<String>,
    pub statuses: Vec<Status>,
    /// Any of these patient ids (a patient's surviving id and the ids merged into it); empty:
    /// any patient.
    pub patients: Vec<String>,
}

/// Requests of a requester (or his org), newest first, after (created, id), at most `limit`.
pub async fn my_requests(
    conn: &mut AnyConnection,
    filter: &MineFilter,
    after: Option<&(i64, String)>,
    limit: i64,
) -> Result<Vec<Request>> {
    let mut sql =
        format!("SELECT {REQUEST_COLUMNS} FROM expertise_requests WHERE requester_org = $1");
    let mut n = 1;
    if filter.requester.is_some() {
        n += 1;
        sql.push_str(&format!(" AND requester_subject = ${n}"));
    }
    if !filter.statuses.is_empty() {
        sql.push_str(&format!(
            " AND status IN ({})",
            placeholders(n + 1, filter.statuses.len())
        ));
        n += filter.statuses.len();
    }
    if !filter.patients.is_empty() {
        sql.push_str(&format!(
            " AND patient_pseudonym IN ({})",
            placeholders(n + 1, filter.patients.len())
        ));
        n += filter.patients.len();
    }
    if after.is_some() {
        sql.push_str(&format!(
            " AND (created_at_us < ${a} OR (created_at_us = ${a} AND request_id < ${b}))",
            a = n + 1,
            b = n + 2
        ));
        n += 2;
    }
    sql.push_str(&format!(
        " ORDER BY created_at_us DESC, request_id DESC LIMIT ${}",
        n + 1
    ));
    let mut query = sqlx::query(&sql).bind(filter.requester_org.clone());
    if let Some(requester) = &filter.requester {
        query = query.bind(requester.clone());
    }
    for status in &filter.statuses {
        query = query.bind(status.as_str());
    }
    for patient in &filter.patients {
        query = query.bind(patient.clone());
    }
    if let Some((created, id)) = after {
        query = query.bind(*created).bind(id.clone());
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(request_row).collect()
}

/// Every request of `org` (as requester or as target) the activity report of a period ending at
/// `end` may need: submitted before `end`, and answered since `year_start`, or submitted since
/// `month_start`, or still open at `end`.
pub async fn report_requests(
    conn: &mut AnyConnection,
    org: &str,
    year_start: Timestamp,
    month_start: Timestamp,
    end: Timestamp,
) -> Result<Vec<Request>> {
    let rows = sqlx::query(&format!(
        "SELECT {REQUEST_COLUMNS} FROM expertise_requests \
         WHERE (requester_org = $1 OR target_org = $1) AND submitted_at_us IS NOT NULL \
         AND submitted_at_us < $4 AND (answered_at_us >= $2 OR submitted_at_us >= $3 \
         OR COALESCE(answered_at_us, declined_at_us, withdrawn_at_us, $4) >= $4) \
         ORDER BY request_id"
    ))
    .bind(org)
    .bind(micros(year_start))
    .bind(micros(month_start))
    .bind(micros(end))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(request_row).collect()
}

// ---- events ----------------------------------------------------------------------------------

fn event_row(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        id: row.try_get("event_id")?,
        request_id: row.try_get("request_id")?,
        kind: EventKind::from_number(row.try_get("kind")?).unwrap_or(EventKind::Submitted),
        occurred_at: instant(row.try_get("occurred_at_us")?),
        actor: parse_json(row.try_get("actor_json")?).unwrap_or_default(),
        message_id: row.try_get("message_id")?,
    })
}

/// Records an event of a request.
pub async fn insert_event(conn: &mut AnyConnection, event: &Event) -> Result<()> {
    sqlx::query(
        "INSERT INTO expertise_events (event_id, request_id, kind, occurred_at_us, actor_json, message_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&event.id)
    .bind(&event.request_id)
    .bind(event.kind as i64)
    .bind(micros(event.occurred_at))
    .bind(json(&event.actor))
    .bind(&event.message_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One event by id.
pub async fn event(conn: &mut AnyConnection, id: &str) -> Result<Option<Event>> {
    let row = sqlx::query(
        "SELECT event_id, request_id, kind, occurred_at_us, actor_json, message_id \
         FROM expertise_events WHERE event_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(event_row).transpose()
}

/// The latest lifecycle event of a request (messages and images aside).
pub async fn last_transition(conn: &mut AnyConnection, request_id: &str) -> Result<Option<Event>> {
    let row = sqlx::query(
        "SELECT event_id, request_id, kind, occurred_at_us, actor_json, message_id \
         FROM expertise_events WHERE request_id = $1 AND kind NOT IN (4, 5, 10) \
         ORDER BY occurred_at_us DESC, event_id DESC LIMIT 1",
    )
    .bind(request_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(event_row).transpose()
}

// ---- messages --------------------------------------------------------------------------------

fn message_row(row: &AnyRow) -> Result<Message> {
    Ok(Message {
        id: row.try_get("message_id")?,
        request_id: row.try_get("request_id")?,
        sequence: row.try_get("sequence")?,
        author: parse_json::<ActorRecord>(row.try_get("author_json")?).unwrap_or_default(),
        text: row.try_get("text")?,
        posted_at: instant(row.try_get("posted_at_us")?),
    })
}

/// Records a message.
pub async fn insert_message(conn: &mut AnyConnection, message: &Message) -> Result<()> {
    sqlx::query(
        "INSERT INTO expertise_messages (message_id, request_id, sequence, author_json, text, posted_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&message.id)
    .bind(&message.request_id)
    .bind(message.sequence)
    .bind(json(&message.author))
    .bind(&message.text)
    .bind(micros(message.posted_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One message by id.
pub async fn message(conn: &mut AnyConnection, id: &str) -> Result<Option<Message>> {
    let row = sqlx::query(
        "SELECT message_id, request_id, sequence, author_json, text, posted_at_us \
         FROM expertise_messages WHERE message_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(message_row).transpose()
}

/// Messages of a request after sequence `after`, in order, at most `limit`.
pub async fn messages(
    conn: &mut AnyConnection,
    request_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>> {
    let rows = sqlx::query(
        "SELECT message_id, request_id, sequence, author_json, text, posted_at_us \
         FROM expertise_messages WHERE request_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
    )
    .bind(request_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(message_row).collect()
}

// ---- billing rules ---------------------------------------------------------------------------

/// A tariff row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TariffRow {
    pub tariff_id: String,
    pub act_code: String,
    pub amount_cents: i64,
    pub valid_from: String,
    pub valid_until: Option<String>,
}

/// A billing condition row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionRow {
    pub rule_id: String,
    pub act_code: String,
    pub kind: String,
    pub value: i64,
    pub valid_from: String,
    pub valid_until: Option<String>,
}

/// Every tariff, by code then start of validity.
/// The act a request by a `profession` is billed as on `date` (`YYYY-MM-DD`), if that
/// profession may request a tele-expertise then.
pub async fn requester_right(
    conn: &mut AnyConnection,
    profession: &str,
    date: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT act_code FROM requester_rights WHERE profession = $1 AND valid_from <= $2 \
         AND (valid_until IS NULL OR valid_until >= $2) ORDER BY valid_from DESC LIMIT 1",
    )
    .bind(profession)
    .bind(date)
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn tariffs(conn: &mut AnyConnection) -> Result<Vec<TariffRow>> {
    let rows = sqlx::query(
        "SELECT tariff_id, act_code, amount_cents, valid_from, valid_until FROM billing_tariffs \
         ORDER BY act_code, valid_from, tariff_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(TariffRow {
                tariff_id: row.try_get("tariff_id")?,
                act_code: row.try_get("act_code")?,
                amount_cents: row.try_get("amount_cents")?,
                valid_from: row.try_get("valid_from")?,
                valid_until: row.try_get("valid_until")?,
            })
        })
        .collect()
}

/// Every billing condition.
pub async fn conditions(conn: &mut AnyConnection) -> Result<Vec<ConditionRow>> {
    let rows = sqlx::query(
        "SELECT rule_id, act_code, kind, value, valid_from, valid_until FROM billing_conditions \
         ORDER BY act_code, kind, valid_from, rule_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ConditionRow {
                rule_id: row.try_get("rule_id")?,
                act_code: row.try_get("act_code")?,
                kind: row.try_get("kind")?,
                value: row.try_get("value")?,
                valid_from: row.try_get("valid_from")?,
                valid_until: row.try_get("valid_until")?,
            })
        })
        .collect()
}

// ---- report deliveries -----------------------------------------------------------------------

const DELIVERY_COLUMNS: &str = "request_id, recipient, address, status, attempts, last_error, \
     next_attempt_us, delivered_at_us, created_at_us";

fn delivery_row(row: &AnyRow) -> Result<Delivery> {
    let recipient: String = row.try_get("recipient")?;
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        request_id: row.try_get("request_id")?,
        recipient: Recipient::parse(&recipient).unwrap_or(Recipient::Requester),
        address: row.try_get("address")?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: i32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(i32::MAX),
        last_error: row.try_get("last_error")?,
        next_attempt_at: instant(row.try_get("next_attempt_us")?),
        delivered_at: opt_instant(row.try_get("delivered_at_us")?),
        created_at: instant(row.try_get("created_at_us")?),
    })
}

pub async fn insert_delivery(conn: &mut AnyConnection, d: &Delivery) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO report_deliveries ({DELIVERY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&d.request_id)
    .bind(d.recipient.as_str())
    .bind(&d.address)
    .bind(d.status.as_str())
    .bind(i64::from(d.attempts))
    .bind(&d.last_error)
    .bind(micros(d.next_attempt_at))
    .bind(d.delivered_at.map(micros))
    .bind(micros(d.created_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The deliveries of one request's report.
pub async fn deliveries_of(conn: &mut AnyConnection, request_id: &str) -> Result<Vec<Delivery>> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM report_deliveries WHERE request_id = $1 ORDER BY recipient DESC"
    ))
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(delivery_row).collect()
}

/// Deliveries due at `now` (pending or retrying), oldest first, at most `limit`.
pub async fn due_deliveries(
    conn: &mut AnyConnection,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM report_deliveries \
         WHERE status IN ('pending', 'retrying') AND next_attempt_us <= $1 \
         ORDER BY next_attempt_us LIMIT $2"
    ))
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(delivery_row).collect()
}

/// Takes a due delivery for one attempt until `until`: true for exactly one replica (the one
/// whose update still sees the due time it read).
pub async fn claim_delivery(
    conn: &mut AnyConnection,
    d: &Delivery,
    until: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE report_deliveries SET next_attempt_us = $1 \
         WHERE request_id = $2 AND recipient = $3 AND next_attempt_us = $4 \
         AND status IN ('pending', 'retrying')",
    )
    .bind(micros(until))
    .bind(&d.request_id)
    .bind(d.recipient.as_str())
    .bind(micros(d.next_attempt_at))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the outcome of an attempt.
pub async fn save_delivery(conn: &mut AnyConnection, d: &Delivery) -> Result<()> {
    sqlx::query(
        "UPDATE report_deliveries SET status = $1, attempts = $2, last_error = $3, \
         next_attempt_us = $4, delivered_at_us = $5 WHERE request_id = $6 AND recipient = $7",
    )
    .bind(d.status.as_str())
    .bind(i64::from(d.attempts))
    .bind(&d.last_error)
    .bind(micros(d.next_attempt_at))
    .bind(d.delivered_at.map(micros))
    .bind(&d.request_id)
    .bind(d.recipient.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---- PACS transfers --------------------------------------------------------------------------

const TRANSFER_COLUMNS: &str = "request_id, image_id, destination, status, attempts, last_error, \
     next_attempt_us, stored_at_us, created_at_us, sop_instance_uid";

fn transfer_row(row: &AnyRow) -> Result<PacsTransfer> {
    let status: String = row.try_get("status")?;
    Ok(PacsTransfer {
        request_id: row.try_get("request_id")?,
        image_id: row.try_get("image_id")?,
        destination: row.try_get("destination")?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: i32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(i32::MAX),
        last_error: row.try_get("last_error")?,
        next_attempt_at: instant(row.try_get("next_attempt_us")?),
        stored_at: opt_instant(row.try_get("stored_at_us")?),
        created_at: instant(row.try_get("created_at_us")?),
        sop_instance_uid: row.try_get("sop_instance_uid")?,
    })
}

pub async fn insert_transfer(conn: &mut AnyConnection, t: &PacsTransfer) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO pacs_transfers ({TRANSFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&t.request_id)
    .bind(&t.image_id)
    .bind(&t.destination)
    .bind(t.status.as_str())
    .bind(i64::from(t.attempts))
    .bind(&t.last_error)
    .bind(micros(t.next_attempt_at))
    .bind(t.stored_at.map(micros))
    .bind(micros(t.created_at))
    .bind(&t.sop_instance_uid)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The transfers of one request's images.
pub async fn transfers_of(conn: &mut AnyConnection, request_id: &str) -> Result<Vec<PacsTransfer>> {
    let rows = sqlx::query(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM pacs_transfers WHERE request_id = $1 ORDER BY created_at_us, image_id"
    ))
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(transfer_row).collect()
}

/// Transfers due at `now` (pending or retrying), oldest first, at most `limit`.
pub async fn due_transfers(
    conn: &mut AnyConnection,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<PacsTransfer>> {
    let rows = sqlx::query(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM pacs_transfers \
         WHERE status IN ('pending', 'retrying') AND next_attempt_us <= $1 \
         ORDER BY next_attempt_us LIMIT $2"
    ))
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(transfer_row).collect()
}

/// Takes a due transfer for one attempt until `until` (see [`claim_delivery`]).
pub async fn claim_transfer(
    conn: &mut AnyConnection,
    t: &PacsTransfer,
    until: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE pacs_transfers SET next_attempt_us = $1 \
         WHERE request_id = $2 AND image_id = $3 AND next_attempt_us = $4 \
         AND status IN ('pending', 'retrying')",
    )
    .bind(micros(until))
    .bind(&t.request_id)
    .bind(&t.image_id)
    .bind(micros(t.next_attempt_at))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the outcome of an attempt.
pub async fn save_transfer(conn: &mut AnyConnection, t: &PacsTransfer) -> Result<()> {
    sqlx::query(
        "UPDATE pacs_transfers SET status = $1, attempts = $2, last_error = $3, \
         next_attempt_us = $4, stored_at_us = $5, sop_instance_uid = $6 \
         WHERE request_id = $7 AND image_id = $8",
    )
    .bind(t.status.as_str())
    .bind(i64::from(t.attempts))
    .bind(&t.last_error)
    .bind(micros(t.next_attempt_at))
    .bind(t.stored_at.map(micros))
    .bind(&t.sop_instance_uid)
    .bind(&t.request_id)
    .bind(&t.image_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
