//! `Command::parse` (src/smtp/command.rs) on any line, with and without the CRLF the line
//! framer leaves on it.
//!
//! Invariants: never panics; an error is one of our 5xx reply constants; a parsed command
//! names one of a fixed set of verbs (they become metric labels); names and paths carry no
//! line ending; a BDAT chunk size and a MAIL SIZE= are the numbers the client wrote
//! (a number too big for u64 is refused, never saturated, wrapped or cut), and a refused
//! BDAT's chunk is the size written;
//! a recipient runs through the relay check (`parse_mailbox`) without panicking, and a
//! mailbox it accepts has a lower-case LDH domain of at most 253 octets.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use portcullis::smtp::address::parse_mailbox;
use portcullis::smtp::command::{Command, Trailing};
use portcullis::smtp::reply;

/// Every verb `Command::verb` may return (smtp-proto's request names and ours).
const VERBS: &[&str] = &[
    "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "AUTH", "NOOP", "VRFY", "EXPN", "HELP",
    "ETRN", "ATRN", "BURL", "STARTTLS", "RSET", "QUIT",
];

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut line = data.to_vec();
    line.extend_from_slice(b"\r\n");
    check(&line);
});

fn check(line: &[u8]) {
    let cmd = match Command::parse(line) {
        Ok(cmd) => cmd,
        Err(invalid) => {
            let r = invalid.reply;
            assert!(
                reply::ALL.contains(&&r),
                "error reply is not one of ours: {r:?}"
            );
            assert!((500..600).contains(&r.code), "{r:?}");
            // A refused BDAT says what follows it: its chunk, of the size the client wrote,
            // or (no readable size) nothing that can be trusted.
            match invalid.trailing {
                Trailing::Chunk(size) => assert_eq!(
                    numbers_after(line, b"bdat").first().copied(),
                    Some(u128::from(size)),
                    "refused BDAT chunk {size} is not what the client wrote: {:?}",
                    String::from_utf8_lossy(line)
                ),
                Trailing::Unknown | Trailing::Nothing => {}
            }
            return;
        }
    };
    assert!(
        VERBS.contains(&cmd.verb()),
        "unbounded verb {:?}",
        cmd.verb()
    );
    match &cmd {
        Command::Ehlo(host) | Command::Helo(host) => one_line(host),
        Command::Mail(m) => {
            one_line(&m.address);
            if let Some(size) = m.size {
                assert!(size > 0, "SIZE=0 is no declaration");
                // One of the SIZE= parameters in the line says exactly this number (one
                // beyond u64 is refused, never saturated or wrapped).
                let written = numbers_after(line, b"size=");
                assert!(
                    written.iter().any(|&w| w == u128::from(size)),
                    "SIZE {size} is not what the client wrote: {written:?} in {:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        Command::Rcpt(to) => {
            one_line(to);
            for smtputf8 in [false, true] {
                if let Ok(mailbox) = parse_mailbox(to, smtputf8) {
                    assert!(!mailbox.local.is_empty());
                    let d = &mailbox.domain;
                    assert!(!d.is_empty() && d.len() <= 253, "{d:?}");
                    assert!(
                        d.bytes().all(|b| b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b == b'-'
                            || b == b'.'),
                        "{d:?}"
                    );
                }
            }
        }
        Command::Bdat { size, .. } => {
            // The first number after the verb is the chunk size, exactly.
            let written = numbers_after(line, b"bdat");
            assert_eq!(
                written.first().copied(),
                Some(*size as u128),
                "BDAT size {size} is not what the client wrote: {:?}",
                String::from_utf8_lossy(line)
            );
        }
        _ => {}
    }
}

fn one_line(s: &str) {
    assert!(!s.contains(['\r', '\n']), "line ending inside {s:?}");
}

/// The numbers that follow each occurrence of `key` (ASCII case-insensitive), after any
/// ASCII white space, saturating at `u128::MAX`.
fn numbers_after(line: &[u8], key: &[u8]) -> Vec<u128> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..]
        .windows(key.len())
        .position(|w| w.eq_ignore_ascii_case(key))
    {
        let mut i = from + at + key.len();
        // Words are separated by any ASCII white space, as `Command::parse` splits them.
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let mut value: Option<u128> = None;
        while let Some(&b) = line.get(i).filter(|b| b.is_ascii_digit()) {
            let v = value.unwrap_or(0);
            value = Some(v.saturating_mul(10).saturating_add(u128::from(b - b'0')));
            i += 1;
        }
        out.extend(value);
        from += at + 1;
    }
    out
}
