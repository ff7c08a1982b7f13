//! The per-participant flood guard of a `Signal` stream: a token bucket for messages, and a count
//! of refusals that closes the stream of a participant who keeps flooding.
//!
//! It is per stream (one stream per participant at a time), held by the session task itself: no
//! lock, no shared state, so one flooder costs the others nothing but the CPU of refusing him.

use std::time::Duration;

use tokio::time::Instant;

/// How long refusals are counted before the count starts again.
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: handle it.
    Accept,
    /// Over the rate: refuse it with `RATE_LIMITED`.
    Refuse,
    /// Too many refusals: close the stream with RESOURCE_EXHAUSTED.
    Close,
}

/// A token bucket plus a refusal counter.
#[derive(Debug)]
pub struct FloodGuard {
    rate: f64,
    burst: f64,
    tokens: f64,
    refreshed: Instant,
    max_refusals: u32,
    refusals: u32,
    window_start: Instant,
}

impl FloodGuard {
    /// `rate` messages per second sustained, `burst` above it; closes after `max_refusals`
    /// refusals within 10 seconds.
    pub fn new(rate: f64, burst: u32, max_refusals: u32, now: Instant) -> Self {
        FloodGuard {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refreshed: now,
            max_refusals,
            refusals: 0,
            window_start: now,
        }
    }

    /// Decides about one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refreshed).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refreshed = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        if now.saturating_duration_since(self.window_start) > REFUSAL_WINDOW {
            self.window_start = now;
            self.refusals = 0;
        }
        self.refusals += 1;
        if self.refusals > self.max_refusals {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(50.0, 200, 1_000, start);
        for i in 0..200 {
            assert_eq!(
                guard.check(start),
                Verdict::Accept,
                "message {i} of the burst"
            );
        }
        assert_eq!(guard.check(start), Verdict::Refuse, "the 201st at once");
        // 50 per second: one token every 20 ms.
        assert_eq!(
            guard.check(start + Duration::from_millis(21)),
            Verdict::Accept
        );
        assert_eq!(
            guard.check(start + Duration::from_millis(22)),
            Verdict::Refuse
        );
    }

    #[test]
    fn persistent_flooding_closes_but_an_old_refusal_is_forgotten() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(1.0, 1, 3, start);
        assert_eq!(guard.check(start), Verdict::Accept);
        for i in 0..3 {
            assert_eq!(guard.check(start), Verdict::Refuse, "refusal {i}");
        }
        let later = start + Duration::from_secs(11);
        assert_eq!(guard.check(later), Verdict::Accept, "refilled");
        assert_eq!(
            guard.check(later),
            Verdict::Refuse,
            "a new window of refusals"
        );
        assert_eq!(guard.check(later), Verdict::Refuse);
        assert_eq!(guard.check(later), Verdict::Refuse);
        assert_eq!(guard.check(later), Verdict::Close, "the fourth within 10 s");
    }
}
