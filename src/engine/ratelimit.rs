//! Counting the rate limits a stage's policy asks for.
//!
//! Owns: asking the state store (this process or Redis) for each probe's buckets, and the
//! facts the answers become: `ratelimit` (the rule over its rate) and `state.unavailable`
//! (Redis down under `on_failure: closed`), with their metrics and log lines. Must not:
//! count anything itself (`state`) or give the verdict (`policy`).

use crate::context::Context;
use crate::metrics::Event;
use crate::pipeline::Stage;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::policy::Policy;
use crate::policy::limit::Probe;
use crate::state::RateOutcome;

/// The facts rate limits report (the engine's own, beside the checks' `Check::emits`).
pub const EMITS: &[&FactDef] = &[&facts::RATELIMIT, &facts::STATE_UNAVAILABLE];

/// Counts `probes` in order and returns the facts their answers add. Counting stops at the
/// first answer that makes `policy` refuse at `stage`: the limits after it are not spent
/// (those before it are: a GCRA take is not undone). The caller decides once, on `facts`
/// and what this returns.
pub async fn count(
    ctx: &Context,
    session: &str,
    policy: &Policy,
    stage: Stage,
    facts: &[Fact],
    probes: &[Probe],
) -> Vec<Fact> {
    let mut added = Vec::new();
    for probe in probes {
        let mut outcome = RateOutcome::Allowed;
        for bucket in &probe.buckets {
            let l = &probe.limit;
            match ctx.state.rate(bucket, l.rate, l.burst).await {
                RateOutcome::Allowed => {}
                RateOutcome::Unavailable => outcome = RateOutcome::Unavailable,
                RateOutcome::Exceeded if outcome == RateOutcome::Allowed => {
                    outcome = RateOutcome::Exceeded;
                }
                RateOutcome::Exceeded => {}
            }
        }
        let result = match outcome {
            RateOutcome::Allowed => "allowed",
            RateOutcome::Exceeded => {
                tracing::info!(session, rule = %probe.rule, buckets = ?probe.buckets, rate = %probe.limit.rate, "rate limit exceeded");
                added.push(Fact::text(&facts::RATELIMIT, probe.rule.clone()));
                "exceeded"
            }
            RateOutcome::Unavailable => {
                added.push(Fact::flag(&facts::STATE_UNAVAILABLE, true));
                "unavailable"
            }
        };
        ctx.metrics.emit(Event::RateLimit {
            rule: probe.rule.clone(),
            result,
        });
        if outcome != RateOutcome::Allowed {
            let all: Vec<Fact> = facts.iter().chain(&added).cloned().collect();
            if policy.decide(stage, &all).action.refusal().is_some() {
                break;
            }
        }
    }
    added
}
