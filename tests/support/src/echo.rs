//! An echo backend serving real service paths behind internal mTLS and the identity interceptor.
//!
//! | path | kind | answer |
//! |---|---|---|
//! | `WoundService/GetWound` | unary | JSON of what arrived: identity, deadline, trace context, caller |
//! | `WoundService/UpdateWound` | unary | the request payload |
//! | `WoundService/ListAlerts` | unary | sleeps the number of ms in the payload, then answers `done` |
//! | `WoundService/UploadPhoto` | client streaming | `<messages> <bytes>` received |
//! | `WoundService/DownloadPhoto` | server streaming | payload `<count> <size>`: that many messages of that size |
//! | `WoundService/GetAssessment` | unary | `FAILED_PRECONDITION` with details and a custom trailer |
//! | `SignallingService/Signal` | bidirectional | each message back |

use std::{convert::Infallible, net::SocketAddr, sync::Arc, task::Poll, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use telehealth_kit::{
    Part,
    identity::{self, IDENTITY_METADATA_PREFIX, IdentityInterceptor},
    tls,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    Request, Response, Status, Streaming,
    body::Body,
    server::{Grpc, NamedService},
    service::{Interceptor, Routes},
    transport::Server,
};

use crate::codec::RawCodec;

/// Largest message the echo backend accepts (above the gateway's tests' 4 MiB).
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

macro_rules! echo_service {
    ($name:ident, $grpc:literal) => {
        /// Echo backend for one service name.
        #[derive(Clone)]
        pub struct $name {
            interceptor: IdentityInterceptor,
            served: Arc<std::sync::atomic::AtomicUsize>,
        }

        impl NamedService for $name {
            const NAME: &'static str = $grpc;
        }

        impl tower::Service<http::Request<Body>> for $name {
            type Response = http::Response<Body>;
            type Error = Infallible;
            type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: http::Request<Body>) -> Self::Future {
                self.served
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let interceptor = self.interceptor;
                Box::pin(async move { Ok(dispatch(interceptor, request).await) })
            }
        }
    };
}

echo_service!(WoundEcho, "telehealth.v1.WoundService");
echo_service!(SignallingEcho, "telehealth.v1.SignallingService");

/// A running echo backend.
pub struct EchoBackend {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    served: Arc<std::sync::atomic::AtomicUsize>,
}

impl EchoBackend {
    /// Calls this backend has received.
    pub fn calls(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Starts an echo backend on `listener` with the internal identity of `part` from `files`.
pub async fn start(
    listener: TcpListener,
    files: &telehealth_kit::config::TlsFiles,
    part: Part,
) -> EchoBackend {
    let address = listener.local_addr().expect("echo address");
    let config = tls::internal_server_config(files).expect("echo tls");
    let shutdown = CancellationToken::new();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let interceptor = IdentityInterceptor::new(part);
    let routes = Routes::new(WoundEcho {
        interceptor,
        served: served.clone(),
    })
    .add_service(SignallingEcho {
        interceptor,
        served: served.clone(),
    });
    let incoming = tls::tls_incoming(listener, config, shutdown.clone());
    let server = Server::builder()
        .trace_fn(telehealth_kit::telemetry::server_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::spawn(server);
    EchoBackend {
        address,
        shutdown,
        served,
    }
}

fn grpc() -> Grpc<RawCodec> {
    Grpc::new(RawCodec)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

async fn dispatch(
    mut interceptor: IdentityInterceptor,
    request: http::Request<Body>,
) -> http::Response<Body> {
    let method = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    // The same check every real service makes, on the request's headers and TLS extensions.
    let (parts, body) = request.into_parts();
    let probe = Request::from_http(http::Request::from_parts(parts.clone(), ()));
    let caller = match interceptor.call(probe) {
        Ok(checked) => identity::caller(&checked).ok().cloned(),
        Err(status) => return status.into_http(),
    };
    let request = http::Request::from_parts(parts, body);
    let caller = format!("{caller:?}");
    match method.as_str() {
        "GetWound" => {
            let service = tower::service_fn(move |request: Request<Bytes>| {
                let caller = caller.clone();
                async move {
                    let mut seen = serde_json::Map::new();
                    for entry in request.metadata().iter() {
                        if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                            let key = key.as_str();
                            if key.starts_with(IDENTITY_METADATA_PREFIX)
                                || key == "grpc-timeout"
                                || key == "traceparent"
                                || key == "authorization"
                            {
                                seen.insert(key.to_owned(), value.to_str().unwrap_or("?").into());
                            }
                        }
                    }
                    seen.insert("caller".into(), caller.into());
                    let json = serde_json::Value::Object(seen).to_string();
                    Ok::<_, Status>(Response::new(Bytes::from(json)))
                }
            });
            grpc().unary(service, request).await
        }
        "UpdateWound" => {
            let service = tower::service_fn(|request: Request<Bytes>| async move {
                Ok::<_, Status>(Response::new(request.into_inner()))
            });
            grpc().unary(service, request).await
        }
        "ListAlerts" => {
            let service = tower::service_fn(|request: Request<Bytes>| async move {
                let millis: u64 = std::str::from_utf8(request.get_ref())
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(millis)).await;
                Ok::<_, Status>(Response::new(Bytes::from_static(b"done")))
            });
            grpc().unary(service, request).await
        }
        "UploadPhoto" => {
            let service = tower::service_fn(|request: Request<Streaming<Bytes>>| async move {
                let mut stream = request.into_inner();
                let (mut messages, mut bytes) = (0_u64, 0_u64);
                while let Some(message) = stream.next().await {
                    let message = message?;
                    messages += 1;
                    bytes += message.len() as u64;
                }
                Ok::<_, Status>(Response::new(Bytes::from(format!("{messages} {bytes}"))))
            });
            grpc().client_streaming(service, request).await
        }
        "DownloadPhoto" => {
            let service = tower::service_fn(|request: Request<Bytes>| async move {
                let text = String::from_utf8_lossy(request.get_ref()).into_owned();
                let mut numbers = text.split(' ').filter_map(|n| n.parse::<usize>().ok());
                let (count, size) = (numbers.next().unwrap_or(1), numbers.next().unwrap_or(1));
                let message = Bytes::from(vec![7_u8; size]);
                let stream = futures::stream::iter((0..count).map(move |_| Ok(message.clone())));
                Ok::<_, Status>(Response::new(
                    Box::pin(stream) as futures::stream::BoxStream<'static, Result<Bytes, Status>>
                ))
            });
            grpc().server_streaming(service, request).await
        }
        "Signal" => {
            let service = tower::service_fn(|request: Request<Streaming<Bytes>>| async move {
                let stream = request.into_inner();
                Ok::<_, Status>(Response::new(
                    Box::pin(stream) as futures::stream::BoxStream<'static, Result<Bytes, Status>>
                ))
            });
            grpc().streaming(service, request).await
        }
        "GetAssessment" => {
            // A refusal with details and custom trailers, to check they cross the gateway intact.
            let mut status = Status::with_details(
                tonic::Code::FailedPrecondition,
                "assessment is locked",
                Bytes::from_static(b"\x08\x09detail-bytes"),
            );
            status
                .metadata_mut()
                .insert("x-lock-owner", "nurse-claire".parse().expect("ascii"));
            status.into_http()
        }
        other => Status::unimplemented(format!("echo backend has no {other}")).into_http(),
    }
}
