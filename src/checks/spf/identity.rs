//! The identity one `check_host()` is about (RFC 7208 §2.3, §2.4, §4.3): the client, the
//! `<sender>` with its local-part and domain, and the HELO name, as the macros see them.
//!
//! Owns: building the MAIL FROM identity (the null sender is `postmaster@<helo>`) and the
//! HELO identity (`postmaster@<helo>`), `postmaster` for a missing local-part, an
//! IPv4-mapped client as IPv4, the domain and the HELO name as A-labels (an SMTPUTF8
//! sender's U-labels are converted, RFC 5890, before anything is checked or expanded), and
//! the §4.3 rule that a domain which is not a multi-label name that can be queried (empty
//! or over-long labels, a numeric top label, an address literal) gives `none` without a
//! lookup. Must not: look anything up.

use std::net::IpAddr;

use super::macros::Vars;
use crate::dns::lookup::queryable;

/// The arguments of `check_host()` that stay the same through includes and redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The client (an IPv4-mapped IPv6 address is turned into IPv4).
    ip: IpAddr,
    /// `<sender>`: `local@domain`.
    sender: String,
    local: String,
    /// The identity's domain, the first `<domain>`: A-labels, without a final dot.
    domain: String,
    /// Whether `domain` may be looked up at all (§4.3).
    valid: bool,
    /// The HELO name (`%{h}`), A-labels.
    helo: String,
}

impl Identity {
    /// The MAIL FROM identity; the null sender is `postmaster@<helo>` (RFC 7208 §2.4).
    pub fn mail_from(ip: IpAddr, helo: &str, mail_from: &str) -> Self {
        if mail_from.is_empty() {
            return Identity::helo(ip, helo);
        }
        let (local, domain) = mail_from.rsplit_once('@').unwrap_or(("", mail_from));
        Identity::new(ip, helo, local, domain)
    }

    /// The HELO identity: `postmaster@<helo>`.
    pub fn helo(ip: IpAddr, helo: &str) -> Self {
        Identity::new(ip, helo, "", helo)
    }

    fn new(ip: IpAddr, helo: &str, local: &str, domain: &str) -> Self {
        let local = if local.is_empty() {
            "postmaster"
        } else {
            local
        };
        let domain = a_labels(domain);
        let valid = valid_domain(&domain);
        // The final dot is the root's: the one place it is dropped for the identity.
        let domain = domain.strip_suffix('.').unwrap_or(&domain).to_string();
        Identity {
            ip: ip.to_canonical(),
            sender: format!("{local}@{domain}"),
            local: local.to_string(),
            domain,
            valid,
            helo: a_labels(helo),
        }
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The identity's domain, where evaluation starts.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// False when the domain cannot be evaluated: the result is `none` (§4.3).
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// The macro values while `domain`'s record is evaluated, `%{p}` being `validated`.
    pub fn vars<'v>(&'v self, domain: &'v str, validated: &'v str) -> Vars<'v> {
        Vars {
            sender: &self.sender,
            local: &self.local,
            sender_domain: &self.domain,
            domain,
            ip: self.ip,
            validated,
            helo: &self.helo,
        }
    }
}

/// `name` with its U-labels as A-labels (IDNA, UTS #46); an ASCII name as it is, and a name
/// IDNA refuses as it is too (it then fails `valid_domain`, not being ASCII).
fn a_labels(name: &str) -> String {
    if name.is_ascii() {
        return name.to_string();
    }
    idna::domain_to_ascii(name).unwrap_or_else(|_| name.to_string())
}

/// A multi-label domain name that can be looked up (RFC 7208 §4.3), with at most one final
/// dot: else the result is none.
fn valid_domain(domain: &str) -> bool {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let top_not_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|top| !top.bytes().all(|b| b.is_ascii_digit()));
    queryable(domain)
        && name.contains('.')
        && top_not_numeric
        && !name.starts_with('[')
        && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::super::eval::check_host;
    use super::super::result::SpfResult;
    use super::super::stub::{LIMIT, Stub, result, run};
    use super::*;

    #[tokio::test]
    async fn malformed_identities_are_none_without_a_lookup() {
        let dns = Stub::default().txt("example.com", "v=spf1 -all");
        for mail_from in [
            "a@example..com",
            "a@example.com..",
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
        let ip = "192.0.2.1".parse().unwrap();
        let helo = Identity::helo(ip, "helo.example.org");
        assert_eq!(helo, Identity::mail_from(ip, "helo.example.org", ""));
        assert_eq!(
            check_host(&dns, &helo, LIMIT).await.result(),
            SpfResult::Pass
        );
    }

    #[tokio::test]
    async fn smtputf8_domains_and_helo_names_are_evaluated_as_a_labels() {
        let dns = Stub::default()
            .txt("xn--bcher-kva.example", "v=spf1 ip4:192.0.2.1 -all")
            .txt(
                "xn--mnchen-3ya.example",
                "v=spf1 exists:%{h}.helo.example.net -all",
            )
            .a("xn--mnchen-3ya.example.helo.example.net", "127.0.0.2");
        let ip = "192.0.2.1".parse().unwrap();
        let id = Identity::mail_from(ip, "münchen.example", "jörg@Bücher.example");
        assert_eq!(id.domain(), "xn--bcher-kva.example");
        let out = check_host(&dns, &id, LIMIT).await;
        assert_eq!(
            (out.result(), out.domain()),
            (SpfResult::Pass, "xn--bcher-kva.example")
        );
        // The HELO identity, and %{h}, are A-labels too.
        let helo = Identity::helo(ip, "münchen.example");
        assert_eq!(
            check_host(&dns, &helo, LIMIT).await.result(),
            SpfResult::Pass
        );
        // A name IDNA refuses stays what it was: not a valid domain.
        let bad = Identity::mail_from(ip, "h.example", "a@b\u{fffd}x.example");
        assert_eq!(bad.domain(), "b\u{fffd}x.example");
        assert_eq!(
            check_host(&dns, &bad, LIMIT).await.result(),
            SpfResult::None
        );
    }
}
