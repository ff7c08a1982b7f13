//! Bundles (a page of search results, the export's transaction), errors as
//! `OperationOutcome`, and the server's `CapabilityStatement`.

use serde_json::{Value, json};

use crate::prune;

/// A page of search results: `self` and, when there is more, `next` (absolute URLs).
pub fn searchset(
    base: &str,
    resources: Vec<Value>,
    self_url: &str,
    next_url: Option<&str>,
) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next_url {
        links.push(json!({ "relation": "next", "url": next }));
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            json!({
                "fullUrl": full_url(base, &resource),
                "resource": resource,
                "search": { "mode": "match" },
            })
        })
        .collect();
    prune(json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    }))
}

/// A transaction of resources to create or update at their ids (`PUT Type/id`), as a
/// receiving FHIR server would apply them.
pub fn transaction(resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources.into_iter().map(transaction_entry).collect();
    prune(json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }))
}

/// One entry of a transaction (the patient export writes them one by one).
pub fn transaction_entry(resource: Value) -> Value {
    let url = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    );
    json!({ "resource": resource, "request": { "method": "PUT", "url": url } })
}

fn full_url(base: &str, resource: &Value) -> String {
    format!(
        "{base}/{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    )
}

/// The issue types of the FHIR API's refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    NotSupported,
    NotFound,
    Forbidden,
    Login,
    Throttled,
    Transient,
    Exception,
}

impl IssueType {
    fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::NotSupported => "not-supported",
            IssueType::NotFound => "not-found",
            IssueType::Forbidden => "forbidden",
            IssueType::Login => "login",
            IssueType::Throttled => "throttled",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
        }
    }
}

/// An error as FHIR says it: one `error` issue with its type and a sentence for a person.
pub fn operation_outcome(kind: IssueType, diagnostics: &str) -> Value {
    prune(json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": kind.code(), "diagnostics": diagnostics }],
    }))
}

/// A search parameter the server supports on a resource.
pub struct SearchParam {
    pub name: &'static str,
    pub kind: &'static str,
    pub documentation: &'static str,
}

/// A resource type the server serves: read, and these searches.
pub struct ResourceSupport {
    pub kind: &'static str,
    pub read: bool,
    pub searches: &'static [SearchParam],
}

/// The server's `CapabilityStatement` (`/fhir/metadata`): R4, JSON, read-only, mutual TLS and
/// bearer tokens.
pub fn capability_statement(
    base: &str,
    date: &str,
    software_version: &str,
    resources: &[ResourceSupport],
) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut interactions = Vec::new();
            if r.read {
                interactions.push(json!({ "code": "read" }));
            }
            if !r.searches.is_empty() {
                interactions.push(json!({ "code": "search-type" }));
            }
            json!({
                "type": r.kind,
                "interaction": interactions,
                "searchParam": r.searches.iter().map(|p| json!({
                    "name": p.name, "type": p.kind, "documentation": p.documentation,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    prune(json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Telehealth",
        "kind": "instance",
        "software": { "name": "telehealth", "version": software_version },
        "implementation": { "description": "Telehealth FHIR R4 API (read-only)", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only. Every call needs a device certificate (mutual TLS) and a bearer token of the suite; the organisation scoping is the gRPC API's.",
            "security": {
                "cors": false,
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "Certificates",
                }] }],
                "description": "Mutual TLS with the suite's device certificates; bearer tokens bound to the certificate (RFC 8705).",
            },
            "resource": resources,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit;

    #[test]
    fn bundles_outcomes_and_the_capability_statement_are_valid() {
        let base = "https://telehealth.example/fhir";
        let patient = json!({ "resourceType": "Patient", "id": "p1", "gender": "female" });
        let page = searchset(
            base,
            vec![patient.clone()],
            &format!("{base}/Patient?gender=female"),
            Some(&format!("{base}/Patient?gender=female&_cursor=abc")),
        );
        emit("bundle-searchset", &page);
        assert_eq!(page["link"][1]["relation"], "next");
        assert_eq!(page["entry"][0]["fullUrl"], format!("{base}/Patient/p1"));
        let empty = searchset(base, vec![], &format!("{base}/Patient?name=x"), None);
        emit("bundle-searchset-empty", &empty);
        assert!(empty.get("entry").is_none());

        let export = transaction(vec![patient]);
        emit("bundle-transaction", &export);
        assert_eq!(export["entry"][0]["request"]["url"], "Patient/p1");

        let outcome = operation_outcome(IssueType::NotFound, "Ressource introuvable.");
        emit("operation-outcome", &outcome);
        assert_eq!(outcome["issue"][0]["code"], "not-found");

        let statement = capability_statement(
            base,
            "2026-12-03",
            "0.1.0",
            &[ResourceSupport {
                kind: "Patient",
                read: true,
                searches: &[SearchParam {
                    name: "identifier",
                    kind: "token",
                    documentation: "INS",
                }],
            }],
        );
        emit("capability-statement", &statement);
        assert_eq!(
            statement["rest"][0]["resource"][0]["interaction"][1]["code"],
            "search-type"
        );
    }
}
