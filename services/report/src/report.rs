//! What a tele-expertise report says, as plain values: the caller (the expertise service) fills
//! them from its records, so this crate needs neither the database nor the protobuf contract.

use jiff::Timestamp;
use jiff::civil::Date;

/// One tele-expertise, requested by a centre's professional and answered by an expert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpertiseReport {
    /// The suite's reference of the request, printed so that the report can be traced back.
    pub reference: String,
    /// Who asked (the centre's doctor, nurse, midwife…).
    pub requester: Professional,
    /// Who answered (the hospital specialist).
    pub expert: Professional,
    pub patient: Patient,
    /// The requester's question, free text (paragraphs separated by new lines).
    pub question: String,
    /// When the question was sent.
    pub asked_at: Timestamp,
    pub answer: Answer,
    /// Small previews of the images the expert looked at, already made by the image pipeline.
    pub thumbnails: Vec<Thumbnail>,
    pub act: Act,
}

/// A health professional taking part in the act (article R6316-4, 3°).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Professional {
    /// Display name, e.g. "Dr Hélène Lefèvre".
    pub name: String,
    /// The 11-digit RPPS number of the national directory of health professionals.
    pub rpps: String,
    /// The specialty ("Dermatologie"); `None` for a general practitioner or a nurse when not
    /// useful to print.
    pub specialty: Option<String>,
    /// The centre or hospital (and department) the professional acted for.
    pub organisation: String,
}

/// The patient's identity as the identity register holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    /// Birth name (nom de naissance), a strict identity trait.
    pub birth_name: String,
    /// Birth first names in civil-status order (prénoms de naissance).
    pub first_names: String,
    /// Used name (nom utilisé), printed only when it differs from the birth name.
    pub used_name: Option<String>,
    /// Used first name (prénom utilisé), printed only when given.
    pub used_first_name: Option<String>,
    pub birth_date: Date,
    pub sex: Sex,
    pub identity_status: IdentityStatus,
    /// The INS as the register holds it. It is printed **only** when the identity is qualified:
    /// an INS that was not verified must not be shared (national identity-vigilance rules).
    pub ins: Option<Ins>,
}

/// Administrative sex of the INS traits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
    /// Indeterminate (INS "I").
    Indeterminate,
}

/// The four identity statuses of the national identity-vigilance reference (RNIV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityStatus {
    /// Not checked against an identity document nor the INSi service.
    Provisional,
    /// The INS was fetched from the INSi service, but no identity document was checked.
    Recovered,
    /// An identity document was checked, the INS was not (or could not be) fetched.
    Validated,
    /// Both: a document was checked and the INS verified with INSi. Only then is the INS used.
    Qualified,
}

/// The national health identifier (identifiant national de santé).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ins {
    /// The INS matricule: 15 characters (NIR or NIA with its key).
    pub number: String,
    /// The OID of the assigning authority (INS-NIR `1.2.250.1.213.1.4.8`, INS-NIA `…4.9`,
    /// test identities `…4.10` / `…4.11`).
    pub oid: String,
}

/// The expert's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The conclusion in a sentence or two, printed first.
    pub conclusion: String,
    /// What the expert saw (free text).
    pub findings: String,
    /// What the expert recommends (free text; may be empty).
    pub recommendations: String,
    /// Whether the patient should be seen in consultation by the expert or another specialist.
    pub consultation_needed: bool,
    pub urgency: Urgency,
}

/// How soon the requester should act on the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// No particular delay.
    Routine,
    /// Within days (a consultation to book soon).
    Soon,
    /// Now (the patient should be sent to care today).
    Urgent,
}

/// An image preview: a small baseline JPEG made by the image pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Printed under the image ("Lésion dorsale, dermatoscopie, 2 déc.").
    pub caption: String,
    /// JPEG bytes. Anything else is skipped with a note in the report.
    pub jpeg: Vec<u8>,
}

/// The telemedicine act, with what article R6316-4 requires to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    /// The act code of the nomenclature, e.g. "TE2" (tele-expertise by the expert).
    pub code: String,
    /// When the answer was given: the date and time of the act (R6316-4, 4°).
    pub answered_at: Timestamp,
    /// Acts and prescriptions made within the act (R6316-4, 2°), one per item; none is printed
    /// as "aucune prescription".
    pub prescriptions: Vec<String>,
    /// Technical incidents during the act (R6316-4, 5°), one per item; none is printed as
    /// "aucun".
    pub technical_incidents: Vec<String>,
}
