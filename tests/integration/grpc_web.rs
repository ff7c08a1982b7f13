//! gRPC-Web through the real gateway (mTLS, tokens, the contract's rules), as a browser sends
//! it: binary and text framing for unary calls, the trailers read from the body, refusals with
//! their status, the contract's message limit, a server stream ended by its deadline, and CORS
//! off unless an origin is listed.

use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, header::CONTENT_TYPE};
use http_body_util::BodyExt;
use prost::Message;
use telehealth_kit::identity::Role;
use telehealth_proto::v1 as pb;
use telehealth_testkit::suite::{Backend, Person, Suite};
use tonic::{body::Body, transport::Channel};
use tower::ServiceExt;

const CENTRE: &str = "cds-bourganeuf";

/// What a gRPC-Web answer held: its messages, and its status from the trailer message (or from
/// the headers, for an answer with trailers only).
#[derive(Debug)]
struct WebAnswer {
    content_type: String,
    messages: Vec<Bytes>,
    status: Option<String>,
    message: Option<String>,
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Sends `message` to `path` as gRPC-Web (`text`: base64) with `headers`, and reads the answer.
async fn call(
    channel: &Channel,
    path: &str,
    message: &[u8],
    text: bool,
    headers: &[(&'static str, String)],
) -> WebAnswer {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = if text {
        Bytes::from(b64.encode(framed(message)))
    } else {
        Bytes::from(framed(message))
    };
    let mut request = Request::post(format!("https://localhost{path}"))
        .header(
            CONTENT_TYPE,
            if text {
                "application/grpc-web-text"
            } else {
                "application/grpc-web+proto"
            },
        )
        .header("x-grpc-web", "1")
        .body(Body::new(http_body_util::Full::new(body)))
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("header"));
    }
    let response = channel.clone().oneshot(request).await.expect("an answer");
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (mut status, mut status_message) = (header("grpc-status"), header("grpc-message"));
    let collected = response.into_body().collect().await.expect("the body");
    assert!(
        collected.trailers().is_none(),
        "no HTTP trailers for a browser"
    );
    let raw = collected.to_bytes();
    let mut bytes = if text {
        // Chunks padded one by one: decode 4 characters at a time.
        let mut out = Vec::new();
        for group in raw.chunks(4) {
            out.extend(b64.decode(group).expect("base64"));
        }
        Bytes::from(out)
    } else {
        raw
    };
    let mut messages = Vec::new();
    while bytes.remaining() >= 5 {
        let flag = bytes.get_u8();
        let length = bytes.get_u32() as usize;
        let payload = bytes.split_to(length);
        if flag & 0x80 != 0 {
            for line in std::str::from_utf8(&payload).expect("utf-8").split("\r\n") {
                if let Some((name, value)) = line.split_once(": ") {
                    match name {
                        "grpc-status" => status = Some(value.to_owned()),
                        "grpc-message" => status_message = Some(value.to_owned()),
                        _ => {}
                    }
                }
            }
        } else {
            messages.push(payload);
        }
    }
    assert!(bytes.is_empty(), "whole frames only");
    WebAnswer {
        content_type,
        messages,
        status,
        message: status_message,
    }
}

#[tokio::test]
async fn browsers_call_through_the_gateway_with_grpc_web_under_the_same_rules() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite");
    let admin = Person::with_roles("admin-web", CENTRE, &[Role::Admin]);
    let channel = suite.channel_to(suite.gateway(), &admin).await;
    let bearer = format!("Bearer {}", suite.token(&admin));

    // A sign-in RPC (no token) in both framings: the message, then the status from the body.
    for text in [false, true] {
        let answer = call(
            &channel,
            "/telehealth.v1.AuthService/ListProviders",
            &pb::ListProvidersRequest {}.encode_to_vec(),
            text,
            &[],
        )
        .await;
        let expected = if text {
            "application/grpc-web-text+proto"
        } else {
            "application/grpc-web+proto"
        };
        assert_eq!(answer.content_type, expected, "{answer:?}");
        assert_eq!(answer.status.as_deref(), Some("0"), "{answer:?}");
        assert_eq!(answer.messages.len(), 1, "{answer:?}");
        pb::ListProvidersResponse::decode(answer.messages[0].clone()).expect("the answer");
    }

    // A role RPC with the administrator's token works; without it, or with a nurse's role, it
    // is refused as over gRPC.
    let members = call(
        &channel,
        "/telehealth.v1.DirectoryService/ListMembers",
        &pb::ListMembersRequest::default().encode_to_vec(),
        false,
        &[("authorization", bearer.clone())],
    )
    .await;
    assert_eq!(members.status.as_deref(), Some("0"), "{members:?}");
    pb::ListMembersResponse::decode(members.messages[0].clone()).expect("members");
    let no_token = call(
        &channel,
        "/telehealth.v1.DirectoryService/ListMembers",
        &pb::ListMembersRequest::default().encode_to_vec(),
        true,
        &[],
    )
    .await;
    assert_eq!(no_token.status.as_deref(), Some("16"), "{no_token:?}");
    assert!(no_token.messages.is_empty());
    let nurse = Person::nurse("nurse-web", CENTRE);
    let nurse_channel = suite.channel_to(suite.gateway(), &nurse).await;
    let refused = call(
        &nurse_channel,
        "/telehealth.v1.AuthService/ListSessions",
        &pb::ListSessionsRequest { organisation: true }.encode_to_vec(),
        false,
        &[("authorization", format!("Bearer {}", suite.token(&nurse)))],
    )
    .await;
    assert!(
        matches!(refused.status.as_deref(), Some("7") | Some("5")),
        "{refused:?}"
    );

    // The contract's message limit applies to the decoded message (ListProviders: 4096 bytes).
    let oversized = call(
        &channel,
        "/telehealth.v1.AuthService/ListProviders",
        &vec![0u8; 8192],
        true,
        &[],
    )
    .await;
    assert_eq!(oversized.status.as_deref(), Some("8"), "{oversized:?}");

    // A server stream: open until its deadline, then DEADLINE_EXCEEDED in the body.
    let started = std::time::Instant::now();
    let watch = tokio::time::timeout(
        Duration::from_secs(20),
        call(
            &channel,
            "/telehealth.v1.WoundService/WatchAlerts",
            &pb::WatchAlertsRequest::default().encode_to_vec(),
            false,
            &[
                (
                    "authorization",
                    format!("Bearer {}", suite.token(&Person::doctor("dr-web", CENTRE))),
                ),
                ("grpc-timeout", "1S".to_owned()),
            ],
        ),
    )
    .await
    .expect("the deadline ends the stream");
    assert_eq!(watch.status.as_deref(), Some("4"), "{watch:?}");
    assert!(
        watch
            .message
            .as_deref()
            .is_some_and(|m| m.contains("deadline")),
        "{watch:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "open until the deadline: {:?}",
        started.elapsed()
    );

    // CORS: no origin is allowed by default; a preflight gets nothing.
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("https://localhost/telehealth.v1.AuthService/ListProviders")
        .header("origin", "https://elsewhere.example.com")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .expect("preflight");
    let answer = channel.clone().oneshot(preflight).await.expect("an answer");
    assert_eq!(answer.status(), http::StatusCode::FORBIDDEN);
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_gateway_serves_the_web_client_with_its_security_headers_to_certified_devices() {
    let web = tempfile::tempdir().expect("dir");
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><html lang=\"fr\"><title>Télésanté</title></html>",
    )
    .expect("index");
    let root = web.path().to_owned();
    let suite = Suite::start_with(Backend::Sqlite, move |settings| {
        settings.gateway.web_root = Some(root);
        settings.gateway.sign_in_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await
    .expect("suite");
    let get = |channel: Channel, path: &'static str| async move {
        let request = Request::get(format!("https://localhost{path}"))
            .body(Body::empty())
            .expect("request");
        let response = channel.oneshot(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts, bytes)
    };

    // With a device certificate, on the main port: the page, with its policy.
    let doctor = Person::doctor("dr-web", CENTRE);
    let channel = suite.channel_to(suite.gateway(), &doctor).await;
    let (parts, body) = get(channel.clone(), "/").await;
    assert_eq!(parts.status, http::StatusCode::OK);
    assert!(body.starts_with(b"<!doctype html>"), "{body:?}");
    let csp = parts.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(parts.headers["x-content-type-options"], "nosniff");
    let (parts, _) = get(channel.clone(), "/../../etc/passwd").await;
    assert_eq!(parts.status, http::StatusCode::NOT_FOUND);

    // Without a certificate the main port does not even finish its handshake.
    let ca = std::fs::read(suite.settings.pki_dir().join("ca.pem")).expect("ca");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let anonymous = async {
        let channel = Channel::from_shared(format!("https://{}", suite.gateway()))
            .expect("uri")
            .tls_config(tls.clone())
            .expect("tls")
            .connect()
            .await?;
        let request = Request::get("https://localhost/")
            .body(Body::empty())
            .expect("request");
        channel.oneshot(request).await.map(|r| r.status())
    }
    .await;
    assert!(
        !matches!(anonymous, Ok(http::StatusCode::OK)),
        "the page loads without a certificate: {anonymous:?}"
    );

    // The sign-in port serves the page to a device without a certificate (enrolment).
    let sign_in = suite
        .running
        .as_ref()
        .expect("running")
        .sign_in
        .expect("the sign-in port");
    let channel = Channel::from_shared(format!("https://{sign_in}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("no certificate needed there");
    let (parts, body) = get(channel, "/").await;
    assert_eq!(parts.status, http::StatusCode::OK);
    assert!(body.starts_with(b"<!doctype html>"));
}
