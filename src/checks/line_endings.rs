//! Bare CR / bare LF in message content (the SMTP smuggling family of attacks).
//!
//! Fact: `body.bare_line_endings` at DATA. Whether that rejects the message is the
//! policy's business (`smtp.bare_line_endings: reject | fix`).

use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// Reports whether the decoder saw bare line endings.
pub struct LineEndings;

impl Check for LineEndings {
    fn name(&self) -> &'static str {
        "line_endings"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[&facts::BODY_BARE_LINE_ENDINGS]
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let facts = ctx
            .message
            .map(|m| {
                vec![Fact::flag(
                    &facts::BODY_BARE_LINE_ENDINGS,
                    m.bare_line_endings,
                )]
            })
            .unwrap_or_default();
        ready(facts)
    }
}
