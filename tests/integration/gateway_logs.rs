//! Logs cannot be forged by a client: a value the client chose (here a token's `kid`, which the
//! gateway logs when it refuses the token) holding a newline stays inside one log line, in the
//! text format (escaped) and in the JSON format (one object per line). The real binary, through
//! the real gateway.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telehealth::connection::Connection;
use telehealth_kit::{
    config::TlsFiles,
    identity::Role,
    tls,
    token::{Claims, DEFAULT_AUDIENCE, DEV_ISSUER, unix_now},
};

use crate::harness::binary;

/// The line a client would like to see in the gateway's log.
const FORGED: &str = "2031-01-01T00:00:00.000000Z  INFO telehealth_gateway::proxy: admin access granted subject=intruder";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Runs `up` logging in `format`, sends one call whose token's `kid` carries [`FORGED`] after a
/// newline, stops the suite and returns what it logged.
async fn logs_after_a_forged_kid(format: &str, dir: &Path) -> String {
    let data_dir = dir.join(format);
    let log_file = dir.join(format!("{format}.log"));
    let child = Command::new(binary())
        .arg("up")
        .arg("--no-web") // the web client has its own tests (tests/browser)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("TELEHEALTH_TELEMETRY__LOG_FORMAT", format)
        .env("TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "2")
        .env_remove("TELEHEALTH_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(
            std::fs::File::create(&log_file).expect("log file"),
        ))
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let connection: Connection =
        serde_json::from_slice(&std::fs::read(&connection_file).expect("read")).expect("parse");

    let doctor = &connection.devices["doctor-workstation"];
    let device_tls = tls::client_tls(&TlsFiles {
        ca: connection.ca_file.clone(),
        cert: doctor.cert.clone(),
        key: doctor.key.clone(),
    })
    .expect("device tls");
    let gateway = connection.gateway.expect("the gateway runs in up");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{gateway}"))
        .expect("uri")
        .tls_config(device_tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect to the gateway");
    let now = unix_now();
    let claims = Claims {
        iss: DEV_ISSUER.into(),
        aud: DEFAULT_AUDIENCE.into(),
        sub: "dr-martin".into(),
        exp: now + 600,
        nbf: now,
        iat: now,
        jti: "jti-forge".into(),
        roles: vec![Role::Doctor],
        org: "cds-bourganeuf".into(),
        specialty: None,
        cnf: None,
    };
    let key = rcgen::KeyPair::generate().expect("key");
    let token = telehealth_kit::token::sign(&key, &format!("k1\n{FORGED}"), &claims).expect("sign");
    let status = telehealth_testkit::harness::unary(
        &channel,
        "/telehealth.v1.WoundService/GetWound",
        telehealth_testkit::harness::with_token(bytes::Bytes::new(), &token),
    )
    .await
    .expect_err("an unknown kid is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let stopping = Instant::now();
    while child.0.try_wait().expect("poll").is_none() {
        assert!(stopping.elapsed() < Duration::from_secs(15), "up stops");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::read_to_string(&log_file).expect("logs")
}

#[tokio::test]
async fn a_newline_in_a_client_supplied_value_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().expect("temp dir");

    let text = logs_after_a_forged_kid("text", dir.path()).await;
    let carrying: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("admin access granted"))
        .collect();
    assert!(
        !carrying.is_empty(),
        "the refusal with the kid is logged:\n{text}"
    );
    for line in &carrying {
        assert!(
            !line.starts_with("2031-") && line.contains("k1\\n2031-"),
            "the kid stays inside the refusal's line, its newline escaped: {line}"
        );
    }

    // (`up` also prints its banner on standard output; the log lines are the JSON ones.)
    let json = logs_after_a_forged_kid("json", dir.path()).await;
    let carrying: Vec<&str> = json
        .lines()
        .filter(|line| line.contains("admin access granted"))
        .collect();
    assert!(
        !carrying.is_empty(),
        "the refusal with the kid is logged:\n{json}"
    );
    for line in carrying {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("the kid stays inside one JSON object ({e}): {line}"));
        assert!(
            event.to_string().contains("k1\\n2031-"),
            "the newline is escaped in the JSON string: {line}"
        );
    }
    assert!(
        !json.lines().any(|line| line.starts_with("2031-")),
        "no forged line:\n{json}"
    );
}
