//! Fuzzing of what reaches the gateway before anyone is trusted: key sets fetched from the
//! token issuer, bearer tokens, and gRPC-Web text bodies (see `telehealth_kit::testing::fuzz`).
//! One test, so nothing else allocates while a bound is set.

use std::{
    alloc::System,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use telehealth_gateway::{
    auth::Authenticator,
    body::RequestLimit,
    grpc_web::{Framing, to_grpc},
    jwks::{JwksSource, KeyStore, parse_set, usable_keys},
};
use telehealth_kit::{
    config::JwtSettings,
    identity::Role,
    testing::fuzz::{self, Allocator, Cap, Target},
    token::{DevSigner, MintRequest},
};

#[global_allocator]
static ALLOCATOR: Allocator = Cap::new(System, usize::MAX);

/// The HTTP/2 header list the gateway accepts (`authorization` is one of the headers).
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest gRPC message of an ordinary call.
const MESSAGE_LIMIT: u32 = 64 * 1024;

fn corpus(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn mint(signer: &DevSigner, subject: &str, specialty: Option<&str>, roles: Vec<Role>) -> Vec<u8> {
    signer
        .mint(&MintRequest {
            subject: subject.to_owned(),
            roles,
            org: "cds-bourganeuf".to_owned(),
            specialty: specialty.map(str::to_owned),
            cert_thumbprint: Some("a".repeat(43)),
            ttl: Duration::from_secs(3600),
            audience: telehealth_kit::config::DEFAULT_AUDIENCE.to_owned(),
        })
        .expect("mint")
        .into_bytes()
}

#[test]
fn key_sets_tokens_and_grpc_web_bodies_never_panic_and_stay_within_their_memory_bound() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let signer = DevSigner::new(dir.path().join("jwt"));
    signer.ensure().expect("dev signer");
    let jwks = std::fs::read(signer.jwks_file()).expect("jwks");

    // A key set as fetched from `jwks_url` (the fetch stops at 1 MiB).
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "jwks",
            corpus: corpus("jwks"),
            made_seeds: vec![jwks],
            max_input_bytes: 64 * 1024,
            memory_bound: |n| 64 * n + 256 * 1024,
        },
        |input| parse_set(input).map(|set| usable_keys(&[set]).len()).ok(),
    );
    println!("jwks: {report:?}");

    // A bearer token, checked against the dev signer's key.
    let keys = runtime
        .block_on(KeyStore::load(
            JwksSource::Files(vec![signer.jwks_file()]),
            Duration::from_secs(3600),
        ))
        .expect("keys");
    let authenticator = Authenticator::new(
        Arc::new(keys),
        JwtSettings {
            // Every input checked in full, none answered from the cache.
            cache_entries: 0,
            ..JwtSettings::default()
        },
    );
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "token",
            corpus: corpus("token"),
            made_seeds: vec![
                mint(&signer, "dr-martin", None, vec![Role::Doctor]),
                mint(
                    &signer,
                    &"x".repeat(300),
                    Some("dermatologie"),
                    vec![Role::Specialist],
                ),
                mint(
                    &signer,
                    "infirmière-éà",
                    None,
                    vec![Role::Nurse, Role::Doctor],
                ),
            ],
            max_input_bytes: MAX_HEADER_BYTES,
            memory_bound: |n| 16 * n + 256 * 1024,
        },
        |input| {
            let header = format!("Bearer {}", String::from_utf8_lossy(input));
            runtime
                .block_on(authenticator.authenticate(Some(&header), &"a".repeat(43)))
                .is_ok()
        },
    );
    println!("token: {report:?}");

    // A grpc-web-text request body, in pieces as they arrive, through the message limit.
    let report = fuzz::run(
        &ALLOCATOR,
        &Target {
            name: "grpc-web-text",
            corpus: corpus("grpc-web-text"),
            made_seeds: Vec::new(),
            max_input_bytes: 256 * 1024,
            memory_bound: |n| 4 * n + 64 * 1024,
        },
        |input| {
            let step = 1 + input.len() % 613;
            let pieces: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = input
                .chunks(step)
                .map(|piece| Ok(http_body::Frame::data(Bytes::copy_from_slice(piece))))
                .collect();
            let body = StreamBody::new(futures::stream::iter(pieces));
            let request = http::Request::builder()
                .header("content-type", "application/grpc-web-text")
                .body(body)
                .expect("request");
            let (_, decoded) = to_grpc(request, Framing::Text).into_parts();
            let limited =
                RequestLimit::new(decoded, MESSAGE_LIMIT, Arc::new(AtomicBool::new(false)));
            runtime
                .block_on(limited.collect())
                .map(|collected| collected.to_bytes().len())
                .ok()
        },
    );
    println!("grpc-web-text: {report:?}");
}
