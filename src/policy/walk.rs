//! The one walk over a policy's rules at a stage, shared by `Policy::decide` (which keeps
//! the verdict) and `Policy::explain` (which keeps what became of each rule, for the dry
//! run), so that the explanation cannot tell another story than the decision.
//!
//! Owns: the order of evaluation and where it stops: the built-in rules, all of them; then,
//! unless one of them refused, the YAML rules due at the stage in file order until one
//! decides (`accept`, `reject`, `tempfail`); then, at DATA and only if none decided, the
//! score thresholds. Must not: count rate limits or do I/O (a limit rule takes part only
//! once its `ratelimit` fact says it was exceeded).

use std::fmt;

use super::verdict::Verdict;
use super::{Policy, limit};
use crate::pipeline::Stage;
use crate::pipeline::outcome::{Action, Fact};
use crate::smtp::reply;

/// What became of one rule in a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Its condition held: it is in the verdict's rules.
    Fired,
    /// Evaluated; its condition did not hold (or its limit was not exceeded).
    No,
    /// Not evaluated: the rule named here decided before it was reached.
    Skipped(String),
}

/// One rule of a walk, in evaluation order: built-in rules, YAML rules, then at DATA the
/// thresholds (named `score>=N`, as in verdicts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    /// The rule's name.
    pub name: String,
    /// What became of it.
    pub seen: Seen,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Fired => f.write_str("FIRED"),
            Seen::No => f.write_str("no"),
            Seen::Skipped(by) => write!(f, "SKIPPED (decided by rule {by})"),
        }
    }
}

/// Where a walk writes what it saw of each rule: nowhere when deciding live.
struct Trace<'a>(Option<&'a mut Vec<Evaluated>>);

impl Trace<'_> {
    fn see(&mut self, name: &str, seen: Seen) {
        if let Some(out) = self.0.as_mut() {
            out.push(Evaluated {
                name: name.to_string(),
                seen,
            });
        }
    }

    /// The rules named by `names` were not reached: `by` decided. `names` is called only
    /// when tracing.
    fn skip(&mut self, names: impl FnOnce() -> Vec<String>, by: &str) {
        if let Some(out) = self.0.as_mut() {
            out.extend(names().into_iter().map(|name| Evaluated {
                name,
                seen: Seen::Skipped(by.to_string()),
            }));
        }
    }
}

impl Policy {
    /// The verdict at `stage` over `facts`, writing what became of each rule into `trace`
    /// when given. `decide` and `explain` are this one walk.
    pub(super) fn walk(
        &self,
        stage: Stage,
        facts: &[Fact],
        trace: Option<&mut Vec<Evaluated>>,
    ) -> Verdict {
        let mut trace = Trace(trace);
        let mut verdict = Verdict::accept();
        // The built-in rule whose action the verdict carries: the one a refusal came from.
        let mut strongest = "";
        for rule in &self.rules {
            if !rule.when.holds(facts) {
                trace.see(rule.builtin.name(), Seen::No);
                continue;
            }
            let before = verdict.action.clone();
            verdict.merge(rule.builtin.name(), &rule.action);
            verdict.limits.extend(rule.builtin.limit());
            if verdict.action != before {
                strongest = rule.builtin.name();
            }
            trace.see(rule.builtin.name(), Seen::Fired);
        }
        if verdict.action.refusal().is_some() {
            trace.skip(|| self.after(stage, 0), strongest);
            return verdict;
        }
        for (i, rule) in self.due(stage).enumerate() {
            let holds = rule.when.holds(facts)
                && (rule.limit.is_none() || limit::exceeded(&rule.name, facts));
            if !holds {
                trace.see(&rule.name, Seen::No);
                continue;
            }
            trace.see(&rule.name, Seen::Fired);
            verdict.score += rule.score;
            match &rule.action {
                // Accept stops the YAML rules; it cannot undo what the built-in rules (DMARC
                // quarantine) or earlier rules decided.
                None | Some(Action::Accept) => verdict.rules.push(rule.name.clone()),
                Some(action) => verdict.merge(&rule.name, action),
            }
            if rule.action.as_ref().is_some_and(Action::decides) {
                trace.skip(|| self.after(stage, i + 1), &rule.name);
                return verdict;
            }
        }
        if stage == Stage::Data {
            self.apply_thresholds(&mut verdict, &mut trace);
        }
        verdict
    }

    /// The names of the YAML rules due at `stage` from the `from`-th on, then the
    /// thresholds if they apply at `stage`: what a decision at that point leaves unreached.
    fn after(&self, stage: Stage, from: usize) -> Vec<String> {
        let mut names: Vec<String> = self.due(stage).skip(from).map(|r| r.name.clone()).collect();
        if stage == Stage::Data {
            names.extend(self.levels().into_iter().map(|(name, _, _)| name));
        }
        names
    }

    /// The configured thresholds, lowest first: name (`score>=N`, after the threshold, not
    /// the score: one metric series per configured level), level and action.
    fn levels(&self) -> Vec<(String, i64, Action)> {
        let t = &self.thresholds;
        [
            (t.tag, Action::Tag),
            (t.quarantine, Action::Quarantine),
            (t.reject, Action::Reject(reply::POLICY_REJECT)),
        ]
        .into_iter()
        .filter_map(|(level, action)| Some((format!("score>={}", level?), level?, action)))
        .collect()
    }

    /// The score against the thresholds: the highest one reached is merged into the
    /// verdict; the others did not fire.
    fn apply_thresholds(&self, verdict: &mut Verdict, trace: &mut Trace<'_>) {
        let levels = self.levels();
        let reached = levels
            .iter()
            .rposition(|(_, level, _)| verdict.score >= *level);
        for (i, (name, _, action)) in levels.iter().enumerate() {
            if Some(i) == reached {
                verdict.merge(name, action);
                trace.see(name, Seen::Fired);
            } else {
                trace.see(name, Seen::No);
            }
        }
    }
}
