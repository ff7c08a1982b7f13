//! The tele-expertise section of the configuration (`[expertise_rules]`,
//! `TELEHEALTH_EXPERTISE_RULES__…`): the hospitals and specialties requests can be addressed to,
//! answer deadlines by urgency, automatic closure and the watch and sweep rhythms. Billing rules
//! (tariffs, ceilings, deadlines that condition billing) are data in the service's database,
//! with validity dates, not settings.

use serde::{Deserialize, Serialize};

/// Rules of the tele-expertise service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExpertiseRules {
    /// Answer due this long after submission for a routine request, in hours, unless the
    /// target says otherwise. Default 168 (7 days).
    pub routine_due_hours: u32,
    /// …for an urgent request, in hours. Default 48.
    pub urgent_due_hours: u32,
    /// An ANSWERED request is closed by the service this long after the answer if the requester
    /// has not closed it, in hours. Default 720 (30 days).
    pub auto_close_after_hours: u32,
    /// How often each replica looks for requests that became overdue or are due for automatic
    /// closure, in seconds. Default 60. (Replicas may all sweep: each change is applied once.)
    pub sweep_interval_seconds: u64,
    /// Heartbeat of an idle `WatchRequests` stream, in seconds. Default 30.
    pub watch_heartbeat_seconds: u64,
    /// Groups of org ids that work at one site (e.g. a centre inside the hospital's building):
    /// acts between them are not billable, like acts within one org. Default none.
    pub shared_sites: Vec<Vec<String>>,
    /// Hospitals and specialties requests can be addressed to (`ListTargets`). Default: the
    /// dermatology departments of the CHU de Limoges and the CH de Guéret, and vascular
    /// medicine at the CHU de Limoges.
    pub targets: Vec<ExpertiseTarget>,
}

/// One hospital and specialty that requests can be addressed to (`[[expertise_rules.targets]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpertiseTarget {
    /// Org id of the hospital, as in its specialists' JWT `org` claim (1-128 characters).
    pub org_id: String,
    /// Display name of the hospital, e.g. "CHU de Limoges".
    pub org_display_name: String,
    /// Specialty code, as in the specialists' JWT `specialty` claim, e.g. `dermatology`.
    pub specialty: String,
    /// Display name of the specialty, e.g. "Dermatologie".
    pub specialty_display_name: String,
    /// Answer delay of routine requests to this target, in hours. Default: `routine_due_hours`.
    #[serde(default)]
    pub routine_due_hours: Option<u32>,
    /// Answer delay of urgent requests to this target, in hours. Default: `urgent_due_hours`.
    #[serde(default)]
    pub urgent_due_hours: Option<u32>,
    /// Completed image attachments a request needs before it can be submitted. Default 0.
    #[serde(default)]
    pub minimum_images: u32,
    /// Only centres in an active partnership with this hospital (the directory's
    /// `ProposePartnership` / `AcceptPartnership`) may submit requests to this target; others are
    /// refused with what to do. Default false: the target is open to every centre of the suite.
    #[serde(default)]
    pub partners_only: bool,
}

impl ExpertiseTarget {
    fn sample(
        org_id: &str,
        org_name: &str,
        specialty: &str,
        specialty_name: &str,
        minimum_images: u32,
    ) -> Self {
        ExpertiseTarget {
            org_id: org_id.to_owned(),
            org_display_name: org_name.to_owned(),
            specialty: specialty.to_owned(),
            specialty_display_name: specialty_name.to_owned(),
            routine_due_hours: None,
            urgent_due_hours: None,
            minimum_images,
            partners_only: false,
        }
    }
}

impl Default for ExpertiseRules {
    fn default() -> Self {
        ExpertiseRules {
            routine_due_hours: 7 * 24,
            urgent_due_hours: 48,
            auto_close_after_hours: 30 * 24,
            sweep_interval_seconds: 60,
            watch_heartbeat_seconds: 30,
            shared_sites: Vec::new(),
            targets: vec![
                ExpertiseTarget::sample(
                    "chu-limoges",
                    "CHU de Limoges",
                    "dermatology",
                    "Dermatologie",
                    0,
                ),
                ExpertiseTarget::sample(
                    "ch-gueret",
                    "Centre hospitalier de Guéret",
                    "dermatology",
                    "Dermatologie",
                    0,
                ),
                ExpertiseTarget::sample(
                    "chu-limoges",
                    "CHU de Limoges",
                    "vascular_medicine",
                    "Médecine vasculaire",
                    0,
                ),
                ExpertiseTarget::sample(
                    "chu-limoges",
                    "CHU de Limoges",
                    "wound_care",
                    "Plaies et cicatrisation",
                    0,
                ),
            ],
        }
    }
}

impl ExpertiseRules {
    /// Checks the bounds; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let hours = 1..=90 * 24;
        if !hours.contains(&self.routine_due_hours) || !hours.contains(&self.urgent_due_hours) {
            return Err("routine_due_hours and urgent_due_hours must be 1 to 2160".into());
        }
        if self.urgent_due_hours > self.routine_due_hours {
            return Err("urgent_due_hours must not exceed routine_due_hours".into());
        }
        if !(1..=365 * 24).contains(&self.auto_close_after_hours) {
            return Err("auto_close_after_hours must be 1 to 8760".into());
        }
        if !(1..=3600).contains(&self.sweep_interval_seconds) {
            return Err("sweep_interval_seconds must be 1 to 3600".into());
        }
        if !(1..=300).contains(&self.watch_heartbeat_seconds) {
            return Err("watch_heartbeat_seconds must be 1 to 300".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            let name_ok = |s: &str, max: usize| !s.trim().is_empty() && s.chars().count() <= max;
            if !name_ok(&target.org_id, 128)
                || !name_ok(&target.specialty, 64)
                || !name_ok(&target.org_display_name, 200)
                || !name_ok(&target.specialty_display_name, 200)
            {
                return Err(format!(
                    "targets[{i}]: org_id (1-128), specialty (1-64) and display names (1-200) are required"
                ));
            }
            for delay in [target.routine_due_hours, target.urgent_due_hours]
                .into_iter()
                .flatten()
            {
                if !hours.contains(&delay) {
                    return Err(format!("targets[{i}]: due hours must be 1 to 2160"));
                }
            }
            if target.urgent_delay_hours(self) > target.routine_delay_hours(self) {
                return Err(format!(
                    "targets[{i}]: the urgent delay must not exceed the routine delay"
                ));
            }
            if target.minimum_images > 20 {
                return Err(format!(
                    "targets[{i}]: minimum_images must be 0 to 20 (a request holds 20 images)"
                ));
            }
            if !seen.insert((target.org_id.as_str(), target.specialty.as_str())) {
                return Err(format!(
                    "targets[{i}]: {} / {} is listed twice",
                    target.org_id, target.specialty
                ));
            }
        }
        Ok(())
    }

    /// The target `org_id` / `specialty`, if configured.
    pub fn target(&self, org_id: &str, specialty: &str) -> Option<&ExpertiseTarget> {
        self.targets
            .iter()
            .find(|t| t.org_id == org_id && t.specialty == specialty)
    }

    /// True when acts between `a` and `b` happen at one site (same org, or a shared site).
    pub fn same_site(&self, a: &str, b: &str) -> bool {
        a == b
            || self
                .shared_sites
                .iter()
                .any(|site| site.iter().any(|o| o == a) && site.iter().any(|o| o == b))
    }
}

impl ExpertiseTarget {
    /// The routine answer delay of this target, in hours.
    pub fn routine_delay_hours(&self, rules: &ExpertiseRules) -> u32 {
        self.routine_due_hours.unwrap_or(rules.routine_due_hours)
    }

    /// The urgent answer delay of this target, in hours.
    pub fn urgent_delay_hours(&self, rules: &ExpertiseRules) -> u32 {
        self.urgent_due_hours.unwrap_or(rules.urgent_due_hours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_are_valid_and_offer_targets() {
        let rules = ExpertiseRules::default();
        assert_eq!(rules.validate(), Ok(()));
        assert!(rules.target("chu-limoges", "dermatology").is_some());
        assert_eq!(rules.auto_close_after_hours, 720);
    }

    #[test]
    fn a_target_listed_twice_or_with_inverted_delays_is_refused() {
        let mut rules = ExpertiseRules::default();
        rules.targets.push(rules.targets[0].clone());
        assert!(rules.validate().is_err(), "duplicate target");
        let mut rules = ExpertiseRules::default();
        rules.targets[0].urgent_due_hours = Some(500);
        assert!(rules.validate().is_err(), "urgent longer than routine");
    }

    #[test]
    fn shared_sites_make_two_orgs_one_site() {
        let rules = ExpertiseRules {
            shared_sites: vec![vec!["cds-limoges-chu".into(), "chu-limoges".into()]],
            ..ExpertiseRules::default()
        };
        assert!(rules.same_site("chu-limoges", "chu-limoges"));
        assert!(rules.same_site("cds-limoges-chu", "chu-limoges"));
        assert!(!rules.same_site("cds-bourganeuf", "chu-limoges"));
    }
}
