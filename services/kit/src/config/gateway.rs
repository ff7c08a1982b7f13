//! The gateway's section of the configuration (`[gateway]`, `TELEHEALTH_GATEWAY__…`).

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

/// The HTTP/2 layer's own bound on a request's header list, in bytes: above it, the HTTP/2
/// library answers 431 by itself, which gRPC clients see as `UNKNOWN`. Header lists between
/// `gateway.limits.max_header_bytes` and this reach the gateway, which answers `UNAUTHENTICATED`.
pub const MAX_HEADER_LIST_BYTES: u32 = 1024 * 1024;

/// Everything the gateway needs besides the services' endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Address the gateway listens on for clients. Default `127.0.0.1:8443`; port 0 picks a
    /// free port.
    pub listen: SocketAddr,
    /// Address of the sign-in port: the same TLS certificate, no client certificate asked, and
    /// nothing served but sign-in and device enrolment (the contract's `sign_in` RPCs), for
    /// devices that have no certificate yet. Default none (no such port); `telehealth up` opens
    /// it next to the gateway on port 8444 (a free port when the gateway's is 0) unless set; port 0
    /// picks a free port.
    pub sign_in_listen: Option<SocketAddr>,
    /// The gateway's server certificate chain (PEM). Default `<pki_dir>/gateway/server.pem`.
    pub server_cert_file: Option<PathBuf>,
    /// Its private key (PEM). Default `<pki_dir>/gateway/server-key.pem`.
    pub server_key_file: Option<PathBuf>,
    /// CA bundle that client (device) certificates must chain to. Default `<pki_dir>/ca.pem`.
    pub client_ca_file: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER) checked at the handshake. Default none.
    pub crl_files: Vec<PathBuf>,
    /// How often the certificate, key, CRL and JWKS files are checked for changes (and the
    /// auth service asked for its keys and CRL), in seconds; SIGHUP reloads at once. Default 10.
    pub reload_interval_seconds: u64,
    /// Follow the auth service: fetch its token-signing keys and its CRL of revoked devices
    /// (`AuthService/PublishedKeys`, over internal mTLS) at start and every reload interval,
    /// trust those keys and check that CRL. Default true; off only for a gateway in front of a
    /// suite without sign-in.
    pub follow_auth: bool,
    /// Where the gateway keeps what it fetched from the auth service (`auth-jwks.json`,
    /// `auth-crl.pem`). Default `<data_dir>/gateway`.
    pub auth_keys_dir: Option<PathBuf>,
    /// Browser origins (`https://app.example.org`) allowed to call the gateway with gRPC-Web
    /// from another site (CORS). Default none: the web client is served from the gateway's own
    /// origin, which needs no CORS.
    pub web_allowed_origins: Vec<String>,
    /// Folder of the built web client (`index.html`, `assets/`), served to browsers (`GET`) on
    /// both ports. Default none: `GET` answers 404.
    pub web_root: Option<PathBuf>,
    /// Threads serving client connections, each with its own event loop and its own
    /// connections to the services: a client connection and its calls stay on one thread.
    /// Default 0: one per core.
    pub workers: usize,
    pub jwt: JwtSettings,
    pub limits: LimitSettings,
    pub upstream: UpstreamSettings,
}

/// Access-token verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// JWKS file. Default `<data_dir>/jwt/jwks.json` (the dev signer's) unless `jwks_url` is set.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of the identity provider (`https://…/protocol/openid-connect/certs`); wins over
    /// `jwks_file`. `http://` is accepted only for in-cluster providers.
    pub jwks_url: Option<String>,
    /// CA bundle for an `https://` JWKS URL. Required with `jwks_url` over https.
    pub jwks_ca_file: Option<PathBuf>,
    /// Expected `iss`. Default the dev issuer `https://telehealth.dev.invalid/issuer`.
    pub issuer: String,
    /// Expected `aud`. Default `telehealth`.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30.
    pub leeway_seconds: u64,
    /// Require the token's `cnf.x5t#S256` to match the client certificate (RFC 8705). Default
    /// true; turning it off makes stolen tokens usable from any device.
    pub require_certificate_binding: bool,
    /// Minimum time between two JWKS refreshes caused by an unknown `kid`, in seconds. Default 30.
    pub min_refresh_interval_seconds: u64,
    /// Verified tokens kept in the cache (by token and certificate, never past `exp`, emptied on
    /// key rotation); 0 turns the cache off. Default 10000.
    pub cache_entries: usize,
}

/// Protection of the gateway and the services behind it. Every limit, its default and why is in
/// the "Limits" table of docs/operations.md. The largest request message of each RPC is not a
/// setting: the contract declares it (`max_request_bytes` in each RPC's access rule).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Sustained calls per second allowed per subject. Default 50.
    pub requests_per_second: f64,
    /// Calls a subject may make in a burst above the sustained rate. Default 100.
    pub burst: u32,
    /// Concurrent streams (calls) per client connection. Default 128.
    pub max_concurrent_streams: u32,
    /// Streaming calls (watches, video signalling, uploads, downloads) one subject may hold open
    /// at once, over all its connections; more get `RESOURCE_EXHAUSTED`. Default 16.
    pub max_streams_per_subject: u32,
    /// Largest request header list (the token included), in bytes, as HTTP/2 counts it (names
    /// and values plus 32 bytes per header); larger gets `UNAUTHENTICATED`. Default 16384.
    pub max_header_bytes: u32,
    /// Time a client has to complete the TLS handshake after connecting, in seconds. Default 10.
    pub handshake_timeout_seconds: u64,
    /// Time a client has, once TLS is up, to send the HTTP/2 connection preface, in seconds.
    /// Default 10.
    pub preface_timeout_seconds: u64,
    /// A client connection without any call for this long is closed, in seconds. Default 300.
    pub idle_timeout_seconds: u64,
    /// A client connection older than this is asked to go away (HTTP/2 GOAWAY: no new calls, the
    /// client reconnects, with a fresh TLS handshake and revocation check), in seconds, with
    /// 10 % jitter; 0 never. Default 3600 (1 h).
    pub max_connection_age_seconds: u64,
    /// How long calls still open at that GOAWAY (or at an idle close) may go on before the
    /// connection is cut, in seconds. Default 300.
    pub max_connection_age_grace_seconds: u64,
    /// Client connections at once from one address (an IPv4 address, or an IPv6 /64), TLS
    /// handshakes included; more are closed at accept. Default 256 (a centre's devices, or a
    /// carrier-grade NAT, share one address).
    pub max_connections_per_address: u32,
    /// Client connections at once presenting one device certificate; more are closed after the
    /// handshake. Default 16.
    pub max_connections_per_certificate: u32,
    /// Failed attempts (refused tokens, refused TLS handshakes) tolerated per address per
    /// minute, as a bucket that refills continuously; once empty, the address's connections are
    /// closed at accept and its calls refused before any token check (`RESOURCE_EXHAUSTED` with
    /// a retry delay). Default 60.
    pub failed_auth_per_minute_per_address: u32,
    /// Failed attempts (refused tokens) tolerated per device certificate per minute, likewise.
    /// Default 10.
    pub failed_auth_per_minute_per_certificate: u32,
    /// Longest deadline of a unary call; calls without a deadline get this one, in seconds.
    /// Default 60.
    pub max_deadline_seconds: u64,
    /// Longest deadline of a streaming call (watches, video signalling, uploads), in seconds.
    /// Default 14400 (4 h).
    pub max_stream_deadline_seconds: u64,
}

/// Connections from the gateway to the services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Time allowed to connect (TCP + TLS + HTTP/2) to a service endpoint, in milliseconds.
    /// Default 1000.
    pub connect_timeout_ms: u64,
    /// How long an endpoint that failed is left out before being tried again, in milliseconds;
    /// doubles on each further failure up to 30 s. Default 500.
    pub ejection_ms: u64,
    /// How often endpoint names are re-resolved, each name standing for all its addresses (a
    /// headless Service: one endpoint per pod), in seconds; 0 resolves them at start only.
    /// Default 10.
    pub resolve_interval_seconds: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            sign_in_listen: None,
            server_cert_file: None,
            server_key_file: None,
            client_ca_file: None,
            crl_files: Vec::new(),
            reload_interval_seconds: 10,
            follow_auth: true,
            auth_keys_dir: None,
            web_allowed_origins: Vec::new(),
            web_root: None,
            workers: 0,
            jwt: JwtSettings::default(),
            limits: LimitSettings::default(),
            upstream: UpstreamSettings::default(),
        }
    }
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            issuer: super::DEV_ISSUER.to_owned(),
            audience: super::DEFAULT_AUDIENCE.to_owned(),
            leeway_seconds: 30,
            require_certificate_binding: true,
            min_refresh_interval_seconds: 30,
            cache_entries: 10_000,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            requests_per_second: 50.0,
            burst: 100,
            max_concurrent_streams: 128,
            max_streams_per_subject: 16,
            max_header_bytes: 16 * 1024,
            handshake_timeout_seconds: 10,
            preface_timeout_seconds: 10,
            idle_timeout_seconds: 300,
            max_connection_age_seconds: 3600,
            max_connection_age_grace_seconds: 300,
            max_connections_per_address: 256,
            max_connections_per_certificate: 16,
            failed_auth_per_minute_per_address: 60,
            failed_auth_per_minute_per_certificate: 10,
            max_deadline_seconds: 60,
            max_stream_deadline_seconds: 4 * 3600,
        }
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout_ms: 1000,
            ejection_ms: 500,
            resolve_interval_seconds: 10,
        }
    }
}

impl GatewaySettings {
    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        let limits = &self.limits;
        let positive_rate =
            limits.requests_per_second.is_finite() && limits.requests_per_second > 0.0;
        if !positive_rate || limits.burst == 0 {
            return Err("gateway.limits.requests_per_second and burst must be positive".into());
        }
        if limits.max_concurrent_streams == 0
            || limits.max_streams_per_subject == 0
            || limits.max_deadline_seconds == 0
        {
            return Err("gateway.limits: streams and deadlines must be positive".into());
        }
        if !(1024..=MAX_HEADER_LIST_BYTES).contains(&limits.max_header_bytes) {
            return Err(format!(
                "gateway.limits.max_header_bytes must be between 1024 and {MAX_HEADER_LIST_BYTES}"
            ));
        }
        let timeouts = [
            (
                "handshake_timeout_seconds",
                limits.handshake_timeout_seconds,
            ),
            ("preface_timeout_seconds", limits.preface_timeout_seconds),
            ("idle_timeout_seconds", limits.idle_timeout_seconds),
        ];
        for (name, value) in timeouts {
            if value == 0 || value > 3600 {
                return Err(format!(
                    "gateway.limits.{name} must be between 1 and 3600 seconds"
                ));
            }
        }
        if limits.max_connections_per_address == 0
            || limits.max_connections_per_certificate == 0
            || limits.failed_auth_per_minute_per_address == 0
            || limits.failed_auth_per_minute_per_certificate == 0
        {
            return Err(
                "gateway.limits: connection caps and failed-attempt allowances must be positive"
                    .into(),
            );
        }
        if self.jwt.leeway_seconds > 300 {
            return Err("gateway.jwt.leeway_seconds above 300 s defeats expiry".into());
        }
        if let Some(url) = &self.jwt.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err("gateway.jwt.jwks_url must be an http(s):// URL".into());
            }
            if url.starts_with("https://") && self.jwt.jwks_ca_file.is_none() {
                return Err(
                    "gateway.jwt.jwks_ca_file is required with an https:// jwks_url".into(),
                );
            }
        }
        Ok(())
    }
}
