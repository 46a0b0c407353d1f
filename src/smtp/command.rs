//! The commands a client can send, as values.
//!
//! Owns: the `Command` enum and its parameters, converted from smtp-proto's parser output;
//! the checks smtp-proto does not make: numbers (the BDAT chunk size, MAIL's `SIZE=`) are
//! read here digit by digit and refused when they do not fit in a `u64` (smtp-proto 0.2.5
//! saturates and then wraps them, so a huge chunk size could become a small one), BDAT is
//! parsed here entirely (RFC 3030 grammar, nothing after `LAST`), and DATA, RSET, QUIT and
//! STARTTLS take no parameters (RFC 5321 §4.1.1, RFC 3207 §4). A refused command line says
//! what follows it on the wire (`Trailing`): a refused BDAT's chunk is still there.
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
        size: u64,
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

    /// Parses one complete command line (including its line ending): BDAT and the verbs
    /// without parameters here, the rest with smtp-proto. On error, returns the reply the
    /// client gets and what follows the line on the wire.
    pub fn parse(line: &[u8]) -> Result<Command, Invalid> {
        let (verb, args) = split_verb(line);
        if verb.eq_ignore_ascii_case(b"BDAT") {
            return parse_bdat(args);
        }
        for (name, command) in [
            (&b"DATA"[..], Command::Data),
            (b"RSET", Command::Rset),
            (b"QUIT", Command::Quit),
            (b"STARTTLS", Command::StartTls),
        ] {
            if verb.eq_ignore_ascii_case(name) {
                return match args.iter().all(u8::is_ascii_whitespace) {
                    true => Ok(command),
                    false => Err(Invalid::line(reply::NO_PARAMETERS)),
                };
            }
        }
        // MAIL's SIZE= is ours: smtp-proto sees the line without it.
        let (declared, without_size);
        let line = if verb.eq_ignore_ascii_case(b"MAIL") {
            (declared, without_size) = declared_size(line).map_err(Invalid::line)?;
            &without_size[..]
        } else {
            declared = None;
            line
        };
        let request =
            Request::parse(&mut line.iter()).map_err(|e| Invalid::line(parse_error_reply(&e)))?;
        Ok(match request {
            Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
            Request::Helo { host } => Command::Helo(host.into_owned()),
            Request::Mail { from } => {
                if from.flags & MAIL_BODY_BINARYMIME != 0 {
                    return Err(Invalid::line(reply::BAD_BODY_PARAM));
                }
                Command::Mail(MailParams {
                    address: from.address.into_owned(),
                    size: declared.filter(|s| *s > 0),
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
                    return Err(Invalid::line(reply::BAD_RECIPIENT_SYNTAX));
                }
            }
            Request::Rcpt { to } => Command::Rcpt(to.address.into_owned()),
            Request::Noop { .. } => Command::Noop,
            Request::Vrfy { .. } => Command::Vrfy,
            Request::Help { .. } => Command::Help,
            other => Command::NotOffered(other.name()),
        })
    }
}

/// What a refused command line leaves on the wire after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailing {
    /// Nothing: the next bytes are the next command.
    Nothing,
    /// The chunk of a refused BDAT, this many octets: read and dropped, or its bytes
    /// would run as commands.
    Chunk(u64),
    /// A BDAT whose chunk size cannot be read (not a number, or one beyond u64): how many
    /// octets follow is unknown, so no later byte can be trusted to start a command.
    Unknown,
}

/// A command line refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The client's reply.
    pub reply: Reply,
    /// What follows the line.
    pub trailing: Trailing,
}

impl Invalid {
    /// A refusal with nothing after the line.
    fn line(reply: Reply) -> Self {
        Invalid {
            reply,
            trailing: Trailing::Nothing,
        }
    }
}

/// The verb (up to the first white space) and the rest of the line without its line ending.
fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    let line = without_line_ending(line);
    match line.iter().position(u8::is_ascii_whitespace) {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &[]),
    }
}

/// `line` without its LF or CRLF.
fn without_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A parameter read as a decimal number.
enum Number {
    /// Digits whose value fits in a u64 (leading zeros allowed).
    Fits(u64),
    /// Digits whose value is above `u64::MAX`.
    TooLarge,
    /// Empty, or not only digits.
    NotDigits,
}

/// Reads `digits` as a decimal number that must fit in a u64, without ever saturating or
/// wrapping.
fn number(digits: &[u8]) -> Number {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Number::NotDigits;
    }
    digits
        .iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .map_or(Number::TooLarge, Number::Fits)
}

/// `BDAT chunk-size [LAST]` (RFC 3030 §2): exactly one number and an optional `LAST`.
fn parse_bdat(args: &[u8]) -> Result<Command, Invalid> {
    let mut words = args
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    let unknown = |reply| Invalid {
        reply,
        trailing: Trailing::Unknown,
    };
    let size = match words.next().map(number) {
        Some(Number::Fits(size)) => size,
        Some(Number::TooLarge) => return Err(unknown(reply::CHUNK_SIZE_OUT_OF_RANGE)),
        Some(Number::NotDigits) | None => return Err(unknown(reply::BDAT_SYNTAX)),
    };
    let last = match (words.next(), words.next()) {
        (None, _) => false,
        (Some(word), None) if word.eq_ignore_ascii_case(b"LAST") => true,
        _ => {
            return Err(Invalid {
                reply: reply::BDAT_SYNTAX,
                trailing: Trailing::Chunk(size),
            });
        }
    };
    Ok(Command::Bdat { size, last })
}

/// The `SIZE=` value of a MAIL FROM line, read by us, and the line without it for
/// smtp-proto: smtp-proto 0.2.5 wraps values beyond u64 into small ones, and refuses
/// `u64::MAX` itself (its marker for "no number").
fn declared_size(line: &[u8]) -> Result<(Option<u64>, Vec<u8>), Reply> {
    let line = without_line_ending(line);
    let params = line.len() - mail_parameters(line).len();
    let mut rest = line[..params].to_vec();
    let mut size = None;
    for word in line[params..]
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
    {
        let Some(value) = word
            .get(..5)
            .filter(|k| k.eq_ignore_ascii_case(b"SIZE="))
            .map(|_| &word[5..])
        else {
            rest.push(b' ');
            rest.extend_from_slice(word);
            continue;
        };
        if size.is_some() {
            // RFC 1869 §6: a parameter may appear once.
            return Err(reply::SYNTAX_ERROR);
        }
        size = match number(value) {
            Number::Fits(n) => Some(n),
            Number::NotDigits => return Err(reply::BAD_SIZE_SYNTAX),
            Number::TooLarge => return Err(reply::SIZE_OUT_OF_RANGE),
        };
    }
    rest.extend_from_slice(b"\r\n");
    Ok((size, rest))
}

/// What follows the reverse path `<…>` of `MAIL FROM:<…> params` (empty when there is no
/// path): the path may hold a quoted local part with spaces, `>` or `SIZE=` in it, so it is
/// skipped by its grammar.
fn mail_parameters(args: &[u8]) -> &[u8] {
    let Some(open) = args.iter().position(|b| *b == b'<') else {
        return &[];
    };
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in args.iter().enumerate().skip(open + 1) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return &args[i + 1..],
            _ => {}
        }
    }
    &[]
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

    /// The reply of a refused line.
    fn refusal(line: &[u8]) -> Option<Reply> {
        Command::parse(line).err().map(|e| e.reply)
    }

    #[test]
    fn errors_map_to_replies() {
        assert_eq!(refusal(b"FOO bar\r\n"), Some(reply::UNKNOWN_COMMAND));
        assert_eq!(refusal(b"MAIL FROM:<a@@b>\r\n").map(|r| r.code), Some(501));
        assert_eq!(
            Command::parse(b"AUTH PLAIN\r\n").map(|c| c.verb()),
            Ok("AUTH")
        );
        assert_eq!(
            Command::parse(b"RCPT TO:<Postmaster>\r\n"),
            Ok(Command::Rcpt("postmaster".into()))
        );
        assert_eq!(
            refusal(b"RCPT TO:<>\r\n"),
            Some(reply::BAD_RECIPIENT_SYNTAX)
        );
    }

    #[test]
    fn bdat_follows_rfc3030_and_its_size_must_fit_u64() {
        let bdat = |size, last| Ok(Command::Bdat { size, last });
        assert_eq!(Command::parse(b"BDAT 10 LAST\r\n"), bdat(10, true));
        assert_eq!(Command::parse(b"bdat 0 last\n"), bdat(0, true));
        assert_eq!(Command::parse(b"BDAT 7\r\n"), bdat(7, false));
        assert_eq!(
            Command::parse(b"BDAT 18446744073709551615\r\n"),
            bdat(u64::MAX, false)
        );
        assert_eq!(
            Command::parse(b"BDAT 0000000000000000000000005 LAST\r\n"),
            bdat(5, true),
            "leading zeros do not make a number larger"
        );
        let refused = |line: &[u8]| Command::parse(line).err().map(|e| (e.reply, e.trailing));
        // Sizes beyond u64: never saturated or wrapped into another number, and the bytes
        // after the line are of unknown length.
        for line in [
            &b"BDAT 18446744073709551616 LAST\r\n"[..],
            b"BDAT 10000000000000000000024 LAST\r\n",
            b"BDAT 100000000000000000000000 LAST\r\n",
        ] {
            assert_eq!(
                refused(line),
                Some((reply::CHUNK_SIZE_OUT_OF_RANGE, Trailing::Unknown)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"BDAT\r\n"[..],
            b"BDAT x LAST\r\n",
            b"BDAT -1\r\n",
            b"BDAT 1x\r\n",
        ] {
            assert_eq!(
                refused(line),
                Some((reply::BDAT_SYNTAX, Trailing::Unknown)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // A readable size with something else wrong: its chunk still follows.
        for line in [
            &b"BDAT 5 LAST extra\r\n"[..],
            b"BDAT 5 FIRST\r\n",
            b"BDAT 5 5\r\n",
        ] {
            assert_eq!(
                refused(line),
                Some((reply::BDAT_SYNTAX, Trailing::Chunk(5))),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn verbs_without_parameters_refuse_them() {
        for (line, command) in [
            (&b"DATA\r\n"[..], Command::Data),
            (b"data \r\n", Command::Data),
            (b"RSET\r\n", Command::Rset),
            (b"QUIT\n", Command::Quit),
            (b"STARTTLS\r\n", Command::StartTls),
        ] {
            assert_eq!(Command::parse(line), Ok(command));
        }
        for line in [
            &b"DATA x\r\n"[..],
            b"RSET x\r\n",
            b"QUIT now\r\n",
            b"STARTTLS now\r\n",
        ] {
            assert_eq!(
                Command::parse(line),
                Err(Invalid {
                    reply: reply::NO_PARAMETERS,
                    trailing: Trailing::Nothing
                }),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // NOOP and HELP take an argument (RFC 5321 §4.1.1.8, §4.1.1.9).
        assert_eq!(Command::parse(b"NOOP hello\r\n"), Ok(Command::Noop));
        assert_eq!(Command::parse(b"HELP MAIL\r\n"), Ok(Command::Help));
    }

    #[test]
    fn mail_size_must_be_a_number_that_fits_u64() {
        let size = |line: &[u8]| match Command::parse(line) {
            Ok(Command::Mail(m)) => Ok(m.size),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.reply),
        };
        assert_eq!(
            size(b"MAIL FROM:<a@b> SIZE=18446744073709551615\r\n"),
            Ok(Some(u64::MAX))
        );
        assert_eq!(size(b"MAIL FROM:<a@b> size=00042\r\n"), Ok(Some(42)));
        assert_eq!(size(b"MAIL FROM:<a@b> SIZE=0\r\n"), Ok(None));
        for line in [
            &b"MAIL FROM:<a@b> SIZE=18446744073709551616\r\n"[..],
            b"MAIL FROM:<a@b> SIZE=100000000000000000000000\r\n",
            b"MAIL FROM:<a@b> BODY=8BITMIME SIZE=36893488147419103232\r\n",
        ] {
            assert_eq!(
                size(line),
                Err(reply::SIZE_OUT_OF_RANGE),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            size(b"MAIL FROM:<a@b> SIZE=1 SIZE=2\r\n"),
            Err(reply::SYNTAX_ERROR)
        );
        // `SIZE=` inside a quoted local part is not the parameter.
        assert_eq!(
            size(b"MAIL FROM:<\"x> SIZE=99999999999999999999999\"@b.example> SIZE=7\r\n"),
            Ok(Some(7))
        );
    }
}
