//! Wounds, assessment versions and alerts as the core handles them, and who may see or change a
//! wound.

use jiff::Timestamp;
use telehealth_kit::identity::{Identity, Role};

use crate::domain::{AlertCause, ClosureReason, Measurements, WoundDescription};

pub use telehealth_kit::record::ActorRecord;

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WoundStatus {
    Open,
    Closed,
}

impl WoundStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            WoundStatus::Open => "open",
            WoundStatus::Closed => "closed",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<WoundStatus> {
        match text {
            "open" => Some(WoundStatus::Open),
            "closed" => Some(WoundStatus::Closed),
            _ => None,
        }
    }
}

/// Who closed a wound, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    pub reason: ClosureReason,
    pub comment: String,
    pub by: ActorRecord,
    pub at: Timestamp,
}

/// The id of a wound.
pub type WoundId = telehealth_kit::ids::Id<Wound>;
/// Marks the ids of assessments ([`AssessmentId`]); each has versions.
pub enum Assessment {}
/// The id of an assessment (all its versions share it).
pub type AssessmentId = telehealth_kit::ids::Id<Assessment>;
/// The id of an alert.
pub type AlertId = telehealth_kit::ids::Id<Alert>;

/// A followed wound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wound {
    pub id: String,
    pub org_id: String,
    pub patient_pseudonym: String,
    pub description: WoundDescription,
    pub referring_doctor: String,
    /// Care-team nurses, sorted.
    pub nurses: Vec<String>,
    pub status: WoundStatus,
    pub closure: Option<Closure>,
    pub episode: i64,
    pub episode_started_at: Timestamp,
    pub baseline_assessment_id: Option<String>,
    pub last_assessment_id: Option<String>,
    pub last_assessed_at: Option<Timestamp>,
    /// `None` when closed.
    pub next_due_at: Option<Timestamp>,
    pub open_alert_count: i64,
    pub registered_at: Timestamp,
    pub registered_by: ActorRecord,
    pub updated_at: Timestamp,
    pub version: i64,
    /// The consent the follow-up was opened on (`None` for follow-ups older than consents).
    pub consent_id: Option<String>,
}

/// What a person may do with a wound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing: the wound is NOT_FOUND for them.
    None,
    /// A doctor of the wound's org: read only.
    Read,
    /// The referring doctor or a care-team nurse.
    Change,
}

impl Wound {
    /// What `identity` may do with this wound.
    pub fn access(&self, identity: &Identity) -> Access {
        if self.referring_doctor == identity.subject || self.in_care_team(&identity.subject) {
            Access::Change
        } else if identity.has_role(Role::Doctor) && identity.org == self.org_id {
            Access::Read
        } else {
            Access::None
        }
    }

    /// True when `subject` is a nurse of the care team.
    pub fn in_care_team(&self, subject: &str) -> bool {
        self.nurses.iter().any(|n| n == subject)
    }

    /// True when open and the next assessment is past due at `now`.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.status == WoundStatus::Open && self.next_due_at.is_some_and(|due| due < now)
    }
}

/// One version of an assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentVersion {
    pub assessment_id: String,
    pub version: i64,
    pub current: bool,
    pub wound_id: String,
    pub episode: i64,
    /// What was recorded; `photo_image_ids` are the photos attached up to this version.
    pub measurements: Measurements,
    pub recorded_at: Timestamp,
    pub recorded_by: ActorRecord,
    pub correction_reason: String,
}

/// Open or acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Open,
    Acknowledged,
}

impl AlertStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<AlertStatus> {
        match text {
            "open" => Some(AlertStatus::Open),
            "acknowledged" => Some(AlertStatus::Acknowledged),
            _ => None,
        }
    }
}

/// An acknowledgement of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub by: ActorRecord,
    pub at: Timestamp,
    pub comment: String,
}

/// An alert to the referring doctor.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub wound_id: String,
    pub patient_pseudonym: String,
    pub cause: AlertCause,
    pub status: AlertStatus,
    pub raised_at: Timestamp,
    pub recipient_doctor: String,
    pub assessment_id: String,
    pub compared_assessment_id: String,
    pub previous_value: Option<f64>,
    pub current_value: Option<f64>,
    pub threshold: Option<f64>,
    pub due_at: Option<Timestamp>,
    pub summary: String,
    pub acknowledgement: Option<Acknowledgement>,
}
