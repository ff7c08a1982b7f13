//! The monthly activity report of an org and the answer report of a request.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};
use telehealth_kit::{
    audit::Outcome,
    identity::{Caller, Role},
};

use super::{Expertise, on_requester_side, person, visible};
use crate::model::RequestId;
use crate::{
    billing::{self, Act, ActCode, ActInput, BillingRules},
    error::ExpertiseError,
    model::{Request, Status},
    store::{self, TariffRow},
};

/// Figures of one side (requester or expert) of an org for a month.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub submitted: i32,
    pub by_status: Vec<(Status, i32)>,
    pub answered: i32,
    pub median_turnaround: Option<SignedDuration>,
    pub p90_turnaround: Option<SignedDuration>,
    pub overdue: i32,
}

/// Totals of one practitioner for one act code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub practitioner: String,
    pub org_id: String,
    pub code: Option<ActCode>,
    pub billable: i32,
    pub not_billable: i32,
    pub amount_cents: i64,
}

/// The monthly activity report.
#[derive(Debug, Clone)]
pub struct ActivityReport {
    pub org_id: String,
    pub month: String,
    pub time_zone: String,
    pub generated_at: Timestamp,
    pub as_requester: Section,
    pub as_expert: Section,
    pub acts: Vec<Act>,
    pub totals: Vec<Totals>,
    pub tariffs: Vec<TariffRow>,
}

impl Expertise {
    /// The activity report of `org` (empty: the caller's) for the month starting on
    /// `month_first_day` in `zone`.
    pub async fn activity_report(
        &self,
        caller: &Caller,
        org: &str,
        month_first_day: Date,
        zone: &TimeZone,
    ) -> Result<ActivityReport, ExpertiseError> {
        let identity = person(caller)?;
        let org = if org.is_empty() {
            identity.org.clone()
        } else {
            org.to_owned()
        };
        let month = month_first_day.strftime("%Y-%m").to_string();
        let record = format!("{org}/{month}");
        // An administrator or coordinator is one organisation's: its report only.
        let allowed = (identity.has_role(Role::Admin) || identity.has_role(Role::Coordinator))
            && identity.org == org;
        if !allowed {
            let error = ExpertiseError::PermissionDenied(
                "the activity report is for the coordinators and administrators of the organisation",
            );
            self.audit_record(
                caller,
                "GetActivityReport",
                "activity_report",
                &record,
                Outcome::of(&error),
            )
            .await;
            return Err(error);
        }
        let result = self.compute_report(&org, month_first_day, zone).await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit_record(
            caller,
            "GetActivityReport",
            "activity_report",
            &record,
            outcome,
        )
        .await;
        result
    }

    async fn compute_report(
        &self,
        org: &str,
        first_day: Date,
        zone: &TimeZone,
    ) -> Result<ActivityReport, ExpertiseError> {
        let now = self.now();
        let start_of = |day: Date| -> Result<Timestamp, ExpertiseError> {
            day.to_zoned_datetime(zone.clone())
                .map(|z| z.timestamp())
                .map_err(|e| ExpertiseError::invalid("month", e.to_string()))
        };
        let month_start = start_of(first_day)?;
        if month_start > now {
            return Err(ExpertiseError::invalid(
                "month",
                "must not be in the future",
            ));
        }
        let next_month = first_day
            .checked_add(jiff::Span::new().months(1))
            .map_err(|e| ExpertiseError::invalid("month", e.to_string()))?;
        let month_end = start_of(next_month)?;
        let year_start = start_of(first_day.first_of_year())?;
        let cutoff = month_end.min(now);

        let mut conn = self.base.db().pool().acquire().await?;
        let requests =
            store::report_requests(&mut conn, org, year_start, month_start, month_end).await?;
        let rules = BillingRules {
            tariffs: store::tariffs(&mut conn).await?,
            conditions: store::conditions(&mut conn).await?,
        };
        drop(conn);

        let in_month =
            |at: Option<Timestamp>| at.is_some_and(|t| t >= month_start && t < month_end);
        let section = |side: &dyn Fn(&Request) -> bool| {
            let ours: Vec<&Request> = requests.iter().filter(|r| side(r)).collect();
            let submitted: Vec<&&Request> =
                ours.iter().filter(|r| in_month(r.submitted_at)).collect();
            let mut by_status: BTreeMap<i32, i32> = BTreeMap::new();
            for r in &submitted {
                *by_status.entry(r.status.number()).or_insert(0) += 1;
            }
            let answered: Vec<&&Request> =
                ours.iter().filter(|r| in_month(r.answered_at)).collect();
            let turnarounds = answered
                .iter()
                .filter_map(|r| Some(r.answered_at?.duration_since(r.submitted_at?)))
                .collect();
            let stats = billing::median_and_p90(turnarounds);
            let late_answers = answered.iter().filter(|r| r.answered_late()).count();
            let open_and_late = ours
                .iter()
                .filter(|r| {
                    let left = r.answered_at.or(r.declined_at).or(r.withdrawn_at);
                    r.submitted_at.is_some_and(|s| s < cutoff)
                        && r.due_at.is_some_and(|d| d < cutoff)
                        && left.is_none_or(|l| l >= cutoff)
                })
                .count();
            Section {
                submitted: count(submitted.len()),
                by_status: by_status
                    .into_iter()
                    .filter_map(|(n, c)| Some((Status::from_number(n)?, c)))
                    .collect(),
                answered: count(answered.len()),
                median_turnaround: stats.map(|s| s.0),
                p90_turnaround: stats.map(|s| s.1),
                overdue: count(late_answers + open_and_late),
            }
        };
        let as_requester = section(&|r: &Request| r.requester_org == org);
        let as_expert = section(&|r: &Request| r.content.target_org_id == org);

        // Every act of the year so far (the annual limit needs them), then the month's.
        let mut inputs = Vec::new();
        for r in &requests {
            let (Some(answered_at), Some(submitted_at), Some(expert)) =
                (r.answered_at, r.submitted_at, r.claimed_by.as_ref())
            else {
                continue;
            };
            if answered_at < year_start || answered_at >= month_end {
                continue;
            }
            let date = answered_at.to_zoned_datetime(zone.clone()).date();
            let expert_org = if expert.org_id.is_empty() {
                r.content.target_org_id.clone()
            } else {
                expert.org_id.clone()
            };
            let pseudonym = r
                .content
                .patient
                .as_ref()
                .map(|p| p.pseudonym.clone())
                .unwrap_or_default();
            let base = ActInput {
                request_id: r.id.clone(),
                code: ActCode::Rqd,
                practitioner: r.requester.subject.clone(),
                profession: super::recorded_profession(&r.requester),
                practitioner_org: r.requester_org.clone(),
                counterpart_org: expert_org.clone(),
                patient_org: r.requester_org.clone(),
                pseudonym,
                date,
                submitted_at,
                answered_at,
            };
            inputs.push(ActInput {
                code: ActCode::Te2,
                practitioner: expert.subject.clone(),
                profession: "doctor",
                practitioner_org: expert_org,
                counterpart_org: r.requester_org.clone(),
                ..base.clone()
            });
            inputs.push(base);
        }
        let rules_same_site = self.rules.clone();
        let mut acts: Vec<Act> =
            billing::evaluate(inputs, &rules, |a, b| rules_same_site.same_site(a, b))
                .into_iter()
                .filter(|a| a.input.answered_at >= month_start && a.input.practitioner_org == org)
                .collect();
        acts.sort_by(|a, b| {
            (
                &a.input.practitioner,
                a.input.date,
                &a.input.request_id,
                a.input.code,
            )
                .cmp(&(
                    &b.input.practitioner,
                    b.input.date,
                    &b.input.request_id,
                    b.input.code,
                ))
        });
        let mut totals: BTreeMap<(String, ActCode), Totals> = BTreeMap::new();
        for act in &acts {
            let entry = totals
                .entry((act.input.practitioner.clone(), act.input.code))
                .or_insert_with(|| Totals {
                    practitioner: act.input.practitioner.clone(),
                    org_id: act.input.practitioner_org.clone(),
                    code: Some(act.input.code),
                    ..Totals::default()
                });
            if act.not_billable.is_none() {
                entry.billable += 1;
                entry.amount_cents += act.amount_cents;
            } else {
                entry.not_billable += 1;
            }
        }
        let last_day = next_month.yesterday().unwrap_or(first_day).to_string();
        let tariffs = rules
            .tariffs_between(&first_day.to_string(), &last_day)
            .into_iter()
            .cloned()
            .collect();
        Ok(ActivityReport {
            org_id: org.to_owned(),
            month: first_day.strftime("%Y-%m").to_string(),
            time_zone: zone.iana_name().unwrap_or("UTC").to_owned(),
            generated_at: now,
            as_requester,
            as_expert,
            acts,
            totals: totals.into_values().collect(),
            tariffs,
        })
    }

    /// The answered request behind an answer report, for the doctors of the requester's org and
    /// the answering specialist.
    pub async fn answer_report(
        &self,
        caller: &Caller,
        id: &RequestId,
    ) -> Result<Request, ExpertiseError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            let request = visible(caller, store::request(&mut conn, id).await?)?;
            drop(conn);
            if !on_requester_side(identity, &request)
                && request.claimer() != Some(identity.subject.as_str())
            {
                return Err(ExpertiseError::PermissionDenied(
                    "the answer report is for the requester's centre and the answering specialist",
                ));
            }
            if !matches!(request.status, Status::Answered | Status::Closed) {
                return Err(ExpertiseError::FailedPrecondition(format!(
                    "the request is {}, not answered",
                    request.status.as_str()
                )));
            }
            Ok(request)
        }
        .await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "GetAnswerReport", id, outcome).await;
        result
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
