//! The gateway's metrics: every call through it (the kit's per-call metrics, `gateway.rpc.*`)
//! and every refusal of its own, by reason.

use opentelemetry::{KeyValue, metrics::Counter};
use telehealth_kit::{
    KitError,
    metrics::{Metrics, rpc::RpcMetrics},
};

use std::sync::Arc;

use crate::{connections::Connections, error::GatewayError};

pub use telehealth_kit::metrics::rpc::{CallRecord, Observed};

/// The gateway's instruments.
#[derive(Clone)]
pub struct GatewayMetrics {
    calls: RpcMetrics,
    refusals: Counter<u64>,
}

impl GatewayMetrics {
    pub fn new(
        metrics: &Metrics,
        connections: Arc<Connections>,
    ) -> Result<GatewayMetrics, KitError> {
        let meter = metrics.meter("telehealth.gateway");
        meter
            .i64_observable_gauge("gateway.connections.open")
            .with_description("Client connections open on the gateway")
            .with_callback(move |observer| {
                observer.observe(i64::try_from(connections.open()).unwrap_or(i64::MAX), &[]);
            })
            .build();
        Ok(GatewayMetrics {
            calls: RpcMetrics::new(metrics, "gateway.rpc")?,
            refusals: meter
                .u64_counter("gateway.refusals")
                .with_description("Calls the gateway refused itself, by reason")
                .build(),
        })
    }

    /// A call to `path` starts.
    pub fn start(&self, path: &str) -> CallRecord {
        self.calls.start(path)
    }

    pub fn refused(&self, error: &GatewayError) {
        self.refusals
            .add(1, &[KeyValue::new("reason", error.kind())]);
    }
}
