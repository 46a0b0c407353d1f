//! `portcullis::config::parse` (src/config/mod.rs): YAML text to a validated `Config`.
//!
//! Invariants: never panics; an error is a non-empty list of diagnostics, each naming the
//! file and a 1-based line and column inside the text (or just past its end; lines as YAML
//! counts them: a lone CR, NEL, LS and PS end a line too), with a
//! message, printed as `file:line:column: message`; a config that parses passes its own
//! validation again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::{self, validate};

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // A config file is read with read_to_string: only UTF-8 gets this far.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(FILE, text) {
        Ok(config) => {
            assert!(validate::validate(&config).is_empty());
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a diagnostic");
            let lines = yaml_lines(text);
            for d in &errors.0 {
                assert_eq!(d.file, FILE);
                assert!(d.line >= 1 && d.column >= 1, "{d}");
                assert!(d.line <= lines + 1, "{d}: the text has {lines} lines");
                assert!(!d.message.is_empty(), "{d:?}");
                assert!(
                    d.to_string()
                        .starts_with(&format!("{FILE}:{}:{}: ", d.line, d.column))
                );
            }
        }
    }
});

/// An upper bound of the lines YAML sees: it breaks lines at LF, CR, CRLF, NEL, LS and PS.
fn yaml_lines(text: &str) -> usize {
    1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}
