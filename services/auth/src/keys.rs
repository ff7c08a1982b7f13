//! The auth service's own signing keys (ES256) for the suite's access tokens, with rotation and
//! overlap: a new key is published in the JWKS `publish_ahead` before it signs, so that every
//! gateway has fetched it by the time a token names it; a replaced key stays published until
//! the last token it signed has expired, so that no valid token stops verifying.
//!
//! The ring lives in one file, readable by its owner only (the private keys), and the JWKS the
//! gateway trusts is derived from it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use p256::{generate_pkcs8, public_point};
use serde::{Deserialize, Serialize};

/// Why the key ring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a key ring: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no key signs yet")]
    NoSigningKey,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// One key of the ring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredKey {
    kid: String,
    /// PKCS#8 (DER), base64.
    pkcs8: String,
    /// Unix seconds from which it signs.
    signs_from: u64,
}

/// The ring: its keys, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<StoredKey>,
}

impl KeyRing {
    /// Reads the ring at `path`, or creates it with one key that signs at once.
    pub fn load_or_create(path: &Path, now: u64) -> Result<KeyRing, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeyError::Malformed {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut ring = KeyRing { keys: Vec::new() };
                ring.add_key(now)?;
                ring.save(path)?;
                Ok(ring)
            }
            Err(source) => Err(KeyError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the ring (owner only), replacing the file in one step.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_vec_pretty(self).map_err(|e| KeyError::Malformed {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let partial = path.with_extension("partial");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&partial).map_err(io)?, &text).map_err(io)?;
        std::fs::rename(&partial, path).map_err(io)
    }

    /// Adds a key that signs from `now + publish_ahead`: published now, used once every
    /// gateway has had the time to fetch it.
    pub fn rotate(&mut self, now: u64, publish_ahead: Duration) -> Result<String, KeyError> {
        self.add_key(now + publish_ahead.as_secs())
    }

    /// Forgets the keys replaced more than `token_lifetime` ago: no unexpired token names them.
    pub fn prune(&mut self, now: u64, token_lifetime: Duration) {
        let replaced_at: Vec<Option<u64>> = (0..self.keys.len())
            .map(|i| {
                self.keys[i + 1..]
                    .iter()
                    .filter(|k| k.signs_from <= now)
                    .map(|k| k.signs_from)
                    .min()
            })
            .collect();
        let mut index = 0;
        self.keys.retain(|_| {
            let keep = replaced_at[index].is_none_or(|at| now < at + token_lifetime.as_secs());
            index += 1;
            keep
        });
    }

    /// The key id that signs at `now`: the newest whose time has come.
    pub fn signing_kid(&self, now: u64) -> Result<&str, KeyError> {
        self.signing_key(now).map(|k| k.kid.as_str())
    }

    /// Signs `claims` (any serializable JWT body) with the key of `now`, naming it in `kid`.
    pub fn sign<C: Serialize>(&self, now: u64, claims: &C) -> Result<String, KeyError> {
        let key = self.signing_key(now)?;
        let der = decode(&key.pkcs8)?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&der),
        )
        .map_err(|e| KeyError::Signing(e.to_string()))
    }

    /// When the newest key starts (or started) signing: the ring rotates when it is old enough.
    pub fn newest_from(&self) -> Option<u64> {
        self.keys.iter().map(|k| k.signs_from).max()
    }

    /// The public keys of the ring, as the JWKS the gateway verifies tokens with.
    pub fn jwks(&self) -> Result<serde_json::Value, KeyError> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let point = public_point(&decode(&key.pkcs8)?)?;
            let b64 = |bytes: &[u8]| {
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
            };
            keys.push(serde_json::json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": key.kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }));
        }
        Ok(serde_json::json!({ "keys": keys }))
    }

    fn signing_key(&self, now: u64) -> Result<&StoredKey, KeyError> {
        self.keys
            .iter()
            .filter(|k| k.signs_from <= now)
            .max_by_key(|k| k.signs_from)
            .ok_or(KeyError::NoSigningKey)
    }

    fn add_key(&mut self, signs_from: u64) -> Result<String, KeyError> {
        let pkcs8 = generate_pkcs8()?;
        let kid = uuid::Uuid::new_v4().to_string();
        self.keys.push(StoredKey {
            kid: kid.clone(),
            pkcs8: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pkcs8),
            signs_from,
        });
        Ok(kid)
    }
}

fn decode(pkcs8: &str) -> Result<Vec<u8>, KeyError> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, pkcs8)
        .map_err(|e| KeyError::Signing(format!("a stored key: {e}")))
}

/// P-256 keys with ring (already the process's crypto).
mod p256 {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use super::KeyError;

    pub(super) fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
        EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| KeyError::Signing("no key could be generated".into()))
    }

    /// The uncompressed public point (0x04, x, y) of a PKCS#8 key.
    pub(super) fn public_point(pkcs8: &[u8]) -> Result<Vec<u8>, KeyError> {
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map(|pair| pair.public_key().as_ref().to_vec())
        .map_err(|_| KeyError::Signing("a stored key is not a P-256 key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Body {
        sub: String,
        exp: u64,
    }

    const LIFETIME: Duration = Duration::from_secs(600);
    const AHEAD: Duration = Duration::from_secs(300);

    /// Verifies `token` with the JWKS as a gateway would: the key its `kid` names.
    fn verifies(token: &str, jwks: &serde_json::Value) -> bool {
        let header = jsonwebtoken::decode_header(token).expect("header");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("jwks");
        let Some(jwk) = header.kid.and_then(|kid| set.find(&kid).cloned()) else {
            return false;
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Body>(token, &key, &validation).is_ok()
    }

    fn body() -> Body {
        Body {
            sub: "dr-martin".into(),
            exp: 0,
        }
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire() {
        let dir = tempfile_dir();
        let path = dir.join("signing-keys.json");
        let t0 = 1_800_000_000;
        let mut ring = KeyRing::load_or_create(&path, t0).expect("created");
        let first = ring.signing_kid(t0).expect("signs").to_owned();
        let old_token = ring.sign(t0, &body()).expect("signed");

        // Rotation: the new key is in the JWKS at once, but the old one still signs.
        let second = ring.rotate(t0, AHEAD).expect("rotated");
        assert_eq!(ring.signing_kid(t0 + 1).expect("signs"), first);
        let published = ring.jwks().expect("jwks");
        assert_eq!(published["keys"].as_array().map(Vec::len), Some(2));

        // Once its time has come, the new key signs; tokens of both verify.
        let t1 = t0 + AHEAD.as_secs();
        assert_eq!(ring.signing_kid(t1).expect("signs"), second);
        let new_token = ring.sign(t1, &body()).expect("signed");
        let published = ring.jwks().expect("jwks");
        assert!(verifies(&old_token, &published));
        assert!(verifies(&new_token, &published));

        // The old key stays while a token it signed may be valid, then goes.
        ring.prune(t1 + LIFETIME.as_secs() - 1, LIFETIME);
        assert!(verifies(&old_token, &ring.jwks().expect("jwks")));
        ring.prune(t1 + LIFETIME.as_secs(), LIFETIME);
        let published = ring.jwks().expect("jwks");
        assert!(
            !verifies(&old_token, &published),
            "the replaced key is gone"
        );
        assert!(verifies(&new_token, &published));

        // The ring survives a restart, readable by its owner only.
        ring.save(&path).expect("saved");
        let again = KeyRing::load_or_create(&path, t1).expect("loaded");
        assert_eq!(again, ring);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

    #[test]
    fn a_malformed_ring_is_refused_not_replaced() {
        let dir = tempfile_dir();
        let path = dir.join("signing-keys.json");
        std::fs::write(&path, b"{not json").expect("written");
        let refused = KeyRing::load_or_create(&path, 0);
        assert!(
            matches!(refused, Err(KeyError::Malformed { .. })),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&path).expect("kept"), b"{not json");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("telehealth-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
