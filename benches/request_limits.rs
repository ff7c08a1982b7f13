//! Request size limits benchmark: how much memory the suite takes to receive the worst message
//! each RPC of the contract allows, and what the 15 MiB attack now costs.
//!
//! `benches/run request_limits [<filter>]`
//!
//! Each RPC declares its largest request (`max_request_bytes`, `access.proto`); the gateway and
//! the services refuse anything larger from its length prefix, so the worst message an RPC can
//! be made to decode is one of exactly that size built to decode into as much memory as
//! possible. For each RPC the bench builds it from the descriptor set: the repeated field
//! (reached through singular message fields) whose elements cost the most memory per wire
//! byte, filled with empty elements (2 bytes each on the wire: tag and zero length); else a
//! packed repeated varint field (1 byte per element); else the longest string. It is sent once,
//! through the gateway with a token holding every role (internal-only RPCs: straight to their
//! service over internal mTLS, as the service that calls them), after a warm-up call with an
//! empty message.
//!
//! The figure is the growth of the suite's peak resident memory (gateway and services are one
//! child process, SQLite): the kernel's high-water mark (`VmHWM`, reset through
//! `/proc/<pid>/clear_refs` just before the message) minus the resident memory at that moment.
//! Each RPC gets a fresh child process, so that memory an earlier RPC left with the allocator
//! cannot hide a later one's. A last phase sends the 15 MiB attack (empty repeated elements)
//! through the gateway and straight to a service, and decodes the same bytes in this process
//! (what a service decoding before checking would take).
//!
//! Measured (2 cores, SQLite): see docs/operations.md ("Limits") and benches/README.md.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use telehealth_kit::{
    Part, Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::access::{AccessPolicy, MethodAccess};
use telehealth_testkit::{
    RawCodec,
    harness::{raw_client, with_token},
};
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};

use telehealth_testkit::child::{self as child_suite, ChildSuite};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const ATTACK: usize = 15 * MIB;
const DEVICE: &str = "doctor-workstation";

fn bench_settings(dir: &Path) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    settings.gateway.listen = "127.0.0.1:0".parse()?;
    settings.gateway.limits.requests_per_second = 1_000_000.0;
    settings.gateway.limits.burst = 1_000_000;
    Ok(settings)
}

/// `--child <dir>`: the suite of this bench (see `telehealth_testkit::child`).
async fn child(args: &[String]) -> anyhow::Result<()> {
    child_suite::serve(bench_settings(&PathBuf::from(&args[0]))?).await
}

// ---- the worst message of a request type --------------------------------------------------

/// The most expensive message of at most `budget` bytes of type `message`, and what it holds.
fn worst_message(message: &MessageDescriptor, budget: usize) -> (Vec<u8>, String) {
    let mut best: Option<(u32, Vec<FieldDescriptor>)> = None;
    let mut path = Vec::new();
    find_repeated(message, &mut path, &mut best, 0);
    match best {
        Some((_, path)) => {
            let (leaf, wrappers) = path.split_last().expect("a path has a leaf");
            let inner_budget = budget - 6 * (wrappers.len() + 1);
            let (payload, what) = repeated_payload(leaf, inner_budget);
            let name = path
                .iter()
                .map(|f| f.name().to_owned())
                .collect::<Vec<_>>()
                .join(".");
            (wrap(wrappers, payload), format!("{what} `{name}`"))
        }
        None => longest_string(message, budget),
    }
}

/// Memory per wire byte of a repeated field's elements (higher is worse), as a rank; 0 if the
/// field cannot be filled with tiny elements.
fn rank(field: &FieldDescriptor) -> u32 {
    match field.kind() {
        // An empty message element: 2 bytes on the wire, a whole struct in memory; larger
        // structs rank higher.
        Kind::Message(element) => 100 + element.fields().len() as u32,
        // An empty string or bytes element: 2 bytes on the wire, 24 in memory.
        Kind::String | Kind::Bytes => 50,
        // A packed varint: 1 byte on the wire, 4 or 8 in memory.
        Kind::Int64 | Kind::Uint64 | Kind::Sint64 => 20,
        Kind::Int32 | Kind::Uint32 | Kind::Sint32 | Kind::Enum(_) | Kind::Bool => 10,
        _ => 0,
    }
}

fn find_repeated(
    message: &MessageDescriptor,
    path: &mut Vec<FieldDescriptor>,
    best: &mut Option<(u32, Vec<FieldDescriptor>)>,
    depth: usize,
) {
    for field in message.fields() {
        if field.is_list() {
            let rank = rank(&field);
            if rank > 0 && best.as_ref().is_none_or(|(b, _)| rank > *b) {
                let mut found = path.clone();
                found.push(field.clone());
                *best = Some((rank, found));
            }
        } else if let (Kind::Message(inner), Cardinality::Optional, true) =
            (field.kind(), field.cardinality(), depth < 4)
            && !field.is_map()
            && !inner.full_name().starts_with("google.protobuf.")
        {
            path.push(field.clone());
            find_repeated(&inner, path, best, depth + 1);
            path.pop();
        }
    }
}

fn repeated_payload(field: &FieldDescriptor, budget: usize) -> (Vec<u8>, String) {
    match field.kind() {
        Kind::Message(_) | Kind::String | Kind::Bytes => {
            let mut element = tag(field.number(), 2);
            element.push(0);
            let count = budget / element.len();
            (element.repeat(count), format!("{count} empty elements of"))
        }
        _ => {
            let count = budget - 8;
            let mut bytes = tag(field.number(), 2);
            bytes.extend(varint(count as u64));
            bytes.extend(std::iter::repeat_n(1_u8, count));
            (bytes, format!("{count} packed values of"))
        }
    }
}

/// A string or bytes field filling the whole budget, reached through singular message fields
/// (an upload's chunk data, an SDP), when the message has no repeated field.
fn longest_string(message: &MessageDescriptor, budget: usize) -> (Vec<u8>, String) {
    let mut path = Vec::new();
    if !find_string(message, &mut path, 0) {
        return (Vec::new(), "nothing to fill (empty message)".into());
    }
    let (leaf, wrappers) = path.split_last().expect("a path has a leaf");
    let count = budget - 8 - 6 * wrappers.len();
    let mut bytes = tag(leaf.number(), 2);
    bytes.extend(varint(count as u64));
    bytes.extend(std::iter::repeat_n(b'a', count));
    let name = path
        .iter()
        .map(|f| f.name().to_owned())
        .collect::<Vec<_>>()
        .join(".");
    (wrap(wrappers, bytes), format!("a {count}-byte `{name}`"))
}

fn find_string(message: &MessageDescriptor, path: &mut Vec<FieldDescriptor>, depth: usize) -> bool {
    // A string or bytes field of this message first (the biggest one a message can carry
    // is a plain field), then inside its singular message fields.
    if let Some(field) = message
        .fields()
        .find(|f| matches!(f.kind(), Kind::String | Kind::Bytes) && !f.is_list())
    {
        path.push(field);
        return true;
    }
    if depth >= 4 {
        return false;
    }
    for field in message.fields() {
        if let Kind::Message(inner) = field.kind()
            && !field.is_list()
            && !field.is_map()
            && !inner.full_name().starts_with("google.protobuf.")
        {
            path.push(field.clone());
            if find_string(&inner, path, depth + 1) {
                return true;
            }
            path.pop();
        }
    }
    false
}

/// `payload` as the content of the singular message fields `wrappers`, outermost first.
fn wrap(wrappers: &[FieldDescriptor], mut payload: Vec<u8>) -> Vec<u8> {
    for field in wrappers.iter().rev() {
        let mut outer = tag(field.number(), 2);
        outer.extend(varint(payload.len() as u64));
        outer.extend(payload);
        payload = outer;
    }
    payload
}

fn tag(number: u32, wire_type: u32) -> Vec<u8> {
    varint(u64::from(number << 3 | wire_type))
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

// ---- memory -------------------------------------------------------------------------------

fn status_kib(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the process's peak resident memory to its current one; returns that, in KiB.
fn reset_peak(pid: &str) -> anyhow::Result<u64> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(status_kib(pid, "VmRSS:"))
}

// ---- calls --------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum CallKind {
    Unary,
    ClientStreaming,
    ServerStreaming,
    Bidirectional,
}

/// `body` with the bearer `token`, if any.
fn request<T>(body: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(token) => with_token(body, token),
        None => tonic::Request::new(body),
    }
}

/// Sends `message` on `path`; returns the status code of the answer.
async fn send(
    channel: &Channel,
    path: &str,
    kind: CallKind,
    message: Bytes,
    token: Option<&str>,
) -> tonic::Code {
    let path: PathAndQuery = path.parse().expect("a path");
    let mut client = raw_client(channel.clone());
    if client.ready().await.is_err() {
        return tonic::Code::Unavailable;
    }
    let call = async {
        match kind {
            CallKind::Unary => client
                .unary(request(message, token), path, RawCodec)
                .await
                .map(|_| ()),
            CallKind::ClientStreaming => client
                .client_streaming(
                    request(futures::stream::iter([message]), token),
                    path,
                    RawCodec,
                )
                .await
                .map(|_| ()),
            CallKind::ServerStreaming => {
                let mut stream = client
                    .server_streaming(request(message, token), path, RawCodec)
                    .await?
                    .into_inner();
                while let Some(item) = stream.next().await {
                    item?;
                }
                Ok(())
            }
            CallKind::Bidirectional => {
                let mut stream = client
                    .streaming(
                        request(futures::stream::iter([message]), token),
                        path,
                        RawCodec,
                    )
                    .await?
                    .into_inner();
                while let Some(item) = stream.next().await {
                    item?;
                }
                Ok(())
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(())) => tonic::Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => tonic::Code::DeadlineExceeded,
    }
}

/// Channels to a running child suite.
struct Clients {
    gateway: Channel,
    token: String,
    /// Each service, reached over internal mTLS as a service that calls it.
    internal: BTreeMap<Part, Channel>,
}

impl Clients {
    async fn connect(dir: &Path, suite: &ChildSuite) -> anyhow::Result<Clients> {
        let settings = bench_settings(dir)?;
        let device = DevPki::new(settings.pki_dir()).device_files(DEVICE);
        let token = DevSigner::new(dir.join("jwt")).mint(&MintRequest {
            subject: "bench-everyone".into(),
            roles: Role::ALL.to_vec(),
            org: "cds-bench".into(),
            specialty: Some("dermatology".into()),
            cert_thumbprint: Some(thumbprint_of_pem_file(&device.cert)?),
            ttl: Duration::from_secs(3600),
            audience: DEFAULT_AUDIENCE.into(),
        })?;
        let gateway = telehealth_testkit::harness::channel_to(
            suite.gateway,
            &settings,
            &(device.cert, device.key),
        )
        .await?;
        let mut internal = BTreeMap::new();
        for (part, address) in &suite.services {
            let caller = Part::SERVICES
                .into_iter()
                .find(|caller| caller.calls().contains(part))
                .unwrap_or(Part::Gateway);
            let tls = telehealth_kit::tls::client_tls(&settings.internal_tls(caller))?;
            let channel = Channel::from_shared(format!("https://{address}"))?
                .tls_config(tls)?
                .connect()
                .await?;
            internal.insert(*part, channel);
        }
        Ok(Clients {
            gateway,
            token,
            internal,
        })
    }

    /// The channel and token a call of `path` goes through.
    fn route(&self, path: &str, internal_only: bool) -> (&Channel, Option<&str>) {
        if !internal_only {
            return (&self.gateway, Some(&self.token));
        }
        let service = path.split('/').nth(1).unwrap_or_default();
        let part = Part::SERVICES
            .into_iter()
            .find(|part| part.grpc_services().contains(&service))
            .expect("a service of the suite");
        (&self.internal[&part], None)
    }
}

struct Row {
    path: String,
    limit: u32,
    what: String,
    code: tonic::Code,
    growth_kib: u64,
}

/// Starts a fresh suite, warms `path` up, sends its worst message; the row of the table.
async fn measure_rpc(
    pool: &DescriptorPool,
    path: &str,
    limit: u32,
    internal_only: bool,
) -> anyhow::Result<Row> {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .expect("a gRPC path");
    let method = pool
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .ok_or_else(|| anyhow::anyhow!("{path} is not in the descriptor set"))?;
    let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => CallKind::Unary,
        (true, false) => CallKind::ClientStreaming,
        (false, true) => CallKind::ServerStreaming,
        (true, true) => CallKind::Bidirectional,
    };
    let (message, what) = worst_message(&method.input(), limit as usize);
    anyhow::ensure!(message.len() <= limit as usize, "{path}: built too large");

    let dir = tempfile::tempdir()?;
    let suite = ChildSuite::start(&[dir.path().as_os_str()])?;
    let clients = Clients::connect(dir.path(), &suite).await?;
    let (channel, token) = clients.route(path, internal_only);
    let pid = suite.pid().to_string();
    send(channel, path, kind, Bytes::new(), token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = reset_peak(&pid)?;
    let code = send(channel, path, kind, Bytes::from(message), token).await;
    let peak = status_kib(&pid, "VmHWM:");
    drop(clients);
    suite.stop()?;
    Ok(Row {
        path: path.to_owned(),
        limit,
        what,
        code,
        growth_kib: peak.saturating_sub(before),
    })
}

/// The 15 MiB attack: through the gateway, straight to a service, and decoded in this process.
async fn attack(pool: &DescriptorPool) -> anyhow::Result<()> {
    const THROUGH_GATEWAY: &str = "/telehealth.v1.SchedulingService/SetWeeklyAvailability";
    const STRAIGHT: &str = "/telehealth.v1.DirectoryService/CheckMembers";
    println!();
    println!("| 15 MiB of empty repeated elements | answer | suite peak memory growth, MiB |");
    println!("|---|---|---:|");
    for (path, internal_only) in [(THROUGH_GATEWAY, false), (STRAIGHT, true)] {
        let input = pool
            .get_service_by_name(path.split('/').nth(1).unwrap_or_default())
            .and_then(|s| s.methods().find(|m| path.ends_with(m.name())))
            .map(|m| m.input())
            .ok_or_else(|| anyhow::anyhow!("{path}"))?;
        let (message, _) = worst_message(&input, ATTACK);
        let dir = tempfile::tempdir()?;
        let suite = ChildSuite::start(&[dir.path().as_os_str()])?;
        let clients = Clients::connect(dir.path(), &suite).await?;
        let (channel, token) = clients.route(path, internal_only);
        let pid = suite.pid().to_string();
        send(channel, path, CallKind::Unary, Bytes::new(), token).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = reset_peak(&pid)?;
        let code = send(channel, path, CallKind::Unary, Bytes::from(message), token).await;
        let growth = status_kib(&pid, "VmHWM:").saturating_sub(before);
        let route = if internal_only {
            "straight to the service"
        } else {
            "through the gateway"
        };
        println!(
            "| `{}` {route} | {code:?} | {:.1} |",
            path.rsplit('/').next().unwrap_or(path),
            growth as f64 / 1024.0
        );
        drop(clients);
        suite.stop()?;
    }

    // What decoding it would take (a service that decodes before checking).
    let input = pool
        .get_message_by_name("telehealth.v1.SetWeeklyAvailabilityRequest")
        .ok_or_else(|| anyhow::anyhow!("SetWeeklyAvailabilityRequest"))?;
    let (message, what) = worst_message(&input, ATTACK);
    let before = reset_peak("self")?;
    let decoded: telehealth_proto::v1::SetWeeklyAvailabilityRequest =
        prost::Message::decode(&message[..])?;
    let growth = status_kib("self", "VmHWM:").saturating_sub(before);
    println!(
        "| (decoding the same {:.1} MiB with prost, in this process: {what}, {} elements) | — | {:.1} |",
        message.len() as f64 / MIB as f64,
        decoded.weekly_ranges.len(),
        growth as f64 / 1024.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        return child(&args[at + 1..]).await;
    }
    // `cargo bench` passes `--bench`; any other argument filters the RPCs by path.
    let filter = args[1..]
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    let pool = DescriptorPool::decode(telehealth_proto::FILE_DESCRIPTOR_SET)?;
    let policy = AccessPolicy::builtin()?;
    let mut rows = Vec::new();
    for (path, rule) in policy.iter().filter(|(path, _)| path.contains(&filter)) {
        let internal_only = rule.access == MethodAccess::InternalOnly;
        let row = measure_rpc(&pool, path, rule.max_request_bytes, internal_only).await?;
        eprintln!(
            "{path}: +{:.1} MiB ({:?})",
            row.growth_kib as f64 / 1024.0,
            row.code
        );
        rows.push(row);
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.growth_kib));
    println!(
        "| RPC | max_request_bytes | worst message | answer | suite peak memory growth, MiB |"
    );
    println!("|---|---:|---|---|---:|");
    for row in &rows {
        println!(
            "| `{}` | {} | {} | {:?} | {:.1} |",
            row.path.trim_start_matches("/telehealth.v1."),
            row.limit,
            row.what,
            row.code,
            row.growth_kib as f64 / 1024.0
        );
    }
    if filter.is_empty() || "attack".contains(&filter) {
        attack(&pool).await?;
    }
    Ok(())
}
