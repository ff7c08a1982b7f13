//! `private_key_jwt` (RFC 7523, OpenID Connect Core §9): the suite authenticates to the token
//! endpoint with a short assertion signed by its own key (ES256), whose public half the
//! provider was given as a JWK. The library has no support for it: the assertion goes in the
//! token request's body.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;

use super::OidcError;

/// `client_assertion_type` of a signed assertion.
pub(super) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: the token request follows at once.
const ASSERTION_SECONDS: u64 = 60;

/// The suite's client key at a provider: a P-256 key (PKCS#8) and its key id.
#[derive(Clone)]
pub struct ClientKey {
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    public_point: Vec<u8>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey").field("kid", &self.kid).finish()
    }
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl ClientKey {
    /// The key of a PKCS#8 document (DER), named `kid`.
    pub fn from_pkcs8(kid: &str, pkcs8_der: &[u8]) -> Result<ClientKey, OidcError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8_der,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| OidcError::Config("the client key is not a P-256 PKCS#8 key".into()))?;
        Ok(ClientKey {
            kid: kid.to_owned(),
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8_der),
            public_point: pair.public_key().as_ref().to_vec(),
        })
    }

    /// A new random key named `kid` and its PKCS#8 document (DER), to store.
    pub fn generate(kid: &str) -> Result<(ClientKey, Vec<u8>), OidcError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| OidcError::Config("no key could be generated".into()))?;
        let key = ClientKey::from_pkcs8(kid, pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// The public key as a JWK set, to register with the provider.
    pub fn public_jwks(&self) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // An uncompressed P-256 point: 0x04, then x and y (32 bytes each).
        let (x, y) = self.public_point[1..].split_at(32);
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64.encode(x), "y": b64.encode(y),
        }]})
    }

    /// A fresh assertion of `client_id` for the token endpoint `audience`.
    pub(super) fn assertion(&self, client_id: &str, audience: &str) -> Result<String, OidcError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| OidcError::Config("the clock is before 1970".into()))?
            .as_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = Assertion {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + ASSERTION_SECONDS,
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| OidcError::Config(format!("the client assertion: {e}")))
    }
}
