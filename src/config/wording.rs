//! serde's error messages in an operator's words: `expected usize` becomes "expected a whole
//! number", and an unknown key or value gets the closest known one as a "did you mean".
//!
//! Owns: rewriting the message text of a YAML error. Must not: change where an error is
//! (`Diagnostic` keeps serde's position) or drop what serde said about the value.

use super::suggest;

/// Rust type names in serde's `expected …` and what to say instead.
const TYPES: &[(&str, &str)] = &[
    ("expected usize", "expected a whole number"),
    ("expected u64", "expected a whole number"),
    ("expected u32", "expected a whole number"),
    ("expected u16", "expected a whole number"),
    ("expected u8", "expected a whole number"),
    ("expected i64", "expected a whole number"),
    ("expected i32", "expected a whole number"),
    ("expected f64", "expected a number"),
    ("expected f32", "expected a number"),
    ("expected a sequence", "expected a list"),
    ("expected a map", "expected a mapping of keys to values"),
];

/// The message in words, with a suggestion for an unknown field or variant.
pub fn humanize(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, words) in TYPES {
        if let Some(at) = out.find(rust) {
            // Only a whole word: `expected u8` must not rewrite `expected u80…`.
            let end = at + rust.len();
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.replace_range(at..end, words);
            }
        }
    }
    if let Some(at) = out.find(", expected struct ") {
        out.replace_range(at.., ", expected a mapping of keys to values");
    }
    with_suggestion(&out)
}

/// `unknown field `x`, expected one of `a`, `b`` (or `unknown variant`) with the closest
/// of the listed names as a "did you mean".
fn with_suggestion(message: &str) -> String {
    let Some((head, expected)) = message.split_once(", expected ") else {
        return message.to_string();
    };
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| head.find(p).map(|at| &head[at + p.len()..]))
        .and_then(|rest| rest.split('`').next());
    let Some(unknown) = unknown else {
        return message.to_string();
    };
    let known = expected.split('`').skip(1).step_by(2);
    match suggest::closest(unknown, known) {
        Some(best) => format!("{head}; did you mean `{best}`? (expected {expected})"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn rust_types_become_words() {
        assert_eq!(
            humanize("limits.max_recipients: invalid type: string \"lots\", expected usize"),
            "limits.max_recipients: invalid type: string \"lots\", expected a whole number"
        );
        assert_eq!(
            humanize("limits: invalid type: string \"x\", expected struct Limits"),
            "limits: invalid type: string \"x\", expected a mapping of keys to values"
        );
        assert_eq!(
            humanize("listen: invalid type: string \"a\", expected a sequence"),
            "listen: invalid type: string \"a\", expected a list"
        );
    }

    #[test]
    fn unknown_names_get_the_closest_known_one() {
        assert_eq!(
            humanize(
                "limits: unknown field `max_recipent`, expected one of `max_sessions`, `max_recipients`"
            ),
            "limits: unknown field `max_recipent`; did you mean `max_recipients`? \
             (expected one of `max_sessions`, `max_recipients`)"
        );
        assert_eq!(
            humanize("log.format: unknown variant `jsn`, expected `text` or `json`"),
            "log.format: unknown variant `jsn`; did you mean `json`? (expected `text` or `json`)"
        );
        let far = "limits: unknown field `colour`, expected one of `max_sessions`";
        assert_eq!(humanize(far), far);
    }
}
