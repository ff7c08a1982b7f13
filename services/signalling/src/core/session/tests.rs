//! Streams against the core, without gRPC: clients are channels.

use std::time::Duration;

use telehealth_kit::identity::Role as TokenRole;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::*;
use crate::domain::AppointmentId;
use crate::{
    core::testing::{TestCore, person, scheduling, start_instant},
    domain::{Admitted, IncidentSource, Relayed, RoomSpec, Window},
};
use telehealth_kit::config::SignallingSettings;

const ORG: &str = "cds-bourganeuf";

/// One client stream.
struct Client {
    sender: mpsc::UnboundedSender<Result<Inbound, SignallingError>>,
    events: mpsc::Receiver<ServerEvent>,
    link: Arc<Link>,
    task: tokio::task::JoinHandle<()>,
    sequence: u64,
}

impl Client {
    fn connect(core: &Signalling, caller: Caller) -> Client {
        let (sender, inbound) = mpsc::unbounded_channel();
        let (link, events) = Link::new();
        let session = link.clone();
        let core = core.clone();
        let task = tokio::spawn(async move {
            core.run_session(caller, UnboundedReceiverStream::new(inbound), session)
                .await;
        });
        Client {
            sender,
            events,
            link,
            task,
            sequence: 0,
        }
    }

    fn send(&mut self, message: ClientMessage) {
        self.sequence += 1;
        let _ = self.sender.send(Ok(Inbound {
            client_sequence: self.sequence,
            message: Ok(message),
        }));
    }

    fn join(&mut self, room_id: &str) {
        self.send(ClientMessage::Join {
            room_id: room_id.into(),
            client_platform: "test".into(),
        });
    }

    fn relay(&mut self, to: &str, message: Relayed) {
        self.send(ClientMessage::Relay {
            to_participant_id: to.into(),
            message,
        });
    }

    async fn next(&mut self) -> ServerEvent {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the stream is open")
    }

    /// The next event that is not a keep-alive ack.
    async fn joined(&mut self) -> Joined {
        match self.next().await {
            ServerEvent::Joined(joined) => *joined,
            other => panic!("expected joined, got {other:?}"),
        }
    }

    /// Waits for the session to end; returns how.
    async fn ended(self) -> (Result<(), SignallingError>, Vec<ServerEvent>) {
        let Client {
            mut events,
            link,
            task,
            ..
        } = self;
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the session ends")
            .expect("no panic");
        let mut rest = Vec::new();
        while let Ok(event) = events.try_recv() {
            rest.push(event);
        }
        (link.take_ending().expect("an ending is set"), rest)
    }

    fn assert_silent(&mut self) {
        assert!(
            self.events.try_recv().is_err(),
            "no event expected, the stream was not disturbed"
        );
    }
}

async fn open_room(t: &TestCore, with_nurse: bool) -> String {
    let mut participants = vec![
        Admitted {
            subject: "dr-martin".into(),
            role: Role::Doctor,
        },
        Admitted {
            subject: "pat-7f3a".into(),
            role: Role::Patient,
        },
    ];
    if with_nurse {
        participants.push(Admitted {
            subject: "nurse-claire".into(),
            role: Role::Nurse,
        });
    }
    let spec = RoomSpec::new(
        uuid::Uuid::new_v4().to_string(),
        ORG.into(),
        participants,
        Window {
            start: start_instant(),
            end: start_instant() + SignedDuration::from_mins(30),
        },
    )
    .expect("spec");
    t.core
        .open_room(&scheduling(), spec)
        .await
        .expect("opens")
        .room
        .room_id
}

fn doctor() -> Caller {
    person("dr-martin", TokenRole::Doctor, ORG)
}

fn patient() -> Caller {
    person("pat-7f3a", TokenRole::Patient, ORG)
}

fn offer(n: usize) -> Relayed {
    Relayed::Offer {
        sdp: format!("offer {n}"),
    }
}

#[tokio::test]
async fn messages_reach_their_addressee_once_and_in_order() {
    let t = TestCore::new(SignallingSettings::default()).await;
    let room = open_room(&t, false).await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    let dr_joined = dr.joined().await;
    assert!(dr_joined.peers.is_empty());
    let mut pat = Client::connect(&t.core, patient());
    pat.join(&room);
    let pat_joined = pat.joined().await;
    assert_eq!(pat_joined.peers.len(), 1, "the doctor is listed");
    assert_eq!(pat_joined.peers[0].participant_id, dr_joined.participant_id);
    match dr.next().await {
        ServerEvent::PeerJoined(peer) => {
            assert_eq!(peer.participant_id, pat_joined.participant_id);
        }
        other => panic!("expected peer_joined, got {other:?}"),
    }
    for n in 0..50 {
        dr.relay(&pat_joined.participant_id, offer(n));
    }
    for n in 0..50 {
        match pat.next().await {
            ServerEvent::Relay {
                from_participant_id,
                message,
                ..
            } => {
                assert_eq!(from_participant_id, dr_joined.participant_id);
                assert_eq!(message, offer(n), "message {n} in order");
            }
            other => panic!("expected a relayed offer, got {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    pat.assert_silent();
    dr.assert_silent();
    t.cleanup().await;
}

#[tokio::test]
async fn two_replicas_relay_to_each_other_on_both_backends() {
    for t in TestCore::each_backend(SignallingSettings::default()).await {
        let backend = t.database.backend();
        let replica = t.replica().await;
        let room = open_room(&t, false).await;
        let mut dr = Client::connect(&t.core, doctor());
        dr.join(&room);
        let dr_joined = dr.joined().await;
        let mut pat = Client::connect(&replica, patient());
        pat.join(&room);
        let pat_joined = pat.joined().await;
        assert_eq!(pat_joined.peers.len(), 1, "{backend:?}");
        assert!(
            matches!(dr.next().await, ServerEvent::PeerJoined(_)),
            "{backend:?}"
        );
        // Large enough to travel through the spill table.
        let big = Relayed::Offer {
            sdp: "a".repeat(20_000),
        };
        dr.relay(&pat_joined.participant_id, big.clone());
        for n in 0..20 {
            dr.relay(&pat_joined.participant_id, offer(n));
        }
        pat.relay(&dr_joined.participant_id, offer(1));
        match pat.next().await {
            ServerEvent::Relay { message, .. } => assert_eq!(message, big, "{backend:?}"),
            other => panic!("{backend:?}: expected the big offer, got {other:?}"),
        }
        for n in 0..20 {
            match pat.next().await {
                ServerEvent::Relay { message, .. } => {
                    assert_eq!(message, offer(n), "{backend:?}: in order after the big one")
                }
                other => panic!("{backend:?}: expected offer {n}, got {other:?}"),
            }
        }
        match dr.next().await {
            ServerEvent::Relay { message, .. } => assert_eq!(message, offer(1), "{backend:?}"),
            other => panic!("{backend:?}: expected the offer, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        pat.assert_silent();
        dr.assert_silent();
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_reconnection_on_another_replica_replaces_the_old_stream_exactly_at_its_turn() {
    for t in TestCore::each_backend(SignallingSettings::default()).await {
        reconnection_on_another_replica(t).await;
    }
}

async fn reconnection_on_another_replica(t: TestCore) {
    let replica = t.replica().await;
    let room = open_room(&t, false).await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    dr.joined().await;
    let mut old = Client::connect(&t.core, patient());
    old.join(&room);
    let old_joined = old.joined().await;
    assert!(matches!(dr.next().await, ServerEvent::PeerJoined(_)));

    dr.relay(&old_joined.participant_id, offer(1));
    let mut new = Client::connect(&replica, patient());
    new.join(&room);
    let new_joined = new.joined().await;
    assert!(new_joined.replaced_previous_connection);
    assert_eq!(
        new_joined.participant_id, old_joined.participant_id,
        "stable id"
    );
    assert_ne!(new_joined.connection_id, old_joined.connection_id);
    dr.relay(&old_joined.participant_id, offer(2));

    match dr.next().await {
        ServerEvent::PeerReplaced(peer) => {
            assert_eq!(peer.connection_id, new_joined.connection_id);
        }
        other => panic!("expected peer_replaced, got {other:?}"),
    }
    match new.next().await {
        ServerEvent::Relay { message, .. } => assert_eq!(message, offer(2), "only the later one"),
        other => panic!("expected offer 2 on the new stream, got {other:?}"),
    }
    let (ending, events) = old.ended().await;
    assert!(
        matches!(ending, Err(SignallingError::Aborted(_))),
        "{ending:?}"
    );
    assert_eq!(
        events.last(),
        Some(&ServerEvent::Replaced {
            new_connection_id: new_joined.connection_id.clone()
        })
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::Relay { message, .. } if *message == offer(1))),
        "the old stream got the earlier offer: {events:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    new.assert_silent();
    dr.assert_silent();
    let doctor = person("dr-martin", TokenRole::Doctor, ORG);
    let appointment = new_joined.appointment_id;
    let incidents = t
        .core
        .list_incidents(
            &doctor,
            &AppointmentId::known(appointment.clone()),
            100,
            None,
        )
        .await
        .expect("list");
    assert!(
        incidents
            .incidents
            .iter()
            .any(|i| i.kind == IncidentKind::RECONNECTED
                && i.source == IncidentSource::ServerDetected),
        "the reconnection is recorded: {incidents:?}"
    );
    drop(dr);
    t.cleanup().await;
}

#[tokio::test]
async fn a_silent_participant_is_dropped_and_the_drop_recorded() {
    let settings = SignallingSettings {
        keepalive_interval_seconds: 1,
        drop_after_seconds: 2,
        ..SignallingSettings::default()
    };
    let t = TestCore::new(settings).await;
    let room = open_room(&t, false).await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    let dr_joined = dr.joined().await;
    let mut pat = Client::connect(&t.core, patient());
    pat.join(&room);
    let pat_joined = pat.joined().await;
    assert!(matches!(dr.next().await, ServerEvent::PeerJoined(_)));
    // The doctor keeps alive; the patient falls silent.
    let keep_alive = tokio::spawn({
        let sender = dr.sender.clone();
        async move {
            for _ in 0..6 {
                let _ = sender.send(Ok(Inbound {
                    client_sequence: 0,
                    message: Ok(ClientMessage::KeepAlive { client_time: None }),
                }));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let dropped = loop {
        match dr.next().await {
            ServerEvent::KeepAliveAck { .. } => continue,
            other => break other,
        }
    };
    assert!(
        matches!(&dropped, ServerEvent::PeerDropped { participant_id, .. } if *participant_id == pat_joined.participant_id),
        "{dropped:?}"
    );
    let (ending, _) = pat.ended().await;
    assert!(
        matches!(ending, Err(SignallingError::Unavailable(_))),
        "{ending:?}"
    );
    keep_alive.await.expect("keep-alives sent");
    let incidents = t
        .core
        .list_incidents(
            &doctor(),
            &AppointmentId::known(dr_joined.appointment_id.clone()),
            100,
            None,
        )
        .await
        .expect("list");
    assert!(
        incidents
            .incidents
            .iter()
            .any(|i| i.kind == IncidentKind::CONNECTION_DROPPED
                && i.participant_subject == "pat-7f3a"),
        "the drop is recorded: {incidents:?}"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_flooder_is_refused_then_cut_without_disturbing_the_other() {
    let settings = SignallingSettings {
        messages_per_second: 1.0,
        message_burst: 5,
        flood_refusals_before_close: 10,
        ..SignallingSettings::default()
    };
    let t = TestCore::new(settings).await;
    let room = open_room(&t, false).await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    let dr_joined = dr.joined().await;
    let mut pat = Client::connect(&t.core, patient());
    pat.join(&room);
    let pat_joined = pat.joined().await;
    assert!(matches!(dr.next().await, ServerEvent::PeerJoined(_)));
    for n in 0..40 {
        pat.relay(&dr_joined.participant_id, offer(n));
    }
    let (ending, events) = pat.ended().await;
    assert!(
        matches!(ending, Err(SignallingError::ResourceExhausted(_))),
        "{ending:?}"
    );
    let limited = events
        .iter()
        .filter(
            |e| matches!(e, ServerEvent::Error { error, .. } if error.code == Code::RateLimited),
        )
        .count();
    assert_eq!(limited, 10, "ten RATE_LIMITED errors, then closed");
    // The doctor got exactly what passed the limit (the burst minus the join), then the drop.
    let mut relayed = 0;
    loop {
        match dr.next().await {
            ServerEvent::Relay { .. } => relayed += 1,
            ServerEvent::PeerDropped { participant_id, .. } => {
                assert_eq!(participant_id, pat_joined.participant_id);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(relayed, 4);
    t.cleanup().await;
}

#[tokio::test]
async fn refusals_before_and_after_join_are_error_events() {
    let t = TestCore::new(SignallingSettings::default()).await;
    let room = open_room(&t, true).await;
    let mut pat = Client::connect(&t.core, patient());
    pat.send(ClientMessage::KeepAlive { client_time: None });
    match pat.next().await {
        ServerEvent::Error {
            error,
            client_sequence,
        } => {
            assert_eq!(error.code, Code::NotJoined);
            assert_eq!(client_sequence, 1);
        }
        other => panic!("expected NOT_JOINED, got {other:?}"),
    }
    pat.join(&room);
    let joined = pat.joined().await;
    let cases = [
        (
            joined.participant_id.clone(),
            Code::UnknownPeer,
            "to himself",
        ),
        (
            uuid::Uuid::new_v4().to_string(),
            Code::UnknownPeer,
            "to a stranger",
        ),
    ];
    for (to, code, case) in cases {
        pat.relay(&to, offer(0));
        match pat.next().await {
            ServerEvent::Error { error, .. } => assert_eq!(error.code, code, "{case}"),
            other => panic!("{case}: got {other:?}"),
        }
    }
    // The nurse is a participant but not connected; the doctor neither.
    let participants = {
        let mut conn = t.database.db.pool().acquire().await.expect("conn");
        crate::store::participants(&mut conn, &room)
            .await
            .expect("participants")
    };
    let nurse = participants
        .iter()
        .find(|p| p.role == Role::Nurse)
        .expect("nurse");
    pat.relay(&nurse.participant_id, offer(0));
    match pat.next().await {
        ServerEvent::Error { error, .. } => assert_eq!(error.code, Code::PeerNotConnected),
        other => panic!("got {other:?}"),
    }
    pat.join(&room);
    match pat.next().await {
        ServerEvent::Error { error, .. } => assert_eq!(error.code, Code::AlreadyJoined),
        other => panic!("got {other:?}"),
    }
    pat.send(ClientMessage::Leave {
        reason: "fin".into(),
    });
    let (ending, _) = pat.ended().await;
    assert!(ending.is_ok(), "leave ends with OK: {ending:?}");
    t.cleanup().await;
}

#[tokio::test]
async fn the_patient_waiting_for_the_doctor_is_reported_once_the_doctor_is_there_nobody_is() {
    let t = TestCore::new(SignallingSettings::default()).await;
    let room = open_room(&t, true).await;
    let mut pat = Client::connect(&t.core, patient());
    pat.join(&room);
    let joined = pat.joined().await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    dr.joined().await;
    let mut nurse = Client::connect(&t.core, person("nurse-claire", TokenRole::Nurse, ORG));
    nurse.join(&room);
    nurse.joined().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let arrivals = t.arrivals();
    assert_eq!(arrivals.len(), 1, "only the patient waited: {arrivals:?}");
    assert_eq!(arrivals[0].subject, "pat-7f3a");
    assert_eq!(arrivals[0].appointment_id, joined.appointment_id);
    assert_eq!(arrivals[0].role, Role::Patient);
    t.cleanup().await;
}

#[tokio::test]
async fn closing_the_room_ends_every_stream_with_ok() {
    let t = TestCore::new(SignallingSettings::default()).await;
    let room = open_room(&t, false).await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    let joined = dr.joined().await;
    t.core
        .close_room(
            &scheduling(),
            &AppointmentId::known(joined.appointment_id.clone()),
            crate::domain::CloseReason::Finished,
        )
        .await
        .expect("closes");
    let (ending, events) = dr.ended().await;
    assert!(ending.is_ok(), "{ending:?}");
    assert_eq!(
        events,
        vec![ServerEvent::RoomClosed {
            reason: crate::domain::CloseReason::Finished
        }]
    );
    let mut late = Client::connect(&t.core, patient());
    late.join(&room);
    let (ending, _) = late.ended().await;
    assert!(
        matches!(ending, Err(SignallingError::FailedPrecondition(_))),
        "{ending:?}"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_lost_bus_connection_ends_every_stream_of_the_replica_so_its_clients_rejoin() {
    let Some(database) = telehealth_kit::testing::TestDatabase::postgres().await else {
        return;
    };
    let t = TestCore::on(database, SignallingSettings::default()).await;
    let room = open_room(&t, false).await;
    let mut dr = Client::connect(&t.core, doctor());
    dr.join(&room);
    dr.joined().await;

    // The server ends the bus listener's session, as a restart does: room events sent until it
    // listens again are lost, so this replica's view of the room can no longer be trusted.
    let (_, schema) = t.database.db.postgres_target().expect("PostgreSQL");
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query = 'LISTEN \"' || $1 || '_events\"'",
    )
    .bind(schema)
    .fetch_one(t.database.db.pool())
    .await
    .expect("terminate");
    assert_eq!(ended, 1, "the replica's listener, and only it");
    let (ending, _) = dr.ended().await;
    assert!(
        matches!(ending, Err(SignallingError::Unavailable(_))),
        "the stream ends as retryable so that its client joins again: {ending:?}"
    );

    // Once the replica listens again, the client joins again.
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        while !t.bus.is_listening() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "listening again within 10 s");
    let mut rejoin = Client::connect(&t.core, doctor());
    rejoin.join(&room);
    rejoin.joined().await;
    t.cleanup().await;
}
