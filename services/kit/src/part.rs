//! The parts of the suite: the gateway and the six services.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// One deployable part of the suite; `telehealth serve <part>` runs one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Gateway,
    Scheduling,
    Expertise,
    Wound,
    Signalling,
    Directory,
    Auth,
}

impl Part {
    /// Every part, gateway first.
    pub const ALL: [Part; 7] = [
        Part::Gateway,
        Part::Scheduling,
        Part::Expertise,
        Part::Wound,
        Part::Signalling,
        Part::Directory,
        Part::Auth,
    ];

    /// The services behind the gateway.
    pub const SERVICES: [Part; 6] = [
        Part::Scheduling,
        Part::Expertise,
        Part::Wound,
        Part::Signalling,
        Part::Directory,
        Part::Auth,
    ];

    /// The other parts this part calls: the gateway forwards to every service; scheduling opens
    /// and closes signalling rooms and checks members and consents; signalling marks the waiting
    /// room; wound monitoring checks care teams and consents and asks tele-expertise about a
    /// wound; expertise checks consents and shares the patient with the hospital; sign-in maps a
    /// professional to their memberships. [`crate::serve::ServiceContext::channel_to`] refuses any
    /// other call, and the Kubernetes NetworkPolicies allow exactly these (a test holds
    /// `k8s/tests/check_manifests.py` to this list).
    pub fn calls(self) -> &'static [Part] {
        match self {
            Part::Gateway => &Part::SERVICES,
            Part::Scheduling => &[Part::Signalling, Part::Directory],
            Part::Signalling => &[Part::Scheduling],
            Part::Wound => &[Part::Directory, Part::Expertise],
            Part::Expertise => &[Part::Directory],
            Part::Directory => &[],
            Part::Auth => &[Part::Directory],
        }
    }

    /// Lowercase name, used in config keys, file names, certificate identities and logs.
    pub fn name(self) -> &'static str {
        match self {
            Part::Gateway => "gateway",
            Part::Scheduling => "scheduling",
            Part::Expertise => "expertise",
            Part::Wound => "wound",
            Part::Signalling => "signalling",
            Part::Directory => "directory",
            Part::Auth => "auth",
        }
    }

    /// The fully qualified gRPC service this part is named for (`None` for the gateway): the one
    /// its health and readiness report.
    pub fn grpc_service(self) -> Option<&'static str> {
        match self {
            Part::Gateway => None,
            Part::Scheduling => Some("telehealth.v1.SchedulingService"),
            Part::Expertise => Some("telehealth.v1.ExpertiseService"),
            Part::Wound => Some("telehealth.v1.WoundService"),
            Part::Signalling => Some("telehealth.v1.SignallingService"),
            Part::Directory => Some("telehealth.v1.DirectoryService"),
            Part::Auth => Some("telehealth.v1.AuthService"),
        }
    }

    /// Every gRPC service this part serves (the gateway routes each to this part): the directory
    /// also serves the patient register.
    pub fn grpc_services(self) -> &'static [&'static str] {
        match self {
            Part::Gateway => &[],
            Part::Scheduling => &["telehealth.v1.SchedulingService"],
            Part::Expertise => &["telehealth.v1.ExpertiseService"],
            Part::Wound => &["telehealth.v1.WoundService"],
            Part::Signalling => &["telehealth.v1.SignallingService"],
            Part::Directory => &[
                "telehealth.v1.DirectoryService",
                "telehealth.v1.PatientService",
            ],
            Part::Auth => &["telehealth.v1.AuthService"],
        }
    }

    /// The identity this part's internal certificate carries, as a URI SAN
    /// (`spiffe://telehealth.internal/<part>`). Services check it on every call.
    pub fn spiffe_id(self) -> String {
        format!("{}{}", SPIFFE_PREFIX, self.name())
    }
}

/// Prefix of the URI SAN that names a part in its internal certificate.
pub const SPIFFE_PREFIX: &str = "spiffe://telehealth.internal/";

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Part {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Part::ALL
            .into_iter()
            .find(|part| part.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown part `{s}`; expected one of gateway, scheduling, expertise, wound, signalling, directory, auth"
                )
            })
    }
}
