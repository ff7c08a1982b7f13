//! Field-by-field encryption at rest and keyed blind indexes, for personal data (the patient
//! register's identity traits, INS, contact details and address).
//!
//! Each field is sealed with AES-256-GCM (ring) under the current data key, with a fresh random
//! nonce, and bound to its place: the associated data names the field and the record, so a
//! ciphertext copied into another row or column does not open. A sealed value is text,
//! `v1.<key id>.<base64 of nonce ‖ ciphertext ‖ tag>`, so both databases store it the same way.
//!
//! Key rotation: the key file lists every data key; the last one seals, every one opens. Adding
//! a key (`telehealth patients add-key`) makes new writes use it at once; re-encrypting
//! (`telehealth patients rekey`) moves every stored field to it, after which older keys may be
//! removed from the file.
//!
//! Exact-match search never reads plaintext columns: the store keeps, beside the sealed field,
//! an HMAC-SHA256 of its normalised value under a separate index key ([`KeyRing::blind_index`]),
//! truncated to 128 bits. Equal values give equal digests, so "find INS X" is one indexed
//! lookup; the digest reveals nothing without the index key.
//!
//! The key file (`[patient_data] key_file`) holds one key per line:
//!
//! ```text
//! index <base64 of 32 bytes>
//! data k1 <base64 of 32 bytes>
//! data k2 <base64 of 32 bytes>
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use sha2::Sha256;

use crate::error::KitError;

/// Bytes of every key (AES-256 and the HMAC index key).
const KEY_BYTES: usize = 32;
/// Bytes of a blind index digest kept (128 bits: collisions are negligible at any register size).
const INDEX_BYTES: usize = 16;
/// Version prefix of a sealed value.
const VERSION: &str = "v1";

/// The data keys (the last seals) and the index key.
pub struct KeyRing {
    data: Vec<DataKey>,
    index: [u8; KEY_BYTES],
    random: SystemRandom,
}

struct DataKey {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for KeyRing {
    /// Key ids only: key bytes are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("data_keys", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Reads the key file at `path`.
    pub fn load(path: &Path) -> Result<KeyRing, KitError> {
        let text = std::fs::read_to_string(path).map_err(|e| KitError::io(path, e))?;
        KeyRing::parse(&text)
            .map_err(|e| KitError::Config(format!("patient data keys {}: {e}", path.display())))
    }

    /// Reads the key file at `path`, first creating it with fresh keys when `create` is set and
    /// it does not exist (the embedded mode's first start). The file is private to its owner.
    pub fn load_or_create(path: &Path, create: bool) -> Result<KeyRing, KitError> {
        if create && !path.exists() {
            let random = SystemRandom::new();
            let text = format!(
                "# Telehealth sealing keys: keep them secret and back them up with the database.\n\
                 # Without them the fields they sealed cannot be read.\n\
                 index {}\ndata k1 {}\n",
                fresh_key(&random)?,
                fresh_key(&random)?
            );
            write_private(path, &text)?;
            tracing::info!(path = %path.display(), "created a sealing key file");
        }
        KeyRing::load(path)
    }

    /// Writes a new key file at `path` (an operator's `init-keys`); an existing one is never
    /// overwritten.
    pub fn create_new(path: &Path) -> Result<(), KitError> {
        if path.exists() {
            return Err(KitError::Config(format!(
                "{} exists; keys are never overwritten (use add-key to rotate)",
                path.display()
            )));
        }
        KeyRing::load_or_create(path, true).map(|_| ())
    }

    /// Appends a new data key to the file at `path` (it seals from the next start or reload);
    /// returns its id.
    pub fn add_data_key(path: &Path) -> Result<String, KitError> {
        let ring = KeyRing::load(path)?;
        let next = ring
            .data
            .iter()
            .filter_map(|k| k.id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("k{next}");
        let line = format!("data {id} {}\n", fresh_key(&ring.random)?);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| KitError::io(path, e))?;
        file.write_all(line.as_bytes())
            .map_err(|e| KitError::io(path, e))?;
        Ok(id)
    }

    /// A key ring from the key file's text.
    pub fn parse(text: &str) -> Result<KeyRing, String> {
        let mut data = Vec::new();
        let mut index = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |what: &str| format!("line {}: {what}", number + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["index", key] => {
                    if index.replace(key_bytes(key).map_err(|e| at(&e))?).is_some() {
                        return Err(at("a second index key (there is exactly one)"));
                    }
                }
                ["data", id, key] => {
                    if id.is_empty()
                        || id.len() > 16
                        || !id.chars().all(|c| c.is_ascii_alphanumeric())
                    {
                        return Err(at("a key id is 1 to 16 letters or digits"));
                    }
                    if data.iter().any(|k: &DataKey| k.id == *id) {
                        return Err(at(&format!("data key {id} listed twice")));
                    }
                    let bytes = key_bytes(key).map_err(|e| at(&e))?;
                    let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
                        .map_err(|_| at("not an AES-256 key"))?;
                    data.push(DataKey {
                        id: (*id).to_owned(),
                        key: LessSafeKey::new(unbound),
                    });
                }
                _ => return Err(at("expected `index <key>` or `data <id> <key>`")),
            }
        }
        let index = index.ok_or("no index key (`index <base64 of 32 bytes>`)")?;
        if data.is_empty() {
            return Err("no data key (`data <id> <base64 of 32 bytes>`)".into());
        }
        Ok(KeyRing {
            data,
            index,
            random: SystemRandom::new(),
        })
    }

    /// The data key ids, oldest first (the last one seals).
    pub fn key_ids(&self) -> Vec<&str> {
        self.data.iter().map(|k| k.id.as_str()).collect()
    }

    fn current(&self) -> &DataKey {
        self.data
            .last()
            .expect("parse refuses a key ring without data keys")
    }

    /// `plaintext` sealed under the current key, bound to `field` of `record`.
    pub fn seal(&self, field: &str, record: &str, plaintext: &str) -> Result<String, KitError> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| KitError::Unavailable("no randomness for encryption".into()))?;
        let mut buffer = plaintext.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(field, record)),
                &mut buffer,
            )
            .map_err(|_| KitError::Unavailable("encryption failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buffer);
        Ok(format!("{VERSION}.{}.{}", key.id, STANDARD.encode(sealed)))
    }

    /// The plaintext of a value [`KeyRing::seal`] produced for `field` of `record`. Fails when
    /// its key is not in the ring or the value was altered or moved.
    pub fn open(&self, field: &str, record: &str, sealed: &str) -> Result<String, KitError> {
        let broken = |why: &str| KitError::Sealed(format!("{field} of {record}: {why}"));
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(broken("not a sealed value"));
        };
        let key = self
            .data
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| broken(&format!("key {id} is not in the key file")))?;
        let bytes = STANDARD.decode(body).map_err(|_| broken("not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(broken("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| broken("bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = key
            .key
            .open_in_place(
                nonce,
                Aad::from(associated_data(field, record)),
                &mut buffer,
            )
            .map_err(|_| broken("does not authenticate (altered, or moved from another field)"))?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| broken("not UTF-8"))
    }

    /// True when `sealed` was sealed under the current key (re-encryption skips it).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .strip_prefix(VERSION)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(id, _)| id == self.current().id)
    }

    /// The keyed digest of `value` for exact-match lookups of kind `purpose` (hex, 32 chars).
    /// `value` must already be normalised the way searches normalise it.
    pub fn blind_index(&self, purpose: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index)
            .expect("HMAC accepts a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..INDEX_BYTES])
    }
}

/// Where a sealed value belongs: a ciphertext only opens in its own field of its own record.
fn associated_data(field: &str, record: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(field.len() + record.len() + 1);
    aad.extend_from_slice(field.as_bytes());
    aad.push(0);
    aad.extend_from_slice(record.as_bytes());
    aad
}

fn key_bytes(text: &str) -> Result<[u8; KEY_BYTES], String> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| "a key is base64".to_owned())?;
    bytes
        .try_into()
        .map_err(|_| format!("a key is {KEY_BYTES} bytes"))
}

fn fresh_key(random: &SystemRandom) -> Result<String, KitError> {
    let mut key = [0u8; KEY_BYTES];
    random
        .fill(&mut key)
        .map_err(|_| KitError::Unavailable("no randomness for a new key".into()))?;
    Ok(STANDARD.encode(key))
}

/// Writes `text` to a new file at `path` readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), KitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| KitError::io(parent, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| KitError::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| KitError::io(path, e))
}

/// The default key file of an embedded deployment.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("patient-data.keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(data_keys: &[&str]) -> KeyRing {
        let key = STANDARD.encode([7u8; 32]);
        let mut text = format!("index {key}\n");
        for (i, id) in data_keys.iter().enumerate() {
            text.push_str(&format!(
                "data {id} {}\n",
                STANDARD.encode([i as u8 + 1; 32])
            ));
        }
        KeyRing::parse(&text).expect("valid key file")
    }

    #[test]
    fn a_sealed_field_opens_only_in_its_own_field_and_record() {
        let ring = ring(&["k1"]);
        let sealed = ring.seal("birth_name", "p-1", "MARTIN").expect("seals");
        assert!(!sealed.contains("MARTIN"));
        assert_eq!(
            ring.open("birth_name", "p-1", &sealed).expect("opens"),
            "MARTIN"
        );
        assert!(
            ring.open("used_name", "p-1", &sealed).is_err(),
            "another field"
        );
        assert!(
            ring.open("birth_name", "p-2", &sealed).is_err(),
            "another record"
        );
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert!(ring.open("birth_name", "p-1", &altered).is_err(), "altered");
        let again = ring.seal("birth_name", "p-1", "MARTIN").expect("seals");
        assert_ne!(sealed, again, "a fresh nonce every time");
    }

    #[test]
    fn a_new_key_seals_and_old_keys_still_open() {
        let old = ring(&["k1"]);
        let sealed_before = old.seal("ins", "p-1", "279035121518989").expect("seals");
        let rotated = ring(&["k1", "k2"]);
        assert!(!rotated.is_current(&sealed_before));
        assert_eq!(
            rotated
                .open("ins", "p-1", &sealed_before)
                .expect("old key opens"),
            "279035121518989"
        );
        let sealed_after = rotated
            .seal("ins", "p-1", "279035121518989")
            .expect("seals");
        assert!(sealed_after.starts_with("v1.k2."));
        assert!(rotated.is_current(&sealed_after));
        let dropped = ring(&["k2"]);
        assert!(dropped.open("ins", "p-1", &sealed_before).is_err());
    }

    #[test]
    fn blind_indexes_are_equal_for_equal_values_and_keyed() {
        let ring_a = ring(&["k1"]);
        let a = ring_a.blind_index("ins", "279035121518989");
        assert_eq!(a, ring_a.blind_index("ins", "279035121518989"));
        assert_ne!(a, ring_a.blind_index("name", "279035121518989"), "purpose");
        assert_eq!(a.len(), 32);
        let other = KeyRing::parse(&format!(
            "index {}\ndata k1 {}\n",
            STANDARD.encode([9u8; 32]),
            STANDARD.encode([1u8; 32])
        ))
        .expect("valid");
        assert_ne!(a, other.blind_index("ins", "279035121518989"), "key");
    }

    #[test]
    fn malformed_key_files_are_refused_with_the_line() {
        let key = STANDARD.encode([1u8; 32]);
        let cases = [
            (format!("data k1 {key}\n"), "no index key"),
            (format!("index {key}\n"), "no data key"),
            (
                format!("index {key}\ndata k1 c2hvcnQ=\n"),
                "line 2: a key is 32 bytes",
            ),
            (
                format!("index {key}\ndata k1 {key}\ndata k1 {key}\n"),
                "listed twice",
            ),
            (format!("index {key}\nsecret {key}\n"), "line 2: expected"),
        ];
        for (text, expected) in cases {
            let error = KeyRing::parse(&text).expect_err(expected);
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }

    #[test]
    fn created_key_files_are_private_and_gain_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = default_key_file(dir.path());
        let ring = KeyRing::load_or_create(&path, true).expect("created");
        assert_eq!(ring.key_ids(), ["k1"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(KeyRing::add_data_key(&path).expect("added"), "k2");
        assert_eq!(KeyRing::load(&path).expect("loads").key_ids(), ["k1", "k2"]);
        let missing = dir.path().join("none.keys");
        assert!(KeyRing::load_or_create(&missing, false).is_err());
    }
}
