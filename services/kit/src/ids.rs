//! Identifiers as the contract states them, parsed once at the edge of every service.
//!
//! A record id is an [`Id<K>`], `K` naming the kind of record (`Id<Appointment>`,
//! `Id<Wound>`…): a core's operation says which id it takes, so that an appointment id can never
//! be passed where a wound id is expected, and what reaches the core is always well formed.

use std::{fmt, marker::PhantomData};

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

/// A patient's pseudonym (common.proto `PatientRef`): 1 to 64 characters of ASCII letters,
/// digits and `. _ : -`, refused on `field` otherwise.
pub fn pseudonym(field: &'static str, value: &str) -> Result<String, KitError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    if !ok {
        return Err(KitError::invalid(
            field,
            "must be 1-64 characters of letters, digits and . _ : -",
        ));
    }
    Ok(value.to_owned())
}

/// The id of a record of kind `K` (common.proto: a UUID in canonical form).
pub struct Id<K> {
    text: String,
    kind: PhantomData<fn() -> K>,
}

impl<K> Id<K> {
    /// Validates a client's `value` ([`record_id`]); `field` names it in the refusal.
    pub fn parse(field: &'static str, value: &str) -> Result<Id<K>, KitError> {
        record_id(field, value).map(Id::known)
    }

    /// An id the suite already holds (read from its own records or minted by it).
    pub fn known(text: String) -> Id<K> {
        Id {
            text,
            kind: PhantomData,
        }
    }

    /// The id as text (what the store binds).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Reads as the text it is, where a store or a message takes the id as a string.
impl<K> std::ops::Deref for Id<K> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Id::known(self.text.clone())
    }
}

impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<K> Eq for Id<K> {}

impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl<K> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.text)
    }
}

impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
    fn pseudonyms_follow_the_contract() {
        assert_eq!(
            pseudonym("p", "pat-01.a:b_c").expect("valid"),
            "pat-01.a:b_c"
        );
        for bad in ["", "with space", "é", &"x".repeat(65)] {
            let refused = pseudonym("patient.pseudonym", bad).expect_err(bad);
            assert!(
                refused
                    .to_string()
                    .starts_with("patient.pseudonym: must be 1-64")
            );
        }
    }

    #[test]
    fn a_typed_id_is_a_parsed_record_id() {
        struct Wound;
        let id =
            Id::<Wound>::parse("wound_id", "0190C6B2-7F3E-7A4B-9C1D-2E3F4A5B6C7D").expect("id");
        assert_eq!(id.as_str(), "0190c6b2-7f3e-7a4b-9c1d-2e3f4a5b6c7d");
        assert_eq!(id.clone(), id);
        assert!(Id::<Wound>::parse("wound_id", "w-1").is_err());
    }

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
