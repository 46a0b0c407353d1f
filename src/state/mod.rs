//! Shared state for the stateful controls (rate limits, greylisting): in this process, or in
//! Redis so that every gateway of a site counts together.
//!
//! Owns: choosing the store, and what happens when Redis cannot answer: with
//! `on_failure: open` a rate is answered by this process's own counters (so a limit still
//! holds per gateway) and greylisting lets the message through unrecorded; with `closed`
//! the answer is `Unavailable` and the policy defers the message (451 4.3.0). Either way the fallback is counted
//! (`portcullis_state_fallbacks_total`) and the connection state is logged once per change
//! and exported as `portcullis_state_backend_up`. Must not: know facts or policies.

mod connect;
pub mod local;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::schema::{FailureMode, StateBackend, StateConfig};
use crate::config::units::Rate;
use crate::metrics::{Event, Metrics};
use local::LocalStore;
use redis::RedisStore;

/// What a rate-limit operation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateOutcome {
    /// Within the rate: one event was counted.
    Allowed,
    /// Over the rate.
    Exceeded,
    /// Redis could not answer and `on_failure` is `closed`.
    Unavailable,
}

/// What greylisting found for one triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreyOutcome {
    /// First seen now: deferred.
    New,
    /// Seen before, but the retry came before `delay` had passed: deferred.
    Early,
    /// Retried after the delay, or passed before.
    Pass,
    /// The client network passed often enough to skip greylisting.
    AutoAllowed,
    /// Redis could not answer and `on_failure` is `open`: let through unrecorded (this
    /// gateway's own memory would defer every sender it has not seen, the opposite of open).
    Unchecked,
    /// Redis could not answer and `on_failure` is `closed`.
    Unavailable,
}

impl GreyOutcome {
    /// The fact value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            GreyOutcome::New => "new",
            GreyOutcome::Early => "early",
            GreyOutcome::Pass => "pass",
            GreyOutcome::AutoAllowed => "auto_allowed",
            GreyOutcome::Unchecked => "unchecked",
            GreyOutcome::Unavailable => "unavailable",
        }
    }
}

/// What the shared concurrency limits said about a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// Admitted; `leased` when Redis holds a place for it that must be released.
    Granted {
        /// True when the session was counted in Redis.
        leased: bool,
    },
    /// A limit is full across the gateways.
    Full(redis::Full),
    /// Redis could not answer and `on_failure` is `closed`.
    Unavailable,
}

/// The timing of greylisting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreyParams {
    /// The wait before a retry passes.
    pub delay: Duration,
    /// How long an unretried triplet is kept.
    pub expiry: Duration,
    /// How long a passed triplet (and a network's pass count) is kept.
    pub pass_ttl: Duration,
    /// Passes after which a network skips greylisting; 0 = never.
    pub auto_allow_after: u32,
}

/// The store the controls use.
pub struct StateStore {
    local: LocalStore,
    redis: Option<RedisStore>,
    fail_closed: bool,
    metrics: Arc<Metrics>,
}

impl StateStore {
    /// The store `state:` asks for. A Redis store starts down; `maintain` connects it.
    pub fn new(config: &StateConfig, metrics: Arc<Metrics>) -> Self {
        let redis = (config.backend == StateBackend::Redis).then(|| {
            metrics.emit(Event::StateBackendUp(false));
            let m = metrics.clone();
            let closed = config.redis.on_failure == FailureMode::Closed;
            RedisStore::new(
                &config.redis,
                Box::new(move |up, why| {
                    m.emit(Event::StateBackendUp(up));
                    if up {
                        tracing::info!("state backend redis is up: rate limits and greylisting are shared");
                    } else if closed {
                        tracing::error!(error = why, "state backend redis is down: deferring what needs it (on_failure: closed)");
                    } else {
                        tracing::warn!(error = why, "state backend redis is down: counting in this process until it is back");
                    }
                }),
            )
        });
        StateStore {
            local: LocalStore::default(),
            redis,
            fail_closed: config.redis.on_failure == FailureMode::Closed,
            metrics,
        }
    }

    /// Takes one event from `bucket`'s allowance of `rate` with `burst`.
    pub async fn rate(&self, bucket: &str, rate: Rate, burst: u32) -> RateOutcome {
        if let Some(r) = &self.redis {
            match r.rate(bucket, rate, burst).await {
                Ok(true) => return RateOutcome::Allowed,
                Ok(false) => return RateOutcome::Exceeded,
                Err(_) => {
                    self.metrics.emit(Event::StateFallback("rate"));
                    if self.fail_closed {
                        return RateOutcome::Unavailable;
                    }
                }
            }
        }
        match self.local.rate(bucket, rate, burst) {
            true => RateOutcome::Allowed,
            false => RateOutcome::Exceeded,
        }
    }

    /// Looks up and updates a greylisting triplet of `network`.
    pub async fn greylist(&self, network: &str, triplet: &str, p: &GreyParams) -> GreyOutcome {
        if let Some(r) = &self.redis {
            match r.greylist(network, triplet, p).await {
                Ok(outcome) => return outcome,
                Err(_) => {
                    self.metrics.emit(Event::StateFallback("greylist"));
                    return self.unanswered();
                }
            }
        }
        self.local.greylist(network, triplet, p)
    }

    /// The greylisting answer when Redis could not give one in time.
    pub fn unanswered(&self) -> GreyOutcome {
        match self.fail_closed {
            true => GreyOutcome::Unavailable,
            false => GreyOutcome::Unchecked,
        }
    }

    /// True when the state is shared through Redis (not merely this process's).
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Counts session `id` of client `ip` (in `network`) against the concurrency limits
    /// `max` (per address, per network) across every gateway. The local store grants at
    /// once: the gateway's own admission counters already hold the session.
    pub async fn acquire_session(
        &self,
        network: &str,
        ip: &str,
        id: &str,
        lease: Duration,
        max: (usize, usize),
    ) -> SlotOutcome {
        let Some(r) = &self.redis else {
            return SlotOutcome::Granted { leased: false };
        };
        match r.acquire(network, ip, id, lease, max).await {
            Ok(Ok(())) => SlotOutcome::Granted { leased: true },
            Ok(Err(full)) => SlotOutcome::Full(full),
            Err(_) => {
                self.metrics.emit(Event::StateFallback("sessions"));
                match self.fail_closed {
                    true => SlotOutcome::Unavailable,
                    false => SlotOutcome::Granted { leased: false },
                }
            }
        }
    }

    /// Extends a session's lease taken by `acquire_session`. A failure is only logged: the
    /// session then stops counting when its lease ends.
    pub async fn renew_session(&self, network: &str, ip: &str, id: &str, lease: Duration) {
        if let Some(r) = &self.redis
            && let Err(e) = r.renew(network, ip, id, lease).await
        {
            tracing::debug!(session = id, error = ?e, "session lease not renewed");
        }
    }

    /// Gives back a session's place taken by `acquire_session`. A failure is only logged:
    /// the lease ends by itself.
    pub async fn release_session(&self, network: &str, ip: &str, id: &str) {
        if let Some(r) = &self.redis
            && let Err(e) = r.release(network, ip, id).await
        {
            tracing::debug!(session = id, error = ?e, "session lease not released; it will expire");
        }
    }

    /// Waits (at most `limit`) until the first connection attempt to Redis has ended, so that
    /// a gateway starts sharing from its first session (and, `closed`, does not defer a burst
    /// of clients while still connecting). No wait for the local store.
    pub async fn ready(&self, limit: Duration) {
        if let Some(r) = &self.redis {
            r.first_attempt(limit).await;
        }
    }

    /// Keeps the Redis connection (no-op for the local store) until `stop`.
    pub async fn maintain(self: Arc<Self>, stop: CancellationToken) {
        if let Some(r) = &self.redis {
            r.maintain(stop).await;
        }
    }

    /// Drops expired local state.
    pub fn housekeeping(&self) {
        self.local.housekeeping();
    }
}
