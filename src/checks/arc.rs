//! ARC (RFC 8617) chain verification, so that policies can trust known forwarders.
//!
//! Fact: `arc` (pass, fail, none, neutral, permerror, temperror). Sealing is not done.

use mail_auth::ArcOutput;

use crate::checks::dkim;
use crate::pipeline::outcome::Fact;

/// The chain's result word.
pub fn word(output: &ArcOutput<'_>) -> &'static str {
    dkim::word(output.result())
}

/// Facts for one chain.
pub fn facts(output: &ArcOutput<'_>) -> Vec<Fact> {
    vec![Fact::text("arc", word(output))]
}
