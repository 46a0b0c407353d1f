//! MAIL and RCPT: the envelope, and the backend transaction.
//!
//! Owns: `tls.require` before any check (530 5.7.0 to a MAIL from a listed client, then to
//! a RCPT to a listed domain, without TLS), handing MAIL and RCPT to the engine (relay
//! protection, checks, policy), opening the backend transaction at the first recipient that
//! passes, and passing the backend's RCPT reply back as ours (its 5xx counted as an unknown
//! recipient, a failure to reach it as ours).

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::state::State;
use crate::metrics::Event;
use crate::pipeline::Stage;
use crate::relay::ClientIdentity;
use crate::smtp::address::parse_mailbox;
use crate::smtp::command::MailParams;
use crate::smtp::envelope::Envelope;
use crate::smtp::reply::{self, Reply};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// MAIL FROM: a new envelope, MAIL checks, 250 or the policy's refusal.
    pub(super) async fn mail(&mut self, params: MailParams) {
        if !self.info().tls && self.ctx.tls_require.client(self.info().client.ip()) {
            tracing::info!(session = %self.info().id, from = %params.address, reply = %reply::MUST_STARTTLS, "MAIL refused: tls.require lists this client");
            self.ctx.metrics.emit(Event::TlsRequired(Stage::Mail));
            self.reply(reply::MUST_STARTTLS);
            return;
        }
        if !params.smtputf8 && !params.address.is_ascii() {
            self.client_error(reply::NEEDS_SMTPUTF8);
            return;
        }
        let env = Envelope {
            mail_from: params.address.clone(),
            declared_size: params.size,
            body: params.body,
            smtputf8: params.smtputf8,
            ..Envelope::default()
        };
        if let Some(refusal) = self.engine.mail(env).await.refusal() {
            self.reply(refusal);
            return;
        }
        self.mail = Some(params);
        self.state = State::Mail;
        self.reply(reply::SENDER_OK);
    }

    /// RCPT TO: relay protection, RCPT checks, then the backend decides.
    pub(super) async fn rcpt(&mut self, address: String) {
        if let Some(refusal) = self.engine.rcpt_admit(&address) {
            self.client_error(refusal);
            return;
        }
        if !self.info().tls && self.tls_required_for(&address) {
            tracing::info!(session = %self.info().id, rcpt = %address, reply = %reply::MUST_STARTTLS, "RCPT refused: tls.require lists its domain");
            self.ctx.metrics.emit(Event::TlsRequired(Stage::Rcpt));
            self.reply(reply::MUST_STARTTLS);
            return;
        }
        if let Some(refusal) = self.engine.rcpt(&address).await.refusal() {
            self.reply(refusal);
            return;
        }
        match self.relay_rcpt(&address).await {
            Ok(r) if r.is_positive() => {
                self.engine.rcpt_accepted();
                self.state = State::Rcpt;
                self.reply(r);
            }
            Ok(r) => self.refused_recipient(r),
            // Our failure to reach the backend is not the client's doing.
            Err(r) => self.reply(r),
        }
    }

    /// True when `tls.require` lists the domain of this forward path (`<postmaster>`
    /// without a domain never is).
    fn tls_required_for(&self, address: &str) -> bool {
        parse_mailbox(address, self.env().smtputf8)
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
                addr: self.info().client,
                helo: self.info().helo.clone(),
                esmtp: self.info().esmtp,
                name: self.engine.client_name(),
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
                    tracing::warn!(session = %self.info().id, error = %e, "backend transaction could not start");
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
                tracing::warn!(session = %self.info().id, error = %e, "backend failed at RCPT");
                // The connection is gone; recipients it accepted are gone with it, so the
                // rest of this transaction can only end in 4xx.
                self.txn = None;
                self.txn_broken = !self.env().rcpts.is_empty();
                Err(e.reply())
            }
        }
    }
}
