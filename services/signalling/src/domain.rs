//! The values of signalling, validated: rooms, participants, client messages and server events,
//! technical incidents. The gRPC adapter builds them from the contract's messages; the core only
//! ever sees these.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use telehealth_kit::ids::Id;

use crate::error::SignallingError;

/// Longest subject (JWT `sub`), in characters.
pub const MAX_SUBJECT_CHARS: usize = 255;
/// Longest org id, in characters.
pub const MAX_ORG_CHARS: usize = 128;
/// Longest `client_platform`, in characters.
pub const MAX_PLATFORM_CHARS: usize = 100;
/// Longest `leave` reason, in characters.
pub const MAX_LEAVE_REASON_CHARS: usize = 200;
/// Longest incident description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Largest candidate attribute, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1_024;
/// Longest `sdp_mid`, in characters.
pub const MAX_MID_CHARS: usize = 64;
/// Longest ICE username fragment, in characters.
pub const MAX_UFRAG_CHARS: usize = 256;

/// The capacity in which a person takes part in a room (contract `ParticipantRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Doctor,
    Nurse,
    Patient,
}

impl Role {
    /// The contract's enum number.
    pub fn number(self) -> i32 {
        match self {
            Role::Doctor => 1,
            Role::Nurse => 2,
            Role::Patient => 3,
        }
    }

    /// From the contract's enum number (`None` for unspecified or unknown).
    pub fn from_number(value: i32) -> Option<Role> {
        match value {
            1 => Some(Role::Doctor),
            2 => Some(Role::Nurse),
            3 => Some(Role::Patient),
            _ => None,
        }
    }
}

/// A half-open interval of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// True when `at` is inside.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// Why a room was closed (contract `RoomCloseReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Finished,
    Cancelled,
    NoShow,
    Expired,
}

impl CloseReason {
    /// The contract's enum number.
    pub fn number(self) -> i32 {
        match self {
            CloseReason::Finished => 1,
            CloseReason::Cancelled => 2,
            CloseReason::NoShow => 3,
            CloseReason::Expired => 4,
        }
    }

    /// From the contract's enum number.
    pub fn from_number(value: i32) -> Option<CloseReason> {
        match value {
            1 => Some(CloseReason::Finished),
            2 => Some(CloseReason::Cancelled),
            3 => Some(CloseReason::NoShow),
            4 => Some(CloseReason::Expired),
            _ => None,
        }
    }
}

/// A person admitted to a room, as `OpenRoom` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub subject: String,
    pub role: Role,
}

/// A validated `OpenRoom` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpec {
    pub appointment_id: String,
    pub org_id: String,
    pub participants: Vec<Admitted>,
    pub scheduled: Window,
}

impl RoomSpec {
    /// Checks the participants: exactly one doctor, at most one nurse and one patient, no
    /// subject twice.
    pub fn new(
        appointment_id: String,
        org_id: String,
        participants: Vec<Admitted>,
        scheduled: Window,
    ) -> Result<RoomSpec, SignallingError> {
        if participants.len() > 3 {
            return Err(SignallingError::invalid(
                "participants",
                "at most 3 participants (one doctor, one nurse, one patient)",
            ));
        }
        let count = |role| participants.iter().filter(|p| p.role == role).count();
        if count(Role::Doctor) != 1 {
            return Err(SignallingError::invalid(
                "participants",
                "exactly one doctor is required",
            ));
        }
        if count(Role::Nurse) > 1 || count(Role::Patient) > 1 {
            return Err(SignallingError::invalid(
                "participants",
                "at most one nurse and one patient",
            ));
        }
        for (i, p) in participants.iter().enumerate() {
            if participants[..i].iter().any(|q| q.subject == p.subject) {
                return Err(SignallingError::invalid(
                    "participants",
                    format!("subject `{}` is listed twice", p.subject),
                ));
            }
        }
        if scheduled.end <= scheduled.start {
            return Err(SignallingError::invalid(
                "scheduled_time",
                "end_time must be after start_time",
            ));
        }
        Ok(RoomSpec {
            appointment_id,
            org_id,
            participants,
            scheduled,
        })
    }
}

/// A participant of a room, with its stable id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub participant_id: String,
    pub subject: String,
    pub role: Role,
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub room_id: String,
    pub appointment_id: String,
    pub org_id: String,
    pub scheduled: Window,
    /// When participants may join.
    pub admission: Window,
    pub closed: Option<(Timestamp, CloseReason)>,
    pub participants: Vec<Participant>,
}

impl Room {
    /// The participant whose verified subject is `subject`.
    pub fn participant(&self, subject: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.subject == subject)
    }

    /// The participant with id `participant_id`.
    pub fn participant_by_id(&self, participant_id: &str) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.participant_id == participant_id)
    }
}

/// Another participant as seen in a room (contract `Peer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub participant_id: String,
    pub connection_id: String,
    pub subject: String,
    pub role: Role,
    pub joined_at: Timestamp,
}

/// One ICE server (contract `IceServer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// ICE servers with the expiry of their credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServerSet {
    pub servers: Vec<IceServer>,
    pub expires_at: Timestamp,
}

// ---- client messages -------------------------------------------------------------------------

/// One validated client message of a `Signal` stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Join {
        room_id: String,
        client_platform: String,
    },
    /// A `join` that cannot be understood: ends the stream with INVALID_ARGUMENT (before join).
    MalformedJoin(String),
    /// Offer, answer, candidate or end of candidates for one peer.
    Relay {
        to_participant_id: String,
        message: Relayed,
    },
    Leave {
        reason: String,
    },
    KeepAlive {
        client_time: Option<Timestamp>,
    },
    ReportIncident(IncidentReport),
}

/// What is relayed from one participant to another, as sent (validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Relayed {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        sdp_mid: String,
        sdp_m_line_index: Option<u32>,
        username_fragment: String,
    },
    EndOfCandidates {
        username_fragment: String,
    },
}

/// Why one client message was refused (contract `SignallingErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageErrorCode {
    NotJoined,
    AlreadyJoined,
    MalformedSdp,
    MessageTooLarge,
    MalformedCandidate,
    UnknownPeer,
    PeerNotConnected,
    InvalidMessage,
    RateLimited,
    InvalidIncident,
}

/// A refused client message: an `error` event, the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    pub code: MessageErrorCode,
    pub message: String,
}

impl MessageError {
    pub fn new(code: MessageErrorCode, message: impl Into<String>) -> Self {
        MessageError {
            code,
            message: message.into(),
        }
    }
}

/// A client message with its sequence number, or why it cannot be understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub client_sequence: u64,
    pub message: Result<ClientMessage, MessageError>,
}

// ---- server events ---------------------------------------------------------------------------

/// Answer to `join` (contract `Joined`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub room_id: String,
    pub appointment_id: String,
    pub participant_id: String,
    pub connection_id: String,
    pub role: Role,
    pub peers: Vec<PeerInfo>,
    pub ice_servers: IceServerSet,
    pub admission: Window,
    pub keepalive_interval_seconds: u32,
    pub drop_after_seconds: u32,
    pub max_sdp_bytes: u32,
    pub replaced_previous_connection: bool,
}

/// One server event of a `Signal` stream (contract `SignalResponse`, without its sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    Joined(Box<Joined>),
    PeerJoined(PeerInfo),
    PeerLeft {
        participant_id: String,
        reason: String,
    },
    PeerDropped {
        participant_id: String,
        last_seen_at: Timestamp,
    },
    PeerReplaced(PeerInfo),
    Relay {
        from_participant_id: String,
        from_connection_id: String,
        message: Relayed,
    },
    Error {
        error: MessageError,
        client_sequence: u64,
    },
    KeepAliveAck {
        client_sequence: u64,
        server_time: Timestamp,
        client_time: Option<Timestamp>,
    },
    Replaced {
        new_connection_id: String,
    },
    RoomClosed {
        reason: CloseReason,
    },
    IncidentRecorded(Box<Incident>),
}

// ---- technical incidents ---------------------------------------------------------------------

/// Kind of technical incident (contract `IncidentKind`, 1-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentKind(pub i32);

impl IncidentKind {
    pub const CONNECTION_FAILED: IncidentKind = IncidentKind(1);
    pub const CONNECTION_DROPPED: IncidentKind = IncidentKind(2);
    pub const RECONNECTED: IncidentKind = IncidentKind(3);
    pub const OTHER: IncidentKind = IncidentKind(9);

    /// A known, specified kind.
    pub fn parse(value: i32) -> Result<IncidentKind, String> {
        if (1..=9).contains(&value) {
            Ok(IncidentKind(value))
        } else {
            Err("kind is required (one of the IncidentKind values)".into())
        }
    }
}

/// Who recorded an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentSource {
    ClientReported,
    ServerDetected,
}

impl IncidentSource {
    pub fn number(self) -> i32 {
        match self {
            IncidentSource::ClientReported => 1,
            IncidentSource::ServerDetected => 2,
        }
    }

    pub fn from_number(value: i32) -> IncidentSource {
        if value == 1 {
            IncidentSource::ClientReported
        } else {
            IncidentSource::ServerDetected
        }
    }
}

/// An incident as an app reports it (shape checked; times are checked by the core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentReport {
    pub client_incident_id: String,
    pub kind: IncidentKind,
    pub occurred_at: Timestamp,
    pub duration_seconds: i32,
    pub description: String,
    /// Contract `NetworkType` number (0-5).
    pub network_type: i32,
    pub client_platform: String,
}

/// A recorded incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub incident_id: String,
    pub appointment_id: String,
    pub room_id: String,
    pub participant_subject: String,
    pub participant_role: Role,
    pub source: IncidentSource,
    pub kind: IncidentKind,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub duration_seconds: i32,
    pub description: String,
    pub network_type: i32,
    pub client_platform: String,
    pub client_incident_id: Option<String>,
}

// ---- small validators ------------------------------------------------------------------------

/// A required record id, in canonical lowercase form.
pub fn id<K>(field: &'static str, value: &str) -> Result<Id<K>, SignallingError> {
    if value.is_empty() {
        return Err(SignallingError::invalid(field, "is required"));
    }
    Ok(Id::parse(field, value)?)
}

/// The id of a video room.
pub type RoomId = Id<Room>;
/// Marks the ids of appointments ([`AppointmentId`]), which the scheduling service holds.
pub enum Appointment {}
/// The id of the appointment a room belongs to.
pub type AppointmentId = Id<Appointment>;

/// Free text of at most `max` characters, without control characters other than newline and
/// tab, trimmed.
pub fn text(value: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(format!("at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".into());
    }
    Ok(value.to_owned())
}

/// A subject or org id: 1 to `max` characters.
pub fn name(field: &'static str, value: &str, max: usize) -> Result<String, SignallingError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(SignallingError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            start: Timestamp::from_second(1_000).expect("ts"),
            end: Timestamp::from_second(2_800).expect("ts"),
        }
    }

    fn admitted(subject: &str, role: Role) -> Admitted {
        Admitted {
            subject: subject.into(),
            role,
        }
    }

    #[test]
    fn a_room_needs_one_doctor_and_distinct_participants() {
        let cases: Vec<(Vec<Admitted>, bool, &str)> = vec![
            (vec![admitted("d", Role::Doctor)], true, "a doctor alone"),
            (
                vec![
                    admitted("d", Role::Doctor),
                    admitted("n", Role::Nurse),
                    admitted("p", Role::Patient),
                ],
                true,
                "the full team",
            ),
            (vec![admitted("p", Role::Patient)], false, "no doctor"),
            (
                vec![admitted("d", Role::Doctor), admitted("e", Role::Doctor)],
                false,
                "two doctors",
            ),
            (
                vec![admitted("d", Role::Doctor), admitted("d", Role::Patient)],
                false,
                "one subject twice",
            ),
            (
                vec![
                    admitted("d", Role::Doctor),
                    admitted("p", Role::Patient),
                    admitted("q", Role::Patient),
                ],
                false,
                "two patients",
            ),
        ];
        for (participants, ok, case) in cases {
            let result = RoomSpec::new("a".into(), "org".into(), participants, window());
            assert_eq!(result.is_ok(), ok, "{case}: {result:?}");
        }
    }

    #[test]
    fn an_inverted_schedule_is_refused() {
        let inverted = Window {
            start: window().end,
            end: window().start,
        };
        let result = RoomSpec::new(
            "a".into(),
            "org".into(),
            vec![admitted("d", Role::Doctor)],
            inverted,
        );
        assert!(result.is_err());
    }
}
