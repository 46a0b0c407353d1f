//! The session's own limits: what counts as a client error, recipients the backend refused,
//! and the command count.
//!
//! Owns: which replies count towards `limits.max_errors` (the client's protocol errors, see
//! `Session::client_error`) and which towards `limits.max_unknown_recipients` (the backend's
//! 5xx to a RCPT), and `limits.max_commands`. Must not: decide policy (a policy refusal
//! counts towards neither limit), or read and write the socket beyond queueing replies.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::metrics::{Event, Limit};
use crate::smtp::reply::{self, Reply, ReplyClass};

/// The counters of one session.
pub(super) struct Counters {
    /// Protocol errors so far (`limits.max_errors`).
    pub(super) errors: u32,
    /// Recipients the backend refused with 5xx so far (`limits.max_unknown_recipients`).
    pub(super) unknown_recipients: u32,
    /// Commands so far (`limits.max_commands`).
    pub(super) commands: u32,
}

impl Counters {
    /// Fresh counters.
    pub(super) fn new() -> Self {
        Counters {
            errors: 0,
            unknown_recipients: 0,
            commands: 0,
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
    /// that wants the session closed answers `421`), size and content refusals, the
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
}
