//! NUL bytes in message content: mail must not carry them (RFC 5322 §2.2 and §3.5, RFC 2045
//! §2.7 and §2.8; BINARYMIME is not offered), and mail stores disagree on what one means.
//!
//! Fact: `body.nul_bytes` at DATA (the decoder has already left them out of the spool).
//! Whether that rejects the message is the policy's business (`smtp.nul_bytes: reject |
//! strip`). Must not: reply, or look at the content itself (the decoder saw every byte).

use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// Reports whether the decoder saw NUL bytes.
pub struct NulBytes;

impl Check for NulBytes {
    fn name(&self) -> &'static str {
        "nul_bytes"
    }

    fn emits(&self) -> &'static [&'static FactDef] {
        &[&facts::BODY_NUL_BYTES]
    }

    fn on_data<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let facts = ctx
            .message
            .map(|m| vec![Fact::flag(&facts::BODY_NUL_BYTES, m.nul_bytes)])
            .unwrap_or_default();
        ready(facts)
    }
}
