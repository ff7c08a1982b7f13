//! What goes wrong in a FHIR request, and how it is said: an HTTP status with an
//! `OperationOutcome` in French, from the gRPC status of the call behind it.

use http::StatusCode;
use telehealth_fhir::IssueType;

/// Why a FHIR request is refused.
#[derive(Debug)]
pub enum FhirError {
    /// The request itself is wrong (parameter, id, value).
    Invalid(String),
    /// Something the API does not offer (a resource type, an interaction, a parameter).
    NotSupported(String),
    /// The call behind the request refused or failed.
    Call(tonic::Status),
}

impl From<tonic::Status> for FhirError {
    fn from(status: tonic::Status) -> Self {
        FhirError::Call(status)
    }
}

impl FhirError {
    /// The HTTP status, issue type and sentence of the refusal. A record the caller may not see
    /// is "not found", as over gRPC: the answer never tells whether it exists.
    pub fn parts(&self) -> (StatusCode, IssueType, String) {
        match self {
            FhirError::Invalid(why) => (StatusCode::BAD_REQUEST, IssueType::Invalid, why.clone()),
            FhirError::NotSupported(what) => (
                StatusCode::BAD_REQUEST,
                IssueType::NotSupported,
                what.clone(),
            ),
            FhirError::Call(status) => {
                use tonic::Code;
                let detail = status.message();
                let (http, kind, sentence) = match status.code() {
                    Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => (
                        StatusCode::BAD_REQUEST,
                        IssueType::Invalid,
                        "Requête refusée",
                    ),
                    Code::NotFound => (
                        StatusCode::NOT_FOUND,
                        IssueType::NotFound,
                        "Ressource introuvable",
                    ),
                    Code::PermissionDenied => (
                        StatusCode::FORBIDDEN,
                        IssueType::Forbidden,
                        "Accès refusé pour ce rôle",
                    ),
                    Code::Unauthenticated => (
                        StatusCode::UNAUTHORIZED,
                        IssueType::Login,
                        "Authentification requise (certificat et jeton)",
                    ),
                    Code::ResourceExhausted => (
                        StatusCode::TOO_MANY_REQUESTS,
                        IssueType::Throttled,
                        "Trop de requêtes, réessayez plus tard",
                    ),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        IssueType::Transient,
                        "Service momentanément indisponible, réessayez",
                    ),
                    Code::Unimplemented => (
                        StatusCode::BAD_REQUEST,
                        IssueType::NotSupported,
                        "Opération non prise en charge",
                    ),
                    _ => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        IssueType::Exception,
                        "Erreur interne",
                    ),
                };
                let text = if detail.is_empty() {
                    format!("{sentence}.")
                } else {
                    format!("{sentence} : {detail}")
                };
                (http, kind, text)
            }
        }
    }
}
