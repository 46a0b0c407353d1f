//! The backend: where accepted mail goes, in real time.
//!
//! Owns: opening a backend transaction when the first recipient
//! arrives, relaying RCPT and the message, reusing a connection between transactions of
//! the same session (RSET), and the readiness probe. Must not: make policy decisions.
//!
//! Connections are not shared between client sessions: XCLIENT binds a backend connection
//! to one client's identity, and handing it to another client would mislabel their mail.

pub mod client_name;
pub mod content;
pub mod maildir;
pub mod queue_id;
pub mod smtp_client;

use std::path::PathBuf;
use std::time::Instant;

use crate::config::{BackendTarget, Config};
use crate::error::Error;
use crate::smtp::command::MailParams;
use crate::smtp::reply::{self, Reply};
use crate::spool::Spool;
pub use client_name::ClientName;
pub use content::Content;
pub use smtp_client::ClientIdentity;
use smtp_client::{SmtpConnection, SmtpSettings};

/// The configured backend.
pub struct Backend {
    target: BackendTarget,
    smtp: SmtpSettings,
}

/// An open backend transaction (after MAIL, accumulating recipients).
pub struct Transaction {
    kind: Kind,
    rcpts: Vec<String>,
    /// The backend answered the end of data: its transaction is over, no RSET needed.
    ended: bool,
}

enum Kind {
    Smtp(Box<SmtpConnection>),
    Maildir(PathBuf),
}

/// A backend connection kept by a session between its transactions.
pub struct Idle(Box<SmtpConnection>);

impl Backend {
    /// Builds the backend from the config.
    pub fn new(config: &Config) -> Self {
        let target = config.backend.url.clone();
        let addr = match &target {
            BackendTarget::Smtp(addr) => addr.clone(),
            BackendTarget::Maildir(_) => String::new(),
        };
        Backend {
            target,
            smtp: SmtpSettings {
                addr,
                helo_name: config
                    .backend
                    .helo_name
                    .clone()
                    .unwrap_or_else(|| config.hostname.clone()),
                xclient: config.backend.xclient,
                starttls: config.backend.starttls,
                timeouts: config.timeouts.clone(),
            },
        }
    }

    /// Opens a transaction for `mail`, reusing `idle` when the session has one. On a fresh
    /// connection to a backend that offers PIPELINING, MAIL is sent with the first RCPT
    /// (one write, one round trip fewer); its refusal is then `rcpt`'s error.
    pub async fn begin(
        &self,
        idle: Option<Idle>,
        client: &ClientIdentity,
        mail: &MailParams,
    ) -> Result<Transaction, Error> {
        let kind = match &self.target {
            BackendTarget::Maildir(root) => Kind::Maildir(root.clone()),
            BackendTarget::Smtp(_) => {
                if let Some(Idle(mut conn)) = idle {
                    // A kept connection may have been closed by the backend's own idle
                    // timeout (Postfix answers 421 and hangs up): any failure here is retried
                    // once on a fresh connection, which also gives a real refusal its answer.
                    if conn.mail(mail).await.is_ok() {
                        return Ok(Transaction::new(Kind::Smtp(conn)));
                    }
                }
                let mut conn = Box::new(SmtpConnection::open(&self.smtp, client).await?);
                conn.mail_with_rcpt(mail).await?;
                Kind::Smtp(conn)
            }
        };
        Ok(Transaction::new(kind))
    }

    /// Checks that the backend can take mail: an SMTP greeting and EHLO, or a writable root.
    pub async fn probe(&self) -> Result<(), Error> {
        match &self.target {
            BackendTarget::Maildir(root) => {
                tokio::fs::create_dir_all(root).await?;
                let probe = tempfile::NamedTempFile::new_in(root)?;
                drop(probe);
                Ok(())
            }
            BackendTarget::Smtp(_) => {
                let mut settings = self.smtp.clone();
                settings.xclient = false;
                let me = ClientIdentity {
                    addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    helo: None,
                    esmtp: true,
                    name: ClientName::Unavailable,
                };
                SmtpConnection::open(&settings, &me).await?.quit().await;
                Ok(())
            }
        }
    }
}

impl Transaction {
    fn new(kind: Kind) -> Self {
        Transaction {
            kind,
            rcpts: Vec::new(),
            ended: false,
        }
    }

    /// Relays one recipient; the backend's reply is the client's reply.
    pub async fn rcpt(&mut self, address: &str) -> Result<Reply, Error> {
        let reply = match &mut self.kind {
            Kind::Smtp(conn) => conn.rcpt(address).await?,
            Kind::Maildir(_) => reply::OK,
        };
        if reply.is_positive() {
            self.rcpts.push(address.to_string());
        }
        Ok(reply)
    }

    /// Relays the message; returns the backend's final reply and how long it took.
    pub async fn data(
        &mut self,
        content: &Content,
        spool: &mut Spool,
    ) -> Result<(Reply, std::time::Duration), Error> {
        let started = Instant::now();
        let reply = match &mut self.kind {
            Kind::Smtp(conn) => {
                let (reply, ended) = conn.data(content, spool).await?;
                self.ended = ended;
                reply
            }
            Kind::Maildir(root) => maildir::deliver(root, &self.rcpts, content, spool).await?,
        };
        Ok((reply, started.elapsed()))
    }

    /// Ends the transaction (RSET unless the backend already ended it with its reply to
    /// the message); returns the connection if it can serve the next one.
    pub async fn finish(self) -> Option<Idle> {
        match self.kind {
            Kind::Smtp(conn) if self.ended => Some(Idle(conn)),
            Kind::Smtp(mut conn) => conn.rset().await.then_some(Idle(conn)),
            Kind::Maildir(_) => None,
        }
    }
}

impl Idle {
    /// Closes the kept connection with QUIT.
    pub async fn close(self) {
        self.0.quit().await;
    }
}
