//! Per-subject rate limit: a token bucket per person, so one runaway client cannot starve the
//! others. Buckets of subjects idle for a while are dropped to keep memory bounded.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Buckets idle this long are forgotten (they would be full again anyway).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A token bucket per subject.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_subject: HashMap<String, Bucket>,
    last_sweep: Instant,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `rate` calls per second sustained, `burst` calls at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter {
            rate,
            burst: f64::from(burst),
            buckets: Mutex::new(Buckets {
                by_subject: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Takes one call from `subject`'s bucket, or says how long to wait for one.
    pub fn check(&self, subject: &str) -> Result<(), Duration> {
        self.check_at(subject, Instant::now())
    }

    fn check_at(&self, subject: &str, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(()); // a poisoned limiter must not take the gateway down
        };
        if now.duration_since(buckets.last_sweep) > FORGET_AFTER {
            buckets
                .by_subject
                .retain(|_, bucket| now.duration_since(bucket.updated) < FORGET_AFTER);
            buckets.last_sweep = now;
        }
        let burst = self.burst;
        let bucket = buckets
            .by_subject
            .entry(subject.to_owned())
            .or_insert(Bucket {
                tokens: burst,
                updated: now,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_calls_are_paced_per_subject() {
        let limiter = RateLimiter::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("dr-a", start).is_ok());
        }
        let wait = limiter.check_at("dr-a", start).expect_err("burst used up");
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(
            limiter.check_at("dr-b", start).is_ok(),
            "other subjects are unaffected"
        );
        assert!(
            limiter
                .check_at("dr-a", start + Duration::from_millis(100))
                .is_ok(),
            "refilled"
        );
    }
}
