//! `telehealth up` from an empty data directory: healthy, then stopped by SIGTERM in time.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telehealth::connection::Connection;
use telehealth_kit::{Part, config::TlsFiles, tls};
use telehealth_proto::v1 as pb;

use crate::harness::binary;

/// The drain deadline the test configures; `up` must exit within it (plus start-up slack).
const DRAIN_SECONDS: u64 = 3;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[tokio::test]
async fn up_starts_from_an_empty_data_dir_reports_healthy_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("fresh");
    let child = Command::new(binary())
        .arg("up")
        .arg("--no-web") // the web client has its own tests (tests/browser)
        .arg("--data-dir")
        .arg(&data_dir)
        .env(
            "TELEHEALTH_SHUTDOWN__DRAIN_SECONDS",
            DRAIN_SECONDS.to_string(),
        )
        .env_remove("TELEHEALTH_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start telehealth up");
    let mut child = KillOnDrop(child);

    // connection.json is written once every part reports healthy.
    let connection_file = data_dir.join("connection.json");
    let started = Instant::now();
    while !connection_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "up did not become healthy"
        );
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "up exited during start-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // let the write finish
    let connection: Connection =
        serde_json::from_slice(&std::fs::read(&connection_file).expect("read")).expect("parse");

    for path in [
        &connection.ca_file,
        &connection.jwks_file,
        &connection.internal_ca_file,
    ] {
        assert!(
            path.is_absolute() && path.exists(),
            "{} exists",
            path.display()
        );
    }
    assert_eq!(connection.devices.len(), 4, "four sample devices");
    for device in connection.devices.values() {
        assert!(device.cert.exists() && device.key.exists());
    }

    // Every service answers SERVING to an independent health check over internal mTLS.
    let files = TlsFiles {
        ca: connection.internal_ca_file.clone(),
        cert: connection.internal.cert.clone(),
        key: connection.internal.key.clone(),
    };
    let client_tls = tls::client_tls(&files).expect("client tls");
    for part in Part::SERVICES {
        let address: SocketAddr = connection.services[&part];
        assert!(
            telehealth::suite::health_of(address, &client_tls, part).await,
            "{part} is healthy"
        );
    }

    // The gateway answers health to a device, refuses a call without token, and forwards a
    // call with a minted token to the service.
    let gateway = connection.gateway.expect("the gateway runs in up");
    let doctor = &connection.devices["doctor-workstation"];
    let device_tls = tls::client_tls(&TlsFiles {
        ca: connection.ca_file.clone(),
        cert: doctor.cert.clone(),
        key: doctor.key.clone(),
    })
    .expect("device tls");
    assert!(
        telehealth::suite::health_of(gateway, &device_tls, Part::Gateway).await,
        "the gateway is healthy"
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{gateway}"))
        .expect("uri")
        .tls_config(device_tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect to the gateway");
    let minted = Command::new(binary())
        .args([
            "token",
            "mint",
            "--sub",
            "dr-martin",
            "--role",
            "doctor",
            "--org",
            "cds-bourganeuf",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--bind-cert")
        .arg(&doctor.cert)
        .output()
        .expect("mint");
    let token = String::from_utf8(minted.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let path = "/telehealth.v1.WoundService/ListDoctorWounds";
    let status = telehealth_testkit::harness::unary(
        &channel,
        path,
        tonic::Request::new(bytes::Bytes::new()),
    )
    .await
    .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let result = telehealth_testkit::harness::unary(
        &channel,
        path,
        telehealth_testkit::harness::with_token(bytes::Bytes::new(), &token),
    )
    .await;
    if let Err(status) = result {
        assert!(
            !matches!(
                status.code(),
                tonic::Code::Unauthenticated
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unavailable
            ),
            "the call passes the gateway and reaches the wound service: {status:?}"
        );
    }

    // SIGTERM: the process drains and exits successfully within the deadline.
    let pid = i32::try_from(child.0.id()).expect("pid fits");
    let stopping = Instant::now();
    let sent = send_sigterm(pid);
    assert!(sent, "SIGTERM sent");
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("poll") {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(DRAIN_SECONDS + 2),
            "up must stop within the drain deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit after SIGTERM, got {status}");
}

/// Sends SIGTERM with the `kill` command (keeps `unsafe` out of the test crate).
fn send_sigterm(pid: i32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts `telehealth up` on `data_dir` with `args`; returns the process and its connection file
/// once every part is healthy (and the demo, if any, seeded).
async fn start_up(data_dir: &std::path::Path, args: &[&str]) -> (KillOnDrop, Connection) {
    let _ = std::fs::remove_file(data_dir.join("connection.json"));
    let child = Command::new(binary())
        .arg("up")
        .arg("--no-web") // the web client has its own tests (tests/browser)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "1")
        .env("TELEHEALTH_GATEWAY__LISTEN", "127.0.0.1:0")
        .env_remove("TELEHEALTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start telehealth up");
    let mut child = KillOnDrop(child);
    let connection_file = data_dir.join("connection.json");
    let started = Instant::now();
    while !connection_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "up did not become healthy"
        );
        assert!(
            child.0.try_wait().expect("poll").is_none(),
            "up exited during start-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let connection =
        serde_json::from_slice(&std::fs::read(&connection_file).expect("read")).expect("parse");
    (child, connection)
}

/// The demo's Mme Martin, born 12/03/1941, as dr-martin of the demo centre finds her.
async fn demo_martins(
    data_dir: &std::path::Path,
    connection: &Connection,
) -> Vec<pb::PatientSummary> {
    use prost::Message;
    let doctor = &connection.devices["doctor-workstation"];
    let device_tls = tls::client_tls(&TlsFiles {
        ca: connection.ca_file.clone(),
        cert: doctor.cert.clone(),
        key: doctor.key.clone(),
    })
    .expect("device tls");
    let gateway = connection.gateway.expect("gateway");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{gateway}"))
        .expect("uri")
        .tls_config(device_tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect to the gateway");
    let minted = Command::new(binary())
        .args(["token", "mint", "--sub", "dr-martin", "--role", "doctor"])
        .args(["--org", "cds-bourganeuf", "--data-dir"])
        .arg(data_dir)
        .arg("--bind-cert")
        .arg(&doctor.cert)
        .output()
        .expect("mint");
    let token = String::from_utf8(minted.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let search = pb::SearchPatientsRequest {
        name: "martin".into(),
        birth_date: "1941-03-12".into(),
        ..Default::default()
    };
    let answer = telehealth_testkit::harness::unary(
        &channel,
        "/telehealth.v1.PatientService/SearchPatients",
        telehealth_testkit::harness::with_token(bytes::Bytes::from(search.encode_to_vec()), &token),
    )
    .await
    .expect("searched");
    pb::SearchPatientsResponse::decode(answer)
        .expect("decoded")
        .patients
}

#[tokio::test]
async fn up_seeds_the_demo_on_a_first_start_only_and_starts_empty_with_no_demo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo_dir = dir.path().join("demo");
    let (child, connection) = start_up(&demo_dir, &[]).await;
    let found = demo_martins(&demo_dir, &connection).await;
    assert_eq!(found.len(), 1, "the demo's Mme Martin: {found:?}");
    assert_eq!(
        found[0].identity_status,
        pb::IdentityStatus::Qualified as i32,
        "her identity is qualified"
    );
    drop(child);

    // A second start of the same data directory seeds nothing more.
    let (child, connection) = start_up(&demo_dir, &[]).await;
    assert_eq!(
        demo_martins(&demo_dir, &connection).await.len(),
        1,
        "seeded once"
    );
    drop(child);

    let empty_dir = dir.path().join("empty");
    let (_child, connection) = start_up(&empty_dir, &["--no-demo"]).await;
    assert!(
        demo_martins(&empty_dir, &connection).await.is_empty(),
        "--no-demo starts with an empty register"
    );
}
