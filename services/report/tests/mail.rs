//! The report sent through a real SMTP server (aiosmtpd, tests/mail/smtp_server.py) that, like
//! an MSSanté operator, requires TLS and a client certificate; the received message is read
//! back with Python's `email` package and its PDF with pdftotext.

#[path = "support/tools.rs"]
mod tools;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use telehealth_report::{
    Attachment, ClientIdentity, MailConfig, Message, Roots, SendError, TlsMode, build_message,
    render_pdf, send,
};
use tools::{aiosmtpd, pdf_text, poppler, run, sample_report};

const CLIENT_CN: &str = "Centre de santé de Saint-Étienne-du-Rouvray, BAL applicative";
const SENDER: &str = "teleexpertise@cds-saint-etienne.mssante.fr";
const RECIPIENT: &str = "francois.menard@chu-rouen.mssante.fr";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A test CA, the server's certificate for localhost, and the sending structure's client
/// certificate, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "Test IGC Santé");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client
            .distinguished_name
            .push(DnType::CommonName, CLIENT_CN);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &issuer)
            .expect("client certificate");

        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("a PEM file");
        };
        write("ca.pem", ca_cert.pem());
        write("server.pem", server_cert.pem());
        write("server-key.pem", server_key.serialize_pem());
        write("client.pem", client_cert.pem());
        write("client-key.pem", client_key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client_identity(&self) -> ClientIdentity {
        ClientIdentity {
            cert_chain_pem: std::fs::read(self.path("client.pem")).expect("client.pem"),
            key_pem: std::fs::read(self.path("client-key.pem")).expect("client-key.pem"),
        }
    }
}

/// The Python server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

impl Server {
    fn start(pki: &Pki, mode: &str, implicit: bool) -> Server {
        let out = tempfile::tempdir().expect("temp dir");
        let script = repository().join("tests/mail/smtp_server.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--out")
            .arg(out.path())
            .arg("--cert")
            .arg(pki.path("server.pem"))
            .arg("--key")
            .arg(pki.path("server-key.pem"))
            .arg("--ca")
            .arg(pki.path("ca.pem"))
            .args(["--mode", mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if implicit {
            command.arg("--implicit");
        }
        let mut child = command.spawn().expect("python3 starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            panic!("the SMTP server did not start: {line:?}");
        };
        Server { child, port, out }
    }

    fn config(&self, pki: &Pki, tls: TlsMode, with_certificate: bool) -> MailConfig {
        MailConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls,
            server_name: "localhost".into(),
            roots: Roots::PemFile(pki.path("ca.pem")),
            client_identity: with_certificate.then(|| pki.client_identity()),
            sender: SENDER.into(),
            helo_name: "telehealth.test".into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The first saved message, waiting a little for the server's write.
    fn received(&self) -> Option<PathBuf> {
        let path = self.out.path().join("0001.eml");
        for _ in 0..50 {
            if path.exists() {
                return Some(path);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn saved_count(&self) -> usize {
        std::fs::read_dir(self.out.path())
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(pdf: Vec<u8>, to: Vec<String>) -> Message {
    Message {
        from: SENDER.into(),
        to,
        subject: "Compte rendu de télé-expertise — Mme DUPRÉ Maëlle".into(),
        text_body: "Bonjour,\n\nVeuillez trouver ci-joint le compte rendu de la télé-expertise \
                    TE-2026-000123.\n.\nBien confraternellement,\nPr François Ménard"
            .into(),
        attachment: Attachment {
            filename: "compte-rendu-TE-2026-000123.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: pdf,
        },
        message_id_domain: "cds-saint-etienne.mssante.fr".into(),
        date: "2026-12-03T13:06:00Z".parse().expect("instant"),
    }
}

async fn send_report(server: &Server, pki: &Pki, tls: TlsMode) -> Vec<u8> {
    let pdf = render_pdf(&sample_report()).expect("a report");
    let bytes = build_message(&message(pdf.clone(), vec![RECIPIENT.into()])).expect("a message");
    let delivered = send(
        &server.config(pki, tls, true),
        SENDER,
        &[RECIPIENT.into()],
        &bytes,
    )
    .await
    .expect("delivered");
    assert_eq!(delivered.accepted, [RECIPIENT]);
    assert!(delivered.refused.is_empty());
    assert!(
        delivered.reply.contains("queued as TEST0001"),
        "{}",
        delivered.reply
    );
    pdf
}

/// Reads the saved message with Python's email package and checks it says what was sent.
fn check_received(server: &Server, pdf: &[u8]) {
    let eml = server.received().expect("the server saved the message");
    let peer = std::fs::read_to_string(server.out.path().join("0001.peer")).expect("peer file");
    assert!(
        peer.contains(&format!("commonName={CLIENT_CN}")),
        "client certificate seen: {peer}"
    );
    let envelope =
        std::fs::read_to_string(server.out.path().join("0001.envelope")).expect("envelope");
    assert_eq!(envelope, format!("{SENDER}\n{RECIPIENT}"));

    let out = tempfile::tempdir().expect("temp dir");
    let script = repository().join("tests/mail/extract_attachment.py");
    let extracted = run(
        "python3",
        &[
            script.to_str().expect("path"),
            eml.to_str().expect("path"),
            out.path().to_str().expect("path"),
        ],
    );
    assert!(
        extracted.status.success(),
        "python email: {}",
        String::from_utf8_lossy(&extracted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&extracted.stdout),
        "compte-rendu-TE-2026-000123.pdf\tapplication/pdf\n"
    );
    let subject = std::fs::read_to_string(out.path().join("subject.txt")).expect("subject");
    assert_eq!(subject, "Compte rendu de télé-expertise — Mme DUPRÉ Maëlle");
    let body = std::fs::read_to_string(out.path().join("body.txt")).expect("body");
    assert!(
        body.contains("télé-expertise TE-2026-000123.\n.\nBien"),
        "dot line kept: {body:?}"
    );
    let attached = out.path().join("compte-rendu-TE-2026-000123.pdf");
    assert_eq!(
        std::fs::read(&attached).expect("the PDF"),
        pdf,
        "byte for byte"
    );

    if poppler() {
        let text = pdf_text(&attached, None)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for phrase in [
            "Compte rendu de télé-expertise",
            "Pr François Ménard",
            "3 décembre 2026 à 14:05",
            "page 2/2",
        ] {
            assert!(text.contains(phrase), "{phrase:?} in the received PDF");
        }
    }
}

#[tokio::test]
async fn a_report_sent_with_starttls_and_a_client_certificate_arrives_intact() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "ok", false);
    let pdf = send_report(&server, &pki, TlsMode::Starttls).await;
    check_received(&server, &pdf);
}

#[tokio::test]
async fn a_report_sent_with_implicit_tls_arrives_intact() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "ok", true);
    let pdf = send_report(&server, &pki, TlsMode::Implicit).await;
    check_received(&server, &pdf);
}

#[tokio::test]
async fn without_a_client_certificate_the_server_refuses_for_good() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    for (implicit, tls) in [(false, TlsMode::Starttls), (true, TlsMode::Implicit)] {
        let server = Server::start(&pki, "ok", implicit);
        let error = send(
            &server.config(&pki, tls, false),
            SENDER,
            &[RECIPIENT.into()],
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .expect_err("refused without a certificate");
        assert!(
            matches!(error, SendError::Certificate { .. }),
            "{tls:?}: {error:?}"
        );
        assert!(!error.is_retryable(), "{tls:?}: {error}");
        assert_eq!(server.saved_count(), 0, "{tls:?}: nothing was accepted");
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_authority_is_refused_for_good() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    let other = Pki::new();
    let server = Server::start(&pki, "ok", false);
    let mut config = server.config(&pki, TlsMode::Starttls, true);
    config.roots = Roots::PemFile(other.path("ca.pem"));
    let error = send(&config, SENDER, &[RECIPIENT.into()], b"x\r\n")
        .await
        .expect_err("an unknown server certificate");
    assert!(matches!(error, SendError::Certificate { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_server_answering_451_is_worth_retrying() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "tempfail", false);
    let error = send(
        &server.config(&pki, TlsMode::Starttls, true),
        SENDER,
        &[RECIPIENT.into()],
        b"x\r\n",
    )
    .await
    .expect_err("a temporary failure");
    assert!(
        matches!(
            error,
            SendError::Rejected {
                code: 451,
                step: "MAIL FROM",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_recipient_refused_with_550_is_reported_and_the_others_served() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "ok", false);
    let config = server.config(&pki, TlsMode::Starttls, true);
    let refused = "refuse-me@chu-rouen.mssante.fr".to_owned();
    let recipients = vec![RECIPIENT.to_owned(), refused.clone()];
    let bytes = build_message(&message(b"%PDF-1.4".to_vec(), recipients.clone())).expect("message");

    let delivered = send(&config, SENDER, &recipients, &bytes)
        .await
        .expect("delivered");
    assert_eq!(delivered.accepted, [RECIPIENT]);
    assert_eq!(delivered.refused.len(), 1);
    assert_eq!(delivered.refused[0].recipient, refused);
    assert_eq!(delivered.refused[0].code, 550);

    let error = send(&config, SENDER, &[refused], &bytes)
        .await
        .expect_err("nobody to deliver to");
    assert!(
        matches!(error, SendError::AllRecipientsRefused(ref r) if r[0].code == 550),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_server_without_starttls_gets_nothing_in_clear() {
    if !aiosmtpd() {
        return;
    }
    let pki = Pki::new();
    let server = Server::start(&pki, "plain", false);
    let error = send(
        &server.config(&pki, TlsMode::Starttls, true),
        SENDER,
        &[RECIPIENT.into()],
        b"x\r\n",
    )
    .await
    .expect_err("no STARTTLS");
    assert!(matches!(error, SendError::StartTlsNotOffered), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(server.saved_count(), 0);
}

#[tokio::test]
async fn a_closed_port_is_worth_retrying() {
    let pki = Pki::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("address").port()
    };
    let config = MailConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Starttls,
        server_name: "localhost".into(),
        roots: Roots::PemFile(pki.path("ca.pem")),
        client_identity: Some(pki.client_identity()),
        sender: SENDER.into(),
        helo_name: "telehealth.test".into(),
        timeout: Duration::from_secs(5),
    };
    let error = send(&config, SENDER, &[RECIPIENT.into()], b"x\r\n")
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, SendError::Connect { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_worth_retrying() {
    let pki = Pki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.expect("a connection");
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let config = MailConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Starttls,
        server_name: "localhost".into(),
        roots: Roots::PemFile(pki.path("ca.pem")),
        client_identity: Some(pki.client_identity()),
        sender: SENDER.into(),
        helo_name: "telehealth.test".into(),
        timeout: Duration::from_millis(300),
    };
    let error = send(&config, SENDER, &[RECIPIENT.into()], b"x\r\n")
        .await
        .expect_err("silence");
    assert!(
        matches!(error, SendError::Timeout { step: "greeting" }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    silent.abort();
}
