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

#[cfg(test)]
mod tests {
    use super::*;

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
