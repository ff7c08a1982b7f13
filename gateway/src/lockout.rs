//! Failed attempts per client address and per device certificate.
//!
//! The per-subject rate limit applies once a token is verified, so it never slows a client
//! whose tokens fail: each failure still costs a signature check (and may trigger a JWKS
//! refresh), and nothing stops a client guessing. Failures (refused tokens; refused TLS
//! handshakes for addresses) take a token from a bucket per address and one per certificate;
//! while either bucket is empty, the client's calls are refused before any token is looked at,
//! and an address's new connections are closed at accept. Buckets refill continuously (the
//! configured attempts per minute), so a client that stops failing is let in again.
//!
//! Addresses are counted by IPv4 address or IPv6 /64 (one subscriber's prefix), so that a host
//! cannot dodge the count by rotating addresses inside its own prefix.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Buckets full this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The key an address is counted under: an IPv4 address, or the /64 of an IPv6 one.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Failure buckets per address and per certificate.
pub struct Lockout {
    addresses: Buckets<IpAddr>,
    certificates: Buckets<String>,
}

impl Lockout {
    /// Allows `per_address` and `per_certificate` failed attempts per minute.
    pub fn new(per_address: u32, per_certificate: u32) -> Self {
        Lockout {
            addresses: Buckets::new(per_address),
            certificates: Buckets::new(per_certificate),
        }
    }

    /// How long the address of `ip` stays locked out, if it is.
    pub fn address_locked(&self, ip: IpAddr) -> Option<Duration> {
        self.addresses.locked(&address_key(ip), Instant::now())
    }

    /// How long the client (its address or its certificate) stays locked out, if it is.
    pub fn locked(&self, ip: IpAddr, thumbprint: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let by_address = self.addresses.locked(&address_key(ip), now);
        let by_certificate =
            thumbprint.and_then(|thumbprint| self.certificates.locked(thumbprint, now));
        by_address.max(by_certificate)
    }

    /// Counts one failed attempt from `ip` (and its certificate, when known).
    pub fn record_failure(&self, ip: IpAddr, thumbprint: Option<&str>) {
        let now = Instant::now();
        self.addresses.take(address_key(ip), now);
        if let Some(thumbprint) = thumbprint {
            self.certificates.take(thumbprint.to_owned(), now);
        }
    }
}

/// A token bucket per key, refilled at `capacity` tokens per minute.
struct Buckets<K> {
    capacity: f64,
    per_second: f64,
    state: Mutex<State<K>>,
}

struct State<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, per_second: f64, capacity: f64) -> Bucket {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * per_second).min(capacity),
            updated: now,
        }
    }
}

impl<K: Eq + Hash> Buckets<K> {
    fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Buckets {
            capacity,
            per_second: capacity / 60.0,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    fn wait_for(&self, bucket: &Bucket) -> Option<Duration> {
        (bucket.tokens < 1.0)
            .then(|| Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
    }

    fn locked<Q>(&self, key: &Q, now: Instant) -> Option<Duration>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let state = self.state.lock().ok()?;
        let bucket = state.buckets.get(key)?;
        self.wait_for(&bucket.refilled(now, self.per_second, self.capacity))
    }

    fn take(&self, key: K, now: Instant) {
        // A poisoned lock must not take the gateway down: failures go uncounted.
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if now.saturating_duration_since(state.last_sweep) > FORGET_AFTER {
            let (per_second, capacity) = (self.per_second, self.capacity);
            state
                .buckets
                .retain(|_, bucket| bucket.refilled(now, per_second, capacity).tokens < capacity);
            state.last_sweep = now;
        }
        let capacity = self.capacity;
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let mut refilled = bucket.refilled(now, self.per_second, capacity);
        refilled.tokens = (refilled.tokens - 1.0).max(0.0);
        *bucket = refilled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_locks_after_its_allowance_and_refills_over_the_minute() {
        let buckets = Buckets::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.locked(&"a", start), None);
            buckets.take("a", start);
        }
        let wait = buckets
            .locked(&"a", start)
            .expect("locked after 3 failures");
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "one attempt back after 20 s: {wait:?}"
        );
        assert_eq!(
            buckets.locked(&"b", start),
            None,
            "other keys are unaffected"
        );
        assert_eq!(
            buckets.locked(&"a", start + Duration::from_secs(20)),
            None,
            "refilled"
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            address_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }
}
