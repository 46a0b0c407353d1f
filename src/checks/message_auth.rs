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
use mail_auth::{AuthenticationResults, SpfOutput};

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

    async fn evaluate(&self, ctx: CheckContext<'_>, raw: &[u8]) -> Findings {
        let mut facts = Vec::new();
        let spf_word = text(ctx.envelope.facts.as_slice(), "spf.mailfrom").unwrap_or("none");
        let spf_domain = text(ctx.envelope.facts.as_slice(), "spf.domain").unwrap_or("");
        let spf_out = SpfOutput::new(spf_domain.to_string()).with_result(spf::parse_word(spf_word));
        let helo = ctx.session.helo.as_deref().unwrap_or_default();
        let ip: IpAddr = ctx.session.client.ip();
        let spf_params = SpfParameters::mail_from(ip, helo, &self.host, &ctx.envelope.mail_from);
        let mut header = AuthenticationResults::new(&self.authserv_id);

        let Some(message) = dkim::parse(raw, self.allow_partial_body) else {
            // Not even one header parses: report SPF only, and say DKIM/DMARC had nothing.
            facts.push(Fact::text("dkim", "none"));
            facts.push(Fact::text("dmarc", "none"));
            header = header.with_spf_result(&spf_out, &spf_params);
            return Findings {
                facts,
                headers: vec![header.to_header()],
            };
        };

        let started = Instant::now();
        let dkim_out = self
            .dns
            .authenticator()
            .verify_dkim(Parameters::new(&message).with_cache(self.dns.cache()))
            .await;
        self.emit("dkim", dkim::overall(&dkim_out), started.elapsed());
        facts.extend(dkim::facts(&dkim_out));

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

        header = header
            .with_dkim_results(&dkim_out, message.first_from_address())
            .with_spf_result(&spf_out, &spf_params)
            .with_arc_result(&arc_out, ip)
            .with_dmarc_result(&dmarc_out);
        Findings {
            facts,
            headers: vec![header.to_header()],
        }
    }
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
        Box::pin(async move {
            match ctx.message.and_then(|m| m.raw) {
                Some(raw) => self.evaluate(ctx, raw).await,
                // Too large to verify (auth.max_verify_size): say so, decide nothing.
                None => vec![Fact::flag("auth.skipped_too_large", true)].into(),
            }
        })
    }
}
