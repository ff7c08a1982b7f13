//! A Garage (S3-compatible store) of the test's own, which the test may stop and start: the
//! store every other test shares is never stopped.
//!
//! The binary comes from `TELEHEALTH_TEST_GARAGE_BIN` (exported by `.ci/start-garage`, which
//! builds it once). One node, loopback only, its metadata and data in a temporary folder kept
//! across restarts; the bucket and key are made on the first start.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telehealth_kit::config::{BlobBackend, BlobSettings, S3Settings};

use crate::ports::free_port;

const BUCKET: &str = "telehealth";

/// A private store; killed when dropped.
pub struct PrivateGarage {
    bin: PathBuf,
    dir: tempfile::TempDir,
    s3_port: u16,
    access_key: String,
    secret_key: String,
    child: Option<Child>,
}

/// `bytes` random bytes in hexadecimal.
fn random_hex(bytes: usize) -> String {
    let mut hex = String::new();
    while hex.len() < 2 * bytes {
        hex.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    hex.truncate(2 * bytes);
    hex
}

impl PrivateGarage {
    /// A new store, started. `None` outside CI when the binary is not named (with a message).
    ///
    /// # Panics
    /// Under CI when the binary is not named, and when the store does not start.
    pub fn start() -> Option<PrivateGarage> {
        let Some(bin) = std::env::var_os("TELEHEALTH_TEST_GARAGE_BIN").map(PathBuf::from) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs TELEHEALTH_TEST_GARAGE_BIN (.ci/start-garage exports it)"
            );
            eprintln!(
                "SKIPPING: TELEHEALTH_TEST_GARAGE_BIN is not set (eval \"$(.ci/start-garage)\")"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let (s3_port, rpc_port) = (free_port(), free_port());
        let config = format!(
            "metadata_dir = \"{dir}/meta\"\ndata_dir = \"{dir}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            dir = dir.path().display(),
            secret = random_hex(32),
        );
        std::fs::write(dir.path().join("garage.toml"), config).expect("config");
        let mut garage = PrivateGarage {
            bin,
            dir,
            s3_port,
            access_key: format!("GK{}", random_hex(12)),
            secret_key: random_hex(32),
            child: None,
        };
        garage.start_again();
        Some(garage)
    }

    /// The blob settings of a suite storing its images here.
    pub fn blob_settings(&self) -> BlobSettings {
        BlobSettings {
            backend: BlobBackend::S3,
            s3: S3Settings {
                endpoint: format!("http://127.0.0.1:{}", self.s3_port),
                region: "garage".into(),
                bucket: BUCKET.into(),
                access_key_id: self.access_key.clone(),
                secret_access_key: self.secret_key.clone(),
                allow_http: true,
            },
            ..BlobSettings::default()
        }
    }

    /// Kills the store (SIGKILL: a crash, or a node lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data; returns once its S3 port answers and the key works.
    pub fn start_again(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("garage.log")).expect("log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_key)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("garage starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private Garage does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The default bucket and key are made just after the port opens.
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for PrivateGarage {
    fn drop(&mut self) {
        self.stop();
    }
}
