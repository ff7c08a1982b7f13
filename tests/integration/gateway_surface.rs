//! What the gateway offers besides proxying: health and reflection for tools, JWKS from a URL,
//! and statuses with details passed through untouched.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use telehealth_kit::identity::Role;
use telehealth_testkit::harness::{GatewayHarness, paths, unary, with_token};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn reflection_lists_the_contract_with_a_certificate_and_no_token() {
    let harness = GatewayHarness::start().await;
    let channel = harness
        .channel("doctor-workstation")
        .await
        .expect("connects");
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("ok")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in [
        "telehealth.v1.SchedulingService",
        "telehealth.v1.WoundService",
        "telehealth.v1.ExpertiseService",
        "telehealth.v1.SignallingService",
    ] {
        assert!(names.contains(&service), "{service} in {names:?}");
    }

    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn statuses_with_details_and_trailers_cross_the_gateway_intact() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel("nurse-tablet").await.expect("connects");
    let token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let status = unary(
        &channel,
        paths::GET_ASSESSMENT,
        with_token(Bytes::new(), &token),
    )
    .await
    .expect_err("the service refuses");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), "assessment is locked");
    assert_eq!(status.details(), b"\x08\x09detail-bytes");
    assert_eq!(
        status
            .metadata()
            .get("x-lock-owner")
            .map(|v| v.to_str().ok()),
        Some(Some("nurse-claire"))
    );
}

/// Serves `body` to every HTTP request on a free port; counts requests.
async fn serve_jwks(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/realms/sante/certs",
        listener.local_addr().expect("addr")
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn keys_can_come_from_the_identity_providers_jwks_url() {
    let (_dir, settings) = telehealth_testkit::harness::prepared_settings();
    let jwks = std::fs::read(settings.data_dir.join("jwt/jwks.json")).expect("jwks");
    let (url, hits) = serve_jwks(jwks).await;
    let harness = GatewayHarness::start_with(1, |settings_under_test| {
        // Same signing key as the served JWKS: reuse the prepared data directory's jwt folder.
        let jwt_dir = settings_under_test.data_dir.join("jwt");
        std::fs::copy(
            settings.data_dir.join("jwt/signing-key.pem"),
            jwt_dir.join("signing-key.pem"),
        )
        .expect("key");
        std::fs::remove_file(jwt_dir.join("jwks.json")).expect("no local JWKS");
        settings_under_test.gateway.jwt.jwks_url = Some(url.clone());
    })
    .await;
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "the gateway fetched the JWKS URL"
    );
    let channel = harness.channel("nurse-tablet").await.expect("connects");
    let token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect("a token signed with the provider's key is accepted");
}
