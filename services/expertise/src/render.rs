//! The answer report as plain French text, ready to file or send by secure mail (pure).

use std::fmt::Write;

use jiff::{Timestamp, tz::TimeZone};

use crate::model::{Request, Urgency};

/// One examined image, as the report lists it.
#[derive(Debug, Clone)]
pub struct ImageLine {
    pub kind: String,
    pub sha256_hex: String,
    pub caption: String,
}

pub(crate) fn recommendation(number: i32, months: i32) -> String {
    match number {
        1 => "Rassurer : lésion bénigne, pas de suivi particulier".into(),
        2 => format!("Surveiller, revoir dans {months} mois"),
        3 => "Traiter".into(),
        4 => "Exérèse (avec examen histologique)".into(),
        5 => "Consultation en présentiel en urgence".into(),
        6 => "Consultation en présentiel (délai habituel)".into(),
        _ => "Autre".into(),
    }
}

fn sex(number: i32) -> &'static str {
    match number {
        1 => "homme",
        2 => "femme",
        3 => "autre",
        _ => "non précisé",
    }
}

fn when(at: Option<Timestamp>, zone: &TimeZone) -> String {
    at.map(|t| {
        t.to_zoned_datetime(zone.clone())
            .strftime("%d/%m/%Y à %H:%M")
            .to_string()
    })
    .unwrap_or_else(|| "-".into())
}

/// Renders the report of an answered `request` (times in `zone`).
pub fn answer_report_text(
    request: &Request,
    images: &[ImageLine],
    generated_at: Timestamp,
    zone: &TimeZone,
) -> String {
    let c = &request.content;
    let expert = request.claimed_by.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "COMPTE RENDU DE TÉLÉ-EXPERTISE");
    let _ = writeln!(out, "Demande {}", request.id);
    let _ = writeln!(out, "Établi le {}", when(Some(generated_at), zone));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Médecin requérant : {} ({})",
        request.requester.subject, request.requester_org
    );
    let _ = writeln!(
        out,
        "Médecin requis : {} ({}), spécialité {}",
        expert.subject, expert.org_id, c.specialty
    );
    if let Some(gp) = &c.general_practitioner {
        let name = if gp.is_requester {
            "le médecin requérant".to_owned()
        } else {
            gp.display_name.clone()
        };
        let _ = write!(out, "Destinataire (médecin traitant) : {name}");
        if !gp.rpps_number.is_empty() {
            let _ = write!(out, ", RPPS {}", gp.rpps_number);
        }
        if !gp.mssante_address.is_empty() {
            let _ = write!(out, ", MSSanté {}", gp.mssante_address);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
    if let Some(p) = &c.patient {
        let age = if p.age_years < 2 && p.age_months > 0 {
            format!("{} mois", p.age_years * 12 + p.age_months)
        } else {
            format!("{} ans", p.age_years)
        };
        let _ = writeln!(out, "Patient : {} ({}, {})", p.pseudonym, sex(p.sex), age);
    }
    let urgency = if c.urgency == Urgency::Urgent {
        "urgente"
    } else {
        "non urgente"
    };
    let _ = writeln!(
        out,
        "Demande {urgency}, envoyée le {}",
        when(request.submitted_at, zone)
    );
    let _ = writeln!(out, "Réponse le {}", when(request.answered_at, zone));
    let _ = writeln!(out);
    let _ = writeln!(out, "QUESTION\n{}", c.clinical_question);
    if let Some(ctx) = &c.context {
        let _ = writeln!(out, "\nCONTEXTE");
        for (label, value) in [
            ("Antécédents", &ctx.medical_history),
            ("Ancienneté de la lésion", &ctx.lesion_duration),
            ("Évolution", &ctx.evolution_details),
            ("Symptômes", &ctx.symptoms),
            ("Traitements essayés", &ctx.treatments_tried),
        ] {
            if !value.is_empty() {
                let _ = writeln!(out, "{label} : {value}");
            }
        }
        if let Some(site) = ctx.body_site.as_ref().filter(|s| !s.description.is_empty()) {
            let _ = writeln!(out, "Localisation : {}", site.description);
        }
    }
    let _ = writeln!(out, "\nIMAGES EXAMINÉES ({})", images.len());
    for image in images {
        let _ = writeln!(
            out,
            "- {} {} {}",
            image.kind, image.caption, image.sha256_hex
        );
    }
    if let Some(answer) = &request.answer {
        let _ = writeln!(out, "\nAVIS DU SPÉCIALISTE");
        let _ = writeln!(out, "Impression : {}", answer.impression);
        let _ = writeln!(
            out,
            "Conduite à tenir : {}",
            recommendation(answer.recommendation, answer.monitor_interval_months)
        );
        if !answer.recommendation_details.is_empty() {
            let _ = writeln!(out, "Précisions : {}", answer.recommendation_details);
        }
        if !answer.free_text.is_empty() {
            let _ = writeln!(out, "\n{}", answer.free_text);
        }
    }
    out
}
