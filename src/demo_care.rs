//! The demo's care activity, seeded after its people and patients so that every screen of the web
//! client has something to show on a first start: the centre–hospital partnership, the doctor's
//! teleconsultation hours, today's appointments with the nurse (the first one can be started at
//! once), and a followed leg ulcer with four weekly assessments (a healing chart).

use std::net::SocketAddr;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use telehealth_kit::Settings;
use telehealth_proto::v1::{
    self as pb, directory_service_client::DirectoryServiceClient,
    scheduling_service_client::SchedulingServiceClient, wound_service_client::WoundServiceClient,
};

use crate::demo::{CENTRE, HOSPITAL, PEOPLE, channel};

const TIME_ZONE: &str = "Europe/Paris";

fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

/// Seeds the activity around `patients` (ids of the demo patients, in demo order).
pub async fn seed(
    settings: &Settings,
    gateway: SocketAddr,
    patients: &[String],
) -> anyhow::Result<()> {
    let doctor = &PEOPLE[0];
    let nurse = &PEOPLE[1];
    let centre_admin = &PEOPLE[2];
    let hospital_admin = &PEOPLE[6];

    // The centre may address tele-expertise requests to the hospital.
    DirectoryServiceClient::new(channel(settings, gateway, centre_admin).await?)
        .propose_partnership(pb::ProposePartnershipRequest {
            hospital_org_id: HOSPITAL.into(),
        })
        .await
        .context("demo partnership proposed")?;
    DirectoryServiceClient::new(channel(settings, gateway, hospital_admin).await?)
        .accept_partnership(pb::AcceptPartnershipRequest {
            centre_org_id: CENTRE.into(),
        })
        .await
        .context("demo partnership accepted")?;

    // Teleconsultation hours every day, all day: the demo works whenever it is started.
    let mut scheduling = SchedulingServiceClient::new(channel(settings, gateway, doctor).await?);
    scheduling
        .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
            practitioner_subject: doctor.subject.into(),
            time_zone: TIME_ZONE.into(),
            weekly_ranges: (1..=7)
                .map(|day| pb::WeeklyRange {
                    day,
                    start_local_time: "00:00".into(),
                    end_local_time: "24:00".into(),
                })
                .collect(),
            buffer_minutes: 0,
            expected_version: 0,
        })
        .await
        .context("demo availability")?;

    // Today: one in a few minutes (startable now), one later; tomorrow morning, one more.
    let now = Timestamp::now();
    let next = Timestamp::from_second((now.as_second() / 300 + 2) * 300)?;
    let paris = TimeZone::get(TIME_ZONE)?;
    let tomorrow = paris.to_datetime(now).date().tomorrow()?;
    let tomorrow_ten = paris
        .to_ambiguous_timestamp(tomorrow.at(10, 0, 0, 0))
        .compatible()?;
    let visits = [
        (
            next,
            0,
            "Suivi de l’ulcère de jambe, avec l’infirmière au domicile",
        ),
        (
            next + SignedDuration::from_mins(60),
            1,
            "Renouvellement de traitement",
        ),
        (tomorrow_ten, 2, "Lésion cutanée à surveiller"),
    ];
    for (start, patient, reason) in visits {
        scheduling
            .book_appointment(pb::BookAppointmentRequest {
                idempotency_key: format!("demo-appointment-{patient}"),
                doctor_subject: doctor.subject.into(),
                nurse_subject: nurse.subject.into(),
                patient: Some(pb::PatientRef {
                    pseudonym: patients[patient].clone(),
                }),
                start_time: Some(timestamp(start)),
                duration_minutes: 20,
                reason: reason.into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("demo appointment {reason}"))?;
    }

    // A venous leg ulcer of the first patient, assessed weekly by the nurse and healing.
    let onset = now - SignedDuration::from_hours(24 * 42);
    let wound = WoundServiceClient::new(channel(settings, gateway, doctor).await?)
        .register_wound(pb::RegisterWoundRequest {
            idempotency_key: "demo-wound".into(),
            patient: Some(pb::PatientRef {
                pseudonym: patients[0].clone(),
            }),
            description: Some(pb::WoundDescription {
                body_site: Some(pb::BodySite {
                    region: pb::BodyRegion::LowerLeg as i32,
                    laterality: pb::Laterality::Left as i32,
                    description: "face interne, au-dessus de la malléole".into(),
                    snomed_ct_code: String::new(),
                }),
                aetiology: pb::Aetiology::VenousLegUlcer as i32,
                onset_date: TimeZone::UTC.to_datetime(onset).date().to_string(),
                planned_assessment_interval_days: 7,
                ..Default::default()
            }),
            referring_doctor_subject: doctor.subject.into(),
            care_team_nurse_subjects: vec![nurse.subject.into()],
        })
        .await
        .context("demo wound")?
        .into_inner()
        .wound
        .context("the wound service answers the wound")?;
    let mut wounds = WoundServiceClient::new(channel(settings, gateway, nurse).await?);
    let weeks = [
        (28, 5.2, 3.8, 3),
        (21, 4.6, 3.4, 3),
        (14, 4.1, 2.9, 2),
        (7, 3.5, 2.4, 2),
    ];
    for (days_ago, length_cm, width_cm, tissue) in weeks {
        let tissue = match tissue {
            3 => pb::TissueType::Slough,
            _ => pb::TissueType::Granulation,
        };
        wounds
            .record_assessment(pb::RecordAssessmentRequest {
                idempotency_key: format!("demo-assessment-{days_ago}"),
                wound_id: wound.wound_id.clone(),
                measurements: Some(pb::AssessmentMeasurements {
                    assessed_at: Some(timestamp(now - SignedDuration::from_hours(24 * days_ago))),
                    length_cm,
                    width_cm,
                    depth_cm: None,
                    tissue_type: tissue as i32,
                    exudate: pb::ExudateAmount::Moderate as i32,
                    pain_score: Some(3),
                    infection_signs: Vec::new(),
                    notes: "données de démonstration".into(),
                    photo_image_ids: Vec::new(),
                }),
            })
            .await
            .context("demo assessment")?;
    }
    Ok(())
}
