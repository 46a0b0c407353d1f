//! SMTP replies as values (RFC 5321 §4.2, enhanced codes RFC 3463 / RFC 2034).
//!
//! Owns: the `Reply` type, every reply the gateway sends as a named constant or a
//! constructor, and the wire encoding. Nothing else in the crate builds reply text with
//! `format!`: call sites pick a constant, or pass a backend's reply through unchanged.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply: a three-digit code, an optional enhanced code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The RFC 5321 reply code (2xx, 3xx, 4xx, 5xx).
    pub code: u16,
    /// The enhanced status code; absent only for replies that have none (220, 354).
    pub enhanced: Option<Enhanced>,
    /// Text lines; more than one makes a multi-line reply.
    pub text: Cow<'static, str>,
}

/// The class of a reply, used for metrics labels and decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyClass {
    /// 2xx: success.
    Positive,
    /// 3xx: intermediate (354).
    Intermediate,
    /// 4xx: transient failure; the client retries.
    Transient,
    /// 5xx: permanent failure.
    Permanent,
}

impl ReplyClass {
    /// The metric label for this class (`2xx`, `3xx`, `4xx`, `5xx`).
    pub fn label(self) -> &'static str {
        match self {
            ReplyClass::Positive => "2xx",
            ReplyClass::Intermediate => "3xx",
            ReplyClass::Transient => "4xx",
            ReplyClass::Permanent => "5xx",
        }
    }
}

/// Why an operator's reply is not one we can send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReply {
    /// Not a 4xx or 5xx code (or past x59).
    #[error("reply code {0} must be a 4xx or 5xx code")]
    Code(u16),
    /// The enhanced code is not `class.x.y` with the reply code's class.
    #[error("enhanced code {enhanced:?} must be {class}.x.y")]
    Enhanced {
        /// What was written.
        enhanced: String,
        /// The reply code's class (4 or 5).
        class: u16,
    },
    /// The text has a line break.
    #[error("reply text must be one line")]
    Multiline,
}

/// A reply an operator wrote (a policy rule's, a connection refusal's): a 4xx or 5xx code,
/// an enhanced code of the same class (`4.7.1`) and one line of text.
pub fn custom(code: u16, enhanced: &str, text: &str) -> Result<Reply, BadReply> {
    let class = code / 100;
    if !(4..=5).contains(&class) || code % 100 > 59 {
        return Err(BadReply::Code(code));
    }
    let bad_enhanced = || BadReply::Enhanced {
        enhanced: enhanced.to_string(),
        class,
    };
    let nums: Option<Vec<u16>> = enhanced.split('.').map(|p| p.parse().ok()).collect();
    let Some([c, s, d]) = nums.as_deref() else {
        return Err(bad_enhanced());
    };
    if *c != class {
        return Err(bad_enhanced());
    }
    if text.contains(['\r', '\n']) {
        return Err(BadReply::Multiline);
    }
    Ok(Reply::new(
        code,
        Some(Enhanced(class as u8, *s, *d)),
        text.to_string(),
    ))
}

const fn r(code: u16, e: (u8, u16, u16), text: &'static str) -> Reply {
    Reply {
        code,
        enhanced: Some(Enhanced(e.0, e.1, e.2)),
        text: Cow::Borrowed(text),
    }
}

impl Reply {
    /// A reply with an enhanced code and owned text (e.g. a backend's reply passed through).
    pub fn new(code: u16, enhanced: Option<Enhanced>, text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// The class of the reply code.
    pub fn class(&self) -> ReplyClass {
        match self.code / 100 {
            2 => ReplyClass::Positive,
            3 => ReplyClass::Intermediate,
            4 => ReplyClass::Transient,
            _ => ReplyClass::Permanent,
        }
    }

    /// True for 2xx.
    pub fn is_positive(&self) -> bool {
        self.class() == ReplyClass::Positive
    }

    /// Encodes the reply for the wire: every line carries the code and the enhanced code,
    /// continuation lines use `code-`, the last `code `; CR and LF inside text never reach
    /// the wire (a backend's text cannot inject extra reply lines).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self
            .text
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(sep as u8);
            if let Some(e) = self.enhanced {
                out.extend_from_slice(e.to_string().as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend(line.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The reply as one string without the line ending, for logs.
    pub fn to_log(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v)
            .trim_end()
            .replace("\r\n", " | ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_log())
    }
}

/// Declares each reply as a constant and `ALL` from the same list, so no reply can be left
/// out of the test that holds every one to its class.
macro_rules! replies {
    ($( $(#[$doc:meta])* $name:ident = $value:expr; )*) => {
        $( $(#[$doc])* pub const $name: Reply = $value; )*
        /// Every named reply constant, so one test can check them all.
        pub const ALL: &[&Reply] = &[$(&$name),*];
    };
}

replies! {
    // --- 2xx ---------------------------------------------------------------------------
    /// Generic success.
    OK = r(250, (2, 0, 0), "Ok");
    /// MAIL FROM accepted.
    SENDER_OK = r(250, (2, 1, 0), "Sender ok");
    /// RSET done.
    RESET_OK = r(250, (2, 0, 0), "Reset state");
    /// Answer to VRFY: we neither confirm nor deny (RFC 5321 §3.5.3).
    CANNOT_VRFY = r(
        252,
        (2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    );
    /// Answer to HELP when STARTTLS is not offered (no `tls:`, or TLS already active): HELP
    /// names only what EHLO advertises.
    HELP = r(
        214,
        (2, 0, 0),
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
    );
    /// Answer to HELP when EHLO advertises STARTTLS.
    HELP_WITH_STARTTLS = r(
        214,
        (2, 0, 0),
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
    );
    /// QUIT acknowledged.
    BYE = r(221, (2, 0, 0), "Bye");
    /// STARTTLS accepted: the handshake follows.
    READY_TLS = r(220, (2, 0, 0), "Ready to start TLS");

    // --- 3xx ---------------------------------------------------------------------------
    /// Answer to DATA.
    START_DATA = Reply {
        code: 354,
        enhanced: None,
        text: Cow::Borrowed("End data with <CR><LF>.<CR><LF>"),
    };

    // --- 4xx ---------------------------------------------------------------------------
    /// Too many sessions: we cannot serve this one now (RFC 5321 §3.8).
    TOO_BUSY = r(421, (4, 3, 2), "Too many connections, try again later");
    /// Too many concurrent sessions from this client or its network.
    TOO_MANY_FROM_YOU = r(
        421,
        (4, 7, 0),
        "Too many connections from your network, try again later",
    );
    /// Too many new connections from this client recently.
    CONNECTION_RATE = r(
        421,
        (4, 7, 0),
        "Connection rate limit exceeded, try again later",
    );
    /// The gateway is shutting down.
    SHUTTING_DOWN = r(421, (4, 3, 2), "Service shutting down, try again later");
    /// The client waited too long between commands.
    TIMEOUT = r(421, (4, 4, 2), "Timeout exceeded, closing connection");
    /// The client made too many errors.
    TOO_MANY_ERRORS = r(421, (4, 7, 0), "Too many errors, closing connection");
    /// After a BDAT whose chunk size could not be read: the chunk's end cannot be found, so
    /// the bytes that follow cannot be trusted to be commands.
    LOST_SYNC = r(
        421,
        (4, 5, 0),
        "Cannot find the end of the BDAT chunk, closing connection",
    );
    /// The client sent too many commands in one session.
    TOO_MANY_COMMANDS = r(421, (4, 7, 0), "Too many commands, closing connection");
    /// The backend refused too many of the client's recipients (a dictionary attack).
    TOO_MANY_UNKNOWN_RECIPIENTS = r(
        421,
        (4, 7, 0),
        "Too many unknown recipients, closing connection",
    );
    /// The session outlived `timeouts.session`.
    SESSION_TOO_LONG = r(421, (4, 4, 2), "Session too long, closing connection");
    /// The client sent no mail within `timeouts.idle`.
    IDLE_TOO_LONG = r(
        421,
        (4, 4, 2),
        "Idle too long without mail, closing connection",
    );
    /// Too many recipients in this transaction (RFC 5321 §4.5.3.1.10: 452, not 5xx).
    TOO_MANY_RECIPIENTS = r(452, (4, 5, 3), "Too many recipients");
    /// A recipient under another policy scope than the transaction's (send it separately).
    OTHER_SCOPE = r(
        452,
        (4, 5, 3),
        "Recipient under another policy: send it in a separate transaction",
    );
    /// The backend could not be reached or refused to start a transaction.
    BACKEND_UNAVAILABLE = r(451, (4, 4, 1), "Backend unavailable, try again later");
    /// The backend failed during the transaction: nothing was accepted.
    BACKEND_FAILED = r(451, (4, 4, 2), "Backend connection failed, try again later");
    /// A local error (spool I/O): nothing was accepted.
    LOCAL_ERROR = r(451, (4, 3, 0), "Local error in processing, try again later");
    /// No room in `auth.max_verify_memory` before the DATA deadline: the message was not
    /// verified, so it is not accepted either.
    VERIFY_BUSY = r(
        451,
        (4, 3, 0),
        "Too busy to check the message now, try again later",
    );

    // --- 5xx ---------------------------------------------------------------------------
    /// The client is on the deny list.
    CONNECTION_DENIED = r(554, (5, 7, 1), "Connection refused");
    /// A command line longer than the configured limit.
    LINE_TOO_LONG = r(500, (5, 5, 2), "Line too long");
    /// The command verb is unknown.
    UNKNOWN_COMMAND = r(500, (5, 5, 2), "Command unrecognized");
    /// Command parameters do not parse.
    SYNTAX_ERROR = r(501, (5, 5, 4), "Syntax error in parameters or arguments");
    /// The sender address does not parse.
    BAD_SENDER_SYNTAX = r(501, (5, 1, 7), "Bad sender address syntax");
    /// DATA, RSET, QUIT or STARTTLS with parameters (RFC 5321 §4.1.1, RFC 3207 §4).
    NO_PARAMETERS = r(
        501,
        (5, 5, 4),
        "Syntax error: this command takes no parameters",
    );
    /// A BDAT line that is not `BDAT chunk-size [LAST]` (RFC 3030 §2).
    BDAT_SYNTAX = r(501, (5, 5, 4), "Syntax: BDAT chunk-size [LAST]");
    /// A BDAT chunk size beyond 18446744073709551615 (u64): refused, never read as another number.
    CHUNK_SIZE_OUT_OF_RANGE = r(
        501,
        (5, 5, 4),
        "BDAT chunk size out of range: at most 18446744073709551615",
    );
    /// A MAIL `SIZE=` value that is not a number (RFC 1870).
    BAD_SIZE_SYNTAX = r(501, (5, 5, 4), "Bad SIZE value: digits expected");
    /// A MAIL `SIZE=` value beyond 18446744073709551615 (u64): refused, never read as another
    /// number.
    SIZE_OUT_OF_RANGE = r(
        501,
        (5, 5, 4),
        "SIZE value out of range: at most 18446744073709551615",
    );
    /// The recipient address does not parse.
    BAD_RECIPIENT_SYNTAX = r(501, (5, 1, 3), "Bad recipient address syntax");
    /// The command exists but is not offered here (AUTH, EXPN, ETRN, ...).
    NOT_IMPLEMENTED = r(502, (5, 5, 1), "Command not implemented");
    /// A parameter we do not support (e.g. unknown MAIL parameter).
    PARAM_NOT_IMPLEMENTED = r(
        555,
        (5, 5, 4),
        "Parameter not recognized or not implemented",
    );
    /// Commands out of order (RFC 5321 §4.1.4).
    BAD_SEQUENCE = r(503, (5, 5, 1), "Bad sequence of commands");
    /// MAIL before EHLO/HELO.
    NEED_HELO = r(503, (5, 5, 1), "Send EHLO or HELO first");
    /// RCPT before MAIL.
    NEED_MAIL = r(503, (5, 5, 1), "Need MAIL command first");
    /// A second MAIL inside a transaction.
    NESTED_MAIL = r(503, (5, 5, 1), "Nested MAIL command");
    /// DATA after RCPTs that were all refused (RFC 5321 §3.3: 554 no valid recipients).
    NO_VALID_RECIPIENTS = r(554, (5, 5, 1), "No valid recipients");
    /// STARTTLS when already under TLS.
    ALREADY_TLS = r(503, (5, 5, 1), "TLS already active");
    /// `tls.require`: MAIL from a required client network, or RCPT to a required recipient
    /// domain, without TLS (RFC 3207 §4's reply; the same as Postfix's
    /// `smtpd_tls_security_level = encrypt`).
    MUST_STARTTLS = r(530, (5, 7, 0), "Must issue a STARTTLS command first");
    /// The recipient's domain is not one we accept mail for: we are not an open relay.
    RELAY_DENIED = r(550, (5, 7, 1), "Relay access denied");
    /// Declared (SIZE=) or actual message size above the limit (RFC 1870).
    MESSAGE_TOO_BIG = r(
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
    );
    /// DMARC failed and the sender's domain publishes p=reject (RFC 7489 §6.3; RFC 7372 5.7.26).
    DMARC_REJECT = r(
        550,
        (5, 7, 26),
        "Unauthenticated mail refused: the sender domain's DMARC policy is reject",
    );
    /// More than one From field, or more author domains than DMARC evaluates: whose message it
    /// is cannot be said (RFC 5322 §3.6 allows one From field).
    AMBIGUOUS_FROM = r(
        550,
        (5, 7, 1),
        "Message refused: its From field is ambiguous (several From fields or too many authors)",
    );
    /// A DNS failure kept us from deciding on a domain that asks for rejection.
    AUTH_TEMPFAIL = r(
        451,
        (4, 7, 26),
        "Temporary authentication failure, try again later",
    );
    /// A message with bare CR or LF, refused to prevent SMTP smuggling.
    BARE_LINE_ENDING = r(
        550,
        (5, 6, 0),
        "Message contains bare CR or LF; use CRLF line endings",
    );
    /// A message with NUL bytes (`smtp.nul_bytes: reject`): mail must not carry them.
    NUL_BYTES = r(
        550,
        (5, 6, 0),
        "Message contains NUL bytes, which mail must not carry",
    );
    /// A message with a line over 998 characters (`smtp.long_lines: reject`).
    LONG_LINES = r(
        550,
        (5, 6, 0),
        "Message has a line longer than 998 characters (RFC 5322 2.1.1)",
    );
    /// A non-ASCII address in a transaction without SMTPUTF8 (RFC 6531 §3.5).
    NEEDS_SMTPUTF8 = r(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8");
    /// SMTPUTF8 or 8BITMIME parameter misuse.
    BAD_BODY_PARAM = r(555, (5, 5, 4), "Unsupported BODY parameter");
    /// The policy asks the client to retry later (a YAML rule's default tempfail reply).
    POLICY_TEMPFAIL = r(
        451,
        (4, 7, 1),
        "Message deferred by policy, try again later",
    );
    // --- stateful controls -----------------------------------------------------------
    /// A rate-limit rule's default reply.
    RATE_LIMITED = r(451, (4, 7, 1), "Rate limit exceeded, try again later");
    /// Greylisting: an unknown (network, sender, recipient) triplet's first attempt.
    GREYLISTED = r(451, (4, 7, 1), "Greylisted, please try again later");
    /// The shared state backend is down and `on_failure: closed` defers what needs it.
    STATE_UNAVAILABLE = r(
        451,
        (4, 3, 0),
        "Temporary local problem, please try again later",
    );
    /// At connect: the shared state backend is down and `on_failure: closed` turns clients away.
    CONNECTION_STATE_UNAVAILABLE = r(
        421,
        (4, 3, 0),
        "Temporary local problem, please try again later",
    );
    /// The policy rejects the message.
    POLICY_REJECT = r(550, (5, 7, 1), "Message rejected by policy");
}

/// The greeting banner `220 <host> ESMTP Portcullis`.
pub fn greeting(hostname: &str) -> Reply {
    Reply::new(220, None, format!("{hostname} ESMTP Portcullis"))
}

/// The message accepted by the maildir backend, naming the queue id.
pub fn queued(id: &str) -> Reply {
    Reply::new(250, Some(Enhanced(2, 0, 0)), format!("Ok: queued as {id}"))
}

/// A BDAT chunk of `n` octets received.
pub fn chunk_received(n: u64) -> Reply {
    Reply::new(250, Some(Enhanced(2, 0, 0)), format!("{n} octets received"))
}

/// The EHLO reply: hostname greeting line plus one line per capability.
pub fn ehlo(hostname: &str, client: &str, capabilities: &[String]) -> Reply {
    let mut text = format!("{hostname} greets {client}");
    for cap in capabilities {
        text.push('\n');
        text.push_str(cap);
    }
    Reply::new(250, None, text)
}

/// The HELO reply.
pub fn helo(hostname: &str) -> Reply {
    Reply::new(250, None, hostname.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_replies_are_checked() {
        let r = custom(521, "5.7.1", "No mail from you").expect("valid");
        assert_eq!(r.to_string(), "521 5.7.1 No mail from you");
        for (code, enhanced, text) in [
            (250, "2.0.0", "ok"),
            (421, "5.7.0", "class mismatch"),
            (421, "4.7", "short"),
            (421, "4.x.0", "not a number"),
            (470, "4.7.0", "no such code"),
            (421, "4.7.0", "two\r\nlines"),
        ] {
            assert!(
                custom(code, enhanced, text).is_err(),
                "{code} {enhanced} {text:?}"
            );
        }
    }

    #[test]
    fn every_constant_has_matching_enhanced_class() {
        for reply in ALL {
            let class = (reply.code / 100) as u8;
            assert!((2..=5).contains(&class), "{reply}");
            match reply.enhanced {
                Some(e) => assert_eq!(e.0, class, "class mismatch in {reply}"),
                None => assert!(reply.code == 354 || reply.code == 220, "{reply}"),
            }
        }
    }

    #[test]
    fn multiline_encoding_and_crlf_stripping() {
        let mut out = Vec::new();
        Reply::new(250, None, "host\nSIZE 10\nPIPELINING").write_to(&mut out);
        assert_eq!(out, b"250-host\r\n250-SIZE 10\r\n250 PIPELINING\r\n");
        out.clear();
        Reply::new(550, Some(Enhanced(5, 1, 1)), "a\r\nb\rX").write_to(&mut out);
        assert_eq!(out, b"550-5.1.1 a\r\n550 5.1.1 bX\r\n");
    }
}
