//! The session's own limits: what counts as a client error, recipients the backend refused,
//! the command count, and the two clocks of the session (its total lifetime and the time it
//! spends without mail).
//!
//! Owns: which replies count towards `limits.max_errors` (the client's protocol errors, see
//! `Session::client_error`) and which towards `limits.max_unknown_recipients` (the backend's
//! 5xx to a RCPT), `limits.max_commands`, and when `timeouts.session` and `timeouts.idle`
//! end a session: only at a command boundary, never inside a message. Must not: decide
//! policy (a policy refusal counts towards neither limit), or read and write the socket
//! beyond queueing replies.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Session;
use super::state::State;
use crate::metrics::{Event, Limit};
use crate::smtp::reply::{self, Reply, ReplyClass};

/// The counters and clocks of one session.
pub(super) struct Counters {
    /// Protocol errors so far (`limits.max_errors`).
    pub(super) errors: u32,
    /// Recipients the backend refused with 5xx so far (`limits.max_unknown_recipients`).
    pub(super) unknown_recipients: u32,
    /// Commands so far (`limits.max_commands`).
    pub(super) commands: u32,
    /// When the session began (`timeouts.session`).
    started: Instant,
    /// When the session began or its last transaction completed (`timeouts.idle`).
    idle_since: Instant,
}

impl Counters {
    /// Fresh counters; both clocks start now.
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Counters {
            errors: 0,
            unknown_recipients: 0,
            commands: 0,
            started: now,
            idle_since: now,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Queues the reply to a protocol error of the client and counts it towards
    /// `limits.max_errors`; at the limit, `421 4.7.0` follows and the session ends.
    ///
    /// A protocol error is a reply saying the client broke the protocol or asked for what
    /// no client of this gateway needs: an unknown command, a line too long, a syntax error
    /// in a command or its parameters (`500`, `501`, `555`, `553 5.6.7`), a command out of
    /// order (`503`), a command not offered (`502`), a recipient outside the accepted
    /// domains (`550 5.7.1` relay denied), and every command after the connection was
    /// refused by the policy. Everything else a session answers with 4xx/5xx counts towards
    /// no error limit: the recipient limit's `452 4.5.3` and the scope deferral's (RFC 5321
    /// §4.5.3.1.10 asks the client to go on), the `554 5.5.1` to a DATA after recipients
    /// were all refused (RFC 2920: a pipelined DATA cannot know), policy refusals (a rule
    /// that wants the session closed answers `421`), `tls.require`'s `530 5.7.0` (one per
    /// recipient of a listed domain, pipelined), size and content refusals, the
    /// backend's refusals of a sender or a message, and our own failures (`451 4.4.x`,
    /// `451 4.3.0`). The backend's refusals of recipients have their own limit
    /// (`refused_recipient`).
    pub(super) fn client_error(&mut self, r: Reply) {
        self.reply(r);
        self.counters.errors += 1;
        if self.counters.errors >= self.ctx.config.limits.max_errors && !self.closing {
            self.ctx.metrics.emit(Event::LimitHit(Limit::Errors));
            self.reply(reply::TOO_MANY_ERRORS);
        }
    }

    /// Queues the backend's own refusal of a recipient. A `5xx` (`550 5.1.1` user unknown)
    /// counts towards `limits.max_unknown_recipients`: at the limit, `421 4.7.0` follows and
    /// the session ends, which bounds a dictionary attack. A `4xx` (the backend's own
    /// recipient limit, greylisting, a verification it could not finish) counts nowhere:
    /// the client retries it later.
    pub(super) fn refused_recipient(&mut self, r: Reply) {
        let permanent = r.class() == ReplyClass::Permanent;
        self.reply(r);
        if !permanent {
            return;
        }
        self.counters.unknown_recipients += 1;
        if self.counters.unknown_recipients >= self.ctx.config.limits.max_unknown_recipients
            && !self.closing
        {
            self.ctx
                .metrics
                .emit(Event::LimitHit(Limit::UnknownRecipients));
            self.reply(reply::TOO_MANY_UNKNOWN_RECIPIENTS);
        }
    }

    /// Counts one command; false (with `421 4.7.0` queued) when it is over
    /// `limits.max_commands` and must not run.
    pub(super) fn count_command(&mut self) -> bool {
        self.counters.commands += 1;
        if self.counters.commands > self.ctx.config.limits.max_commands {
            self.ctx.metrics.emit(Event::LimitHit(Limit::Commands));
            self.reply(reply::TOO_MANY_COMMANDS);
            return false;
        }
        true
    }

    /// A transaction completed (its message was read to the end and answered, whatever the
    /// answer): the idle clock starts again.
    pub(super) fn transaction_completed(&mut self) {
        self.counters.idle_since = Instant::now();
    }

    /// The reply that ends the session at this command boundary, if a clock has run out.
    ///
    /// `timeouts.session` runs from the start of the session and applies at every command
    /// boundary except between the chunks of a BDAT message (a message being received is
    /// finished first, within `timeouts.data`). `timeouts.idle` runs from the start of the
    /// session and again from the end of each completed transaction, and applies only
    /// outside a transaction (no MAIL accepted, or after RSET): the time a client spends
    /// without sending mail.
    pub(super) fn clock_expired(&self) -> Option<(Reply, Limit)> {
        let now = Instant::now();
        match self.clock_deadline() {
            Some((at, reply, limit)) if now >= at => Some((reply, limit)),
            _ => None,
        }
    }

    /// The earliest deadline of the clocks that apply in the current state, with the reply
    /// and the limit label it ends the session with.
    pub(super) fn clock_deadline(&self) -> Option<(Instant, Reply, Limit)> {
        let t = &self.ctx.config.timeouts;
        let session = (self.state != State::Chunking).then(|| {
            (
                self.counters.started + t.session,
                reply::SESSION_TOO_LONG,
                Limit::SessionTimeout,
            )
        });
        let idle = matches!(self.state, State::Connected | State::Greeted).then(|| {
            (
                self.counters.idle_since + t.idle,
                reply::IDLE_TOO_LONG,
                Limit::IdleTimeout,
            )
        });
        match (session, idle) {
            (Some(s), Some(i)) => Some(if i.0 < s.0 { i } else { s }),
            (s, i) => s.or(i),
        }
    }
}
