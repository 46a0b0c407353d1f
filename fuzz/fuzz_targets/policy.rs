//! The policy file compiler (src/policy/file.rs `compile(name, text, dir)`).
//!
//! Invariants: never panics; an error is a non-empty list of diagnostics, each at a 1-based
//! line and column inside the text (or just past its end) of the named file; a policy that
//! compiles has unique rule names, rule positions inside the text, and thresholds above 0
//! that grow (tag < quarantine < reject).
//!
//! List files (`cidr_file`, `in_file`) are read relative to a directory made here with two
//! small lists in it; inputs naming a path with a `/` in any string are skipped, so that the
//! fuzzer reads nothing outside that directory (a policy file is the operator's, and may
//! name any file on purpose: `/dev/zero` would only be a slow fuzzer).

#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_norway::Value;

const FILE: &str = "fuzz-policy.yaml";

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("portcullis-fuzz-policy");
        std::fs::create_dir_all(&dir).expect("list dir");
        std::fs::write(
            dir.join("nets.txt"),
            "# trusted\n192.0.2.0/24\n2001:db8::/32\n198.51.100.7\n",
        )
        .expect("nets.txt");
        std::fs::write(
            dir.join("words.txt"),
            "spam.example\n# comment\nbad.example  # trailing\n",
        )
        .expect("words.txt");
        std::fs::write(dir.join("bad-nets.txt"), "10.0.0.300/8\nnot a network\n")
            .expect("bad-nets.txt");
        dir
    })
}

/// True when some string in the document (key or value) contains a `/`.
fn names_a_path(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('/'),
        Value::Sequence(items) => items.iter().any(names_a_path),
        Value::Mapping(map) => map.iter().any(|(k, v)| names_a_path(k) || names_a_path(v)),
        Value::Tagged(t) => names_a_path(&t.value),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_norway::from_str::<Value>(text) {
        Ok(v) if names_a_path(&v) => return,
        Err(_) if text.contains('/') => return,
        _ => {}
    }
    // Lines as YAML counts them (a lone CR, NEL, LS and PS end a line too), at most.
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    let in_text = |(line, column): (usize, usize)| line >= 1 && column >= 1 && line <= lines + 1;
    match portcullis::policy::file::compile(FILE, text, dir()) {
        Ok(compiled) => {
            let mut names = HashSet::new();
            for rule in &compiled.rules {
                assert!(
                    names.insert(rule.name.clone()),
                    "duplicate rule {:?}",
                    rule.name
                );
                assert!(in_text(rule.at), "rule {:?} at {:?}", rule.name, rule.at);
            }
            let t = compiled.thresholds;
            let set: Vec<i64> = [t.tag, t.quarantine, t.reject]
                .into_iter()
                .flatten()
                .collect();
            assert!(set.iter().all(|&n| n > 0), "{t:?}");
            assert!(set.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "an error without a diagnostic");
            for d in &diagnostics {
                assert_eq!(d.file, FILE);
                assert!(
                    in_text((d.line, d.column)),
                    "{d}: the text has {lines} lines"
                );
                assert!(!d.message.is_empty(), "{d:?}");
                assert!(
                    d.to_string()
                        .starts_with(&format!("{FILE}:{}:{}: ", d.line, d.column))
                );
            }
        }
    }
});
