//! MAIL and RCPT: the envelope, relay protection, and the backend transaction.
//!
//! Owns: refusing recipients outside the accepted domains (550 5.7.1, never policy's to
//! loosen), `tls.require` before any check (530 5.7.0 to a MAIL from a listed client, then
//! to a RCPT to a listed domain, without TLS), running MAIL/RCPT checks, opening the backend transaction at the first
//! recipient that passes, and passing the backend's RCPT reply back as ours (its 5xx
//! counted as an unknown recipient, a failure to reach it as ours).

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::state::State;
use crate::metrics::{Event, Limit};
use crate::pipeline::{CheckContext, Stage};
use crate::relay::ClientIdentity;
use crate::smtp::address::{AddressError, parse_mailbox};
use crate::smtp::command::MailParams;
use crate::smtp::envelope::Envelope;
use crate::smtp::reply::{self, Reply};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// MAIL FROM: a new envelope, MAIL checks, 250 or the policy's refusal.
    pub(super) async fn mail(&mut self, params: MailParams) {
        if !self.info.tls && self.ctx.tls_require.client(self.info.client.ip()) {
            tracing::info!(session = %self.info.id, from = %params.address, reply = %reply::MUST_STARTTLS, "MAIL refused: tls.require lists this client");
            self.ctx.metrics.emit(Event::TlsRequired(Stage::Mail));
            self.reply(reply::MUST_STARTTLS);
            return;
        }
        if !params.smtputf8 && !params.address.is_ascii() {
            self.client_error(reply::NEEDS_SMTPUTF8);
            return;
        }
        self.settle(Stage::Mail, 0).await;
        self.env = Envelope {
            mail_from: params.address.clone(),
            declared_size: params.size,
            body: params.body,
            smtputf8: params.smtputf8,
            facts: self.session_facts(),
            ..Envelope::default()
        };
        let ctx = CheckContext {
            session: &self.info,
            envelope: &self.env,
            rcpt: None,
            message: None,
        };
        let facts = self.ctx.pipeline.run(Stage::Mail, ctx).await.facts;
        self.env.facts.extend(facts);
        let (verdict, added) = self
            .judge(Stage::Mail, Stage::Mail, &self.env.facts, 0)
            .await;
        self.env.facts.extend(added);
        if let Some(refusal) = verdict.action.refusal() {
            self.count_rules(&verdict);
            if verdict.rules.iter().any(|r| r == "declared-size-limit") {
                self.ctx.metrics.emit(Event::LimitHit(Limit::MessageSize));
            }
            tracing::info!(session = %self.info.id, from = %params.address, rules = ?verdict.rules, reply = %refusal, "MAIL refused");
            self.reply(refusal.clone());
            return;
        }
        self.mail = Some(params);
        self.state = State::Mail;
        self.reply(reply::SENDER_OK);
    }

    /// RCPT TO: relay protection, RCPT checks, then the backend decides.
    pub(super) async fn rcpt(&mut self, address: String) {
        self.env.rcpt_attempts += 1;
        if let Some(refusal) = self.relay_protection(&address) {
            tracing::info!(session = %self.info.id, rcpt = %address, reply = %refusal, "RCPT refused");
            self.client_error(refusal);
            return;
        }
        if !self.info.tls && self.tls_required_for(&address) {
            tracing::info!(session = %self.info.id, rcpt = %address, reply = %reply::MUST_STARTTLS, "RCPT refused: tls.require lists its domain");
            self.ctx.metrics.emit(Event::TlsRequired(Stage::Rcpt));
            self.reply(reply::MUST_STARTTLS);
            return;
        }
        // One transaction, one policy: a recipient under another scope's policy is deferred
        // and the client sends it again in a transaction of its own.
        let scope = match parse_mailbox(&address, self.env.smtputf8) {
            Ok(m) => self.policy.scope_of(&m.domain),
            Err(_) => self.scope.unwrap_or(0),
        };
        if self.scope.is_some_and(|s| s != scope) {
            self.reply(reply::OTHER_SCOPE);
            return;
        }
        let ctx = CheckContext {
            session: &self.info,
            envelope: &self.env,
            rcpt: Some(&address),
            message: None,
        };
        // RCPT facts concern this recipient: they join the envelope only if it is accepted,
        // so that DATA sees the facts of the recipients the message goes to.
        let found = self.ctx.pipeline.run(Stage::Rcpt, ctx).await.facts;
        let settled = self.settle(Stage::Rcpt, scope).await;
        self.env.facts.extend(settled);
        let mut facts = self.env.facts.clone();
        facts.extend(found.iter().cloned());
        // A scope's policy meets the transaction here first: its MAIL limits count now.
        let count_from = match self.scope {
            None if scope != 0 => Stage::Mail,
            _ => Stage::Rcpt,
        };
        let (verdict, added) = self.judge(Stage::Rcpt, count_from, &facts, scope).await;
        if let Some(refusal) = verdict.action.refusal() {
            self.count_rules(&verdict);
            if verdict.rules.iter().any(|r| r == "recipient-limit") {
                self.ctx.metrics.emit(Event::LimitHit(Limit::Recipients));
            }
            self.reply(refusal.clone());
            return;
        }
        match self.relay_rcpt(&address).await {
            Ok(r) if r.is_positive() => {
                self.env.rcpts.push(address);
                self.env.rcpt_facts.extend(found);
                self.env.rcpt_facts.extend(added);
                self.state = State::Rcpt;
                self.scope = Some(scope);
                self.reply(r);
            }
            Ok(r) => self.refused_recipient(r),
            // Our failure to reach the backend is not the client's doing.
            Err(r) => self.reply(r),
        }
    }

    /// The accepted-domain decision for one forward path; `None` when it may proceed.
    fn relay_protection(&self, address: &str) -> Option<Reply> {
        // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
        if address.eq_ignore_ascii_case("postmaster") {
            return None;
        }
        match parse_mailbox(address, self.env.smtputf8) {
            Ok(m) if self.ctx.domains.contains(&m.domain) => None,
            Ok(_) | Err(AddressError::RelayTrick) => Some(reply::RELAY_DENIED),
            Err(AddressError::Syntax) => Some(reply::BAD_RECIPIENT_SYNTAX),
            Err(AddressError::NeedsSmtpUtf8) => Some(reply::NEEDS_SMTPUTF8),
        }
    }

    /// True when `tls.require` lists the domain of this forward path (`<postmaster>`
    /// without a domain never is).
    fn tls_required_for(&self, address: &str) -> bool {
        parse_mailbox(address, self.env.smtputf8)
            .is_ok_and(|m| self.ctx.tls_require.recipient(&m.domain))
    }

    /// Opens the backend transaction if needed and relays RCPT. `Ok` is the backend's own
    /// reply to the RCPT; `Err` ours, when the backend could not be asked (or refused the
    /// transaction before any recipient: its reply to MAIL).
    async fn relay_rcpt(&mut self, address: &str) -> Result<Reply, Reply> {
        if self.txn_broken {
            return Err(reply::BACKEND_FAILED);
        }
        if self.txn.is_none() {
            let Some(mail) = self.mail.clone() else {
                return Err(reply::NEED_MAIL);
            };
            let client = ClientIdentity {
                addr: self.info.client,
                helo: self.info.helo.clone(),
                esmtp: self.info.esmtp,
            };
            match self
                .ctx
                .backend
                .begin(self.idle.take(), &client, &mail)
                .await
            {
                Ok(txn) => self.txn = Some(txn),
                Err(e) => {
                    if let Some(kind) = e.backend_kind() {
                        self.ctx.metrics.emit(Event::BackendError(kind));
                    }
                    tracing::warn!(session = %self.info.id, error = %e, "backend transaction could not start");
                    return Err(e.reply());
                }
            }
        }
        let Some(txn) = self.txn.as_mut() else {
            return Err(reply::BACKEND_UNAVAILABLE);
        };
        match txn.rcpt(address).await {
            Ok(r) => Ok(r),
            Err(e) => {
                if let Some(kind) = e.backend_kind() {
                    self.ctx.metrics.emit(Event::BackendError(kind));
                }
                tracing::warn!(session = %self.info.id, error = %e, "backend failed at RCPT");
                // The connection is gone; recipients it accepted are gone with it, so the
                // rest of this transaction can only end in 4xx.
                self.txn = None;
                self.txn_broken = !self.env.rcpts.is_empty();
                Err(e.reply())
            }
        }
    }
}
