//! Limits on what one client may make the suite hold: the largest request message of each RPC
//! (from the contract, at the gateway and again in the services), failed authentications, and
//! streams per subject. Real gateway, real TLS, real tokens.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use telehealth_kit::{Part, identity::Role};
use telehealth_proto::access::AccessPolicy;
use telehealth_testkit::{
    RawCodec,
    harness::{GatewayHarness, paths, raw_client, unary, with_token},
};
use tonic::{Code, codegen::http::uri::PathAndQuery, transport::Channel};

use telehealth_testkit::suite::{Backend, Suite};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn limit_of(path: &str) -> usize {
    AccessPolicy::builtin()
        .expect("contract")
        .max_request_bytes(path)
        .unwrap_or_else(|| panic!("{path} has a limit")) as usize
}

/// A message of at least `size` bytes made of empty elements of the repeated field number 2
/// (tag byte 0x12, length 0): the shape that decodes into the most memory per byte.
fn empty_repeated_fields(size: usize) -> Bytes {
    Bytes::from([0x12_u8, 0x00].repeat(size.div_ceil(2)))
}

/// The status of a call that must fail (without printing a large answer if it does not).
fn refused(result: Result<Bytes, tonic::Status>, case: &str) -> tonic::Status {
    match result {
        Ok(answer) => panic!("{case}: accepted ({} bytes answered)", answer.len()),
        Err(status) => status,
    }
}

async fn upload(
    channel: &Channel,
    token: &str,
    messages: Vec<Bytes>,
) -> Result<Bytes, tonic::Status> {
    let mut client = raw_client(channel.clone());
    client.ready().await.expect("ready");
    client
        .client_streaming(
            with_token(futures::stream::iter(messages), token),
            PathAndQuery::from_static(paths::UPLOAD_PHOTO),
            RawCodec,
        )
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_message_over_its_methods_limit_is_refused_by_the_gateway_before_the_service() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel("nurse-tablet").await.expect("connects");
    let token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let unary_limit = limit_of(paths::UPDATE_WOUND);
    assert_eq!(unary_limit, 64 * KIB, "an ordinary call");

    unary(
        &channel,
        paths::UPDATE_WOUND,
        with_token(Bytes::from(vec![1_u8; unary_limit]), &token),
    )
    .await
    .expect("a message of exactly the limit passes");
    for (case, size) in [
        ("two bytes over", unary_limit + 2),
        ("the 15 MiB attack", 15 * MIB),
    ] {
        let status = refused(
            unary(
                &channel,
                paths::UPDATE_WOUND,
                with_token(empty_repeated_fields(size), &token),
            )
            .await,
            case,
        );
        assert_eq!(status.code(), Code::ResourceExhausted, "{case}: {status:?}");
        assert!(
            status.message().contains(&unary_limit.to_string()),
            "{case}: the message says the limit: {}",
            status.message()
        );
    }

    // Uploads are allowed their chunk size, no more.
    let upload_limit = limit_of(paths::UPLOAD_PHOTO);
    assert_eq!(upload_limit, MIB + 64 * KIB);
    let answer = upload(
        &channel,
        &token,
        vec![Bytes::from(vec![2_u8; upload_limit]); 2],
    )
    .await
    .expect("two chunks of the limit pass");
    assert_eq!(answer, format!("2 {}", 2 * upload_limit));
    let status = upload(
        &channel,
        &token,
        vec![
            Bytes::from(vec![2_u8; 100]),
            Bytes::from(vec![2_u8; upload_limit + 1]),
        ],
    )
    .await
    .expect_err("a chunk over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    unary(
        &channel,
        paths::UPDATE_WOUND,
        with_token(Bytes::from_static(b"still fine"), &token),
    )
    .await
    .expect("the connection is still usable");
}

#[tokio::test]
async fn a_service_refuses_a_message_over_its_methods_limit_before_decoding_it() {
    let suite = Suite::start(Backend::Sqlite).await.expect("sqlite");
    let directory = suite.running.as_ref().expect("running").services[&Part::Directory];
    // Called directly over internal mTLS, as scheduling: no gateway in front.
    let channel = suite.internal_channel(Part::Scheduling, directory).await;
    const CHECK_MEMBERS: &str = "/telehealth.v1.DirectoryService/CheckMembers";
    let limit = limit_of(CHECK_MEMBERS);

    for (case, size) in [
        ("the 15 MiB attack", 15 * MIB),
        ("one element over the limit", limit + 2),
    ] {
        let status = unary(
            &channel,
            CHECK_MEMBERS,
            tonic::Request::new(empty_repeated_fields(size)),
        )
        .await
        .expect_err(case);
        assert_eq!(status.code(), Code::ResourceExhausted, "{case}: {status:?}");
        assert!(
            status.message().contains(&limit.to_string()),
            "{case}: {}",
            status.message()
        );
    }

    // Within the wire limit, the repeated field is bounded by the service itself.
    let mut message = vec![0x0a, 8];
    message.extend_from_slice(b"cds-test");
    message.extend(empty_repeated_fields(65 * 2));
    let status = unary(
        &channel,
        CHECK_MEMBERS,
        tonic::Request::new(Bytes::from(message)),
    )
    .await
    .expect_err("65 subjects");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("at most 64"),
        "{}",
        status.message()
    );
    suite.stop().await;
}

/// Keeps a `Signal` stream of the echo backend open; the returned sender ends it when dropped.
pub async fn open_signal(
    channel: &Channel,
    token: &str,
) -> Result<(tokio::sync::mpsc::Sender<Bytes>, tonic::Streaming<Bytes>), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut client = raw_client(channel.clone());
    client.ready().await.expect("ready");
    let mut replies = client
        .streaming(
            with_token(tokio_stream::wrappers::ReceiverStream::new(rx), token),
            PathAndQuery::from_static(paths::SIGNAL),
            RawCodec,
        )
        .await?
        .into_inner();
    tx.send(Bytes::from_static(b"hello")).await.expect("send");
    match tokio::time::timeout(Duration::from_secs(5), replies.next()).await {
        Ok(Some(Ok(_))) => Ok((tx, replies)),
        Ok(Some(Err(status))) => Err(status),
        Ok(None) => Err(tonic::Status::unknown("stream ended")),
        Err(_) => panic!("no echo within 5 s"),
    }
}

#[tokio::test]
async fn failed_authentications_lock_out_the_certificate_then_the_address_before_any_token_check() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings
            .gateway
            .limits
            .failed_auth_per_minute_per_certificate = 3;
        settings.gateway.limits.failed_auth_per_minute_per_address = 5;
    })
    .await;
    let nurse = harness.channel("nurse-tablet").await.expect("connects");
    let nurse_token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let doctor = harness
        .channel("doctor-workstation")
        .await
        .expect("connects");
    let doctor_token = harness.token("doctor-workstation", "dr-martin", &[Role::Doctor]);
    let bad = || with_token(Bytes::new(), "not.a.token");
    let good = |token: &str| with_token(Bytes::new(), token);

    for attempt in 1..=3 {
        let status = unary(&nurse, paths::GET_WOUND, bad())
            .await
            .expect_err("a bad token");
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    let status = unary(&nurse, paths::GET_WOUND, good(&nurse_token))
        .await
        .expect_err("the certificate is locked out, even with a valid token");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("failed authentications"),
        "{}",
        status.message()
    );
    use tonic_types::StatusExt;
    let retry = status.get_details_retry_info().expect("RetryInfo detail");
    assert!(
        retry
            .retry_delay
            .is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(20)),
        "{retry:?}"
    );
    assert_eq!(
        harness.backends[0].calls(),
        0,
        "nothing reached the service"
    );

    unary(&doctor, paths::GET_WOUND, good(&doctor_token))
        .await
        .expect("another certificate from the same address is still served");
    for _ in 0..2 {
        let status = unary(&doctor, paths::GET_WOUND, bad())
            .await
            .expect_err("a bad token");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = unary(&doctor, paths::GET_WOUND, good(&doctor_token))
        .await
        .expect_err("the address has used up its 5 failures");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let refused = match harness.channel("patient-tablet").await {
        Err(_) => true,
        Ok(channel) => {
            let token = harness.token("patient-tablet", "patient-42", &[Role::Patient]);
            unary(&channel, paths::GET_WOUND, good(&token))
                .await
                .is_err()
        }
    };
    assert!(
        refused,
        "a locked-out address gets nothing, whatever the device"
    );
    assert_eq!(
        harness.backends[0].calls(),
        1,
        "only the one good call got through"
    );
}

#[tokio::test]
async fn one_subject_holds_at_most_its_cap_of_open_streams() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.max_streams_per_subject = 2;
    })
    .await;
    let channel = harness.channel("patient-tablet").await.expect("connects");
    let second_device = harness.channel("nurse-tablet").await.expect("connects");
    let token = harness.token("patient-tablet", "patient-42", &[Role::Patient]);
    let first = open_signal(&channel, &token).await.expect("first stream");
    let _second = open_signal(&channel, &token).await.expect("second stream");

    let status = open_signal(&channel, &token)
        .await
        .expect_err("a third stream of the same subject");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("at most 2"),
        "{}",
        status.message()
    );
    // The cap is the subject's, over all its connections and devices.
    let same_subject_elsewhere = harness.token("nurse-tablet", "patient-42", &[Role::Patient]);
    let status = open_signal(&second_device, &same_subject_elsewhere)
        .await
        .expect_err("the same subject on another device");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let other = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let _other_stream = open_signal(&second_device, &other)
        .await
        .expect("another subject is not limited");
    unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &other))
        .await
        .expect_err("patients may not read wounds, but unary calls are not counted");

    let (sender, mut replies) = first;
    drop(sender);
    while replies.next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    open_signal(&channel, &token)
        .await
        .expect("a slot came back when a stream ended");
}

#[tokio::test]
async fn refused_tls_handshakes_count_against_the_address() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.failed_auth_per_minute_per_address = 2;
    })
    .await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = telehealth_kit::pki::DevPki::new(other_dir.path());
    other.ensure().expect("another PKI");
    let foreign = other.device_files("nurse-tablet");
    for attempt in 1..=2 {
        let refused = match telehealth_testkit::harness::channel_to(
            harness.gateway,
            &harness.settings,
            &(foreign.cert.clone(), foreign.key.clone()),
        )
        .await
        {
            Err(_) => true,
            Ok(channel) => unary(
                &channel,
                paths::GET_WOUND,
                tonic::Request::new(Bytes::new()),
            )
            .await
            .is_err(),
        };
        assert!(refused, "attempt {attempt}: a certificate of another CA");
    }
    // A peer that connects and leaves without TLS is not a failed attempt.
    drop(
        tokio::net::TcpStream::connect(harness.gateway)
            .await
            .expect("tcp"),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let refused = match harness.channel("nurse-tablet").await {
        Err(_) => true,
        Ok(channel) => unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "the address used up its failed attempts: even a valid device is turned away"
    );
}
