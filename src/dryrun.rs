//! `portcullis policy test`: run the real pipeline on a message without a client or a
//! backend, and explain the verdict.
//!
//! Owns: simulating one transaction stage by stage (connect, HELO, MAIL, each RCPT, DATA)
//! with the same checks and policy the gateway uses, stopping where the gateway would refuse,
//! and the report: facts, every rule with whether it fired, the verdict and its reply. Also
//! splitting a directory or an mbox into messages and summarising them. Must not: send mail
//! anywhere (the backend is never contacted).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::context::Context;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::pipeline::outcome::{Fact, Verdict};
use crate::pipeline::{CheckContext, MessageView, Stage};
use crate::policy::set::{PolicySet, ScopeId};
use crate::smtp::codec::BodyDecoder;
use crate::smtp::envelope::{Envelope, SessionInfo};

/// One transaction to simulate.
#[derive(Debug, Clone)]
pub struct Input {
    /// The client's address.
    pub client: IpAddr,
    /// Its EHLO name.
    pub helo: String,
    /// MAIL FROM (empty for the null sender).
    pub from: String,
    /// RCPT TO addresses.
    pub rcpts: Vec<String>,
}

/// What happened to one message.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The stage at which the decision fell.
    pub stage: Stage,
    /// The verdict there.
    pub verdict: Verdict,
    /// The text report.
    pub report: String,
}

/// A dry-run engine built from a config.
pub struct DryRun {
    ctx: Arc<Context>,
}

impl DryRun {
    /// Builds the pipeline and policy of `config` (DNS as configured).
    pub fn new(config: Config) -> Result<Self, Error> {
        Ok(DryRun {
            ctx: Arc::new(Context::new(config, Arc::new(Metrics::new()))?),
        })
    }

    /// Simulates one message.
    pub async fn run(&self, input: &Input, message: &[u8]) -> Outcome {
        let set = self.ctx.pipeline.policy();
        let mut out = String::new();
        let mut info = SessionInfo {
            id: "dry-run".into(),
            client: SocketAddr::new(input.client, 0),
            local: SocketAddr::from(([127, 0, 0, 1], 25)),
            helo: None,
            esmtp: true,
            tls: false,
            pregreet: false,
            unannounced_pipelining: false,
        };
        let mut env = Envelope::default();
        // As in a session: connect, HELO and MAIL under the default policy; each recipient
        // under its scope's policy; the transaction takes the first accepted one's scope.
        for stage in [Stage::Connect, Stage::Helo, Stage::Mail] {
            match stage {
                Stage::Helo => info.helo = Some(input.helo.clone()),
                Stage::Mail => env.mail_from = input.from.clone(),
                _ => {}
            }
            let ctx = CheckContext {
                session: &info,
                envelope: &env,
                rcpt: None,
                message: None,
            };
            let mut found = self.ctx.pipeline.run(stage, ctx).await.facts;
            if stage == Stage::Connect {
                // A dry run explains everything at once: deferred lookups are awaited now.
                for deferred in self.ctx.pipeline.start(ctx) {
                    found.extend(self.ctx.pipeline.settle(deferred).await);
                }
            }
            env.facts.extend(found.iter().cloned());
            let verdict = self.judge(&mut out, &set, 0, (stage, stage), None, &found, &env.facts);
            if verdict.action.refusal().is_some() {
                return Outcome {
                    stage,
                    verdict,
                    report: out,
                };
            }
        }
        let mut scope = None;
        let mut last_refusal = None;
        for rcpt in &input.rcpts {
            env.rcpt_attempts += 1;
            let this = crate::smtp::address::parse_mailbox(rcpt, true)
                .map_or(scope.unwrap_or(0), |m| set.scope_of(&m.domain));
            if scope.is_some_and(|s| s != this) {
                let _ = writeln!(
                    out,
                    "RCPT <{rcpt}>\n  => deferred ({})",
                    crate::smtp::reply::OTHER_SCOPE
                );
                continue;
            }
            let ctx = CheckContext {
                session: &info,
                envelope: &env,
                rcpt: Some(rcpt),
                message: None,
            };
            let found = self.ctx.pipeline.run(Stage::Rcpt, ctx).await.facts;
            let mut facts = env.facts.clone();
            facts.extend(found.iter().cloned());
            // A scope's policy meets the transaction here first: its MAIL limits count now.
            let count_from = match scope {
                None if this != 0 => Stage::Mail,
                _ => Stage::Rcpt,
            };
            let verdict = self.judge(
                &mut out,
                &set,
                this,
                (Stage::Rcpt, count_from),
                Some(rcpt),
                &found,
                &facts,
            );
            if verdict.action.refusal().is_some() {
                last_refusal = Some(verdict);
                continue;
            }
            env.rcpts.push(rcpt.clone());
            env.rcpt_facts.extend(found);
            scope = Some(this);
        }
        let Some(scope) = scope else {
            let verdict = last_refusal.unwrap_or_else(Verdict::accept);
            let _ = writeln!(out, "no recipient accepted: the message is never sent");
            return Outcome {
                stage: Stage::Rcpt,
                verdict,
                report: out,
            };
        };
        let _ = writeln!(out, "policy scope: {}", set.label(scope));
        // DATA: the message as the gateway would store it (CRLF). A file with no CR at all
        // is a message stored with Unix line endings, not one with bare LFs on the wire.
        let mut content = Vec::with_capacity(message.len() + 64);
        let mut decoder = BodyDecoder::bdat();
        decoder.decode(message, &mut content);
        decoder.finish(&mut content);
        let view = MessageView {
            size: content.len() as u64,
            head: &content[..content.len().min(crate::spool::HEAD_LIMIT)],
            bare_line_endings: decoder.saw_bare_line_ending() && message.contains(&b'\r'),
            nul_bytes: decoder.saw_nul(),
            longest_line: decoder.longest_line(),
            raw: Some(&content),
        };
        let ctx = CheckContext {
            session: &info,
            envelope: &env,
            rcpt: None,
            message: Some(view),
        };
        let found = self.ctx.pipeline.run(Stage::Data, ctx).await;
        let rcpt_facts = std::mem::take(&mut env.rcpt_facts);
        env.facts.extend(rcpt_facts);
        env.facts.extend(found.facts.iter().cloned());
        let verdict = self.judge(
            &mut out,
            &set,
            scope,
            (Stage::Data, Stage::Data),
            None,
            &found.facts,
            &env.facts,
        );
        for header in &found.headers {
            let _ = write!(out, "  would add: {header}");
        }
        Outcome {
            stage: Stage::Data,
            verdict,
            report: out,
        }
    }
}

impl DryRun {
    /// Decides one step with the scope's policy, reports it, and adds the shadow policy's
    /// verdict where the gateway would compare them. The stage comes with the earliest stage
    /// whose rate limits are due (`Policy::decide_counting`).
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        out: &mut String,
        set: &PolicySet,
        scope: ScopeId,
        (stage, count_from): (Stage, Stage),
        rcpt: Option<&str>,
        found: &[Fact],
        facts: &[Fact],
    ) -> Verdict {
        let policy = set.get(scope);
        let verdict = policy.decide_counting(stage, count_from, facts);
        section(
            out,
            stage,
            rcpt,
            found,
            &policy.explain(stage, facts),
            &verdict,
        );
        // A dry run never spends an allowance: it says what the gateway would count.
        for probe in &verdict.limits {
            let _ = writeln!(
                out,
                "  limit {}: would count {} ({} burst {}), not counted in a dry run",
                probe.rule,
                probe.buckets.join(", "),
                probe.limit.rate,
                probe.limit.burst
            );
        }
        if let Some(shadow) = set.shadow() {
            let candidate = shadow.decide(stage, facts);
            if stage == Stage::Data
                || verdict.action.refusal().is_some()
                || candidate.action.refusal().is_some()
            {
                let _ = writeln!(
                    out,
                    "  shadow => {} score={} rules={:?}",
                    candidate.action.label(),
                    candidate.score,
                    candidate.rules
                );
            }
        }
        verdict
    }
}

fn section(
    out: &mut String,
    stage: Stage,
    rcpt: Option<&str>,
    found: &[Fact],
    rules: &[(String, bool)],
    verdict: &Verdict,
) {
    let _ = match rcpt {
        Some(r) => writeln!(out, "{} <{r}>", stage.label().to_uppercase()),
        None => writeln!(out, "{}", stage.label().to_uppercase()),
    };
    for fact in found {
        let _ = writeln!(out, "  fact  {fact}");
    }
    for (name, fired) in rules {
        let _ = writeln!(
            out,
            "  rule  {name}: {}",
            if *fired { "FIRED" } else { "no" }
        );
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

/// Splits the input path into messages: a file is one message, unless it is an mbox
/// (starts with "From "); a directory gives every regular file in it, sorted.
pub fn messages(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let mut out = Vec::new();
        for p in entries {
            out.extend(messages(&p)?);
        }
        return Ok(out);
    }
    let data = std::fs::read(path)?;
    let name = path.display().to_string();
    if !data.starts_with(b"From ") {
        return Ok(vec![(name, data)]);
    }
    let mut out = Vec::new();
    for (i, chunk) in split_mbox(&data).into_iter().enumerate() {
        out.push((format!("{name}#{}", i + 1), chunk));
    }
    Ok(out)
}

/// mboxrd: messages start at lines beginning "From "; ">From " lines are unquoted once.
fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in data.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"From ") {
            out.push(Vec::new());
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        let unquoted = if line.starts_with(b">")
            && line
                .iter()
                .skip_while(|b| **b == b'>')
                .take(5)
                .eq(b"From ".iter())
        {
            &line[1..]
        } else {
            line
        };
        current.extend_from_slice(unquoted);
    }
    out
}

/// The summary table over many outcomes: messages per action, and per rule.
pub fn summary(outcomes: &[(String, Outcome)]) -> String {
    let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, o) in outcomes {
        *actions.entry(o.verdict.action.label()).or_default() += 1;
        for r in &o.verdict.rules {
            *rules.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut out = format!("{} message(s)\n", outcomes.len());
    for (action, n) in &actions {
        let _ = writeln!(out, "  {action:<12} {n}");
    }
    if !rules.is_empty() {
        out.push_str("rules:\n");
        for (rule, n) in &rules {
            let _ = writeln!(out, "  {rule:<30} {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_split_and_unquoted() {
        let mbox = b"From a@b Thu Jan  1 00:00:00 2026\nSubject: 1\n\n>From the start\n\nFrom c@d Thu Jan  1 00:00:00 2026\nSubject: 2\n\nx\n";
        let parts = split_mbox(mbox);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Subject: 1\n\nFrom the start\n\n");
        assert_eq!(parts[1], b"Subject: 2\n\nx\n");
    }
}
