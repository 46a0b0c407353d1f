//! Our own lookups for the checks whose logic is ours (SPF, DMARC): TXT as raw strings (every
//! record apart, so a check can tell one record from two), A, AAAA, MX and PTR, each answer
//! kept apart from a failure.
//!
//! Owns: the `Resolve` interface (one async method per record type, answering `Answer` or
//! `LookupError`), implemented once (`lookup`) for `Dns` through the per-type caches of
//! `cache.rs` (so the DNS metrics count these lookups too) and for `Uncached` without them
//! (for tests that check the cache changes nothing); `queryable`, the one rule for which
//! names can be put in a query. Names are queried fully qualified (one final dot is dropped
//! and the root added), so the resolver's search list never applies. MX answers are sorted
//! by preference once, before they are cached. Must not: interpret records (the checks do),
//! or decide how long an answer is kept (`cache.rs`).

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::dns::ResolverCache;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::dns::Dns;
use crate::dns::cache::{Cache, Outcome, TypeCache};
use sealed::Via;

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
    /// The name cannot be put in a query (see `queryable`).
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

/// The lookups a check can make. `Dns` answers from its cache; `Uncached` always asks. A
/// name that is not `queryable` is `LookupError::InvalidName`, without a query.
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

/// Whether `name` can be put in a query: once one final dot (the root) is dropped, 1 to 253
/// bytes of labels that are each 1 to 63 bytes long. So `foo.com.`, but not `foo.com..`
/// (its last label is empty), `a..b` or `.`. Every check that asks itself whether a name
/// can be looked up asks this.
pub fn queryable(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// The fully qualified query name, or `InvalidName`. An ASCII name's labels go on the wire
/// as they are, whatever their bytes (RFC 2181 §11: SPF targets may hold `:`, `/`, `%` or
/// spaces, RFC 7208 §7.1); a non-ASCII one is IDNA-encoded.
fn query_name(name: &str) -> Result<Name, LookupError> {
    if !queryable(name) {
        return Err(LookupError::InvalidName);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
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

/// The cache key of a name: lowercased, without the final dot.
fn key(name: &str) -> Box<str> {
    name.strip_suffix('.')
        .unwrap_or(name)
        .to_ascii_lowercase()
        .into()
}

/// One record type of ours: what is asked, how an answer's records are read, where they
/// are cached.
trait Kind: Sized + Send + Sync + 'static {
    /// The query type.
    const TYPE: RecordType;
    /// What the cache is keyed by: the name (`key`), or the address of a PTR lookup.
    type Key: Hash + Eq + Send;
    /// This type's record in an answer (`None` for other types, CNAMEs among them).
    fn pick(data: &RData) -> Option<Self>;
    /// This type's cache.
    fn cache(cache: &Cache) -> &TypeCache<Self::Key, Answer<Self>>;
    /// Puts the records in their order, once, before they are cached (MX: by preference).
    fn order(_records: &mut [Self]) {}
}

impl Kind for Box<[u8]> {
    const TYPE: RecordType = RecordType::TXT;
    type Key = Box<str>;
    fn pick(data: &RData) -> Option<Self> {
        let RData::TXT(txt) = data else { return None };
        Some(
            txt.txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect(),
        )
    }
    fn cache(cache: &Cache) -> &TypeCache<Box<str>, Answer<Self>> {
        cache.raw_txt()
    }
}

impl Kind for Ipv4Addr {
    const TYPE: RecordType = RecordType::A;
    type Key = Box<str>;
    fn pick(data: &RData) -> Option<Self> {
        match data {
            RData::A(a) => Some(a.0),
            _ => None,
        }
    }
    fn cache(cache: &Cache) -> &TypeCache<Box<str>, Answer<Self>> {
        cache.a()
    }
}

impl Kind for Ipv6Addr {
    const TYPE: RecordType = RecordType::AAAA;
    type Key = Box<str>;
    fn pick(data: &RData) -> Option<Self> {
        match data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        }
    }
    fn cache(cache: &Cache) -> &TypeCache<Box<str>, Answer<Self>> {
        cache.aaaa()
    }
}

impl Kind for MxHost {
    const TYPE: RecordType = RecordType::MX;
    type Key = Box<str>;
    fn pick(data: &RData) -> Option<Self> {
        match data {
            RData::MX(mx) => Some(MxHost {
                preference: mx.preference,
                exchange: answer_name(&mx.exchange),
            }),
            _ => None,
        }
    }
    fn cache(cache: &Cache) -> &TypeCache<Box<str>, Answer<Self>> {
        cache.mx()
    }
    /// Stable: the DNS order stays within one preference.
    fn order(records: &mut [Self]) {
        records.sort_by_key(|m| m.preference);
    }
}

impl Kind for Box<str> {
    const TYPE: RecordType = RecordType::PTR;
    type Key = IpAddr;
    fn pick(data: &RData) -> Option<Self> {
        match data {
            RData::PTR(p) if !p.0.is_root() => Some(answer_name(&p.0)),
            _ => None,
        }
    }
    fn cache(cache: &Cache) -> &TypeCache<IpAddr, Answer<Self>> {
        cache.ptr_names()
    }
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

/// When a negative answer kept for `ttl` expires; `None` (not cached) without an SOA, or
/// when the time cannot be represented.
fn negative_expiry(ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|t| Instant::now().checked_add(t))
}

/// One query of `T` for `name` on the wire, with the time its answer may be kept (`None`:
/// not at all). The cache clamps that time (`cache.rs`).
async fn query<T: Kind>(
    dns: &Dns,
    name: Name,
) -> Result<(Answer<T>, Option<Instant>), LookupError> {
    match dns.authenticator().resolver().lookup(name, T::TYPE).await {
        Ok(lookup) => {
            let mut records: Vec<T> = lookup
                .answers()
                .iter()
                .filter_map(|r| T::pick(&r.data))
                .collect();
            T::order(&mut records);
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
            Ok((answer, negative_expiry(ttl)))
        }
    }
}

/// The one lookup: `key` in `T`'s cache of `dns` when `cached`, else a query for `name`,
/// whose answer is then stored (a negative one only when it came with an SOA).
async fn lookup<T: Kind>(dns: &Dns, cached: bool, key: T::Key, name: Name) -> LookupResult<T> {
    let cache = cached.then(|| T::cache(dns.cache()));
    if let Some(hit) = cache.and_then(|c| c.get(&key)) {
        return Ok(hit);
    }
    let (answer, until) = query::<T>(dns, name).await?;
    if let (Some(cache), Some(until)) = (cache, until) {
        cache.insert(key, answer.clone(), until);
    }
    Ok(answer)
}

/// `lookup` of a name (not queried at all when it is not `queryable`).
async fn by_name<T: Kind<Key = Box<str>>>(via: &impl Via, name: &str) -> LookupResult<T> {
    let (dns, cached) = via.via();
    lookup(dns, cached, key(name), query_name(name)?).await
}

mod sealed {
    use crate::dns::Dns;

    /// What the lookups of a `Resolve` go to: a `Dns`, and whether through its cache.
    /// Sealed: `Dns` and `Uncached` are the only two.
    pub trait Via: Sync {
        /// The resolver, and whether its cache is used.
        fn via(&self) -> (&Dns, bool);
    }
}

/// The same lookups as `Dns` with no cache at all (every call is a query).
pub struct Uncached<'a>(pub &'a Dns);

impl Via for Dns {
    fn via(&self) -> (&Dns, bool) {
        (self, true)
    }
}

impl Via for Uncached<'_> {
    fn via(&self) -> (&Dns, bool) {
        (self.0, false)
    }
}

impl<V: Via> Resolve for V {
    async fn txt(&self, name: &str) -> LookupResult<Box<[u8]>> {
        by_name(self, name).await
    }
    async fn a(&self, name: &str) -> LookupResult<Ipv4Addr> {
        by_name(self, name).await
    }
    async fn aaaa(&self, name: &str) -> LookupResult<Ipv6Addr> {
        by_name(self, name).await
    }
    async fn mx(&self, name: &str) -> LookupResult<MxHost> {
        by_name(self, name).await
    }
    async fn ptr(&self, ip: IpAddr) -> LookupResult<Box<str>> {
        let (dns, cached) = self.via();
        lookup(dns, cached, ip, Name::from(ip)).await
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
            "..",
            "a..b",
            ".example.com",
            // One final dot is the root; a second leaves an empty last label. It is not
            // stripped too, as if `foo.com..` were `foo.com`.
            "foo.com..",
            &format!("{}.com", "x".repeat(64)),
            &format!("{}a", "a.".repeat(127)),
        ] {
            assert!(!queryable(bad), "{bad:?}");
            assert_eq!(
                query_name(bad).err(),
                Some(LookupError::InvalidName),
                "{bad:?}"
            );
        }
        assert!(queryable("foo.com.") && queryable("a") && queryable("_spf.x%20y.example"));
    }

    #[test]
    fn a_negative_ttl_past_what_an_instant_can_hold_is_not_cached() {
        assert!(negative_expiry(None).is_none());
        assert!(negative_expiry(Some(Duration::MAX)).is_none());
        assert!(negative_expiry(Some(Duration::from_secs(300))).is_some());
    }

    #[test]
    fn mx_records_are_ordered_by_preference_keeping_the_dns_order() {
        let mx = |preference, exchange: &str| MxHost {
            preference,
            exchange: exchange.into(),
        };
        let mut records = vec![mx(20, "b"), mx(10, "c"), mx(20, "a"), mx(10, "d")];
        MxHost::order(&mut records);
        let order: Vec<&str> = records.iter().map(|m| &*m.exchange).collect();
        assert_eq!(order, ["c", "d", "b", "a"]);
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
