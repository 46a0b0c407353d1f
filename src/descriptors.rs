//! Open-file descriptors: the process's limit and what the sessions may take of it.
//!
//! Owns: raising the soft `RLIMIT_NOFILE` to the hard limit at start (`raise_limit`), the
//! descriptors one session needs at most (`per_session`), the reserve kept for everything
//! that is not a session (`reserve`), the session capacity that follows (`plan`), and the
//! spare descriptor an accept loop gives up to take one connection when the table is full
//! (`Spare`). Must not: accept connections or speak SMTP (that is `accept.rs` and
//! `listener.rs`).

use std::fs::File;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::checks::dbl::MAX_DKIM_DOMAINS;
use crate::config::Config;
use crate::config::schema::ZoneKind;
use crate::error::Error;

/// Descriptors kept for the process itself, whatever `max_sessions` says: stdin/out/err,
/// the runtime's epoll and wake-up descriptors, the signal pipe, the Redis connections, the
/// resolver's TCP connections, `/metrics` scrapes, the backend probe, policy reloads and the
/// one socket of each client that is told `421` over the session limit. About 20 are in use
/// at rest; the rest is headroom. Each listener adds two (`reserve`).
pub const RESERVE_BASE: u64 = 64;

/// Hard limits reported as unlimited are raised to this (Linux's default `nr_open`).
const UNLIMITED: u64 = 1 << 20;

/// The descriptors one session holds at most at the same time:
///
/// - 1 the client's socket;
/// - 1 the backend connection (SMTP), kept for the session's next transaction;
/// - 1 the spool's temp file, once a message is larger than `spool.memory_limit`;
/// - 1 a file being written: a Maildir delivery, a quarantined message, the directory
///   fsync after either (one after the other, never two at once);
/// - with any DNS check on, 1 UDP socket per name server asked at once (hickory asks
///   two when there are two or more; the system's resolv.conf counts as two) for each
///   lookup the session can have in flight at once: 3 for its own stage (A and AAAA of
///   rDNS and HELO, A/AAAA/MX of the DMARC `np` test), plus one per IP zone of `dnsbl`
///   (asked all at once at connect, and still running during HELO and MAIL), plus one
///   per domain zone and domain at DATA (the MAIL FROM domain and up to
///   `MAX_DKIM_DOMAINS` signing domains). A truncated answer's TCP retry replaces its
///   UDP socket.
///
/// The defaults (authentication, rDNS and HELO lookups, no zones, the system resolver)
/// come to 4 + 3 × 2 = 10.
pub fn per_session(config: &Config) -> u64 {
    let fixed = 4;
    if !crate::checks::needs_dns(config) {
        return fixed;
    }
    let zones = |kind| config.dnsbl.zones.iter().filter(|z| z.kind == kind).count() as u64;
    let in_flight =
        3 + zones(ZoneKind::Ip) + zones(ZoneKind::Domain) * (1 + MAX_DKIM_DOMAINS as u64);
    let servers = match config.dns.nameservers.len() {
        0 => 2,
        n => n.min(2) as u64,
    };
    fixed + in_flight * servers
}

/// Descriptors kept out of the sessions' reach: `RESERVE_BASE`, and for each listener
/// (the SMTP addresses and the metrics endpoint) its socket and its `Spare`.
pub fn reserve(config: &Config) -> u64 {
    let listeners = config.listen.len() as u64 + u64::from(config.metrics.listen.is_some());
    RESERVE_BASE + 2 * listeners
}

/// The soft limit after `raise_limit`: what the sessions share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit in force now.
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. A failure leaves the limit as it was
/// (and says so in `Limit`, `before == now`); it is not an error: `plan` decides whether
/// the limit suffices.
pub fn raise_limit() -> Limit {
    let found = getrlimit(Resource::Nofile);
    let before = found.current.unwrap_or(UNLIMITED);
    let hard = found.maximum.unwrap_or(UNLIMITED);
    if hard <= before {
        return Limit {
            before,
            now: before,
        };
    }
    let wanted = Rlimit {
        current: Some(hard),
        maximum: found.maximum,
    };
    match setrlimit(Resource::Nofile, wanted) {
        Ok(()) => Limit { before, now: hard },
        Err(e) => {
            tracing::warn!(soft = before, hard, error = %e, "cannot raise the open-file limit");
            Limit {
                before,
                now: before,
            }
        }
    }
}

/// The soft `RLIMIT_NOFILE` in force now (it can be lowered from outside, `prlimit`).
pub fn soft_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(UNLIMITED)
}

/// Descriptors open now, where the system tells (`/proc/self/fd` on Linux). `None` when it
/// cannot be read, which includes a full descriptor table.
pub fn open_count() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // One entry is the directory being read.
    Some((entries.count() as u64).saturating_sub(1))
}

/// How many sessions the open-file limit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The soft limit.
    pub limit: u64,
    /// Descriptors per session (`per_session`).
    pub per_session: u64,
    /// Descriptors kept out of the sessions' reach (`reserve`).
    pub reserve: u64,
    /// Sessions served at once: `limits.max_sessions`, or fewer when the limit cannot hold
    /// that many.
    pub sessions: usize,
}

impl Plan {
    /// The soft limit `limits.max_sessions` would need.
    pub fn needed(&self, max_sessions: usize) -> u64 {
        self.reserve + self.per_session * max_sessions as u64
    }
}

/// The session capacity under `limit`. Fewer sessions than `limits.max_sessions` is a
/// warning (logged by the caller); not even one session is a start-up error.
pub fn plan(config: &Config, limit: u64) -> Result<Plan, Error> {
    let per_session = per_session(config);
    let reserve = reserve(config);
    let fits = limit.saturating_sub(reserve) / per_session;
    let sessions = usize::try_from(fits)
        .unwrap_or(usize::MAX)
        .min(config.limits.max_sessions);
    if sessions == 0 {
        return Err(Error::Config(format!(
            "the open-file limit ({limit}) cannot hold a single session: {reserve} descriptors \
             are kept in reserve and each session needs {per_session}; raise it (ulimit -n, \
             systemd LimitNOFILE=) to at least {}",
            reserve + per_session
        )));
    }
    Ok(Plan {
        limit,
        per_session,
        reserve,
        sessions,
    })
}

/// One descriptor held open for the moment the table is full: given up, it lets an accept
/// loop take the waiting connection (to tell it `421`, or to serve a scrape), and it is
/// taken again once that connection is closed. The classic "idle descriptor" of accept
/// loops (libev, nginx).
#[derive(Debug)]
pub struct Spare(Option<File>);

impl Spare {
    /// A spare, held at once when a descriptor is free.
    pub fn new() -> Self {
        let mut spare = Spare(None);
        spare.restore();
        spare
    }

    /// Gives the descriptor up; false when it was not held.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Holds a descriptor again if it is not held (a no-op when it is); true when held.
    pub fn restore(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
        self.0.is_some()
    }
}

impl Default for Spare {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::DnsblZoneConfig;

    fn quiet() -> Config {
        let mut c = Config::default();
        c.auth.enabled = false;
        c.client_checks.rdns = false;
        c.client_checks.helo_dns = false;
        c
    }

    #[test]
    fn per_session_counts_sockets_files_and_lookups() {
        assert_eq!(per_session(&quiet()), 4);
        // The defaults: the system resolver (two servers asked at once), 3 lookups.
        assert_eq!(per_session(&Config::default()), 10);
        let mut c = Config::default();
        c.dns.nameservers = vec!["127.0.0.1:53".parse().expect("addr")];
        assert_eq!(per_session(&c), 7);
        c.dnsbl.zones = vec![
            DnsblZoneConfig {
                zone: "ip.example".into(),
                ..DnsblZoneConfig::default()
            },
            DnsblZoneConfig {
                zone: "dbl.example".into(),
                kind: ZoneKind::Domain,
                ..DnsblZoneConfig::default()
            },
        ];
        // 3 + 1 IP zone + 1 domain zone × 6 domains, one server each.
        assert_eq!(per_session(&c), 4 + 10);
    }

    #[test]
    fn plan_holds_what_fits_and_refuses_nothing_at_all() {
        let mut c = quiet();
        c.limits.max_sessions = 1000;
        // One SMTP listener and the metrics endpoint: 64 + 2 × 2.
        assert_eq!(reserve(&c), 68);
        let p = plan(&c, 100_000).expect("plan");
        assert_eq!(p.sessions, 1000);
        assert_eq!(p.needed(1000), 68 + 4000);
        let p = plan(&c, 268).expect("plan");
        assert_eq!(p.sessions, 50);
        assert!(p.needed(p.sessions) <= 268);
        let e = plan(&c, 70).expect_err("no session fits");
        assert!(e.to_string().contains("at least 72"), "{e}");
    }

    #[test]
    fn spare_is_given_up_and_taken_again() {
        let mut spare = Spare::new();
        assert!(spare.release());
        assert!(!spare.release(), "already given up");
        assert!(spare.restore());
        assert!(spare.restore(), "held: a no-op");
        assert!(spare.release());
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let raised = raise_limit();
        assert!(raised.now >= raised.before);
        assert_eq!(soft_limit(), raised.now);
        assert!(open_count().is_some_and(|n| n > 0 && n < raised.now));
    }
}
