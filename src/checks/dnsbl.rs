//! DNS block and allow lists (DNSBL/DNSWL, RFC 5782) of the client address at connect: every
//! configured zone is asked at once, through the shared resolver and its cache (`dns/cache.rs`:
//! an answer is kept for its TTL, a negative one for its SOA minimum), each within
//! `dnsbl.timeout`.
//!
//! Facts: `dnsbl.listed` (one per block zone that lists the client), `dnsbl.score` (the summed
//! weights of those zones), `dnswl.listed` (one per allow zone that lists the client) and
//! `dnsbl.error` (one per zone that answered with an error code, RFC 5782 §2.1 / Spamhaus
//! 127.255.255.x). An error answer is never a listing. Every client is looked up, loopback
//! and private ones included (operators should not list RFC 1918 clients).
//! Must not: judge (policy decides what a listing costs), open its own DNS sockets, or keep
//! answers of its own.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::code_range::CodeRange;
use crate::config::schema::{DnsblConfig, DnsblZoneConfig, ZoneKind};
use crate::dns::Dns;
use crate::dns::lookup::{Answer, Resolve};
use crate::metrics::{DnsblResult, Event, Metrics};
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, Deferred, Stage};

/// The name to ask for `ip` in `zone` (RFC 5782 §2.1, §2.4): the IPv4 octets reversed
/// (`2.0.0.127.zone.`), or the 32 nibbles of an IPv6 address reversed. IPv4-mapped IPv6
/// addresses are asked in their IPv4 form. Absolute (final dot): no search domains.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}.")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len() + 1);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name.push_str(zone);
            name.push('.');
            name
        }
    }
}

/// True for answers that report a problem with the query instead of a listing: anything
/// outside 127.0.0.0/8, and 127.255.255.0/24 (Spamhaus: 127.255.255.254 for queries through
/// public resolvers, .255 for excessive volume, .252 for a malformed query).
pub fn is_error_code(code: Ipv4Addr) -> bool {
    let [a, b, c, _] = code.octets();
    a != 127 || (b == 255 && c == 255)
}

/// What the A records of one answer mean for a zone whose listing codes are `codes` (`None`:
/// any code that is not an error code). An error code anywhere makes the answer an error.
pub fn classify(answer: &[Ipv4Addr], codes: Option<&[CodeRange]>) -> DnsblResult {
    if answer.iter().any(|c| is_error_code(*c)) {
        return DnsblResult::ErrorAnswer;
    }
    let listed = answer.iter().any(|code| match codes {
        None => true,
        Some(ranges) => ranges.iter().any(|r| r.contains(*code)),
    });
    if listed {
        DnsblResult::Listed
    } else {
        DnsblResult::Clean
    }
}

/// One configured zone, codes parsed.
pub(crate) struct Zone {
    pub(crate) zone: String,
    weight: u64,
    codes: Option<Vec<CodeRange>>,
    allow: bool,
}

impl Zone {
    pub(crate) fn new(config: &DnsblZoneConfig) -> Self {
        let codes = (!config.codes.is_empty()).then(|| config.codes.clone());
        Zone {
            zone: config.zone.trim_end_matches('.').to_ascii_lowercase(),
            weight: config.weight,
            codes,
            allow: config.allow,
        }
    }
}

/// The DNSBL/DNSWL check.
pub struct DnsblCheck {
    inner: Arc<Lists>,
}

/// What the lookups need, shared with the tasks that run them.
struct Lists {
    dns: Arc<Dns>,
    zones: Vec<Zone>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// The facts the check reports.
const FACTS: &[&FactDef] = &[
    &facts::DNSBL_LISTED,
    &facts::DNSWL_LISTED,
    &facts::DNSBL_ERROR,
    &facts::DNSBL_SCORE,
];

impl DnsblCheck {
    /// A check of the zones of `config` on the shared resolver; their metric series are
    /// created here (lookups at 0, each zone assumed healthy until a lookup says otherwise).
    pub fn new(config: &DnsblConfig, dns: Arc<Dns>, metrics: Arc<Metrics>) -> Self {
        let zones: Vec<Zone> = config
            .zones
            .iter()
            .filter(|z| z.kind == ZoneKind::Ip)
            .map(Zone::new)
            .collect();
        for zone in &zones {
            metrics.emit(Event::DnsblZoneConfigured {
                zone: zone.zone.clone(),
            });
        }
        DnsblCheck {
            inner: Arc::new(Lists {
                dns,
                zones,
                timeout: config.timeout,
                metrics,
            }),
        }
    }

    /// True when no IP zone is configured (only domain zones).
    pub fn is_empty(&self) -> bool {
        self.inner.zones.is_empty()
    }
}

impl Lists {
    /// Asks one zone about `ip`, within the timeout.
    async fn lookup(&self, zone: &Zone, ip: IpAddr) -> DnsblResult {
        ask(&self.dns, zone, &query_name(ip, &zone.zone), self.timeout).await
    }

    /// Every zone at once; the facts.
    async fn all(&self, ip: IpAddr) -> Vec<Fact> {
        let started = std::time::Instant::now();
        let results = join_all(self.zones.iter().map(|z| self.lookup(z, ip))).await;
        let mut facts = Vec::new();
        let mut score = 0u64;
        for (zone, result) in self.zones.iter().zip(results) {
            self.metrics.emit(Event::DnsblLookup {
                zone: zone.zone.clone(),
                result,
            });
            match (result, zone.allow) {
                (DnsblResult::Listed, false) => {
                    score = score.saturating_add(zone.weight);
                    facts.push(Fact::text(&facts::DNSBL_LISTED, zone.zone.clone()));
                }
                (DnsblResult::Listed, true) => {
                    facts.push(Fact::text(&facts::DNSWL_LISTED, zone.zone.clone()));
                }
                (DnsblResult::ErrorAnswer, _) => {
                    facts.push(Fact::text(&facts::DNSBL_ERROR, zone.zone.clone()));
                }
                (DnsblResult::Clean | DnsblResult::Failed, _) => {}
            }
        }
        facts.push(Fact::count(&facts::DNSBL_SCORE, score));
        self.metrics
            .check_finished("dnsbl_lookups", Stage::Connect, started.elapsed());
        facts
    }
}

/// Asks `zone` for the A records of `name` (already the full query name) within `timeout`,
/// through the shared cache, and classifies the answer.
pub(crate) async fn ask(dns: &Dns, zone: &Zone, name: &str, timeout: Duration) -> DnsblResult {
    match tokio::time::timeout(timeout, dns.a(name)).await {
        Ok(Ok(Answer::Records(codes))) => classify(&codes, zone.codes.as_deref()),
        // NXDOMAIN or NODATA: the zone does not list the address.
        Ok(Ok(Answer::NxDomain | Answer::NoData)) => DnsblResult::Clean,
        Ok(Err(_)) | Err(_) => DnsblResult::Failed,
    }
}

impl Check for DnsblCheck {
    fn name(&self) -> &'static str {
        "dnsbl"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        FACTS
    }

    /// The lookups start at connect and run beside the session: the banner waits for them
    /// only when a rule would act on their facts at CONNECT.
    fn start_at_connect(&self, ctx: CheckContext<'_>) -> Option<Deferred> {
        let (lists, ip) = (self.inner.clone(), ctx.session.client.ip());
        Some(Deferred {
            check: "dnsbl",
            facts: FACTS,
            task: tokio::spawn(async move { lists.all(ip).await }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv4_octets_are_reversed() {
        assert_eq!(query_name(ip("127.0.0.2"), "bl.test"), "2.0.0.127.bl.test.");
        assert_eq!(
            query_name(ip("192.0.2.99"), "zen.spamhaus.org."),
            "99.2.0.192.zen.spamhaus.org."
        );
        // An IPv4-mapped client is asked in its IPv4 form.
        assert_eq!(
            query_name(ip("::ffff:192.0.2.1"), "bl.test"),
            "1.2.0.192.bl.test."
        );
    }

    #[test]
    fn ipv6_nibbles_are_reversed() {
        // RFC 5782 §2.4's example.
        assert_eq!(
            query_name(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."
        );
        assert_eq!(
            query_name(ip("::1"), "bl.test"),
            format!("1.{}bl.test.", "0.".repeat(31))
        );
    }

    #[test]
    fn classification() {
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let only_2_3: [CodeRange; 1] = ["127.0.0.2-127.0.0.3".parse().expect("range")];
        assert_eq!(classify(&[a("127.0.0.2")], None), DnsblResult::Listed);
        assert_eq!(
            classify(&[a("127.0.0.2")], Some(&only_2_3)),
            DnsblResult::Listed
        );
        assert_eq!(
            classify(&[a("127.0.0.4")], Some(&only_2_3)),
            DnsblResult::Clean
        );
        assert_eq!(classify(&[], None), DnsblResult::Clean);
        for error in [
            "127.255.255.254",
            "127.255.255.252",
            "192.0.2.1",
            "10.0.0.2",
        ] {
            assert_eq!(classify(&[a(error)], None), DnsblResult::ErrorAnswer);
            // Never a hit, even beside a listing code.
            assert_eq!(
                classify(&[a("127.0.0.2"), a(error)], None),
                DnsblResult::ErrorAnswer
            );
        }
    }
}
