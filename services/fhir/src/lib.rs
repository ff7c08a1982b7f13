//! FHIR R4 mappings of the contract's records, as JSON (`serde_json::Value`), written once for
//! the FHIR API and the export. Each function maps one record to one resource; nothing here
//! reads a database or decides access (the callers do, as for any other read).
//!
//! Validated in CI by two independent validators (Medplum's R4 validator and the `fhir.resources`
//! models): every resource the tests produce is written to `TELEHEALTH_TEST_FHIR_OUT` when it is set
//! (see `tests/fhir/`). The mappings are listed in docs/interop.md.

mod appointment;
mod bundle;
mod directory;
mod expertise;
mod patient;
mod wound;

use serde_json::{Value, json};

pub use appointment::appointment;
pub use bundle::{
    IssueType, ResourceSupport, SearchParam, capability_statement, operation_outcome, searchset,
    transaction, transaction_entry,
};
pub use directory::{organization, practitioner, practitioner_role, practitioner_role_id};
pub use expertise::{
    communication, media, service_request, states_of_task_status, task, task_status,
};
pub use patient::{consent, patient};
pub use wound::{ASSESSMENT_CODES, LOINC, wound_assessment};

/// A reference to another resource of the suite.
pub(crate) fn reference(kind: &str, id: &str) -> Value {
    json!({ "reference": format!("{kind}/{id}") })
}

/// Drops `null`s and empty strings, arrays and objects, which FHIR forbids.
pub(crate) fn prune(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, prune(value)))
                .filter(|(_, value)| !is_empty(value))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(prune)
                .filter(|value| !is_empty(value))
                .collect(),
        ),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// A FHIR `instant` (RFC 3339, UTC) of a protobuf timestamp; `None` outside the years 1–9999.
pub(crate) fn instant(at: &prost_types::Timestamp) -> Option<String> {
    let at = jiff::Timestamp::new(at.seconds, 0).ok()?;
    (at.to_string().len() == 20).then(|| at.to_string())
}

/// Writes a resource the tests made where CI's validators read them (`TELEHEALTH_TEST_FHIR_OUT`).
#[cfg(test)]
pub(crate) fn emit(name: &str, resource: &serde_json::Value) {
    if let Some(dir) = std::env::var_os("TELEHEALTH_TEST_FHIR_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("the validators' folder");
        let text = serde_json::to_string_pretty(resource).expect("JSON");
        std::fs::write(dir.join(format!("{name}.json")), text)
            .expect("a resource for the validators");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_utc() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        assert_eq!(instant(&at(0)).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            instant(&at(1_796_331_612)).as_deref(),
            Some("2026-12-03T21:00:12Z")
        );
        assert_eq!(instant(&at(-62_200_000_000)), None, "before year 1");
    }
}
