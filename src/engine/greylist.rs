//! Greylisting as a counting step at the end of a message: every recipient's (client
//! network, sender, recipient) triplet is looked up in the state store and the message is
//! deferred if any is new or retried too early.
//!
//! Owns: who is exempt (`skip_networks`, the admission allow list, a DKIM pass, a DNSWL
//! listing), the strongest answer over the recipients, the `greylist` fact (new, early,
//! pass, auto_allowed, unchecked, skipped) and `state.unavailable`, with the metric and the
//! log line. Must not: keep triplets itself (`state`) or decide (`policy`: the built-in
//! greylisting rule turns `new`/`early` into a 451).

use crate::admission::network_of;
use crate::context::Context;
use crate::metrics::Event;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::smtp::envelope::{Envelope, SessionInfo};
use crate::state::{GreyOutcome, GreyParams};

/// The facts greylisting reports (the engine's own, beside the checks' `Check::emits`).
pub const EMITS: &[&FactDef] = &[&facts::GREYLIST, &facts::STATE_UNAVAILABLE];

/// The greylisting facts of the message of `env` (the caller skips messages the policy
/// refuses anyway: a refused message leaves no triplet behind).
pub async fn check(ctx: &Context, info: &SessionInfo, env: &Envelope, facts: &[Fact]) -> Vec<Fact> {
    let g = &ctx.config.greylisting;
    let ip = info.client.ip();
    let has = |def: &FactDef, value: Option<&str>| {
        facts
            .iter()
            .any(|f| f.is(def) && value.is_none_or(|v| f.text_of(def) == Some(v)))
    };
    let skip = g.skip_networks.iter().any(|n| n.contains(&ip))
        || ctx.admission.is_allowed(ip)
        || (g.skip_dkim_pass && has(&facts::DKIM, Some("pass")))
        || (g.skip_dnswl && has(&facts::DNSWL_LISTED, None));
    let outcome = if skip {
        None
    } else {
        let params = GreyParams {
            delay: g.delay,
            expiry: g.expiry,
            pass_ttl: g.pass_ttl,
            auto_allow_after: g.auto_allow_after,
        };
        let network = network_of(ip).to_string();
        let sender = env.mail_from.to_ascii_lowercase();
        // The strongest answer over all recipients decides.
        let rank = |o: GreyOutcome| match o {
            GreyOutcome::AutoAllowed => 0,
            GreyOutcome::Pass => 1,
            GreyOutcome::Unchecked => 2,
            GreyOutcome::Early => 3,
            GreyOutcome::New => 4,
            GreyOutcome::Unavailable => 5,
        };
        // One lookup per recipient: bounded as a whole by the check budget, so a slow (not
        // yet failing) Redis cannot hold a large message for minutes.
        let lookups = async {
            let mut worst = GreyOutcome::AutoAllowed;
            for rcpt in &env.rcpts {
                let triplet = format!("{sender}|{}", rcpt.to_ascii_lowercase());
                let o = ctx.state.greylist(&network, &triplet, &params).await;
                if rank(o) > rank(worst) {
                    worst = o;
                }
            }
            worst
        };
        Some(
            tokio::time::timeout(ctx.config.timeouts.check, lookups)
                .await
                .unwrap_or_else(|_| ctx.state.unanswered()),
        )
    };
    let label = outcome.map_or("skipped", GreyOutcome::label);
    ctx.metrics.emit(Event::Greylist(label));
    if matches!(outcome, Some(GreyOutcome::New | GreyOutcome::Early)) {
        tracing::info!(session = %info.id, client = %ip, from = %env.mail_from, result = label, "greylisted");
    }
    let mut out = vec![Fact::text(&facts::GREYLIST, label)];
    if outcome == Some(GreyOutcome::Unavailable) {
        out.push(Fact::flag(&facts::STATE_UNAVAILABLE, true));
    }
    out
}
