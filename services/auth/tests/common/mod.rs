//! The relying party's side of the provider tests; the provider and the browser are the
//! testkit's (`telehealth_testkit::oidc`).
//!
//! `tests/oidc/provider.mjs` runs `oidc-provider` (npm, a certified implementation) with
//! accounts shaped like Pro Santé Connect's. Needs Node and `npm ci --prefix tests/oidc` (done
//! by `.ci/run`); in CI a missing provider fails the test instead of skipping it.

#![allow(dead_code)]

use telehealth_auth::oidc::{
    ClientAuth, ClientKey, HttpClient, PendingLogin, ProviderSettings, RelyingParty,
};
pub use telehealth_testkit::oidc::{CALLBACK, Provider, browse};

/// Starts the provider trusting `client_key` for the `private_key_jwt` client; `None` when it
/// cannot run here (never in CI).
pub async fn start_provider(client_key: &ClientKey) -> Option<Provider> {
    telehealth_testkit::oidc::start_provider(&client_key.public_jwks()).await
}

/// [`start_provider`] on `port`.
pub async fn start_provider_at(port: u16, client_key: &ClientKey) -> Option<Provider> {
    telehealth_testkit::oidc::start_provider_at(port, &client_key.public_jwks()).await
}

pub fn settings(issuer: &str, client_auth: ClientAuth) -> ProviderSettings {
    let client_id = match client_auth {
        ClientAuth::SecretBasic(_) => "rp-basic",
        ClientAuth::PrivateKeyJwt(_) => "rp-pkjwt",
    };
    ProviderSettings {
        issuer: issuer.to_owned(),
        discovery_url: None,
        client_id: client_id.to_owned(),
        client_auth,
        redirect_uri: CALLBACK.to_owned(),
        scopes: vec!["scope_all".to_owned()],
        acr: Some("eidas1".to_owned()),
    }
}

pub fn secret() -> ClientAuth {
    ClientAuth::SecretBasic("rp-basic-secret".to_owned())
}

pub async fn relying_party(provider: &Provider, client_auth: ClientAuth) -> RelyingParty {
    RelyingParty::discover(
        settings(&provider.issuer, client_auth),
        HttpClient::new(None).expect("client"),
    )
    .await
    .expect("discovered")
}

/// Begins a sign-in as the provider's account `login_hint` and plays the browser.
pub async fn sign_in(rp: &RelyingParty, login_hint: &str) -> (PendingLogin, String, String) {
    let (url, pending) = rp.begin(Some(login_hint));
    let (state, code) = browse(url).await;
    (pending, state, code)
}
