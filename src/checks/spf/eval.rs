//! `check_host()` (RFC 7208 §4): one identity evaluated against the DNS through `Resolve`.
//!
//! Owns: record lookup and evaluation in order, each mechanism's match (`include` by the
//! §5.2 result table; an IPv4 client, IPv4-mapped ones included, is matched only by IPv4
//! data, §5; `mx` of at most `MX_NAME_LIMIT` names; `exists` always an A lookup), `redirect`
//! (§6.1: only when no mechanism matched; a target without a record is permerror), the
//! limits of §4.6.4 (10 DNS-querying terms, 2 void lookups, shared by every record one
//! evaluation reaches) and the bound on the time of one evaluation (`timeouts.spf`, at
//! least the 20 s of §4.6.4). A DNS error is temperror, except where §5 says the mechanism
//! just does not match (`ptr`); a name that cannot be queried (`dns::lookup::queryable`:
//! an empty or over-long label, often from a macro) matches nothing and is not a DNS error.
//! Must not: parse records, expand macros or validate PTR names itself (`record.rs`,
//! `macros.rs`, `validated.rs`), or decide who the identity is (`identity.rs`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::time::Duration;

use super::identity::Identity;
use super::macros::MacroString;
use super::record::{self, DualCidr, Mechanism, Selection};
use super::result::{SpfOutput, SpfResult, quote};
use super::validated::Validated;
use crate::dns::lookup::{Answer, LookupError, LookupResult, Resolve};

/// DNS-querying terms (`include`, `a`, `mx`, `ptr`, `exists`, `redirect`) per evaluation.
const DNS_TERM_LIMIT: usize = 10;
/// Terms whose lookup found nothing (NXDOMAIN or NODATA) per evaluation.
const VOID_LOOKUP_LIMIT: usize = 2;
/// MX names one `mx` may have.
const MX_NAME_LIMIT: usize = 10;

/// Evaluates `identity` (check_host() on its domain); past `limit`, temperror.
pub async fn check_host<R: Resolve>(dns: &R, identity: &Identity, limit: Duration) -> SpfOutput {
    let domain = identity.domain();
    if !identity.is_valid() {
        return SpfOutput::new(SpfResult::None, domain).with_reason("not a valid domain name");
    }
    let mut eval = Evaluator {
        dns,
        id: identity,
        terms: 0,
        voids: 0,
        validated: None,
    };
    let verdict = match tokio::time::timeout(limit, eval.record(domain.to_string())).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(stop)) => Verdict {
            result: stop.result,
            reason: stop.reason,
        },
        Err(_) => verdict(SpfResult::TempError, format!("no result within {limit:?}")),
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
            reason: format!("DNS failure looking up {}", quote(&name)),
        }
    }
}

/// The result of one record (pass, fail, softfail, neutral or none).
#[derive(Debug)]
struct Verdict {
    result: SpfResult,
    reason: String,
}

fn verdict(result: SpfResult, reason: String) -> Verdict {
    Verdict { result, reason }
}

type Step<'s, T> = Pin<Box<dyn Future<Output = Result<T, Stop>> + Send + 's>>;

/// One evaluation's state: the counters of §4.6.4, shared by every record it reaches, and
/// the client's validated names once something needed them.
struct Evaluator<'a, R> {
    dns: &'a R,
    id: &'a Identity,
    /// DNS-querying terms so far.
    terms: usize,
    /// Void lookups so far.
    voids: usize,
    /// For `ptr` and `%{p}`: looked up at the first that needs them, then kept.
    validated: Option<Validated>,
}

impl<'a, R: Resolve> Evaluator<'a, R> {
    /// check_host() on `target`: its record, evaluated (boxed: include and redirect recurse).
    fn record(&mut self, target: String) -> Step<'_, Verdict> {
        Box::pin(async move {
            let answer = match self.dns.txt(&target).await {
                Ok(answer) => answer,
                Err(LookupError::InvalidName) => {
                    return Ok(verdict(
                        SpfResult::None,
                        format!("{} is not a valid name", quote(&target)),
                    ));
                }
                Err(LookupError::Failed(_)) => return Err(Stop::temp(&target)),
            };
            // Queried, so at most one final dot, the root's: `<domain>` (%{d}) is without.
            let domain = target.strip_suffix('.').unwrap_or(&target);
            let text = match record::select(answer.records()) {
                Selection::None => {
                    return Ok(verdict(
                        SpfResult::None,
                        format!("no SPF record at {}", quote(&domain)),
                    ));
                }
                Selection::Several => {
                    return Err(Stop::perm(format!(
                        "several SPF records at {}",
                        quote(&domain)
                    )));
                }
                Selection::One(text) => text,
            };
            let parsed = record::parse(text).map_err(|e| {
                Stop::perm(format!(
                    "bad SPF record at {}: {}",
                    quote(&domain),
                    quote(&e)
                ))
            })?;
            for directive in &parsed.directives {
                if self.matches(&directive.mechanism, domain).await? {
                    return Ok(verdict(
                        directive.qualifier.result(),
                        format!("{} matched {}", quote(&domain), quote(directive)),
                    ));
                }
            }
            match &parsed.redirect {
                Some(redirect) => self.redirect(redirect, domain).await,
                None => Ok(verdict(
                    SpfResult::Neutral,
                    format!("nothing matched at {}", quote(&domain)),
                )),
            }
        })
    }

    /// `redirect=` (§6.1): the target's result, which must not be none.
    async fn redirect(&mut self, spec: &MacroString, domain: &str) -> Result<Verdict, Stop> {
        self.count_term()?;
        let target = self.expand(spec, domain).await;
        let v = self.record(target.clone()).await?;
        if v.result == SpfResult::None {
            return Err(Stop::perm(format!(
                "redirect to {}, which has no SPF record",
                quote(&target)
            )));
        }
        Ok(v)
    }

    /// Whether `mechanism` of `domain`'s record matches the client.
    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Result<bool, Stop> {
        if mechanism.looks_up() {
            self.count_term()?;
        }
        let ip = self.id.ip();
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(network, len) => {
                Ok(matches!(ip, IpAddr::V4(ip) if in_v4(ip, *network, *len)))
            }
            Mechanism::Ip6(network, len) => {
                Ok(matches!(ip, IpAddr::V6(ip) if in_v6(ip, *network, *len)))
            }
            Mechanism::Include(spec) => self.include(spec, domain).await,
            Mechanism::A(spec, cidr) => self.a(spec.as_ref(), *cidr, domain).await,
            Mechanism::Mx(spec, cidr) => self.mx(spec.as_ref(), *cidr, domain).await,
            Mechanism::Ptr(spec) => self.ptr(spec.as_ref(), domain).await,
            Mechanism::Exists(spec) => self.exists(spec, domain).await,
        }
    }

    /// `include` (§5.2): a match when the target passes; none there is permerror.
    async fn include(&mut self, spec: &MacroString, domain: &str) -> Result<bool, Stop> {
        let target = self.expand(spec, domain).await;
        let v = self.record(target.clone()).await?;
        match v.result {
            SpfResult::Pass => Ok(true),
            SpfResult::None => Err(Stop::perm(format!(
                "include of {}, which has no SPF record",
                quote(&target)
            ))),
            _ => Ok(false),
        }
    }

    /// `a` (§5.3): an address of the target in the client's family covers it.
    async fn a(
        &mut self,
        spec: Option<&MacroString>,
        cidr: DualCidr,
        domain: &str,
    ) -> Result<bool, Stop> {
        let target = self.target(spec, domain).await;
        let Some(found) = self.addresses(&target, cidr).await? else {
            return Ok(false);
        };
        if !found.any {
            self.count_void()?;
        }
        Ok(found.matched)
    }

    /// `mx` (§5.4): an address of one of the target's (at most 10) MX hosts covers it.
    async fn mx(
        &mut self,
        spec: Option<&MacroString>,
        cidr: DualCidr,
        domain: &str,
    ) -> Result<bool, Stop> {
        let target = self.target(spec, domain).await;
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
                "more than {MX_NAME_LIMIT} MX names at {}",
                quote(&target)
            )));
        }
        for host in hosts.records().iter().filter(|h| !h.exchange.is_empty()) {
            if let Some(found) = self.addresses(&host.exchange, cidr).await?
                && found.matched
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `ptr` (§5.5): a validated name of the client is the target or below it. A void PTR
    /// lookup is a void lookup (§4.6.4); a failed one is no match.
    async fn ptr(&mut self, spec: Option<&MacroString>, domain: &str) -> Result<bool, Stop> {
        let target = self.target(spec, domain).await;
        let validated = self.validated().await;
        let (void, matched) = (validated.is_void(), validated.any_within(&target));
        if void {
            self.count_void()?;
        }
        Ok(matched)
    }

    /// `exists` (§5.7): the target has an A record, whatever the client's family.
    async fn exists(&mut self, spec: &MacroString, domain: &str) -> Result<bool, Stop> {
        let target = self.expand(spec, domain).await;
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

    /// The addresses of `name` in the client's family, and whether one covers the client;
    /// `None` when the name cannot be queried.
    async fn addresses(&self, name: &str, cidr: DualCidr) -> Result<Option<Found>, Stop> {
        let found = match self.id.ip() {
            IpAddr::V4(ip) => found(self.dns.a(name).await, |a| in_v4(ip, *a, cidr.v4)),
            IpAddr::V6(ip) => found(self.dns.aaaa(name).await, |a| in_v6(ip, *a, cidr.v6)),
        };
        match found {
            Ok(found) => Ok(Some(found)),
            Err(LookupError::InvalidName) => Ok(None),
            Err(LookupError::Failed(_)) => Err(Stop::temp(name)),
        }
    }

    /// The client's validated names, looked up the first time they are needed.
    async fn validated(&mut self) -> &Validated {
        if self.validated.is_none() {
            self.validated = Some(Validated::find(self.dns, self.id.ip()).await);
        }
        self.validated.get_or_insert_with(Validated::default)
    }

    /// A mechanism's target: its domain-spec expanded, or the current domain.
    async fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            Some(spec) => self.expand(spec, domain).await,
            None => domain.to_string(),
        }
    }

    /// Expands a domain-spec with `<domain>` = `domain`.
    async fn expand(&mut self, spec: &MacroString, domain: &str) -> String {
        let validated = if spec.uses_validated() {
            self.validated().await.for_domain(domain).to_string()
        } else {
            String::new()
        };
        spec.expand_domain(&self.id.vars(domain, &validated))
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

/// An address lookup: whether it found any address, and whether one matched.
struct Found {
    any: bool,
    matched: bool,
}

fn found<T>(result: LookupResult<T>, covers: impl Fn(&T) -> bool) -> Result<Found, LookupError> {
    let answer: Answer<T> = result?;
    Ok(Found {
        any: !answer.is_void(),
        matched: answer.records().iter().any(covers),
    })
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
    use super::super::stub::{LIMIT, Stub, result, run};
    use super::*;

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
    async fn a_final_dot_is_the_root_but_a_second_is_no_name() {
        // The record grammar refuses `a:mail.example.com..`; a macro can still make one.
        let dns = Stub::default()
            .txt("example.com", "v=spf1 a:%{l} -all")
            .txt("inc.example.com", "v=spf1 include:example.com. -all")
            .a("mail.example.com", "192.0.2.1");
        assert_eq!(
            result(&dns, "192.0.2.1", "mail.example.com.@example.com").await,
            SpfResult::Pass
        );
        // Not queried as mail.example.com: it matches nothing.
        assert_eq!(
            result(&dns, "192.0.2.1", "mail.example.com..@example.com").await,
            SpfResult::Fail
        );
        assert_eq!(dns.asked("A mail.example.com.."), 1);
        assert_eq!(dns.asked("A mail.example.com"), 0);
        // An include's target with its final dot: <domain> there is without it.
        let out = run(&dns, "192.0.2.1", "mail.example.com@inc.example.com").await;
        assert_eq!(out.result(), SpfResult::Pass);
        assert_eq!(
            out.reason(),
            Some("inc.example.com matched include:example.com.")
        );
    }

    #[tokio::test]
    async fn a_record_full_of_macros_over_a_long_sender_is_evaluated_in_bounds() {
        // ~60 KB of %{S} and a 2 KB sender: the name queried is the last 253 characters
        // or so of ~30 MB that are never built (macros.rs keeps a tail of at most 4 KiB).
        let record = format!("v=spf1 exists:{} -all", "%{S}".repeat(15_000));
        assert!(record.len() > 60_000);
        let expected = "a23456789.".repeat(23) + "x%40example.com";
        let dns = Stub::default()
            .txt("example.com", &record)
            .a(&expected, "127.0.0.2");
        let sender = "a23456789.".repeat(200) + "x@example.com";
        assert_eq!(result(&dns, "192.0.2.1", &sender).await, SpfResult::Pass);
        assert_eq!(dns.asked(&format!("A {expected}")), 1);
        assert_eq!(dns.count("A "), 1);
    }

    #[tokio::test]
    async fn long_terms_and_names_are_cut_in_reasons() {
        let long = format!("a:{}example.com", "abcdefgh.".repeat(20));
        let dns = Stub::default()
            .txt("example.com", &format!("v=spf1 {long} -all"))
            .txt(
                "bad.example.com",
                &format!("v=spf1 {long} moo{}", "o".repeat(300)),
            )
            .a(&long[2..], "192.0.2.1");
        let out = run(&dns, "192.0.2.1", "a@example.com").await;
        assert_eq!(out.result(), SpfResult::Pass);
        let reason = out.reason().unwrap();
        assert!(
            reason.starts_with("example.com matched a:abcdefgh."),
            "{reason}"
        );
        assert!(reason.ends_with("..."), "{reason}");
        assert_eq!(reason.chars().count(), "example.com matched ".len() + 100);
        let out = run(&dns, "192.0.2.1", "a@bad.example.com").await;
        assert_eq!(out.result(), SpfResult::PermError);
        assert!(out.reason().unwrap().chars().count() <= 200, "{out:?}");
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

    #[tokio::test(start_paused = true)]
    async fn an_evaluation_that_never_ends_is_temperror() {
        let mut dns = Stub::default();
        dns.hang = true;
        let id = Identity::mail_from("192.0.2.1".parse().unwrap(), "h.example", "a@example.com");
        let out = check_host(&dns, &id, LIMIT).await;
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
    }
}
