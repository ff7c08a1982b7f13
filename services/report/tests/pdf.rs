//! The report read back by an independent PDF reader (poppler's pdftotext and pdfinfo).

#[path = "support/tools.rs"]
mod tools;

use std::path::PathBuf;

use telehealth_report::{IdentityStatus, Thumbnail, render_pdf};
use tools::{QUALIFIED_INS, pdf_text, poppler, run, sample_report};

fn write_pdf(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("writing the PDF");
    path
}

/// Text with the runs of spaces of `-layout` collapsed, so that phrases can be searched.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_full_report_reads_back_in_french_on_two_numbered_pages() {
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pdf = render_pdf(&sample_report()).expect("a report");
    let path = write_pdf(&dir, "report.pdf", &pdf);
    // For a human look (like the FHIR resources for the validators): the folder named by
    // TELEHEALTH_TEST_REPORT_OUT receives the sample report.
    if let Some(out) = std::env::var_os("TELEHEALTH_TEST_REPORT_OUT") {
        std::fs::create_dir_all(&out).expect("the output folder");
        std::fs::write(PathBuf::from(out).join("report.pdf"), &pdf).expect("a copy");
    }

    let text = squeeze(&pdf_text(&path, None));
    let expected = [
        "Compte rendu de télé-expertise",
        "Dr Hélène Lefèvre",
        "RPPS : 10101010101",
        "Centre de santé communautaire de Saint-Étienne-du-Rouvray",
        "Pr François Ménard",
        "Spécialité : Dermatologie",
        "CHU de Rouen, service de dermatologie",
        "Nom de naissance : DUPRÉ",
        "Prénom(s) de naissance : Maëlle Françoise",
        "Nom utilisé : NOËL",
        "Date de naissance : 12/03/1957",
        "Sexe : féminin",
        "identité qualifiée",
        "Matricule INS : 279035121518989 (NIR de test)",
        "OID : 1.2.250.1.213.1.4.10",
        "Identité INS qualifiée",
        "s’impose « en urgence »",
        "Conclusion : Aspect dermoscopique évocateur d’un mélanome",
        "Consultation nécessaire : oui",
        "Urgence : à programmer dans les prochains jours",
        "Vue d’ensemble du dos",
        "Dermatoscopie de la lésion",
        "Code de l'acte : TE2",
        "3 décembre 2026 à 14:05",
        "art. R6316-4 du code de la santé publique",
        "1° Compte rendu de la réalisation de l'acte",
        "2° Actes et prescriptions effectués : acte TE2 (télé-expertise) ; aucune prescription",
        "3° Identité des professionnels de santé participant à l'acte",
        "4° Date et heure de l'acte : 3 décembre 2026 à 14:05",
        "5° Incidents techniques : aucun",
        "page 1/2",
        "page 2/2",
    ];
    for phrase in expected {
        assert!(text.contains(phrase), "missing {phrase:?} in:\n{text}");
    }

    let first = pdf_text(&path, Some((1, 1)));
    let second = pdf_text(&path, Some((2, 2)));
    assert!(
        first.contains("DÉBUT-DE-QUESTION"),
        "the question starts on page 1"
    );
    assert!(second.contains("FIN-DE-QUESTION"), "and ends on page 2");

    let info = run("pdfinfo", &[path.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "pdfinfo failed: {stdout}");
    assert!(
        info.stderr.is_empty(),
        "pdfinfo complained: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("Pages:") && l.ends_with(" 2")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Compte rendu de télé-expertise"),
        "title: {stdout}"
    );
    assert!(squeeze(&stdout).contains("PDF version: 1.4"), "{stdout}");

    // Rendering decodes the thumbnails too: a bad JPEG header or stream would be reported.
    let prefix = dir.path().join("page");
    let render = run(
        "pdftoppm",
        &[
            "-r",
            "20",
            "-png",
            path.to_str().expect("path"),
            prefix.to_str().expect("path"),
        ],
    );
    assert!(
        render.status.success() && render.stderr.is_empty(),
        "pdftoppm: {}",
        String::from_utf8_lossy(&render.stderr)
    );
}

#[test]
fn an_identity_that_is_not_qualified_never_shows_its_ins() {
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (IdentityStatus::Provisional, "identité provisoire"),
        (IdentityStatus::Recovered, "identité récupérée"),
        (IdentityStatus::Validated, "identité validée"),
    ];
    for (status, wording) in cases {
        let mut report = sample_report();
        report.patient.identity_status = status;
        let pdf = render_pdf(&report).expect("a report");
        assert!(
            !pdf.windows(QUALIFIED_INS.len())
                .any(|w| w == QUALIFIED_INS.as_bytes()),
            "{status:?}: the INS is nowhere in the file"
        );
        let text = squeeze(&pdf_text(&write_pdf(&dir, "report.pdf", &pdf), None));
        assert!(text.contains(wording), "{status:?}: {wording} in {text}");
        assert!(
            !text.contains(QUALIFIED_INS),
            "{status:?}: no INS in the text"
        );
        assert!(
            !text.contains("1.2.250.1.213"),
            "{status:?}: no INS OID in the text"
        );
        assert!(
            !text.contains("Identité INS qualifiée"),
            "{status:?}: no qualified mention"
        );
        assert!(
            text.contains("non communiqué"),
            "{status:?}: says why there is no INS"
        );
    }
}

#[test]
fn a_thumbnail_that_is_not_a_jpeg_is_skipped_with_a_note() {
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut report = sample_report();
    report.thumbnails.push(Thumbnail {
        caption: "Capture d’écran".into(),
        jpeg: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
    });
    let pdf = render_pdf(&report).expect("a report");
    let text = squeeze(&pdf_text(&write_pdf(&dir, "report.pdf", &pdf), None));
    assert!(
        text.contains("Image 3 (Capture d’écran) non reproduite : ce n'est pas une image JPEG."),
        "{text}"
    );
    let images = pdf
        .windows(b"/DCTDecode".len())
        .filter(|w| w == b"/DCTDecode")
        .count();
    assert_eq!(images, 2, "only the two JPEGs are embedded");
}

#[test]
fn the_same_report_always_gives_the_same_bytes() {
    let report = sample_report();
    let first = render_pdf(&report).expect("a report");
    assert_eq!(first, render_pdf(&report).expect("a report"));
    let mut other = report.clone();
    other.answer.conclusion.push('.');
    assert_ne!(first, render_pdf(&other).expect("a report"));
}

#[test]
fn the_cross_reference_table_points_at_each_object() {
    let pdf = render_pdf(&sample_report()).expect("a report");
    let text = String::from_utf8_lossy(&pdf);
    let startxref: usize = text
        .rsplit("startxref\n")
        .next()
        .and_then(|tail| tail.lines().next())
        .and_then(|n| n.parse().ok())
        .expect("a startxref offset");
    assert!(
        pdf[startxref..].starts_with(b"xref\n0 "),
        "startxref points at the table"
    );
    let table = &pdf[startxref..];
    let header_end = table
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("the table's two header lines");
    let count: usize = String::from_utf8_lossy(&table[5..header_end - 1])
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("an object count");
    assert!(count > 8);
    let entries = &table[header_end..];
    for number in 1..count {
        let entry = &entries[number * 20..(number + 1) * 20];
        assert!(
            entry.ends_with(b" 00000 n\r\n"),
            "entry {number} is 20 bytes: {entry:?}"
        );
        let offset: usize = String::from_utf8_lossy(&entry[..10])
            .parse()
            .expect("an offset");
        let header = format!("{number} 0 obj");
        assert!(
            pdf[offset..].starts_with(header.as_bytes()),
            "object {number} at {offset}"
        );
    }
}

#[test]
fn hostile_text_never_panics_and_still_gives_a_readable_pdf() {
    let long_word = "x".repeat(5000);
    let hundred_kb = "Lorem ipsum dolor sit amet, consectetur (adipiscing) elit \\ ".repeat(1700);
    let odd: Vec<String> = vec![
        String::new(),
        "\0\u{1}\u{7}\u{1b}[31m\u{7f}\u{85}\u{9f}".into(),
        "(((unbalanced \\) parentheses".into(),
        "שלום עולם مرحبا بالعالم \u{202e}reversed\u{202c}".into(),
        "😀🏥💉 émojis 👩🏽‍⚕️".into(),
        "e\u{301}\u{301}\u{301} combining".into(),
        "\r\n\r\r\n\n\n".into(),
        "%%EOF\nendstream\nendobj\nxref".into(),
        "\u{FEFF}\u{200B}\u{2028}\u{2029}\u{FFFD}\u{10FFFF}".into(),
        long_word,
        hundred_kb,
        "é".repeat(20_000),
        "a\tb\u{202f}c\u{a0}d".into(),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let check = poppler();
    for (case, text) in odd.iter().enumerate() {
        let mut report = sample_report();
        report.reference = text.clone();
        report.requester.name = text.clone();
        report.patient.birth_name = text.clone();
        report.question = text.clone();
        report.answer.findings = text.clone();
        report.act.code = text.clone();
        report.act.technical_incidents = vec![text.clone()];
        report.thumbnails[0].caption = text.clone();
        report.thumbnails[1].jpeg = text.as_bytes().to_vec();
        let pdf = render_pdf(&report).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert!(
            pdf.starts_with(b"%PDF-1.4") && pdf.ends_with(b"%%EOF\n"),
            "case {case}"
        );
        if check {
            let path = write_pdf(&dir, &format!("odd-{case}.pdf"), &pdf);
            let info = run("pdfinfo", &[path.to_str().expect("path")]);
            assert!(
                info.status.success() && info.stderr.is_empty(),
                "case {case}: {}",
                String::from_utf8_lossy(&info.stderr)
            );
            let _ = pdf_text(&path, None);
        }
    }
}

#[test]
fn text_beyond_the_limit_is_refused_not_cut() {
    let mut report = sample_report();
    report.answer.findings = "a".repeat(telehealth_report::MAX_TEXT_BYTES + 1);
    assert!(matches!(
        render_pdf(&report),
        Err(telehealth_report::Error::TooLong {
            field: "findings",
            ..
        })
    ));
}
