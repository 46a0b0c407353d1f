//! The byte-level framing of src/smtp/codec.rs: `LineFramer` (command lines) and
//! `BodyDecoder` for DATA and for BDAT, fed random bytes cut at random split points.
//!
//! Invariants:
//! - framer: the frames are exactly those of the whole input, whatever the cuts: every
//!   complete line of at most `max` octets comes out whole, every longer line as one
//!   `TooLong`, and the buffer never holds `max` octets or more after `NeedMore`;
//! - DATA: the result (content, end seen, bytes consumed, bare line endings) does not depend
//!   on the cuts; the data ends exactly at the first `CRLF . CRLF` (or a leading `. CRLF`)
//!   and nowhere else; the content has CRLF line endings only; it is never longer than the
//!   input plus one octet per CR or LF read; stuffing it again and decoding gives it back;
//! - BDAT: every octet is consumed, no end marker exists, and the content is the input with
//!   each bare CR and bare LF turned into CRLF and NUL bytes left out (and flagged).

#![no_main]

mod common;

use common::{Rng, find, pieces};
use libfuzzer_sys::fuzz_target;
use portcullis::smtp::codec::{BodyDecoder, Frame, LineFramer, dot_stuff};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(first) * 4;
    let mut rng = Rng::from_bytes(data);
    framer(input, max, &mut rng);
    let whole = data_decode(&[input]);
    let cut = data_decode(&pieces(input, &mut rng));
    assert_eq!(whole, cut, "DATA result depends on the split points");
    data_invariants(input, &whole);
    bdat(input, &mut rng);
});

fn framer(input: &[u8], max: usize, rng: &mut Rng) {
    let mut f = LineFramer::new(max);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for piece in pieces(input, rng) {
        buf.extend_from_slice(piece);
        loop {
            match f.next(&mut buf) {
                Frame::NeedMore => break,
                frame => frames.push(frame),
            }
        }
        assert!(
            buf.len() < max,
            "framer holds {} >= {max} octets",
            buf.len()
        );
    }
    let expected: Vec<Frame> = input
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\n"))
        .map(|l| {
            if l.len() <= max {
                Frame::Line(l.to_vec())
            } else {
                Frame::TooLong
            }
        })
        .collect();
    assert_eq!(frames, expected, "max {max}");
}

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    out: Vec<u8>,
    done: bool,
    used: usize,
    bare: bool,
}

fn data_decode(pieces: &[&[u8]]) -> Decoded {
    let mut d = BodyDecoder::data();
    let mut out = Vec::new();
    let mut used = 0;
    for piece in pieces {
        let (n, done) = d.decode(piece, &mut out);
        used += n;
        if done {
            return Decoded {
                out,
                done,
                used,
                bare: d.saw_bare_line_ending(),
            };
        }
        assert_eq!(n, piece.len(), "bytes left over without the end marker");
    }
    Decoded {
        out,
        done: false,
        used,
        bare: d.saw_bare_line_ending(),
    }
}

fn data_invariants(input: &[u8], d: &Decoded) {
    // Only CRLF "." CRLF ends DATA: the first one in the stream, or ". CRLF" at its start.
    let end = if input.starts_with(b".\r\n") {
        Some(3)
    } else {
        find(input, b"\r\n.\r\n").map(|i| i + 5)
    };
    assert_eq!(d.done, end.is_some(), "end of data");
    if let Some(end) = end {
        assert_eq!(d.used, end, "ended somewhere else than the first CRLF.CRLF");
    } else {
        assert_eq!(d.used, input.len());
    }
    crlf_only(&d.out);
    let read = &input[..d.used];
    let line_ends = read.iter().filter(|&&b| b == b'\r' || b == b'\n').count();
    assert!(
        d.out.len() <= read.len() + line_ends,
        "content {} > input {} + line ends {line_ends}",
        d.out.len(),
        read.len()
    );
    // What the relay sends (re-stuffed, terminated) decodes to the same content.
    let mut stuffed = Vec::new();
    let mut at_line_start = true;
    dot_stuff(&d.out, &mut at_line_start, &mut stuffed);
    if !at_line_start {
        stuffed.extend_from_slice(b"\r\n");
    }
    stuffed.extend_from_slice(b".\r\n");
    let again = data_decode(&[&stuffed]);
    assert!(again.done && !again.bare && again.used == stuffed.len());
    let mut expected = d.out.clone();
    if !expected.is_empty() && !expected.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(again.out, expected, "re-stuffed content changed");
}

fn bdat(input: &[u8], rng: &mut Rng) {
    let mut d = BodyDecoder::bdat();
    let mut out = Vec::new();
    for piece in pieces(input, rng) {
        let (n, done) = d.decode(piece, &mut out);
        assert!(!done, "BDAT has no end marker");
        assert_eq!(n, piece.len());
    }
    d.finish(&mut out);
    // The reference: CRLF stays, a bare CR or LF becomes CRLF, NUL bytes are left out
    // (and flagged), everything else is copied.
    let mut expected = Vec::with_capacity(input.len() * 2);
    let mut bare = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == 0 {
            i += 1;
            continue;
        }
        match (input[i], input.get(i + 1)) {
            (b'\r', Some(&b'\n')) => {
                expected.extend_from_slice(b"\r\n");
                i += 1;
            }
            (b'\r' | b'\n', _) => {
                expected.extend_from_slice(b"\r\n");
                bare = true;
            }
            (b, _) => expected.push(b),
        }
        i += 1;
    }
    assert_eq!(out, expected, "BDAT content");
    assert_eq!(d.saw_bare_line_ending(), bare);
    assert_eq!(d.saw_nul(), input.contains(&0));
}

/// Every CR is followed by LF and every LF follows a CR.
fn crlf_only(out: &[u8]) {
    for (i, &b) in out.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in the output at {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF in the output at {i}");
        }
    }
}
