//! Who is calling a service, as the gateway vouches for it.
//!
//! Services sit behind internal mTLS: only certificates of the internal CA get a connection at
//! all. On top of that, [`IdentityInterceptor`] reads the SPIFFE id in the peer certificate:
//!
//! - from the **gateway**, the call must carry the person's verified identity in the
//!   `x-telehealth-*` metadata (the gateway strips any such keys a client sent and writes its
//!   own) and becomes [`Caller::Person`];
//! - from **another service**, it becomes [`Caller::Service`] (for internal-only RPCs), and any
//!   identity metadata is ignored: only the gateway may speak for a person;
//! - anything else is refused.
//!
//! Handlers then get a typed caller with [`caller`], [`person`] or [`calling_service`].

use std::{fmt, str::FromStr};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Request, Status, metadata::MetadataMap, service::Interceptor};

use crate::part::{Part, SPIFFE_PREFIX};

/// Prefix of every metadata key that carries identity; the gateway removes all of them from
/// client requests.
pub const IDENTITY_METADATA_PREFIX: &str = "x-telehealth-";
/// The person's stable id (JWT `sub`).
pub const SUBJECT_KEY: &str = "x-telehealth-subject";
/// Comma-separated roles (JWT `roles`).
pub const ROLES_KEY: &str = "x-telehealth-roles";
/// The person's organisation, a centre or hospital id (JWT `org`).
pub const ORG_KEY: &str = "x-telehealth-org";
/// The specialist's specialty (JWT `specialty`), absent for others.
pub const SPECIALTY_KEY: &str = "x-telehealth-specialty";
/// base64url SHA-256 thumbprint of the client's device certificate (RFC 8705 `x5t#S256`).
pub const CERT_THUMBPRINT_KEY: &str = "x-telehealth-cert-thumbprint";
/// The client's address (IP), written by the gateway on calls made without a token (sign-in).
pub const CLIENT_ADDRESS_KEY: &str = "x-telehealth-client-address";

/// A role a person holds (docs/design.md, "Identity and authorisation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Doctor,
    Nurse,
    Specialist,
    Coordinator,
    Patient,
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Doctor,
        Role::Nurse,
        Role::Specialist,
        Role::Coordinator,
        Role::Patient,
        Role::Admin,
    ];

    /// The claim value (`doctor`, `nurse`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Specialist => "specialist",
            Role::Coordinator => "coordinator",
            Role::Patient => "patient",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role `{s}`; expected doctor, nurse, specialist, coordinator, patient or admin"
                )
            })
    }
}

/// A person's identity, verified by the gateway from the JWT and the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub roles: Vec<Role>,
    pub org: String,
    pub specialty: Option<String>,
    pub cert_thumbprint: String,
}

impl Identity {
    /// True when the person holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Writes the identity into `metadata` (done by the gateway only).
    pub fn write_metadata(&self, metadata: &mut MetadataMap) -> Result<(), IdentityError> {
        let roles = self
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut put = |key: &'static str, value: &str| -> Result<(), IdentityError> {
            let value = encode_value(value)
                .parse()
                .map_err(|_| IdentityError::Malformed(key))?;
            metadata.insert(key, value);
            Ok(())
        };
        put(SUBJECT_KEY, &self.subject)?;
        put(ROLES_KEY, &roles)?;
        put(ORG_KEY, &self.org)?;
        put(CERT_THUMBPRINT_KEY, &self.cert_thumbprint)?;
        if let Some(specialty) = &self.specialty {
            put(SPECIALTY_KEY, specialty)?;
        }
        Ok(())
    }

    /// Reads the identity the gateway wrote into `metadata`.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Identity, IdentityError> {
        let get = |key: &'static str| -> Result<Option<String>, IdentityError> {
            match metadata.get(key) {
                None => Ok(None),
                Some(value) => {
                    let text = value.to_str().map_err(|_| IdentityError::Malformed(key))?;
                    decode_value(text)
                        .map(Some)
                        .ok_or(IdentityError::Malformed(key))
                }
            }
        };
        let required = |key: &'static str| -> Result<String, IdentityError> {
            get(key)?
                .filter(|v| !v.is_empty())
                .ok_or(IdentityError::Missing(key))
        };
        let roles = required(ROLES_KEY)?
            .split(',')
            .map(Role::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| IdentityError::Malformed(ROLES_KEY))?;
        Ok(Identity {
            subject: required(SUBJECT_KEY)?,
            roles,
            org: required(ORG_KEY)?,
            specialty: get(SPECIALTY_KEY)?.filter(|s| !s.is_empty()),
            cert_thumbprint: required(CERT_THUMBPRINT_KEY)?,
        })
    }
}

/// Why a caller's identity was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    // The keys are internal metadata: the messages name what is missing, never the key.
    #[error("the call carries no verified identity (no {})", identity_part(.0))]
    Missing(&'static str),
    #[error("the call carries a malformed identity ({})", identity_part(.0))]
    Malformed(&'static str),
    #[error("the connection presents no internal client certificate")]
    NoPeerCertificate,
    #[error("the peer certificate is not a trusted internal identity")]
    UntrustedPeer,
    #[error("this call needs a person's identity")]
    NotAPerson,
    #[error("this call is reserved to the suite's services")]
    NotAService,
}

/// What an identity metadata key carries, in words for error messages.
fn identity_part(key: &str) -> &'static str {
    match key {
        SUBJECT_KEY => "subject",
        ROLES_KEY => "roles",
        ORG_KEY => "organisation",
        SPECIALTY_KEY => "specialty",
        CERT_THUMBPRINT_KEY => "certificate",
        _ => "identity",
    }
}

impl crate::error::ApiError for IdentityError {
    fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            IdentityError::Missing(_)
            | IdentityError::Malformed(_)
            | IdentityError::NoPeerCertificate => ErrorCode::Unauthenticated,
            IdentityError::UntrustedPeer
            | IdentityError::NotAPerson
            | IdentityError::NotAService => ErrorCode::PermissionDenied,
        }
    }
}

impl From<IdentityError> for Status {
    fn from(error: IdentityError) -> Self {
        crate::error::to_status(&error)
    }
}

/// Who is calling, as established by [`IdentityInterceptor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person, through the gateway.
    Person(Identity),
    /// Another service of the suite, directly.
    Service(Part),
}

impl Caller {
    /// A stable label for logs and the audit trail.
    pub fn subject(&self) -> String {
        match self {
            Caller::Person(identity) => identity.subject.clone(),
            Caller::Service(part) => part.spiffe_id(),
        }
    }
}

/// Establishes the [`Caller`] of every request to a service and refuses the call without one.
#[derive(Debug, Clone, Copy)]
pub struct IdentityInterceptor {
    /// The service this interceptor protects: it does not accept calls from itself.
    this: Part,
}

impl IdentityInterceptor {
    /// An interceptor for the service `this`.
    pub fn new(this: Part) -> Self {
        IdentityInterceptor { this }
    }

    /// Decides who the caller of `request` is.
    pub fn identify<T>(&self, request: &Request<T>) -> Result<Caller, IdentityError> {
        let certs = request
            .peer_certs()
            .ok_or(IdentityError::NoPeerCertificate)?;
        let leaf = certs.first().ok_or(IdentityError::NoPeerCertificate)?;
        let peer = peer_part(leaf.as_ref()).ok_or(IdentityError::UntrustedPeer)?;
        match peer {
            Part::Gateway => Identity::from_metadata(request.metadata()).map(Caller::Person),
            other if other != self.this => Ok(Caller::Service(other)),
            _ => Err(IdentityError::UntrustedPeer),
        }
    }
}

impl Interceptor for IdentityInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.identify(&request) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(error) => {
                tracing::warn!(service = %self.this, %error, "call refused: no trusted identity");
                Err(error.into())
            }
        }
    }
}

/// The part of the suite the peer of an internal mTLS call is, if it is one.
pub fn peer_of<T>(request: &Request<T>) -> Option<Part> {
    let certs = request.peer_certs()?;
    peer_part(certs.first()?.as_ref())
}

/// A call the gateway forwarded without a token (the contract's `sign_in` and `device` rules):
/// who is calling is only known by address and, when the connection had one, certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenlessCall {
    /// The client's address as the gateway saw it.
    pub address: Option<String>,
    /// `x5t#S256` of the client's certificate, when the connection presented one.
    pub cert_thumbprint: Option<String>,
}

impl TokenlessCall {
    /// Reads what the gateway wrote on a call it forwarded without a token; a call not coming
    /// from the gateway (over internal mTLS) is refused.
    pub fn of<T>(request: &Request<T>) -> Result<TokenlessCall, IdentityError> {
        let certs = request
            .peer_certs()
            .ok_or(IdentityError::NoPeerCertificate)?;
        let leaf = certs.first().ok_or(IdentityError::NoPeerCertificate)?;
        if peer_part(leaf.as_ref()) != Some(Part::Gateway) {
            return Err(IdentityError::UntrustedPeer);
        }
        let get = |key: &'static str| -> Result<Option<String>, IdentityError> {
            match request.metadata().get(key) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .ok()
                    .and_then(decode_value)
                    .filter(|v| !v.is_empty())
                    .map(Some)
                    .ok_or(IdentityError::Malformed(key)),
            }
        };
        Ok(TokenlessCall {
            address: get(CLIENT_ADDRESS_KEY)?,
            cert_thumbprint: get(CERT_THUMBPRINT_KEY)?,
        })
    }

    /// Writes it into `metadata` (the gateway's side).
    pub fn write_metadata(&self, metadata: &mut MetadataMap) -> Result<(), IdentityError> {
        for (key, value) in [
            (CLIENT_ADDRESS_KEY, &self.address),
            (CERT_THUMBPRINT_KEY, &self.cert_thumbprint),
        ] {
            if let Some(value) = value {
                let value = encode_value(value)
                    .parse()
                    .map_err(|_| IdentityError::Malformed(key))?;
                metadata.insert(key, value);
            }
        }
        Ok(())
    }
}

/// The caller of a request that went through [`IdentityInterceptor`].
pub fn caller<T>(request: &Request<T>) -> Result<&Caller, IdentityError> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or(IdentityError::Missing(SUBJECT_KEY))
}

/// The caller of `request`, owned, or the `UNAUTHENTICATED` status every RPC answers without
/// one (what each service's adapter asks first).
pub fn require_caller<T>(request: &Request<T>) -> Result<Caller, tonic::Status> {
    caller(request).cloned().map_err(tonic::Status::from)
}

/// The person calling through the gateway; other callers are refused.
pub fn person<T>(request: &Request<T>) -> Result<&Identity, IdentityError> {
    match caller(request)? {
        Caller::Person(identity) => Ok(identity),
        Caller::Service(_) => Err(IdentityError::NotAPerson),
    }
}

/// The service making an internal-only call; people are refused.
pub fn calling_service<T>(request: &Request<T>) -> Result<Part, IdentityError> {
    match caller(request)? {
        Caller::Service(part) => Ok(*part),
        Caller::Person(_) => Err(IdentityError::NotAService),
    }
}

/// The part named by the `spiffe://telehealth.internal/<part>` URI SAN of a certificate.
pub fn peer_part(cert_der: &[u8]) -> Option<Part> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            uri.strip_prefix(SPIFFE_PREFIX)?.parse::<Part>().ok()
        }
        _ => None,
    })
}

/// The RFC 8705 `x5t#S256` thumbprint of a DER certificate: base64url, no padding, of SHA-256.
pub fn cert_thumbprint(cert_der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der))
}

/// Percent-encodes what is not safe in an ASCII metadata value.
fn encode_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@/+=,".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reverses [`encode_value`]; `None` on malformed escapes or invalid UTF-8.
fn decode_value(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            subject: "dr-martin".into(),
            roles: vec![Role::Doctor, Role::Coordinator],
            org: "Centre de santé de Bourganeuf".into(),
            specialty: None,
            cert_thumbprint: "abc_-123".into(),
        }
    }

    #[test]
    fn identity_round_trips_through_metadata_including_non_ascii() {
        let mut metadata = MetadataMap::new();
        identity().write_metadata(&mut metadata).expect("encodes");
        assert_eq!(Identity::from_metadata(&metadata), Ok(identity()));
    }

    #[test]
    fn each_missing_or_malformed_key_is_named() {
        for key in [SUBJECT_KEY, ROLES_KEY, ORG_KEY, CERT_THUMBPRINT_KEY] {
            let mut metadata = MetadataMap::new();
            identity().write_metadata(&mut metadata).expect("encodes");
            metadata.remove(key);
            assert_eq!(
                Identity::from_metadata(&metadata),
                Err(IdentityError::Missing(key)),
                "without {key}"
            );
        }
        let mut metadata = MetadataMap::new();
        identity().write_metadata(&mut metadata).expect("encodes");
        metadata.insert(ROLES_KEY, "doctor,pope".parse().expect("ascii"));
        assert_eq!(
            Identity::from_metadata(&metadata),
            Err(IdentityError::Malformed(ROLES_KEY))
        );
    }

    #[test]
    fn identity_errors_never_name_an_internal_header() {
        for key in [
            SUBJECT_KEY,
            ROLES_KEY,
            ORG_KEY,
            SPECIALTY_KEY,
            CERT_THUMBPRINT_KEY,
        ] {
            for error in [IdentityError::Missing(key), IdentityError::Malformed(key)] {
                let status = Status::from(error.clone());
                assert!(
                    !status.message().contains(IDENTITY_METADATA_PREFIX),
                    "{key}: {}",
                    status.message()
                );
            }
        }
        assert_eq!(
            IdentityError::Missing(ORG_KEY).to_string(),
            "the call carries no verified identity (no organisation)"
        );
    }

    #[test]
    fn a_request_without_a_peer_certificate_is_unauthenticated() {
        let request = Request::new(());
        let error = IdentityInterceptor::new(Part::Wound)
            .identify(&request)
            .expect_err("no TLS, no caller");
        assert_eq!(error, IdentityError::NoPeerCertificate);
    }
}
