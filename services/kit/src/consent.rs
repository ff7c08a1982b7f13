//! The patient register as the other services see it: every new record's patient resolved
//! against it, and the patient's consent checked where the act happens.
//!
//! Submitting a tele-expertise request, opening a wound follow-up and starting a
//! teleconsultation each ask the patient register (the directory part's internal `CheckConsent`)
//! for the patient's current consent to that act. Without one the act is refused
//! `FAILED_PRECONDITION` with what to record; with one, the act's record names the consent it
//! used. Nothing is cached: a withdrawal stops the next act at once.
//!
//! The register also resolves the patient: an id merged into another answers the surviving id,
//! and a patient the caller's organisation does not see is refused exactly as one that does not
//! exist.

use telehealth_proto::v1::{self as pb, patient_service_client::PatientServiceClient};
use tonic::{Code, transport::Channel};

use crate::error::KitError;

/// A kind of act the patient consents to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Teleconsultation,
    TeleExpertise,
    WoundMonitoring,
}

impl Act {
    fn proto(self) -> pb::ConsentAct {
        match self {
            Act::Teleconsultation => pb::ConsentAct::Teleconsultation,
            Act::TeleExpertise => pb::ConsentAct::TeleExpertise,
            Act::WoundMonitoring => pb::ConsentAct::WoundMonitoring,
        }
    }
}

/// The consent an act rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUsed {
    /// The consent record's id (to name in the act's record).
    pub consent_id: String,
    /// The patient's id in the register (an alias resolved to the surviving record).
    pub patient_id: String,
}

/// What a refusal (`NOT_FOUND`) says when the register does not know the patient, or the
/// caller's organisation does not see them: the same words either way.
pub const UNKNOWN_PATIENT: &str = "the patient is not in your organisation's patient register: register them (PatientService/CreatePatient), record their consent, then use the id the register gave";

/// The patient register as the acts' services see it (over internal mTLS).
#[derive(Clone)]
pub struct Consents {
    client: PatientServiceClient<Channel>,
}

impl Consents {
    /// The register reached through `channel` (to the directory part).
    pub fn new(channel: Channel) -> Self {
        Consents {
            client: PatientServiceClient::new(channel),
        }
    }

    /// The consent of `patient` to `act` in `org`, or the refusal to give the caller.
    pub async fn check(&self, org: &str, patient: &str, act: Act) -> Result<ConsentUsed, KitError> {
        let request = pb::CheckConsentRequest {
            org_id: org.to_owned(),
            patient_id: patient.to_owned(),
            act: act.proto().into(),
            target_org_id: String::new(),
        };
        match self.client.clone().check_consent(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                Ok(ConsentUsed {
                    consent_id: answer.consent_id,
                    patient_id: answer.patient_id,
                })
            }
            Err(status) => Err(refusal(status)),
        }
    }

    /// The register's (surviving) id of the patient a new record of `org` names, or the refusal
    /// to give the caller when `org` does not know them.
    pub async fn resolve(&self, org: &str, patient: &str) -> Result<String, KitError> {
        let request = pb::ResolvePatientRequest {
            org_id: org.to_owned(),
            patient_id: patient.to_owned(),
        };
        match self.client.clone().resolve_patient(request).await {
            Ok(answer) => Ok(answer.into_inner().patient_id),
            Err(status) => Err(refusal(status)),
        }
    }

    /// Every id that names the patient `patient` names, if `org` sees them: the surviving id
    /// first, then the ids merged into it (records made before a merge still name those). For
    /// listing a patient's records.
    pub async fn ids_of(&self, org: &str, patient: &str) -> Result<Vec<String>, KitError> {
        let request = pb::ResolvePatientRequest {
            org_id: org.to_owned(),
            patient_id: patient.to_owned(),
        };
        match self.client.clone().resolve_patient(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                let mut ids = vec![answer.patient_id];
                ids.extend(answer.merged_ids);
                Ok(ids)
            }
            Err(status) => Err(refusal(status)),
        }
    }

    /// The identity a report about `patient` of `org` names (traits, status, the INS only when
    /// qualified), or the refusal when `org` does not see them.
    pub async fn report_identity(&self, org: &str, patient: &str) -> Result<pb::Patient, KitError> {
        let request = pb::ReportIdentityRequest {
            org_id: org.to_owned(),
            patient_id: patient.to_owned(),
        };
        match self.client.clone().report_identity(request).await {
            Ok(answer) => answer.into_inner().patient.ok_or_else(|| {
                refusal(tonic::Status::internal(
                    "the register answered without the patient",
                ))
            }),
            Err(status) => Err(refusal(status)),
        }
    }

    /// Shares `patient` of `org` with `with_org` (a request sent to a hospital), for `reason`;
    /// refused while the patient objects to sharing.
    pub async fn share(
        &self,
        org: &str,
        patient: &str,
        with_org: &str,
        reason: &str,
    ) -> Result<(), KitError> {
        let request = pb::SharePatientRequest {
            org_id: org.to_owned(),
            patient_id: patient.to_owned(),
            with_org_id: with_org.to_owned(),
            reason: reason.to_owned(),
        };
        self.client
            .clone()
            .share_patient(request)
            .await
            .map(|_| ())
            .map_err(refusal)
    }
}

/// The caller's refusal for the register's answer.
fn refusal(status: tonic::Status) -> KitError {
    match status.code() {
        Code::NotFound | Code::InvalidArgument => KitError::NotFound(UNKNOWN_PATIENT.to_owned()),
        Code::FailedPrecondition => KitError::FailedPrecondition(status.message().to_owned()),
        _ => {
            tracing::warn!(%status, "the patient register did not answer a consent check");
            KitError::Unavailable("the patient register is unavailable, retry".into())
        }
    }
}
