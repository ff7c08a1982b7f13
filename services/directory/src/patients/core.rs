//! The register's operations, with their authorisation, transaction and audit, knowing nothing
//! of gRPC.
//!
//! Who sees a patient: the organisation that registered them, and the organisations their care
//! is shared with. Anyone else gets [`DirectoryError::PatientNotFound`], exactly as for an id
//! that does not exist. Every read of a record is audited (`record_type` `patient`).

use jiff::Timestamp;
use sqlx::AnyConnection;
use telehealth_kit::{
    audit::{self, AuditEntry, Outcome},
    identity::{Caller, Identity, Role},
    record::{ActorRecord, instant, json, micros},
    service_core::ServiceCore,
};

use super::{
    model::{
        Consent, ConsentAct, ConsentInput, Decision, IdentityStatus, Method, Patient,
        PatientChanges, PatientInput, Proof, SearchCriteria, StatusChange, check_transition,
    },
    store::{self, ConsentRow, PatientRow, StatusChangeRow},
    vault::Vault,
};
use crate::{error::DirectoryError, store as members};

type Result<T> = std::result::Result<T, DirectoryError>;

/// Largest care team.
pub const MAX_CARE_TEAM: usize = 20;
/// Consents listed at most.
const MAX_CONSENTS_LISTED: i64 = 200;

/// What `create` did.
pub enum Created {
    /// The patient was registered.
    Patient(Box<Patient>),
    /// Not registered: these records' traits match.
    PossibleDuplicates(Vec<Patient>),
}

/// The patient register's core.
#[derive(Clone)]
pub struct Register {
    base: ServiceCore,
    vault: Vault,
}

impl Register {
    pub fn new(base: ServiceCore, vault: Vault) -> Self {
        Register { base, vault }
    }

    fn now(&self) -> Timestamp {
        self.base.now()
    }

    /// Registers a patient in the caller's organisation, unless their traits match existing
    /// records and the caller did not confirm they are distinct.
    pub async fn create(
        &self,
        caller: &Caller,
        input: PatientInput,
        confirm_distinct: bool,
    ) -> Result<Created> {
        let person = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        self.check_care_team(&mut tx, &person.org, &input.care_team, now)
            .await?;
        let names: Vec<String> = self
            .vault
            .name_digests(&input.identity)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let birth_date = self.vault.birth_date_digest(input.identity.birth_date);
        let ins_digest = input.ins.as_ref().map(|i| self.vault.ins_digest(&i.number));
        let candidates = store::possible_duplicates(
            &mut tx,
            &person.org,
            &birth_date,
            &names,
            ins_digest.as_deref(),
        )
        .await?;
        if ins_digest.is_some() && candidates.iter().any(|c| c.ins_digest == ins_digest) {
            return Err(DirectoryError::AlreadyExists(
                "a patient of your organisation already has this INS; search by INS".into(),
            ));
        }
        if !candidates.is_empty() && !confirm_distinct {
            drop(tx);
            let mut found = Vec::new();
            for row in &candidates {
                found.push(self.vault.open_patient(row)?);
            }
            self.audit(caller, "CreatePatient", "-", Outcome::Invalid)
                .await;
            return Ok(Created::PossibleDuplicates(found));
        }
        let patient = Patient {
            id: uuid::Uuid::new_v4().to_string(),
            org_id: person.org.clone(),
            identity: input.identity,
            ins: input.ins,
            status: IdentityStatus::Provisional,
            contact: input.contact,
            address: input.address,
            gp: input.gp,
            care_team: input.care_team,
            objects_to_sharing: false,
            merged_ids: Vec::new(),
            created: now,
            version: 1,
            history: Vec::new(),
        };
        let row = self.vault.seal_patient(&patient, &person.subject)?;
        store::insert_patient(&mut tx, &row, &self.name_rows(&patient)).await?;
        self.commit_audited(tx, caller, "CreatePatient", &patient.id)
            .await?;
        tracing::info!(patient_id = %patient.id, org = %patient.org_id, "patient registered");
        Ok(Created::Patient(Box::new(patient)))
    }

    /// One patient as the caller may see them (audited).
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Patient> {
        let person = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let result = self.visible_patient(&mut conn, &person.org, id).await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::of(error),
        };
        let record = result.as_ref().map(|p| p.id.as_str()).unwrap_or(id);
        self.audit(caller, "GetPatient", record, outcome).await;
        let patient = result?;
        Ok(as_seen_by(patient, &person.org))
    }

    /// Replaces what `changes` sets on a patient of the caller's organisation.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        changes: PatientChanges,
    ) -> Result<Patient> {
        let person = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        let (row, mut patient) = self.owned_patient(&mut tx, &person.org, id).await?;
        check_version(changes.expected_version, patient.version)?;
        if let Some(identity) = changes.identity {
            if patient.status == IdentityStatus::Qualified && identity != patient.identity {
                return Err(DirectoryError::FailedPrecondition(
                    "the identity is qualified: its traits come from the INSi teleservice; set the status back to provisional first if they are wrong".into(),
                ));
            }
            patient.identity = identity;
        }
        if let Some(ins) = changes.ins {
            let locked = matches!(
                patient.status,
                IdentityStatus::Recovered | IdentityStatus::Qualified
            );
            if locked && patient.ins.as_ref() != Some(&ins) {
                return Err(DirectoryError::FailedPrecondition(
                    "the INS of a recovered or qualified identity cannot change; set the status back to provisional first".into(),
                ));
            }
            patient.ins = Some(ins);
        }
        if let Some(care_team) = changes.care_team {
            self.check_care_team(&mut tx, &person.org, &care_team, now)
                .await?;
            patient.care_team = care_team;
        }
        patient.contact = changes.contact.unwrap_or(patient.contact);
        patient.address = changes.address.or(patient.address);
        patient.gp = changes.gp.or(patient.gp);
        self.write(&mut tx, &row, &mut patient, now).await?;
        self.commit_audited(tx, caller, "UpdatePatient", &patient.id)
            .await?;
        self.with_history(patient).await
    }

    /// Changes the identity status on `proof`, under the identity-vigilance rules.
    pub async fn set_status(
        &self,
        caller: &Caller,
        id: &str,
        to: IdentityStatus,
        proof: Proof,
        note: String,
        expected_version: i64,
    ) -> Result<Patient> {
        let person = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        let (row, mut patient) = self.owned_patient(&mut tx, &person.org, id).await?;
        check_version(expected_version, patient.version)?;
        check_transition(patient.status, to, proof, patient.ins.is_some())
            .map_err(|refused| DirectoryError::FailedPrecondition(refused.0.into()))?;
        let change = StatusChangeRow {
            from_status: patient.status.as_str().to_owned(),
            to_status: to.as_str().to_owned(),
            proof: proof.as_str().to_owned(),
            note: self.vault.seal("status_note", &patient.id, &note)?,
            changed_by: json(&ActorRecord::of(caller)),
            changed_us: micros(now),
        };
        patient.status = to;
        self.write(&mut tx, &row, &mut patient, now).await?;
        store::insert_status_change(&mut tx, &patient.id, &change).await?;
        self.commit_audited(tx, caller, "SetIdentityStatus", &patient.id)
            .await?;
        tracing::info!(patient_id = %patient.id, status = to.as_str(), "identity status changed");
        self.with_history(patient).await
    }

    /// Patients the caller's organisation sees that match every criterion (audited).
    pub async fn search(
        &self,
        caller: &Caller,
        criteria: SearchCriteria,
        limit: i64,
    ) -> Result<Vec<Patient>> {
        let person = person(caller)?;
        let name = criteria.name.as_deref().map(|n| self.vault.name_digest(n));
        let birth_date = criteria.birth_date.map(|d| self.vault.birth_date_digest(d));
        let ins = criteria.ins.as_deref().map(|i| self.vault.ins_digest(i));
        let mut conn = self.base.db().pool().acquire().await?;
        let rows = store::search(
            &mut conn,
            &person.org,
            name.as_deref(),
            birth_date.as_deref(),
            ins.as_deref(),
            limit,
        )
        .await?;
        drop(conn);
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.push(as_seen_by(self.vault.open_patient(row)?, &person.org));
        }
        let ids = found
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.audit(caller, "SearchPatients", &ids, Outcome::Ok)
            .await;
        Ok(found)
    }

    /// Merges `merged` into `surviving` (both of the caller's organisation).
    pub async fn merge(&self, caller: &Caller, surviving: &str, merged: &str) -> Result<Patient> {
        let person = person(caller)?;
        if surviving == merged {
            return Err(DirectoryError::invalid(
                "merged_id",
                "must differ from surviving_id",
            ));
        }
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        let (survivor_row, mut survivor) =
            self.owned_patient(&mut tx, &person.org, surviving).await?;
        let (merged_row, merged_patient) = self.owned_patient(&mut tx, &person.org, merged).await?;
        if survivor.id == merged_patient.id {
            return Err(DirectoryError::FailedPrecondition(
                "these ids are already the same patient".into(),
            ));
        }
        if let (Some(a), Some(b)) = (&survivor.ins, &merged_patient.ins)
            && a.number != b.number
        {
            return Err(DirectoryError::FailedPrecondition(
                "the two records have different INS: they are different people".into(),
            ));
        }
        if survivor.ins.is_none() {
            survivor.ins = merged_patient.ins.clone();
        }
        for member in &merged_patient.care_team {
            if !survivor.care_team.contains(member) && survivor.care_team.len() < MAX_CARE_TEAM {
                survivor.care_team.push(member.clone());
            }
        }
        survivor.objects_to_sharing |= merged_patient.objects_to_sharing;
        // The alias gives up its INS digest first: the survivor may take it (one INS per org).
        let mut alias = merged_row.clone();
        alias.merged_into = Some(survivor.id.clone());
        alias.ins_digest = None;
        alias.version += 1;
        alias.updated_us = micros(now);
        if !store::update_patient(&mut tx, &alias, &[]).await? {
            return Err(DirectoryError::VersionMismatch {
                current: merged_row.version,
            });
        }
        store::move_references(&mut tx, &merged_patient.id, &survivor.id).await?;
        self.write(&mut tx, &survivor_row, &mut survivor, now)
            .await?;
        self.stage(&mut tx, caller, "MergePatients", &survivor.id)
            .await?;
        self.commit_audited(tx, caller, "MergedInto", &merged_patient.id)
            .await?;
        tracing::info!(surviving = %survivor.id, merged = %merged_patient.id, "patients merged");
        self.with_history(survivor).await
    }

    /// Everything the register holds about one patient of the caller's organisation, as JSON.
    pub async fn export(&self, caller: &Caller, id: &str) -> Result<(String, Vec<u8>)> {
        let person = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let result = self.owned_patient(&mut conn, &person.org, id).await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "ExportPatient", id, outcome).await;
        let (_, patient) = result?;
        let patient = self.load_history(&mut conn, patient).await?;
        let consents = store::consents_of(&mut conn, &patient.id, i64::MAX).await?;
        let consents = consents
            .iter()
            .map(|c| self.open_consent(c))
            .collect::<Result<Vec<_>>>()?;
        let shares = store::shares_of(&mut conn, &patient.id).await?;
        let mut merged = Vec::new();
        for alias in &patient.merged_ids {
            if let Some(row) = store::patient(&mut conn, alias).await? {
                let record = self.vault.open_patient(&row)?;
                merged.push(self.load_history(&mut conn, record).await?);
            }
        }
        let leaves = |p: Patient| withhold_unqualified_ins(p);
        let document = serde_json::json!({
            "format": "telehealth-patient-export/1",
            "exported_at": self.now().to_string(),
            "exported_by": ActorRecord::of(caller),
            "patient": leaves(patient.clone()),
            "merged_records": merged.into_iter().map(leaves).collect::<Vec<_>>(),
            "consents": consents,
            "shared_with": shares
                .iter()
                .map(|(org, reason)| serde_json::json!({"org_id": org, "reason": reason}))
                .collect::<Vec<_>>(),
            "note": "This archive holds what the patient register keeps. Appointments, wound \
                     follow-ups and tele-expertise requests are exported by their services.",
        });
        let bytes = serde_json::to_vec_pretty(&document).expect("JSON values serialise");
        Ok((format!("patient-{}.json", patient.id), bytes))
    }

    /// Records or lifts the patient's objection to sharing.
    pub async fn record_objection(
        &self,
        caller: &Caller,
        id: &str,
        objects: bool,
        note: String,
    ) -> Result<Patient> {
        let person = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        let (row, mut patient) = self.owned_patient(&mut tx, &person.org, id).await?;
        patient.objects_to_sharing = objects;
        let row = PatientRow {
            objection_note: Some(self.vault.seal("objection_note", &patient.id, &note)?),
            ..row
        };
        self.write(&mut tx, &row, &mut patient, now).await?;
        self.commit_audited(tx, caller, "RecordObjection", &patient.id)
            .await?;
        self.with_history(patient).await
    }

    /// Records a consent of a patient of the caller's organisation.
    pub async fn record_consent(
        &self,
        caller: &Caller,
        id: &str,
        input: ConsentInput,
    ) -> Result<Consent> {
        let person = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        let (_, patient) = self.owned_patient(&mut tx, &person.org, id).await?;
        if input.act == ConsentAct::Sharing
            && input.decision == Decision::Given
            && patient.objects_to_sharing
        {
            return Err(DirectoryError::FailedPrecondition(
                "the patient objects to sharing their data; lift the objection (RecordObjection) first".into(),
            ));
        }
        let consent_id = uuid::Uuid::new_v4().to_string();
        let row = ConsentRow {
            id: consent_id.clone(),
            patient_id: patient.id.clone(),
            org_id: person.org.clone(),
            act: input.act.as_str().to_owned(),
            target_org_id: input.target_org_id,
            decision: match input.decision {
                Decision::Given => "given",
                Decision::Refused => "refused",
            }
            .to_owned(),
            method: input.method.as_str().to_owned(),
            document_ref: input.document_ref,
            note: self.vault.seal("consent_note", &consent_id, &input.note)?,
            recorded_by: json(&ActorRecord::of(caller)),
            recorded_us: micros(now),
            withdrawn_us: None,
            withdrawn_by: None,
        };
        store::insert_consent(&mut tx, &row).await?;
        self.commit_audited(tx, caller, "RecordConsent", &patient.id)
            .await?;
        self.open_consent(&row)
    }

    /// Withdraws a consent recorded in the caller's organisation.
    pub async fn withdraw_consent(&self, caller: &Caller, consent_id: &str) -> Result<Consent> {
        let person = person(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, &person.org, micros(now)).await?;
        let row = store::consent(&mut tx, consent_id)
            .await?
            .filter(|c| c.org_id == person.org)
            .ok_or(DirectoryError::ConsentNotFound)?;
        let by = json(&ActorRecord::of(caller));
        if !store::withdraw_consent(&mut tx, consent_id, micros(now), &by).await? {
            return Err(DirectoryError::FailedPrecondition(
                "this consent is already withdrawn".into(),
            ));
        }
        self.commit_audited(tx, caller, "WithdrawConsent", &row.patient_id)
            .await?;
        let withdrawn = ConsentRow {
            withdrawn_us: Some(micros(now)),
            withdrawn_by: Some(by),
            ..row
        };
        self.open_consent(&withdrawn)
    }

    /// The consents of a patient of the caller's organisation, newest first.
    pub async fn list_consents(&self, caller: &Caller, id: &str) -> Result<Vec<Consent>> {
        let person = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let (_, patient) = self.owned_patient(&mut conn, &person.org, id).await?;
        let rows = store::consents_of(&mut conn, &patient.id, MAX_CONSENTS_LISTED).await?;
        rows.iter().map(|c| self.open_consent(c)).collect()
    }

    /// The consent in force for `act` on a patient `org` sees (service to service): its id and
    /// the patient's surviving id, or what to record.
    pub async fn check_consent(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        act: ConsentAct,
        target_org: &str,
    ) -> Result<(String, String)> {
        service(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let row = self.visible_row(&mut conn, org, id).await?;
        let current =
            store::current_consent(&mut conn, &row.id, org, act.as_str(), target_org).await?;
        let outcome = match current {
            Some(consent) if consent.decision == "given" => Ok((consent.id, row.id.clone())),
            Some(_) => Err(DirectoryError::FailedPrecondition(format!(
                "the patient refused {}; record their new consent (RecordConsent) if they changed their mind",
                act.describe()
            ))),
            None => Err(DirectoryError::FailedPrecondition(format!(
                "no consent of the patient to {} is recorded; ask them and record it (RecordConsent) first",
                act.describe()
            ))),
        };
        let audit_outcome = outcome.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "CheckConsent", &row.id, audit_outcome)
            .await;
        outcome
    }

    /// The surviving id of the patient `id` names, if `org` sees them, and the ids merged into
    /// it (service to service).
    pub async fn resolve(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
    ) -> Result<(String, Vec<String>)> {
        service(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        store::resolve(&mut conn, org, id)
            .await?
            .ok_or(DirectoryError::PatientNotFound)
    }

    /// The identity a report about a patient of `org` names (service to service: the
    /// tele-expertise report): traits and status, the INS only when qualified; never contact
    /// details, address or care team. Audited, as a read of the record.
    pub async fn report_identity(&self, caller: &Caller, org: &str, id: &str) -> Result<Patient> {
        service(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let result = self.visible_patient(&mut conn, org, id).await;
        drop(conn);
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::of(error),
        };
        let record = result.as_ref().map(|p| p.id.as_str()).unwrap_or(id);
        self.audit(caller, "ReportIdentity", record, outcome).await;
        let patient = withhold_unqualified_ins(result?);
        Ok(Patient {
            contact: Default::default(),
            address: None,
            care_team: Vec::new(),
            ..patient
        })
    }

    /// Shares a patient `org` sees with `with_org` (service to service); the patient's
    /// surviving id.
    pub async fn share(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        with_org: &str,
        reason: &str,
    ) -> Result<String> {
        service(caller)?;
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, org, micros(now)).await?;
        let row = self.visible_row(&mut tx, org, id).await?;
        if row.org_id != with_org {
            if row.objects_to_sharing {
                return Err(DirectoryError::FailedPrecondition(
                    "the patient objects to sharing their data with other organisations".into(),
                ));
            }
            store::insert_share(&mut tx, &row.id, with_org, reason, micros(now)).await?;
            self.stage(&mut tx, caller, "SharePatient", &row.id).await?;
        }
        tx.commit().await?;
        self.base.flush_audit().await;
        Ok(row.id)
    }

    /// Gives a pseudonym that older records of `org` carry (from before the register) a minimal
    /// provisional record under that very id, so that those records resolve again: traits read
    /// `INCONNU` until someone completes them (`UpdatePatient`), and no consent is recorded.
    /// Returns whether a record was created (false: the id is already a patient of `org`, or
    /// taken by another organisation, which is logged and left alone).
    pub async fn adopt(&self, org: &str, pseudonym: &str) -> Result<bool> {
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_org(&mut tx, org, micros(now)).await?;
        if let Some(existing) = store::patient(&mut tx, pseudonym).await? {
            if existing.org_id != org {
                tracing::warn!(%org, other = %existing.org_id, "pseudonym already a patient id of another organisation: not adopted");
            }
            return Ok(false);
        }
        let unknown = "INCONNU".to_owned();
        let patient = Patient {
            id: pseudonym.to_owned(),
            org_id: org.to_owned(),
            identity: super::model::IdentityTraits {
                birth_name: unknown.clone(),
                first_names: unknown.clone(),
                used_first_name: unknown,
                used_name: String::new(),
                sex: super::model::Sex::Unknown,
                birth_date: jiff::civil::date(1900, 1, 1),
                birth_place_code: String::new(),
            },
            ins: None,
            status: IdentityStatus::Provisional,
            contact: Default::default(),
            address: None,
            gp: None,
            care_team: Vec::new(),
            objects_to_sharing: false,
            merged_ids: Vec::new(),
            created: now,
            version: 1,
            history: Vec::new(),
        };
        let row = self
            .vault
            .seal_patient(&patient, "telehealth patients adopt")?;
        store::insert_patient(&mut tx, &row, &self.name_rows(&patient)).await?;
        let adopter = Caller::Service(telehealth_kit::Part::Directory);
        self.commit_audited(tx, &adopter, "AdoptPseudonym", pseudonym)
            .await?;
        Ok(true)
    }

    /// Re-seals every record under the current key; returns how many rows were rewritten.
    pub async fn reencrypt(&self) -> Result<u64> {
        let mut rewritten = 0;
        let mut after = String::new();
        loop {
            let mut tx = self.base.db().pool().begin().await?;
            let rows = store::patients_after(&mut tx, &after, 200).await?;
            let Some(last) = rows.last() else { break };
            after = last.id.clone();
            for row in &rows {
                if !self.vault.row_is_current(row) {
                    let mut resealed = self.vault.reseal(row)?;
                    resealed.version = row.version + 1;
                    let patient = self.vault.open_patient(row)?;
                    let names = if row.merged_into.is_some() {
                        Vec::new()
                    } else {
                        self.name_rows(&patient)
                    };
                    if !store::update_patient(&mut tx, &resealed, &names).await? {
                        return Err(DirectoryError::VersionMismatch {
                            current: row.version,
                        });
                    }
                    rewritten += 1;
                }
                for change in store::status_changes(&mut tx, &row.id).await? {
                    if !self.vault.is_current(&change.note) {
                        let note = self.vault.open("status_note", &row.id, &change.note)?;
                        let new = self.vault.seal("status_note", &row.id, &note)?;
                        store::reseal_status_note(
                            &mut tx,
                            &row.id,
                            change.changed_us,
                            &change.note,
                            &new,
                        )
                        .await?;
                    }
                }
                for consent in store::consents_of(&mut tx, &row.id, i64::MAX).await? {
                    if !self.vault.is_current(&consent.note) {
                        let note = self
                            .vault
                            .open("consent_note", &consent.id, &consent.note)?;
                        let new = self.vault.seal("consent_note", &consent.id, &note)?;
                        store::reseal_consent_note(&mut tx, &consent.id, &new).await?;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok(rewritten)
    }

    // ---- shared steps ----

    /// The name digest rows of `patient`.
    fn name_rows(&self, patient: &Patient) -> Vec<(String, &'static str)> {
        self.vault.name_digests(&patient.identity)
    }

    /// Seals `patient` (version + 1) over `row`, keeping `row`'s objection note and alias.
    async fn write(
        &self,
        conn: &mut AnyConnection,
        row: &PatientRow,
        patient: &mut Patient,
        now: Timestamp,
    ) -> Result<()> {
        patient.version = row.version + 1;
        let mut updated = self.vault.seal_patient(patient, &row.created_by)?;
        updated.created_us = row.created_us;
        updated.updated_us = micros(now);
        updated.objection_note = row.objection_note.clone();
        updated.merged_into = row.merged_into.clone();
        if !store::update_patient(conn, &updated, &self.name_rows(patient)).await? {
            return Err(DirectoryError::VersionMismatch {
                current: row.version,
            });
        }
        Ok(())
    }

    /// The surviving row of `id` (an alias resolves to its survivor) if `org` sees it.
    async fn visible_row(
        &self,
        conn: &mut AnyConnection,
        org: &str,
        id: &str,
    ) -> Result<PatientRow> {
        let mut row = store::patient(conn, id)
            .await?
            .ok_or(DirectoryError::PatientNotFound)?;
        if let Some(survivor) = row.merged_into.clone() {
            row = store::patient(conn, &survivor)
                .await?
                .ok_or(DirectoryError::PatientNotFound)?;
        }
        if store::visible_to(conn, &row, org).await? {
            Ok(row)
        } else {
            Err(DirectoryError::PatientNotFound)
        }
    }

    /// The surviving patient of `id` if `org` sees it, with aliases and history.
    async fn visible_patient(
        &self,
        conn: &mut AnyConnection,
        org: &str,
        id: &str,
    ) -> Result<Patient> {
        let row = self.visible_row(conn, org, id).await?;
        let patient = self.vault.open_patient(&row)?;
        self.load_history(conn, patient).await
    }

    /// The surviving row and patient of `id` if `org` registered them (changes are the owner's).
    async fn owned_patient(
        &self,
        conn: &mut AnyConnection,
        org: &str,
        id: &str,
    ) -> Result<(PatientRow, Patient)> {
        let row = self.visible_row(conn, org, id).await?;
        if row.org_id != org {
            // Shared with the caller's organisation, which may read but not change it.
            return Err(DirectoryError::PermissionDenied(
                "only the organisation that registered the patient changes their record",
            ));
        }
        let patient = self.vault.open_patient(&row)?;
        let patient = self.load_history(conn, patient).await?;
        Ok((row, patient))
    }

    async fn load_history(
        &self,
        conn: &mut AnyConnection,
        mut patient: Patient,
    ) -> Result<Patient> {
        patient.merged_ids = store::aliases_of(conn, &patient.id).await?;
        patient.history = store::status_changes(conn, &patient.id)
            .await?
            .iter()
            .map(|change| self.vault.open_status_change(&patient.id, change))
            .collect::<Result<Vec<StatusChange>>>()?;
        Ok(patient)
    }

    async fn with_history(&self, patient: Patient) -> Result<Patient> {
        let mut conn = self.base.db().pool().acquire().await?;
        self.load_history(&mut conn, patient).await
    }

    /// Every member of the care team is an active member of `org`.
    async fn check_care_team(
        &self,
        conn: &mut AnyConnection,
        org: &str,
        care_team: &[String],
        now: Timestamp,
    ) -> Result<()> {
        for subject in care_team {
            let active = members::member_of(conn, org, subject)
                .await?
                .is_some_and(|m| m.active_at(now));
            if !active {
                return Err(DirectoryError::invalid(
                    "care_team",
                    format!("{subject} is not an active member of your organisation"),
                ));
            }
        }
        Ok(())
    }

    fn open_consent(&self, row: &ConsentRow) -> Result<Consent> {
        Ok(Consent {
            id: row.id.clone(),
            patient_id: row.patient_id.clone(),
            org_id: row.org_id.clone(),
            act: ConsentAct::parse(&row.act).unwrap_or(ConsentAct::Sharing),
            target_org_id: row.target_org_id.clone(),
            decision: if row.decision == "given" {
                Decision::Given
            } else {
                Decision::Refused
            },
            method: Method::parse(&row.method),
            document_ref: row.document_ref.clone(),
            note: self.vault.open("consent_note", &row.id, &row.note)?,
            recorded_by: serde_json::from_str(&row.recorded_by).unwrap_or_default(),
            recorded: instant(row.recorded_us),
            withdrawn: row.withdrawn_us.map(instant),
            withdrawn_by: row
                .withdrawn_by
                .as_deref()
                .and_then(|by| serde_json::from_str(by).ok()),
        })
    }

    /// Stages the audit entry of `action` on `patient_id`, commits the change with it, and
    /// waits until the entry is chained (the caller hears of a change only once it is audited).
    async fn commit_audited(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        caller: &Caller,
        action: &str,
        patient_id: &str,
    ) -> Result<()> {
        self.stage(&mut tx, caller, action, patient_id).await?;
        tx.commit().await?;
        self.base.flush_audit().await;
        Ok(())
    }

    async fn stage(
        &self,
        conn: &mut AnyConnection,
        caller: &Caller,
        action: &str,
        patient_id: &str,
    ) -> Result<()> {
        let entry = AuditEntry::new(caller, action, "patient", patient_id, Outcome::Ok);
        audit::stage(conn, &entry).await?;
        Ok(())
    }

    async fn audit(&self, caller: &Caller, action: &str, patient_id: &str, outcome: Outcome) {
        let entry = AuditEntry::new(caller, action, "patient", patient_id, outcome);
        self.base.audit(entry).await;
    }
}

/// What another organisation sees (a hospital answering a request): the identity it needs to
/// tell the patient apart, the INS only when qualified, and nothing of the home (contact,
/// address with its door code) nor the centre's care team.
fn as_seen_by(patient: Patient, org: &str) -> Patient {
    if patient.org_id == org {
        return patient;
    }
    Patient {
        contact: Default::default(),
        address: None,
        care_team: Vec::new(),
        ..withhold_unqualified_ins(patient)
    }
}

/// The patient as it may leave the organisation: no INS unless the identity is qualified.
pub fn withhold_unqualified_ins(mut patient: Patient) -> Patient {
    if patient.status != IdentityStatus::Qualified {
        patient.ins = None;
    }
    patient
}

fn check_version(expected: i64, current: i64) -> Result<()> {
    if expected != 0 && expected != current {
        return Err(DirectoryError::VersionMismatch { current });
    }
    Ok(())
}

/// The person behind a call (patients are never callers of the register's changes).
fn person(caller: &Caller) -> Result<&Identity> {
    match caller {
        Caller::Person(identity)
            if !identity.has_role(Role::Patient) || identity.roles.len() > 1 =>
        {
            Ok(identity)
        }
        _ => Err(DirectoryError::PermissionDenied(
            "this call needs a professional's identity",
        )),
    }
}

/// A call from another service of the suite.
fn service(caller: &Caller) -> Result<()> {
    match caller {
        Caller::Service(_) => Ok(()),
        Caller::Person(_) => Err(DirectoryError::PermissionDenied(
            "only the suite's services call this",
        )),
    }
}
