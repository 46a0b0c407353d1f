//! One SMTP session over any stream: read with deadlines, drive the state machine, write
//! replies in order.
//!
//! Owns: the read/write loop, pipelining (replies are queued and flushed before every read
//! that could block, so a client that sends a whole batch never deadlocks), and what ends a
//! session at a command boundary: shutdown, and the limits of `limits.rs` (errors, unknown
//! recipients, commands, the session and idle clocks). Must not: contain check logic
//! (`pipeline`) or parse bytes (`smtp::codec`). Verb handlers live in `greet.rs`,
//! `transaction.rs` and `data.rs`.

mod data;
mod greet;
mod limits;
pub mod state;
mod trace;
pub use trace::auth_summary;
mod transaction;

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout_at;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::engine::{Engine, Mode};
use crate::metrics::{Event, Limit};
use crate::relay::{Idle, Transaction};
use crate::smtp::codec::{Frame, LineFramer};
use crate::smtp::command::{Command, Invalid, MailParams, Trailing};
use crate::smtp::envelope::{Envelope, SessionInfo};
use crate::smtp::reply::{self, Reply};
use crate::tls::MaybeTls;
use data::Body;
use limits::Counters;
use state::State;

/// The two shutdown signals a session watches.
#[derive(Clone, Default)]
pub struct Signals {
    /// Stop at the next command boundary (421 to an idle client).
    pub shutdown: CancellationToken,
    /// The grace period is over: stop even inside DATA.
    pub abort: CancellationToken,
}

/// How a wait for input ended.
enum Fill {
    Data,
    Eof,
    Timeout,
    Stopped,
}

/// One client connection.
pub struct Session<S> {
    io: MaybeTls<S>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    framer: LineFramer,
    state: State,
    /// Checks, facts and policy of the connection and its transactions.
    engine: Engine,
    mail: Option<MailParams>,
    txn: Option<Transaction>,
    /// The backend connection broke after recipients were accepted: DATA must get 4xx.
    txn_broken: bool,
    idle: Option<Idle>,
    body: Option<Body>,
    /// Errors, unknown recipients, commands, and the session and idle clocks.
    counters: Counters,
    messages: u32,
    closing: bool,
    /// The first line of a multi-line banner went out (`connections.multiline_banner`).
    banner_started: bool,
    /// A connect-stage refusal that could not be the greeting (a `220-` line was already
    /// sent): every command but QUIT gets it.
    refused: Option<Reply>,
    ctx: Arc<Context>,
    signals: Signals,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// A session on `io`; `early` holds bytes already read (after a PROXY header).
    pub fn new(
        io: S,
        info: SessionInfo,
        early: Vec<u8>,
        ctx: Arc<Context>,
        signals: Signals,
    ) -> Self {
        Session {
            io: MaybeTls::Plain(io),
            rbuf: early,
            wbuf: Vec::with_capacity(1024),
            framer: LineFramer::new(ctx.config.limits.max_line_length),
            state: State::Connected,
            engine: Engine::new(ctx.clone(), info, Mode::Live),
            mail: None,
            txn: None,
            txn_broken: false,
            idle: None,
            body: None,
            counters: Counters::new(),
            messages: 0,
            closing: false,
            banner_started: false,
            refused: None,
            ctx,
            signals,
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let started = Instant::now();
        tracing::info!(session = %self.info().id, client = %self.info().client, "session opened");
        if self.connect_stage().await {
            while !self.closing {
                let Some(line) = self.next_line().await else {
                    break;
                };
                self.handle(line).await;
            }
        }
        let _ = self.flush().await;
        self.reset_transaction().await;
        self.drop_idle_backend().await;
        let _ = self.io.shutdown().await;
        self.ctx
            .metrics
            .emit(Event::SessionClosed(started.elapsed()));
        tracing::info!(
            session = %self.info().id,
            client = %self.info().client,
            duration_ms = started.elapsed().as_millis() as u64,
            commands = self.counters.commands,
            errors = self.counters.errors,
            unknown_recipients = self.counters.unknown_recipients,
            messages = self.messages,
            tls = self.info().tls,
            "session closed"
        );
    }

    /// Connect checks, then the banner. False if the connection is refused.
    async fn connect_stage(&mut self) -> bool {
        // Lookups that can run beside the session (DNSBL) start first, so that they overlap
        // the pregreet wait.
        self.engine.start_lookups();
        self.pregreet().await;
        if self.closing {
            return false;
        }
        if let Some(refusal) = self.engine.connect().await.refusal() {
            if self.banner_started {
                // One reply has one code (RFC 5321 §4.2.1): the 220 already begun is
                // finished, and the refusal answers every command after it (as postscreen's
                // "enforce" does).
                self.reply(reply::greeting(&self.ctx.config.hostname));
                self.refused = Some(refusal);
                return true;
            }
            self.reply(refusal);
            return false;
        }
        self.reply(reply::greeting(&self.ctx.config.hostname));
        true
    }

    /// Waits `connections.pregreet_wait` before the banner: a client that talks first is an
    /// early talker (`client.pregreet`), which real MTAs never are (RFC 5321 §4.3.1).
    async fn pregreet(&mut self) {
        let wait = self.ctx.config.connections.pregreet_wait;
        if wait.is_zero() {
            return;
        }
        // Bytes that came with the PROXY header were sent before the banner too.
        if !self.rbuf.is_empty() {
            self.engine.info_mut().pregreet = true;
            return;
        }
        if self.ctx.config.connections.multiline_banner {
            // The first line of the banner; the greeting after the wait is its last line.
            let first = format!("220-{} ESMTP\r\n", self.ctx.config.hostname);
            self.wbuf.extend_from_slice(first.as_bytes());
            if self.flush().await.is_err() {
                self.closing = true;
                return;
            }
            self.banner_started = true;
        }
        // Why select: shutdown must not wait out the pause.
        tokio::select! {
            _ = self.signals.shutdown.cancelled() => {}
            read = tokio::time::timeout(wait, self.io.read_buf(&mut self.rbuf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => self.closing = true,
                Ok(Ok(_)) => self.engine.info_mut().pregreet = true,
                Err(_) => {}
            },
        }
    }

    /// The next command line, or `None` when the session must end (the reason already
    /// replied where the client can still hear it).
    async fn next_line(&mut self) -> Option<Vec<u8>> {
        let command_deadline = tokio::time::Instant::now() + self.ctx.config.timeouts.command;
        loop {
            // Shutdown and the session's clocks are seen at every command boundary,
            // pipelined or not.
            if self.signals.shutdown.is_cancelled() {
                self.reply(reply::SHUTTING_DOWN);
                return None;
            }
            if let Some((r, limit)) = self.clock_expired() {
                self.ctx.metrics.emit(Event::LimitHit(limit));
                tracing::info!(session = %self.info().id, limit = limit.label(), "session ended by its clock");
                self.reply(r);
                return None;
            }
            if self
                .chunk_deadline()
                .is_some_and(|at| tokio::time::Instant::now() >= at)
            {
                self.ctx.metrics.emit(Event::LimitHit(Limit::DataTimeout));
                self.reply(reply::TIMEOUT);
                return None;
            }
            match self.framer.next(&mut self.rbuf) {
                Frame::Line(line) => return Some(line),
                Frame::TooLong => {
                    self.ctx.metrics.emit(Event::LimitHit(Limit::LineLength));
                    self.client_error(reply::LINE_TOO_LONG);
                    if self.closing {
                        return None;
                    }
                    continue;
                }
                Frame::NeedMore => {}
            }
            // The wait ends at the command deadline, or earlier when a clock or a BDAT
            // message's deadline runs out (both are then seen at the top of the loop).
            let deadline = [
                self.clock_deadline().map(|(at, _, _)| at),
                self.chunk_deadline(),
            ]
            .into_iter()
            .flatten()
            .fold(command_deadline, tokio::time::Instant::min);
            let stop = self.signals.shutdown.clone();
            match self.fill(deadline, &stop).await {
                Fill::Data => {}
                Fill::Eof => return None,
                Fill::Timeout if deadline < command_deadline => {}
                Fill::Timeout => {
                    self.ctx
                        .metrics
                        .emit(Event::LimitHit(Limit::CommandTimeout));
                    self.reply(reply::TIMEOUT);
                    return None;
                }
                Fill::Stopped => {
                    self.reply(reply::SHUTTING_DOWN);
                    return None;
                }
            }
        }
    }

    /// Dispatches one command line.
    async fn handle(&mut self, line: Vec<u8>) {
        if !self.count_command() {
            return;
        }
        let cmd = match Command::parse(&line) {
            Ok(cmd) => cmd,
            Err(invalid) => {
                self.ctx.metrics.emit(Event::Command("invalid"));
                self.refuse_line(invalid).await;
                return;
            }
        };
        self.ctx.metrics.emit(Event::Command(cmd.verb()));
        if let Some(refusal) = self.refused.clone()
            && !matches!(cmd, Command::Quit)
        {
            if let Command::Bdat { size, .. } = cmd {
                self.discard(size).await;
            }
            // Nothing can succeed in this session: every command but QUIT is an error.
            self.client_error(refusal);
            return;
        }
        if let Err(r) = state::check(self.state, &cmd) {
            // A refused BDAT still has its chunk on the wire: it must be read and dropped.
            if let Command::Bdat { size, .. } = cmd {
                self.discard(size).await;
            }
            if self.state == State::Chunking {
                self.reset_transaction().await;
            }
            if r == reply::NO_VALID_RECIPIENTS {
                // A DATA pipelined behind recipients that were all refused (RFC 2920 §3.1):
                // the refusals were counted, the DATA is no error of its own.
                self.reply(r);
            } else {
                self.client_error(r);
            }
            return;
        }
        // RFC 2920: EHLO ends a group of commands, and without PIPELINING advertised (a HELO
        // client) every command waits for its reply. More bytes already waiting now mean the
        // client talked ahead, as bulk-mail bots do.
        let greeting = matches!(cmd, Command::Ehlo(_) | Command::Helo(_));
        if !self.rbuf.is_empty()
            && (greeting || (self.state != State::Connected && !self.info().esmtp))
        {
            self.engine.info_mut().unannounced_pipelining = true;
        }
        match cmd {
            Command::Ehlo(name) => self.helo(name, true).await,
            Command::Helo(name) => self.helo(name, false).await,
            Command::StartTls => self.starttls().await,
            Command::Mail(params) => self.mail(params).await,
            Command::Rcpt(address) => self.rcpt(address).await,
            Command::Data => self.data().await,
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::Rset => {
                self.reset_transaction().await;
                self.reply(reply::RESET_OK);
            }
            Command::Noop => self.reply(reply::OK),
            Command::Vrfy => self.reply(reply::CANNOT_VRFY),
            Command::Help => self.help(),
            Command::Quit => {
                self.reply(reply::BYE);
                self.closing = true;
            }
            Command::NotOffered(_) => self.client_error(reply::NOT_IMPLEMENTED),
        }
    }

    /// HELP names the commands of the EHLO reply: STARTTLS only when EHLO offers it.
    fn help(&mut self) {
        let caps = self.ctx.capabilities(self.io.is_tls());
        self.reply(match caps.iter().any(|c| c == "STARTTLS") {
            true => reply::HELP_WITH_STARTTLS,
            false => reply::HELP,
        });
    }

    /// Answers a command line that did not parse, and deals with what follows it: a refused
    /// BDAT's chunk is read and dropped (and ends the BDAT sequence, RFC 3030 §2); after a
    /// BDAT whose size could not be read nothing that follows can be trusted to be a
    /// command, so the session ends.
    async fn refuse_line(&mut self, invalid: Invalid) {
        match invalid.trailing {
            Trailing::Nothing => self.client_error(invalid.reply),
            Trailing::Chunk(size) => {
                self.discard(size).await;
                if self.state == State::Chunking {
                    self.reset_transaction().await;
                }
                self.client_error(invalid.reply);
            }
            Trailing::Unknown => {
                tracing::info!(session = %self.info().id, "BDAT chunk size unreadable; closing");
                self.client_error(invalid.reply);
                if !self.closing {
                    self.reply(reply::LOST_SYNC);
                }
                self.closing = true;
            }
        }
    }

    /// Queues a reply and counts it in the metrics; a 421 ends the session. Replies that
    /// count towards a limit go through `client_error` or `refused_recipient` (`limits.rs`).
    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.wbuf);
        self.ctx.metrics.emit(Event::Reply(r.class()));
        if r.code == 421 {
            self.closing = true;
        }
    }

    /// Writes queued replies within the write deadline.
    async fn flush(&mut self) -> std::io::Result<()> {
        let within = self.ctx.config.timeouts.write;
        let result = crate::peer_write::write_within(&mut self.io, &mut self.wbuf, within).await;
        if result.is_err() {
            self.closing = true;
        }
        result
    }

    /// Flushes replies, then reads more input until `deadline` or `stop`.
    async fn fill(&mut self, deadline: tokio::time::Instant, stop: &CancellationToken) -> Fill {
        if self.flush().await.is_err() {
            return Fill::Eof;
        }
        self.rbuf.reserve(16 * 1024);
        // Why select: a shutdown (or the end of the grace period) must interrupt a client
        // that is silent, without waiting for its timeout.
        tokio::select! {
            biased;
            _ = stop.cancelled() => Fill::Stopped,
            read = timeout_at(deadline, self.io.read_buf(&mut self.rbuf)) => match read {
                Err(_) => Fill::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.closing = true;
                    Fill::Eof
                }
                Ok(Ok(_)) => Fill::Data,
            },
        }
    }

    /// Reads and drops `n` bytes (a refused BDAT chunk).
    async fn discard(&mut self, mut n: u64) {
        let deadline = tokio::time::Instant::now() + self.ctx.config.timeouts.data;
        let stop = self.signals.abort.clone();
        loop {
            let take = self
                .rbuf
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            self.rbuf.drain(..take);
            n -= take as u64;
            if n == 0 {
                return;
            }
            if !matches!(self.fill(deadline, &stop).await, Fill::Data) {
                self.closing = true;
                return;
            }
        }
    }

    /// Who is connected.
    fn info(&self) -> &SessionInfo {
        self.engine.info()
    }

    /// The transaction's envelope.
    fn env(&self) -> &Envelope {
        self.engine.envelope()
    }

    /// Closes the backend connection kept between transactions, if any.
    async fn drop_idle_backend(&mut self) {
        if let Some(idle) = self.idle.take() {
            idle.close().await;
        }
    }

    /// Ends any transaction: the backend gets RSET (the connection is kept for the next
    /// transaction if it answers), the envelope starts afresh.
    async fn reset_transaction(&mut self) {
        if let Some(txn) = self.txn.take() {
            self.idle = txn.finish().await;
        }
        self.engine.reset();
        self.mail = None;
        self.txn_broken = false;
        self.body = None;
        if self.state != State::Connected {
            self.state = State::Greeted;
        }
    }
}

#[cfg(test)]
mod tests;
