//! Domain block lists (DBL/URIBL, RFC 5782 §2.3): the MAIL FROM domain at MAIL and the
//! signing domains of the message's DKIM signatures at DATA are asked in every zone of
//! `dnsbl.zones` with `kind: domain`, all at once, each within `dnsbl.timeout`.
//!
//! Facts: `dbl.mail_from` (one per zone that lists the MAIL FROM domain), `dbl.dkim` (one
//! per zone that lists a `d=` domain) and `dbl.error` (one per zone that answered with an
//! error code). Every `d=` of the header block counts, verified or not: a listed domain is
//! telling either way, and the check does not wait for DKIM verification. At most
//! `MAX_DKIM_DOMAINS` signing domains are asked per message. Metrics are those of the IP
//! lists (`portcullis_dnsbl_lookups_total{zone,result}`, `portcullis_dnsbl_zone_healthy`).
//! Must not: judge, or ask about address literals and names that are not domains.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::dnsbl::{Zone, ask};
use crate::config::schema::{DnsblConfig, ZoneKind};
use crate::dns::Dns;
use crate::metrics::{DnsblResult, Event, Metrics};
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture};

/// The most DKIM signing domains asked about per message (a message may carry many).
pub const MAX_DKIM_DOMAINS: usize = 5;

/// The domain-list check.
pub struct DblCheck {
    dns: Arc<Dns>,
    zones: Vec<Zone>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl DblCheck {
    /// The domain zones of `config`; `None` when there are none.
    pub fn new(config: &DnsblConfig, dns: Arc<Dns>, metrics: Arc<Metrics>) -> Option<Self> {
        let zones: Vec<Zone> = config
            .zones
            .iter()
            .filter(|z| z.kind == ZoneKind::Domain)
            .map(Zone::new)
            .collect();
        if zones.is_empty() {
            return None;
        }
        for zone in &zones {
            metrics.emit(Event::DnsblZoneConfigured {
                zone: zone.zone.clone(),
            });
        }
        Some(DblCheck {
            dns,
            zones,
            timeout: config.timeout,
            metrics,
        })
    }

    /// Asks every zone about every domain; `listed` names the fact for listings.
    async fn facts(&self, domains: &BTreeSet<String>, listed: &'static FactDef) -> Vec<Fact> {
        let asks = self.zones.iter().flat_map(|zone| {
            domains.iter().map(move |d| async move {
                let name = format!("{d}.{}.", zone.zone);
                (zone, ask(&self.dns, zone, &name, self.timeout).await)
            })
        });
        let mut facts = Vec::new();
        for (zone, result) in join_all(asks).await {
            self.metrics.emit(Event::DnsblLookup {
                zone: zone.zone.clone(),
                result,
            });
            let fact = match result {
                DnsblResult::Listed => Fact::text(listed, zone.zone.clone()),
                DnsblResult::ErrorAnswer => Fact::text(&facts::DBL_ERROR, zone.zone.clone()),
                DnsblResult::Clean | DnsblResult::Failed => continue,
            };
            if !facts.contains(&fact) {
                facts.push(fact);
            }
        }
        facts
    }
}

/// The ASCII (A-label) form of a domain worth asking about: at least two labels, no
/// address literal.
pub fn query_domain(domain: &str) -> Option<String> {
    let d = domain.trim().trim_end_matches('.');
    if d.starts_with('[') || !d.contains('.') {
        return None;
    }
    let ascii = idna::domain_to_ascii(d).ok()?.to_ascii_lowercase();
    let valid = ascii.len() <= 253
        && ascii.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(ascii)
}

/// The `d=` tags of the DKIM-Signature fields in a header block (unfolded, any case): the
/// first `MAX_DKIM_DOMAINS` different ones.
pub fn dkim_domains(head: &[u8]) -> BTreeSet<String> {
    crate::smtp::headers::unfold(head)
        .iter()
        .filter_map(|f| {
            let (name, value) = f.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("dkim-signature")
                .then_some(value)
        })
        .filter_map(|value| {
            value.split(';').find_map(|tag| {
                let (k, v) = tag.split_once('=')?;
                (k.trim() == "d").then(|| v.split_whitespace().collect::<String>())
            })
        })
        .filter_map(|d| query_domain(&d))
        .fold(BTreeSet::new(), |mut set, d| {
            if set.len() < MAX_DKIM_DOMAINS {
                set.insert(d);
            }
            set
        })
}

impl Check for DblCheck {
    fn name(&self) -> &'static str {
        "dbl"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[&facts::DBL_MAIL_FROM, &facts::DBL_DKIM, &facts::DBL_ERROR]
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move {
            let domain = ctx
                .envelope
                .mail_from
                .rsplit_once('@')
                .and_then(|(_, d)| query_domain(d));
            match domain {
                Some(d) => self
                    .facts(&BTreeSet::from([d]), &facts::DBL_MAIL_FROM)
                    .await
                    .into(),
                None => Vec::new().into(),
            }
        })
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move {
            let domains = ctx
                .message
                .map(|m| dkim_domains(m.head))
                .unwrap_or_default();
            if domains.is_empty() {
                return Vec::new().into();
            }
            self.facts(&domains, &facts::DBL_DKIM).await.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_domains_from_folded_fields() {
        let head = b"From: a@b.example\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n\td=Mailer.Example; s=sel;\r\n bh=x; b=y\r\ndkim-signature: v=1; d=other.example; s=s\r\nSubject: d=fake.example\r\n\r\nDKIM-Signature: d=body.example\r\n";
        let got: Vec<String> = dkim_domains(head).into_iter().collect();
        assert_eq!(got, vec!["mailer.example", "other.example"]);
        // Repeats do not use up the cap.
        let mut many = String::new();
        for _ in 0..6 {
            many.push_str("DKIM-Signature: v=1; d=same.example; s=s\r\n");
        }
        many.push_str("DKIM-Signature: v=1; d=listed.example; s=s\r\n\r\n");
        let got: Vec<String> = dkim_domains(many.as_bytes()).into_iter().collect();
        assert_eq!(got, vec!["listed.example", "same.example"]);
    }

    #[test]
    fn only_real_domains_are_asked() {
        assert_eq!(query_domain("Example.COM."), Some("example.com".into()));
        assert_eq!(
            query_domain("bücher.example"),
            Some("xn--bcher-kva.example".into())
        );
        assert_eq!(query_domain("[192.0.2.1]"), None);
        assert_eq!(query_domain("localhost"), None);
        assert_eq!(query_domain("a..example"), None);
        assert_eq!(query_domain("evil.example\r\nx"), None);
    }
}
