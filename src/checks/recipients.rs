//! Recipient count per transaction (RFC 5321 §4.5.3.1.8: at least 100 must be accepted).
//!
//! Facts: `recipients.count` and `recipients.exceeds_limit` at RCPT. Must not: reply
//! directly (the policy maps the limit to 452 4.5.3).

use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// Counts RCPT commands against `limits.max_recipients`.
pub struct RecipientLimit {
    limit: usize,
}

impl RecipientLimit {
    /// A recipient limit.
    pub fn new(limit: usize) -> Self {
        RecipientLimit { limit }
    }
}

impl Check for RecipientLimit {
    fn name(&self) -> &'static str {
        "recipients"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[&facts::RECIPIENTS_COUNT, &facts::RECIPIENTS_EXCEEDS_LIMIT]
    }

    fn on_rcpt<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        // `rcpt_attempts` already counts the RCPT being checked.
        let count = ctx.envelope.rcpt_attempts;
        ready(vec![
            Fact::count(&facts::RECIPIENTS_COUNT, count as u64),
            Fact::flag(&facts::RECIPIENTS_EXCEEDS_LIMIT, count > self.limit),
        ])
    }
}
