//! Per-call metrics, written once for the gateway and every service: calls by method and gRPC
//! code, their duration, and calls in flight. A method label is always a method of the contract
//! (any other path is `other`), so a client cannot grow the series.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use opentelemetry::{
    KeyValue, StringValue,
    metrics::{Counter, Histogram, UpDownCounter},
};
use telehealth_proto::access::AccessPolicy;

use super::Metrics;
use crate::error::KitError;

/// Latency buckets, in seconds: 1 ms to 30 s (streams are counted when they end, so the long
/// ones land in the last buckets).
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The instruments of one server (`gateway.rpc.*` or `rpc.server.*`), and the contract's
/// methods; cloned into each call's record.
#[derive(Clone)]
pub struct RpcMetrics {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    /// The contract's methods with their label, built once (a call clones an `Arc`).
    methods: Arc<HashMap<String, KeyValue>>,
    other: KeyValue,
}

impl RpcMetrics {
    /// Instruments named `<prefix>.calls`, `<prefix>.duration`, `<prefix>.in_flight`.
    pub fn new(metrics: &Metrics, prefix: &str) -> Result<RpcMetrics, KitError> {
        let policy = AccessPolicy::builtin().map_err(|e| KitError::Config(e.to_string()))?;
        let meter = metrics.meter("telehealth");
        Ok(RpcMetrics {
            calls: meter
                .u64_counter(format!("{prefix}.calls"))
                .with_description("Calls answered, by method and gRPC code")
                .build(),
            duration: meter
                .f64_histogram(format!("{prefix}.duration"))
                .with_unit("s")
                .with_description("Time from a call's headers to its last byte, by method")
                .with_boundaries(BUCKETS.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter(format!("{prefix}.in_flight"))
                .with_description("Calls and streams open, by method")
                .build(),
            methods: Arc::new(
                policy
                    .iter()
                    .map(|(path, _)| (path.to_owned(), method_label(path)))
                    .collect(),
            ),
            other: method_label("other"),
        })
    }

    /// A call to `path` starts (labelled `other` unless it is a method of the contract).
    pub fn start(&self, path: &str) -> CallRecord {
        let method = self.methods.get(path).unwrap_or(&self.other).clone();
        self.in_flight.add(1, std::slice::from_ref(&method));
        CallRecord {
            metrics: self.clone(),
            method,
            started: Instant::now(),
            code: None,
        }
    }
}

/// One call, recorded when it ends (its response body dropped).
pub struct CallRecord {
    metrics: RpcMetrics,
    method: KeyValue,
    started: Instant,
    code: Option<&'static str>,
}

impl CallRecord {
    /// Takes the call's code from `headers` (a response's, trailers-only, or its trailers).
    fn observe(&mut self, headers: &HeaderMap) {
        if let Some(status) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
        {
            self.code = Some(code_name(status));
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let method = std::slice::from_ref(&self.method);
        self.metrics.in_flight.add(-1, method);
        self.metrics
            .duration
            .record(self.started.elapsed().as_secs_f64(), method);
        // No status seen: the client went away first.
        let code = KeyValue::new("code", self.code.unwrap_or("CANCELLED"));
        self.metrics.calls.add(1, &[self.method.clone(), code]);
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when it ends.
    pub struct Observed<B> {
        #[pin]
        inner: B,
        record: CallRecord,
    }
}

impl<B> Observed<B> {
    /// Wraps the body of a response whose `headers` were just received.
    pub fn new(inner: B, headers: &HeaderMap, mut record: CallRecord) -> Self {
        record.observe(headers);
        Observed { inner, record }
    }
}

impl<B> Body for Observed<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
        {
            this.record.observe(trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn method_label(path: &str) -> KeyValue {
    KeyValue::new("method", StringValue::from(Arc::<str>::from(path)))
}

/// Records every call of a tonic server (`Server::builder().layer(..)`).
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: RpcMetrics,
}

impl RpcMetricsLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A tonic server's service whose calls are recorded.
#[derive(Clone)]
pub struct Recorded<S> {
    inner: S,
    metrics: RpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let record = self.metrics.start(request.uri().path());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let (parts, body) = response.into_parts();
            let body = tonic::body::Body::new(Observed::new(body, &parts.headers, record));
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// The gRPC code's name, as in the gRPC specification.
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|n| NAMES.get(n))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_and_out_of_range_ones_are_unknown() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(5), "NOT_FOUND");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(17), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
    }

    #[test]
    fn a_call_is_counted_with_the_code_of_its_trailers_or_as_cancelled() {
        let metrics = Metrics::local();
        let rpc = RpcMetrics::new(&metrics, "test.rpc").expect("contract");
        let method = "/telehealth.v1.SchedulingService/ListAppointments";
        let mut ok = rpc.start(method);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().expect("ascii"));
        ok.observe(&trailers);
        drop(ok);
        drop(rpc.start(method));
        drop(rpc.start("/anything/a-client-made-up"));
        let text = metrics.render().expect("rendered");
        let m = format!("method=\"{method}\"");
        for line in [
            format!("test_rpc_calls_total{{code=\"NOT_FOUND\",{m}}} 1"),
            format!("test_rpc_calls_total{{code=\"CANCELLED\",{m}}} 1"),
            "test_rpc_calls_total{code=\"CANCELLED\",method=\"other\"} 1".to_owned(),
            format!("test_rpc_in_flight{{{m}}} 0"),
            format!("test_rpc_duration_seconds_count{{{m}}} 2"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
