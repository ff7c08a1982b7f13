//! Appointment (a teleconsultation): its status from the lifecycle, its time, and its
//! participants (doctor, nurse, patient).

use serde_json::{Value, json};
use telehealth_proto::v1 as pb;

use crate::{instant, prune, reference};

/// The FHIR status of a lifecycle state (an appointment in progress is `checked-in`: FHIR's
/// Appointment has no "in progress", the encounter has begun).
fn status(status: pb::AppointmentStatus) -> &'static str {
    match status {
        pb::AppointmentStatus::Booked => "booked",
        pb::AppointmentStatus::Arrived => "arrived",
        pb::AppointmentStatus::InProgress => "checked-in",
        pb::AppointmentStatus::Fulfilled => "fulfilled",
        pb::AppointmentStatus::Cancelled => "cancelled",
        pb::AppointmentStatus::Noshow => "noshow",
        pb::AppointmentStatus::Unspecified => "proposed",
    }
}

/// FHIR `Appointment` of a scheduled teleconsultation.
pub fn appointment(a: &pb::Appointment) -> Value {
    let time = a.time.unwrap_or_default();
    let participant =
        |actor: Value| json!({ "actor": actor, "required": "required", "status": "accepted" });
    let mut participants = vec![participant(reference("Practitioner", &a.doctor_subject))];
    if !a.nurse_subject.is_empty() {
        participants.push(participant(reference("Practitioner", &a.nurse_subject)));
    }
    if let Some(patient) = a.patient.as_ref().filter(|p| !p.pseudonym.is_empty()) {
        participants.push(participant(reference("Patient", &patient.pseudonym)));
    }
    prune(json!({
        "resourceType": "Appointment",
        "id": a.appointment_id,
        "status": status(pb::AppointmentStatus::try_from(a.status).unwrap_or_default()),
        "serviceCategory": [{ "text": "Téléconsultation" }],
        "description": a.reason,
        "start": time.start_time.as_ref().and_then(instant),
        "end": time.end_time.as_ref().and_then(instant),
        "minutesDuration": (a.duration_minutes > 0).then_some(a.duration_minutes),
        "created": a.created_at.as_ref().and_then(instant),
        "cancelationReason": a.cancellation.as_ref().map(|c| json!({ "text": c.comment })),
        "participant": participants,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit;

    #[test]
    fn an_appointment_maps_its_lifecycle_time_and_participants() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let booked = pb::Appointment {
            appointment_id: "a1".into(),
            org_id: "cds-bourganeuf".into(),
            status: pb::AppointmentStatus::Booked as i32,
            time: Some(pb::TimeRange {
                start_time: at(1_796_331_600),
                end_time: at(1_796_332_800),
            }),
            duration_minutes: 20,
            doctor_subject: "dr-martin".into(),
            nurse_subject: "nurse-claire".into(),
            patient: Some(pb::PatientRef {
                pseudonym: "p1".into(),
            }),
            reason: "Suivi de plaie".into(),
            created_at: at(1_796_300_000),
            ..Default::default()
        };
        let resource = appointment(&booked);
        emit("appointment-booked", &resource);
        assert_eq!(resource["status"], "booked");
        assert_eq!(resource["start"], "2026-12-03T21:00:00Z");
        assert_eq!(resource["end"], "2026-12-03T21:20:00Z");
        assert_eq!(resource["minutesDuration"], 20);
        assert_eq!(
            resource["participant"][0]["actor"]["reference"],
            "Practitioner/dr-martin"
        );
        assert_eq!(
            resource["participant"][2]["actor"]["reference"],
            "Patient/p1"
        );

        for (state, code) in [
            (pb::AppointmentStatus::Arrived, "arrived"),
            (pb::AppointmentStatus::InProgress, "checked-in"),
            (pb::AppointmentStatus::Fulfilled, "fulfilled"),
            (pb::AppointmentStatus::Noshow, "noshow"),
        ] {
            let resource = appointment(&pb::Appointment {
                status: state as i32,
                ..booked.clone()
            });
            emit(&format!("appointment-{code}"), &resource);
            assert_eq!(resource["status"], code);
        }
        let cancelled = appointment(&pb::Appointment {
            status: pb::AppointmentStatus::Cancelled as i32,
            nurse_subject: String::new(),
            cancellation: Some(pb::Cancellation {
                comment: "patiente hospitalisée".into(),
                ..Default::default()
            }),
            ..booked
        });
        emit("appointment-cancelled", &cancelled);
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(
            cancelled["cancelationReason"]["text"],
            "patiente hospitalisée"
        );
        assert_eq!(cancelled["participant"].as_array().map(Vec::len), Some(2));
    }
}
