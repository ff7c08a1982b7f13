//! Identifiers as the contract states them, parsed once at the edge of every service.

use std::fmt;

use crate::KitError;

/// A person's stable id, the JWT `sub` (common.proto): an opaque string of 1 to 255 characters
/// without control characters, compared byte for byte — the rule the gateway applies to tokens,
/// so a caller's own subject is always a valid one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// Longest subject, in characters.
    pub const MAX_CHARS: usize = 255;

    /// Validates `value`; `field` names it in the refusal (`INVALID_ARGUMENT`).
    pub fn parse(field: &'static str, value: &str) -> Result<Subject, KitError> {
        if value.is_empty()
            || value.chars().count() > Subject::MAX_CHARS
            || value.chars().any(char::is_control)
        {
            return Err(KitError::invalid(
                field,
                "must be a subject of 1 to 255 characters without control characters",
            ));
        }
        Ok(Subject(value.to_owned()))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a record (common.proto): a UUID in canonical hyphenated form, taken in either case
/// and returned lowercase. Anything else is refused on `field` (`INVALID_ARGUMENT`).
pub fn record_id(field: &'static str, value: &str) -> Result<String, KitError> {
    let refused = || {
        KitError::invalid(
            field,
            "must be a UUID in canonical form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
        )
    };
    let id = uuid::Uuid::try_parse(value).map_err(|_| refused())?;
    let canonical = id.hyphenated().to_string();
    if canonical != value.to_ascii_lowercase() {
        return Err(refused());
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_canonical_uuids() {
        let id = "0190c6b2-7f3e-7a4b-9c1d-2e3f4a5b6c7d";
        assert_eq!(record_id("wound_id", id).expect("canonical"), id);
        assert_eq!(
            record_id("wound_id", &id.to_ascii_uppercase()).expect("either case"),
            id
        );
        for bad in [
            "",
            "not-a-uuid",
            "0190c6b27f3e7a4b9c1d2e3f4a5b6c7d",
            "{0190c6b2-7f3e-7a4b-9c1d-2e3f4a5b6c7d}",
            "urn:uuid:0190c6b2-7f3e-7a4b-9c1d-2e3f4a5b6c7d",
            " 0190c6b2-7f3e-7a4b-9c1d-2e3f4a5b6c7d",
        ] {
            let refused = record_id("wound_id", bad).expect_err(bad);
            assert!(
                refused.to_string().starts_with("wound_id: must be a UUID"),
                "{refused}"
            );
        }
    }

    #[test]
    fn subjects_follow_the_contract() {
        for good in [
            "dr-martin",
            "f:550dc1c8:ANS",
            "Dr Élise Martin",
            &"x".repeat(255),
        ] {
            assert_eq!(Subject::parse("s", good).expect(good).as_str(), good);
        }
        for bad in ["", "line\nbreak", "tab\there", &"x".repeat(256)] {
            let refused = Subject::parse("practitioner_subject", bad).expect_err(bad);
            assert_eq!(
                refused.to_string(),
                "practitioner_subject: must be a subject of 1 to 255 characters without control characters"
            );
        }
    }
}
