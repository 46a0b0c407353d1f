//! The DATA half of sender authentication: DKIM, then ARC, then DMARC over one parse of the
//! message, and the Authentication-Results header (RFC 8601) that reports all of it,
//! SPF from MAIL included.
//!
//! One check because the three share the parsed message and DMARC needs the DKIM outputs
//! themselves; each method's logic lives in its own file (`dkim.rs`, `arc.rs`, `dmarc.rs`).
//! Must not: look SPF up again (it reads `spf.mailfrom` / `spf.domain` from the facts).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dns::Parameters;
use mail_auth::headers::HeaderWriter;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticationResults, DkimOutput, DkimResult, SpfOutput};

use crate::checks::{arc, dkim, dmarc, spf};
use crate::dns::Dns;
use crate::metrics::{Event, Metrics};
use crate::pipeline::outcome::{Fact, FactValue, Findings};
use crate::pipeline::{Check, CheckContext, CheckFuture};

/// DKIM + ARC + DMARC at DATA, and the Authentication-Results header.
pub struct MessageAuth {
    dns: Arc<Dns>,
    authserv_id: String,
    host: String,
    allow_partial_body: bool,
    metrics: Arc<Metrics>,
}

impl MessageAuth {
    /// The check on the shared resolver.
    pub fn new(
        dns: Arc<Dns>,
        authserv_id: String,
        host: String,
        allow_partial_body: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        MessageAuth {
            dns,
            authserv_id,
            host,
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
        let facts_so_far = ctx.envelope.facts.as_slice();
        // No SPF fact means the SPF check did not finish (budget or panic): that is a
        // temporary error, not an absence of policy.
        let spf_word = text(facts_so_far, "spf.mailfrom").unwrap_or(
            if text(facts_so_far, "check.error") == Some("spf") {
                "temperror"
            } else {
                "none"
            },
        );
        let spf_domain = text(facts_so_far, "spf.domain").unwrap_or("");
        let spf_out = SpfOutput::new(spf_domain.to_string()).with_result(spf::parse_word(spf_word));
        let helo = ctx.session.helo.as_deref().unwrap_or_default();
        let ip: IpAddr = ctx.session.client.ip();
        let spf_params = SpfParameters::mail_from(ip, helo, &self.host, &ctx.envelope.mail_from);
        let header =
            AuthenticationResults::new(&self.authserv_id).with_spf_result(&spf_out, &spf_params);

        let Some(message) = raw.and_then(|raw| dkim::parse(raw, self.allow_partial_body)) else {
            let skipped = match raw {
                None => Fact::flag("auth.skipped_too_large", true),
                // Not even one header parses: there is nothing to verify.
                Some(_) => Fact::text("dkim", "none"),
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
        let dkim_out = self
            .dns
            .authenticator()
            .verify_dkim(Parameters::new(&message).with_cache(self.dns.cache()))
            .await;
        self.emit("dkim", dkim::overall(&dkim_out), started.elapsed());
        facts.extend(dkim::facts(&dkim_out));
        // The domains that authenticated this message: DKIM d= that passed, and the SPF
        // domain when SPF passed (what a per-sender rate limit can trust).
        let dkim_domains: Vec<Fact> = facts
            .iter()
            .filter(|f| f.name == "dkim.domain")
            .map(|f| Fact {
                name: "auth.domain",
                value: f.value.clone(),
            })
            .collect();
        facts.extend(dkim_domains);
        facts.extend(spf_pass_domain(spf_word, spf_domain));

        let started = Instant::now();
        let arc_out = self
            .dns
            .authenticator()
            .verify_arc(Parameters::new(&message).with_cache(self.dns.cache()))
            .await;
        self.emit("arc", arc::word(&arc_out), started.elapsed());
        facts.extend(arc::facts(&arc_out));

        let started = Instant::now();
        let dmarc_params = DmarcParameters::new(&message, &dkim_out, spf_domain, &spf_out);
        let dmarc_out = self
            .dns
            .authenticator()
            .verify_dmarc(Parameters::new(dmarc_params).with_cache(self.dns.cache()))
            .await;
        self.emit("dmarc", dmarc::word(&dmarc_out.result()), started.elapsed());
        facts.extend(dmarc::facts(&dmarc_out));

        // RFC 8601 §2.7.1: an unsigned message is reported as dkim=none, not left out.
        let unsigned = [DkimOutput::from(DkimResult::None)];
        let dkim_reported = if dkim_out.is_empty() {
            &unsigned[..]
        } else {
            &dkim_out[..]
        };
        let header = header
            .with_dkim_results(dkim_reported, message.first_from_address())
            .with_arc_result(&arc_out, ip)
            .with_dmarc_result(&dmarc_out);
        Findings {
            facts,
            headers: vec![header.to_header()],
        }
    }
}

/// `auth.domain` for the SPF domain when SPF passed.
fn spf_pass_domain(word: &str, domain: &str) -> Option<Fact> {
    (word == "pass" && !domain.is_empty())
        .then(|| Fact::text("auth.domain", domain.to_ascii_lowercase()))
}

/// The first textual fact called `name`.
fn text<'a>(facts: &'a [Fact], name: &str) -> Option<&'a str> {
    facts.iter().find_map(|f| match &f.value {
        FactValue::Text(t) if f.name == name => Some(t.as_str()),
        _ => None,
    })
}

impl Check for MessageAuth {
    fn name(&self) -> &'static str {
        "message_auth"
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move { self.evaluate(ctx, ctx.message.and_then(|m| m.raw)).await })
    }
}
