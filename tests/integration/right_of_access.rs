//! The patient's right of access: `telehealth export --patient` gathers, through the gateway as
//! a doctor of the centre, everything the suite holds about one patient into one archive, and
//! nothing about anyone else.

use std::{collections::BTreeMap, io::Read, path::Path};

use sha2::{Digest, Sha256};
use telehealth_kit::pki::DevPki;
use telehealth_proto::v1 as pb;
use telehealth_testkit::suite::{Person, Suite, backends};

use crate::{scheduling, wound};

const CENTRE: &str = "cds-bourganeuf";
const OTHER_CENTRE: &str = "cds-aubusson";

/// Runs `telehealth export` as `person` into `out`; its exit status and what it printed. (Off
/// the test's runtime, which serves the suite the command calls.)
async fn export(suite: &Suite, person: &Person, patient: &str, out: &Path) -> (bool, String) {
    let device = DevPki::new(suite.settings.pki_dir()).device_files(person.device);
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .arg("export")
        .arg("--data-dir")
        .arg(&suite.settings.data_dir)
        .args(["--patient", patient])
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

/// The archive's files by path.
fn files_of(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut reader = tar::Archive::new(std::fs::File::open(archive).expect("archive"));
    for entry in reader.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        files.insert(path, bytes);
    }
    files
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[tokio::test]
async fn the_export_holds_everything_about_the_patient_and_nothing_about_anyone_else() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-martin", CENTRE);
        let colleague = Person::doctor("dr-bernard", CENTRE);
        let nurse = Person::nurse("nurse-claire", CENTRE);
        let coordinator = Person::coordinator("coord-bourganeuf", CENTRE);
        let specialist = Person::specialist("dr-leroy", "chu-limoges").in_specialty("wound_care");
        let patient = suite.consenting_patient(&doctor).await;
        let someone_else = suite.consenting_patient(&doctor).await;
        // A second record of the same person, merged into the first after her appointment was
        // booked under it: the appointment is hers.
        let duplicate = suite.consenting_patient(&doctor).await;

        // Appointments with another doctor of the centre: hers and someone else's.
        scheduling::publish_availability(&suite, &colleague).await;
        let mut agenda = suite.scheduling(&colleague).await;
        let book = |who: &str, days: i64| {
            scheduling::booking(
                who,
                &uuid::Uuid::new_v4().to_string(),
                "dr-bernard",
                "",
                scheduling::ten_oclock_in(days),
            )
        };
        let hers = agenda
            .book_appointment(book(&duplicate, 3))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment");
        let theirs = agenda
            .book_appointment(book(&someone_else, 4))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment");
        suite
            .patients(&coordinator)
            .await
            .merge_patients(pb::MergePatientsRequest {
                surviving_id: patient.clone(),
                merged_id: duplicate.clone(),
            })
            .await
            .expect("merged");

        // A wound followed by the nurse, with a photo in its assessment, sent to the CHU's
        // wound specialist, who answers.
        let mut dr = suite.wounds(&doctor).await;
        let mut nu = suite.wounds(&nurse).await;
        let followed = wound::register(&mut dr, &patient, &[&nurse]).await;
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
        let mut spec = suite.expertise(&specialist).await;
        spec.claim_request(pb::ClaimRequestRequest {
            request_id: request.request_id.clone(),
        })
        .await
        .expect("claimed");
        spec.answer_request(pb::AnswerRequestRequest {
            request_id: request.request_id.clone(),
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

        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("acces.tar");
        let (ok, printed) = export(&suite, &doctor, &patient, &out).await;
        assert!(ok, "{backend:?}: {printed}");
        let files = files_of(&out);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out)
                .expect("archive")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "health data: readable by its owner only");
        }

        // The register's part, with the merged record's id.
        let register = json(&files["patient.json"]);
        assert!(register.to_string().contains(&patient), "{register}");
        // Her appointment (booked under the merged id, with another doctor) with its history;
        // not someone else's.
        let appointment = json(&files[&format!("appointments/{}.json", hers.appointment_id)]);
        assert_eq!(
            appointment["appointment"]["appointmentId"],
            hers.appointment_id
        );
        assert!(
            !appointment["history"]
                .as_array()
                .expect("history")
                .is_empty(),
            "{appointment}"
        );
        assert!(
            !files.keys().any(|p| p.contains(&theirs.appointment_id)),
            "{backend:?}: someone else's appointment is not in her archive"
        );
        // The request about her wound, its report and its image as stored.
        let folder = format!("expertise/{}", request.request_id);
        let exported = json(&files[&format!("{folder}/request.json")]);
        assert_eq!(
            exported["report"]["answer"]["recommendationDetails"], "Compression multicouche",
            "{exported}"
        );
        let sent = files
            .iter()
            .find(|(path, _)| path.starts_with(&format!("{folder}/images/")))
            .map(|(_, bytes)| bytes)
            .expect("the request's image");
        assert_eq!(hex(sent), photo.sha256_hex);
        // The wound, its assessment and its photo as stored.
        let folder = format!("wounds/{}", followed.wound_id);
        let exported = json(&files[&format!("{folder}/wound.json")]);
        assert_eq!(exported["assessments"].as_array().map(Vec::len), Some(1));
        let kept = &files[&format!("{folder}/photos/{}.jpg", photo.image_id)];
        assert_eq!(hex(kept), photo.sha256_hex);
        // The index lists every other file with its digest.
        let index = json(&files["index.json"]);
        let listed = index["files"].as_array().expect("files");
        assert_eq!(listed.len(), files.len() - 1, "{index}");
        for entry in listed {
            let path = entry["path"].as_str().expect("path");
            assert_eq!(entry["sha256"], hex(&files[path]), "{path}");
        }
        assert!(files.contains_key("LISEZMOI.txt"));

        // A doctor of another centre learns nothing, and nothing is left on disk.
        let outsider = Person::doctor("dr-ailleurs", OTHER_CENTRE);
        suite.enrol(&outsider).await;
        let refused = dir.path().join("refus.tar");
        let (ok, printed) = export(&suite, &outsider, &patient, &refused).await;
        assert!(!ok, "{backend:?}: {printed}");
        assert!(printed.contains("NotFound"), "{printed}");
        assert!(!refused.exists());
        assert!(!refused.with_extension("tar.partial").exists());
        suite.stop().await;
    }
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
