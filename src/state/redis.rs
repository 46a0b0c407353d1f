//! The Redis state store: rate limits and greylisting shared by every gateway that uses the
//! same Redis, each decision one Lua script so that two gateways never both take the last
//! token of a bucket.
//!
//! Owns: the connection (opened by `connect.rs`: standalone, Sentinel, Cluster, TLS), the
//! scripts and key names (prefixed, every key with a TTL), and the up/down state: an
//! operation that fails or exceeds `state.redis.timeout` marks the store down, and until the
//! reconnect task (`maintain`, exponential backoff) has a working connection again every
//! operation fails at once, so a dead Redis costs a session nothing but the fallback. Must
//! not: decide what a failure means (`state::mod` does).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisResult, Script, ScriptInvocation};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{GreyOutcome, GreyParams};
use crate::config::schema::RedisConfig;
use crate::config::units::Rate;

/// GCRA (the generic cell rate algorithm) on one key holding the theoretical arrival time
/// in microseconds of Redis' own clock, so gateways with skewed clocks agree.
/// ARGV: emission interval (µs), burst. Returns 1 when admitted.
const RATE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > interval * tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 1
";

/// One greylisting triplet (KEYS[1]) and its network's pass counter (KEYS[2]).
/// ARGV: delay (ms), expiry (ms), pass TTL (ms), auto-allow threshold (0 = off).
const GREY_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local auto = tonumber(ARGV[4])
if auto > 0 and tonumber(redis.call('GET', KEYS[2]) or 0) >= auto then return 'auto' end
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], string.format('%.0f', now), 'PX', ARGV[2])
  return 'new'
end
if v == 'pass' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 'pass'
end
if now - tonumber(v) < tonumber(ARGV[1]) then return 'early' end
redis.call('SET', KEYS[1], 'pass', 'PX', ARGV[3])
if auto > 0 then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 'pass'
";

/// Concurrent sessions per client address (KEYS[1]) and network (KEYS[2]): sorted sets of
/// session ids scored by their lease's end, so a crashed gateway's sessions age out.
/// ARGV: session id, lease (ms), max per address, max per network (0 = no limit).
/// Returns `ok`, `ip` or `net` (the limit that is full).
const ACQUIRE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
local max_ip, max_net = tonumber(ARGV[3]), tonumber(ARGV[4])
if max_ip > 0 and redis.call('ZCARD', KEYS[1]) >= max_ip then return 'ip' end
if max_net > 0 and redis.call('ZCARD', KEYS[2]) >= max_net then return 'net' end
local lease = tonumber(ARGV[2])
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], string.format('%.0f', now + lease), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 'ok'
";

/// Extends a session's lease (KEYS as for ACQUIRE_SCRIPT; ARGV: session id, lease in ms);
/// a member that is gone (expired, or Redis restarted) is not added back.
const RENEW_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], 'XX', string.format('%.0f', now + lease), ARGV[1])
  if redis.call('PTTL', KEYS[i]) < lease then redis.call('PEXPIRE', KEYS[i], lease) end
end
return 1
";

/// Ends a session's lease (KEYS as for ACQUIRE_SCRIPT; ARGV[1] the session id).
const RELEASE_SCRIPT: &str = r"
for i = 1, 2 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
";

/// Which per-client concurrency limit is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `connections.max_per_ip`.
    Ip,
    /// `connections.max_per_network`.
    Network,
}

/// A connection of either kind (`connect.rs` opens it).
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn run<T: FromRedisValue>(&mut self, inv: &ScriptInvocation<'_>) -> RedisResult<T> {
        match self {
            Conn::Single(c) => inv.invoke_async(c).await,
            Conn::Cluster(c) => inv.invoke_async(c).await,
        }
    }

    async fn ping(&mut self) -> RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// Why an operation did not get an answer from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The store is down; nothing was attempted.
    Down,
    /// This operation failed (and marked the store down).
    Failed(String),
}

/// A state change of the connection, reported to `state::mod`.
pub type OnChange = Box<dyn Fn(bool, &str) + Send + Sync>;

/// The connection and what is known about it, changed together under one lock so that the
/// up/down state, the gauge and the log always agree.
#[derive(Default)]
struct Slot {
    /// The connection in use; `None` while down.
    conn: Option<Conn>,
    /// Bumped at each new connection: a failure on an older one does not condemn it.
    generation: u64,
    /// The state last reported (metric and log).
    up: bool,
}

/// Redis, as seen by one gateway.
pub struct RedisStore {
    config: RedisConfig,
    slot: Mutex<Slot>,
    /// Set once the first connection attempt has ended, either way.
    tried: AtomicBool,
    tried_notify: Notify,
    /// Tells session-lease members of this process from those of other gateways.
    instance: String,
    wake: Notify,
    rate: Script,
    grey: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    on_change: OnChange,
}

impl RedisStore {
    /// A store that is down until `maintain` connects it.
    pub fn new(config: &RedisConfig, on_change: OnChange) -> Self {
        RedisStore {
            config: config.clone(),
            slot: Mutex::new(Slot::default()),
            tried: AtomicBool::new(false),
            tried_notify: Notify::new(),
            instance: instance_id(),
            wake: Notify::new(),
            rate: Script::new(RATE_SCRIPT),
            grey: Script::new(GREY_SCRIPT),
            acquire: Script::new(ACQUIRE_SCRIPT),
            renew: Script::new(RENEW_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            on_change,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the first connection attempt has ended, at most `limit`.
    pub async fn first_attempt(&self, limit: Duration) {
        let done = async {
            loop {
                let notified = self.tried_notify.notified();
                if self.tried.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, done).await;
    }

    /// Reports `up` if it is a change; called with the slot locked.
    fn report(&self, slot: &mut Slot, up: bool, why: &str) {
        if slot.up != up {
            slot.up = up;
            (self.on_change)(up, why);
        }
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.config.key_prefix)
    }

    /// Takes one event from `bucket`'s allowance: `Ok(false)` when the rate is exceeded.
    pub async fn rate(&self, bucket: &str, rate: Rate, burst: u32) -> Result<bool, Unavailable> {
        let interval = rate.interval().as_micros().max(1) as u64;
        let mut inv = self.rate.prepare_invoke();
        inv.key(self.key("rate", bucket))
            .arg(interval)
            .arg(burst.max(1));
        let admitted: i64 = self.run(&inv).await?;
        Ok(admitted == 1)
    }

    /// Looks up and updates a greylisting triplet of the client network `network`.
    pub async fn greylist(
        &self,
        network: &str,
        triplet: &str,
        p: &GreyParams,
    ) -> Result<GreyOutcome, Unavailable> {
        // The network in braces is a Cluster hash tag: both keys live in one slot.
        let base = self.key("grey", &format!("{{{network}}}"));
        let ms = |d: Duration| d.as_millis().max(1) as u64;
        let mut inv = self.grey.prepare_invoke();
        inv.key(format!("{base}:t:{triplet}"))
            .key(format!("{base}:passes"))
            .arg(ms(p.delay))
            .arg(ms(p.expiry))
            .arg(ms(p.pass_ttl))
            .arg(p.auto_allow_after);
        let word: String = self.run(&inv).await?;
        Ok(match word.as_str() {
            "new" => GreyOutcome::New,
            "early" => GreyOutcome::Early,
            "auto" => GreyOutcome::AutoAllowed,
            _ => GreyOutcome::Pass,
        })
    }

    fn session_keys(&self, network: &str, ip: &str) -> (String, String) {
        let base = self.key("sessions", &format!("{{{network}}}"));
        (format!("{base}:ip:{ip}"), format!("{base}:net"))
    }

    /// Counts session `id` of a client in the shared concurrency limits, for `lease` at most.
    pub async fn acquire(
        &self,
        network: &str,
        ip: &str,
        id: &str,
        lease: Duration,
        max: (usize, usize),
    ) -> Result<Result<(), Full>, Unavailable> {
        let (ip_key, net_key) = self.session_keys(network, ip);
        let mut inv = self.acquire.prepare_invoke();
        inv.key(ip_key)
            .key(net_key)
            .arg(format!("{}:{id}", self.instance))
            .arg(lease.as_millis().max(1) as u64)
            .arg(max.0)
            .arg(max.1);
        let word: String = self.run(&inv).await?;
        Ok(match word.as_str() {
            "ip" => Err(Full::Ip),
            "net" => Err(Full::Network),
            _ => Ok(()),
        })
    }

    /// Extends session `id`'s lease by `lease` from now.
    pub async fn renew(
        &self,
        network: &str,
        ip: &str,
        id: &str,
        lease: Duration,
    ) -> Result<(), Unavailable> {
        let (ip_key, net_key) = self.session_keys(network, ip);
        let mut inv = self.renew.prepare_invoke();
        inv.key(ip_key)
            .key(net_key)
            .arg(format!("{}:{id}", self.instance))
            .arg(lease.as_millis().max(1) as u64);
        let _: i64 = self.run(&inv).await?;
        Ok(())
    }

    /// Ends session `id`'s place in the shared concurrency limits.
    pub async fn release(&self, network: &str, ip: &str, id: &str) -> Result<(), Unavailable> {
        let (ip_key, net_key) = self.session_keys(network, ip);
        let mut inv = self.release.prepare_invoke();
        inv.key(ip_key)
            .key(net_key)
            .arg(format!("{}:{id}", self.instance));
        let _: i64 = self.run(&inv).await?;
        Ok(())
    }

    async fn run<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, Unavailable> {
        let (conn, generation) = {
            let slot = self.slot();
            (slot.conn.clone(), slot.generation)
        };
        let Some(mut conn) = conn else {
            return Err(Unavailable::Down);
        };
        let error = match tokio::time::timeout(self.config.timeout, conn.run(inv)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.config.timeout),
        };
        self.mark_down(generation, &error);
        Err(Unavailable::Failed(error))
    }

    /// Drops connection `generation` after a failure on it (a failure on an older one, since
    /// replaced, changes nothing) and wakes the reconnect task.
    fn mark_down(&self, generation: u64, why: &str) {
        {
            let mut slot = self.slot();
            if slot.generation != generation || slot.conn.is_none() {
                return;
            }
            slot.conn = None;
            self.report(&mut slot, false, why);
        }
        self.wake.notify_one();
    }

    async fn connect(&self) -> RedisResult<Conn> {
        let mut conn = super::connect::open(&self.config).await?;
        conn.ping().await?;
        Ok(conn)
    }

    /// Keeps the connection: connects, checks it every `health_interval`, and after a
    /// failure reconnects with exponential backoff (`reconnect_min` doubling to
    /// `reconnect_max`). Runs until `stop`.
    pub async fn maintain(&self, stop: CancellationToken) {
        let c = &self.config;
        let mut backoff = c.reconnect_min;
        while !stop.is_cancelled() {
            let (current, generation) = {
                let slot = self.slot();
                (slot.conn.clone(), slot.generation)
            };
            if let Some(mut conn) = current {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(c.health_interval) => {
                        match tokio::time::timeout(c.timeout, conn.ping()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => self.mark_down(generation, &e.to_string()),
                            Err(_) => self.mark_down(generation, "PING unanswered"),
                        }
                    }
                }
                continue;
            }
            let attempt = tokio::time::timeout(c.timeout * 4, self.connect()).await;
            let tried_before = self.tried.swap(true, Ordering::AcqRel);
            self.tried_notify.notify_waiters();
            match attempt {
                Ok(Ok(conn)) => {
                    let mut slot = self.slot();
                    slot.generation += 1;
                    slot.conn = Some(conn);
                    self.report(&mut slot, true, "connected");
                    backoff = c.reconnect_min;
                }
                failed => {
                    if !tried_before {
                        // Report the initial state once, so a Redis that is down from the
                        // start is logged (the gauge starts at 0).
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "connect timed out".into(),
                        };
                        (self.on_change)(false, &why);
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(c.reconnect_max);
                }
            }
        }
    }
}

/// 64 random bits in hex, new for each process: session ids are unique per process only,
/// and two replicas (both PID 1 in their containers) may start in the same second.
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
