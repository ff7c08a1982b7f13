//! The relying party against a real, independent OpenID Provider: `oidc-provider` (npm, a
//! certified implementation) started by each test from `tests/oidc/provider.mjs`, with accounts
//! shaped like Pro Santé Connect's. The test plays the browser: it follows the provider's
//! redirects with its cookies until the provider sends it back to the suite's callback.
//!
//! Needs Node and `npm ci --prefix tests/oidc` (done by `.ci/run`); in CI a missing provider
//! fails the test instead of skipping it.

mod common;

use std::time::Duration;

use common::{relying_party, secret, settings, sign_in, start_provider, start_provider_at};
use telehealth_auth::oidc::{
    ClientAuth, ClientKey, HttpClient, OidcError, PendingLogin, RelyingParty,
};

#[tokio::test]
async fn a_professional_signs_in_with_the_client_secret_and_with_a_signed_assertion() {
    let (key, _) = ClientKey::generate("telehealth-1").expect("key");
    let Some(provider) = start_provider(&key).await else {
        return;
    };
    for client_auth in [secret(), ClientAuth::PrivateKeyJwt(key.clone())] {
        let rp = relying_party(&provider, client_auth).await;
        let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
        let person = rp
            .complete(&pending, &state, &code)
            .await
            .expect("signed in");
        assert_eq!(person.subject, "psc-dr-martin");
        assert_eq!(person.national_id.as_deref(), Some("810100000008"));
        assert_eq!(person.family_name.as_deref(), Some("MARTIN"));
        assert_eq!(person.given_name.as_deref(), Some("Paul"));
        assert_eq!(person.acr.as_deref(), Some("eidas1"));
        let record = person.record.expect("the professional record");
        assert_eq!(record.exercices[0].profession.as_deref(), Some("10"));
    }
}

#[tokio::test]
async fn a_wrong_state_nonce_or_verifier_and_a_replayed_code_are_refused() {
    let (key, _) = ClientKey::generate("telehealth-1").expect("key");
    let Some(provider) = start_provider(&key).await else {
        return;
    };
    let rp = relying_party(&provider, secret()).await;

    // A callback with another sign-in's state: refused before the code is used.
    let (pending, _, code) = sign_in(&rp, "psc-dr-martin").await;
    let refused = rp.complete(&pending, "forged-state", &code).await;
    assert!(
        matches!(refused, Err(OidcError::StateMismatch)),
        "{refused:?}"
    );

    // The ID token carries the nonce of the sign-in it answers, not another.
    let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
    let other = PendingLogin {
        nonce: "another-sign-in".into(),
        ..pending
    };
    match rp.complete(&other, &state, &code).await {
        Err(OidcError::IdToken(reason)) => assert!(reason.contains("nonce"), "{reason}"),
        other => panic!("a wrong nonce: {other:?}"),
    }

    // A code is used once: the replay is refused by the provider.
    let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
    rp.complete(&pending, &state, &code)
        .await
        .expect("first use");
    match rp.complete(&pending, &state, &code).await {
        Err(OidcError::CodeRefused(reason)) => {
            assert!(reason.contains("invalid_grant"), "{reason}")
        }
        other => panic!("a replayed code: {other:?}"),
    }

    // Without the PKCE verifier, or with another one, the code is worthless.
    for verifier in ["", "a-verifier-of-another-sign-in-0123456789-abcdefghij"] {
        let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
        let other = PendingLogin {
            pkce_verifier: verifier.into(),
            ..pending
        };
        match rp.complete(&other, &state, &code).await {
            Err(OidcError::CodeRefused(reason)) => {
                assert!(reason.contains("invalid_grant"), "{verifier:?}: {reason}")
            }
            other => panic!("verifier {verifier:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_login_below_the_required_level_is_refused() {
    let (key, _) = ClientKey::generate("telehealth-1").expect("key");
    let Some(provider) = start_provider(&key).await else {
        return;
    };
    let rp = relying_party(&provider, secret()).await;
    let (pending, state, code) = sign_in(&rp, "psc-weak").await;
    match rp.complete(&pending, &state, &code).await {
        Err(OidcError::InsufficientAcr { expected, got }) => {
            assert_eq!(expected, "eidas1");
            assert_eq!(got.as_deref(), Some("eidas0"));
        }
        other => panic!("eidas0 where eidas1 is required: {other:?}"),
    }
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let (key, _) = ClientKey::generate("telehealth-1").expect("key");
    let Some(provider) = start_provider(&key).await else {
        return;
    };
    // The provider's own document, read for an issuer that is not the one it names (as Pro
    // Santé Connect's non-standard discovery path is read).
    let mut claimed = settings(&provider.issuer.replace("127.0.0.1", "localhost"), secret());
    claimed.discovery_url = Some(format!(
        "{}/.well-known/openid-configuration",
        provider.issuer
    ));
    let refused = RelyingParty::discover(claimed, HttpClient::new(None).expect("client")).await;
    match refused {
        Err(OidcError::Discovery(reason)) => assert!(reason.contains("names issuer"), "{reason}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("another issuer's document was accepted"),
    }
    // Through the same path with the right issuer, it works.
    let mut right = settings(&provider.issuer, secret());
    right.discovery_url = Some(format!(
        "{}/.well-known/openid-configuration",
        provider.issuer
    ));
    let rp = RelyingParty::discover(right, HttpClient::new(None).expect("client"))
        .await
        .expect("discovered by its document's URL");
    let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
    rp.complete(&pending, &state, &code)
        .await
        .expect("signed in");
}

#[tokio::test]
async fn the_providers_new_signing_key_is_fetched_when_a_token_names_it() {
    let (key, _) = ClientKey::generate("telehealth-1").expect("key");
    let Some(provider) = start_provider(&key).await else {
        return;
    };
    let port: u16 = provider
        .issuer
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let rp = relying_party(&provider, secret()).await;
    let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
    rp.complete(&pending, &state, &code)
        .await
        .expect("signed in with the first key");
    // The provider restarts with a new key (a rotation): the relying party discovered the old
    // one only, and fetches the new one when a token names it.
    drop(provider);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _rotated = start_provider_at(port, &key).await.expect("restarted");
    let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
    let person = rp
        .complete(&pending, &state, &code)
        .await
        .expect("signed in with the rotated key");
    assert_eq!(person.national_id.as_deref(), Some("810100000008"));
}

/// A P-256 key made with ring: its PKCS#8 document and the same key as a private JWK.
fn provider_key(kid: &str) -> (Vec<u8>, serde_json::Value) {
    use base64::Engine as _;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .expect("key")
    .as_ref()
    .to_vec();
    // ring's P-256 PKCS#8: the private scalar at 36..68, the public point (04 ‖ x ‖ y) last.
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let point = &pkcs8[pkcs8.len() - 65..];
    assert_eq!(point[0], 4, "an uncompressed point");
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "d": b64(&pkcs8[36..68]), "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (pkcs8, jwk)
}

#[tokio::test]
async fn an_id_token_with_a_wrong_issuer_audience_expiry_nonce_level_or_key_is_refused() {
    let (client_key, _) = ClientKey::generate("telehealth-1").expect("key");
    let (pkcs8, jwk) = provider_key("provider-key");
    let Some(provider) =
        telehealth_testkit::oidc::start_provider_signing_with(&client_key.public_jwks(), &jwk)
            .await
    else {
        return;
    };
    let rp = relying_party(&provider, secret()).await;
    // A genuine sign-in first: the provider signs with the key the test holds.
    let (pending, state, code) = sign_in(&rp, "psc-dr-martin").await;
    rp.complete(&pending, &state, &code)
        .await
        .expect("signed in with the provider's key");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let right = serde_json::json!({
        "iss": provider.issuer, "aud": "rp-basic", "sub": "psc-dr-martin",
        "iat": now, "exp": now + 300, "nonce": "the-nonce", "acr": "eidas1",
    });
    let sign = |claims: &serde_json::Value, key: &[u8], kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(key),
        )
        .expect("signed")
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = right.clone();
        claims[field] = value;
        sign(&claims, &pkcs8, "provider-key")
    };
    rp.check_id_token(&sign(&right, &pkcs8, "provider-key"), "the-nonce")
        .expect("the control: every claim right");

    for (case, token, expected) in [
        (
            "iss",
            with("iss", "https://another-provider.example".into()),
            "issuer",
        ),
        ("aud", with("aud", "another-client".into()), "audience"),
        ("exp", with("exp", (now - 3600).into()), "expired"),
        ("nonce", sign(&right, &pkcs8, "provider-key"), "nonce"),
    ] {
        let nonce = if case == "nonce" {
            "another-sign-in"
        } else {
            "the-nonce"
        };
        match rp.check_id_token(&token, nonce) {
            Err(OidcError::IdToken(reason)) => {
                assert!(reason.to_lowercase().contains(expected), "{case}: {reason}")
            }
            other => panic!("{case}: {other:?}"),
        }
    }
    match rp.check_id_token(&with("acr", "eidas0".into()), "the-nonce") {
        Err(OidcError::InsufficientAcr { expected, got }) => {
            assert_eq!(
                (expected.as_str(), got.as_deref()),
                ("eidas1", Some("eidas0"))
            );
        }
        other => panic!("acr: {other:?}"),
    }
    // Signed by a key the provider never published.
    let (forger, _) = provider_key("forger");
    let forged = rp.check_id_token(&sign(&right, &forger, "provider-key"), "the-nonce");
    assert!(
        matches!(&forged, Err(OidcError::IdToken(reason)) if reason.contains("signature")),
        "{forged:?}"
    );
    let unknown = rp.check_id_token(&sign(&right, &forger, "forger"), "the-nonce");
    assert!(matches!(unknown, Err(OidcError::UnknownKey)), "{unknown:?}");
}
