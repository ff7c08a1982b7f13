//! The whole suite in-process (gateway + five services) on free ports, on SQLite or on a fresh
//! set of PostgreSQL schemas, with typed clients that go through the gateway.

use std::time::Duration;

use telehealth::suite::RunningSuite;
use telehealth_kit::{
    Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::v1::{
    RegisterSelfRequest, directory_service_client::DirectoryServiceClient,
    scheduling_service_client::SchedulingServiceClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// Which database the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running suite and what it needs to be cleaned up.
pub struct Suite {
    pub running: Option<RunningSuite>,
    pub settings: Settings,
    _dir: tempfile::TempDir,
}

/// A person for tests: who, with which roles, in which org, on which sample device.
#[derive(Debug, Clone)]
pub struct Person {
    pub subject: &'static str,
    pub roles: Vec<Role>,
    pub org: &'static str,
    pub device: &'static str,
}

impl Person {
    pub fn doctor(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Doctor],
            org,
            device: "doctor-workstation",
        }
    }
    pub fn coordinator(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Coordinator],
            org,
            device: "doctor-workstation",
        }
    }
    pub fn nurse(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Nurse],
            org,
            device: "nurse-tablet",
        }
    }
    pub fn patient(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Patient],
            org,
            device: "patient-tablet",
        }
    }
    pub fn specialist(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Specialist],
            org,
            device: "specialist-workstation",
        }
    }
}

pub use telehealth_testkit::harness::Bearer;

pub type Scheduling = SchedulingServiceClient<InterceptedService<Channel, Bearer>>;

/// The PostgreSQL URL of the tests, or `None` (with a message) outside CI when unreachable.
pub async fn postgres_url() -> Option<String> {
    let url = std::env::var("TELEHEALTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| telehealth_kit::testing::DEFAULT_TEST_POSTGRES_URL.to_owned());
    sqlx::any::install_default_drivers();
    match sqlx::AnyPool::connect(&url).await {
        Ok(pool) => {
            pool.close().await;
            Some(url)
        }
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("PostgreSQL is required in CI but {url} is not usable: {error}")
        }
        Err(error) => {
            eprintln!("SKIPPING the PostgreSQL run of this test: {url} is not usable ({error})");
            None
        }
    }
}

impl Suite {
    /// Starts the suite on `backend`; `None` when PostgreSQL is unavailable outside CI.
    pub async fn start(backend: Backend) -> Option<Suite> {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts the suite after `configure` adjusts its settings.
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<Suite> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.gateway.listen = "127.0.0.1:0".parse().expect("addr");
        settings.gateway.limits.requests_per_second = 100_000.0;
        settings.gateway.limits.burst = 100_000;
        // Tests act as many people from one sample device certificate, each on a connection of
        // its own; the caps have their own tests (gateway_connections).
        settings.gateway.limits.max_connections_per_certificate = 10_000;
        settings.shutdown.drain_seconds = 2;
        if backend == Backend::Postgres {
            settings.database.url = Some(postgres_url().await?);
            settings.database.schema_prefix =
                format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            settings.database.max_connections = 20;
        }
        configure(&mut settings);
        let mut running = RunningSuite::start(settings.clone())
            .await
            .expect("suite starts");
        running
            .wait_healthy(Duration::from_secs(30))
            .await
            .expect("suite healthy");
        let settings = (*running.settings).clone();
        Some(Suite {
            running: Some(running),
            settings,
            _dir: dir,
        })
    }

    /// A token for `person`, bound to their device's certificate.
    pub fn token(&self, person: &Person) -> String {
        let cert = DevPki::new(self.settings.pki_dir())
            .device_files(person.device)
            .cert;
        DevSigner::new(self.settings.data_dir.join("jwt"))
            .mint(&MintRequest {
                subject: person.subject.to_owned(),
                roles: person.roles.clone(),
                org: person.org.to_owned(),
                specialty: None,
                cert_thumbprint: Some(thumbprint_of_pem_file(&cert).expect("thumbprint")),
                ttl: Duration::from_secs(3600),
                audience: DEFAULT_AUDIENCE.to_owned(),
            })
            .expect("mint")
    }

    /// A channel to the gateway at `address` (another gateway of the same PKI) from `person`'s
    /// device.
    pub async fn channel_to(&self, address: std::net::SocketAddr, person: &Person) -> Channel {
        let files = DevPki::new(self.settings.pki_dir()).device_files(person.device);
        telehealth_testkit::harness::channel_to(address, &self.settings, &(files.cert, files.key))
            .await
            .expect("connects to the gateway")
    }

    /// Records `person` in the care directory as a member of their org, as their first
    /// verified sign-in does (`RegisterSelf`); patients are not members and are skipped.
    pub async fn enrol(&self, person: &Person) {
        self.enrol_via(self.running.as_ref().expect("running").gateway, person)
            .await;
    }

    /// [`Suite::enrol`] through the gateway at `address`.
    pub async fn enrol_via(&self, address: std::net::SocketAddr, person: &Person) {
        if person.roles.iter().all(|r| *r == Role::Patient) {
            return;
        }
        let bearer = Bearer::new(&self.token(person));
        let mut directory = DirectoryServiceClient::with_interceptor(
            self.channel_to(address, person).await,
            bearer,
        );
        directory
            .register_self(RegisterSelfRequest {})
            .await
            .unwrap_or_else(|status| panic!("{} is enrolled: {status:?}", person.subject));
    }

    /// A scheduling client acting as `person` (enrolled in the directory first).
    pub async fn scheduling(&self, person: &Person) -> Scheduling {
        self.scheduling_via(self.running.as_ref().expect("running").gateway, person)
            .await
    }

    /// A scheduling client acting as `person` through the gateway at `address`.
    pub async fn scheduling_via(
        &self,
        address: std::net::SocketAddr,
        person: &Person,
    ) -> Scheduling {
        self.enrol_via(address, person).await;
        let bearer = Bearer::new(&self.token(person));
        SchedulingServiceClient::with_interceptor(self.channel_to(address, person).await, bearer)
    }

    /// Starts one more instance of `part` on the suite's database; returns its address and the
    /// token that stops it.
    pub async fn extra_instance(
        &self,
        part: telehealth_kit::Part,
    ) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = tokio_util::sync::CancellationToken::new();
        let settings = std::sync::Arc::new(self.settings.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let definition = telehealth::suite::service_definition(part).expect("a service");
            telehealth_kit::serve::run_service(&definition, settings, listener, token).await
        });
        let tls = telehealth_kit::tls::client_tls(
            &self.settings.internal_tls(telehealth_kit::Part::Gateway),
        )
        .expect("tls");
        for _ in 0..200 {
            if telehealth::suite::health_of(address, &tls, part).await {
                return (address, stop);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the extra {part} instance did not become healthy");
    }

    /// Starts another gateway whose `part` endpoints are `endpoints`.
    pub async fn extra_gateway(
        &self,
        part: telehealth_kit::Part,
        endpoints: &[std::net::SocketAddr],
    ) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
        let mut settings = self.settings.clone();
        if let Some(service) = settings.service_mut(part) {
            service.endpoints = endpoints.iter().map(|a| format!("https://{a}")).collect();
        }
        telehealth_testkit::harness::start_gateway(&settings).await
    }

    /// Stops the suite and drops its PostgreSQL schemas.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("clean stop");
        }
        if let Some(url) = &self.settings.database.url {
            let pool = sqlx::AnyPool::connect(url)
                .await
                .expect("connect for cleanup");
            for part in telehealth_kit::Part::SERVICES {
                let schema = format!("{}{}", self.settings.database.schema_prefix, part.name());
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&pool)
                    .await;
            }
            pool.close().await;
        }
    }
}

/// The backends to run a test on: SQLite always, PostgreSQL when available.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if postgres_url().await.is_some() {
        all.push(Backend::Postgres);
    }
    all
}
