//! The registry of checks: which checks run, in which order, built from the config.
//!
//! Owns: the declared order of checks. Must not: share state between messages (each
//! check keeps per-message state in the context it is given, never in itself).

pub mod arc;
pub mod auth_results;
pub mod dbl;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod envelope;
pub mod headers;
pub mod helo;
pub mod line_endings;
pub mod long_lines;
pub mod message_auth;
pub mod nul_bytes;
pub mod rdns;
pub mod recipients;
pub mod size;
pub mod spf;

use std::sync::Arc;

use crate::config::Config;
use crate::dns::Dns;
use crate::metrics::Metrics;
use crate::pipeline::Check;

/// Builds the checks in their declared order. `dns` is the shared resolver, present when
/// some check needs DNS (see `needs_dns`).
pub fn registry(
    config: &Config,
    dns: Option<Arc<Dns>>,
    metrics: &Arc<Metrics>,
) -> Vec<Box<dyn Check>> {
    let cc = &config.client_checks;
    let domains = config.accepted_domains.clone();
    let mut checks: Vec<Box<dyn Check>> = vec![
        Box::new(envelope::EnvelopeFacts),
        Box::new(size::SizeCheck::new(config.limits.max_message_size)),
        Box::new(recipients::RecipientLimit::new(
            config.limits.max_recipients,
        )),
        Box::new(line_endings::LineEndings),
        Box::new(nul_bytes::NulBytes),
        Box::new(long_lines::LongLines),
        Box::new(headers::HeaderFacts),
        Box::new(helo::HeloCheck::new(
            &config.hostname,
            domains,
            dns.clone().filter(|_| cc.helo_dns),
            cc.lookup_private,
        )),
    ];
    let Some(dns) = dns else { return checks };
    let ip_lists = dnsbl::DnsblCheck::new(&config.dnsbl, dns.clone(), metrics.clone());
    if !ip_lists.is_empty() {
        checks.push(Box::new(ip_lists));
    }
    if let Some(domain_lists) = dbl::DblCheck::new(&config.dnsbl, dns.clone(), metrics.clone()) {
        checks.push(Box::new(domain_lists));
    }
    if cc.rdns {
        checks.push(Box::new(rdns::RdnsCheck::new(
            dns.clone(),
            cc.lookup_private,
        )));
    }
    if config.auth.enabled {
        let authserv_id = config.authserv_id().to_string();
        checks.push(Box::new(spf::SpfCheck::new(
            dns.clone(),
            config.timeouts.spf,
            metrics.clone(),
        )));
        checks.push(Box::new(message_auth::MessageAuth::new(
            dns,
            authserv_id,
            config.auth.dkim_allow_partial_body,
            metrics.clone(),
        )));
    }
    checks
}

/// Whether any configured check looks things up in DNS (then the shared resolver is built).
pub fn needs_dns(config: &Config) -> bool {
    config.auth.enabled
        || config.client_checks.rdns
        || config.client_checks.helo_dns
        || !config.dnsbl.zones.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{greylist, ratelimit};
    use crate::pipeline::facts::{self, FactDef};
    use crate::runner;

    /// Every check on: authentication, DNSBL, DNSWL and DBL zones, rDNS, HELO lookups.
    const EVERYTHING: &str = "
hostname: gw.example.test
accepted_domains: [example.test]
auth: { enabled: true }
client_checks: { rdns: true, helo_dns: true }
greylisting: { enabled: true }
dns: { nameservers: ['127.0.0.1:53'] }
dnsbl:
  zones:
    - { zone: bl.example.test }
    - { zone: wl.example.test, allow: true }
    - { zone: dbl.example.test, kind: domain }
";

    #[test]
    fn every_known_fact_is_emitted_and_every_emitted_fact_known() {
        let config = crate::config::parse("t.yaml", EVERYTHING).expect("config");
        assert!(needs_dns(&config));
        let metrics = Arc::new(Metrics::new());
        let dns = Dns::new(&config.dns, metrics.clone()).expect("dns");
        let checks = registry(&config, Some(Arc::new(dns)), &metrics);
        let mut names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), checks.len(), "check names repeat: {names:?}");
        let engine: [&[&FactDef]; 3] = [runner::EMITS, greylist::EMITS, ratelimit::EMITS];
        let emitted: Vec<&FactDef> = checks
            .iter()
            .flat_map(|c| c.emits().iter().copied())
            .chain(engine.into_iter().flatten().copied())
            .collect();
        for def in &emitted {
            assert!(facts::ALL.contains(def), "{def:?} is emitted but not known");
        }
        for def in facts::ALL {
            assert!(
                emitted.contains(def),
                "{def:?} is known but nothing emits it"
            );
        }
    }
}
