//! The crate's error type: every failure says where it came from and whether retrying can
//! help, and that decides the 4xx or 5xx the client gets.
//!
//! Owns: `Error`, `Source`, `Permanence` and the default reply of each error.
//! Must not: log or write to sockets. Client-facing text stays generic; details go to logs.

use std::io;

use crate::metrics::BackendErrorKind;
use crate::smtp::reply::{self, Reply};

/// Who caused an error. Never the client: a client's mistakes get a reply, not an `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The backend MTA.
    Upstream,
    /// The gateway itself (spool, TLS set-up).
    Internal,
}

/// Whether the same action can succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permanence {
    /// Retrying later may work: 4xx.
    Transient,
    /// It will fail again: 5xx.
    Permanent,
}

/// Failures at module boundaries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect to the backend failed.
    #[error("backend connect to {addr} failed: {source}")]
    BackendConnect {
        /// host:port
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// A backend step did not finish within its deadline.
    #[error("backend timed out at {step}")]
    BackendTimeout {
        /// The step: connect, greeting, EHLO, STARTTLS, XCLIENT, MAIL, RCPT, DATA, end of data.
        step: &'static str,
    },
    /// The backend connection broke or sent something that is not SMTP.
    #[error("backend protocol error at {step}: {detail}")]
    BackendProtocol {
        /// The step.
        step: &'static str,
        /// What happened.
        detail: String,
    },
    /// The backend answered a set-up step (greeting, EHLO, XCLIENT, MAIL) with 4xx/5xx.
    #[error("backend refused {step}: {reply}")]
    BackendRefused {
        /// The step.
        step: &'static str,
        /// The backend's reply.
        reply: Reply,
    },
    /// The backend answered 421: it is closing its connection (RFC 5321 §3.8). That ends
    /// the backend leg, never the client's session.
    #[error("backend closing its connection at {step}: {reply}")]
    BackendClosing {
        /// The step it answered.
        step: &'static str,
        /// The backend's 421.
        reply: Reply,
    },
    /// Local I/O failed (spool, maildir).
    #[error("local I/O error: {0}")]
    Io(#[from] io::Error),
    /// TLS could not be set up.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The configuration cannot be used (what validation could not see).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The config file or its policy files have problems, each at its `file:line:column`.
    #[error("{0}")]
    Invalid(#[from] crate::config::ConfigErrors),
}

impl Error {
    /// Who caused it.
    pub fn source_kind(&self) -> Source {
        match self {
            Error::BackendConnect { .. }
            | Error::BackendTimeout { .. }
            | Error::BackendProtocol { .. }
            | Error::BackendRefused { .. }
            | Error::BackendClosing { .. } => Source::Upstream,
            Error::Io(_) | Error::Tls(_) | Error::Config(_) | Error::Invalid(_) => Source::Internal,
        }
    }

    /// Whether retrying can help. Only a backend's own 5xx to MAIL is permanent: every other
    /// failure is ours or the backend's to fix, and the client must keep the message.
    pub fn permanence(&self) -> Permanence {
        match self {
            Error::BackendRefused {
                step: "MAIL",
                reply,
            } if reply.code >= 500 => Permanence::Permanent,
            _ => Permanence::Transient,
        }
    }

    /// The reply for the client when this error ends a command before DATA.
    pub fn reply(&self) -> Reply {
        match (self, self.permanence()) {
            (Error::BackendRefused { reply, .. }, Permanence::Permanent) => reply.clone(),
            // RFC 3463: a connection that closes before a transaction began is X.4.1 (no
            // answer: the backend is busy or will not take us); one that closes inside a
            // transaction it had begun is X.4.2 (bad connection).
            (Error::BackendClosing { step, .. }, _) if !is_setup(step) => reply::BACKEND_FAILED,
            (_, _) if self.source_kind() == Source::Upstream => reply::BACKEND_UNAVAILABLE,
            _ => reply::LOCAL_ERROR,
        }
    }

    /// The reply when this error happens while relaying a message (after DATA).
    pub fn data_reply(&self) -> Reply {
        match self.source_kind() {
            Source::Upstream => reply::BACKEND_FAILED,
            _ => reply::LOCAL_ERROR,
        }
    }

    /// The backend error metric label, for upstream errors.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            Error::BackendConnect { .. } => Some(BackendErrorKind::Connect),
            Error::BackendTimeout { .. } => Some(BackendErrorKind::Timeout),
            Error::BackendProtocol { .. } => Some(BackendErrorKind::Protocol),
            Error::BackendRefused { reply, .. } if reply.code >= 500 => {
                Some(BackendErrorKind::Permfail)
            }
            Error::BackendRefused { .. } | Error::BackendClosing { .. } => {
                Some(BackendErrorKind::Tempfail)
            }
            _ => None,
        }
    }
}

/// The steps of opening a backend connection, before any transaction on it.
fn is_setup(step: &str) -> bool {
    matches!(step, "greeting" | "EHLO" | "STARTTLS" | "XCLIENT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_are_transient_4xx() {
        let e = Error::BackendTimeout { step: "RCPT" };
        assert_eq!(e.permanence(), Permanence::Transient);
        assert_eq!(e.reply().code, 451);
        assert_eq!(e.data_reply(), reply::BACKEND_FAILED);
        let greeting_554 = Error::BackendRefused {
            step: "greeting",
            reply: Reply::new(554, None, "backend.test not accepting mail"),
        };
        assert_eq!(
            greeting_554.reply(),
            reply::BACKEND_UNAVAILABLE,
            "a backend refusing us is not the client's fault"
        );
        let mail_550 = Error::BackendRefused {
            step: "MAIL",
            reply: reply::POLICY_REJECT,
        };
        assert_eq!(mail_550.reply(), reply::POLICY_REJECT);
        assert_eq!(
            Error::Io(io::Error::other("disk")).reply(),
            reply::LOCAL_ERROR
        );
    }

    #[test]
    fn a_backend_421_is_the_backend_legs_end_not_the_clients() {
        let closing = |step| Error::BackendClosing {
            step,
            reply: Reply::new(421, Some(reply::Enhanced(4, 3, 2)), "closing"),
        };
        for step in ["MAIL", "RCPT", "DATA", "end of data"] {
            let e = closing(step);
            assert_eq!(e.permanence(), Permanence::Transient);
            assert_eq!(e.reply(), reply::BACKEND_FAILED, "{step}");
            assert_eq!(e.data_reply(), reply::BACKEND_FAILED, "{step}");
            assert_eq!(e.backend_kind(), Some(BackendErrorKind::Tempfail));
        }
        for step in ["greeting", "EHLO", "XCLIENT"] {
            assert_eq!(closing(step).reply(), reply::BACKEND_UNAVAILABLE, "{step}");
        }
    }
}
