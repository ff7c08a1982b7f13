//! The suite in microservice mode as separate processes: `telehealth serve <part>` started
//! `replicas` times for each service, and `telehealth serve gateway` in front of all of them,
//! every process reading one TOML file, on the tests' PostgreSQL and S3 store (Garage).
//!
//! Used by the `replicas` integration test and the `replicas` benchmark, which give it the
//! `telehealth` binary they were built with.
//!
//! Processes are `std::process` children rather than `tokio::process` ones (the workspace's
//! tokio is built without its `process` feature). A [`Process`] kills its child when dropped,
//! which is what `kill_on_drop(true)` would do.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telehealth_kit::{
    Part, Settings,
    config::{BlobBackend, TlsFiles},
    identity::Role,
    pki::DevPki,
    testing::TestBlobs,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::ports::free_address;

/// How long a process may take to report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One `telehealth` child process; killed (SIGKILL) when dropped.
pub struct Process {
    /// `scheduling-0`, `gateway`...
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Sends SIGKILL and reaps the child; returns when it was sent.
    pub fn kill(&mut self) -> Instant {
        let at = Instant::now();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        at
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The exit status if the process has stopped by itself.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The gateway in front of the instances.
pub enum Gateway {
    /// `telehealth serve gateway`.
    Process(Process),
    /// A gateway in this process (see [`Cluster::in_process_gateway`]).
    InProcess(CancellationToken),
}

/// Every process of a microservice-mode suite, and what is needed to call it and clean it up.
pub struct Cluster {
    /// The settings every process reads (service endpoints list every instance).
    pub settings: Settings,
    /// The main gateway's address (in front of every instance).
    pub gateway: SocketAddr,
    /// Instances of each service, in start order.
    pub instances: BTreeMap<Part, Vec<Process>>,
    main_gateway: Option<Gateway>,
    extra_gateways: Vec<Gateway>,
    binary: PathBuf,
    dir: tempfile::TempDir,
    _blobs: TestBlobs,
}

impl Cluster {
    /// Starts `replicas` instances of every service (`binary` is the `telehealth` executable) and a
    /// gateway process in front of them, on a
    /// fresh PostgreSQL schema prefix and a fresh S3 prefix. `None` outside CI when PostgreSQL or
    /// the S3 store is missing (with a message).
    ///
    /// # Panics
    /// Under CI when PostgreSQL or the S3 store is missing; when a process does not start.
    pub async fn start(binary: PathBuf, replicas: usize) -> Option<Cluster> {
        let url = crate::suite::postgres_url().await?;
        let Some(blobs) = TestBlobs::s3() else {
            eprintln!("SKIPPING: several replicas need the S3 store");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        settings.database.url = Some(url);
        settings.database.schema_prefix =
            format!("r{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        // 8 processes share the test server with other tests: small pools.
        settings.database.max_connections = 4;
        settings.shutdown.drain_seconds = 2;
        settings.gateway.listen = free_address();
        settings.gateway.limits.requests_per_second = 100_000.0;
        settings.gateway.limits.burst = 100_000;
        settings.blobs = blobs.settings.clone();
        // Small parts, so that a partial upload has acknowledged bytes.
        settings.images.part_size_bytes = 64 * 1024;
        let mut addresses = BTreeMap::new();
        for part in Part::SERVICES {
            let list: Vec<SocketAddr> = (0..replicas).map(|_| free_address()).collect();
            let service = settings.service_mut(part).expect("a service");
            service.listen = list[0];
            service.endpoints = list.iter().map(|a| format!("https://{a}")).collect();
            addresses.insert(part, list);
        }
        telehealth::suite::prepare_data_dir(&settings).expect("dev PKI and signing key");

        let mut cluster = Cluster {
            settings,
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            instances: BTreeMap::new(),
            main_gateway: None,
            extra_gateways: Vec::new(),
            binary,
            dir,
            _blobs: blobs,
        };
        let config = cluster.write_config("telehealth.toml", &cluster.settings);
        // Migrations once, before the replicas start (`telehealth migrate`, as an operator runs
        // it), so that two instances never race to create the same schema.
        let migrate = cluster
            .command(&config, &[])
            .arg("migrate")
            .output()
            .expect("telehealth migrate runs");
        assert!(
            migrate.status.success(),
            "telehealth migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        for (part, list) in addresses {
            for (index, address) in list.into_iter().enumerate() {
                let listen = format!("TELEHEALTH_{}__LISTEN", part.name().to_uppercase());
                let process = cluster.spawn(
                    &format!("{part}-{index}"),
                    &config,
                    address,
                    &[(listen.as_str(), address.to_string())],
                    part,
                );
                cluster.instances.entry(part).or_default().push(process);
            }
        }
        for part in Part::SERVICES {
            for index in 0..replicas {
                cluster.wait_serving(part, index).await;
            }
        }
        let settings = cluster.settings.clone();
        let (address, gateway) = cluster.spawn_gateway("gateway", &settings).await;
        cluster.gateway = address;
        cluster.main_gateway = Some(gateway);
        Some(cluster)
    }

    /// The address of instance `index` of `part`.
    pub fn address(&self, part: Part, index: usize) -> SocketAddr {
        self.instances[&part][index].address
    }

    /// The settings with every service's endpoints narrowed to instance `index`.
    pub fn only_instance(&self, index: usize) -> Settings {
        let mut settings = self.settings.clone();
        for part in Part::SERVICES {
            let address = self.address(part, index);
            let service = settings.service_mut(part).expect("a service");
            service.endpoints = vec![format!("https://{address}")];
        }
        settings
    }

    /// Starts another gateway process for `settings` (its own config file) on a free port and
    /// waits until it serves; returns its address. It stops with the cluster.
    pub async fn extra_gateway(&mut self, name: &str, settings: &Settings) -> SocketAddr {
        let (address, gateway) = self.spawn_gateway(name, settings).await;
        self.extra_gateways.push(gateway);
        address
    }

    /// A gateway in this process for `settings`, on a free port: for assertions that need calls
    /// to reach one given instance (the services stay separate processes).
    pub async fn in_process_gateway(&mut self, settings: &Settings) -> SocketAddr {
        let (address, stop) = crate::harness::start_gateway(settings).await;
        self.extra_gateways.push(Gateway::InProcess(stop));
        address
    }

    /// Every process still running, by name, with its process id (memory figures).
    pub fn processes(&self) -> Vec<(String, u32)> {
        let gateways = self
            .main_gateway
            .iter()
            .chain(&self.extra_gateways)
            .filter_map(|g| match g {
                Gateway::Process(process) => Some(process),
                Gateway::InProcess(_) => None,
            });
        self.instances
            .values()
            .flatten()
            .chain(gateways)
            .filter_map(|process| Some((process.name.clone(), process.pid()?)))
            .collect()
    }

    /// Kills instance `index` of `part` with SIGKILL; returns when.
    pub fn kill(&mut self, part: Part, index: usize) -> Instant {
        self.instances
            .get_mut(&part)
            .and_then(|list| list.get_mut(index))
            .expect("such an instance")
            .kill()
    }

    /// Starts instance `index` of `part` again (after [`Cluster::kill`]) on its address, and
    /// waits until it serves.
    pub async fn restart(&mut self, part: Part, index: usize) {
        let address = self.address(part, index);
        let name = format!("{part}-{index}");
        let config = self.dir.path().join("telehealth.toml");
        let listen = format!("TELEHEALTH_{}__LISTEN", part.name().to_uppercase());
        let process = self.spawn(
            &name,
            &config,
            address,
            &[(listen.as_str(), address.to_string())],
            part,
        );
        self.instances.get_mut(&part).expect("part")[index] = process;
        self.wait_serving(part, index).await;
    }

    /// A dev token for `subject`, bound to `device`'s certificate.
    pub fn token(
        &self,
        subject: &str,
        roles: &[Role],
        org: &str,
        specialty: Option<&str>,
        device: &str,
    ) -> String {
        let cert = DevPki::new(self.settings.pki_dir())
            .device_files(device)
            .cert;
        DevSigner::new(self.settings.data_dir.join("jwt"))
            .mint(&MintRequest {
                subject: subject.to_owned(),
                roles: roles.to_vec(),
                org: org.to_owned(),
                specialty: specialty.map(str::to_owned),
                cert_thumbprint: Some(thumbprint_of_pem_file(&cert).expect("thumbprint")),
                ttl: Duration::from_secs(3600),
                audience: DEFAULT_AUDIENCE.to_owned(),
            })
            .expect("mint")
    }

    /// A TLS channel to the gateway at `address` presenting `device`'s certificate.
    pub async fn channel(&self, address: SocketAddr, device: &str) -> Channel {
        let files = DevPki::new(self.settings.pki_dir()).device_files(device);
        crate::harness::channel_to(address, &self.settings, &(files.cert, files.key))
            .await
            .expect("connects to the gateway")
    }

    /// Runs `telehealth <args>` with the cluster's configuration and returns its output.
    pub fn run_command(&self, args: &[&str]) -> std::process::Output {
        let config = self.dir.path().join("telehealth.toml");
        self.command(&config, &[])
            .args(args)
            .output()
            .expect("telehealth runs")
    }

    /// Prints the end of every process's log (for a failed assertion).
    pub fn print_logs(&self) {
        let processes = self.instances.values().flatten().chain(
            self.main_gateway
                .iter()
                .chain(&self.extra_gateways)
                .filter_map(|g| match g {
                    Gateway::Process(p) => Some(p),
                    Gateway::InProcess(_) => None,
                }),
        );
        for process in processes {
            let log = std::fs::read_to_string(&process.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "===== {} ({}), last {} lines of {} =====\n{}",
                process.name,
                process.address,
                tail.len(),
                process.log.display(),
                tail.join("\n")
            );
        }
    }

    /// Kills every process and drops the PostgreSQL schemas.
    pub async fn stop(mut self) {
        for gateway in self
            .extra_gateways
            .drain(..)
            .chain(self.main_gateway.take())
        {
            if let Gateway::InProcess(stop) = gateway {
                stop.cancel();
            }
        }
        self.instances.clear();
        if let Some(url) = &self.settings.database.url
            && let Ok(pool) = sqlx::AnyPool::connect(url).await
        {
            for part in Part::SERVICES {
                let schema = format!("{}{}", self.settings.database.schema_prefix, part.name());
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&pool)
                    .await;
            }
            pool.close().await;
        }
    }

    /// `telehealth --config <config>` with a clean environment: the parent's `TELEHEALTH_*`
    /// variables (the tests' own `TELEHEALTH_TEST_*`) would be refused as unknown settings.
    fn command(&self, config: &Path, env: &[(&str, String)]) -> Command {
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TELEHEALTH_") {
                command.env_remove(name);
            }
        }
        command.env_remove("RUST_LOG");
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command.arg("--config").arg(config);
        command
    }

    fn spawn(
        &self,
        name: &str,
        config: &Path,
        address: SocketAddr,
        env: &[(&str, String)],
        part: Part,
    ) -> Process {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .command(config, env)
            .args(["serve", part.name()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("telehealth serve starts");
        Process {
            name: name.to_owned(),
            address,
            log,
            child: Some(child),
        }
    }

    async fn wait_serving(&mut self, part: Part, index: usize) {
        let tls = telehealth_kit::tls::client_tls(&self.settings.internal_tls(Part::Gateway))
            .expect("internal TLS");
        let process = &mut self.instances.get_mut(&part).expect("part")[index];
        wait_until_serving(process, &tls, part).await;
    }

    /// Starts `telehealth serve gateway` for `settings` (its own config file) on a free port and
    /// waits until it serves.
    async fn spawn_gateway(&self, name: &str, settings: &Settings) -> (SocketAddr, Gateway) {
        let mut settings = settings.clone();
        settings.gateway.listen = free_address();
        let config = self.write_config(&format!("{name}.toml"), &settings);
        let mut process = self.spawn(name, &config, settings.gateway.listen, &[], Part::Gateway);
        let device = DevPki::new(settings.pki_dir()).device_files("doctor-workstation");
        let tls = telehealth_kit::tls::client_tls(&TlsFiles {
            ca: settings.gateway_server_tls().ca,
            cert: device.cert,
            key: device.key,
        })
        .expect("client TLS");
        wait_until_serving(&mut process, &tls, Part::Gateway).await;
        (process.address, Gateway::Process(process))
    }

    /// Writes `settings` as a TOML file every process can read; returns its path.
    fn write_config(&self, name: &str, settings: &Settings) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, config_toml(settings)).expect("config written");
        path
    }
}

async fn wait_until_serving(process: &mut Process, tls: &ClientTlsConfig, part: Part) {
    let started = Instant::now();
    while !telehealth::suite::health_of(process.address, tls, part).await {
        if let Some(status) = process.exited() {
            let log = std::fs::read_to_string(&process.log).unwrap_or_default();
            panic!("{} exited ({status}) before serving:\n{log}", process.name);
        }
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "{} is not serving after {READY_TIMEOUT:?}",
            process.name
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The part of `settings` these processes need, as the TOML file an operator would write. Only
/// the keys this cluster changes are written; everything else keeps its default.
fn config_toml(settings: &Settings) -> String {
    // A JSON string is a valid TOML basic string (same escapes).
    let q = |value: &str| serde_json::to_string(value).expect("a string");
    let path = |value: &Path| q(&value.to_string_lossy());
    let mut toml = String::new();
    let _ = writeln!(toml, "data_dir = {}", path(&settings.data_dir));
    let database = &settings.database;
    let _ = writeln!(toml, "\n[database]");
    if let Some(url) = &database.url {
        let _ = writeln!(toml, "url = {}", q(url));
    }
    let _ = writeln!(toml, "schema_prefix = {}", q(&database.schema_prefix));
    let _ = writeln!(toml, "max_connections = {}", database.max_connections);
    let _ = writeln!(
        toml,
        "\n[shutdown]\ndrain_seconds = {}",
        settings.shutdown.drain_seconds
    );
    let _ = writeln!(
        toml,
        "\n[telemetry]\nlog_filter = {}",
        q(&settings.telemetry.log_filter)
    );
    let gateway = &settings.gateway;
    let _ = writeln!(
        toml,
        "\n[gateway]\nlisten = {}",
        q(&gateway.listen.to_string())
    );
    let _ = writeln!(
        toml,
        "\n[gateway.limits]\nrequests_per_second = {:?}\nburst = {}",
        gateway.limits.requests_per_second, gateway.limits.burst
    );
    let _ = writeln!(
        toml,
        "\n[gateway.upstream]\nconnect_timeout_ms = {}\nejection_ms = {}",
        gateway.upstream.connect_timeout_ms, gateway.upstream.ejection_ms
    );
    for part in Part::SERVICES {
        let service = settings.service(part).expect("a service");
        let endpoints: Vec<String> = service.endpoints.iter().map(|e| q(e)).collect();
        let _ = writeln!(
            toml,
            "\n[{part}]\nlisten = {}\nendpoints = [{}]",
            q(&service.listen.to_string()),
            endpoints.join(", ")
        );
    }
    let blobs = &settings.blobs;
    let _ = writeln!(toml, "\n[blobs]\nprefix = {}", q(&blobs.prefix));
    if blobs.backend == BlobBackend::S3 {
        let s3 = &blobs.s3;
        let _ = writeln!(toml, "backend = \"s3\"");
        let _ = writeln!(
            toml,
            "\n[blobs.s3]\nendpoint = {}\nregion = {}\nbucket = {}\naccess_key_id = {}\n\
             secret_access_key = {}\nallow_http = {}",
            q(&s3.endpoint),
            q(&s3.region),
            q(&s3.bucket),
            q(&s3.access_key_id),
            q(&s3.secret_access_key),
            s3.allow_http
        );
    }
    let _ = writeln!(
        toml,
        "\n[images]\npart_size_bytes = {}",
        settings.images.part_size_bytes
    );
    toml
}
