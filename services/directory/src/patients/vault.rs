//! Sealing a patient into a stored row and opening it again, with the blind indexes searches
//! use. The only place that sees both plaintext and the stored form.

use std::sync::Arc;

use telehealth_kit::{
    record::{instant, json, micros},
    sealed::KeyRing,
};

use super::{
    ins::Ins,
    model::{
        Address, Contact, GeneralPractitioner, IdentityStatus, IdentityTraits, Patient, Sex,
        StatusChange,
    },
    names::search_form,
    store::{PatientRow, StatusChangeRow},
};
use crate::error::DirectoryError;

type Result<T> = std::result::Result<T, DirectoryError>;

/// Blind-index purposes (the HMAC is keyed and separated by purpose).
const NAME: &str = "name";
const BIRTH_DATE: &str = "birth_date";
const INS: &str = "ins";

/// The key ring of the register, shared by every call.
#[derive(Clone, Debug)]
pub struct Vault {
    keys: Arc<KeyRing>,
}

impl Vault {
    pub fn new(keys: KeyRing) -> Vault {
        Vault {
            keys: Arc::new(keys),
        }
    }

    /// The digest a name is found under (birth or used name, in its search form).
    pub fn name_digest(&self, name: &str) -> String {
        self.keys.blind_index(NAME, &search_form(name))
    }

    pub fn birth_date_digest(&self, date: jiff::civil::Date) -> String {
        self.keys.blind_index(BIRTH_DATE, &date.to_string())
    }

    pub fn ins_digest(&self, number: &str) -> String {
        self.keys.blind_index(INS, number)
    }

    /// The name digests of a patient, with the kind each indexes.
    pub fn name_digests(&self, identity: &IdentityTraits) -> Vec<(String, &'static str)> {
        let mut digests = vec![(self.name_digest(&identity.birth_name), "birth_name")];
        if !search_form(&identity.used_name).is_empty() {
            digests.push((self.name_digest(&identity.used_name), "used_name"));
        }
        digests
    }

    pub fn seal(&self, field: &str, record: &str, value: &str) -> Result<String> {
        Ok(self.keys.seal(field, record, value)?)
    }

    pub fn open(&self, field: &str, record: &str, sealed: &str) -> Result<String> {
        Ok(self.keys.open(field, record, sealed)?)
    }

    /// True when every sealed value of `row` is under the current key.
    pub fn is_current(&self, sealed: &str) -> bool {
        self.keys.is_current(sealed)
    }

    /// The stored form of `patient` (`created_by` is kept from the first write).
    pub fn seal_patient(&self, patient: &Patient, created_by: &str) -> Result<PatientRow> {
        let id = patient.id.as_str();
        let traits = &patient.identity;
        let seal = |field: &str, value: &str| self.seal(field, id, value);
        let seal_json = |field: &str, value: String| self.seal(field, id, &value);
        Ok(PatientRow {
            id: patient.id.clone(),
            org_id: patient.org_id.clone(),
            merged_into: None,
            status: patient.status.as_str().to_owned(),
            birth_name: seal("birth_name", &traits.birth_name)?,
            first_names: seal("first_names", &traits.first_names)?,
            used_first_name: seal("used_first_name", &traits.used_first_name)?,
            used_name: seal("used_name", &traits.used_name)?,
            sex: seal_json("sex", json(&traits.sex))?,
            birth_date: seal("birth_date", &traits.birth_date.to_string())?,
            birth_place: seal("birth_place", &traits.birth_place_code)?,
            ins: patient
                .ins
                .as_ref()
                .map(|ins| seal_json("ins", json(ins)))
                .transpose()?,
            contact: seal_json("contact", json(&patient.contact))?,
            address: patient
                .address
                .as_ref()
                .map(|a| seal_json("address", json(a)))
                .transpose()?,
            gp: patient
                .gp
                .as_ref()
                .map(|gp| seal_json("gp", json(gp)))
                .transpose()?,
            birth_date_digest: self.birth_date_digest(traits.birth_date),
            ins_digest: patient.ins.as_ref().map(|ins| self.ins_digest(&ins.number)),
            care_team: json(&patient.care_team),
            objects_to_sharing: patient.objects_to_sharing,
            objection_note: None,
            created_us: micros(patient.created),
            created_by: created_by.to_owned(),
            updated_us: micros(patient.created),
            version: patient.version,
        })
    }

    /// The patient a stored row holds (aliases and history are filled by the caller).
    pub fn open_patient(&self, row: &PatientRow) -> Result<Patient> {
        let id = row.id.as_str();
        let open = |field: &str, sealed: &str| self.open(field, id, sealed);
        let corrupt = |field: &str| {
            DirectoryError::Kit(telehealth_kit::KitError::Sealed(format!(
                "{field} of {id}: not the expected value"
            )))
        };
        let from_json = |field: &'static str, sealed: &str| -> Result<serde_json::Value> {
            serde_json::from_str(&open(field, sealed)?).map_err(|_| corrupt(field))
        };
        let sex: Sex =
            serde_json::from_value(from_json("sex", &row.sex)?).map_err(|_| corrupt("sex"))?;
        let birth_date = open("birth_date", &row.birth_date)?
            .parse()
            .map_err(|_| corrupt("birth_date"))?;
        let ins: Option<Ins> = row
            .ins
            .as_deref()
            .map(|sealed| {
                serde_json::from_value(from_json("ins", sealed)?).map_err(|_| corrupt("ins"))
            })
            .transpose()?;
        let contact: Contact = serde_json::from_value(from_json("contact", &row.contact)?)
            .map_err(|_| corrupt("contact"))?;
        let address: Option<Address> = row
            .address
            .as_deref()
            .map(|sealed| {
                serde_json::from_value(from_json("address", sealed)?)
                    .map_err(|_| corrupt("address"))
            })
            .transpose()?;
        let gp: Option<GeneralPractitioner> = row
            .gp
            .as_deref()
            .map(|sealed| {
                serde_json::from_value(from_json("gp", sealed)?).map_err(|_| corrupt("gp"))
            })
            .transpose()?;
        Ok(Patient {
            id: row.id.clone(),
            org_id: row.org_id.clone(),
            identity: IdentityTraits {
                birth_name: open("birth_name", &row.birth_name)?,
                first_names: open("first_names", &row.first_names)?,
                used_first_name: open("used_first_name", &row.used_first_name)?,
                used_name: open("used_name", &row.used_name)?,
                sex,
                birth_date,
                birth_place_code: open("birth_place", &row.birth_place)?,
            },
            ins,
            status: IdentityStatus::parse(&row.status),
            contact,
            address,
            gp,
            care_team: serde_json::from_str(&row.care_team).unwrap_or_default(),
            objects_to_sharing: row.objects_to_sharing,
            merged_ids: Vec::new(),
            created: instant(row.created_us),
            version: row.version,
            history: Vec::new(),
        })
    }

    /// A stored status change, opened.
    pub fn open_status_change(
        &self,
        patient_id: &str,
        row: &StatusChangeRow,
    ) -> Result<StatusChange> {
        Ok(StatusChange {
            from: IdentityStatus::parse(&row.from_status),
            to: IdentityStatus::parse(&row.to_status),
            proof: super::model::Proof::parse(&row.proof).unwrap_or(super::model::Proof::Doubt),
            note: self.open("status_note", patient_id, &row.note)?,
            by: serde_json::from_str(&row.changed_by).unwrap_or_default(),
            at: instant(row.changed_us),
        })
    }

    /// `row` re-sealed under the current key (every sealed field), keeping everything else;
    /// digests are recomputed from the opened values.
    pub fn reseal(&self, row: &PatientRow) -> Result<PatientRow> {
        let patient = self.open_patient(row)?;
        let mut resealed = self.seal_patient(&patient, &row.created_by)?;
        resealed.merged_into = row.merged_into.clone();
        resealed.objection_note = row
            .objection_note
            .as_deref()
            .map(|sealed| {
                let note = self.open("objection_note", &row.id, sealed)?;
                self.seal("objection_note", &row.id, &note)
            })
            .transpose()?;
        resealed.updated_us = row.updated_us;
        if row.merged_into.is_some() {
            // An alias keeps no INS digest: the survivor holds the INS.
            resealed.ins_digest = None;
        }
        Ok(resealed)
    }

    /// True when every sealed field of `row` is under the current key.
    pub fn row_is_current(&self, row: &PatientRow) -> bool {
        [
            Some(&row.birth_name),
            Some(&row.first_names),
            Some(&row.used_first_name),
            Some(&row.used_name),
            Some(&row.sex),
            Some(&row.birth_date),
            Some(&row.birth_place),
            row.ins.as_ref(),
            Some(&row.contact),
            row.address.as_ref(),
            row.gp.as_ref(),
            row.objection_note.as_ref(),
        ]
        .into_iter()
        .flatten()
        .all(|sealed| self.is_current(sealed))
    }
}
