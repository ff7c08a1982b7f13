//! The read-only FHIR R4 API under `/fhir`, served on the devices port with the same mutual
//! TLS, tokens and organisation scoping as the gRPC API: every read is made of the contract's
//! RPCs, called as the client through the gateway's own pipeline ([`calls`]), then mapped by
//! `telehealth-fhir`. JSON only; errors are `OperationOutcome`s in French.
//!
//! - `GET /fhir/metadata`: the `CapabilityStatement` (mutual TLS only, no token);
//! - `GET /fhir/<Type>/<id>`: a read; `GET /fhir/<Type>?…`: a search, a `Bundle` whose `next`
//!   link carries the cursor of the following page.

mod calls;
mod care;
mod expertise;
mod outcome;
mod people;
mod query;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::Value;
use telehealth_fhir::{ResourceSupport, SearchParam};
use tonic::body::Body;

use calls::Calls;
pub use calls::Pipeline;
pub use outcome::FhirError;
use query::Query;

/// The path prefix of the API.
pub const PREFIX: &str = "/fhir";

/// Whether `path` is the FHIR API's.
pub fn handles(path: &str) -> bool {
    path == PREFIX || path.starts_with("/fhir/")
}

/// A page of search results: the resources, and the cursor of the next page (empty: none).
pub struct Page {
    resources: Vec<Value>,
    next: String,
}

impl Page {
    fn new(resources: Vec<Value>, next: String) -> Page {
        Page { resources, next }
    }

    /// A page with nothing after it.
    fn last(resources: Vec<Value>) -> Page {
        Page::new(resources, String::new())
    }
}

/// Answers one request of the FHIR API; `on_devices_port` says whether it came with a device
/// certificate, and `pipeline` makes the calls behind it as that client.
pub async fn answer<B>(
    request: Request<B>,
    on_devices_port: bool,
    pipeline: Pipeline,
) -> Response<Body> {
    if !on_devices_port {
        return json(
            StatusCode::FORBIDDEN,
            &outcome(FhirError::NotSupported(
                "L'API FHIR est servie sur le port des appareils, avec un certificat.".into(),
            )),
        );
    }
    if request.method() != Method::GET {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &outcome(FhirError::NotSupported(
                "L'API FHIR est en lecture seule (GET).".into(),
            )),
        );
    }
    let base = base_url(&request);
    let path = request.uri().path().trim_start_matches(PREFIX).to_owned();
    let raw_query = request.uri().query().unwrap_or_default().to_owned();
    let calls = Calls::new(pipeline, request.headers());
    match route(&calls, &base, &path, &raw_query).await {
        Ok(resource) => json(StatusCode::OK, &resource),
        Err(error) => {
            let (status, _, _) = error.parts();
            json(status, &outcome(error))
        }
    }
}

async fn route(calls: &Calls, base: &str, path: &str, raw_query: &str) -> Result<Value, FhirError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["metadata"] => Ok(capability_statement(base)),
        [kind, id] => {
            let id = query::checked_id(id)?;
            if !raw_query.is_empty() {
                Query::parse(raw_query)?.finish(kind)?;
            }
            match *kind {
                "Patient" => people::read_patient(calls, &id).await,
                "Practitioner" => people::read_practitioner(calls, &id).await,
                "PractitionerRole" => people::read_practitioner_role(calls, &id).await,
                "Organization" => people::read_organization(calls, &id).await,
                "Appointment" => care::read_appointment(calls, &id).await,
                "ServiceRequest" => expertise::read_service_request(calls, &id).await,
                "Task" => expertise::read_task(calls, &id).await,
                _ => Err(unsupported(kind, "la lecture")),
            }
        }
        [kind] => {
            let query = Query::parse(raw_query)?;
            let page = match *kind {
                "Patient" => people::search_patients(calls, query).await?,
                "Consent" => people::search_consents(calls, query).await?,
                "Appointment" => care::search_appointments(calls, query).await?,
                "Observation" => care::search_observations(calls, query).await?,
                "Task" => expertise::search_tasks(calls, query).await?,
                "Communication" => expertise::search_communications(calls, query).await?,
                "Media" => expertise::search_media(calls, query).await?,
                _ => return Err(unsupported(kind, "la recherche")),
            };
            let self_url = format!("{base}/{kind}{}", with_query(raw_query, None));
            let next_url = (!page.next.is_empty())
                .then(|| format!("{base}/{kind}{}", with_query(raw_query, Some(&page.next))));
            Ok(telehealth_fhir::searchset(
                base,
                page.resources,
                &self_url,
                next_url.as_deref(),
            ))
        }
        _ => Err(FhirError::NotSupported(
            "Chemin FHIR inconnu : /fhir/<Type>, /fhir/<Type>/<id> ou /fhir/metadata.".into(),
        )),
    }
}

fn unsupported(kind: &str, interaction: &str) -> FhirError {
    FhirError::NotSupported(format!(
        "{kind} : {interaction} n'est pas proposée (voir /fhir/metadata)."
    ))
}

/// The query of a page link: the same parameters, with `_cursor` replaced.
fn with_query(raw: &str, cursor: Option<&str>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if name != "_cursor" {
            out.append_pair(&name, &value);
        }
    }
    if let Some(cursor) = cursor {
        out.append_pair("_cursor", cursor);
    }
    let query = out.finish();
    if query.is_empty() {
        query
    } else {
        format!("?{query}")
    }
}

/// `https://<authority>/fhir`, from the request's authority (HTTP/2) or `Host`.
fn base_url<B>(request: &Request<B>) -> String {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|a| {
            a.len() <= 255
                && a.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("https://{authority}{PREFIX}")
}

fn outcome(error: FhirError) -> Value {
    let (_, kind, text) = error.parts();
    telehealth_fhir::operation_outcome(kind, &text)
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(bytes))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::web::secure(headers);
    response
}

/// What the API serves, as the CapabilityStatement says it.
const RESOURCES: &[ResourceSupport] = &[
    ResourceSupport {
        kind: "Patient",
        read: true,
        searches: &[
            SearchParam {
                name: "identifier",
                kind: "token",
                documentation: "L'INS (matricule), avec ou sans le système urn:oid:",
            },
            SearchParam {
                name: "name",
                kind: "string",
                documentation: "Nom de naissance ou d'usage",
            },
            SearchParam {
                name: "family",
                kind: "string",
                documentation: "Comme name",
            },
            SearchParam {
                name: "birthdate",
                kind: "date",
                documentation: "AAAA-MM-JJ, avec name",
            },
        ],
    },
    ResourceSupport {
        kind: "Practitioner",
        read: true,
        searches: &[],
    },
    ResourceSupport {
        kind: "PractitionerRole",
        read: true,
        searches: &[],
    },
    ResourceSupport {
        kind: "Organization",
        read: true,
        searches: &[],
    },
    ResourceSupport {
        kind: "Consent",
        read: false,
        searches: &[SearchParam {
            name: "patient",
            kind: "reference",
            documentation: "Requis",
        }],
    },
    ResourceSupport {
        kind: "Appointment",
        read: true,
        searches: &[
            SearchParam {
                name: "date",
                kind: "date",
                documentation: "Bornes ge/gt/le/lt/eq ; un jour s'entend à Paris",
            },
            SearchParam {
                name: "practitioner",
                kind: "reference",
                documentation: "Le médecin",
            },
            SearchParam {
                name: "patient",
                kind: "reference",
                documentation: "Le patient",
            },
        ],
    },
    ResourceSupport {
        kind: "Observation",
        read: false,
        searches: &[
            SearchParam {
                name: "patient",
                kind: "reference",
                documentation: "Requis",
            },
            SearchParam {
                name: "code",
                kind: "token",
                documentation: "LOINC du panel 72287-6 ou d'une de ses composantes",
            },
        ],
    },
    ResourceSupport {
        kind: "ServiceRequest",
        read: true,
        searches: &[],
    },
    ResourceSupport {
        kind: "Task",
        read: true,
        searches: &[
            SearchParam {
                name: "status",
                kind: "token",
                documentation: "Statuts Task, séparés par des virgules",
            },
            SearchParam {
                name: "owner",
                kind: "reference",
                documentation: "Le spécialiste qui a pris la demande",
            },
            SearchParam {
                name: "requester",
                kind: "reference",
                documentation: "Le demandeur (demandes du centre)",
            },
        ],
    },
    ResourceSupport {
        kind: "Communication",
        read: false,
        searches: &[SearchParam {
            name: "based-on",
            kind: "reference",
            documentation: "ServiceRequest, requis",
        }],
    },
    ResourceSupport {
        kind: "Media",
        read: false,
        searches: &[SearchParam {
            name: "based-on",
            kind: "reference",
            documentation: "ServiceRequest, requis",
        }],
    },
];

fn capability_statement(base: &str) -> Value {
    telehealth_fhir::capability_statement(base, "2026-12-03", env!("CARGO_PKG_VERSION"), RESOURCES)
}
