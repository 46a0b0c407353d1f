//! The DKIM tag-list reader (src/checks/dkim.rs `tags`, through `portcullis::fuzzing`),
//! which names the tags of a DKIM-Signature that does not parse.
//!
//! Invariants: never panics; at most one tag per `;`-separated part; names are trimmed,
//! lower-case, and hold no `=` or `;`; values hold no white space and no `;`; nothing
//! grows beyond the input (three octets per input octet at most: invalid UTF-8 becomes
//! U+FFFD).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::fuzzing::dkim_tags;

fuzz_target!(|data: &[u8]| {
    let tags = dkim_tags(data);
    let parts = data.iter().filter(|&&b| b == b';').count() + 1;
    assert!(
        tags.len() <= parts,
        "{} tags from {parts} parts",
        tags.len()
    );
    for (name, value) in &tags {
        assert_eq!(name.trim(), name, "untrimmed name");
        assert!(!name.chars().any(|c| c.is_ascii_uppercase()), "{name:?}");
        assert!(!name.contains(['=', ';']), "{name:?}");
        assert!(!value.chars().any(char::is_whitespace), "{value:?}");
        assert!(!value.contains(';'), "{value:?}");
        assert!(name.len() + value.len() <= 3 * data.len());
    }
});
