//! The periodic task each replica runs: raise ASSESSMENT_OVERDUE for wounds whose planned
//! assessment is past due, and purge unreferenced pending photos. (Old idempotency keys are
//! purged by the kit's `idempotency::spawn_purge`, started in `lib.rs`.)
//!
//! Several replicas may sweep at the same time: each overdue alert has a dedupe key naming the
//! wound, its episode and the missed due date, and the database keeps one alert per key, so each
//! missed due date raises exactly one alert whichever replica gets there first.

use telehealth_images::{ImageStore, TargetRef};
use tokio_util::sync::CancellationToken;

use super::{WoundMonitor, alerts};
use crate::{error::WoundError, model::WoundStatus, scoring, store};

/// Wounds handled per sweep (the rest wait for the next one).
const BATCH: i64 = 500;

impl WoundMonitor {
    /// Sweeps every `rules.overdue_check` until `shutdown`.
    pub async fn run_sweeper(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.rules.overdue_check);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    if let Err(error) = self.sweep().await {
                        tracing::warn!(%error, "wound sweep failed; retrying at the next tick");
                    }
                }
            }
        }
    }

    /// One sweep; returns how many overdue alerts this replica raised.
    pub async fn sweep(&self) -> Result<usize, WoundError> {
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let overdue = store::wounds::overdue_without_alert(&mut conn, now, BATCH).await?;
        drop(conn);
        self.expire_pending_photos(now).await?;
        let mut raised_count = 0;
        for (wound_id, episode, due_at) in overdue {
            let mut tx = self.base.db().pool().begin().await?;
            store::wounds::lock_wound(&mut tx, &wound_id).await?;
            let Some(wound) = store::wounds::wound(&mut tx, &wound_id).await? else {
                continue;
            };
            // Re-checked under the lock: an assessment may have just moved the due date.
            let still_due = wound.status == WoundStatus::Open
                && wound.episode == episode
                && wound.next_due_at == Some(due_at)
                && due_at < now;
            if !still_due {
                continue;
            }
            let draft = scoring::overdue_alert(&wound_id, episode, due_at);
            let raised = alerts::raise(&mut tx, &wound, vec![draft], now, Some(due_at)).await?;
            let notices = self.stage_raised(&mut tx, &wound, &raised).await?;
            tx.commit().await?;
            raised_count += raised.len();
            if !raised.is_empty() {
                self.flush_audit().await;
            }
            self.announce_raised(&wound, &raised, notices);
        }
        Ok(raised_count)
    }

    /// Forgets pending photos not referenced in time, and detaches them from the image pipeline
    /// in the same transaction (its sweeper then deletes their bytes).
    async fn expire_pending_photos(&self, now: jiff::Timestamp) -> Result<(), WoundError> {
        let mut conn = self.base.db().pool().acquire().await?;
        let expired = store::assessments::expired_pending_photos(&mut conn, now, BATCH).await?;
        drop(conn);
        for (image_id, wound_id) in expired {
            let mut tx = self.base.db().pool().begin().await?;
            if store::assessments::delete_pending_photo(&mut tx, &image_id).await? {
                let target = TargetRef {
                    kind: "wound",
                    id: wound_id.clone(),
                };
                ImageStore::detach(&mut tx, &target, &image_id)
                    .await
                    .map_err(|e| WoundError::Unavailable(e.to_string()))?;
                let service =
                    telehealth_kit::identity::Caller::Service(telehealth_kit::Part::Wound);
                let entry = telehealth_kit::audit::AuditEntry::new(
                    &service,
                    "ExpirePendingPhoto",
                    "image",
                    &image_id,
                    telehealth_kit::audit::Outcome::Ok,
                );
                telehealth_kit::audit::stage(&mut tx, &entry).await?;
                tx.commit().await?;
                self.flush_audit().await;
                tracing::info!(%image_id, %wound_id, "unreferenced pending photo expired");
            }
        }
        Ok(())
    }
}
