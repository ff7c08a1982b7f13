//! The auth service's own signing keys (ES256) for the suite's access tokens, with rotation and
//! overlap: a new key is published in the JWKS `publish_ahead` before it signs, so that every
//! gateway has fetched it by the time a token names it; a replaced key stays published until
//! the last token it signed has expired, so that no valid token stops verifying.
//!
//! This module is the ring itself: which key signs when, what is published, what can go. The
//! keys live in the service's database, sealed (`core::Signing` reads and writes them), so that
//! every replica signs with the same ring.

use std::time::Duration;

use p256::{generate_pkcs8, public_point};
use serde::Serialize;

/// Why the key ring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no key signs yet")]
    NoSigningKey,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// One key of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingKey {
    /// 1 for the first key, then one more for each rotation.
    pub generation: i64,
    pub kid: String,
    /// PKCS#8 (DER).
    pub pkcs8: Vec<u8>,
    /// Unix seconds from which it signs.
    pub signs_from: u64,
}

/// The ring: its keys, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    pub fn new(mut keys: Vec<RingKey>) -> KeyRing {
        keys.sort_by_key(|k| k.generation);
        KeyRing { keys }
    }

    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// Whether a new key is due: none yet, or the newest is `rotation` old.
    pub fn is_due(&self, now: u64, rotation: Duration) -> bool {
        self.newest_from()
            .is_none_or(|from| now >= from.saturating_add(rotation.as_secs()))
    }

    /// A new key of the next generation, signing from `signs_from`.
    pub fn next_key(&self, signs_from: u64) -> Result<RingKey, KeyError> {
        Ok(RingKey {
            generation: self.keys.last().map_or(1, |k| k.generation + 1),
            kid: uuid::Uuid::new_v4().to_string(),
            pkcs8: generate_pkcs8()?,
            signs_from,
        })
    }

    /// The ring with `key` added.
    pub fn with(&self, key: RingKey) -> KeyRing {
        let mut keys = self.keys.clone();
        keys.push(key);
        KeyRing::new(keys)
    }

    /// The keys replaced more than `token_lifetime` ago: no unexpired token names them.
    pub fn expired(&self, now: u64, token_lifetime: Duration) -> Vec<String> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                self.keys[i + 1..]
                    .iter()
                    .filter(|k| k.signs_from <= now)
                    .map(|k| k.signs_from)
                    .min()
                    .is_some_and(|replaced| now >= replaced + token_lifetime.as_secs())
            })
            .map(|(_, k)| k.kid.clone())
            .collect()
    }

    /// The key id that signs at `now`: the newest whose time has come.
    pub fn signing_kid(&self, now: u64) -> Result<&str, KeyError> {
        self.signing_key(now).map(|k| k.kid.as_str())
    }

    /// Signs `claims` (any serializable JWT body) with the key of `now`, naming it in `kid`.
    pub fn sign<C: Serialize>(&self, now: u64, claims: &C) -> Result<String, KeyError> {
        let key = self.signing_key(now)?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&key.pkcs8),
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
            let point = public_point(&key.pkcs8)?;
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

    fn signing_key(&self, now: u64) -> Result<&RingKey, KeyError> {
        self.keys
            .iter()
            .filter(|k| k.signs_from <= now)
            .max_by_key(|k| k.signs_from)
            .ok_or(KeyError::NoSigningKey)
    }
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
    use serde::Deserialize;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Body {
        sub: String,
        exp: u64,
    }

    const LIFETIME: Duration = Duration::from_secs(600);
    const AHEAD: Duration = Duration::from_secs(300);
    const ROTATION: Duration = Duration::from_secs(30 * 86_400);

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
        let t0 = 1_800_000_000;
        let ring = KeyRing::default();
        assert!(ring.is_due(t0, ROTATION) && ring.sign(t0, &body()).is_err());
        let ring = ring.with(ring.next_key(t0).expect("first key"));
        assert!(!ring.is_due(t0, ROTATION));
        let first = ring.signing_kid(t0).expect("signs").to_owned();
        let old_token = ring.sign(t0, &body()).expect("signed");

        // Rotation: the new key is in the JWKS at once, but the old one still signs.
        assert!(ring.is_due(t0 + ROTATION.as_secs(), ROTATION));
        let next = ring.next_key(t0 + AHEAD.as_secs()).expect("next key");
        assert_eq!(next.generation, 2, "one generation after the newest");
        let second = next.kid.clone();
        let ring = ring.with(next);
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
        assert!(
            ring.expired(t1 + LIFETIME.as_secs() - 1, LIFETIME)
                .is_empty()
        );
        assert_eq!(ring.expired(t1 + LIFETIME.as_secs(), LIFETIME), [first]);
        let ring = KeyRing::new(ring.keys()[1..].to_vec());
        let published = ring.jwks().expect("jwks");
        assert!(
            !verifies(&old_token, &published),
            "the replaced key is gone"
        );
        assert!(verifies(&new_token, &published));
    }
}
