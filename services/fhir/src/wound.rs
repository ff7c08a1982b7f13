//! A wound assessment is one `Observation`, the LOINC "Wound size panel" (72287-6), whose
//! components are the length (39126-8), width (39125-0), depth (39127-6) and area (89260-4) in
//! centimetres, and the PUSH 3.0 total score (90981-2).

use serde_json::{Value, json};
use telehealth_proto::v1 as pb;

use crate::{instant, prune, reference};

pub const LOINC: &str = "http://loinc.org";
/// The panel's code, and each component's.
pub const WOUND_SIZE_PANEL: &str = "72287-6";
pub const LENGTH: &str = "39126-8";
pub const WIDTH: &str = "39125-0";
pub const DEPTH: &str = "39127-6";
pub const AREA: &str = "89260-4";
pub const PUSH_TOTAL: &str = "90981-2";

/// Every code an assessment's Observation answers to in a `code` search.
pub const ASSESSMENT_CODES: [&str; 6] = [WOUND_SIZE_PANEL, LENGTH, WIDTH, DEPTH, AREA, PUSH_TOTAL];

fn coded(code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": LOINC, "code": code, "display": display }] })
}

fn quantity(value: f64, unit: &str, ucum: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum })
}

/// FHIR `Observation` of one version of a wound assessment (the current one is `final`, a
/// corrected one `amended`).
pub fn wound_assessment(a: &pb::Assessment, patient_id: &str) -> Value {
    let m = a.measurements.clone().unwrap_or_default();
    let mut components = vec![
        json!({ "code": coded(LENGTH, "Length of Wound"), "valueQuantity": quantity(m.length_cm, "cm", "cm") }),
        json!({ "code": coded(WIDTH, "Width of Wound"), "valueQuantity": quantity(m.width_cm, "cm", "cm") }),
    ];
    if let Some(depth) = m.depth_cm {
        components.push(json!({ "code": coded(DEPTH, "Depth of Wound"), "valueQuantity": quantity(depth, "cm", "cm") }));
    }
    if let Some(push) = &a.push {
        components.push(json!({
            "code": coded(AREA, "Area of wound"),
            "valueQuantity": quantity(push.scored_area_cm2, "cm²", "cm2"),
        }));
        components.push(json!({
            "code": coded(PUSH_TOTAL, "PUSH Tool 3.0 total score"),
            "valueInteger": push.total,
        }));
    }
    let photos: Vec<Value> = a
        .photos
        .iter()
        .map(|p| reference("Media", &p.image_id))
        .collect();
    prune(json!({
        "resourceType": "Observation",
        "id": a.assessment_id,
        "meta": { "versionId": a.version.to_string() },
        "status": if a.version > 1 { "amended" } else { "final" },
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "exam",
        }] }],
        "code": coded(WOUND_SIZE_PANEL, "Wound size panel"),
        "subject": reference("Patient", patient_id),
        "focus": [{ "identifier": { "system": "urn:telehealth:wound", "value": a.wound_id } }],
        "effectiveDateTime": m.assessed_at.as_ref().and_then(instant),
        "issued": a.recorded_at.as_ref().and_then(instant),
        "performer": a.recorded_by.as_ref().filter(|r| !r.subject.is_empty())
            .map(|r| vec![reference("Practitioner", &r.subject)]),
        "note": (!m.notes.is_empty()).then(|| vec![json!({ "text": m.notes })]),
        "component": components,
        "derivedFrom": photos,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit;

    #[test]
    fn an_assessment_is_a_wound_size_panel_with_loinc_components() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let assessment = pb::Assessment {
            assessment_id: "as1".into(),
            version: 1,
            current: true,
            wound_id: "w1".into(),
            episode: 1,
            measurements: Some(pb::AssessmentMeasurements {
                assessed_at: at(1_796_300_000),
                length_cm: 4.2,
                width_cm: 3.1,
                depth_cm: Some(0.4),
                notes: "Pansement hydrocolloïde".into(),
                ..Default::default()
            }),
            photos: vec![pb::ImageInfo {
                image_id: "ph1".into(),
                ..Default::default()
            }],
            push: Some(pb::PushScore {
                area_subscore: 8,
                exudate_subscore: 2,
                tissue_subscore: 3,
                total: 13,
                scored_area_cm2: 13.02,
            }),
            recorded_at: at(1_796_300_500),
            recorded_by: Some(pb::Actor {
                subject: "nurse-claire".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let o = wound_assessment(&assessment, "p1");
        emit("observation-wound", &o);
        assert_eq!(o["code"]["coding"][0]["code"], WOUND_SIZE_PANEL);
        assert_eq!(o["status"], "final");
        let codes: Vec<&str> = o["component"]
            .as_array()
            .expect("components")
            .iter()
            .filter_map(|c| c["code"]["coding"][0]["code"].as_str())
            .collect();
        assert_eq!(codes, [LENGTH, WIDTH, DEPTH, AREA, PUSH_TOTAL]);
        assert_eq!(o["component"][0]["valueQuantity"]["value"], 4.2);
        assert_eq!(o["component"][4]["valueInteger"], 13);
        assert_eq!(o["derivedFrom"][0]["reference"], "Media/ph1");

        let corrected = wound_assessment(
            &pb::Assessment {
                version: 2,
                push: None,
                ..assessment
            },
            "p1",
        );
        emit("observation-wound-amended", &corrected);
        assert_eq!(corrected["status"], "amended");
        assert_eq!(corrected["component"].as_array().map(Vec::len), Some(3));
    }
}
