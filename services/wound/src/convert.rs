//! Conversions between the contract's messages and the domain values, with validation of
//! everything a client sends (INVALID_ARGUMENT naming the field).

use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};
use telehealth_proto::v1 as pb;

use crate::{
    core::{AssessmentView, assessments::Trend, lists::WoundSummary},
    domain::{
        Aetiology, AreaMethod, BodySite, ClosureReason, Exudate, MAX_CARE_TEAM, MAX_DEPTH_MM,
        MAX_INFECTION_SIGNS, MAX_PHOTOS, MAX_SIDE_MM, MAX_STATUS_FILTERS, Measurements, Subject,
        Tissue, WoundDescription,
    },
    error::WoundError,
    model::{Alert, AlertStatus, Wound, WoundStatus},
    scoring,
};

pub use telehealth_kit::ids::Id;
pub use telehealth_kit::record::timestamp;

type Result<T> = std::result::Result<T, WoundError>;

// ---- scalars ---------------------------------------------------------------------------------

/// A required subject (the contract's rule, [`Subject::parse`]).
pub fn subject(field: &'static str, value: &str) -> Result<Subject> {
    Ok(Subject::parse(field, value)?)
}

/// An optional subject (empty means none).
pub fn optional_subject(field: &'static str, value: &str) -> Result<Option<Subject>> {
    if value.is_empty() {
        Ok(None)
    } else {
        subject(field, value).map(Some)
    }
}

/// Refuses a repeated field of more than `max` items before any item is looked at, naming the
/// field and the bound.
pub fn at_most(field: &'static str, len: usize, max: usize, items: &str) -> Result<()> {
    if len > max {
        return Err(WoundError::invalid(
            field,
            format!("at most {max} {items} (got {len})"),
        ));
    }
    Ok(())
}

/// A care team: at most 10 valid subjects without duplicates, sorted.
pub fn nurses(values: &[String]) -> Result<Vec<Subject>> {
    const FIELD: &str = "care_team_nurse_subjects";
    at_most(FIELD, values.len(), MAX_CARE_TEAM, "nurses")?;
    let mut nurses = values
        .iter()
        .map(|v| subject(FIELD, v))
        .collect::<Result<Vec<_>>>()?;
    nurses.sort();
    if nurses.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(WoundError::invalid(FIELD, "a nurse is listed twice"));
    }
    Ok(nurses)
}

/// A required UUID id, in canonical form.
pub fn id<K>(field: &'static str, value: &str) -> Result<Id<K>> {
    Ok(Id::parse(field, value)?)
}

/// The photos chosen for a tele-expertise request: UUIDs, distinct, at most
/// [`MAX_SHARED_PHOTOS`](crate::core::expertise::MAX_SHARED_PHOTOS).
pub fn photo_ids(values: Vec<String>) -> Result<Vec<telehealth_images::ImageId>> {
    const FIELD: &str = "photo_ids";
    at_most(
        FIELD,
        values.len(),
        crate::core::expertise::MAX_SHARED_PHOTOS,
        "photos",
    )?;
    let ids = values
        .iter()
        .map(|v| id(FIELD, v))
        .collect::<Result<Vec<telehealth_images::ImageId>>>()?;
    let mut sorted: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(WoundError::invalid(FIELD, "a photo is listed twice"));
    }
    Ok(ids)
}

/// An optional UUID id (empty means none).
pub fn optional_id<K>(field: &'static str, value: &str) -> Result<Option<Id<K>>> {
    if value.is_empty() {
        Ok(None)
    } else {
        id(field, value).map(Some)
    }
}

/// A client-generated idempotency key, as the kit accepts it (1-128 characters, surrounding
/// spaces ignored).
pub fn idempotency_key(value: &str) -> Result<String> {
    telehealth_kit::idempotency::parse_key(value)
        .map_err(|reason| WoundError::invalid("idempotency_key", reason))
}

/// A required instant.
pub fn instant(field: &'static str, value: Option<&prost_types::Timestamp>) -> Result<Timestamp> {
    let value = value.ok_or_else(|| WoundError::invalid(field, "is required"))?;
    telehealth_kit::record::from_wire(value)
        .ok_or_else(|| WoundError::invalid(field, "is not a valid timestamp"))
}

/// Free text, trimmed, of at most `max` characters, without control characters other than
/// newlines and tabs.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(WoundError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(WoundError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A patient pseudonym: 1-64 characters of `[A-Za-z0-9._:-]`.
pub fn pseudonym(value: Option<&pb::PatientRef>) -> Result<String> {
    let pseudonym = value.map(|p| p.pseudonym.as_str()).unwrap_or_default();
    Ok(telehealth_kit::ids::pseudonym(
        "patient.pseudonym",
        pseudonym,
    )?)
}

// ---- wounds ----------------------------------------------------------------------------------

/// The latest calendar date anywhere (UTC+14): an onset date after it is in the future.
fn latest_today(now: Timestamp) -> Date {
    (now + SignedDuration::from_hours(14))
        .to_zoned_datetime(TimeZone::UTC)
        .date()
}

/// A civil date `YYYY-MM-DD`.
pub fn date(field: &'static str, value: &str) -> Result<Date> {
    value
        .parse::<Date>()
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| WoundError::invalid(field, format!("`{value}` is not a date YYYY-MM-DD")))
}

/// A wound description; `default_interval_days` replaces an interval of 0.
pub fn description(
    value: Option<&pb::WoundDescription>,
    default_interval_days: i64,
    now: Timestamp,
) -> Result<WoundDescription> {
    let d = value.ok_or_else(|| WoundError::invalid("description", "is required"))?;
    let site = d
        .body_site
        .as_ref()
        .ok_or_else(|| WoundError::invalid("description.body_site", "is required"))?;
    let region = pb::BodyRegion::try_from(site.region).unwrap_or(pb::BodyRegion::Unspecified);
    if region == pb::BodyRegion::Unspecified {
        return Err(WoundError::invalid(
            "description.body_site.region",
            "is required (a known BodyRegion)",
        ));
    }
    let laterality = match pb::Laterality::try_from(site.laterality) {
        Ok(pb::Laterality::Unspecified) => pb::Laterality::NotApplicable,
        Ok(laterality) => laterality,
        Err(_) => {
            return Err(WoundError::invalid(
                "description.body_site.laterality",
                "is not a known Laterality",
            ));
        }
    };
    let site_description = text("description.body_site.description", &site.description, 200)?;
    if region == pb::BodyRegion::Other && site_description.is_empty() {
        return Err(WoundError::invalid(
            "description.body_site.description",
            "is required for BODY_REGION_OTHER",
        ));
    }
    let snomed = site.snomed_ct_code.trim();
    if !snomed.is_empty()
        && (!(6..=18).contains(&snomed.len()) || !snomed.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(WoundError::invalid(
            "description.body_site.snomed_ct_code",
            "must be 6 to 18 digits",
        ));
    }
    let aetiology = Aetiology::from_number(i64::from(d.aetiology)).ok_or_else(|| {
        WoundError::invalid("description.aetiology", "is required (a known Aetiology)")
    })?;
    let stage = d.pressure_ulcer_stage;
    match (aetiology, stage) {
        (Aetiology::PressureUlcer, 1..=6) => {}
        (Aetiology::PressureUlcer, _) => {
            return Err(WoundError::invalid(
                "description.pressure_ulcer_stage",
                "is required for a pressure ulcer (a known PressureUlcerStage)",
            ));
        }
        (_, 0) => {}
        _ => {
            return Err(WoundError::invalid(
                "description.pressure_ulcer_stage",
                "is only for pressure ulcers",
            ));
        }
    }
    let details = text("description.aetiology_details", &d.aetiology_details, 500)?;
    if aetiology == Aetiology::Other && details.is_empty() {
        return Err(WoundError::invalid(
            "description.aetiology_details",
            "is required for AETIOLOGY_OTHER",
        ));
    }
    let onset_date = if d.onset_date.is_empty() {
        String::new()
    } else {
        let onset = date("description.onset_date", &d.onset_date)?;
        if onset > latest_today(now) {
            return Err(WoundError::invalid(
                "description.onset_date",
                "is in the future",
            ));
        }
        onset.to_string()
    };
    let interval_days = match d.planned_assessment_interval_days {
        0 => default_interval_days,
        n @ 1..=90 => i64::from(n),
        _ => {
            return Err(WoundError::invalid(
                "description.planned_assessment_interval_days",
                "must be 1 to 90 days (0 for the default)",
            ));
        }
    };
    Ok(WoundDescription {
        body_site: BodySite {
            region: region as i32,
            laterality: laterality as i32,
            description: site_description,
            snomed_ct_code: snomed.to_owned(),
        },
        aetiology,
        pressure_ulcer_stage: stage,
        aetiology_details: details,
        onset_date,
        interval_days,
    })
}

/// A closure reason and its comment.
pub fn closure(reason: i32, comment: &str) -> Result<(ClosureReason, String)> {
    let reason = ClosureReason::from_number(i64::from(reason))
        .ok_or_else(|| WoundError::invalid("reason", "is required (a known WoundClosureReason)"))?;
    let comment = text("comment", comment, 2000)?;
    if reason == ClosureReason::Other && comment.is_empty() {
        return Err(WoundError::invalid(
            "comment",
            "is required when the reason is OTHER",
        ));
    }
    Ok((reason, comment))
}

/// Wound statuses of a filter, at most 10 (unspecified values are ignored).
pub fn wound_statuses(values: &[i32]) -> Result<Vec<WoundStatus>> {
    at_most("statuses", values.len(), MAX_STATUS_FILTERS, "statuses")?;
    let mut statuses = Vec::new();
    for value in values {
        match pb::WoundStatus::try_from(*value) {
            Ok(pb::WoundStatus::Open) => statuses.push(WoundStatus::Open),
            Ok(pb::WoundStatus::Closed) => statuses.push(WoundStatus::Closed),
            Ok(pb::WoundStatus::Unspecified) => {}
            Err(_) => return Err(WoundError::invalid("statuses", "unknown wound status")),
        }
    }
    statuses.dedup();
    Ok(statuses)
}

/// Alert statuses of a filter, at most 10 (unspecified values are ignored).
pub fn alert_statuses(values: &[i32]) -> Result<Vec<AlertStatus>> {
    at_most("statuses", values.len(), MAX_STATUS_FILTERS, "statuses")?;
    let mut statuses = Vec::new();
    for value in values {
        match pb::AlertStatus::try_from(*value) {
            Ok(pb::AlertStatus::Open) => statuses.push(AlertStatus::Open),
            Ok(pb::AlertStatus::Acknowledged) => statuses.push(AlertStatus::Acknowledged),
            Ok(pb::AlertStatus::Unspecified) => {}
            Err(_) => return Err(WoundError::invalid("statuses", "unknown alert status")),
        }
    }
    statuses.dedup();
    Ok(statuses)
}

/// An area method (unspecified: rectangle).
pub fn area_method(value: i32) -> Result<AreaMethod> {
    match pb::AreaMethod::try_from(value) {
        Ok(pb::AreaMethod::Unspecified | pb::AreaMethod::Rectangle) => Ok(AreaMethod::Rectangle),
        Ok(pb::AreaMethod::Ellipse) => Ok(AreaMethod::Ellipse),
        Err(_) => Err(WoundError::invalid("area_method", "unknown area method")),
    }
}

// ---- assessments -----------------------------------------------------------------------------

/// A length in cm within `0..=max_mm` mm, rounded to the millimetre.
fn millimetres(field: &'static str, cm: f64, max_mm: i64) -> Result<i64> {
    let max_cm = max_mm as f64 / 10.0;
    if !cm.is_finite() || !(0.0..=max_cm).contains(&cm) {
        return Err(WoundError::invalid(
            field,
            format!("must be between 0 and {max_cm} cm"),
        ));
    }
    // Within bounds, so the cast cannot overflow.
    Ok((cm * 10.0).round() as i64)
}

/// What a nurse recorded. Time rules that need the wound (future, onset) are the core's.
pub fn measurements(value: Option<&pb::AssessmentMeasurements>) -> Result<Measurements> {
    let m = value.ok_or_else(|| WoundError::invalid("measurements", "is required"))?;
    // The lists' lengths first, before any of their items (or anything else) is looked at.
    at_most(
        "measurements.infection_signs",
        m.infection_signs.len(),
        MAX_INFECTION_SIGNS,
        "signs, each once",
    )?;
    at_most(
        "measurements.photo_image_ids",
        m.photo_image_ids.len(),
        MAX_PHOTOS,
        "photos",
    )?;
    let assessed_at = instant("measurements.assessed_at", m.assessed_at.as_ref())?;
    let length_mm = millimetres("measurements.length_cm", m.length_cm, MAX_SIDE_MM)?;
    let width_mm = millimetres("measurements.width_cm", m.width_cm, MAX_SIDE_MM)?;
    let depth_mm = m
        .depth_cm
        .map(|d| millimetres("measurements.depth_cm", d, MAX_DEPTH_MM))
        .transpose()?;
    let tissue = Tissue::from_number(i64::from(m.tissue_type)).ok_or_else(|| {
        WoundError::invalid(
            "measurements.tissue_type",
            "is required (a known TissueType)",
        )
    })?;
    let exudate = Exudate::from_number(i64::from(m.exudate)).ok_or_else(|| {
        WoundError::invalid(
            "measurements.exudate",
            "is required (a known ExudateAmount)",
        )
    })?;
    if (length_mm == 0 || width_mm == 0) && tissue != Tissue::Closed {
        return Err(WoundError::invalid(
            "measurements.length_cm",
            "a length or width of 0 is only possible for a closed wound (tissue CLOSED)",
        ));
    }
    let pain_score = match m.pain_score {
        None => None,
        Some(p @ 0..=10) => Some(i64::from(p)),
        Some(_) => {
            return Err(WoundError::invalid(
                "measurements.pain_score",
                "must be 0 to 10",
            ));
        }
    };
    let mut infection_signs = Vec::with_capacity(m.infection_signs.len());
    for sign in &m.infection_signs {
        match pb::InfectionSign::try_from(*sign) {
            Ok(pb::InfectionSign::Unspecified) | Err(_) => {
                return Err(WoundError::invalid(
                    "measurements.infection_signs",
                    format!("{sign} is not a known InfectionSign"),
                ));
            }
            Ok(_) => infection_signs.push(*sign),
        }
    }
    infection_signs.sort_unstable();
    if infection_signs.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(WoundError::invalid(
            "measurements.infection_signs",
            "a sign is listed twice",
        ));
    }
    let mut photo_image_ids = Vec::with_capacity(m.photo_image_ids.len());
    for photo in &m.photo_image_ids {
        let photo = telehealth_kit::ids::record_id("measurements.photo_image_ids", photo)?;
        if photo_image_ids.contains(&photo) {
            return Err(WoundError::invalid(
                "measurements.photo_image_ids",
                "a photo is listed twice",
            ));
        }
        photo_image_ids.push(photo);
    }
    Ok(Measurements {
        assessed_at,
        length_mm,
        width_mm,
        depth_mm,
        tissue,
        exudate,
        pain_score,
        infection_signs,
        notes: text("measurements.notes", &m.notes, 4000)?,
        photo_image_ids,
    })
}

// ---- records ---------------------------------------------------------------------------------

fn patient(pseudonym: &str) -> Option<pb::PatientRef> {
    Some(pb::PatientRef {
        pseudonym: pseudonym.to_owned(),
    })
}

/// A wound of the contract, as seen at `now`.
pub fn wound(w: &Wound, now: Timestamp) -> pb::Wound {
    let d = &w.description;
    pb::Wound {
        wound_id: w.id.clone(),
        org_id: w.org_id.clone(),
        patient: patient(&w.patient_pseudonym),
        description: Some(pb::WoundDescription {
            body_site: Some(pb::BodySite {
                region: d.body_site.region,
                laterality: d.body_site.laterality,
                description: d.body_site.description.clone(),
                snomed_ct_code: d.body_site.snomed_ct_code.clone(),
            }),
            aetiology: d.aetiology as i32,
            pressure_ulcer_stage: d.pressure_ulcer_stage,
            aetiology_details: d.aetiology_details.clone(),
            onset_date: d.onset_date.clone(),
            planned_assessment_interval_days: i32::try_from(d.interval_days).unwrap_or(0),
        }),
        referring_doctor_subject: w.referring_doctor.clone(),
        care_team_nurse_subjects: w.nurses.clone(),
        status: match w.status {
            WoundStatus::Open => pb::WoundStatus::Open,
            WoundStatus::Closed => pb::WoundStatus::Closed,
        } as i32,
        closure: w.closure.as_ref().map(|c| pb::WoundClosure {
            reason: c.reason as i32,
            comment: c.comment.clone(),
            closed_by: Some(c.by.to_proto()),
            closed_at: Some(timestamp(c.at)),
        }),
        episode: i32::try_from(w.episode).unwrap_or(i32::MAX),
        baseline_assessment_id: w.baseline_assessment_id.clone().unwrap_or_default(),
        last_assessment_id: w.last_assessment_id.clone().unwrap_or_default(),
        last_assessed_at: w.last_assessed_at.map(timestamp),
        next_assessment_due_at: w.next_due_at.map(timestamp),
        assessment_overdue: w.overdue(now),
        open_alert_count: i32::try_from(w.open_alert_count).unwrap_or(i32::MAX),
        registered_at: Some(timestamp(w.registered_at)),
        registered_by: Some(w.registered_by.to_proto()),
        updated_at: Some(timestamp(w.updated_at)),
        version: w.version,
        consent_id: w.consent_id.clone().unwrap_or_default(),
    }
}

fn cm(mm: i64) -> f64 {
    mm as f64 / 10.0
}

fn areas(length_mm: i64, width_mm: i64) -> Vec<pb::AreaEstimate> {
    [AreaMethod::Rectangle, AreaMethod::Ellipse]
        .into_iter()
        .map(|method| pb::AreaEstimate {
            method: method as i32,
            area_cm2: scoring::area_cm2(method, length_mm, width_mm),
        })
        .collect()
}

fn push(score: &scoring::Push) -> pb::PushScore {
    pb::PushScore {
        area_subscore: score.area,
        exudate_subscore: score.exudate,
        tissue_subscore: score.tissue,
        total: score.total,
        // Whole mm² / 100: at most two decimals, as the contract's areas.
        scored_area_cm2: score.scored_area_mm2 as f64 / 100.0,
    }
}

/// An assessment version of the contract. Photos carry their image id; the image pipeline
/// completes their information where it is available.
pub fn assessment(view: &AssessmentView) -> pb::Assessment {
    let v = &view.version;
    let m = &v.measurements;
    pb::Assessment {
        assessment_id: v.assessment_id.clone(),
        version: i32::try_from(v.version).unwrap_or(i32::MAX),
        current: v.current,
        wound_id: v.wound_id.clone(),
        episode: i32::try_from(v.episode).unwrap_or(i32::MAX),
        measurements: Some(pb::AssessmentMeasurements {
            assessed_at: Some(timestamp(m.assessed_at)),
            length_cm: cm(m.length_mm),
            width_cm: cm(m.width_mm),
            depth_cm: m.depth_mm.map(cm),
            tissue_type: m.tissue as i32,
            exudate: m.exudate as i32,
            pain_score: m.pain_score.and_then(|p| i32::try_from(p).ok()),
            infection_signs: m.infection_signs.clone(),
            notes: m.notes.clone(),
            photo_image_ids: m.photo_image_ids.clone(),
        }),
        photos: m
            .photo_image_ids
            .iter()
            .map(|id| pb::ImageInfo {
                image_id: id.clone(),
                ..pb::ImageInfo::default()
            })
            .collect(),
        areas: areas(m.length_mm, m.width_mm),
        push: Some(push(&view.push)),
        baseline: view.figures.baseline,
        percent_area_reduction_from_baseline: view.figures.from_baseline,
        percent_area_reduction_last_4_weeks: view.figures.four_weeks.as_ref().map(|(_, p)| *p),
        four_week_reference_assessment_id: view
            .figures
            .four_weeks
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default(),
        recorded_at: Some(timestamp(v.recorded_at)),
        recorded_by: Some(v.recorded_by.to_proto()),
        correction_reason: v.correction_reason.clone(),
    }
}

/// An alert of the contract.
pub fn alert(a: &Alert) -> pb::Alert {
    let ack = a.acknowledgement.as_ref();
    pb::Alert {
        alert_id: a.id.clone(),
        wound_id: a.wound_id.clone(),
        patient: patient(&a.patient_pseudonym),
        cause: a.cause as i32,
        status: match a.status {
            AlertStatus::Open => pb::AlertStatus::Open,
            AlertStatus::Acknowledged => pb::AlertStatus::Acknowledged,
        } as i32,
        raised_at: Some(timestamp(a.raised_at)),
        recipient_doctor_subject: a.recipient_doctor.clone(),
        assessment_id: a.assessment_id.clone(),
        compared_assessment_id: a.compared_assessment_id.clone(),
        previous_value: a.previous_value,
        current_value: a.current_value,
        threshold: a.threshold,
        due_at: a.due_at.map(timestamp),
        summary: a.summary.clone(),
        acknowledged_by: ack.map(|k| k.by.to_proto()),
        acknowledged_at: ack.map(|k| timestamp(k.at)),
        acknowledgement_comment: ack.map(|k| k.comment.clone()).unwrap_or_default(),
    }
}

/// A wound trend of the contract.
pub fn trend(t: &Trend) -> pb::WoundTrend {
    pb::WoundTrend {
        wound_id: t.wound_id.clone(),
        area_method: t.area_method as i32,
        points: t
            .points
            .iter()
            .map(|(view, days)| {
                let v = &view.version;
                let m = &v.measurements;
                pb::TrendPoint {
                    assessment_id: v.assessment_id.clone(),
                    version: i32::try_from(v.version).unwrap_or(i32::MAX),
                    episode: i32::try_from(v.episode).unwrap_or(i32::MAX),
                    assessed_at: Some(timestamp(m.assessed_at)),
                    days_since_baseline: *days,
                    length_cm: cm(m.length_mm),
                    width_cm: cm(m.width_mm),
                    depth_cm: m.depth_mm.map(cm),
                    area_cm2: scoring::area_cm2(t.area_method, m.length_mm, m.width_mm),
                    areas: areas(m.length_mm, m.width_mm),
                    push: Some(push(&view.push)),
                    percent_area_reduction_from_baseline: view.figures.from_baseline,
                    tissue_type: m.tissue as i32,
                    exudate: m.exudate as i32,
                    pain_score: m.pain_score.and_then(|p| i32::try_from(p).ok()),
                    infection_signs_present: !m.infection_signs.is_empty(),
                    photo_count: i32::try_from(m.photo_image_ids.len()).unwrap_or(0),
                }
            })
            .collect(),
        truncated: t.truncated,
        baseline_assessment_id: t.baseline_assessment_id.clone(),
        percent_area_reduction_from_baseline: t.from_baseline,
        percent_area_reduction_last_4_weeks: t.four_weeks,
        area_change_cm2_per_week: t.area_change_per_week,
        healing_trend: t.healing_trend as i32,
    }
}

/// A wound summary of the contract.
pub fn summary(s: &WoundSummary, now: Timestamp) -> pb::WoundSummary {
    pb::WoundSummary {
        wound: Some(wound(&s.wound, now)),
        last_assessment: s.last_assessment.as_ref().map(assessment),
        open_alerts: s.open_alerts.iter().map(alert).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_infection_sign_bound_is_the_number_of_known_signs() {
        let known = (1..=i32::from(u8::MAX))
            .filter(|n| pb::InfectionSign::try_from(*n).is_ok())
            .count();
        assert_eq!(known, MAX_INFECTION_SIGNS, "one of each sign fits, no more");
    }

    #[test]
    fn overlong_lists_are_refused_naming_the_field_and_the_bound() {
        let cases: [(Result<()>, &str); 4] = [
            (
                wound_statuses(&[1; 11]).map(drop),
                "statuses: at most 10 statuses (got 11)",
            ),
            (
                alert_statuses(&[1; 11]).map(drop),
                "statuses: at most 10 statuses (got 11)",
            ),
            (
                nurses(&vec!["n".to_owned(); 11]).map(drop),
                "care_team_nurse_subjects: at most 10 nurses (got 11)",
            ),
            (
                measurements(Some(&pb::AssessmentMeasurements {
                    infection_signs: vec![1; 12],
                    ..Default::default()
                }))
                .map(drop),
                "measurements.infection_signs: at most 11 signs, each once (got 12)",
            ),
        ];
        for (result, expected) in cases {
            let error = result.expect_err(expected);
            assert_eq!(error.to_string(), expected);
        }
    }
}
