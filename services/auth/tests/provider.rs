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
