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
                // smtp-proto garbles a SIZE beyond 19 digits (after saturating, the next
                // digit starts the number again): unless the line says this number, the
                // declaration is too big for anything.
                let size = (from.size > 0).then(|| {
                    let size = from.size as u64;
                    if numbers_after(line, b"SIZE=").any(|n| n == Some(size)) {
                        size
                    } else {
                        u64::MAX
                    }
                });
                Command::Mail(MailParams {
                    address: from.address.into_owned(),
                    size,
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
            } => {
                // The same garbling would make us read another chunk than the client sends:
                // the chunk size must be the number written, exactly.
                if numbers_after(line, b"BDAT").next() != Some(Some(chunk_size as u64)) {
                    return Err(reply::SYNTAX_ERROR);
                }
                Command::Bdat {
                    size: chunk_size,
                    last: is_last,
                }
            }
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

/// The number written after each `key` (ASCII case-insensitive) in `line`, read the way
/// smtp-proto reads it (spaces before the digits and CRs among them skipped), but exactly:
/// `None` for a number beyond `u64`. Keys not followed by a digit give nothing.
fn numbers_after<'a>(line: &'a [u8], key: &'a [u8]) -> impl Iterator<Item = Option<u64>> + 'a {
    (0..line.len().saturating_sub(key.len() - 1))
        .filter(move |&i| line[i..i + key.len()].eq_ignore_ascii_case(key))
        .filter_map(move |i| {
            let rest = &line[i + key.len()..];
            let start = rest.iter().position(|&b| b != b' ')?;
            let mut value = Some(0u64);
            let mut digits = 0;
            for &b in rest[start..].iter().filter(|&&b| b != b'\r') {
                if !b.is_ascii_digit() {
                    break;
                }
                digits += 1;
                value = value
                    .and_then(|v| v.checked_mul(10))
                    .and_then(|v| v.checked_add(u64::from(b - b'0')));
            }
            (digits > 0).then_some(value)
        })
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

    /// Found by fuzz/smtp_command: past 19 digits smtp-proto saturates, then starts the
    /// number again with the next digit, so `BDAT 40918446744073709551616` was a chunk of
    /// 616 octets (the rest of the client's chunk would have been read as commands).
    #[test]
    fn numbers_beyond_u64_are_not_cut_short() {
        assert_eq!(
            Command::parse(b"BDAT 40918446744073709551616\r\n"),
            Err(reply::SYNTAX_ERROR)
        );
        assert_eq!(
            Command::parse(b"BDAT 18446744073709551616 LAST\r\n"),
            Err(reply::SYNTAX_ERROR)
        );
        let mail = |line: &[u8]| match Command::parse(line) {
            Ok(Command::Mail(m)) => m.size,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            mail(b"MAIL FROM:<a@b.example> SIZE=184467440737095516160001000\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(
            mail(b"MAIL FROM:<a@b.example> SIZE=99999999999999999999999\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(
            mail(b"MAIL FROM:<size=5@b.example> SIZE=1000\r\n"),
            Some(1000)
        );
        // smtp-proto skips CRs inside the keyword; no literal SIZE= says 1: too big.
        assert_eq!(
            mail(b"MAIL FROM:<a@b.example> SIZ\r\rE=1\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(
            Command::parse(b"BDAT 18446744073709551614 LAST\r\n"),
            Ok(Command::Bdat {
                size: 18446744073709551614,
                last: true
            })
        );
    }
}
