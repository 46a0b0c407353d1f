//! What the MTA sends: a `Packet` decoded into a typed `Command` (`SMFIC_*`).
//!
//! Owns: the data layout of each MTA command (Sendmail milter protocol v6 as Postfix 3.7
//! speaks it, older versions being subsets), and the metric label per command. Must not:
//! decide what to answer, or know which events were negotiated away (`negotiate.rs`).
//!
//! Text and bytes: names, addresses, the HELO argument, ESMTP parameters and macros are
//! decoded as strict UTF-8 into `String`s. A lossy conversion would let two different
//! addresses compare equal and would put U+FFFD into what policy and logs see, so invalid
//! UTF-8 is an error instead, `DecodeError::NotUtf8`, which names the command: the session
//! can still answer that command (a reject at MAIL or RCPT), and for a macro packet, which
//! gets no answer, go on without those macros. Header values, body chunks and unknown SMTP
//! command lines are content, and may hold any octet: they stay bytes, exactly as sent.
//!
//! Strictness: every string field must end in its NUL and nothing may follow the last field,
//! except that data after OPTNEG's three words, data on the argument-less commands (DATA,
//! EOH, ABORT, QUIT, QUIT_NC) and after the `U` (unknown) address family is ignored, as
//! libmilter ignores it. Decoding never panics, whatever the bytes.

use std::net::IpAddr;

use super::packet::{Packet, write};

const SMFIC_ABORT: u8 = b'A';
const SMFIC_BODY: u8 = b'B';
const SMFIC_CONNECT: u8 = b'C';
const SMFIC_MACRO: u8 = b'D';
const SMFIC_BODYEOB: u8 = b'E';
const SMFIC_HELO: u8 = b'H';
const SMFIC_QUIT_NC: u8 = b'K';
const SMFIC_HEADER: u8 = b'L';
const SMFIC_MAIL: u8 = b'M';
const SMFIC_EOH: u8 = b'N';
const SMFIC_OPTNEG: u8 = b'O';
const SMFIC_QUIT: u8 = b'Q';
const SMFIC_RCPT: u8 = b'R';
const SMFIC_DATA: u8 = b'T';
const SMFIC_UNKNOWN: u8 = b'U';

/// The address family of the SMTP client in a CONNECT (`SMFIA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `'4'`: IPv4; the address is dotted-quad text.
    Inet,
    /// `'6'`: IPv6; the address is text, possibly with an `IPv6:` prefix (Sendmail).
    Inet6,
    /// `'L'`: a local (unix-domain) socket; the address is its path.
    Unix,
    /// `'U'`: unknown; no port and no address follow.
    Unknown,
}

/// One command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `O`: the MTA's offer: its protocol version, the actions (`SMFIF_*`) it allows and the
    /// protocol flags (`SMFIP_*`) it understands. Answered with our `Response::Optneg`.
    Optneg {
        /// Protocol version (Postfix 3.7: 6).
        version: u32,
        /// `SMFIF_*` bits the milter may use.
        actions: u32,
        /// `SMFIP_*` bits the milter may set.
        protocol: u32,
    },
    /// `D`: macros for the command that follows; never answered.
    Macros {
        /// The command byte the macros belong to (`b'C'`, `b'H'`, `b'M'`, `b'L'`, ...).
        stage: u8,
        /// Name and value pairs, names as the MTA spells them (`j`, `{daemon_name}`).
        pairs: Vec<(String, String)>,
    },
    /// `C`: the SMTP client connected.
    Connect {
        /// The client's host name, or `[address]` when it has none (Postfix).
        hostname: String,
        /// Address family.
        family: Family,
        /// Client port; 0 for `Unix` and `Unknown`.
        port: u16,
        /// Client address as text (IP address, or socket path for `Unix`); empty for
        /// `Unknown`.
        address: String,
    },
    /// `H`: the HELO or EHLO argument.
    Helo(String),
    /// `M`: MAIL FROM.
    Mail {
        /// The address as Postfix sends it, angle brackets included (`<a@b.example>`, `<>`).
        sender: String,
        /// ESMTP parameters (`SIZE=123`, `BODY=8BITMIME`).
        args: Vec<String>,
    },
    /// `R`: RCPT TO.
    Rcpt {
        /// The address as Postfix sends it, angle brackets included.
        rcpt: String,
        /// ESMTP parameters (`NOTIFY=NEVER`, `ORCPT=rfc822;...`).
        args: Vec<String>,
    },
    /// `T`: the DATA command (before any content).
    Data,
    /// `L`: one header field.
    Header {
        /// Field name, without the colon.
        name: String,
        /// Field value exactly as sent: folded lines separated by LF, and the whitespace
        /// after the colon kept only when `SMFIP_HDR_LEADSPC` was negotiated (else Postfix
        /// drops one space).
        value: Vec<u8>,
    },
    /// `N`: end of the header block.
    EndOfHeaders,
    /// `B`: a chunk of the body (CRLF line endings; at most 65535 octets from Postfix).
    Body(Vec<u8>),
    /// `E`: end of the message, with a final body chunk that is empty from Postfix.
    EndOfMessage(Vec<u8>),
    /// `A`: forget the current message (and its envelope); never answered.
    Abort,
    /// `Q`: close the milter connection; never answered.
    Quit,
    /// `K`: the SMTP session ended but the MTA keeps this milter connection for another;
    /// never answered.
    QuitNewConnection,
    /// `U`: an SMTP command the MTA did not recognise, the whole line.
    Unknown(Vec<u8>),
}

/// Why a packet is not a command we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A command byte the protocol does not define.
    #[error("unknown milter command 0x{0:02x}")]
    UnknownCommand(u8),
    /// The data does not have the layout of its command.
    #[error("malformed milter packet: {0}")]
    Malformed(&'static str),
    /// A text field is not valid UTF-8 (see the module documentation).
    #[error("milter command {:?}: {field} is not UTF-8", char::from(*.command))]
    NotUtf8 {
        /// The command byte of the packet.
        command: u8,
        /// Which field.
        field: &'static str,
    },
}

impl Command {
    /// The framed packet an MTA sends for this command (the layout Postfix's milter8.c
    /// writes), the inverse of `decode`: for tests, fuzzing and scripted MTA dialogues.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let cmd = self;
        fn strings(code: u8, items: &[&[u8]], out: &mut Vec<u8>) {
            let mut data = Vec::new();
            for item in items {
                data.extend_from_slice(item);
                data.push(0);
            }
            write(code, &data, out);
        }
        match cmd {
            Command::Optneg {
                version,
                actions,
                protocol,
            } => {
                let mut data = Vec::new();
                for w in [version, actions, protocol] {
                    data.extend_from_slice(&w.to_be_bytes());
                }
                write(b'O', &data, out);
            }
            Command::Macros { stage, pairs } => {
                let mut data = vec![*stage];
                for (n, v) in pairs {
                    for s in [n, v] {
                        data.extend_from_slice(s.as_bytes());
                        data.push(0);
                    }
                }
                write(b'D', &data, out);
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                let mut data = hostname.as_bytes().to_vec();
                data.push(0);
                let fam = match family {
                    Family::Inet => b'4',
                    Family::Inet6 => b'6',
                    Family::Unix => b'L',
                    Family::Unknown => b'U',
                };
                data.push(fam);
                if *family != Family::Unknown {
                    data.extend_from_slice(&port.to_be_bytes());
                    data.extend_from_slice(address.as_bytes());
                    data.push(0);
                }
                write(b'C', &data, out);
            }
            Command::Helo(h) => strings(b'H', &[h.as_bytes()], out),
            Command::Mail { sender, args } | Command::Rcpt { rcpt: sender, args } => {
                let code = if matches!(cmd, Command::Mail { .. }) {
                    b'M'
                } else {
                    b'R'
                };
                let mut items = vec![sender.as_bytes()];
                items.extend(args.iter().map(|a| a.as_bytes()));
                strings(code, &items, out);
            }
            Command::Data => write(b'T', b"", out),
            Command::Header { name, value } => {
                strings(b'L', &[name.as_bytes(), value.as_slice()], out)
            }
            Command::EndOfHeaders => write(b'N', b"", out),
            Command::Body(b) => write(b'B', b, out),
            Command::EndOfMessage(b) => write(b'E', b, out),
            Command::Abort => write(b'A', b"", out),
            Command::Quit => write(b'Q', b"", out),
            Command::QuitNewConnection => write(b'K', b"", out),
            Command::Unknown(line) => strings(b'U', &[line.as_slice()], out),
        }
    }

    /// Decodes one packet from the MTA.
    pub fn decode(packet: Packet) -> Result<Command, DecodeError> {
        let Packet { code, data } = packet;
        match code {
            SMFIC_OPTNEG => optneg(&data),
            SMFIC_MACRO => macros(&data),
            SMFIC_CONNECT => connect(&data),
            SMFIC_HELO => Ok(Command::Helo(text(
                only_cstr(&data, "helo: name without NUL", "helo: data after the name")?,
                code,
                "HELO name",
            )?)),
            SMFIC_MAIL => {
                let (sender, args) = envelope(&data, code, "mail: no sender")?;
                Ok(Command::Mail { sender, args })
            }
            SMFIC_RCPT => {
                let (rcpt, args) = envelope(&data, code, "rcpt: no recipient")?;
                Ok(Command::Rcpt { rcpt, args })
            }
            SMFIC_DATA => Ok(Command::Data),
            SMFIC_HEADER => header(&data),
            SMFIC_EOH => Ok(Command::EndOfHeaders),
            SMFIC_BODY => Ok(Command::Body(data)),
            SMFIC_BODYEOB => Ok(Command::EndOfMessage(data)),
            SMFIC_ABORT => Ok(Command::Abort),
            SMFIC_QUIT => Ok(Command::Quit),
            SMFIC_QUIT_NC => Ok(Command::QuitNewConnection),
            SMFIC_UNKNOWN => Ok(Command::Unknown(
                only_cstr(
                    &data,
                    "unknown: line without NUL",
                    "unknown: data after the line",
                )?
                .to_vec(),
            )),
            other => Err(DecodeError::UnknownCommand(other)),
        }
    }

    /// The metric label of this command (a fixed set, one per kind).
    pub fn label(&self) -> &'static str {
        match self {
            Command::Optneg { .. } => "optneg",
            Command::Macros { .. } => "macro",
            Command::Connect { .. } => "connect",
            Command::Helo(_) => "helo",
            Command::Mail { .. } => "mail",
            Command::Rcpt { .. } => "rcpt",
            Command::Data => "data",
            Command::Header { .. } => "header",
            Command::EndOfHeaders => "eoh",
            Command::Body(_) => "body",
            Command::EndOfMessage(_) => "eom",
            Command::Abort => "abort",
            Command::Quit => "quit",
            Command::QuitNewConnection => "quit_nc",
            Command::Unknown(_) => "unknown",
        }
    }
}

/// The client's IP address from a CONNECT's family and address, `None` for `Unix`,
/// `Unknown` or text that is no IP address. Accepts Sendmail's `IPv6:` prefix.
pub fn client_ip(family: Family, address: &str) -> Option<IpAddr> {
    match family {
        Family::Inet => address.parse().ok().filter(IpAddr::is_ipv4),
        Family::Inet6 => {
            let bare = match address.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("ipv6:") => &address[5..],
                _ => address,
            };
            bare.parse().ok().filter(IpAddr::is_ipv6)
        }
        Family::Unix | Family::Unknown => None,
    }
}

fn optneg(data: &[u8]) -> Result<Command, DecodeError> {
    let word = |i: usize| -> Result<u32, DecodeError> {
        data.get(i * 4..i * 4 + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map(u32::from_be_bytes)
            .ok_or(DecodeError::Malformed("optneg: shorter than 12 octets"))
    };
    Ok(Command::Optneg {
        version: word(0)?,
        actions: word(1)?,
        protocol: word(2)?,
    })
}

fn macros(data: &[u8]) -> Result<Command, DecodeError> {
    let Some((&stage, rest)) = data.split_first() else {
        return Err(DecodeError::Malformed("macro: no command code"));
    };
    let fields = cstrings(rest, "macro: last string without NUL")?;
    if fields.len() % 2 != 0 {
        return Err(DecodeError::Malformed("macro: name without a value"));
    }
    let pairs = fields
        .chunks_exact(2)
        .map(|pair| {
            Ok((
                text(pair[0], SMFIC_MACRO, "macro name")?,
                text(pair[1], SMFIC_MACRO, "macro value")?,
            ))
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Command::Macros { stage, pairs })
}

fn connect(data: &[u8]) -> Result<Command, DecodeError> {
    let (host, rest) = cstr(data, "connect: host name without NUL")?;
    let hostname = text(host, SMFIC_CONNECT, "host name")?;
    let Some((&family, rest)) = rest.split_first() else {
        return Err(DecodeError::Malformed("connect: no address family"));
    };
    let (family, port, address) = match family {
        b'U' => (Family::Unknown, 0, &[][..]),
        b'4' | b'6' => {
            let (port, rest) = port(rest)?;
            let family = if family == b'4' {
                Family::Inet
            } else {
                Family::Inet6
            };
            (family, port, address_field(rest)?)
        }
        // Postfix and Sendmail send a port of 0 before the path (the libmilter layout); a
        // path without it is accepted too. A path never starts with NUL, so two NULs mean
        // the port field.
        b'L' if rest.starts_with(&[0, 0]) => {
            let (port, rest) = port(rest)?;
            (Family::Unix, port, address_field(rest)?)
        }
        b'L' => (Family::Unix, 0, address_field(rest)?),
        _ => return Err(DecodeError::Malformed("connect: unknown address family")),
    };
    Ok(Command::Connect {
        hostname,
        family,
        port,
        address: text(address, SMFIC_CONNECT, "client address")?,
    })
}

fn port(rest: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    match rest.split_first_chunk::<2>() {
        Some((p, rest)) => Ok((u16::from_be_bytes(*p), rest)),
        None => Err(DecodeError::Malformed("connect: no port")),
    }
}

fn address_field(rest: &[u8]) -> Result<&[u8], DecodeError> {
    only_cstr(
        rest,
        "connect: address without NUL",
        "connect: data after the address",
    )
}

fn envelope(
    data: &[u8],
    code: u8,
    empty: &'static str,
) -> Result<(String, Vec<String>), DecodeError> {
    let fields = cstrings(data, "mail/rcpt: last argument without NUL")?;
    let Some((&addr, args)) = fields.split_first() else {
        return Err(DecodeError::Malformed(empty));
    };
    let args = args
        .iter()
        .map(|a| text(a, code, "ESMTP parameter"))
        .collect::<Result<_, _>>()?;
    Ok((text(addr, code, "address")?, args))
}

fn header(data: &[u8]) -> Result<Command, DecodeError> {
    let (name, rest) = cstr(data, "header: name without NUL")?;
    let (value, rest) = cstr(rest, "header: value without NUL")?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed("header: data after the value"));
    }
    Ok(Command::Header {
        name: text(name, SMFIC_HEADER, "header name")?,
        value: value.to_vec(),
    })
}

/// The bytes up to the first NUL, and what follows that NUL.
fn cstr<'a>(data: &'a [u8], missing: &'static str) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
    let pos = memchr::memchr(0, data).ok_or(DecodeError::Malformed(missing))?;
    Ok((&data[..pos], &data[pos + 1..]))
}

/// Exactly one NUL-terminated string and nothing after it.
fn only_cstr<'a>(
    data: &'a [u8],
    missing: &'static str,
    extra: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let (s, rest) = cstr(data, missing)?;
    if rest.is_empty() {
        Ok(s)
    } else {
        Err(DecodeError::Malformed(extra))
    }
}

/// A sequence of NUL-terminated strings (none when `data` is empty).
fn cstrings<'a>(data: &'a [u8], unterminated: &'static str) -> Result<Vec<&'a [u8]>, DecodeError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = data.strip_suffix(&[0]) else {
        return Err(DecodeError::Malformed(unterminated));
    };
    Ok(body.split(|&b| b == 0).collect())
}

fn text(bytes: &[u8], command: u8, field: &'static str) -> Result<String, DecodeError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| DecodeError::NotUtf8 { command, field })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::packet::{Framer, write};
    use crate::milter::testkit::{Rng, pieces, rand_bytes, rand_command};

    fn pkt(code: u8, data: &[u8]) -> Packet {
        Packet {
            code,
            data: data.to_vec(),
        }
    }

    fn dec(code: u8, data: &[u8]) -> Result<Command, DecodeError> {
        Command::decode(pkt(code, data))
    }

    fn malformed(code: u8, data: &[u8]) -> &'static str {
        match dec(code, data) {
            Err(DecodeError::Malformed(m)) => m,
            other => panic!(
                "{:?} {data:?}: expected Malformed, got {other:?}",
                code as char
            ),
        }
    }

    #[test]
    fn optneg_from_postfix_and_extra_words_ignored() {
        let data = [0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff];
        let want = Command::Optneg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        };
        assert_eq!(dec(b'O', &data), Ok(want.clone()));
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert_eq!(dec(b'O', &longer), Ok(want));
        assert_eq!(
            malformed(b'O', &data[..11]),
            "optneg: shorter than 12 octets"
        );
        assert!(dec(b'O', b"").is_err());
    }

    #[test]
    fn macros_for_connect_as_postfix_sends_them() {
        let data = b"Cj\0milter.test\0{daemon_name}\0milter.test\0v\0Postfix 3.7.11\0_\0localhost [127.0.0.1]\0";
        let Ok(Command::Macros { stage, pairs }) = dec(b'D', data) else {
            panic!("not macros");
        };
        assert_eq!(stage, b'C');
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[1], ("{daemon_name}".into(), "milter.test".into()));
        assert_eq!(pairs[3], ("_".into(), "localhost [127.0.0.1]".into()));
    }

    #[test]
    fn empty_macro_packet_before_helo() {
        assert_eq!(
            dec(b'D', b"H"),
            Ok(Command::Macros {
                stage: b'H',
                pairs: vec![]
            })
        );
        // An empty value is a value.
        assert_eq!(
            dec(b'D', b"Mi\0\0"),
            Ok(Command::Macros {
                stage: b'M',
                pairs: vec![("i".into(), String::new())]
            })
        );
    }

    #[test]
    fn malformed_macros() {
        assert_eq!(malformed(b'D', b""), "macro: no command code");
        assert_eq!(malformed(b'D', b"Cj\0"), "macro: name without a value");
        assert_eq!(malformed(b'D', b"Cj\0x"), "macro: last string without NUL");
        assert_eq!(
            dec(b'D', b"Cj\0\xff\0"),
            Err(DecodeError::NotUtf8 {
                command: b'D',
                field: "macro value"
            })
        );
    }

    #[test]
    fn connect_ipv4_from_the_capture() {
        let mut data = b"localhost\x004".to_vec();
        data.extend_from_slice(&44548u16.to_be_bytes());
        data.extend_from_slice(b"127.0.0.1\0");
        assert_eq!(
            dec(b'C', &data),
            Ok(Command::Connect {
                hostname: "localhost".into(),
                family: Family::Inet,
                port: 44548,
                address: "127.0.0.1".into(),
            })
        );
    }

    #[test]
    fn connect_ipv6_unix_and_unknown() {
        let Ok(Command::Connect {
            family, address, ..
        }) = dec(b'C', b"[2001:db8::1]\x006\x00\x19IPv6:2001:db8::1\0")
        else {
            panic!()
        };
        assert_eq!(
            (family, address.as_str()),
            (Family::Inet6, "IPv6:2001:db8::1")
        );
        // Unix with the libmilter/Postfix port field (0) and without it.
        for data in [
            &b"localhost\0L\0\0/run/smtp.sock\0"[..],
            b"localhost\0L/run/smtp.sock\0",
        ] {
            assert_eq!(
                dec(b'C', data),
                Ok(Command::Connect {
                    hostname: "localhost".into(),
                    family: Family::Unix,
                    port: 0,
                    address: "/run/smtp.sock".into(),
                }),
                "{data:?}"
            );
        }
        let Ok(Command::Connect { address, .. }) = dec(b'C', b"localhost\0L\0") else {
            panic!("an empty path is a path")
        };
        assert_eq!(address, "");
        assert_eq!(
            dec(b'C', b"unknown\0U"),
            Ok(Command::Connect {
                hostname: "unknown".into(),
                family: Family::Unknown,
                port: 0,
                address: String::new(),
            })
        );
    }

    #[test]
    fn malformed_connect() {
        assert_eq!(malformed(b'C', b"host"), "connect: host name without NUL");
        assert_eq!(malformed(b'C', b"host\0"), "connect: no address family");
        assert_eq!(
            malformed(b'C', b"host\0X\0\0a\0"),
            "connect: unknown address family"
        );
        assert_eq!(malformed(b'C', b"host\x004\x01"), "connect: no port");
        assert_eq!(
            malformed(b'C', b"host\x004\x01\x02"),
            "connect: address without NUL"
        );
        assert_eq!(
            malformed(b'C', b"host\x004\0\x191.2.3.4"),
            "connect: address without NUL"
        );
        assert_eq!(
            malformed(b'C', b"host\x004\0\x191.2.3.4\0junk\0"),
            "connect: data after the address"
        );
        assert_eq!(
            malformed(b'C', b"host\0L\0\0"),
            "connect: address without NUL"
        );
        assert_eq!(
            malformed(b'C', b"host\0L/x\0y\0"),
            "connect: data after the address"
        );
        assert_eq!(
            dec(b'C', b"h\xe9\x004\0\x191.2.3.4\0"),
            Err(DecodeError::NotUtf8 {
                command: b'C',
                field: "host name"
            })
        );
    }

    #[test]
    fn client_ip_parses_both_families() {
        assert_eq!(
            client_ip(Family::Inet, "192.0.2.7"),
            "192.0.2.7".parse().ok()
        );
        assert_eq!(
            client_ip(Family::Inet6, "2001:db8::1"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(
            client_ip(Family::Inet6, "IPv6:2001:db8::1"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(
            client_ip(Family::Inet, "2001:db8::1"),
            None,
            "family must agree"
        );
        assert_eq!(client_ip(Family::Inet6, "192.0.2.7"), None);
        assert_eq!(client_ip(Family::Unix, "/run/x"), None);
        assert_eq!(client_ip(Family::Inet, "unknown"), None);
        assert_eq!(
            client_ip(Family::Inet6, "ipv6é"),
            None,
            "no panic on a char boundary"
        );
    }

    #[test]
    fn helo() {
        assert_eq!(
            dec(b'H', b"client.example\0"),
            Ok(Command::Helo("client.example".into()))
        );
        assert_eq!(malformed(b'H', b"client.example"), "helo: name without NUL");
        assert_eq!(malformed(b'H', b""), "helo: name without NUL");
        assert_eq!(malformed(b'H', b"a\0b\0"), "helo: data after the name");
        assert_eq!(
            dec(b'H', b"\xc3\x28\0"),
            Err(DecodeError::NotUtf8 {
                command: b'H',
                field: "HELO name"
            })
        );
    }

    #[test]
    fn mail_and_rcpt_with_esmtp_args() {
        assert_eq!(
            dec(b'M', b"<good@example.org>\0SIZE=123\0BODY=8BITMIME\0"),
            Ok(Command::Mail {
                sender: "<good@example.org>".into(),
                args: vec!["SIZE=123".into(), "BODY=8BITMIME".into()],
            })
        );
        assert_eq!(
            dec(b'M', b"<>\0"),
            Ok(Command::Mail {
                sender: "<>".into(),
                args: vec![]
            })
        );
        assert_eq!(
            dec(b'R', b"<alice@example.net>\0"),
            Ok(Command::Rcpt {
                rcpt: "<alice@example.net>".into(),
                args: vec![]
            })
        );
        assert_eq!(
            dec(b'R', "<jös@exämple.net>\0".as_bytes()),
            Ok(Command::Rcpt {
                rcpt: "<jös@exämple.net>".into(),
                args: vec![]
            }),
            "SMTPUTF8 addresses are UTF-8"
        );
    }

    #[test]
    fn malformed_mail_and_rcpt() {
        assert_eq!(malformed(b'M', b""), "mail: no sender");
        assert_eq!(malformed(b'R', b""), "rcpt: no recipient");
        assert_eq!(
            malformed(b'M', b"<a@b>"),
            "mail/rcpt: last argument without NUL"
        );
        assert_eq!(
            malformed(b'R', b"<a@b>\0SIZE=1"),
            "mail/rcpt: last argument without NUL"
        );
        assert_eq!(
            dec(b'M', b"<a\xff@b>\0"),
            Err(DecodeError::NotUtf8 {
                command: b'M',
                field: "address"
            })
        );
        assert_eq!(
            dec(b'R', b"<a@b>\0X=\xff\0"),
            Err(DecodeError::NotUtf8 {
                command: b'R',
                field: "ESMTP parameter"
            })
        );
    }

    #[test]
    fn header_keeps_value_bytes() {
        assert_eq!(
            dec(b'L', b"Subject\0 =?x?= caf\xe9\n\tmore\0"),
            Ok(Command::Header {
                name: "Subject".into(),
                value: b" =?x?= caf\xe9\n\tmore".to_vec(),
            })
        );
        assert_eq!(
            dec(b'L', b"X-Empty\0\0"),
            Ok(Command::Header {
                name: "X-Empty".into(),
                value: vec![]
            })
        );
        assert_eq!(malformed(b'L', b"Subject"), "header: name without NUL");
        assert_eq!(malformed(b'L', b"Subject\0x"), "header: value without NUL");
        assert_eq!(
            malformed(b'L', b"Subject\0x\0y"),
            "header: data after the value"
        );
        assert_eq!(
            dec(b'L', b"Subj\xe9ct\0x\0"),
            Err(DecodeError::NotUtf8 {
                command: b'L',
                field: "header name"
            })
        );
    }

    #[test]
    fn body_and_end_of_message_are_raw() {
        let chunk: Vec<u8> = (0..=255).cycle().take(65535).collect();
        assert_eq!(dec(b'B', &chunk), Ok(Command::Body(chunk)));
        assert_eq!(dec(b'B', b""), Ok(Command::Body(vec![])));
        assert_eq!(dec(b'E', b""), Ok(Command::EndOfMessage(vec![])));
        assert_eq!(
            dec(b'E', b"tail\r\n"),
            Ok(Command::EndOfMessage(b"tail\r\n".to_vec()))
        );
    }

    #[test]
    fn bare_commands_ignore_data() {
        for (code, want) in [
            (b'T', Command::Data),
            (b'N', Command::EndOfHeaders),
            (b'A', Command::Abort),
            (b'Q', Command::Quit),
            (b'K', Command::QuitNewConnection),
        ] {
            assert_eq!(dec(code, b""), Ok(want.clone()));
            assert_eq!(dec(code, b"junk"), Ok(want));
        }
    }

    #[test]
    fn unknown_smtp_command_line() {
        assert_eq!(
            dec(b'U', b"XFOO bar\xff\0"),
            Ok(Command::Unknown(b"XFOO bar\xff".to_vec()))
        );
        assert_eq!(malformed(b'U', b"XFOO"), "unknown: line without NUL");
        assert_eq!(malformed(b'U', b"XFOO\0x"), "unknown: data after the line");
    }

    #[test]
    fn unknown_command_bytes() {
        for code in [0u8, b'c', b'X', b'y', 0xff] {
            assert_eq!(dec(code, b""), Err(DecodeError::UnknownCommand(code)));
        }
        assert_eq!(
            DecodeError::UnknownCommand(b'X').to_string(),
            "unknown milter command 0x58"
        );
        assert_eq!(
            DecodeError::NotUtf8 {
                command: b'M',
                field: "address"
            }
            .to_string(),
            "milter command 'M': address is not UTF-8"
        );
    }

    #[test]
    fn labels() {
        let all = [
            (dec(b'O', &[0; 12]), "optneg"),
            (dec(b'D', b"C"), "macro"),
            (dec(b'C', b"h\0U"), "connect"),
            (dec(b'H', b"h\0"), "helo"),
            (dec(b'M', b"<>\0"), "mail"),
            (dec(b'R', b"<a@b>\0"), "rcpt"),
            (dec(b'T', b""), "data"),
            (dec(b'L', b"a\0b\0"), "header"),
            (dec(b'N', b""), "eoh"),
            (dec(b'B', b""), "body"),
            (dec(b'E', b""), "eom"),
            (dec(b'A', b""), "abort"),
            (dec(b'Q', b""), "quit"),
            (dec(b'K', b""), "quit_nc"),
            (dec(b'U', b"X\0"), "unknown"),
        ];
        for (cmd, label) in all {
            assert_eq!(cmd.unwrap().label(), label);
        }
    }

    /// Feeds `stream` to a framer in the given pieces and decodes every packet.
    fn run(
        stream_pieces: &[&[u8]],
        max: usize,
    ) -> (
        Vec<Result<Command, DecodeError>>,
        Option<crate::milter::packet::FrameError>,
    ) {
        let mut framer = Framer::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream_pieces {
            buf.extend_from_slice(piece);
            loop {
                match framer.next(&mut buf) {
                    Ok(Some(p)) => out.push(Command::decode(p)),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
            assert!(buf.len() < max + 5, "framer retained {} octets", buf.len());
        }
        (out, None)
    }

    #[test]
    fn round_trip_of_what_an_mta_sends_at_any_split() {
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for round in 0..300 {
            let cmds: Vec<Command> = (0..1 + rng.below(10))
                .map(|_| rand_command(&mut rng))
                .collect();
            let mut stream = Vec::new();
            for c in &cmds {
                c.encode(&mut stream);
            }
            let want: Vec<_> = cmds.into_iter().map(Ok).collect();
            let (whole, err) = run(&[&stream], 4096);
            assert_eq!(err, None);
            assert_eq!(whole, want, "round {round}");
            let (cut, err) = run(&pieces(&stream, &mut rng), 4096);
            assert_eq!(err, None);
            assert_eq!(cut, want, "round {round}: split changed the result");
        }
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut rng = Rng(0xfeed_5eed_0bad_c0de);
        let (mut decoded, mut refused, mut framing) = (0, 0, 0);
        for _ in 0..2000 {
            let max = 1 + rng.below(300);
            // Mostly plausible prefixes, so that decoding is reached often.
            let mut stream = Vec::new();
            for _ in 0..rng.below(8) {
                if rng.below(4) == 0 {
                    stream.extend(rand_bytes(&mut rng, 40, true));
                } else {
                    let code = b"OCDHMRTLNBEAQKUXc"[rng.below(17)];
                    write(code, &rand_bytes(&mut rng, max, true), &mut stream);
                }
            }
            let whole = run(&[&stream], max);
            let cut = run(&pieces(&stream, &mut rng), max);
            assert_eq!(whole, cut, "framing depends on the split points");
            decoded += whole.0.iter().filter(|c| c.is_ok()).count();
            refused += whole.0.iter().filter(|c| c.is_err()).count();
            framing += usize::from(whole.1.is_some());
        }
        // The generator reaches every outcome.
        assert!(
            decoded > 1000 && refused > 1000 && framing > 100,
            "{decoded} {refused} {framing}"
        );
    }
}
