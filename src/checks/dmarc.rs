//! DMARC (RFC 7489): alignment of the SPF and DKIM results with the From domain, and the
//! policy the domain asks for.
//!
//! Facts: `dmarc` (pass, fail, temperror, permerror, none), `dmarc.policy` (none,
//! quarantine, reject: what the domain asked for, `sp=` applied to subdomains) and
//! `dmarc.domain`. mail-auth 0.15 finds the policy record by the DNS tree walk of RFC 9989
//! (DMARCbis), which replaced the public suffix list: nothing is fetched or shipped. Must not: redo SPF or DKIM lookups: it takes their
//! results from the facts of MAIL and the DKIM outputs of this message.

use mail_auth::dmarc::Policy;
use mail_auth::{DmarcOutput, DmarcResult};

use crate::pipeline::outcome::Fact;

/// The result word.
pub fn word(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// The policy word.
pub fn policy_word(policy: Policy) -> &'static str {
    match policy {
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        _ => "none",
    }
}

/// Facts for one evaluation.
pub fn facts(output: &DmarcOutput) -> Vec<Fact> {
    vec![
        Fact::text("dmarc", word(&output.result())),
        Fact::text("dmarc.policy", policy_word(output.policy())),
        Fact::text("dmarc.domain", output.domain()),
    ]
}
