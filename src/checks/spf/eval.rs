//! `check_host()` (RFC 7208 §4): one identity evaluated against the DNS through `Resolve`.
//!
//! Owns: the identity (`<sender>`, its local-part and domain; `postmaster` when there is no
//! local-part, §4.3; a malformed or single-label domain gives `none`), record lookup and
//! evaluation in order, `include` (§5.2 result table) and `redirect` (§6.1: only when no
//! mechanism matched; a target without a record is permerror), the mechanisms' matching (an IPv4
//! client, IPv4-mapped ones included, is matched only by IPv4 data, §5), the limits of
//! §4.6.4 (10 DNS-querying terms, 2 void lookups, 10 MX names, the first 10 PTR names) and
//! a bound on the time of one evaluation (`EVALUATION_TIMEOUT`, §4.6.4 "at least 20
//! seconds"). A DNS error is temperror, except where §5 says the mechanism just does not
//! match (`ptr`); a name that cannot be put in a query (an empty or over-long label, often
//! from a macro) matches nothing and is not a DNS error. Must not: parse records or expand
//! macros itself (`record.rs`, `macros.rs`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::time::Duration;

use super::macros::{MacroString, Vars};
use super::record::{self, DualCidr, Mechanism, Selection};
use super::result::{SpfOutput, SpfResult};
use crate::dns::lookup::{Answer, LookupError, LookupResult, Resolve};

/// DNS-querying terms (`include`, `a`, `mx`, `ptr`, `exists`, `redirect`) per evaluation.
const DNS_TERM_LIMIT: usize = 10;
/// Terms whose lookup found nothing (NXDOMAIN or NODATA) per evaluation.
const VOID_LOOKUP_LIMIT: usize = 2;
/// MX names one `mx` may have.
const MX_NAME_LIMIT: usize = 10;
/// PTR names considered by `ptr` and `%{p}`.
const PTR_NAME_LIMIT: usize = 10;
/// The longest one identity's evaluation may take: then temperror.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The arguments of `check_host()` that stay the same through includes and redirects.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    /// The client (an IPv4-mapped IPv6 address is turned into IPv4).
    ip: IpAddr,
    /// `<sender>`: `local@domain`.
    sender: String,
    local: String,
    /// The identity's domain: the first `<domain>`.
    domain: String,
    helo: &'a str,
}

impl<'a> Identity<'a> {
    /// The MAIL FROM identity; the null sender is `postmaster@<helo>` (RFC 7208 §2.4).
    pub fn mail_from(ip: IpAddr, helo: &'a str, mail_from: &str) -> Self {
        if mail_from.is_empty() {
            return Identity::helo(ip, helo);
        }
        let (local, domain) = mail_from.rsplit_once('@').unwrap_or(("", mail_from));
        Identity::new(ip, helo, local, domain)
    }

    /// The HELO identity: `postmaster@<helo>`.
    pub fn helo(ip: IpAddr, helo: &'a str) -> Self {
        Identity::new(ip, helo, "", helo)
    }

    fn new(ip: IpAddr, helo: &'a str, local: &str, domain: &str) -> Self {
        let local = if local.is_empty() {
            "postmaster"
        } else {
            local
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        Identity {
            ip: ip.to_canonical(),
            sender: format!("{local}@{domain}"),
            local: local.to_string(),
            domain: domain.to_string(),
            helo,
        }
    }
}

/// A multi-label domain name that can be looked up (RFC 7208 §4.3): else the result is none.
fn valid_identity_domain(domain: &str) -> bool {
    let labels_ok = domain.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    let top_not_numeric = domain
        .rsplit('.')
        .next()
        .is_some_and(|top| !top.bytes().all(|b| b.is_ascii_digit()));
    !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && labels_ok
        && top_not_numeric
        && !domain.starts_with('[')
        && domain.bytes().all(|b| b.is_ascii_graphic())
}

/// Evaluates `identity` (check_host() on its domain), bounded by `EVALUATION_TIMEOUT`.
pub async fn check_host<R: Resolve>(dns: &R, identity: &Identity<'_>) -> SpfOutput {
    check_host_within(dns, identity, EVALUATION_TIMEOUT).await
}

async fn check_host_within<R: Resolve>(
    dns: &R,
    identity: &Identity<'_>,
    limit: Duration,
) -> SpfOutput {
    let domain = identity.domain.clone();
    if !valid_identity_domain(&domain) {
        return SpfOutput::new(SpfResult::None, domain).with_reason("not a valid domain name");
    }
    let mut eval = Evaluator {
        dns,
        id: identity,
        terms: 0,
        voids: 0,
    };
    let verdict = match tokio::time::timeout(limit, eval.record(domain.clone())).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(stop)) => Verdict {
            result: stop.result,
            reason: stop.reason,
        },
        Err(_) => Verdict {
            result: SpfResult::TempError,
            reason: format!("no result within {}s", limit.as_secs()),
        },
    };
    SpfOutput::new(verdict.result, domain).with_reason(verdict.reason)
}

/// A result that ends the whole evaluation: temperror or permerror.
#[derive(Debug)]
struct Stop {
    result: SpfResult,
    reason: String,
}

impl Stop {
    fn perm(reason: impl Into<String>) -> Self {
        Stop {
            result: SpfResult::PermError,
            reason: reason.into(),
        }
    }

    fn temp(name: &str) -> Self {
        Stop {
            result: SpfResult::TempError,
            reason: format!("DNS failure looking up {name}"),
        }
    }
}

/// The result of one record (pass, fail, softfail, neutral or none).
#[derive(Debug)]
struct Verdict {
    result: SpfResult,
    reason: String,
}

type Step<'s, T> = Pin<Box<dyn Future<Output = Result<T, Stop>> + Send + 's>>;

/// One evaluation's state: the counters of §4.6.4, shared by every record it reaches.
struct Evaluator<'a, R> {
    dns: &'a R,
    id: &'a Identity<'a>,
    /// DNS-querying terms so far.
    terms: usize,
    /// Void lookups so far.
    voids: usize,
}

impl<'a, R: Resolve> Evaluator<'a, R> {
    /// check_host() on `domain`: its record, evaluated (boxed: include and redirect recurse).
    fn record(&mut self, domain: String) -> Step<'_, Verdict> {
        Box::pin(async move {
            let answer = match self.dns.txt(&domain).await {
                Ok(answer) => answer,
                Err(LookupError::InvalidName) => {
                    return Ok(verdict(
                        SpfResult::None,
                        format!("{domain} is not a valid name"),
                    ));
                }
                Err(LookupError::Failed(_)) => return Err(Stop::temp(&domain)),
            };
            let text = match record::select(answer.records()) {
                Selection::None => {
                    return Ok(verdict(
                        SpfResult::None,
                        format!("no SPF record at {domain}"),
                    ));
                }
                Selection::Several => {
                    return Err(Stop::perm(format!("several SPF records at {domain}")));
                }
                Selection::One(text) => text,
            };
            let parsed = record::parse(text)
                .map_err(|e| Stop::perm(format!("bad SPF record at {domain}: {e}")))?;
            for directive in &parsed.directives {
                if self.matches(&directive.mechanism, &domain).await? {
                    return Ok(verdict(
                        directive.qualifier.result(),
                        format!("{domain} matched {directive}"),
                    ));
                }
            }
            if let Some(redirect) = &parsed.redirect {
                self.count_term()?;
                let target = self.expand_domain(redirect, &domain).await;
                let v = self.record(target.clone()).await?;
                if v.result == SpfResult::None {
                    return Err(Stop::perm(format!(
                        "redirect to {target}, which has no SPF record"
                    )));
                }
                return Ok(v);
            }
            Ok(verdict(
                SpfResult::Neutral,
                format!("nothing matched at {domain}"),
            ))
        })
    }

    /// Whether `mechanism` of `domain`'s record matches the client.
    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Result<bool, Stop> {
        if mechanism.looks_up() {
            self.count_term()?;
        }
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(network, len) => Ok(match self.id.ip {
                IpAddr::V4(ip) => in_v4(ip, *network, *len),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6(network, len) => Ok(match self.id.ip {
                IpAddr::V6(ip) => in_v6(ip, *network, *len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                let target = self.expand_domain(spec, domain).await;
                let v = self.record(target.clone()).await?;
                match v.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::None => Err(Stop::perm(format!(
                        "include of {target}, which has no SPF record"
                    ))),
                    _ => Ok(false),
                }
            }
            Mechanism::A(spec, cidr) => {
                let target = self.target(spec.as_ref(), domain).await;
                let Some(found) = self.addresses(&target, *cidr).await? else {
                    return Ok(false);
                };
                if found.is_empty() {
                    self.count_void()?;
                }
                Ok(found.matched)
            }
            Mechanism::Mx(spec, cidr) => {
                let target = self.target(spec.as_ref(), domain).await;
                let hosts = match self.dns.mx(&target).await {
                    Ok(answer) => answer,
                    Err(LookupError::InvalidName) => return Ok(false),
                    Err(LookupError::Failed(_)) => return Err(Stop::temp(&target)),
                };
                if hosts.is_void() {
                    self.count_void()?;
                    return Ok(false);
                }
                if hosts.records().len() > MX_NAME_LIMIT {
                    return Err(Stop::perm(format!(
                        "more than {MX_NAME_LIMIT} MX names at {target}"
                    )));
                }
                for host in hosts.records().iter().filter(|h| !h.exchange.is_empty()) {
                    if self
                        .addresses(&host.exchange, *cidr)
                        .await?
                        .is_some_and(|f| f.matched)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let target = self
                    .target(spec.as_ref(), domain)
                    .await
                    .to_ascii_lowercase();
                // A PTR lookup error is no match, not temperror (RFC 7208 §5.5).
                let Ok(names) = self.dns.ptr(self.id.ip).await else {
                    return Ok(false);
                };
                for name in names.records().iter().take(PTR_NAME_LIMIT) {
                    if within(name, &target) && self.validates(name).await {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                let target = self.expand_domain(spec, domain).await;
                // Always an A lookup, whatever the client's address family (§5.7).
                match self.dns.a(&target).await {
                    Ok(answer) if answer.is_void() => {
                        self.count_void()?;
                        Ok(false)
                    }
                    Ok(_) => Ok(true),
                    Err(LookupError::InvalidName) => Ok(false),
                    Err(LookupError::Failed(_)) => Err(Stop::temp(&target)),
                }
            }
        }
    }

    /// The addresses of `name` in the client's family, and whether one covers the client;
    /// `None` when the name cannot be queried.
    async fn addresses(&self, name: &str, cidr: DualCidr) -> Result<Option<Found>, Stop> {
        let found = match self.id.ip {
            IpAddr::V4(ip) => found(self.dns.a(name).await, |a| in_v4(ip, *a, cidr.v4)),
            IpAddr::V6(ip) => found(self.dns.aaaa(name).await, |a| in_v6(ip, *a, cidr.v6)),
        };
        match found {
            Ok(found) => Ok(Some(found)),
            Err(LookupError::InvalidName) => Ok(None),
            Err(LookupError::Failed(_)) => Err(Stop::temp(name)),
        }
    }

    /// True when `name` has an address equal to the client's (§5.5); errors are false.
    async fn validates(&self, name: &str) -> bool {
        let exact = DualCidr::default();
        matches!(self.addresses(name, exact).await, Ok(Some(f)) if f.matched)
    }

    /// The validated domain name of the client (`%{p}`, RFC 7208 §7.3 and §5.5): `domain`
    /// itself, else one of its subdomains, else any validated name, else `unknown`.
    async fn validated_name(&self, domain: &str) -> String {
        let Ok(names) = self.dns.ptr(self.id.ip).await else {
            return "unknown".into();
        };
        let names: Vec<&str> = names
            .records()
            .iter()
            .take(PTR_NAME_LIMIT)
            .map(|n| &**n)
            .collect();
        let domain = domain.to_ascii_lowercase();
        let rank = |n: &str| {
            if n == domain {
                0
            } else if within(n, &domain) {
                1
            } else {
                2
            }
        };
        let mut ordered = names.clone();
        ordered.sort_by_key(|n| rank(n));
        for name in ordered {
            if self.validates(name).await {
                return name.to_string();
            }
        }
        "unknown".into()
    }

    /// A mechanism's target: its domain-spec expanded, or the current domain.
    async fn target(&self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            Some(spec) => self.expand_domain(spec, domain).await,
            None => domain.to_string(),
        }
    }

    /// Expands a domain-spec with `<domain>` = `domain`.
    async fn expand_domain(&self, spec: &MacroString, domain: &str) -> String {
        let validated = self.validated_if_used(spec, domain).await;
        spec.expand_domain(&self.vars(domain, &validated))
    }

    async fn validated_if_used(&self, spec: &MacroString, domain: &str) -> String {
        if spec.uses_validated() {
            self.validated_name(domain).await
        } else {
            String::new()
        }
    }

    fn vars<'v>(&'v self, domain: &'v str, validated: &'v str) -> Vars<'v> {
        Vars {
            sender: &self.id.sender,
            local: &self.id.local,
            sender_domain: &self.id.domain,
            domain,
            ip: self.id.ip,
            validated,
            helo: self.id.helo,
        }
    }

    fn count_term(&mut self) -> Result<(), Stop> {
        self.terms += 1;
        if self.terms > DNS_TERM_LIMIT {
            return Err(Stop::perm(format!(
                "too many DNS lookups (more than {DNS_TERM_LIMIT})"
            )));
        }
        Ok(())
    }

    fn count_void(&mut self) -> Result<(), Stop> {
        self.voids += 1;
        if self.voids > VOID_LOOKUP_LIMIT {
            return Err(Stop::perm(format!(
                "void lookup limit (more than {VOID_LOOKUP_LIMIT})"
            )));
        }
        Ok(())
    }
}

fn verdict(result: SpfResult, reason: String) -> Verdict {
    Verdict { result, reason }
}

/// An address lookup: whether it found any address, and whether one matched.
struct Found {
    any: bool,
    matched: bool,
}

impl Found {
    fn is_empty(&self) -> bool {
        !self.any
    }
}

fn found<T>(result: LookupResult<T>, covers: impl Fn(&T) -> bool) -> Result<Found, LookupError> {
    let answer: Answer<T> = result?;
    Ok(Found {
        any: !answer.is_void(),
        matched: answer.records().iter().any(covers),
    })
}

/// `name` is `domain` or one of its subdomains (case already folded).
fn within(name: &str, domain: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case(domain)
        || (name.len() > domain.len()
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::lookup::MxHost;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A DNS in a map: names not in it do not exist; `fail` names fail; `hang` never answers.
    #[derive(Default)]
    struct Stub {
        txt: HashMap<String, Vec<String>>,
        a: HashMap<String, Vec<Ipv4Addr>>,
        aaaa: HashMap<String, Vec<Ipv6Addr>>,
        mx: HashMap<String, Vec<String>>,
        ptr: HashMap<IpAddr, Vec<String>>,
        /// Names that exist (NODATA rather than NXDOMAIN for missing types).
        exists: Vec<String>,
        fail: Vec<String>,
        hang: bool,
        queries: Mutex<Vec<String>>,
    }

    impl Stub {
        fn txt(mut self, name: &str, text: &str) -> Self {
            self.txt.entry(name.into()).or_default().push(text.into());
            self
        }
        fn a(mut self, name: &str, ip: &str) -> Self {
            self.a
                .entry(name.into())
                .or_default()
                .push(ip.parse().unwrap());
            self
        }
        fn aaaa(mut self, name: &str, ip: &str) -> Self {
            self.aaaa
                .entry(name.into())
                .or_default()
                .push(ip.parse().unwrap());
            self
        }
        fn mx(mut self, name: &str, host: &str) -> Self {
            self.mx.entry(name.into()).or_default().push(host.into());
            self
        }
        fn ptr(mut self, ip: &str, name: &str) -> Self {
            self.ptr
                .entry(ip.parse().unwrap())
                .or_default()
                .push(name.into());
            self
        }
        fn fail(mut self, name: &str) -> Self {
            self.fail.push(name.into());
            self
        }

        fn answer<T: Clone>(
            &self,
            kind: &str,
            name: &str,
            map: &HashMap<String, Vec<T>>,
        ) -> LookupResult<T> {
            self.queries.lock().unwrap().push(format!("{kind} {name}"));
            if name.is_empty() || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
                return Err(LookupError::InvalidName);
            }
            // Names are case-insensitive (RFC 4343).
            let name = name.to_ascii_lowercase();
            if self.fail.contains(&name) {
                return Err(LookupError::Failed("SERVFAIL".into()));
            }
            match map.get(&name) {
                Some(v) => Ok(Answer::Records(Arc::from(v.clone()))),
                None if self.known(&name) => Ok(Answer::NoData),
                None => Ok(Answer::NxDomain),
            }
        }

        fn known(&self, name: &str) -> bool {
            self.txt.contains_key(name)
                || self.a.contains_key(name)
                || self.aaaa.contains_key(name)
                || self.mx.contains_key(name)
                || self.exists.iter().any(|n| n == name)
        }

        fn count(&self, prefix: &str) -> usize {
            self.queries
                .lock()
                .unwrap()
                .iter()
                .filter(|q| q.starts_with(prefix))
                .count()
        }
    }

    impl Resolve for Stub {
        async fn txt(&self, name: &str) -> LookupResult<Box<[u8]>> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            let r = self.answer("TXT", name, &self.txt)?;
            Ok(match r {
                Answer::Records(v) => {
                    Answer::Records(v.iter().map(|s| Box::from(s.as_bytes())).collect())
                }
                Answer::NxDomain => Answer::NxDomain,
                Answer::NoData => Answer::NoData,
            })
        }
        async fn a(&self, name: &str) -> LookupResult<Ipv4Addr> {
            self.answer("A", name, &self.a)
        }
        async fn aaaa(&self, name: &str) -> LookupResult<Ipv6Addr> {
            self.answer("AAAA", name, &self.aaaa)
        }
        async fn mx(&self, name: &str) -> LookupResult<MxHost> {
            let r = self.answer("MX", name, &self.mx)?;
            Ok(match r {
                Answer::Records(v) => Answer::Records(
                    v.iter()
                        .enumerate()
                        .map(|(i, h)| MxHost {
                            preference: u16::try_from(i).unwrap(),
                            exchange: h.as_str().into(),
                        })
                        .collect(),
                ),
                Answer::NxDomain => Answer::NxDomain,
                Answer::NoData => Answer::NoData,
            })
        }
        async fn ptr(&self, ip: IpAddr) -> LookupResult<Box<str>> {
            self.queries.lock().unwrap().push(format!("PTR {ip}"));
            Ok(match self.ptr.get(&ip) {
                Some(v) => Answer::Records(v.iter().map(|s| Box::from(s.as_str())).collect()),
                None => Answer::NxDomain,
            })
        }
    }

    async fn run(dns: &Stub, ip: &str, mail_from: &str) -> SpfOutput {
        let id = Identity::mail_from(ip.parse().unwrap(), "helo.example.org", mail_from);
        check_host(dns, &id).await
    }

    async fn result(dns: &Stub, ip: &str, mail_from: &str) -> SpfResult {
        run(dns, ip, mail_from).await.result()
    }

    #[tokio::test]
    async fn ten_dns_terms_are_allowed_not_eleven() {
        // A chain of includes: each include counts, so does each `a` at its end.
        let chain = |n: usize| {
            let mut dns = Stub::default();
            for i in 0..n {
                dns = dns.txt(
                    &format!("i{i}.example.com"),
                    &format!("v=spf1 include:i{}.example.com", i + 1),
                );
            }
            dns.txt(&format!("i{n}.example.com"), "v=spf1 ip4:192.0.2.1")
                .txt("example.com", "v=spf1 include:i0.example.com -all")
        };
        // example.com's include + i0..i8's includes = 10 terms.
        assert_eq!(
            result(&chain(9), "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
        let out = run(&chain(10), "192.0.2.1", "a@example.com").await;
        assert_eq!(out.result(), SpfResult::PermError);
        assert!(
            out.reason().unwrap().contains("too many DNS lookups"),
            "{out:?}"
        );
        // A redirect loop stops too.
        let dns = Stub::default().txt("example.com", "v=spf1 redirect=example.com");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::PermError
        );
    }

    #[tokio::test]
    async fn lookup_limit_counts_only_dns_terms() {
        // ip4, ip6 and all are free: eleven of them and one `a` are fine.
        let mut record = String::from("v=spf1");
        for i in 0..11 {
            record.push_str(&format!(" ip4:198.51.100.{i}"));
        }
        record.push_str(" a -all");
        let dns = Stub::default()
            .txt("example.com", &record)
            .a("example.com", "192.0.2.1");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
    }

    #[tokio::test]
    async fn two_void_lookups_are_allowed_not_three() {
        let dns = Stub::default()
            .txt(
                "two.example.com",
                "v=spf1 a:nx1.example.com mx:nx2.example.com ?all",
            )
            .txt(
                "three.example.com",
                "v=spf1 a:nx1.example.com exists:nx2.example.com a:nx3.example.com ?all",
            );
        assert_eq!(
            result(&dns, "192.0.2.1", "a@two.example.com").await,
            SpfResult::Neutral
        );
        let out = run(&dns, "192.0.2.1", "a@three.example.com").await;
        assert_eq!(out.result(), SpfResult::PermError);
        assert!(
            out.reason().unwrap().contains("void lookup limit"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn nodata_is_void_too_and_exp_is_never_fetched() {
        let dns = Stub::default()
            .txt(
                "example.com",
                "v=spf1 a:e1.example.com a:e2.example.com exp=why.example.com -all",
            )
            .txt("e1.example.com", "unrelated")
            .txt("e2.example.com", "unrelated")
            .txt("why.example.com", "You are not %{i}")
            .txt("inc.example.com", "v=spf1 include:example.com ~all");
        let out = run(&dns, "192.0.2.1", "a@example.com").await;
        assert_eq!(out.result(), SpfResult::Fail);
        // Nor inside an include, where §6.2 forbids it.
        assert_eq!(
            result(&dns, "192.0.2.1", "a@inc.example.com").await,
            SpfResult::SoftFail
        );
        assert_eq!(dns.count("TXT why.example.com"), 0);
        // A malformed exp= is still a syntax error.
        let dns = Stub::default().txt("example.com", "v=spf1 -all exp=%{r}.example.com");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::PermError
        );
    }

    #[tokio::test]
    async fn more_than_ten_mx_names_is_permerror() {
        let mut dns = Stub::default()
            .txt("example.com", "v=spf1 mx -all")
            .a("mx.example.com", "192.0.2.1");
        for _ in 0..10 {
            dns = dns.mx("example.com", "mx.example.com");
        }
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
        let dns = dns.mx("example.com", "mx.example.com");
        let out = run(&dns, "192.0.2.1", "a@example.com").await;
        assert_eq!(out.result(), SpfResult::PermError);
        assert!(out.reason().unwrap().contains("MX"), "{out:?}");
    }

    #[tokio::test]
    async fn mx_null_and_missing_addresses() {
        let dns = Stub::default()
            .txt("example.com", "v=spf1 mx ?all")
            .mx("example.com", "")
            .txt("other.example.com", "v=spf1 mx:example.com/24 -all")
            .mx("mail.example.com", "x.example.com")
            .txt("mail.example.com", "v=spf1 mx/24 -all")
            .a("x.example.com", "192.0.2.200");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Neutral
        );
        assert_eq!(
            result(&dns, "192.0.2.1", "a@mail.example.com").await,
            SpfResult::Pass
        );
        // A client outside the /24.
        assert_eq!(
            result(&dns, "198.51.100.1", "a@mail.example.com").await,
            SpfResult::Fail
        );
    }

    #[tokio::test]
    async fn only_the_first_ten_ptr_names_count() {
        let mut dns = Stub::default().txt("example.com", "v=spf1 ptr -all");
        for i in 0..10 {
            let name = format!("h{i}.other.net");
            dns = dns.ptr("192.0.2.1", &name).a(&name, "192.0.2.1");
        }
        let dns = dns
            .ptr("192.0.2.1", "mail.example.com")
            .a("mail.example.com", "192.0.2.1");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Fail
        );
        // Nine others, then ours: it counts.
        let mut dns = Stub::default().txt("example.com", "v=spf1 ptr -all");
        for i in 0..9 {
            dns = dns.ptr("192.0.2.1", &format!("h{i}.other.net"));
        }
        let dns = dns
            .ptr("192.0.2.1", "mail.example.com")
            .a("mail.example.com", "192.0.2.1");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
    }

    #[tokio::test]
    async fn ptr_needs_a_validated_name_and_errors_do_not_match() {
        let dns = Stub::default()
            .txt("example.com", "v=spf1 ptr ?all")
            .ptr("192.0.2.1", "mail.example.com")
            .a("mail.example.com", "192.0.2.99")
            .ptr("192.0.2.2", "bad.example.com")
            .fail("bad.example.com");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Neutral
        );
        assert_eq!(
            result(&dns, "192.0.2.2", "a@example.com").await,
            SpfResult::Neutral
        );
        let dns = dns.a("mail.example.com", "192.0.2.1");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
    }

    #[tokio::test]
    async fn ipv4_clients_never_match_ip6_and_mapped_clients_are_ipv4() {
        let dns = Stub::default()
            .txt("v6.example.com", "v=spf1 ip6:::/0 -all")
            .txt("v4.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
            .txt("a.example.com", "v=spf1 a//0 -all")
            .aaaa("a.example.com", "2001:db8::1");
        assert_eq!(
            result(&dns, "192.0.2.1", "x@v6.example.com").await,
            SpfResult::Fail
        );
        assert_eq!(
            result(&dns, "::ffff:192.0.2.1", "x@v6.example.com").await,
            SpfResult::Fail
        );
        assert_eq!(
            result(&dns, "::ffff:192.0.2.1", "x@v4.example.com").await,
            SpfResult::Pass
        );
        assert_eq!(
            result(&dns, "2001:db8::5", "x@v6.example.com").await,
            SpfResult::Pass
        );
        assert_eq!(
            result(&dns, "192.0.2.1", "x@a.example.com").await,
            SpfResult::Fail
        );
        assert_eq!(
            result(&dns, "2001:db8::5", "x@a.example.com").await,
            SpfResult::Pass
        );
    }

    fn targets() -> Stub {
        Stub::default()
            .txt("pass.example.com", "v=spf1 +all")
            .txt("fail.example.com", "v=spf1 -all")
            .txt("soft.example.com", "v=spf1 ~all")
            .txt("neutral.example.com", "v=spf1 ?all")
            .txt("perm.example.com", "v=spf1 moo")
            .txt("temp.example.com", "v=spf1 a:broken.example.com")
            .fail("broken.example.com")
            .txt("nothing.example.com", "just text")
    }

    #[tokio::test]
    async fn include_results_follow_the_table() {
        for (included, expected) in [
            ("pass", SpfResult::Pass),
            ("fail", SpfResult::SoftFail),
            ("soft", SpfResult::SoftFail),
            ("neutral", SpfResult::SoftFail),
            ("perm", SpfResult::PermError),
            ("temp", SpfResult::TempError),
            ("nothing", SpfResult::PermError),
            ("nx", SpfResult::PermError),
        ] {
            let record = format!("v=spf1 include:{included}.example.com ~all");
            let dns = targets().txt("example.com", &record);
            assert_eq!(
                result(&dns, "192.0.2.1", "a@example.com").await,
                expected,
                "{included}"
            );
        }
    }

    #[tokio::test]
    async fn redirect_only_when_nothing_matched_and_never_to_nothing() {
        let dns = targets()
            .txt(
                "r.example.com",
                "v=spf1 ip4:192.0.2.1 redirect=fail.example.com",
            )
            .txt("all.example.com", "v=spf1 redirect=fail.example.com ?all")
            .txt("none.example.com", "v=spf1 redirect=nothing.example.com")
            .txt("nx.example.com", "v=spf1 redirect=nx.example.org");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@r.example.com").await,
            SpfResult::Pass
        );
        assert_eq!(
            result(&dns, "192.0.2.2", "a@r.example.com").await,
            SpfResult::Fail
        );
        assert_eq!(
            result(&dns, "192.0.2.2", "a@all.example.com").await,
            SpfResult::Neutral
        );
        assert_eq!(
            result(&dns, "192.0.2.2", "a@none.example.com").await,
            SpfResult::PermError
        );
        assert_eq!(
            result(&dns, "192.0.2.2", "a@nx.example.com").await,
            SpfResult::PermError
        );
    }

    #[tokio::test]
    async fn dns_failures_are_temperror_but_unqueryable_names_just_do_not_match() {
        let long = "x".repeat(64);
        let dns = Stub::default()
            .txt("a.example.com", "v=spf1 a:broken.example.com -all")
            .txt("mx.example.com", "v=spf1 mx:broken.example.com -all")
            .txt(
                "exists.example.com",
                "v=spf1 exists:broken.example.com -all",
            )
            .txt("empty.example.com", "v=spf1 a:mail.example..com -all")
            .txt(
                "long.example.com",
                &format!("v=spf1 a:{long}.example.com exists:%{{l}}.example.com -all"),
            )
            .fail("broken.example.com")
            .fail("down.example.com");
        for domain in ["a", "mx", "exists", "down"] {
            let out = run(&dns, "192.0.2.1", &format!("x@{domain}.example.com")).await;
            assert_eq!(out.result(), SpfResult::TempError, "{domain}");
            assert!(
                out.reason().unwrap().starts_with("DNS failure looking up"),
                "{out:?}"
            );
        }
        assert_eq!(
            result(&dns, "192.0.2.1", "x@empty.example.com").await,
            SpfResult::Fail
        );
        let local = format!("{long}@long.example.com");
        assert_eq!(result(&dns, "192.0.2.1", &local).await, SpfResult::Fail);
    }

    #[tokio::test]
    async fn records_are_selected_and_parsed_first() {
        let dns = Stub::default()
            .txt("two.example.com", "v=spf1 +all")
            .txt("two.example.com", "v=spf1 -all")
            .txt("late.example.com", "v=spf1 +all moo")
            .txt("none.example.com", "v=spf10 +all");
        let out = run(&dns, "192.0.2.1", "a@two.example.com").await;
        assert_eq!(out.result(), SpfResult::PermError);
        assert_eq!(out.reason(), Some("several SPF records at two.example.com"));
        // The error after a matching `+all` is still found.
        assert_eq!(
            result(&dns, "192.0.2.1", "a@late.example.com").await,
            SpfResult::PermError
        );
        assert_eq!(
            result(&dns, "192.0.2.1", "a@none.example.com").await,
            SpfResult::None
        );
        assert_eq!(
            result(&dns, "192.0.2.1", "a@nx.example.com").await,
            SpfResult::None
        );
    }

    #[tokio::test]
    async fn malformed_identities_are_none_without_a_lookup() {
        let dns = Stub::default().txt("example.com", "v=spf1 -all");
        for mail_from in [
            "a@example..com",
            "a@localhost",
            "a@[192.0.2.1]",
            "a@192.0.2.1",
            &format!("a@{}.example.com", "x".repeat(64)),
        ] {
            assert_eq!(
                result(&dns, "192.0.2.1", mail_from).await,
                SpfResult::None,
                "{mail_from}"
            );
        }
        assert_eq!(dns.count("TXT"), 0);
        assert_eq!(
            result(&dns, "192.0.2.1", "a@Example.COM.").await,
            SpfResult::Fail
        );
    }

    #[tokio::test]
    async fn the_identities() {
        let dns = Stub::default()
            .txt(
                "example.com",
                "v=spf1 exists:%{l}.%{o}.users.example.net -all",
            )
            .txt(
                "helo.example.org",
                "v=spf1 exists:%{s}.helo.example.net -all",
            )
            .a("postmaster.example.com.users.example.net", "127.0.0.2")
            .a("postmaster@helo.example.org.helo.example.net", "127.0.0.2");
        // No local-part: postmaster.
        assert_eq!(
            result(&dns, "192.0.2.1", "@example.com").await,
            SpfResult::Pass
        );
        assert_eq!(
            result(&dns, "192.0.2.1", "bob@example.com").await,
            SpfResult::Fail
        );
        // The null sender is postmaster@<helo>.
        let out = run(&dns, "192.0.2.1", "").await;
        assert_eq!(
            (out.result(), out.domain()),
            (SpfResult::Pass, "helo.example.org")
        );
        let helo = Identity::helo("192.0.2.1".parse().unwrap(), "helo.example.org");
        assert_eq!(check_host(&dns, &helo).await.result(), SpfResult::Pass);
    }

    #[tokio::test]
    async fn p_prefers_the_domain_then_its_subdomains() {
        let dns = Stub::default()
            .txt("example.com", "v=spf1 exists:%{p}.ok.example.net -all")
            .ptr("192.0.2.1", "other.example.org")
            .ptr("192.0.2.1", "mx.example.com")
            .a("other.example.org", "192.0.2.1")
            .a("mx.example.com", "192.0.2.1")
            .a("mx.example.com.ok.example.net", "127.0.0.2")
            .ptr("192.0.2.2", "nomatch.example.com")
            .a("unknown.ok.example.net", "127.0.0.2");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
        // Not validated: `unknown`.
        assert_eq!(
            result(&dns, "192.0.2.2", "a@example.com").await,
            SpfResult::Pass
        );
        assert_eq!(dns.count("A unknown.ok.example.net"), 1);
        assert_eq!(dns.count("A mx.example.com.ok.example.net"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_evaluation_that_never_ends_is_temperror() {
        let dns = Stub {
            hang: true,
            ..Stub::default()
        };
        let id = Identity::mail_from("192.0.2.1".parse().unwrap(), "h.example", "a@example.com");
        let out = check_host(&dns, &id).await;
        assert_eq!(out.result(), SpfResult::TempError);
        assert!(
            out.reason().unwrap().contains("no result within 20s"),
            "{out:?}"
        );
    }

    #[test]
    fn prefixes() {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(in_v4(v4("192.0.2.200"), v4("192.0.2.0"), 24));
        assert!(!in_v4(v4("192.0.3.1"), v4("192.0.2.0"), 24));
        assert!(in_v4(v4("203.0.113.1"), v4("1.1.1.1"), 0));
        assert!(!in_v4(v4("192.0.2.2"), v4("192.0.2.1"), 32));
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert!(in_v6(v6("cafe:babe:8000::1"), v6("cafe:babe:8000::"), 33));
        assert!(!in_v6(v6("cafe:babe::1"), v6("cafe:babe:8000::"), 33));
        assert!(in_v6(v6("2001:db8::1"), v6("::"), 0));
        assert!(within("mail.example.com", "example.com"));
        assert!(within("example.com", "example.com"));
        assert!(!within("badexample.com", "example.com"));
    }
}
