//! The answer report reaches the requester and the patient's GP by secure mail: when a
//! specialist answers, the expertise service makes the PDF (the register's identity for a
//! report, the images' thumbnails) and sends it through a real SMTP server that, like an
//! MSSanté operator, requires STARTTLS and a client certificate (aiosmtpd,
//! `tests/mail/smtp_server.py`). The message is read back with Python's `email` package and the
//! PDF with pdftotext; each delivery's status shows on the request: delivered, refused for
//! good, or retried while the server is down.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use telehealth_kit::config::MailTls;
use telehealth_proto::v1 as pb;
use telehealth_testkit::ports::free_port;
use telehealth_testkit::suite::{Backend, Person, Suite};

const CENTRE: &str = "cds-bourganeuf";
const SENDER: &str = "teleexpertise@cds-bourganeuf.mssante.fr";
const REQUESTER_ADDRESS: &str = "dr.martin@cds-bourganeuf.mssante.fr";
const GP_ADDRESS: &str = "dr.leblanc@medecin.mssante.fr";

/// Whether `program` runs; outside CI a missing tool skips the test, in CI it fails it.
fn available(program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} {args:?} is required in CI (.ci/install-report-tools)"
        );
        eprintln!("SKIPPING: {program} is not usable (run .ci/install-report-tools)");
    }
    ok
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A test CA, the mail server's certificate, the sending mailbox's client certificate.
fn pki(dir: &Path) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Test IGC Santé");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).expect("server");
    let client_key = KeyPair::generate().expect("key");
    let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
    client
        .distinguished_name
        .push(DnType::CommonName, "CDS Bourganeuf, BAL applicative");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).expect("client");
    for (name, text) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert.pem()),
        ("server-key.pem", server_key.serialize_pem()),
        ("client.pem", client_cert.pem()),
        ("client-key.pem", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), text).expect("PEM");
    }
}

/// The SMTP server on `port`, killed when dropped.
struct MailServer {
    child: Child,
}

impl MailServer {
    fn start(pki: &Path, out: &Path, port: u16) -> MailServer {
        let mut child = Command::new("python3")
            .arg(repository().join("tests/mail/smtp_server.py"))
            .arg("--out")
            .arg(out)
            .arg("--cert")
            .arg(pki.join("server.pem"))
            .arg("--key")
            .arg(pki.join("server-key.pem"))
            .arg("--ca")
            .arg(pki.join("ca.pem"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        assert!(
            line.starts_with("PORT "),
            "the SMTP server started: {line:?}"
        );
        MailServer { child }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request of `doctor` about `patient` with the two addresses, submitted, claimed and
/// answered by `specialist`; its id.
async fn answered(
    suite: &Suite,
    doctor: &Person,
    specialist: &Person,
    patient: &str,
    gp_address: &str,
) -> String {
    let mut dr = suite.expertise(doctor).await;
    let draft = dr
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            content: Some(pb::ExpertiseRequestContent {
                target_org_id: "chu-limoges".into(),
                specialty: "dermatology".into(),
                patient: Some(pb::ExpertisePatient {
                    patient: Some(pb::PatientRef {
                        pseudonym: patient.into(),
                    }),
                    age_years: 82,
                    age_months: 0,
                    sex: pb::Sex::Female as i32,
                }),
                clinical_question: "Lésion pigmentée de la joue, évolutive : exérèse ?".into(),
                urgency: pb::Urgency::Routine as i32,
                general_practitioner: Some(pb::GeneralPractitioner {
                    is_requester: false,
                    display_name: "Dr Leblanc".into(),
                    rpps_number: String::new(),
                    mssante_address: gp_address.into(),
                }),
                requester_mssante_address: REQUESTER_ADDRESS.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("draft")
        .into_inner()
        .request
        .expect("request");
    let id = draft.request_id;
    dr.submit_request(pb::SubmitRequestRequest {
        request_id: id.clone(),
        expected_version: 0,
    })
    .await
    .expect("submitted");
    let mut spec = suite.expertise(specialist).await;
    spec.claim_request(pb::ClaimRequestRequest {
        request_id: id.clone(),
    })
    .await
    .expect("claimed");
    spec.answer_request(pb::AnswerRequestRequest {
        request_id: id.clone(),
        answer: Some(pb::ExpertAnswer {
            impression: "Lentigo malin débutant".into(),
            recommendation: pb::Recommendation::Excise as i32,
            monitor_interval_months: 0,
            recommendation_details: "Exérèse avec marges de 5 mm".into(),
            free_text: "Réseau pigmenté atypique en dermatoscopie.".into(),
        }),
    })
    .await
    .expect("answered");
    id
}

/// The request's deliveries once every one of them has left `pending` (or after 30 s).
async fn settled(suite: &Suite, doctor: &Person, id: &str) -> Vec<pb::ReportDelivery> {
    let mut dr = suite.expertise(doctor).await;
    for _ in 0..300 {
        let request = dr
            .get_request(pb::GetRequestRequest {
                request_id: id.to_owned(),
            })
            .await
            .expect("read")
            .into_inner()
            .request
            .expect("request");
        let deliveries = request.report_deliveries;
        if !deliveries.is_empty()
            && deliveries
                .iter()
                .all(|d| d.status != pb::ReportDeliveryStatus::Pending as i32)
        {
            return deliveries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the deliveries of {id} stayed pending");
}

fn status_of(deliveries: &[pb::ReportDelivery], address: &str) -> pb::ReportDeliveryStatus {
    deliveries
        .iter()
        .find(|d| d.address == address)
        .and_then(|d| pb::ReportDeliveryStatus::try_from(d.status).ok())
        .unwrap_or_else(|| panic!("a delivery to {address} in {deliveries:?}"))
}

#[tokio::test]
async fn the_answer_report_reaches_the_requester_and_the_gp_by_secure_mail() {
    if !available("python3", &["-c", "import aiosmtpd"]) || !available("pdftotext", &["-v"]) {
        return;
    }
    let certificates = tempfile::tempdir().expect("dir");
    pki(certificates.path());
    let received = tempfile::tempdir().expect("dir");
    let port = free_port();
    let dir = certificates.path().to_path_buf();
    let Some(suite) = Suite::start_with(Backend::Sqlite, |settings| {
        let mail = &mut settings.report_mail;
        mail.host = Some("127.0.0.1".into());
        mail.port = port;
        mail.tls = MailTls::Starttls;
        mail.server_name = Some("localhost".into());
        mail.ca_file = Some(dir.join("ca.pem"));
        mail.cert_file = Some(dir.join("client.pem"));
        mail.key_file = Some(dir.join("client-key.pem"));
        mail.sender = SENDER.into();
        mail.interval_seconds = 1;
    })
    .await
    else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let specialist = Person::specialist("dr-durand", "chu-limoges").in_specialty("dermatology");
    let patient = suite.consenting_patient(&doctor).await;

    // The mail server is down: each delivery is tried, then waits for a retry.
    let early = answered(&suite, &doctor, &specialist, &patient, GP_ADDRESS).await;
    let deliveries = settled(&suite, &doctor, &early).await;
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    for delivery in &deliveries {
        assert_eq!(
            delivery.status,
            pb::ReportDeliveryStatus::Retrying as i32,
            "{delivery:?}"
        );
        assert_eq!(delivery.attempts, 1);
        assert!(!delivery.last_error.is_empty());
        assert!(delivery.next_attempt_at.is_some());
    }

    // With the server up, the next answer's report reaches both; a refused address fails for
    // good with the server's reason.
    let _server = MailServer::start(certificates.path(), received.path(), port);
    let id = answered(&suite, &doctor, &specialist, &patient, GP_ADDRESS).await;
    let deliveries = settled(&suite, &doctor, &id).await;
    assert_eq!(
        status_of(&deliveries, REQUESTER_ADDRESS),
        pb::ReportDeliveryStatus::Delivered
    );
    assert_eq!(
        status_of(&deliveries, GP_ADDRESS),
        pb::ReportDeliveryStatus::Delivered
    );
    let refused = answered(
        &suite,
        &doctor,
        &specialist,
        &patient,
        "refuse@medecin.mssante.fr",
    )
    .await;
    let deliveries = settled(&suite, &doctor, &refused).await;
    assert_eq!(
        status_of(&deliveries, "refuse@medecin.mssante.fr"),
        pb::ReportDeliveryStatus::Failed,
        "{deliveries:?}"
    );
    let failed = deliveries
        .iter()
        .find(|d| d.address.starts_with("refuse"))
        .expect("the refused one");
    assert!(failed.last_error.contains("550"), "{failed:?}");

    // What arrived: from the application mailbox, authenticated by its certificate, with the
    // report as a PDF that reads back with the request's content.
    let mut messages: Vec<PathBuf> = std::fs::read_dir(received.path())
        .expect("received")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    messages.sort();
    // Each message read with Python's own parser: its subject, envelope, client certificate.
    let mut for_id = Vec::new();
    for (n, message) in messages.iter().enumerate() {
        let parts = received.path().join(format!("parts-{n}"));
        std::fs::create_dir_all(&parts).expect("dir");
        let listed = Command::new("python3")
            .arg(repository().join("tests/mail/extract_attachment.py"))
            .arg(message)
            .arg(&parts)
            .output()
            .expect("python3 runs");
        assert!(listed.status.success(), "{listed:?}");
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains("application/pdf"),
            "{listed:?}"
        );
        let subject = std::fs::read_to_string(parts.join("subject.txt")).expect("subject");
        assert!(
            subject.contains("Compte rendu de télé-expertise"),
            "{subject}"
        );
        let envelope =
            std::fs::read_to_string(message.with_extension("envelope")).expect("envelope");
        assert!(envelope.starts_with(SENDER), "{envelope}");
        let peer = std::fs::read_to_string(message.with_extension("peer")).expect("peer");
        assert!(peer.contains("BAL applicative"), "{peer}");
        if subject.contains(&id) {
            for_id.push((envelope, parts));
        }
    }
    let to = |address: &str| for_id.iter().filter(|(e, _)| e.contains(address)).count();
    assert_eq!(
        (to(REQUESTER_ADDRESS), to(GP_ADDRESS)),
        (1, 1),
        "one message each"
    );
    let (_, parts) = for_id
        .iter()
        .find(|(e, _)| e.contains(GP_ADDRESS))
        .expect("the GP's");
    let pdf = parts.join(format!("compte-rendu-tele-expertise-{id}.pdf"));
    let text = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext runs");
    let text = String::from_utf8_lossy(&text.stdout);
    for expected in [
        "Compte rendu de télé-expertise",
        "PATIENT",
        "29/02/1944",
        "identité provisoire",
        "Lésion pigmentée de la joue",
        "Lentigo malin débutant",
        "Exérèse avec marges de 5 mm",
        "TE2",
        "R6316-4",
    ] {
        assert!(text.contains(expected), "{expected:?} in the PDF:\n{text}");
    }
    suite.stop().await;
}
