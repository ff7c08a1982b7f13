//! The gateway's door: TLS client certificates, tokens, the contract's policy, identity
//! propagation. Everything through the real gateway, real TLS and real tokens.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use telehealth_kit::{
    identity::Role,
    pki::{DevPki, LeafKind, Validity},
    token::{
        Claims, Confirmation, DEFAULT_AUDIENCE, DEV_ISSUER, DevSigner, thumbprint_of_pem_file,
        unix_now,
    },
};
use telehealth_testkit::harness::{GatewayHarness, channel_to, paths, unary, with_token};
use tonic::Code;

const NURSE_DEVICE: &str = "nurse-tablet";

fn nurse_claims(harness: &GatewayHarness) -> Claims {
    let cert = harness.device_files(NURSE_DEVICE).0;
    let now = unix_now();
    Claims {
        iss: DEV_ISSUER.into(),
        aud: DEFAULT_AUDIENCE.into(),
        sub: "nurse-claire".into(),
        exp: now + 600,
        nbf: now,
        iat: now,
        jti: "jti-1".into(),
        roles: vec![Role::Nurse],
        org: "cds-gueret".into(),
        specialty: None,
        cnf: Some(Confirmation {
            x5t_s256: thumbprint_of_pem_file(&cert).expect("thumbprint"),
        }),
    }
}

fn signer(harness: &GatewayHarness) -> DevSigner {
    DevSigner::new(harness.settings.data_dir.join("jwt"))
}

/// `claims` signed with the dev key under a hand-made JWT `header` (the dev key's `kid` and
/// ES256 are set).
fn sign_with_header(
    harness: &GatewayHarness,
    mut header: jsonwebtoken::Header,
    claims: &Claims,
) -> String {
    let signer = signer(harness);
    header.alg = jsonwebtoken::Algorithm::ES256;
    header.kid = Some(signer.kid().expect("kid"));
    let pem = std::fs::read_to_string(signer.key_file()).expect("dev key");
    let key = rcgen::KeyPair::from_pem(&pem).expect("key");
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .expect("sign")
}

fn seen(payload: &Bytes) -> serde_json::Value {
    serde_json::from_slice(payload).expect("echo answers JSON")
}

#[tokio::test]
async fn a_valid_certificate_bound_token_and_allowed_role_reach_the_service() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel(NURSE_DEVICE).await.expect("connects");
    let token = harness.token(NURSE_DEVICE, "nurse-claire", &[Role::Nurse]);

    let answer = unary(
        &channel,
        paths::GET_WOUND,
        with_token(Bytes::from_static(b"w1"), &token),
    )
    .await
    .expect("accepted");
    let seen = seen(&answer);
    assert_eq!(seen["x-telehealth-subject"], "nurse-claire");
    assert_eq!(seen["x-telehealth-roles"], "nurse");
    assert_eq!(seen["x-telehealth-org"], "cds-gueret");
    let thumbprint = thumbprint_of_pem_file(&harness.device_files(NURSE_DEVICE).0).expect("thumb");
    assert_eq!(seen["x-telehealth-cert-thumbprint"], thumbprint.as_str());
    assert!(
        seen.get("authorization").is_none(),
        "the token is not forwarded to services"
    );
    assert!(
        seen["caller"]
            .as_str()
            .is_some_and(|c| c.starts_with("Some(Person(")),
        "the service sees a person vouched for by the gateway: {}",
        seen["caller"]
    );
}

#[tokio::test]
async fn identity_metadata_sent_by_a_client_never_reaches_the_service() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel(NURSE_DEVICE).await.expect("connects");
    let token = harness.token(NURSE_DEVICE, "nurse-claire", &[Role::Nurse]);
    let mut request = with_token(Bytes::new(), &token);
    for (key, value) in [
        ("x-telehealth-subject", "dr-admin"),
        ("x-telehealth-roles", "admin,doctor"),
        ("x-telehealth-org", "chu-limoges"),
        ("x-telehealth-specialty", "dermatology"),
        ("x-telehealth-cert-thumbprint", "forged"),
    ] {
        request
            .metadata_mut()
            .insert(key, value.parse().expect("ascii"));
    }
    let seen = seen(
        &unary(&channel, paths::GET_WOUND, request)
            .await
            .expect("accepted"),
    );
    assert_eq!(seen["x-telehealth-subject"], "nurse-claire");
    assert_eq!(seen["x-telehealth-roles"], "nurse");
    assert_eq!(seen["x-telehealth-org"], "cds-gueret");
    assert!(
        seen.get("x-telehealth-specialty").is_none(),
        "a spoofed specialty is dropped"
    );
    assert_ne!(seen["x-telehealth-cert-thumbprint"], "forged");
}

#[tokio::test]
async fn refused_at_tls_without_a_valid_client_certificate() {
    let harness = GatewayHarness::start().await;
    let pki = DevPki::new(harness.settings.pki_dir());
    let expired = pki
        .issue(
            &LeafKind::Device {
                name: "expired-tablet".into(),
            },
            Validity {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
            },
        )
        .expect("issue expired");
    let not_yet = pki
        .issue(
            &LeafKind::Device {
                name: "future-tablet".into(),
            },
            Validity {
                not_before: time::OffsetDateTime::now_utc() + time::Duration::days(1),
                not_after: time::OffsetDateTime::now_utc() + time::Duration::days(30),
            },
        )
        .expect("issue not yet valid");
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = DevPki::new(other_dir.path());
    other.ensure().expect("other PKI");
    let foreign = other.device_files("nurse-tablet");
    // The gateway's own server certificate has only the serverAuth usage.
    let wrong_eku = pki.gateway_server_files();

    let token = harness.token(NURSE_DEVICE, "nurse-claire", &[Role::Nurse]);
    let cases = [
        ("expired certificate", (expired.cert, expired.key)),
        ("not yet valid certificate", (not_yet.cert, not_yet.key)),
        ("certificate from another CA", (foreign.cert, foreign.key)),
        (
            "certificate without clientAuth usage",
            (wrong_eku.cert, wrong_eku.key),
        ),
    ];
    for (case, files) in cases {
        let refused = match channel_to(harness.gateway, &harness.settings, &files).await {
            Err(_) => true,
            Ok(channel) => unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
                .await
                .is_err(),
        };
        assert!(refused, "{case} must be refused");
    }

    // No client certificate at all.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(harness.settings.pki_dir().join("ca.pem")).expect("ca"),
        ))
        .domain_name("localhost");
    let refused =
        match tonic::transport::Channel::from_shared(format!("https://{}", harness.gateway))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
        {
            Err(_) => true,
            Ok(channel) => unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
                .await
                .is_err(),
        };
    assert!(refused, "a client without certificate must be refused");
    assert_eq!(
        harness.backends[0].calls(),
        0,
        "nothing reached the service"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_once_the_crl_is_reloaded() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.crl_files = vec![settings.pki_dir().join("ca-crl.pem")];
        settings.gateway.reload_interval_seconds = 1;
    })
    .await;
    let token = harness.token(NURSE_DEVICE, "nurse-claire", &[Role::Nurse]);
    let channel = harness
        .channel(NURSE_DEVICE)
        .await
        .expect("connects before revocation");
    unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect("accepted");

    DevPki::new(harness.settings.pki_dir())
        .revoke_device(NURSE_DEVICE)
        .expect("revoke");
    tokio::time::sleep(Duration::from_millis(2500)).await; // > reload interval

    let refused = match harness.channel(NURSE_DEVICE).await {
        Err(_) => true,
        Ok(channel) => unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
            .await
            .is_err(),
    };
    assert!(refused, "a revoked device must be refused at the handshake");
    let doctor = harness
        .channel("doctor-workstation")
        .await
        .expect("others still connect");
    let doctor_token = harness.token("doctor-workstation", "dr-martin", &[Role::Doctor]);
    unary(
        &doctor,
        paths::GET_WOUND,
        with_token(Bytes::new(), &doctor_token),
    )
    .await
    .expect("a device that is not revoked is still accepted");
}

#[tokio::test]
async fn every_token_problem_is_unauthenticated_with_one_generic_message() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel(NURSE_DEVICE).await.expect("connects");
    let signer = signer(&harness);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let valid = signer.sign_claims(&nurse_claims(&harness)).expect("sign");
    let claims_json = serde_json::to_vec(&nurse_claims(&harness)).expect("json");

    let with = |change: &dyn Fn(&mut Claims)| {
        let mut claims = nurse_claims(&harness);
        change(&mut claims);
        signer.sign_claims(&claims).expect("sign")
    };
    let bad_signature = {
        let (rest, signature) = valid.rsplit_once('.').expect("three parts");
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .expect("b64");
        bytes[10] ^= 0x55;
        format!("{rest}.{}", b64(&bytes))
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims_json)
    );
    // Algorithm confusion: HS256 keyed with the published public key.
    let jwks = std::fs::read(harness.settings.data_dir.join("jwt/jwks.json")).expect("jwks");
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(signer.kid().expect("kid"));
        jsonwebtoken::encode(
            &header,
            &nurse_claims(&harness),
            &jsonwebtoken::EncodingKey::from_secret(&jwks),
        )
        .expect("hs256")
    };
    let unknown_kid = {
        let key = rcgen::KeyPair::generate().expect("key");
        telehealth_kit::token::sign(&key, "not-a-known-kid", &nurse_claims(&harness)).expect("sign")
    };
    let doctor_cert = harness.device_files("doctor-workstation").0;
    let other_thumbprint = thumbprint_of_pem_file(&doctor_cert).expect("thumb");
    let critical = {
        let header = jsonwebtoken::Header {
            crit: Some(vec!["exp".into()]),
            ..Default::default()
        };
        sign_with_header(&harness, header, &nurse_claims(&harness))
    };

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a bearer header", Some(format!("Basic {valid}"))),
        ("malformed token", Some("Bearer not.a.jwt".into())),
        ("bad signature", Some(format!("Bearer {bad_signature}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "HS256 keyed with the public key",
            Some(format!("Bearer {hs256}")),
        ),
        (
            "expired",
            Some(format!("Bearer {}", with(&|c| c.exp = unix_now() - 3600))),
        ),
        (
            "nbf in the future",
            Some(format!("Bearer {}", with(&|c| c.nbf = unix_now() + 3600))),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                with(&|c| c.aud = "another-api".into())
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                with(&|c| c.iss = "https://evil.invalid".into())
            )),
        ),
        ("unknown kid", Some(format!("Bearer {unknown_kid}"))),
        (
            "bound to another certificate",
            Some(format!(
                "Bearer {}",
                with(&|c| c.cnf = Some(Confirmation {
                    x5t_s256: other_thumbprint.clone()
                }))
            )),
        ),
        (
            "no cnf while binding is on",
            Some(format!("Bearer {}", with(&|c| c.cnf = None))),
        ),
        (
            "a critical header extension (RFC 7515 crit)",
            Some(format!("Bearer {critical}")),
        ),
        (
            "empty sub",
            Some(format!("Bearer {}", with(&|c| c.sub = String::new()))),
        ),
        (
            "empty org",
            Some(format!("Bearer {}", with(&|c| c.org = String::new()))),
        ),
        (
            "a control character in sub",
            Some(format!(
                "Bearer {}",
                with(&|c| c.sub = "nurse-claire\nadmin".into())
            )),
        ),
    ];
    for (case, authorization) in cases {
        let mut request = tonic::Request::new(Bytes::new());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        let status = unary(&channel, paths::GET_WOUND, request)
            .await
            .expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        assert_eq!(
            status.message(),
            "missing or invalid credentials",
            "{case}: the message says nothing more"
        );
    }
    assert_eq!(
        harness.backends[0].calls(),
        0,
        "nothing reached the service"
    );
}

#[tokio::test]
async fn header_problems_are_unauthenticated_grpc_statuses_that_name_no_internal_header() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel(NURSE_DEVICE).await.expect("connects");
    let token = harness.token(NURSE_DEVICE, "nurse-claire", &[Role::Nurse]);
    let valid = format!("Bearer {token}");

    let mut twice = tonic::Request::new(Bytes::new());
    for value in [valid.clone(), valid.clone()] {
        twice
            .metadata_mut()
            .append("authorization", value.parse().expect("ascii"));
    }
    let mut valid_then_other = tonic::Request::new(Bytes::new());
    for value in [valid.clone(), "Bearer other".to_owned()] {
        valid_then_other
            .metadata_mut()
            .append("authorization", value.parse().expect("ascii"));
    }
    let oversized_token = {
        let mut request = tonic::Request::new(Bytes::new());
        let huge = format!("Bearer {}", "a".repeat(100 * 1024));
        request
            .metadata_mut()
            .insert("authorization", huge.parse().expect("ascii"));
        request
    };
    let oversized_headers = {
        let mut request = with_token(Bytes::new(), &token);
        request
            .metadata_mut()
            .insert("x-padding", "p".repeat(20 * 1024).parse().expect("ascii"));
        request
    };
    let cases = [
        ("the same token twice", twice),
        ("a valid token, then another", valid_then_other),
        ("a 100 KiB token", oversized_token),
        ("20 KiB of other headers", oversized_headers),
    ];
    for (case, request) in cases {
        let status = unary(&channel, paths::GET_WOUND, request)
            .await
            .expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        assert_eq!(
            status.message(),
            "missing or invalid credentials",
            "{case}: the message says nothing more"
        );
    }
    assert_eq!(
        harness.backends[0].calls(),
        0,
        "nothing reached the service"
    );
    unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect("the connection still serves a proper call");
}

#[tokio::test]
async fn roles_internal_only_and_unknown_methods_are_refused_by_the_contract() {
    let harness = GatewayHarness::start().await;
    let channel = harness.channel("patient-tablet").await.expect("connects");
    let patient = harness.token("patient-tablet", "patient-42", &[Role::Patient]);
    let admin_channel = harness
        .channel("doctor-workstation")
        .await
        .expect("connects");
    let admin = harness.token(
        "doctor-workstation",
        "admin-1",
        &[Role::Admin, Role::Doctor],
    );

    let status = unary(
        &channel,
        paths::GET_WOUND,
        with_token(Bytes::new(), &patient),
    )
    .await
    .expect_err("patients may not read wounds");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let status = unary(
        &admin_channel,
        paths::MARK_WAITING_ROOM,
        with_token(Bytes::new(), &admin),
    )
    .await
    .expect_err("internal-only from outside");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let status = unary(
        &admin_channel,
        "/telehealth.v1.WoundService/DropEverything",
        with_token(Bytes::new(), &admin),
    )
    .await
    .expect_err("unknown method");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(
        harness.backends[0].calls(),
        0,
        "nothing reached the service"
    );
}

#[tokio::test]
async fn a_token_signed_with_a_new_key_is_accepted_after_the_jwks_changes() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.jwt.min_refresh_interval_seconds = 0;
    })
    .await;
    let channel = harness.channel(NURSE_DEVICE).await.expect("connects");
    let new_key = rcgen::KeyPair::generate().expect("key");
    let new_jwk = telehealth_kit::token::public_jwk(&new_key).expect("jwk");
    let new_kid = new_jwk["kid"].as_str().expect("kid").to_owned();
    let token =
        telehealth_kit::token::sign(&new_key, &new_kid, &nurse_claims(&harness)).expect("sign");

    let status = unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect_err("the new key is not published yet");
    assert_eq!(status.code(), Code::Unauthenticated);

    let jwks_path = harness.settings.data_dir.join("jwt/jwks.json");
    let mut jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwks_path).expect("read")).expect("json");
    jwks["keys"].as_array_mut().expect("keys").push(new_jwk);
    std::fs::write(&jwks_path, jwks.to_string()).expect("rotate");

    unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect("the rotated key is picked up on its unknown kid");
}

#[tokio::test]
async fn a_subject_over_its_rate_limit_is_told_when_to_retry() {
    let harness = GatewayHarness::start_with(1, |settings| {
        settings.gateway.limits.requests_per_second = 1.0;
        settings.gateway.limits.burst = 2;
    })
    .await;
    let channel = harness.channel(NURSE_DEVICE).await.expect("connects");
    let token = harness.token(NURSE_DEVICE, "nurse-claire", &[Role::Nurse]);
    for _ in 0..2 {
        unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
            .await
            .expect("within the burst");
    }
    let status = unary(&channel, paths::GET_WOUND, with_token(Bytes::new(), &token))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    use tonic_types::StatusExt;
    let retry = status.get_details_retry_info().expect("RetryInfo detail");
    assert!(
        retry
            .retry_delay
            .is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(1))
    );

    let doctor = harness
        .channel("doctor-workstation")
        .await
        .expect("connects");
    let doctor_token = harness.token("doctor-workstation", "dr-martin", &[Role::Doctor]);
    unary(
        &doctor,
        paths::GET_WOUND,
        with_token(Bytes::new(), &doctor_token),
    )
    .await
    .expect("another subject is not limited");
}
