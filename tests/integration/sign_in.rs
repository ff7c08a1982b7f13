//! Sign-in through the real gateway against a real, independent OpenID provider
//! (`oidc-provider` from npm, with accounts shaped like Pro Santé Connect's): a professional
//! signs in on a device without a browser (RFC 8628), chooses the organisation, the device gets
//! its certificate from a CSR and tokens bound to it, and calls through the gateway with both;
//! the refusals (unknown person, level too low, another device's certificate, a reused refresh
//! token, the sign-in port serving anything else) and a lost device revoked.

use std::{path::PathBuf, time::Duration};

use telehealth_kit::{config::ProviderConfig, identity::Role};
use telehealth_proto::v1::{self as pb, auth_service_client::AuthServiceClient};
use telehealth_testkit::{
    harness::{Bearer, channel_to},
    oidc::{
        CALLBACK, DR_MARTIN_RPPS, SECRET_CLIENT, STRANGER_RPPS, approve_device, start_provider,
    },
    suite::{Person, Suite, backends},
};
use tonic::{
    Code,
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig},
};

const CENTRE: &str = "cds-bourganeuf";
const OTHER_CENTRE: &str = "cds-felletin";

/// A device's new key and its signing request.
struct DeviceKey {
    key_pem: String,
    csr_pem: String,
}

fn new_device_key() -> DeviceKey {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr");
    DeviceKey {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().expect("pem"),
    }
}

/// A client of the gateway's sign-in port, with no certificate.
async fn sign_in_port(suite: &Suite) -> AuthServiceClient<Channel> {
    let address = suite
        .running
        .as_ref()
        .expect("running")
        .sign_in
        .expect("the sign-in port");
    let ca = std::fs::read(suite.settings.pki_dir().join("ca.pem")).expect("ca");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{address}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("the sign-in port needs no client certificate");
    AuthServiceClient::new(channel)
}

/// Signs in on a device as the provider's account `login_hint` up to the organisation choice.
async fn device_sign_in(
    client: &mut AuthServiceClient<Channel>,
    login_hint: &str,
    device: &DeviceKey,
) -> Result<pb::SignInResult, tonic::Status> {
    let start = pb::StartDeviceSignInRequest {
        csr_pem: device.csr_pem.clone(),
        ..Default::default()
    };
    device_sign_in_for(client, login_hint, start).await
}

/// As [`device_sign_in`], enrolling what `start` chooses.
async fn device_sign_in_for(
    client: &mut AuthServiceClient<Channel>,
    login_hint: &str,
    start: pb::StartDeviceSignInRequest,
) -> Result<pb::SignInResult, tonic::Status> {
    let started = client
        .start_device_sign_in(pb::StartDeviceSignInRequest {
            provider: "psc".into(),
            login_hint: login_hint.into(),
            ..start
        })
        .await
        .expect("a device sign-in starts")
        .into_inner();
    assert!(!started.user_code.is_empty(), "{started:?}");
    let first = client
        .poll_device_sign_in(pb::PollDeviceSignInRequest {
            sign_in_id: started.sign_in_id.clone(),
        })
        .await?
        .into_inner();
    assert!(first.pending, "not approved yet: {first:?}");
    let page = approve_device(&started.verification_uri_complete).await;
    assert!(
        page.contains("Sign-in Success") || page.contains("success"),
        "{page}"
    );
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(u64::from(
            started.interval_seconds.max(1),
        )))
        .await;
        let result = client
            .poll_device_sign_in(pb::PollDeviceSignInRequest {
                sign_in_id: started.sign_in_id.clone(),
            })
            .await?
            .into_inner();
        if !result.pending {
            return Ok(result);
        }
    }
    panic!("the sign-in never ended")
}

/// Dr Martin signs in again from the enrolled device `client` calls from (`this_device`).
async fn from_this_device(
    client: &mut AuthServiceClient<Channel>,
) -> Result<pb::SignInResult, tonic::Status> {
    let start = pb::StartDeviceSignInRequest {
        this_device: true,
        ..Default::default()
    };
    device_sign_in_for(client, "psc-dr-martin", start).await
}

/// What completes sign-in `ticket` for `org`, with `csr_pem` (empty for a bundle or this
/// device) and no device name.
fn completion(ticket: &str, org: &str, csr_pem: &str) -> pb::CompleteSignInRequest {
    pb::CompleteSignInRequest {
        ticket: ticket.into(),
        org_id: org.into(),
        csr_pem: csr_pem.into(),
        device_name: String::new(),
    }
}

/// Files of an enrolled device, for a channel with its certificate.
fn device_files(
    dir: &std::path::Path,
    name: &str,
    cert_pem: &str,
    key_pem: &str,
) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, cert_pem).expect("cert");
    std::fs::write(&key, key_pem).expect("key");
    (cert, key)
}

type AuthClient = AuthServiceClient<InterceptedService<Channel, Bearer>>;

/// A suite whose sign-in provider is the test provider (as Pro Santé Connect would be
/// configured), with a sign-in port, and Dr Martin known by his RPPS number in two centres.
async fn start_with_psc(
    backend: telehealth_testkit::suite::Backend,
    issuer: &str,
    secret_file: &std::path::Path,
) -> Option<Suite> {
    let config = ProviderConfig {
        id: "psc".into(),
        display_name: "Pro Santé Connect".into(),
        issuer: issuer.to_owned(),
        client_id: SECRET_CLIENT.0.into(),
        client_secret_file: Some(secret_file.to_owned()),
        redirect_uri: CALLBACK.into(),
        scopes: vec!["scope_all".into()],
        acr: Some("eidas1".into()),
        ..Default::default()
    };
    let suite = Suite::start_with(backend, |settings| {
        settings.gateway.sign_in_listen = Some("127.0.0.1:0".parse().expect("addr"));
        settings.gateway.reload_interval_seconds = 1;
        settings.sign_in.providers = vec![config];
    })
    .await?;
    for org in [CENTRE, OTHER_CENTRE] {
        let admin = Person::with_roles("admin", org, &[Role::Admin]);
        suite
            .directory(&admin)
            .await
            .put_member(pb::PutMemberRequest {
                subject: "dr-martin".into(),
                roles: vec![pb::Role::Doctor as i32],
                rpps_number: DR_MARTIN_RPPS.into(),
                ..Default::default()
            })
            .await
            .expect("the administrator adds Dr Martin");
    }
    Some(suite)
}

/// Runs the `telehealth` binary against `suite` with `args`; (success, output).
async fn telehealth(suite: &Suite, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .args(args)
        .arg("--data-dir")
        .arg(&suite.settings.data_dir)
        .env_remove("TELEHEALTH_CONFIG")
        .env_remove("TELEHEALTH_TOKEN");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("the telehealth binary runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn the_command_line_signs_in_with_the_device_grant_calls_with_its_login_and_signs_out() {
    let Some(provider) = start_provider(&serde_json::json!({ "keys": [] })).await else {
        return;
    };
    let secrets = tempfile::tempdir().expect("dir");
    let secret_file = secrets.path().join("psc-secret");
    std::fs::write(&secret_file, SECRET_CLIENT.1).expect("secret");
    let suite = start_with_psc(
        telehealth_testkit::suite::Backend::Sqlite,
        &provider.issuer,
        &secret_file,
    )
    .await
    .expect("suite");
    let login_dir = secrets.path().join("login");
    let sign_in = suite
        .running
        .as_ref()
        .expect("running")
        .sign_in
        .expect("sign-in port")
        .to_string();
    let gateway = suite.gateway().to_string();
    let mut login = tokio::process::Command::new(crate::harness::binary())
        .args([
            "login",
            "--provider",
            "psc",
            "--login-hint",
            "psc-dr-martin",
        ])
        .args([
            "--org",
            CENTRE,
            "--sign-in",
            &sign_in,
            "--gateway",
            &gateway,
        ])
        .arg("--login-dir")
        .arg(&login_dir)
        .arg("--data-dir")
        .arg(&suite.settings.data_dir)
        .env_remove("TELEHEALTH_CONFIG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("telehealth login runs");
    let stdout = login.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let url = loop {
        let line = lines
            .next_line()
            .await
            .expect("output")
            .expect("login prints where to approve");
        if let Some(url) = line
            .strip_prefix("(ou directement : ")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            break url.to_owned();
        }
    };
    approve_device(&url).await;
    let status = tokio::time::timeout(Duration::from_secs(60), login.wait())
        .await
        .expect("login finishes")
        .expect("status");
    assert!(status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for private in ["device-key.pem", "session.json"] {
            let mode = std::fs::metadata(login_dir.join(private))
                .expect("kept")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{private} is readable by its owner only");
        }
    }
    // Expire the kept access token: `call` must refresh it silently.
    let session_file = login_dir.join("session.json");
    let mut session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session_file).expect("session")).expect("json");
    let first_refresh = session["refresh_token"].clone();
    session["access_expires"] = serde_json::json!(0);
    std::fs::write(&session_file, session.to_string()).expect("write");
    let login_dir_arg = login_dir.to_str().expect("utf-8");
    let (ok, output) = telehealth(
        &suite,
        &[
            "call",
            "telehealth.v1.AuthService/ListSessions",
            "{}",
            "--login-dir",
            login_dir_arg,
        ],
    )
    .await;
    assert!(ok, "{output}");
    assert!(
        output.contains(CENTRE) && output.contains("\"current\": true"),
        "{output}"
    );
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session_file).expect("session")).expect("json");
    assert_ne!(
        session["refresh_token"], first_refresh,
        "refreshed and kept"
    );

    // A certificate in the last third of its validity: `call` renews it (new key, new
    // certificate, the session kept) before calling.
    let mut session = session;
    let old_certificate = std::fs::read(login_dir.join("device.pem")).expect("cert");
    let expires = session["certificate_expires"]
        .as_i64()
        .expect("expiry kept");
    assert!(expires > jiff::Timestamp::now().as_second(), "{session}");
    session["certificate_issued"] = serde_json::json!(expires - 1000 * 86_400);
    std::fs::write(&session_file, session.to_string()).expect("write");
    let (ok, output) = telehealth(
        &suite,
        &[
            "call",
            "telehealth.v1.AuthService/ListDevices",
            "{}",
            "--login-dir",
            login_dir_arg,
        ],
    )
    .await;
    assert!(ok && output.contains("renouvelé"), "{output}");
    assert_eq!(
        output.matches("\"revokeTime\"").count(),
        1,
        "the replaced certificate is revoked, the new one is not: {output}"
    );
    assert_ne!(
        std::fs::read(login_dir.join("device.pem")).expect("cert"),
        old_certificate,
        "the renewed certificate is kept"
    );
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session_file).expect("session")).expect("json");

    // Kept aside to check after the logout that the session ended at the suite.
    let kept = (
        secrets.path().join("kept.pem"),
        secrets.path().join("kept-key.pem"),
    );
    std::fs::copy(login_dir.join("device.pem"), &kept.0).expect("copy");
    std::fs::copy(login_dir.join("device-key.pem"), &kept.1).expect("copy");
    let refresh_token = session["refresh_token"].as_str().expect("token").to_owned();

    let (ok, output) = telehealth(&suite, &["logout", "--login-dir", login_dir_arg]).await;
    assert!(ok && output.contains("déconnecté"), "{output}");
    assert!(!session_file.exists() && !login_dir.join("device-key.pem").exists());
    let channel = channel_to(suite.gateway(), &suite.settings, &kept)
        .await
        .expect("the device is still enrolled");
    let ended = AuthServiceClient::new(channel)
        .refresh(pb::RefreshRequest { refresh_token })
        .await
        .expect_err("signed out");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

#[tokio::test]
async fn a_professional_signs_in_with_pro_sante_connect_on_a_device_and_calls_through_the_gateway()
{
    let Some(provider) = start_provider(&serde_json::json!({ "keys": [] })).await else {
        return;
    };
    let secrets = tempfile::tempdir().expect("dir");
    let secret_file = secrets.path().join("psc-secret");
    std::fs::write(&secret_file, SECRET_CLIENT.1).expect("secret");
    for backend in backends().await {
        let Some(suite) = start_with_psc(backend, &provider.issuer, &secret_file).await else {
            continue;
        };

        let mut sign_in = sign_in_port(&suite).await;
        let providers = sign_in
            .list_providers(pb::ListProvidersRequest {})
            .await
            .expect("providers")
            .into_inner()
            .providers;
        assert!(
            providers
                .iter()
                .any(|p| p.id == "psc" && p.device_sign_in && !p.development),
            "{providers:?}"
        );
        assert!(
            providers.iter().all(|p| !p.development),
            "no development sign-in outside `telehealth up`: {providers:?}"
        );

        let device = new_device_key();
        let verified = device_sign_in(&mut sign_in, "psc-dr-martin", &device)
            .await
            .expect("Dr Martin is verified");
        assert_eq!(verified.rpps_number, DR_MARTIN_RPPS, "{backend:?}");
        assert_eq!(verified.family_name, "MARTIN");
        let mut orgs: Vec<&str> = verified
            .memberships
            .iter()
            .map(|m| m.org_id.as_str())
            .collect();
        orgs.sort_unstable();
        assert_eq!(orgs, [CENTRE, OTHER_CENTRE], "{backend:?}");

        // Another key cannot use the ticket; the ticket is then spent.
        let stolen = sign_in
            .complete_sign_in(pb::CompleteSignInRequest {
                ticket: verified.ticket.clone(),
                org_id: CENTRE.into(),
                csr_pem: new_device_key().csr_pem,
                device_name: "Poste volé".into(),
            })
            .await
            .expect_err("another key");
        assert_eq!(stolen.code(), Code::InvalidArgument, "{stolen:?}");
        let verified = device_sign_in(&mut sign_in, "psc-dr-martin", &device)
            .await
            .expect("verified again");
        let enrolled = sign_in
            .complete_sign_in(pb::CompleteSignInRequest {
                ticket: verified.ticket.clone(),
                org_id: CENTRE.into(),
                csr_pem: device.csr_pem.clone(),
                device_name: "Poste du cabinet".into(),
            })
            .await
            .expect("the device is enrolled")
            .into_inner();
        let replay = sign_in
            .complete_sign_in(completion(&verified.ticket, CENTRE, &device.csr_pem))
            .await
            .expect_err("a ticket is used once");
        assert_eq!(replay.code(), Code::FailedPrecondition);
        let tokens = enrolled.tokens.expect("tokens");
        let files = device_files(
            secrets.path(),
            &format!("martin-{backend:?}"),
            &enrolled.certificate_pem,
            &device.key_pem,
        );

        // Through the gateway's main port, with the new certificate and its token.
        let channel = channel_to(suite.gateway(), &suite.settings, &files)
            .await
            .expect("the enrolled certificate is accepted");
        let mut auth: AuthClient =
            AuthServiceClient::with_interceptor(channel.clone(), Bearer::new(&tokens.access_token));
        let sessions = auth
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .expect("Dr Martin lists his sessions")
            .into_inner()
            .sessions;
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert!(sessions[0].current && sessions[0].org_id == CENTRE);
        let mut patients = pb::patient_service_client::PatientServiceClient::with_interceptor(
            channel.clone(),
            Bearer::new(&tokens.access_token),
        );
        patients
            .search_patients(pb::SearchPatientsRequest {
                name: "DUPONT".into(),
                ..Default::default()
            })
            .await
            .expect("a doctor of the centre searches the register");

        // The token does not work with another device's certificate.
        let sample = telehealth_kit::pki::DevPki::new(suite.settings.pki_dir())
            .device_files("doctor-workstation");
        let other_device = channel_to(suite.gateway(), &suite.settings, &(sample.cert, sample.key))
            .await
            .expect("connects");
        let refused =
            AuthServiceClient::with_interceptor(other_device, Bearer::new(&tokens.access_token))
                .list_sessions(pb::ListSessionsRequest::default())
                .await
                .expect_err("bound to the enrolled device");
        assert_eq!(refused.code(), Code::Unauthenticated);

        // The sign-in port serves nothing else, not even refresh.
        let elsewhere = sign_in
            .refresh(pb::RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
            })
            .await
            .expect_err("refresh needs the device certificate");
        assert_eq!(elsewhere.code(), Code::PermissionDenied, "{elsewhere:?}");

        // Refresh with the certificate and no token; the old refresh token is then spent, and
        // using it again ends the session.
        let mut device_only = AuthServiceClient::new(channel.clone());
        let next = device_only
            .refresh(pb::RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
            })
            .await
            .expect("refreshed")
            .into_inner()
            .tokens
            .expect("tokens");
        assert_ne!(next.refresh_token, tokens.refresh_token);
        let reused = device_only
            .refresh(pb::RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
            })
            .await
            .expect_err("reuse");
        assert_eq!(reused.code(), Code::Unauthenticated);
        let after = device_only
            .refresh(pb::RefreshRequest {
                refresh_token: next.refresh_token.clone(),
            })
            .await
            .expect_err("the session ended");
        assert_eq!(after.code(), Code::Unauthenticated, "{after:?}");

        // Someone the provider knows but no organisation lists is refused, and so is a login
        // below the level asked for.
        let stranger = device_sign_in(&mut sign_in, "psc-stranger", &new_device_key())
            .await
            .expect_err("unknown person");
        assert_eq!(stranger.code(), Code::PermissionDenied, "{stranger:?}");
        assert!(stranger.message().contains(STRANGER_RPPS), "{stranger:?}");
        let weak = device_sign_in(&mut sign_in, "psc-weak", &new_device_key())
            .await
            .expect_err("level too low");
        assert_eq!(weak.code(), Code::Unauthenticated, "{weak:?}");

        // A membership ended after the provider vouched for the person: the completion asks
        // the directory again and refuses that organisation; the next sign-in no longer lists
        // it.
        let before_end = device_sign_in(&mut sign_in, "psc-dr-martin", &device)
            .await
            .expect("verified while a member of both");
        assert_eq!(before_end.memberships.len(), 2);
        let admin = Person::with_roles("admin", OTHER_CENTRE, &[Role::Admin]);
        suite
            .directory(&admin)
            .await
            .end_membership(pb::EndMembershipRequest {
                subject: "dr-martin".into(),
                until_time: None,
            })
            .await
            .expect("the other centre's administrator ends Dr Martin's membership");
        let ended = sign_in
            .complete_sign_in(completion(
                &before_end.ticket,
                OTHER_CENTRE,
                &device.csr_pem,
            ))
            .await
            .expect_err("no longer a member there");
        assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
        let after_end = device_sign_in(&mut sign_in, "psc-dr-martin", &device)
            .await
            .expect("still a member of the centre");
        assert_eq!(
            after_end
                .memberships
                .iter()
                .map(|m| m.org_id.as_str())
                .collect::<Vec<_>>(),
            [CENTRE],
            "{backend:?}"
        );

        // A lost device: revoked, its open connection closes and it is refused at the handshake.
        let fresh = device_sign_in(&mut sign_in, "psc-dr-martin", &device)
            .await
            .expect("signs in again");
        let tokens = sign_in
            .complete_sign_in(pb::CompleteSignInRequest {
                ticket: fresh.ticket,
                org_id: CENTRE.into(),
                csr_pem: device.csr_pem.clone(),
                device_name: "Poste du cabinet".into(),
            })
            .await
            .expect("enrolled again")
            .into_inner();
        let files = device_files(
            secrets.path(),
            &format!("martin2-{backend:?}"),
            &tokens.certificate_pem,
            &device.key_pem,
        );
        let channel = channel_to(suite.gateway(), &suite.settings, &files)
            .await
            .expect("connects");
        let first_tokens = tokens.tokens.expect("tokens");
        let mut before_renewal: AuthClient =
            AuthServiceClient::with_interceptor(channel, Bearer::new(&first_tokens.access_token));

        // Renewal before expiry, for a new key: a new certificate and tokens bound to it, the
        // session kept (its refresh token rotated), the old certificate revoked.
        let renewed_key = new_device_key();
        let renewed = before_renewal
            .renew_device(pb::RenewDeviceRequest {
                csr_pem: renewed_key.csr_pem.clone(),
            })
            .await
            .expect("the device's certificate is renewed")
            .into_inner();
        let renewed_tokens = renewed.tokens.expect("tokens");
        assert_ne!(renewed_tokens.refresh_token, first_tokens.refresh_token);
        let files = device_files(
            secrets.path(),
            &format!("martin3-{backend:?}"),
            &renewed.certificate_pem,
            &renewed_key.key_pem,
        );
        let device_id = renewed.device.expect("device").device_id;
        let channel = channel_to(suite.gateway(), &suite.settings, &files)
            .await
            .expect("the renewed certificate is accepted");
        let mut auth: AuthClient = AuthServiceClient::with_interceptor(
            channel.clone(),
            Bearer::new(&renewed_tokens.access_token),
        );
        let sessions = auth
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .expect("the renewed device calls")
            .into_inner()
            .sessions;
        assert!(
            sessions.iter().any(|s| s.current),
            "the session follows the renewed certificate: {sessions:?}"
        );
        let devices = auth
            .list_devices(pb::ListDevicesRequest::default())
            .await
            .expect("devices")
            .into_inner()
            .devices;
        assert!(
            devices
                .iter()
                .any(|d| d.device_id != device_id && d.revoke_time.is_some()),
            "the old certificate is revoked: {devices:?}"
        );
        let mut old_closed = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if before_renewal
                .list_providers(pb::ListProvidersRequest {})
                .await
                .is_err()
            {
                old_closed = true;
                break;
            }
        }
        assert!(
            old_closed,
            "the replaced certificate's connection still works"
        );
        AuthServiceClient::new(channel)
            .refresh(pb::RefreshRequest {
                refresh_token: renewed_tokens.refresh_token.clone(),
            })
            .await
            .expect("the session refreshes from the renewed device");
        let revoked = auth
            .revoke_device(pb::RevokeDeviceRequest {
                device_id: device_id.clone(),
            })
            .await
            .expect("Dr Martin revokes his lost device")
            .into_inner()
            .device
            .expect("device");
        assert!(revoked.revoke_time.is_some());
        let mut closed = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if auth
                .list_devices(pb::ListDevicesRequest::default())
                .await
                .is_err()
            {
                closed = true;
                break;
            }
        }
        assert!(closed, "the revoked device's connection still works");
        // Anything on the main port works with a valid certificate alone (ListProviders), so a
        // failure here is the handshake's.
        let refused_at_handshake = match channel_to(suite.gateway(), &suite.settings, &files).await
        {
            Err(_) => true,
            Ok(channel) => AuthServiceClient::new(channel)
                .list_providers(pb::ListProvidersRequest {})
                .await
                .is_err(),
        };
        assert!(
            refused_at_handshake,
            "a revoked certificate is refused at the handshake"
        );
    }
}

/// The key and certificate of a PKCS#12 bundle opened with its password, as PEM files.
fn open_bundle(
    dir: &std::path::Path,
    name: &str,
    pkcs12: &[u8],
    password: &str,
) -> (PathBuf, PathBuf) {
    use base64::Engine as _;
    let store = p12_keystore::KeyStore::from_pkcs12(
        pkcs12,
        password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .expect("the bundle opens with its one-time password");
    let (_, chain) = store.private_key_chain().expect("a key and its chain");
    let pem = |label: &str, der: &[u8]| {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).expect("base64"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    device_files(
        dir,
        name,
        &pem("CERTIFICATE", chain.certs()[0].as_der()),
        &pem("PRIVATE KEY", chain.key().as_der()),
    )
}

#[tokio::test]
async fn a_phone_imports_its_pkcs12_bundle_then_signs_in_again_from_the_enrolled_device() {
    let Some(provider) = start_provider(&serde_json::json!({ "keys": [] })).await else {
        return;
    };
    let secrets = tempfile::tempdir().expect("dir");
    let secret_file = secrets.path().join("psc-secret");
    std::fs::write(&secret_file, SECRET_CLIENT.1).expect("secret");
    for backend in backends().await {
        let Some(suite) = start_with_psc(backend, &provider.issuer, &secret_file).await else {
            continue;
        };
        let mut sign_in = sign_in_port(&suite).await;

        // Exactly one choice of what to enrol.
        for start in [
            pb::StartDeviceSignInRequest {
                csr_pem: new_device_key().csr_pem,
                pkcs12: true,
                ..Default::default()
            },
            pb::StartDeviceSignInRequest::default(),
        ] {
            let refused = sign_in
                .start_device_sign_in(pb::StartDeviceSignInRequest {
                    provider: "psc".into(),
                    ..start
                })
                .await
                .expect_err("not exactly one choice");
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        }
        // `this_device` needs the certificate of an enrolled device: none on the sign-in port,
        // and the suite's sample workstation certificate is no enrolled device.
        let no_certificate = sign_in
            .start_device_sign_in(pb::StartDeviceSignInRequest {
                provider: "psc".into(),
                this_device: true,
                ..Default::default()
            })
            .await
            .expect_err("no certificate");
        assert_eq!(no_certificate.code(), Code::FailedPrecondition);
        let sample = telehealth_kit::pki::DevPki::new(suite.settings.pki_dir())
            .device_files("doctor-workstation");
        let mut workstation = AuthServiceClient::new(
            channel_to(suite.gateway(), &suite.settings, &(sample.cert, sample.key))
                .await
                .expect("connects"),
        );
        let not_enrolled = workstation
            .start_device_sign_in(pb::StartDeviceSignInRequest {
                provider: "psc".into(),
                this_device: true,
                ..Default::default()
            })
            .await
            .expect_err("not an enrolled device");
        assert_eq!(not_enrolled.code(), Code::FailedPrecondition);

        // A phone: the suite makes the key and hands it over once as a PKCS#12 bundle.
        let verified = device_sign_in_for(
            &mut sign_in,
            "psc-dr-martin",
            pb::StartDeviceSignInRequest {
                pkcs12: true,
                ..Default::default()
            },
        )
        .await
        .expect("verified");
        let with_csr = sign_in
            .complete_sign_in(completion(
                &verified.ticket,
                CENTRE,
                &new_device_key().csr_pem,
            ))
            .await
            .expect_err("a bundle was asked for");
        assert_eq!(with_csr.code(), Code::InvalidArgument, "{with_csr:?}");
        let verified = device_sign_in_for(
            &mut sign_in,
            "psc-dr-martin",
            pb::StartDeviceSignInRequest {
                pkcs12: true,
                ..Default::default()
            },
        )
        .await
        .expect("verified again");
        let enrolled = sign_in
            .complete_sign_in(pb::CompleteSignInRequest {
                ticket: verified.ticket,
                org_id: CENTRE.into(),
                csr_pem: String::new(),
                device_name: "Téléphone de tournée".into(),
            })
            .await
            .expect("the phone is enrolled")
            .into_inner();
        assert!(!enrolled.pkcs12.is_empty() && enrolled.pkcs12_password.len() == 19);
        let device = enrolled.device.expect("device");
        assert_eq!(device.name, "Téléphone de tournée");
        assert!(
            p12_keystore::KeyStore::from_pkcs12(
                &enrolled.pkcs12,
                "0000-0000-0000-0000",
                p12_keystore::Pkcs12ImportPolicy::Strict
            )
            .is_err(),
            "sealed"
        );
        let files = open_bundle(
            secrets.path(),
            &format!("phone-{backend:?}"),
            &enrolled.pkcs12,
            &enrolled.pkcs12_password,
        );
        let phone = channel_to(suite.gateway(), &suite.settings, &files)
            .await
            .expect("the bundle's certificate is accepted");
        let tokens = enrolled.tokens.expect("tokens");
        AuthServiceClient::with_interceptor(phone.clone(), Bearer::new(&tokens.access_token))
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .expect("the phone calls with the bundle's key and its token");

        // Later (tokens lost with the page): signs in again from the enrolled phone, which gets
        // a session and no new certificate.
        let mut from_phone = AuthServiceClient::new(phone.clone());
        let again = from_this_device(&mut from_phone)
            .await
            .expect("verified from the phone");
        let stolen = workstation
            .complete_sign_in(completion(&again.ticket, CENTRE, ""))
            .await
            .expect_err("another certificate cannot complete it");
        assert_eq!(stolen.code(), Code::PermissionDenied, "{stolen:?}");
        let again = from_this_device(&mut from_phone)
            .await
            .expect("verified from the phone again");
        let other_org = from_phone
            .complete_sign_in(completion(&again.ticket, OTHER_CENTRE, ""))
            .await
            .expect_err("the phone is enrolled for the centre, not the other one");
        assert_eq!(other_org.code(), Code::PermissionDenied, "{other_org:?}");
        let again = from_this_device(&mut from_phone)
            .await
            .expect("verified from the phone a third time");
        let resumed = from_phone
            .complete_sign_in(completion(&again.ticket, CENTRE, ""))
            .await
            .expect("a new session on the enrolled phone")
            .into_inner();
        assert!(resumed.certificate_pem.is_empty() && resumed.pkcs12.is_empty());
        assert_eq!(resumed.device.expect("device").device_id, device.device_id);
        let resumed_tokens = resumed.tokens.expect("tokens");
        assert_ne!(resumed_tokens.session_id, tokens.session_id);
        let sessions =
            AuthServiceClient::with_interceptor(phone, Bearer::new(&resumed_tokens.access_token))
                .list_sessions(pb::ListSessionsRequest::default())
                .await
                .expect("bound to the phone's certificate")
                .into_inner()
                .sessions;
        assert!(
            sessions
                .iter()
                .any(|s| s.current && s.session_id == resumed_tokens.session_id),
            "{sessions:?}"
        );
    }
}
