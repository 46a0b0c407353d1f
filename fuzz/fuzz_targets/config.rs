//! `portcullis::config::parse` (src/config/mod.rs): YAML text to a validated `Config`.
//!
//! Invariants: never panics; an error is a non-empty list of diagnostics, each naming the
//! file and a 1-based line and column inside the text (or just past its end), with a
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
            let lines = text.lines().count().max(1);
            for d in &errors.0 {
                assert_eq!(d.file, FILE);
                assert!(d.line >= 1 && d.column >= 1, "{d}");
                assert!(d.line <= lines + 1, "{d}: the text has {lines} lines");
                assert!(!d.message.is_empty(), "{d:?}");
                assert!(d.to_string().starts_with(&format!("{FILE}:{}:{}: ", d.line, d.column)));
            }
        }
    }
});
