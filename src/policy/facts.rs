//! The facts a policy can name, and the stage at which each first exists.
//!
//! Owns: the table that binds a rule to the earliest stage where all its facts are known, so
//! an SPF rule acts at MAIL and a DKIM rule at DATA. Must not: compute facts (checks do).

use crate::pipeline::Stage;

/// Every fact name a rule may use, with its stage.
pub const KNOWN: &[(&str, Stage)] = &[
    ("client.ip", Stage::Connect),
    ("client.pregreet", Stage::Connect),
    ("client.network", Stage::Connect),
    ("rdns.ptr", Stage::Connect),
    ("rdns.name", Stage::Connect),
    ("rdns.fcrdns", Stage::Connect),
    ("rdns.temperror", Stage::Connect),
    ("dnsbl.listed", Stage::Connect),
    ("dnsbl.score", Stage::Connect),
    ("dnsbl.error", Stage::Connect),
    ("dnswl.listed", Stage::Connect),
    ("helo", Stage::Helo),
    ("helo.valid", Stage::Helo),
    ("helo.literal", Stage::Helo),
    ("helo.literal_mismatch", Stage::Helo),
    ("helo.ours", Stage::Helo),
    ("helo.resolves", Stage::Helo),
    ("mail_from", Stage::Mail),
    ("client.unannounced_pipelining", Stage::Mail),
    ("mail_from.domain", Stage::Mail),
    ("mail_from.authenticated", Stage::Mail),
    ("dbl.mail_from", Stage::Mail),
    ("dbl.error", Stage::Mail),
    ("dbl.dkim", Stage::Data),
    ("size.declared", Stage::Mail),
    ("size.declared_exceeds_limit", Stage::Mail),
    ("spf.mailfrom", Stage::Mail),
    ("spf.helo", Stage::Mail),
    ("spf.domain", Stage::Mail),
    ("spf.reason", Stage::Mail),
    ("rcpt", Stage::Rcpt),
    ("rcpt.domain", Stage::Rcpt),
    ("recipients.count", Stage::Rcpt),
    ("recipients.exceeds_limit", Stage::Rcpt),
    ("size.actual", Stage::Data),
    ("size.exceeds_limit", Stage::Data),
    ("body.bare_line_endings", Stage::Data),
    ("body.nul_bytes", Stage::Data),
    ("body.long_lines", Stage::Data),
    ("header", Stage::Data),
    ("dkim", Stage::Data),
    ("dkim.signature", Stage::Data),
    ("dkim.partial_body_refused", Stage::Data),
    ("dkim.l_tag", Stage::Data),
    ("arc", Stage::Data),
    ("dmarc", Stage::Data),
    ("dmarc.policy", Stage::Data),
    ("dmarc.domain", Stage::Data),
    ("dmarc.author_domains", Stage::Data),
    ("dmarc.from_fields", Stage::Data),
    ("dmarc.ambiguous_from", Stage::Data),
    ("dkim.domain", Stage::Data),
    ("auth.domain", Stage::Data),
    ("greylist", Stage::Data),
    ("ratelimit", Stage::Mail),
    ("state.unavailable", Stage::Mail),
    ("auth.skipped_too_large", Stage::Data),
    ("check.error", Stage::Data),
];

/// The stage at which `name` first exists; `None` for an unknown fact.
pub fn stage_of(name: &str) -> Option<Stage> {
    KNOWN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The order of stages, for "the latest stage a rule needs".
pub fn rank(stage: Stage) -> u8 {
    match stage {
        Stage::Connect => 0,
        Stage::Helo => 1,
        Stage::Mail => 2,
        Stage::Rcpt => 3,
        Stage::Data => 4,
    }
}
