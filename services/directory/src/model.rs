//! A membership and who may see or change it; a partnership; an organisation's record.

use jiff::Timestamp;
use telehealth_kit::identity::Role;

/// Where a membership comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The person's own verified token.
    Token,
    /// An administrator of the organisation.
    Administrator,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Token => "token",
            Source::Administrator => "administrator",
        }
    }

    /// From the stored name (anything else reads as an administrator's record).
    pub fn parse(text: &str) -> Source {
        if text == "token" {
            Source::Token
        } else {
            Source::Administrator
        }
    }
}

/// A person's membership of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub org_id: String,
    pub subject: String,
    pub roles: Vec<Role>,
    pub specialty: Option<String>,
    pub since: Timestamp,
    pub until: Option<Timestamp>,
    pub source: Source,
    pub version: i64,
    /// RPPS number, Luhn key checked.
    pub rpps: Option<String>,
    /// Profession (`physician`, `nurse`, `other`).
    pub profession: Option<String>,
}

impl Member {
    /// True when the membership is in force at `now`.
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.since <= now && self.until.is_none_or(|until| now < until)
    }

    /// True when the membership was ended by its end date (rather than not started yet).
    pub fn ended_at(&self, now: Timestamp) -> bool {
        self.until.is_some_and(|until| until <= now)
    }
}

/// A membership as an administrator writes it, validated.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub subject: String,
    pub roles: Vec<Role>,
    pub specialty: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub expected_version: i64,
    pub rpps: Option<String>,
    pub profession: Option<String>,
}

/// Where a partnership stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnershipStatus {
    Proposed,
    Active,
    Ended,
}

/// A partnership as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partnership {
    pub centre: String,
    pub hospital: String,
    pub proposed_by: String,
    pub proposed: Timestamp,
    pub accepted_by: Option<String>,
    pub accepted: Option<Timestamp>,
    pub ended_by: Option<String>,
    pub ended: Option<Timestamp>,
}

impl Partnership {
    pub fn status(&self) -> PartnershipStatus {
        match (self.accepted, self.ended) {
            (_, Some(_)) => PartnershipStatus::Ended,
            (Some(_), None) => PartnershipStatus::Active,
            (None, None) => PartnershipStatus::Proposed,
        }
    }
}

/// An organisation's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub org_id: String,
    pub display_name: String,
    /// `health_centre` or `hospital`.
    pub kind: String,
    pub finess: String,
    pub updated: Timestamp,
    pub version: i64,
}

/// An organisation as its administrator writes it, validated.
#[derive(Debug, Clone)]
pub struct OrganisationInput {
    pub display_name: String,
    pub kind: String,
    pub finess: String,
    pub expected_version: i64,
}
