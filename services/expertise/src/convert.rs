//! Conversions between the contract's messages and the domain values, validating everything a
//! client sends (INVALID_ARGUMENT naming the field).

use jiff::{SignedDuration, Timestamp};
use telehealth_proto::v1 as pb;

use crate::{
    billing::{Act, ActCode, NotBillable},
    core::reports::{ActivityReport, Section},
    delivery::{Delivery, DeliveryStatus, Recipient},
    error::ExpertiseError,
    filing::PacsTransfer,
    model::{
        ActorRecord, Answer, BodySite, ClinicalContext, Content, DECLINE_REASON_OTHER,
        GeneralPractitioner, Message, Patient, RECOMMENDATION_MONITOR, RECOMMENDATION_OTHER,
        Request, Status, Urgency,
    },
    store::TariffRow,
};

use telehealth_kit::ids::Id;
use telehealth_kit::record::opt_timestamp;
pub use telehealth_kit::record::timestamp;

type Result<T> = std::result::Result<T, ExpertiseError>;

// ---- scalars ---------------------------------------------------------------------------------

/// A required UUID id, in canonical form.
pub fn id<K>(field: &'static str, value: &str) -> Result<Id<K>> {
    Ok(Id::parse(field, value)?)
}

/// Free text, trimmed, at most `max` characters, without control characters.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(ExpertiseError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ExpertiseError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// Required free text of 1 to `max` characters.
pub fn required_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = text(field, value, max)?;
    if value.is_empty() {
        return Err(ExpertiseError::invalid(field, "is required"));
    }
    Ok(value)
}

/// A client-generated idempotency key, as the kit accepts it (1-128 characters, surrounding
/// spaces ignored).
pub fn idempotency_key(value: &str) -> Result<String> {
    telehealth_kit::idempotency::parse_key(value)
        .map_err(|reason| ExpertiseError::invalid("idempotency_key", reason))
}

/// A duration as the contract writes it.
pub fn duration(d: SignedDuration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

/// Most statuses in a list filter: more than there are statuses, so every useful filter fits,
/// and a bound on the work one request can ask for.
pub const MAX_STATUS_FILTERS: usize = 10;

/// Statuses of a filter, at most [`MAX_STATUS_FILTERS`] (UNSPECIFIED ignored, unknown numbers
/// refused). The length is checked before any item.
pub fn statuses(values: &[i32]) -> Result<Vec<Status>> {
    if values.len() > MAX_STATUS_FILTERS {
        return Err(ExpertiseError::invalid(
            "statuses",
            format!(
                "at most {MAX_STATUS_FILTERS} statuses (got {})",
                values.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for value in values {
        if *value == 0 {
            continue;
        }
        let status = Status::from_number(*value).ok_or_else(|| {
            ExpertiseError::invalid("statuses", format!("unknown status {value}"))
        })?;
        if !out.contains(&status) {
            out.push(status);
        }
    }
    out.sort();
    Ok(out)
}

/// True when `value` is only ASCII digits, with a length in `len`.
fn digits(value: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&value.len()) && value.chars().all(|c| c.is_ascii_digit())
}

fn known_enum(field: &'static str, value: i32, valid: bool) -> Result<i32> {
    if valid {
        Ok(value)
    } else {
        Err(ExpertiseError::invalid(
            field,
            format!("unknown value {value}"),
        ))
    }
}

// ---- content ---------------------------------------------------------------------------------

/// A pseudonym, or none yet (a draft is completed before submission).
fn pseudonym(value: &str) -> Result<String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    Ok(telehealth_kit::ids::pseudonym(
        "patient.patient.pseudonym",
        value,
    )?)
}

/// A body site as given.
pub fn body_site(field: &'static str, value: &pb::BodySite) -> Result<BodySite> {
    let snomed = value.snomed_ct_code.trim();
    if !snomed.is_empty() && !digits(snomed, 6..=18) {
        return Err(ExpertiseError::invalid(
            field,
            "snomed_ct_code must be 6-18 digits",
        ));
    }
    Ok(BodySite {
        region: known_enum(
            field,
            value.region,
            pb::BodyRegion::try_from(value.region).is_ok(),
        )?,
        laterality: known_enum(
            field,
            value.laterality,
            pb::Laterality::try_from(value.laterality).is_ok(),
        )?,
        description: text(field, &value.description, 200)?,
        snomed_ct_code: snomed.to_owned(),
    })
}

/// Validates the form of a request's content (completeness is checked at submission).
pub fn content(value: Option<&pb::ExpertiseRequestContent>) -> Result<Content> {
    let Some(value) = value else {
        return Ok(Content::default());
    };
    let name = |field: &'static str, v: &str, max: usize| -> Result<String> {
        let v = text(field, v, max)?;
        if v.contains(char::is_whitespace) {
            return Err(ExpertiseError::invalid(field, "must not contain spaces"));
        }
        Ok(v)
    };
    let patient = match &value.patient {
        None => None,
        Some(p) => {
            if !(0..=130).contains(&p.age_years) {
                return Err(ExpertiseError::invalid(
                    "patient.age_years",
                    "must be 0 to 130",
                ));
            }
            if !(0..=23).contains(&p.age_months) || (p.age_months != 0 && p.age_years >= 2) {
                return Err(ExpertiseError::invalid(
                    "patient.age_months",
                    "0 to 23, and only for patients under 2 years",
                ));
            }
            Some(Patient {
                pseudonym: pseudonym(
                    p.patient
                        .as_ref()
                        .map(|r| r.pseudonym.as_str())
                        .unwrap_or(""),
                )?,
                age_years: p.age_years,
                age_months: p.age_months,
                sex: known_enum("patient.sex", p.sex, pb::Sex::try_from(p.sex).is_ok())?,
            })
        }
    };
    let context = match &value.context {
        None => None,
        Some(c) => Some(ClinicalContext {
            medical_history: text("context.medical_history", &c.medical_history, 4000)?,
            body_site: c
                .body_site
                .as_ref()
                .map(|s| body_site("context.body_site", s))
                .transpose()?,
            lesion_duration: text("context.lesion_duration", &c.lesion_duration, 100)?,
            evolution: known_enum(
                "context.evolution",
                c.evolution,
                pb::LesionEvolution::try_from(c.evolution).is_ok(),
            )?,
            evolution_details: text("context.evolution_details", &c.evolution_details, 2000)?,
            symptoms: text("context.symptoms", &c.symptoms, 2000)?,
            treatments_tried: text("context.treatments_tried", &c.treatments_tried, 2000)?,
        }),
    };
    let general_practitioner = match &value.general_practitioner {
        None => None,
        Some(g) => {
            let rpps = g.rpps_number.trim();
            if !rpps.is_empty() && !digits(rpps, 11..=11) {
                return Err(ExpertiseError::invalid(
                    "general_practitioner.rpps_number",
                    "must be 11 digits",
                ));
            }
            let mail = text(
                "general_practitioner.mssante_address",
                &g.mssante_address,
                254,
            )?;
            if !mail.is_empty() && !looks_like_address(&mail) {
                return Err(ExpertiseError::invalid(
                    "general_practitioner.mssante_address",
                    "must be an e-mail address (local@domain)",
                ));
            }
            Some(GeneralPractitioner {
                is_requester: g.is_requester,
                display_name: text("general_practitioner.display_name", &g.display_name, 200)?,
                rpps_number: rpps.to_owned(),
                mssante_address: mail,
            })
        }
    };
    let requester_mssante_address = text(
        "content.requester_mssante_address",
        &value.requester_mssante_address,
        254,
    )?;
    if !requester_mssante_address.is_empty() && !looks_like_address(&requester_mssante_address) {
        return Err(ExpertiseError::invalid(
            "content.requester_mssante_address",
            "must be an e-mail address (local@domain)",
        ));
    }
    Ok(Content {
        target_org_id: name("content.target_org_id", &value.target_org_id, 128)?,
        specialty: name("content.specialty", &value.specialty, 64)?,
        patient,
        clinical_question: text("content.clinical_question", &value.clinical_question, 2000)?,
        context,
        urgency: Urgency::from_number(value.urgency)
            .ok_or_else(|| ExpertiseError::invalid("content.urgency", "unknown urgency"))?,
        general_practitioner,
        requester_mssante_address,
        // Only wound monitoring sets it (`wound_content`): a client cannot make one up.
        wound: None,
    })
}

/// The content wound monitoring sends, with the wound's history.
pub fn wound_content(value: Option<&pb::ExpertiseRequestContent>) -> Result<Content> {
    let mut content = content(value)?;
    let Some(wound) = value.and_then(|v| v.wound.as_ref()) else {
        return Ok(content);
    };
    if wound.history.len() > crate::model::MAX_WOUND_HISTORY {
        return Err(ExpertiseError::invalid(
            "content.wound.history",
            format!("at most {} points", crate::model::MAX_WOUND_HISTORY),
        ));
    }
    let hundredths = |value: f64| (value * 100.0).round() as i64;
    content.wound = Some(crate::model::WoundContext {
        wound_id: text("content.wound.wound_id", &wound.wound_id, 64)?,
        aetiology: text("content.wound.aetiology", &wound.aetiology, 64)?,
        body_site: text("content.wound.body_site", &wound.body_site, 300)?,
        history: wound
            .history
            .iter()
            .map(|p| crate::model::WoundHistoryPoint {
                assessed_at_us: p
                    .assessed_at
                    .as_ref()
                    .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1_000))
                    .unwrap_or_default(),
                length_cm_x100: hundredths(p.length_cm),
                width_cm_x100: hundredths(p.width_cm),
                area_cm2_x100: hundredths(p.area_cm2),
                push_score: p.push_score,
            })
            .collect(),
    });
    Ok(content)
}

fn wound_context(w: &crate::model::WoundContext) -> pb::WoundContext {
    pb::WoundContext {
        wound_id: w.wound_id.clone(),
        aetiology: w.aetiology.clone(),
        body_site: w.body_site.clone(),
        history: w
            .history
            .iter()
            .map(|p| pb::WoundHistoryPoint {
                assessed_at: Some(timestamp(telehealth_kit::record::instant(p.assessed_at_us))),
                length_cm: p.length_cm_x100 as f64 / 100.0,
                width_cm: p.width_cm_x100 as f64 / 100.0,
                area_cm2: p.area_cm2_x100 as f64 / 100.0,
                push_score: p.push_score,
            })
            .collect(),
    }
}

fn looks_like_address(value: &str) -> bool {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Validates a structured answer.
pub fn answer(value: Option<&pb::ExpertAnswer>) -> Result<Answer> {
    let value = value.ok_or_else(|| ExpertiseError::invalid("answer", "is required"))?;
    let recommendation = value.recommendation;
    if recommendation == 0 || pb::Recommendation::try_from(recommendation).is_err() {
        return Err(ExpertiseError::invalid(
            "answer.recommendation",
            "is required (REASSURE, MONITOR, TREAT, EXCISE, SEE_IN_PERSON_URGENTLY, SEE_IN_PERSON or OTHER)",
        ));
    }
    let months = value.monitor_interval_months;
    if recommendation == RECOMMENDATION_MONITOR && !(1..=60).contains(&months) {
        return Err(ExpertiseError::invalid(
            "answer.monitor_interval_months",
            "must be 1 to 60 for MONITOR",
        ));
    }
    if recommendation != RECOMMENDATION_MONITOR && months != 0 {
        return Err(ExpertiseError::invalid(
            "answer.monitor_interval_months",
            "is only for MONITOR",
        ));
    }
    let details = text(
        "answer.recommendation_details",
        &value.recommendation_details,
        2000,
    )?;
    if recommendation == RECOMMENDATION_OTHER && details.is_empty() {
        return Err(ExpertiseError::invalid(
            "answer.recommendation_details",
            "is required for OTHER",
        ));
    }
    Ok(Answer {
        impression: required_text("answer.impression", &value.impression, 4000)?,
        recommendation,
        monitor_interval_months: months,
        recommendation_details: details,
        free_text: text("answer.free_text", &value.free_text, 8000)?,
    })
}

/// Validates a decline: (reason, comment).
pub fn decline(reason: i32, comment: &str) -> Result<(i32, String)> {
    if reason == 0 || pb::DeclineReason::try_from(reason).is_err() {
        return Err(ExpertiseError::invalid("reason", "is required"));
    }
    let comment = text("comment", comment, 2000)?;
    if reason == DECLINE_REASON_OTHER && comment.is_empty() {
        return Err(ExpertiseError::invalid("comment", "is required for OTHER"));
    }
    Ok((reason, comment))
}

// ---- records ---------------------------------------------------------------------------------

fn pb_body_site(site: &BodySite) -> pb::BodySite {
    pb::BodySite {
        region: site.region,
        laterality: site.laterality,
        description: site.description.clone(),
        snomed_ct_code: site.snomed_ct_code.clone(),
    }
}

/// The patient as the contract writes it.
pub fn patient(p: &Patient) -> pb::ExpertisePatient {
    pb::ExpertisePatient {
        patient: Some(pb::PatientRef {
            pseudonym: p.pseudonym.clone(),
        }),
        age_years: p.age_years,
        age_months: p.age_months,
        sex: p.sex,
    }
}

/// The clinical context as the contract writes it.
pub fn context(c: &ClinicalContext) -> pb::ClinicalContext {
    pb::ClinicalContext {
        medical_history: c.medical_history.clone(),
        body_site: c.body_site.as_ref().map(pb_body_site),
        lesion_duration: c.lesion_duration.clone(),
        evolution: c.evolution,
        evolution_details: c.evolution_details.clone(),
        symptoms: c.symptoms.clone(),
        treatments_tried: c.treatments_tried.clone(),
    }
}

/// The GP as the contract writes it.
pub fn general_practitioner(g: &GeneralPractitioner) -> pb::GeneralPractitioner {
    pb::GeneralPractitioner {
        is_requester: g.is_requester,
        display_name: g.display_name.clone(),
        rpps_number: g.rpps_number.clone(),
        mssante_address: g.mssante_address.clone(),
    }
}

/// An answer as the contract writes it.
pub fn pb_answer(a: &Answer) -> pb::ExpertAnswer {
    pb::ExpertAnswer {
        impression: a.impression.clone(),
        recommendation: a.recommendation,
        monitor_interval_months: a.monitor_interval_months,
        recommendation_details: a.recommendation_details.clone(),
        free_text: a.free_text.clone(),
    }
}

fn pb_content(c: &Content) -> pb::ExpertiseRequestContent {
    pb::ExpertiseRequestContent {
        target_org_id: c.target_org_id.clone(),
        specialty: c.specialty.clone(),
        patient: c.patient.as_ref().map(patient),
        clinical_question: c.clinical_question.clone(),
        context: c.context.as_ref().map(context),
        urgency: c.urgency.number(),
        general_practitioner: c.general_practitioner.as_ref().map(general_practitioner),
        requester_mssante_address: c.requester_mssante_address.clone(),
        wound: c.wound.as_ref().map(wound_context),
    }
}

/// A request as the contract writes it, "overdue" as of `now`, with its `images`.
pub fn request(r: &Request, now: Timestamp, images: Vec<pb::ImageInfo>) -> pb::ExpertiseRequest {
    pb::ExpertiseRequest {
        request_id: r.id.clone(),
        status: r.status.number(),
        requester_org_id: r.requester_org.clone(),
        requester: Some(r.requester.to_proto()),
        content: Some(pb_content(&r.content)),
        images,
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        submitted_at: opt_timestamp(r.submitted_at),
        due_at: opt_timestamp(r.due_at),
        overdue: r.overdue(now),
        claimed_by: r.claimed_by.as_ref().map(ActorRecord::to_proto),
        claimed_at: opt_timestamp(r.claimed_at),
        answer: r.answer.as_ref().map(pb_answer),
        answered_at: opt_timestamp(r.answered_at),
        answered_late: r.answered_late(),
        decline: r.decline.as_ref().map(|d| pb::Decline {
            reason: d.reason,
            comment: d.comment.clone(),
            declined_by: Some(d.by.to_proto()),
            declined_at: opt_timestamp(r.declined_at),
        }),
        withdrawal: r.withdrawal.as_ref().map(|w| pb::Withdrawal {
            reason: w.reason.clone(),
            withdrawn_by: Some(w.by.to_proto()),
            withdrawn_at: opt_timestamp(r.withdrawn_at),
        }),
        closed_at: opt_timestamp(r.closed_at),
        closed_by: r.closed_by.as_ref().map(ActorRecord::to_proto),
        message_count: i32::try_from(r.message_count).unwrap_or(i32::MAX),
        version: r.version,
        consent_id: r.consent_id.clone().unwrap_or_default(),
        report_deliveries: Vec::new(),
        pacs_transfers: Vec::new(),
    }
}

/// A PACS transfer as the contract writes it.
pub fn transfer(t: &PacsTransfer) -> pb::PacsTransfer {
    pb::PacsTransfer {
        image_id: t.image_id.clone(),
        destination: t.destination.clone(),
        status: (match t.status {
            DeliveryStatus::Pending => pb::PacsTransferStatus::Pending,
            DeliveryStatus::Retrying => pb::PacsTransferStatus::Retrying,
            DeliveryStatus::Delivered => pb::PacsTransferStatus::Stored,
            DeliveryStatus::Failed => pb::PacsTransferStatus::Failed,
        }) as i32,
        attempts: t.attempts,
        last_error: t.last_error.clone(),
        next_attempt_at: match t.status {
            DeliveryStatus::Pending | DeliveryStatus::Retrying => {
                Some(timestamp(t.next_attempt_at))
            }
            _ => None,
        },
        stored_at: opt_timestamp(t.stored_at),
        sop_instance_uid: t.sop_instance_uid.clone(),
    }
}

/// A report delivery as the contract writes it.
pub fn delivery(d: &Delivery) -> pb::ReportDelivery {
    pb::ReportDelivery {
        recipient: (match d.recipient {
            Recipient::Requester => pb::ReportRecipient::Requester,
            Recipient::GeneralPractitioner => pb::ReportRecipient::GeneralPractitioner,
        }) as i32,
        address: d.address.clone(),
        status: (match d.status {
            DeliveryStatus::Pending => pb::ReportDeliveryStatus::Pending,
            DeliveryStatus::Retrying => pb::ReportDeliveryStatus::Retrying,
            DeliveryStatus::Delivered => pb::ReportDeliveryStatus::Delivered,
            DeliveryStatus::Failed => pb::ReportDeliveryStatus::Failed,
        }) as i32,
        attempts: d.attempts,
        last_error: d.last_error.clone(),
        next_attempt_at: match d.status {
            DeliveryStatus::Pending | DeliveryStatus::Retrying => {
                Some(timestamp(d.next_attempt_at))
            }
            _ => None,
        },
        delivered_at: opt_timestamp(d.delivered_at),
    }
}

/// A message as the contract writes it.
pub fn message(m: &Message) -> pb::ExpertiseMessage {
    pb::ExpertiseMessage {
        message_id: m.id.clone(),
        request_id: m.request_id.clone(),
        sequence: m.sequence,
        author: Some(m.author.to_proto()),
        text: m.text.clone(),
        posted_at: Some(timestamp(m.posted_at)),
    }
}

// ---- reports ---------------------------------------------------------------------------------

fn code(code: ActCode) -> i32 {
    match code {
        ActCode::Rqd => pb::BillableActCode::Rqd as i32,
        ActCode::Te2 => pb::BillableActCode::Te2 as i32,
    }
}

fn section(s: &Section) -> pb::ActivitySection {
    pb::ActivitySection {
        submitted_count: s.submitted,
        counts_by_status: s
            .by_status
            .iter()
            .map(|(status, count)| pb::StatusCount {
                status: status.number(),
                count: *count,
            })
            .collect(),
        answered_count: s.answered,
        median_turnaround: s.median_turnaround.map(duration),
        p90_turnaround: s.p90_turnaround.map(duration),
        overdue_count: s.overdue,
    }
}

fn act(a: &Act) -> pb::BillableAct {
    let reason = match a.not_billable {
        None => pb::NonBillableReason::Unspecified,
        Some(NotBillable::AnnualLimitReached) => pb::NonBillableReason::AnnualLimitReached,
        Some(NotBillable::SameSite) => pb::NonBillableReason::SameSite,
        Some(NotBillable::AnswerDeadlineMissed) => pb::NonBillableReason::AnswerDeadlineMissed,
        Some(NotBillable::NoTariff) => pb::NonBillableReason::NoTariff,
    };
    pb::BillableAct {
        request_id: a.input.request_id.clone(),
        code: code(a.input.code),
        practitioner_subject: a.input.practitioner.clone(),
        practitioner_org_id: a.input.practitioner_org.clone(),
        patient: Some(pb::PatientRef {
            pseudonym: a.input.pseudonym.clone(),
        }),
        act_date: a.input.date.to_string(),
        billable: a.not_billable.is_none(),
        amount_cents: a.amount_cents,
        non_billable_reason: reason as i32,
        reason_details: a.details.clone(),
        tariff_id: a.tariff_id.clone().unwrap_or_default(),
        practitioner_profession: a.input.profession.to_owned(),
    }
}

fn tariff(t: &TariffRow) -> pb::TariffRule {
    pb::TariffRule {
        tariff_id: t.tariff_id.clone(),
        code: ActCode::parse(&t.act_code).map_or(0, code),
        amount_cents: t.amount_cents,
        valid_from: t.valid_from.clone(),
        valid_until: t.valid_until.clone().unwrap_or_default(),
    }
}

/// The activity report as the contract writes it.
pub fn activity_report(r: &ActivityReport) -> pb::ActivityReport {
    pb::ActivityReport {
        org_id: r.org_id.clone(),
        month: r.month.clone(),
        time_zone: r.time_zone.clone(),
        generated_at: Some(timestamp(r.generated_at)),
        as_requester: Some(section(&r.as_requester)),
        as_expert: Some(section(&r.as_expert)),
        acts: r.acts.iter().map(act).collect(),
        practitioner_totals: r
            .totals
            .iter()
            .map(|t| pb::PractitionerBilling {
                practitioner_subject: t.practitioner.clone(),
                org_id: t.org_id.clone(),
                code: t.code.map_or(0, code),
                billable_count: t.billable,
                non_billable_count: t.not_billable,
                billable_amount_cents: t.amount_cents,
            })
            .collect(),
        tariffs: r.tariffs.iter().map(tariff).collect(),
    }
}
