//! The matricule INS (identifiant national de santé): a NIR or an NIA, checked by its key.
//!
//! 13 characters then a 2-digit key. Every character is a digit except the department at
//! positions 6-7, which is `2A` or `2B` for people born in Corsica. The key is
//! `97 − (number mod 97)`, where the number is the 13 characters read as an integer after
//! replacing `2A` by `19` and `2B` by `18` (the Corsica substitution).
//!
//! The OIDs of the assigning authorities (ANS, "Référentiel INS"): INS-NIR
//! `1.2.250.1.213.1.4.8`, INS-NIA `1.2.250.1.213.1.4.9`, and their test identities
//! `1.2.250.1.213.1.4.10` and `1.2.250.1.213.1.4.11`.

use std::fmt;

/// Which register assigned the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsKind {
    /// Numéro d'inscription au répertoire (INSEE).
    Nir,
    /// Numéro identifiant d'attente (CNAV).
    Nia,
}

/// A matricule INS whose key matches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ins {
    /// The 15 characters, without spaces, `2A`/`2B` in capitals.
    pub number: String,
    pub kind: InsKind,
    /// A test identity (test teleservice).
    pub test: bool,
}

/// Why a matricule INS is refused; each message says what to correct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsError {
    Length(usize),
    Character { position: usize, found: char },
    Sex(char),
    KeyMismatch { given: u32, expected: u32 },
}

impl fmt::Display for InsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsError::Length(n) => write!(
                f,
                "malformed: a matricule INS has 15 characters (13 and a 2-digit key), not {n}"
            ),
            InsError::Character { position, found } => write!(
                f,
                "malformed: character {position} is `{found}`; only digits are allowed, and `2A` \
                 or `2B` at positions 6-7 (Corsica)"
            ),
            InsError::Sex(found) => write!(
                f,
                "malformed: the first character gives the sex and is 1, 2, 3, 4, 7 or 8, not `{found}`"
            ),
            InsError::KeyMismatch { given, expected } => write!(
                f,
                "the key {given:02} does not match the number (its key is {expected:02}); check \
                 the 15 characters against the carte Vitale or the INSi answer"
            ),
        }
    }
}

impl Ins {
    /// The matricule `text` (spaces ignored) of `kind`, refused when malformed or when its key
    /// does not match.
    pub fn parse(text: &str, kind: InsKind, test: bool) -> Result<Ins, InsError> {
        let number: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let chars: Vec<char> = number.chars().collect();
        if chars.len() != 15 {
            return Err(InsError::Length(chars.len()));
        }
        let corsica = chars[5] == '2' && matches!(chars[6], 'A' | 'B');
        for (index, c) in chars.iter().enumerate() {
            let allowed = c.is_ascii_digit() || (corsica && index == 6);
            if !allowed {
                return Err(InsError::Character {
                    position: index + 1,
                    found: *c,
                });
            }
        }
        if !matches!(chars[0], '1' | '2' | '3' | '4' | '7' | '8') {
            return Err(InsError::Sex(chars[0]));
        }
        let expected = key_of(&number[..13]);
        let given: u32 = number[13..].parse().expect("two digits checked above");
        if given != expected {
            return Err(InsError::KeyMismatch { given, expected });
        }
        Ok(Ins { number, kind, test })
    }

    /// The OID of the authority that assigned it.
    pub fn oid(&self) -> &'static str {
        oid(self.kind, self.test)
    }
}

/// The OID of the assigning authority of a `kind` INS (test or not).
pub fn oid(kind: InsKind, test: bool) -> &'static str {
    match (kind, test) {
        (InsKind::Nir, false) => "1.2.250.1.213.1.4.8",
        (InsKind::Nia, false) => "1.2.250.1.213.1.4.9",
        (InsKind::Nir, true) => "1.2.250.1.213.1.4.10",
        (InsKind::Nia, true) => "1.2.250.1.213.1.4.11",
    }
}

/// The key of the 13 first characters (already checked: digits, or `2A`/`2B` at 6-7).
pub fn key_of(first13: &str) -> u32 {
    let digits = first13.replace("2A", "19").replace("2B", "18");
    let number: u64 = digits
        .parse()
        .expect("13 digits after the Corsica substitution");
    97 - (number % 97) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `first13` with its key appended.
    fn with_key(first13: &str) -> String {
        format!("{first13}{:02}", key_of(first13))
    }

    #[test]
    fn valid_numbers_are_accepted_with_spaces_and_corsica() {
        let cases = [
            ("2 55 08 14 168 025 38", "a published example, spaced"),
            ("279035121518989", "a test identity of the INS guides"),
            (&with_key("184052A123456"), "born in Corse-du-Sud (2A → 19)"),
            (&with_key("290092B004012"), "born in Haute-Corse (2B → 18)"),
            (
                &with_key("184052A123456").to_lowercase(),
                "2a in lower case",
            ),
            (&with_key("7999999000001"), "an NIA-like number"),
        ];
        for (number, case) in cases {
            let ins =
                Ins::parse(number, InsKind::Nir, false).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(ins.number.len(), 15, "{case}");
        }
    }

    #[test]
    fn corsica_keys_use_the_substitution() {
        // 2A read as 19: 1 84 05 19 123 456 → key 82 (not the key of 1 84 05 20 …).
        assert_eq!(key_of("184052A123456"), 82);
        assert!(Ins::parse("184052A12345682", InsKind::Nir, false).is_ok());
        assert!(matches!(
            Ins::parse("184052B12345682", InsKind::Nir, false),
            Err(InsError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn broken_numbers_are_refused_saying_which_fault() {
        let cases: [(&str, &str); 8] = [
            ("25508141680253", "not 14"),
            ("2550814168025380", "not 16"),
            ("", "not 0"),
            ("2550814168O2538", "character 11 is `O`"),
            ("2550814A6802538", "character 8 is `A`"),
            (
                "255081416802539",
                "the key 39 does not match the number (its key is 38)",
            ),
            ("555081416802538", "the first character gives the sex"),
            ("2550814168025-8", "character 14 is `-`"),
        ];
        for (number, expected) in cases {
            let error = Ins::parse(number, InsKind::Nir, false)
                .expect_err(expected)
                .to_string();
            assert!(
                error.contains(expected),
                "{number}: `{error}` should say `{expected}`"
            );
        }
    }

    #[test]
    fn the_oid_says_the_kind_and_whether_it_is_a_test_identity() {
        let ins = Ins::parse("279035121518989", InsKind::Nir, true).expect("valid");
        assert_eq!(ins.oid(), "1.2.250.1.213.1.4.10");
        assert_eq!(oid(InsKind::Nir, false), "1.2.250.1.213.1.4.8");
        assert_eq!(oid(InsKind::Nia, false), "1.2.250.1.213.1.4.9");
        assert_eq!(oid(InsKind::Nia, true), "1.2.250.1.213.1.4.11");
    }
}
