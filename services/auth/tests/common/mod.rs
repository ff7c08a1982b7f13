//! The test OpenID provider and a browser to drive it, shared by the sign-in tests.
//!
//! `tests/oidc/provider.mjs` runs `oidc-provider` (npm, a certified implementation) with
//! accounts shaped like Pro Santé Connect's. Needs Node and `npm ci --prefix tests/oidc` (done
//! by `.ci/run`); in CI a missing provider fails the test instead of skipping it.

#![allow(dead_code)]

use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use telehealth_auth::oidc::{
    ClientAuth, ClientKey, HttpClient, PendingLogin, ProviderSettings, RelyingParty,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The suite's callback as registered with the provider; never contacted (the browser stops
/// there).
pub const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// A running provider; killed when dropped.
pub struct Provider {
    pub issuer: String,
    _process: tokio::process::Child,
}

pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// Starts the provider trusting `client_key` for the `private_key_jwt` client; `None` when it
/// cannot run here (never in CI).
pub async fn start_provider(client_key: &ClientKey) -> Option<Provider> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("address").port()
    };
    start_provider_at(port, client_key).await
}

/// [`start_provider`] on `port`.
pub async fn start_provider_at(port: u16, client_key: &ClientKey) -> Option<Provider> {
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

/// Plays the browser from `url` (keeping cookies, following redirects) until the provider sends
/// it to the callback; the callback's `state` and `code`.
pub async fn browse(mut url: String) -> (String, String) {
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
