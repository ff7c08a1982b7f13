//! Sign-in and the auth service (`[sign_in]`, `TELEHEALTH_SIGN_IN__…`): the OpenID providers,
//! the suite's own tokens and sessions, and device certificates (docs/sign-in.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the auth service needs besides its address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SignInSettings {
    /// The OpenID providers people sign in with (`[[sign_in.providers]]`). None by default:
    /// `telehealth up` then offers only its development sign-in.
    pub providers: Vec<ProviderConfig>,
    /// Life of an access token, in minutes (a refresh brings the next). Default 5.
    pub access_token_minutes: u64,
    /// Longest life of a session whatever its refreshes, in hours: then sign in again.
    /// Default 12 (a working day).
    pub session_hours: u64,
    /// Time a started sign-in may wait for the provider, in minutes. Default 10.
    pub sign_in_minutes: u64,
    /// Validity of a device certificate, in days. Default 90.
    pub device_certificate_days: u32,
    /// The key file that seals the service's signing keys, which are kept in its database (so
    /// that every replica signs with the same ring); the format of `[patient_data] key_file`,
    /// written by `telehealth auth init-keys`. Default `<data_dir>/keys/auth-sealing.keys`,
    /// created by `telehealth up`.
    pub key_file: Option<PathBuf>,
    /// A new signing key every this many days (published an hour before it signs; the old one
    /// stays published until its last token expired). Default 30.
    pub key_rotation_days: u64,
    /// Folder of the device CA: `ca.pem`, `ca-key.pem` (read only). The CRL the service
    /// publishes lists the revoked devices and the serials of `revoked-serials.txt` there, if
    /// any. Default the PKI folder.
    pub device_ca_dir: Option<PathBuf>,
    /// Development sign-in (demo members, no provider). Not a setting: only `telehealth up`
    /// turns it on, so no configuration file or variable can enable it in production.
    #[serde(skip)]
    pub development: bool,
}

impl Default for SignInSettings {
    fn default() -> Self {
        SignInSettings {
            providers: Vec::new(),
            access_token_minutes: 5,
            session_hours: 12,
            sign_in_minutes: 10,
            device_certificate_days: 90,
            key_file: None,
            key_rotation_days: 30,
            device_ca_dir: None,
            development: false,
        }
    }
}

/// One OpenID provider (docs/sign-in.md has Pro Santé Connect's values).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Short name used in the API (`psc`).
    pub id: String,
    /// What people see (`Pro Santé Connect`).
    pub display_name: String,
    /// Issuer URL, compared exactly with what the provider says.
    pub issuer: String,
    /// Discovery document when not at `<issuer>/.well-known/openid-configuration`.
    pub discovery_url: Option<String>,
    pub client_id: String,
    /// File holding the client secret (`client_secret_basic`).
    pub client_secret_file: Option<PathBuf>,
    /// File holding the client's private key, PKCS#8 PEM, P-256 (`private_key_jwt`); wins over
    /// the secret.
    pub client_key_file: Option<PathBuf>,
    /// `kid` of that key as registered with the provider.
    pub client_key_id: Option<String>,
    /// The callback registered with the provider (the web client's sign-in page).
    pub redirect_uri: String,
    /// Scopes besides `openid` (Pro Santé Connect: `scope_all`).
    pub scopes: Vec<String>,
    /// Authentication level asked for and required in the ID token (Pro Santé Connect:
    /// `eidas1`).
    pub acr: Option<String>,
    /// Extra CA bundle (PEM) for the provider's TLS certificate.
    pub ca_file: Option<PathBuf>,
}
