//! The register's messages: from the wire to validated values and back.

use jiff::civil::Date;
use telehealth_kit::{
    ids::pseudonym,
    record::{opt_timestamp, timestamp},
};
use telehealth_proto::v1 as pb;

use super::{
    core::MAX_CARE_TEAM,
    ins::{Ins, InsKind},
    model::{
        Address, Consent, ConsentAct, ConsentInput, Contact, Decision, GeneralPractitioner,
        IdentityStatus, IdentityTraits, Method, Patient, PatientInput, Proof, Sex,
    },
    names::search_form,
};
use crate::{
    convert::{rpps, subject},
    error::DirectoryError,
};

type Result<T> = std::result::Result<T, DirectoryError>;

/// Longest name or first names.
const MAX_NAME_CHARS: usize = 100;
/// Longest free-text note.
const MAX_NOTE_CHARS: usize = 500;

fn invalid(field: &'static str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError::invalid(field, reason)
}

/// A patient id (the pseudonym rule of `PatientRef`).
pub fn patient_id(field: &'static str, value: &str) -> Result<String> {
    Ok(pseudonym(field, value)?)
}

/// Free text of at most `max` characters with no control character except newlines.
fn text(field: &'static str, value: &str, min: usize, max: usize) -> Result<String> {
    let value = value.trim();
    let count = value.chars().count();
    if count < min || count > max {
        return Err(invalid(field, format!("must be {min} to {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "must not hold control characters"));
    }
    Ok(value.to_owned())
}

/// A name: letters (any script), spaces, hyphens and apostrophes.
fn name(field: &'static str, value: &str, required: bool) -> Result<String> {
    let value = text(field, value, usize::from(required), MAX_NAME_CHARS)?;
    if !value
        .chars()
        .all(|c| c.is_alphabetic() || " -'’.".contains(c))
    {
        return Err(invalid(
            field,
            "only letters, spaces, hyphens and apostrophes",
        ));
    }
    if required && search_form(&value).is_empty() {
        return Err(invalid(field, "must hold letters"));
    }
    Ok(value)
}

/// A civil date `YYYY-MM-DD`, not after `today`.
pub fn date(field: &'static str, value: &str, today: Date) -> Result<Date> {
    let date: Date = value
        .parse()
        .map_err(|_| invalid(field, "must be a date YYYY-MM-DD"))?;
    if date > today || date.year() < 1880 {
        return Err(invalid(field, "must be between 1880 and today"));
    }
    Ok(date)
}

fn sex(value: i32) -> Result<Sex> {
    match pb::Sex::try_from(value) {
        Ok(pb::Sex::Male) => Ok(Sex::Male),
        Ok(pb::Sex::Female) => Ok(Sex::Female),
        Ok(pb::Sex::Other) => Ok(Sex::Other),
        Ok(pb::Sex::Unknown) => Ok(Sex::Unknown),
        _ => Err(invalid("identity.sex", "is required")),
    }
}

fn sex_proto(sex: Sex) -> i32 {
    match sex {
        Sex::Male => pb::Sex::Male,
        Sex::Female => pb::Sex::Female,
        Sex::Other => pb::Sex::Other,
        Sex::Unknown => pb::Sex::Unknown,
    }
    .into()
}

/// Identity traits, validated.
pub fn identity(traits: Option<&pb::IdentityTraits>, today: Date) -> Result<IdentityTraits> {
    let traits = traits.ok_or_else(|| invalid("identity", "is required"))?;
    let first_names = name("identity.first_names", &traits.first_names, true)?;
    let used_first_name = match name("identity.used_first_name", &traits.used_first_name, false)? {
        empty if empty.is_empty() => first_names
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        given => given,
    };
    let birth_place_code = traits.birth_place_code.trim().to_ascii_uppercase();
    let place_ok = birth_place_code.is_empty()
        || (birth_place_code.len() == 5
            && birth_place_code
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || (i == 1 && matches!(c, 'A' | 'B'))));
    if !place_ok {
        return Err(invalid(
            "identity.birth_place_code",
            "must be a 5-character INSEE code (2A/2B in Corsica, 99xxx abroad) or empty",
        ));
    }
    Ok(IdentityTraits {
        birth_name: name("identity.birth_name", &traits.birth_name, true)?,
        first_names,
        used_first_name,
        used_name: name("identity.used_name", &traits.used_name, false)?,
        sex: sex(traits.sex)?,
        birth_date: date("identity.birth_date", &traits.birth_date, today)?,
        birth_place_code,
    })
}

/// An INS, checked by its key; `None` when unset or empty.
pub fn ins(value: Option<&pb::Ins>) -> Result<Option<Ins>> {
    let Some(value) = value.filter(|i| !i.number.trim().is_empty()) else {
        return Ok(None);
    };
    let kind = match pb::InsKind::try_from(value.kind) {
        Ok(pb::InsKind::Nir) => InsKind::Nir,
        Ok(pb::InsKind::Nia) => InsKind::Nia,
        _ => return Err(invalid("ins.kind", "is required (NIR or NIA)")),
    };
    Ins::parse(&value.number, kind, value.test)
        .map(Some)
        .map_err(|e| invalid("ins.number", e.to_string()))
}

/// The search form of an INS (spaces removed, capitals), or a refusal saying what is wrong.
pub fn ins_number(value: &str) -> Result<String> {
    Ins::parse(value, InsKind::Nir, false)
        .map(|i| i.number)
        .map_err(|e| invalid("ins", e.to_string()))
}

pub fn contact(value: Option<&pb::Contact>) -> Result<Contact> {
    let Some(value) = value else {
        return Ok(Contact::default());
    };
    let phone = text("contact.phone", &value.phone, 0, 32)?;
    if !phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +.-".contains(c))
    {
        return Err(invalid("contact.phone", "only digits, spaces, + . -"));
    }
    let email = text("contact.email", &value.email, 0, 254)?;
    if !email.is_empty() && email.matches('@').count() != 1 {
        return Err(invalid("contact.email", "must hold one @"));
    }
    Ok(Contact { phone, email })
}

pub fn address(value: Option<&pb::Address>) -> Result<Option<Address>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.lines.is_empty() || value.lines.len() > 3 {
        return Err(invalid("address.lines", "must hold 1 to 3 lines"));
    }
    let lines = value
        .lines
        .iter()
        .map(|l| text("address.lines", l, 1, 100))
        .collect::<Result<Vec<_>>>()?;
    let country = match value.country.trim() {
        "" => "FR".to_owned(),
        c if c.len() == 2 && c.chars().all(|c| c.is_ascii_alphabetic()) => c.to_ascii_uppercase(),
        _ => {
            return Err(invalid(
                "address.country",
                "must be an ISO 3166-1 alpha-2 code",
            ));
        }
    };
    let postal_code = text("address.postal_code", &value.postal_code, 1, 10)?;
    if country == "FR"
        && !(postal_code.len() == 5 && postal_code.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(invalid(
            "address.postal_code",
            "a French postal code has 5 digits",
        ));
    }
    Ok(Some(Address {
        lines,
        postal_code,
        city: text("address.city", &value.city, 1, 100)?,
        country,
        access_note: text("address.access_note", &value.access_note, 0, MAX_NOTE_CHARS)?,
    }))
}

pub fn gp(value: Option<&pb::GeneralPractitioner>) -> Result<Option<GeneralPractitioner>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let rpps = if value.rpps_number.trim().is_empty() {
        String::new()
    } else {
        rpps("gp.rpps_number", &value.rpps_number)?
    };
    let mssante_address = text("gp.mssante_address", &value.mssante_address, 0, 254)?;
    if !mssante_address.is_empty() && mssante_address.matches('@').count() != 1 {
        return Err(invalid("gp.mssante_address", "must hold one @"));
    }
    Ok(Some(GeneralPractitioner {
        name: text("gp.display_name", &value.display_name, 0, 200)?,
        rpps,
        mssante_address,
    }))
}

pub fn care_team(values: &[String]) -> Result<Vec<String>> {
    if values.len() > MAX_CARE_TEAM {
        return Err(invalid(
            "care_team",
            format!("at most {MAX_CARE_TEAM} members"),
        ));
    }
    let mut team: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let member = subject("care_team", value)?;
        if !team.contains(&member) {
            team.push(member);
        }
    }
    Ok(team)
}

/// A `CreatePatient` request, validated.
pub fn patient_input(request: &pb::CreatePatientRequest, today: Date) -> Result<PatientInput> {
    Ok(PatientInput {
        identity: identity(request.identity.as_ref(), today)?,
        ins: ins(request.ins.as_ref())?,
        contact: contact(request.contact.as_ref())?,
        address: address(request.address.as_ref())?,
        gp: gp(request.gp.as_ref())?,
        care_team: care_team(&request.care_team)?,
    })
}

pub fn status(field: &'static str, value: i32) -> Result<IdentityStatus> {
    match pb::IdentityStatus::try_from(value) {
        Ok(pb::IdentityStatus::Provisional) => Ok(IdentityStatus::Provisional),
        Ok(pb::IdentityStatus::Recovered) => Ok(IdentityStatus::Recovered),
        Ok(pb::IdentityStatus::Validated) => Ok(IdentityStatus::Validated),
        Ok(pb::IdentityStatus::Qualified) => Ok(IdentityStatus::Qualified),
        _ => Err(invalid(field, "is required")),
    }
}

fn status_proto(status: IdentityStatus) -> i32 {
    match status {
        IdentityStatus::Provisional => pb::IdentityStatus::Provisional,
        IdentityStatus::Recovered => pb::IdentityStatus::Recovered,
        IdentityStatus::Validated => pb::IdentityStatus::Validated,
        IdentityStatus::Qualified => pb::IdentityStatus::Qualified,
    }
    .into()
}

pub fn proof(value: i32) -> Result<Proof> {
    match pb::IdentityProof::try_from(value) {
        Ok(pb::IdentityProof::InsiTeleservice) => Ok(Proof::InsiTeleservice),
        Ok(pb::IdentityProof::IdentityCard) => Ok(Proof::IdentityCard),
        Ok(pb::IdentityProof::Passport) => Ok(Proof::Passport),
        Ok(pb::IdentityProof::ResidencePermit) => Ok(Proof::ResidencePermit),
        Ok(pb::IdentityProof::BirthCertificate) => Ok(Proof::BirthCertificate),
        Ok(pb::IdentityProof::Doubt) => Ok(Proof::Doubt),
        _ => Err(invalid("proof", "is required")),
    }
}

fn proof_proto(proof: Proof) -> i32 {
    match proof {
        Proof::InsiTeleservice => pb::IdentityProof::InsiTeleservice,
        Proof::IdentityCard => pb::IdentityProof::IdentityCard,
        Proof::Passport => pb::IdentityProof::Passport,
        Proof::ResidencePermit => pb::IdentityProof::ResidencePermit,
        Proof::BirthCertificate => pb::IdentityProof::BirthCertificate,
        Proof::Doubt => pb::IdentityProof::Doubt,
    }
    .into()
}

pub fn note(field: &'static str, value: &str) -> Result<String> {
    text(field, value, 0, MAX_NOTE_CHARS)
}

pub fn act(value: i32) -> Result<ConsentAct> {
    match pb::ConsentAct::try_from(value) {
        Ok(pb::ConsentAct::Teleconsultation) => Ok(ConsentAct::Teleconsultation),
        Ok(pb::ConsentAct::TeleExpertise) => Ok(ConsentAct::TeleExpertise),
        Ok(pb::ConsentAct::WoundMonitoring) => Ok(ConsentAct::WoundMonitoring),
        Ok(pb::ConsentAct::Sharing) => Ok(ConsentAct::Sharing),
        _ => Err(invalid("act", "is required")),
    }
}

fn act_proto(act: ConsentAct) -> i32 {
    match act {
        ConsentAct::Teleconsultation => pb::ConsentAct::Teleconsultation,
        ConsentAct::TeleExpertise => pb::ConsentAct::TeleExpertise,
        ConsentAct::WoundMonitoring => pb::ConsentAct::WoundMonitoring,
        ConsentAct::Sharing => pb::ConsentAct::Sharing,
    }
    .into()
}

/// The organisation an act concerns: required for sharing, empty otherwise.
pub fn target_org(act: ConsentAct, value: &str) -> Result<String> {
    match (act, value.is_empty()) {
        (ConsentAct::Sharing, true) => Err(invalid(
            "target_org_id",
            "name the organisation the patient agrees to share with",
        )),
        (ConsentAct::Sharing, false) => subject("target_org_id", value),
        (_, true) => Ok(String::new()),
        (_, false) => Err(invalid("target_org_id", "only for CONSENT_ACT_SHARING")),
    }
}

/// A `RecordConsent` request, validated.
pub fn consent_input(request: &pb::RecordConsentRequest) -> Result<ConsentInput> {
    let act = act(request.act)?;
    let decision = match pb::ConsentDecision::try_from(request.decision) {
        Ok(pb::ConsentDecision::Given) => Decision::Given,
        Ok(pb::ConsentDecision::Refused) => Decision::Refused,
        _ => return Err(invalid("decision", "is required (given or refused)")),
    };
    let method = match pb::ConsentMethod::try_from(request.method) {
        Ok(pb::ConsentMethod::Oral) => Method::Oral,
        Ok(pb::ConsentMethod::Written) => Method::Written,
        Ok(pb::ConsentMethod::ScannedDocument) => Method::ScannedDocument,
        _ => {
            return Err(invalid(
                "method",
                "is required (oral, written or scanned document)",
            ));
        }
    };
    let document_ref = text("document_ref", &request.document_ref, 0, 200)?;
    if method == Method::ScannedDocument && document_ref.is_empty() {
        return Err(invalid(
            "document_ref",
            "name the scanned document (e.g. its image id)",
        ));
    }
    Ok(ConsentInput {
        act,
        target_org_id: target_org(act, &request.target_org_id)?,
        decision,
        method,
        document_ref,
        note: note("note", &request.note)?,
    })
}

pub fn patient(patient: &Patient) -> pb::Patient {
    let traits = &patient.identity;
    pb::Patient {
        id: patient.id.clone(),
        org_id: patient.org_id.clone(),
        identity: Some(pb::IdentityTraits {
            birth_name: traits.birth_name.clone(),
            first_names: traits.first_names.clone(),
            used_first_name: traits.used_first_name.clone(),
            used_name: traits.used_name.clone(),
            sex: sex_proto(traits.sex),
            birth_date: traits.birth_date.to_string(),
            birth_place_code: traits.birth_place_code.clone(),
        }),
        ins: patient.ins.as_ref().map(|ins| pb::Ins {
            number: ins.number.clone(),
            kind: match ins.kind {
                InsKind::Nir => pb::InsKind::Nir,
                InsKind::Nia => pb::InsKind::Nia,
            }
            .into(),
            test: ins.test,
            oid: ins.oid().to_owned(),
        }),
        identity_status: status_proto(patient.status),
        contact: Some(pb::Contact {
            phone: patient.contact.phone.clone(),
            email: patient.contact.email.clone(),
        }),
        address: patient.address.as_ref().map(|a| pb::Address {
            lines: a.lines.clone(),
            postal_code: a.postal_code.clone(),
            city: a.city.clone(),
            country: a.country.clone(),
            access_note: a.access_note.clone(),
        }),
        gp: patient.gp.as_ref().map(|gp| pb::GeneralPractitioner {
            is_requester: false,
            display_name: gp.name.clone(),
            rpps_number: gp.rpps.clone(),
            mssante_address: gp.mssante_address.clone(),
        }),
        care_team: patient.care_team.clone(),
        objects_to_sharing: patient.objects_to_sharing,
        merged_ids: patient.merged_ids.clone(),
        created_time: Some(timestamp(patient.created)),
        version: patient.version,
        status_history: patient
            .history
            .iter()
            .map(|change| pb::IdentityStatusChange {
                from_status: status_proto(change.from),
                to_status: status_proto(change.to),
                proof: proof_proto(change.proof),
                note: change.note.clone(),
                changed_by: Some(change.by.to_proto()),
                change_time: Some(timestamp(change.at)),
            })
            .collect(),
    }
}

pub fn summary(patient: &Patient) -> pb::PatientSummary {
    pb::PatientSummary {
        id: patient.id.clone(),
        org_id: patient.org_id.clone(),
        birth_name: patient.identity.birth_name.clone(),
        used_name: patient.identity.used_name.clone(),
        first_names: patient.identity.first_names.clone(),
        birth_date: patient.identity.birth_date.to_string(),
        sex: sex_proto(patient.identity.sex),
        identity_status: status_proto(patient.status),
    }
}

pub fn consent(consent: &Consent) -> pb::Consent {
    pb::Consent {
        id: consent.id.clone(),
        patient_id: consent.patient_id.clone(),
        act: act_proto(consent.act),
        target_org_id: consent.target_org_id.clone(),
        decision: match consent.decision {
            Decision::Given => pb::ConsentDecision::Given,
            Decision::Refused => pb::ConsentDecision::Refused,
        }
        .into(),
        method: match consent.method {
            Method::Oral => pb::ConsentMethod::Oral,
            Method::Written => pb::ConsentMethod::Written,
            Method::ScannedDocument => pb::ConsentMethod::ScannedDocument,
        }
        .into(),
        document_ref: consent.document_ref.clone(),
        note: consent.note.clone(),
        recorded_by: Some(consent.recorded_by.to_proto()),
        recorded_time: Some(timestamp(consent.recorded)),
        withdrawn_time: opt_timestamp(consent.withdrawn),
        withdrawn_by: consent.withdrawn_by.as_ref().map(|a| a.to_proto()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpps_numbers_are_checked_by_their_luhn_key() {
        assert!(rpps("rpps", "10003009015").is_ok(), "a valid RPPS");
        let error = rpps("rpps", "10003009018")
            .expect_err("wrong key")
            .to_string();
        assert!(error.contains("Luhn"), "{error}");
        assert!(rpps("rpps", "1000300901").is_err(), "10 digits");
        assert!(rpps("rpps", "1000300901A").is_err(), "a letter");
    }
}
