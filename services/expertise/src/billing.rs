//! Which tele-expertise acts are billable, and for how much (pure).
//!
//! The rules are data read from the database (`billing_tariffs`, `billing_conditions`, seeded by
//! a migration, each row with its validity dates): tariffs per act code, and conditions per act
//! code: `annual_limit` (billable acts per patient, per practitioner, per calendar year),
//! `answer_deadline_days` (a request answered later is not billable, urgent or not) and `same_site`
//! (no billing between practitioners of one site). A rule applies to an act when the act's date
//! is within its validity. Acts are evaluated in chronological order, so the annual limit marks
//! the fifth act of a year, not an arbitrary one.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp, civil::Date};

use crate::store::{ConditionRow, TariffRow};

/// Act codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActCode {
    /// The requesting doctor's act.
    Rqd,
    /// The expert's act.
    Te2,
}

impl ActCode {
    /// The code as the rules data writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ActCode::Rqd => "RQD",
            ActCode::Te2 => "TE2",
        }
    }

    /// From the rules data.
    pub fn parse(text: &str) -> Option<ActCode> {
        match text {
            "RQD" => Some(ActCode::Rqd),
            "TE2" => Some(ActCode::Te2),
            _ => None,
        }
    }
}

/// Why an act is not billable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBillable {
    AnnualLimitReached,
    SameSite,
    AnswerDeadlineMissed,
    NoTariff,
}

/// An act to evaluate: one answered request gives an RQD and a TE2.
#[derive(Debug, Clone)]
pub struct ActInput {
    pub request_id: String,
    pub code: ActCode,
    pub practitioner: String,
    /// The practitioner's profession when acting (`doctor`, `nurse`): a requesting nurse bills
    /// the same RQD act as a doctor since 23 March 2023 (`requester_rights`).
    pub profession: &'static str,
    pub practitioner_org: String,
    /// The org of the other practitioner (expert for RQD, requester for TE2).
    pub counterpart_org: String,
    /// The org that registered the patient (pseudonyms are unique within it).
    pub patient_org: String,
    pub pseudonym: String,
    /// Date of the act in the report's time zone.
    pub date: Date,
    pub submitted_at: Timestamp,
    pub answered_at: Timestamp,
}

/// An evaluated act.
#[derive(Debug, Clone)]
pub struct Act {
    pub input: ActInput,
    /// `None` when billable.
    pub not_billable: Option<NotBillable>,
    pub details: String,
    pub amount_cents: i64,
    pub tariff_id: Option<String>,
}

fn valid_on(from: &str, until: Option<&str>, date: &str) -> bool {
    from <= date && until.is_none_or(|u| date <= u)
}

/// The billing rules in force, as read from the database.
#[derive(Debug, Clone, Default)]
pub struct BillingRules {
    pub tariffs: Vec<TariffRow>,
    pub conditions: Vec<ConditionRow>,
}

impl BillingRules {
    /// The tariff of `code` on `date`.
    pub fn tariff(&self, code: ActCode, date: &str) -> Option<&TariffRow> {
        self.tariffs
            .iter()
            .filter(|t| t.act_code == code.as_str())
            .filter(|t| valid_on(&t.valid_from, t.valid_until.as_deref(), date))
            .max_by(|a, b| a.valid_from.cmp(&b.valid_from))
    }

    /// The value of condition `kind` for `code` on `date`, if one is in force.
    pub fn condition(&self, code: ActCode, kind: &str, date: &str) -> Option<i64> {
        self.conditions
            .iter()
            .filter(|c| c.act_code == code.as_str() && c.kind == kind)
            .filter(|c| valid_on(&c.valid_from, c.valid_until.as_deref(), date))
            .max_by(|a, b| a.valid_from.cmp(&b.valid_from))
            .map(|c| c.value)
    }

    /// Tariffs in force on at least one day of `[first, last]`.
    pub fn tariffs_between(&self, first: &str, last: &str) -> Vec<&TariffRow> {
        self.tariffs
            .iter()
            .filter(|t| {
                t.valid_from.as_str() <= last && t.valid_until.as_deref().is_none_or(|u| u >= first)
            })
            .collect()
    }
}

/// Evaluates `acts` (in any order) against `rules`; `same_site` tells whether two orgs work at
/// one site. Returns them in chronological order (answer time, request id, code).
pub fn evaluate(
    mut acts: Vec<ActInput>,
    rules: &BillingRules,
    same_site: impl Fn(&str, &str) -> bool,
) -> Vec<Act> {
    acts.sort_by(|a, b| {
        (a.answered_at, &a.request_id, a.code).cmp(&(b.answered_at, &b.request_id, b.code))
    });
    // Billable acts so far per (code, practitioner, patient org, pseudonym, year).
    let mut counted: HashMap<(ActCode, String, String, String, i16), i64> = HashMap::new();
    acts.into_iter()
        .map(|input| {
            let date = input.date.to_string();
            let code = input.code;
            let mut verdict = None;
            let tariff = rules.tariff(code, &date);
            if tariff.is_none() {
                verdict = Some((
                    NotBillable::NoTariff,
                    format!("no {} tariff is in force on {date}", code.as_str()),
                ));
            }
            if verdict.is_none()
                && rules.condition(code, "same_site", &date).is_some_and(|v| v != 0)
                && same_site(&input.practitioner_org, &input.counterpart_org)
            {
                verdict = Some((
                    NotBillable::SameSite,
                    format!(
                        "requester ({}) and expert ({}) work at the same site",
                        if code == ActCode::Rqd { &input.practitioner_org } else { &input.counterpart_org },
                        if code == ActCode::Rqd { &input.counterpart_org } else { &input.practitioner_org },
                    ),
                ));
            }
            // Every request, urgent or not: an urgent request has a shorter due date, never an
            // exemption from the deadline of the act.
            if verdict.is_none()
                && let Some(days) = rules.condition(code, "answer_deadline_days", &date)
                && input.answered_at.duration_since(input.submitted_at)
                    > SignedDuration::from_hours(days * 24)
            {
                verdict = Some((
                    NotBillable::AnswerDeadlineMissed,
                    format!("answered after the {days}-day deadline"),
                ));
            }
            let key = (
                code,
                input.practitioner.clone(),
                input.patient_org.clone(),
                input.pseudonym.clone(),
                input.date.year(),
            );
            if verdict.is_none()
                && let Some(limit) = rules.condition(code, "annual_limit", &date)
            {
                let so_far = counted.get(&key).copied().unwrap_or(0);
                if so_far >= limit {
                    verdict = Some((
                        NotBillable::AnnualLimitReached,
                        format!(
                            "{} {} act for this patient and practitioner in {} (at most {limit} billable)",
                            ordinal(so_far + 1),
                            code.as_str(),
                            input.date.year()
                        ),
                    ));
                }
            }
            match verdict {
                Some((reason, details)) => Act {
                    input,
                    not_billable: Some(reason),
                    details,
                    amount_cents: 0,
                    tariff_id: None,
                },
                None => {
                    *counted.entry(key).or_insert(0) += 1;
                    let tariff = tariff.expect("checked above: a missing tariff is a verdict");
                    Act {
                        input,
                        not_billable: None,
                        details: String::new(),
                        amount_cents: tariff.amount_cents,
                        tariff_id: Some(tariff.tariff_id.clone()),
                    }
                }
            }
        })
        .collect()
}

fn ordinal(n: i64) -> String {
    match n {
        1 => "1st".into(),
        2 => "2nd".into(),
        3 => "3rd".into(),
        n => format!("{n}th"),
    }
}

/// Median (mean of the two middle values for an even count) and 90th percentile (nearest rank)
/// of `values`, or `None` when empty.
pub fn median_and_p90(mut values: Vec<SignedDuration>) -> Option<(SignedDuration, SignedDuration)> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        let sum = values[n / 2 - 1].as_micros() + values[n / 2].as_micros();
        SignedDuration::from_micros(i64::try_from(sum / 2).unwrap_or(i64::MAX))
    };
    // Nearest rank: the smallest value with at least 90 % of the values at or below it.
    let rank = (n * 9).div_ceil(10).max(1);
    Some((median, values[rank - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn rules() -> BillingRules {
        let tariff = |id: &str, code: &str, cents, from: &str, until: Option<&str>| TariffRow {
            tariff_id: id.into(),
            act_code: code.into(),
            amount_cents: cents,
            valid_from: from.into(),
            valid_until: until.map(Into::into),
        };
        let condition = |code: &str, kind: &str, value| ConditionRow {
            rule_id: format!("{code}-{kind}"),
            act_code: code.into(),
            kind: kind.into(),
            value,
            valid_from: "2022-04-01".into(),
            valid_until: None,
        };
        BillingRules {
            tariffs: vec![
                tariff("RQD", "RQD", 1000, "2022-04-01", None),
                tariff("TE2-20", "TE2", 2000, "2022-04-01", Some("2025-12-31")),
                tariff("TE2-23", "TE2", 2300, "2026-01-01", None),
            ],
            conditions: vec![
                condition("TE2", "annual_limit", 4),
                condition("TE2", "answer_deadline_days", 7),
                condition("TE2", "same_site", 1),
                condition("RQD", "same_site", 1),
            ],
        }
    }

    fn act(id: &str, code: ActCode, day: Date, turnaround_hours: i64) -> ActInput {
        let answered = day
            .at(12, 0, 0, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .expect("zoned")
            .timestamp();
        ActInput {
            request_id: id.into(),
            code,
            practitioner: "spec".into(),
            profession: "doctor",
            practitioner_org: "chu".into(),
            counterpart_org: "cds".into(),
            patient_org: "cds".into(),
            pseudonym: "p1".into(),
            date: day,
            submitted_at: answered - SignedDuration::from_hours(turnaround_hours),
            answered_at: answered,
        }
    }

    #[test]
    fn the_tariff_follows_the_act_date_and_the_fifth_act_of_a_year_is_not_billable() {
        let days = [
            date(2025, 2, 1),
            date(2025, 5, 1),
            date(2025, 8, 1),
            date(2025, 11, 1),
            date(2025, 12, 1),
            date(2026, 1, 5),
        ];
        let acts = days
            .iter()
            .enumerate()
            .map(|(i, d)| act(&format!("r{i}"), ActCode::Te2, *d, 24))
            .collect();
        let result = evaluate(acts, &rules(), |a, b| a == b);
        let amounts: Vec<i64> = result.iter().map(|a| a.amount_cents).collect();
        assert_eq!(amounts, [2000, 2000, 2000, 2000, 0, 2300], "{result:?}");
        assert_eq!(
            result[4].not_billable,
            Some(NotBillable::AnnualLimitReached)
        );
        assert!(result[4].details.contains("5th"), "{}", result[4].details);
    }

    #[test]
    fn same_site_late_answers_and_missing_tariffs_are_not_billable() {
        let mut same = act("same", ActCode::Te2, date(2025, 6, 1), 1);
        same.counterpart_org = "chu".into();
        let late = act("late", ActCode::Te2, date(2025, 6, 2), 8 * 24);
        let in_time = act("in-time", ActCode::Te2, date(2025, 6, 3), 7 * 24);
        let rqd_late = act("rqd", ActCode::Rqd, date(2025, 6, 2), 8 * 24);
        let old = act("old", ActCode::Rqd, date(2021, 6, 2), 1);
        let result = evaluate(
            vec![same, late, in_time, rqd_late, old],
            &rules(),
            |a, b| a == b,
        );
        let verdict = |id: &str| {
            result
                .iter()
                .find(|a| a.input.request_id == id)
                .map(|a| a.not_billable)
                .expect("act")
        };
        assert_eq!(verdict("same"), Some(NotBillable::SameSite));
        assert_eq!(verdict("late"), Some(NotBillable::AnswerDeadlineMissed));
        assert_eq!(
            verdict("in-time"),
            None,
            "7 days exactly is within the deadline"
        );
        assert_eq!(verdict("rqd"), None, "the deadline rule is the expert's");
        assert_eq!(verdict("old"), Some(NotBillable::NoTariff));
    }

    #[test]
    fn median_and_nearest_rank_p90() {
        let hours = |h: &[i64]| h.iter().map(|h| SignedDuration::from_hours(*h)).collect();
        assert_eq!(median_and_p90(Vec::new()), None);
        let (median, p90) = median_and_p90(hours(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).expect("some");
        assert_eq!(median, SignedDuration::from_mins(330));
        assert_eq!(p90, SignedDuration::from_hours(9));
        let (median, p90) = median_and_p90(hours(&[5])).expect("some");
        assert_eq!(
            (median, p90),
            (SignedDuration::from_hours(5), SignedDuration::from_hours(5))
        );
    }
}
