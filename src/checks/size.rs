//! Message size: the SIZE= declaration at MAIL (RFC 1870) and the actual size at DATA.
//!
//! Facts: `size.declared` / `size.declared_exceeds_limit` at MAIL, `size.actual` /
//! `size.exceeds_limit` at DATA. Must not: reply directly (the policy maps them to 552).

use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// Compares sizes against `limits.max_message_size`.
pub struct SizeCheck {
    limit: u64,
}

impl SizeCheck {
    /// A size check with the given limit in bytes.
    pub fn new(limit: u64) -> Self {
        SizeCheck { limit }
    }
}

impl Check for SizeCheck {
    fn name(&self) -> &'static str {
        "size"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[
            &facts::SIZE_DECLARED,
            &facts::SIZE_DECLARED_EXCEEDS_LIMIT,
            &facts::SIZE_ACTUAL,
            &facts::SIZE_EXCEEDS_LIMIT,
        ]
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let facts = match ctx.envelope.declared_size {
            Some(size) => vec![
                Fact::count(&facts::SIZE_DECLARED, size),
                Fact::flag(&facts::SIZE_DECLARED_EXCEEDS_LIMIT, size > self.limit),
            ],
            None => Vec::new(),
        };
        ready(facts)
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let facts = match ctx.message {
            Some(m) => vec![
                Fact::count(&facts::SIZE_ACTUAL, m.size),
                Fact::flag(&facts::SIZE_EXCEEDS_LIMIT, m.size > self.limit),
            ],
            None => Vec::new(),
        };
        ready(facts)
    }
}
