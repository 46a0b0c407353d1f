//! `portcullis policy test`: run the real pipeline on a message without a client or a
//! backend, and explain the verdict.
//!
//! Owns: driving the transaction engine (`engine`, in its dry-run mode) stage by stage
//! (connect, HELO, MAIL, each RCPT, DATA) as a session would, stopping where the gateway
//! would refuse; the engine writes the report (facts, every rule with whether it fired, the
//! verdict and its reply), then, for a message let through, the reply its client would hear
//! and where it would go (`answer.rs`). Also splitting a directory or an mbox into messages and
//! summarising them. Must not: send mail anywhere (the backend is never contacted), or run
//! checks or the policy itself.

mod answer;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::context::Context;
use crate::engine::{Engine, Mode, Step};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::pipeline::{MessageView, Stage};
use crate::policy::verdict::Verdict;
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
        let info = SessionInfo::new(
            "dry-run",
            SocketAddr::new(input.client, 0),
            SocketAddr::from(([127, 0, 0, 1], 25)),
        );
        let mut engine = Engine::new(self.ctx.clone(), info, Mode::DryRun);
        let done = |engine: &Engine, stage, verdict| Outcome {
            stage,
            verdict,
            report: engine.report().to_string(),
        };
        // As in a session: connect, HELO and MAIL under the default policy; each recipient
        // under its scope's policy; the transaction takes the first accepted one's scope.
        if let Step::Refuse(v) = engine.connect().await {
            return done(&engine, Stage::Connect, v);
        }
        if let Step::Refuse(v) = engine.helo(input.helo.clone(), true).await {
            return done(&engine, Stage::Helo, v);
        }
        let smtputf8 = !input.from.is_ascii() || input.rcpts.iter().any(|r| !r.is_ascii());
        let env = Envelope {
            mail_from: input.from.clone(),
            smtputf8,
            ..Envelope::default()
        };
        if let Step::Refuse(v) = engine.mail(env).await {
            return done(&engine, Stage::Mail, v);
        }
        let mut last_refusal = None;
        for rcpt in &input.rcpts {
            engine.rcpt_admit(rcpt);
            match engine.rcpt(rcpt).await {
                Step::Continue => engine.rcpt_accepted(),
                Step::Refuse(v) => last_refusal = Some(v),
                Step::OtherScope => {}
            }
        }
        let Some(scope) = engine.scope() else {
            engine.note("no recipient accepted: the message is never sent");
            let verdict = last_refusal.unwrap_or_else(Verdict::accept);
            return done(&engine, Stage::Rcpt, verdict);
        };
        let label = engine.policy().label(scope).to_string();
        engine.note(&format!("policy scope: {label}"));
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
        let decided = engine.message(view).await;
        for line in answer::lines(&self.ctx.config, &decided.verdict) {
            engine.note(&line);
        }
        done(&engine, Stage::Data, decided.verdict)
    }
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
