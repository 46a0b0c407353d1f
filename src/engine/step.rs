//! What the engine tells a front end after each stage.
//!
//! Owns: `Step` (go on, or answer this and stop the command) and `Final` (the end of a
//! message: the verdict, the header fields to add, the authserv-id whose forged
//! Authentication-Results must go). Must not: know how a front end sends them (an SMTP
//! reply, a milter replycode and header edits).

use crate::pipeline::outcome::Action;
use crate::policy::verdict::Verdict;
use crate::smtp::reply::Reply;

/// The outcome of one stage before the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing refuses: the front end goes on (relays the RCPT, answers 250...).
    Continue,
    /// The policy refuses the command: the verdict (a tempfail or reject) carries the reply.
    Refuse(Verdict),
    /// A recipient under another policy scope than the transaction's: deferred with
    /// `452 4.5.3`-class `OTHER_SCOPE`, so the client sends it in a transaction of its own.
    OtherScope,
}

impl Step {
    /// The reply that refuses the command, if it is refused.
    pub fn refusal(&self) -> Option<Reply> {
        match self {
            Step::Continue => None,
            Step::Refuse(v) => v.action.refusal().cloned(),
            Step::OtherScope => Some(crate::smtp::reply::OTHER_SCOPE),
        }
    }
}

/// The end of a message, decided.
#[derive(Debug, Clone)]
pub struct Final {
    /// The policy's verdict, final: rate limits and greylisting are already in it.
    pub verdict: Verdict,
    /// Header fields to add above the message, CRLF-terminated, in order: what the checks
    /// asked for (Authentication-Results), then `X-Portcullis-Verdict` for tag and
    /// quarantine.
    pub headers: Vec<String>,
    /// Incoming Authentication-Results fields with this authserv-id are forged (only we
    /// write ours) and must be removed; `None` when authentication is off.
    pub strip_authserv_id: Option<String>,
}

impl Final {
    /// What is relayed or stored: `above` (the front end's own trace fields, if any), then
    /// the header fields to add, in front of the message; forged results removed.
    pub fn content(&self, above: String) -> crate::relay::Content {
        let mut prepend = above;
        for header in &self.headers {
            prepend.push_str(header);
        }
        crate::relay::Content {
            prepend: prepend.into_bytes(),
            strip_authserv_id: self.strip_authserv_id.clone(),
        }
    }

    /// The reply that refuses the message, for tempfail and reject.
    pub fn refusal(&self) -> Option<&Reply> {
        self.verdict.action.refusal()
    }

    /// True when the policy quarantines the message.
    pub fn quarantined(&self) -> bool {
        self.verdict.action == Action::Quarantine
    }
}

/// `X-Portcullis-Verdict` for messages relayed as `tag` or `quarantine`, naming the rules,
/// so the backend (a sieve rule, a Postfix header_checks) can file them.
pub fn verdict_header(verdict: &Verdict) -> Option<String> {
    match verdict.action {
        Action::Tag | Action::Quarantine => Some(format!(
            "X-Portcullis-Verdict: {}; score={}; rules={}\r\n",
            verdict.action.label(),
            verdict.score,
            verdict.rules.join(",")
        )),
        _ => None,
    }
}
