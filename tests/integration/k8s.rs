//! What the Kubernetes manifests rely on: `telehealth health <part>` as the exec probe (with
//! each part's own certificates, SERVING → 0, anything else → non-zero within the timeout), and
//! the configuration the manifests give each part (k8s/base/telehealth.toml + the overlay's
//! settings.env + the Secrets' variables) being accepted by the binary, with every service of
//! the binary deployed, listening on every interface and reached at its Service's name. The
//! rendered manifests themselves are checked by `.ci/k8s-validate`, whose list of parts must be
//! the binary's.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use telehealth::connection::Connection;
use telehealth_kit::Part;

use crate::harness::{binary, stderr, stdout, telehealth};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `telehealth up` in `data_dir` (gateway on a free port) and waits for connection.json.
fn start_suite(data_dir: &Path) -> (KillOnDrop, Connection) {
    let child = Command::new(binary())
        .arg("up")
        .arg("--no-web") // the web client has its own tests (tests/browser)
        .arg("--data-dir")
        .arg(data_dir)
        .env("TELEHEALTH_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "1")
        .env_remove("TELEHEALTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start telehealth up");
    let mut child = KillOnDrop(child);
    let connection_file = data_dir.join("connection.json");
    let started = Instant::now();
    loop {
        // connection.json is written once every part reports healthy.
        if let Some(connection) = std::fs::read(&connection_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Connection>(&bytes).ok())
        {
            return (child, connection);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "up did not become healthy"
        );
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "up exited during start-up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `telehealth --data-dir <dir> health <args>`, timed.
fn health(data_dir: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut all = vec!["health"];
    all.extend_from_slice(args);
    let output = telehealth(data_dir, &all);
    (output, started.elapsed())
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn the_health_probe_reports_each_running_part_serving_with_its_own_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("suite");
    let (mut suite, connection) = start_suite(&data_dir);

    // Each service, with the internal certificate it serves with (the defaults of `up`).
    for part in Part::SERVICES {
        let address = connection.services[&part].to_string();
        let variants: [&[&str]; 2] = [&[], &["--live"]];
        for extra in variants {
            let mut args = vec![part.name(), "--address", &address];
            args.extend_from_slice(extra);
            let (output, _) = health(&data_dir, &args);
            assert!(
                output.status.success(),
                "{args:?}: exit {:?}: {}",
                output.status.code(),
                stderr(&output)
            );
            assert!(stdout(&output).contains(&format!("{part} at {address}:")));
        }
    }

    // The gateway accepts only device certificates: the probe's comes from the device CA.
    let gateway = connection
        .gateway
        .expect("the gateway runs in up")
        .to_string();
    let issued = telehealth(&data_dir, &["pki", "issue", "device", "probe"]);
    assert!(issued.status.success(), "{}", stderr(&issued));
    let (output, _) = health(&data_dir, &["gateway", "--address", &gateway]);
    assert!(
        output.status.success(),
        "gateway with the default probe certificate: {}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("SERVING"), "{}", stdout(&output));

    // Without a certificate the part accepts, the probe fails: a device certificate cannot
    // even complete the handshake with a service.
    let nurse = &connection.devices["nurse-tablet"];
    let scheduling = connection.services[&Part::Scheduling].to_string();
    let (output, _) = health(
        &data_dir,
        &[
            "scheduling",
            "--address",
            &scheduling,
            "--cert",
            path_arg(&nurse.cert),
            "--key",
            path_arg(&nurse.key),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(2),
        "a device certificate is refused by a service: {}",
        stderr(&output)
    );

    // Once the suite is gone, every probe fails with one line naming the address, in time.
    suite.0.kill().expect("stop the suite");
    suite.0.wait().expect("reap the suite");
    for (part, address) in [
        (Part::Scheduling, scheduling.clone()),
        (Part::Gateway, gateway.clone()),
    ] {
        let (output, took) = health(&data_dir, &[part.name(), "--address", &address]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{part} stopped: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
        assert!(message.contains(&address), "{message}");
        assert!(took < Duration::from_secs(5), "{part}: took {took:?}");
    }
}

#[test]
fn the_health_probe_gives_up_on_a_silent_part_within_its_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let initialised = telehealth(dir.path(), &["pki", "init"]);
    assert!(initialised.status.success(), "{}", stderr(&initialised));
    // Accepts TCP connections but never answers the TLS handshake.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = silent.local_addr().expect("address").to_string();

    let (output, took) = health(
        dir.path(),
        &["wound", "--address", &address, "--timeout", "0.5"],
    );

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no answer within"),
        "{}",
        stderr(&output)
    );
    assert!(took < Duration::from_secs(4), "gave up after {took:?}");
    drop(silent);
}

/// The repository's root (the test runs with the package's directory as working directory).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped), as kustomize reads them.
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: `{line}` is not KEY=VALUE", path.display()));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// The variables the Deployments take from Secrets (values are placeholders here).
fn secret_env(part: Part) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![(
        "TELEHEALTH_DATABASE__URL",
        "postgresql://telehealth:secret@telehealth-db-rw.telehealth:5432/telehealth",
    )];
    if matches!(part, Part::Expertise | Part::Wound) {
        env.extend([
            ("TELEHEALTH_BLOBS__BACKEND", "s3"),
            ("TELEHEALTH_BLOBS__S3__ACCESS_KEY_ID", "GK0123"),
            ("TELEHEALTH_BLOBS__S3__SECRET_ACCESS_KEY", "secret"),
        ]);
    }
    if part == Part::Signalling {
        env.push((
            "TELEHEALTH_SIGNALLING_MEDIA__TURN_SECRETS",
            r#"["new-secret","old-secret"]"#,
        ));
    }
    env
}

#[test]
fn every_part_accepts_the_configuration_the_manifests_give_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let initialised = telehealth(dir.path(), &["pki", "init"]);
    assert!(initialised.status.success(), "{}", stderr(&initialised));
    let pki = dir.path().join("pki");
    let closed: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let config = repo().join("k8s/base/telehealth.toml");

    for overlay in ["dev", "prod"] {
        let settings = env_file(&repo().join(format!("k8s/overlays/{overlay}/settings.env")));
        for part in Part::ALL {
            // The manifests' TLS files exist only in a pod: point the probe at dev ones, so
            // that loading the settings is all that can fail before the (closed) address.
            let mut command = Command::new(binary());
            command
                .env_remove("TELEHEALTH_CONFIG")
                .env("TELEHEALTH_CONFIG", &config)
                .envs(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .envs(secret_env(part))
                .args(["health", part.name(), "--address", &closed.to_string()])
                .arg("--ca")
                .arg(pki.join("internal-ca.pem"))
                .arg("--cert")
                .arg(pki.join("internal/gateway.pem"))
                .arg("--key")
                .arg(pki.join("internal/gateway-key.pem"));
            let output = command.output().expect("run telehealth");
            let message = stderr(&output);
            assert!(
                output.status.code() == Some(2) && message.starts_with(&format!("{part} at")),
                "{overlay}/{part}: the settings must load (then the closed address fails): exit {:?}: {message}",
                output.status.code()
            );
        }
    }
}

#[test]
fn every_service_listens_on_every_interface_and_is_reached_at_its_kubernetes_service() {
    // What `telehealth serve <part>` and its callers read from the manifests' configuration,
    // through the binary's own loader (defaults, then the file).
    let config = repo().join("k8s/base/telehealth.toml");
    let settings = telehealth_kit::Settings::load(Some(&config))
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let kustomization = std::fs::read_to_string(repo().join("k8s/base/kustomization.yaml"))
        .expect("read the base kustomization");

    for part in Part::SERVICES {
        let service = settings.service(part).expect("a service has its settings");
        let port = service.listen.port();
        // The default is loopback: no other pod could reach it.
        assert!(
            service.listen.ip().is_unspecified(),
            "{part}.listen is {}: telehealth.toml must set it on every interface",
            service.listen
        );
        assert_eq!(
            settings.service_endpoints(part),
            vec![format!("https://{part}:{port}")],
            "{part}: the gateway and the other services dial its headless Service on its port"
        );
        let manifest = format!("{part}.yaml");
        assert!(
            kustomization.contains(&format!("  - {manifest}\n")),
            "k8s/base/kustomization.yaml must list {manifest}"
        );
        let deployment = std::fs::read_to_string(repo().join("k8s/base").join(&manifest))
            .unwrap_or_else(|e| panic!("k8s/base/{manifest}: {e}"));
        for expected in [
            format!("args: [\"serve\", \"{part}\"]"),
            format!("containerPort: {port}\n"),
            format!("port: {port}\n"),
        ] {
            assert!(
                deployment.contains(&expected),
                "k8s/base/{manifest} must hold `{}`",
                expected.trim_end()
            );
        }
    }
}

#[test]
fn the_manifest_checks_know_every_part_of_the_binary() {
    // check_manifests.py enumerates the parts (a Deployment, Service, certificate and policies
    // each); a part the binary serves but the checks do not know would go unchecked.
    let script = repo().join("k8s/tests/check_manifests.py");
    let source = std::fs::read_to_string(&script).expect("read check_manifests.py");
    let line = source
        .lines()
        .find(|line| line.starts_with("PARTS = ["))
        .expect("check_manifests.py defines PARTS on one line");
    let listed: Vec<&str> = line
        .trim_start_matches("PARTS = [")
        .trim_end_matches(']')
        .split(',')
        .map(|name| name.trim().trim_matches('"'))
        .collect();

    let parts: Vec<&str> = Part::ALL.iter().map(|part| part.name()).collect();
    assert_eq!(
        listed, parts,
        "PARTS in k8s/tests/check_manifests.py must be telehealth_kit::Part::ALL, in order"
    );

    // The calls between services the NetworkPolicies allow are the ones the code may make.
    let line = source
        .lines()
        .find(|line| line.starts_with("SERVICE_CALLS = ["))
        .expect("check_manifests.py defines SERVICE_CALLS on one line");
    let mut listed: Vec<(String, String)> = line
        .split('(')
        .skip(1)
        .map(|pair| {
            let pair = pair.split(')').next().unwrap_or_default();
            let (caller, callee) = pair.split_once(',').expect("a pair");
            let name = |s: &str| s.trim().trim_matches('"').to_owned();
            (name(caller), name(callee))
        })
        .collect();
    listed.sort();
    let mut calls: Vec<(String, String)> = Part::SERVICES
        .iter()
        .flat_map(|caller| {
            caller
                .calls()
                .iter()
                .map(|callee| (caller.name().to_owned(), callee.name().to_owned()))
        })
        .collect();
    calls.sort();
    assert_eq!(
        listed, calls,
        "SERVICE_CALLS in k8s/tests/check_manifests.py must be telehealth_kit::Part::calls"
    );
}
