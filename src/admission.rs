//! Connection admission, before the banner: deny and allow lists, concurrent sessions per
//! client address and per network (/24 for IPv4, /64 for IPv6), and a connection rate per
//! address (GCRA, governor).
//!
//! Owns: the counters and the decision to admit or turn a connection away, with the reply and
//! the metric label of each refusal. An allow-listed client skips the limits (a trusted relay
//! may open many connections). With `state.backend: redis` the same limits are then asked
//! again of the shared store (`admit_shared`), so that they hold across every gateway; this
//! gateway's own counters stay first (they are free and also hold while Redis is down).
//! Must not: speak SMTP beyond handing back a reply.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::reply::RefusalReply;
use crate::config::schema::ConnectionsConfig;
use crate::config::units::Rate;
use crate::metrics::Limit;
use crate::smtp::reply::{self, Reply};
use crate::state::redis::Full;
use crate::state::{RateOutcome, SlotOutcome, StateStore};

/// The admission state of a listener group.
pub struct Admission {
    rate_config: Option<(Rate, u32)>,
    replies: Replies,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    max_per_ip: usize,
    max_per_network: usize,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    per_network: Mutex<HashMap<IpNet, usize>>,
}

/// What refused clients are told.
struct Replies {
    deny: Reply,
    rate: Reply,
    concurrency: Reply,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the client is told before the connection closes.
    pub reply: Reply,
    /// The limit that was hit (for `portcullis_limit_hits_total`).
    pub limit: Limit,
}

/// An admitted connection; dropping it releases its place in the counters.
pub struct Ticket {
    admission: Arc<Admission>,
    counted: Option<(IpAddr, IpNet)>,
}

/// A session's place in the shared concurrency limits, renewed while the session runs and
/// given back when it ends (`hold_during`), or when dropped before (a session that
/// panicked): then a task gives it back.
pub struct SharedTicket {
    place: Option<Place>,
}

struct Place {
    state: Arc<StateStore>,
    network: String,
    ip: String,
    id: String,
}

impl Place {
    async fn release(self) {
        self.state
            .release_session(&self.network, &self.ip, &self.id)
            .await;
    }
}

impl SharedTicket {
    /// Runs `session` while a task renews the lease every half lease (so that a long
    /// session keeps counting, and the session is never paused for Redis); then gives the
    /// place back.
    pub async fn hold_during(
        mut self,
        lease: std::time::Duration,
        session: impl Future<Output = ()>,
    ) {
        // Aborted when dropped: also when the session panics and unwinds through here.
        struct Renewer(tokio::task::JoinHandle<()>);
        impl Drop for Renewer {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let renewer = self.place.as_ref().map(|p| {
            let (state, network, ip, id) = (
                p.state.clone(),
                p.network.clone(),
                p.ip.clone(),
                p.id.clone(),
            );
            Renewer(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 2).await;
                    state.renew_session(&network, &ip, &id, lease).await;
                }
            }))
        });
        session.await;
        drop(renewer);
        if let Some(place) = self.place.take() {
            place.release().await;
        }
    }
}

impl Drop for SharedTicket {
    fn drop(&mut self) {
        if let Some(place) = self.place.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(place.release());
        }
    }
}

/// The network a client is counted in: its /24 (IPv4) or /64 (IPv6).
pub fn network_of(ip: IpAddr) -> IpNet {
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    IpNet::new(ip, prefix)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

impl Admission {
    /// Admission from `connections:` in the config: the lists (inline and from their
    /// files, which `config::load` read) and the replies.
    pub fn new(config: &ConnectionsConfig) -> Self {
        let pick = |custom: &Option<RefusalReply>, default: Reply| match custom {
            Some(c) => c.reply().clone(),
            None => default,
        };
        let replies = Replies {
            deny: pick(&config.replies.deny, reply::CONNECTION_DENIED),
            rate: pick(&config.replies.rate, reply::CONNECTION_RATE),
            concurrency: pick(&config.replies.concurrency, reply::TOO_MANY_FROM_YOU),
        };
        // The same rate for this gateway's limiter and for the shared store.
        let per_minute = NonZeroU32::new(config.rate_per_minute)
            .map(|n| (n, NonZeroU32::new(config.rate_burst).unwrap_or(n)));
        let rate = per_minute
            .map(|(n, burst)| RateLimiter::keyed(Quota::per_minute(n).allow_burst(burst)));
        let rate_config = per_minute.map(|(n, burst)| {
            let rate = Rate {
                count: n.get(),
                period: std::time::Duration::from_secs(60),
            };
            (rate, burst.get())
        });
        let both = |inline: &[IpNet], listed: &[IpNet]| [inline, listed].concat();
        Admission {
            rate_config,
            replies,
            allow: both(&config.allow, &config.allow_listed),
            deny: both(&config.deny, &config.deny_listed),
            max_per_ip: config.max_per_ip,
            max_per_network: config.max_per_network,
            rate,
            per_ip: Mutex::new(HashMap::new()),
            per_network: Mutex::new(HashMap::new()),
        }
    }

    /// True if `ip` is on the allow list (inline or from a file).
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Admits `ip` or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let listed = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
        if listed(&self.allow) {
            return Ok(Ticket {
                admission: self.clone(),
                counted: None,
            });
        }
        if listed(&self.deny) {
            return Err(Refusal {
                reply: self.replies.deny.clone(),
                limit: Limit::DenyList,
            });
        }
        if let Some(rate) = &self.rate
            && rate.check_key(&ip).is_err()
        {
            return Err(Refusal {
                reply: self.replies.rate.clone(),
                limit: Limit::ConnectionRate,
            });
        }
        let net = network_of(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let mut per_net = self.per_network.lock().unwrap_or_else(|p| p.into_inner());
        let (ip_count, net_count) = (
            per_ip.get(&ip).copied().unwrap_or(0),
            per_net.get(&net).copied().unwrap_or(0),
        );
        if self.max_per_ip > 0 && ip_count >= self.max_per_ip {
            return Err(Refusal {
                reply: self.replies.concurrency.clone(),
                limit: Limit::SessionsPerIp,
            });
        }
        if self.max_per_network > 0 && net_count >= self.max_per_network {
            return Err(Refusal {
                reply: self.replies.concurrency.clone(),
                limit: Limit::SessionsPerNetwork,
            });
        }
        per_ip.insert(ip, ip_count + 1);
        per_net.insert(net, net_count + 1);
        Ok(Ticket {
            admission: self.clone(),
            counted: Some((ip, net)),
        })
    }

    /// The same limits across every gateway sharing `state` (a no-op for the local store):
    /// the connection rate per address, then the concurrent sessions per address and per
    /// network, counted under session `id` for `lease` at most. Called after `admit`.
    pub async fn admit_shared(
        &self,
        state: &Arc<StateStore>,
        ip: IpAddr,
        id: &str,
        lease: std::time::Duration,
    ) -> Result<Option<SharedTicket>, Refusal> {
        if !state.is_shared() || self.is_allowed(ip) {
            return Ok(None);
        }
        let unavailable = Refusal {
            reply: reply::CONNECTION_STATE_UNAVAILABLE,
            limit: Limit::StateUnavailable,
        };
        if let Some((rate, burst)) = self.rate_config {
            match state.rate(&format!("connections/{ip}"), rate, burst).await {
                RateOutcome::Allowed => {}
                RateOutcome::Exceeded => {
                    return Err(Refusal {
                        reply: self.replies.rate.clone(),
                        limit: Limit::ConnectionRate,
                    });
                }
                RateOutcome::Unavailable => return Err(unavailable),
            }
        }
        if self.max_per_ip == 0 && self.max_per_network == 0 {
            return Ok(None);
        }
        let (network, ip) = (network_of(ip).to_string(), ip.to_string());
        let max = (self.max_per_ip, self.max_per_network);
        match state.acquire_session(&network, &ip, id, lease, max).await {
            SlotOutcome::Granted { leased: false } => Ok(None),
            SlotOutcome::Granted { leased: true } => Ok(Some(SharedTicket {
                place: Some(Place {
                    state: state.clone(),
                    network,
                    ip,
                    id: id.to_string(),
                }),
            })),
            SlotOutcome::Full(full) => Err(Refusal {
                reply: self.replies.concurrency.clone(),
                limit: match full {
                    Full::Ip => Limit::SessionsPerIp,
                    Full::Network => Limit::SessionsPerNetwork,
                },
            }),
            SlotOutcome::Unavailable => Err(unavailable),
        }
    }

    /// Forgets rate-limiter state that has fully replenished (bounded memory).
    pub fn housekeeping(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some((ip, net)) = self.counted else {
            return;
        };
        // Remove entries that reach zero so the maps only hold clients that are connected.
        fn release<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, usize>>, key: &K) {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        release(&self.admission.per_ip, &ip);
        release(&self.admission.per_network, &net);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConnectionsConfig {
        ConnectionsConfig {
            max_per_ip: 2,
            max_per_network: 3,
            rate_per_minute: 0,
            ..ConnectionsConfig::default()
        }
    }

    #[test]
    fn concurrency_per_ip_and_network_is_released_on_drop() {
        let a = Arc::new(Admission::new(&config()));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let t1 = a.admit(ip("192.0.2.1")).expect("1");
        let _t2 = a.admit(ip("192.0.2.1")).expect("2");
        assert_eq!(
            a.admit(ip("192.0.2.1")).err().map(|r| r.limit),
            Some(Limit::SessionsPerIp)
        );
        let _t3 = a.admit(ip("192.0.2.9")).expect("3, same /24");
        assert_eq!(
            a.admit(ip("192.0.2.10")).err().map(|r| r.limit),
            Some(Limit::SessionsPerNetwork)
        );
        assert!(a.admit(ip("198.51.100.1")).is_ok(), "other network");
        drop(t1);
        assert!(a.admit(ip("192.0.2.1")).is_ok(), "a slot was released");
        assert_eq!(
            network_of(ip("2001:db8:1:2:3::4")),
            "2001:db8:1:2::/64".parse::<IpNet>().expect("net")
        );
    }

    #[test]
    fn lists_and_rate() {
        let mut c = config();
        c.allow = vec!["10.0.0.0/8".parse().expect("net")];
        c.deny = vec![
            "203.0.113.0/24".parse().expect("net"),
            "10.9.0.0/16".parse().expect("net"),
        ];
        c.rate_per_minute = 2;
        c.rate_burst = 2;
        let a = Arc::new(Admission::new(&c));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            a.admit(ip("203.0.113.5")).err().map(|r| r.reply),
            Some(reply::CONNECTION_DENIED)
        );
        // The allow list wins over the deny list and skips every limit.
        let held: Vec<_> = (0..10)
            .map(|_| a.admit(ip("10.9.1.1")).expect("allowed"))
            .collect();
        assert_eq!(held.len(), 10);
        assert!(a.admit(ip("198.51.100.7")).is_ok());
        assert!(a.admit(ip("198.51.100.7")).is_ok());
        assert_eq!(
            a.admit(ip("198.51.100.7")).err().map(|r| r.limit),
            Some(Limit::ConnectionRate)
        );
    }
}
