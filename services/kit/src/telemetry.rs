//! Logs and traces.
//!
//! Every process installs one `tracing` subscriber: a log layer (text or JSON, one event per
//! line; client-supplied values cannot break a line, see [`fields`]) and an OpenTelemetry
//! layer. The OpenTelemetry layer is always there so that every request has a W3C
//! trace id (quoted in error messages and audit records, and propagated from the gateway to the
//! services); spans are exported over OTLP/gRPC only when an endpoint is configured.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tonic::codegen::http;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    config::{LogFormat, TelemetrySettings},
    error::KitError,
};

pub mod fields;

/// Target of the one span every request gets (gateway and services). Those spans feed traces
/// (trace ids, parent/child links) but not the log output: formatting their fields for the
/// logs on every call was the largest single CPU cost of the gateway.
pub const REQUEST_SPAN_TARGET: &str = "telehealth::request";

/// Keeps the tracer provider alive; flushes pending spans when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry: could not flush spans: {error}");
        }
    }
}

/// Installs the global subscriber for a process named `service_name`.
///
/// If a subscriber is already installed (tests start several parts in one process), the existing
/// one is kept and only a guard for a fresh provider is returned.
pub fn init(settings: &TelemetrySettings, service_name: &str) -> Result<TelemetryGuard, KitError> {
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| KitError::Config(format!("telemetry.otlp_endpoint: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    install(settings, provider.clone());
    Ok(TelemetryGuard { provider })
}

/// Installs the subscriber around `provider` (tests pass one with an in-memory exporter).
pub fn install(settings: &TelemetrySettings, provider: SdkTracerProvider) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut log_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    if let Ok(directive) = format!("{REQUEST_SPAN_TARGET}=off").parse() {
        log_filter = log_filter.add_directive(directive);
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logs = log_layer(settings.log_format, ansi, std::io::stdout);
    // Each layer has its own filter: the logs follow `log_filter`; traces take every span and
    // event at INFO and above, request spans included.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("telehealth"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    // A second install in the same process (tests) is expected to fail; keep the first.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(log_filter))
        .with(traces)
        .try_init();
}

/// The log output layer in `format`, writing one line per event to `writer`.
pub fn log_layer<S, W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(fields::EscapedFields)
            .with_target(true)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed(),
    }
}

pub use crate::trace_id::current_trace_id;

/// The span of one incoming gRPC request, a child of the caller's trace if the request carries
/// a `traceparent` header. Used as tonic's `trace_fn`.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        target: REQUEST_SPAN_TARGET,
        "grpc.server",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
    );
    continue_trace(&span, request.headers());
    span
}

/// Makes `span` a child of the trace carried by `headers` (`traceparent`), if any.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = extract_context(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace context carried by `headers` (empty if none).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the current span's trace context into outgoing `headers` (`traceparent`).
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what a log layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(format, false, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", method = "/a\nb");
            let _entered = span.enter();
            let kid = "k1\n2026-01-01T00:00:00Z  INFO telehealth: forged admin login";
            tracing::warn!(reason = %format!("no key with kid {kid}"), %kid, "call refused {kid}");
        });
        let bytes = captured.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn a_newline_in_a_logged_value_never_starts_a_line() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let output = logged(format);
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines.len(), 1, "{format:?}: one event, one line: {output}");
            assert!(
                lines[0].contains("forged admin login"),
                "{format:?}: the value is kept, escaped: {output}"
            );
            if format == LogFormat::Json {
                let event: serde_json::Value =
                    serde_json::from_str(lines[0]).expect("each line is one JSON object");
                assert!(
                    event["fields"]["kid"]
                        .as_str()
                        .is_some_and(|kid| kid.contains('\n')),
                    "{output}"
                );
            } else {
                assert!(lines[0].contains("kid=k1\\n2026"), "{output}");
                assert!(lines[0].contains("method=/a\\nb"), "{output}");
            }
        }
    }
}
