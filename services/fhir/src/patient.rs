//! Patient and Consent.
//!
//! The INS is the Patient's identifier only for a qualified identity (the French rule: an
//! unqualified INS must not be shared), with the OID the register gives it as `urn:oid:` system.
//! The identity status itself travels as a `meta.tag` of the suite's code system.

use serde_json::{Value, json};
use telehealth_proto::v1 as pb;

use crate::{instant, prune, reference};

/// The suite's code systems (URNs: they name codes, they are not addresses).
const IDENTITY_STATUS_SYSTEM: &str = "urn:telehealth:identity-status";
const CONSENT_ACT_SYSTEM: &str = "urn:telehealth:consent-act";

/// FHIR `Patient` of a register entry.
pub fn patient(p: &pb::Patient) -> Value {
    let identity = p.identity.clone().unwrap_or_default();
    let status = pb::IdentityStatus::try_from(p.identity_status).unwrap_or_default();
    let qualified = status == pb::IdentityStatus::Qualified;
    let ins = p
        .ins
        .as_ref()
        .filter(|ins| qualified && !ins.number.is_empty() && !ins.oid.is_empty());
    let gender = match pb::Sex::try_from(identity.sex).unwrap_or_default() {
        pb::Sex::Male => "male",
        pb::Sex::Female => "female",
        pb::Sex::Other => "other",
        _ => "unknown",
    };
    let given: Vec<&str> = identity.first_names.split_whitespace().collect();
    let mut names =
        vec![json!({ "use": "official", "family": identity.birth_name, "given": given })];
    if !identity.used_name.is_empty() || !identity.used_first_name.is_empty() {
        names.push(json!({
            "use": "usual",
            "family": identity.used_name,
            "given": [identity.used_first_name],
        }));
    }
    let contact = p.contact.clone().unwrap_or_default();
    let telecom: Vec<Value> = [("phone", &contact.phone), ("email", &contact.email)]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(system, value)| json!({ "system": system, "value": value }))
        .collect();
    let address = p.address.as_ref().map(|a| {
        json!({
            "use": "home",
            "line": a.lines,
            "postalCode": a.postal_code,
            "city": a.city,
            "country": a.country,
        })
    });
    prune(json!({
        "resourceType": "Patient",
        "id": p.id,
        "meta": {
            "tag": [{
                "system": IDENTITY_STATUS_SYSTEM,
                "code": status_code(status),
            }],
        },
        "identifier": ins.map(|ins| vec![json!({
            "use": "official",
            "system": format!("urn:oid:{}", ins.oid),
            "value": ins.number,
        })]),
        "name": names,
        "telecom": telecom,
        "gender": gender,
        "birthDate": identity.birth_date,
        "address": address.map(|a| vec![a]),
        "managingOrganization": reference("Organization", &p.org_id),
    }))
}

fn status_code(status: pb::IdentityStatus) -> &'static str {
    match status {
        pb::IdentityStatus::Provisional => "provisional",
        pb::IdentityStatus::Recovered => "recovered",
        pb::IdentityStatus::Validated => "validated",
        pb::IdentityStatus::Qualified => "qualified",
        pb::IdentityStatus::Unspecified => "unknown",
    }
}

/// FHIR `Consent` of a recorded consent (given → active, refused → rejected, withdrawn →
/// inactive), with the act as the provision's action.
pub fn consent(c: &pb::Consent) -> Value {
    let given = c.decision == pb::ConsentDecision::Given as i32;
    let status = if c.withdrawn_time.is_some() {
        "inactive"
    } else if given {
        "active"
    } else {
        "rejected"
    };
    let act = pb::ConsentAct::try_from(c.act).unwrap_or_default();
    let (code, text) = match act {
        pb::ConsentAct::Teleconsultation => ("teleconsultation", "Téléconsultation"),
        pb::ConsentAct::TeleExpertise => ("tele-expertise", "Télé-expertise"),
        pb::ConsentAct::WoundMonitoring => ("wound-monitoring", "Télésurveillance des plaies"),
        pb::ConsentAct::Sharing => ("sharing", "Partage avec une organisation"),
        pb::ConsentAct::Unspecified => ("unknown", "Acte non précisé"),
    };
    prune(json!({
        "resourceType": "Consent",
        "id": c.id,
        "status": status,
        "scope": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "treatment",
        }] },
        "category": [{ "coding": [{
            "system": "http://loinc.org",
            "code": "59284-0",
            "display": "Patient Consent",
        }] }],
        "patient": reference("Patient", &c.patient_id),
        "dateTime": c.recorded_time.as_ref().and_then(instant),
        "organization": (!c.target_org_id.is_empty()).then(|| vec![reference("Organization", &c.target_org_id)]),
        "policyRule": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": if given { "OPTIN" } else { "OPTOUT" },
        }] },
        "provision": {
            "type": if given { "permit" } else { "deny" },
            "period": c.withdrawn_time.as_ref().and_then(instant).map(|end| json!({ "end": end })),
            "action": [{ "coding": [{ "system": CONSENT_ACT_SYSTEM, "code": code, "display": text }] }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit;

    fn martin(status: pb::IdentityStatus) -> pb::Patient {
        pb::Patient {
            id: "5a779da2-e112-43c5-b5b0-936956374d9a".into(),
            org_id: "cds-bourganeuf".into(),
            identity: Some(pb::IdentityTraits {
                birth_name: "MARTIN".into(),
                first_names: "Hélène Marie".into(),
                used_first_name: String::new(),
                used_name: "DUPONT".into(),
                sex: pb::Sex::Female as i32,
                birth_date: "1941-03-12".into(),
                birth_place_code: "23096".into(),
            }),
            ins: Some(pb::Ins {
                number: "241032303100470".into(),
                kind: pb::InsKind::Nir as i32,
                test: true,
                oid: "1.2.250.1.213.1.4.10".into(),
            }),
            identity_status: status as i32,
            contact: Some(pb::Contact {
                phone: "05 55 64 00 00".into(),
                email: String::new(),
            }),
            address: Some(pb::Address {
                lines: vec!["12 rue des Tisserands".into()],
                postal_code: "23400".into(),
                city: "Bourganeuf".into(),
                country: "FR".into(),
                access_note: "digicode 1234".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_qualified_identity_carries_its_ins_with_the_oid_system() {
        let resource = patient(&martin(pb::IdentityStatus::Qualified));
        emit("patient-qualified", &resource);
        assert_eq!(
            resource["identifier"][0]["system"],
            "urn:oid:1.2.250.1.213.1.4.10"
        );
        assert_eq!(resource["identifier"][0]["value"], "241032303100470");
        assert_eq!(resource["meta"]["tag"][0]["code"], "qualified");
        assert_eq!(resource["name"][0]["family"], "MARTIN");
        assert_eq!(resource["name"][0]["given"], json!(["Hélène", "Marie"]));
        assert_eq!(resource["name"][1]["use"], "usual");
        assert_eq!(resource["gender"], "female");
        assert_eq!(resource["birthDate"], "1941-03-12");
        assert_eq!(
            resource["managingOrganization"]["reference"],
            "Organization/cds-bourganeuf"
        );
        assert!(
            resource["telecom"].as_array().expect("telecom").len() == 1,
            "no empty email"
        );
        assert!(
            !resource.to_string().contains("digicode"),
            "the access note is for the nurse, not for partners"
        );
    }

    #[test]
    fn an_identity_not_qualified_never_carries_the_ins() {
        for status in [
            pb::IdentityStatus::Provisional,
            pb::IdentityStatus::Recovered,
            pb::IdentityStatus::Validated,
        ] {
            let resource = patient(&martin(status));
            emit(&format!("patient-{}", status_code(status)), &resource);
            assert!(resource.get("identifier").is_none(), "{status:?}");
            assert!(
                !resource.to_string().contains("241032303100470"),
                "{status:?}"
            );
            assert_eq!(resource["meta"]["tag"][0]["code"], status_code(status));
        }
    }

    #[test]
    fn consents_map_their_decision_act_and_withdrawal() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let given = pb::Consent {
            id: "c1".into(),
            patient_id: "p1".into(),
            act: pb::ConsentAct::TeleExpertise as i32,
            decision: pb::ConsentDecision::Given as i32,
            method: pb::ConsentMethod::Oral as i32,
            recorded_time: at(1_796_331_612),
            ..Default::default()
        };
        let resource = consent(&given);
        emit("consent-given", &resource);
        assert_eq!(resource["status"], "active");
        assert_eq!(resource["provision"]["type"], "permit");
        assert_eq!(
            resource["provision"]["action"][0]["coding"][0]["code"],
            "tele-expertise"
        );
        assert_eq!(resource["dateTime"], "2026-12-03T21:00:12Z");

        let withdrawn = pb::Consent {
            withdrawn_time: at(1_796_400_000),
            act: pb::ConsentAct::Sharing as i32,
            target_org_id: "chu-limoges".into(),
            ..given.clone()
        };
        let resource = consent(&withdrawn);
        emit("consent-withdrawn", &resource);
        assert_eq!(resource["status"], "inactive");
        assert_eq!(
            resource["organization"][0]["reference"],
            "Organization/chu-limoges"
        );
        assert_eq!(
            resource["provision"]["period"]["end"],
            "2026-12-04T16:00:00Z"
        );

        let refused = pb::Consent {
            decision: pb::ConsentDecision::Refused as i32,
            ..given
        };
        let resource = consent(&refused);
        emit("consent-refused", &resource);
        assert_eq!(resource["status"], "rejected");
        assert_eq!(resource["provision"]["type"], "deny");
        assert_eq!(resource["policyRule"]["coding"][0]["code"], "OPTOUT");
    }
}
