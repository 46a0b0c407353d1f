//! SPF (RFC 7208) at MAIL: the MAIL FROM identity and the HELO identity, through the shared
//! resolver, so that policy can act before DATA.
//!
//! Facts: `spf.mailfrom` and `spf.helo` (pass, fail, softfail, neutral, none, temperror,
//! permerror) and `spf.domain` (the domain whose record decided `spf.mailfrom`). For the
//! null sender the MAIL FROM identity is `postmaster@<helo>` (RFC 7208 §2.4).
//! Must not: map results to actions (the policy does).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::dns::Parameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{SpfOutput, SpfResult};

use crate::dns::Dns;
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

/// Evaluates both identities. `host` is our own name (the `%{r}` macro).
pub async fn evaluate(
    dns: &Dns,
    ip: IpAddr,
    helo: &str,
    host: &str,
    mail_from: &str,
) -> SpfEvaluation {
    let auth = dns.authenticator();
    let started = Instant::now();
    let helo_params = SpfParameters::helo(ip, helo, host);
    let helo_out = auth
        .check_host(Parameters::new(helo_params).with_cache(dns.cache()))
        .await;
    let helo_took = started.elapsed();
    let started = Instant::now();
    let mail_params = SpfParameters::mail_from(ip, helo, host, mail_from);
    let mail_out = auth
        .check_host(Parameters::new(mail_params).with_cache(dns.cache()))
        .await;
    SpfEvaluation {
        helo: helo_out,
        helo_took,
        mail_from: mail_out,
        mail_from_took: started.elapsed(),
    }
}

/// The RFC 8601 result word.
pub fn word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// Parses a result word back (facts carry words; DMARC needs the value).
pub fn parse_word(word: &str) -> SpfResult {
    match word {
        "pass" => SpfResult::Pass,
        "fail" => SpfResult::Fail,
        "softfail" => SpfResult::SoftFail,
        "neutral" => SpfResult::Neutral,
        "temperror" => SpfResult::TempError,
        "permerror" => SpfResult::PermError,
        _ => SpfResult::None,
    }
}

/// The SPF check.
pub struct SpfCheck {
    dns: Arc<Dns>,
    host: String,
    metrics: Arc<Metrics>,
}

impl SpfCheck {
    /// An SPF check on the shared resolver; `host` is our host name.
    pub fn new(dns: Arc<Dns>, host: String, metrics: Arc<Metrics>) -> Self {
        SpfCheck { dns, host, metrics }
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
            let spf = evaluate(&self.dns, ip, helo, &self.host, &ctx.envelope.mail_from).await;
            let (helo_word, mail_word) = (word(spf.helo.result()), word(spf.mail_from.result()));
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
            vec![
                Fact::text("spf.mailfrom", mail_word),
                Fact::text("spf.domain", spf.mail_from.domain()),
                Fact::text("spf.helo", helo_word),
            ]
            .into()
        })
    }
}
