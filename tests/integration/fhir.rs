//! The FHIR R4 API under `/fhir` through the real gateway (mutual TLS, tokens), on records made
//! through the gRPC API: reads and searches of each resource as the roles that use them, paging
//! by `next` links, the organisation scoping (a doctor of another centre gets the same 404 as
//! for a record that does not exist), refusals with an `OperationOutcome`; and
//! `telehealth export --format fhir`. Every resource the API and the export return is written
//! to `TELEHEALTH_TEST_FHIR_OUT` for CI's two validators.

use std::path::Path;

use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use telehealth_kit::{identity::Role, pki::DevPki};
use telehealth_proto::v1 as pb;
use telehealth_testkit::suite::{Backend, Person, Suite};
use tonic::{body::Body, transport::Channel};
use tower::ServiceExt;

use crate::{scheduling, wound};

const CENTRE: &str = "cds-bourganeuf";
const OTHER_CENTRE: &str = "cds-aubusson";

/// A FHIR client: a device's mTLS channel and, if any, its bearer token.
struct Fhir {
    channel: Channel,
    bearer: Option<String>,
}

impl Fhir {
    async fn of(suite: &Suite, person: &Person) -> Fhir {
        Fhir {
            channel: suite.channel_to(suite.gateway(), person).await,
            bearer: Some(format!("Bearer {}", suite.token(person))),
        }
    }

    /// `GET /fhir/<path>`: the HTTP status and the JSON body.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path).await
    }

    async fn send(&self, method: Method, path: &str) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://localhost/fhir/{path}"))
            .header(header::ACCEPT, "application/fhir+json");
        if let Some(bearer) = &self.bearer {
            request = request.header(header::AUTHORIZATION, bearer);
        }
        let request = request.body(Body::empty()).expect("request");
        let response = self.channel.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/fhir+json"),
            "{path}: {content_type}"
        );
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        (status, body)
    }

    /// A `GET` that must succeed; the resource is kept for the validators.
    async fn ok(&self, path: &str, name: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        emit(name, &body);
        body
    }
}

/// Writes a resource for CI's validators (`TELEHEALTH_TEST_FHIR_OUT`).
fn emit(name: &str, resource: &Value) {
    if let Some(dir) = std::env::var_os("TELEHEALTH_TEST_FHIR_OUT") {
        let dir = Path::new(&dir).join("api");
        std::fs::create_dir_all(&dir).expect("folder");
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(resource).expect("JSON"),
        )
        .expect("written");
    }
}

/// The resources of a searchset Bundle.
fn entries(bundle: &Value) -> Vec<Value> {
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"].as_array().and_then(|links| {
        links
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(|url| {
                url.split_once("/fhir/")
                    .map(|(_, rest)| rest.to_owned())
                    .expect("a link under /fhir")
            })
    })
}

fn ids(resources: &[Value]) -> Vec<String> {
    resources
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_fhir_api_serves_each_role_its_records_and_nothing_of_another_centre() {
    let Some(suite) = Suite::start(Backend::Sqlite).await else {
        return;
    };
    let doctor = Person::doctor("dr-bernard", CENTRE);
    let nurse = Person::nurse("nurse-claire", CENTRE);
    let specialist = Person::specialist("dr-leroy", "chu-limoges").in_specialty("wound_care");
    let patient = suite.consenting_patient(&doctor).await;

    // Two appointments of the patient with the doctor, in three and four days.
    scheduling::publish_availability(&suite, &doctor).await;
    let mut agenda = suite.scheduling(&doctor).await;
    let mut booked = Vec::new();
    for days in [3, 4] {
        let appointment = agenda
            .book_appointment(scheduling::booking(
                &patient,
                &uuid::Uuid::new_v4().to_string(),
                "dr-bernard",
                "",
                scheduling::ten_oclock_in(days),
            ))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment");
        booked.push(appointment.appointment_id);
    }

    // A wound with two assessments (a photo in the second), sent to the CHU, answered.
    let mut dr = suite.wounds(&doctor).await;
    let mut nu = suite.wounds(&nurse).await;
    let followed = wound::register(&mut dr, &patient, &[&nurse]).await;
    wound::record(&mut nu, &followed.wound_id, wound::measured(9, 5.0, 4.0))
        .await
        .expect("assessed");
    let jpeg = telehealth_images::format::fixtures::jpeg_plain(64, 48);
    let photo = wound::upload_one(&mut nu, &followed.wound_id, &jpeg).await;
    let mut measurements = wound::measured(2, 4.0, 3.0);
    measurements.photo_image_ids = vec![photo.image_id.clone()];
    wound::record(&mut nu, &followed.wound_id, measurements)
        .await
        .expect("assessed");
    let request = nu
        .request_wound_expertise(pb::RequestWoundExpertiseRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            wound_id: followed.wound_id.clone(),
            target_org_id: "chu-limoges".into(),
            specialty: "wound_care".into(),
            clinical_question: "Avis sur la compression ?".into(),
            urgency: pb::Urgency::Routine as i32,
            photo_ids: vec![photo.image_id.clone()],
        })
        .await
        .expect("asked")
        .into_inner()
        .request
        .expect("request");
    let request_id = request.request_id.clone();
    let mut spec = suite.expertise(&specialist).await;
    spec.claim_request(pb::ClaimRequestRequest {
        request_id: request_id.clone(),
    })
    .await
    .expect("claimed");
    spec.post_message(pb::PostMessageRequest {
        request_id: request_id.clone(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        text: "L'index de pression systolique est-il connu ?".into(),
    })
    .await
    .expect("posted");
    spec.answer_request(pb::AnswerRequestRequest {
        request_id: request_id.clone(),
        answer: Some(pb::ExpertAnswer {
            impression: "Ulcère veineux".into(),
            recommendation: pb::Recommendation::Treat as i32,
            monitor_interval_months: 0,
            recommendation_details: "Compression multicouche".into(),
            free_text: String::new(),
        }),
    })
    .await
    .expect("answered");

    let fhir = Fhir::of(&suite, &doctor).await;

    // The CapabilityStatement.
    let statement = fhir.ok("metadata", "capability-statement").await;
    assert_eq!(statement["fhirVersion"], "4.0.1");

    // Patient: read, and found by name + birth date (what the register holds).
    let read = fhir.ok(&format!("Patient/{patient}"), "patient-read").await;
    assert_eq!(read["id"], patient.as_str());
    let family = read["name"][0]["family"]
        .as_str()
        .expect("family")
        .to_owned();
    let birth = read["birthDate"].as_str().expect("birth date").to_owned();
    let found = fhir
        .ok(
            &format!("Patient?family={}&birthdate={birth}", encoded(&family)),
            "patient-search",
        )
        .await;
    assert!(ids(&entries(&found)).contains(&patient), "{found}");
    let consents = fhir
        .ok(
            &format!("Consent?patient=Patient/{patient}"),
            "consent-search",
        )
        .await;
    assert!(!entries(&consents).is_empty(), "{consents}");

    // Appointments of the doctor over the week, one per page: the `next` link leads to the
    // second, and then there is none.
    let first = fhir
        .ok(
            &format!(
                "Appointment?practitioner=Practitioner/dr-bernard&date=ge{}&date=lt{}&_count=1",
                day_in(0),
                day_in(8)
            ),
            "appointment-page-1",
        )
        .await;
    let mut seen = ids(&entries(&first));
    assert_eq!(seen.len(), 1, "{first}");
    let next = next_link(&first).expect("a next link");
    assert!(next.contains("practitioner="), "{next}");
    let second = fhir.ok(&next, "appointment-page-2").await;
    seen.extend(ids(&entries(&second)));
    let third = match next_link(&second) {
        Some(next) => entries(&fhir.ok(&next, "appointment-page-3").await),
        None => Vec::new(),
    };
    assert!(third.is_empty(), "two appointments only");
    seen.sort();
    booked.sort();
    assert_eq!(seen, booked);
    fhir.ok(&format!("Appointment/{}", booked[0]), "appointment-read")
        .await;

    // The wound's assessments as LOINC wound size panels, newest first or not: both are there.
    let observations = fhir
        .ok(
            &format!("Observation?patient={patient}&code=http://loinc.org%7C72287-6&_count=1"),
            "observation-page-1",
        )
        .await;
    let mut panels = entries(&observations);
    if let Some(next) = next_link(&observations) {
        panels.extend(entries(&fhir.ok(&next, "observation-page-2").await));
    }
    assert_eq!(panels.len(), 2, "{observations}");
    assert!(
        panels
            .iter()
            .all(|o| o["code"]["coding"][0]["code"] == "72287-6")
    );
    let none = fhir
        .ok(
            &format!("Observation?patient={patient}&code=http://loinc.org%7C8867-4"),
            "observation-other-code",
        )
        .await;
    assert!(entries(&none).is_empty());

    // The request: ServiceRequest and Task for the requester, its thread and its image.
    let service_request = fhir
        .ok(&format!("ServiceRequest/{request_id}"), "service-request")
        .await;
    assert_eq!(service_request["status"], "completed");
    let task = fhir.ok(&format!("Task/{request_id}"), "task").await;
    assert_eq!(task["status"], "completed");
    assert_eq!(task["owner"]["reference"], "Practitioner/dr-leroy");
    let thread = fhir
        .ok(
            &format!("Communication?based-on=ServiceRequest/{request_id}"),
            "communication-search",
        )
        .await;
    assert_eq!(entries(&thread).len(), 1, "{thread}");
    let images = fhir
        .ok(
            &format!("Media?based-on=ServiceRequest/{request_id}"),
            "media-search",
        )
        .await;
    // The request holds its own copy of the photo.
    let attached: Vec<String> = request.images.iter().map(|i| i.image_id.clone()).collect();
    assert_eq!(attached.len(), 1);
    assert_eq!(ids(&entries(&images)), attached);
    let mine = fhir
        .ok(
            "Task?requester=Practitioner/nurse-claire&status=completed",
            "task-search-requester",
        )
        .await;
    assert_eq!(ids(&entries(&mine)), std::slice::from_ref(&request_id));

    // The specialist's completed tasks, by owner.
    let expert = Fhir::of(&suite, &specialist).await;
    let done = expert
        .ok(
            "Task?owner=Practitioner/dr-leroy&status=completed",
            "task-search-owner",
        )
        .await;
    assert_eq!(ids(&entries(&done)), std::slice::from_ref(&request_id));
    let nobody = expert
        .ok(
            "Task?owner=Practitioner/dr-autre&status=completed",
            "task-search-nobody",
        )
        .await;
    assert!(entries(&nobody).is_empty());

    // The directory: the doctor as a Practitioner, the centre as an Organization.
    fhir.ok("Practitioner/dr-bernard", "practitioner").await;
    let admin = Person::with_roles("admin-fhir", CENTRE, &[Role::Admin]);
    suite
        .directory(&admin)
        .await
        .put_organisation(pb::PutOrganisationRequest {
            display_name: "Centre de santé de Bourganeuf".into(),
            kind: pb::OrganisationKind::HealthCentre as i32,
            finess_number: "230780041".into(),
            expected_version: 0,
        })
        .await
        .expect("organisation recorded");
    let centre = fhir
        .ok(&format!("Organization/{CENTRE}"), "organization")
        .await;
    assert_eq!(centre["name"], "Centre de santé de Bourganeuf");

    // Another centre's doctor: the same 404 for her patient as for one that does not exist.
    let outsider = Person::doctor("dr-ailleurs", OTHER_CENTRE);
    suite.enrol(&outsider).await;
    let other = Fhir::of(&suite, &outsider).await;
    let (hidden, hidden_body) = other.get(&format!("Patient/{patient}")).await;
    let (absent, absent_body) = other.get("Patient/no-such-patient").await;
    assert_eq!(hidden, StatusCode::NOT_FOUND, "{hidden_body}");
    assert_eq!(absent, StatusCode::NOT_FOUND, "{absent_body}");
    assert_eq!(
        hidden_body["issue"][0]["code"],
        absent_body["issue"][0]["code"]
    );
    emit("outcome-not-found", &hidden_body);
    let (status, body) = other.get(&format!("Task/{request_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = other.get(&format!("Observation?patient={patient}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Refusals: no token, a write, a hostile id, unknown or out-of-range parameters.
    let anonymous = Fhir {
        channel: suite.channel_to(suite.gateway(), &doctor).await,
        bearer: None,
    };
    let (status, body) = anonymous.get(&format!("Patient/{patient}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let (status, _) = fhir
        .send(Method::DELETE, &format!("Patient/{patient}"))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    for (path, expected) in [
        ("Patient/..%2Fetc", StatusCode::BAD_REQUEST),
        ("Patient?colour=blue", StatusCode::BAD_REQUEST),
        ("Appointment?_count=1000", StatusCode::BAD_REQUEST),
        (
            "Appointment?date=ge2026-13-45&date=lt2027-01-01",
            StatusCode::BAD_REQUEST,
        ),
        (
            "Observation?patient=Practitioner/x",
            StatusCode::BAD_REQUEST,
        ),
        ("Claim/1", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = fhir.get(path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
        assert_eq!(body["issue"][0]["severity"], "error", "{path}");
    }
    let long = format!("Patient?name={}", "a".repeat(5000));
    assert_eq!(fhir.get(&long).await.0, StatusCode::BAD_REQUEST);

    // The export: one transaction Bundle of everything about her.
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("patient.fhir.json");
    let (ok, printed) = export_fhir(&suite, &doctor, &patient, &out).await;
    assert!(ok, "{printed}");
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("bundle")).expect("JSON");
    if let Some(dir) = std::env::var_os("TELEHEALTH_TEST_FHIR_OUT") {
        std::fs::create_dir_all(Path::new(&dir).join("export")).expect("folder");
        std::fs::copy(&out, Path::new(&dir).join("export/bundle.json")).expect("copied");
    }
    assert_eq!(bundle["type"], "transaction");
    let kinds: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    for kind in [
        "Patient",
        "Consent",
        "Appointment",
        "ServiceRequest",
        "Task",
        "Communication",
        "Media",
        "Observation",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let media = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Media")
        .expect("a Media");
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(media["resource"]["content"]["data"].as_str().expect("data"))
        .expect("base64");
    // What a receiver can check: the bytes are the photo as the suite stored it.
    use sha2::Digest as _;
    assert_eq!(hex::encode(sha2::Sha256::digest(&data)), photo.sha256_hex);
    assert_eq!(
        kinds.iter().filter(|k| **k == "Observation").count(),
        2,
        "the current version of each assessment"
    );
    suite.stop().await;
}

/// A query value percent-encoded (names have accents and spaces).
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `YYYY-MM-DD` in `days` days, in Paris.
fn day_in(days: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Paris").expect("tz"))
        .date();
    today
        .checked_add(jiff::Span::new().days(days))
        .expect("date")
        .to_string()
}

/// Runs `telehealth export --format fhir` as `person` (off the test's runtime, which serves
/// the suite the command calls).
async fn export_fhir(suite: &Suite, person: &Person, patient: &str, out: &Path) -> (bool, String) {
    let device = DevPki::new(suite.settings.pki_dir()).device_files(person.device);
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .arg("export")
        .arg("--data-dir")
        .arg(&suite.settings.data_dir)
        .args(["--patient", patient, "--format", "fhir"])
        .arg("--out")
        .arg(out)
        .arg("--gateway")
        .arg(suite.gateway().to_string())
        .arg("--cert")
        .arg(&device.cert)
        .arg("--key")
        .arg(&device.key)
        .env("TELEHEALTH_TOKEN", suite.token(person))
        .env_remove("TELEHEALTH_CONFIG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("the telehealth binary runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}
