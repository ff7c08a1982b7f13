//! The suite's access tokens, as the auth service issues them: short-lived, signed with the
//! service's own keys ([`crate::keys`]), bound to the device certificate of the session
//! (`cnf.x5t#S256`, RFC 8705). The gateway verifies them as it verifies any token: with the
//! JWKS, the issuer and the audience of its configuration.

use std::time::Duration;

use telehealth_kit::token::{Claims, Confirmation};

use crate::{
    keys::{KeyError, KeyRing},
    sessions::Session,
};

/// Who issues the tokens and for whom.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    /// Life of an access token (minutes: a refresh brings the next one).
    pub lifetime: Duration,
}

/// An access token for `session` at `now` (Unix seconds).
pub fn access_token(
    ring: &KeyRing,
    policy: &TokenPolicy,
    session: &Session,
    now: u64,
) -> Result<String, KeyError> {
    let grant = &session.grant;
    let claims = Claims {
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        sub: grant.subject.clone(),
        exp: now + policy.lifetime.as_secs(),
        nbf: now,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: grant.roles.clone(),
        org: grant.org.clone(),
        specialty: grant.specialty.clone(),
        cnf: Some(Confirmation {
            x5t_s256: grant.device_thumbprint.clone(),
        }),
    };
    ring.sign(now, &claims)
}
