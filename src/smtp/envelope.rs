//! The transaction as the pipeline sees it.
//!
//! Owns: `SessionInfo` (who is connected) and `Envelope` (one transaction's envelope:
//! sender, recipients, declared size and the MAIL parameters). Must not: do lookups or I/O,
//! or hold what checks found (the transaction engine's ledger does).

use std::net::SocketAddr;

use super::command::Body;

/// What is known about the connection, fixed after the greeting (HELO changes with EHLO).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Short unique id used in logs and the Received header.
    pub id: String,
    /// The client's address (the PROXY protocol source when behind a trusted proxy).
    pub client: SocketAddr,
    /// Our address as the client connected to it.
    pub local: SocketAddr,
    /// The name given in EHLO/HELO, once given.
    pub helo: Option<String>,
    /// True after EHLO (ESMTP), false after HELO.
    pub esmtp: bool,
    /// True once STARTTLS completed.
    pub tls: bool,
    /// The client sent data before the banner (`connections.pregreet_wait`).
    pub pregreet: bool,
    /// The client sent commands ahead of replies where RFC 2920 does not allow it (after
    /// EHLO/HELO, or at all without PIPELINING advertised).
    pub unannounced_pipelining: bool,
}

impl SessionInfo {
    /// A connection from `client` to `local` that has said nothing yet: no greeting, no
    /// TLS, no early talking.
    pub fn new(id: impl Into<String>, client: SocketAddr, local: SocketAddr) -> Self {
        SessionInfo {
            id: id.into(),
            client,
            local,
            helo: None,
            esmtp: false,
            tls: false,
            pregreet: false,
            unannounced_pipelining: false,
        }
    }
}

/// One mail transaction, from MAIL to the end of DATA or RSET.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Reverse path; empty for the null sender.
    pub mail_from: String,
    /// SIZE= declared on MAIL.
    pub declared_size: Option<u64>,
    /// BODY= on MAIL.
    pub body: Body,
    /// SMTPUTF8 on MAIL.
    pub smtputf8: bool,
    /// Recipients the backend accepted, in order.
    pub rcpts: Vec<String>,
    /// RCPT commands seen in this transaction, accepted or not (for the recipient limit).
    pub rcpt_attempts: usize,
    /// The SASL login of an authenticated client, when the MTA said so (the milter's
    /// `{auth_authen}` macro); the SMTP listener offers no AUTH, so never there.
    pub authenticated: Option<String>,
}
