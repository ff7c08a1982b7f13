//! A gateway in front of echo backends, with a fresh dev PKI and signing key, on free ports.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytes::Bytes;
use telehealth_gateway::GatewayServer;
use telehealth_kit::{
    Part, Settings,
    config::TlsFiles,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    Request, Status,
    codegen::http::uri::PathAndQuery,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::{
    codec::RawCodec,
    echo::{self, EchoBackend},
};

/// A running gateway and its backends.
pub struct GatewayHarness {
    pub dir: tempfile::TempDir,
    pub settings: Settings,
    pub gateway: SocketAddr,
    pub backends: Vec<EchoBackend>,
    pub shutdown: CancellationToken,
}

/// A fresh data directory with the dev PKI and signing key.
pub fn prepared_settings() -> (tempfile::TempDir, Settings) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    DevPki::new(settings.pki_dir()).ensure().expect("dev PKI");
    DevSigner::new(settings.data_dir.join("jwt"))
        .ensure()
        .expect("dev signer");
    (dir, settings)
}

/// The internal identity of `part` in the harness's PKI.
pub fn internal_files(settings: &Settings, part: Part) -> TlsFiles {
    settings.internal_tls(part)
}

impl GatewayHarness {
    /// A gateway in front of one echo backend (serving the wound and signalling paths).
    pub async fn start() -> GatewayHarness {
        Self::start_with(1, |_| {}).await
    }

    /// A gateway in front of `backends` echo backends, after `configure` adjusts the settings.
    pub async fn start_with(
        backends: usize,
        configure: impl FnOnce(&mut Settings),
    ) -> GatewayHarness {
        let (dir, mut settings) = prepared_settings();
        let mut started = Vec::new();
        for _ in 0..backends {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
            started.push(
                echo::start(
                    listener,
                    &internal_files(&settings, Part::Wound),
                    Part::Wound,
                )
                .await,
            );
        }
        let endpoints: Vec<String> = started
            .iter()
            .map(|b| format!("https://{}", b.address))
            .collect();
        for part in [Part::Wound, Part::Signalling] {
            if let Some(service) = settings.service_mut(part) {
                service.endpoints = endpoints.clone();
            }
        }
        // Echo backends only: no auth service to follow (the suite's tests have one).
        settings.gateway.follow_auth = false;
        settings.gateway.limits.requests_per_second = 100_000.0;
        settings.gateway.limits.burst = 100_000;
        // Tests refuse many tokens on purpose; the lockout has its own tests.
        settings.gateway.limits.failed_auth_per_minute_per_address = 100_000;
        settings
            .gateway
            .limits
            .failed_auth_per_minute_per_certificate = 100_000;
        configure(&mut settings);
        let (gateway, shutdown) = start_gateway(&settings).await;
        GatewayHarness {
            dir,
            settings,
            gateway,
            backends: started,
            shutdown,
        }
    }

    /// A dev token for `device`'s certificate.
    pub fn token(&self, device: &str, subject: &str, roles: &[Role]) -> String {
        mint(&self.settings, device, subject, roles)
    }

    /// A TLS channel to the gateway presenting `device`'s certificate.
    pub async fn channel(&self, device: &str) -> Result<Channel, tonic::transport::Error> {
        channel_to(self.gateway, &self.settings, &self.device_files(device)).await
    }

    /// The certificate and key files of a device.
    pub fn device_files(&self, device: &str) -> (PathBuf, PathBuf) {
        let files = DevPki::new(self.settings.pki_dir()).device_files(device);
        (files.cert, files.key)
    }
}

impl Drop for GatewayHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for backend in &self.backends {
            backend.shutdown.cancel();
        }
    }
}

/// Builds and starts a gateway for `settings` on a free port.
pub async fn start_gateway(settings: &Settings) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let address = listener.local_addr().expect("gateway address");
    let server = GatewayServer::build(settings, &telehealth_kit::metrics::Metrics::local())
        .await
        .expect("gateway builds");
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(listener, shutdown.clone()));
    (address, shutdown)
}

/// Mints a dev token bound to `device`'s certificate.
pub fn mint(settings: &Settings, device: &str, subject: &str, roles: &[Role]) -> String {
    let cert = DevPki::new(settings.pki_dir()).device_files(device).cert;
    DevSigner::new(settings.data_dir.join("jwt"))
        .mint(&MintRequest {
            subject: subject.to_owned(),
            roles: roles.to_vec(),
            org: "cds-gueret".to_owned(),
            specialty: None,
            cert_thumbprint: Some(thumbprint_of_pem_file(&cert).expect("thumbprint")),
            ttl: Duration::from_secs(600),
            audience: DEFAULT_AUDIENCE.to_owned(),
        })
        .expect("mint")
}

/// A channel to `address` trusting the client-facing CA and presenting `cert`/`key`.
pub async fn channel_to(
    address: SocketAddr,
    settings: &Settings,
    (cert, key): &(PathBuf, PathBuf),
) -> Result<Channel, tonic::transport::Error> {
    let read = |path: &PathBuf| std::fs::read(path).expect("read pem");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(
            &settings.pki_dir().join("ca.pem"),
        )))
        .identity(Identity::from_pem(read(cert), read(key)))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{address}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await
}

/// A raw gRPC client for `channel`.
pub fn raw_client(channel: Channel) -> tonic::client::Grpc<Channel> {
    tonic::client::Grpc::new(channel)
        .max_decoding_message_size(echo::MAX_MESSAGE)
        .max_encoding_message_size(echo::MAX_MESSAGE)
}

/// Adds `authorization: Bearer <token>` to every call of a client
/// (`FooClient::with_interceptor(channel, Bearer::new(&token))`).
#[derive(Debug, Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// # Panics
    /// If `token` is not ASCII (a JWT always is).
    pub fn new(token: &str) -> Bearer {
        Bearer(format!("Bearer {token}").parse().expect("a token is ASCII"))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// `authorization: Bearer <token>` on a request.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A unary call of `path` with a raw payload.
pub async fn unary(
    channel: &Channel,
    path: &'static str,
    request: Request<Bytes>,
) -> Result<Bytes, Status> {
    let mut client = raw_client(channel.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    client
        .unary(request, PathAndQuery::from_static(path), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Paths of the echo backend's methods.
pub mod paths {
    pub const GET_WOUND: &str = "/telehealth.v1.WoundService/GetWound";
    pub const UPDATE_WOUND: &str = "/telehealth.v1.WoundService/UpdateWound";
    pub const LIST_ALERTS: &str = "/telehealth.v1.WoundService/ListAlerts";
    pub const UPLOAD_PHOTO: &str = "/telehealth.v1.WoundService/UploadPhoto";
    pub const DOWNLOAD_PHOTO: &str = "/telehealth.v1.WoundService/DownloadPhoto";
    pub const GET_ASSESSMENT: &str = "/telehealth.v1.WoundService/GetAssessment";
    pub const SIGNAL: &str = "/telehealth.v1.SignallingService/Signal";
    pub const MARK_WAITING_ROOM: &str = "/telehealth.v1.SchedulingService/MarkWaitingRoom";
}
