//! The crate's error type: every failure says where it came from and whether retrying can
//! help, and that decides the 4xx or 5xx the client gets.
//!
//! Owns: `Error`, `Source`, `Permanence` and the default reply of each error.
//! Must not: log or write to sockets. Client-facing text stays generic; details go to logs.

use std::io;

use crate::metrics::BackendErrorKind;
use crate::smtp::reply::{self, Reply};

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The SMTP client.
    Client,
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
    /// Local I/O failed (spool, maildir).
    #[error("local I/O error: {0}")]
    Io(#[from] io::Error),
    /// TLS could not be set up.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The configuration cannot be used (what validation could not see).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Who caused it.
    pub fn source_kind(&self) -> Source {
        match self {
            Error::BackendConnect { .. }
            | Error::BackendTimeout { .. }
            | Error::BackendProtocol { .. }
            | Error::BackendRefused { .. } => Source::Upstream,
            Error::Io(_) | Error::Tls(_) | Error::Config(_) => Source::Internal,
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
            Error::BackendRefused { .. } => Some(BackendErrorKind::Tempfail),
            _ => None,
        }
    }
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
}
