//! Patient, Consent, Practitioner, PractitionerRole and Organization: reads and searches made
//! of the register's and the directory's RPCs.

use serde_json::Value;
use telehealth_proto::v1 as pb;

use super::{
    Page,
    calls::Calls,
    outcome::FhirError,
    query::{self, Query},
};

const PATIENTS: &str = "/telehealth.v1.PatientService/";
const DIRECTORY: &str = "/telehealth.v1.DirectoryService/";

pub async fn read_patient(calls: &Calls, id: &str) -> Result<Value, FhirError> {
    let answer: pb::GetPatientResponse = calls
        .unary(
            &format!("{PATIENTS}GetPatient"),
            &pb::GetPatientRequest {
                patient_id: id.to_owned(),
            },
        )
        .await?;
    let patient = answer.patient.ok_or_else(missing)?;
    Ok(telehealth_fhir::patient(&patient))
}

/// `identifier` (the INS, with or without its OID system), or `name`/`family` with an optional
/// `birthdate`. The register answers one page (its best matches), so there is no `next` link.
pub async fn search_patients(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let identifier = query.take("identifier")?;
    let name = match (query.take("name")?, query.take("family")?) {
        (Some(_), Some(_)) => {
            return Err(FhirError::Invalid(
                "Donnez name ou family, pas les deux.".into(),
            ));
        }
        (name, family) => name.or(family),
    };
    let birth_date = query.take("birthdate")?;
    let count = query.count;
    query.finish("Patient")?;
    let ins = identifier
        .as_deref()
        .map(|value| query::token(value).1.to_owned());
    if ins.is_none() && name.is_none() {
        return Err(FhirError::Invalid(
            "Recherche de patient : identifier (INS) ou name/family (et birthdate).".into(),
        ));
    }
    let found: pb::SearchPatientsResponse = calls
        .unary(
            &format!("{PATIENTS}SearchPatients"),
            &pb::SearchPatientsRequest {
                name: name.unwrap_or_default(),
                birth_date: birth_date.unwrap_or_default(),
                ins: ins.unwrap_or_default(),
                page_size: count,
            },
        )
        .await?;
    // Each found patient is read, so that a search shows what a read shows (the INS of a
    // qualified identity included).
    let mut resources = Vec::with_capacity(found.patients.len());
    for summary in &found.patients {
        resources.push(read_patient(calls, &summary.id).await?);
    }
    Ok(Page::last(resources))
}

/// `patient` (required): the patient's recorded consents.
pub async fn search_consents(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let patient = query
        .take("patient")?
        .ok_or_else(|| FhirError::Invalid("Recherche de consentements : patient requis.".into()))?;
    query.finish("Consent")?;
    let patient_id = query::reference_id(&patient, "Patient", "patient")?;
    let answer: pb::ListConsentsResponse = calls
        .unary(
            &format!("{PATIENTS}ListConsents"),
            &pb::ListConsentsRequest { patient_id },
        )
        .await?;
    Ok(Page::last(
        answer
            .consents
            .iter()
            .map(telehealth_fhir::consent)
            .collect(),
    ))
}

async fn member(calls: &Calls, subject: &str) -> Result<pb::Member, FhirError> {
    let answer: pb::GetMemberResponse = calls
        .unary(
            &format!("{DIRECTORY}GetMember"),
            &pb::GetMemberRequest {
                subject: subject.to_owned(),
            },
        )
        .await?;
    answer.member.ok_or_else(missing)
}

pub async fn read_practitioner(calls: &Calls, subject: &str) -> Result<Value, FhirError> {
    Ok(telehealth_fhir::practitioner(
        &member(calls, subject).await?,
    ))
}

/// A membership of the caller's organisation (`<org>.<subject>`).
pub async fn read_practitioner_role(calls: &Calls, id: &str) -> Result<Value, FhirError> {
    let not_found = || FhirError::Call(tonic::Status::not_found("no such membership"));
    let (org, subject) = id.split_once('.').ok_or_else(not_found)?;
    let member = member(calls, subject).await?;
    if member.org_id != org {
        return Err(not_found());
    }
    Ok(telehealth_fhir::practitioner_role(&member))
}

pub async fn read_organization(calls: &Calls, id: &str) -> Result<Value, FhirError> {
    let answer: pb::GetOrganisationResponse = calls
        .unary(
            &format!("{DIRECTORY}GetOrganisation"),
            &pb::GetOrganisationRequest {
                org_id: id.to_owned(),
            },
        )
        .await?;
    Ok(telehealth_fhir::organization(
        &answer.organisation.ok_or_else(missing)?,
    ))
}

/// An answer without the record it must hold: the service misbehaved.
pub fn missing() -> FhirError {
    FhirError::Call(tonic::Status::internal(
        "the service answered without the record",
    ))
}
