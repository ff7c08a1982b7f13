//! The relying party against a real, independent OpenID Provider: `oidc-provider` (npm, a
//! certified implementation) started by each test from `tests/oidc/provider.mjs`, with accounts
//! shaped like Pro Santé Connect's. The test plays the browser: it follows the provider's
//! redirects with its cookies until the provider sends it back to the suite's callback.
//!
//! Needs Node and `npm ci --prefix tests/oidc` (done by `.ci/run`); in CI a missing provider
//! fails the test instead of skipping it.

use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use telehealth_auth::oidc::{
    ClientAuth, ClientKey, HttpClient, OidcError, PendingLogin, ProviderSettings, RelyingParty,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The suite's callback as registered with the provider; never contacted (the browser stops
/// there).
const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// A running provider; killed when dropped.
struct Provider {
    issuer: String,
    _process: tokio::process::Child,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// Starts the provider trusting `client_key` for the `private_key_jwt` client; `None` when it
/// cannot run here (never in CI).
async fn start_provider(client_key: &ClientKey) -> Option<Provider> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("address").port()
    };
    start_provider_at(port, client_key).await
}

/// [`start_provider`] on `port`.
async fn start_provider_at(port: u16, client_key: &ClientKey) -> Option<Provider> {
    let dir = provider_dir();
    if !dir.join("node_modules/oidc-provider").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs the test OpenID provider: npm ci --prefix tests/oidc"
        );
        eprintln!(
            "SKIPPING: the test OpenID provider is not installed (npm ci --prefix tests/oidc)"
        );
        return None;
    }
    let mut process = tokio::process::Command::new("node")
        .arg(dir.join("provider.mjs"))
        .env("OP_PORT", port.to_string())
        .env("RP_REDIRECT_URI", CALLBACK)
        .env("RP_JWKS", client_key.public_jwks().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the provider");
    let stdout = process.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let issuer = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("provider output") {
            if let Some(issuer) = line.strip_prefix("listening ") {
                return issuer.to_owned();
            }
        }
        panic!("the provider stopped before listening")
    })
    .await
    .expect("the provider listens within 20 s");
    // Keep reading its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Provider {
        issuer,
        _process: process,
    })
}

fn settings(issuer: &str, client_auth: ClientAuth) -> ProviderSettings {
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

fn secret() -> ClientAuth {
    ClientAuth::SecretBasic("rp-basic-secret".to_owned())
}

/// Plays the browser from `url` (keeping cookies, following redirects) until the provider sends
/// it to the callback; the callback's `state` and `code`.
async fn browse(mut url: String) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut jar: HashMap<String, String> = HashMap::new();
    for _ in 0..10 {
        let cookies = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = http
            .get(&url)
            .header("cookie", cookies)
            .send()
            .await
            .expect("the provider answers");
        for cookie in response.headers().get_all("set-cookie") {
            let pair = cookie
                .to_str()
                .expect("ASCII")
                .split(';')
                .next()
                .unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("ASCII").to_owned())
            .unwrap_or_else(|| panic!("no redirect from {url}: {}", response.status()));
        let next = url::Url::parse(&url)
            .expect("url")
            .join(&location)
            .expect("url");
        if next.as_str().starts_with(CALLBACK) {
            let query: HashMap<_, _> = next.query_pairs().into_owned().collect();
            return (
                query.get("state").cloned().unwrap_or_default(),
                query
                    .get("code")
                    .cloned()
                    .unwrap_or_else(|| panic!("no code: {next}")),
            );
        }
        url = next.to_string();
    }
    panic!("the provider never sent the browser back")
}

async fn relying_party(provider: &Provider, client_auth: ClientAuth) -> RelyingParty {
    RelyingParty::discover(
        settings(&provider.issuer, client_auth),
        HttpClient::new(None).expect("client"),
    )
    .await
    .expect("discovered")
}

/// Begins a sign-in as the provider's account `login_hint` and plays the browser.
async fn sign_in(rp: &RelyingParty, login_hint: &str) -> (PendingLogin, String, String) {
    let (url, pending) = rp.begin(Some(login_hint));
    let (state, code) = browse(url).await;
    (pending, state, code)
}

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
        assert_eq!(person.national_id.as_deref(), Some("810100000001"));
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
    assert_eq!(person.national_id.as_deref(), Some("810100000001"));
}
