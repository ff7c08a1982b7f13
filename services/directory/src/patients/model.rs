//! A patient, their identity status and their consents, as the register's core handles them
//! (plaintext: the store only ever sees them sealed).

use jiff::{Timestamp, civil::Date};
use serde::{Deserialize, Serialize};
use telehealth_kit::record::ActorRecord;

use super::ins::Ins;

/// Administrative sex (FHIR `AdministrativeGender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
    Other,
    Unknown,
}

/// The identity traits of the national identity reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityTraits {
    pub birth_name: String,
    pub first_names: String,
    pub used_first_name: String,
    pub used_name: String,
    pub sex: Sex,
    pub birth_date: Date,
    pub birth_place_code: String,
}

/// Identity status under the national identity-vigilance rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityStatus {
    Provisional,
    Recovered,
    Validated,
    Qualified,
}

impl IdentityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityStatus::Provisional => "provisional",
            IdentityStatus::Recovered => "recovered",
            IdentityStatus::Validated => "validated",
            IdentityStatus::Qualified => "qualified",
        }
    }

    /// From the stored name (anything unknown reads as provisional: the safe side).
    pub fn parse(text: &str) -> IdentityStatus {
        match text {
            "recovered" => IdentityStatus::Recovered,
            "validated" => IdentityStatus::Validated,
            "qualified" => IdentityStatus::Qualified,
            _ => IdentityStatus::Provisional,
        }
    }
}

/// The proof a status change rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    InsiTeleservice,
    IdentityCard,
    Passport,
    ResidencePermit,
    BirthCertificate,
    Doubt,
}

impl Proof {
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::InsiTeleservice => "insi_teleservice",
            Proof::IdentityCard => "identity_card",
            Proof::Passport => "passport",
            Proof::ResidencePermit => "residence_permit",
            Proof::BirthCertificate => "birth_certificate",
            Proof::Doubt => "doubt",
        }
    }

    pub fn parse(text: &str) -> Option<Proof> {
        [
            Proof::InsiTeleservice,
            Proof::IdentityCard,
            Proof::Passport,
            Proof::ResidencePermit,
            Proof::BirthCertificate,
            Proof::Doubt,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// A high-trust identity document of the identity-vigilance rules.
    pub fn is_identity_document(self) -> bool {
        matches!(
            self,
            Proof::IdentityCard
                | Proof::Passport
                | Proof::ResidencePermit
                | Proof::BirthCertificate
        )
    }
}

/// Why a status change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRefused(pub &'static str);

/// Whether the identity-vigilance rules allow going from `from` to `to` on `proof`, for a
/// record that has (`has_ins`) or lacks an INS.
pub fn check_transition(
    from: IdentityStatus,
    to: IdentityStatus,
    proof: Proof,
    has_ins: bool,
) -> Result<(), TransitionRefused> {
    use IdentityStatus::*;
    match to {
        Provisional => Ok(()),
        Recovered | Qualified if !has_ins => Err(TransitionRefused(
            "record the INS first: a recovered or qualified identity has one",
        )),
        Recovered if proof == Proof::InsiTeleservice => Ok(()),
        Recovered => Err(TransitionRefused(
            "an identity is recovered on an answer of the INSi teleservice (proof INSI_TELESERVICE)",
        )),
        Validated if proof.is_identity_document() => Ok(()),
        Validated => Err(TransitionRefused(
            "an identity is validated on a high-trust document: identity card, passport, residence permit, or birth certificate for a minor",
        )),
        Qualified => match from {
            Qualified => Ok(()),
            Recovered if proof.is_identity_document() => Ok(()),
            Validated if proof == Proof::InsiTeleservice => Ok(()),
            Recovered => Err(TransitionRefused(
                "a recovered identity is qualified on a high-trust identity document",
            )),
            Validated => Err(TransitionRefused(
                "a validated identity is qualified on an answer of the INSi teleservice",
            )),
            Provisional => Err(TransitionRefused(
                "a provisional identity is first recovered (INSi) or validated (document), then qualified",
            )),
        },
    }
}

/// A home address.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Address {
    pub lines: Vec<String>,
    pub postal_code: String,
    pub city: String,
    pub country: String,
    pub access_note: String,
}

/// How to reach the patient.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contact {
    pub phone: String,
    pub email: String,
}

/// The patient's médecin traitant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GeneralPractitioner {
    pub name: String,
    pub rpps: String,
    pub mssante_address: String,
}

/// One change of identity status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    pub from: IdentityStatus,
    pub to: IdentityStatus,
    pub proof: Proof,
    pub note: String,
    pub by: ActorRecord,
    pub at: Timestamp,
}

/// A patient of the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Patient {
    pub id: String,
    pub org_id: String,
    pub identity: IdentityTraits,
    pub ins: Option<Ins>,
    pub status: IdentityStatus,
    pub contact: Contact,
    pub address: Option<Address>,
    pub gp: Option<GeneralPractitioner>,
    pub care_team: Vec<String>,
    pub objects_to_sharing: bool,
    pub merged_ids: Vec<String>,
    pub created: Timestamp,
    pub version: i64,
    pub history: Vec<StatusChange>,
}

/// A patient as a caller registers or updates them, validated.
#[derive(Debug, Clone)]
pub struct PatientInput {
    pub identity: IdentityTraits,
    pub ins: Option<Ins>,
    pub contact: Contact,
    pub address: Option<Address>,
    pub gp: Option<GeneralPractitioner>,
    pub care_team: Vec<String>,
}

/// What an update replaces (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct PatientChanges {
    pub identity: Option<IdentityTraits>,
    pub ins: Option<Ins>,
    pub contact: Option<Contact>,
    pub address: Option<Address>,
    pub gp: Option<GeneralPractitioner>,
    pub care_team: Option<Vec<String>>,
    pub expected_version: i64,
}

/// Search criteria, each already in its indexed form.
#[derive(Debug, Clone, Default)]
pub struct SearchCriteria {
    pub name: Option<String>,
    pub birth_date: Option<Date>,
    pub ins: Option<String>,
}

/// A kind of act the patient consents to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAct {
    Teleconsultation,
    TeleExpertise,
    WoundMonitoring,
    Sharing,
}

impl ConsentAct {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentAct::Teleconsultation => "teleconsultation",
            ConsentAct::TeleExpertise => "tele_expertise",
            ConsentAct::WoundMonitoring => "wound_monitoring",
            ConsentAct::Sharing => "sharing",
        }
    }

    pub fn parse(text: &str) -> Option<ConsentAct> {
        [
            ConsentAct::Teleconsultation,
            ConsentAct::TeleExpertise,
            ConsentAct::WoundMonitoring,
            ConsentAct::Sharing,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }

    /// What a refusal asks the caller to record, in the words of the act.
    pub fn describe(self) -> &'static str {
        match self {
            ConsentAct::Teleconsultation => "a teleconsultation",
            ConsentAct::TeleExpertise => "a tele-expertise",
            ConsentAct::WoundMonitoring => "remote monitoring of wounds",
            ConsentAct::Sharing => "sharing the record with that organisation",
        }
    }
}

/// Given or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Given,
    Refused,
}

/// How the consent was collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Oral,
    Written,
    ScannedDocument,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Oral => "oral",
            Method::Written => "written",
            Method::ScannedDocument => "scanned_document",
        }
    }

    pub fn parse(text: &str) -> Method {
        match text {
            "written" => Method::Written,
            "scanned_document" => Method::ScannedDocument,
            _ => Method::Oral,
        }
    }
}

/// One consent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    pub id: String,
    pub patient_id: String,
    pub org_id: String,
    pub act: ConsentAct,
    pub target_org_id: String,
    pub decision: Decision,
    pub method: Method,
    pub document_ref: String,
    pub note: String,
    pub recorded_by: ActorRecord,
    pub recorded: Timestamp,
    pub withdrawn: Option<Timestamp>,
    pub withdrawn_by: Option<ActorRecord>,
}

/// A consent as a caller records it, validated.
#[derive(Debug, Clone)]
pub struct ConsentInput {
    pub act: ConsentAct,
    pub target_org_id: String,
    pub decision: Decision,
    pub method: Method,
    pub document_ref: String,
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use IdentityStatus::*;

    #[test]
    fn status_changes_follow_the_identity_vigilance_rules() {
        let cases = [
            (
                Provisional,
                Recovered,
                Proof::InsiTeleservice,
                true,
                true,
                "INSi answer",
            ),
            (
                Provisional,
                Recovered,
                Proof::Passport,
                true,
                false,
                "a document does not recover",
            ),
            (
                Provisional,
                Recovered,
                Proof::InsiTeleservice,
                false,
                false,
                "no INS",
            ),
            (
                Provisional,
                Validated,
                Proof::IdentityCard,
                false,
                true,
                "a document validates",
            ),
            (
                Provisional,
                Validated,
                Proof::InsiTeleservice,
                true,
                false,
                "INSi does not validate",
            ),
            (
                Provisional,
                Qualified,
                Proof::Passport,
                true,
                false,
                "not in one step",
            ),
            (
                Recovered,
                Qualified,
                Proof::Passport,
                true,
                true,
                "recovered + document",
            ),
            (
                Recovered,
                Qualified,
                Proof::InsiTeleservice,
                true,
                false,
                "recovered + INSi again",
            ),
            (
                Validated,
                Qualified,
                Proof::InsiTeleservice,
                true,
                true,
                "validated + INSi",
            ),
            (
                Validated,
                Qualified,
                Proof::InsiTeleservice,
                false,
                false,
                "validated, no INS",
            ),
            (
                Qualified,
                Provisional,
                Proof::Doubt,
                true,
                true,
                "a doubt downgrades",
            ),
        ];
        for (from, to, proof, has_ins, allowed, case) in cases {
            assert_eq!(
                check_transition(from, to, proof, has_ins).is_ok(),
                allowed,
                "{case}"
            );
        }
    }
}
