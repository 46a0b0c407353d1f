//! Reverse DNS of the client at connect: does a PTR exist, and does its name resolve back
//! to the client (forward-confirmed rDNS)?
//!
//! Facts: `rdns.ptr` (flag), `rdns.name` (the PTR name that resolves back to the client, or
//! else the first; without the final dot), `rdns.fcrdns` (flag) and `rdns.temperror` (flag:
//! a lookup failed, so `rdns.ptr` or `rdns.fcrdns` may be false only for now). Clients in
//! loopback, private and link-local ranges are not looked up unless
//! `client_checks.lookup_private` (their PTRs are local business): no facts then.
//! Must not: judge (policy decides what a missing PTR costs).

use std::net::IpAddr;
use std::sync::Arc;

use crate::dns::Dns;
use crate::dns::lookup::{LookupError, Resolve};
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture};

/// True for addresses that have no public reverse DNS.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// How many PTR names are tried for forward confirmation.
const MAX_FORWARD: usize = 3;

/// The PTR and FCrDNS check.
pub struct RdnsCheck {
    dns: Arc<Dns>,
    lookup_private: bool,
}

impl RdnsCheck {
    /// A check on the shared resolver.
    pub fn new(dns: Arc<Dns>, lookup_private: bool) -> Self {
        RdnsCheck {
            dns,
            lookup_private,
        }
    }
}

/// Whether `name` resolves to `ip`: its A records for an IPv4 client (an IPv4-mapped one
/// too), its AAAA records for an IPv6 one. Only the client's family is asked. `Err` when
/// the lookup failed (timeout, SERVFAIL): the answer is not known.
pub async fn resolves_to(dns: &impl Resolve, name: &str, ip: IpAddr) -> Result<bool, LookupError> {
    Ok(match ip.to_canonical() {
        IpAddr::V4(v4) => dns.a(name).await?.records().contains(&v4),
        IpAddr::V6(v6) => dns.aaaa(name).await?.records().contains(&v6),
    })
}

impl Check for RdnsCheck {
    fn name(&self) -> &'static str {
        "rdns"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[
            &facts::RDNS_PTR,
            &facts::RDNS_NAME,
            &facts::RDNS_FCRDNS,
            &facts::RDNS_TEMPERROR,
        ]
    }

    fn on_connect<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move {
            let ip = ctx.session.client.ip();
            if is_private(ip) && !self.lookup_private {
                return Vec::new().into();
            }
            let ptr = self.dns.ptr(ip.to_canonical()).await;
            let names = match &ptr {
                Ok(answer) => answer.records(),
                // Not known: no PTR as far as the facts go, and the failure said.
                Err(_) => {
                    return vec![
                        Fact::flag(&facts::RDNS_PTR, false),
                        Fact::flag(&facts::RDNS_FCRDNS, false),
                        Fact::flag(&facts::RDNS_TEMPERROR, true),
                    ]
                    .into();
                }
            };
            let Some(first) = names.first() else {
                return vec![
                    Fact::flag(&facts::RDNS_PTR, false),
                    Fact::flag(&facts::RDNS_FCRDNS, false),
                    Fact::flag(&facts::RDNS_TEMPERROR, false),
                ]
                .into();
            };
            // FCrDNS: one of the (first few) PTR names must resolve back to the client. A
            // failed forward lookup leaves it unknown, unless another name confirms.
            let mut confirmed = None;
            let mut failed = false;
            for name in names.iter().take(MAX_FORWARD) {
                match resolves_to(&*self.dns, name, ip).await {
                    Ok(true) => {
                        confirmed = Some(name);
                        break;
                    }
                    Ok(false) => {}
                    Err(_) => failed = true,
                }
            }
            vec![
                Fact::flag(&facts::RDNS_PTR, true),
                Fact::text(&facts::RDNS_NAME, confirmed.unwrap_or(first).to_string()),
                Fact::flag(&facts::RDNS_FCRDNS, confirmed.is_some()),
                Fact::flag(&facts::RDNS_TEMPERROR, confirmed.is_none() && failed),
            ]
            .into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(private.parse().expect("ip")), "{private}");
        }
        for public in ["192.0.2.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_private(public.parse().expect("ip")), "{public}");
        }
    }
}
