//! The tele-expertise report as a PDF, written by hand: PDF 1.4, the standard Helvetica fonts
//! in WinAnsiEncoding, JPEG thumbnails embedded untouched. A report is a few pages of text and
//! small images, which a few hundred lines cover; a PDF library would bring font embedding,
//! compression and a dependency tree that this document does not need.
//!
//! The layout is one column: a title, then one section per group of facts (who asked, who
//! answered, the patient, the question, the answer, the images, the act, and the items that
//! article R6316-4 of the code de la santé publique requires to be recorded). Text wraps by
//! the fonts' widths and flows onto as many pages as needed; each page is numbered "page i/n".

mod jpeg;
mod layout;
mod winansi;
mod writer;

use crate::error::Error;
use crate::french;
use crate::report::{ExpertiseReport, IdentityStatus, Professional};
use jpeg::NotEmbedded;
use layout::{BODY_SIZE, Layout, TEXT_WIDTH};
use winansi::Font;

/// The longest free text accepted in one field (about 300 pages). Longer text is refused rather
/// than cut: a medical report must not silently lose part of the answer.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// Side of the square each thumbnail is fitted in, in points (about 5 cm).
const THUMBNAIL_BOX: f32 = 150.0;

/// Renders the report. The same report always gives the same bytes.
///
/// # Errors
/// [`Error::TooLong`] when a text field is longer than [`MAX_TEXT_BYTES`].
pub fn render_pdf(report: &ExpertiseReport) -> Result<Vec<u8>, Error> {
    check_lengths(report)?;
    let mut page = Layout::new();
    let answered = french::date_time(report.act.answered_at);

    page.heading("Compte rendu de télé-expertise", 18.0);
    page.paragraph(
        &[(
            Font::Regular,
            &format!(
                "Référence {} — acte {} — réponse du {answered} (heure de Paris)",
                report.reference, report.act.code
            ),
        )],
        BODY_SIZE,
        0.0,
    );

    page.heading("Professionnel requérant", 12.0);
    professional(&mut page, &report.requester);
    page.heading("Professionnel requis (expert)", 12.0);
    professional(&mut page, &report.expert);

    page.heading("Patient", 12.0);
    patient(&mut page, report);

    page.heading("Question posée", 12.0);
    field(
        &mut page,
        "Posée le :",
        &format!("{} (heure de Paris)", french::date_time(report.asked_at)),
    );
    page.space(4.0);
    page.paragraph(&[(Font::Regular, &report.question)], BODY_SIZE, 0.0);

    page.heading("Réponse de l'expert", 12.0);
    let answer = &report.answer;
    field(&mut page, "Conclusion :", &answer.conclusion);
    field(
        &mut page,
        "Constatations :",
        or_none(&answer.findings, "aucune"),
    );
    field(
        &mut page,
        "Recommandations :",
        or_none(&answer.recommendations, "aucune"),
    );
    field(
        &mut page,
        "Consultation nécessaire :",
        if answer.consultation_needed {
            "oui"
        } else {
            "non"
        },
    );
    field(&mut page, "Urgence :", french::urgency(answer.urgency));

    let images = thumbnails(&mut page, report);

    page.heading("Acte", 12.0);
    field(&mut page, "Code de l'acte :", &report.act.code);
    field(
        &mut page,
        "Date et heure de la réponse :",
        &format!("{answered} (heure de Paris)"),
    );

    record(&mut page, report, &answered);

    let footer = format!(
        "Compte rendu de télé-expertise, réf. {}",
        report.reference.chars().take(40).collect::<String>()
    );
    let pages = page.finish(&footer);
    let creation_date = pdf_date(report.act.answered_at);
    Ok(writer::write(
        &pages,
        &images,
        &writer::Info {
            title: "Compte rendu de télé-expertise",
            creation_date: &creation_date,
        },
    ))
}

fn check_lengths(report: &ExpertiseReport) -> Result<(), Error> {
    let mut fields: Vec<(&'static str, &str)> = vec![
        ("reference", &report.reference),
        ("question", &report.question),
        ("conclusion", &report.answer.conclusion),
        ("findings", &report.answer.findings),
        ("recommendations", &report.answer.recommendations),
        ("act code", &report.act.code),
        ("requester", &report.requester.name),
        ("expert", &report.expert.name),
        ("patient", &report.patient.birth_name),
        ("patient", &report.patient.first_names),
    ];
    fields.extend(
        report
            .act
            .prescriptions
            .iter()
            .map(|p| ("prescription", p.as_str())),
    );
    fields.extend(
        report
            .act
            .technical_incidents
            .iter()
            .map(|p| ("technical incident", p.as_str())),
    );
    fields.extend(
        report
            .thumbnails
            .iter()
            .map(|t| ("caption", t.caption.as_str())),
    );
    let total: usize = fields.iter().map(|(_, text)| text.len()).sum();
    if let Some((field, text)) = fields.iter().find(|(_, text)| text.len() > MAX_TEXT_BYTES) {
        return Err(Error::TooLong {
            field,
            length: text.len(),
            max: MAX_TEXT_BYTES,
        });
    }
    // Many medium fields can add up too (a thousand prescriptions of 1 MiB each).
    if total > 4 * MAX_TEXT_BYTES {
        return Err(Error::TooLong {
            field: "report",
            length: total,
            max: 4 * MAX_TEXT_BYTES,
        });
    }
    Ok(())
}

fn or_none<'a>(text: &'a str, none: &'a str) -> &'a str {
    if text.trim().is_empty() { none } else { text }
}

/// A bold label and its value on one line, wrapped with a small indent.
fn field(page: &mut Layout, label: &str, value: &str) {
    page.paragraph(
        &[(Font::Bold, label), (Font::Regular, value)],
        BODY_SIZE,
        0.0,
    );
}

fn professional(page: &mut Layout, who: &Professional) {
    field(page, "Nom :", &who.name);
    field(page, "RPPS :", &who.rpps);
    if let Some(specialty) = who.specialty.as_deref().filter(|s| !s.trim().is_empty()) {
        field(page, "Spécialité :", specialty);
    }
    field(page, "Structure :", &who.organisation);
}

fn patient(page: &mut Layout, report: &ExpertiseReport) {
    let patient = &report.patient;
    field(page, "Nom de naissance :", &patient.birth_name);
    field(page, "Prénom(s) de naissance :", &patient.first_names);
    if let Some(used) = patient
        .used_name
        .as_deref()
        .filter(|used| !used.trim().is_empty() && *used != patient.birth_name)
    {
        field(page, "Nom utilisé :", used);
    }
    if let Some(used) = patient
        .used_first_name
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        field(page, "Prénom utilisé :", used);
    }
    field(
        page,
        "Date de naissance :",
        &french::short_date(patient.birth_date),
    );
    field(page, "Sexe :", french::sex(patient.sex));
    field(
        page,
        "Statut de l'identité :",
        french::identity_status(patient.identity_status),
    );
    // The INS is shared only for a qualified identity; an unverified one could belong to
    // someone else and must not leave the register.
    let qualified = patient.identity_status == IdentityStatus::Qualified;
    match patient.ins.as_ref().filter(|_| qualified) {
        Some(ins) => {
            field(
                page,
                "Matricule INS :",
                &format!("{} ({})", ins.number, french::ins_nature(&ins.oid)),
            );
            field(page, "OID :", &ins.oid);
            page.paragraph(
                &[(
                    Font::Regular,
                    "Identité INS qualifiée : matricule INS et traits d'identité vérifiés \
                     auprès du téléservice INSi, pièce d'identité contrôlée.",
                )],
                BODY_SIZE,
                0.0,
            );
        }
        None if qualified => field(page, "Matricule INS :", "non renseigné"),
        None => field(
            page,
            "Matricule INS :",
            "non communiqué (seul l'INS d'une identité qualifiée est partagé)",
        ),
    }
}

/// Lays out the thumbnails in rows of three, and returns the images to embed.
fn thumbnails<'a>(page: &mut Layout, report: &'a ExpertiseReport) -> Vec<writer::Image<'a>> {
    let mut images = Vec::new();
    if report.thumbnails.is_empty() {
        return images;
    }
    page.heading("Images transmises", 12.0);
    let mut placed: Vec<(usize, f32, f32, &str)> = Vec::new();
    let per_row = ((TEXT_WIDTH + 12.0) / (THUMBNAIL_BOX + 12.0))
        .floor()
        .max(1.0) as usize;
    for (number, thumbnail) in report.thumbnails.iter().enumerate() {
        match jpeg::inspect(&thumbnail.jpeg) {
            Ok(info) => {
                placed.push((
                    images.len(),
                    f32::from(info.width),
                    f32::from(info.height),
                    thumbnail.caption.as_str(),
                ));
                images.push(writer::Image {
                    info,
                    bytes: &thumbnail.jpeg,
                });
            }
            Err(why) => {
                let why = match why {
                    NotEmbedded::NotJpeg => "ce n'est pas une image JPEG",
                    NotEmbedded::Unsupported => "format JPEG non pris en charge",
                    NotEmbedded::TooLarge => "fichier trop volumineux pour une vignette",
                };
                page.paragraph(
                    &[(
                        Font::Regular,
                        &format!(
                            "Image {} ({}) non reproduite : {why}.",
                            number + 1,
                            thumbnail.caption
                        ),
                    )],
                    BODY_SIZE,
                    0.0,
                );
            }
        }
    }
    for row in placed.chunks(per_row) {
        page.image_row(row, THUMBNAIL_BOX);
    }
    images
}

/// The items article R6316-4 of the code de la santé publique requires the professional to
/// record in the patient's file, each under its own heading so that none can be forgotten.
fn record(page: &mut Layout, report: &ExpertiseReport, answered: &str) {
    page.heading(
        "Éléments à inscrire au dossier du patient (art. R6316-4 du code de la santé publique)",
        12.0,
    );
    field(
        page,
        "1° Compte rendu de la réalisation de l'acte :",
        "le présent document (question du requérant et réponse de l'expert ci-dessus).",
    );
    let prescriptions = if report.act.prescriptions.is_empty() {
        "aucune prescription".to_owned()
    } else {
        report.act.prescriptions.join(" ; ")
    };
    field(
        page,
        "2° Actes et prescriptions effectués :",
        &format!(
            "acte {} (télé-expertise) ; {prescriptions}",
            report.act.code
        ),
    );
    let who = |p: &Professional, role: &str| {
        let specialty = p
            .specialty
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!(", {s}"))
            .unwrap_or_default();
        format!(
            "{} (RPPS {}{specialty}, {}), {role}",
            p.name, p.rpps, p.organisation
        )
    };
    field(
        page,
        "3° Identité des professionnels de santé participant à l'acte :",
        &format!(
            "{} ; {}.",
            who(&report.requester, "requérant"),
            who(&report.expert, "requis")
        ),
    );
    field(
        page,
        "4° Date et heure de l'acte :",
        &format!("{answered} (heure de Paris)"),
    );
    if report.act.technical_incidents.is_empty() {
        field(page, "5° Incidents techniques :", "aucun");
    } else {
        field(
            page,
            "5° Incidents techniques :",
            &report.act.technical_incidents.join(" ; "),
        );
    }
}

/// A PDF date (`D:20261203140500+01'00'`) in Paris time.
fn pdf_date(at: jiff::Timestamp) -> String {
    let zoned = at.to_zoned_datetime(french::paris());
    let offset = zoned.offset().seconds();
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.unsigned_abs() / 60;
    format!(
        "D:{:04}{:02}{:02}{:02}{:02}{:02}{sign}{:02}'{:02}'",
        zoned.year(),
        zoned.month(),
        zoned.day(),
        zoned.hour(),
        zoned.minute(),
        zoned.second(),
        minutes / 60,
        minutes % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creation_date_is_the_answer_time_in_paris() {
        let at: jiff::Timestamp = "2026-12-03T13:05:09Z".parse().expect("instant");
        assert_eq!(pdf_date(at), "D:20261203140509+01'00'");
        let summer: jiff::Timestamp = "2026-07-03T13:05:09Z".parse().expect("instant");
        assert_eq!(pdf_date(summer), "D:20260703150509+02'00'");
    }
}
