//! Lines over the RFC 5322 §2.1.1 limit: 998 characters, without the CRLF.
//!
//! Fact: `body.long_lines` at DATA. Whether that rejects the message is the policy's business
//! (`smtp.long_lines: pass | reject`). Must not: reply, or look at the content itself (the
//! decoder measured every line).

use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// The longest line RFC 5322 §2.1.1 allows, in octets without CRLF.
pub const MAX_LINE: u64 = 998;

/// Reports whether the message has a line longer than `MAX_LINE`.
pub struct LongLines;

impl Check for LongLines {
    fn name(&self) -> &'static str {
        "long_lines"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[&facts::BODY_LONG_LINES]
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let facts = ctx
            .message
            .map(|m| {
                vec![Fact::flag(
                    &facts::BODY_LONG_LINES,
                    m.longest_line > MAX_LINE,
                )]
            })
            .unwrap_or_default();
        ready(facts)
    }
}
