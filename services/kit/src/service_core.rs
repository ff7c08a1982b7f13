//! What the core of every service holds and does the same way: its database, its clock (read
//! at microsecond precision, as every record stores instants) and its audit trail (a failure to
//! audit is logged, never the caller's problem).

use std::sync::Arc;

use jiff::Timestamp;

use crate::{
    audit::{AuditEntry, AuditWriter},
    db::Database,
};

/// Where a core reads the time: the system clock in service, a hand-moved one in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// The database, clock and audit writer of one service's core. Cheap to clone.
#[derive(Clone)]
pub struct ServiceCore {
    db: Database,
    clock: Clock,
    auditor: AuditWriter,
}

impl ServiceCore {
    /// The core parts over `db`, starting its audit writer.
    pub fn new(db: Database, clock: Clock) -> ServiceCore {
        let auditor = AuditWriter::start(db.clone());
        ServiceCore { db, clock, auditor }
    }

    /// The service's database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Now, truncated to the microsecond so that what is returned equals what is stored.
    pub fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
    }

    /// Appends `entry` to the audit trail and waits until it is committed; a failure is logged
    /// with the action and record (the call it audits has already happened).
    pub async fn audit(&self, entry: AuditEntry) {
        let (action, id) = (entry.action.clone(), entry.record_id.clone());
        if let Err(error) = self.auditor.record(entry).await {
            tracing::error!(%error, %action, %id, "could not write the audit record");
        }
    }

    /// Chains the audit entries staged by committed changes (see [`crate::audit::stage`]) and
    /// waits until that is durable; on failure the entries stay staged and the writer's sweep
    /// chains them.
    pub async fn flush_audit(&self) {
        if let Err(error) = self.auditor.flush().await {
            tracing::error!(%error, "staged audit entries not chained yet; the writer retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn now_is_the_clock_at_microsecond_precision() {
        let test = crate::testing::TestDatabase::sqlite().await;
        let at: Timestamp = "2026-03-29T01:30:00.123456789Z".parse().expect("instant");
        let core = ServiceCore::new(test.db.clone(), Arc::new(move || at));
        assert_eq!(core.now().to_string(), "2026-03-29T01:30:00.123456Z");
        test.cleanup().await;
    }
}
