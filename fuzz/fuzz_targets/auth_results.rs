//! The Authentication-Results writer (src/checks/auth_results.rs): our verdicts with any
//! reasons, addresses, DKIM tags and client address the sender can influence, for any
//! authserv-id the config accepts.
//!
//! Invariants: the field is one field: it starts `Authentication-Results: <id>`, ends in
//! CRLF, holds no CR or LF other than the CRLF + TAB folds and that final CRLF, no other
//! control character, only ASCII, and no line over 998 octets (RFC 5322 §2.1.1); `unfold`
//! reads it as one field; and the header filter recognises it as ours (what we write, we
//! would remove if a sender wrote it).

#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::checks::auth_results::AuthResults;
use portcullis::checks::dkim::DkimVerdict;
use portcullis::config::locate::Seg;
use portcullis::config::{Config, validate};
use portcullis::smtp::headers::{HeaderFilter, unfold};

/// The result words the checks report (RFC 8601 §2.7).
const WORDS: &[&str] = &[
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
    "policy",
];

#[derive(Debug, Arbitrary)]
enum Entry {
    Spf {
        result: u8,
        reason: Option<String>,
        mail_from: String,
        helo: String,
    },
    Dkim {
        result: u8,
        reason: Option<String>,
        domain: Option<String>,
        selector: Option<String>,
        algorithm: Option<String>,
        b_prefix: Option<String>,
    },
    Arc {
        result: u8,
        reason: Option<String>,
        ip: IpAddr,
    },
    Dmarc {
        result: u8,
        reason: Option<String>,
        header_from: String,
        policy: String,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    authserv_id: Option<String>,
    entries: Vec<Entry>,
}

fn word(n: u8) -> &'static str {
    WORDS[usize::from(n) % WORDS.len()]
}

/// The authserv-id as the config would give it: `auth.authserv_id` if the config's own
/// validation accepts it, else the default host name.
fn authserv_id(id: Option<String>) -> String {
    let mut config = Config::default();
    config.auth.authserv_id = id;
    let refused = validate::validate(&config)
        .iter()
        .any(|p| p.path.contains(&Seg::Key("authserv_id")));
    if refused {
        config.auth.authserv_id = None;
    }
    config.authserv_id().to_string()
}

fuzz_target!(|input: Input| {
    let id = authserv_id(input.authserv_id);
    let mut ar = AuthResults::new(&id);
    for entry in input.entries.into_iter().take(8) {
        match entry {
            Entry::Spf {
                result,
                reason,
                mail_from,
                helo,
            } => ar.spf(word(result), reason.as_deref(), &mail_from, &helo),
            Entry::Dkim {
                result,
                reason,
                domain,
                selector,
                algorithm,
                b_prefix,
            } => ar.dkim(&DkimVerdict {
                result: word(result),
                reason,
                domain,
                selector,
                algorithm,
                b_prefix,
                body_length: None,
            }),
            Entry::Arc { result, reason, ip } => ar.arc(word(result), reason.as_deref(), ip),
            Entry::Dmarc {
                result,
                reason,
                header_from,
                policy,
            } => ar.dmarc(word(result), reason.as_deref(), &header_from, &policy),
        }
    }
    let header = ar.to_header();
    let prefix = format!("Authentication-Results: {id}");
    assert!(header.starts_with(&prefix), "{header:?}");
    assert!(header.ends_with("\r\n"), "{header:?}");
    assert!(header.is_ascii(), "non-ASCII in {header:?}");
    let body = &header[..header.len() - 2];
    for (n, line) in body.split("\r\n\t").enumerate() {
        assert!(
            !line.chars().any(|c| c.is_ascii_control()),
            "a control character in line {n} of {header:?}"
        );
        let octets = line.len() + if n == 0 { 0 } else { 1 };
        assert!(octets <= 998, "line {n} is {octets} octets: {header:?}");
    }
    let fields = unfold(header.as_bytes());
    assert_eq!(fields.len(), 1, "{fields:?}");
    // What we write is what the filter removes from a sender.
    let mut filter = HeaderFilter::new(Some(&id));
    let mut out = Vec::new();
    filter.push(header.as_bytes(), &mut out);
    filter.push(b"\r\nbody\r\n", &mut out);
    filter.finish(&mut out);
    assert_eq!(
        filter.removed(),
        1,
        "our own field is not recognised as ours: {header:?}"
    );
    assert_eq!(out, b"\r\nbody\r\n");
});
