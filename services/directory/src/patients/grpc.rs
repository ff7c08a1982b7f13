//! The tonic adapter of the register: validate, call the core, convert back.

use telehealth_kit::identity::require_caller;
use telehealth_proto::v1::{self as pb, patient_service_server::PatientService};
use tonic::{Request, Response, Status};

use super::{
    convert,
    core::{Created, Register},
    model::{PatientChanges, SearchCriteria},
};
use crate::{convert::subject, error::DirectoryError};

/// Default and largest search page.
const SEARCH_DEFAULT: i64 = 20;
const SEARCH_MAX: i64 = 100;

/// The gRPC face of the patient register.
pub struct PatientApi {
    register: Register,
}

impl PatientApi {
    pub fn new(register: Register) -> Self {
        PatientApi { register }
    }
}

/// Today in Paris, the register's reference for "not in the future" birth dates.
fn today() -> jiff::civil::Date {
    let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap_or(jiff::tz::TimeZone::UTC);
    paris.to_datetime(jiff::Timestamp::now()).date()
}

fn patient_response(patient: &super::model::Patient) -> Option<pb::Patient> {
    Some(convert::patient(patient))
}

#[tonic::async_trait]
impl PatientService for PatientApi {
    #[tracing::instrument(skip_all)]
    async fn create_patient(
        &self,
        request: Request<pb::CreatePatientRequest>,
    ) -> Result<Response<pb::CreatePatientResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let input = convert::patient_input(&request, today())?;
        let created = self
            .register
            .create(&caller, input, request.confirm_distinct)
            .await?;
        Ok(Response::new(match created {
            Created::Patient(patient) => pb::CreatePatientResponse {
                patient: patient_response(&patient),
                possible_duplicates: Vec::new(),
            },
            Created::PossibleDuplicates(candidates) => pb::CreatePatientResponse {
                patient: None,
                possible_duplicates: candidates.iter().map(convert::summary).collect(),
            },
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_patient(
        &self,
        request: Request<pb::GetPatientRequest>,
    ) -> Result<Response<pb::GetPatientResponse>, Status> {
        let caller = require_caller(&request)?;
        let id = convert::patient_id("patient_id", &request.get_ref().patient_id)?;
        let patient = self.register.get(&caller, &id).await?;
        Ok(Response::new(pb::GetPatientResponse {
            patient: patient_response(&patient),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_patient(
        &self,
        request: Request<pb::UpdatePatientRequest>,
    ) -> Result<Response<pb::UpdatePatientResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let changes = PatientChanges {
            identity: request
                .identity
                .as_ref()
                .map(|t| convert::identity(Some(t), today()))
                .transpose()?,
            ins: convert::ins(request.ins.as_ref())?,
            contact: request
                .contact
                .as_ref()
                .map(|c| convert::contact(Some(c)))
                .transpose()?,
            address: convert::address(request.address.as_ref())?,
            gp: convert::gp(request.gp.as_ref())?,
            care_team: if request.care_team.is_empty() {
                None
            } else {
                Some(convert::care_team(&request.care_team)?)
            },
            expected_version: request.expected_version,
        };
        let patient = self.register.update(&caller, &id, changes).await?;
        Ok(Response::new(pb::UpdatePatientResponse {
            patient: patient_response(&patient),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_identity_status(
        &self,
        request: Request<pb::SetIdentityStatusRequest>,
    ) -> Result<Response<pb::SetIdentityStatusResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let status = convert::status("status", request.status)?;
        let proof = convert::proof(request.proof)?;
        let note = convert::note("note", &request.note)?;
        let patient = self
            .register
            .set_status(&caller, &id, status, proof, note, request.expected_version)
            .await?;
        Ok(Response::new(pb::SetIdentityStatusResponse {
            patient: patient_response(&patient),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn search_patients(
        &self,
        request: Request<pb::SearchPatientsRequest>,
    ) -> Result<Response<pb::SearchPatientsResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let name = request.name.trim();
        if name.chars().count() > 200 {
            return Err(DirectoryError::invalid("name", "at most 200 characters").into());
        }
        let criteria = SearchCriteria {
            name: (!name.is_empty()).then(|| name.to_owned()),
            birth_date: (!request.birth_date.is_empty())
                .then(|| convert::date("birth_date", &request.birth_date, today()))
                .transpose()?,
            ins: (!request.ins.trim().is_empty())
                .then(|| convert::ins_number(&request.ins))
                .transpose()?,
        };
        if criteria.name.is_none() && criteria.birth_date.is_none() && criteria.ins.is_none() {
            return Err(DirectoryError::invalid(
                "name",
                "give at least a name, a birth date or an INS",
            )
            .into());
        }
        let limit =
            telehealth_kit::paging::page_size(request.page_size, SEARCH_DEFAULT, SEARCH_MAX)?;
        let found = self.register.search(&caller, criteria, limit).await?;
        Ok(Response::new(pb::SearchPatientsResponse {
            patients: found.iter().map(convert::summary).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn merge_patients(
        &self,
        request: Request<pb::MergePatientsRequest>,
    ) -> Result<Response<pb::MergePatientsResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let surviving = convert::patient_id("surviving_id", &request.surviving_id)?;
        let merged = convert::patient_id("merged_id", &request.merged_id)?;
        let patient = self.register.merge(&caller, &surviving, &merged).await?;
        Ok(Response::new(pb::MergePatientsResponse {
            patient: patient_response(&patient),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn export_patient(
        &self,
        request: Request<pb::ExportPatientRequest>,
    ) -> Result<Response<pb::ExportPatientResponse>, Status> {
        let caller = require_caller(&request)?;
        let id = convert::patient_id("patient_id", &request.get_ref().patient_id)?;
        let (filename, archive) = self.register.export(&caller, &id).await?;
        Ok(Response::new(pb::ExportPatientResponse {
            content_type: "application/json".into(),
            filename,
            archive,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn record_objection(
        &self,
        request: Request<pb::RecordObjectionRequest>,
    ) -> Result<Response<pb::RecordObjectionResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let note = convert::note("note", &request.note)?;
        let patient = self
            .register
            .record_objection(&caller, &id, request.objects, note)
            .await?;
        Ok(Response::new(pb::RecordObjectionResponse {
            patient: patient_response(&patient),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let input = convert::consent_input(&request)?;
        let consent = self.register.record_consent(&caller, &id, input).await?;
        Ok(Response::new(pb::RecordConsentResponse {
            consent: Some(convert::consent(&consent)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
        let caller = require_caller(&request)?;
        let id = telehealth_kit::ids::record_id("consent_id", &request.get_ref().consent_id)
            .map_err(DirectoryError::from)?;
        let consent = self.register.withdraw_consent(&caller, &id).await?;
        Ok(Response::new(pb::WithdrawConsentResponse {
            consent: Some(convert::consent(&consent)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_consents(
        &self,
        request: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ListConsentsResponse>, Status> {
        let caller = require_caller(&request)?;
        let id = convert::patient_id("patient_id", &request.get_ref().patient_id)?;
        let consents = self.register.list_consents(&caller, &id).await?;
        Ok(Response::new(pb::ListConsentsResponse {
            consents: consents.iter().map(convert::consent).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_consent(
        &self,
        request: Request<pb::CheckConsentRequest>,
    ) -> Result<Response<pb::CheckConsentResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let org = subject("org_id", &request.org_id)?;
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let act = convert::act(request.act)?;
        let target = convert::target_org(act, &request.target_org_id)?;
        let (consent_id, patient_id) = self
            .register
            .check_consent(&caller, &org, &id, act, &target)
            .await?;
        Ok(Response::new(pb::CheckConsentResponse {
            consent_id,
            patient_id,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn resolve_patient(
        &self,
        request: Request<pb::ResolvePatientRequest>,
    ) -> Result<Response<pb::ResolvePatientResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let org = subject("org_id", &request.org_id)?;
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let (patient_id, merged_ids) = self.register.resolve(&caller, &org, &id).await?;
        Ok(Response::new(pb::ResolvePatientResponse {
            patient_id,
            merged_ids,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn report_identity(
        &self,
        request: Request<pb::ReportIdentityRequest>,
    ) -> Result<Response<pb::ReportIdentityResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let org = subject("org_id", &request.org_id)?;
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let patient = self.register.report_identity(&caller, &org, &id).await?;
        Ok(Response::new(pb::ReportIdentityResponse {
            patient: patient_response(&patient),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn share_patient(
        &self,
        request: Request<pb::SharePatientRequest>,
    ) -> Result<Response<pb::SharePatientResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let org = subject("org_id", &request.org_id)?;
        let with_org = subject("with_org_id", &request.with_org_id)?;
        let id = convert::patient_id("patient_id", &request.patient_id)?;
        let reason = convert::note("reason", &request.reason)?;
        if reason.is_empty() {
            return Err(DirectoryError::invalid("reason", "say why the care is shared").into());
        }
        let patient_id = self
            .register
            .share(&caller, &org, &id, &with_org, &reason)
            .await?;
        Ok(Response::new(pb::SharePatientResponse { patient_id }))
    }
}
