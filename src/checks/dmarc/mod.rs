//! DMARC (RFC 9989, which obsoletes RFC 7489): alignment of the SPF and DKIM results with the
//! From domain, and the policy the domain asks for. Our own evaluation (`evaluate`), on the
//! lookups of `dns/lookup.rs`, in place of mail-auth's (which uses the first of several
//! records, ignores all but one author domain, drops a known policy on a later DNS failure
//! and knows no `pct=0`).
//!
//! Facts: `dmarc` (pass, fail, temperror, none), `dmarc.policy` (none, quarantine,
//! reject, or unknown for a temperror before any record was found: what applies after `sp`,
//! `np` and testing), `dmarc.domain` (the author domain of the outcome) and
//! `dmarc.author_domains` (how many distinct author domains the From field names).
//! Files: `record.rs` reads one record, `discover.rs` walks the DNS tree, `align.rs` finds
//! Organizational Domains and decides alignment, `evaluate.rs` puts them together for each
//! author domain and keeps the strictest outcome. Must not: redo SPF or DKIM lookups: it
//! takes their results from the facts of MAIL and the DKIM outputs of this message.

pub mod align;
pub mod discover;
pub mod evaluate;
pub mod record;

use crate::pipeline::facts;
use crate::pipeline::outcome::Fact;

pub use evaluate::{MAX_AUTHOR_DOMAINS, evaluate};

/// What one evaluation is given.
#[derive(Debug, Clone, Copy)]
pub struct DmarcInput<'a> {
    /// The author domains of the From field, lowercase, in order (may be empty: `none`).
    pub from_domains: &'a [String],
    /// The RFC 8601 word of SPF for MAIL FROM (pass, fail, ...).
    pub spf_result: &'a str,
    /// The MAIL FROM domain SPF evaluated.
    pub spf_domain: &'a str,
    /// The `d=` of each DKIM signature that passed.
    pub dkim_pass_domains: &'a [String],
    /// The `d=` of each DKIM signature whose verification failed temporarily (its key
    /// lookup failed): aligned, it turns a `fail` into `temperror` (RFC 7489 §6.6.2).
    pub dkim_temperror_domains: &'a [String],
}

/// The DMARC result (RFC 8601 §2.7.1 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcResult {
    /// An aligned identifier passed.
    Pass,
    /// A policy record applies and no aligned identifier passed.
    Fail,
    /// No policy record applies.
    None,
    /// A DNS failure left the result open.
    TempError,
    /// Not given by our evaluation: RFC 9989 §4.10.1 applies no DMARC processing (`none`)
    /// when the record's policy tags are unusable and `rua` is too. Kept for the RFC 8601
    /// word.
    PermError,
}

impl DmarcResult {
    /// The RFC 8601 word.
    pub fn word(&self) -> &'static str {
        match self {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::None => "none",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

/// A DMARC policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `none`: no request.
    None,
    /// `quarantine`.
    Quarantine,
    /// `reject`.
    Reject,
    /// Not known: the lookup of the author domain's record failed and no record was found.
    Unknown,
}

impl DmarcPolicy {
    /// The word: none, quarantine, reject, unknown.
    pub fn word(&self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
            DmarcPolicy::Unknown => "unknown",
        }
    }

    /// One level lower, for testing (`t=y`, RFC 9989 §5.3): reject → quarantine,
    /// quarantine → none.
    pub fn lowered(self) -> DmarcPolicy {
        match self {
            DmarcPolicy::Reject => DmarcPolicy::Quarantine,
            DmarcPolicy::Quarantine => DmarcPolicy::None,
            other => other,
        }
    }
}

/// The outcome for a message: of its one author domain, or the strictest of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcOutcome {
    /// The result.
    pub result: DmarcResult,
    /// The author domain this outcome is about (`header.from`); empty when there is none.
    pub domain: String,
    /// The policy that applies, after `sp`/`np` and testing (`t=y`, `pct=0`).
    pub policy: DmarcPolicy,
    /// The policy as published (after `sp`/`np`), before testing lowered it.
    pub requested: DmarcPolicy,
    /// `t=y` or `pct=0` lowered the policy.
    pub testing: bool,
    /// A short phrase for the Authentication-Results comment.
    pub reason: Option<String>,
    /// How many distinct author domains the From field named, as the DNS knows them (case,
    /// a final dot, U-label or A-label form count once); only `MAX_AUTHOR_DOMAINS` of them
    /// are evaluated.
    pub author_domains: usize,
}

/// Facts for one evaluation.
pub fn facts(outcome: &DmarcOutcome) -> Vec<Fact> {
    vec![
        Fact::text(&facts::DMARC, outcome.result.word()),
        Fact::text(&facts::DMARC_POLICY, outcome.policy.word()),
        Fact::text(&facts::DMARC_DOMAIN, outcome.domain.as_str()),
        Fact::count(
            &facts::DMARC_AUTHOR_DOMAINS,
            u64::try_from(outcome.author_domains).unwrap_or(u64::MAX),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        let results = [
            (DmarcResult::Pass, "pass"),
            (DmarcResult::Fail, "fail"),
            (DmarcResult::None, "none"),
            (DmarcResult::TempError, "temperror"),
            (DmarcResult::PermError, "permerror"),
        ];
        for (r, w) in results {
            assert_eq!(r.word(), w);
        }
        let policies = [
            (DmarcPolicy::None, "none"),
            (DmarcPolicy::Quarantine, "quarantine"),
            (DmarcPolicy::Reject, "reject"),
            (DmarcPolicy::Unknown, "unknown"),
        ];
        for (p, w) in policies {
            assert_eq!(p.word(), w);
        }
    }

    #[test]
    fn testing_lowers_by_one_level() {
        assert_eq!(DmarcPolicy::Reject.lowered(), DmarcPolicy::Quarantine);
        assert_eq!(DmarcPolicy::Quarantine.lowered(), DmarcPolicy::None);
        assert_eq!(DmarcPolicy::None.lowered(), DmarcPolicy::None);
    }

    #[test]
    fn facts_of_an_outcome() {
        let outcome = DmarcOutcome {
            result: DmarcResult::TempError,
            domain: "example.org".into(),
            policy: DmarcPolicy::Reject,
            requested: DmarcPolicy::Reject,
            testing: false,
            reason: None,
            author_domains: 3,
        };
        assert_eq!(
            facts(&outcome),
            [
                Fact::text(&facts::DMARC, "temperror"),
                Fact::text(&facts::DMARC_POLICY, "reject"),
                Fact::text(&facts::DMARC_DOMAIN, "example.org"),
                Fact::count(&facts::DMARC_AUTHOR_DOMAINS, 3),
            ]
        );
    }
}
