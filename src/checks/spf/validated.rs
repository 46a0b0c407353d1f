//! The client's validated domain names (RFC 7208 §5.5), which both the `ptr` mechanism and
//! the `%{p}` macro (§7.3) are about.
//!
//! Owns: the PTR lookup of the client and the validation of its first `PTR_NAME_LIMIT`
//! names (a name is validated when one of its A records, AAAA for an IPv6 client, is the
//! client; an error validates nothing), done once per evaluation and kept by the evaluator
//! however many `ptr` mechanisms and `%{p}` macros its records hold; whether the PTR lookup
//! was void (NXDOMAIN or NODATA: a void lookup for each `ptr` mechanism, §4.6.4); which
//! validated name `%{p}` is for a domain; whether one is within a `ptr` target. A PTR lookup
//! that fails leaves no validated name: `ptr` does not match (§5.5) and `%{p}` is
//! `unknown`. Must not: count terms or void lookups (`eval.rs` does).

use std::net::IpAddr;

use crate::dns::lookup::Resolve;

/// PTR names considered by `ptr` and `%{p}`.
pub const PTR_NAME_LIMIT: usize = 10;

/// The client's validated names, in the order of the PTR answer.
#[derive(Debug, Default)]
pub struct Validated {
    /// The PTR lookup found nothing (NXDOMAIN or NODATA).
    void: bool,
    names: Vec<Box<str>>,
}

impl Validated {
    /// Looks up the PTR names of `ip` and validates the first `PTR_NAME_LIMIT` of them.
    pub async fn find<R: Resolve>(dns: &R, ip: IpAddr) -> Validated {
        let Ok(answer) = dns.ptr(ip).await else {
            return Validated::default();
        };
        let mut names = Vec::new();
        for name in answer.records().iter().take(PTR_NAME_LIMIT) {
            if validates(dns, ip, name).await {
                names.push(name.clone());
            }
        }
        Validated {
            void: answer.is_void(),
            names,
        }
    }

    /// True when the PTR lookup was void.
    pub fn is_void(&self) -> bool {
        self.void
    }

    /// True when a validated name is `target` or one of its subdomains (`ptr`).
    pub fn any_within(&self, target: &str) -> bool {
        self.names.iter().any(|n| within(n, target))
    }

    /// `%{p}` while `domain`'s record is evaluated: `domain` itself if validated, else one
    /// of its subdomains, else any validated name, else `unknown` (§7.3).
    pub fn for_domain(&self, domain: &str) -> &str {
        let exact = self.names.iter().find(|n| n.eq_ignore_ascii_case(domain));
        let below = || self.names.iter().find(|n| within(n, domain));
        exact
            .or_else(below)
            .or(self.names.first())
            .map_or("unknown", |n| n)
    }
}

/// True when `name` has an address equal to the client's; errors are false.
async fn validates<R: Resolve>(dns: &R, ip: IpAddr, name: &str) -> bool {
    match ip {
        IpAddr::V4(ip) => dns.a(name).await.is_ok_and(|a| a.records().contains(&ip)),
        IpAddr::V6(ip) => dns
            .aaaa(name)
            .await
            .is_ok_and(|a| a.records().contains(&ip)),
    }
}

/// `name` is `domain` or one of its subdomains, in any case; one final dot on either is
/// the root's.
pub fn within(name: &str, domain: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    name.eq_ignore_ascii_case(domain)
        || (name.len() > domain.len()
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            && name
                .get(name.len() - domain.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(domain)))
}

#[cfg(test)]
mod tests {
    use super::super::result::SpfResult;
    use super::super::stub::{Stub, result, run};
    use super::*;

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

    #[tokio::test]
    async fn the_names_are_validated_once_per_evaluation() {
        // Three %{p} macros and two ptr mechanisms, through an include: one PTR lookup and
        // one A lookup per PTR name, for the whole evaluation.
        let dns = Stub::default()
            .txt(
                "example.com",
                "v=spf1 exists:%{p}.a.example.net exists:%{p}.b.example.net \
                 ptr:example.org include:inc.example.com -all",
            )
            .txt(
                "inc.example.com",
                "v=spf1 ptr:example.net exists:%{p}.c.example.net",
            )
            .ptr("192.0.2.1", "mx.example.com")
            .ptr("192.0.2.1", "mx.example.org")
            .a("mx.example.com", "192.0.2.1")
            .a("mx.example.org", "192.0.2.99")
            .a("mx.example.com.c.example.net", "127.0.0.2");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@example.com").await,
            SpfResult::Pass
        );
        assert_eq!(dns.count("PTR"), 1);
        assert_eq!(dns.asked("A mx.example.com"), 1);
        assert_eq!(dns.asked("A mx.example.org"), 1);
    }

    #[tokio::test]
    async fn a_void_ptr_lookup_is_a_void_lookup() {
        // No PTR record: each ptr mechanism is a void lookup; the third is one too many.
        let dns = Stub::default()
            .txt("two.example.com", "v=spf1 ptr ptr:example.org ?all")
            .txt("three.example.com", "v=spf1 ptr a:nx.example.com ptr ?all")
            .txt(
                "p.example.com",
                "v=spf1 a:nx.example.com ptr exists:%{p}.x.example.net ?all",
            )
            .a("unknown.x.example.net", "127.0.0.2");
        assert_eq!(
            result(&dns, "192.0.2.1", "a@two.example.com").await,
            SpfResult::Neutral
        );
        let out = run(&dns, "192.0.2.1", "a@three.example.com").await;
        assert_eq!(out.result(), SpfResult::PermError, "{out:?}");
        assert!(
            out.reason().unwrap().contains("void lookup limit"),
            "{out:?}"
        );
        // %{p} is no term: its (void) PTR lookup is not a third void lookup.
        assert_eq!(
            result(&dns, "192.0.2.1", "a@p.example.com").await,
            SpfResult::Pass
        );
        let dns = dns.ptr("192.0.2.1", "mx.example.com");
        // A PTR answer with names, none validated, is no void lookup.
        assert_eq!(
            result(&dns, "192.0.2.1", "a@three.example.com").await,
            SpfResult::Neutral
        );
    }

    #[test]
    fn names_within_a_domain() {
        assert!(within("mail.example.com", "example.com"));
        assert!(within("example.com", "example.com"));
        assert!(within("Mail.Example.COM.", "example.com."));
        assert!(!within("badexample.com", "example.com"));
        assert!(!within("com", "example.com"));
        let v = Validated {
            void: false,
            names: vec!["a.other.org".into(), "mx.sub.example.com".into()],
        };
        assert_eq!(v.for_domain("example.com"), "mx.sub.example.com");
        assert_eq!(v.for_domain("Example.net"), "a.other.org");
        assert_eq!(Validated::default().for_domain("example.com"), "unknown");
    }
}
