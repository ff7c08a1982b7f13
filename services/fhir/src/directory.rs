//! Practitioner, PractitionerRole and Organization, from the directory.
//!
//! A person is a `Practitioner` whose id is their subject (the JWT `sub`); their RPPS number is
//! the national identifier (`8` + RPPS under the ANS's OID for national professional ids). Each
//! membership is a `PractitionerRole` linking them to an `Organization`, whose FINESS number is
//! its identifier.

use serde_json::{Value, json};
use telehealth_proto::v1 as pb;

use crate::{instant, prune, reference};

/// OID of the national identifiers of health professionals (idNatPS: `8` + RPPS).
const IDNAT_PS_SYSTEM: &str = "urn:oid:1.2.250.1.71.4.2.1";
/// OID of FINESS numbers.
const FINESS_SYSTEM: &str = "urn:oid:1.2.250.1.71.4.2.2";
/// The ANS nomenclature of health professions (TRE-G15).
const PROFESSION_SYSTEM: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
const ROLE_SYSTEM: &str = "urn:telehealth:role";

/// FHIR `Practitioner` of a member (the person; their memberships are PractitionerRoles).
pub fn practitioner(m: &pb::Member) -> Value {
    prune(json!({
        "resourceType": "Practitioner",
        "id": m.subject,
        "identifier": (!m.rpps_number.is_empty()).then(|| vec![json!({
            "use": "official",
            "type": { "text": "RPPS" },
            "system": IDNAT_PS_SYSTEM,
            "value": format!("8{}", m.rpps_number),
        })]),
        "active": m.active,
    }))
}

/// The id of a membership's `PractitionerRole`: the organisation and the subject.
pub fn practitioner_role_id(org_id: &str, subject: &str) -> String {
    format!("{org_id}.{subject}")
}

/// FHIR `PractitionerRole` of a membership: profession, the suite's roles, specialty, period.
pub fn practitioner_role(m: &pb::Member) -> Value {
    let profession = match pb::Profession::try_from(m.profession).unwrap_or_default() {
        pb::Profession::Physician => Some(("10", "Médecin")),
        pb::Profession::Nurse => Some(("60", "Infirmier")),
        _ => None,
    };
    let mut codes: Vec<Value> = profession
        .map(|(code, display)| {
            json!({ "coding": [{ "system": PROFESSION_SYSTEM, "code": code, "display": display }] })
        })
        .into_iter()
        .collect();
    codes.extend(m.roles.iter().map(|role| {
        let role = pb::Role::try_from(*role).unwrap_or_default();
        json!({ "coding": [{ "system": ROLE_SYSTEM, "code": role_code(role) }] })
    }));
    prune(json!({
        "resourceType": "PractitionerRole",
        "id": practitioner_role_id(&m.org_id, &m.subject),
        "active": m.active,
        "period": {
            "start": m.since_time.as_ref().and_then(instant),
            "end": m.until_time.as_ref().and_then(instant),
        },
        "practitioner": reference("Practitioner", &m.subject),
        "organization": reference("Organization", &m.org_id),
        "code": codes,
        "specialty": (!m.specialty.is_empty()).then(|| vec![json!({ "text": m.specialty })]),
    }))
}

fn role_code(role: pb::Role) -> &'static str {
    match role {
        pb::Role::Doctor => "doctor",
        pb::Role::Nurse => "nurse",
        pb::Role::Specialist => "specialist",
        pb::Role::Coordinator => "coordinator",
        pb::Role::Patient => "patient",
        pb::Role::Admin => "admin",
        pb::Role::Unspecified => "unknown",
    }
}

/// FHIR `Organization` of a centre or a hospital.
pub fn organization(o: &pb::Organisation) -> Value {
    let kind = match pb::OrganisationKind::try_from(o.kind).unwrap_or_default() {
        pb::OrganisationKind::HealthCentre => "Centre de santé",
        pb::OrganisationKind::Hospital => "Établissement hospitalier",
        pb::OrganisationKind::Unspecified => "",
    };
    prune(json!({
        "resourceType": "Organization",
        "id": o.org_id,
        "identifier": (!o.finess_number.is_empty()).then(|| vec![json!({
            "type": { "text": "FINESS" },
            "system": FINESS_SYSTEM,
            "value": o.finess_number,
        })]),
        "active": true,
        "type": (!kind.is_empty()).then(|| vec![json!({ "text": kind })]),
        "name": o.display_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit;

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn a_member_is_a_practitioner_with_a_role_in_an_organization() {
        let member = pb::Member {
            org_id: "chu-limoges".into(),
            subject: "dr-durand".into(),
            roles: vec![pb::Role::Specialist as i32],
            specialty: "dermatology".into(),
            since_time: at(1_790_000_000),
            active: true,
            rpps_number: "10101010101".into(),
            profession: pb::Profession::Physician as i32,
            ..Default::default()
        };
        let person = practitioner(&member);
        emit("practitioner", &person);
        assert_eq!(person["identifier"][0]["value"], "810101010101");
        assert_eq!(person["identifier"][0]["system"], IDNAT_PS_SYSTEM);

        let role = practitioner_role(&member);
        emit("practitioner-role", &role);
        assert_eq!(role["id"], "chu-limoges.dr-durand");
        assert_eq!(
            role["organization"]["reference"],
            "Organization/chu-limoges"
        );
        assert_eq!(role["code"][0]["coding"][0]["code"], "10");
        assert_eq!(role["code"][1]["coding"][0]["code"], "specialist");
        assert_eq!(role["specialty"][0]["text"], "dermatology");

        let ended = practitioner_role(&pb::Member {
            active: false,
            until_time: at(1_795_000_000),
            rpps_number: String::new(),
            profession: 0,
            ..member
        });
        emit("practitioner-role-ended", &ended);
        assert_eq!(ended["active"], false);
        assert!(ended["period"]["end"].is_string());

        let org = organization(&pb::Organisation {
            org_id: "chu-limoges".into(),
            display_name: "CHU de Limoges".into(),
            kind: pb::OrganisationKind::Hospital as i32,
            finess_number: "870000015".into(),
            ..Default::default()
        });
        emit("organization", &org);
        assert_eq!(org["name"], "CHU de Limoges");
        assert_eq!(org["identifier"][0]["value"], "870000015");
    }
}
