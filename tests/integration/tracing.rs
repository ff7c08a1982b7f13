//! One request is one trace: the gateway's span parents the service's span, and both continue
//! the trace the client started.

use bytes::Bytes;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use telehealth_kit::{config::TelemetrySettings, identity::Role, telemetry};
use telehealth_testkit::harness::{GatewayHarness, paths, unary, with_token};

#[tokio::test]
async fn gateway_and_service_spans_share_the_clients_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    telemetry::install(&TelemetrySettings::default(), provider.clone());

    let harness = GatewayHarness::start().await;
    let channel = harness.channel("nurse-tablet").await.expect("connects");
    let token = harness.token("nurse-tablet", "nurse-claire", &[Role::Nurse]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = with_token(Bytes::new(), &token);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    let seen: serde_json::Value = serde_json::from_slice(
        &unary(&channel, paths::GET_WOUND, request)
            .await
            .expect("ok"),
    )
    .expect("json");
    let forwarded = seen["traceparent"]
        .as_str()
        .expect("traceparent reaches the service");
    assert!(forwarded.contains(trace_id), "{forwarded}");

    let _ = provider.force_flush();
    let wanted = TraceId::from_hex(trace_id).expect("hex");
    let spans: Vec<_> = exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .filter(|span| span.span_context.trace_id() == wanted)
        .collect();
    let gateway = spans
        .iter()
        .find(|span| {
            span.name == paths::GET_WOUND
                && span.parent_span_id == SpanId::from_hex("00f067aa0ba902b7").expect("hex")
        })
        .unwrap_or_else(|| panic!("a gateway span child of the client's span: {spans:#?}"));
    let service = spans
        .iter()
        .find(|span| span.parent_span_id == gateway.span_context.span_id())
        .unwrap_or_else(|| panic!("a service span child of the gateway span: {spans:#?}"));
    assert_eq!(service.span_context.trace_id(), wanted);
}
