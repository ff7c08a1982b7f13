//! `telehealth pki` and `telehealth token` produce certificates rustls accepts and tokens that
//! verify against the JWKS written next to the signing key.

use std::{path::Path, sync::Arc};

use base64::Engine;
use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use sha2::{Digest, Sha256};

use crate::harness::{stderr, stdout, telehealth};

fn cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(cert(ca)).expect("CA is usable");
    Arc::new(roots)
}

fn client_verifier(ca: &Path) -> Arc<dyn ClientCertVerifier> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(roots(ca), provider)
        .build()
        .expect("client verifier")
}

#[test]
fn pki_init_creates_certificates_that_rustls_accepts_for_their_role() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = telehealth(dir.path(), &["pki", "init"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let pki = dir.path().join("pki");
    let now = UnixTime::now();

    let devices = client_verifier(&pki.join("ca.pem"));
    for device in [
        "doctor-workstation",
        "nurse-tablet",
        "specialist-workstation",
        "patient-tablet",
    ] {
        let leaf = cert(&pki.join(format!("devices/{device}.pem")));
        devices
            .verify_client_cert(&leaf, &[], now)
            .unwrap_or_else(|e| panic!("{device} is a valid client certificate: {e}"));
    }

    let internal = client_verifier(&pki.join("internal-ca.pem"));
    for part in ["gateway", "scheduling", "expertise", "wound", "signalling"] {
        let leaf = cert(&pki.join(format!("internal/{part}.pem")));
        internal
            .verify_client_cert(&leaf, &[], now)
            .unwrap_or_else(|e| panic!("{part} internal certificate: {e}"));
    }
    let device = cert(&pki.join("devices/nurse-tablet.pem"));
    assert!(
        internal.verify_client_cert(&device, &[], now).is_err(),
        "a device certificate must not pass for an internal one"
    );

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let servers = WebPkiServerVerifier::builder_with_provider(roots(&pki.join("ca.pem")), provider)
        .build()
        .expect("server verifier");
    let gateway = cert(&pki.join("gateway/server.pem"));
    for name in ["localhost", "127.0.0.1"] {
        servers
            .verify_server_cert(
                &gateway,
                &[],
                &ServerName::try_from(name).expect("name"),
                &[],
                now,
            )
            .unwrap_or_else(|e| panic!("gateway certificate for {name}: {e}"));
    }

    let again = telehealth(dir.path(), &["pki", "init"]);
    assert!(
        stdout(&again).contains("nothing created"),
        "init keeps existing files"
    );
}

#[test]
fn pki_issue_adds_a_device_with_its_thumbprint() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(telehealth(dir.path(), &["pki", "init"]).status.success());
    let output = telehealth(
        dir.path(),
        &["pki", "issue", "device", "nurse-tablet-2", "--days", "30"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let pem = dir.path().join("pki/devices/nurse-tablet-2.pem");
    let expected = thumbprint(&pem);
    assert!(
        stdout(&output).contains(&expected),
        "prints the x5t#S256 thumbprint"
    );
    client_verifier(&dir.path().join("pki/ca.pem"))
        .verify_client_cert(&cert(&pem), &[], UnixTime::now())
        .expect("the new device is trusted");
}

/// RFC 8705 thumbprint computed here, independently of the code under test.
fn thumbprint(pem: &Path) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert(pem).as_ref()))
}

#[derive(Debug, serde::Deserialize)]
struct TestClaims {
    sub: String,
    roles: Vec<String>,
    org: String,
    specialty: Option<String>,
    cnf: serde_json::Value,
    jti: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

#[test]
fn minted_tokens_verify_against_the_jwks_and_are_bound_to_the_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    // `up` creates the signing key; so does the first start. Create it the way `up` does.
    let settings = telehealth_kit::Settings {
        data_dir: dir.path().to_path_buf(),
        ..telehealth_kit::Settings::default()
    };
    telehealth::suite::prepare_data_dir(&settings).expect("data dir");
    let device = dir.path().join("pki/devices/specialist-workstation.pem");
    let output = telehealth(
        dir.path(),
        &[
            "token",
            "mint",
            "--sub",
            "dr-dupont",
            "--role",
            "specialist",
            "--org",
            "chu-limoges",
            "--specialty",
            "dermatology",
            "--bind-cert",
            device.to_str().expect("utf-8 path"),
            "--ttl",
            "15m",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_owned();

    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let kid = header.kid.expect("kid is set");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(
        &std::fs::read(dir.path().join("jwt/jwks.json")).expect("jwks.json"),
    )
    .expect("valid JWKS");
    let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("usable key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["telehealth"]);
    validation.set_issuer(&[telehealth_kit::token::DEV_ISSUER]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<TestClaims>(&token, &key, &validation)
        .expect("the token verifies")
        .claims;

    assert_eq!(claims.sub, "dr-dupont");
    assert_eq!(claims.roles, ["specialist"]);
    assert_eq!(claims.org, "chu-limoges");
    assert_eq!(claims.specialty.as_deref(), Some("dermatology"));
    assert_eq!(
        claims.cnf["x5t#S256"],
        thumbprint(&device),
        "bound to the device certificate"
    );
    assert!(!claims.jti.is_empty());
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(claims.exp - claims.iat, 900, "15 minutes");
}

#[test]
fn pki_bundle_seals_a_device_for_a_browser_under_a_printed_one_time_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(telehealth(dir.path(), &["pki", "init"]).status.success());
    let output = telehealth(dir.path(), &["pki", "bundle", "doctor-workstation"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let password = printed
        .lines()
        .find_map(|line| line.rsplit_once(" : ").map(|(_, p)| p.trim().to_owned()))
        .expect("the password is printed");
    let file = dir.path().join("pki/devices/doctor-workstation.p12");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
    }
    let bytes = std::fs::read(&file).expect("the bundle");
    assert!(
        p12_keystore::KeyStore::from_pkcs12(
            &bytes,
            "wrong-password",
            p12_keystore::Pkcs12ImportPolicy::Strict
        )
        .is_err()
    );
    let store = p12_keystore::KeyStore::from_pkcs12(
        &bytes,
        &password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .expect("opens with the printed password");
    let (_, chain) = store.private_key_chain().expect("key and chain");
    let device = cert(&dir.path().join("pki/devices/doctor-workstation.pem"));
    assert_eq!(chain.certs()[0].as_der(), device.as_ref());
    assert_eq!(
        chain.certs()[1].as_der(),
        cert(&dir.path().join("pki/ca.pem")).as_ref()
    );
    let missing = telehealth(dir.path(), &["pki", "bundle", "no-such-device"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("pki issue device"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn auth_init_keys_writes_a_private_sealing_key_file_once_and_add_key_rotates_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = telehealth(dir.path(), &["auth", "init-keys"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let file = dir.path().join("keys/auth-sealing.keys");
    let first = std::fs::read_to_string(&file).expect("written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
    }
    let again = telehealth(dir.path(), &["auth", "init-keys"]);
    assert!(!again.status.success(), "never overwritten");
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), first);
    let added = telehealth(dir.path(), &["auth", "add-key"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let rotated = std::fs::read_to_string(&file).expect("rotated");
    assert!(
        rotated.starts_with(&first) && rotated.contains("data k2 "),
        "{rotated}"
    );
}
