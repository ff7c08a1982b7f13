//! How every service stores and shows the same things: who acted ([`ActorRecord`]), instants
//! (Unix microseconds in the database, `google.protobuf.Timestamp` on the wire) and JSON
//! columns.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use telehealth_proto::v1 as pb;

use crate::identity::{Caller, Role};

/// Who did something, as recorded on a record: a person, or the suite itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActorRecord {
    pub subject: String,
    /// Role names (`doctor`, `nurse`...), as the person held them when acting.
    pub roles: Vec<String>,
    pub org_id: String,
    /// Set instead of a person when a service acted (`signalling`, `wound`...).
    #[serde(default)]
    pub service: String,
}

impl ActorRecord {
    /// The record of `caller`.
    pub fn of(caller: &Caller) -> ActorRecord {
        match caller {
            Caller::Person(identity) => ActorRecord {
                subject: identity.subject.clone(),
                roles: identity
                    .roles
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                org_id: identity.org.clone(),
                service: String::new(),
            },
            Caller::Service(part) => ActorRecord {
                service: part.name().to_owned(),
                ..ActorRecord::default()
            },
        }
    }

    /// The contract's `Actor`; unknown role names are left out.
    pub fn to_proto(&self) -> pb::Actor {
        pb::Actor {
            subject: self.subject.clone(),
            roles: self.roles.iter().filter_map(|r| role_number(r)).collect(),
            org_id: self.org_id.clone(),
            service: self.service.clone(),
        }
    }
}

/// The contract's number of a role name.
pub fn role_number(role: &str) -> Option<i32> {
    let role = match role {
        "doctor" => pb::Role::Doctor,
        "nurse" => pb::Role::Nurse,
        "specialist" => pb::Role::Specialist,
        "coordinator" => pb::Role::Coordinator,
        "patient" => pb::Role::Patient,
        "admin" => pb::Role::Admin,
        _ => return None,
    };
    Some(role as i32)
}

/// The contract's number of a role.
pub fn role_proto(role: Role) -> i32 {
    role_number(role.as_str()).unwrap_or_default()
}

/// Microseconds since the epoch, as instants are stored.
pub fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

/// The instant of stored microseconds.
pub fn instant(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The instant of optional stored microseconds.
pub fn opt_instant(us: Option<i64>) -> Option<Timestamp> {
    us.map(instant)
}

/// Now, in stored microseconds.
pub fn now_micros() -> i64 {
    micros(Timestamp::now())
}

/// An instant from the wire, cut to whole microseconds (what the database keeps), so that a call
/// answers with exactly the instant it stored; `None` if out of range.
pub fn from_wire(value: &prost_types::Timestamp) -> Option<Timestamp> {
    let nanos = value.nanos - value.nanos.rem_euclid(1_000);
    Timestamp::new(value.seconds, nanos).ok()
}

/// An instant on the wire.
pub fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

/// An optional instant on the wire.
pub fn opt_timestamp(at: Option<Timestamp>) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

/// A JSON column's text.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// A JSON column's value; `None` when absent or unreadable.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Part, identity::Identity};

    #[test]
    fn actors_and_instants_round_trip() {
        let nurse = Caller::Person(Identity {
            subject: "nurse-claire".into(),
            roles: vec![Role::Nurse],
            org: "cds-gueret".into(),
            specialty: None,
            cert_thumbprint: String::new(),
        });
        let record = ActorRecord::of(&nurse);
        assert_eq!(record.to_proto().roles, vec![pb::Role::Nurse as i32]);
        assert_eq!(record.to_proto().org_id, "cds-gueret");
        let service = ActorRecord::of(&Caller::Service(Part::Wound)).to_proto();
        assert_eq!(
            (service.subject.as_str(), service.service.as_str()),
            ("", "wound")
        );
        // Stored before `service` existed: still readable.
        let old: ActorRecord =
            serde_json::from_str(r#"{"subject":"dr-a","roles":["doctor"],"org_id":"c"}"#)
                .expect("json");
        assert_eq!(old.service, "");
        let at = Timestamp::from_microsecond(1_764_000_000_123_456).expect("instant");
        assert_eq!(instant(micros(at)), at);
        assert_eq!(timestamp(at).nanos, 123_456_000);
        let precise = prost_types::Timestamp {
            seconds: at.as_second(),
            nanos: 123_456_789,
        };
        assert_eq!(from_wire(&precise), Some(at), "cut to what is stored");
        let bad = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(from_wire(&bad), None);
    }
}
