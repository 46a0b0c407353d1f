//! The dry run's account of a transaction (`portcullis policy test`): per stage, the facts
//! found, every rule due with what the policy's walk made of it (fired, no, or skipped
//! because an earlier rule decided), the verdict and its reply, what would be counted, and
//! the shadow policy's verdict where the gateway would compare it.
//!
//! Owns: the report's text. Must not: decide (the engine hands it what it decided).

use std::fmt::Write as _;

use crate::pipeline::Stage;
use crate::pipeline::outcome::Fact;
use crate::policy::limit::Probe;
use crate::policy::verdict::Verdict;
use crate::policy::walk::Evaluated;

/// A report being written.
#[derive(Debug, Default)]
pub struct Explain {
    out: String,
}

impl Explain {
    /// One stage's decision: its heading, the facts it found, the rules and the verdict.
    pub fn stage(
        &mut self,
        stage: Stage,
        rcpt: Option<&str>,
        found: &[Fact],
        rules: &[Evaluated],
        verdict: &Verdict,
    ) {
        let out = &mut self.out;
        let _ = match rcpt {
            Some(r) => writeln!(out, "{} <{r}>", stage.label().to_uppercase()),
            None => writeln!(out, "{}", stage.label().to_uppercase()),
        };
        for fact in found {
            let _ = writeln!(out, "  fact  {fact}");
        }
        for rule in rules {
            let _ = writeln!(out, "  rule  {}: {}", rule.name, rule.seen);
        }
        let reply = verdict
            .action
            .refusal()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  => {}{reply} score={} rules={:?}",
            verdict.action.label(),
            verdict.score,
            verdict.rules
        );
    }

    /// The rate limits the gateway would count here (a dry run never spends an allowance).
    pub fn would_count(&mut self, probes: &[Probe]) {
        for probe in probes {
            let _ = writeln!(
                self.out,
                "  limit {}: would count {} ({} burst {}), not counted in a dry run",
                probe.rule,
                probe.buckets.join(", "),
                probe.limit.rate,
                probe.limit.burst
            );
        }
    }

    /// The shadow policy's verdict.
    pub fn shadow(&mut self, candidate: &Verdict) {
        let _ = writeln!(
            self.out,
            "  shadow => {} score={} rules={:?}",
            candidate.action.label(),
            candidate.score,
            candidate.rules
        );
    }

    /// A line of the front end's own (a deferred recipient, the scope, headers).
    pub fn note(&mut self, line: &str) {
        self.out.push_str(line);
        if !line.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// The report so far.
    pub fn text(&self) -> &str {
        &self.out
    }
}
