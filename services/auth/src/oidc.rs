//! The OpenID Connect relying party, one per configured provider.
//!
//! A sign-in is two steps. [`RelyingParty::begin`] gives the URL to send the browser to and the
//! [`PendingLogin`] to keep (server side, used once) until the provider redirects back;
//! [`RelyingParty::complete`] checks the returned `state`, exchanges the code with the PKCE
//! verifier (the client authenticating with its secret or a signed assertion), verifies the ID
//! token (signature by the provider's current keys, `iss`, `aud`, expiry, `nonce`, the `acr`
//! asked for) and reads userinfo. The answer is the [`VerifiedPerson`] the auth service maps to a
//! member of the directory.

mod assertion;
mod claims;
mod device;
mod http;

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, JsonWebKeySet, Nonce, NonceVerifier, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
    core::{CoreAuthenticationFlow, CoreGenderClaim, CoreJsonWebKey, CoreJwsSigningAlgorithm},
};
use serde::{Deserialize, Serialize};

pub use assertion::ClientKey;
pub use claims::{Exercice, ProfessionalClaims, ProfessionalRecord};
use claims::{Metadata, ProviderClient, ProviderTokenResponse};
pub use device::{DeviceAuthorization, DevicePoll};
pub use http::HttpClient;

/// Least time between two refreshes of a provider's keys caused by an unknown key id.
const MIN_KEY_REFRESH: Duration = Duration::from_secs(60);

/// How the suite authenticates to the provider's token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic`: for providers that only offer a secret (Pro Santé Connect's
    /// registration gives one).
    SecretBasic(String),
    /// `private_key_jwt` (RFC 7523): a short assertion signed with the suite's key, whose public
    /// part the provider holds.
    PrivateKeyJwt(ClientKey),
}

/// One provider, as configured.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Issuer URL, compared exactly with the discovery document's and the ID token's `iss`.
    pub issuer: String,
    /// Discovery document, when not at `<issuer>/.well-known/openid-configuration` (Pro Santé
    /// Connect publishes `<issuer>/.well-known/wallet-openid-configuration`).
    pub discovery_url: Option<String>,
    pub client_id: String,
    pub client_auth: ClientAuth,
    /// The suite's callback, registered with the provider.
    pub redirect_uri: String,
    /// Scopes besides `openid` (Pro Santé Connect: `scope_all`).
    pub scopes: Vec<String>,
    /// Authentication level asked for and required in the ID token (Pro Santé Connect:
    /// `eidas1`); none: not checked.
    pub acr: Option<String>,
}

/// What to keep between [`RelyingParty::begin`] and [`RelyingParty::complete`], server side, for
/// one use. Serializable so the auth service can store it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The person the provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPerson {
    /// The provider's `sub`.
    pub subject: String,
    /// The national professional identifier (Pro Santé Connect's `SubjectNameID`: "8" + RPPS).
    pub national_id: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The level the login reached.
    pub acr: Option<String>,
    /// What the provider says of the person's practice (professions and activities).
    pub record: Option<ProfessionalRecord>,
}

/// Why a sign-in failed; each says what went wrong, never a token or a code.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider's discovery failed: {0}")]
    Discovery(String),
    #[error("the sign-in does not match the one started here (state differs)")]
    StateMismatch,
    #[error("the provider refused the code: {0}")]
    CodeRefused(String),
    #[error("the provider answered no ID token")]
    NoIdToken,
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("the ID token is signed with a key the provider does not publish")]
    UnknownKey,
    #[error("the login reached level {got:?}, {expected} is required")]
    InsufficientAcr {
        expected: String,
        got: Option<String>,
    },
    #[error("userinfo failed: {0}")]
    UserInfo(String),
    #[error("this provider offers no device sign-in")]
    NoDeviceSignIn,
    #[error("the person refused the sign-in at the provider")]
    DeviceDenied,
    #[error("the code was not entered in time: start again")]
    DeviceExpired,
    #[error("the relying party is misconfigured: {0}")]
    Config(String),
}

/// A discovered provider and the client built from it.
struct Discovered {
    metadata: Metadata,
    client: ProviderClient,
}

/// The relying party of one provider; cheap to share.
pub struct RelyingParty {
    settings: ProviderSettings,
    http: HttpClient,
    discovered: RwLock<Arc<Discovered>>,
    /// When the keys were last fetched again (none yet: the first refresh is never delayed).
    keys_refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl RelyingParty {
    /// Reads the provider's discovery document and keys.
    pub async fn discover(
        settings: ProviderSettings,
        http: HttpClient,
    ) -> Result<RelyingParty, OidcError> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| OidcError::Config(format!("issuer: {e}")))?;
        let metadata = match &settings.discovery_url {
            None => Metadata::discover_async(issuer, &http)
                .await
                .map_err(|e| OidcError::Discovery(e.to_string()))?,
            Some(url) => {
                let metadata: Metadata = http
                    .get_json(url)
                    .await
                    .map_err(|e| OidcError::Discovery(format!("{url}: {e}")))?;
                if metadata.issuer() != &issuer {
                    return Err(OidcError::Discovery(format!(
                        "{url} names issuer {}, not {}",
                        metadata.issuer().as_str(),
                        issuer.as_str()
                    )));
                }
                let keys = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &http)
                    .await
                    .map_err(|e| OidcError::Discovery(format!("keys: {e}")))?;
                metadata.set_jwks(keys)
            }
        };
        let client = claims::client(&settings, metadata.clone())?;
        Ok(RelyingParty {
            settings,
            http,
            discovered: RwLock::new(Arc::new(Discovered { metadata, client })),
            keys_refreshed: tokio::sync::Mutex::new(None),
        })
    }

    /// The URL to send the browser to, and what to keep until it comes back. `login_hint` is
    /// passed on to the provider (which may ignore it).
    pub fn begin(&self, login_hint: Option<&str>) -> (String, PendingLogin) {
        let discovered = self.current();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(acr) = &self.settings.acr {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state, nonce) = request.url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        };
        (url.to_string(), pending)
    }

    /// Completes the sign-in the provider redirected back with (`state` and `code` from the
    /// callback's query), against the [`PendingLogin`] kept for it.
    pub async fn complete(
        &self,
        pending: &PendingLogin,
        state: &str,
        code: &str,
    ) -> Result<VerifiedPerson, OidcError> {
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(OidcError::StateMismatch);
        }
        let discovered = self.current();
        let tokens = self.exchange(&discovered, pending, code).await?;
        let nonce = Nonce::new(pending.nonce.clone());
        self.person(&discovered, &tokens, &nonce).await
    }

    /// The person the provider's `tokens` vouch for: the ID token verified (signature by the
    /// provider's current keys, `iss`, `aud`, expiry, the nonce, the `acr` asked for), then
    /// userinfo.
    async fn person<N: NonceVerifier + Copy>(
        &self,
        discovered: &Discovered,
        tokens: &ProviderTokenResponse,
        nonce: N,
    ) -> Result<VerifiedPerson, OidcError> {
        let id_token = tokens.id_token().ok_or(OidcError::NoIdToken)?;
        let claims = match self.verify(discovered, id_token, nonce) {
            Err(OidcError::UnknownKey) => {
                // The provider rotated its keys: fetch them (at most once a minute) and retry.
                let refreshed = self.refresh_keys().await?;
                self.verify(&refreshed, id_token, nonce)?
            }
            other => other?,
        };
        let acr = self.check_acr(claims)?;
        let subject = claims.subject().clone();
        let userinfo: openidconnect::UserInfoClaims<ProfessionalClaims, CoreGenderClaim> =
            discovered
                .client
                .user_info(tokens.access_token().clone(), Some(subject.clone()))
                .map_err(|e| OidcError::UserInfo(e.to_string()))?
                .request_async(&self.http)
                .await
                .map_err(|e| OidcError::UserInfo(e.to_string()))?;
        let extra = userinfo.additional_claims();
        let from_token = claims.additional_claims();
        Ok(VerifiedPerson {
            subject: subject.as_str().to_owned(),
            national_id: extra
                .subject_name_id
                .clone()
                .or_else(|| from_token.subject_name_id.clone()),
            given_name: userinfo
                .given_name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            family_name: userinfo
                .family_name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            acr,
            record: extra
                .subject_ref_pro
                .clone()
                .or_else(|| from_token.subject_ref_pro.clone()),
        })
    }

    /// Checks a raw ID token as a sign-in checks the provider's (signature by its current keys,
    /// `iss`, `aud`, expiry, `nonce`, the `acr` asked for): the same code, reachable with tokens
    /// a provider would never send, for the tests of each refusal.
    pub fn check_id_token(&self, raw: &str, nonce: &str) -> Result<(), OidcError> {
        let token: claims::ProviderIdToken = raw
            .parse()
            .map_err(|e| OidcError::IdToken(format!("not an ID token: {e}")))?;
        let discovered = self.current();
        let claims = self.verify(&discovered, &token, &Nonce::new(nonce.to_owned()))?;
        self.check_acr(claims).map(|_| ())
    }

    /// The token's `acr`, refused when it is not the level asked for.
    fn check_acr(
        &self,
        claims: &claims::ProviderIdTokenClaims,
    ) -> Result<Option<String>, OidcError> {
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned());
        match &self.settings.acr {
            Some(expected) if acr.as_deref() != Some(expected.as_str()) => {
                Err(OidcError::InsufficientAcr {
                    expected: expected.clone(),
                    got: acr,
                })
            }
            _ => Ok(acr),
        }
    }

    async fn exchange(
        &self,
        discovered: &Discovered,
        pending: &PendingLogin,
        code: &str,
    ) -> Result<ProviderTokenResponse, OidcError> {
        let mut request = discovered
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?;
        // An empty verifier is sent as none: the provider, which required PKCE, refuses.
        if !pending.pkce_verifier.is_empty() {
            request =
                request.set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        }
        let assertion;
        if let ClientAuth::PrivateKeyJwt(key) = &self.settings.client_auth {
            let token_url = discovered
                .client
                .token_uri()
                .ok_or_else(|| OidcError::Config("the provider has no token endpoint".into()))?;
            assertion = key.assertion(&self.settings.client_id, token_url.as_str())?;
            request = request
                .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.as_str());
        }
        request
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::CodeRefused(claims::describe_token_error(&e)))
    }

    fn verify<'t, N: NonceVerifier>(
        &self,
        discovered: &Discovered,
        id_token: &'t claims::ProviderIdToken,
        nonce: N,
    ) -> Result<&'t claims::ProviderIdTokenClaims, OidcError> {
        // Only asymmetric signatures: a client secret must never be a way to forge a token.
        let verifier = discovered.client.id_token_verifier().set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            CoreJwsSigningAlgorithm::EdDsa,
        ]);
        id_token
            .claims(&verifier, nonce)
            .map_err(|error| match error {
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => OidcError::UnknownKey,
                ClaimsVerificationError::SignatureVerification(inner) => {
                    OidcError::IdToken(format!("signature: {inner}"))
                }
                other => OidcError::IdToken(other.to_string()),
            })
    }

    /// Fetches the provider's keys again, unless it was done less than a minute ago.
    async fn refresh_keys(&self) -> Result<Arc<Discovered>, OidcError> {
        let mut last = self.keys_refreshed.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_KEY_REFRESH) {
            return Ok(self.current());
        }
        let current = self.current();
        let keys =
            JsonWebKeySet::<CoreJsonWebKey>::fetch_async(current.metadata.jwks_uri(), &self.http)
                .await
                .map_err(|e| OidcError::Discovery(format!("keys: {e}")))?;
        let metadata = current.metadata.clone().set_jwks(keys);
        let client = claims::client(&self.settings, metadata.clone())?;
        let fresh = Arc::new(Discovered { metadata, client });
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        *last = Some(Instant::now());
        tracing::info!(issuer = %self.settings.issuer, "provider keys refreshed");
        Ok(fresh)
    }

    fn current(&self) -> Arc<Discovered> {
        self.discovered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Client id and secret of the settings, for the library's client.
fn credentials(settings: &ProviderSettings) -> (ClientId, Option<ClientSecret>) {
    let secret = match &settings.client_auth {
        ClientAuth::SecretBasic(secret) => Some(ClientSecret::new(secret.clone())),
        ClientAuth::PrivateKeyJwt(_) => None,
    };
    (ClientId::new(settings.client_id.clone()), secret)
}

fn redirect(settings: &ProviderSettings) -> Result<RedirectUrl, OidcError> {
    RedirectUrl::new(settings.redirect_uri.clone())
        .map_err(|e| OidcError::Config(format!("redirect_uri: {e}")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
