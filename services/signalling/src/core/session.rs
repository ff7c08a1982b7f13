//! One participant's `Signal` stream: join, relay, keep-alive, leave — message by message, in
//! one task, so that what a participant sends is published in the order sent.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    audit::{self, AuditEntry, Outcome},
    identity::Caller,
};
use tokio::time::Instant;

use crate::{
    core::{
        Arrival, Signalling,
        hub::{Departure, Link},
    },
    domain::{
        ClientMessage, Inbound, IncidentKind, Joined, MessageError, MessageErrorCode as Code,
        Participant, PeerInfo, Role, Room, ServerEvent,
    },
    error::SignallingError,
    ratelimit::{FloodGuard, Verdict},
    store,
};

/// A joined participant's stream.
struct Member {
    room: Room,
    me: Participant,
    connection_id: String,
    client_platform: String,
}

/// What one message leads to.
enum Step {
    Continue,
    Joined(Box<Member>),
    Leave(String),
    /// The stream ends with this status (a refused join, the bus down).
    End(SignallingError),
}

/// Why the loop ended.
enum End {
    Shutdown,
    /// Ended by the hub (replaced, room closed, too slow): the link holds the status.
    Killed,
    /// The client's side broke or closed without `leave`.
    Broken(&'static str),
    /// No message for `drop_after_seconds`.
    Silent,
    Flood,
    Left(String),
    Refused(SignallingError),
}

impl Signalling {
    /// Runs one `Signal` stream until it ends; its events go to `link`, and the link holds the
    /// status it ends with.
    pub async fn run_session<S>(&self, caller: Caller, mut inbound: S, link: Arc<Link>)
    where
        S: Stream<Item = Result<Inbound, SignallingError>> + Unpin + Send,
    {
        let settings = self.settings().clone();
        let drop_after = Duration::from_secs(u64::from(settings.drop_after_seconds));
        let mut guard = FloodGuard::new(
            settings.messages_per_second,
            settings.message_burst,
            settings.flood_refusals_before_close,
            Instant::now(),
        );
        let mut member: Option<Box<Member>> = None;
        let mut last_seen = Instant::now();
        let mut last_seen_at = self.now();
        let end = loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => break End::Shutdown,
                () = link.killed().cancelled() => break End::Killed,
                () = link.client_gone() => break End::Broken("the client went away without leave"),
                () = tokio::time::sleep_until(last_seen + drop_after) => break End::Silent,
                next = inbound.next() => {
                    let message = match next {
                        None => break End::Broken("the stream ended without leave"),
                        Some(Err(_)) => break End::Broken("the stream broke"),
                        Some(Ok(message)) => message,
                    };
                    last_seen = Instant::now();
                    last_seen_at = self.now();
                    match guard.check(last_seen) {
                        Verdict::Accept => {}
                        Verdict::Refuse => {
                            refuse(&link, &message, MessageError::new(
                                Code::RateLimited,
                                format!(
                                    "more than {} messages per second (burst {}); message dropped",
                                    settings.messages_per_second, settings.message_burst
                                ),
                            ));
                            continue;
                        }
                        Verdict::Close => break End::Flood,
                    }
                    match self.handle(&caller, &link, member.as_deref(), message).await {
                        Step::Continue => {}
                        Step::Joined(joined) => member = Some(joined),
                        Step::Leave(reason) => break End::Left(reason),
                        Step::End(error) => break End::Refused(error),
                    }
                }
            }
        };
        self.finish(member.as_deref(), end, &link, last_seen_at)
            .await;
    }

    async fn handle(
        &self,
        caller: &Caller,
        link: &Arc<Link>,
        member: Option<&Member>,
        inbound: Inbound,
    ) -> Step {
        let sequence = inbound.client_sequence;
        let message = match inbound.message {
            Ok(message) => message,
            Err(error) => {
                link.send(ServerEvent::Error {
                    error,
                    client_sequence: sequence,
                });
                return Step::Continue;
            }
        };
        let refuse = |code, text: &str| {
            link.send(ServerEvent::Error {
                error: MessageError::new(code, text),
                client_sequence: sequence,
            });
            Step::Continue
        };
        match (message, member) {
            (ClientMessage::Join { .. } | ClientMessage::MalformedJoin(_), Some(_)) => {
                refuse(Code::AlreadyJoined, "this stream already joined its room")
            }
            (ClientMessage::MalformedJoin(reason), None) => {
                Step::End(SignallingError::invalid("join", reason))
            }
            (
                ClientMessage::Join {
                    room_id,
                    client_platform,
                },
                None,
            ) => match self.join(caller, link, &room_id, client_platform).await {
                Ok(member) => Step::Joined(Box::new(member)),
                Err(error) => Step::End(error),
            },
            (_, None) => refuse(Code::NotJoined, "send join first"),
            (ClientMessage::KeepAlive { client_time }, Some(_)) => {
                link.send(ServerEvent::KeepAliveAck {
                    client_sequence: sequence,
                    server_time: self.now(),
                    client_time,
                });
                Step::Continue
            }
            (ClientMessage::Leave { reason }, Some(_)) => Step::Leave(reason),
            (ClientMessage::ReportIncident(report), Some(m)) => {
                match self.record_report(caller, &m.room, &m.me, report).await {
                    Ok(incident) => {
                        link.send(ServerEvent::IncidentRecorded(Box::new(incident)));
                        Step::Continue
                    }
                    Err(
                        error @ (SignallingError::InvalidArgument { .. }
                        | SignallingError::FailedPrecondition(_)),
                    ) => refuse(Code::InvalidIncident, &error.to_string()),
                    Err(error) => {
                        tracing::error!(%error, "could not record a reported incident");
                        refuse(
                            Code::InvalidIncident,
                            "the incident could not be recorded now; report it again",
                        )
                    }
                }
            }
            (
                ClientMessage::Relay {
                    to_participant_id,
                    message,
                },
                Some(m),
            ) => {
                if to_participant_id == m.me.participant_id
                    || m.room.participant_by_id(&to_participant_id).is_none()
                {
                    return refuse(
                        Code::UnknownPeer,
                        "the addressee is not another participant of this room",
                    );
                }
                if !self.hub().is_connected(&m.room.room_id, &to_participant_id) {
                    return refuse(
                        Code::PeerNotConnected,
                        "the addressee is not connected; the message was dropped",
                    );
                }
                match self
                    .hub()
                    .relay(
                        &m.room.room_id,
                        &to_participant_id,
                        &m.me.participant_id,
                        &m.connection_id,
                        message,
                        self.now(),
                    )
                    .await
                {
                    Ok(()) => Step::Continue,
                    Err(error) => Step::End(error),
                }
            }
        }
    }

    /// Admits the caller, makes this stream his current one, and announces it.
    async fn join(
        &self,
        caller: &Caller,
        link: &Arc<Link>,
        room_id: &str,
        client_platform: String,
    ) -> Result<Member, SignallingError> {
        let admitted = self.admit(caller, room_id).await;
        let outcome = admitted.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        if outcome != Outcome::Ok {
            self.audit(caller, "Signal", "room", room_id, outcome).await;
        }
        let (room, me) = admitted?;
        let member = Member {
            room,
            me,
            connection_id: uuid::Uuid::new_v4().to_string(),
            client_platform,
        };
        // Registered before the transaction: a peer announced after it cannot be missed.
        self.hub().register(
            &member.room.room_id,
            &member.me.participant_id,
            &member.connection_id,
            link.clone(),
        );
        match self.join_registered(caller, &member).await {
            Ok(()) => Ok(member),
            Err(error) => {
                self.hub()
                    .unregister(&member.room.room_id, &member.connection_id);
                Err(error)
            }
        }
    }

    async fn join_registered(&self, caller: &Caller, m: &Member) -> Result<(), SignallingError> {
        let now = self.now();
        let settings = self.settings();
        let seen_after = now - SignedDuration::from_secs(i64::from(settings.drop_after_seconds));
        let mut tx = self.db().pool().begin().await?;
        store::lock_room(&mut tx, &m.room.room_id, now).await?;
        if store::room(&mut tx, &m.room.room_id)
            .await?
            .is_none_or(|r| r.closed.is_some())
        {
            return Err(SignallingError::FailedPrecondition(
                "the room is closed".into(),
            ));
        }
        let previous = store::connection_of(&mut tx, &m.room.room_id, &m.me.participant_id).await?;
        store::put_connection(
            &mut tx,
            &store::ConnectionRow {
                room_id: m.room.room_id.clone(),
                participant_id: m.me.participant_id.clone(),
                connection_id: m.connection_id.clone(),
                instance_id: self.instance_id().to_owned(),
                client_platform: m.client_platform.clone(),
                joined_at: now,
                last_seen_at: now,
            },
        )
        .await?;
        let peers =
            store::connected_peers(&mut tx, &m.room.room_id, &m.me.participant_id, seen_after)
                .await?;
        store::log(
            &mut tx,
            &store::LogEntry {
                room_id: &m.room.room_id,
                at: now,
                kind: if previous.is_some() {
                    "replaced"
                } else {
                    "joined"
                },
                participant_id: &m.me.participant_id,
                connection_id: &m.connection_id,
                detail: &m.client_platform,
            },
        )
        .await?;
        if let Some(previous) = &previous {
            let incident = self.detected_incident(
                &m.room,
                &m.me,
                IncidentKind::RECONNECTED,
                now,
                format!(
                    "a new stream replaced the previous one (last seen {})",
                    previous.last_seen_at
                ),
                &m.client_platform,
            );
            store::insert_incident(&mut tx, &incident).await?;
        }
        let entry = AuditEntry::new(caller, "Signal", "room", &m.room.room_id, Outcome::Ok);
        audit::append(&mut tx, &entry).await?;
        tx.commit().await?;

        let joined = Joined {
            room_id: m.room.room_id.clone(),
            appointment_id: m.room.appointment_id.clone(),
            participant_id: m.me.participant_id.clone(),
            connection_id: m.connection_id.clone(),
            role: m.me.role,
            peers: Vec::new(),
            ice_servers: self.ice_servers(&m.room, &m.me),
            admission: m.room.admission,
            keepalive_interval_seconds: settings.keepalive_interval_seconds,
            drop_after_seconds: settings.drop_after_seconds,
            max_sdp_bytes: settings.max_sdp_bytes,
            replaced_previous_connection: previous.is_some(),
        };
        self.hub()
            .prepare(&m.room.room_id, &m.connection_id, joined, &peers);
        let me = PeerInfo {
            participant_id: m.me.participant_id.clone(),
            connection_id: m.connection_id.clone(),
            subject: m.me.subject.clone(),
            role: m.me.role,
            joined_at: now,
        };
        if let Err(error) = self
            .hub()
            .publish_activated(&m.room.room_id, &me, previous.map(|p| p.connection_id))
            .await
        {
            self.forget_connection(m).await;
            return Err(error);
        }
        tracing::info!(room_id = %m.room.room_id, participant_id = %m.me.participant_id, connection_id = %m.connection_id, "joined");
        if m.me.role != Role::Doctor && !peers.iter().any(|p| p.role == Role::Doctor) {
            self.report_arrival(Arrival {
                appointment_id: m.room.appointment_id.clone(),
                room_id: m.room.room_id.clone(),
                subject: m.me.subject.clone(),
                role: m.me.role,
                joined_at: now,
            });
        }
        Ok(())
    }

    /// Tells scheduling, in the background, that someone waits for the doctor (a few tries).
    fn report_arrival(&self, arrival: Arrival) {
        let presence = self.inner.presence.clone();
        tokio::spawn(async move {
            for attempt in 1..=3_u32 {
                match presence.waiting(arrival.clone()).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%error, attempt, appointment_id = %arrival.appointment_id, "could not report a waiting-room arrival");
                        tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
                    }
                }
            }
        });
    }

    async fn forget_connection(&self, m: &Member) {
        if let Ok(mut conn) = self.db().pool().acquire().await {
            let _ = store::delete_connection(
                &mut conn,
                &m.room.room_id,
                &m.me.participant_id,
                &m.connection_id,
            )
            .await;
        }
    }

    /// Ends a stream: records the departure (if this stream was still current), tells the
    /// peers, and sets the status the stream ends with.
    async fn finish(
        &self,
        member: Option<&Member>,
        end: End,
        link: &Arc<Link>,
        last_seen: Timestamp,
    ) {
        let drop_after = self.settings().drop_after_seconds;
        let (result, departure, incident): (
            Result<(), SignallingError>,
            Departure,
            Option<String>,
        ) = match end {
            End::Shutdown => (
                Err(SignallingError::Unavailable(
                    "the server is shutting down; reconnect".into(),
                )),
                Departure::Dropped {
                    last_seen_at: last_seen,
                },
                None,
            ),
            End::Killed => (
                Ok(()),
                Departure::Dropped {
                    last_seen_at: last_seen,
                },
                None,
            ),
            End::Broken(why) => (
                Err(SignallingError::Unavailable(why.into())),
                Departure::Dropped {
                    last_seen_at: last_seen,
                },
                Some(why.to_owned()),
            ),
            End::Silent => (
                Err(SignallingError::Unavailable(if member.is_some() {
                    format!("no keep-alive for {drop_after} seconds; reconnect")
                } else {
                    format!("no join within {drop_after} seconds")
                })),
                Departure::Dropped {
                    last_seen_at: last_seen,
                },
                Some(format!("no keep-alive for {drop_after} seconds")),
            ),
            End::Flood => (
                Err(SignallingError::ResourceExhausted(
                    "too many messages after RATE_LIMITED errors; stream closed".into(),
                )),
                Departure::Dropped {
                    last_seen_at: last_seen,
                },
                None,
            ),
            End::Left(reason) => (Ok(()), Departure::Left { reason }, None),
            End::Refused(error) => (
                Err(error),
                Departure::Dropped {
                    last_seen_at: last_seen,
                },
                None,
            ),
        };
        if let Some(m) = member {
            self.depart(m, departure, incident, last_seen).await;
            self.hub().unregister(&m.room.room_id, &m.connection_id);
        }
        link.end(result);
    }

    async fn depart(
        &self,
        m: &Member,
        how: Departure,
        incident: Option<String>,
        last_seen: Timestamp,
    ) {
        let now = self.now();
        let recorded = async {
            let mut tx = self.db().pool().begin().await?;
            let current = store::delete_connection(
                &mut tx,
                &m.room.room_id,
                &m.me.participant_id,
                &m.connection_id,
            )
            .await?;
            if current {
                let (kind, detail) = match &how {
                    Departure::Left { reason } => ("left", reason.clone()),
                    Departure::Dropped { .. } => ("dropped", incident.clone().unwrap_or_default()),
                };
                store::log(
                    &mut tx,
                    &store::LogEntry {
                        room_id: &m.room.room_id,
                        at: now,
                        kind,
                        participant_id: &m.me.participant_id,
                        connection_id: &m.connection_id,
                        detail: &detail,
                    },
                )
                .await?;
                if let Some(description) = &incident {
                    let incident = self.detected_incident(
                        &m.room,
                        &m.me,
                        IncidentKind::CONNECTION_DROPPED,
                        last_seen,
                        description.clone(),
                        &m.client_platform,
                    );
                    store::insert_incident(&mut tx, &incident).await?;
                }
                let departure = self
                    .hub()
                    .stage_departed(
                        &mut tx,
                        &m.room.room_id,
                        &m.me.participant_id,
                        &m.connection_id,
                        how,
                    )
                    .await?;
                tx.commit().await?;
                departure.send();
                return Ok::<bool, SignallingError>(true);
            }
            tx.commit().await?;
            Ok(false)
        }
        .await;
        match recorded {
            Ok(true) => {
                tracing::info!(room_id = %m.room.room_id, participant_id = %m.me.participant_id, connection_id = %m.connection_id, "left");
            }
            // Replaced by a newer stream, or the room closed: nothing to announce.
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, room_id = %m.room.room_id, "could not record a departure");
            }
        }
    }
}

/// Refuses one message with an `error` event.
fn refuse(link: &Link, message: &Inbound, error: MessageError) {
    link.send(ServerEvent::Error {
        error,
        client_sequence: message.client_sequence,
    });
}

#[cfg(test)]
mod tests;
