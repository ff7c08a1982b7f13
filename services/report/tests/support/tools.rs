//! External tools of the tests, and a sample report.
//!
//! Tool policy of the repository: a missing tool skips the test with a message on a developer's
//! machine, and fails it under CI (`CI` set), where `.ci/install-report-tools` installs them.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use telehealth_report::{
    Act, Answer, ExpertiseReport, IdentityStatus, Ins, Patient, Professional, Sex, Thumbnail,
    Urgency,
};

/// Whether `program args…` runs; when it does not: a panic under CI, a message otherwise.
pub fn available(program: &str, args: &[&str], install_hint: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{program} is required in CI ({install_hint}; see .ci/install-report-tools)");
        }
        eprintln!(
            "SKIPPING: {program} is not usable ({install_hint}; run .ci/install-report-tools)"
        );
    }
    ok
}

pub fn poppler() -> bool {
    available("pdftotext", &["-v"], "Debian package poppler-utils")
        && available("pdfinfo", &["-v"], "Debian package poppler-utils")
}

pub fn aiosmtpd() -> bool {
    available("python3", &["-c", "import aiosmtpd"], "PyPI aiosmtpd")
}

/// Runs a tool and returns its output, failing the test when it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} could not start: {error}"))
}

/// The text of a PDF file (`pdftotext -layout`), pages `first..=last` when given.
pub fn pdf_text(path: &Path, pages: Option<(u32, u32)>) -> String {
    let path = path.to_str().expect("a UTF-8 temp path");
    let mut args = vec!["-layout".to_owned(), "-enc".to_owned(), "UTF-8".to_owned()];
    if let Some((first, last)) = pages {
        args.extend([
            "-f".into(),
            first.to_string(),
            "-l".into(),
            last.to_string(),
        ]);
    }
    args.extend([path.to_owned(), "-".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run("pdftotext", &args);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "pdftotext failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("pdftotext writes UTF-8")
}

/// A real baseline JPEG of `width`×`height` (a colour gradient).
pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend([(x * 3) as u8, (y * 2) as u8, 128]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 80)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("encoding a test JPEG");
    out
}

pub const QUALIFIED_INS: &str = "279035121518989";

/// A complete report: accented names, a qualified identity, two thumbnails.
pub fn sample_report() -> ExpertiseReport {
    let question_paragraph = "Patiente de 69 ans, phototype II, antécédent de carcinome \
        basocellulaire. Lésion pigmentée du dos apparue il y a six mois, asymétrique, de 8 mm, \
        aux bords irréguliers et de couleur hétérogène ; la patiente signale un prurit récent. \
        Pouvez-vous me dire si une exérèse s’impose « en urgence » ou si une surveillance \
        suffit ?";
    let mut question = String::from("DÉBUT-DE-QUESTION Bonjour Docteur,\n\n");
    for number in 1..=5 {
        question.push_str(&format!("Paragraphe {number}. {question_paragraph}\n\n"));
    }
    question.push_str("Merci d’avance. FIN-DE-QUESTION");
    ExpertiseReport {
        reference: "TE-2026-000123".into(),
        requester: Professional {
            name: "Dr Hélène Lefèvre".into(),
            rpps: "10101010101".into(),
            specialty: Some("Médecine générale".into()),
            organisation: "Centre de santé communautaire de Saint-Étienne-du-Rouvray".into(),
        },
        expert: Professional {
            name: "Pr François Ménard".into(),
            rpps: "10202020202".into(),
            specialty: Some("Dermatologie".into()),
            organisation: "CHU de Rouen, service de dermatologie".into(),
        },
        patient: Patient {
            birth_name: "DUPRÉ".into(),
            first_names: "Maëlle Françoise".into(),
            used_name: Some("NOËL".into()),
            used_first_name: None,
            birth_date: jiff::civil::date(1957, 3, 12),
            sex: Sex::Female,
            identity_status: IdentityStatus::Qualified,
            ins: Some(Ins {
                number: QUALIFIED_INS.into(),
                oid: "1.2.250.1.213.1.4.10".into(),
            }),
        },
        question,
        asked_at: "2026-12-01T08:30:00Z".parse().expect("instant"),
        answer: Answer {
            conclusion: "Aspect dermoscopique évocateur d’un mélanome ; exérèse recommandée."
                .into(),
            findings: "Réseau pigmentaire atypique, voile bleu-blanc, points irréguliers.".into(),
            recommendations: "Exérèse complète avec marges de 2 mm, examen anatomopathologique."
                .into(),
            consultation_needed: true,
            urgency: Urgency::Soon,
        },
        thumbnails: vec![
            Thumbnail {
                caption: "Vue d’ensemble du dos".into(),
                jpeg: jpeg(64, 48),
            },
            Thumbnail {
                caption: "Dermatoscopie de la lésion".into(),
                jpeg: jpeg(40, 40),
            },
        ],
        act: Act {
            code: "TE2".into(),
            answered_at: "2026-12-03T13:05:00Z".parse().expect("instant"),
            prescriptions: Vec::new(),
            technical_incidents: Vec::new(),
        },
    }
}
