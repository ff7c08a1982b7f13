//! Change notifications for `Watch…` streams, across replicas.
//!
//! A service publishes a small JSON event with a change: inside the change's transaction
//! ([`EventBus::stage`], delivered when it commits) or after it commits
//! ([`EventBus::publish`]); every replica's watchers receive it. On PostgreSQL the event travels through `NOTIFY` on a channel named after the
//! service's schema, and each replica `LISTEN`s on it (so a change made through one replica
//! reaches a watcher connected to another). On SQLite (one process by definition) it goes
//! straight to the in-process subscribers. Events are notifications, not the record: a
//! watcher that was disconnected lists again after it reconnects.
//!
//! Notifications can be missed: while the listener is not connected (a database restart) and
//! when a subscriber falls behind. A subscription then yields [`Missed`] instead of carrying on
//! as if nothing happened, so that a watch ends with `UNAVAILABLE` and its client lists again.
//! Whether the listener is connected is also a health entry (`dependency/events`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use sqlx::postgres::{PgListener, PgPoolOptions};

use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use tokio_util::sync::CancellationToken;

use crate::{db::Database, error::KitError, health::Dependencies, serve::ServiceContext};

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

/// What travels from the bus to its subscribers.
#[derive(Clone, Debug)]
enum Note {
    Event(String),
    /// The listener lost its connection: notifications sent until it listens again are lost.
    Interrupted,
}

/// Notifications a subscription did not receive: its watch must end so that its client lists
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// The listener lost its connection to the database.
    Interrupted,
    /// The subscriber fell behind by this many notifications.
    Lagged(u64),
}

impl From<Missed> for KitError {
    fn from(missed: Missed) -> Self {
        let why = match missed {
            Missed::Interrupted => "change notifications were interrupted".to_owned(),
            Missed::Lagged(count) => format!("this watch fell behind by {count} changes"),
        };
        KitError::Unavailable(format!("{why}: list again, then watch again"))
    }
}

/// Publishes and fans out events of one service.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Note>,
    db: Database,
    channel: Option<String>,
    /// Whether notifications of other replicas arrive (always on SQLite).
    listening: Arc<AtomicBool>,
}

impl EventBus {
    /// Starts the bus of `db`'s service; on PostgreSQL a task listens until `shutdown`.
    pub async fn start(db: &Database, shutdown: CancellationToken) -> Result<EventBus, KitError> {
        let (sender, _) = broadcast::channel(1024);
        let listening = Arc::new(AtomicBool::new(true));
        let channel = match db.postgres_target() {
            None => None,
            Some((url, schema)) => {
                let channel = format!("{schema}_events");
                let listener = listen(url, &channel).await?;
                tokio::spawn(forward(
                    listener,
                    (url.to_owned(), channel.clone()),
                    sender.clone(),
                    listening.clone(),
                    shutdown,
                ));
                Some(channel)
            }
        };
        Ok(EventBus {
            sender,
            db: db.clone(),
            channel,
            listening,
        })
    }

    /// The bus of the service of `context`, reported as its health entry `dependency/events`.
    pub async fn of_service(context: &ServiceContext) -> Result<EventBus, KitError> {
        let bus = EventBus::start(&context.db, context.shutdown.clone()).await?;
        bus.report_to(&context.dependencies);
        Ok(bus)
    }

    /// Whether notifications of other replicas arrive (always on SQLite).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Reports whether the bus hears its notifications as the health entry `dependency/events`.
    pub fn report_to(&self, dependencies: &Dependencies) {
        let bus = self.clone();
        dependencies.add("events", move || {
            let up = bus.is_listening();
            async move {
                if up {
                    Ok(())
                } else {
                    Err("the change listener is reconnecting to the database".to_owned())
                }
            }
        });
    }

    /// Publishes `payload` to every watcher of every replica. Call it after the change commits.
    pub async fn publish(&self, payload: String) -> Result<(), KitError> {
        check_size(&payload)?;
        match &self.channel {
            Some(channel) => notify(self.db.pool(), channel, payload).await?,
            None => {
                let _ = self.sender.send(Note::Event(payload));
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

    /// A new subscription to the events published from now on, or [`Missed`] where some were
    /// lost (after which it goes on with the next ones). Opened while the listener is
    /// reconnecting, it starts with [`Missed::Interrupted`].
    pub fn subscribe(&self) -> impl Stream<Item = Result<String, Missed>> + Send + use<> {
        let notes = BroadcastStream::new(self.sender.subscribe());
        let deaf = !self.is_listening();
        futures::stream::iter(deaf.then_some(Err(Missed::Interrupted))).chain(notes.map(|note| {
            match note {
                Ok(Note::Event(payload)) => Ok(payload),
                Ok(Note::Interrupted) => Err(Missed::Interrupted),
                Err(BroadcastStreamRecvError::Lagged(count)) => Err(Missed::Lagged(count)),
            }
        }))
    }
}

/// Forwards what `listener` hears to the subscribers until `shutdown`, listening again on a new
/// connection after it loses one (telling the subscribers that notifications were missed).
async fn forward(
    mut listener: PgListener,
    (url, channel): (String, String),
    subscribers: broadcast::Sender<Note>,
    listening: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                let _ = subscribers.send(Note::Event(notification.payload().to_owned()));
            }
            lost => {
                listening.store(false, Ordering::Relaxed);
                let _ = subscribers.send(Note::Interrupted);
                let error = lost
                    .err()
                    .map_or_else(|| "connection closed".to_owned(), |e| e.to_string());
                tracing::warn!(%error, "event listener lost its connection; listening again");
                // A new listener on a new connection: after some failures (a connection reset
                // by a restarting server) the old one would keep reading its dead connection.
                match relisten(&url, &channel, &shutdown).await {
                    Some(fresh) => listener = fresh,
                    None => return,
                }
                listening.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// An event staged in a transaction, sent by [`StagedEvent::send`] once it has committed.
#[must_use = "send the event once its transaction has committed"]
pub struct StagedEvent {
    /// On SQLite, the in-process subscribers and the event; on PostgreSQL nothing is left to do.
    in_process: Option<(broadcast::Sender<Note>, String)>,
}

impl StagedEvent {
    /// Sends the event (call it after the commit; a dropped event is never sent).
    pub fn send(self) {
        if let Some((sender, payload)) = self.in_process {
            let _ = sender.send(Note::Event(payload));
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
    use std::pin::Pin;
    use std::time::Duration;

    use super::*;
    use crate::testing::TestDatabase;

    type Subscription = Pin<Box<dyn Stream<Item = Result<String, Missed>> + Send>>;

    /// What `subscription` yields within `wait`, if anything.
    async fn next_within(
        subscription: &mut Subscription,
        wait: Duration,
    ) -> Option<Result<String, Missed>> {
        tokio::time::timeout(wait, subscription.next())
            .await
            .ok()
            .flatten()
    }

    /// The next event `subscription` gets within a moment, if any.
    async fn next(subscription: &mut Subscription) -> Option<String> {
        next_within(subscription, Duration::from_millis(500))
            .await
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
            let mut watcher: Subscription = Box::pin(bus.subscribe());

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

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_how_many_it_missed() {
        let test_db = TestDatabase::sqlite().await;
        let shutdown = CancellationToken::new();
        let bus = EventBus::start(&test_db.db, shutdown.clone())
            .await
            .expect("bus");
        let mut slow: Subscription = Box::pin(bus.subscribe());
        for n in 0..1030 {
            bus.publish(format!("event {n}")).await.expect("publish");
        }
        assert_eq!(
            next_within(&mut slow, Duration::from_millis(500)).await,
            Some(Err(Missed::Lagged(6))),
            "the 6 oldest of 1,030 events did not fit the 1,024 kept"
        );
        assert_eq!(next(&mut slow).await.as_deref(), Some("event 6"));
        let status = tonic::Status::from(KitError::from(Missed::Lagged(6)));
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "the watch ends as a retryable failure"
        );
        shutdown.cancel();
        test_db.cleanup().await;
    }

    #[tokio::test]
    async fn a_lost_listener_interrupts_subscriptions_and_listens_again() {
        let Some(test_db) = TestDatabase::postgres().await else {
            return;
        };
        let shutdown = CancellationToken::new();
        let bus = EventBus::start(&test_db.db, shutdown.clone())
            .await
            .expect("bus");
        let dependencies = Dependencies::default();
        bus.report_to(&dependencies);
        let listening = || async {
            let (_, check) = dependencies.all().pop().expect("registered");
            check().await.is_ok()
        };
        assert!(listening().await, "listening once started");
        let mut watcher: Subscription = Box::pin(bus.subscribe());

        // The server ends the listener's session, as a restart does.
        let channel = bus.channel.clone().expect("a PostgreSQL channel");
        let ended: i64 = sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query = 'LISTEN \"' || $1 || '\"'",
        )
        .bind(&channel)
        .fetch_one(test_db.db.pool())
        .await
        .expect("terminate");
        assert_eq!(ended, 1, "the listener's session, and only it");
        assert_eq!(
            next_within(&mut watcher, Duration::from_secs(5)).await,
            Some(Err(Missed::Interrupted)),
            "the watcher learns that notifications were missed"
        );

        let back = tokio::time::timeout(Duration::from_secs(10), async {
            while !listening().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(back.is_ok(), "listening again within 10 s");
        bus.publish("after".into()).await.expect("publish");
        assert_eq!(next(&mut watcher).await.as_deref(), Some("after"));
        shutdown.cancel();
        test_db.cleanup().await;
    }
}
