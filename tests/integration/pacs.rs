//! The answering hospital files the request's images in its PACS: when a specialist of a
//! hospital with a `[[pacs.destinations]]` answers, each image goes as a DICOM VL Photographic
//! Image (the original JPEG inside, the patient's identity for a report) by C-STORE to a real
//! Orthanc started by the test, and each transfer's status shows on the request. Orthanc's REST
//! API then shows the study under the right patient.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use telehealth_kit::config::PacsDestinationSettings;
use telehealth_proto::v1 as pb;
use telehealth_testkit::ports::free_port;
use telehealth_testkit::suite::{Backend, Person, Suite};

const CENTRE: &str = "cds-bourganeuf";
const HOSPITAL: &str = "chu-limoges";

/// Orthanc's binary; outside CI a missing one skips the test, in CI it fails it.
fn orthanc_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Orthanc is required in CI (.ci/install-dicom-tools)"
        );
        eprintln!("SKIPPING: Orthanc is not installed (run .ci/install-dicom-tools)");
    }
    found
}

/// An Orthanc on free ports with a temporary store, killed when dropped.
struct Orthanc {
    child: Child,
    dicom_port: u16,
    http_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Orthanc {
    fn start(binary: &PathBuf) -> Orthanc {
        let dir = tempfile::tempdir().expect("dir");
        let (dicom_port, http_port) = (free_port(), free_port());
        let config = serde_json::json!({
            "Name": "telehealth-pacs-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "DicomServerEnabled": true,
            "DicomAet": "PACS_CHU",
            "DicomPort": dicom_port,
            "DicomCheckCalledAet": true,
            "DicomAlwaysAllowStore": true,
            "HttpServerEnabled": true,
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [],
        });
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, config.to_string()).expect("configuration");
        let child = Command::new(binary)
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Orthanc starts");
        let orthanc = Orthanc {
            child,
            dicom_port,
            http_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while orthanc.get("/system").is_none() {
            assert!(
                Instant::now() < deadline,
                "Orthanc did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        orthanc
    }

    /// `GET path` on the REST API: the JSON of a 200 answer.
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&response[..split]);
        (head.split_whitespace().nth(1) == Some("200"))
            .then(|| serde_json::from_slice(&response[split + 4..]).ok())
            .flatten()
    }
}

#[tokio::test]
async fn the_answering_hospital_files_the_images_in_its_pacs() {
    let Some(binary) = orthanc_binary() else {
        return;
    };
    let orthanc = Orthanc::start(&binary);
    let dicom_port = orthanc.dicom_port;
    let Some(suite) = Suite::start_with(Backend::Sqlite, |settings| {
        settings.pacs.destinations = vec![PacsDestinationSettings {
            org_id: HOSPITAL.into(),
            host: "127.0.0.1".into(),
            port: dicom_port,
            called_ae_title: "PACS_CHU".into(),
            calling_ae_title: "TELEHEALTH".into(),
            timeout_seconds: 30,
        }];
        settings.report_mail.interval_seconds = 1;
    })
    .await
    else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let specialist = Person::specialist("dr-durand", HOSPITAL).in_specialty("dermatology");
    let patient = suite.consenting_patient(&doctor).await;

    // A request with a dermatoscopy image, submitted, claimed and answered.
    let mut dr = suite.expertise(&doctor).await;
    let id = dr
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            content: Some(pb::ExpertiseRequestContent {
                target_org_id: HOSPITAL.into(),
                specialty: "dermatology".into(),
                patient: Some(pb::ExpertisePatient {
                    patient: Some(pb::PatientRef {
                        pseudonym: patient.clone(),
                    }),
                    age_years: 82,
                    age_months: 0,
                    sex: pb::Sex::Female as i32,
                }),
                clinical_question: "Lésion pigmentée de la joue : avis ?".into(),
                urgency: pb::Urgency::Routine as i32,
                ..Default::default()
            }),
        })
        .await
        .expect("draft")
        .into_inner()
        .request
        .expect("request")
        .request_id;
    let jpeg = telehealth_images::format::fixtures::jpeg_plain(96, 64);
    let attached = dr
        .attach_image(tokio_stream::iter(crate::expertise::upload(&id, &jpeg)))
        .await
        .expect("attached")
        .into_inner();
    let image_id = attached
        .result
        .and_then(|r| r.image)
        .expect("image")
        .image_id;
    dr.submit_request(pb::SubmitRequestRequest {
        request_id: id.clone(),
        expected_version: 0,
    })
    .await
    .expect("submitted");
    let mut spec = suite.expertise(&specialist).await;
    spec.claim_request(pb::ClaimRequestRequest {
        request_id: id.clone(),
    })
    .await
    .expect("claimed");
    spec.answer_request(pb::AnswerRequestRequest {
        request_id: id.clone(),
        answer: Some(pb::ExpertAnswer {
            impression: "Lentigo solaire".into(),
            recommendation: pb::Recommendation::Reassure as i32,
            ..Default::default()
        }),
    })
    .await
    .expect("answered");

    // The transfer is recorded with the answer, then stored by the PACS.
    let mut transfer = None;
    for _ in 0..300 {
        let request = spec
            .get_request(pb::GetRequestRequest {
                request_id: id.clone(),
            })
            .await
            .expect("read")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(
            request.pacs_transfers.len(),
            1,
            "{:?}",
            request.pacs_transfers
        );
        let t = request.pacs_transfers[0].clone();
        if t.status != pb::PacsTransferStatus::Pending as i32 {
            transfer = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let transfer = transfer.expect("the transfer left pending");
    assert_eq!(
        transfer.status,
        pb::PacsTransferStatus::Stored as i32,
        "{transfer:?}"
    );
    assert_eq!(transfer.image_id, image_id);
    assert_eq!(
        transfer.destination,
        format!("PACS_CHU@127.0.0.1:{dicom_port}")
    );
    assert!(
        transfer.sop_instance_uid.starts_with("2.25."),
        "{transfer:?}"
    );

    // Orthanc holds it under the patient, with the suite's id and the register's name.
    let patients = orthanc.get("/patients?expand").expect("patients");
    let filed = patients
        .as_array()
        .expect("a list")
        .iter()
        .find(|p| p["MainDicomTags"]["PatientID"] == patient.as_str())
        .unwrap_or_else(|| panic!("the patient in Orthanc: {patients}"));
    let name = filed["MainDicomTags"]["PatientName"]
        .as_str()
        .expect("name");
    assert!(
        name.starts_with("PATIENT") && name.contains("^Marie"),
        "{name}"
    );
    assert_eq!(filed["MainDicomTags"]["PatientBirthDate"], "19440229");
    let instances = orthanc.get("/instances?expand").expect("instances");
    let instance = &instances.as_array().expect("a list")[0];
    assert_eq!(
        instance["MainDicomTags"]["SOPInstanceUID"],
        transfer.sop_instance_uid.as_str()
    );
    let tags = orthanc
        .get(&format!(
            "/instances/{}/simplified-tags",
            instance["ID"].as_str().expect("id")
        ))
        .expect("tags");
    assert_eq!(
        tags["SOPClassUID"], "1.2.840.10008.5.1.4.1.1.77.1.4",
        "{tags}"
    );
    assert_eq!(tags["Modality"], "XC");
    suite.stop().await;
}
