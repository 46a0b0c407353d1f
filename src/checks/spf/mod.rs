//! SPF (RFC 7208) at MAIL: the MAIL FROM identity and the HELO identity, through the shared
//! resolver, so that policy can act before DATA.
//!
//! Facts: `spf.mailfrom` and `spf.helo` (pass, fail, softfail, neutral, none, temperror,
//! permerror), `spf.domain` (the MAIL FROM identity's domain, whose record is evaluated
//! first; the HELO name for the null sender: not the domain of an included record) and
//! `spf.reason` (why, in words, for the Authentication-Results comment). For the
//! null sender the MAIL FROM identity is `postmaster@<helo>` (RFC 7208 §2.4).
//! The evaluator is ours, one concept per file: `identity.rs` (who is evaluated, §4.3),
//! `record.rs` (record selection and syntax), `macros.rs` (§7), `eval.rs` (check_host(),
//! the mechanisms and the limits), `validated.rs` (the client's validated names, for `ptr`
//! and `%{p}`), `result.rs` (the result and output types); its only DNS access is
//! `dns::lookup::Resolve`.
//! Must not: map results to actions (the policy does).

mod eval;
mod identity;
mod macros;
mod record;
mod result;
#[cfg(test)]
mod stub;
mod validated;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use result::{SpfOutput, SpfResult};

use identity::Identity;

use crate::dns::Dns;
use crate::dns::lookup::Resolve;
use crate::metrics::{Event, Metrics};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture};

/// Both SPF identities of one transaction.
#[derive(Debug, Clone)]
pub struct SpfEvaluation {
    /// The HELO identity.
    pub helo: SpfOutput,
    /// How long the HELO identity took.
    pub helo_took: Duration,
    /// The MAIL FROM identity (postmaster@helo for the null sender).
    pub mail_from: SpfOutput,
    /// How long the MAIL FROM identity took.
    pub mail_from_took: Duration,
}

/// The longest one identity's evaluation may take: then temperror.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Evaluates both identities, one after the other. Each is bounded by `EVALUATION_TIMEOUT`.
pub async fn evaluate(
    dns: &impl Resolve,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
) -> SpfEvaluation {
    let started = Instant::now();
    let helo_out = eval::check_host(dns, &Identity::helo(ip, helo), EVALUATION_TIMEOUT).await;
    let helo_took = started.elapsed();
    let started = Instant::now();
    let identity = Identity::mail_from(ip, helo, mail_from);
    let mail_out = eval::check_host(dns, &identity, EVALUATION_TIMEOUT).await;
    SpfEvaluation {
        helo: helo_out,
        helo_took,
        mail_from: mail_out,
        mail_from_took: started.elapsed(),
    }
}

/// The SPF check.
pub struct SpfCheck {
    dns: Arc<Dns>,
    metrics: Arc<Metrics>,
}

impl SpfCheck {
    /// An SPF check on the shared resolver.
    pub fn new(dns: Arc<Dns>, metrics: Arc<Metrics>) -> Self {
        SpfCheck { dns, metrics }
    }
}

impl Check for SpfCheck {
    fn name(&self) -> &'static str {
        "spf"
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move {
            let helo = ctx.session.helo.as_deref().unwrap_or_default();
            let ip = ctx.session.client.ip();
            let spf = evaluate(self.dns.as_ref(), ip, helo, &ctx.envelope.mail_from).await;
            let (helo_word, mail_word) = (spf.helo.result().word(), spf.mail_from.result().word());
            self.metrics.emit(Event::AuthResult {
                method: "spf",
                result: mail_word,
                duration: spf.mail_from_took,
            });
            self.metrics.emit(Event::AuthResult {
                method: "spf_helo",
                result: helo_word,
                duration: spf.helo_took,
            });
            let mut facts = vec![
                Fact::text("spf.mailfrom", mail_word),
                Fact::text("spf.domain", spf.mail_from.domain()),
                Fact::text("spf.helo", helo_word),
            ];
            if let Some(reason) = spf.mail_from.reason() {
                facts.push(Fact::text("spf.reason", reason));
            }
            facts.into()
        })
    }
}
