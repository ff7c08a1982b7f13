//! Metrics: one OpenTelemetry meter provider per process, read two ways.
//!
//! * **Prometheus text** on the admin listener (`GET /metrics`, never on a public port): a
//!   manual reader collected at each scrape, cumulative, rendered here (no Prometheus client
//!   library: the exposition format is a few lines of text).
//! * **OTLP** to the collector at `telemetry.otlp_endpoint`, when one is configured, by a
//!   periodic reader.
//!
//! Parts get instruments from [`Metrics::meter`]; names follow OpenTelemetry's conventions
//! (`rpc.server.duration`) and become Prometheus names (`rpc_server_duration_seconds`). Every
//! label value must come from a bounded set (a method the policy knows, a gRPC code, a reason):
//! a label taken from a client's bytes would let a client grow the series without bound.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::{Value, metrics::Meter, metrics::MeterProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::{AggregatedMetrics, MetricData, ResourceMetrics},
        reader::MetricReader,
    },
};

use crate::error::KitError;

pub mod admin;
pub mod rpc;

/// What services need to declare their own instruments, without depending on OpenTelemetry.
pub use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, UpDownCounter},
};

/// How often metrics are pushed over OTLP.
const OTLP_INTERVAL: Duration = Duration::from_secs(30);

/// The process's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    /// Certificates whose expiry is reported: (label, PEM file), read at each collection so a
    /// renewed file shows at once.
    certificates: Arc<Mutex<Vec<(String, PathBuf)>>>,
}

/// The manual reader, shared: the provider owns one handle, the scrape another.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

impl Metrics {
    /// Metrics of the process `service_name`, pushed to `otlp_endpoint` when given.
    pub fn new(service_name: &str, otlp_endpoint: Option<&str>) -> Result<Metrics, KitError> {
        let exporter = match otlp_endpoint {
            Some(endpoint) => Some(
                opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.to_owned())
                    .build()
                    .map_err(|e| KitError::Config(format!("telemetry.otlp_endpoint: {e}")))?,
            ),
            None => None,
        };
        Ok(Metrics::assemble(service_name, exporter))
    }

    /// Metrics that are kept but pushed nowhere (tests, tools).
    pub fn local() -> Metrics {
        Metrics::assemble("telehealth", None)
    }

    fn assemble(
        service_name: &str,
        exporter: Option<opentelemetry_otlp::MetricExporter>,
    ) -> Metrics {
        let reader = Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        );
        let mut builder = SdkMeterProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .build(),
            )
            .with_reader(SharedReader(reader.clone()));
        if let Some(exporter) = exporter {
            builder = builder.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(OTLP_INTERVAL)
                    .build(),
            );
        }
        let provider = builder.build();
        let certificates: Arc<Mutex<Vec<(String, PathBuf)>>> = Arc::default();
        let watched = certificates.clone();
        provider
            .meter("telehealth")
            .i64_observable_gauge("tls.certificate.expiry_timestamp")
            .with_unit("s")
            .with_description("When each certificate this process presents expires (Unix time)")
            .with_callback(move |observer| {
                let watched = watched.lock().map(|w| w.clone()).unwrap_or_default();
                for (name, path) in watched {
                    if let Some(not_after) = crate::tls::not_after(&path) {
                        observer.observe(not_after, &[KeyValue::new("certificate", name)]);
                    }
                }
            })
            .build();
        Metrics {
            provider,
            reader,
            certificates,
        }
    }

    /// Reports the expiry of the certificate in `pem` as `certificate="<name>"`.
    pub fn watch_certificate(&self, name: &str, pem: PathBuf) {
        if let Ok(mut watched) = self.certificates.lock()
            && !watched.iter().any(|(n, _)| n == name)
        {
            watched.push((name.to_owned(), pem));
        }
    }

    /// The meter a part records with.
    pub fn meter(&self, scope: &'static str) -> Meter {
        self.provider.meter(scope)
    }

    /// Everything recorded so far, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> Result<String, KitError> {
        let mut collected = ResourceMetrics::default();
        self.reader
            .collect(&mut collected)
            .map_err(|e| KitError::Config(format!("metrics: {e}")))?;
        let mut out = String::new();
        for scope in collected.scope_metrics() {
            for metric in scope.metrics() {
                let name = prometheus_name(metric.name(), metric.unit());
                match metric.data() {
                    AggregatedMetrics::U64(data) => render_data(&mut out, &name, metric, data),
                    AggregatedMetrics::I64(data) => render_data(&mut out, &name, metric, data),
                    AggregatedMetrics::F64(data) => render_data(&mut out, &name, metric, data),
                }
            }
        }
        Ok(out)
    }

    /// Flushes what the OTLP reader holds and stops it (at process end).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "metrics provider shutdown");
        }
    }
}

/// `rpc.server.duration` in `s` → `rpc_server_duration_seconds`; counters get `_total`.
fn prometheus_name(name: &str, unit: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let suffix = match unit {
        "s" => "_seconds",
        "By" => "_bytes",
        _ => "",
    };
    if !suffix.is_empty() && !out.ends_with(suffix) {
        out.push_str(suffix);
    }
    out
}

trait Number: Copy {
    fn text(self) -> String;
}
impl Number for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}
impl Number for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}
impl Number for f64 {
    fn text(self) -> String {
        float(self)
    }
}

fn float(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

fn render_data<T: Number>(
    out: &mut String,
    name: &str,
    metric: &opentelemetry_sdk::metrics::data::Metric,
    data: &MetricData<T>,
) {
    let help = metric
        .description()
        .replace('\\', "\\\\")
        .replace('\n', "\\n");
    match data {
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{name}_total"), "counter")
            } else {
                (name.to_owned(), "gauge")
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for point in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value().text()
                );
            }
        }
        MetricData::Gauge(gauge) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for point in gauge.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value().text()
                );
            }
        }
        MetricData::Histogram(histogram) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for point in histogram.data_points() {
                let mut cumulative = 0;
                let counts: Vec<u64> = point.bucket_counts().collect();
                for (bound, count) in point.bounds().zip(&counts) {
                    cumulative += count;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(point.attributes(), Some(&float(bound)))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    labels(point.attributes(), Some("+Inf")),
                    point.count()
                );
                let attributes = labels(point.attributes(), None);
                let _ = writeln!(out, "{name}_sum{attributes} {}", point.sum().text());
                let _ = writeln!(out, "{name}_count{attributes} {}", point.count());
            }
        }
        // Not used by the suite (no exponential histograms are configured).
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// `{a="x",b="y"}` (empty when there is nothing to say), with `le` last for histogram buckets.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = attributes
        .map(|kv| (prometheus_name(kv.key.as_str(), ""), value_text(&kv.value)))
        .collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(("le".into(), le.to_owned()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(&v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn value_text(value: &Value) -> String {
    value.as_str().into_owned()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_as_prometheus_text() {
        let metrics = Metrics::local();
        let meter = metrics.meter("test");
        let calls = meter
            .u64_counter("rpc.server.calls")
            .with_description("Calls answered")
            .build();
        calls.add(
            2,
            &[
                KeyValue::new("rpc.method", "/a.B/C"),
                KeyValue::new("code", "OK"),
            ],
        );
        calls.add(1, &[KeyValue::new("code", "say \"hi\"\n")]);
        let open = meter.i64_up_down_counter("connections.open").build();
        open.add(3, &[]);
        open.add(-1, &[]);
        let duration = meter
            .f64_histogram("rpc.server.duration")
            .with_unit("s")
            .with_boundaries(vec![0.01, 0.1])
            .build();
        duration.record(0.005, &[]);
        duration.record(0.05, &[]);
        duration.record(5.0, &[]);

        let text = metrics.render().expect("rendered");
        for line in [
            "# TYPE rpc_server_calls_total counter",
            "rpc_server_calls_total{code=\"OK\",rpc_method=\"/a.B/C\"} 2",
            "rpc_server_calls_total{code=\"say \\\"hi\\\"\\n\"} 1",
            "# TYPE connections_open gauge",
            "connections_open 2",
            "# TYPE rpc_server_duration_seconds histogram",
            "rpc_server_duration_seconds_bucket{le=\"0.01\"} 1",
            "rpc_server_duration_seconds_bucket{le=\"0.1\"} 2",
            "rpc_server_duration_seconds_bucket{le=\"+Inf\"} 3",
            "rpc_server_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
