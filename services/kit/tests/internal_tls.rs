//! Internal mTLS and caller identity, over real TLS with certificates from the dev PKI.

use std::net::SocketAddr;

use telehealth_kit::{
    Part,
    config::TlsFiles,
    identity::{self, Identity, IdentityInterceptor, Role},
    pki::DevPki,
    tls,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Request, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Server},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A health service that, like every person-facing RPC, requires a person's identity.
async fn start_protected_service(pki: &DevPki) -> (SocketAddr, CancellationToken) {
    let files = internal_files(pki, Part::Wound);
    let config = tls::internal_server_config(&files).expect("server tls");
    let (_reporter, health) = tonic_health::server::health_reporter();
    let mut interceptor = IdentityInterceptor::new(Part::Wound);
    let person_only = move |request: Request<()>| -> Result<Request<()>, Status> {
        let request = interceptor.call(request)?;
        identity::person(&request)?;
        Ok(request)
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let incoming = tls::tls_incoming(listener, config, shutdown.clone());
    let router = Server::builder().add_service(InterceptedService::new(health, person_only));
    tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()));
    (address, shutdown)
}

fn internal_files(pki: &DevPki, part: Part) -> TlsFiles {
    let issued = pki.internal_files(part);
    TlsFiles {
        ca: pki.internal_ca_file(),
        cert: issued.cert,
        key: issued.key,
    }
}

async fn channel(
    address: SocketAddr,
    files: &TlsFiles,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://{address}"))
        .expect("uri")
        .tls_config(tls::client_tls(files).expect("client tls"))
        .expect("tls config")
        .connect()
        .await
}

fn nurse() -> Identity {
    Identity {
        subject: "nurse-claire".into(),
        roles: vec![Role::Nurse],
        org: "cds-gueret".into(),
        specialty: None,
        cert_thumbprint: "thumb".into(),
    }
}

async fn check(channel: Channel, with_identity: bool) -> Result<(), Status> {
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if with_identity {
        nurse()
            .write_metadata(request.metadata_mut())
            .expect("metadata");
    }
    HealthClient::new(channel).check(request).await.map(|_| ())
}

#[tokio::test]
async fn the_gateway_with_a_person_identity_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DevPki::new(dir.path());
    pki.ensure().expect("pki");
    let (address, shutdown) = start_protected_service(&pki).await;

    let gateway = channel(address, &internal_files(&pki, Part::Gateway))
        .await
        .expect("connects");
    check(gateway, true)
        .await
        .expect("gateway + identity is accepted");
    shutdown.cancel();
}

#[tokio::test]
async fn calls_without_a_trusted_identity_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DevPki::new(dir.path());
    pki.ensure().expect("pki");
    let (address, shutdown) = start_protected_service(&pki).await;

    let cases = [
        (
            Part::Gateway,
            false,
            Code::Unauthenticated,
            "the gateway without identity metadata",
        ),
        (
            Part::Scheduling,
            true,
            Code::PermissionDenied,
            "another service speaking for a person",
        ),
        (
            Part::Wound,
            true,
            Code::PermissionDenied,
            "the service's own certificate",
        ),
    ];
    for (peer, with_identity, expected, case) in cases {
        let channel = channel(address, &internal_files(&pki, peer))
            .await
            .expect("connects");
        let status = check(channel, with_identity).await.expect_err(case);
        assert_eq!(status.code(), expected, "{case}: {status:?}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn a_device_certificate_cannot_even_connect_to_a_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DevPki::new(dir.path());
    pki.ensure().expect("pki");
    let (address, shutdown) = start_protected_service(&pki).await;

    let device = pki.device_files("doctor-workstation");
    let files = TlsFiles {
        ca: pki.internal_ca_file(),
        cert: device.cert,
        key: device.key,
    };
    // The handshake fails (or the first call does, with TLS 1.3's late client-auth alert).
    let refused = match channel(address, &files).await {
        Err(_) => true,
        Ok(channel) => check(channel, true).await.is_err(),
    };
    assert!(refused, "a device certificate must not reach a service");
    shutdown.cancel();
}
