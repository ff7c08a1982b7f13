//! Change notifications for `Watch…` streams, across replicas.
//!
//! A service publishes a small JSON event with a change: inside the change's transaction
//! ([`EventBus::stage`], delivered when it commits) or after it commits
//! ([`EventBus::publish`]); every replica's watchers receive it. On PostgreSQL the event travels through `NOTIFY` on a channel named after the
//! service's schema, and each replica `LISTEN`s on it (so a change made through one replica
//! reaches a watcher connected to another). On SQLite (one process by definition) it goes
//! straight to the in-process subscribers. Events are notifications, not the record: a
//! watcher that was disconnected lists again after it reconnects.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{db::Database, error::KitError};

/// Largest NOTIFY payload PostgreSQL accepts is 8000 bytes; events stay well below.
const MAX_PAYLOAD: usize = 7900;

/// How long one attempt to connect the listener may take (a server that is down or restarting).
const LISTEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The listener's pool acquire timeout: its connect retries back off up to a fifth of it.
const LISTEN_ATTEMPT: Duration = Duration::from_secs(2);
/// Pause between two attempts.
const LISTEN_RETRY: Duration = Duration::from_millis(200);

/// A listener on `channel`, on a connection of its own.
async fn listen(url: &str, channel: &str) -> Result<PgListener, KitError> {
    // The listener reconnects through this pool of one, whose connect retries back off up to a
    // fifth of its acquire timeout: short, so that the bus hears again soon after a restart.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(LISTEN_ATTEMPT)
        .connect_lazy(url)?;
    let connect = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        // A lost connection is reported at once (`try_recv` answers `None`) and the bus listens
        // again on a new one, on its own short schedule ([`relisten`]).
        listener.eager_reconnect(false);
        listener.listen(channel).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    Ok(tokio::time::timeout(LISTEN_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            KitError::Unavailable("the event listener could not connect in time".into())
        })??)
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
                            received = listener.try_recv() => match received {
                                Ok(Some(notification)) => {
                                    let _ = forward.send(notification.payload().to_owned());
                                }
                                lost => {
                                    let error = lost.err().map_or_else(|| "connection closed".to_owned(), |e| e.to_string());
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
        check_size(&payload)?;
        match &self.channel {
            Some(channel) => notify(self.db.pool(), channel, payload).await?,
            None => {
                let _ = self.sender.send(payload);
            }
        }
        Ok(())
    }

    /// Publishes `payload` as part of the transaction on `conn`, which must then commit before
    /// [`StagedEvent::send`]. On PostgreSQL the `NOTIFY` is a statement of the transaction:
    /// delivered at its commit, never for a change rolled back, and committed with it (a
    /// separate `NOTIFY` costs a transaction and a WAL flush of its own). On SQLite the event
    /// waits in the [`StagedEvent`] until sent.
    pub async fn stage(
        &self,
        conn: &mut sqlx::AnyConnection,
        payload: String,
    ) -> Result<StagedEvent, KitError> {
        check_size(&payload)?;
        match &self.channel {
            Some(channel) => {
                notify(&mut *conn, channel, payload).await?;
                Ok(StagedEvent { in_process: None })
            }
            None => Ok(StagedEvent {
                in_process: Some((self.sender.clone(), payload)),
            }),
        }
    }

    /// A new subscription; it sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}

/// An event staged in a transaction, sent by [`StagedEvent::send`] once it has committed.
#[must_use = "send the event once its transaction has committed"]
pub struct StagedEvent {
    /// On SQLite, the in-process subscribers and the event; on PostgreSQL nothing is left to do.
    in_process: Option<(broadcast::Sender<String>, String)>,
}

impl StagedEvent {
    /// Sends the event (call it after the commit; a dropped event is never sent).
    pub fn send(self) {
        if let Some((sender, payload)) = self.in_process {
            let _ = sender.send(payload);
        }
    }
}

/// `NOTIFY` on `channel`, on its own or as a statement of the transaction `executor` is in.
async fn notify<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    channel: &str,
    payload: String,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}

fn check_size(payload: &str) -> Result<(), KitError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(KitError::Config(format!(
            "event payload of {} bytes is too large",
            payload.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::TestDatabase;

    /// The next event `receiver` gets within a moment, if any.
    async fn next(receiver: &mut broadcast::Receiver<String>) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(500), receiver.recv())
            .await
            .ok()
            .and_then(Result::ok)
    }

    #[tokio::test]
    async fn a_staged_event_reaches_watchers_only_once_its_transaction_commits() {
        for test_db in TestDatabase::each_backend().await {
            let backend = test_db.backend();
            let shutdown = CancellationToken::new();
            let bus = EventBus::start(&test_db.db, shutdown.clone())
                .await
                .expect("bus");
            let mut watcher = bus.subscribe();

            let mut tx = test_db.db.pool().begin().await.expect("begin");
            let staged = bus
                .stage(&mut tx, "rolled back".into())
                .await
                .expect("stage");
            tx.rollback().await.expect("rollback");
            drop(staged);

            let mut tx = test_db.db.pool().begin().await.expect("begin");
            let staged = bus.stage(&mut tx, "committed".into()).await.expect("stage");
            assert_eq!(
                next(&mut watcher).await,
                None,
                "{backend:?}: nothing is delivered before the commit"
            );
            tx.commit().await.expect("commit");
            staged.send();
            assert_eq!(
                next(&mut watcher).await.as_deref(),
                Some("committed"),
                "{backend:?}: the committed event, and never the rolled-back one"
            );
            assert_eq!(
                next(&mut watcher).await,
                None,
                "{backend:?}: delivered once"
            );

            let mut tx = test_db.db.pool().begin().await.expect("begin");
            let too_large = bus.stage(&mut tx, "x".repeat(MAX_PAYLOAD + 1)).await;
            assert!(
                too_large.is_err(),
                "{backend:?}: an oversized event is refused"
            );
            drop(tx);
            shutdown.cancel();
            test_db.cleanup().await;
        }
    }
}
