//! Metrics on the admin listener: what the gateway answered and refused, scraped as a
//! Prometheus server would, on an address that is not the public port.

use telehealth_kit::Part;
use telehealth_proto::v1::{self as pb, scheduling_service_client::SchedulingServiceClient};
use telehealth_testkit::harness::Bearer;
use telehealth_testkit::suite::{Backend, Person, Suite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const CENTRE: &str = "cds-bourganeuf";

/// `GET path` on the admin listener: (status line, body).
async fn scrape(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the admin listener accepts");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request sent");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("answer read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the series written exactly `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_gateway_and_services_count_calls_refusals_and_the_work_itself() {
    let Some(suite) = Suite::start_with(Backend::Sqlite, |settings| {
        settings.telemetry.admin_listen = Some("127.0.0.1:0".parse().expect("address"));
    })
    .await
    else {
        return;
    };
    let admin = suite
        .running
        .as_ref()
        .and_then(|r| r.admin)
        .expect("the admin listener is started");
    assert_ne!(
        admin,
        suite.gateway(),
        "metrics are never on the public port"
    );

    let doctor = Person::doctor("dr-martin", CENTRE);
    let mut scheduling = suite.scheduling(&doctor).await;
    for _ in 0..3 {
        scheduling
            .list_appointments(pb::ListAppointmentsRequest::default())
            .await
            .expect("listed");
    }
    let missing = scheduling
        .get_appointment(pb::GetAppointmentRequest {
            appointment_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .expect_err("no such appointment");
    assert_eq!(missing.code(), Code::NotFound);
    // A forged token: refused by the gateway itself.
    let channel = suite.channel_to(suite.gateway(), &doctor).await;
    let forged = SchedulingServiceClient::with_interceptor(channel, Bearer::new("not-a-token"))
        .list_appointments(pb::ListAppointmentsRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(forged.code(), Code::Unauthenticated);

    // A wound whose area grows: one alert raised.
    let nurse = Person::nurse("nurse-claire", CENTRE);
    let mut by_doctor = suite.wounds(&doctor).await;
    let mut by_nurse = suite.wounds(&nurse).await;
    let patient = suite.consenting_patient(&doctor).await;
    let wound = crate::wound::register(&mut by_doctor, &patient, &[&nurse]).await;
    for (days, width) in [(40, 4.0), (33, 4.4)] {
        crate::wound::record(
            &mut by_nurse,
            &wound.wound_id,
            crate::wound::measured(days, 5.0, width),
        )
        .await
        .expect("recorded");
    }
    let photo = telehealth_images::format::fixtures::jpeg_plain(64, 48);
    let stored = crate::wound::upload_one(&mut by_nurse, &wound.wound_id, &photo).await;

    let (status, text) = scrape(admin, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    let list = "method=\"/telehealth.v1.SchedulingService/ListAppointments\"";
    assert_eq!(
        value(
            &text,
            &format!("gateway_rpc_calls_total{{code=\"OK\",{list}}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "gateway_rpc_calls_total{code=\"NOT_FOUND\",method=\"/telehealth.v1.SchedulingService/GetAppointment\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gateway_refusals_total{reason=\"unauthenticated\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!("gateway_rpc_in_flight{{{list}}}")),
        Some(0.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            &format!("gateway_rpc_duration_seconds_count{{{list}}}")
        ) >= Some(4.0),
        "the forged call is timed too: {text}"
    );
    assert!(text.contains("# TYPE gateway_rpc_duration_seconds histogram"));
    // The service behind counts what reached it: not the forged call.
    assert_eq!(
        value(
            &text,
            &format!("rpc_server_calls_total{{code=\"OK\",{list}}}")
        ),
        Some(3.0),
        "{text}"
    );

    // Connections and certificates, for the operator's alerts.
    assert!(
        value(&text, "gateway_connections_open") >= Some(1.0),
        "{text}"
    );
    let now = jiff::Timestamp::now().as_second() as f64;
    for certificate in ["gateway-server", "gateway-internal", "scheduling-internal"] {
        let expiry = value(
            &text,
            &format!("tls_certificate_expiry_timestamp_seconds{{certificate=\"{certificate}\"}}"),
        )
        .unwrap_or_else(|| panic!("{certificate} expiry in:\n{text}"));
        assert!(expiry > now + 14.0 * 86_400.0, "{certificate}: {expiry}");
    }

    assert_eq!(
        value(&text, "images_uploads_total{target=\"wound\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "images_uploaded_bytes_total{target=\"wound\"}"),
        Some(stored.size_bytes as f64),
        "{text}"
    );
    assert_eq!(
        value(&text, "wound_alerts_raised_total{cause=\"area_increase\"}"),
        Some(1.0),
        "{text}"
    );
    // The work itself: gauges are there from the start.
    for gauge in ["expertise_requests_overdue", "signalling_rooms_open"] {
        assert_eq!(value(&text, gauge), Some(0.0), "{gauge} in:\n{text}");
    }

    // Each dependency on its own: in the metrics and as a health entry. Each part checks its
    // dependencies every 2 s, so the gateway may not have seen a service since it came up (this
    // test calls no expertise method): up within a few checks.
    let expertise_service = "telehealth.v1.ExpertiseService";
    let series: Vec<String> = [
        ("database", expertise_service),
        ("blob-store", expertise_service),
        ("events", expertise_service),
        ("expertise", "gateway"),
        ("scheduling", "gateway"),
    ]
    .iter()
    .map(|(dependency, part)| {
        format!("telehealth_dependency_up{{dependency=\"{dependency}\",part=\"{part}\"}}")
    })
    .collect();
    let mut text = text;
    for _ in 0..50 {
        if series.iter().all(|s| value(&text, s) == Some(1.0)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        text = scrape(admin, "/metrics").await.1;
    }
    for series in &series {
        assert_eq!(value(&text, series), Some(1.0), "{series} in:\n{text}");
    }
    let expertise = suite.running.as_ref().expect("running").services[&Part::Expertise];
    let channel = suite.internal_channel(Part::Gateway, expertise).await;
    assert!(
        telehealth_kit::health::check(channel.clone(), "dependency/blob-store")
            .await
            .expect("health answers"),
        "the blob store is reported on its own"
    );
    assert!(
        telehealth_kit::health::check(channel, "dependency/database")
            .await
            .expect("health answers")
    );

    let (status, _) = scrape(admin, "/other").await;
    assert!(status.contains(" 404 "), "{status}");
    suite.stop().await;
}
