//! The header block on its way to the backend (src/smtp/headers.rs): `HeaderFilter`, which
//! removes the Authentication-Results fields that forge our authserv-id and any
//! `X-Portcullis-*` field, and `unfold`, which the header facts read.
//!
//! Input: the first byte seeds the split points; the rest is the message, where `0xFE n b`
//! stands for the byte `b` repeated `512 * n` times (`n` = 0: a literal 0xFE), so that short
//! inputs reach fields beyond the filter's 64 KiB hold limit.
//!
//! Invariants, for random chunks as for one push:
//! - the output never has, in its header block, a field at the start of a line that is an
//!   Authentication-Results field whose authserv-id (after CFWS, as a token or a quoted
//!   string, any case) is ours, nor an `X-Portcullis-*` field. The header block is read as
//!   the backend reads what we relay: up to the first empty line, the last line counting as
//!   a line even without its CRLF (the relay ends the content with one);
//! - the output is the input less whole fields, in order, and `removed()` counts them;
//!   the body (from the empty line on) is unchanged;
//! - the result does not depend on the chunking;
//! - `unfold` gives one entry per field, none empty or with a line ending in it.

#![no_main]

mod common;

use common::{Rng, pieces};
use libfuzzer_sys::fuzz_target;
use portcullis::smtp::headers::{HeaderFilter, unfold};

const ID: &str = "gw.example.test";
const MAX_INPUT: usize = 512 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some(message) = expand(data) else {
        return;
    };
    let mut rng = Rng::from_bytes(data);
    for id in [Some(ID), None] {
        let (whole, removed) = filter(id, &[&message]);
        let cut = filter(id, &pieces(&message, &mut rng));
        assert!(whole == cut.0, "output depends on the chunking");
        assert_eq!(removed, cut.1);
        check(id, &message, &whole, removed);
    }
    let fields = unfold(&message);
    for f in &fields {
        assert!(!f.is_empty() && !f.contains('\n'), "{f:?}");
    }
    if !message.contains(&b'\r') {
        let (head, _) = split(&message);
        assert_eq!(
            fields.len(),
            head.len(),
            "unfold and the filter disagree on the fields"
        );
    }
});

/// Expands `0xFE n b`; `None` past `MAX_INPUT`.
fn expand(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < data.len() {
        match (data[i], data.get(i + 1), data.get(i + 2)) {
            (0xFE, Some(&n), Some(&b)) if n > 0 => {
                out.extend(std::iter::repeat_n(b, 512 * usize::from(n)));
                i += 3;
            }
            (0xFE, Some(0), _) => {
                out.push(0xFE);
                i += 2;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
        if out.len() > MAX_INPUT {
            return None;
        }
    }
    Some(out)
}

fn filter(id: Option<&str>, pieces: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut f = HeaderFilter::new(id);
    let mut out = Vec::new();
    for piece in pieces {
        f.push(piece, &mut out);
    }
    f.finish(&mut out);
    (out, f.removed())
}

/// The header block as fields (a line not starting with SP or HT and the lines that do
/// after it; leading continuation lines form one field of their own), and the rest.
fn split(message: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let end = at + line.len();
        match fields.last_mut() {
            Some(last) if line.starts_with(b" ") || line.starts_with(b"\t") => last.1 = end,
            _ => fields.push((at, end)),
        }
        at = end;
    }
    (
        fields.into_iter().map(|(a, b)| &message[a..b]).collect(),
        &message[at..],
    )
}

fn check(id: Option<&str>, input: &[u8], out: &[u8], removed: usize) {
    let (in_fields, in_body) = split(input);
    let (out_fields, out_body) = split(out);
    assert_eq!(out_body, in_body, "the body changed");
    // The output fields are input fields, in order.
    let mut next = 0;
    for field in &out_fields {
        match in_fields[next..].iter().position(|f| f == field) {
            Some(k) => next += k + 1,
            None => panic!(
                "output field {:?} is not a whole input field",
                String::from_utf8_lossy(&field[..field.len().min(200)])
            ),
        }
    }
    assert_eq!(
        in_fields.len() - out_fields.len(),
        removed,
        "removed() miscounts"
    );
    for field in &out_fields {
        let name = field_name(field);
        assert!(
            !name.is_some_and(|n| n.len() > 13 && n[..13].eq_ignore_ascii_case(b"x-portcullis-")),
            "an X-Portcullis field got through"
        );
        if let Some(id) = id
            && name.is_some_and(|n| n.eq_ignore_ascii_case(b"authentication-results"))
        {
            let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
            let found = authserv_id(&field[colon + 1..]);
            assert!(
                !found.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(id)),
                "a forged Authentication-Results got through: {:?}",
                String::from_utf8_lossy(&field[..field.len().min(300)])
            );
        }
    }
}

/// The field name as RFC 5322 reads it: what precedes the first colon, less the white
/// space the obsolete syntax allows before the colon.
fn field_name(field: &[u8]) -> Option<&[u8]> {
    let colon = field.iter().position(|&b| b == b':')?;
    let mut name = &field[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    Some(name)
}

/// The authserv-id of an Authentication-Results value (RFC 8601 §2.2): after CFWS, a token
/// or a quoted string. `None` when there is none.
fn authserv_id(value: &[u8]) -> Option<String> {
    let v = value;
    let mut i = 0;
    // CFWS: white space, line breaks, nested comments with quoted pairs.
    loop {
        match v.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'(') => {
                let mut depth = 0usize;
                while let Some(&b) = v.get(i) {
                    match b {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if depth > 0 {
                    return None;
                }
            }
            _ => break,
        }
    }
    let mut id = Vec::new();
    if v.get(i) == Some(&b'"') {
        i += 1;
        loop {
            match v.get(i) {
                None => return None,
                Some(b'"') => break,
                Some(b'\\') => {
                    i += 1;
                    id.extend(v.get(i));
                }
                // Folding inside a quoted string is not part of it.
                Some(b'\r' | b'\n') => {}
                Some(&b) => id.push(b),
            }
            i += 1;
        }
    } else {
        while let Some(&b) = v.get(i) {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(') {
                break;
            }
            id.push(b);
            i += 1;
        }
    }
    (!id.is_empty()).then(|| String::from_utf8_lossy(&id).into_owned())
}
