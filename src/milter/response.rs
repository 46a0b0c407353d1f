//! What we send to the MTA: `Response` values (`SMFIR_*` and our OPTNEG answer) and their
//! wire encoding.
//!
//! Owns: the layout of every response, the rules for a milter reply code (`ReplyCode`) and
//! for header fields we add or change, and the metric label per response. Must not: decide
//! which response to send (the session does), or check that the negotiation allows it
//! (`negotiate.rs` says what was agreed).
//!
//! NUL bytes: a NUL inside a field would end it early and shift the fields after it, so the
//! checked constructors (`ReplyCode::new`, `Response::add_header` and friends) refuse it, and
//! `encode` drops any NUL that a directly built value carries. Header values are sent folded
//! as given: lines separated by LF alone, each continuation starting with a space or a tab
//! (the MTA adds the CR).

use crate::smtp::reply::Reply;

use super::packet::write;

const SMFIR_ACCEPT: u8 = b'a';
const SMFIR_CONTINUE: u8 = b'c';
const SMFIR_DISCARD: u8 = b'd';
const SMFIR_ADDHEADER: u8 = b'h';
const SMFIR_INSHEADER: u8 = b'i';
const SMFIR_CHGHEADER: u8 = b'm';
const SMFIR_PROGRESS: u8 = b'p';
const SMFIR_QUARANTINE: u8 = b'q';
const SMFIR_REJECT: u8 = b'r';
const SMFIR_SKIP: u8 = b's';
const SMFIR_TEMPFAIL: u8 = b't';
const SMFIR_REPLYCODE: u8 = b'y';
const SMFIC_OPTNEG: u8 = b'O';

/// Longest reply line the MTA may send on our behalf, without CRLF (RFC 5321 §4.5.3.1.5).
const MAX_REPLY_LINE: usize = 510;

/// One response to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `c`: go on (at end of message: accept it, with any modifications sent before).
    Continue,
    /// `a`: accept; no further events for this message (or connection, at CONNECT/HELO).
    Accept,
    /// `r`: reject with the MTA's default 5xx (Postfix: `550 5.7.1 Command rejected`).
    Reject,
    /// `t`: fail temporarily with the MTA's default 4xx.
    Tempfail,
    /// `d`: accept and silently drop the message (not allowed at CONNECT/HELO).
    Discard,
    /// `y`: reject or fail with our own reply.
    ReplyCode(ReplyCode),
    /// `q`: put the message on hold (Postfix: the hold queue), with a reason for the log.
    /// Only at end of message, before the final response.
    Quarantine(String),
    /// `p`: still working; resets the MTA's timeout.
    Progress,
    /// `s`: send no more events of this kind (body chunks); needs `SMFIP_SKIP` agreed.
    Skip,
    /// `h`: append a header field (at end of message; needs `SMFIF_ADDHDRS`).
    AddHeader {
        /// Field name, without the colon.
        name: String,
        /// Field value (see the module documentation for folding and leading space).
        value: String,
    },
    /// `i`: insert a header field at `index` (0: above every field, as the MTA counts them;
    /// Postfix counts its own Received: field too); needs `SMFIF_ADDHDRS`.
    InsertHeader {
        /// Position: 0 puts the field first.
        index: u32,
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// `m`: replace the `index`-th field called `name` (counting from 1), or delete it when
    /// `value` is empty; needs `SMFIF_CHGHDRS`.
    ChangeHeader {
        /// Which occurrence of `name`, from 1 (Postfix reads 0 as 1).
        index: u32,
        /// Field name.
        name: String,
        /// New value; empty deletes the field.
        value: String,
    },
    /// `O`: our answer to the MTA's OPTNEG (built by `negotiate::Negotiated::response`).
    Optneg {
        /// Agreed protocol version.
        version: u32,
        /// `SMFIF_*` actions we may use.
        actions: u32,
        /// `SMFIP_*` protocol flags we set.
        protocol: u32,
        /// Macro lists we ask for (`SMFIF_SETSYMLIST`): an `SMFIM_*` stage and the macro
        /// names, space-separated.
        macros: Vec<(u32, String)>,
    },
}

/// Why a header field cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The name is empty or has a byte outside printable ASCII, or a colon.
    #[error("header name {0:?} must be printable ASCII without a colon")]
    Name(String),
    /// The value has NUL or CR, or an LF that does not start a folded line.
    #[error("header value must not contain NUL, CR, or LF other than before a space or tab")]
    Value,
}

impl Response {
    /// `AddHeader` after checking the name and value.
    pub fn add_header(name: &str, value: &str) -> Result<Response, HeaderError> {
        check_field(name, value)?;
        Ok(Response::AddHeader {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    /// `InsertHeader` after checking the name and value.
    pub fn insert_header(index: u32, name: &str, value: &str) -> Result<Response, HeaderError> {
        check_field(name, value)?;
        Ok(Response::InsertHeader {
            index,
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    /// `ChangeHeader` after checking the name and value (an empty value deletes).
    pub fn change_header(index: u32, name: &str, value: &str) -> Result<Response, HeaderError> {
        check_field(name, value)?;
        Ok(Response::ChangeHeader {
            index,
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Appends the framed packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut data = Vec::new();
        let code = match self {
            Response::Continue => SMFIR_CONTINUE,
            Response::Accept => SMFIR_ACCEPT,
            Response::Reject => SMFIR_REJECT,
            Response::Tempfail => SMFIR_TEMPFAIL,
            Response::Discard => SMFIR_DISCARD,
            Response::Progress => SMFIR_PROGRESS,
            Response::Skip => SMFIR_SKIP,
            Response::ReplyCode(reply) => {
                cstr(&reply.line, &mut data);
                SMFIR_REPLYCODE
            }
            Response::Quarantine(reason) => {
                cstr(reason, &mut data);
                SMFIR_QUARANTINE
            }
            Response::AddHeader { name, value } => {
                cstr(name, &mut data);
                cstr(value, &mut data);
                SMFIR_ADDHEADER
            }
            Response::InsertHeader { index, name, value } => {
                data.extend_from_slice(&index.to_be_bytes());
                cstr(name, &mut data);
                cstr(value, &mut data);
                SMFIR_INSHEADER
            }
            Response::ChangeHeader { index, name, value } => {
                data.extend_from_slice(&index.to_be_bytes());
                cstr(name, &mut data);
                cstr(value, &mut data);
                SMFIR_CHGHEADER
            }
            Response::Optneg {
                version,
                actions,
                protocol,
                macros,
            } => {
                for word in [version, actions, protocol] {
                    data.extend_from_slice(&word.to_be_bytes());
                }
                for (stage, names) in macros {
                    data.extend_from_slice(&stage.to_be_bytes());
                    cstr(names, &mut data);
                }
                SMFIC_OPTNEG
            }
        };
        write(code, &data, out);
    }

    /// The metric label of this response (a fixed set, one per kind).
    pub fn label(&self) -> &'static str {
        match self {
            Response::Continue => "continue",
            Response::Accept => "accept",
            Response::Reject => "reject",
            Response::Tempfail => "tempfail",
            Response::Discard => "discard",
            Response::ReplyCode(_) => "reply_code",
            Response::Quarantine(_) => "quarantine",
            Response::Progress => "progress",
            Response::Skip => "skip",
            Response::AddHeader { .. } => "add_header",
            Response::InsertHeader { .. } => "insert_header",
            Response::ChangeHeader { .. } => "change_header",
            Response::Optneg { .. } => "optneg",
        }
    }
}

/// Writes `s` without any NUL it may hold, then the terminating NUL.
fn cstr(s: &str, out: &mut Vec<u8>) {
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

fn check_field(name: &str, value: &str) -> Result<(), HeaderError> {
    // RFC 5322 §3.6.8 field-name: printable ASCII except the colon.
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(HeaderError::Name(name.to_owned()));
    }
    let bytes = value.as_bytes();
    let folded = bytes.iter().enumerate().all(|(i, &b)| match b {
        0 | b'\r' => false,
        b'\n' => matches!(bytes.get(i + 1), Some(b' ' | b'\t')),
        _ => true,
    });
    if folded {
        Ok(())
    } else {
        Err(HeaderError::Value)
    }
}

/// A milter reply (`SMFIR_REPLYCODE`): a 4xx or 5xx code, an enhanced code of the same class
/// and one line of text, checked once so that the MTA never refuses it.
///
/// Postfix takes a reply whose first digit is not 4 or 5, or whose enhanced code's class
/// differs, as a milter configuration error; and it reads the text as a format string, so
/// every `%` is sent as `%%` (Postfix turns `%%` back into `%` and drops a lone `%`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyCode {
    code: u16,
    /// `ddd c.s.d text` as sent, `%` already doubled, no NUL.
    line: String,
}

/// Why a reply cannot be sent as a milter reply code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyCodeError {
    /// Not 4xx or 5xx (a milter can only refuse), or a second digit above 5.
    #[error("milter reply code {0} must be 4xx or 5xx")]
    Code(u16),
    /// Not `class.subject.detail` with a class matching the code and 1–3 digit parts.
    #[error("enhanced code {enhanced:?} must be {class}.x.y with x and y of 1 to 3 digits")]
    Enhanced {
        /// The enhanced code given (empty when there was none).
        enhanced: String,
        /// The class digit the reply code requires.
        class: u16,
    },
    /// The text holds CR, LF or NUL.
    #[error("milter reply text must be one line without NUL")]
    Text,
    /// The line would be longer than an SMTP reply line may be.
    #[error("milter reply of {0} octets exceeds the SMTP reply line limit")]
    TooLong(usize),
}

impl ReplyCode {
    /// A reply code `code` (400–599), enhanced code `enhanced` (`5.7.1`) and `text`.
    pub fn new(code: u16, enhanced: &str, text: &str) -> Result<ReplyCode, ReplyCodeError> {
        let class = code / 100;
        if !(4..=5).contains(&class) || code % 100 > 59 {
            return Err(ReplyCodeError::Code(code));
        }
        if !enhanced_ok(enhanced, class) {
            return Err(ReplyCodeError::Enhanced {
                enhanced: enhanced.to_owned(),
                class,
            });
        }
        if text.contains(['\r', '\n', '\0']) {
            return Err(ReplyCodeError::Text);
        }
        let mut line = format!("{code} {enhanced}");
        if !text.is_empty() {
            line.push(' ');
            line.push_str(text);
        }
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyCodeError::TooLong(line.len()));
        }
        Ok(ReplyCode {
            code,
            line: line.replace('%', "%%"),
        })
    }

    /// The milter form of a gateway reply (a policy's reject or tempfail): it needs an
    /// enhanced code and a single line of text.
    pub fn from_reply(reply: &Reply) -> Result<ReplyCode, ReplyCodeError> {
        let enhanced = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
        ReplyCode::new(reply.code, &enhanced, &reply.text)
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The text as sent, without its NUL: `ddd c.s.d text` with every `%` doubled.
    pub fn wire(&self) -> &str {
        &self.line
    }
}

/// `class.subject.detail`: the class equal to the code's first digit, subject and detail of
/// 1 to 3 digits (RFC 3463 §2).
fn enhanced_ok(enhanced: &str, class: u16) -> bool {
    let mut parts = enhanced.split('.');
    let (Some(c), Some(s), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    c.len() == 1 && c.parse::<u16>() == Ok(class) && digits(s) && digits(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::Enhanced;

    fn bytes(r: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    }

    /// The packet for `code` and `data`, built by hand.
    fn packet(code: u8, data: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(data.len() + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        out.push(code);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn simple_responses_are_one_byte_packets() {
        for (r, code, label) in [
            (Response::Continue, b'c', "continue"),
            (Response::Accept, b'a', "accept"),
            (Response::Reject, b'r', "reject"),
            (Response::Tempfail, b't', "tempfail"),
            (Response::Discard, b'd', "discard"),
            (Response::Progress, b'p', "progress"),
            (Response::Skip, b's', "skip"),
        ] {
            assert_eq!(bytes(&r), [0, 0, 0, 1, code], "{r:?}");
            assert_eq!(r.label(), label);
        }
    }

    #[test]
    fn reply_code_bytes() {
        let r = Response::ReplyCode(
            ReplyCode::new(550, "5.7.1", "Sender rejected by test milter").unwrap(),
        );
        // As rawmilter.py sends it, and Postfix logged it (recipes/captures).
        assert_eq!(
            bytes(&r),
            packet(b'y', b"550 5.7.1 Sender rejected by test milter\0")
        );
        assert_eq!(r.label(), "reply_code");
    }

    #[test]
    fn quarantine_bytes() {
        let r = Response::Quarantine("spam score 12".into());
        assert_eq!(bytes(&r), packet(b'q', b"spam score 12\0"));
        assert_eq!(r.label(), "quarantine");
    }

    #[test]
    fn header_response_bytes() {
        let add = Response::add_header("X-Test-Milter", "client=127.0.0.1 helo=client.example");
        assert_eq!(
            bytes(&add.unwrap()),
            packet(
                b'h',
                b"X-Test-Milter\0client=127.0.0.1 helo=client.example\0"
            )
        );
        let ins = Response::insert_header(0, "Authentication-Results", "mx.example;\n\tspf=pass");
        let mut want = vec![0, 0, 0, 0];
        want.extend_from_slice(b"Authentication-Results\0mx.example;\n\tspf=pass\0");
        assert_eq!(bytes(&ins.unwrap()), packet(b'i', &want));
        let chg = Response::change_header(2, "X-Spam", "").unwrap();
        assert_eq!(bytes(&chg), packet(b'm', b"\0\0\0\x02X-Spam\0\0"));
        assert_eq!(chg.label(), "change_header");
        let chg = Response::change_header(0x0102_0304, "Subject", " [SPAM] hi").unwrap();
        assert_eq!(
            bytes(&chg),
            packet(b'm', b"\x01\x02\x03\x04Subject\0 [SPAM] hi\0")
        );
        assert_eq!(
            Response::add_header("a", "b").unwrap().label(),
            "add_header"
        );
        assert_eq!(
            Response::insert_header(1, "a", "b").unwrap().label(),
            "insert_header"
        );
    }

    #[test]
    fn header_names_and_values_are_checked() {
        for bad in ["", "X Spam", "X:Spam", "X-Späm", "X\0", "X\tY"] {
            assert_eq!(
                Response::add_header(bad, "v"),
                Err(HeaderError::Name(bad.into())),
                "{bad:?}"
            );
        }
        for bad in ["a\0b", "a\rb", "a\r\n b", "a\nb", "trailing\n", "\n"] {
            assert_eq!(
                Response::add_header("X", bad),
                Err(HeaderError::Value),
                "{bad:?}"
            );
            assert_eq!(
                Response::change_header(1, "X", bad),
                Err(HeaderError::Value)
            );
            assert_eq!(
                Response::insert_header(1, "X", bad),
                Err(HeaderError::Value)
            );
        }
        for good in ["", " leading space", "a\n b", "a\n\tb\n c", "ünïcode"] {
            assert!(Response::add_header("X", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn encode_drops_nul_in_directly_built_values() {
        let r = Response::AddHeader {
            name: "X\0Evil".into(),
            value: "a\0b".into(),
        };
        assert_eq!(bytes(&r), packet(b'h', b"XEvil\0ab\0"));
        let q = Response::Quarantine("why\0not".into());
        assert_eq!(bytes(&q), packet(b'q', b"whynot\0"));
    }

    #[test]
    fn optneg_bytes() {
        let r = Response::Optneg {
            version: 6,
            actions: 0x131,
            protocol: 0x001f_0380,
            macros: vec![(0, "j _".into()), (5, "i".into())],
        };
        let mut want = vec![0, 0, 0, 6, 0, 0, 1, 0x31, 0, 0x1f, 3, 0x80];
        want.extend_from_slice(b"\0\0\0\0j _\0\0\0\0\x05i\0");
        assert_eq!(bytes(&r), packet(b'O', &want));
        assert_eq!(r.label(), "optneg");
        let bare = Response::Optneg {
            version: 2,
            actions: 1,
            protocol: 0,
            macros: vec![],
        };
        assert_eq!(
            bytes(&bare),
            packet(b'O', &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0])
        );
    }

    #[test]
    fn reply_code_accepts_4xx_and_5xx_only() {
        for code in [400, 421, 451, 459, 500, 550, 554, 559] {
            let class = code / 100;
            assert!(
                ReplyCode::new(code, &format!("{class}.7.1"), "x").is_ok(),
                "{code}"
            );
        }
        for code in [0, 99, 200, 250, 354, 399, 460, 499, 560, 599, 600, 999] {
            assert_eq!(
                ReplyCode::new(code, "5.7.1", "x"),
                Err(ReplyCodeError::Code(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn enhanced_code_must_match_the_class_and_shape() {
        assert!(ReplyCode::new(451, "4.7.1", "x").is_ok());
        assert!(ReplyCode::new(550, "5.123.999", "x").is_ok());
        assert!(ReplyCode::new(550, "5.0.0", "x").is_ok());
        for bad in [
            "4.7.1", "2.0.0", "5.7", "5.7.1.1", "5..1", "5.7.", ".7.1", "5.1234.1", "5.1.1234",
            "55.7.1", "5.x.1", "5.7.1 ", " 5.7.1", "", "5.+7.1", "5.-7.1",
        ] {
            assert_eq!(
                ReplyCode::new(550, bad, "x"),
                Err(ReplyCodeError::Enhanced {
                    enhanced: bad.into(),
                    class: 5
                }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ReplyCode::new(451, "5.7.1", "x"),
            Err(ReplyCodeError::Enhanced { class: 4, .. })
        ));
    }

    #[test]
    fn text_must_be_one_line_without_nul() {
        for bad in ["a\rb", "a\nb", "a\r\n", "a\0b"] {
            assert_eq!(
                ReplyCode::new(550, "5.7.1", bad),
                Err(ReplyCodeError::Text),
                "{bad:?}"
            );
        }
        assert_eq!(
            ReplyCode::new(550, "5.7.1", "").unwrap().wire(),
            "550 5.7.1"
        );
    }

    #[test]
    fn percent_is_doubled() {
        let r = ReplyCode::new(554, "5.7.1", "100% spam, %s %%").unwrap();
        assert_eq!(r.wire(), "554 5.7.1 100%% spam, %%s %%%%");
        assert_eq!(r.code(), 554);
        // Postfix's un-escaping (%% -> %, lone % dropped) gives the text back.
        let mut back = String::new();
        let mut chars = r.wire().chars();
        while let Some(c) = chars.next() {
            if c == '%' {
                back.extend(chars.next());
            } else {
                back.push(c);
            }
        }
        assert_eq!(back, "554 5.7.1 100% spam, %s %%");
    }

    #[test]
    fn line_length_is_limited() {
        let prefix = "550 5.7.1 ".len();
        let fits = "x".repeat(MAX_REPLY_LINE - prefix);
        assert!(ReplyCode::new(550, "5.7.1", &fits).is_ok());
        let over = "x".repeat(MAX_REPLY_LINE - prefix + 1);
        assert_eq!(
            ReplyCode::new(550, "5.7.1", &over),
            Err(ReplyCodeError::TooLong(MAX_REPLY_LINE + 1))
        );
        // Escaping does not count: the MTA sends the text un-escaped.
        let percents = "%".repeat(MAX_REPLY_LINE - prefix);
        assert!(ReplyCode::new(550, "5.7.1", &percents).is_ok());
    }

    #[test]
    fn from_gateway_replies() {
        let r = Reply::new(550, Some(Enhanced(5, 7, 1)), "Message rejected as spam");
        assert_eq!(
            ReplyCode::from_reply(&r).unwrap().wire(),
            "550 5.7.1 Message rejected as spam"
        );
        let no_enhanced = Reply::new(554, None, "go away");
        assert!(matches!(
            ReplyCode::from_reply(&no_enhanced),
            Err(ReplyCodeError::Enhanced { .. })
        ));
        let multi = Reply::new(451, Some(Enhanced(4, 7, 1)), "one\ntwo");
        assert_eq!(ReplyCode::from_reply(&multi), Err(ReplyCodeError::Text));
        let positive = Reply::new(250, Some(Enhanced(2, 0, 0)), "ok");
        assert_eq!(
            ReplyCode::from_reply(&positive),
            Err(ReplyCodeError::Code(250))
        );
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            ReplyCode::new(550, "4.7.1", "x").unwrap_err().to_string(),
            "enhanced code \"4.7.1\" must be 5.x.y with x and y of 1 to 3 digits"
        );
        assert_eq!(
            ReplyCode::new(250, "2.0.0", "x").unwrap_err().to_string(),
            "milter reply code 250 must be 4xx or 5xx"
        );
    }
}
