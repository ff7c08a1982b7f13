//! The gateway's metrics: every call (method, gRPC code, duration, calls in flight) and every
//! refusal by reason. Label values come from bounded sets only: a method the policy knows (any
//! other path is `other`), a gRPC code name, a refusal kind.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, UpDownCounter},
};
use telehealth_kit::metrics::Metrics;

use crate::error::GatewayError;

/// Latency buckets, in seconds: 1 ms to 30 s (streams are counted when they end, so the long
/// ones land in the last buckets).
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The instruments; cloned into each call's record.
#[derive(Clone)]
pub struct GatewayMetrics {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    refusals: Counter<u64>,
}

impl GatewayMetrics {
    pub fn new(metrics: &Metrics) -> GatewayMetrics {
        let meter = metrics.meter("telehealth.gateway");
        GatewayMetrics {
            calls: meter
                .u64_counter("gateway.rpc.calls")
                .with_description("Calls answered by the gateway, by method and gRPC code")
                .build(),
            duration: meter
                .f64_histogram("gateway.rpc.duration")
                .with_unit("s")
                .with_description("Time from a call's headers to its last byte, by method")
                .with_boundaries(BUCKETS.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter("gateway.rpc.in_flight")
                .with_description("Calls and streams open through the gateway, by method")
                .build(),
            refusals: meter
                .u64_counter("gateway.refusals")
                .with_description("Calls the gateway refused itself, by reason")
                .build(),
        }
    }

    /// A call to `method` (`other` for a path the policy does not know) starts.
    pub fn start(&self, method: &str) -> CallRecord {
        let method = KeyValue::new("method", method.to_owned());
        self.in_flight.add(1, std::slice::from_ref(&method));
        CallRecord {
            metrics: self.clone(),
            method,
            started: Instant::now(),
            code: None,
        }
    }

    pub fn refused(&self, error: &GatewayError) {
        self.refusals
            .add(1, &[KeyValue::new("reason", error.kind())]);
    }
}

/// One call, recorded when it ends (its response body dropped).
pub struct CallRecord {
    metrics: GatewayMetrics,
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
        let gateway = GatewayMetrics::new(&metrics);
        let mut ok = gateway.start("/a.B/C");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().expect("ascii"));
        ok.observe(&trailers);
        drop(ok);
        drop(gateway.start("/a.B/C"));
        let text = metrics.render().expect("rendered");
        for line in [
            "gateway_rpc_calls_total{code=\"NOT_FOUND\",method=\"/a.B/C\"} 1",
            "gateway_rpc_calls_total{code=\"CANCELLED\",method=\"/a.B/C\"} 1",
            "gateway_rpc_in_flight{method=\"/a.B/C\"} 0",
            "gateway_rpc_duration_seconds_count{method=\"/a.B/C\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
