//! DATA and BDAT: message intake and the end-of-message decision.
//!
//! Owns: streaming content through the decoder into the spool under the size cap (beyond
//! the cap bytes are read and dropped, and the answer is 552 after the end), the total
//! DATA deadline, and the end-of-message path shared by DATA and BDAT: room in
//! `auth.max_verify_memory` for a spilled message read back for verification (451 when
//! none is found before the DATA deadline) → DATA checks → verdict → relay → the backend's
//! reply. Must not: inspect content for policy.

use tokio::io::{AsyncRead, AsyncWrite};

use super::state::State;
use super::{Fill, Session};
use crate::engine::Final;
use crate::intake::Intake;
use crate::metrics::{Event, Limit};
use crate::pipeline::MessageView;
use crate::policy::verdict::Verdict;
use crate::quarantine::Quarantine;
use crate::readback::ReadBack;
use crate::relay::Content;
use crate::smtp::codec::BodyDecoder;
use crate::smtp::reply::{self, Reply};
use crate::spool::Spool;

/// A message being received.
pub(super) struct Body {
    intake: Intake,
    decoder: BodyDecoder,
    deadline: tokio::time::Instant,
    out: Vec<u8>,
}

impl Body {
    fn new<S>(session: &Session<S>, decoder: BodyDecoder) -> Self {
        let c = &session.ctx.config;
        Body {
            intake: Intake::new(c),
            decoder,
            deadline: tokio::time::Instant::now() + c.timeouts.data,
            out: Vec::with_capacity(32 * 1024),
        }
    }

    /// Decodes `input`; returns bytes consumed and whether DATA's end marker was reached.
    async fn push(&mut self, input: &[u8]) -> (usize, bool) {
        let (used, done) = self.decoder.decode(input, &mut self.out);
        self.store().await;
        (used, done)
    }

    async fn store(&mut self) {
        self.intake.write(&self.out).await;
        self.out.clear();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// DATA: 354, read to `<CRLF>.<CRLF>`, then decide and relay.
    pub(super) async fn data(&mut self) {
        if self.txn_broken {
            self.reply(reply::BACKEND_FAILED);
            self.reset_transaction().await;
            return;
        }
        self.reply(reply::START_DATA);
        let mut body = Body::new(self, BodyDecoder::data());
        loop {
            let (used, done) = body.push(&self.rbuf).await;
            self.rbuf.drain(..used);
            if done {
                break;
            }
            if !self.fill_content(body.deadline).await {
                return;
            }
        }
        self.end_of_message(body).await;
    }

    /// Reads more message content until the DATA deadline. False when the session must end
    /// (EOF, the deadline, or the end of the shutdown grace period; the 421 is queued).
    async fn fill_content(&mut self, deadline: tokio::time::Instant) -> bool {
        let abort = self.signals.abort.clone();
        match self.fill(deadline, &abort).await {
            Fill::Data => true,
            Fill::Eof => false,
            Fill::Timeout => {
                self.ctx.metrics.emit(Event::LimitHit(Limit::DataTimeout));
                self.reply(reply::TIMEOUT);
                false
            }
            Fill::Stopped => {
                self.reply(reply::SHUTTING_DOWN);
                false
            }
        }
    }

    /// The deadline of a BDAT message whose LAST chunk has not come yet: `timeouts.data`
    /// bounds the whole sequence, the waits for the BDAT commands between chunks included.
    pub(super) fn chunk_deadline(&self) -> Option<tokio::time::Instant> {
        self.body.as_ref().map(|b| b.deadline)
    }

    /// BDAT: read exactly `size` octets; at LAST decide and relay (RFC 3030).
    pub(super) async fn bdat(&mut self, size: u64, last: bool) {
        let mut body = match self.body.take() {
            Some(body) => body,
            None => Body::new(self, BodyDecoder::bdat()),
        };
        self.state = State::Chunking;
        let mut left = size;
        loop {
            let take = self
                .rbuf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            body.push(&self.rbuf[..take]).await;
            self.rbuf.drain(..take);
            left -= take as u64;
            if left == 0 {
                break;
            }
            if !self.fill_content(body.deadline).await {
                return;
            }
        }
        if !last {
            self.body = Some(body);
            self.reply(reply::chunk_received(size));
            return;
        }
        body.decoder.finish(&mut body.out);
        body.store().await;
        self.end_of_message(body).await;
    }

    /// The message is complete: DATA checks, verdict, relay, one log line, reset.
    async fn end_of_message(&mut self, mut body: Body) {
        let loaded = match self.read_back(&mut body).await {
            Ok(loaded) => loaded,
            Err(reply) => {
                // A 421 (the end of the shutdown grace period) ends the session too.
                if reply.code == 421 {
                    self.closing = true;
                }
                return self
                    .finish(&body, &Verdict::accept(), reply, "tempfail")
                    .await;
            }
        };
        let view = MessageView {
            size: body.intake.size(),
            head: body.intake.spool.head(),
            bare_line_endings: body.decoder.saw_bare_line_ending(),
            nul_bytes: body.decoder.saw_nul(),
            longest_line: body.decoder.longest_line(),
            raw: crate::readback::message_bytes(&self.ctx, loaded.as_ref(), &body.intake),
        };
        let decided = self.engine.message(view).await;
        // The copy and its room in `auth.max_verify_memory` go as soon as the checks are done.
        drop(loaded);
        let verdict = &decided.verdict;
        let withheld =
            crate::intake::withheld(&decided, &body.intake, &self.ctx.metrics, &self.info().id);
        let (reply, outcome): (Reply, &'static str) = match withheld {
            Some(answer) => answer,
            None => {
                let content = self.content(&decided);
                match crate::quarantine::of(&self.ctx.config) {
                    Some(q) if decided.quarantined() => {
                        self.quarantine(q, verdict, &content, &mut body.intake.spool)
                            .await
                    }
                    _ => {
                        self.relay(&content, &mut body.intake.spool, verdict.action.label())
                            .await
                    }
                }
            }
        };
        self.finish(&body, verdict, reply, outcome).await;
    }

    /// A spilled body read back for authentication (`readback.rs`); `Err` is the answer
    /// when no room was found in time.
    async fn read_back(&mut self, body: &mut Body) -> Result<Option<ReadBack>, Reply> {
        let id = self.info().id.clone();
        let abort = self.signals.abort.clone();
        crate::readback::read_back(&self.ctx, &id, &mut body.intake, body.deadline, &abort).await
    }

    /// The message's answer: counted, logged in one line, sent; then the transaction ends.
    async fn finish(
        &mut self,
        body: &Body,
        verdict: &Verdict,
        reply: Reply,
        outcome: &'static str,
    ) {
        self.messages += 1;
        self.ctx.metrics.emit(Event::Message {
            verdict: outcome,
            bytes: body.intake.size(),
        });
        tracing::info!(
            session = %self.info().id,
            client = %self.info().client,
            from = %self.env().mail_from,
            rcpts = self.env().rcpts.len(),
            size = body.intake.size(),
            spilled = body.intake.spool.spilled(),
            verdict = outcome,
            rules = ?verdict.rules,
            score = verdict.score,
            auth = %super::trace::auth_summary(&self.engine.facts()),
            reply = %reply,
            // The backend's id, to follow the message into its log (empty when it gave none).
            queued_as = crate::relay::queue_id::queue_id(&reply.text).unwrap_or_default(),
            "message"
        );
        self.reply(reply);
        self.transaction_completed();
        self.reset_transaction().await;
    }

    /// What is relayed or stored: our Received, then the fields the engine adds; forged
    /// Authentication-Results removed.
    fn content(&self, decided: &Final) -> Content {
        decided.content(super::trace::received(
            self.info(),
            &self.ctx.config.hostname,
            self.env(),
        ))
    }

    /// Keeps the message in the quarantine instead of relaying it; the reply is as
    /// configured once the message is durably stored (a storage failure is a 451).
    async fn quarantine(
        &mut self,
        q: Quarantine,
        verdict: &Verdict,
        content: &Content,
        spool: &mut Spool,
    ) -> (Reply, &'static str) {
        let answer = self.ctx.config.quarantine.answer;
        let kept = q
            .keep(&self.info().id, answer, self.env(), verdict, content, spool)
            .await;
        match kept {
            // The plain 250 of any delivery: the sender learns nothing.
            Ok(refusal) => (refusal.unwrap_or(reply::OK), "quarantine"),
            Err(r) => (r, "tempfail"),
        }
    }

    /// Hands the message to the backend; returns the client's reply and the outcome label.
    async fn relay(
        &mut self,
        content: &Content,
        spool: &mut Spool,
        accepted_as: &'static str,
    ) -> (Reply, &'static str) {
        let Some(txn) = self.txn.as_mut() else {
            return (reply::BACKEND_FAILED, "tempfail");
        };
        match txn.data(content, spool).await {
            Ok((r, took)) => {
                self.ctx.metrics.emit(Event::Relayed(took));
                let outcome = match r.code / 100 {
                    2 => accepted_as,
                    4 => "tempfail",
                    _ => "reject",
                };
                (r, outcome)
            }
            Err(e) => {
                if let Some(kind) = e.backend_kind() {
                    self.ctx.metrics.emit(Event::BackendError(kind));
                }
                tracing::warn!(session = %self.info().id, error = %e, "relay to backend failed; client told to retry");
                // A broken connection is not reused.
                self.txn = None;
                (e.data_reply(), "tempfail")
            }
        }
    }
}
