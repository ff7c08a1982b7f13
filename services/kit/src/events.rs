//! Change notifications for `Watch…` streams, across replicas.
//!
//! A service publishes a small JSON event after it commits a change; every replica's watchers
//! receive it. On PostgreSQL the event travels through `NOTIFY` on a channel named after the
//! service's schema, and each replica `LISTEN`s on it (so a change made through one replica
//! reaches a watcher connected to another). On SQLite (one process by definition) it goes
//! straight to the in-process subscribers. Events are notifications, not the record: a
//! watcher that was disconnected lists again after it reconnects.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{db::Database, error::KitError};

/// Largest NOTIFY payload PostgreSQL accepts is 8000 bytes; events stay well below.
const MAX_PAYLOAD: usize = 7900;

/// Publishes and fans out events of one service.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<String>,
    db: Database,
    channel: Option<String>,
}

impl EventBus {
    /// Starts the bus of `db`'s service; on PostgreSQL a task listens until `shutdown`.
    pub async fn start(db: &Database, shutdown: CancellationToken) -> Result<EventBus, KitError> {
        let (sender, _) = broadcast::channel(1024);
        let channel = match db.postgres_target() {
            None => None,
            Some((url, schema)) => {
                let channel = format!("{schema}_events");
                let mut listener = sqlx::postgres::PgListener::connect(url).await?;
                listener.listen(&channel).await?;
                let forward = sender.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            received = listener.recv() => match received {
                                Ok(notification) => {
                                    let _ = forward.send(notification.payload().to_owned());
                                }
                                Err(error) => {
                                    // PgListener reconnects by itself on the next recv.
                                    tracing::warn!(%error, "event listener lost its connection; reconnecting");
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                            },
                        }
                    }
                });
                Some(channel)
            }
        };
        Ok(EventBus {
            sender,
            db: db.clone(),
            channel,
        })
    }

    /// Publishes `payload` to every watcher of every replica. Call it after the change commits.
    pub async fn publish(&self, payload: String) -> Result<(), KitError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(KitError::Config(format!(
                "event payload of {} bytes is too large",
                payload.len()
            )));
        }
        match &self.channel {
            Some(channel) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(self.db.pool())
                    .await?;
            }
            None => {
                let _ = self.sender.send(payload);
            }
        }
        Ok(())
    }

    /// A new subscription; it sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}
