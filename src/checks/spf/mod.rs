//! SPF (RFC 7208) at MAIL: the MAIL FROM identity and the HELO identity, through the shared
//! resolver, so that policy can act before DATA.
//!
//! Facts: `spf.mailfrom` and `spf.helo` (pass, fail, softfail, neutral, none, temperror,
//! permerror), `spf.domain` (the MAIL FROM identity's domain, whose record is evaluated
//! first; the HELO name for the null sender: not the domain of an included record) and
//! `spf.reason` (why, in words, for the Authentication-Results comment). For the
//! null sender the MAIL FROM identity is `postmaster@<helo>` (RFC 7208 §2.4). The two
//! identities are evaluated at once (once when they are the same), each within
//! `timeouts.spf`.
//! The evaluator is ours, one concept per file: `identity.rs` (who is evaluated, §4.3),
//! `record.rs` (record selection and syntax), `macros.rs` (§7), `eval.rs` (check_host(),
//! the mechanisms and the limits), `validated.rs` (the client's validated names, for `ptr`
//! and `%{p}`), `result.rs` (the result and output types); its only DNS access is
//! `dns::lookup::Resolve`.
//! Must not: map results to actions (the policy does).

mod eval;
mod identity;
pub(crate) mod macros;
pub(crate) mod record;
mod result;
#[cfg(test)]
mod stub;
mod validated;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use result::{SpfOutput, SpfResult};

use identity::Identity;

use crate::dns::Dns;
use crate::dns::lookup::Resolve;
use crate::metrics::{Event, Metrics};
use crate::pipeline::facts::{self, FactDef};
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

/// Evaluates both identities at once, each bounded by `limit` (`timeouts.spf`; then
/// temperror). When they are the same identity (the null sender's MAIL FROM identity is
/// `postmaster@<helo>`, the HELO identity), it is evaluated once and the output serves
/// both.
pub async fn evaluate(
    dns: &impl Resolve,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
    limit: Duration,
) -> SpfEvaluation {
    let helo_id = Identity::helo(ip, helo);
    let mail_id = Identity::mail_from(ip, helo, mail_from);
    if mail_id == helo_id {
        let (out, took) = timed(eval::check_host(dns, &helo_id, limit)).await;
        return SpfEvaluation {
            helo: out.clone(),
            helo_took: took,
            mail_from: out,
            mail_from_took: took,
        };
    }
    let ((helo, helo_took), (mail_from, mail_from_took)) = tokio::join!(
        timed(eval::check_host(dns, &helo_id, limit)),
        timed(eval::check_host(dns, &mail_id, limit)),
    );
    SpfEvaluation {
        helo,
        helo_took,
        mail_from,
        mail_from_took,
    }
}

/// `work`'s output and how long it took.
async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

/// The SPF check.
pub struct SpfCheck {
    dns: Arc<Dns>,
    /// Each identity's limit (`timeouts.spf`).
    limit: Duration,
    metrics: Arc<Metrics>,
}

impl SpfCheck {
    /// An SPF check on the shared resolver, each identity bounded by `limit`.
    pub fn new(dns: Arc<Dns>, limit: Duration, metrics: Arc<Metrics>) -> Self {
        SpfCheck {
            dns,
            limit,
            metrics,
        }
    }
}

impl Check for SpfCheck {
    fn name(&self) -> &'static str {
        "spf"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[
            &facts::SPF_MAILFROM,
            &facts::SPF_DOMAIN,
            &facts::SPF_HELO,
            &facts::SPF_REASON,
        ]
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        Box::pin(async move {
            let helo = ctx.session.helo.as_deref().unwrap_or_default();
            let ip = ctx.session.client.ip();
            let mail_from = &ctx.envelope.mail_from;
            let spf = evaluate(self.dns.as_ref(), ip, helo, mail_from, self.limit).await;
            // Both methods are counted, also when one evaluation served both.
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
                Fact::text(&facts::SPF_MAILFROM, mail_word),
                Fact::text(&facts::SPF_DOMAIN, spf.mail_from.domain()),
                Fact::text(&facts::SPF_HELO, helo_word),
            ];
            if let Some(reason) = spf.mail_from.reason() {
                facts.push(Fact::text(&facts::SPF_REASON, reason));
            }
            facts.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::stub::{LIMIT, Stub};
    use super::*;

    fn ip() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_identities_are_evaluated_at_once() {
        // Every TXT answer takes 15 s: one after the other, 30 s; at once, 15 s.
        let mut dns = Stub::default()
            .txt("helo.example.org", "v=spf1 +all")
            .txt("example.com", "v=spf1 -all");
        dns.delay = Some(Duration::from_secs(15));
        let started = tokio::time::Instant::now();
        let spf = evaluate(&dns, ip(), "helo.example.org", "a@example.com", LIMIT).await;
        assert_eq!(spf.helo.result(), SpfResult::Pass);
        assert_eq!(spf.mail_from.result(), SpfResult::Fail);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{took:?}");
        // Each within its own limit, whatever the other does.
        let spf = evaluate(
            &dns,
            ip(),
            "helo.example.org",
            "a@example.com",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(spf.helo.result(), SpfResult::TempError);
        assert_eq!(spf.mail_from.result(), SpfResult::TempError);
    }

    #[tokio::test]
    async fn the_null_sender_is_evaluated_once_for_both() {
        let dns = Stub::default().txt("helo.example.org", "v=spf1 ip4:192.0.2.1 -all");
        let spf = evaluate(&dns, ip(), "helo.example.org", "", LIMIT).await;
        assert_eq!(dns.asked("TXT helo.example.org"), 1);
        assert_eq!(spf.helo, spf.mail_from);
        assert_eq!(
            (spf.mail_from.result(), spf.mail_from.domain()),
            (SpfResult::Pass, "helo.example.org")
        );
        assert_eq!(spf.helo_took, spf.mail_from_took);
        // Two identities: two evaluations.
        let spf = evaluate(&dns, ip(), "helo.example.org", "a@helo.example.org", LIMIT).await;
        assert_eq!(dns.asked("TXT helo.example.org"), 3);
        assert_eq!(spf.mail_from.result(), SpfResult::Pass);
    }
}
