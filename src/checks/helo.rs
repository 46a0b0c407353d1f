//! The EHLO/HELO name: syntax, our own name, address literals, and whether it resolves.
//!
//! Facts at HELO: `helo.valid` (a dotted host name or an address literal, RFC 5321 §4.1.1.1),
//! `helo.literal` (an address literal), `helo.literal_mismatch` (a literal that is not the
//! client's address), `helo.ours` (our host name or one of our accepted domains: bots like to
//! claim to be us), `helo.resolves` (the name has A/AAAA records; only looked up for a valid
//! name from a public client, or any client with `client_checks.lookup_private`).
//! Must not: refuse anything itself.

use std::net::IpAddr;
use std::sync::Arc;

use crate::checks::rdns::is_private;
use crate::config::domains::AcceptedDomains;
use crate::dns::Dns;
use crate::dns::lookup::Resolve;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture};
use crate::smtp::address::normalize_domain;

/// The HELO check.
pub struct HeloCheck {
    hostname: String,
    domains: AcceptedDomains,
    dns: Option<Arc<Dns>>,
    lookup_private: bool,
}

impl HeloCheck {
    /// `dns` is `None` when no DNS lookups may be made (then no `helo.resolves`).
    pub fn new(
        hostname: &str,
        domains: AcceptedDomains,
        dns: Option<Arc<Dns>>,
        lookup_private: bool,
    ) -> Self {
        HeloCheck {
            hostname: hostname.to_ascii_lowercase(),
            domains,
            dns,
            lookup_private,
        }
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` → the address.
fn literal(helo: &str) -> Option<IpAddr> {
    let inner = helo.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

impl Check for HeloCheck {
    fn name(&self) -> &'static str {
        "helo"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[
            &facts::HELO_VALID,
            &facts::HELO_LITERAL,
            &facts::HELO_LITERAL_MISMATCH,
            &facts::HELO_OURS,
            &facts::HELO_RESOLVES,
        ]
    }

    fn on_helo<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move {
            let helo = ctx.session.helo.as_deref().unwrap_or_default();
            let client = ctx.session.client.ip();
            if let Some(ip) = literal(helo) {
                return vec![
                    Fact::flag(&facts::HELO_VALID, true),
                    Fact::flag(&facts::HELO_LITERAL, true),
                    Fact::flag(&facts::HELO_LITERAL_MISMATCH, ip.to_canonical() != client),
                    Fact::flag(&facts::HELO_OURS, false),
                ]
                .into();
            }
            let name = normalize_domain(helo.trim_end_matches('.')).filter(|n| n.contains('.'));
            let ours = name
                .as_deref()
                .is_some_and(|n| n == self.hostname || self.domains.contains(n));
            let mut facts = vec![
                Fact::flag(&facts::HELO_VALID, name.is_some()),
                Fact::flag(&facts::HELO_LITERAL, false),
                Fact::flag(&facts::HELO_LITERAL_MISMATCH, false),
                Fact::flag(&facts::HELO_OURS, ours),
            ];
            if let (Some(name), Some(dns)) = (&name, &self.dns)
                && (self.lookup_private || !is_private(client))
            {
                facts.push(Fact::flag(
                    &facts::HELO_RESOLVES,
                    resolves(&**dns, name).await,
                ));
            }
            facts.into()
        })
    }
}

/// Whether `name` has an address: an A record, or else an AAAA record (asked only when
/// there is no A record). A failed lookup counts as none.
async fn resolves(dns: &impl Resolve, name: &str) -> bool {
    if dns.a(name).await.is_ok_and(|a| !a.is_void()) {
        return true;
    }
    dns.aaaa(name).await.is_ok_and(|a| !a.is_void())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(
            literal("[192.0.2.1]"),
            Some("192.0.2.1".parse().expect("ip"))
        );
        assert_eq!(
            literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().expect("ip"))
        );
        assert_eq!(literal("192.0.2.1"), None);
        assert_eq!(literal("[mx.example]"), None);
    }
}
