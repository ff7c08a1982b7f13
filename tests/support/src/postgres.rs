//! A PostgreSQL server of the test's own, which the test may stop and start (the machine's
//! server is shared by every test running at the same time: never restarted).
//!
//! Made from the server binaries of the machine's PostgreSQL (Debian's
//! `/usr/lib/postgresql/<version>/bin`), in a temporary folder, listening on loopback only, run
//! as the `postgres` user when the test runs as root (the server refuses root).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// A private server; stopped (immediately) when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// A new cluster with trust authentication, started. `None` outside CI when the server
    /// binaries are missing (with a message).
    ///
    /// # Panics
    /// Under CI when the binaries are missing, and when the server does not start.
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = server_binaries() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs the PostgreSQL server binaries (/usr/lib/postgresql/*/bin)"
            );
            eprintln!("SKIPPING: no PostgreSQL server binaries for a private server");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let port = crate::ports::free_port();
        if is_root() {
            // The server's files belong to the user that runs it.
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        run(as_server_user(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let server = PrivatePostgres {
            bin,
            data,
            port,
            _dir: dir,
        };
        server.start_again();
        Some(server)
    }

    /// Its URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as an operator's restart does (`pg_ctl stop -m fast`: open sessions are
    /// ended, transactions in progress rolled back).
    pub fn stop(&self) {
        run(as_server_user(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(&self.data));
    }

    /// Starts it again on the same port and data; returns once it accepts connections.
    pub fn start_again(&self) {
        let log = self.data.with_file_name("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='' \
             -c fsync=off -c max_connections=60",
            self.port
        );
        run(as_server_user(&self.bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "30", "-o", &options, "-l"])
            .arg(&log)
            .arg("-D")
            .arg(&self.data));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private PostgreSQL does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `pg_ctl`.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("a PostgreSQL tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
