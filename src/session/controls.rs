//! The stateful controls of a session: the rate limits a verdict asks to count, and
//! greylisting at the end of DATA. Both ask the state store (this process or Redis) and
//! hand the policy facts: `ratelimit` (the rules over their rate), `greylist` (new, early,
//! pass, auto_allowed, unchecked, skipped) and `state.unavailable` when Redis is down under
//! `on_failure: closed`.
//!
//! Owns: when those questions are asked and how their answers become facts, metrics and
//! log lines. Must not: count anything itself (`state`) or judge (`policy`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::admission::network_of;
use crate::metrics::Event;
use crate::pipeline::Stage;
use crate::pipeline::outcome::{Fact, FactValue, Verdict};
use crate::policy::limit;
use crate::policy::set::ScopeId;
use crate::state::{GreyOutcome, GreyParams, RateOutcome};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Awaits the lookups started at connect whose facts a rule due at `stage` needs (all of
    /// them at DATA); their facts join the connection's and are returned for the stage's.
    pub(super) async fn settle(&mut self, stage: Stage, scope: ScopeId) -> Vec<Fact> {
        let mut settled = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let names = self.pending[i].facts;
            let needed = stage == Stage::Data
                || self.policy.get(scope).needs(stage, names)
                || self.policy.shadow().is_some_and(|s| s.needs(stage, names));
            if !needed {
                i += 1;
                continue;
            }
            let deferred = self.pending.swap_remove(i);
            settled.extend(self.ctx.pipeline.settle(deferred).await);
        }
        self.conn_facts.extend(settled.iter().cloned());
        settled
    }

    /// The verdict at `stage` after counting the rate limits it asks for, and the facts the
    /// counting added (which the caller keeps with the stage's facts). Nothing is counted
    /// when the verdict already refuses: refused attempts do not use up an allowance. Limits
    /// are counted in file order and counting stops at the first excess that refuses, so the
    /// limits after it are not spent (those before it are: a GCRA take is not undone).
    /// `count_from` is the earliest stage whose limits are counted (see
    /// `Policy::decide_counting`).
    pub(super) async fn judge(
        &self,
        stage: Stage,
        count_from: Stage,
        facts: &[Fact],
        scope: ScopeId,
    ) -> (Verdict, Vec<Fact>) {
        // The shadow policy is compared once, on the final facts.
        let verdict = self
            .policy
            .get(scope)
            .decide_counting(stage, count_from, facts);
        if verdict.action.refusal().is_some() || verdict.limits.is_empty() {
            return (self.compare_shadow(stage, facts, verdict), Vec::new());
        }
        let mut added = Vec::new();
        for probe in &verdict.limits {
            let mut outcome = RateOutcome::Allowed;
            for bucket in &probe.buckets {
                let l = &probe.limit;
                match self.ctx.state.rate(bucket, l.rate, l.burst).await {
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
                    tracing::info!(session = %self.info.id, rule = %probe.rule, buckets = ?probe.buckets, rate = %probe.limit.rate, "rate limit exceeded");
                    added.push(Fact::text(limit::EXCEEDED, probe.rule.clone()));
                    "exceeded"
                }
                RateOutcome::Unavailable => {
                    added.push(Fact::flag("state.unavailable", true));
                    "unavailable"
                }
            };
            self.ctx.metrics.emit(Event::RateLimit {
                rule: probe.rule.clone(),
                result,
            });
            if outcome != RateOutcome::Allowed {
                // Stop at the first excess that refuses: the limits after it are not spent.
                let all: Vec<Fact> = facts.iter().chain(&added).cloned().collect();
                let policy = self.policy.get(scope);
                if policy
                    .decide_counting(stage, count_from, &all)
                    .action
                    .refusal()
                    .is_some()
                {
                    break;
                }
            }
        }
        if added.is_empty() {
            return (self.compare_shadow(stage, facts, verdict), added);
        }
        let all: Vec<Fact> = facts.iter().chain(&added).cloned().collect();
        (self.decide(stage, &all, scope), added)
    }

    /// Greylisting of the message just received, as the `greylist` fact: every recipient's
    /// (client network, sender, recipient) triplet is looked up and the message is deferred
    /// if any is new or retried too early. Nothing when greylisting is off or the message is
    /// refused anyway (a refused message leaves no triplet behind).
    pub(super) async fn greylist(&self, facts: &[Fact], scope: ScopeId) -> Vec<Fact> {
        let g = &self.ctx.config.greylisting;
        if !g.enabled
            || self
                .policy
                .get(scope)
                .decide(Stage::Data, facts)
                .action
                .refusal()
                .is_some()
        {
            return Vec::new();
        }
        let ip = self.info.client.ip();
        let has = |name: &str, value: Option<&str>| {
            facts.iter().any(|f| {
                f.name == name
                    && value.is_none_or(|v| matches!(&f.value, FactValue::Text(t) if t == v))
            })
        };
        let skip = g.skip_networks.iter().any(|n| n.contains(&ip))
            || self.ctx.admission.is_allowed(ip)
            || (g.skip_dkim_pass && has("dkim", Some("pass")))
            || (g.skip_dnswl && has("dnswl.listed", None));
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
            let sender = self.env.mail_from.to_ascii_lowercase();
            // The strongest answer over all recipients decides.
            let rank = |o: GreyOutcome| match o {
                GreyOutcome::AutoAllowed => 0,
                GreyOutcome::Pass => 1,
                GreyOutcome::Unchecked => 2,
                GreyOutcome::Early => 3,
                GreyOutcome::New => 4,
                GreyOutcome::Unavailable => 5,
            };
            // One lookup per recipient: bounded as a whole by the check budget, so a slow
            // (not yet failing) Redis cannot hold a large message for minutes.
            let lookups = async {
                let mut worst = GreyOutcome::AutoAllowed;
                for rcpt in &self.env.rcpts {
                    let triplet = format!("{sender}|{}", rcpt.to_ascii_lowercase());
                    let o = self.ctx.state.greylist(&network, &triplet, &params).await;
                    if rank(o) > rank(worst) {
                        worst = o;
                    }
                }
                worst
            };
            let budget = self.ctx.config.timeouts.check;
            Some(
                tokio::time::timeout(budget, lookups)
                    .await
                    .unwrap_or_else(|_| self.ctx.state.unanswered()),
            )
        };
        let label = outcome.map_or("skipped", GreyOutcome::label);
        self.ctx.metrics.emit(Event::Greylist(label));
        if matches!(outcome, Some(GreyOutcome::New | GreyOutcome::Early)) {
            tracing::info!(session = %self.info.id, client = %ip, from = %self.env.mail_from, result = label, "greylisted");
        }
        let mut out = vec![Fact::text("greylist", label)];
        if outcome == Some(GreyOutcome::Unavailable) {
            out.push(Fact::flag("state.unavailable", true));
        }
        out
    }
}
