//! The message's header fields as facts, so policies can match them with regexes.
//!
//! Fact: `header`, one per field, as `Name: value` with folding undone (`(?i)^subject:.*`
//! matches the Subject). Bounded: the first `MAX_FIELDS` fields of the first 64 KiB, each cut
//! at `MAX_VALUE` bytes. Must not: judge the content.

use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// Fields reported at most.
pub const MAX_FIELDS: usize = 200;
/// Bytes of one field reported at most.
pub const MAX_VALUE: usize = 2048;

/// Reports the header block.
pub struct HeaderFacts;

/// The unfolded fields of a header block, bounded for use as facts.
pub fn fields(head: &[u8]) -> Vec<String> {
    let mut out = crate::smtp::headers::unfold(head);
    out.truncate(MAX_FIELDS);
    for field in &mut out {
        if field.len() > MAX_VALUE {
            let cut = (0..=MAX_VALUE)
                .rev()
                .find(|i| field.is_char_boundary(*i))
                .unwrap_or(0);
            field.truncate(cut);
        }
    }
    out
}

impl Check for HeaderFacts {
    fn name(&self) -> &'static str {
        "headers"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[&facts::HEADER]
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let facts: Vec<Fact> = ctx
            .message
            .map(|m| {
                fields(m.head)
                    .into_iter()
                    .map(|f| Fact::text(&facts::HEADER, f))
                    .collect()
            })
            .unwrap_or_default();
        ready(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_and_bounds() {
        let head = b"Subject: a\r\n folded\r\nFrom: x@y\r\n\r\nBody: not a header\r\n";
        assert_eq!(fields(head), vec!["Subject: a folded", "From: x@y"]);
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(fields(many.as_bytes()).len(), MAX_FIELDS);
        let long = format!("X: {}\r\n", "é".repeat(3000));
        assert!(fields(long.as_bytes())[0].len() <= MAX_VALUE);
    }
}
