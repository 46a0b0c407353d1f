//! The SMTP client towards the backend (Postfix): one connection, one command at a time,
//! every step under its own deadline.
//!
//! Owns: connect, greeting, EHLO, STARTTLS, XCLIENT, MAIL/RCPT/DATA/RSET/QUIT, reading
//! replies with smtp-proto, and dot-stuffing the body on the way out.
//! Must not: retry (there is no queue: a failure is the client's 4xx), pass a backend's 421
//! on as a reply (it ends the backend connection, not the client's session), or decide
//! policy.

use std::net::SocketAddr;
use std::time::Duration;

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::schema::{StartTlsMode, Timeouts};
use crate::error::Error;
use crate::relay::{ClientName, Content};
use crate::smtp::codec::dot_stuff;
use crate::smtp::command::{Body, MailParams};
use crate::smtp::reply::{Enhanced, Reply};
use crate::spool::Spool;
use crate::tls::MaybeTls;

/// Message content is written to the backend in writes of about this many bytes: big
/// enough that a typical message and its final dot take one write (one segment on the
/// wire, one wake-up at the backend), small enough to stream a large one.
const WRITE_BATCH: usize = 64 * 1024;

/// Who the real client is, for XCLIENT.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its EHLO/HELO name.
    pub helo: Option<String>,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
    /// Its host name, as XCLIENT `NAME=` tells it.
    pub name: ClientName,
}

/// Settings of the SMTP backend.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// host:port.
    pub addr: String,
    /// Name for our EHLO.
    pub helo_name: String,
    /// Send XCLIENT.
    pub xclient: bool,
    /// STARTTLS towards the backend.
    pub starttls: StartTlsMode,
    /// Deadlines.
    pub timeouts: Timeouts,
}

/// Extensions the backend advertised.
#[derive(Debug, Default, Clone)]
struct Caps {
    xclient: bool,
    pipelining: bool,
    starttls: bool,
    size: bool,
    eightbit: bool,
    smtputf8: bool,
}

impl Caps {
    fn from_ehlo(text: &str) -> Caps {
        let mut caps = Caps::default();
        for line in text.lines().skip(1) {
            let word = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match word.as_str() {
                "XCLIENT" => caps.xclient = true,
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = true,
                "8BITMIME" => caps.eightbit = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                _ => {}
            }
        }
        caps
    }
}

/// An open connection to the backend, ready for MAIL.
pub struct SmtpConnection {
    stream: MaybeTls<TcpStream>,
    buf: Vec<u8>,
    caps: Caps,
    timeouts: Timeouts,
    /// A MAIL command not sent yet: it goes out with the first RCPT (`mail_with_rcpt`).
    pending_mail: Option<String>,
}

impl SmtpConnection {
    /// Connects, greets, optionally upgrades to TLS and sends XCLIENT for `client`.
    pub async fn open(s: &SmtpSettings, client: &ClientIdentity) -> Result<Self, Error> {
        let tcp = timeout(s.timeouts.backend_connect, TcpStream::connect(&s.addr))
            .await
            .map_err(|_| Error::BackendTimeout { step: "connect" })?
            .map_err(|source| Error::BackendConnect {
                addr: s.addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut c = SmtpConnection {
            stream: MaybeTls::Plain(tcp),
            buf: Vec::with_capacity(4096),
            caps: Caps::default(),
            timeouts: s.timeouts.clone(),
            pending_mail: None,
        };
        c.expect("greeting", None, 2).await?;
        c.ehlo(&s.helo_name).await?;
        c.starttls(s).await?;
        if s.xclient {
            if c.caps.xclient {
                c.xclient(client).await?;
            } else {
                tracing::warn!(backend = %s.addr, "backend does not offer XCLIENT to us; it will see the gateway's address");
            }
        }
        Ok(c)
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), Error> {
        let reply = self
            .expect("EHLO", Some(format!("EHLO {name}\r\n")), 2)
            .await?;
        self.caps = Caps::from_ehlo(&reply.text);
        Ok(())
    }

    async fn starttls(&mut self, s: &SmtpSettings) -> Result<(), Error> {
        let wanted = match s.starttls {
            StartTlsMode::Off => false,
            StartTlsMode::Opportunistic => self.caps.starttls,
            StartTlsMode::Required => true,
        };
        if !wanted {
            return Ok(());
        }
        self.expect("STARTTLS", Some("STARTTLS\r\n".into()), 2)
            .await?;
        // Bytes after the 220 would be a command-injection attempt: drop them.
        self.buf.clear();
        let host = s
            .addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&s.addr)
            .trim_matches(['[', ']'])
            .to_string();
        let name =
            rustls::pki_types::ServerName::try_from(host).map_err(|e| Error::Tls(e.to_string()))?;
        let MaybeTls::Plain(tcp) = std::mem::replace(&mut self.stream, MaybeTls::Upgrading) else {
            return Err(Error::Tls("STARTTLS on a TLS stream".into()));
        };
        let connector = tokio_rustls::TlsConnector::from(crate::tls::backend_client_config()?);
        let tls = timeout(self.timeouts.tls_handshake, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::BackendTimeout { step: "STARTTLS" })?
            // The backend's handshake failing is the backend leg's fault: 4.4.1 and a metric.
            .map_err(|e| Error::BackendProtocol {
                step: "STARTTLS",
                detail: e.to_string(),
            })?;
        self.stream = MaybeTls::Tls(Box::new(tls.into()));
        self.ehlo(&s.helo_name).await
    }

    async fn xclient(&mut self, client: &ClientIdentity) -> Result<(), Error> {
        let addr = match client.addr.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("IPV6:{ip}"),
        };
        let helo = client
            .helo
            .as_deref()
            .map(xtext)
            .unwrap_or_else(|| "[UNAVAILABLE]".into());
        let proto = if client.esmtp { "ESMTP" } else { "SMTP" };
        // NAME is always sent: without it Postfix keeps the gateway's own name.
        let line = format!(
            "XCLIENT ADDR={addr} NAME={} PORT={} HELO={helo} PROTO={proto}\r\n",
            client.name.xclient_value(),
            client.addr.port()
        );
        // Postfix answers XCLIENT with a new greeting. No EHLO follows: it would replace
        // HELO= and PROTO= (a HELO client would be logged as ESMTP), and Postfix accepts
        // MAIL with the extensions of the first EHLO straight after the 220.
        self.expect("XCLIENT", Some(line), 2).await.map(|_| ())
    }

    /// Starts a transaction with MAIL FROM, passing only parameters the backend offers.
    pub async fn mail(&mut self, mail: &MailParams) -> Result<(), Error> {
        let line = self.mail_line(mail);
        self.expect("MAIL", Some(line), 2).await.map(|_| ())
    }

    /// Starts a transaction whose MAIL goes out with its first RCPT, in one write, when the
    /// backend offers PIPELINING (RFC 2920: MAIL and RCPT may be sent in a group); without
    /// it, as `mail`. Only on a connection just opened: a kept one may have been closed by
    /// the backend meanwhile, which its own MAIL must find out (see `Backend::begin`).
    pub async fn mail_with_rcpt(&mut self, mail: &MailParams) -> Result<(), Error> {
        if !self.caps.pipelining {
            return self.mail(mail).await;
        }
        self.pending_mail = Some(self.mail_line(mail));
        Ok(())
    }

    /// The MAIL FROM line, with only the parameters the backend offers.
    fn mail_line(&self, mail: &MailParams) -> String {
        let mut line = format!("MAIL FROM:<{}>", mail.address);
        if let (true, Some(size)) = (self.caps.size, mail.size) {
            line.push_str(&format!(" SIZE={size}"));
        }
        if self.caps.eightbit && mail.body == Body::EightBitMime {
            line.push_str(" BODY=8BITMIME");
        }
        if self.caps.smtputf8 && mail.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        line.push_str("\r\n");
        line
    }

    /// Sends RCPT TO and returns the backend's reply, whatever its code. A MAIL still
    /// pending goes first in the same write; if the backend refuses it, that refusal is the
    /// error (as from `mail`), once the RCPT's reply (a 503, sent after it) is read too.
    pub async fn rcpt(&mut self, address: &str) -> Result<Reply, Error> {
        let rcpt = format!("RCPT TO:<{address}>\r\n");
        let Some(mail) = self.pending_mail.take() else {
            return self
                .command("RCPT", Some(rcpt), self.timeouts.backend_command)
                .await;
        };
        let reply = self
            .command("MAIL", Some(mail + &rcpt), self.timeouts.backend_command)
            .await?;
        if reply.code / 100 != 2 {
            let _ = self
                .command("RCPT", None, self.timeouts.backend_command)
                .await;
            return Err(Error::BackendRefused {
                step: "MAIL",
                reply,
            });
        }
        self.command("RCPT", None, self.timeouts.backend_command)
            .await
    }

    /// Sends DATA, the trace headers and the body (dot-stuffed). Returns the backend's final
    /// reply and `true`, or its reply to DATA and `false` if that was not 354 (then the
    /// backend transaction is still open and needs RSET).
    pub async fn data(
        &mut self,
        content: &Content,
        spool: &mut Spool,
    ) -> Result<(Reply, bool), Error> {
        let reply = self
            .command(
                "DATA",
                Some("DATA\r\n".into()),
                self.timeouts.backend_command,
            )
            .await?;
        if reply.code != 354 {
            return Ok((reply, false));
        }
        let deadline = self.timeouts.backend_data;
        let send = async {
            let mut at_line_start = true;
            // A batch at most; a small message's own size otherwise.
            let size = content.prepend.len() + spool.len().min(WRITE_BATCH as u64) as usize;
            let mut out = Vec::with_capacity(size + size / 32 + 8 * 1024);
            let mut reader = content.reader(spool).await?;
            // Chunks are gathered into writes of about WRITE_BATCH: a small message (our
            // header fields, its own, the body and the final dot) goes out in one write.
            while let Some(chunk) = reader.next_chunk().await? {
                dot_stuff(chunk, &mut at_line_start, &mut out);
                if out.len() >= WRITE_BATCH {
                    self.stream.write_all(&out).await?;
                    out.clear();
                }
            }
            // The spool always ends in CRLF (the decoder guarantees it for DATA; BDAT and
            // empty bodies get one here) before the terminating dot.
            if !at_line_start {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        timeout(deadline, send)
            .await
            .map_err(|_| Error::BackendTimeout {
                step: "DATA content",
            })?
            .map_err(|e| Error::BackendProtocol {
                step: "DATA content",
                detail: e.to_string(),
            })?;
        let reply = self.command("end of data", None, deadline).await?;
        Ok((reply, true))
    }

    /// RSET between transactions; true if the connection can be reused.
    pub async fn rset(&mut self) -> bool {
        matches!(self.command("RSET", Some("RSET\r\n".into()), self.timeouts.backend_command).await, Ok(r) if r.is_positive())
    }

    /// QUIT politely (errors ignored: we are done with the connection either way).
    pub async fn quit(mut self) {
        let _ = self
            .command(
                "QUIT",
                Some("QUIT\r\n".into()),
                self.timeouts.backend_command,
            )
            .await;
        let _ = self.stream.shutdown().await;
    }

    /// Sends `line` (if any) and requires a reply of class `class`.
    async fn expect(
        &mut self,
        step: &'static str,
        line: Option<String>,
        class: u16,
    ) -> Result<Reply, Error> {
        let reply = self
            .command(step, line, self.timeouts.backend_command)
            .await?;
        if reply.code / 100 != class {
            return Err(Error::BackendRefused { step, reply });
        }
        Ok(reply)
    }

    /// Sends `line` (if any) and reads one reply within `deadline`. A 421 is never a reply
    /// to pass on: the backend is closing this connection (RFC 5321 §3.8), whatever the
    /// step, so it is an error of the backend leg and the connection is not used again.
    async fn command(
        &mut self,
        step: &'static str,
        line: Option<String>,
        deadline: Duration,
    ) -> Result<Reply, Error> {
        let io = async {
            if let Some(line) = &line {
                self.stream.write_all(line.as_bytes()).await?;
                self.stream.flush().await?;
            }
            self.read_reply().await
        };
        let reply = timeout(deadline, io)
            .await
            .map_err(|_| Error::BackendTimeout { step })?
            .map_err(|e| Error::BackendProtocol {
                step,
                detail: e.to_string(),
            })?;
        if reply.code == 421 {
            return Err(Error::BackendClosing { step, reply });
        }
        Ok(reply)
    }

    async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut rx = ResponseReceiver::default();
        loop {
            if !self.buf.is_empty() {
                let mut it = self.buf.iter();
                match rx.parse(&mut it) {
                    Ok(resp) => {
                        let used = self.buf.len() - it.as_slice().len();
                        self.buf.drain(..used);
                        let [c, s, d] = resp.esc;
                        // We advertise ENHANCEDSTATUSCODES, so a backend reply without one
                        // gets the generic code of its class (RFC 3463 x.0.0).
                        let enhanced = match (c, resp.code / 100) {
                            (0, class @ (2 | 4 | 5)) => Some(Enhanced(class as u8, 0, 0)),
                            (0, _) => None,
                            _ => Some(Enhanced(c, u16::from(s), u16::from(d))),
                        };
                        return Ok(Reply::new(resp.code, enhanced, resp.message));
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => self.buf.clear(),
                    Err(e) => return Err(std::io::Error::other(format!("bad reply: {e:?}"))),
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "backend closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// xtext encoding (RFC 3461 §4) for XCLIENT values.
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encodes_specials() {
        assert_eq!(xtext("mx.example"), "mx.example");
        assert_eq!(xtext("a b+c=d"), "a+20b+2Bc+3Dd");
    }

    #[test]
    fn caps_from_ehlo_text() {
        let c = Caps::from_ehlo(
            "backend.test\nPIPELINING\nSIZE 10240000\nXCLIENT NAME ADDR\n8BITMIME\nSTARTTLS",
        );
        assert!(c.xclient && c.size && c.eightbit && c.starttls && !c.smtputf8);
        assert!(c.pipelining);
    }

    /// A backend that offers PIPELINING and answers nothing until it has read both MAIL
    /// and RCPT: without the grouping the client would wait for MAIL's reply forever.
    #[tokio::test]
    async fn mail_goes_out_with_the_first_rcpt() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            let mut io = BufReader::new(sock);
            let mut line = String::new();
            io.get_mut()
                .write_all(b"220 backend.test\r\n")
                .await
                .expect("greet");
            io.read_line(&mut line).await.expect("ehlo");
            io.get_mut()
                .write_all(b"250-backend.test\r\n250 PIPELINING\r\n")
                .await
                .expect("ehlo reply");
            let mut group = Vec::new();
            for _ in 0..2 {
                line.clear();
                io.read_line(&mut line).await.expect("command");
                group.push(line.trim_end().to_string());
            }
            io.get_mut()
                .write_all(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")
                .await
                .expect("replies");
            group
        });
        let settings = SmtpSettings {
            addr: addr.to_string(),
            helo_name: "gw.test".into(),
            xclient: false,
            starttls: StartTlsMode::Off,
            timeouts: Timeouts {
                backend_command: Duration::from_secs(2),
                ..Timeouts::default()
            },
        };
        let me = ClientIdentity {
            addr: SocketAddr::from(([192, 0, 2, 1], 1)),
            helo: None,
            esmtp: true,
            name: ClientName::Unavailable,
        };
        let mut conn = SmtpConnection::open(&settings, &me).await.expect("open");
        let mail = MailParams {
            address: "a@example.org".into(),
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
        };
        conn.mail_with_rcpt(&mail).await.expect("mail");
        let reply = conn.rcpt("b@example.net").await.expect("rcpt");
        assert_eq!(reply.code, 250);
        assert_eq!(
            server.await.expect("server"),
            ["MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>"]
        );
    }
}
