//! The DNS record cache of the process, with the metrics of every lookup: the one handed to
//! mail-auth (DKIM and ARC keys) and the one our own lookups use (`lookup.rs`: SPF, DMARC).
//!
//! Owns: bounded per-type caches (mail-auth's parsed TXT; raw TXT, MX, A, AAAA, PTR for our
//! own lookups) of records with their expiry clamped to `dns.min_ttl`..`dns.max_ttl`, and a
//! negative answer's never past `dns.negative_max_ttl` (not even when `min_ttl` is longer);
//! an expiry too far off to be represented is left as the answer gave it. The bounds are in
//! entries (`dns.cache_size` per type) and, for the raw TXT answers, in bytes too: an
//! answer whose records hold more than `MAX_CACHED_TXT_BYTES` (4 KiB) in all is counted but
//! not kept, so that the raw TXT cache stays near `cache_size` × 4 KiB (a TXT answer can
//! be 64 KiB). The counters: `portcullis_dns_cache_lookups_total{type,result=hit|miss}` (a
//! miss is a query on the wire) and `portcullis_dns_answers_total{type,outcome=ok|nxdomain|
//! nodata}`. A miss without an answer is a query that failed (timeout, SERVFAIL), which
//! the check that asked (ours or mail-auth) reports as `temperror`. Must not: query.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::dns::{DnsCache, Negative, RecordSet, ResolverCache, TxtRecord};
use mail_auth::hickory_resolver::proto::op::ResponseCode;

use crate::config::schema::DnsConfig;
use crate::dns::lookup::{Answer, MxHost};
use crate::metrics::{Event, Metrics};

/// The most bytes of records (each TXT record's strings joined) one raw TXT answer may
/// hold to be cached. SPF and DMARC records are far shorter; a larger answer is looked up
/// again each time it is needed.
pub const MAX_CACHED_TXT_BYTES: usize = 4096;

/// One record type's cache.
pub struct TypeCache<K, V> {
    kind: &'static str,
    map: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
    min_ttl: Duration,
    max_ttl: Duration,
    negative_max_ttl: Duration,
    /// An answer too large to keep.
    too_big: fn(&V) -> bool,
    metrics: Arc<Metrics>,
}

/// What an answer was, for the metric.
pub trait Outcome {
    /// `ok`, `nxdomain` or `nodata`.
    fn outcome(&self) -> &'static str;

    /// True for NXDOMAIN and NODATA: kept at most `dns.negative_max_ttl`.
    fn is_negative(&self) -> bool {
        self.outcome() != "ok"
    }
}

fn never<V>(_: &V) -> bool {
    false
}

/// A raw TXT answer over `MAX_CACHED_TXT_BYTES`.
fn txt_over_bound(answer: &Answer<Box<[u8]>>) -> bool {
    answer.records().iter().map(|r| r.len()).sum::<usize>() > MAX_CACHED_TXT_BYTES
}

fn negative(code: ResponseCode) -> &'static str {
    if code == ResponseCode::NXDomain {
        "nxdomain"
    } else {
        "nodata"
    }
}

impl<T> Outcome for Result<RecordSet<T>, Negative> {
    fn outcome(&self) -> &'static str {
        match self {
            Ok(_) => "ok",
            Err(n) => negative(n.code),
        }
    }
}

impl Outcome for TxtRecord {
    fn outcome(&self) -> &'static str {
        match self {
            TxtRecord::Error(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code))) => {
                negative(*code)
            }
            _ => "ok",
        }
    }
}

impl<K: Hash + Eq, V: Clone + Outcome> ResolverCache<K, V> for TypeCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let found = self.map.lock().ok().and_then(|map| {
            map.get(name)
                .filter(|(_, until)| *until > now)
                .map(|(v, _)| v.clone())
        });
        let result = if found.is_some() { "hit" } else { "miss" };
        self.metrics.emit(Event::DnsLookup {
            kind: self.kind,
            result,
        });
        found
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.lock().ok()?.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.metrics.emit(Event::DnsAnswer {
            kind: self.kind,
            outcome: value.outcome(),
        });
        if (self.too_big)(&value) {
            return;
        }
        let until = self.expiry(valid_until, value.is_negative());
        let now = Instant::now();
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= self.capacity {
            // Bounded: drop what has expired, and if that is not enough, start afresh.
            map.retain(|_, (_, t)| *t > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, until));
    }
}

impl<K, V> TypeCache<K, V> {
    /// `valid_until` clamped to `min_ttl`..`max_ttl` from now, and for a negative answer to
    /// `negative_max_ttl` after that. A bound past what an `Instant` holds does not apply.
    fn expiry(&self, valid_until: Instant, negative: bool) -> Instant {
        let now = Instant::now();
        let mut until = valid_until;
        if let Some(ceiling) = now.checked_add(self.max_ttl) {
            until = until.min(ceiling);
        }
        if let Some(floor) = now.checked_add(self.min_ttl) {
            until = until.max(floor);
        }
        if negative && let Some(ceiling) = now.checked_add(self.negative_max_ttl) {
            until = until.min(ceiling);
        }
        until
    }
}

/// The caches of every record type looked up: mail-auth's parsed TXT records (DKIM and ARC
/// keys), and the raw answers of our own lookups (`lookup.rs`: SPF, DMARC).
pub struct Cache {
    txt: TypeCache<Box<str>, TxtRecord>,
    raw_txt: TypeCache<Box<str>, Answer<Box<[u8]>>>,
    a: TypeCache<Box<str>, Answer<Ipv4Addr>>,
    aaaa: TypeCache<Box<str>, Answer<Ipv6Addr>>,
    mx: TypeCache<Box<str>, Answer<MxHost>>,
    ptr: TypeCache<IpAddr, Answer<Box<str>>>,
}

impl Cache {
    /// Empty caches sized and bounded by `config`.
    pub fn new(config: &DnsConfig, metrics: Arc<Metrics>) -> Self {
        fn cache<K, V>(
            kind: &'static str,
            config: &DnsConfig,
            metrics: &Arc<Metrics>,
        ) -> TypeCache<K, V> {
            TypeCache {
                kind,
                map: Mutex::new(HashMap::new()),
                capacity: config.cache_size.max(1),
                min_ttl: config.min_ttl,
                max_ttl: config.max_ttl.max(config.min_ttl),
                negative_max_ttl: config.negative_max_ttl.min(config.max_ttl),
                too_big: never,
                metrics: metrics.clone(),
            }
        }
        Cache {
            txt: cache("TXT", config, &metrics),
            raw_txt: TypeCache {
                too_big: txt_over_bound,
                ..cache("TXT", config, &metrics)
            },
            a: cache("A", config, &metrics),
            aaaa: cache("AAAA", config, &metrics),
            mx: cache("MX", config, &metrics),
            ptr: cache("PTR", config, &metrics),
        }
    }

    /// Raw TXT answers (`lookup.rs`); one over `MAX_CACHED_TXT_BYTES` is not kept.
    pub fn raw_txt(&self) -> &TypeCache<Box<str>, Answer<Box<[u8]>>> {
        &self.raw_txt
    }

    /// A answers.
    pub fn a(&self) -> &TypeCache<Box<str>, Answer<Ipv4Addr>> {
        &self.a
    }

    /// AAAA answers.
    pub fn aaaa(&self) -> &TypeCache<Box<str>, Answer<Ipv6Addr>> {
        &self.aaaa
    }

    /// MX answers.
    pub fn mx(&self) -> &TypeCache<Box<str>, Answer<MxHost>> {
        &self.mx
    }

    /// PTR answers.
    pub fn ptr_names(&self) -> &TypeCache<IpAddr, Answer<Box<str>>> {
        &self.ptr
    }
}

/// mail-auth looks up only TXT records now (DKIM and ARC keys); the other types it could ask
/// for go through our own lookups, so it gets no cache for them.
type Unused<K, V> = TypeCache<K, Result<RecordSet<V>, Negative>>;

impl DnsCache for Cache {
    type Txt = TypeCache<Box<str>, TxtRecord>;
    type Mx = Unused<Box<str>, mail_auth::dns::Mx>;
    type Ipv4 = Unused<Box<str>, Ipv4Addr>;
    type Ipv6 = Unused<Box<str>, Ipv6Addr>;
    type Ptr = Unused<IpAddr, Box<str>>;

    fn txt(&self) -> Option<&Self::Txt> {
        Some(&self.txt)
    }

    fn mx(&self) -> Option<&Self::Mx> {
        None
    }

    fn ipv4(&self) -> Option<&Self::Ipv4> {
        None
    }

    fn ipv6(&self) -> Option<&Self::Ipv6> {
        None
    }

    fn ptr(&self) -> Option<&Self::Ptr> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches(config: &DnsConfig) -> Cache {
        Cache::new(config, Arc::new(Metrics::new()))
    }

    fn txt(bytes: &[usize]) -> Answer<Box<[u8]>> {
        Answer::Records(bytes.iter().map(|&n| vec![b'x'; n].into()).collect())
    }

    fn until<K: Hash + Eq, V>(cache: &TypeCache<K, V>, key: &K) -> Option<Instant> {
        cache.map.lock().unwrap().get(key).map(|(_, t)| *t)
    }

    #[test]
    fn raw_txt_answers_over_4_kib_are_not_kept() {
        let cache = caches(&DnsConfig::default());
        let raw = cache.raw_txt();
        let later = Instant::now() + Duration::from_secs(60);
        raw.insert("small".into(), txt(&[100, 200]), later);
        raw.insert("exact".into(), txt(&[MAX_CACHED_TXT_BYTES - 10, 10]), later);
        // Over the bound in all, though each record is under it.
        raw.insert("large".into(), txt(&[3000, 3000]), later);
        raw.insert("huge".into(), txt(&[65_000]), later);
        assert!(raw.get("small").is_some());
        assert!(raw.get("exact").is_some());
        assert!(raw.get("large").is_none());
        assert!(raw.get("huge").is_none());
        // Negative answers have no records: always kept.
        raw.insert("nx".into(), Answer::NxDomain, later);
        assert_eq!(raw.get("nx"), Some(Answer::NxDomain));
    }

    #[test]
    fn absurd_ttls_do_not_panic() {
        let config = DnsConfig {
            min_ttl: Duration::MAX,
            max_ttl: Duration::MAX,
            negative_max_ttl: Duration::MAX,
            ..DnsConfig::default()
        };
        let cache = caches(&config);
        let later = Instant::now() + Duration::from_secs(60);
        cache.a().insert("a".into(), Answer::NoData, later);
        cache.a().insert(
            "b".into(),
            Answer::Records(Arc::from(vec![Ipv4Addr::LOCALHOST])),
            later,
        );
        // The bounds cannot be represented: the answer's own expiry stands.
        assert_eq!(until(cache.a(), &"a".into()), Some(later));
        assert_eq!(until(cache.a(), &"b".into()), Some(later));
    }

    #[test]
    fn min_ttl_never_lifts_a_negative_answer_past_negative_max_ttl() {
        let config = DnsConfig {
            min_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(7200),
            negative_max_ttl: Duration::from_secs(300),
            ..DnsConfig::default()
        };
        let cache = caches(&config);
        let soon = Instant::now() + Duration::from_secs(1);
        cache.a().insert("nx".into(), Answer::NxDomain, soon);
        cache.a().insert("nodata".into(), Answer::NoData, soon);
        let ok = Answer::Records(Arc::from(vec![Ipv4Addr::LOCALHOST]));
        cache.a().insert("ok".into(), ok, soon);
        let bound = Instant::now() + Duration::from_secs(300);
        for negative in ["nx", "nodata"] {
            let t = until(cache.a(), &negative.into()).unwrap();
            assert!(t <= bound, "{negative}");
            assert!(
                t > soon,
                "{negative}: min_ttl still lifts it up to negative_max_ttl"
            );
        }
        // A positive answer is lifted to min_ttl.
        let t = until(cache.a(), &"ok".into()).unwrap();
        assert!(t > Instant::now() + Duration::from_secs(3500));
    }
}
