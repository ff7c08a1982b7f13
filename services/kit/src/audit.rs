//! The audit trail: who read or changed which patient record, when, with what outcome.
//!
//! Each service writes its trail into its own database (table `audit_log`, created by the kit's
//! migration). Records form a hash chain: a record's `hash` is the SHA-256 of the previous
//! record's hash and its own canonical content, and `audit_head` holds the newest sequence number
//! and hash. Database triggers refuse UPDATE and DELETE; [`verify`] detects what an attacker with
//! direct database access could still do (alter, delete or insert records, or truncate the tail)
//! and names the first broken link. What it cannot detect is the whole database being replaced
//! by a consistent forgery; anchoring the head hash outside the database closes that (see docs).

use std::sync::LazyLock;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Acquire, AnyConnection, Row};

use crate::{
    db::{Database, is_conflict},
    error::{ApiError, ErrorCode, KitError},
    identity::Caller,
    record::now_micros,
};

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an audited operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused: the caller may not see or change the record.
    Denied,
    /// The record does not exist.
    NotFound,
    /// Refused: bad input or an illegal transition.
    Invalid,
    /// Failed for an internal reason.
    Failed,
}

impl Outcome {
    /// What a refused or failed call is in the trail, from what the caller was answered: not
    /// found, denied (permission or identity), invalid (any other refusal: bad input, a state or
    /// version that does not allow it, a conflict, a limit), or failed (internal, a dependency
    /// down, a deadline).
    pub fn of<E: ApiError + ?Sized>(error: &E) -> Outcome {
        match error.code() {
            ErrorCode::NotFound => Outcome::NotFound,
            ErrorCode::PermissionDenied | ErrorCode::Unauthenticated => Outcome::Denied,
            ErrorCode::InvalidArgument
            | ErrorCode::FailedPrecondition
            | ErrorCode::AlreadyExists
            | ErrorCode::Aborted
            | ErrorCode::ResourceExhausted => Outcome::Invalid,
            ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => {
                Outcome::Failed
            }
        }
    }

    fn parse(text: &str) -> Outcome {
        match text {
            "ok" => Outcome::Ok,
            "denied" => Outcome::Denied,
            "not_found" => Outcome::NotFound,
            "invalid" => Outcome::Invalid,
            _ => Outcome::Failed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::NotFound => "not_found",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
        }
    }
}

/// One audited access to patient data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub subject: String,
    pub roles: String,
    pub org: String,
    pub cert_thumbprint: String,
    /// The operation, usually the gRPC method (`GetWound`).
    pub action: String,
    /// The kind of record (`appointment`, `wound`, `image`...).
    pub record_type: String,
    pub record_id: String,
    pub outcome: Outcome,
    pub trace_id: String,
}

impl AuditEntry {
    /// An entry for `caller` doing `action` on a record, stamped with the current trace id.
    pub fn new(
        caller: &Caller,
        action: impl Into<String>,
        record_type: impl Into<String>,
        record_id: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        let (roles, org, cert_thumbprint) = match caller {
            Caller::Person(identity) => (
                identity
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                identity.org.clone(),
                identity.cert_thumbprint.clone(),
            ),
            Caller::Service(_) => ("service".to_owned(), String::new(), String::new()),
        };
        AuditEntry {
            subject: caller.subject(),
            roles,
            org,
            cert_thumbprint,
            action: action.into(),
            record_type: record_type.into(),
            record_id: record_id.into(),
            outcome,
            trace_id: crate::telemetry::current_trace_id(),
        }
    }
}

/// The content a record's hash covers, in a fixed field order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    recorded_at_us: i64,
    subject: &'a str,
    roles: &'a str,
    org: &'a str,
    cert_thumbprint: &'a str,
    action: &'a str,
    record_type: &'a str,
    record_id: &'a str,
    outcome: &'a str,
    trace_id: &'a str,
}

fn chain_hash(prev_hash: &str, content: &Canonical<'_>) -> String {
    let json =
        serde_json::to_vec(content).expect("serialising plain strings and integers cannot fail");
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(&json);
    hex::encode(hasher.finalize())
}

/// Appends `entry` to the trail of `db` in its own transaction; returns its sequence number.
pub async fn record(db: &Database, entry: &AuditEntry) -> Result<i64, KitError> {
    let mut conn = db.pool().acquire().await?;
    append(&mut conn, entry).await
}

/// Appends `entry` on `conn`. Inside a caller's transaction, the record commits or rolls back with
/// the change it describes.
pub async fn append(conn: &mut AnyConnection, entry: &AuditEntry) -> Result<i64, KitError> {
    let mut tx = conn.begin().await?;
    let mut head = Head::lock(&mut tx).await?;
    let seq = head.append(&mut tx, &[(entry, now_micros())]).await?;
    head.save(&mut tx).await?;
    tx.commit().await?;
    Ok(seq[0])
}

/// Stages `entry` in the caller's transaction: it commits or rolls back with the change it
/// describes, without taking the chain's head lock. [`AuditWriter::flush`] (after the commit)
/// chains it; if the process dies first, the next flush of any replica does.
pub async fn stage(conn: &mut AnyConnection, entry: &AuditEntry) -> Result<(), KitError> {
    // Built once: staging is on the path of every audited change.
    static STAGE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO audit_outbox (id, staged_at_us, {ENTRY_COLUMNS}) VALUES {}",
            placeholders(1, 2 + ENTRY_VALUES)
        )
    });
    let insert = sqlx::query(STAGE.as_str())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(now_micros());
    bind_entry(insert, entry).execute(conn).await?;
    Ok(())
}

/// The columns of an entry's content, in the tables of the log and of the outbox, in the order
/// [`bind_entry`] binds them.
const ENTRY_COLUMNS: &str =
    "subject, roles, org, cert_thumbprint, action, record_type, record_id, outcome, trace_id";

/// How many values [`ENTRY_COLUMNS`] names.
const ENTRY_VALUES: usize = 9;

/// How many values a record of the log holds: its sequence and time, the entry, and the two
/// hashes that chain it.
const LOG_VALUES: usize = 2 + ENTRY_VALUES + 2;

/// Binds the values of [`ENTRY_COLUMNS`] from `entry`, in their order.
fn bind_entry<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    entry: &'q AuditEntry,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(&entry.subject)
        .bind(&entry.roles)
        .bind(&entry.org)
        .bind(&entry.cert_thumbprint)
        .bind(&entry.action)
        .bind(&entry.record_type)
        .bind(&entry.record_id)
        .bind(entry.outcome.as_str())
        .bind(&entry.trace_id)
}

/// Chains staged entries (oldest first) after `head`, in the transaction open on `tx` that
/// holds its lock; returns how many (at most [`OUTBOX_BATCH`]: call again while it is that many).
async fn drain_outbox(tx: &mut AnyConnection, head: &mut Head) -> Result<usize, KitError> {
    static OLDEST_STAGED: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT id, staged_at_us, {ENTRY_COLUMNS} FROM audit_outbox \
             ORDER BY staged_at_us, id LIMIT $1"
        )
    });
    let rows = sqlx::query(OLDEST_STAGED.as_str())
        .bind(OUTBOX_BATCH)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut staged = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let entry = AuditEntry {
            subject: row.try_get("subject")?,
            roles: row.try_get("roles")?,
            org: row.try_get("org")?,
            cert_thumbprint: row.try_get("cert_thumbprint")?,
            action: row.try_get("action")?,
            record_type: row.try_get("record_type")?,
            record_id: row.try_get("record_id")?,
            outcome: Outcome::parse(&row.try_get::<String, _>("outcome")?),
            trace_id: row.try_get("trace_id")?,
        };
        staged.push((entry, row.try_get::<i64, _>("staged_at_us")?));
        ids.push(row.try_get::<String, _>("id")?);
    }
    let entries: Vec<_> = staged.iter().map(|(entry, at)| (entry, *at)).collect();
    head.append(&mut *tx, &entries).await?;
    let sql = format!(
        "DELETE FROM audit_outbox WHERE id IN {}",
        placeholders(1, ids.len())
    );
    // Not kept as a prepared statement: its text changes with the count.
    let mut delete = sqlx::query(&sql).persistent(false);
    for id in ids {
        delete = delete.bind(id);
    }
    delete.execute(&mut *tx).await?;
    Ok(rows.len())
}

/// `count` numbered placeholders from `$first`, in parentheses: `($3, $4)`.
fn placeholders(first: usize, count: usize) -> String {
    let numbered: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    format!("({})", numbered.join(", "))
}

/// Staged entries chained per statement at most ([`LOG_VALUES`] values each: far below the bind
/// limits of SQLite and PostgreSQL).
const OUTBOX_BATCH: i64 = 512;

/// How often the writer looks for entries staged by a replica that died before chaining them.
const OUTBOX_SWEEP: std::time::Duration = std::time::Duration::from_secs(2);

/// The newest record of the chain, inside a transaction that holds its lock: read once, moved
/// forward in memory by each append, written back once before the commit.
struct Head {
    seq: i64,
    hash: String,
}

impl Head {
    /// Locks the head and reads it. The lock is taken first (an UPDATE: the row lock on
    /// PostgreSQL, the write lock on SQLite), so concurrent appenders, even of other replicas,
    /// queue here and never fork the chain.
    async fn lock(tx: &mut AnyConnection) -> Result<Head, KitError> {
        let row = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        Ok(Head {
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
        })
    }

    /// Appends `entries` (each with the time it is recorded at) in one statement, chained after
    /// the head; returns their sequence numbers.
    async fn append(
        &mut self,
        tx: &mut AnyConnection,
        entries: &[(&AuditEntry, i64)],
    ) -> Result<Vec<i64>, KitError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.seq + 1;
        let rows: Vec<String> = (0..entries.len())
            .map(|row| placeholders(1 + row * LOG_VALUES, LOG_VALUES))
            .collect();
        let sql = format!(
            "INSERT INTO audit_log (seq, recorded_at_us, {ENTRY_COLUMNS}, prev_hash, hash) \
             VALUES {}",
            rows.join(", ")
        );
        // Not kept as a prepared statement: its text changes with the count.
        let mut insert = sqlx::query(&sql).persistent(false);
        let mut sequences = Vec::with_capacity(entries.len());
        for (entry, recorded_at_us) in entries {
            let seq = self.seq + 1;
            let outcome = entry.outcome.as_str();
            let hash = chain_hash(
                &self.hash,
                &Canonical {
                    seq,
                    recorded_at_us: *recorded_at_us,
                    subject: &entry.subject,
                    roles: &entry.roles,
                    org: &entry.org,
                    cert_thumbprint: &entry.cert_thumbprint,
                    action: &entry.action,
                    record_type: &entry.record_type,
                    record_id: &entry.record_id,
                    outcome,
                    trace_id: &entry.trace_id,
                },
            );
            insert = bind_entry(insert.bind(seq).bind(*recorded_at_us), entry)
                .bind(std::mem::replace(&mut self.hash, hash.clone()))
                .bind(hash);
            self.seq = seq;
            sequences.push(seq);
        }
        if let Err(error) = insert.execute(&mut *tx).await {
            if is_conflict(&error) {
                return Err(KitError::Audit(format!(
                    "audit sequence {first} already exists: the audit head is behind the log, run `telehealth audit verify`"
                )));
            }
            return Err(error.into());
        }
        Ok(sequences)
    }

    /// Writes the head back, in the transaction that appended.
    async fn save(&self, tx: &mut AnyConnection) -> Result<(), KitError> {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(self.seq)
            .bind(&self.hash)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// How many waiting entries one batch appends at most.
const MAX_BATCH: usize = 256;

/// A request to the writer: append an entry, or chain the staged ones.
enum Pending {
    Entry(
        AuditEntry,
        tokio::sync::oneshot::Sender<Result<i64, String>>,
    ),
    Flush(tokio::sync::oneshot::Sender<Result<i64, String>>),
}

/// Appends audit entries in batches (group commit).
///
/// The chain is a single serial point by design: every append locks its head. Appending each
/// entry in its own transaction costs one commit (one disk flush) per call while the head is
/// locked, which caps a whole service at a few hundred audited calls per second. The writer
/// appends every entry waiting at that moment in one transaction: one lock, one commit per
/// batch. [`AuditWriter::record`] returns only once its entry is committed, so an acknowledged
/// call is audited durably.
///
/// Changes stage their entry in their own transaction ([`stage`]) and call
/// [`AuditWriter::flush`] after committing: the record can then never be missing for a
/// committed change, even if the process dies right after the commit (the writer of any replica
/// chains what is left staged within seconds).
#[derive(Clone)]
pub struct AuditWriter {
    sender: tokio::sync::mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer of `db`'s trail; it stops when the last handle is dropped.
    pub fn start(db: Database) -> AuditWriter {
        let (sender, receiver) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(write_batches(db, receiver));
        AuditWriter { sender }
    }

    /// Chains every entry staged so far (see [`stage`]) and waits until that is committed. Call it
    /// after committing a change whose entry was staged: the caller hears of the change once its
    /// record is in the chain.
    pub async fn flush(&self) -> Result<(), KitError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.sender
            .send(Pending::Flush(ack))
            .await
            .map_err(|_| KitError::Audit("the audit writer has stopped".into()))?;
        done.await
            .map_err(|_| KitError::Audit("the audit writer has stopped".into()))?
            .map_err(KitError::Audit)?;
        Ok(())
    }

    /// Appends `entry` and waits until it is committed; returns its sequence number.
    pub async fn record(&self, entry: AuditEntry) -> Result<i64, KitError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.sender
            .send(Pending::Entry(entry, ack))
            .await
            .map_err(|_| KitError::Audit("the audit writer has stopped".into()))?;
        done.await
            .map_err(|_| KitError::Audit("the audit writer has stopped".into()))?
            .map_err(KitError::Audit)
    }
}

async fn write_batches(db: Database, mut receiver: tokio::sync::mpsc::Receiver<Pending>) {
    let mut sweep = tokio::time::interval(OUTBOX_SWEEP);
    loop {
        let first = tokio::select! {
            pending = receiver.recv() => match pending {
                Some(pending) => pending,
                None => break,
            },
            _ = sweep.tick() => {
                if let Err(error) = sweep_outbox(&db).await {
                    tracing::warn!(%error, "staged audit entries not chained yet; retrying");
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        match append_batch(&db, &batch).await {
            Ok(sequences) => {
                for (pending, seq) in batch.into_iter().zip(sequences) {
                    let (Pending::Entry(_, ack) | Pending::Flush(ack)) = pending;
                    let _ = ack.send(Ok(seq));
                }
            }
            Err(error) => {
                tracing::error!(%error, entries = batch.len(), "audit batch not written");
                for pending in batch {
                    let (Pending::Entry(_, ack) | Pending::Flush(ack)) = pending;
                    let _ = ack.send(Err(error.to_string()));
                }
            }
        }
    }
}

/// One transaction: the staged entries first (when a flush asked for them), then the entries
/// handed over directly; one head lock and one commit for all.
async fn append_batch(db: &Database, batch: &[Pending]) -> Result<Vec<i64>, KitError> {
    let mut tx = db.pool().begin().await?;
    let mut head = Head::lock(&mut tx).await?;
    if batch.iter().any(|p| matches!(p, Pending::Flush(_))) {
        while drain_outbox(&mut tx, &mut head).await? as i64 == OUTBOX_BATCH {}
    }
    let now = now_micros();
    let entries: Vec<_> = batch
        .iter()
        .filter_map(|pending| match pending {
            Pending::Entry(entry, _) => Some((entry, now)),
            Pending::Flush(_) => None,
        })
        .collect();
    let mut appended = head.append(&mut tx, &entries).await?.into_iter();
    head.save(&mut tx).await?;
    tx.commit().await?;
    Ok(batch
        .iter()
        .map(|pending| match pending {
            Pending::Entry(..) => appended.next().unwrap_or_default(),
            Pending::Flush(_) => 0,
        })
        .collect())
}

/// Chains entries left staged (by a replica that died between its commit and its flush).
async fn sweep_outbox(db: &Database) -> Result<(), KitError> {
    let waiting = sqlx::query("SELECT id FROM audit_outbox LIMIT 1")
        .fetch_optional(db.pool())
        .await?;
    if waiting.is_none() {
        return Ok(());
    }
    let mut tx = db.pool().begin().await?;
    let mut head = Head::lock(&mut tx).await?;
    let chained = drain_outbox(&mut tx, &mut head).await?;
    head.save(&mut tx).await?;
    tx.commit().await?;
    if chained > 0 {
        tracing::info!(chained, "staged audit entries chained");
    }
    Ok(())
}

/// The result of checking a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records read.
    pub records: u64,
    /// The first inconsistency, if any.
    pub broken: Option<BrokenLink>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The sequence number at which the chain stops being trustworthy.
    pub seq: i64,
    pub reason: String,
}

/// Recomputes the whole chain of `db` and reports the first broken link.
pub async fn verify(db: &Database) -> Result<ChainReport, KitError> {
    use futures::TryStreamExt;

    let mut conn = db.pool().acquire().await?;
    let mut rows = sqlx::query(
        "SELECT seq, recorded_at_us, subject, roles, org, cert_thumbprint, action, record_type, \
         record_id, outcome, trace_id, prev_hash, hash FROM audit_log ORDER BY seq",
    )
    .fetch(&mut *conn);

    let mut expected_seq = 1_i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut records = 0_u64;
    let broken = |seq: i64, reason: String| Some(BrokenLink { seq, reason });

    while let Some(row) = rows.try_next().await? {
        records += 1;
        let seq: i64 = row.try_get("seq")?;
        let stored_prev: String = row.try_get("prev_hash")?;
        let stored_hash: String = row.try_get("hash")?;
        if seq != expected_seq {
            let reason = format!("record {expected_seq} is missing (next present is {seq})");
            return Ok(ChainReport {
                records,
                broken: broken(expected_seq, reason),
            });
        }
        if stored_prev != prev_hash {
            let reason = "prev_hash does not match the previous record's hash".to_owned();
            return Ok(ChainReport {
                records,
                broken: broken(seq, reason),
            });
        }
        let text = |name: &str| -> Result<String, sqlx::Error> { row.try_get::<String, _>(name) };
        let (subject, roles, org, thumb) = (
            text("subject")?,
            text("roles")?,
            text("org")?,
            text("cert_thumbprint")?,
        );
        let (action, record_type, record_id) =
            (text("action")?, text("record_type")?, text("record_id")?);
        let (outcome, trace_id) = (text("outcome")?, text("trace_id")?);
        let computed = chain_hash(
            &prev_hash,
            &Canonical {
                seq,
                recorded_at_us: row.try_get("recorded_at_us")?,
                subject: &subject,
                roles: &roles,
                org: &org,
                cert_thumbprint: &thumb,
                action: &action,
                record_type: &record_type,
                record_id: &record_id,
                outcome: &outcome,
                trace_id: &trace_id,
            },
        );
        if computed != stored_hash {
            let reason = "record content does not match its hash (altered)".to_owned();
            return Ok(ChainReport {
                records,
                broken: broken(seq, reason),
            });
        }
        prev_hash = stored_hash;
        expected_seq += 1;
    }
    drop(rows);

    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;
    let last_seq = expected_seq - 1;
    let broken_tail = if head_seq != last_seq {
        broken(
            last_seq + 1,
            format!(
                "the head says {head_seq} records but the log ends at {last_seq} (records deleted from the end)"
            ),
        )
    } else if head_hash != prev_hash {
        broken(
            last_seq,
            "the head hash does not match the last record".to_owned(),
        )
    } else {
        None
    };
    Ok(ChainReport {
        records,
        broken: broken_tail,
    })
}
