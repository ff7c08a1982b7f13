//! The query of a FHIR search: its parameters, checked once (unknown parameters are refused,
//! not ignored, so that a client never mistakes an unfiltered answer for a filtered one), the
//! page size and cursor, and the values FHIR writes in its own way (references, tokens, dates).

use jiff::{Timestamp, civil::Date, tz::TimeZone};

use super::outcome::FhirError;

/// Longest query string accepted.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Page size when `_count` is not given, and the largest accepted.
pub const DEFAULT_COUNT: i32 = 50;
pub const MAX_COUNT: i32 = 100;

/// The parameters of one search, taken one by one by the handler; [`Query::finish`] refuses
/// any left.
#[derive(Debug)]
pub struct Query {
    params: Vec<(String, String)>,
    /// Results per page.
    pub count: i32,
    /// Where the page starts (from a `next` link), empty for the first.
    pub cursor: String,
}

impl Query {
    pub fn parse(raw: &str) -> Result<Query, FhirError> {
        if raw.len() > MAX_QUERY_BYTES {
            return Err(FhirError::Invalid(format!(
                "La requête dépasse {MAX_QUERY_BYTES} octets."
            )));
        }
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut count = DEFAULT_COUNT;
        let mut cursor = String::new();
        let mut kept = Vec::with_capacity(params.len());
        for (name, value) in params.drain(..) {
            match name.as_str() {
                "_count" => {
                    count = value
                        .parse::<i32>()
                        .ok()
                        .filter(|n| (1..=MAX_COUNT).contains(n))
                        .ok_or_else(|| {
                            FhirError::Invalid(format!(
                                "_count doit être un entier de 1 à {MAX_COUNT}."
                            ))
                        })?;
                }
                "_cursor" => cursor = value,
                // JSON is the only format: asking for it is allowed, anything else is not.
                "_format" if is_json(&value) => {}
                "_format" => {
                    return Err(FhirError::NotSupported(
                        "Seul le format JSON est proposé (_format=json).".into(),
                    ));
                }
                _ => kept.push((name, value)),
            }
        }
        Ok(Query {
            params: kept,
            count,
            cursor,
        })
    }

    /// Every value of `name` (a parameter may repeat, e.g. two `date` bounds).
    pub fn take_all(&mut self, name: &str) -> Vec<String> {
        let (taken, kept) = std::mem::take(&mut self.params)
            .into_iter()
            .partition(|(n, _)| n == name);
        self.params = kept;
        taken.into_iter().map(|(_, v)| v).collect()
    }

    /// The value of `name`, given at most once.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, FhirError> {
        let mut values = self.take_all(name);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(FhirError::Invalid(format!(
                "Le paramètre {name} ne peut être donné qu'une fois."
            ))),
        }
    }

    /// Refuses the parameters no handler took.
    pub fn finish(self, kind: &str) -> Result<(), FhirError> {
        match self.params.first() {
            None => Ok(()),
            Some((name, _)) => Err(FhirError::NotSupported(format!(
                "Le paramètre de recherche « {name} » n'est pas proposé pour {kind} (voir /fhir/metadata)."
            ))),
        }
    }
}

fn is_json(format: &str) -> bool {
    matches!(
        format,
        "json" | "application/json" | "application/fhir+json"
    )
}

/// The id of a reference parameter (`Patient/p1` or `p1`) to a resource of `kind`.
pub fn reference_id(value: &str, kind: &str, parameter: &str) -> Result<String, FhirError> {
    let id = match value.split_once('/') {
        Some((k, id)) if k == kind => id,
        Some(_) => {
            return Err(FhirError::Invalid(format!(
                "{parameter} doit désigner une ressource {kind} ({kind}/id)."
            )));
        }
        None => value,
    };
    checked_id(id)
}

/// A resource id as the suite writes them; anything else is refused before any call.
pub fn checked_id(id: &str) -> Result<String, FhirError> {
    let valid = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'@'));
    if valid {
        Ok(id.to_owned())
    } else {
        Err(FhirError::Invalid(
            "Identifiant de ressource invalide.".into(),
        ))
    }
}

/// A token parameter: `system|code`, `|code` or `code` → (system, code).
pub fn token(value: &str) -> (Option<&str>, &str) {
    match value.split_once('|') {
        Some((system, code)) => ((!system.is_empty()).then_some(system), code),
        None => (None, value),
    }
}

/// The bounds given by `date` parameters (`ge`, `gt`, `le`, `lt`, `eq` or no prefix): a day
/// (`YYYY-MM-DD`, a day in Europe/Paris) or an instant with its offset.
pub fn date_bounds(values: &[String]) -> Result<(Option<Timestamp>, Option<Timestamp>), FhirError> {
    let (mut start, mut end) = (None, None);
    for value in values {
        let (prefix, rest) = match value.get(..2) {
            Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
            _ => ("eq", value.as_str()),
        };
        let (first, after) = instant_range(rest)?;
        match prefix {
            "ge" => start = Some(first),
            "gt" => start = Some(after),
            "le" => end = Some(after),
            "lt" => end = Some(first),
            _ => {
                start = Some(first);
                end = Some(after);
            }
        }
    }
    Ok((start, end))
}

/// The instants a date value covers: a whole Paris day, or one instant.
fn instant_range(value: &str) -> Result<(Timestamp, Timestamp), FhirError> {
    let invalid = || {
        FhirError::Invalid(format!(
            "Date invalide « {value} » : AAAA-MM-JJ ou un instant avec son décalage (2026-12-03T09:00:00+01:00)."
        ))
    };
    if let Ok(at) = value.parse::<Timestamp>() {
        return Ok((at, at));
    }
    let day: Date = value.parse().map_err(|_| invalid())?;
    let paris = TimeZone::get("Europe/Paris").map_err(|_| invalid())?;
    let midnight = |d: Date| paris.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()));
    let start = midnight(day).map_err(|_| invalid())?;
    let next = day.tomorrow().and_then(midnight).map_err(|_| invalid())?;
    Ok((start, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_are_refused_and_counts_bounded() {
        let mut query = Query::parse("name=Dupont&birthdate=1950-01-02&_count=20").expect("query");
        assert_eq!(query.count, 20);
        assert_eq!(query.take("name").expect("once").as_deref(), Some("Dupont"));
        assert!(query.finish("Patient").is_err(), "birthdate not taken");
        assert!(Query::parse("_count=0").is_err());
        assert!(Query::parse("_count=101").is_err());
        assert!(Query::parse("_format=xml").is_err());
        assert!(Query::parse(&"a=b&".repeat(2000)).is_err());
        let mut twice = Query::parse("name=a&name=b").expect("query");
        assert!(twice.take("name").is_err());
    }

    #[test]
    fn references_tokens_and_days_in_paris() {
        assert_eq!(
            reference_id("Patient/p1", "Patient", "patient").expect("id"),
            "p1"
        );
        assert_eq!(reference_id("p1", "Patient", "patient").expect("id"), "p1");
        assert!(reference_id("Practitioner/x", "Patient", "patient").is_err());
        assert!(checked_id("../etc/passwd").is_err());
        assert!(checked_id("").is_err());
        assert_eq!(
            token("http://loinc.org|72287-6"),
            (Some("http://loinc.org"), "72287-6")
        );
        assert_eq!(token("72287-6"), (None, "72287-6"));

        // A winter day in Paris starts at 23:00 UTC the day before; the bounds follow prefixes.
        let (start, end) =
            date_bounds(&["ge2026-12-03".into(), "lt2026-12-05".into()]).expect("bounds");
        assert_eq!(
            start.map(|t| t.to_string()).as_deref(),
            Some("2026-12-02T23:00:00Z")
        );
        assert_eq!(
            end.map(|t| t.to_string()).as_deref(),
            Some("2026-12-04T23:00:00Z")
        );
        // The day the clocks go back lasts 25 hours.
        let (start, end) = date_bounds(&["2026-10-25".into()]).expect("bounds");
        let hours = (end.expect("end").as_second() - start.expect("start").as_second()) / 3600;
        assert_eq!(hours, 25);
        assert!(date_bounds(&["ge2026-13-01".into()]).is_err());
        let (start, _) = date_bounds(&["gt2026-12-03T09:00:00+01:00".into()]).expect("instant");
        assert_eq!(
            start.map(|t| t.to_string()).as_deref(),
            Some("2026-12-03T08:00:00Z")
        );
    }
}
