//! The signalling core: rooms, streams, relays and incidents, with their authorisation,
//! transactions and audit, knowing nothing of gRPC.
//!
//! - [`rooms`]: opening and closing rooms, admission, ICE servers;
//! - [`incidents`]: technical incidents, reported and detected;
//! - [`hub`]: this replica's live streams and the event-bus fan-out between replicas;
//! - [`session`]: one participant's `Signal` stream, message by message.

pub mod hub;
pub mod incidents;
pub mod rooms;
pub mod session;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    Database,
    audit::{AuditEntry, Outcome},
    events::EventBus,
    identity::{Caller, Identity},
    service_core::ServiceCore,
};
use tokio_util::sync::CancellationToken;

use crate::{domain::Role, error::SignallingError, store};
use telehealth_kit::config::SignallingSettings;

pub use hub::Link;

pub use telehealth_kit::service_core::Clock;

/// How long before an appointment's start and after its end its room admits participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Margins {
    pub before: SignedDuration,
    pub after: SignedDuration,
}

impl Default for Margins {
    fn default() -> Self {
        Margins {
            before: SignedDuration::from_mins(30),
            after: SignedDuration::from_mins(60),
        }
    }
}

/// A patient or nurse joined the room while the doctor was not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub appointment_id: String,
    pub room_id: String,
    pub subject: String,
    pub role: Role,
    pub joined_at: Timestamp,
}

/// Tells scheduling who is waiting (`MarkWaitingRoom`); a trait so the core is tested without
/// a scheduling service.
pub trait Presence: Send + Sync {
    /// Reports `arrival`; the error is logged by the caller.
    fn waiting(&self, arrival: Arrival) -> BoxFuture<'static, Result<(), String>>;
}

/// A [`Presence`] that tells nobody.
pub struct NoPresence;

impl Presence for NoPresence {
    fn waiting(&self, _arrival: Arrival) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// The signalling service's core: cheap to clone, shared by every call.
#[derive(Clone)]
pub struct Signalling {
    inner: Arc<Inner>,
}

struct Inner {
    base: ServiceCore,
    settings: SignallingSettings,
    margins: Margins,
    presence: Arc<dyn Presence>,
    hub: hub::Hub,
    shutdown: CancellationToken,
}

impl Signalling {
    /// Starts the core over `db`: this replica's hub listens on `bus` and background upkeep
    /// (liveness of its streams, automatic closing of expired rooms) runs until `shutdown`.
    pub async fn start(
        db: Database,
        bus: EventBus,
        settings: SignallingSettings,
        margins: Margins,
        clock: Clock,
        presence: Arc<dyn Presence>,
        shutdown: CancellationToken,
    ) -> Result<Signalling, SignallingError> {
        settings.validate().map_err(SignallingError::Internal)?;
        let hub = hub::Hub::start(db.clone(), bus, shutdown.clone());
        let core = Signalling {
            inner: Arc::new(Inner {
                base: ServiceCore::new(db, clock),
                settings,
                margins,
                presence,
                hub,
                shutdown,
            }),
        };
        tokio::spawn(core.clone().upkeep());
        Ok(core)
    }

    /// The settings in force.
    pub fn settings(&self) -> &SignallingSettings {
        &self.inner.settings
    }

    /// Reports, in `metrics`, the rooms with a participant connected to this replica.
    pub fn report_rooms(&self, metrics: &telehealth_kit::metrics::Metrics) {
        self.inner.hub.report_rooms(metrics);
    }

    /// This replica's id (in the `connections` table).
    pub fn instance_id(&self) -> &str {
        self.inner.hub.instance_id()
    }

    /// The current instant, truncated to the microsecond (what the database stores).
    pub(crate) fn now(&self) -> Timestamp {
        self.inner.base.now()
    }

    pub(crate) fn db(&self) -> &Database {
        self.inner.base.db()
    }

    pub(crate) fn hub(&self) -> &hub::Hub {
        &self.inner.hub
    }

    /// Opens the inbox of a browser session of `caller` (`OpenSignal`): its secret id and the
    /// client messages `SendSignal` delivers to it.
    pub fn open_inbox(&self, caller: &Caller) -> (String, tokio::sync::mpsc::Receiver<Vec<u8>>) {
        self.inner.hub.open_inbox(inbox_owner(caller))
    }

    /// Closes an inbox once its session ended.
    pub fn close_inbox(&self, id: &str) {
        self.inner.hub.close_inbox(id);
    }

    /// Sends one client message (its bytes as received) to the inbox `id`, wherever its
    /// session runs; only `caller`'s own inbox takes it.
    pub async fn send_to_inbox(
        &self,
        caller: &Caller,
        id: &str,
        message: &[u8],
    ) -> Result<(), SignallingError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SignallingError::InvalidArgument {
                field: "inbox_id",
                reason: "the 64 hexadecimal characters of OpenSignal's \
                         x-telehealth-signal-inbox header"
                    .into(),
            });
        }
        self.inner
            .hub
            .publish_inbound(id, &inbox_owner(caller), message, self.now())
            .await
    }

    /// Records an audit entry outside any transaction (reads, refusals).
    pub(crate) async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        kind: &str,
        id: &str,
        outcome: Outcome,
    ) {
        self.inner
            .base
            .audit(AuditEntry::new(caller, action, kind, id, outcome))
            .await;
    }

    /// Periodic work of this replica: refresh the liveness of its streams in the database
    /// (so that other replicas can tell the streams of a dead replica), close rooms left open
    /// past their window, and purge relayed messages nobody took.
    async fn upkeep(self) {
        let interval =
            Duration::from_secs(u64::from(self.inner.settings.keepalive_interval_seconds));
        let mut ticker = tokio::time::interval(interval);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            ticks += 1;
            let now = self.now();
            if let Ok(mut conn) = self.inner.base.db().pool().acquire().await
                && let Err(error) = store::touch_instance(&mut conn, self.instance_id(), now).await
            {
                tracing::warn!(%error, "could not refresh the liveness of this replica's streams");
            }
            // About once a minute.
            if (ticks - 1).is_multiple_of(60 / interval.as_secs().clamp(1, 60)) {
                if let Err(error) = self.close_expired_rooms().await {
                    tracing::warn!(%error, "could not close expired rooms");
                }
                if let Ok(mut conn) = self.inner.base.db().pool().acquire().await {
                    let before = now - SignedDuration::from_mins(10);
                    if let Err(error) = store::purge_spills(&mut conn, before).await {
                        tracing::warn!(%error, "could not purge relayed messages in transit");
                    }
                }
            }
        }
    }
}

/// The person behind a call, or PERMISSION_DENIED for a service caller.
pub(crate) fn person(caller: &Caller) -> Result<&Identity, SignallingError> {
    match caller {
        Caller::Person(identity) => Ok(identity),
        Caller::Service(_) => Err(SignallingError::PermissionDenied(
            "this call needs a person's identity",
        )),
    }
}

/// Whose an inbox is: the person and organisation of the caller.
fn inbox_owner(caller: &Caller) -> String {
    match caller {
        Caller::Person(identity) => format!("{}\u{1f}{}", identity.subject, identity.org),
        Caller::Service(part) => format!("service\u{1f}{part}"),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A core over a fresh database, with a clock the test moves.

    use std::sync::Mutex;

    use telehealth_kit::{
        Part,
        identity::{Identity, Role as TokenRole},
        testing::TestDatabase,
    };

    use super::*;

    /// A core, its database and its clock.
    pub struct TestCore {
        pub core: Signalling,
        pub database: TestDatabase,
        pub now: Arc<Mutex<Timestamp>>,
        pub arrivals: Arc<Mutex<Vec<Arrival>>>,
        pub shutdown: CancellationToken,
        pub bus: EventBus,
        clock: Clock,
        settings: SignallingSettings,
    }

    /// Records arrivals instead of calling scheduling.
    pub struct Recorder(pub Arc<Mutex<Vec<Arrival>>>);

    impl Presence for Recorder {
        fn waiting(&self, arrival: Arrival) -> BoxFuture<'static, Result<(), String>> {
            if let Ok(mut all) = self.0.lock() {
                all.push(arrival);
            }
            Box::pin(async { Ok(()) })
        }
    }

    /// 2030-01-15 10:00 UTC: the tests' "now".
    pub fn start_instant() -> Timestamp {
        "2030-01-15T10:00:00Z".parse().expect("valid instant")
    }

    impl TestCore {
        pub async fn new(settings: SignallingSettings) -> TestCore {
            TestCore::on(TestDatabase::sqlite().await, settings).await
        }

        /// A core on each backend: SQLite, and PostgreSQL when available.
        pub async fn each_backend(settings: SignallingSettings) -> Vec<TestCore> {
            let mut all = Vec::new();
            for database in TestDatabase::each_backend().await {
                all.push(TestCore::on(database, settings.clone()).await);
            }
            all
        }

        pub async fn on(database: TestDatabase, settings: SignallingSettings) -> TestCore {
            database
                .db
                .migrate(&crate::definition().migrations)
                .await
                .expect("migrations");
            let shutdown = CancellationToken::new();
            let bus = EventBus::start(&database.db, shutdown.clone())
                .await
                .expect("bus");
            let now = Arc::new(Mutex::new(start_instant()));
            let clock_now = now.clone();
            let clock: Clock =
                Arc::new(move || *clock_now.lock().expect("clock lock is never poisoned"));
            let arrivals = Arc::new(Mutex::new(Vec::new()));
            let core = Signalling::start(
                database.db.clone(),
                bus.clone(),
                settings.clone(),
                Margins::default(),
                clock.clone(),
                Arc::new(Recorder(arrivals.clone())),
                shutdown.clone(),
            )
            .await
            .expect("core starts");
            TestCore {
                core,
                database,
                now,
                arrivals,
                shutdown,
                bus,
                clock,
                settings,
            }
        }

        /// Another replica on the same database: on PostgreSQL with its own LISTEN connection
        /// (a real second instance), on SQLite sharing the in-process bus.
        pub async fn replica(&self) -> Signalling {
            let bus = match self.database.backend() {
                telehealth_kit::db::Backend::Postgres => {
                    EventBus::start(&self.database.db, self.shutdown.clone())
                        .await
                        .expect("replica's bus")
                }
                telehealth_kit::db::Backend::Sqlite => self.bus.clone(),
            };
            Signalling::start(
                self.database.db.clone(),
                bus,
                self.settings.clone(),
                Margins::default(),
                self.clock.clone(),
                Arc::new(Recorder(self.arrivals.clone())),
                self.shutdown.clone(),
            )
            .await
            .expect("replica starts")
        }

        /// The arrivals reported to scheduling so far.
        pub fn arrivals(&self) -> Vec<Arrival> {
            self.arrivals.lock().expect("arrivals lock").clone()
        }

        /// Moves the clock.
        pub fn set_now(&self, at: Timestamp) {
            *self.now.lock().expect("clock lock") = at;
        }

        pub async fn cleanup(self) {
            self.shutdown.cancel();
            self.database.cleanup().await;
        }
    }

    /// A person calling through the gateway.
    pub fn person(subject: &str, role: TokenRole, org: &str) -> Caller {
        Caller::Person(Identity {
            subject: subject.into(),
            roles: vec![role],
            org: org.into(),
            specialty: None,
            cert_thumbprint: "thumb".into(),
        })
    }

    /// The scheduling service calling.
    pub fn scheduling() -> Caller {
        Caller::Service(Part::Scheduling)
    }
}
