//! The load generator: closed-loop unary calls and a client-streaming upload, over tonic
//! channels with the raw codec.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::future::join_all;
use telehealth_testkit::{
    RawCodec,
    harness::{paths, raw_client},
};
use tonic::{
    Request, Status,
    codegen::http::uri::PathAndQuery,
    metadata::MetadataMap,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

/// Longest a single call may take before it counts as an error (keeps every loop bounded).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the load goes and how each call is dressed.
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    tls: ClientTlsConfig,
    /// Metadata every call carries (a bearer token, or the identity written by hand).
    metadata: MetadataMap,
    /// Calls are gRPC-Web (binary framing), as a browser makes them.
    pub web: bool,
}

impl Target {
    /// A target reached over TLS trusting `ca`, presenting `cert`/`key`, each call carrying
    /// `metadata`.
    pub fn new(
        address: SocketAddr,
        (ca, cert, key): (&std::path::Path, &std::path::Path, &std::path::Path),
        metadata: MetadataMap,
    ) -> anyhow::Result<Target> {
        let read = |p: &std::path::Path| std::fs::read(p).with_context(|| p.display().to_string());
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .identity(Identity::from_pem(read(cert)?, read(key)?))
            .domain_name("localhost");
        Ok(Target {
            address,
            tls,
            metadata,
            web: false,
        })
    }

    /// The same target with other metadata (refusal checks).
    pub fn with_metadata(&self, metadata: MetadataMap) -> Target {
        Target {
            metadata,
            ..self.clone()
        }
    }

    /// A new HTTP/2 connection to the target.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        Endpoint::from_shared(format!("https://{}", self.address))?
            .tls_config(self.tls.clone())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connect to {}", self.address))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request
    }

    /// One UpdateWound call on `channel`.
    pub async fn call_once(&self, channel: &Channel, payload: Bytes) -> Result<Bytes, Status> {
        if self.web {
            return web_unary(channel, &self.metadata, payload).await;
        }
        let mut client = raw_client(channel.clone());
        unary(&mut client, self.request(payload)).await
    }
}

/// One UpdateWound call as gRPC-Web (binary): the message framed in the body, the status read
/// from the trailer message at the end of the body (or from the headers of an answer with
/// trailers only).
async fn web_unary(
    channel: &Channel,
    metadata: &MetadataMap,
    payload: Bytes,
) -> Result<Bytes, Status> {
    use bytes::{Buf, BufMut};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let call = async {
        let mut body = bytes::BytesMut::with_capacity(5 + payload.len());
        body.put_u8(0);
        body.put_u32(payload.len() as u32);
        body.put_slice(&payload);
        let mut request = http::Request::post(format!("https://localhost{}", paths::UPDATE_WOUND))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                body.freeze(),
            )))
            .map_err(|e| Status::internal(e.to_string()))?;
        request
            .headers_mut()
            .extend(metadata.clone().into_headers());
        let response = channel
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let status_of = |code: &[u8], message: &[u8]| {
            let code = std::str::from_utf8(code)
                .ok()
                .and_then(|c| c.trim().parse::<i32>().ok())
                .unwrap_or(2);
            Status::new(
                tonic::Code::from(code),
                String::from_utf8_lossy(message).into_owned(),
            )
        };
        if let Some(code) = response.headers().get("grpc-status") {
            let message = response
                .headers()
                .get("grpc-message")
                .map_or(&b""[..], |m| m.as_bytes());
            return Err(status_of(code.as_bytes(), message));
        }
        let mut bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .to_bytes();
        let mut answer = None;
        while bytes.remaining() >= 5 {
            let flag = bytes.get_u8();
            let length = bytes.get_u32() as usize;
            let frame = bytes.split_to(length.min(bytes.len()));
            if flag & 0x80 == 0 {
                answer = Some(frame);
                continue;
            }
            let (mut code, mut message) = (&b"2"[..], &b""[..]);
            for line in frame.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(value) = line.strip_prefix(b"grpc-status: ") {
                    code = value;
                } else if let Some(value) = line.strip_prefix(b"grpc-message: ") {
                    message = value;
                }
            }
            if code != b"0" {
                return Err(status_of(code, message));
            }
        }
        answer.ok_or_else(|| Status::internal("no answer in the gRPC-Web body"))
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("bench call timeout")))
}

async fn unary(
    client: &mut tonic::client::Grpc<Channel>,
    request: Request<Bytes>,
) -> Result<Bytes, Status> {
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        client
            .unary(
                request,
                PathAndQuery::from_static(paths::UPDATE_WOUND),
                RawCodec,
            )
            .await
            .map(tonic::Response::into_inner)
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("bench call timeout")))
}

/// What one closed-loop run gave.
pub struct LoadResult {
    pub calls: u64,
    pub errors: u64,
    /// What the first failed call gave.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency of every successful call, nanoseconds, sorted.
    pub latencies: Vec<u64>,
}

impl LoadResult {
    pub fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..1) of latency, microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1000.0
    }
}

/// Open connections for a run at `in_flight` calls: one for a single call in flight, otherwise
/// `connections` (the same for every target).
pub async fn open_channels(
    target: &Target,
    in_flight: usize,
    connections: usize,
) -> anyhow::Result<Vec<Channel>> {
    let count = if in_flight <= 1 {
        1
    } else {
        connections.clamp(1, in_flight)
    };
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(target.connect().await?);
    }
    Ok(channels)
}

/// `in_flight` workers each call UpdateWound with `payload` back to back for `duration`, over
/// `channels` (worker i uses channel i mod n).
pub async fn closed_loop(
    target: &Target,
    channels: &[Channel],
    in_flight: usize,
    payload: Bytes,
    duration: Duration,
) -> LoadResult {
    let start = Instant::now();
    let end = start + duration;
    let workers = (0..in_flight).map(|i| {
        let target = target.clone();
        let channel = channels[i % channels.len()].clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            let mut client = raw_client(channel.clone());
            let mut latencies = Vec::with_capacity(64 * 1024);
            let mut errors = 0_u64;
            let mut first_error = None;
            while Instant::now() < end {
                let began = Instant::now();
                let answer = if target.web {
                    web_unary(&channel, &target.metadata, payload.clone()).await
                } else {
                    unary(&mut client, target.request(payload.clone())).await
                };
                match answer {
                    Ok(answer) if answer.len() == payload.len() => {
                        latencies.push(began.elapsed().as_nanos() as u64);
                    }
                    Ok(answer) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!(
                                "answer of {} bytes, expected {}",
                                answer.len(),
                                payload.len()
                            )
                        });
                    }
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{:?}: {}", status.code(), status.message())
                        });
                    }
                }
            }
            (latencies, errors, first_error)
        })
    });
    let mut result = LoadResult {
        calls: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for joined in join_all(workers).await {
        match joined {
            Ok((latencies, errors, first_error)) => {
                result.latencies.extend(latencies);
                result.errors += errors;
                if result.first_error.is_none() {
                    result.first_error = first_error;
                }
            }
            Err(error) => {
                result.errors += 1;
                result.first_error = Some(format!("worker failed: {error}"));
            }
        }
    }
    result.elapsed = start.elapsed();
    result.calls = result.latencies.len() as u64;
    result.latencies.sort_unstable();
    result
}

/// Uploads `total` bytes in `chunk`-byte messages with one UploadPhoto call; the time it took.
pub async fn upload(target: &Target, total: usize, chunk: usize) -> anyhow::Result<Duration> {
    let channel = target.connect().await?;
    let mut client = raw_client(channel);
    let message = Bytes::from(vec![0x5a_u8; chunk]);
    let count = total / chunk;
    let stream = futures::stream::iter((0..count).map(move |_| message.clone()));
    let began = Instant::now();
    let call = async {
        client.ready().await?;
        client
            .client_streaming(
                target.request(stream),
                PathAndQuery::from_static(paths::UPLOAD_PHOTO),
                RawCodec,
            )
            .await
            .map(tonic::Response::into_inner)
            .map_err(anyhow::Error::from)
    };
    let answer = tokio::time::timeout(Duration::from_secs(120), call)
        .await
        .context("upload took more than 120 s")??;
    let elapsed = began.elapsed();
    let expected = format!("{count} {}", count * chunk);
    if answer != expected.as_bytes() {
        bail!(
            "upload answer {:?}, expected {expected:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(elapsed)
}
