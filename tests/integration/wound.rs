//! Wound monitoring through the real gateway (mTLS, tokens), on SQLite and on PostgreSQL.

use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use telehealth_kit::record::timestamp as ts;
use telehealth_proto::v1 as pb;
use telehealth_testkit::suite::{Backend, Person, Suite, Wounds, backends};
use tonic::{Code, Status};

const CENTRE: &str = "cds-gueret";
const OTHER_CENTRE: &str = "cds-aubusson";

/// Starts the suite (the overdue sweeper runs at start, then every minute: not during a test).
async fn start(backend: Backend) -> Option<Suite> {
    Suite::start(backend).await
}

/// Starts the suite with an overdue sweeper every second.
async fn start_sweeping(backend: Backend) -> Option<Suite> {
    Suite::start_with(backend, |settings| {
        settings.wound_rules.overdue_check_interval_seconds = 1;
    })
    .await
}

fn days_ago(days: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * days)
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn venous_ulcer() -> pb::WoundDescription {
    pb::WoundDescription {
        body_site: Some(pb::BodySite {
            region: pb::BodyRegion::LowerLeg as i32,
            laterality: pb::Laterality::Left as i32,
            description: "face interne, au-dessus de la malléole".into(),
            snomed_ct_code: String::new(),
        }),
        aetiology: pb::Aetiology::VenousLegUlcer as i32,
        pressure_ulcer_stage: 0,
        aetiology_details: String::new(),
        onset_date: "2024-01-15".into(),
        planned_assessment_interval_days: 7,
    }
}

/// `doctor` registers a venous leg ulcer of `patient` followed by `nurses`.
pub(crate) async fn register(doctor: &mut Wounds, patient: &str, nurses: &[&Person]) -> pb::Wound {
    doctor
        .register_wound(pb::RegisterWoundRequest {
            idempotency_key: key(),
            patient: Some(pb::PatientRef {
                pseudonym: patient.into(),
            }),
            description: Some(venous_ulcer()),
            referring_doctor_subject: String::new(),
            care_team_nurse_subjects: nurses.iter().map(|n| n.subject.to_owned()).collect(),
        })
        .await
        .expect("wound registered")
        .into_inner()
        .wound
        .expect("wound")
}

/// Measurements `days` days ago: granulation, light exudate, nothing else.
pub(crate) fn measured(days: i64, length_cm: f64, width_cm: f64) -> pb::AssessmentMeasurements {
    pb::AssessmentMeasurements {
        assessed_at: Some(ts(days_ago(days))),
        length_cm,
        width_cm,
        depth_cm: Some(0.3),
        tissue_type: pb::TissueType::Granulation as i32,
        exudate: pb::ExudateAmount::Light as i32,
        pain_score: Some(2),
        infection_signs: Vec::new(),
        notes: "pansement hydrocolloïde".into(),
        photo_image_ids: Vec::new(),
    }
}

pub(crate) async fn record(
    nurse: &mut Wounds,
    wound_id: &str,
    measurements: pb::AssessmentMeasurements,
) -> Result<pb::RecordAssessmentResponse, Status> {
    nurse
        .record_assessment(pb::RecordAssessmentRequest {
            idempotency_key: key(),
            wound_id: wound_id.into(),
            measurements: Some(measurements),
        })
        .await
        .map(|r| r.into_inner())
}

fn area(assessment: &pb::Assessment, method: pb::AreaMethod) -> f64 {
    assessment
        .areas
        .iter()
        .find(|a| a.method == method as i32)
        .map(|a| a.area_cm2)
        .expect("area by this method")
}

fn causes(alerts: &[pb::Alert]) -> Vec<pb::AlertCause> {
    alerts
        .iter()
        .map(|a| pb::AlertCause::try_from(a.cause).expect("known cause"))
        .collect()
}

async fn all_alerts(client: &mut Wounds, wound_id: &str) -> Vec<pb::Alert> {
    client
        .list_alerts(pb::ListAlertsRequest {
            wound_id: wound_id.into(),
            statuses: Vec::new(),
            page_size: 200,
            page_token: String::new(),
        })
        .await
        .expect("alerts listed")
        .into_inner()
        .alerts
}

/// The next alert event of a watch stream (heartbeats skipped), within 10 seconds.
async fn next_event(
    stream: &mut tonic::Streaming<pb::WatchAlertsResponse>,
) -> Option<pb::AlertEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .ok()??
            .ok()?;
        if let Some(pb::watch_alerts_response::Payload::Event(event)) = message.payload {
            return Some(event);
        }
    }
}

#[tokio::test]
async fn push_scores_computed_through_the_gateway_follow_the_published_table() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            return;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        // (length, width, tissue, exudate, expected area sub-score, total, why)
        let cases = [
            (
                0.8,
                0.8,
                pb::TissueType::Granulation,
                pb::ExudateAmount::Light,
                3,
                6,
                "0.64 cm² is above 0.6",
            ),
            (
                1.3,
                0.5,
                pb::TissueType::Granulation,
                pb::ExudateAmount::Light,
                3,
                6,
                "0.65 cm² is above 0.6",
            ),
            (
                2.6,
                0.4,
                pb::TissueType::Slough,
                pb::ExudateAmount::None,
                4,
                7,
                "1.04 cm² is above 1.0",
            ),
            (
                2.1,
                0.5,
                pb::TissueType::Necrotic,
                pb::ExudateAmount::Heavy,
                4,
                11,
                "1.05 cm² is above 1.0",
            ),
            (
                4.9,
                4.9,
                pb::TissueType::Epithelial,
                pb::ExudateAmount::Moderate,
                10,
                13,
                "24.01 cm² is > 24.0 (not rounded down to 24.0)",
            ),
            (
                3.7,
                6.5,
                pb::TissueType::Granulation,
                pb::ExudateAmount::Moderate,
                10,
                14,
                "24.05 cm² is > 24.0",
            ),
            (
                0.5,
                0.5,
                pb::TissueType::Granulation,
                pb::ExudateAmount::None,
                1,
                3,
                "0.25 cm² is < 0.3 (not rounded up to 0.3)",
            ),
            (
                4.8,
                5.0,
                pb::TissueType::Granulation,
                pb::ExudateAmount::None,
                9,
                11,
                "24.00 cm²: upper edge of 12.1–24.0",
            ),
            (
                0.0,
                0.0,
                pb::TissueType::Closed,
                pb::ExudateAmount::None,
                0,
                0,
                "healed",
            ),
        ];
        for (i, (length, width, tissue, exudate, area_score, total, why)) in
            cases.into_iter().enumerate()
        {
            let mut m = measured(30 - i as i64, length, width);
            m.tissue_type = tissue as i32;
            m.exudate = exudate as i32;
            let push = record(&mut nu, &wound.wound_id, m)
                .await
                .expect("recorded")
                .assessment
                .expect("assessment")
                .push
                .expect("push score");
            assert_eq!(push.area_subscore, area_score, "{why}: area sub-score");
            assert_eq!(push.total, total, "{why}: total");
            assert!(
                (push.scored_area_cm2 - length * width).abs() < 1e-9,
                "{why}: the exact area is scored ({})",
                push.scored_area_cm2
            );
            assert_eq!(
                push.area_subscore + push.exudate_subscore + push.tissue_subscore,
                push.total,
                "{why}: the total adds up"
            );
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_scripted_series_gives_areas_reductions_and_raises_each_alert_cause_once() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let id = wound.wound_id.clone();

        // The doctor watches before anything happens.
        let mut watch = dr
            .watch_alerts(pb::WatchAlertsRequest {
                wound_id: String::new(),
            })
            .await
            .expect("watching")
            .into_inner();
        let ready = watch.next().await.expect("first message").expect("ok");
        assert!(matches!(
            ready.payload,
            Some(pb::watch_alerts_response::Payload::Ready(_))
        ));

        // Baseline, 40 days ago: 5.0 × 4.0 = 20 cm².
        let baseline = record(&mut nu, &id, measured(40, 5.0, 4.0))
            .await
            .expect("baseline");
        let base = baseline.assessment.expect("assessment");
        assert!(base.baseline && base.percent_area_reduction_from_baseline.is_none());
        assert_eq!(area(&base, pb::AreaMethod::Rectangle), 20.0);
        assert_eq!(area(&base, pb::AreaMethod::Ellipse), 15.71, "π/4 × 20");
        assert!(baseline.raised_alerts.is_empty(), "nothing to compare with");

        // +10 % area: AREA_INCREASE.
        let grown = record(&mut nu, &id, measured(33, 5.0, 4.4))
            .await
            .expect("second");
        assert_eq!(
            causes(&grown.raised_alerts),
            vec![pb::AlertCause::AreaIncrease]
        );
        let grown_assessment = grown.assessment.expect("assessment");
        assert_eq!(
            grown_assessment.percent_area_reduction_from_baseline,
            Some(-10.0)
        );
        let event = next_event(&mut watch)
            .await
            .expect("the doctor hears of it");
        assert_eq!(event.kind, pb::AlertEventKind::Raised as i32);
        assert_eq!(
            event.alert.as_ref().map(|a| a.cause),
            Some(pb::AlertCause::AreaIncrease as i32)
        );

        // Exudate heavy: PUSH 12 → 14 (+2): PUSH_INCREASE.
        let mut wetter = measured(26, 4.5, 4.0);
        wetter.exudate = pb::ExudateAmount::Heavy as i32;
        let wetter = record(&mut nu, &id, wetter).await.expect("third");
        assert_eq!(
            causes(&wetter.raised_alerts),
            vec![pb::AlertCause::PushIncrease]
        );

        // Infection signs.
        let mut infected = measured(19, 4.5, 3.6);
        infected.exudate = pb::ExudateAmount::Moderate as i32;
        infected.infection_signs = vec![
            pb::InfectionSign::SpreadingErythema as i32,
            pb::InfectionSign::PurulentDischarge as i32,
        ];
        let infected = record(&mut nu, &id, infected).await.expect("fourth");
        assert_eq!(
            causes(&infected.raised_alerts),
            vec![pb::AlertCause::InfectionSigns]
        );
        let infected_assessment = infected.assessment.expect("assessment");

        // 28 days after the baseline: 16 cm², 20 % reduction < 40 %: INSUFFICIENT_REDUCTION.
        let mut slow = measured(12, 4.0, 4.0);
        slow.exudate = pb::ExudateAmount::Moderate as i32;
        let slow = record(&mut nu, &id, slow).await.expect("fifth");
        assert_eq!(
            causes(&slow.raised_alerts),
            vec![pb::AlertCause::InsufficientReduction]
        );
        let slow_assessment = slow.assessment.expect("assessment");
        assert_eq!(
            slow_assessment.percent_area_reduction_from_baseline,
            Some(20.0)
        );
        assert_eq!(
            slow_assessment.percent_area_reduction_last_4_weeks,
            Some(20.0),
            "the reference 28 days before is the baseline"
        );
        assert_eq!(
            slow_assessment.four_week_reference_assessment_id,
            base.assessment_id
        );

        // Still slow a week later, infection signs again: INFECTION_SIGNS for this visit only,
        // no second INSUFFICIENT_REDUCTION in the episode.
        let mut still = measured(5, 4.0, 3.8);
        still.exudate = pb::ExudateAmount::Moderate as i32;
        still.infection_signs = vec![pb::InfectionSign::Warmth as i32];
        let still = record(&mut nu, &id, still).await.expect("sixth");
        assert_eq!(
            causes(&still.raised_alerts),
            vec![pb::AlertCause::InfectionSigns]
        );
        let latest = still.assessment.expect("assessment");
        assert_eq!(latest.percent_area_reduction_from_baseline, Some(24.0));
        assert_eq!(
            latest.percent_area_reduction_last_4_weeks,
            Some(30.9),
            "against the assessment 28 days before (22 cm² → 15.2 cm²)"
        );

        // Correcting the infected assessment does not raise its alert again.
        let mut corrected = measured(19, 4.5, 3.5);
        corrected.exudate = pb::ExudateAmount::Moderate as i32;
        corrected.infection_signs = vec![pb::InfectionSign::SpreadingErythema as i32];
        let correction = nu
            .correct_assessment(pb::CorrectAssessmentRequest {
                assessment_id: infected_assessment.assessment_id.clone(),
                measurements: Some(corrected),
                correction_reason: "largeur mal reportée".into(),
                expected_version: 1,
            })
            .await
            .expect("corrected")
            .into_inner();
        assert!(
            correction.raised_alerts.is_empty(),
            "{:?}",
            correction.raised_alerts
        );

        let alerts = all_alerts(&mut dr, &id).await;
        let mut seen = causes(&alerts);
        seen.sort_by_key(|c| *c as i32);
        assert_eq!(
            seen,
            vec![
                pb::AlertCause::AreaIncrease,
                pb::AlertCause::PushIncrease,
                pb::AlertCause::InfectionSigns,
                pb::AlertCause::InfectionSigns,
                pb::AlertCause::InsufficientReduction,
            ],
            "{backend:?}: each cause once per occurrence"
        );
        assert!(
            alerts
                .iter()
                .all(|a| a.recipient_doctor_subject == doctor.subject)
        );

        // The trend: six points oldest first, the latest figures, improving (area −31 % over the
        // last four weeks, PUSH +1 only).
        let trend = dr
            .get_wound_trend(pb::GetWoundTrendRequest {
                wound_id: id.clone(),
                area_method: pb::AreaMethod::Ellipse as i32,
                range: None,
                all_episodes: false,
            })
            .await
            .expect("trend")
            .into_inner()
            .trend
            .expect("trend");
        assert_eq!(trend.points.len(), 6);
        assert_eq!(trend.baseline_assessment_id, base.assessment_id);
        assert_eq!(
            trend.points[0].area_cm2, 15.71,
            "areas by the requested method"
        );
        assert_eq!(trend.percent_area_reduction_from_baseline, Some(24.0));
        assert_eq!(trend.percent_area_reduction_last_4_weeks, Some(30.9));
        assert_eq!(trend.healing_trend, pb::HealingTrend::Improving as i32);
        assert!(trend.area_change_cm2_per_week.is_some_and(|s| s < 0.0));
        assert!(
            trend
                .points
                .windows(2)
                .all(|p| p[0].days_since_baseline < p[1].days_since_baseline)
        );

        // The doctor acknowledges the area alert; a retry changes nothing.
        let area_alert = alerts
            .iter()
            .find(|a| a.cause == pb::AlertCause::AreaIncrease as i32)
            .expect("area alert");
        let acknowledge = pb::AcknowledgeAlertRequest {
            alert_id: area_alert.alert_id.clone(),
            comment: "compression renforcée, revoir dans 7 jours".into(),
        };
        let acked = dr
            .acknowledge_alert(acknowledge.clone())
            .await
            .expect("acknowledged")
            .into_inner()
            .alert
            .expect("alert");
        assert_eq!(acked.status, pb::AlertStatus::Acknowledged as i32);
        assert_eq!(acked.acknowledgement_comment, acknowledge.comment);
        assert_eq!(
            acked.acknowledged_by.as_ref().map(|a| a.subject.as_str()),
            Some(doctor.subject)
        );
        let again = dr
            .acknowledge_alert(acknowledge)
            .await
            .expect("a retry is fine")
            .into_inner()
            .alert
            .expect("alert");
        assert_eq!(again.acknowledged_at, acked.acknowledged_at, "unchanged");
        let open = dr
            .list_alerts(pb::ListAlertsRequest {
                wound_id: String::new(),
                statuses: vec![pb::AlertStatus::Open as i32],
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("open alerts")
            .into_inner()
            .alerts;
        assert_eq!(
            open.len(),
            4,
            "{backend:?}: the acknowledged one is no longer open"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_overdue_assessment_raises_one_alert_per_missed_due_date() {
    for backend in backends().await {
        let Some(suite) = start_sweeping(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        // Last visit 8 days ago with a 7-day interval: due yesterday.
        record(&mut nu, &wound.wound_id, measured(8, 3.0, 2.0))
            .await
            .expect("recorded");
        let mut overdue = Vec::new();
        for _ in 0..100 {
            overdue = all_alerts(&mut dr, &wound.wound_id).await;
            if !overdue.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(causes(&overdue), vec![pb::AlertCause::AssessmentOverdue]);
        assert!(overdue[0].due_at.is_some() && overdue[0].assessment_id.is_empty());
        // More sweeps pass: still one.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            all_alerts(&mut dr, &wound.wound_id).await.len(),
            1,
            "{backend:?}"
        );
        let got = dr
            .get_wound(pb::GetWoundRequest {
                wound_id: wound.wound_id.clone(),
            })
            .await
            .expect("wound")
            .into_inner()
            .wound
            .expect("wound");
        assert!(got.assessment_overdue && got.open_alert_count == 1);
        // A visit today moves the due date: no new alert.
        record(&mut nu, &wound.wound_id, measured(0, 3.0, 2.0))
            .await
            .expect("recorded");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            all_alerts(&mut dr, &wound.wound_id).await.len(),
            1,
            "{backend:?}"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn only_the_care_team_the_referring_doctor_and_the_centre_see_a_wound() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let colleague = Person::doctor("dr-bernard", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let outsider_nurse = Person::nurse("nurse-odile", CENTRE);
        let far_doctor = Person::doctor("dr-dupont", OTHER_CENTRE);
        let specialist = Person::specialist("dr-derm", "chu-limoges");
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let id = wound.wound_id.clone();
        let assessment = record(&mut nu, &id, measured(3, 2.0, 1.0))
            .await
            .expect("recorded")
            .assessment
            .expect("assessment");

        let get = |id: String| pb::GetWoundRequest { wound_id: id };
        let missing = dr
            .get_wound(get(uuid::Uuid::new_v4().to_string()))
            .await
            .expect_err("no such wound");
        assert_eq!(missing.code(), Code::NotFound);

        // A nurse outside the care team and a doctor of another centre: exactly as missing.
        for stranger in [&outsider_nurse, &far_doctor] {
            let mut client = suite.wounds(stranger).await;
            let refused = client.get_wound(get(id.clone())).await.expect_err("hidden");
            assert_eq!(
                (refused.code(), refused.message()),
                (missing.code(), missing.message()),
                "{backend:?}: {} learns nothing",
                stranger.subject
            );
            let trend = client
                .get_wound_trend(pb::GetWoundTrendRequest {
                    wound_id: id.clone(),
                    ..Default::default()
                })
                .await
                .expect_err("hidden");
            assert_eq!(trend.code(), Code::NotFound);
            let one = client
                .get_assessment(pb::GetAssessmentRequest {
                    assessment_id: assessment.assessment_id.clone(),
                    version: 0,
                })
                .await
                .expect_err("hidden");
            assert_eq!(one.code(), Code::NotFound);
            let listed = client
                .list_alerts(pb::ListAlertsRequest {
                    wound_id: id.clone(),
                    ..Default::default()
                })
                .await
                .expect_err("hidden");
            assert_eq!(listed.code(), Code::NotFound);
        }
        let mut outsider = suite.wounds(&outsider_nurse).await;
        let refused = record(&mut outsider, &id, measured(1, 2.0, 1.0))
            .await
            .expect_err("not her patient");
        assert_eq!(refused.code(), Code::NotFound);
        let round = outsider
            .list_nurse_round(pb::ListNurseRoundRequest::default())
            .await
            .expect("her round")
            .into_inner();
        assert!(round.wounds.is_empty(), "not in her round");
        let mut far = suite.wounds(&far_doctor).await;
        let org_list = far
            .list_doctor_wounds(pb::ListDoctorWoundsRequest {
                whole_org: true,
                ..Default::default()
            })
            .await
            .expect("his centre's wounds")
            .into_inner();
        assert!(
            org_list.wounds.is_empty(),
            "another centre's wounds are not listed"
        );

        // A doctor of the same centre reads but does not change.
        let mut peer = suite.wounds(&colleague).await;
        peer.get_wound(get(id.clone()))
            .await
            .expect("same centre reads");
        let update = peer
            .update_wound(pb::UpdateWoundRequest {
                wound_id: id.clone(),
                description: Some(venous_ulcer()),
                expected_version: 0,
            })
            .await
            .expect_err("read only");
        assert_eq!(update.code(), Code::PermissionDenied);
        let alerts = all_alerts(&mut dr, &id).await;
        assert!(alerts.is_empty());

        // A specialist is not let in by the gateway.
        let mut derm = suite.wounds(&specialist).await;
        let status = derm.get_wound(get(id.clone())).await.expect_err("not his");
        assert_eq!(status.code(), Code::PermissionDenied);

        // A nurse of the care team may not hand the wound to another doctor.
        let handover = nu
            .update_care_team(pb::UpdateCareTeamRequest {
                wound_id: id.clone(),
                referring_doctor_subject: colleague.subject.into(),
                care_team_nurse_subjects: vec![nurse.subject.into()],
                expected_version: 0,
            })
            .await
            .expect_err("nurses keep the doctor");
        assert_eq!(handover.code(), Code::PermissionDenied);
        // She may add a colleague, who then sees the wound.
        nu.update_care_team(pb::UpdateCareTeamRequest {
            wound_id: id.clone(),
            referring_doctor_subject: String::new(),
            care_team_nurse_subjects: vec![nurse.subject.into(), outsider_nurse.subject.into()],
            expected_version: wound.version,
        })
        .await
        .expect("care team updated");
        outsider
            .get_wound(get(id.clone()))
            .await
            .expect("now in the team");
        suite.stop().await;
    }
}

#[tokio::test]
async fn acknowledging_an_alert_is_for_its_referring_doctor_with_a_comment() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            return;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let colleague = Person::doctor("dr-bernard", CENTRE);
        let far_doctor = Person::doctor("dr-dupont", OTHER_CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let mut infected = measured(1, 3.0, 2.0);
        infected.infection_signs = vec![pb::InfectionSign::Fever as i32];
        let alert = record(&mut nu, &wound.wound_id, infected)
            .await
            .expect("recorded")
            .raised_alerts
            .pop()
            .expect("infection alert");
        let request = |comment: &str| pb::AcknowledgeAlertRequest {
            alert_id: alert.alert_id.clone(),
            comment: comment.into(),
        };
        let cases = [
            (
                &nurse,
                "vu",
                Code::PermissionDenied,
                "nurses do not acknowledge (gateway)",
            ),
            (
                &colleague,
                "vu",
                Code::PermissionDenied,
                "a read-only doctor of the centre",
            ),
            (
                &far_doctor,
                "vu",
                Code::NotFound,
                "a doctor of another centre",
            ),
            (&doctor, "", Code::InvalidArgument, "an empty comment"),
        ];
        for (person, comment, code, why) in cases {
            let mut client = suite.wounds(person).await;
            let status = client
                .acknowledge_alert(request(comment))
                .await
                .expect_err(why);
            assert_eq!(status.code(), code, "{why}: {status:?}");
        }
        let acked = dr
            .acknowledge_alert(request("antibiothérapie débutée"))
            .await
            .expect("acknowledged")
            .into_inner()
            .alert
            .expect("alert");
        assert_eq!(acked.status, pb::AlertStatus::Acknowledged as i32);
        let wound = dr
            .get_wound(pb::GetWoundRequest {
                wound_id: wound.wound_id.clone(),
            })
            .await
            .expect("wound")
            .into_inner()
            .wound
            .expect("wound");
        assert_eq!(wound.open_alert_count, 0);
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_correction_is_a_new_version_and_the_original_stays_in_history() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let first = record(&mut nu, &wound.wound_id, measured(2, 3.0, 2.0))
            .await
            .expect("recorded")
            .assessment
            .expect("assessment");
        let correct = |expected_version: i32, reason: &str| pb::CorrectAssessmentRequest {
            assessment_id: first.assessment_id.clone(),
            measurements: Some(measured(2, 3.0, 1.5)),
            correction_reason: reason.into(),
            expected_version,
        };
        let no_reason = nu
            .correct_assessment(correct(1, ""))
            .await
            .expect_err("why?");
        assert_eq!(no_reason.code(), Code::InvalidArgument);
        let second = nu
            .correct_assessment(correct(1, "largeur mesurée avant détersion"))
            .await
            .expect("corrected")
            .into_inner()
            .assessment
            .expect("assessment");
        assert_eq!((second.version, second.current), (2, true));
        assert_eq!(area(&second, pb::AreaMethod::Rectangle), 4.5);
        let stale = nu
            .correct_assessment(correct(1, "encore"))
            .await
            .expect_err("version 1 is no longer current");
        assert_eq!(stale.code(), Code::Aborted);

        let original = dr
            .get_assessment(pb::GetAssessmentRequest {
                assessment_id: first.assessment_id.clone(),
                version: 1,
            })
            .await
            .expect("version 1")
            .into_inner()
            .assessment
            .expect("assessment");
        assert!(!original.current);
        assert_eq!(
            area(&original, pb::AreaMethod::Rectangle),
            6.0,
            "kept as recorded"
        );
        let history = dr
            .list_assessment_versions(pb::ListAssessmentVersionsRequest {
                assessment_id: first.assessment_id.clone(),
                page_size: 1,
                page_token: String::new(),
            })
            .await
            .expect("history")
            .into_inner();
        assert_eq!(history.versions.len(), 1);
        assert_eq!(history.versions[0].version, 1);
        let rest = dr
            .list_assessment_versions(pb::ListAssessmentVersionsRequest {
                assessment_id: first.assessment_id.clone(),
                page_size: 1,
                page_token: history.next_page_token,
            })
            .await
            .expect("history")
            .into_inner();
        assert_eq!(rest.versions.len(), 1);
        assert_eq!(rest.versions[0].version, 2);
        assert_eq!(
            rest.versions[0].correction_reason,
            "largeur mesurée avant détersion"
        );
        let listed = dr
            .list_assessments(pb::ListAssessmentsRequest {
                wound_id: wound.wound_id.clone(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .assessments;
        assert_eq!(
            listed.len(),
            1,
            "{backend:?}: one assessment, current version"
        );
        assert_eq!(listed[0].version, 2);
        suite.stop().await;
    }
}

#[tokio::test]
async fn every_repeated_field_is_bounded_and_checked_before_any_work() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            return;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        // Ids of records that do not exist: the bound is checked before anything is looked up.
        let nowhere = uuid::Uuid::new_v4().to_string();
        let eleven_nurses: Vec<String> = (0..11).map(|i| format!("nurse-{i}")).collect();
        let signs = |n: usize| -> Vec<i32> { (0..n).map(|i| 1 + (i % 11) as i32).collect() };
        let with = |change: &dyn Fn(&mut pb::AssessmentMeasurements)| {
            let mut m = measured(1, 3.0, 2.0);
            change(&mut m);
            m
        };
        let expect_bound = |result: Result<(), Status>, why: &str, message: &str| {
            let status = result.expect_err(why);
            assert_eq!(status.code(), Code::InvalidArgument, "{why}: {status:?}");
            assert_eq!(status.message(), message, "{why}");
        };

        let result = dr
            .register_wound(pb::RegisterWoundRequest {
                idempotency_key: key(),
                patient: Some(pb::PatientRef {
                    pseudonym: "pat-bounds-2".into(),
                }),
                description: Some(venous_ulcer()),
                referring_doctor_subject: String::new(),
                care_team_nurse_subjects: eleven_nurses.clone(),
            })
            .await
            .map(drop);
        expect_bound(
            result,
            "eleven nurses at registration",
            "care_team_nurse_subjects: at most 10 nurses (got 11)",
        );
        let result = dr
            .update_care_team(pb::UpdateCareTeamRequest {
                wound_id: nowhere.clone(),
                referring_doctor_subject: String::new(),
                care_team_nurse_subjects: eleven_nurses,
                expected_version: 0,
            })
            .await
            .map(drop);
        expect_bound(
            result,
            "eleven nurses in a new care team",
            "care_team_nurse_subjects: at most 10 nurses (got 11)",
        );
        let result = record(&mut nu, &nowhere, with(&|m| m.infection_signs = signs(12)))
            .await
            .map(drop);
        expect_bound(
            result,
            "twelve infection signs",
            "measurements.infection_signs: at most 11 signs, each once (got 12)",
        );
        let result = record(
            &mut nu,
            &nowhere,
            with(&|m| {
                m.photo_image_ids = (0..21).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            }),
        )
        .await
        .map(drop);
        expect_bound(
            result,
            "twenty-one photos",
            "measurements.photo_image_ids: at most 20 photos (got 21)",
        );
        let result = nu
            .correct_assessment(pb::CorrectAssessmentRequest {
                assessment_id: nowhere.clone(),
                measurements: Some(with(&|m| m.infection_signs = signs(10_000))),
                correction_reason: "signes d'infection".into(),
                expected_version: 0,
            })
            .await
            .map(drop);
        expect_bound(
            result,
            "ten thousand infection signs (within the message limit) in a correction",
            "measurements.infection_signs: at most 11 signs, each once (got 10000)",
        );
        let result = dr
            .list_alerts(pb::ListAlertsRequest {
                wound_id: nowhere.clone(),
                statuses: vec![pb::AlertStatus::Open as i32; 11],
                page_size: 0,
                page_token: "not a token".into(),
            })
            .await
            .map(drop);
        expect_bound(
            result,
            "eleven alert statuses",
            "statuses: at most 10 statuses (got 11)",
        );
        let result = dr
            .list_doctor_wounds(pb::ListDoctorWoundsRequest {
                statuses: vec![pb::WoundStatus::Open as i32; 11],
                ..Default::default()
            })
            .await
            .map(drop);
        expect_bound(
            result,
            "eleven wound statuses",
            "statuses: at most 10 statuses (got 11)",
        );

        // At the bounds, everything is accepted: each of the 11 signs once, 10 statuses.
        let recorded = record(
            &mut nu,
            &wound.wound_id,
            with(&|m| m.infection_signs = signs(11)),
        )
        .await
        .expect("every infection sign once");
        assert_eq!(
            recorded
                .assessment
                .expect("assessment")
                .measurements
                .expect("measurements")
                .infection_signs
                .len(),
            11
        );
        dr.list_alerts(pb::ListAlertsRequest {
            statuses: vec![pb::AlertStatus::Open as i32; 10],
            ..Default::default()
        })
        .await
        .expect("ten alert statuses");
        dr.list_doctor_wounds(pb::ListDoctorWoundsRequest {
            statuses: vec![pb::WoundStatus::Open as i32; 10],
            ..Default::default()
        })
        .await
        .expect("ten wound statuses");
        suite.stop().await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_invalid_argument_and_writes_nothing() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let spoil = |change: fn(&mut pb::AssessmentMeasurements)| {
            let mut m = measured(1, 3.0, 2.0);
            change(&mut m);
            m
        };
        let cases: Vec<(&str, pb::AssessmentMeasurements)> = vec![
            ("negative length", spoil(|m| m.length_cm = -1.0)),
            ("absurd width", spoil(|m| m.width_cm = 100.5)),
            ("not a number", spoil(|m| m.length_cm = f64::NAN)),
            ("absurd depth", spoil(|m| m.depth_cm = Some(31.0))),
            ("zero width of an open wound", spoil(|m| m.width_cm = 0.0)),
            ("pain 11", spoil(|m| m.pain_score = Some(11))),
            ("unknown tissue", spoil(|m| m.tissue_type = 99)),
            ("no tissue", spoil(|m| m.tissue_type = 0)),
            ("unknown exudate", spoil(|m| m.exudate = 42)),
            (
                "unknown infection sign",
                spoil(|m| m.infection_signs = vec![77]),
            ),
            (
                "duplicate infection sign",
                spoil(|m| m.infection_signs = vec![1, 1]),
            ),
            (
                "in the future",
                spoil(|m| {
                    m.assessed_at = Some(ts(Timestamp::now() + SignedDuration::from_hours(1)))
                }),
            ),
            (
                "before the onset",
                spoil(|m| {
                    m.assessed_at = Some(ts("2023-06-01T10:00:00Z".parse().expect("instant")))
                }),
            ),
            ("no date", spoil(|m| m.assessed_at = None)),
            ("notes too long", spoil(|m| m.notes = "x".repeat(4001))),
            (
                "a photo that is not an upload of this wound",
                spoil(|m| m.photo_image_ids = vec![uuid::Uuid::new_v4().to_string()]),
            ),
            (
                "a malformed photo id",
                spoil(|m| m.photo_image_ids = vec!["photo.jpg".into()]),
            ),
        ];
        for (why, measurements) in cases {
            let status = record(&mut nu, &wound.wound_id, measurements)
                .await
                .expect_err(why);
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{backend:?} {why}: {status:?}"
            );
            assert!(!status.message().is_empty(), "{why}: a message to act on");
        }
        let listed = nu
            .list_assessments(pb::ListAssessmentsRequest {
                wound_id: wound.wound_id.clone(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .assessments;
        assert!(listed.is_empty(), "{backend:?}: nothing was written");
        assert!(all_alerts(&mut dr, &wound.wound_id).await.is_empty());

        // Registrations.
        let description = |change: fn(&mut pb::WoundDescription)| {
            let mut d = venous_ulcer();
            change(&mut d);
            d
        };
        let registrations = [
            (
                "a pressure ulcer without stage",
                description(|d| d.aetiology = pb::Aetiology::PressureUlcer as i32),
            ),
            (
                "a stage for a venous ulcer",
                description(|d| d.pressure_ulcer_stage = 2),
            ),
            (
                "OTHER without details",
                description(|d| d.aetiology = pb::Aetiology::Other as i32),
            ),
            (
                "an interval of 91 days",
                description(|d| d.planned_assessment_interval_days = 91),
            ),
            (
                "an onset in the future",
                description(|d| d.onset_date = "2999-01-01".into()),
            ),
            (
                "a malformed onset",
                description(|d| d.onset_date = "15/01/2024".into()),
            ),
            ("no body site", description(|d| d.body_site = None)),
        ];
        for (why, d) in registrations {
            let status = dr
                .register_wound(pb::RegisterWoundRequest {
                    idempotency_key: key(),
                    patient: Some(pb::PatientRef {
                        pseudonym: "pat-bad-2".into(),
                    }),
                    description: Some(d),
                    referring_doctor_subject: String::new(),
                    care_team_nurse_subjects: Vec::new(),
                })
                .await
                .expect_err(why);
            assert_eq!(status.code(), Code::InvalidArgument, "{why}: {status:?}");
        }
        let nurse_alone = nu
            .register_wound(pb::RegisterWoundRequest {
                idempotency_key: key(),
                patient: Some(pb::PatientRef {
                    pseudonym: "pat-bad-3".into(),
                }),
                description: Some(venous_ulcer()),
                referring_doctor_subject: String::new(),
                care_team_nurse_subjects: Vec::new(),
            })
            .await
            .expect_err("a nurse names the referring doctor");
        assert_eq!(nurse_alone.code(), Code::InvalidArgument);
        let mine = dr
            .list_doctor_wounds(pb::ListDoctorWoundsRequest::default())
            .await
            .expect("listed")
            .into_inner()
            .wounds;
        assert_eq!(mine.len(), 1, "{backend:?}: only the valid wound exists");
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_reopened_wound_starts_a_new_episode_with_its_own_baseline() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let id = wound.wound_id.clone();
        record(&mut nu, &id, measured(20, 3.0, 2.0))
            .await
            .expect("first");
        let mut healed = measured(10, 0.0, 0.0);
        healed.tissue_type = pb::TissueType::Closed as i32;
        healed.exudate = pb::ExudateAmount::None as i32;
        record(&mut nu, &id, healed).await.expect("healed");
        let closed = nu
            .close_wound(pb::CloseWoundRequest {
                wound_id: id.clone(),
                reason: pb::WoundClosureReason::Healed as i32,
                comment: String::new(),
            })
            .await
            .expect("closed")
            .into_inner()
            .wound
            .expect("wound");
        assert_eq!(closed.status, pb::WoundStatus::Closed as i32);
        assert!(closed.next_assessment_due_at.is_none());
        let retry = nu
            .close_wound(pb::CloseWoundRequest {
                wound_id: id.clone(),
                reason: pb::WoundClosureReason::Healed as i32,
                comment: String::new(),
            })
            .await
            .expect("the same nurse retrying gets the closed wound");
        assert_eq!(
            retry.into_inner().wound.map(|w| w.version),
            Some(closed.version)
        );
        let refused = record(&mut nu, &id, measured(1, 1.0, 1.0))
            .await
            .expect_err("closed");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let trend = dr
            .get_wound_trend(pb::GetWoundTrendRequest {
                wound_id: id.clone(),
                ..Default::default()
            })
            .await
            .expect("trend")
            .into_inner()
            .trend
            .expect("trend");
        assert_eq!(trend.healing_trend, pb::HealingTrend::Healed as i32);

        let reopened = dr
            .reopen_wound(pb::ReopenWoundRequest {
                wound_id: id.clone(),
                comment: "récidive".into(),
            })
            .await
            .expect("reopened")
            .into_inner()
            .wound
            .expect("wound");
        assert_eq!(
            (reopened.episode, reopened.status),
            (2, pb::WoundStatus::Open as i32)
        );
        assert!(reopened.baseline_assessment_id.is_empty());
        let before = record(&mut nu, &id, measured(5, 1.0, 1.0))
            .await
            .expect_err("before the reopening");
        assert_eq!(before.code(), Code::InvalidArgument);
        let first = record(&mut nu, &id, measured(0, 1.0, 1.0))
            .await
            .expect("new episode")
            .assessment
            .expect("assessment");
        assert!(first.baseline && first.episode == 2);
        let second_episode = dr
            .list_assessments(pb::ListAssessmentsRequest {
                wound_id: id.clone(),
                episode: 2,
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .assessments;
        assert_eq!(second_episode.len(), 1);
        let everything = dr
            .get_wound_trend(pb::GetWoundTrendRequest {
                wound_id: id.clone(),
                all_episodes: true,
                ..Default::default()
            })
            .await
            .expect("trend")
            .into_inner()
            .trend
            .expect("trend");
        assert_eq!(everything.points.len(), 3);
        assert_eq!(everything.baseline_assessment_id, first.assessment_id);
        assert_eq!(
            everything.healing_trend,
            pb::HealingTrend::InsufficientData as i32
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_round_and_the_doctors_list_are_ordered_and_paginated() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let soon = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let later = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let alerting = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        // Due dates: soon in 1 day, later in 6 days, alerting in 5 days (with an alert).
        record(&mut nu, &soon.wound_id, measured(6, 2.0, 2.0))
            .await
            .expect("a");
        record(&mut nu, &later.wound_id, measured(1, 2.0, 2.0))
            .await
            .expect("b");
        let mut infected = measured(2, 2.0, 2.0);
        infected.infection_signs = vec![pb::InfectionSign::Malodour as i32];
        record(&mut nu, &alerting.wound_id, infected)
            .await
            .expect("c");

        let mut round = Vec::new();
        let mut token = String::new();
        loop {
            let page = nu
                .list_nurse_round(pb::ListNurseRoundRequest {
                    due_before: None,
                    page_size: 1,
                    page_token: token,
                })
                .await
                .expect("round")
                .into_inner();
            assert!(page.wounds.len() <= 1);
            round.extend(page.wounds.into_iter().map(|s| {
                assert!(s.last_assessment.is_some(), "with the last assessment");
                s.wound.expect("wound").wound_id
            }));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(
            round,
            vec![
                soon.wound_id.clone(),
                alerting.wound_id.clone(),
                later.wound_id.clone()
            ],
            "by next due date"
        );
        let today = nu
            .list_nurse_round(pb::ListNurseRoundRequest {
                due_before: Some(ts(Timestamp::now() + SignedDuration::from_hours(48))),
                ..Default::default()
            })
            .await
            .expect("round")
            .into_inner()
            .wounds;
        assert_eq!(today.len(), 1, "only what is due within two days");

        let first = dr
            .list_doctor_wounds(pb::ListDoctorWoundsRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        let ids: Vec<String> = first
            .wounds
            .iter()
            .map(|s| s.wound.as_ref().expect("wound").wound_id.clone())
            .collect();
        assert_eq!(
            ids,
            vec![alerting.wound_id.clone(), soon.wound_id.clone()],
            "open alerts first"
        );
        assert_eq!(first.wounds[0].open_alerts.len(), 1);
        let second = dr
            .list_doctor_wounds(pb::ListDoctorWoundsRequest {
                page_size: 2,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(second.wounds.len(), 1);
        assert_eq!(
            second.wounds[0].wound.as_ref().map(|w| w.wound_id.clone()),
            Some(later.wound_id.clone())
        );
        assert!(second.next_page_token.is_empty());
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_retried_assessment_is_recorded_once() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            return;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let request = pb::RecordAssessmentRequest {
            idempotency_key: "visite-2026-11-27".into(),
            wound_id: wound.wound_id.clone(),
            measurements: Some(measured(1, 2.0, 2.0)),
        };
        let first = nu
            .record_assessment(request.clone())
            .await
            .expect("recorded")
            .into_inner();
        let again = nu
            .record_assessment(request.clone())
            .await
            .expect("replayed")
            .into_inner();
        assert_eq!(
            first.assessment.map(|a| a.assessment_id),
            again.assessment.map(|a| a.assessment_id)
        );
        let mut other = request;
        other.measurements = Some(measured(1, 2.5, 2.0));
        let status = nu
            .record_assessment(other)
            .await
            .expect_err("same key, other content");
        assert_eq!(status.code(), Code::FailedPrecondition);
        suite.stop().await;
    }
}

#[tokio::test]
async fn alerts_reach_a_doctor_watching_through_another_replica() {
    let Some(suite) = start(Backend::Postgres).await else {
        return;
    };
    let (second, stop_second) = suite.extra_instance(telehealth_kit::Part::Wound).await;
    let (only_second, stop_gateway) = suite
        .extra_gateway(telehealth_kit::Part::Wound, &[second])
        .await;
    let doctor = Person::doctor("dr-martin", CENTRE);
    let nurse = Person::nurse("nurse-claire", CENTRE);
    let mut dr = suite.wounds_via(only_second, &doctor).await;
    let mut nu = suite.wounds(&nurse).await;
    let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
    let mut watch = dr
        .watch_alerts(pb::WatchAlertsRequest {
            wound_id: wound.wound_id.clone(),
        })
        .await
        .expect("watching")
        .into_inner();
    watch.next().await.expect("ready").expect("ok");
    let mut infected = measured(1, 2.0, 2.0);
    infected.infection_signs = vec![pb::InfectionSign::Swelling as i32];
    record(&mut nu, &wound.wound_id, infected)
        .await
        .expect("recorded on the first replica");
    let event = next_event(&mut watch)
        .await
        .expect("delivered through the other replica");
    assert_eq!(
        event.alert.map(|a| a.cause),
        Some(pb::AlertCause::InfectionSigns as i32)
    );
    stop_gateway.cancel();
    stop_second.cancel();
    suite.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// The header of a photo upload of `bytes` for `wound_id`, from `resume_offset`.
pub(crate) fn photo_header(
    wound_id: &str,
    session: &str,
    resume_offset: i64,
    bytes: &[u8],
) -> pb::UploadPhotoRequest {
    pb::UploadPhotoRequest {
        part: Some(pb::upload_photo_request::Part::Header(
            pb::UploadPhotoHeader {
                wound_id: wound_id.into(),
                assessment_id: String::new(),
                image: Some(pb::ImageUploadHeader {
                    upload_session_id: session.into(),
                    resume_offset,
                    total_size_bytes: bytes.len() as i64,
                    declared_kind: pb::ImageKind::WoundPhoto as i32,
                    body_site: Some(pb::BodySite {
                        region: pb::BodyRegion::LowerLeg as i32,
                        laterality: pb::Laterality::Left as i32,
                        description: String::new(),
                        snomed_ct_code: String::new(),
                    }),
                    client_sha256_hex: sha256_hex(bytes),
                    caption: String::new(),
                    captured_at: None,
                }),
            },
        )),
    }
}

/// The chunks of `bytes` from `from` to `to`, 16 KiB each.
pub(crate) fn photo_chunks(bytes: &[u8], from: usize, to: usize) -> Vec<pb::UploadPhotoRequest> {
    (from..to)
        .step_by(16 * 1024)
        .map(|start| pb::UploadPhotoRequest {
            part: Some(pb::upload_photo_request::Part::Chunk(pb::ImageChunk {
                offset: start as i64,
                data: bytes[start..(start + 16 * 1024).min(to)].to_vec(),
            })),
        })
        .collect()
}

#[tokio::test]
async fn a_photo_upload_cut_off_midway_resumes_and_the_doctor_downloads_it() {
    for backend in backends().await {
        // Small resumable parts, so what arrived before the cut is kept.
        let Some(suite) = Suite::start_with(backend, |settings| {
            settings.images.part_size_bytes = 64 * 1024;
        })
        .await
        else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let far_doctor = Person::doctor("dr-dupont", OTHER_CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let id = wound.wound_id.clone();
        let jpeg = telehealth_images::format::fixtures::jpeg_with_identifying_metadata(1600, 1200);
        let sent = 200 * 1024;
        assert!(
            jpeg.len() > sent,
            "a photo larger than what is sent before the cut"
        );
        let session = key();
        let status_request = pb::GetPhotoUploadStatusRequest {
            wound_id: id.clone(),
            upload_session_id: session.clone(),
        };

        // The nurse starts uploading on her tablet's connection; it drops after 200 KB.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let mut tablet = suite.wounds(&nurse).await;
        let call = tokio::spawn(async move {
            tablet
                .upload_photo(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        });
        sender
            .send(photo_header(&id, &session, 0, &jpeg))
            .await
            .expect("header sent");
        for chunk in photo_chunks(&jpeg, 0, sent) {
            sender.send(chunk).await.expect("chunk sent");
        }
        for _ in 0..100 {
            let stored = nu
                .get_photo_upload_status(status_request.clone())
                .await
                .ok()
                .and_then(|s| s.into_inner().status)
                .map_or(0, |s| s.acknowledged_offset);
            if stored > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        call.abort();
        drop(sender);

        // Back in coverage, she asks where the upload stands.
        let status = nu
            .get_photo_upload_status(status_request.clone())
            .await
            .expect("her upload")
            .into_inner()
            .status
            .expect("status");
        assert_eq!(status.state, pb::ImageUploadState::InProgress as i32);
        let acknowledged = status.acknowledged_offset;
        assert!(
            acknowledged > 0 && acknowledged <= sent as i64,
            "{backend:?}: the bytes that arrived are kept ({acknowledged})"
        );
        let mut other_nurse = suite.wounds(&Person::nurse("nurse-odile", CENTRE)).await;
        let hidden = other_nurse
            .get_photo_upload_status(status_request.clone())
            .await
            .expect_err("not her upload");
        assert_eq!(hidden.code(), Code::NotFound);

        // She resumes from the acknowledged offset. (If the server had not yet stored the
        // tail of the cut stream when she asked, it says the offset has moved on: ask again.)
        let mut acknowledged = acknowledged;
        let mut attempts = 0;
        let uploaded = loop {
            let offset = usize::try_from(acknowledged).expect("offset");
            let mut resumed = vec![photo_header(&id, &session, acknowledged, &jpeg)];
            resumed.extend(photo_chunks(&jpeg, offset, jpeg.len()));
            match nu.upload_photo(futures::stream::iter(resumed)).await {
                Ok(done) => break done.into_inner(),
                Err(status) if status.code() == Code::FailedPrecondition && attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    acknowledged = nu
                        .get_photo_upload_status(status_request.clone())
                        .await
                        .expect("her upload")
                        .into_inner()
                        .status
                        .expect("status")
                        .acknowledged_offset;
                }
                Err(status) => panic!("{backend:?}: resumed upload refused: {status:?}"),
            }
        };
        assert!(
            uploaded.assessment_id.is_empty(),
            "pending until an assessment names it"
        );
        let info = uploaded.result.expect("result").image.expect("image");
        assert_eq!(info.original_sha256_hex, sha256_hex(&jpeg));
        assert!(
            info.stripped_metadata
                .contains(&(pb::StrippedMetadata::GpsLocation as i32)),
            "the patient's address is gone: {info:?}"
        );

        // The assessment of the visit references it.
        let mut m = measured(0, 3.0, 2.0);
        m.photo_image_ids = vec![info.image_id.clone()];
        let assessment = record(&mut nu, &id, m.clone())
            .await
            .expect("recorded with its photo")
            .assessment
            .expect("assessment");
        assert_eq!(assessment.photos.len(), 1);
        assert_eq!(assessment.photos[0].sha256_hex, info.sha256_hex);
        let twice = record(&mut nu, &id, m)
            .await
            .expect_err("a photo belongs to one assessment");
        assert_eq!(twice.code(), Code::InvalidArgument);

        // The doctor downloads it whole and gets a thumbnail.
        let mut download = dr
            .download_photo(pb::DownloadPhotoRequest {
                wound_id: id.clone(),
                image_id: info.image_id.clone(),
                offset: 0,
            })
            .await
            .expect("download")
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(message) = download.next().await {
            match message.expect("ok").part {
                Some(pb::download_photo_response::Part::Image(first)) => {
                    assert_eq!(first.image_id, info.image_id)
                }
                Some(pb::download_photo_response::Part::Chunk(chunk)) => bytes.extend(chunk.data),
                None => panic!("empty message"),
            }
        }
        assert_eq!(
            sha256_hex(&bytes),
            info.sha256_hex,
            "{backend:?}: the stored photo"
        );
        let thumbnail = dr
            .get_photo_thumbnail(pb::GetPhotoThumbnailRequest {
                wound_id: id.clone(),
                image_id: info.image_id.clone(),
                max_edge_px: 0,
            })
            .await
            .expect("thumbnail")
            .into_inner()
            .thumbnail
            .expect("thumbnail");
        assert!(!thumbnail.jpeg_data.is_empty());

        // A doctor of another centre learns nothing.
        let mut far = suite.wounds(&far_doctor).await;
        let refused = far
            .download_photo(pb::DownloadPhotoRequest {
                wound_id: id.clone(),
                image_id: info.image_id.clone(),
                offset: 0,
            })
            .await
            .expect_err("hidden");
        assert_eq!(refused.code(), Code::NotFound);
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_wound_holds_at_most_twenty_photos_waiting_for_an_assessment() {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let jpeg = telehealth_images::format::fixtures::jpeg_plain(64, 48);
        let upload = |session: String| {
            let mut messages = vec![photo_header(&wound.wound_id, &session, 0, &jpeg)];
            messages.extend(photo_chunks(&jpeg, 0, jpeg.len()));
            tokio_stream::iter(messages)
        };
        for _ in 0..20 {
            nu.upload_photo(upload(key()))
                .await
                .expect("a pending photo below the limit");
        }
        // The 21st is refused from its header, before any byte is stored.
        let refused = nu
            .upload_photo(tokio_stream::iter(vec![photo_header(
                &wound.wound_id,
                &key(),
                0,
                &jpeg,
            )]))
            .await
            .expect_err("one photo too many");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains("wait for an assessment"),
            "the message says what to do: {}",
            refused.message()
        );
        suite.stop().await;
    }
}

/// Uploads `jpeg` as a pending photo of `wound_id`; its stored info.
pub(crate) async fn upload_one(client: &mut Wounds, wound_id: &str, jpeg: &[u8]) -> pb::ImageInfo {
    let mut messages = vec![photo_header(wound_id, &key(), 0, jpeg)];
    messages.extend(photo_chunks(jpeg, 0, jpeg.len()));
    client
        .upload_photo(tokio_stream::iter(messages))
        .await
        .expect("photo uploaded")
        .into_inner()
        .result
        .and_then(|r| r.image)
        .expect("stored image")
}

#[tokio::test]
async fn a_nurse_asks_a_wound_specialist_in_one_step_with_photos_and_finds_the_answer_from_the_wound()
 {
    for backend in backends().await {
        let Some(suite) = start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let outsider = Person::nurse("nurse-ailleurs", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let patient = suite.consenting_patient(&doctor).await;
        let wound = register(&mut dr, &patient, &[&nurse]).await;
        for (days, length, width) in [(21, 6.0, 4.0), (14, 5.5, 3.6), (7, 5.0, 3.0)] {
            record(&mut nu, &wound.wound_id, measured(days, length, width))
                .await
                .expect("assessment recorded");
        }
        // Two photos of the wound, chosen to travel with the request.
        let jpegs = [
            telehealth_images::format::fixtures::jpeg_plain(64, 48),
            telehealth_images::format::fixtures::jpeg_plain(80, 60),
        ];
        let mut photos = Vec::new();
        for jpeg in &jpegs {
            photos.push(upload_one(&mut nu, &wound.wound_id, jpeg).await);
        }
        let photo_ids: Vec<String> = photos.iter().map(|p| p.image_id.clone()).collect();
        let ask = |key: &str| pb::RequestWoundExpertiseRequest {
            idempotency_key: key.into(),
            wound_id: wound.wound_id.clone(),
            target_org_id: "chu-limoges".into(),
            specialty: "wound_care".into(),
            clinical_question:
                "Ulcère veineux qui stagne depuis 3 semaines : adapter la compression ?".into(),
            urgency: pb::Urgency::Routine as i32,
            photo_ids: photo_ids.clone(),
        };

        // A photo of another wound is not sent.
        let other = register(&mut dr, &patient, &[&nurse]).await;
        let foreign = upload_one(&mut nu, &other.wound_id, &jpegs[0]).await;
        let refused = nu
            .request_wound_expertise(pb::RequestWoundExpertiseRequest {
                photo_ids: vec![foreign.image_id],
                ..ask("foreign-photo")
            })
            .await
            .expect_err("a photo of another wound");
        assert_eq!(refused.code(), Code::InvalidArgument, "{backend:?}");
        assert!(
            refused.message().contains("not a photo of this wound"),
            "{}",
            refused.message()
        );

        // Someone outside the care team cannot ask about the wound.
        let refused = suite
            .wounds(&outsider)
            .await
            .request_wound_expertise(ask("outsider"))
            .await
            .expect_err("not in the care team");
        assert_eq!(refused.code(), Code::NotFound, "{backend:?}");

        // One call: the request is created by the nurse and submitted, with the history.
        let request = nu
            .request_wound_expertise(ask("ask-1"))
            .await
            .expect("asked")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(request.status, pb::ExpertiseStatus::Submitted as i32);
        assert_eq!(
            request.requester.as_ref().expect("requester").subject,
            "nurse-claire"
        );
        assert!(
            !request.consent_id.is_empty(),
            "the patient's consent is named"
        );
        let again = nu
            .request_wound_expertise(ask("ask-1"))
            .await
            .expect("a retry answers the same request")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(again.request_id, request.request_id);

        // The wound specialist sees the wound's healing in the request, and answers.
        let specialist = Person::specialist("dr-leroy", "chu-limoges").in_specialty("wound_care");
        let mut spec = suite.expertise(&specialist).await;
        let seen = spec
            .get_request(pb::GetRequestRequest {
                request_id: request.request_id.clone(),
            })
            .await
            .expect("in the specialist's inbox")
            .into_inner()
            .request
            .expect("request");
        let history = seen
            .content
            .and_then(|c| c.wound)
            .expect("the wound travels with the request");
        assert_eq!(history.wound_id, wound.wound_id);
        let areas: Vec<f64> = history.history.iter().map(|p| p.area_cm2).collect();
        assert_eq!(
            areas,
            vec![24.0, 19.8, 15.0],
            "L × W of each assessment, oldest first"
        );
        assert!(history.history.iter().all(|p| p.push_score > 0));
        // The chosen photos, once each (the retry copied none twice), byte for byte.
        let sent: Vec<&str> = seen.images.iter().map(|i| i.sha256_hex.as_str()).collect();
        let stored: Vec<&str> = photos.iter().map(|p| p.sha256_hex.as_str()).collect();
        assert_eq!(sent, stored, "{backend:?}");
        let mut download = spec
            .download_image(pb::DownloadImageRequest {
                request_id: request.request_id.clone(),
                image_id: seen.images[1].image_id.clone(),
                offset: 0,
            })
            .await
            .expect("the specialist downloads a photo")
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(message) = download.message().await.expect("chunk") {
            if let Some(pb::download_image_response::Part::Chunk(chunk)) = message.part {
                bytes.extend_from_slice(&chunk.data);
            }
        }
        assert_eq!(sha256_hex(&bytes), photos[1].sha256_hex);
        spec.claim_request(pb::ClaimRequestRequest {
            request_id: request.request_id.clone(),
        })
        .await
        .expect("claimed");
        spec.answer_request(pb::AnswerRequestRequest {
            request_id: request.request_id.clone(),
            answer: Some(pb::ExpertAnswer {
                impression: "Ulcère veineux, compression insuffisante".into(),
                recommendation: pb::Recommendation::Treat as i32,
                monitor_interval_months: 0,
                recommendation_details: "Compression multicouche 40 mmHg".into(),
                free_text: "Réévaluer dans 2 semaines.".into(),
            }),
        })
        .await
        .expect("answered");

        // From the wound, the care team finds the request, then its answer.
        let linked = dr
            .get_wound(pb::GetWoundRequest {
                wound_id: wound.wound_id.clone(),
            })
            .await
            .expect("wound")
            .into_inner()
            .expertise_request_ids;
        assert_eq!(linked, vec![request.request_id.clone()]);
        let answered = suite
            .expertise(&nurse)
            .await
            .get_request(pb::GetRequestRequest {
                request_id: linked[0].clone(),
            })
            .await
            .expect("the nurse reads her request")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            answered.answer.expect("answer").recommendation_details,
            "Compression multicouche 40 mmHg"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_nurse_on_a_browser_uploads_a_photo_one_chunk_per_call() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let wound = register(&mut dr, &suite.consenting_patient(&doctor).await, &[&nurse]).await;
        let jpeg = telehealth_images::format::fixtures::jpeg_with_identifying_metadata(1600, 1200);
        let session = key();
        let Some(pb::upload_photo_request::Part::Header(header)) =
            photo_header(&wound.wound_id, &session, 0, &jpeg).part
        else {
            panic!("a header");
        };
        const PART: usize = 96 * 1024;
        let part = |offset: usize| pb::UploadPhotoPartRequest {
            header: Some(header.clone()),
            chunk: Some(pb::ImageChunk {
                offset: offset as i64,
                data: jpeg[offset..(offset + PART).min(jpeg.len())].to_vec(),
            }),
        };
        let mut offset = 0;
        let mut done = None;
        while done.is_none() {
            let answer = nu
                .upload_photo_part(part(offset))
                .await
                .expect("a part")
                .into_inner();
            assert!(answer.acknowledged_offset as usize > offset, "progress");
            offset = answer.acknowledged_offset as usize;
            done = answer.result;
        }
        assert_eq!(offset, jpeg.len(), "{backend:?}");
        let info = done.and_then(|r| r.image).expect("the stored photo");
        assert_eq!(info.original_sha256_hex, sha256_hex(&jpeg), "{backend:?}");
        // A doctor's device cannot use the nurse's variant either: the contract's roles hold.
        let refused = dr
            .upload_photo_part(part(0))
            .await
            .expect_err("nurses only");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }
}
