//! Tele-expertise: the request is a `ServiceRequest` (what is asked, of whom, about whom) and a
//! `Task` with the same id (who holds it and where it stands: its status follows the request's);
//! the thread is `Communication`s and the images `Media`.

use serde_json::{Value, json};
use telehealth_proto::v1 as pb;

use crate::{instant, prune, reference};

/// The ServiceRequest status of a request's state.
fn request_status(status: pb::ExpertiseStatus) -> &'static str {
    match status {
        pb::ExpertiseStatus::Draft => "draft",
        pb::ExpertiseStatus::Submitted | pb::ExpertiseStatus::Claimed => "active",
        pb::ExpertiseStatus::Answered | pb::ExpertiseStatus::Closed => "completed",
        pb::ExpertiseStatus::Withdrawn | pb::ExpertiseStatus::Declined => "revoked",
        pb::ExpertiseStatus::Unspecified => "unknown",
    }
}

/// The Task status of a request's state (also what a `Task?status=` search names).
pub fn task_status(status: pb::ExpertiseStatus) -> &'static str {
    match status {
        pb::ExpertiseStatus::Draft => "draft",
        pb::ExpertiseStatus::Submitted => "requested",
        pb::ExpertiseStatus::Claimed => "in-progress",
        pb::ExpertiseStatus::Answered | pb::ExpertiseStatus::Closed => "completed",
        pb::ExpertiseStatus::Withdrawn => "cancelled",
        pb::ExpertiseStatus::Declined => "rejected",
        pb::ExpertiseStatus::Unspecified => "draft",
    }
}

/// The states a Task status stands for (the inverse of [`task_status`]).
pub fn states_of_task_status(code: &str) -> Option<Vec<pb::ExpertiseStatus>> {
    use pb::ExpertiseStatus as S;
    Some(match code {
        "draft" => vec![S::Draft],
        "requested" => vec![S::Submitted],
        "in-progress" => vec![S::Claimed],
        "completed" => vec![S::Answered, S::Closed],
        "cancelled" => vec![S::Withdrawn],
        "rejected" => vec![S::Declined],
        _ => return None,
    })
}

fn state(r: &pb::ExpertiseRequest) -> pb::ExpertiseStatus {
    pb::ExpertiseStatus::try_from(r.status).unwrap_or_default()
}

fn patient_of(r: &pb::ExpertiseRequest) -> Option<Value> {
    r.content
        .as_ref()
        .and_then(|c| c.patient.as_ref())
        .and_then(|p| p.patient.as_ref())
        .filter(|p| !p.pseudonym.is_empty())
        .map(|p| reference("Patient", &p.pseudonym))
}

fn actor(a: Option<&pb::Actor>) -> Option<Value> {
    a.filter(|a| !a.subject.is_empty())
        .map(|a| reference("Practitioner", &a.subject))
}

/// FHIR `ServiceRequest` of a tele-expertise request.
pub fn service_request(r: &pb::ExpertiseRequest) -> Value {
    let content = r.content.clone().unwrap_or_default();
    let urgent = content.urgency == pb::Urgency::Urgent as i32;
    let images: Vec<Value> = r
        .images
        .iter()
        .map(|i| reference("Media", &i.image_id))
        .collect();
    prune(json!({
        "resourceType": "ServiceRequest",
        "id": r.request_id,
        "status": request_status(state(r)),
        "intent": "order",
        "category": [{ "text": "Télé-expertise" }],
        "priority": if urgent { "urgent" } else { "routine" },
        "code": { "text": format!("Télé-expertise ({})", content.specialty) },
        "subject": patient_of(r),
        "authoredOn": r.submitted_at.as_ref().or(r.created_at.as_ref()).and_then(instant),
        "requester": actor(r.requester.as_ref()),
        "performer": (!content.target_org_id.is_empty())
            .then(|| vec![reference("Organization", &content.target_org_id)]),
        "reasonCode": [{ "text": content.clinical_question }],
        "supportingInfo": images,
    }))
}

/// FHIR `Task` of a tele-expertise request: who holds it, its deadline, and the answer.
pub fn task(r: &pb::ExpertiseRequest) -> Value {
    let content = r.content.clone().unwrap_or_default();
    let answer = r.answer.as_ref().map(|a| {
        let text = [
            a.impression.as_str(),
            a.recommendation_details.as_str(),
            a.free_text.as_str(),
        ]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
        vec![json!({ "type": { "text": "Réponse de l'expert" }, "valueString": text })]
    });
    let reason = r
        .decline
        .as_ref()
        .map(|d| json!({ "text": d.comment }))
        .or_else(|| {
            r.withdrawal
                .as_ref()
                .map(|_| json!({ "text": "Retirée par le demandeur" }))
        });
    prune(json!({
        "resourceType": "Task",
        "id": r.request_id,
        "basedOn": [reference("ServiceRequest", &r.request_id)],
        "status": task_status(state(r)),
        "statusReason": reason,
        "intent": "order",
        "priority": if content.urgency == pb::Urgency::Urgent as i32 { "urgent" } else { "routine" },
        "focus": reference("ServiceRequest", &r.request_id),
        "for": patient_of(r),
        "authoredOn": r.created_at.as_ref().and_then(instant),
        "lastModified": r.updated_at.as_ref().and_then(instant),
        "requester": actor(r.requester.as_ref()),
        "owner": actor(r.claimed_by.as_ref())
            .or_else(|| (!content.target_org_id.is_empty())
                .then(|| reference("Organization", &content.target_org_id))),
        "restriction": { "period": { "end": r.due_at.as_ref().and_then(instant) } },
        "output": answer,
    }))
}

/// FHIR `Communication` of a message of a request's thread.
pub fn communication(m: &pb::ExpertiseMessage, r: &pb::ExpertiseRequest) -> Value {
    prune(json!({
        "resourceType": "Communication",
        "id": m.message_id,
        "basedOn": [reference("ServiceRequest", &m.request_id)],
        "status": "completed",
        "subject": patient_of(r),
        "sent": m.posted_at.as_ref().and_then(instant),
        "sender": actor(m.author.as_ref()),
        "payload": [{ "contentString": m.text }],
    }))
}

/// FHIR `Media` of an image (its bytes are fetched with `DownloadImage` / `DownloadPhoto`).
pub fn media(i: &pb::ImageInfo, based_on: Option<(&str, &str)>, patient: Option<&str>) -> Value {
    let kind = pb::ImageKind::try_from(i.kind).unwrap_or_default();
    let modality = match kind {
        pb::ImageKind::Dermatoscopy => "Dermatoscopie",
        pb::ImageKind::Overview => "Photographie d'ensemble",
        pb::ImageKind::CloseUp => "Photographie rapprochée",
        pb::ImageKind::WoundPhoto => "Photographie de plaie",
        _ => "Image",
    };
    let content_type = match pb::ImageContentType::try_from(i.content_type).unwrap_or_default() {
        pb::ImageContentType::Png => "image/png",
        pb::ImageContentType::Dicom => "application/dicom",
        _ => "image/jpeg",
    };
    let site = i.body_site.as_ref().map(|s| {
        json!({
            "coding": (!s.snomed_ct_code.is_empty()).then(|| vec![json!({
                "system": "http://snomed.info/sct", "code": s.snomed_ct_code,
            })]),
            "text": s.description,
        })
    });
    prune(json!({
        "resourceType": "Media",
        "id": i.image_id,
        "basedOn": based_on.map(|(kind, id)| vec![reference(kind, id)]),
        "status": "completed",
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/media-type",
            "code": "image",
        }] },
        "modality": { "text": modality },
        "subject": patient.map(|p| reference("Patient", p)),
        "createdDateTime": i.captured_at.as_ref().and_then(instant),
        "issued": i.uploaded_at.as_ref().and_then(instant),
        "operator": actor(i.uploaded_by.as_ref()),
        "bodySite": site,
        "height": (i.height_px > 0).then_some(i.height_px),
        "width": (i.width_px > 0).then_some(i.width_px),
        "content": {
            "contentType": content_type,
            "size": u32::try_from(i.size_bytes).ok(),
            "title": i.caption,
            "creation": i.captured_at.as_ref().and_then(instant),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit;

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn request(status: pb::ExpertiseStatus) -> pb::ExpertiseRequest {
        let person = |subject: &str, org: &str| pb::Actor {
            subject: subject.into(),
            org_id: org.into(),
            ..Default::default()
        };
        pb::ExpertiseRequest {
            request_id: "r1".into(),
            status: status as i32,
            requester_org_id: "cds-bourganeuf".into(),
            requester: Some(person("dr-martin", "cds-bourganeuf")),
            content: Some(pb::ExpertiseRequestContent {
                target_org_id: "chu-limoges".into(),
                specialty: "dermatology".into(),
                patient: Some(pb::ExpertisePatient {
                    patient: Some(pb::PatientRef {
                        pseudonym: "p1".into(),
                    }),
                    age_years: 67,
                    ..Default::default()
                }),
                clinical_question: "Naevus atypique du dos ?".into(),
                urgency: pb::Urgency::Urgent as i32,
                ..Default::default()
            }),
            images: vec![pb::ImageInfo {
                image_id: "i1".into(),
                kind: pb::ImageKind::Dermatoscopy as i32,
                content_type: pb::ImageContentType::Jpeg as i32,
                size_bytes: 123_456,
                width_px: 1024,
                height_px: 768,
                caption: "Lésion dorsale".into(),
                captured_at: at(1_796_300_000),
                uploaded_at: at(1_796_300_100),
                uploaded_by: Some(person("dr-martin", "cds-bourganeuf")),
                body_site: Some(pb::BodySite {
                    description: "haut du dos".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            created_at: at(1_796_300_000),
            updated_at: at(1_796_310_000),
            submitted_at: at(1_796_300_200),
            due_at: at(1_796_472_000),
            claimed_by: (status >= pb::ExpertiseStatus::Claimed)
                .then(|| person("dr-durand", "chu-limoges")),
            answer: (status == pb::ExpertiseStatus::Answered).then(|| pb::ExpertAnswer {
                impression: "Naevus bénin".into(),
                recommendation: pb::Recommendation::Monitor as i32,
                monitor_interval_months: 6,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_request_is_a_service_request_and_a_task_whose_status_follows_it() {
        for (state, request_code, task_code) in [
            (pb::ExpertiseStatus::Draft, "draft", "draft"),
            (pb::ExpertiseStatus::Submitted, "active", "requested"),
            (pb::ExpertiseStatus::Claimed, "active", "in-progress"),
            (pb::ExpertiseStatus::Answered, "completed", "completed"),
            (pb::ExpertiseStatus::Withdrawn, "revoked", "cancelled"),
            (pb::ExpertiseStatus::Declined, "revoked", "rejected"),
        ] {
            let r = request(state);
            let sr = service_request(&r);
            emit(&format!("service-request-{task_code}"), &sr);
            assert_eq!(sr["status"], request_code);
            assert_eq!(sr["priority"], "urgent");
            assert_eq!(sr["subject"]["reference"], "Patient/p1");
            assert_eq!(sr["supportingInfo"][0]["reference"], "Media/i1");
            let t = task(&r);
            emit(&format!("task-{task_code}"), &t);
            assert_eq!(t["status"], task_code);
            assert!(states_of_task_status(task_code).is_some_and(|s| s.contains(&state)));
            assert_eq!(t["basedOn"][0]["reference"], "ServiceRequest/r1");
        }
        let answered = task(&request(pb::ExpertiseStatus::Answered));
        assert_eq!(answered["owner"]["reference"], "Practitioner/dr-durand");
        assert_eq!(answered["output"][0]["valueString"], "Naevus bénin");
        let waiting = task(&request(pb::ExpertiseStatus::Submitted));
        assert_eq!(waiting["owner"]["reference"], "Organization/chu-limoges");
    }

    #[test]
    fn the_thread_is_communications_and_the_images_media() {
        let r = request(pb::ExpertiseStatus::Claimed);
        let message = pb::ExpertiseMessage {
            message_id: "m1".into(),
            request_id: "r1".into(),
            sequence: 1,
            author: r.claimed_by.clone(),
            text: "Pouvez-vous ajouter une vue d'ensemble ?".into(),
            posted_at: at(1_796_320_000),
        };
        let c = communication(&message, &r);
        emit("communication", &c);
        assert_eq!(c["sender"]["reference"], "Practitioner/dr-durand");
        assert_eq!(c["payload"][0]["contentString"], message.text);

        let m = media(&r.images[0], Some(("ServiceRequest", "r1")), Some("p1"));
        emit("media", &m);
        assert_eq!(m["content"]["contentType"], "image/jpeg");
        assert_eq!(m["width"], 1024);
        assert_eq!(m["modality"]["text"], "Dermatoscopie");
        assert_eq!(m["bodySite"]["text"], "haut du dos");
    }
}
