//! Appointment (scheduling) and Observation (wound assessments).

use serde_json::Value;
use telehealth_proto::v1 as pb;

use super::{
    Page,
    calls::Calls,
    outcome::FhirError,
    people::missing,
    query::{self, Query},
};

const SCHEDULING: &str = "/telehealth.v1.SchedulingService/";
const WOUNDS: &str = "/telehealth.v1.WoundService/";

pub async fn read_appointment(calls: &Calls, id: &str) -> Result<Value, FhirError> {
    let answer: pb::GetAppointmentResponse = calls
        .unary(
            &format!("{SCHEDULING}GetAppointment"),
            &pb::GetAppointmentRequest {
                appointment_id: id.to_owned(),
            },
        )
        .await?;
    Ok(telehealth_fhir::appointment(
        &answer.appointment.ok_or_else(missing)?,
    ))
}

/// `date` bounds (a Paris day or an instant, prefixes ge/gt/le/lt/eq), `practitioner` (the
/// doctor), `patient`; without `date`, the appointments not yet over.
pub async fn search_appointments(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let (start, end) = query::date_bounds(&query.take_all("date"))?;
    let doctor = query.take("practitioner")?;
    let patient = query.take("patient")?;
    let (count, cursor) = (query.count, std::mem::take(&mut query.cursor));
    query.finish("Appointment")?;
    let period = match (start, end) {
        (None, None) => None,
        (Some(start), Some(end)) if start < end => {
            let at = |t: jiff::Timestamp| prost_types::Timestamp {
                seconds: t.as_second(),
                nanos: 0,
            };
            Some(pb::list_appointments_request::Period::Range(
                pb::TimeRange {
                    start_time: Some(at(start)),
                    end_time: Some(at(end)),
                },
            ))
        }
        _ => {
            return Err(FhirError::Invalid(
                "date : donnez un début et une fin (ge… et lt…), le début avant la fin.".into(),
            ));
        }
    };
    let answer: pb::ListAppointmentsResponse = calls
        .unary(
            &format!("{SCHEDULING}ListAppointments"),
            &pb::ListAppointmentsRequest {
                doctor_subject: doctor
                    .map(|d| query::reference_id(&d, "Practitioner", "practitioner"))
                    .transpose()?
                    .unwrap_or_default(),
                patient: patient
                    .map(|p| query::reference_id(&p, "Patient", "patient"))
                    .transpose()?
                    .map(|pseudonym| pb::PatientRef { pseudonym }),
                period,
                page_size: count,
                page_token: cursor,
                ..Default::default()
            },
        )
        .await?;
    Ok(Page::new(
        answer
            .appointments
            .iter()
            .map(telehealth_fhir::appointment)
            .collect(),
        answer.next_page_token,
    ))
}

/// `patient` (required) and `code` (the panel's or one of its components' LOINC codes): the
/// assessments of every wound of the patient, wound after wound. The cursor names the wound
/// (its position) and the page within it.
pub async fn search_observations(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let patient = query
        .take("patient")?
        .or(query.take("subject")?)
        .ok_or_else(|| FhirError::Invalid("Recherche d'observations : patient requis.".into()))?;
    let codes = query.take_all("code");
    let (count, cursor) = (query.count, std::mem::take(&mut query.cursor));
    query.finish("Observation")?;
    let patient_id = query::reference_id(&patient, "Patient", "patient")?;
    let matches = codes.is_empty()
        || codes.iter().flat_map(|c| c.split(',')).any(|c| {
            let (system, code) = query::token(c);
            system.is_none_or(|s| s == telehealth_fhir::LOINC)
                && telehealth_fhir::ASSESSMENT_CODES.contains(&code)
        });
    if !matches {
        return Ok(Page::last(Vec::new()));
    }
    let (mut wound_index, mut token) = match cursor.split_once('.') {
        None if cursor.is_empty() => (0, String::new()),
        Some((index, token)) => (
            index.parse::<usize>().map_err(|_| bad_cursor())?,
            token.to_owned(),
        ),
        None => return Err(bad_cursor()),
    };
    let wounds: pb::ListDoctorWoundsResponse = calls
        .unary(
            &format!("{WOUNDS}ListDoctorWounds"),
            &pb::ListDoctorWoundsRequest {
                statuses: vec![pb::WoundStatus::Open as i32, pb::WoundStatus::Closed as i32],
                whole_org: true,
                patient: Some(pb::PatientRef {
                    pseudonym: patient_id.clone(),
                }),
                page_size: 200,
                page_token: String::new(),
            },
        )
        .await?;
    let ids: Vec<String> = wounds
        .wounds
        .iter()
        .filter_map(|w| w.wound.as_ref().map(|w| w.wound_id.clone()))
        .collect();
    let mut resources = Vec::new();
    while let Some(wound_id) = ids.get(wound_index) {
        let room = count - i32::try_from(resources.len()).unwrap_or(count);
        if room <= 0 {
            break;
        }
        let page: pb::ListAssessmentsResponse = calls
            .unary(
                &format!("{WOUNDS}ListAssessments"),
                &pb::ListAssessmentsRequest {
                    wound_id: wound_id.clone(),
                    episode: 0,
                    page_size: room,
                    page_token: std::mem::take(&mut token),
                },
            )
            .await?;
        resources.extend(
            page.assessments
                .iter()
                .map(|a| telehealth_fhir::wound_assessment(a, &patient_id)),
        );
        if page.next_page_token.is_empty() {
            wound_index += 1;
        } else {
            token = page.next_page_token;
        }
    }
    let next = if wound_index < ids.len() {
        format!("{wound_index}.{token}")
    } else {
        String::new()
    };
    Ok(Page::new(resources, next))
}

fn bad_cursor() -> FhirError {
    FhirError::Invalid("_cursor invalide : suivez le lien next de la page précédente.".into())
}
