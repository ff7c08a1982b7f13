//! Configuration: one typed struct, loaded in layers, then validated.
//!
//! Layers, later ones win: built-in defaults, then a TOML file (`--config` or
//! `TELEHEALTH_CONFIG`), then environment variables `TELEHEALTH_<SECTION>__<KEY>` (double
//! underscore for nesting, e.g. `TELEHEALTH_DATABASE__URL`, `TELEHEALTH_SHUTDOWN__DRAIN_SECONDS`).
//! Every field below documents its unit and default. Secrets (database passwords) are never
//! logged: [`Settings::redacted`] is what goes to the log.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

mod expertise;
mod gateway;
mod idempotency;
mod images;
mod pacs;
mod report_mail;
mod sign_in;
mod signalling;
mod wound;

pub use expertise::{ExpertiseRules, ExpertiseTarget};
pub use gateway::{
    GatewaySettings, JwtSettings, LimitSettings, MAX_HEADER_LIST_BYTES, UpstreamSettings,
};
pub use idempotency::IdempotencySettings;
pub use images::{BlobBackend, BlobSettings, ImageSettings, S3Settings};
pub use pacs::{PacsDestinationSettings, PacsSettings};
pub use report_mail::{MailTls, ReportMailSettings};
pub use sign_in::{ProviderConfig, SignInSettings};
pub use signalling::SignallingSettings;
pub use wound::WoundRules;

use crate::{error::KitError, part::Part};

/// The `iss` of dev tokens (`telehealth token mint`), which the gateway expects by default.
pub const DEV_ISSUER: &str = "https://telehealth.dev.invalid/issuer";
/// The `aud` the gateway expects by default.
pub const DEFAULT_AUDIENCE: &str = "telehealth";

/// The whole configuration of one `telehealth` process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Folder holding the state of an embedded deployment: dev PKI, signing keys, SQLite files,
    /// blobs. Relative paths are relative to the working directory. Default `./telehealth-data`.
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub tls: TlsSettings,
    pub telemetry: TelemetrySettings,
    pub shutdown: ShutdownSettings,
    pub gateway: GatewaySettings,
    pub scheduling: ServiceSettings,
    pub expertise: ServiceSettings,
    pub wound: ServiceSettings,
    pub signalling: ServiceSettings,
    pub directory: ServiceSettings,
    pub auth: ServiceSettings,
    pub scheduling_rules: SchedulingRules,
    pub signalling_media: SignallingSettings,
    pub expertise_rules: ExpertiseRules,
    pub report_mail: ReportMailSettings,
    pub pacs: PacsSettings,
    pub wound_rules: WoundRules,
    pub blobs: BlobSettings,
    pub images: ImageSettings,
    pub idempotency: IdempotencySettings,
    pub patient_data: PatientDataSettings,
    pub sign_in: SignInSettings,
}

/// Encryption of the patient register's personal data (`[patient_data]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PatientDataSettings {
    /// The key file of the register's field encryption and blind indexes (see the kit's
    /// `sealed` module for its format). Default `<data_dir>/keys/patient-data.keys`, which
    /// `telehealth up` creates on first start; in microservice mode it must exist (mount it from
    /// a secret). Back it up with the database: without it the sealed fields cannot be read.
    pub key_file: Option<PathBuf>,
}

/// Booking rules of the scheduling service (`[scheduling_rules]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulingRules {
    /// No appointment may start sooner than this after now, in minutes. Default 0.
    pub minimum_notice_minutes: i64,
    /// How long a slot hold lasts, in seconds. Default 300.
    pub hold_seconds: i64,
    /// Video rooms admit participants from this long before the start, in minutes. Default 30.
    pub room_opens_before_minutes: i64,
    /// …until this long after the end, in minutes. Default 60.
    pub room_closes_after_minutes: i64,
    /// `CheckIn` and `StartTeleconsultation` are accepted from this long before the
    /// appointment's start, in minutes (earlier is FAILED_PRECONDITION). Default 30.
    pub check_in_opens_before_minutes: i64,
    /// …until this long after its start, in minutes (later is FAILED_PRECONDITION; a retry of a
    /// check-in or start already made still answers). Default 60.
    pub check_in_closes_after_minutes: i64,
}

impl Default for SchedulingRules {
    fn default() -> Self {
        SchedulingRules {
            minimum_notice_minutes: 0,
            hold_seconds: 300,
            room_opens_before_minutes: 30,
            room_closes_after_minutes: 60,
            check_in_opens_before_minutes: 30,
            check_in_closes_after_minutes: 60,
        }
    }
}

/// Where each service keeps its data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL URL (`postgres://user:pass@host:5432/db`). Each service then uses its own
    /// schema, named after it, in that database. Unset (the default): each service uses its own
    /// SQLite file `<data_dir>/db/<service>.db`.
    pub url: Option<String>,
    /// Prefix of each service's PostgreSQL schema (`<prefix><service>`), so that several suites
    /// (or test runs) can share one database. Lowercase letters, digits and `_`. Default empty.
    pub schema_prefix: String,
    /// Maximum connections per service pool. Default 8.
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing `UNAVAILABLE`, in seconds.
    /// Default 5.
    pub acquire_timeout_seconds: u64,
}

/// Internal mTLS between the gateway and the services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Folder with the PKI files (`internal-ca.pem`, `internal/<part>.pem`,
    /// `internal/<part>-key.pem`). Default `<data_dir>/pki`.
    pub pki_dir: Option<PathBuf>,
    /// CA bundle that internal peers' certificates must chain to. Default
    /// `<pki_dir>/internal-ca.pem`.
    pub internal_ca_file: Option<PathBuf>,
    /// This part's internal certificate chain (PEM). Default `<pki_dir>/internal/<part>.pem`.
    pub cert_file: Option<PathBuf>,
    /// This part's internal private key (PEM). Default `<pki_dir>/internal/<part>-key.pem`.
    pub key_file: Option<PathBuf>,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/gRPC endpoint of an OpenTelemetry collector (`http://collector:4317`). Unset (the
    /// default): traces are not exported, logs still are.
    pub otlp_endpoint: Option<String>,
    /// `text` (default, for people; `plain` is the same) or `json` (for log collectors: one
    /// object per line; the Kubernetes manifests use it). Either way a client-supplied value
    /// cannot forge a log line: JSON escapes it, and the text format escapes control characters
    /// (a newline is written `\n`).
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,telehealth_gateway=debug`. Default `info`;
    /// the `RUST_LOG` variable, when set, wins.
    pub log_filter: String,
    /// Address of the admin listener (`GET /metrics`, Prometheus text), never the public port.
    /// Unset (the default): metrics are still kept and pushed over OTLP when an endpoint is set,
    /// but not served. The Kubernetes manifests use `0.0.0.0:9464`.
    pub admin_listen: Option<std::net::SocketAddr>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    #[serde(alias = "plain")]
    Text,
    Json,
}

/// Graceful shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// After SIGTERM or Ctrl-C, how long in-flight calls and streams may take to finish before
    /// they are cut, in seconds. Default 10. Kubernetes' `terminationGracePeriodSeconds` must be
    /// longer.
    pub drain_seconds: u64,
}

/// Where one service listens and where the others reach it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Address the service listens on for internal mTLS calls. Defaults: scheduling
    /// `127.0.0.1:7101`, expertise `:7102`, wound `:7103`, signalling `:7104`, directory `:7105`,
    /// auth `:7106`;
    /// port 0 picks a free port. In `telehealth up` the services always take free loopback ports.
    pub listen: SocketAddr,
    /// URLs the gateway and the other services use to reach this service; several URLs are
    /// balanced. Default: `https://` + `listen`.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("telehealth-data"),
            database: DatabaseSettings::default(),
            tls: TlsSettings::default(),
            telemetry: TelemetrySettings::default(),
            shutdown: ShutdownSettings::default(),
            gateway: GatewaySettings::default(),
            scheduling: ServiceSettings::on_port(7101),
            expertise: ServiceSettings::on_port(7102),
            wound: ServiceSettings::on_port(7103),
            signalling: ServiceSettings::on_port(7104),
            directory: ServiceSettings::on_port(7105),
            auth: ServiceSettings::on_port(7106),
            scheduling_rules: SchedulingRules::default(),
            signalling_media: SignallingSettings::default(),
            expertise_rules: ExpertiseRules::default(),
            report_mail: ReportMailSettings::default(),
            pacs: PacsSettings::default(),
            wound_rules: WoundRules::default(),
            blobs: BlobSettings::default(),
            images: ImageSettings::default(),
            idempotency: IdempotencySettings::default(),
            patient_data: PatientDataSettings::default(),
            sign_in: SignInSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: None,
            schema_prefix: String::new(),
            max_connections: 8,
            acquire_timeout_seconds: 5,
        }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            admin_listen: None,
        }
    }
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { drain_seconds: 10 }
    }
}

impl ServiceSettings {
    fn on_port(port: u16) -> Self {
        ServiceSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            endpoints: Vec::new(),
        }
    }
}

/// The three files that give a part its internal mTLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `TELEHEALTH_*` variables that are not settings: the config file path, the token of
/// `telehealth call`, the tests' PostgreSQL URL, S3 store and Garage binary, the fuzz tests' seed
/// and runs, the soak's length. Any other unknown variable is an error.
const NOT_SETTINGS: &[&str] = &[
    "config",
    "token",
    "test_postgres_url",
    "test_s3_endpoint",
    "test_s3_region",
    "test_s3_bucket",
    "test_s3_access_key_id",
    "test_s3_secret_access_key",
    "test_garage_bin",
    "test_fhir_out",
    "test_fuzz_seed",
    "test_fuzz_iterations",
    "test_soak_seconds",
];

impl Settings {
    /// Loads defaults, then `file` (if any), then `TELEHEALTH_*` environment variables, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Settings, KitError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(KitError::Config(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(
            Env::prefixed("TELEHEALTH_")
                .ignore(NOT_SETTINGS)
                .split("__"),
        );
        let settings: Settings = figment
            .extract()
            .map_err(|e| KitError::Config(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), KitError> {
        let bad = |msg: String| Err(KitError::Config(msg));
        if self.shutdown.drain_seconds == 0 || self.shutdown.drain_seconds > 600 {
            return bad(format!(
                "shutdown.drain_seconds must be between 1 and 600, got {}",
                self.shutdown.drain_seconds
            ));
        }
        if !self
            .database
            .schema_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return bad("database.schema_prefix may only hold a-z, 0-9 and _".into());
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections must be at least 1".into());
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return bad(
                "database.url must be a postgres:// URL (leave it unset for SQLite)".into(),
            );
        }
        self.gateway.validate().map_err(KitError::Config)?;
        self.signalling_media
            .validate()
            .map_err(|e| KitError::Config(format!("signalling_media.{e}")))?;
        self.expertise_rules
            .validate()
            .map_err(|e| KitError::Config(format!("expertise_rules.{e}")))?;
        self.report_mail
            .validate()
            .map_err(|e| KitError::Config(format!("report_mail.{e}")))?;
        self.pacs
            .validate()
            .map_err(|e| KitError::Config(format!("pacs.{e}")))?;
        self.wound_rules
            .validate()
            .map_err(|e| KitError::Config(format!("wound_rules.{e}")))?;
        self.blobs
            .validate()
            .map_err(|e| KitError::Config(format!("blobs.{e}")))?;
        self.images
            .validate()
            .map_err(|e| KitError::Config(format!("images.{e}")))?;
        self.idempotency
            .validate()
            .map_err(|e| KitError::Config(format!("idempotency.{e}")))?;
        let rules = &self.scheduling_rules;
        if !(0..=10_080).contains(&rules.minimum_notice_minutes)
            || !(1..=3_600).contains(&rules.hold_seconds)
            || !(0..=240).contains(&rules.room_opens_before_minutes)
            || !(0..=240).contains(&rules.room_closes_after_minutes)
            || !(0..=240).contains(&rules.check_in_opens_before_minutes)
            || !(0..=240).contains(&rules.check_in_closes_after_minutes)
        {
            return bad("scheduling_rules: minimum_notice_minutes 0-10080, hold_seconds 1-3600, room and check-in margins 0-240 minutes".into());
        }
        for part in Part::SERVICES {
            let endpoints = self
                .service(part)
                .map(|s| s.endpoints.as_slice())
                .unwrap_or(&[]);
            for endpoint in endpoints {
                if !endpoint.starts_with("https://") {
                    return bad(format!(
                        "{part}.endpoints: `{endpoint}` must be an https:// URL (internal calls use mTLS)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The settings of a service part (`None` for the gateway, which has its own section).
    pub fn service(&self, part: Part) -> Option<&ServiceSettings> {
        match part {
            Part::Gateway => None,
            Part::Scheduling => Some(&self.scheduling),
            Part::Expertise => Some(&self.expertise),
            Part::Wound => Some(&self.wound),
            Part::Signalling => Some(&self.signalling),
            Part::Directory => Some(&self.directory),
            Part::Auth => Some(&self.auth),
        }
    }

    /// Mutable access to a service's settings (used by `up` to wire free ports).
    pub fn service_mut(&mut self, part: Part) -> Option<&mut ServiceSettings> {
        match part {
            Part::Gateway => None,
            Part::Scheduling => Some(&mut self.scheduling),
            Part::Expertise => Some(&mut self.expertise),
            Part::Wound => Some(&mut self.wound),
            Part::Signalling => Some(&mut self.signalling),
            Part::Directory => Some(&mut self.directory),
            Part::Auth => Some(&mut self.auth),
        }
    }

    /// The URLs where `part` is reached: the configured endpoints, or `https://<listen>`.
    pub fn service_endpoints(&self, part: Part) -> Vec<String> {
        self.service(part)
            .map(|service| {
                if service.endpoints.is_empty() {
                    vec![format!("https://{}", service.listen)]
                } else {
                    service.endpoints.clone()
                }
            })
            .unwrap_or_default()
    }

    /// The folder of the PKI files.
    pub fn pki_dir(&self) -> PathBuf {
        self.tls
            .pki_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }

    /// The patient register's key file.
    pub fn patient_key_file(&self) -> PathBuf {
        self.patient_data
            .key_file
            .clone()
            .unwrap_or_else(|| crate::sealed::default_key_file(&self.data_dir))
    }

    /// The internal mTLS files of `part`.
    pub fn internal_tls(&self, part: Part) -> TlsFiles {
        let pki = self.pki_dir();
        TlsFiles {
            ca: self
                .tls
                .internal_ca_file
                .clone()
                .unwrap_or_else(|| pki.join("internal-ca.pem")),
            cert: self
                .tls
                .cert_file
                .clone()
                .unwrap_or_else(|| pki.join("internal").join(format!("{part}.pem"))),
            key: self
                .tls
                .key_file
                .clone()
                .unwrap_or_else(|| pki.join("internal").join(format!("{part}-key.pem"))),
        }
    }

    /// The gateway's server certificate and key, and the CA its clients must chain to.
    pub fn gateway_server_tls(&self) -> TlsFiles {
        let pki = self.pki_dir();
        let gateway = &self.gateway;
        TlsFiles {
            ca: gateway
                .client_ca_file
                .clone()
                .unwrap_or_else(|| pki.join("ca.pem")),
            cert: gateway
                .server_cert_file
                .clone()
                .unwrap_or_else(|| pki.join("gateway").join("server.pem")),
            key: gateway
                .server_key_file
                .clone()
                .unwrap_or_else(|| pki.join("gateway").join("server-key.pem")),
        }
    }

    /// The JWKS file the gateway reads when no URL is configured.
    pub fn jwks_file(&self) -> PathBuf {
        self.gateway
            .jwt
            .jwks_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("jwt").join("jwks.json"))
    }

    /// Every JWKS file the gateway trusts when no URL is configured: the automation signer's
    /// ([`Settings::jwks_file`]) and, following the auth service, the one fetched from it
    /// ([`Settings::auth_jwks_file`]).
    pub fn jwks_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.jwks_file()];
        if self.gateway.follow_auth {
            files.push(self.auth_jwks_file());
        }
        files.dedup();
        files
    }

    /// Where the gateway keeps the JWKS of the auth service's signing keys it fetched.
    pub fn auth_jwks_file(&self) -> PathBuf {
        self.auth_keys_dir().join("auth-jwks.json")
    }

    /// Where the gateway keeps the auth service's CRL of revoked devices it fetched.
    pub fn auth_crl_file(&self) -> PathBuf {
        self.auth_keys_dir().join("auth-crl.pem")
    }

    fn auth_keys_dir(&self) -> PathBuf {
        self.gateway
            .auth_keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("gateway"))
    }

    /// The key file that seals the auth service's signing keys in its database.
    pub fn auth_key_file(&self) -> PathBuf {
        self.sign_in
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("auth-sealing.keys"))
    }

    /// The folder of the device CA the auth service issues device certificates from.
    pub fn device_ca_dir(&self) -> PathBuf {
        self.sign_in
            .device_ca_dir
            .clone()
            .unwrap_or_else(|| self.pki_dir())
    }

    /// The folder of the local blob store.
    pub fn blob_dir(&self) -> PathBuf {
        self.blobs
            .local_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// How long shutdown waits for in-flight work.
    pub fn drain_deadline(&self) -> Duration {
        Duration::from_secs(self.shutdown.drain_seconds)
    }

    /// The settings with secrets masked, for logging.
    pub fn redacted(&self) -> Settings {
        let mut copy = self.clone();
        if let Some(url) = &mut copy.database.url {
            *url = redact_url_password(url);
        }
        for secret in &mut copy.signalling_media.turn_secrets {
            *secret = "***".to_owned();
        }
        if !copy.blobs.s3.secret_access_key.is_empty() {
            copy.blobs.s3.secret_access_key = "***".to_owned();
        }
        copy
    }
}

/// Replaces the password of a `scheme://user:password@host` URL by `***`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

// The tests that set environment variables are in `tests/config.rs`: figment's jail changes the
// whole process's environment and working directory, which tests here read concurrently.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_use_sqlite() {
        let settings = Settings::default();
        settings.validate().expect("defaults must validate");
        assert_eq!(settings.database.url, None);
        assert_eq!(settings.data_dir, PathBuf::from("telehealth-data"));
    }

    #[test]
    fn connection_limits_and_timeouts_must_be_usable() {
        type Break = fn(&mut Settings);
        let cases: [(&str, Break); 6] = [
            ("handshake_timeout_seconds", |s| {
                s.gateway.limits.handshake_timeout_seconds = 0
            }),
            ("preface_timeout_seconds", |s| {
                s.gateway.limits.preface_timeout_seconds = 0
            }),
            ("max_header_bytes", |s| {
                s.gateway.limits.max_header_bytes = MAX_HEADER_LIST_BYTES + 1
            }),
            ("connection caps", |s| {
                s.gateway.limits.max_connections_per_certificate = 0
            }),
            ("streams", |s| s.gateway.limits.max_streams_per_subject = 0),
            ("max_sdp_bytes", |s| {
                s.signalling_media.max_sdp_bytes = 121 * 1024
            }),
        ];
        for (name, break_it) in cases {
            let mut settings = Settings::default();
            break_it(&mut settings);
            let error = settings.validate().expect_err(name);
            assert!(error.to_string().contains(name), "{name}: {error}");
        }
        let mut no_maximum_age = Settings::default();
        no_maximum_age.gateway.limits.max_connection_age_seconds = 0;
        no_maximum_age
            .validate()
            .expect("0 turns the maximum age off");
    }

    #[test]
    fn passwords_are_redacted_for_logs() {
        let mut settings = Settings::default();
        settings.database.url = Some("postgres://app:s3cret@db:5432/th".into());
        let shown = format!("{:?}", settings.redacted());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/th"), "{shown}");
    }
}
