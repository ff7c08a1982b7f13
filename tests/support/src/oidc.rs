//! The test OpenID provider and a browser to drive it, shared by the sign-in tests.
//!
//! `tests/oidc/provider.mjs` runs `oidc-provider` (npm, a certified implementation) with
//! accounts shaped like Pro Santé Connect's. Needs Node and `npm ci --prefix tests/oidc` (done
//! by `.ci/run`); in CI a missing provider fails the test instead of skipping it.

use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use tokio::io::{AsyncBufReadExt, BufReader};

/// The suite's callback as registered with the provider; never contacted (the browser stops
/// there).
pub const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// The provider's client that authenticates with a secret, and its secret.
pub const SECRET_CLIENT: (&str, &str) = ("rp-basic", "rp-basic-secret");

/// RPPS numbers of the provider's accounts (its `SubjectNameID` is "8" + this).
pub const DR_MARTIN_RPPS: &str = "10100000008";
pub const WEAK_RPPS: &str = "10100000016";
pub const STRANGER_RPPS: &str = "10100000024";

/// A running provider; killed when dropped.
pub struct Provider {
    pub issuer: String,
    _process: tokio::process::Child,
}

pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../oidc")
}

/// Starts the provider on a free port, trusting `client_jwks` (public keys, a JWK set) for its
/// `private_key_jwt` client; `None` when it cannot run here (never in CI).
pub async fn start_provider(client_jwks: &serde_json::Value) -> Option<Provider> {
    let port = crate::ports::free_port();
    start_provider_at(port, client_jwks).await
}

/// [`start_provider`] on `port`.
pub async fn start_provider_at(port: u16, client_jwks: &serde_json::Value) -> Option<Provider> {
    launch(port, client_jwks, None).await
}

/// [`start_provider`] signing with `signing_jwk` (a private JWK), for tests that sign ID tokens
/// of their own with the provider's key.
pub async fn start_provider_signing_with(
    client_jwks: &serde_json::Value,
    signing_jwk: &serde_json::Value,
) -> Option<Provider> {
    let port = crate::ports::free_port();
    launch(port, client_jwks, Some(signing_jwk)).await
}

async fn launch(
    port: u16,
    client_jwks: &serde_json::Value,
    signing_jwk: Option<&serde_json::Value>,
) -> Option<Provider> {
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
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("provider.mjs"))
        .env("OP_PORT", port.to_string())
        .env("RP_REDIRECT_URI", CALLBACK)
        .env("RP_JWKS", client_jwks.to_string());
    if let Some(jwk) = signing_jwk {
        command.env("OP_SIGNING_JWK", jwk.to_string());
    }
    let mut process = command
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

/// A browser: follows redirects with its cookies and submits the forms the provider shows
/// (their hidden fields, as a person pressing "Continue" does).
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

/// Where a browse ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// Sent to the suite's callback with this query.
    Callback(HashMap<String, String>),
    /// A page without a form to submit (a success or error page), with its text.
    Page(String),
}

impl Default for Browser {
    fn default() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            jar: HashMap::new(),
        }
    }
}

impl Browser {
    /// Opens `url` and goes on until the callback or a page with nothing to submit.
    pub async fn open(&mut self, url: &str) -> Landing {
        let mut request = (url.to_owned(), None::<String>);
        for _ in 0..20 {
            let (url, form) = &request;
            if url.starts_with(CALLBACK) {
                let parsed = url::Url::parse(url).expect("url");
                return Landing::Callback(parsed.query_pairs().into_owned().collect());
            }
            let cookies = self
                .jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let builder = match form {
                Some(body) => self
                    .http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone()),
                None => self.http.get(url),
            };
            let response = builder
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
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
            let base = url::Url::parse(url).expect("url");
            if let Some(location) = response.headers().get("location") {
                let next = base.join(location.to_str().expect("ASCII")).expect("url");
                request = (next.to_string(), None);
                continue;
            }
            let page = response.text().await.expect("page");
            match post_form(&page) {
                Some((action, body)) => {
                    request = (base.join(&action).expect("url").to_string(), Some(body));
                }
                None => return Landing::Page(page),
            }
        }
        panic!("the provider never finished")
    }
}

/// The first `method="post"` form of `page`: its action and its hidden fields, encoded.
fn post_form(page: &str) -> Option<(String, String)> {
    let start = page.find("<form")?;
    let form = &page[start..start + page[start..].find("</form>")?];
    if !form.contains("method=\"post\"") {
        return None;
    }
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[at..at + tag[at..].find('"')?].to_owned())
    };
    let action = attribute(form, "action")?;
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        if attribute(tag, "type").as_deref() == Some("hidden")
            && let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value"))
        {
            body.append_pair(&name, &value);
        }
    }
    Some((action, body.finish()))
}

/// Plays the browser from `url` until the provider sends it to the callback; the callback's
/// `state` and `code`.
pub async fn browse(url: String) -> (String, String) {
    match Browser::default().open(&url).await {
        Landing::Callback(query) => (
            query.get("state").cloned().unwrap_or_default(),
            query
                .get("code")
                .cloned()
                .unwrap_or_else(|| panic!("no code: {query:?}")),
        ),
        Landing::Page(page) => panic!("the provider did not send the browser back: {page}"),
    }
}

/// Approves a device sign-in as the person would on their phone: opens the verification page
/// (with the code filled in), confirms, signs in; the page the provider ends on.
pub async fn approve_device(verification_uri_complete: &str) -> String {
    match Browser::default().open(verification_uri_complete).await {
        Landing::Page(page) => page,
        Landing::Callback(query) => panic!("a device sign-in went to the callback: {query:?}"),
    }
}
