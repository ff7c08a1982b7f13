//! The sweeper: discards upload sessions that made no progress before their expiry and deletes
//! the bytes queued for deletion (parts of completed or discarded sessions, detached images,
//! spare parts of a lost race). Safe on several replicas at once: every step is idempotent.

use super::{ImageError, ImageStore, records};

/// Rows handled per sweep step; the next sweep continues.
const BATCH: i64 = 200;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub sessions_expired: usize,
    pub blobs_deleted: usize,
}

impl ImageStore {
    /// Runs one sweep now (the background sweeper calls it every `sweep_interval_seconds`).
    pub async fn sweep(&self) -> Result<SweepReport, ImageError> {
        let mut report = SweepReport::default();
        let now = super::now_us();
        let tombstone_until = self.expiry_from(now);
        for key in records::expired_sessions(self.db.pool(), now, BATCH).await? {
            if records::discard_session(self.db.pool(), &key, Some(now), now, tombstone_until)
                .await?
            {
                tracing::info!(session_key = %key, "upload session expired; its bytes are deleted");
                report.sessions_expired += 1;
            }
        }
        for key in records::garbage(self.db.pool(), BATCH).await? {
            self.blobs.delete(&key).await?;
            records::forget_garbage(self.db.pool(), &key).await?;
            report.blobs_deleted += 1;
        }
        records::purge_tombstones(self.db.pool(), now).await?;
        Ok(report)
    }

    /// Deletes queued bytes in the background right away rather than at the next interval.
    pub(super) fn collect_soon(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(error) = store.collect_garbage().await {
                tracing::debug!(%error, "deleting queued blobs failed; the sweeper retries");
            }
        });
    }

    async fn collect_garbage(&self) -> Result<(), ImageError> {
        for key in records::garbage(self.db.pool(), BATCH).await? {
            self.blobs.delete(&key).await?;
            records::forget_garbage(self.db.pool(), &key).await?;
        }
        Ok(())
    }
}
