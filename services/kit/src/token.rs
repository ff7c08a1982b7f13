//! Development JWTs: the signing key `telehealth up` creates, the JWKS the gateway trusts, and
//! `telehealth token mint`. In production tokens come from the identity provider (Keycloak,
//! Pro Santé Connect); the claims are the same (docs/design.md, "Identity and authorisation").

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{error::KitError, identity::Role, pki::write_file};

pub use crate::config::{DEFAULT_AUDIENCE, DEV_ISSUER};

/// The claims of a telehealth access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub roles: Vec<Role>,
    pub org: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialty: Option<String>,
    /// RFC 8705 confirmation: the token only works with this client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 8705 `cnf` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The dev signing key (ES256) and its JWKS, in `<data_dir>/jwt/`.
#[derive(Debug, Clone)]
pub struct DevSigner {
    dir: PathBuf,
}

/// What to put in a minted token.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub subject: String,
    pub roles: Vec<Role>,
    pub org: String,
    pub specialty: Option<String>,
    /// Thumbprint of the certificate the token is bound to (`None`: unbound, refused by a
    /// gateway that requires binding).
    pub cert_thumbprint: Option<String>,
    pub ttl: Duration,
    pub audience: String,
}

impl DevSigner {
    /// The signer whose files live in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DevSigner { dir: dir.into() }
    }

    /// The private key file (PKCS#8 PEM).
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("signing-key.pem")
    }

    /// The public keys (JWKS) the gateway loads.
    pub fn jwks_file(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// Creates the signing key and JWKS if missing; returns true if it created them.
    pub fn ensure(&self) -> Result<bool, KitError> {
        if self.key_file().exists() && self.jwks_file().exists() {
            return Ok(false);
        }
        let key = KeyPair::generate().map_err(|e| KitError::Token(e.to_string()))?;
        write_file(&self.key_file(), key.serialize_pem().as_bytes(), true)?;
        let jwks = serde_json::json!({ "keys": [public_jwk(&key)?] });
        let text =
            serde_json::to_string_pretty(&jwks).map_err(|e| KitError::Token(e.to_string()))?;
        write_file(&self.jwks_file(), text.as_bytes(), false)?;
        Ok(true)
    }

    /// Signs a token for `request`.
    pub fn mint(&self, request: &MintRequest) -> Result<String, KitError> {
        let now = unix_now();
        let claims = Claims {
            iss: DEV_ISSUER.to_owned(),
            aud: request.audience.clone(),
            sub: request.subject.clone(),
            iat: now,
            nbf: now,
            exp: now + request.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            roles: request.roles.clone(),
            org: request.org.clone(),
            specialty: request.specialty.clone(),
            cnf: request
                .cert_thumbprint
                .clone()
                .map(|x5t_s256| Confirmation { x5t_s256 }),
        };
        self.sign_claims(&claims)
    }

    /// Signs arbitrary `claims` with the dev key (tests craft expired, misaddressed... tokens).
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, KitError> {
        let key = self.key()?;
        sign(&key, &self.kid()?, claims)
    }

    /// The `kid` of the dev key.
    pub fn kid(&self) -> Result<String, KitError> {
        let jwk = public_jwk(&self.key()?)?;
        Ok(jwk["kid"].as_str().unwrap_or_default().to_owned())
    }

    fn key(&self) -> Result<KeyPair, KitError> {
        let path = self.key_file();
        let pem = std::fs::read_to_string(&path).map_err(|e| KitError::io(&path, e))?;
        KeyPair::from_pem(&pem).map_err(|e| KitError::Token(format!("{}: {e}", path.display())))
    }
}

/// Signs `claims` with an ES256 `key`, naming it `kid` in the header.
pub fn sign(key: &KeyPair, kid: &str, claims: &Claims) -> Result<String, KitError> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let encoding = EncodingKey::from_ec_der(&key.serialize_der());
    jsonwebtoken::encode(&header, claims, &encoding).map_err(|e| KitError::Token(e.to_string()))
}

/// The public JWK of a P-256 key, with `kid` set to its RFC 7638 thumbprint.
pub fn public_jwk(key: &KeyPair) -> Result<serde_json::Value, KitError> {
    let raw = key.public_key_raw();
    // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
    if raw.len() != 65 || raw[0] != 4 {
        return Err(KitError::Token("the signing key is not a P-256 key".into()));
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let (x, y) = (b64(&raw[1..33]), b64(&raw[33..65]));
    // RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64(&Sha256::digest(canonical.as_bytes()));
    Ok(serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "use": "sig", "alg": "ES256", "kid": kid,
    }))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The thumbprint (`x5t#S256`) of the first certificate in a PEM file.
pub fn thumbprint_of_pem_file(path: &Path) -> Result<String, KitError> {
    let certs = crate::tls::load_certs(path)?;
    Ok(crate::identity::cert_thumbprint(certs[0].as_ref()))
}
