//! French wording of the report: statuses, dates in Europe/Paris. Kept apart from the layout so
//! that a wording change is one place to review.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::report::{IdentityStatus, Sex, Urgency};

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// The time zone of every date in the report: French readers expect the legal time in
/// mainland France, whatever the server's clock says.
pub(crate) fn paris() -> TimeZone {
    // The tz database is bundled in the binary (jiff's `tzdb-bundle-always`), so the lookup
    // cannot depend on the host; UTC is a readable fallback should the bundle ever lack it.
    TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC)
}

/// "3 décembre 2026" ("1er" for the first day, as French typography wants).
pub(crate) fn date(date: Date) -> String {
    let day = match date.day() {
        1 => "1er".to_owned(),
        day => day.to_string(),
    };
    let month = MONTHS
        .get(usize::try_from(date.month() - 1).unwrap_or(0))
        .copied()
        .unwrap_or("?");
    format!("{day} {month} {}", date.year())
}

/// "3 décembre 2026 à 14:05", in Europe/Paris.
pub(crate) fn date_time(at: Timestamp) -> String {
    let zoned = at.to_zoned_datetime(paris());
    format!(
        "{} à {:02}:{:02}",
        date(zoned.date()),
        zoned.hour(),
        zoned.minute()
    )
}

/// "03/12/1957", the usual French short form for a birth date.
pub(crate) fn short_date(date: Date) -> String {
    format!("{:02}/{:02}/{:04}", date.day(), date.month(), date.year())
}

pub(crate) fn identity_status(status: IdentityStatus) -> &'static str {
    match status {
        IdentityStatus::Provisional => "identité provisoire",
        IdentityStatus::Recovered => "identité récupérée",
        IdentityStatus::Validated => "identité validée",
        IdentityStatus::Qualified => "identité qualifiée",
    }
}

pub(crate) fn sex(sex: Sex) -> &'static str {
    match sex {
        Sex::Female => "féminin",
        Sex::Male => "masculin",
        Sex::Indeterminate => "indéterminé",
    }
}

pub(crate) fn urgency(urgency: Urgency) -> &'static str {
    match urgency {
        Urgency::Routine => "non urgent",
        Urgency::Soon => "à programmer dans les prochains jours",
        Urgency::Urgent => "urgent : prise en charge le jour même",
    }
}

/// The nature of an INS from its OID: the matricule is a NIR or a NIA (a temporary number),
/// and identity-vigilance rules want the nature printed with it.
pub(crate) fn ins_nature(oid: &str) -> &'static str {
    match oid {
        "1.2.250.1.213.1.4.8" => "NIR",
        "1.2.250.1.213.1.4.9" => "NIA",
        "1.2.250.1.213.1.4.10" => "NIR de test",
        "1.2.250.1.213.1.4.11" => "NIA de test",
        _ => "nature inconnue",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_the_french_way_in_paris_time() {
        let cases = [
            (
                "2026-12-03T13:05:00Z",
                "3 décembre 2026 à 14:05",
                "winter, UTC+1",
            ),
            (
                "2026-07-01T22:30:00Z",
                "2 juillet 2026 à 00:30",
                "summer, UTC+2, next day",
            ),
            (
                "2026-03-01T08:00:00Z",
                "1er mars 2026 à 09:00",
                "first of the month",
            ),
        ];
        for (utc, expected, why) in cases {
            let at: Timestamp = utc.parse().expect("a valid instant");
            assert_eq!(date_time(at), expected, "{why}");
        }
    }

    #[test]
    fn birth_dates_are_day_month_year() {
        assert_eq!(short_date(jiff::civil::date(1957, 2, 9)), "09/02/1957");
    }
}
