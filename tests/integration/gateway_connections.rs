//! Client connections of the gateway: deadlines for the TLS handshake and the HTTP/2 preface, the
//! idle timeout, caps per address and per certificate, the maximum connection age, and the
//! connections of a certificate revoked while they are open. Real gateway, real TLS.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use telehealth_kit::{identity::Role, pki::DevPki};
use telehealth_testkit::harness::{GatewayHarness, paths, unary, with_token};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Streaming;

use crate::gateway_limits::open_signal;

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a client sends first.
const HTTP2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A TLS connection to the gateway with `device`'s certificate, ALPN h2, nothing sent yet.
async fn tls_to(
    harness: &GatewayHarness,
    device: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pki = harness.settings.pki_dir();
    let (cert, key) = harness.device_files(device);
    let mut config = rustls::ClientConfig::builder_with_provider(telehealth_kit::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(telehealth_kit::tls::load_roots(&pki.join("ca.pem")).expect("ca"))
        .with_client_auth_cert(
            telehealth_kit::tls::load_certs(&cert).expect("cert"),
            telehealth_kit::tls::load_key(&key).expect("key"),
        )
        .expect("client config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(harness.gateway).await.expect("tcp");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("TLS handshake")
}

/// How long until the gateway closes `stream` (reading and discarding what it sends), or
/// `None` if it is still open after `patience`.
async fn closed_within(mut stream: impl AsyncRead + Unpin, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = vec![0_u8; 16 * 1024];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// True if a `Signal` stream still echoes a message within a second.
async fn echoes(sender: &tokio::sync::mpsc::Sender<Bytes>, replies: &mut Streaming<Bytes>) -> bool {
    if sender.send(Bytes::from_static(b"ping")).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(1), replies.message()).await,
        Ok(Ok(Some(_)))
    )
}

#[tokio::test]
async fn a_client_that_stalls_before_tls_or_before_http2_is_disconnected() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.handshake_timeout_seconds = 1;
        settings.gateway.limits.preface_timeout_seconds = 1;
    })
    .await;

    let silent_tcp = TcpStream::connect(harness.gateway).await.expect("tcp");
    let after = closed_within(silent_tcp, Duration::from_secs(5))
        .await
        .expect("a client that never starts TLS is disconnected");
    assert!(after >= Duration::from_millis(900), "{after:?}");

    let silent_tls = tls_to(&harness, "nurse-tablet").await;
    let after = closed_within(silent_tls, Duration::from_secs(5))
        .await
        .expect("a client that completes TLS and never speaks HTTP/2 is disconnected");
    assert!(after >= Duration::from_millis(900), "{after:?}");

    let mut not_http2 = tls_to(&harness, "nurse-tablet").await;
    not_http2
        .write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .expect("write");
    let after = closed_within(not_http2, Duration::from_secs(5))
        .await
        .expect("a client speaking something else is disconnected");
    assert!(after < Duration::from_millis(900), "at once: {after:?}");
}

#[tokio::test]
async fn a_connection_without_calls_is_closed_after_the_idle_timeout() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.idle_timeout_seconds = 1;
        settings.gateway.limits.max_connection_age_grace_seconds = 1;
    })
    .await;
    let mut idle = tls_to(&harness, "nurse-tablet").await;
    idle.write_all(HTTP2_START).await.expect("preface");
    let after = closed_within(idle, Duration::from_secs(5))
        .await
        .expect("an idle HTTP/2 connection is closed");
    assert!(after >= Duration::from_millis(900), "{after:?}");
}

#[tokio::test]
async fn connections_per_address_and_per_certificate_are_capped() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.max_connections_per_address = 3;
        settings.gateway.limits.max_connections_per_certificate = 1;
    })
    .await;
    let nurse_token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let nurse = harness.channel("nurse-tablet").await.expect("connects");
    unary(
        &nurse,
        paths::GET_WOUND,
        with_token(Bytes::new(), &nurse_token),
    )
    .await
    .expect("the first connection of the certificate is served");

    let second = match harness.channel("nurse-tablet").await {
        Err(_) => None,
        Ok(channel) => Some(
            unary(
                &channel,
                paths::GET_WOUND,
                with_token(Bytes::new(), &nurse_token),
            )
            .await,
        ),
    };
    assert!(
        !matches!(second, Some(Ok(_))),
        "a second connection with the same certificate is refused"
    );

    let doctor_token = harness.token("doctor-workstation", "dr-martin", &[Role::Doctor]);
    let doctor = harness
        .channel("doctor-workstation")
        .await
        .expect("connects");
    unary(
        &doctor,
        paths::GET_WOUND,
        with_token(Bytes::new(), &doctor_token),
    )
    .await
    .expect("another certificate from the address is served (2 of 3)");

    // The third connection of the address, not even TLS yet.
    let held = TcpStream::connect(harness.gateway).await.expect("tcp");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let patient_token = harness.token("patient-tablet", "patient-42", &[Role::Patient]);
    let fourth_refused = match harness.channel("patient-tablet").await {
        Err(_) => true,
        Ok(channel) => open_signal(&channel, &patient_token).await.is_err(),
    };
    assert!(
        fourth_refused,
        "a fourth connection from the address is refused"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let patient = harness
        .channel("patient-tablet")
        .await
        .expect("a slot came back");
    open_signal(&patient, &patient_token)
        .await
        .expect("served once the address is under its cap");
    unary(
        &nurse,
        paths::GET_WOUND,
        with_token(Bytes::new(), &nurse_token),
    )
    .await
    .expect("the first connections were never disturbed");
}

#[tokio::test]
async fn a_connection_past_its_maximum_age_gets_goaway_and_is_cut_after_the_grace() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.max_connection_age_seconds = 2;
        settings.gateway.limits.max_connection_age_grace_seconds = 2;
    })
    .await;
    let token = harness.token("patient-tablet", "patient-42", &[Role::Patient]);
    let channel = harness.channel("patient-tablet").await.expect("connects");
    let opened = Instant::now();
    let (sender, mut replies) = open_signal(&channel, &token).await.expect("stream");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        echoes(&sender, &mut replies).await,
        "past the age (2 s ± 10 %), a call already open goes on during the grace"
    );
    let mut cut_after = None;
    while opened.elapsed() < Duration::from_secs(8) {
        if !echoes(&sender, &mut replies).await {
            cut_after = Some(opened.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cut_after = cut_after.expect("the open call is cut once the grace is over");
    assert!(
        cut_after >= Duration::from_millis(3600) && cut_after <= Duration::from_millis(5500),
        "cut at age + grace (4 s ± 0.2 s), not {cut_after:?}"
    );

    let fresh = harness.channel("patient-tablet").await.expect("reconnects");
    open_signal(&fresh, &token)
        .await
        .expect("a new connection is served");
}

#[tokio::test]
async fn the_open_connections_of_a_revoked_certificate_are_closed_when_the_crl_is_reloaded() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.crl_files = vec![settings.pki_dir().join("ca-crl.pem")];
        settings.gateway.reload_interval_seconds = 1;
    })
    .await;
    let nurse_token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let nurse = harness.channel("nurse-tablet").await.expect("connects");
    let (nurse_sender, mut nurse_replies) =
        open_signal(&nurse, &nurse_token).await.expect("stream");
    let doctor_token = harness.token("doctor-workstation", "dr-martin", &[Role::Doctor]);
    let doctor = harness
        .channel("doctor-workstation")
        .await
        .expect("connects");
    let (doctor_sender, mut doctor_replies) =
        open_signal(&doctor, &doctor_token).await.expect("stream");

    DevPki::new(harness.settings.pki_dir())
        .revoke_device("nurse-tablet")
        .expect("revoke");
    let revoked = Instant::now();
    let mut cut_after = None;
    while revoked.elapsed() < Duration::from_secs(6) {
        if !echoes(&nurse_sender, &mut nurse_replies).await {
            cut_after = Some(revoked.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cut_after.is_some(),
        "the revoked device's open stream is cut within a reload interval or two"
    );
    assert!(
        unary(
            &nurse,
            paths::GET_WOUND,
            with_token(Bytes::new(), &nurse_token)
        )
        .await
        .is_err(),
        "the revoked device cannot connect again"
    );
    assert!(
        echoes(&doctor_sender, &mut doctor_replies).await,
        "other devices' connections are untouched"
    );
}
