//! The demo data `telehealth up` seeds on a first start, so that a new user can try every flow
//! at once: a centre and the hospital its tele-expertise requests go to, their people, and a
//! handful of fictitious patients with test INS identities and their consents.
//!
//! Everything goes through the gateway, as the people themselves would do it (their dev device
//! certificate and a token bound to it): the seed exercises the same checks as any client, and
//! leaves the same audit trail. It runs only when the embedded databases did not exist before the
//! start (`telehealth up --no-demo` skips it).

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use telehealth_directory::patients::ins::key_of;
use telehealth_kit::{
    Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::v1::{
    self as pb, directory_service_client::DirectoryServiceClient,
    patient_service_client::PatientServiceClient,
};
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

/// The demo centre (centre de santé) and the hospital its requests go to.
pub const CENTRE: &str = "cds-bourganeuf";
pub const HOSPITAL: &str = "chu-limoges";

/// A person of the demo.
pub struct DemoPerson {
    pub subject: &'static str,
    pub role: Role,
    pub org: &'static str,
    pub specialty: Option<&'static str>,
    /// The sample device of the dev PKI they use.
    pub device: &'static str,
    /// Who they are, for the summary.
    pub label: &'static str,
    /// Their (fictitious) RPPS number: what the development sign-in asks for.
    pub rpps: &'static str,
}

/// The people of the demo.
pub const PEOPLE: [DemoPerson; 7] = [
    DemoPerson {
        subject: "dr-martin",
        role: Role::Doctor,
        org: CENTRE,
        specialty: None,
        device: "doctor-workstation",
        label: "médecin du centre",
        rpps: "10000000017",
    },
    DemoPerson {
        subject: "nurse-claire",
        role: Role::Nurse,
        org: CENTRE,
        specialty: None,
        device: "nurse-tablet",
        label: "infirmière à domicile",
        rpps: "10000000025",
    },
    DemoPerson {
        subject: "admin-bourganeuf",
        role: Role::Admin,
        org: CENTRE,
        specialty: None,
        device: "doctor-workstation",
        label: "administratrice du centre",
        rpps: "10000000033",
    },
    DemoPerson {
        subject: "coord-bourganeuf",
        role: Role::Coordinator,
        org: CENTRE,
        specialty: None,
        device: "doctor-workstation",
        label: "secrétaire coordinatrice",
        rpps: "10000000041",
    },
    DemoPerson {
        subject: "dr-durand",
        role: Role::Specialist,
        org: HOSPITAL,
        specialty: Some("dermatology"),
        device: "specialist-workstation",
        label: "dermatologue du CHU",
        rpps: "10000000058",
    },
    DemoPerson {
        subject: "dr-leroy",
        role: Role::Specialist,
        org: HOSPITAL,
        specialty: Some("wound_care"),
        device: "specialist-workstation",
        label: "spécialiste des plaies du CHU",
        rpps: "10000000066",
    },
    DemoPerson {
        subject: "admin-chu",
        role: Role::Admin,
        org: HOSPITAL,
        specialty: None,
        device: "specialist-workstation",
        label: "administrateur du CHU",
        rpps: "10000000074",
    },
];

/// A fictitious patient: birth name, first names, sex, birth date, birth place (INSEE), the
/// first 13 characters of a test INS (the key is computed), the identity status to reach.
struct DemoPatient {
    birth_name: &'static str,
    used_name: &'static str,
    first_names: &'static str,
    sex: pb::Sex,
    birth_date: &'static str,
    birth_place: &'static str,
    ins13: &'static str,
    qualified: bool,
    street: &'static str,
    access_note: &'static str,
}

const PATIENTS: [DemoPatient; 5] = [
    DemoPatient {
        birth_name: "MARTIN",
        used_name: "",
        first_names: "Hélène Marie",
        sex: pb::Sex::Female,
        birth_date: "1941-03-12",
        birth_place: "23031",
        ins13: "2410323031004",
        qualified: true,
        street: "12 rue des Tisserands",
        access_note: "digicode 4812B, 2e étage gauche",
    },
    DemoPatient {
        birth_name: "BERNARD",
        used_name: "",
        first_names: "Jean-Pierre Louis",
        sex: pb::Sex::Male,
        birth_date: "1948-07-02",
        birth_place: "87085",
        ins13: "1480787085112",
        qualified: true,
        street: "3 place de l'Église",
        access_note: "clé dans la boîte à code, 1937",
    },
    DemoPatient {
        birth_name: "PETIT",
        used_name: "ROUSSEAU",
        first_names: "Odette",
        sex: pb::Sex::Female,
        birth_date: "1936-11-30",
        birth_place: "23096",
        ins13: "2361123096021",
        qualified: false,
        street: "Lieu-dit Les Combes",
        access_note: "maison au bout du chemin, chien gentil",
    },
    DemoPatient {
        birth_name: "DUBOIS",
        used_name: "",
        first_names: "Marcel André",
        sex: pb::Sex::Male,
        birth_date: "1952-01-19",
        birth_place: "2A004",
        ins13: "152012A004033",
        qualified: false,
        street: "8 avenue du Lac",
        access_note: "",
    },
    DemoPatient {
        birth_name: "LEFÈVRE",
        used_name: "",
        first_names: "Zoé",
        sex: pb::Sex::Female,
        birth_date: "1944-05-06",
        birth_place: "23176",
        ins13: "2440523176045",
        qualified: false,
        street: "21 route de Guéret",
        access_note: "sonner longtemps",
    },
];

/// A client of `person` through the gateway at `gateway`.
pub(crate) async fn channel(
    settings: &Settings,
    gateway: SocketAddr,
    person: &DemoPerson,
) -> anyhow::Result<InterceptedService<Channel, impl tonic::service::Interceptor + Clone>> {
    let pki = DevPki::new(settings.pki_dir());
    let device = pki.device_files(person.device);
    let token = DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
        subject: person.subject.to_owned(),
        roles: vec![person.role],
        org: person.org.to_owned(),
        specialty: person.specialty.map(str::to_owned),
        cert_thumbprint: Some(thumbprint_of_pem_file(&device.cert)?),
        ttl: Duration::from_secs(600),
        audience: DEFAULT_AUDIENCE.to_owned(),
    })?;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let channel =
        crate::connection::gateway_channel(settings, gateway, device.cert, device.key).await?;
    let interceptor = move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        Ok(request)
    };
    Ok(InterceptedService::new(channel, interceptor))
}

/// Seeds the demo's people and patients through the gateway at `gateway`; returns the ids of the
/// patients created, in demo order (`demo_care` seeds their care next).
pub async fn seed(settings: &Settings, gateway: SocketAddr) -> anyhow::Result<Vec<String>> {
    for person in &PEOPLE {
        let mut directory = DirectoryServiceClient::new(channel(settings, gateway, person).await?);
        directory
            .register_self(pb::RegisterSelfRequest {})
            .await
            .with_context(|| format!("{} joins {}", person.subject, person.org))?;
    }
    // Their administrators record their RPPS numbers: how the sign-in finds them.
    for person in &PEOPLE {
        let admin = PEOPLE
            .iter()
            .find(|p| p.org == person.org && p.role == Role::Admin)
            .context("every demo organisation has an administrator")?;
        let mut directory = DirectoryServiceClient::new(channel(settings, gateway, admin).await?);
        directory
            .put_member(pb::PutMemberRequest {
                subject: person.subject.into(),
                roles: vec![telehealth_kit::record::role_proto(person.role)],
                specialty: person.specialty.unwrap_or_default().into(),
                rpps_number: person.rpps.into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("the RPPS number of {}", person.subject))?;
    }
    let doctor = &PEOPLE[0];
    let nurse = &PEOPLE[1];
    let mut register = PatientServiceClient::new(channel(settings, gateway, doctor).await?);
    let mut ids = Vec::with_capacity(PATIENTS.len());
    for patient in &PATIENTS {
        let number = format!("{}{:02}", patient.ins13, key_of(patient.ins13));
        let created = register
            .create_patient(pb::CreatePatientRequest {
                identity: Some(pb::IdentityTraits {
                    birth_name: patient.birth_name.into(),
                    first_names: patient.first_names.into(),
                    used_first_name: String::new(),
                    used_name: patient.used_name.into(),
                    sex: patient.sex as i32,
                    birth_date: patient.birth_date.into(),
                    birth_place_code: patient.birth_place.into(),
                }),
                ins: Some(pb::Ins {
                    number,
                    kind: pb::InsKind::Nir as i32,
                    test: true,
                    oid: String::new(),
                }),
                contact: Some(pb::Contact {
                    phone: "05 55 64 00 00".into(),
                    email: String::new(),
                }),
                address: Some(pb::Address {
                    lines: vec![patient.street.into()],
                    postal_code: "23400".into(),
                    city: "Bourganeuf".into(),
                    country: "FR".into(),
                    access_note: patient.access_note.into(),
                }),
                gp: None,
                care_team: vec![doctor.subject.into(), nurse.subject.into()],
                confirm_distinct: true,
            })
            .await
            .with_context(|| format!("demo patient {}", patient.birth_name))?
            .into_inner()
            .patient
            .context("the register answers the patient")?;
        if patient.qualified {
            for (status, proof) in [
                (
                    pb::IdentityStatus::Recovered,
                    pb::IdentityProof::InsiTeleservice,
                ),
                (
                    pb::IdentityStatus::Qualified,
                    pb::IdentityProof::IdentityCard,
                ),
            ] {
                register
                    .set_identity_status(pb::SetIdentityStatusRequest {
                        patient_id: created.id.clone(),
                        status: status as i32,
                        proof: proof as i32,
                        note: "données de démonstration".into(),
                        expected_version: 0,
                    })
                    .await
                    .context("demo identity status")?;
            }
        }
        for act in [
            pb::ConsentAct::Teleconsultation,
            pb::ConsentAct::TeleExpertise,
            pb::ConsentAct::WoundMonitoring,
        ] {
            register
                .record_consent(pb::RecordConsentRequest {
                    patient_id: created.id.clone(),
                    act: act as i32,
                    decision: pb::ConsentDecision::Given as i32,
                    method: pb::ConsentMethod::Oral as i32,
                    document_ref: String::new(),
                    note: "données de démonstration".into(),
                    target_org_id: String::new(),
                })
                .await
                .context("demo consent")?;
        }
        ids.push(created.id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use telehealth_directory::patients::ins::{Ins, InsKind};

    #[test]
    fn every_demo_ins_is_well_formed() {
        for patient in &PATIENTS {
            let number = format!("{}{:02}", patient.ins13, key_of(patient.ins13));
            Ins::parse(&number, InsKind::Nir, true)
                .unwrap_or_else(|e| panic!("{}: {e}", patient.birth_name));
        }
    }
}
