//! Our own lookups for the checks whose logic is ours (SPF, DMARC): TXT as raw strings (every
//! record apart, so a check can tell one record from two), A, AAAA, MX and PTR, each answer
//! kept apart from a failure.
//!
//! Owns: the `Resolve` interface (one async method per record type, answering `Answer` or
//! `LookupError`), its cached implementation on `Dns` (the per-type caches of `cache.rs`, so
//! the DNS metrics count these lookups too) and an uncached one (`Uncached`, for tests that
//! check the cache changes nothing). Names are queried fully qualified (a final dot is added),
//! so the resolver's search list never applies. Must not: interpret records (the checks do).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::dns::ResolverCache;
use mail_auth::hickory_resolver::lookup::Lookup;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::{Name, RData};

use crate::dns::Dns;
use crate::dns::cache::{Outcome, TypeCache};

/// What the DNS answered for one name and type.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<T> {
    /// At least one record (after following CNAMEs).
    Records(Arc<[T]>),
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// The name exists but has no record of this type (NOERROR, empty answer).
    NoData,
}

impl<T> Clone for Answer<T> {
    fn clone(&self) -> Self {
        match self {
            Answer::Records(r) => Answer::Records(r.clone()),
            Answer::NxDomain => Answer::NxDomain,
            Answer::NoData => Answer::NoData,
        }
    }
}

impl<T> Answer<T> {
    /// The records, empty for NXDOMAIN and NODATA.
    pub fn records(&self) -> &[T] {
        match self {
            Answer::Records(r) => r,
            Answer::NxDomain | Answer::NoData => &[],
        }
    }

    /// True when there is no record (NXDOMAIN or NODATA): a "void lookup" (RFC 7208 §4.6.4).
    pub fn is_void(&self) -> bool {
        self.records().is_empty()
    }
}

impl<T> Outcome for Answer<T> {
    fn outcome(&self) -> &'static str {
        match self {
            Answer::Records(_) => "ok",
            Answer::NxDomain => "nxdomain",
            Answer::NoData => "nodata",
        }
    }
}

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name cannot be put in a query (an empty or over-long label, over 253 bytes).
    #[error("not a valid DNS name")]
    InvalidName,
    /// The query failed: timeout, SERVFAIL, REFUSED, a malformed answer.
    #[error("DNS query failed: {0}")]
    Failed(String),
}

/// One lookup's result.
pub type LookupResult<T> = Result<Answer<T>, LookupError>;

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// The preference (lower first).
    pub preference: u16,
    /// The exchange, lowercased, without the final dot (empty for the null MX `.`).
    pub exchange: Box<str>,
}

/// The lookups a check can make. `Dns` answers from its cache; `Uncached` always asks.
pub trait Resolve: Sync {
    /// The TXT records of `name`, each record's character-strings concatenated.
    fn txt(&self, name: &str) -> impl Future<Output = LookupResult<Box<[u8]>>> + Send;
    /// The A records of `name`.
    fn a(&self, name: &str) -> impl Future<Output = LookupResult<Ipv4Addr>> + Send;
    /// The AAAA records of `name`.
    fn aaaa(&self, name: &str) -> impl Future<Output = LookupResult<Ipv6Addr>> + Send;
    /// The MX records of `name`, by ascending preference.
    fn mx(&self, name: &str) -> impl Future<Output = LookupResult<MxHost>> + Send;
    /// The PTR names of `ip`, lowercased, without the final dot.
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = LookupResult<Box<str>>> + Send;
}

/// The fully qualified query name, or `InvalidName`. An ASCII name's labels go on the wire
/// as they are, whatever their bytes (RFC 2181 §11: SPF targets may hold `:`, `/`, `%` or
/// spaces, RFC 7208 §7.1); a non-ASCII one is IDNA-encoded.
fn query_name(name: &str) -> Result<Name, LookupError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    if !valid {
        return Err(LookupError::InvalidName);
    }
    let parsed = if name.is_ascii() {
        Name::from_labels(name.split('.').map(str::as_bytes))
    } else {
        Name::from_str_relaxed(format!("{name}."))
    };
    parsed.map_err(|_| LookupError::InvalidName)
}

/// A name from an answer: its labels' bytes as they are (no `\` escapes), lowercased,
/// joined by dots, without the final dot.
fn answer_name(name: &Name) -> Box<str> {
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect();
    labels.join(".").into()
}

/// A negative answer, with how long it may be cached (None: not at all).
type Negative = (ResponseCode, Option<Duration>);

/// Maps a failed lookup: a negative answer, or a failure.
fn classify(err: NetError) -> Result<Negative, LookupError> {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(no)) => Ok((
            no.response_code,
            no.negative_ttl.map(|t| Duration::from_secs(u64::from(t))),
        )),
        other => Err(LookupError::Failed(other.to_string())),
    }
}

/// One query on the wire, its records mapped by `pick`, with the time it may be kept.
async fn query<T>(
    run: impl Future<Output = Result<Lookup, NetError>>,
    pick: fn(&RData) -> Option<T>,
) -> Result<(Answer<T>, Option<Instant>), LookupError> {
    match run.await {
        Ok(lookup) => {
            let records: Vec<T> = lookup
                .answers()
                .iter()
                .filter_map(|r| pick(&r.data))
                .collect();
            let answer = if records.is_empty() {
                Answer::NoData
            } else {
                Answer::Records(records.into())
            };
            Ok((answer, Some(lookup.valid_until())))
        }
        Err(err) => {
            let (code, ttl) = classify(err)?;
            let answer = if code == ResponseCode::NXDomain {
                Answer::NxDomain
            } else {
                Answer::NoData
            };
            Ok((answer, ttl.map(|t| Instant::now() + t)))
        }
    }
}

fn pick_txt(data: &RData) -> Option<Box<[u8]>> {
    let RData::TXT(txt) = data else { return None };
    Some(
        txt.txt_data
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect(),
    )
}

fn pick_a(data: &RData) -> Option<Ipv4Addr> {
    match data {
        RData::A(a) => Some(a.0),
        _ => None,
    }
}

fn pick_aaaa(data: &RData) -> Option<Ipv6Addr> {
    match data {
        RData::AAAA(a) => Some(a.0),
        _ => None,
    }
}

fn pick_mx(data: &RData) -> Option<MxHost> {
    match data {
        RData::MX(mx) => Some(MxHost {
            preference: mx.preference,
            exchange: answer_name(&mx.exchange),
        }),
        _ => None,
    }
}

fn pick_ptr(data: &RData) -> Option<Box<str>> {
    match data {
        RData::PTR(p) if !p.0.is_root() => Some(answer_name(&p.0)),
        _ => None,
    }
}

/// MX answers sorted by preference (stable: the DNS order within one preference).
fn sort_mx(answer: Answer<MxHost>) -> Answer<MxHost> {
    match answer {
        Answer::Records(r) => {
            let mut v = r.to_vec();
            v.sort_by_key(|m| m.preference);
            Answer::Records(v.into())
        }
        other => other,
    }
}

/// Looks `key` up in `cache`, or queries with `run` and stores the answer (a negative one only
/// when it came with an SOA, for its negative TTL capped at `negative_max`).
async fn cached<K, T, F>(
    cache: Option<&TypeCache<K, Answer<T>>>,
    key: K,
    negative_max: Duration,
    run: F,
) -> LookupResult<T>
where
    K: std::hash::Hash + Eq,
    F: Future<Output = Result<(Answer<T>, Option<Instant>), LookupError>>,
{
    if let Some(hit) = cache.and_then(|c| c.get(&key)) {
        return Ok(hit);
    }
    let (answer, until) = run.await?;
    if let (Some(cache), Some(until)) = (cache, until) {
        let until = match answer {
            Answer::Records(_) => until,
            _ => until.min(Instant::now() + negative_max),
        };
        cache.insert(key, answer.clone(), until);
    }
    Ok(answer)
}

/// The lookups of `dns`, through its cache or not.
async fn txt(dns: &Dns, name: &str, use_cache: bool) -> LookupResult<Box<[u8]>> {
    let query_name = query_name(name)?;
    let resolver = dns.authenticator().resolver();
    let cache = use_cache.then(|| dns.cache().raw_txt());
    cached(
        cache,
        key(name),
        dns.negative_max_ttl(),
        query(resolver.txt_lookup(query_name), pick_txt),
    )
    .await
}

async fn a(dns: &Dns, name: &str, use_cache: bool) -> LookupResult<Ipv4Addr> {
    let query_name = query_name(name)?;
    let resolver = dns.authenticator().resolver();
    let cache = use_cache.then(|| dns.cache().a());
    cached(
        cache,
        key(name),
        dns.negative_max_ttl(),
        query(resolver.ipv4_lookup(query_name), pick_a),
    )
    .await
}

async fn aaaa(dns: &Dns, name: &str, use_cache: bool) -> LookupResult<Ipv6Addr> {
    let query_name = query_name(name)?;
    let resolver = dns.authenticator().resolver();
    let cache = use_cache.then(|| dns.cache().aaaa());
    cached(
        cache,
        key(name),
        dns.negative_max_ttl(),
        query(resolver.ipv6_lookup(query_name), pick_aaaa),
    )
    .await
}

async fn mx(dns: &Dns, name: &str, use_cache: bool) -> LookupResult<MxHost> {
    let query_name = query_name(name)?;
    let resolver = dns.authenticator().resolver();
    let cache = use_cache.then(|| dns.cache().mx());
    cached(
        cache,
        key(name),
        dns.negative_max_ttl(),
        query(resolver.mx_lookup(query_name), pick_mx),
    )
    .await
    .map(sort_mx)
}

async fn ptr(dns: &Dns, ip: IpAddr, use_cache: bool) -> LookupResult<Box<str>> {
    let resolver = dns.authenticator().resolver();
    let cache = use_cache.then(|| dns.cache().ptr_names());
    cached(
        cache,
        ip,
        dns.negative_max_ttl(),
        query(resolver.reverse_lookup(Name::from(ip)), pick_ptr),
    )
    .await
}

/// The cache key of a name: lowercased, without the final dot.
fn key(name: &str) -> Box<str> {
    name.strip_suffix('.')
        .unwrap_or(name)
        .to_ascii_lowercase()
        .into()
}

impl Resolve for Dns {
    async fn txt(&self, name: &str) -> LookupResult<Box<[u8]>> {
        txt(self, name, true).await
    }
    async fn a(&self, name: &str) -> LookupResult<Ipv4Addr> {
        a(self, name, true).await
    }
    async fn aaaa(&self, name: &str) -> LookupResult<Ipv6Addr> {
        aaaa(self, name, true).await
    }
    async fn mx(&self, name: &str) -> LookupResult<MxHost> {
        mx(self, name, true).await
    }
    async fn ptr(&self, ip: IpAddr) -> LookupResult<Box<str>> {
        ptr(self, ip, true).await
    }
}

/// The same lookups with no cache at all (every call is a query).
pub struct Uncached<'a>(pub &'a Dns);

impl Resolve for Uncached<'_> {
    async fn txt(&self, name: &str) -> LookupResult<Box<[u8]>> {
        txt(self.0, name, false).await
    }
    async fn a(&self, name: &str) -> LookupResult<Ipv4Addr> {
        a(self.0, name, false).await
    }
    async fn aaaa(&self, name: &str) -> LookupResult<Ipv6Addr> {
        aaaa(self.0, name, false).await
    }
    async fn mx(&self, name: &str) -> LookupResult<MxHost> {
        mx(self.0, name, false).await
    }
    async fn ptr(&self, ip: IpAddr) -> LookupResult<Box<str>> {
        ptr(self.0, ip, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_queried_are_refused_before_the_wire() {
        assert!(query_name("example.com").is_ok());
        assert!(query_name("example.com.").is_ok());
        // 253 characters (255 octets on the wire): the longest name there is.
        assert!(query_name(&"a.".repeat(127)).is_ok());
        for bad in [
            "",
            ".",
            "a..b",
            &format!("{}.com", "x".repeat(64)),
            &format!("{}a", "a.".repeat(127)),
        ] {
            assert_eq!(
                query_name(bad).err(),
                Some(LookupError::InvalidName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_keep_their_bytes_both_ways() {
        let name = query_name("foo:bar/baz.Example.com").unwrap();
        assert!(name.is_fqdn());
        assert_eq!(name.iter().next(), Some(&b"foo:bar/baz"[..]));
        assert_eq!(&*answer_name(&name), "foo:bar/baz.example.com");
        let spaced = query_name("macro%percent  space%20url-space.example.com").unwrap();
        assert_eq!(
            &*answer_name(&spaced),
            "macro%percent  space%20url-space.example.com"
        );
        assert_eq!(
            &*answer_name(&query_name("mail.example.com.").unwrap()),
            "mail.example.com"
        );
        // Non-ASCII names are still IDNA-encoded.
        let idn = query_name("bücher.example").unwrap();
        assert_eq!(&*answer_name(&idn), "xn--bcher-kva.example");
    }

    #[test]
    fn keys_ignore_case_and_the_final_dot() {
        assert_eq!(key("Example.COM."), key("example.com"));
    }

    #[test]
    fn void_answers_have_no_records() {
        assert!(Answer::<u8>::NxDomain.is_void());
        assert!(Answer::<u8>::NoData.is_void());
        assert!(!Answer::Records(Arc::from(vec![1u8])).is_void());
    }
}
