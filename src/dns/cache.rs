//! The DNS record cache handed to mail-auth, with the metrics of every lookup.
//!
//! Owns: bounded per-type caches (mail-auth's parsed TXT; raw TXT, MX, A, AAAA, PTR for our
//! own lookups in `lookup.rs`) of records with their
//! expiry clamped to `dns.min_ttl`..`dns.max_ttl`, and the counters
//! `portcullis_dns_cache_lookups_total{type,result=hit|miss}` (a miss is a query on the wire)
//! and `portcullis_dns_answers_total{type,outcome=ok|nxdomain|nodata}`. A miss without an
//! answer is a query that failed (timeout, SERVFAIL): mail-auth reports it as `temperror`.

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

/// One record type's cache.
pub struct TypeCache<K, V> {
    kind: &'static str,
    map: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
    min_ttl: Duration,
    max_ttl: Duration,
    metrics: Arc<Metrics>,
}

/// What an answer was, for the metric.
pub trait Outcome {
    /// `ok`, `nxdomain` or `nodata`.
    fn outcome(&self) -> &'static str;
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
        let now = Instant::now();
        let until = valid_until.clamp(now + self.min_ttl, now + self.max_ttl);
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
                metrics: metrics.clone(),
            }
        }
        Cache {
            txt: cache("TXT", config, &metrics),
            raw_txt: cache("TXT", config, &metrics),
            a: cache("A", config, &metrics),
            aaaa: cache("AAAA", config, &metrics),
            mx: cache("MX", config, &metrics),
            ptr: cache("PTR", config, &metrics),
        }
    }

    /// Raw TXT answers (`lookup.rs`).
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
