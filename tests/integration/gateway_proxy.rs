//! The gateway as a transparent proxy: every call kind, messages as large as their method
//! allows and many of them, deadlines, upstream failures and failover. Real gateway, real TLS,
//! real tokens. (The message-size limits themselves: `gateway_limits`.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use telehealth_kit::{Part, identity::Role};
use telehealth_testkit::{
    RawCodec, echo,
    harness::{GatewayHarness, paths, raw_client, unary, with_token},
};
use tokio::net::TcpListener;
use tonic::{Code, codegen::http::uri::PathAndQuery};

const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;

async fn nurse(harness: &GatewayHarness) -> (tonic::transport::Channel, String) {
    let channel = harness.channel("nurse-tablet").await.expect("connects");
    (
        channel,
        harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]),
    )
}

#[tokio::test]
async fn unary_calls_pass_a_message_as_large_as_their_method_allows_both_ways() {
    let harness = GatewayHarness::start().await;
    let (channel, token) = nurse(&harness).await;
    // UpdateWound's max_request_bytes in the contract: 64 KiB.
    let payload = Bytes::from((0..64 * KIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let answer = unary(
        &channel,
        paths::UPDATE_WOUND,
        with_token(payload.clone(), &token),
    )
    .await
    .expect("64 KiB unary echo");
    assert_eq!(answer, payload, "the 64 KiB message comes back intact");
}

#[tokio::test]
async fn client_streaming_passes_many_and_large_messages() {
    let harness = GatewayHarness::start().await;
    let (channel, token) = nurse(&harness).await;
    let mut messages: Vec<Bytes> = (0..1000).map(|i| Bytes::from(vec![i as u8; 100])).collect();
    // UploadPhoto's max_request_bytes: a 1 MiB chunk and 64 KiB of envelope.
    messages.push(Bytes::from(vec![1_u8; MIB + 64 * KIB]));
    let total: usize = messages.iter().map(Bytes::len).sum();
    let mut client = raw_client(channel);
    client.ready().await.expect("ready");
    let answer = client
        .client_streaming(
            with_token(futures::stream::iter(messages), &token),
            PathAndQuery::from_static(paths::UPLOAD_PHOTO),
            RawCodec,
        )
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&answer), format!("1001 {total}"));
}

#[tokio::test]
async fn server_streaming_passes_many_and_large_messages() {
    let harness = GatewayHarness::start().await;
    let (channel, token) = nurse(&harness).await;
    for (count, size) in [(2000_usize, 64_usize), (3, 4 * MIB)] {
        let mut client = raw_client(channel.clone());
        client.ready().await.expect("ready");
        let mut stream = client
            .server_streaming(
                with_token(Bytes::from(format!("{count} {size}")), &token),
                PathAndQuery::from_static(paths::DOWNLOAD_PHOTO),
                RawCodec,
            )
            .await
            .expect("download")
            .into_inner();
        let (mut received, mut bytes) = (0, 0);
        while let Some(message) = stream.next().await {
            let message = message.expect("message");
            received += 1;
            bytes += message.len();
        }
        assert_eq!((received, bytes), (count, count * size), "{count} x {size}");
    }
}

#[tokio::test]
async fn bidirectional_streams_relay_every_message_in_order() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel("patient-tablet").await.expect("connects");
    let token = harness.token("patient-tablet", "patient-42", &[Role::Patient]);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut client = raw_client(channel);
    client.ready().await.expect("ready");
    let mut replies = client
        .streaming(
            with_token(tokio_stream::wrappers::ReceiverStream::new(rx), &token),
            PathAndQuery::from_static(paths::SIGNAL),
            RawCodec,
        )
        .await
        .expect("stream opens")
        .into_inner();
    // Ping-pong: each reply arrives before the next message is sent, proving the relay streams.
    for i in 0..300_u32 {
        let message = if i == 150 {
            // Signal's max_request_bytes: 128 KiB.
            Bytes::from(vec![9_u8; 128 * KIB])
        } else {
            Bytes::from(i.to_string())
        };
        tx.send(message.clone()).await.expect("send");
        let reply = replies.next().await.expect("a reply").expect("ok");
        assert_eq!(reply, message, "message {i} echoed in order");
    }
    drop(tx);
    assert!(
        replies.next().await.is_none(),
        "the stream ends when the client ends it"
    );
}

#[tokio::test]
async fn a_client_deadline_is_carried_to_the_service_and_expires_there() {
    let harness = GatewayHarness::start().await;
    let (channel, token) = nurse(&harness).await;

    let mut request = with_token(Bytes::new(), &token);
    request.set_timeout(Duration::from_millis(1500));
    let seen: serde_json::Value = serde_json::from_slice(
        &unary(&channel, paths::GET_WOUND, request)
            .await
            .expect("ok"),
    )
    .expect("json");
    let forwarded = seen["grpc-timeout"]
        .as_str()
        .expect("grpc-timeout forwarded");
    let millis: u64 = forwarded.trim_end_matches('m').parse().expect("in ms");
    assert!(
        millis <= 1500 && millis > 1000,
        "the service sees the client's deadline: {forwarded}"
    );

    // The client only sets the header (no local timer): the service must enforce it.
    let mut request = with_token(Bytes::from_static(b"5000"), &token);
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().expect("ascii"));
    let started = Instant::now();
    let status = unary(&channel, paths::LIST_ALERTS, request)
        .await
        .expect_err("expires");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ended at the deadline, not after the 5 s of work"
    );
}

#[tokio::test]
async fn the_gateway_caps_deadlines_at_its_maximum() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.max_deadline_seconds = 1;
    })
    .await;
    let (channel, token) = nurse(&harness).await;
    let started = Instant::now();
    let status = unary(
        &channel,
        paths::LIST_ALERTS,
        with_token(Bytes::from_static(b"5000"), &token),
    )
    .await
    .expect_err("a call without deadline gets the 1 s maximum");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_down_upstream_is_unavailable_quickly_and_used_again_once_back() {
    // Reserve a port, then free it: nothing listens there until the backend starts.
    let port = telehealth_testkit::ports::free_port();
    let harness = GatewayHarness::start_with(0, |settings| {
        settings.wound.endpoints = vec![format!("https://127.0.0.1:{port}")];
        settings.gateway.upstream.ejection_ms = 100;
    })
    .await;
    let (channel, token) = nurse(&harness).await;

    let started = Instant::now();
    let status = unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect_err("nobody listens");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "fails fast: {:?}",
        started.elapsed()
    );

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    let backend = echo::start(
        listener,
        &harness.settings.internal_tls(Part::Wound),
        Part::Wound,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await; // past the ejection
    unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect("the endpoint is used again once back");
    backend.shutdown.cancel();
}

#[tokio::test]
async fn a_second_endpoint_takes_over_when_one_fails() {
    let harness = GatewayHarness::start_with(2, |_| {}).await;
    let (channel, token) = nurse(&harness).await;
    for _ in 0..10 {
        unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
            .await
            .expect("both serve");
    }
    assert!(
        harness.backends.iter().all(|b| b.calls() > 0),
        "calls are balanced over both endpoints"
    );

    harness.backends[0].shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = harness.backends[1].calls();
    for i in 0..20 {
        unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
            .await
            .unwrap_or_else(|status| panic!("call {i} after the failure: {status:?}"));
    }
    assert_eq!(
        harness.backends[1].calls() - before,
        20,
        "the survivor took every call"
    );
}
