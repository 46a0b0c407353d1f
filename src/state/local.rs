//! The in-process state store: GCRA rate limits (governor) and greylisting triplets in
//! memory. Used alone with `state.backend: local`, and as the fallback while Redis is
//! unreachable.
//!
//! Owns: the in-memory maps and keeping them bounded (expired entries are dropped by
//! `housekeeping`, at `MAX_ENTRIES` new triplets pass instead of being remembered, and a
//! rate past `MAX_BUCKETS` buckets is trimmed or started afresh).
//! Must not: know Redis or policies.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{GreyOutcome, GreyParams};
use crate::config::units::Rate;

/// The most greylisting entries kept in memory.
pub const MAX_ENTRIES: usize = 500_000;

/// The most buckets one rate (interval, burst) keeps in memory. Past it, buckets that have
/// refilled are dropped; if that is not enough (keys an attacker chooses, such as HELO
/// names, under a slow rate) the rate starts afresh: memory stays bounded, and the limit is
/// briefly looser, never stricter.
pub const MAX_BUCKETS: usize = 200_000;

/// Counters of this process.
pub struct LocalStore {
    max_buckets: usize,
    /// One keyed limiter per (emission interval, burst): governor fixes the quota per limiter.
    rates: Mutex<HashMap<(Duration, u32), DefaultKeyedRateLimiter<String>>>,
    triplets: Mutex<HashMap<String, Triplet>>,
    passes: Mutex<HashMap<String, (u32, Instant)>>,
}

#[derive(Debug, Clone, Copy)]
struct Triplet {
    first_seen: Instant,
    passed: bool,
    expires: Instant,
}

impl Default for LocalStore {
    fn default() -> Self {
        LocalStore::with_max_buckets(MAX_BUCKETS)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalStore {
    /// A store whose rates keep at most `max_buckets` buckets each.
    pub fn with_max_buckets(max_buckets: usize) -> Self {
        LocalStore {
            max_buckets,
            rates: Mutex::default(),
            triplets: Mutex::default(),
            passes: Mutex::default(),
        }
    }

    /// Takes one event from `bucket`'s allowance; false when the rate is exceeded.
    pub fn rate(&self, bucket: &str, rate: Rate, burst: u32) -> bool {
        let interval = rate.interval().max(Duration::from_nanos(1));
        let burst = burst.max(1);
        let mut rates = lock(&self.rates);
        let fresh = || {
            let quota = Quota::with_period(interval)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            RateLimiter::keyed(quota)
        };
        let limiter = rates.entry((interval, burst)).or_insert_with(fresh);
        if limiter.len() >= self.max_buckets {
            limiter.retain_recent();
            if limiter.len() >= self.max_buckets {
                tracing::warn!(
                    buckets = limiter.len(),
                    "local rate-limit buckets at their cap: starting afresh"
                );
                *limiter = fresh();
            }
        }
        limiter.check_key(&bucket.to_string()).is_ok()
    }

    /// Looks up and updates a greylisting triplet of the client network `network`.
    pub fn greylist(&self, network: &str, triplet: &str, p: &GreyParams) -> GreyOutcome {
        let now = Instant::now();
        if p.auto_allow_after > 0
            && lock(&self.passes)
                .get(network)
                .is_some_and(|(n, until)| *n >= p.auto_allow_after && *until > now)
        {
            return GreyOutcome::AutoAllowed;
        }
        let mut triplets = lock(&self.triplets);
        let entry = triplets.get(triplet).copied().filter(|t| t.expires > now);
        let outcome = match entry {
            None if triplets.len() >= MAX_ENTRIES => return GreyOutcome::Pass,
            None => {
                triplets.insert(
                    triplet.to_string(),
                    Triplet {
                        first_seen: now,
                        passed: false,
                        expires: now + p.expiry,
                    },
                );
                return GreyOutcome::New;
            }
            Some(t) if t.passed => GreyOutcome::Pass,
            Some(t) if now.duration_since(t.first_seen) < p.delay => {
                return GreyOutcome::Early;
            }
            Some(_) => {
                let mut passes = lock(&self.passes);
                let counted = passes.entry(network.to_string()).or_insert((0, now));
                counted.0 += 1;
                counted.1 = now + p.pass_ttl;
                GreyOutcome::Pass
            }
        };
        if let Some(t) = triplets.get_mut(triplet) {
            t.passed = true;
            t.expires = now + p.pass_ttl;
        }
        outcome
    }

    /// Drops what has expired and rate state that has fully replenished.
    pub fn housekeeping(&self) {
        for limiter in lock(&self.rates).values() {
            limiter.retain_recent();
        }
        let now = Instant::now();
        lock(&self.triplets).retain(|_, t| t.expires > now);
        lock(&self.passes).retain(|_, (_, until)| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::parse_rate;

    #[test]
    fn rate_admits_the_burst_then_refuses_per_bucket() {
        let s = LocalStore::default();
        let r = parse_rate("3/minute").expect("rate");
        let admitted = (0..10).filter(|_| s.rate("a", r, 3)).count();
        assert_eq!(admitted, 3);
        assert!(s.rate("b", r, 3), "another bucket has its own allowance");
        let admitted = (0..10).filter(|_| s.rate("c", r, 1)).count();
        assert_eq!(admitted, 1, "burst 1");
    }

    #[test]
    fn buckets_stay_bounded() {
        let s = LocalStore::with_max_buckets(100);
        let r = parse_rate("1/day").expect("rate");
        for i in 0..1000 {
            assert!(s.rate(&format!("helo-{i}"), r, 1), "a new bucket admits");
        }
        let rates = lock(&s.rates);
        let limiter = rates.values().next().expect("one rate");
        assert!(limiter.len() <= 100, "{}", limiter.len());
    }

    #[test]
    fn greylisting_defers_then_passes_and_auto_allows() {
        let s = LocalStore::default();
        let p = GreyParams {
            delay: Duration::from_millis(50),
            expiry: Duration::from_secs(60),
            pass_ttl: Duration::from_secs(60),
            auto_allow_after: 2,
        };
        assert_eq!(s.greylist("n", "t1", &p), GreyOutcome::New);
        assert_eq!(s.greylist("n", "t1", &p), GreyOutcome::Early);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.greylist("n", "t1", &p), GreyOutcome::Pass);
        assert_eq!(s.greylist("n", "t1", &p), GreyOutcome::Pass, "remembered");
        assert_eq!(s.greylist("n", "t2", &p), GreyOutcome::New);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.greylist("n", "t2", &p), GreyOutcome::Pass);
        assert_eq!(
            s.greylist("n", "t3", &p),
            GreyOutcome::AutoAllowed,
            "two passes from the network"
        );
        assert_eq!(s.greylist("other", "t3", &p), GreyOutcome::New);
    }
}
