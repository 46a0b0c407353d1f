//! The DATA half of sender authentication: DKIM, then ARC, then DMARC over one parse of the
//! message, and the Authentication-Results header (RFC 8601) that reports all of it,
//! SPF from MAIL included.
//!
//! One check because the three share the parsed message and DMARC needs the DKIM outputs
//! themselves; each method's logic lives in its own file (`dkim.rs`, `arc.rs`, `dmarc/`).
//! The verdicts are ours (`dkim::verdicts` corrects mail-auth's DKIM results, `dmarc` is our
//! own evaluation); mail-auth verifies the DKIM and ARC cryptography. Must not: look SPF up
//! again (it reads `spf.mailfrom` / `spf.domain` / `spf.reason` from the facts).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::dns::Parameters;

use crate::checks::auth_results::AuthResults;
use crate::checks::dkim::DkimVerdict;
use crate::checks::dmarc::{self, DmarcInput};
use crate::checks::{arc, dkim};
use crate::dns::Dns;
use crate::metrics::{Event, Metrics};
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::{Fact, Findings};
use crate::pipeline::{Check, CheckContext, CheckFuture};
use crate::smtp::headers::unfold;

/// DKIM + ARC + DMARC at DATA, and the Authentication-Results header.
pub struct MessageAuth {
    dns: Arc<Dns>,
    authserv_id: String,
    allow_partial_body: bool,
    metrics: Arc<Metrics>,
}

impl MessageAuth {
    /// The check on the shared resolver.
    pub fn new(
        dns: Arc<Dns>,
        authserv_id: String,
        allow_partial_body: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        MessageAuth {
            dns,
            authserv_id,
            allow_partial_body,
            metrics,
        }
    }

    fn emit(&self, method: &'static str, result: &'static str, duration: Duration) {
        self.metrics.emit(Event::AuthResult {
            method,
            result,
            duration,
        });
    }

    /// Everything at DATA. `raw` is `None` above `auth.max_verify_size`: then only SPF
    /// (already known from MAIL) is reported.
    async fn evaluate(&self, ctx: CheckContext<'_>, raw: Option<&[u8]>) -> Findings {
        let facts_so_far = ctx.facts;
        // No SPF fact means the SPF check did not finish (budget or panic): that is a
        // temporary error, not an absence of policy.
        let spf_word = text(facts_so_far, &facts::SPF_MAILFROM).unwrap_or(
            if text(facts_so_far, &facts::CHECK_ERROR) == Some("spf") {
                "temperror"
            } else {
                "none"
            },
        );
        // Without an SPF result (the check was cut off) the identity is still the MAIL FROM
        // domain, or the HELO name for the null sender: a temperror there must be able to
        // turn a DMARC fail into a temperror.
        let helo = ctx.session.helo.as_deref().unwrap_or_default();
        let identity = match ctx.envelope.mail_from.rsplit_once('@') {
            Some((_, domain)) => domain,
            None => helo,
        };
        let spf_domain = text(facts_so_far, &facts::SPF_DOMAIN).unwrap_or(identity);
        let spf_reason = text(facts_so_far, &facts::SPF_REASON);
        let ip: IpAddr = ctx.session.client.ip();
        let mut header = AuthResults::new(&self.authserv_id);
        header.spf(spf_word, spf_reason, &ctx.envelope.mail_from, helo);

        let Some(message) = raw.and_then(dkim::parse) else {
            let skipped = match raw {
                None => Fact::flag(&facts::AUTH_SKIPPED_TOO_LARGE, true),
                // Not even one header parses: there is nothing to verify.
                Some(_) => Fact::text(&facts::DKIM, "none"),
            };
            let mut facts = vec![skipped];
            facts.extend(spf_pass_domain(spf_word, spf_domain));
            return Findings {
                facts,
                headers: vec![header.to_header()],
            };
        };
        let mut facts = Vec::new();
        let started = Instant::now();
        let fields = dkim::signature_fields(&message);
        let verdicts = if fields > dkim::MAX_SIGNATURES {
            dkim::too_many(fields)
        } else {
            let dkim_out = self
                .dns
                .authenticator()
                .verify_dkim(Parameters::new(&message).with_cache(self.dns.cache()))
                .await;
            dkim::verdicts(&message, &dkim_out, self.allow_partial_body)
        };
        self.emit("dkim", dkim::overall(&verdicts), started.elapsed());
        facts.extend(dkim::facts(&verdicts));
        // The domains that authenticated this message: DKIM d= that passed, and the SPF
        // domain when SPF passed (what a per-sender rate limit can trust).
        let dkim_domains = dkim::pass_domains(&verdicts);
        facts.extend(
            dkim_domains
                .iter()
                .map(|d| Fact::text(&facts::AUTH_DOMAIN, d.clone())),
        );
        facts.extend(spf_pass_domain(spf_word, spf_domain));

        let started = Instant::now();
        let arc_out = self
            .dns
            .authenticator()
            .verify_arc(Parameters::new(&message).with_cache(self.dns.cache()))
            .await;
        let arc_verdict = arc::verdict(&arc_out);
        self.emit("arc", arc_verdict.result, started.elapsed());
        facts.extend(arc::facts(&arc_verdict));

        let started = Instant::now();
        let from_domains = author_domains(message.from_addresses());
        // RFC 5322 §3.6: exactly one From field. Counted on the raw header block, names
        // trimmed, because mail-auth's parser does not take `From :` for a From field
        // while a mail reader may show it; more than one, or more author domains than are
        // evaluated, and DMARC cannot say whose message it is.
        let from_fields = from_fields(raw.unwrap_or_default());
        facts.push(Fact::count(
            &facts::DMARC_FROM_FIELDS,
            u64::try_from(from_fields).unwrap_or(u64::MAX),
        ));
        let dkim_temperror: Vec<String> = verdicts
            .iter()
            .filter(|v| v.result == "temperror")
            .filter_map(|v| v.domain.clone())
            .collect();
        let input = DmarcInput {
            from_domains: &from_domains,
            spf_result: spf_word,
            spf_domain,
            dkim_pass_domains: &dkim_domains,
            dkim_temperror_domains: &dkim_temperror,
        };
        let dmarc_out = dmarc::evaluate(&*self.dns, &input).await;
        self.emit("dmarc", dmarc_out.result.word(), started.elapsed());
        facts.extend(dmarc::facts(&dmarc_out));
        // The evaluation counts the author domains as the DNS knows them (A-labels), so
        // one domain written two ways is one.
        if from_fields > 1 || dmarc_out.author_domains > dmarc::MAX_AUTHOR_DOMAINS {
            facts.push(Fact::flag(&facts::DMARC_AMBIGUOUS_FROM, true));
        }

        // RFC 8601 §2.7.1: an unsigned message is reported as dkim=none, not left out.
        if verdicts.is_empty() {
            header.dkim(&DkimVerdict::unsigned());
        }
        for verdict in &verdicts {
            header.dkim(verdict);
        }
        header.arc(arc_verdict.result, arc_verdict.reason.as_deref(), ip);
        header.dmarc(
            dmarc_out.result.word(),
            dmarc_out.reason.as_deref(),
            &dmarc_out.domain,
            dmarc_out.policy.word(),
        );
        Findings {
            facts,
            headers: vec![header.to_header()],
        }
    }
}

/// The distinct author domains of the From field(s), lowercased, in order (RFC 9989 §4.4:
/// each is an Author Domain), in time linear however long the list. An address without a
/// domain has none.
fn author_domains(addresses: &[String]) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut domains: Vec<String> = Vec::new();
    for address in addresses {
        let Some((_, domain)) = address.rsplit_once('@') else {
            continue;
        };
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if !domain.is_empty() && seen.insert(domain.clone()) {
            domains.push(domain);
        }
    }
    domains
}

/// How many From fields the header block has, each name compared without the white space
/// an obsolete `From :` puts before its colon (RFC 5322 §4.5.3).
fn from_fields(raw: &[u8]) -> usize {
    unfold(raw)
        .iter()
        .filter(|field| {
            field
                .split_once(':')
                .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("from"))
        })
        .count()
}

/// `auth.domain` for the SPF domain when SPF passed.
fn spf_pass_domain(word: &str, domain: &str) -> Option<Fact> {
    (word == "pass" && !domain.is_empty())
        .then(|| Fact::text(&facts::AUTH_DOMAIN, domain.to_ascii_lowercase()))
}

/// The first textual fact called `name`.
fn text<'a>(facts: &'a [Fact], def: &FactDef) -> Option<&'a str> {
    facts.iter().find_map(|f| f.text_of(def))
}

impl Check for MessageAuth {
    fn name(&self) -> &'static str {
        "message_auth"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[
            &facts::AUTH_SKIPPED_TOO_LARGE,
            &facts::DKIM,
            &facts::DKIM_SIGNATURE,
            &facts::DKIM_PARTIAL_BODY_REFUSED,
            &facts::DKIM_L_TAG,
            &facts::DKIM_DOMAIN,
            &facts::ARC,
            &facts::DMARC,
            &facts::DMARC_POLICY,
            &facts::DMARC_DOMAIN,
            &facts::DMARC_AUTHOR_DOMAINS,
            &facts::DMARC_FROM_FIELDS,
            &facts::DMARC_AMBIGUOUS_FROM,
            &facts::AUTH_DOMAIN,
        ]
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move { self.evaluate(ctx, ctx.message.and_then(|m| m.raw)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_domains_are_distinct_lowercase_and_in_order() {
        let from = [
            "Alice@Victim.Example".to_string(),
            "mallory@spoofer.example".to_string(),
            "bob@victim.example.".to_string(),
            "no-domain".to_string(),
        ];
        assert_eq!(
            author_domains(&from),
            vec!["victim.example".to_string(), "spoofer.example".to_string()]
        );
        assert!(author_domains(&[]).is_empty());
        let many: Vec<String> = (0..10_000).map(|i| format!("a@d{i}.example")).collect();
        assert_eq!(author_domains(&many).len(), 10_000);
    }

    #[test]
    fn from_fields_are_counted_with_their_names_trimmed() {
        let one = b"From: a@example.org\r\nSubject: x\r\n\r\nFrom: in the body\r\n";
        assert_eq!(from_fields(one), 1);
        let two = b"From : ceo@victim.example\r\nfrom:\r\n x@attacker.example\r\n\r\n";
        assert_eq!(from_fields(two), 2);
        assert_eq!(from_fields(b"Subject: no author\r\n\r\n"), 0);
    }
}
