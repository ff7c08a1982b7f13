//! Who is calling: the bearer token, verified, and bound to the client certificate.
//!
//! Verifying an ES256 signature costs about 84 µs of CPU here, more than everything else the
//! gateway does for a call, so verified tokens are cached: keyed by a hash of the token *and*
//! the certificate thumbprint (a stolen token in the cache is still useless from another
//! device), never used past `exp`, bounded in size, and emptied whenever the key set changes.
//!
//! Refused, whatever the signature: a call with more than one `authorization` header (which one
//! would count?), a token header with `crit` (RFC 7515 §4.1.11: no extension is understood here),
//! and a token whose `sub` or `org` is empty, over-long or holds control characters (the
//! services need both, and they end up in logs and audit records).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{HeaderMap, header::AUTHORIZATION};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use telehealth_kit::{
    config::JwtSettings,
    identity::{Identity, Role},
    token::unix_now,
};

use crate::{error::AuthFailure, jwks::KeyStore};

/// The claims the gateway reads.
#[derive(Debug, Deserialize)]
struct AccessClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    org: String,
    #[serde(default)]
    specialty: Option<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
}

#[derive(Debug, Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// Longest `sub` accepted (the contract's subjects are 1 to 255 characters).
const MAX_SUBJECT_CHARS: usize = 255;
/// Longest `org` accepted (the contract's orgs are 1 to 128 characters).
const MAX_ORG_CHARS: usize = 128;

/// The one `authorization` header of a request: `None` without any, refused if there are
/// several or it is not visible ASCII.
pub fn authorization_header(headers: &HeaderMap) -> Result<Option<&str>, AuthFailure> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthFailure::SeveralAuthorizationHeaders);
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| AuthFailure::MalformedHeader)
}

/// Size of a header list as HTTP/2 counts it (RFC 9113 §6.5.2: name, value and 32 bytes each).
pub fn header_list_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// Verifies tokens for the gateway.
pub struct Authenticator {
    keys: Arc<KeyStore>,
    settings: JwtSettings,
    cache: Mutex<TokenCache>,
}

struct TokenCache {
    generation: u64,
    entries: HashMap<[u8; 32], (Arc<Identity>, u64)>,
    capacity: usize,
}

impl Authenticator {
    /// An authenticator using `keys` and `settings`.
    pub fn new(keys: Arc<KeyStore>, settings: JwtSettings) -> Self {
        let capacity = settings.cache_entries;
        Authenticator {
            keys,
            settings,
            cache: Mutex::new(TokenCache {
                generation: 0,
                entries: HashMap::new(),
                capacity,
            }),
        }
    }

    /// The key store (for reloads).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Authenticates the `authorization` header value of a call made over a connection whose
    /// client certificate has `thumbprint`.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        thumbprint: &str,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::MissingToken)?;
        let token = bearer_token(header)?;
        let cache_key = cache_key(token, thumbprint);
        if let Some(identity) = self.cached(&cache_key) {
            return Ok(identity);
        }
        let (identity, exp) = self.verify(token, thumbprint).await?;
        self.remember(cache_key, identity.clone(), exp);
        Ok(identity)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Arc<Identity>> {
        if self.settings.cache_entries == 0 {
            return None;
        }
        let generation = self.keys.generation();
        let mut cache = self.cache.lock().ok()?;
        if cache.generation != generation {
            cache.entries.clear();
            cache.generation = generation;
            return None;
        }
        let (identity, exp) = cache.entries.get(key)?;
        // Same rule as verification: usable until exp + leeway.
        if unix_now() <= exp + self.settings.leeway_seconds {
            Some(identity.clone())
        } else {
            cache.entries.remove(key);
            None
        }
    }

    fn remember(&self, key: [u8; 32], identity: Arc<Identity>, exp: u64) {
        if self.settings.cache_entries == 0 {
            return;
        }
        let generation = self.keys.generation();
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.generation != generation {
            cache.entries.clear();
            cache.generation = generation;
        }
        if cache.entries.len() >= cache.capacity {
            let now = unix_now();
            cache.entries.retain(|_, (_, exp)| *exp > now);
            if cache.entries.len() >= cache.capacity {
                // Still full of live tokens: start over rather than track recency.
                cache.entries.clear();
            }
        }
        cache.entries.insert(key, (identity, exp));
    }

    async fn verify(
        &self,
        token: &str,
        thumbprint: &str,
    ) -> Result<(Arc<Identity>, u64), AuthFailure> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthFailure::MalformedToken(e.to_string()))?;
        // RFC 7515 §4.1.11: a recipient must refuse critical extensions it does not understand;
        // this gateway understands none.
        if let Some(critical) = &header.crit {
            return Err(AuthFailure::CriticalExtension(critical.join(",")));
        }
        // Decided before any key is looked at: `none`, HS* and anything else are refused
        // whatever the key set holds (no algorithm confusion).
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA
        ) {
            return Err(AuthFailure::AlgorithmNotAllowed(format!(
                "{:?}",
                header.alg
            )));
        }
        let kid = header.kid.ok_or(AuthFailure::MissingKid)?;
        let key = self
            .keys
            .get(&kid)
            .await
            .ok_or_else(|| AuthFailure::UnknownKid(kid.clone()))?;
        if key.algorithm != header.alg {
            return Err(AuthFailure::AlgorithmMismatch {
                kid,
                key: format!("{:?}", key.algorithm),
                token: format!("{:?}", header.alg),
            });
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map_err(|e| AuthFailure::Invalid(e.to_string()))?
            .claims;

        if self.settings.require_certificate_binding {
            let bound = claims
                .cnf
                .as_ref()
                .and_then(|cnf| cnf.x5t_s256.as_deref())
                .ok_or(AuthFailure::UnboundToken)?;
            if bound != thumbprint {
                return Err(AuthFailure::BindingMismatch);
            }
        }
        check_claim("sub", &claims.sub, MAX_SUBJECT_CHARS)?;
        check_claim("org", &claims.org, MAX_ORG_CHARS)?;
        let roles = claims
            .roles
            .iter()
            .filter_map(|role| role.parse::<Role>().ok())
            .collect();
        let identity = Identity {
            subject: claims.sub,
            roles,
            org: claims.org,
            specialty: claims.specialty.filter(|s| !s.is_empty()),
            cert_thumbprint: thumbprint.to_owned(),
        };
        Ok((Arc::new(identity), claims.exp))
    }
}

/// A claim the services rely on: 1 to `max` characters, no control characters.
fn check_claim(name: &'static str, value: &str, max: usize) -> Result<(), AuthFailure> {
    let reason = if value.is_empty() {
        "empty"
    } else if value.chars().count() > max {
        "too long"
    } else if value.chars().any(char::is_control) {
        "holds control characters"
    } else {
        return Ok(());
    };
    Err(AuthFailure::UnusableClaim { name, reason })
}

/// The token of a `Bearer <token>` header (scheme case-insensitive, RFC 6750).
fn bearer_token(header: &str) -> Result<&str, AuthFailure> {
    let (scheme, token) = header.split_once(' ').ok_or(AuthFailure::MalformedHeader)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthFailure::MalformedHeader);
    }
    Ok(token)
}

fn cache_key(token: &str, thumbprint: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(token.as_bytes());
    hasher.update([0]);
    hasher.update(thumbprint.as_bytes());
    hasher.finalize().into()
}

/// How long until a JWKS refresh is allowed again (exposed for configuration checks).
pub fn min_refresh_interval(settings: &JwtSettings) -> Duration {
    Duration::from_secs(settings.min_refresh_interval_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token("Bearer abc"), Ok("abc"));
        assert_eq!(bearer_token("bearer  abc "), Ok("abc"));
        for bad in ["abc", "Basic abc", "Bearer ", "Bearer"] {
            assert_eq!(
                bearer_token(bad),
                Err(AuthFailure::MalformedHeader),
                "{bad}"
            );
        }
    }

    #[test]
    fn one_authorization_header_at_most() {
        let mut headers = HeaderMap::new();
        assert_eq!(authorization_header(&headers), Ok(None));
        headers.append(AUTHORIZATION, "Bearer a".parse().expect("ascii"));
        assert_eq!(authorization_header(&headers), Ok(Some("Bearer a")));
        headers.append(AUTHORIZATION, "Bearer a".parse().expect("ascii"));
        assert_eq!(
            authorization_header(&headers),
            Err(AuthFailure::SeveralAuthorizationHeaders),
            "even the same value twice"
        );
    }

    #[test]
    fn claims_the_services_rely_on_must_be_usable() {
        assert_eq!(check_claim("sub", "nurse-claire", 255), Ok(()));
        for (value, reason) in [
            ("", "empty"),
            ("a\nb", "holds control characters"),
            (&"x".repeat(256), "too long"),
        ] {
            assert_eq!(
                check_claim("sub", value, 255),
                Err(AuthFailure::UnusableClaim {
                    name: "sub",
                    reason
                }),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_cache_key_depends_on_the_certificate() {
        assert_ne!(cache_key("t", "cert-a"), cache_key("t", "cert-b"));
    }
}
