//! The transaction engine: the one place that runs the checks and the policy over a
//! connection and its transactions. The SMTP session, the milter and the dry run are front
//! ends over it: they own their protocol and their I/O, and call one step per stage.
//!
//! Owns: the fact ledger (`ledger.rs`), the deferred connect lookups and when they are
//! awaited (a rule due at a stage needs their facts, or the message is complete), the policy
//! scope of a transaction (set by its first accepted recipient; a recipient under another
//! scope is deferred), the counting steps (rate limits, `ratelimit.rs`; greylisting,
//! `greylist.rs`), the shadow comparison (`shadow.rs`), the metrics and log lines of the
//! policy's refusals, and, in a dry run, the explanation (`explain.rs`). Each step returns
//! what the front end acts on: `Step` before the message, `Final` at its end.
//! Must not: do I/O of its own, know SMTP or milter syntax, or talk to the backend.

pub mod explain;
pub mod greylist;
pub mod ledger;
pub mod ratelimit;
pub mod relay;
pub mod shadow;
pub mod step;

use std::sync::Arc;

use crate::context::Context;
use crate::metrics::Event;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::{Fact, FactValue};
use crate::pipeline::{CheckContext, Deferred, MessageView, Stage};
use crate::policy::set::{PolicySet, ScopeId};
use crate::policy::verdict::Verdict;
use crate::relay::ClientName;
use crate::smtp::address::parse_mailbox;
use crate::smtp::envelope::{Envelope, SessionInfo};
use crate::smtp::reply;
use explain::Explain;
use ledger::Ledger;
pub use step::{Final, Step};

/// Whether the engine acts or explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A gateway's connection: limits are counted, greylisting asked, metrics emitted.
    Live,
    /// `policy test`: deferred lookups are awaited at once, nothing is counted or
    /// greylisted, and every decision is written into the report.
    DryRun,
}

/// A recipient the policy let through, waiting for the front end to say whether it was
/// accepted (in proxy mode the backend has the last word).
struct Candidate {
    address: String,
    scope: ScopeId,
    facts: Vec<Fact>,
}

/// One connection's transactions, stage by stage.
pub struct Engine {
    ctx: Arc<Context>,
    /// The policies this connection started with (reloads apply to new connections).
    policy: Arc<PolicySet>,
    mode: Mode,
    info: SessionInfo,
    env: Envelope,
    ledger: Ledger,
    /// Lookups started at connect that no rule has needed yet.
    pending: Vec<Deferred>,
    /// The policy scope of the transaction, set by its first accepted recipient.
    scope: Option<ScopeId>,
    candidate: Option<Candidate>,
    /// Relay protection at RCPT (`rcpt_admit`): always for an SMTP listener, in milter mode
    /// when `accepted_domains` is set, never in a dry run.
    relay_control: bool,
    explain: Option<Explain>,
}

impl Engine {
    /// An engine for the connection `info`, under the policy in force now.
    pub fn new(ctx: Arc<Context>, info: SessionInfo, mode: Mode) -> Self {
        Engine {
            policy: ctx.pipeline.policy(),
            ctx,
            mode,
            info,
            env: Envelope::default(),
            ledger: Ledger::default(),
            pending: Vec::new(),
            scope: None,
            candidate: None,
            relay_control: mode == Mode::Live,
            explain: (mode == Mode::DryRun).then(Explain::default),
        }
    }

    /// Turns relay protection on or off (milter mode without `accepted_domains`: Postfix
    /// does relay control).
    pub fn with_relay_control(mut self, on: bool) -> Self {
        self.relay_control = on;
        self
    }

    /// Who is connected.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The connection's flags that the front end observes (pregreet, pipelining).
    pub fn info_mut(&mut self) -> &mut SessionInfo {
        &mut self.info
    }

    /// The envelope of the transaction in progress.
    pub fn envelope(&self) -> &Envelope {
        &self.env
    }

    /// Every fact of the transaction so far (the message's, after `message`).
    pub fn facts(&self) -> Vec<Fact> {
        self.ledger.message()
    }

    /// The client's host name for XCLIENT, from the rDNS check's facts: the confirmed name,
    /// `TempUnavailable` after a failed lookup, else (no PTR, none confirmed, no lookup
    /// made) `Unavailable`.
    pub fn client_name(&self) -> ClientName {
        let connect = self.ledger.connect();
        let flag = |def: &FactDef| {
            connect
                .iter()
                .any(|f| f.is(def) && f.value == FactValue::Flag(true))
        };
        if flag(&facts::RDNS_FCRDNS) {
            let name = connect.iter().find_map(|f| f.text_of(&facts::RDNS_NAME));
            return name.map_or(ClientName::Unavailable, ClientName::verified);
        }
        if flag(&facts::RDNS_TEMPERROR) {
            return ClientName::TempUnavailable;
        }
        ClientName::Unavailable
    }

    /// The policies of this connection.
    pub fn policy(&self) -> &PolicySet {
        &self.policy
    }

    /// The policy scope of the transaction, once a recipient was accepted.
    pub fn scope(&self) -> Option<ScopeId> {
        self.scope
    }

    /// The dry run's report (empty when live).
    pub fn report(&self) -> &str {
        self.explain.as_ref().map_or("", Explain::text)
    }

    /// A line of the front end's own in the dry run's report.
    pub fn note(&mut self, line: &str) {
        if let Some(e) = &mut self.explain {
            e.note(line);
        }
    }

    /// Starts the lookups that run beside the connection (DNSBL), so that they overlap
    /// whatever the front end does before `connect` (the pregreet wait). A dry run starts
    /// and awaits them in `connect`.
    pub fn start_lookups(&mut self) {
        if self.mode == Mode::Live {
            let ctx = self.check_context(&[], None, None);
            self.pending = self.ctx.pipeline.start(ctx);
        }
    }

    /// The connect stage: its checks, the deferred lookups a rule needs now, the verdict.
    pub async fn connect(&mut self) -> Step {
        let mut found = self
            .ctx
            .pipeline
            .run(Stage::Connect, self.check_context(&[], None, None))
            .await
            .facts;
        if self.mode == Mode::DryRun {
            // A dry run explains everything at once: deferred lookups are awaited now.
            for deferred in self.ctx.pipeline.start(self.check_context(&[], None, None)) {
                found.extend(self.ctx.pipeline.settle(deferred).await);
            }
        }
        found.extend(self.settle(Stage::Connect, 0).await);
        let (verdict, _) = self
            .judge(
                (Stage::Connect, Stage::Connect),
                0,
                None,
                &found,
                found.clone(),
            )
            .await;
        if verdict.action.refusal().is_some() {
            self.count_rules(&verdict);
            tracing::info!(session = %self.info.id, rules = ?verdict.rules, "connection refused by policy");
            return Step::Refuse(verdict);
        }
        self.ledger.add_connect(found);
        Step::Continue
    }

    /// EHLO (`esmtp`) or HELO: ends any transaction, runs the HELO checks over the
    /// connection's facts, and decides. An accepted greeting's facts replace an earlier one's.
    pub async fn helo(&mut self, name: String, esmtp: bool) -> Step {
        self.reset();
        self.info.helo = Some(name);
        self.info.esmtp = esmtp;
        let before = self.ledger.connect();
        let found = self
            .ctx
            .pipeline
            .run(Stage::Helo, self.check_context(&before, None, None))
            .await
            .facts;
        self.settle(Stage::Helo, 0).await;
        // The HELO decision sees the connection's facts too (client.ip exemptions), not an
        // earlier greeting's.
        let mut facts = self.ledger.connect();
        facts.extend(found.iter().cloned());
        let (verdict, _) = self
            .judge((Stage::Helo, Stage::Helo), 0, None, &found, facts)
            .await;
        if verdict.action.refusal().is_some() {
            self.count_rules(&verdict);
            tracing::info!(session = %self.info.id, helo = ?self.info.helo, rules = ?verdict.rules, "HELO refused by policy");
            return Step::Refuse(verdict);
        }
        self.ledger.set_helo(found);
        Step::Continue
    }

    /// STARTTLS completed: the client must greet again, what it said before TLS no longer
    /// counts, while the connect facts (client.ip) still hold.
    pub fn tls_started(&mut self) {
        self.info.tls = true;
        self.info.helo = None;
        self.ledger.clear_helo();
        self.reset();
    }

    /// MAIL: a new transaction with `env` (sender and MAIL parameters), its checks and the
    /// verdict, with the MAIL rate limits counted.
    pub async fn mail(&mut self, env: Envelope) -> Step {
        self.settle(Stage::Mail, 0).await;
        self.reset();
        self.env = Envelope {
            rcpts: Vec::new(),
            rcpt_attempts: 0,
            ..env
        };
        let before = self.ledger.connection();
        let found = self
            .ctx
            .pipeline
            .run(Stage::Mail, self.check_context(&before, None, None))
            .await
            .facts;
        let mut facts = before;
        facts.extend(found.iter().cloned());
        let (verdict, added) = self
            .judge((Stage::Mail, Stage::Mail), 0, None, &found, facts)
            .await;
        self.ledger.add_transaction(found);
        self.ledger.add_transaction(added);
        if let Some(refusal) = verdict.action.refusal() {
            self.count_rules(&verdict);
            tracing::info!(session = %self.info.id, from = %self.env.mail_from, rules = ?verdict.rules, reply = %refusal, "MAIL refused");
            return Step::Refuse(verdict);
        }
        Step::Continue
    }

    /// The start of a RCPT: the attempt counts towards the recipient limit whatever becomes
    /// of it, and a recipient outside `accepted_domains` is refused here (not policy: no
    /// rule can accept it). `Some` is the refusal.
    pub fn rcpt_admit(&mut self, address: &str) -> Option<reply::Reply> {
        self.env.rcpt_attempts += 1;
        if !self.relay_control {
            return None;
        }
        let refusal = relay::refusal(
            &self.ctx.config.accepted_domains,
            address,
            self.env.smtputf8,
        )?;
        tracing::info!(session = %self.info.id, rcpt = %address, reply = %refusal, "RCPT refused: relay protection");
        Some(refusal)
    }

    /// RCPT, after `rcpt_admit` and the front end's own conditions: the recipient's policy
    /// scope, its checks and the verdict, with the limits due counted. On `Continue` the
    /// recipient is a candidate until `rcpt_accepted`: its facts join the transaction only
    /// then.
    pub async fn rcpt(&mut self, address: &str) -> Step {
        self.candidate = None;
        // One transaction, one policy: a recipient under another scope's policy is deferred
        // and the client sends it again in a transaction of its own.
        let scope = match parse_mailbox(address, self.env.smtputf8) {
            Ok(m) => self.policy.scope_of(&m.domain),
            Err(_) => self.scope.unwrap_or(0),
        };
        if self.scope.is_some_and(|s| s != scope) {
            self.note(&format!(
                "RCPT <{address}>\n  => deferred ({})",
                reply::OTHER_SCOPE
            ));
            return Step::OtherScope;
        }
        let before = self.ledger.transaction();
        let found = self
            .ctx
            .pipeline
            .run(
                Stage::Rcpt,
                self.check_context(&before, Some(address), None),
            )
            .await
            .facts;
        let settled = self.settle(Stage::Rcpt, scope).await;
        let mut facts = before;
        facts.extend(settled);
        facts.extend(found.iter().cloned());
        // A scope's policy meets the transaction here first: its MAIL limits count now.
        let count_from = match self.scope {
            None if scope != 0 => Stage::Mail,
            _ => Stage::Rcpt,
        };
        let (verdict, added) = self
            .judge(
                (Stage::Rcpt, count_from),
                scope,
                Some(address),
                &found,
                facts,
            )
            .await;
        if verdict.action.refusal().is_some() {
            self.count_rules(&verdict);
            return Step::Refuse(verdict);
        }
        let mut facts = found;
        facts.extend(added);
        self.candidate = Some(Candidate {
            address: address.to_string(),
            scope,
            facts,
        });
        Step::Continue
    }

    /// The recipient of the last `rcpt` that continued was accepted (by the backend in
    /// proxy mode): it joins the envelope, its facts the transaction, its scope becomes the
    /// transaction's.
    pub fn rcpt_accepted(&mut self) {
        if let Some(c) = self.candidate.take() {
            self.env.rcpts.push(c.address);
            self.ledger.add_recipient(c.facts);
            self.scope = Some(c.scope);
        }
    }

    /// The message is complete: DATA checks over `view`, every deferred lookup, the
    /// greylisting step, the verdict with the DATA limits counted, and the header edits.
    pub async fn message(&mut self, view: MessageView<'_>) -> Final {
        let scope = self.scope.unwrap_or(0);
        let before = self.ledger.message();
        let found = self
            .ctx
            .pipeline
            .run(Stage::Data, self.check_context(&before, None, Some(view)))
            .await;
        let settled = self.settle(Stage::Data, scope).await;
        let mut facts = before;
        facts.extend(settled);
        facts.extend(found.facts.iter().cloned());
        self.ledger.add_transaction(found.facts.iter().cloned());
        // Greylisting only for a message the policy would let through: a refused message
        // leaves no triplet behind.
        if self.mode == Mode::Live
            && self.ctx.config.greylisting.enabled
            && self
                .policy
                .get(scope)
                .decide(Stage::Data, &facts)
                .action
                .refusal()
                .is_none()
        {
            let grey = greylist::check(&self.ctx, &self.info, &self.env, &facts).await;
            facts.extend(grey.iter().cloned());
            self.ledger.add_transaction(grey);
        }
        let (verdict, added) = self
            .judge((Stage::Data, Stage::Data), scope, None, &found.facts, facts)
            .await;
        self.ledger.add_transaction(added);
        self.count_rules(&verdict);
        let mut headers = found.headers;
        if let Some(header) = step::verdict_header(&verdict) {
            headers.push(header);
        }
        for header in &headers {
            self.note(&format!("  would add: {header}"));
        }
        let auth = &self.ctx.config.auth;
        Final {
            strip_authserv_id: auth
                .enabled
                .then(|| self.ctx.config.authserv_id().to_string()),
            verdict,
            headers,
        }
    }

    /// Ends the transaction (RSET, a new MAIL or greeting, the message answered): the
    /// envelope, its facts and its scope start afresh; the connection's facts stay.
    pub fn reset(&mut self) {
        self.env = Envelope::default();
        self.ledger.reset_transaction();
        self.scope = None;
        self.candidate = None;
    }

    fn check_context<'a>(
        &'a self,
        facts: &'a [Fact],
        rcpt: Option<&'a str>,
        message: Option<MessageView<'a>>,
    ) -> CheckContext<'a> {
        CheckContext {
            session: &self.info,
            envelope: &self.env,
            facts,
            rcpt,
            message,
        }
    }

    /// Awaits the lookups started at connect whose facts a rule due at `stage` needs (all of
    /// them at DATA); their facts join the connection's and are returned.
    async fn settle(&mut self, stage: Stage, scope: ScopeId) -> Vec<Fact> {
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
        if stage != Stage::Connect {
            // At connect the caller keeps them with the stage's own facts.
            self.ledger.add_connect(settled.iter().cloned());
        }
        settled
    }

    /// The verdict of `scope`'s policy at `stage` over `facts`, final: when it does not
    /// already refuse, the rate limits it asks for (those of the stages from `count_from`)
    /// are counted first and the policy decides once over what they added. Returns the
    /// verdict and the added facts. The shadow policy is compared over the same facts; a
    /// dry run explains instead of counting.
    async fn judge(
        &mut self,
        (stage, count_from): (Stage, Stage),
        scope: ScopeId,
        rcpt: Option<&str>,
        found: &[Fact],
        mut facts: Vec<Fact>,
    ) -> (Verdict, Vec<Fact>) {
        let set = self.policy.clone();
        let policy = set.get(scope);
        let mut verdict = policy.decide(stage, &facts);
        let mut added = Vec::new();
        let mut probes = Vec::new();
        if verdict.action.refusal().is_none() {
            probes = policy.probes(stage, count_from, &facts);
            if self.mode == Mode::Live && !probes.is_empty() {
                added = ratelimit::count(&self.ctx, &self.info.id, policy, stage, &facts, &probes)
                    .await;
                if !added.is_empty() {
                    facts.extend(added.iter().cloned());
                    verdict = policy.decide(stage, &facts);
                }
            }
        }
        if let Some(e) = &mut self.explain {
            e.stage(stage, rcpt, found, &policy.explain(stage, &facts), &verdict);
            e.would_count(&probes);
        }
        shadow::compare(
            &self.ctx,
            &set,
            &self.info.id,
            stage,
            &facts,
            &verdict,
            self.explain.as_mut(),
        );
        (verdict, added)
    }

    /// Counts the rules of a verdict the front end acts on, and the limits its built-in
    /// rules enforced.
    fn count_rules(&self, verdict: &Verdict) {
        if self.mode == Mode::Live {
            for rule in &verdict.rules {
                self.ctx.metrics.emit(Event::RuleHit(rule.clone()));
            }
            for limit in &verdict.limits {
                self.ctx.metrics.emit(Event::LimitHit(*limit));
            }
        }
    }
}

#[cfg(test)]
mod tests;
