//! DICOM UIDs. Every UID this crate makes is `2.25.` followed by the decimal value of a UUID
//! (PS3.5 B.2): no OID root to register, and no collision to coordinate between centres.

use sha2::{Digest, Sha256};

/// A new random UID.
pub fn random() -> String {
    from_uuid(uuid::Uuid::new_v4())
}

/// A UID that is always the same for the same `namespace` and `name` (a UUID version 8 made of
/// a SHA-256 of both): two photos of the same request land in the same study without the caller
/// storing the study's UID.
pub fn derived(namespace: &str, name: &str) -> String {
    let digest = Sha256::new()
        .chain_update(namespace.as_bytes())
        .chain_update([0])
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

fn from_uuid(uuid: uuid::Uuid) -> String {
    format!("2.25.{}", uuid.as_u128())
}

/// Whether `uid` is a valid DICOM UID: at most 64 characters, digits in dot-separated
/// components, no leading zero in a component of more than one digit.
pub fn is_valid(uid: &str) -> bool {
    uid.len() <= 64
        && uid.split('.').all(|component| {
            !component.is_empty()
                && component.bytes().all(|b| b.is_ascii_digit())
                && (component == "0" || !component.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_uids_are_valid_and_derived_ones_are_stable() {
        for _ in 0..100 {
            let uid = random();
            assert!(is_valid(&uid), "{uid}");
        }
        let a = derived("study", "REQ-1");
        assert!(is_valid(&a), "{a}");
        assert_eq!(a, derived("study", "REQ-1"));
        assert_ne!(a, derived("study", "REQ-2"));
        assert_ne!(a, derived("series", "REQ-1"));
    }

    #[test]
    fn invalid_uids_are_recognised() {
        for uid in ["", "1..2", "1.02", "1.a", "1.2.", &"1".repeat(65)] {
            assert!(!is_valid(uid), "{uid:?}");
        }
        assert!(is_valid("1.2.840.10008.5.1.4.1.1.77.1.4"));
        assert!(is_valid("2.25.0"));
    }
}
