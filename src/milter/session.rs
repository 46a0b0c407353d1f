//! One milter connection from the MTA: packets in, the engine's steps, responses out.
//!
//! Owns: the read/write loop with its deadlines (`milter.timeout` for the next packet,
//! `timeouts.write` for a response), negotiation, the macros of the connection and of the
//! message, mapping each command onto the engine (connect, helo, mail, rcpt, then header /
//! end of headers / body / end of message as one message), the message's intake into the
//! spool (memory first, then disk, as in proxy mode), and turning a `Final` into milter
//! responses: a replycode for a refusal, quarantine (Postfix's hold queue, or our store and
//! a discard), and the header edits (forged Authentication-Results deleted with
//! change-header, ours inserted at the top). A packet over `milter.max_packet_size`, an
//! unknown command or a malformed packet ends the connection with a log line and a metric.
//! Must not: run checks or the policy (the engine does), or know SMTP syntax beyond the
//! MAIL/RCPT parameters the engine needs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout_at;
use tokio_util::sync::CancellationToken;

use super::command::{Command, DecodeError, Family, client_ip};
use super::negotiate::{self, Event as MilterEvent, Negotiated, Offer, Wants};
use super::packet::{FrameError, Framer};
use super::response::{ReplyCode, Response};
use crate::config::schema::MilterQuarantine;
use crate::context::Context;
use crate::engine::{Engine, Final, Mode, Step};
use crate::intake::Intake;
use crate::metrics::Event;
use crate::pipeline::MessageView;
use crate::smtp::command::Body as BodyType;
use crate::smtp::envelope::{Envelope, SessionInfo};
use crate::smtp::reply::{self, Reply};

/// Why a connection ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A packet above `milter.max_packet_size`.
    TooLarge,
    /// A command byte the protocol does not define.
    UnknownCommand,
    /// A packet that does not have its command's layout, or arrives out of order.
    Malformed,
    /// No packet within `milter.timeout`, or a response not written in time.
    Timeout,
}

impl ProtocolError {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ProtocolError::TooLarge => "too_large",
            ProtocolError::UnknownCommand => "unknown_command",
            ProtocolError::Malformed => "malformed",
            ProtocolError::Timeout => "timeout",
        }
    }
}

/// A message being received: header fields and body into one intake, as the message will
/// be verified (CRLF line endings), with what the checks ask of its lines.
struct Incoming {
    bytes: Intake,
    /// Occurrences of Authentication-Results so far, and those carrying our authserv-id.
    results_seen: u32,
    forged: Vec<u32>,
    longest_line: u64,
    line: u64,
    nul: bool,
    /// When the message began (its DATA deadline).
    deadline: tokio::time::Instant,
}

impl Incoming {
    fn new(ctx: &Context) -> Self {
        Incoming {
            bytes: Intake::new(&ctx.config),
            results_seen: 0,
            forged: Vec::new(),
            longest_line: 0,
            line: 0,
            nul: false,
            deadline: tokio::time::Instant::now() + ctx.config.timeouts.data,
        }
    }

    async fn push(&mut self, data: &[u8]) {
        for &b in data {
            match b {
                b'\n' => self.line = 0,
                b'\r' => {}
                0 => self.nul = true,
                _ => {
                    self.line += 1;
                    self.longest_line = self.longest_line.max(self.line);
                }
            }
        }
        self.bytes.write(data).await;
    }
}

/// The macros the session reads: our address, TLS at HELO, the queue id for the log line,
/// and the SASL login (`mail_from.authenticated`).
const READ_MACROS: [&str; 4] = ["{daemon_addr}", "{tls_version}", "i", "{auth_authen}"];

/// One connection from the MTA (Postfix's milter client).
pub struct MilterSession<S> {
    io: S,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    framer: Framer,
    ctx: Arc<Context>,
    id: String,
    negotiated: Option<Negotiated>,
    /// Macros of the connection (CONNECT, HELO) and of the transaction (MAIL onwards).
    conn_macros: HashMap<String, String>,
    txn_macros: HashMap<String, String>,
    engine: Option<Engine>,
    intake: Option<Incoming>,
    /// A refusal at CONNECT or HELO holds for the whole SMTP session (Postfix applies it to
    /// every command after it); later events get no new verdict.
    refused: bool,
    closing: bool,
    messages: u32,
    abort: CancellationToken,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> MilterSession<S> {
    /// A session on `io`; `abort` interrupts it at the end of the shutdown grace period.
    pub fn new(io: S, ctx: Arc<Context>, abort: CancellationToken) -> Self {
        MilterSession {
            io,
            rbuf: Vec::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(1024),
            framer: Framer::new(
                usize::try_from(ctx.config.milter.max_packet_size).unwrap_or(usize::MAX),
            ),
            id: crate::listener::session_id(),
            ctx,
            negotiated: None,
            conn_macros: HashMap::new(),
            txn_macros: HashMap::new(),
            engine: None,
            intake: None,
            refused: false,
            closing: false,
            messages: 0,
            abort,
        }
    }

    /// Runs the connection to its end.
    pub async fn run(mut self) {
        let started = Instant::now();
        tracing::debug!(milter = %self.id, "milter connection opened");
        let end = loop {
            let packet = match self.next_packet().await {
                Ok(Some(p)) => p,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            let command = match Command::decode(packet) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(milter = %self.id, error = %e, "milter packet refused; closing");
                    break Some(match e {
                        DecodeError::UnknownCommand(_) => ProtocolError::UnknownCommand,
                        _ => ProtocolError::Malformed,
                    });
                }
            };
            self.ctx.metrics.emit(Event::MilterPacket(command.label()));
            if let Err(e) = self.handle(command).await {
                break Some(e);
            }
            if self.closing {
                break None;
            }
            if self.flush().await.is_err() {
                break Some(ProtocolError::Timeout);
            }
        };
        if let Some(e) = end {
            self.ctx.metrics.emit(Event::MilterProtocolError(e.label()));
        }
        let _ = self.io.shutdown().await;
        tracing::debug!(
            milter = %self.id,
            duration_ms = started.elapsed().as_millis() as u64,
            messages = self.messages,
            "milter connection closed"
        );
    }

    /// The next packet, `None` at EOF (or shutdown between packets).
    async fn next_packet(&mut self) -> Result<Option<super::packet::Packet>, ProtocolError> {
        let deadline = tokio::time::Instant::now() + self.ctx.config.milter.timeout;
        loop {
            match self.framer.next(&mut self.rbuf) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(milter = %self.id, error = %e, "milter packet refused; closing");
                    return Err(match e {
                        FrameError::TooLarge(_) => ProtocolError::TooLarge,
                        FrameError::Empty => ProtocolError::Malformed,
                    });
                }
            }
            self.rbuf.reserve(16 * 1024);
            let read = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return Ok(None),
                read = timeout_at(deadline, self.io.read_buf(&mut self.rbuf)) => read,
            };
            match read {
                Err(_) => {
                    tracing::info!(milter = %self.id, "no packet from the MTA within milter.timeout; closing");
                    return Err(ProtocolError::Timeout);
                }
                Ok(Ok(0)) => {
                    if !self.rbuf.is_empty() {
                        tracing::info!(milter = %self.id, left = self.rbuf.len(), "milter connection ended inside a packet");
                        return Err(ProtocolError::Malformed);
                    }
                    return Ok(None);
                }
                Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    fn respond(&mut self, r: Response) {
        self.ctx.metrics.emit(Event::MilterResponse(r.label()));
        r.encode(&mut self.wbuf);
    }

    /// Answers an event that expects a reply (none where `NR_*` was agreed).
    fn answer(&mut self, event: MilterEvent, r: Response) {
        if self
            .negotiated
            .as_ref()
            .is_none_or(|n| n.expects_reply(event))
        {
            self.respond(r);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let within = self.ctx.config.timeouts.write;
        crate::peer_write::write_within(&mut self.io, &mut self.wbuf, within).await
    }

    async fn handle(&mut self, command: Command) -> Result<(), ProtocolError> {
        match command {
            Command::Optneg {
                version,
                actions,
                protocol,
            } => self.negotiate(Offer {
                version,
                actions,
                protocol,
            })?,
            Command::Macros { stage, pairs } => {
                let into = match stage {
                    b'C' | b'H' => &mut self.conn_macros,
                    _ => &mut self.txn_macros,
                };
                // Only the macros something reads are kept: the maps stay this small
                // whatever names the MTA sends.
                into.extend(
                    pairs
                        .into_iter()
                        .filter(|(n, _)| READ_MACROS.contains(&n.as_str())),
                );
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => self.connect(hostname, family, port, &address).await,
            Command::Helo(name) => self.helo(name).await,
            Command::Mail { sender, args } => self.mail(&sender, &args).await,
            Command::Rcpt { rcpt, args: _ } => self.rcpt(&rcpt).await,
            Command::Data => self.answer(MilterEvent::Data, Response::Continue),
            Command::Header { name, value } => {
                self.header(&name, &value).await;
                self.answer(MilterEvent::Header, Response::Continue);
            }
            Command::EndOfHeaders => {
                self.intake_mut().push(b"\r\n").await;
                self.answer(MilterEvent::EndOfHeaders, Response::Continue);
            }
            Command::Body(chunk) => {
                self.intake_mut().push(&chunk).await;
                self.answer(MilterEvent::Body, Response::Continue);
            }
            Command::EndOfMessage(chunk) => {
                self.intake_mut().push(&chunk).await;
                self.end_of_message().await;
            }
            Command::Abort => self.abort_message(),
            Command::Quit => self.closing = true,
            Command::QuitNewConnection => {
                // The next SMTP session reuses this connection: it starts from nothing.
                self.abort_message();
                self.engine = None;
                self.conn_macros.clear();
                self.refused = false;
            }
            Command::Unknown(_) => self.answer(MilterEvent::Unknown, Response::Continue),
        }
        Ok(())
    }

    fn negotiate(&mut self, offer: Offer) -> Result<(), ProtocolError> {
        let wants = Wants {
            quarantine: self.ctx.config.milter.quarantine == MilterQuarantine::Hold,
            ..Wants::default()
        };
        match negotiate::answer(offer, &wants) {
            Ok(n) => {
                if n.missing_actions() != 0 {
                    tracing::warn!(milter = %self.id, missing = format!("{:#x}", n.missing_actions()), "the MTA does not allow every action the milter uses");
                }
                self.respond(n.response());
                self.negotiated = Some(n);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(milter = %self.id, error = %e, "milter negotiation failed; closing");
                Err(ProtocolError::Malformed)
            }
        }
    }

    /// The engine of this SMTP session: made at CONNECT, or at the first command when the
    /// MTA sent none (a client that negotiated CONNECT away), with an unknown client.
    fn engine(&mut self) -> &mut Engine {
        let ctx = &self.ctx;
        let (id, macros) = (&self.id, &self.conn_macros);
        self.engine.get_or_insert_with(|| {
            new_engine(
                ctx,
                id,
                macros,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            )
        })
    }

    async fn connect(&mut self, hostname: String, family: Family, port: u16, address: &str) {
        self.abort_message();
        self.refused = false;
        let ip = client_ip(family, address).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let client = SocketAddr::new(ip.to_canonical(), port);
        tracing::info!(milter = %self.id, client = %client, name = %hostname, "milter: SMTP session");
        let mut engine = new_engine(&self.ctx, &self.id, &self.conn_macros, client);
        engine.start_lookups();
        let step = engine.connect().await;
        self.engine = Some(engine);
        let r = self.step_response(&step, true);
        self.answer(MilterEvent::Connect, r);
    }

    async fn helo(&mut self, name: String) {
        if self.refused {
            return self.answer(MilterEvent::Helo, Response::Continue);
        }
        let tls = self.conn_macros.contains_key("{tls_version}");
        let engine = self.engine();
        engine.info_mut().tls = tls;
        let step = engine.helo(name, true).await;
        let r = self.step_response(&step, true);
        self.answer(MilterEvent::Helo, r);
    }

    async fn mail(&mut self, sender: &str, args: &[String]) {
        // A new transaction; its macros (`{auth_authen}`) came just before this packet.
        self.end_transaction();
        if self.refused {
            return self.answer(MilterEvent::Mail, Response::Continue);
        }
        let mut env = Envelope {
            mail_from: strip_brackets(sender).to_string(),
            authenticated: self
                .txn_macros
                .get("{auth_authen}")
                .filter(|l| !l.is_empty())
                .cloned(),
            ..Envelope::default()
        };
        for arg in args {
            let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
            if key.eq_ignore_ascii_case("SIZE") {
                // Postfix has checked the number; one that does not fit is no declaration.
                env.declared_size = value.parse().ok();
            } else if key.eq_ignore_ascii_case("BODY") && value.eq_ignore_ascii_case("8BITMIME") {
                env.body = BodyType::EightBitMime;
            } else if key.eq_ignore_ascii_case("SMTPUTF8") {
                env.smtputf8 = true;
            }
        }
        let step = self.engine().mail(env).await;
        let r = self.step_response(&step, false);
        self.answer(MilterEvent::Mail, r);
    }

    async fn rcpt(&mut self, rcpt: &str) {
        if self.refused {
            return self.answer(MilterEvent::Rcpt, Response::Continue);
        }
        let address = strip_brackets(rcpt).to_string();
        let engine = self.engine();
        if let Some(refusal) = engine.rcpt_admit(&address) {
            let r = reply_code(&refusal);
            return self.answer(MilterEvent::Rcpt, r);
        }
        let step = engine.rcpt(&address).await;
        if step == Step::Continue {
            engine.rcpt_accepted();
        }
        let r = self.step_response(&step, false);
        self.answer(MilterEvent::Rcpt, r);
    }

    /// One header field into the spool, as it will be verified: `Name:value` CRLF, folded
    /// lines with CRLF. An Authentication-Results with our authserv-id is remembered by its
    /// occurrence (Postfix counts each header name from 1) for deletion at the end.
    async fn header(&mut self, name: &str, value: &[u8]) {
        let leading_space = self
            .negotiated
            .as_ref()
            .is_some_and(Negotiated::leading_space);
        let ours = self
            .ctx
            .config
            .auth
            .enabled
            .then(|| self.ctx.config.authserv_id().to_string());
        let intake = self.intake_mut();
        let mut field = Vec::with_capacity(name.len() + value.len() + 4);
        field.extend_from_slice(name.as_bytes());
        field.push(b':');
        if !leading_space {
            // Without HDR_LEADSPC Postfix dropped the one space after the colon.
            field.push(b' ');
        }
        let mut prev = 0u8;
        for &b in value {
            if b == b'\n' && prev != b'\r' {
                field.push(b'\r');
            }
            field.push(b);
            prev = b;
        }
        field.extend_from_slice(b"\r\n");
        if name.eq_ignore_ascii_case("Authentication-Results") {
            intake.results_seen += 1;
            if let Some(ours) = &ours
                && crate::smtp::headers::names_authserv_id(value, ours)
            {
                intake.forged.push(intake.results_seen);
            }
        }
        intake.push(&field).await;
    }

    fn intake_mut(&mut self) -> &mut Incoming {
        let ctx = &self.ctx;
        self.intake.get_or_insert_with(|| Incoming::new(ctx))
    }

    /// Ends the transaction: its message and the engine's envelope go.
    fn end_transaction(&mut self) {
        self.intake = None;
        if let Some(e) = &mut self.engine {
            e.reset();
        }
    }

    /// Ends the transaction and forgets its macros (ABORT, the end of a message, a new
    /// SMTP session).
    fn abort_message(&mut self) {
        self.end_transaction();
        self.txn_macros.clear();
    }

    /// The message is complete: the engine's verdict, then the responses.
    async fn end_of_message(&mut self) {
        let mut intake = self
            .intake
            .take()
            .unwrap_or_else(|| Incoming::new(&self.ctx));
        if self.refused {
            self.respond(Response::Continue);
            return;
        }
        let queue_id = self.txn_macros.get("i").cloned();
        let abort = self.abort.clone();
        let loaded = match crate::readback::read_back(
            &self.ctx,
            &self.id,
            &mut intake.bytes,
            intake.deadline,
            &abort,
        )
        .await
        {
            Ok(loaded) => loaded,
            Err(r) => {
                self.finish(&intake, "tempfail", None, queue_id.as_deref());
                self.respond(reply_code(&r));
                return;
            }
        };
        let view = MessageView {
            size: intake.bytes.size(),
            head: intake.bytes.spool.head(),
            // Postfix stores lines, not octets: what reaches a milter has CRLF endings.
            bare_line_endings: false,
            nul_bytes: intake.nul,
            longest_line: intake.longest_line,
            raw: crate::readback::message_bytes(&self.ctx, loaded.as_ref(), &intake.bytes),
        };
        let decided = self.engine().message(view).await;
        drop(loaded);
        let (responses, outcome) = self.decision(&decided, &mut intake).await;
        for r in responses {
            self.respond(r);
        }
        self.finish(&intake, outcome, Some(&decided), queue_id.as_deref());
        self.abort_message();
    }

    /// The responses for a decided message, and the outcome label.
    async fn decision(
        &mut self,
        decided: &Final,
        intake: &mut Incoming,
    ) -> (Vec<Response>, &'static str) {
        if let Some((r, outcome)) =
            crate::intake::withheld(decided, &intake.bytes, &self.ctx.metrics, &self.id)
        {
            return (vec![reply_code(&r)], outcome);
        }
        let mut out = self.edits(decided, intake);
        if decided.quarantined() {
            match self.ctx.config.milter.quarantine {
                MilterQuarantine::Hold => {
                    let reason = format!("Portcullis: {}", decided.verdict.rules.join(","));
                    out.push(Response::Quarantine(reason));
                }
                MilterQuarantine::Store => return self.store(decided, intake).await,
            }
        }
        out.push(Response::Accept);
        (out, decided.verdict.action.label())
    }

    /// Header edits: forged results deleted (highest occurrence first, so that a deletion
    /// does not move the ones still to come), then ours inserted at the top. Deleting
    /// before inserting keeps the occurrence numbers the MTA's: our own
    /// Authentication-Results would otherwise be number 1.
    fn edits(&self, decided: &Final, intake: &Incoming) -> Vec<Response> {
        let mut out = Vec::new();
        let Some(n) = &self.negotiated else {
            return out;
        };
        if decided.strip_authserv_id.is_some() && n.can_change_header() {
            for &index in intake.forged.iter().rev() {
                if let Ok(r) = Response::change_header(index, "Authentication-Results", "") {
                    out.push(r);
                }
            }
        }
        // Trace fields (Authentication-Results) go on top, next to Postfix's Received, in
        // the engine's order; the others (X-Portcullis-Verdict) are appended, as a filter's
        // tags usually are, so the trace block stays together.
        let mut top = 0u32;
        for field in &decided.headers {
            let Some((name, value)) = split_field(field) else {
                continue;
            };
            let value = n.outgoing_value(&value);
            let trace = name.eq_ignore_ascii_case("Authentication-Results");
            let r = if trace && n.can_insert_header() {
                top += 1;
                Response::insert_header(top - 1, name, &value)
            } else {
                Response::add_header(name, &value)
            };
            match r {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(milter = %self.id, header = name, error = %e, "header not added")
                }
            }
        }
        out
    }

    /// `milter.quarantine: store`: the message goes to our quarantine store and the MTA is
    /// told to discard it (or, per `quarantine.answer`, to refuse it).
    async fn store(
        &mut self,
        decided: &Final,
        intake: &mut Incoming,
    ) -> (Vec<Response>, &'static str) {
        let Some(q) = crate::quarantine::of(&self.ctx.config) else {
            return (vec![reply_code(&reply::LOCAL_ERROR)], "tempfail");
        };
        let Some(engine) = &self.engine else {
            return (vec![reply_code(&reply::LOCAL_ERROR)], "tempfail");
        };
        let answer = self.ctx.config.quarantine.answer;
        let kept = q
            .keep(
                &self.id,
                answer,
                engine.envelope(),
                &decided.verdict,
                &decided.content(String::new()),
                &mut intake.bytes.spool,
            )
            .await;
        match kept {
            // Accepted as far as the sender can tell; Postfix drops its copy.
            Ok(refusal) => (
                vec![refusal.map_or(Response::Discard, |r| reply_code(&r))],
                "quarantine",
            ),
            Err(r) => (vec![reply_code(&r)], "tempfail"),
        }
    }

    /// The message's log line and metrics.
    fn finish(
        &mut self,
        intake: &Incoming,
        outcome: &'static str,
        decided: Option<&Final>,
        queue_id: Option<&str>,
    ) {
        self.messages += 1;
        self.ctx.metrics.emit(Event::MilterMessage {
            verdict: outcome,
            bytes: intake.bytes.size(),
        });
        let (from, rcpts, facts) = match &self.engine {
            Some(e) => (
                e.envelope().mail_from.clone(),
                e.envelope().rcpts.len(),
                e.facts(),
            ),
            None => (String::new(), 0, Vec::new()),
        };
        let empty = crate::policy::verdict::Verdict::accept();
        let verdict = decided.map_or(&empty, |d| &d.verdict);
        tracing::info!(
            milter = %self.id,
            queue_id = queue_id.unwrap_or("-"),
            from = %from,
            rcpts,
            size = intake.bytes.size(),
            spilled = intake.bytes.spool.spilled(),
            verdict = outcome,
            rules = ?verdict.rules,
            score = verdict.score,
            auth = %crate::session::auth_summary(&facts),
            "message"
        );
    }

    /// The response to a step: continue, or the refusal as a replycode. A refusal at
    /// CONNECT or HELO (`greeting`) holds for the rest of the SMTP session, as Postfix
    /// applies it to every command after it.
    fn step_response(&mut self, step: &Step, greeting: bool) -> Response {
        match step.refusal() {
            None => Response::Continue,
            Some(r) => {
                self.refused |= greeting;
                reply_code(&r)
            }
        }
    }
}

/// An engine for an SMTP session of the MTA's, with relay protection only when
/// `accepted_domains` is set (Postfix does relay control).
fn new_engine(
    ctx: &Arc<Context>,
    id: &str,
    macros: &HashMap<String, String>,
    client: SocketAddr,
) -> Engine {
    let local = macros
        .get("{daemon_addr}")
        .and_then(|a| a.parse::<IpAddr>().ok())
        .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 25)), |ip| {
            SocketAddr::new(ip, 25)
        });
    let mut info = SessionInfo::new(id, client, local);
    // Postfix does not say whether the client said EHLO or HELO.
    info.esmtp = true;
    let relay_control = !ctx.config.accepted_domains.is_empty();
    Engine::new(ctx.clone(), info, Mode::Live).with_relay_control(relay_control)
}

/// `<a@b>` → `a@b`; `<>` → the null sender.
fn strip_brackets(address: &str) -> &str {
    let a = address.trim();
    a.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
}

/// A reply as a milter replycode; one that cannot be expressed (not 4xx/5xx, or without an
/// enhanced code) becomes the MTA's plain tempfail or reject.
fn reply_code(r: &Reply) -> Response {
    let enhanced = r.enhanced.map(|e| e.to_string()).unwrap_or_default();
    // `ReplyCode::from_reply` refuses a multi-line reply; its first line still says why.
    let text = r.text.lines().next().unwrap_or("");
    match ReplyCode::new(r.code, &enhanced, text) {
        Ok(code) => Response::ReplyCode(code),
        Err(_) if r.code / 100 == 5 => Response::Reject,
        Err(_) => Response::Tempfail,
    }
}

/// `Name: value\r\n` (folded with CRLF) → (`Name`, `value` with LF-only folding, no leading
/// space, no final line break).
fn split_field(field: &str) -> Option<(&str, String)> {
    let (name, value) = field.split_once(':')?;
    let value = value.trim_end_matches(['\r', '\n']).trim_start_matches(' ');
    Some((name, value.replace("\r\n", "\n")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn only_the_macros_read_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::config::offline(dir.path());
        let ctx = Arc::new(Context::new(c, Arc::new(Metrics::new())).unwrap());
        let (_peer, io) = tokio::io::duplex(1024);
        let mut s = MilterSession::new(io, ctx, CancellationToken::new());
        for stage in [b'C', b'M'] {
            let mut pairs: Vec<(String, String)> = (0..1000)
                .map(|i| (format!("{{junk{i}}}"), "x".into()))
                .collect();
            pairs.push(("{auth_authen}".into(), "alice".into()));
            pairs.push(("i".into(), "QID".into()));
            s.handle(Command::Macros { stage, pairs }).await.unwrap();
        }
        assert_eq!(s.conn_macros.len(), 2, "{:?}", s.conn_macros.keys());
        assert_eq!(
            s.txn_macros.get("{auth_authen}").map(String::as_str),
            Some("alice")
        );
        assert_eq!(s.txn_macros.len(), 2);
    }
}
