//! The wound monitoring section of the configuration (`[wound_rules]`,
//! `TELEHEALTH_WOUND_RULES__…`): alert thresholds, healing-trend bands and follow-up intervals.
//! The clinical rationale of each default is in `docs/wound.md`.

use serde::{Deserialize, Serialize};

/// Clinical thresholds of the wound monitoring service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WoundRules {
    /// AREA_INCREASE is raised when the rectangle area (L × W) of an assessment is at least this
    /// much larger than the previous assessment's of the same episode, in percent. Default 10.
    pub area_increase_alert_percent: f64,
    /// PUSH_INCREASE is raised when the PUSH total of an assessment is at least this many points
    /// above the previous assessment's of the same episode, in PUSH points. Default 2.
    pub push_increase_alert_points: u32,
    /// Minimum area reduction from the episode's baseline expected after
    /// `four_week_follow_up_days`, in percent; less raises INSUFFICIENT_REDUCTION. Default 40.
    pub four_week_min_reduction_percent: f64,
    /// Follow-up after which the reduction rule applies, in days since the episode's baseline
    /// assessment. Default 28 (four weeks).
    pub four_week_follow_up_days: u32,
    /// Planned interval between assessments when a wound does not give one, in days. Default 7.
    pub default_assessment_interval_days: u32,
    /// How often each replica looks for wounds whose planned assessment is overdue (the database
    /// makes sure each missed due date raises one alert, whatever the number of replicas), in
    /// seconds. Default 60.
    pub overdue_check_interval_seconds: u64,
    /// A photo uploaded without an assessment and not referenced by one within this time is
    /// deleted, in hours. Default 24.
    pub pending_photo_lifetime_hours: u32,
    /// Healing trend: an area change over the last four weeks of at least this much, in percent,
    /// counts as improving (decrease) or deteriorating (increase). Default 10.
    pub trend_area_change_percent: f64,
    /// Healing trend: a PUSH change over the last four weeks of at least this many points counts
    /// as improving or deteriorating, in PUSH points. Default 2.
    pub trend_push_change_points: u32,
    /// Healing trend: assessments spanning less than this are too close together to show a
    /// trend, in days. Default 7.
    pub trend_min_span_days: u32,
}

impl Default for WoundRules {
    fn default() -> Self {
        WoundRules {
            area_increase_alert_percent: 10.0,
            push_increase_alert_points: 2,
            four_week_min_reduction_percent: 40.0,
            four_week_follow_up_days: 28,
            default_assessment_interval_days: 7,
            overdue_check_interval_seconds: 60,
            pending_photo_lifetime_hours: 24,
            trend_area_change_percent: 10.0,
            trend_push_change_points: 2,
            trend_min_span_days: 7,
        }
    }
}

impl WoundRules {
    /// Checks the bounds; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let percent = |name: &str, value: f64, max: f64| {
            if value.is_finite() && value > 0.0 && value <= max {
                Ok(())
            } else {
                Err(format!("{name} must be above 0 and at most {max}"))
            }
        };
        percent(
            "area_increase_alert_percent",
            self.area_increase_alert_percent,
            1000.0,
        )?;
        percent(
            "four_week_min_reduction_percent",
            self.four_week_min_reduction_percent,
            100.0,
        )?;
        percent(
            "trend_area_change_percent",
            self.trend_area_change_percent,
            1000.0,
        )?;
        if !(1..=17).contains(&self.push_increase_alert_points) {
            return Err("push_increase_alert_points must be 1 to 17".into());
        }
        if !(1..=17).contains(&self.trend_push_change_points) {
            return Err("trend_push_change_points must be 1 to 17".into());
        }
        if !(7..=180).contains(&self.four_week_follow_up_days) {
            return Err("four_week_follow_up_days must be 7 to 180".into());
        }
        if !(1..=90).contains(&self.default_assessment_interval_days) {
            return Err("default_assessment_interval_days must be 1 to 90".into());
        }
        if !(1..=3600).contains(&self.overdue_check_interval_seconds) {
            return Err("overdue_check_interval_seconds must be 1 to 3600".into());
        }
        if !(1..=720).contains(&self.pending_photo_lifetime_hours) {
            return Err("pending_photo_lifetime_hours must be 1 to 720".into());
        }
        if !(1..=28).contains(&self.trend_min_span_days) {
            return Err("trend_min_span_days must be 1 to 28".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key and a way to spoil it.
    type Spoiler = (&'static str, fn(&mut WoundRules));

    #[test]
    fn the_defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(WoundRules::default().validate(), Ok(()));
        let cases: [Spoiler; 5] = [
            ("area_increase_alert_percent", |r| {
                r.area_increase_alert_percent = f64::NAN
            }),
            ("push_increase_alert_points", |r| {
                r.push_increase_alert_points = 0
            }),
            ("four_week_min_reduction_percent", |r| {
                r.four_week_min_reduction_percent = 120.0
            }),
            ("default_assessment_interval_days", |r| {
                r.default_assessment_interval_days = 91
            }),
            ("overdue_check_interval_seconds", |r| {
                r.overdue_check_interval_seconds = 0
            }),
        ];
        for (key, spoil) in cases {
            let mut rules = WoundRules::default();
            spoil(&mut rules);
            let error = rules.validate().expect_err(key);
            assert!(error.starts_with(key), "{key}: {error}");
        }
    }
}
