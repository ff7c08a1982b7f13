//! The idempotency section of the configuration (`[idempotency]`, `TELEHEALTH_IDEMPOTENCY__…`):
//! how long the suite remembers idempotency keys (see `crate::idempotency`).

use serde::{Deserialize, Serialize};

/// Retention of idempotency keys, the same for every service that stores them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencySettings {
    /// How long a key is remembered, in hours. A retry with the key after that acts again.
    /// common.proto promises at least 24 hours; the default, 168 (7 days), also covers a nurse's
    /// tablet that stays offline over a long weekend and replays its queue. 24 to 8760.
    pub retention_hours: u32,
    /// How often each replica forgets keys past their retention, in seconds. Default 3600.
    pub purge_interval_seconds: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        IdempotencySettings {
            retention_hours: 24 * 7,
            purge_interval_seconds: 3600,
        }
    }
}

impl IdempotencySettings {
    /// Checks the bounds; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(24..=8760).contains(&self.retention_hours) {
            return Err(
                "retention_hours must be 24 to 8760 (common.proto promises at least 24 hours)"
                    .into(),
            );
        }
        if !(1..=86_400).contains(&self.purge_interval_seconds) {
            return Err("purge_interval_seconds must be 1 to 86400".into());
        }
        Ok(())
    }

    /// The retention as a duration.
    pub fn retention(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_hours(i64::from(self.retention_hours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keeps_keys_a_week_and_less_than_a_day_is_refused() {
        let settings = IdempotencySettings::default();
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.retention(), jiff::SignedDuration::from_hours(168));
        let cases = [
            (
                "retention_hours",
                IdempotencySettings {
                    retention_hours: 23,
                    ..IdempotencySettings::default()
                },
            ),
            (
                "purge_interval_seconds",
                IdempotencySettings {
                    purge_interval_seconds: 0,
                    ..IdempotencySettings::default()
                },
            ),
        ];
        for (key, settings) in cases {
            let error = settings.validate().expect_err(key);
            assert!(error.starts_with(key), "{key}: {error}");
        }
    }
}
