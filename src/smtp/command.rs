//! The commands a client can send, as values.
//!
//! Owns: the `Command` enum and its parameters, converted from smtp-proto's parser output.
//! Must not: hold session state or decide replies beyond naming the parse error.

use smtp_proto::{
    Error as ProtoError, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, Request,
};

use super::reply::{self, Reply};

/// The BODY= parameter of MAIL (RFC 6152 / RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// No BODY parameter or BODY=7BIT.
    #[default]
    SevenBit,
    /// BODY=8BITMIME.
    EightBitMime,
}

/// The parameters of MAIL FROM that the gateway understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailParams {
    /// The reverse path without angle brackets; empty for the null sender `<>`.
    pub address: String,
    /// The SIZE= declaration (RFC 1870), if any.
    pub size: Option<u64>,
    /// The BODY= parameter.
    pub body: Body,
    /// SMTPUTF8 was given (RFC 6531).
    pub smtputf8: bool,
}

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// EHLO with the client's name.
    Ehlo(String),
    /// HELO with the client's name.
    Helo(String),
    /// MAIL FROM.
    Mail(MailParams),
    /// RCPT TO with the forward path.
    Rcpt(String),
    /// DATA.
    Data,
    /// BDAT with the chunk size and the LAST flag (RFC 3030).
    Bdat {
        /// Octets that follow the command line.
        size: usize,
        /// LAST was given.
        last: bool,
    },
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// VRFY (answered 252 without looking anything up).
    Vrfy,
    /// HELP.
    Help,
    /// STARTTLS (RFC 3207).
    StartTls,
    /// A known verb the gateway does not offer (AUTH, EXPN, ETRN, LHLO, ...).
    NotOffered(&'static str),
}

impl Command {
    /// The verb, for metrics labels (a bounded set).
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy => "VRFY",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::NotOffered(v) => v,
        }
    }

    /// Parses one complete command line (including its line ending) with smtp-proto.
    /// On error, returns the reply the client gets.
    pub fn parse(line: &[u8]) -> Result<Command, Reply> {
        let request = Request::parse(&mut line.iter()).map_err(|e| parse_error_reply(&e))?;
        Ok(match request {
            Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
            Request::Helo { host } => Command::Helo(host.into_owned()),
            Request::Mail { from } => {
                if from.flags & MAIL_BODY_BINARYMIME != 0 {
                    return Err(reply::BAD_BODY_PARAM);
                }
                Command::Mail(MailParams {
                    address: from.address.into_owned(),
                    size: (from.size > 0).then_some(from.size as u64),
                    body: if from.flags & MAIL_BODY_8BITMIME != 0 {
                        Body::EightBitMime
                    } else {
                        Body::SevenBit
                    },
                    smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
                })
            }
            Request::Rcpt { to } if to.address.is_empty() => {
                // smtp-proto maps both `<postmaster>` and `<>` to "": only the first is valid.
                if contains_ignore_case(line, b"<postmaster>") {
                    Command::Rcpt("postmaster".into())
                } else {
                    return Err(reply::BAD_RECIPIENT_SYNTAX);
                }
            }
            Request::Rcpt { to } => Command::Rcpt(to.address.into_owned()),
            Request::Data => Command::Data,
            Request::Bdat {
                chunk_size,
                is_last,
            } => Command::Bdat {
                size: chunk_size,
                last: is_last,
            },
            Request::Rset => Command::Rset,
            Request::Noop { .. } => Command::Noop,
            Request::Quit => Command::Quit,
            Request::Vrfy { .. } => Command::Vrfy,
            Request::Help { .. } => Command::Help,
            Request::StartTls => Command::StartTls,
            other => Command::NotOffered(other.name()),
        })
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn parse_error_reply(e: &ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => reply::UNKNOWN_COMMAND,
        ProtoError::InvalidSenderAddress => reply::BAD_SENDER_SYNTAX,
        ProtoError::InvalidRecipientAddress => reply::BAD_RECIPIENT_SYNTAX,
        ProtoError::UnsupportedParameter { .. } => reply::PARAM_NOT_IMPLEMENTED,
        ProtoError::ResponseTooLong => reply::LINE_TOO_LONG,
        _ => reply::SYNTAX_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mail_parameters() {
        let c = Command::parse(b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n");
        assert_eq!(
            c,
            Ok(Command::Mail(MailParams {
                address: "a@b.example".into(),
                size: Some(1000),
                body: Body::EightBitMime,
                smtputf8: true
            }))
        );
        assert!(
            matches!(Command::parse(b"MAIL FROM:<>\r\n"), Ok(Command::Mail(m)) if m.address.is_empty())
        );
    }

    #[test]
    fn errors_map_to_replies() {
        assert_eq!(Command::parse(b"FOO bar\r\n"), Err(reply::UNKNOWN_COMMAND));
        assert_eq!(
            Command::parse(b"MAIL FROM:<a@@b>\r\n").map_err(|r| r.code),
            Err(501)
        );
        assert_eq!(
            Command::parse(b"AUTH PLAIN\r\n").map(|c| c.verb()),
            Ok("AUTH")
        );
        assert_eq!(
            Command::parse(b"BDAT 10 LAST\r\n"),
            Ok(Command::Bdat {
                size: 10,
                last: true
            })
        );
        assert_eq!(
            Command::parse(b"RCPT TO:<Postmaster>\r\n"),
            Ok(Command::Rcpt("postmaster".into()))
        );
        assert_eq!(
            Command::parse(b"RCPT TO:<>\r\n"),
            Err(reply::BAD_RECIPIENT_SYNTAX)
        );
    }
}
