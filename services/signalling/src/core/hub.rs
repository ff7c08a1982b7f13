//! This replica's live streams, and the fan-out of room events between replicas.
//!
//! **Delivery goes only through the event bus**, also between two participants connected to
//! the same replica: a session publishes (joins, departures, relayed messages, closings) and one
//! dispatcher task per replica reads the bus *in order* and hands each event to the local
//! streams concerned. The bus is PostgreSQL `NOTIFY` (every replica `LISTEN`s; notifications
//! arrive in commit order, the same order on every replica) or, on SQLite, an in-process
//! broadcast. One ordered path for everything gives:
//!
//! - **order**: a session publishes its messages one after the other (each `NOTIFY` commits
//!   before the next is sent), and the dispatcher delivers them in bus order;
//! - **exactly once, also across a reconnection**: a participant's new stream becomes the
//!   addressee only when the dispatcher reaches that stream's own `activated` event. Every
//!   replica sees that event at the same position of the same sequence, so a message before
//!   it goes to the old stream (wherever it is) and a message after it to the new one, never
//!   both. The old stream gets `replaced` and ends ABORTED at that very point.
//!
//! Each replica keeps, per room with local streams, a view of who is connected (built from the
//! database when a stream joins, then kept by bus events). Departures of streams that are no
//! longer current (a late `left` after a reconnection) are recognised by connection id and
//! ignored. Messages too large for one notification (PostgreSQL's limit is 8000 bytes; SDP may
//! be 64 KiB) travel through the `relay_spill` table and the bus carries their id.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use telehealth_kit::{
    Database, KitError,
    events::{EventBus, Missed, StagedEvent},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{CloseReason, Joined, PeerInfo, Relayed, ServerEvent},
    error::SignallingError,
    store,
};

/// Events queued towards one client before it counts as too slow (and is dropped).
pub const STREAM_QUEUE: usize = 256;

/// Largest event published inline; larger relayed messages are spilled to the database.
const INLINE_LIMIT: usize = 7_000;

/// The server side of one `Signal` stream: where its events go and how it ends.
pub struct Link {
    sender: mpsc::Sender<ServerEvent>,
    kill: CancellationToken,
    ending: Mutex<Option<Result<(), SignallingError>>>,
}

impl Link {
    /// A link and the receiving end the adapter turns into the response stream.
    pub fn new() -> (Arc<Link>, mpsc::Receiver<ServerEvent>) {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        let link = Arc::new(Link {
            sender,
            kill: CancellationToken::new(),
            ending: Mutex::new(None),
        });
        (link, receiver)
    }

    /// Queues an event; a client that does not read its events is ended (UNAVAILABLE).
    pub fn send(&self, event: ServerEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.end(Err(SignallingError::Unavailable(
                "the client does not read its events fast enough".into(),
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => self.kill.cancel(),
        }
    }

    /// Ends the stream after the events already queued, with `result` (the first ending wins).
    pub fn end(&self, result: Result<(), SignallingError>) {
        if let Ok(mut ending) = self.ending.lock()
            && ending.is_none()
        {
            *ending = Some(result);
        }
        self.kill.cancel();
    }

    /// Fires once the stream is ending.
    pub fn killed(&self) -> &CancellationToken {
        &self.kill
    }

    /// True once the stream is ending.
    pub fn is_ended(&self) -> bool {
        self.kill.is_cancelled()
    }

    /// How the stream ends (taken once, by the adapter).
    pub fn take_ending(&self) -> Option<Result<(), SignallingError>> {
        self.ending.lock().ok().and_then(|mut e| e.take())
    }

    /// Resolves when the client went away (the response stream was dropped).
    pub async fn client_gone(&self) {
        self.sender.closed().await;
    }
}

/// How a participant left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Departure {
    Left { reason: String },
    Dropped { last_seen_at: Timestamp },
}

/// What travels on the bus between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum BusEvent {
    /// A stream joined; `replaced` is the stream it replaces.
    Activated {
        room: String,
        peer: PeerInfo,
        replaced: Option<String>,
    },
    Departed {
        room: String,
        participant: String,
        connection: String,
        how: Departure,
    },
    Relay {
        room: String,
        to: String,
        from: String,
        from_connection: String,
        message: Option<Relayed>,
        spill: Option<String>,
    },
    Closed {
        room: String,
        reason: CloseReason,
    },
    /// A message for the browser session whose inbox this is (`SendSignal`), from `owner`:
    /// the client's bytes as sent (base64), inline or spilled.
    Inbound {
        inbox: String,
        owner: String,
        body: Option<String>,
        spill: Option<String>,
    },
}

impl BusEvent {
    fn room(&self) -> &str {
        match self {
            BusEvent::Activated { room, .. }
            | BusEvent::Departed { room, .. }
            | BusEvent::Relay { room, .. }
            | BusEvent::Closed { room, .. } => room,
            BusEvent::Inbound { .. } => "",
        }
    }
}

/// Messages queued towards one browser session before more are dropped.
const INBOX_QUEUE: usize = 64;

/// Where the messages of one browser session (`OpenSignal`) go on this replica.
struct Inbox {
    owner: String,
    sender: mpsc::Sender<Vec<u8>>,
}

/// One local stream.
struct Local {
    participant_id: String,
    connection_id: String,
    /// Addressable: its own `activated` event was dispatched.
    active: bool,
    /// `joined`, sent when the stream becomes active (its peers filled in then).
    joined: Option<Box<Joined>>,
    /// Streams of peers this client was told about, so no peer is announced twice.
    known: HashSet<String>,
    link: Arc<Link>,
}

/// What this replica knows of one room with local streams.
#[derive(Default)]
struct RoomView {
    /// Current stream of each connected participant.
    current: HashMap<String, PeerInfo>,
    /// Streams that left or were replaced, so a late database read cannot revive them.
    gone: HashSet<String>,
    local: Vec<Local>,
}

/// This replica's streams and its end of the bus.
pub struct Hub {
    instance_id: String,
    bus: EventBus,
    db: Database,
    rooms: Arc<Mutex<HashMap<String, RoomView>>>,
    inboxes: Arc<Mutex<HashMap<String, Inbox>>>,
}

impl Hub {
    /// Subscribes to `bus` and starts dispatching until `shutdown`.
    pub fn start(db: Database, bus: EventBus, shutdown: CancellationToken) -> Hub {
        let hub = Hub {
            instance_id: uuid::Uuid::new_v4().to_string(),
            bus,
            db,
            rooms: Arc::new(Mutex::new(HashMap::new())),
            inboxes: Arc::new(Mutex::new(HashMap::new())),
        };
        let dispatcher = Dispatcher {
            rooms: hub.rooms.clone(),
            inboxes: hub.inboxes.clone(),
            db: hub.db.clone(),
        };
        let events = hub.bus.subscribe();
        tokio::spawn(dispatcher.run(events, shutdown));
        hub
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Opens the inbox of a browser session of `owner` on this replica: its secret id and the
    /// messages `SendSignal` delivers to it, in bus order.
    pub fn open_inbox(&self, owner: String) -> (String, mpsc::Receiver<Vec<u8>>) {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let (sender, receiver) = mpsc::channel(INBOX_QUEUE);
        lock_inboxes(&self.inboxes).insert(id.clone(), Inbox { owner, sender });
        (id, receiver)
    }

    /// Closes an inbox (its session ended).
    pub fn close_inbox(&self, id: &str) {
        lock_inboxes(&self.inboxes).remove(id);
    }

    /// Sends `bytes` from `owner` to the inbox `inbox`, wherever it is: through the bus.
    pub async fn publish_inbound(
        &self,
        inbox: &str,
        owner: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), SignallingError> {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut event = BusEvent::Inbound {
            inbox: inbox.to_owned(),
            owner: owner.to_owned(),
            body: Some(body),
            spill: None,
        };
        let payload = encode(&event)?;
        if payload.len() <= INLINE_LIMIT {
            return self.publish_payload(payload).await;
        }
        if let BusEvent::Inbound { body, spill, .. } = &mut event
            && let Some(text) = body.take()
        {
            let id = uuid::Uuid::new_v4().to_string();
            let stored = serde_json::to_string(&text)
                .map_err(|e| SignallingError::Internal(format!("encoding a message: {e}")))?;
            let mut conn = self.db.pool().acquire().await?;
            store::put_spill(&mut conn, &id, &stored, now).await?;
            *spill = Some(id);
        }
        self.publish(&event).await
    }

    /// Reports the rooms with a stream on this replica as the gauge `signalling.rooms.open`.
    pub fn report_rooms(&self, metrics: &telehealth_kit::metrics::Metrics) {
        let rooms = self.rooms.clone();
        metrics
            .meter("telehealth.signalling")
            .i64_observable_gauge("signalling.rooms.open")
            .with_description("Video rooms with a participant connected to this instance")
            .with_callback(move |observer| {
                observer.observe(i64::try_from(lock(&rooms).len()).unwrap_or(i64::MAX), &[]);
            })
            .build();
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, RoomView>> {
        lock(&self.rooms)
    }

    /// Registers a stream that is joining (not yet addressable). Done before its database
    /// transaction, so that no bus event published after that transaction is missed.
    pub fn register(
        &self,
        room_id: &str,
        participant_id: &str,
        connection_id: &str,
        link: Arc<Link>,
    ) {
        let mut rooms = self.rooms();
        let view = rooms.entry(room_id.to_owned()).or_default();
        view.local.push(Local {
            participant_id: participant_id.to_owned(),
            connection_id: connection_id.to_owned(),
            active: false,
            joined: None,
            known: HashSet::new(),
            link,
        });
    }

    /// Completes a joining stream with its `joined` answer and the peers the database listed.
    pub fn prepare(&self, room_id: &str, connection_id: &str, joined: Joined, peers: &[PeerInfo]) {
        let mut rooms = self.rooms();
        let Some(view) = rooms.get_mut(room_id) else {
            return;
        };
        for peer in peers {
            if !view.gone.contains(&peer.connection_id) {
                view.current
                    .entry(peer.participant_id.clone())
                    .or_insert_with(|| peer.clone());
            }
        }
        if let Some(local) = view
            .local
            .iter_mut()
            .find(|l| l.connection_id == connection_id)
        {
            local.joined = Some(Box::new(joined));
        }
    }

    /// Forgets a local stream.
    pub fn unregister(&self, room_id: &str, connection_id: &str) {
        let mut rooms = self.rooms();
        if let Some(view) = rooms.get_mut(room_id) {
            view.local.retain(|l| l.connection_id != connection_id);
            if view.local.is_empty() {
                rooms.remove(room_id);
            }
        }
    }

    /// Whether `participant_id` has a current stream in the room, as this replica sees it.
    pub fn is_connected(&self, room_id: &str, participant_id: &str) -> bool {
        self.rooms()
            .get(room_id)
            .is_some_and(|view| view.current.contains_key(participant_id))
    }

    /// Announces a joined stream to every replica.
    pub async fn publish_activated(
        &self,
        room: &str,
        peer: &PeerInfo,
        replaced: Option<String>,
    ) -> Result<(), SignallingError> {
        self.publish(&BusEvent::Activated {
            room: room.to_owned(),
            peer: peer.clone(),
            replaced,
        })
        .await
    }

    /// Announces a departure to every replica, in the transaction `conn` that records it: the
    /// announcement goes out at its commit (send the staged event after it), never without it.
    pub async fn stage_departed(
        &self,
        conn: &mut AnyConnection,
        room: &str,
        participant: &str,
        connection: &str,
        how: Departure,
    ) -> Result<StagedEvent, SignallingError> {
        self.stage(
            conn,
            &BusEvent::Departed {
                room: room.to_owned(),
                participant: participant.to_owned(),
                connection: connection.to_owned(),
                how,
            },
        )
        .await
    }

    /// Announces a closed room to every replica, in the transaction `conn` that closes it (as
    /// [`stage_departed`](Self::stage_departed)).
    pub async fn stage_closed(
        &self,
        conn: &mut AnyConnection,
        room: &str,
        reason: CloseReason,
    ) -> Result<StagedEvent, SignallingError> {
        self.stage(
            conn,
            &BusEvent::Closed {
                room: room.to_owned(),
                reason,
            },
        )
        .await
    }

    /// Relays `message` to participant `to`, through the database when it is too large for the
    /// bus.
    pub async fn relay(
        &self,
        room: &str,
        to: &str,
        from: &str,
        from_connection: &str,
        message: Relayed,
        now: Timestamp,
    ) -> Result<(), SignallingError> {
        let mut event = BusEvent::Relay {
            room: room.to_owned(),
            to: to.to_owned(),
            from: from.to_owned(),
            from_connection: from_connection.to_owned(),
            message: Some(message),
            spill: None,
        };
        let payload = encode(&event)?;
        if payload.len() <= INLINE_LIMIT {
            return self.publish_payload(payload).await;
        }
        if let BusEvent::Relay {
            message: message @ Some(_),
            spill,
            ..
        } = &mut event
        {
            let body = serde_json::to_string(message).map_err(|e| {
                SignallingError::Internal(format!("encoding a relayed message: {e}"))
            })?;
            let id = uuid::Uuid::new_v4().to_string();
            let mut conn = self.db.pool().acquire().await?;
            store::put_spill(&mut conn, &id, &body, now).await?;
            *message = None;
            *spill = Some(id);
        }
        self.publish(&event).await
    }

    async fn publish(&self, event: &BusEvent) -> Result<(), SignallingError> {
        self.publish_payload(encode(event)?).await
    }

    /// `event` as a statement of the transaction open on `conn` (sent at its commit).
    async fn stage(
        &self,
        conn: &mut AnyConnection,
        event: &BusEvent,
    ) -> Result<StagedEvent, SignallingError> {
        Ok(self.bus.stage(conn, encode(event)?).await?)
    }

    async fn publish_payload(&self, payload: String) -> Result<(), SignallingError> {
        self.bus.publish(payload).await.map_err(|error| {
            tracing::warn!(%error, "could not publish a room event");
            SignallingError::Unavailable("the room's event bus is unavailable, reconnect".into())
        })
    }
}

fn encode(event: &BusEvent) -> Result<String, SignallingError> {
    serde_json::to_string(event)
        .map_err(|e| SignallingError::Internal(format!("encoding a room event: {e}")))
}

fn lock(rooms: &Mutex<HashMap<String, RoomView>>) -> MutexGuard<'_, HashMap<String, RoomView>> {
    // A panic while holding the lock leaves plain maps behind: keep using them.
    rooms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_inboxes(inboxes: &Mutex<HashMap<String, Inbox>>) -> MutexGuard<'_, HashMap<String, Inbox>> {
    inboxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the bus in order and delivers to local streams.
struct Dispatcher {
    rooms: Arc<Mutex<HashMap<String, RoomView>>>,
    inboxes: Arc<Mutex<HashMap<String, Inbox>>>,
    db: Database,
}

impl Dispatcher {
    async fn run(
        self,
        events: impl Stream<Item = Result<String, Missed>> + Send,
        shutdown: CancellationToken,
    ) {
        let mut events = std::pin::pin!(events);
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = events.next() => received,
            };
            match received {
                Some(Ok(payload)) => match serde_json::from_str::<BusEvent>(&payload) {
                    Ok(event) => self.dispatch(event).await,
                    Err(error) => tracing::warn!(%error, "ignoring an undecodable room event"),
                },
                Some(Err(missed)) => self.end_every_stream(missed),
                None => break,
            }
        }
    }

    /// Room events were lost: this replica's view of its rooms may be wrong, so every local
    /// stream ends with UNAVAILABLE and its client joins again (reading the room afresh).
    fn end_every_stream(&self, missed: Missed) {
        tracing::error!(
            ?missed,
            "room events were missed; every stream of this replica rejoins"
        );
        let reason = KitError::from(missed).to_string();
        for view in lock(&self.rooms).values() {
            for local in &view.local {
                local
                    .link
                    .end(Err(SignallingError::Unavailable(reason.clone())));
            }
        }
    }

    async fn dispatch(&self, event: BusEvent) {
        if let BusEvent::Inbound {
            inbox,
            owner,
            body,
            spill,
        } = event
        {
            return self.inbound(&inbox, &owner, body, spill).await;
        }
        if !lock(&self.rooms).contains_key(event.room()) {
            return;
        }
        match event {
            BusEvent::Activated {
                room,
                peer,
                replaced,
            } => self.activated(&room, peer, replaced),
            BusEvent::Departed {
                room,
                participant,
                connection,
                how,
            } => self.departed(&room, &participant, &connection, how),
            BusEvent::Relay {
                room,
                to,
                from,
                from_connection,
                message,
                spill,
            } => {
                let message = match (message, spill) {
                    (Some(message), _) => message,
                    (None, Some(spill)) => {
                        if self.addressee(&room, &to).is_none() {
                            return;
                        }
                        match self.take_spill(&spill).await {
                            Some(message) => message,
                            None => return,
                        }
                    }
                    (None, None) => return,
                };
                if let Some(link) = self.addressee(&room, &to) {
                    link.send(ServerEvent::Relay {
                        from_participant_id: from,
                        from_connection_id: from_connection,
                        message,
                    });
                }
            }
            BusEvent::Closed { room, reason } => {
                if let Some(view) = lock(&self.rooms).remove(&room) {
                    for local in view.local {
                        local.link.send(ServerEvent::RoomClosed { reason });
                        local.link.end(Ok(()));
                    }
                }
            }
            // Handled above: inboxes belong to no room.
            BusEvent::Inbound { .. } => {}
        }
    }

    /// Hands a `SendSignal` message to its inbox, if it is on this replica and `owner`'s.
    async fn inbound(&self, inbox: &str, owner: &str, body: Option<String>, spill: Option<String>) {
        use base64::Engine as _;
        let here = lock_inboxes(&self.inboxes)
            .get(inbox)
            .map(|i| (i.owner == owner, i.sender.clone()));
        let Some((owned, sender)) = here else {
            return;
        };
        if !owned {
            tracing::warn!("a message for another person's signalling inbox was dropped");
            return;
        }
        let text = match (body, spill) {
            (Some(body), _) => Some(body),
            (None, Some(spill)) => self.take_spilled_text(&spill).await,
            (None, None) => None,
        };
        let Some(bytes) =
            text.and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
        else {
            return;
        };
        if sender.try_send(bytes).is_err() {
            tracing::warn!("a browser session's inbox is full or closed; a message was dropped");
        }
    }

    async fn take_spilled_text(&self, spill: &str) -> Option<String> {
        let taken = async {
            let mut conn = self.db.pool().acquire().await?;
            store::take_spill(&mut conn, spill).await
        }
        .await;
        match taken {
            Ok(Some(body)) => serde_json::from_str(&body).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "could not read a message in transit");
                None
            }
        }
    }

    /// The active local stream of `participant` in `room`.
    fn addressee(&self, room: &str, participant: &str) -> Option<Arc<Link>> {
        lock(&self.rooms).get(room).and_then(|view| {
            view.local
                .iter()
                .find(|l| l.active && l.participant_id == participant)
                .map(|l| l.link.clone())
        })
    }

    async fn take_spill(&self, spill: &str) -> Option<Relayed> {
        let taken = async {
            let mut conn = self.db.pool().acquire().await?;
            store::take_spill(&mut conn, spill).await
        }
        .await;
        match taken {
            Ok(Some(body)) => serde_json::from_str(&body).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "could not read a relayed message in transit");
                None
            }
        }
    }

    fn activated(&self, room: &str, peer: PeerInfo, replaced: Option<String>) {
        let mut rooms = lock(&self.rooms);
        let Some(view) = rooms.get_mut(room) else {
            return;
        };
        // The streams this one replaces, as the database said and as this replica saw.
        let mut olds: Vec<String> = replaced.into_iter().collect();
        if let Some(previous) = view.current.get(&peer.participant_id)
            && previous.connection_id != peer.connection_id
        {
            olds.push(previous.connection_id.clone());
        }
        view.gone.extend(olds.iter().cloned());
        view.current
            .insert(peer.participant_id.clone(), peer.clone());
        let current: Vec<PeerInfo> = view.current.values().cloned().collect();
        let mut ended = Vec::new();
        for local in &mut view.local {
            if local.connection_id == peer.connection_id {
                local.active = true;
                if let Some(mut joined) = local.joined.take() {
                    joined.peers = current
                        .iter()
                        .filter(|p| p.participant_id != peer.participant_id)
                        .cloned()
                        .collect();
                    joined.peers.sort_by(|a, b| {
                        (a.role.number(), &a.participant_id)
                            .cmp(&(b.role.number(), &b.participant_id))
                    });
                    local.known = joined
                        .peers
                        .iter()
                        .map(|p| p.connection_id.clone())
                        .collect();
                    local.link.send(ServerEvent::Joined(joined));
                }
            } else if local.participant_id == peer.participant_id && local.active {
                // The participant's previous stream (a stream of his still joining is newer
                // and is left alone: its own activation comes later).
                local.link.send(ServerEvent::Replaced {
                    new_connection_id: peer.connection_id.clone(),
                });
                local.link.end(Err(SignallingError::Aborted(
                    "this stream was replaced by a newer stream of the same participant".into(),
                )));
                ended.push(local.connection_id.clone());
            } else if local.active && local.known.insert(peer.connection_id.clone()) {
                let was_known = olds.iter().any(|old| local.known.remove(old));
                local.link.send(if was_known {
                    ServerEvent::PeerReplaced(peer.clone())
                } else {
                    ServerEvent::PeerJoined(peer.clone())
                });
            }
        }
        view.local.retain(|l| !ended.contains(&l.connection_id));
        if view.local.is_empty() {
            rooms.remove(room);
        }
    }

    fn departed(&self, room: &str, participant: &str, connection: &str, how: Departure) {
        let mut rooms = lock(&self.rooms);
        let Some(view) = rooms.get_mut(room) else {
            return;
        };
        view.gone.insert(connection.to_owned());
        if view
            .current
            .get(participant)
            .is_none_or(|p| p.connection_id != connection)
        {
            // A stream that is no longer current (replaced since): nothing to announce.
            return;
        }
        view.current.remove(participant);
        for local in &mut view.local {
            if local.active && local.participant_id != participant && local.known.remove(connection)
            {
                local.link.send(match &how {
                    Departure::Left { reason } => ServerEvent::PeerLeft {
                        participant_id: participant.to_owned(),
                        reason: reason.clone(),
                    },
                    Departure::Dropped { last_seen_at } => ServerEvent::PeerDropped {
                        participant_id: participant.to_owned(),
                        last_seen_at: *last_seen_at,
                    },
                });
            }
        }
    }
}
