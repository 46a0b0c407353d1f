//! The milter codec (src/milter): `Framer` and `Command::decode` on what an MTA could send,
//! and the checked responses (`ReplyCode::new`, `Response::add_header`) on what we would
//! send, fed random bytes cut at random split points.
//!
//! Input: the first byte sets the framer's limit (`1 + 64 * b` octets); the rest is the
//! stream from the MTA.
//!
//! Invariants:
//! - framing: the packets, and the framing error that ends them if any, are the same for
//!   random cuts as for the whole input; after `Ok(None)` the buffer holds less than
//!   `max + 4` octets; no packet is longer than `max`;
//! - decoding: a decoded command, encoded again as an MTA sends it, decodes to the same
//!   command; its label is one of the fixed set;
//! - responses, built from each packet's data: a reply code that `ReplyCode::new` accepts
//!   passes Postfix's own check (first digit 4 or 5, then two digits, a space, and the
//!   enhanced code's class equal to the first digit), is one line without NUL of at most 510
//!   octets once un-escaped, and un-escaping `%%` gives back exactly the line asked for; an
//!   accepted header field encodes to a packet whose two NUL-terminated fields are exactly
//!   the name and the value.

#![no_main]

mod common;

use common::{Rng, pieces};
use libfuzzer_sys::fuzz_target;
use portcullis::milter::command::Command;
use portcullis::milter::packet::{FrameError, Framer, Packet};
use portcullis::milter::response::{ReplyCode, Response};

const LABELS: &[&str] = &[
    "optneg", "macro", "connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom",
    "abort", "quit", "quit_nc", "unknown",
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(first) * 64;
    let mut rng = Rng::from_bytes(data);
    let whole = frame(&[input], max);
    let cut = frame(&pieces(input, &mut rng), max);
    assert_eq!(whole, cut, "framing depends on the split points");
    for packet in whole.0 {
        assert!(packet.data.len() < max, "packet over the limit");
        responses(&packet.data);
        decode(packet);
    }
});

fn frame(pieces: &[&[u8]], max: usize) -> (Vec<Packet>, Option<FrameError>) {
    let mut framer = Framer::new(max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match framer.next(&mut buf) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(buf.len() < max + 4, "framer retained {} octets", buf.len());
    }
    (out, None)
}

fn decode(packet: Packet) {
    let Ok(cmd) = Command::decode(packet) else {
        return;
    };
    assert!(LABELS.contains(&cmd.label()), "label {}", cmd.label());
    let mut again = Vec::new();
    cmd.encode(&mut again);
    let mut buf = again;
    let p = Framer::new(usize::MAX)
        .next(&mut buf)
        .expect("own packet frames")
        .expect("own packet is whole");
    assert!(buf.is_empty());
    assert_eq!(
        Command::decode(p).as_ref(),
        Ok(&cmd),
        "re-encoded command differs"
    );
}

/// Reply code and header field from `data`: two octets of code, then enhanced code, text
/// (or header name, value) separated by NUL.
fn responses(data: &[u8]) {
    let Some((code, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let code = u16::from_be_bytes(*code) % 1000;
    let mut parts = rest.splitn(3, |&b| b == 0);
    let a = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let b = String::from_utf8_lossy(parts.next().unwrap_or_default());
    reply_code(code, &a, &b);
    header(&a, &b);
}

fn reply_code(code: u16, enhanced: &str, text: &str) {
    let Ok(reply) = ReplyCode::new(code, enhanced, text) else {
        return;
    };
    let line = reply.wire();
    let w = line.as_bytes();
    // Postfix milter8.c's test for SMFIR_REPLYCODE.
    assert!(
        w.len() >= 5
            && (w[0] == b'4' || w[0] == b'5')
            && w[1].is_ascii_digit()
            && w[2].is_ascii_digit()
            && w[3] == b' '
            && w[4] == w[0],
        "Postfix would refuse {line:?}"
    );
    assert!(!line.contains(['\r', '\n', '\0']));
    let mut unescaped = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let next = chars.next();
            assert_eq!(next, Some('%'), "lone % in {line:?}");
            unescaped.push('%');
        } else {
            unescaped.push(c);
        }
    }
    let asked = if text.is_empty() {
        format!("{code} {enhanced}")
    } else {
        format!("{code} {enhanced} {text}")
    };
    assert_eq!(unescaped, asked);
    assert!(unescaped.len() <= 510);
    let mut out = Vec::new();
    Response::ReplyCode(reply.clone()).encode(&mut out);
    assert_eq!(&out[5..], [w, b"\0"].concat().as_slice());
}

fn header(name: &str, value: &str) {
    let Ok(r) = Response::add_header(name, value) else {
        return;
    };
    let mut out = Vec::new();
    r.encode(&mut out);
    assert_eq!(out[4], b'h');
    let fields: Vec<&[u8]> = out[5..].split(|&b| b == 0).collect();
    assert_eq!(
        fields,
        [name.as_bytes(), value.as_bytes(), b""],
        "fields shifted"
    );
}
