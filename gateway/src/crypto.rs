//! Token signature verification with `ring`.
//!
//! `jsonwebtoken`'s pure-Rust backend verifies an ES256 signature in about 400 µs of CPU on the
//! reference machine; `ring` (already in the binary for TLS) does it in well under 100 µs. This
//! module installs a `jsonwebtoken` crypto provider that verifies ES256, RS256 and EdDSA with
//! `ring` and delegates everything else (signing dev tokens, other algorithms, JWK utilities) to
//! the pure-Rust provider. Installing is process-wide and happens once, before any token is
//! verified; if something already used `jsonwebtoken`, the pure-Rust provider stays (correct,
//! only slower) and a warning says so.

use std::sync::OnceLock;

use jsonwebtoken::{
    Algorithm, DecodingKey, DecodingKeyKind,
    crypto::{CryptoProvider, JwtVerifier, rust_crypto},
    errors::{ErrorKind, Result},
    signature,
};
use ring::signature::{self as ring_signature, RsaPublicKeyComponents, UnparsedPublicKey};

static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();

/// Makes `ring` the verifier of every token in this process (idempotent).
pub fn install() {
    let base = &rust_crypto::DEFAULT_PROVIDER;
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: base.signer_factory,
        verifier_factory: ring_verifier,
        key_utils: base.key_utils.clone(),
    });
    if let Err(existing) = provider.install_default()
        && !std::ptr::eq(existing, provider)
    {
        tracing::warn!(
            "token verification uses the slower pure-Rust backend: jsonwebtoken was used before the gateway started"
        );
    }
}

fn ring_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let verifier: Box<dyn JwtVerifier> = match (algorithm, key.kind()) {
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => Box::new(RingVerifier {
            algorithm: *algorithm,
            key: Key::Raw(UnparsedPublicKey::new(
                &ring_signature::ECDSA_P256_SHA256_FIXED,
                point.clone(),
            )),
        }),
        (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(raw)) => Box::new(RingVerifier {
            algorithm: *algorithm,
            key: Key::Raw(UnparsedPublicKey::new(
                &ring_signature::ED25519,
                raw.clone(),
            )),
        }),
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            Box::new(RingVerifier {
                algorithm: *algorithm,
                key: Key::Rsa(RsaPublicKeyComponents {
                    n: n.clone(),
                    e: e.clone(),
                }),
            })
        }
        (Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256, _) => {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    };
    Ok(verifier)
}

enum Key {
    Raw(UnparsedPublicKey<Vec<u8>>),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
}

struct RingVerifier {
    algorithm: Algorithm,
    key: Key,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        let verified = match &self.key {
            Key::Raw(key) => key.verify(message, signature),
            Key::Rsa(key) => key.verify(
                &ring_signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            ),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_verifies_what_the_dev_signer_signs_and_rejects_tampering() {
        install();
        let key = rcgen::KeyPair::generate().expect("key");
        let jwk = telehealth_kit::token::public_jwk(&key).expect("jwk");
        let claims =
            serde_json::json!({"sub": "s", "exp": 4_000_000_000_u64, "iss": "i", "aud": "a"});
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some("k".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
        )
        .expect("sign");
        let decoding = DecodingKey::from_ec_components(
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y"),
        )
        .expect("key");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&["a"]);
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
            .expect("verifies");
        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&tampered, &decoding, &validation).is_err()
        );
    }
}
