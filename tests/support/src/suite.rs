//! The whole suite in one process (gateway + every service) on free ports, on SQLite or on a
//! fresh set of PostgreSQL schemas, with typed clients per person that go through the gateway
//! with the person's device certificate and a token bound to it. [`backends`] lists the
//! databases every test runs on.

use std::{net::SocketAddr, time::Duration};

use telehealth::suite::RunningSuite;
use telehealth_kit::{
    Part, Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::v1::{
    self as pb, RegisterSelfRequest, directory_service_client::DirectoryServiceClient,
    expertise_service_client::ExpertiseServiceClient, patient_service_client::PatientServiceClient,
    scheduling_service_client::SchedulingServiceClient,
    signalling_service_client::SignallingServiceClient, wound_service_client::WoundServiceClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub use crate::harness::Bearer;

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

/// A person for tests: who, with which roles, in which org (and specialty), on which sample
/// device of the dev PKI.
#[derive(Debug, Clone)]
pub struct Person {
    pub subject: &'static str,
    pub roles: Vec<Role>,
    pub org: &'static str,
    pub specialty: Option<&'static str>,
    pub device: &'static str,
}

impl Person {
    /// Someone holding exactly `roles`, on the doctor's workstation.
    pub fn with_roles(subject: &'static str, org: &'static str, roles: &[Role]) -> Person {
        Person {
            subject,
            roles: roles.to_vec(),
            org,
            specialty: None,
            device: "doctor-workstation",
        }
    }
    /// The same person, with a specialty in their token (specialists).
    pub fn in_specialty(mut self, specialty: &'static str) -> Person {
        self.specialty = Some(specialty);
        self
    }
    pub fn doctor(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Doctor],
            org,
            specialty: None,
            device: "doctor-workstation",
        }
    }
    pub fn coordinator(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Coordinator],
            org,
            specialty: None,
            device: "doctor-workstation",
        }
    }
    pub fn nurse(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Nurse],
            org,
            specialty: None,
            device: "nurse-tablet",
        }
    }
    pub fn patient(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Patient],
            org,
            specialty: None,
            device: "patient-tablet",
        }
    }
    pub fn specialist(subject: &'static str, org: &'static str) -> Person {
        Person {
            subject,
            roles: vec![Role::Specialist],
            org,
            specialty: None,
            device: "specialist-workstation",
        }
    }
}

/// A channel to a gateway with a person's token on every call.
pub type Authorised = InterceptedService<Channel, Bearer>;
pub type Scheduling = SchedulingServiceClient<Authorised>;
pub type Expertise = ExpertiseServiceClient<Authorised>;
pub type Wounds = WoundServiceClient<Authorised>;
pub type Signalling = SignallingServiceClient<Authorised>;
pub type Directory = DirectoryServiceClient<Authorised>;
pub type Patients = PatientServiceClient<Authorised>;

/// The PostgreSQL URL of the tests, or `None` (with a message) outside CI when unreachable.
///
/// # Panics
/// Under CI when PostgreSQL is not reachable: there, a test that needs it must fail.
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
                specialty: person.specialty.map(str::to_owned),
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
        crate::harness::channel_to(address, &self.settings, &(files.cert, files.key))
            .await
            .expect("connects to the gateway")
    }

    /// A channel straight to the service at `address` over internal mTLS, as the part `caller`
    /// (no gateway in front): how the services call each other.
    pub async fn internal_channel(&self, caller: Part, address: SocketAddr) -> Channel {
        let tls = telehealth_kit::tls::client_tls(&self.settings.internal_tls(caller))
            .expect("the part's internal identity");
        Channel::from_shared(format!("https://{address}"))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connects to the service")
    }

    /// The suite's gateway.
    pub fn gateway(&self) -> SocketAddr {
        self.running.as_ref().expect("running").gateway
    }

    /// Records `person` in the care directory as a member of their org, as their first
    /// verified sign-in does (`RegisterSelf`); patients are not members and are skipped.
    pub async fn enrol(&self, person: &Person) {
        self.enrol_via(self.gateway(), person).await;
    }

    /// [`Suite::enrol`] through the gateway at `address`.
    pub async fn enrol_via(&self, address: SocketAddr, person: &Person) {
        if person.roles.iter().all(|r| *r == Role::Patient) {
            return;
        }
        let mut directory = DirectoryServiceClient::new(self.unenrolled(address, person).await);
        directory
            .register_self(RegisterSelfRequest {})
            .await
            .unwrap_or_else(|status| panic!("{} is enrolled: {status:?}", person.subject));
    }

    /// A channel through the gateway at `address` acting as `person`, enrolled first.
    pub async fn authorised(&self, address: SocketAddr, person: &Person) -> Authorised {
        self.enrol_via(address, person).await;
        self.unenrolled(address, person).await
    }

    /// A channel through the gateway at `address` acting as `person`, who may not be a member
    /// of any organisation's directory.
    pub async fn unenrolled(&self, address: SocketAddr, person: &Person) -> Authorised {
        let bearer = Bearer::new(&self.token(person));
        InterceptedService::new(self.channel_to(address, person).await, bearer)
    }

    /// A scheduling client acting as `person` (enrolled in the directory first).
    pub async fn scheduling(&self, person: &Person) -> Scheduling {
        self.scheduling_via(self.gateway(), person).await
    }

    /// [`Suite::scheduling`] through the gateway at `address`.
    pub async fn scheduling_via(&self, address: SocketAddr, person: &Person) -> Scheduling {
        SchedulingServiceClient::new(self.authorised(address, person).await)
    }

    /// A tele-expertise client acting as `person` (enrolled in the directory first).
    pub async fn expertise(&self, person: &Person) -> Expertise {
        self.expertise_via(self.gateway(), person).await
    }

    /// [`Suite::expertise`] through the gateway at `address`.
    pub async fn expertise_via(&self, address: SocketAddr, person: &Person) -> Expertise {
        ExpertiseServiceClient::new(self.authorised(address, person).await)
    }

    /// A wound monitoring client acting as `person` (enrolled in the directory first).
    pub async fn wounds(&self, person: &Person) -> Wounds {
        self.wounds_via(self.gateway(), person).await
    }

    /// [`Suite::wounds`] through the gateway at `address`.
    pub async fn wounds_via(&self, address: SocketAddr, person: &Person) -> Wounds {
        WoundServiceClient::new(self.authorised(address, person).await)
    }

    /// A signalling client acting as `person` (enrolled in the directory first).
    pub async fn signalling(&self, person: &Person) -> Signalling {
        self.signalling_via(self.gateway(), person).await
    }

    /// [`Suite::signalling`] through the gateway at `address`.
    pub async fn signalling_via(&self, address: SocketAddr, person: &Person) -> Signalling {
        SignallingServiceClient::new(self.authorised(address, person).await)
    }

    /// A directory client acting as `person`, who is not enrolled by it.
    pub async fn directory(&self, person: &Person) -> Directory {
        DirectoryServiceClient::new(self.unenrolled(self.gateway(), person).await)
    }

    /// A patient register client acting as `person` (enrolled in the directory first).
    pub async fn patients(&self, person: &Person) -> Patients {
        PatientServiceClient::new(self.authorised(self.gateway(), person).await)
    }

    /// A patient registered in `person`'s organisation (by `person`) who consented to a
    /// teleconsultation, a tele-expertise and remote monitoring of wounds; returns their id, the
    /// pseudonym the other services carry.
    pub async fn consenting_patient(&self, person: &Person) -> String {
        let mut register = self.patients(person).await;
        let letters: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .map(|c| (b'A' + (c.to_digit(16).unwrap_or(0) as u8)) as char)
            .take(10)
            .collect();
        let patient = register
            .create_patient(pb::CreatePatientRequest {
                identity: Some(pb::IdentityTraits {
                    birth_name: format!("PATIENT {letters}"),
                    first_names: "Marie".into(),
                    sex: pb::Sex::Female as i32,
                    birth_date: "1944-02-29".into(),
                    ..Default::default()
                }),
                confirm_distinct: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("{} registers a patient: {status:?}", person.subject))
            .into_inner()
            .patient
            .expect("a patient");
        for act in [
            pb::ConsentAct::Teleconsultation,
            pb::ConsentAct::TeleExpertise,
            pb::ConsentAct::WoundMonitoring,
        ] {
            register
                .record_consent(pb::RecordConsentRequest {
                    patient_id: patient.id.clone(),
                    act: act as i32,
                    decision: pb::ConsentDecision::Given as i32,
                    method: pb::ConsentMethod::Oral as i32,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|status| panic!("consent recorded: {status:?}"));
        }
        patient.id
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
            telehealth_kit::serve::run_service(
                &definition,
                settings,
                listener,
                token,
                telehealth_kit::metrics::Metrics::local(),
            )
            .await
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
        crate::harness::start_gateway(&settings).await
    }

    /// Stops the suite and drops its PostgreSQL schemas.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("clean stop");
        }
        if let Some(url) = self.settings.database.url.take() {
            drop_schemas(&url, &self.settings.database.schema_prefix)
                .await
                .expect("connect for cleanup");
        }
    }
}

/// A suite its test did not stop (the test failed, or returned early) still drops its schemas,
/// so that the shared test database does not grow with every run.
impl Drop for Suite {
    fn drop(&mut self) {
        let Some(url) = self.settings.database.url.take() else {
            return;
        };
        let prefix = self.settings.database.schema_prefix.clone();
        // `drop` cannot wait on the test's runtime (this may be its only thread): a thread with
        // a runtime of its own does the cleanup.
        let schemas = prefix.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_schemas(&url, &schemas))?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
        if let Ok(Err(error)) = cleanup.join() {
            eprintln!("the schemas {prefix}* of an unstopped suite are left: {error}");
        }
    }
}

/// Drops the schemas of every service under `prefix`. The suite's services may still be running
/// (an unstopped suite): a schema one of their transactions holds is left after a short wait
/// rather than waited for.
async fn drop_schemas(url: &str, prefix: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    sqlx::query("SET lock_timeout = '2s'")
        .execute(&mut conn)
        .await?;
    for part in Part::SERVICES {
        let schema = format!("{prefix}{}", part.name());
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut conn)
            .await;
    }
    conn.close().await
}

/// The backends to run a test on: SQLite always, PostgreSQL when available.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if postgres_url().await.is_some() {
        all.push(Backend::Postgres);
    }
    all
}
