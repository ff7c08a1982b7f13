//! Conversions between the contract's messages and the domain values, with validation of
//! everything a client sends (INVALID_ARGUMENT naming the field, or an `error` event inside a
//! stream).

use jiff::Timestamp;
use telehealth_proto::v1::{
    self as pb, signal_request::Message as In, signal_response::Event as Out,
};
use tonic::Status;

use crate::{
    domain::{
        self, Admitted, ClientMessage, CloseReason, IceServerSet, Inbound, Incident, IncidentKind,
        IncidentReport, MAX_LEAVE_REASON_CHARS, MAX_ORG_CHARS, MAX_PLATFORM_CHARS,
        MAX_SUBJECT_CHARS, MAX_UFRAG_CHARS, MessageError, MessageErrorCode as Code, PeerInfo,
        Relayed, Role, RoomSpec, ServerEvent, Window,
    },
    error::SignallingError,
    validate::{self, SdpType},
};

use telehealth_kit::ids::Id;
pub use telehealth_kit::record::timestamp;

type Result<T> = std::result::Result<T, SignallingError>;

// ---- errors ----------------------------------------------------------------------------------

/// The status of a refused call.
pub fn status(error: &SignallingError) -> Status {
    telehealth_kit::error::to_status(error)
}

impl From<SignallingError> for Status {
    fn from(error: SignallingError) -> Status {
        status(&error)
    }
}

/// The status a `Signal` stream ends with: an UNAVAILABLE ending caused by the client's
/// silence or by a shutdown says so (it tells the client to reconnect), unlike a dependency
/// failure, whose cause stays in the log.
pub fn stream_status(error: &SignallingError) -> Status {
    match error {
        SignallingError::Unavailable(message) => Status::unavailable(message.clone()),
        other => status(other),
    }
}

// ---- scalars ---------------------------------------------------------------------------------

/// A required instant.
pub fn instant(field: &'static str, value: Option<&prost_types::Timestamp>) -> Result<Timestamp> {
    let value = value.ok_or_else(|| SignallingError::invalid(field, "is required"))?;
    telehealth_kit::record::from_wire(value)
        .ok_or_else(|| SignallingError::invalid(field, "is not a valid timestamp"))
}

fn window(range: Window) -> pb::TimeRange {
    pb::TimeRange {
        start_time: Some(timestamp(range.start)),
        end_time: Some(timestamp(range.end)),
    }
}

// ---- rooms -----------------------------------------------------------------------------------

/// Most participants a room admits (one doctor, one nurse, one patient).
const MAX_PARTICIPANTS: usize = 3;

/// A validated `OpenRoom` request.
pub fn room_spec(request: &pb::OpenRoomRequest) -> Result<RoomSpec> {
    let appointment_id: domain::AppointmentId =
        domain::id("appointment_id", &request.appointment_id)?;
    let org_id = domain::name("org_id", &request.org_id, MAX_ORG_CHARS)?;
    // Counted before any element is looked at (RoomSpec::new says the same of valid ones).
    if request.participants.len() > MAX_PARTICIPANTS {
        return Err(SignallingError::invalid(
            "participants",
            "at most 3 participants (one doctor, one nurse, one patient)",
        ));
    }
    let participants = request
        .participants
        .iter()
        .map(|p| {
            Ok(Admitted {
                subject: domain::name("participants.subject", &p.subject, MAX_SUBJECT_CHARS)?,
                role: Role::from_number(p.role).ok_or_else(|| {
                    SignallingError::invalid(
                        "participants.role",
                        "must be DOCTOR, NURSE or PATIENT",
                    )
                })?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let range = request
        .scheduled_time
        .as_ref()
        .ok_or_else(|| SignallingError::invalid("scheduled_time", "is required"))?;
    let scheduled = Window {
        start: instant("scheduled_time.start_time", range.start_time.as_ref())?,
        end: instant("scheduled_time.end_time", range.end_time.as_ref())?,
    };
    RoomSpec::new(appointment_id.to_string(), org_id, participants, scheduled)
}

/// A close reason other than unspecified.
pub fn close_reason(value: i32) -> Result<CloseReason> {
    CloseReason::from_number(value).ok_or_else(|| {
        SignallingError::invalid("reason", "must be FINISHED, CANCELLED, NO_SHOW or EXPIRED")
    })
}

/// ICE servers as the contract writes them.
pub fn ice_servers(set: &IceServerSet) -> pb::IceServerSet {
    pb::IceServerSet {
        servers: set
            .servers
            .iter()
            .map(|s| pb::IceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
        expires_at: Some(timestamp(set.expires_at)),
    }
}

// ---- incidents -------------------------------------------------------------------------------

/// A validated incident report (times are checked by the core, against the room).
pub fn incident_report(report: Option<&pb::IncidentReport>) -> Result<IncidentReport> {
    let report = report.ok_or_else(|| SignallingError::invalid("report", "is required"))?;
    let client_incident_id: Id<domain::Incident> =
        domain::id("client_incident_id", &report.client_incident_id)?;
    let kind = IncidentKind::parse(report.kind).map_err(|e| SignallingError::invalid("kind", e))?;
    let occurred_at = instant("occurred_at", report.occurred_at.as_ref())?;
    let description = domain::text(&report.description, domain::MAX_DESCRIPTION_CHARS)
        .map_err(|e| SignallingError::invalid("description", e))?;
    let client_platform = domain::text(&report.client_platform, MAX_PLATFORM_CHARS)
        .map_err(|e| SignallingError::invalid("client_platform", e))?;
    if !(0..=5).contains(&report.network_type) {
        return Err(SignallingError::invalid(
            "network_type",
            "is not a NetworkType value",
        ));
    }
    Ok(IncidentReport {
        client_incident_id: client_incident_id.to_string(),
        kind,
        occurred_at,
        duration_seconds: report.duration_seconds,
        description,
        network_type: report.network_type,
        client_platform,
    })
}

/// A recorded incident as the contract writes it.
pub fn incident(i: &Incident) -> pb::TechnicalIncident {
    pb::TechnicalIncident {
        incident_id: i.incident_id.clone(),
        appointment_id: i.appointment_id.clone(),
        room_id: i.room_id.clone(),
        participant_subject: i.participant_subject.clone(),
        participant_role: i.participant_role.number(),
        source: i.source.number(),
        kind: i.kind.0,
        occurred_at: Some(timestamp(i.occurred_at)),
        recorded_at: Some(timestamp(i.recorded_at)),
        duration_seconds: i.duration_seconds,
        description: i.description.clone(),
        network_type: i.network_type,
        client_platform: i.client_platform.clone(),
        client_incident_id: i.client_incident_id.clone().unwrap_or_default(),
    }
}

// ---- the stream ------------------------------------------------------------------------------

/// A client message of `Signal`, validated; problems become `error` events (or, for `join`,
/// the INVALID_ARGUMENT the stream ends with).
pub fn inbound(request: pb::SignalRequest, max_sdp_bytes: usize) -> Inbound {
    Inbound {
        client_sequence: request.client_sequence,
        message: client_message(request.message, max_sdp_bytes),
    }
}

fn client_message(
    message: Option<In>,
    max_sdp_bytes: usize,
) -> std::result::Result<ClientMessage, MessageError> {
    let invalid = |text: &str| MessageError::new(Code::InvalidMessage, text);
    let peer = |id: &str| -> std::result::Result<String, MessageError> {
        if id.is_empty() {
            return Err(invalid("to_participant_id is required"));
        }
        telehealth_kit::ids::record_id("to_participant_id", id).map_err(|_| {
            MessageError::new(
                Code::UnknownPeer,
                "to_participant_id is not a participant id",
            )
        })
    };
    match message {
        None => Err(invalid(
            "the message is empty: set exactly one of its fields",
        )),
        Some(In::Join(join)) => {
            let room_id = match domain::id::<domain::Room>("room_id", &join.room_id) {
                Ok(id) => id.to_string(),
                Err(error) => return Ok(ClientMessage::MalformedJoin(error.to_string())),
            };
            match domain::text(&join.client_platform, MAX_PLATFORM_CHARS) {
                Ok(client_platform) => Ok(ClientMessage::Join {
                    room_id,
                    client_platform,
                }),
                Err(reason) => Ok(ClientMessage::MalformedJoin(format!(
                    "client_platform: {reason}"
                ))),
            }
        }
        Some(In::Offer(offer)) => {
            let to_participant_id = peer(&offer.to_participant_id)?;
            validate::sdp(SdpType::Offer, &offer.sdp, max_sdp_bytes)?;
            Ok(ClientMessage::Relay {
                to_participant_id,
                message: Relayed::Offer { sdp: offer.sdp },
            })
        }
        Some(In::Answer(answer)) => {
            let to_participant_id = peer(&answer.to_participant_id)?;
            validate::sdp(SdpType::Answer, &answer.sdp, max_sdp_bytes)?;
            Ok(ClientMessage::Relay {
                to_participant_id,
                message: Relayed::Answer { sdp: answer.sdp },
            })
        }
        Some(In::IceCandidate(c)) => {
            let to_participant_id = peer(&c.to_participant_id)?;
            validate::candidate(&c.candidate, &c.sdp_mid, &c.username_fragment)?;
            Ok(ClientMessage::Relay {
                to_participant_id,
                message: Relayed::Candidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_m_line_index: c.sdp_m_line_index,
                    username_fragment: c.username_fragment,
                },
            })
        }
        Some(In::EndOfCandidates(end)) => {
            let to_participant_id = peer(&end.to_participant_id)?;
            if end.username_fragment.chars().count() > MAX_UFRAG_CHARS {
                return Err(MessageError::new(
                    Code::MessageTooLarge,
                    format!("username_fragment is at most {MAX_UFRAG_CHARS} characters"),
                ));
            }
            Ok(ClientMessage::Relay {
                to_participant_id,
                message: Relayed::EndOfCandidates {
                    username_fragment: end.username_fragment,
                },
            })
        }
        Some(In::Leave(leave)) => domain::text(&leave.reason, MAX_LEAVE_REASON_CHARS)
            .map(|reason| ClientMessage::Leave { reason })
            .map_err(|e| MessageError::new(Code::MessageTooLarge, format!("reason: {e}"))),
        Some(In::KeepAlive(keep_alive)) => Ok(ClientMessage::KeepAlive {
            client_time: keep_alive
                .client_time
                .and_then(|t| telehealth_kit::record::from_wire(&t)),
        }),
        Some(In::ReportIncident(report)) => incident_report(Some(&report))
            .map(ClientMessage::ReportIncident)
            .map_err(|e| MessageError::new(Code::InvalidIncident, e.to_string())),
    }
}

fn peer(p: PeerInfo) -> pb::Peer {
    pb::Peer {
        participant_id: p.participant_id,
        connection_id: p.connection_id,
        subject: p.subject,
        role: p.role.number(),
        joined_at: Some(timestamp(p.joined_at)),
    }
}

fn error_code(code: Code) -> pb::SignallingErrorCode {
    match code {
        Code::NotJoined => pb::SignallingErrorCode::NotJoined,
        Code::AlreadyJoined => pb::SignallingErrorCode::AlreadyJoined,
        Code::MalformedSdp => pb::SignallingErrorCode::MalformedSdp,
        Code::MessageTooLarge => pb::SignallingErrorCode::MessageTooLarge,
        Code::MalformedCandidate => pb::SignallingErrorCode::MalformedCandidate,
        Code::UnknownPeer => pb::SignallingErrorCode::UnknownPeer,
        Code::PeerNotConnected => pb::SignallingErrorCode::PeerNotConnected,
        Code::InvalidMessage => pb::SignallingErrorCode::InvalidMessage,
        Code::RateLimited => pb::SignallingErrorCode::RateLimited,
        Code::InvalidIncident => pb::SignallingErrorCode::InvalidIncident,
    }
}

/// A server event as the contract writes it, numbered `server_sequence`.
pub fn event(event: ServerEvent, server_sequence: u64) -> pb::SignalResponse {
    let event = match event {
        ServerEvent::Joined(j) => Out::Joined(pb::Joined {
            room_id: j.room_id,
            appointment_id: j.appointment_id,
            participant_id: j.participant_id,
            connection_id: j.connection_id,
            role: j.role.number(),
            peers: j.peers.into_iter().map(peer).collect(),
            ice_servers: Some(ice_servers(&j.ice_servers)),
            admission_window: Some(window(j.admission)),
            keepalive_interval_seconds: i32::try_from(j.keepalive_interval_seconds)
                .unwrap_or(i32::MAX),
            drop_after_seconds: i32::try_from(j.drop_after_seconds).unwrap_or(i32::MAX),
            max_sdp_bytes: i32::try_from(j.max_sdp_bytes).unwrap_or(i32::MAX),
            replaced_previous_connection: j.replaced_previous_connection,
        }),
        ServerEvent::PeerJoined(p) => Out::PeerJoined(pb::PeerJoined {
            peer: Some(peer(p)),
        }),
        ServerEvent::PeerLeft {
            participant_id,
            reason,
        } => Out::PeerLeft(pb::PeerLeft {
            participant_id,
            reason,
        }),
        ServerEvent::PeerDropped {
            participant_id,
            last_seen_at,
        } => Out::PeerDropped(pb::PeerDropped {
            participant_id,
            last_seen_at: Some(timestamp(last_seen_at)),
        }),
        ServerEvent::PeerReplaced(p) => Out::PeerReplaced(pb::PeerReplaced {
            peer: Some(peer(p)),
        }),
        ServerEvent::Relay {
            from_participant_id,
            from_connection_id,
            message,
        } => match message {
            Relayed::Offer { sdp } => Out::Offer(pb::RelayedSdpOffer {
                from_participant_id,
                from_connection_id,
                sdp,
            }),
            Relayed::Answer { sdp } => Out::Answer(pb::RelayedSdpAnswer {
                from_participant_id,
                from_connection_id,
                sdp,
            }),
            Relayed::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
                username_fragment,
            } => Out::IceCandidate(pb::RelayedIceCandidate {
                from_participant_id,
                from_connection_id,
                candidate,
                sdp_mid,
                sdp_m_line_index,
                username_fragment,
            }),
            Relayed::EndOfCandidates { username_fragment } => {
                Out::EndOfCandidates(pb::RelayedEndOfCandidates {
                    from_participant_id,
                    from_connection_id,
                    username_fragment,
                })
            }
        },
        ServerEvent::Error {
            error,
            client_sequence,
        } => Out::Error(pb::SignallingError {
            code: error_code(error.code) as i32,
            message: error.message,
            client_sequence,
        }),
        ServerEvent::KeepAliveAck {
            client_sequence,
            server_time,
            client_time,
        } => Out::KeepAliveAck(pb::KeepAliveAck {
            client_sequence,
            server_time: Some(timestamp(server_time)),
            client_time: client_time.map(timestamp),
        }),
        ServerEvent::Replaced { new_connection_id } => {
            Out::Replaced(pb::SessionReplaced { new_connection_id })
        }
        ServerEvent::RoomClosed { reason } => Out::RoomClosed(pb::RoomClosed {
            reason: reason.number(),
        }),
        ServerEvent::IncidentRecorded(i) => Out::IncidentRecorded(pb::IncidentRecorded {
            incident: Some(incident(&i)),
        }),
    };
    pb::SignalResponse {
        server_sequence,
        event: Some(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_message_and_a_bad_addressee_are_error_events() {
        let empty = inbound(
            pb::SignalRequest {
                client_sequence: 4,
                message: None,
            },
            65_536,
        );
        assert_eq!(empty.client_sequence, 4);
        assert_eq!(empty.message.map_err(|e| e.code), Err(Code::InvalidMessage));
        let bad_peer = inbound(
            pb::SignalRequest {
                client_sequence: 5,
                message: Some(In::EndOfCandidates(pb::EndOfCandidates {
                    to_participant_id: "nobody".into(),
                    username_fragment: String::new(),
                })),
            },
            65_536,
        );
        assert_eq!(bad_peer.message.map_err(|e| e.code), Err(Code::UnknownPeer));
    }

    #[test]
    fn a_join_with_a_malformed_room_id_ends_the_stream() {
        let join = inbound(
            pb::SignalRequest {
                client_sequence: 1,
                message: Some(In::Join(pb::Join {
                    room_id: "room-1".into(),
                    client_platform: String::new(),
                })),
            },
            65_536,
        );
        assert!(matches!(join.message, Ok(ClientMessage::MalformedJoin(_))));
    }
}
