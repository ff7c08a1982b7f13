//! Change notifications for `Watch…` streams, across replicas.
//!
//! A service publishes a small JSON event after it commits a change; every replica's watchers
//! receive it. On PostgreSQL the event travels through `NOTIFY` on a channel named after the
//! service's schema, and each replica `LISTEN`s on it (so a change made through one replica
//! reaches a watcher connected to another). On SQLite (one process by definition) it goes
//! straight to the in-process subscribers. Events are notifications, not the record: a
//! watcher that was disconnected lists again after it reconnects.

use std::time::Duration;

use sqlx::postgres::PgListener;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{db::Database, error::KitError};

/// Largest NOTIFY payload PostgreSQL accepts is 8000 bytes; events stay well below.
const MAX_PAYLOAD: usize = 7900;

/// How long one attempt to connect the listener may take (a server that is down or restarting).
const LISTEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts.
const LISTEN_RETRY: Duration = Duration::from_millis(200);

/// A listener on `channel`, on a connection of its own.
async fn listen(url: &str, channel: &str) -> Result<PgListener, KitError> {
    let mut listener = tokio::time::timeout(LISTEN_CONNECT_TIMEOUT, PgListener::connect(url))
        .await
        .map_err(|_| {
            KitError::Unavailable("the event listener could not connect in time".into())
        })??;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Listens again until it works, or `None` once `shutdown` is cancelled. Notifications sent
/// meanwhile are lost, which watchers handle: they list again after they reconnect.
async fn relisten(url: &str, channel: &str, shutdown: &CancellationToken) -> Option<PgListener> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
        match listen(url, channel).await {
            Ok(listener) => {
                tracing::info!("event listener listening again");
                return Some(listener);
            }
            Err(error) => tracing::debug!(%error, "event listener not back yet"),
        }
    }
}

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
                let mut listener = listen(url, &channel).await?;
                let forward = sender.clone();
                let (url, listened) = (url.to_owned(), channel.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            received = listener.recv() => match received {
                                Ok(notification) => {
                                    let _ = forward.send(notification.payload().to_owned());
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "event listener lost its connection; listening again");
                                    // A new listener on a new connection: after some failures
                                    // (a connection reset by a restarting server) the old one
                                    // would keep reading its dead connection.
                                    match relisten(&url, &listened, &shutdown).await {
                                        Some(fresh) => listener = fresh,
                                        None => break,
                                    }
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
