//! The answer report as the PDF sent by secure mail (pure): the request, the patient's identity
//! as the register gives it for a report, and the images' thumbnails, as `telehealth-report`'s
//! input; and the message that carries it.

use jiff::{Timestamp, civil::Date};
use telehealth_proto::v1 as pb;
use telehealth_report as report;

use crate::{model::Request, render};

/// `Recommendation` numbers that send the patient to a consultation (urgently, or not).
const SEE_IN_PERSON_URGENTLY: i32 = 5;
const SEE_IN_PERSON: i32 = 6;

/// The report of an answered `request` about `patient`; `None` when it is not answered, or the
/// register's record lacks what the report must show (a birth date).
pub fn expertise_report(
    request: &Request,
    patient: &pb::Patient,
    expert_organisation: &str,
    thumbnails: Vec<report::Thumbnail>,
) -> Option<report::ExpertiseReport> {
    let answer = request.answer.as_ref()?;
    let answered_at = request.answered_at?;
    let expert = request.claimed_by.as_ref()?;
    let identity = patient.identity.clone().unwrap_or_default();
    let birth_date: Date = identity.birth_date.parse().ok()?;
    let status = match pb::IdentityStatus::try_from(patient.identity_status).unwrap_or_default() {
        pb::IdentityStatus::Qualified => report::IdentityStatus::Qualified,
        pb::IdentityStatus::Validated => report::IdentityStatus::Validated,
        pb::IdentityStatus::Recovered => report::IdentityStatus::Recovered,
        _ => report::IdentityStatus::Provisional,
    };
    let optional = |text: &str| (!text.trim().is_empty()).then(|| text.to_owned());
    let content = &request.content;
    let mut recommendations =
        render::recommendation(answer.recommendation, answer.monitor_interval_months);
    if !answer.recommendation_details.is_empty() {
        recommendations.push_str(" : ");
        recommendations.push_str(&answer.recommendation_details);
    }
    Some(report::ExpertiseReport {
        reference: request.id.clone(),
        requester: report::Professional {
            name: request.requester.subject.clone(),
            rpps: String::new(),
            specialty: None,
            organisation: request.requester_org.clone(),
        },
        expert: report::Professional {
            name: expert.subject.clone(),
            rpps: String::new(),
            specialty: optional(&content.specialty),
            organisation: expert_organisation.to_owned(),
        },
        patient: report::Patient {
            birth_name: identity.birth_name,
            first_names: identity.first_names,
            used_name: optional(&identity.used_name),
            used_first_name: optional(&identity.used_first_name),
            birth_date,
            sex: match pb::Sex::try_from(identity.sex).unwrap_or_default() {
                pb::Sex::Female => report::Sex::Female,
                pb::Sex::Male => report::Sex::Male,
                _ => report::Sex::Indeterminate,
            },
            identity_status: status,
            // The register sends the INS only for a qualified identity; checked again here.
            ins: patient
                .ins
                .as_ref()
                .filter(|_| status == report::IdentityStatus::Qualified)
                .map(|ins| report::Ins {
                    number: ins.number.clone(),
                    oid: ins.oid.clone(),
                }),
        },
        question: content.clinical_question.clone(),
        asked_at: request.submitted_at.unwrap_or(request.created_at),
        answer: report::Answer {
            conclusion: answer.impression.clone(),
            findings: answer.free_text.clone(),
            recommendations,
            consultation_needed: matches!(
                answer.recommendation,
                SEE_IN_PERSON_URGENTLY | SEE_IN_PERSON
            ),
            urgency: match answer.recommendation {
                SEE_IN_PERSON_URGENTLY => report::Urgency::Urgent,
                SEE_IN_PERSON => report::Urgency::Soon,
                _ => report::Urgency::Routine,
            },
        },
        thumbnails,
        act: report::Act {
            code: "TE2".into(),
            answered_at,
            prescriptions: Vec::new(),
            technical_incidents: Vec::new(),
        },
    })
}

/// The message carrying the report `pdf` of `request` to `to`, from `from`.
pub fn message(
    request: &Request,
    pdf: Vec<u8>,
    from: &str,
    to: &str,
    date: Timestamp,
) -> report::Message {
    let domain = from
        .rsplit_once('@')
        .map_or("telehealth.invalid", |(_, d)| d);
    report::Message {
        from: from.to_owned(),
        to: vec![to.to_owned()],
        subject: format!("Compte rendu de télé-expertise – demande {}", request.id),
        text_body: format!(
            "Bonjour,\n\nVeuillez trouver ci-joint le compte rendu de la télé-expertise \
             (demande {}), établi par le spécialiste requis.\n\nCe message contient des données de \
             santé à caractère personnel : il est destiné aux seuls professionnels qui prennent en \
             charge le patient.\n",
            request.id
        ),
        attachment: report::Attachment {
            filename: format!("compte-rendu-tele-expertise-{}.pdf", request.id),
            content_type: "application/pdf".into(),
            bytes: pdf,
        },
        message_id_domain: domain.to_owned(),
        date,
    }
}
