//! The names of the built-in rules, as a type.
//!
//! Owns: `Builtin`, one variant per built-in rule, with the name operators see (in
//! `X-Portcullis-Verdict`, logs and `portcullis_policy_rule_hits_total{rule}`) and the limit
//! label a refusal by it counts (`portcullis_limit_hits_total{limit}`), so that no code
//! matches a rule's name to find out what it was. Must not: say when a rule holds or what it
//! does (`Policy::builtin` in `mod.rs`).

use crate::metrics::Limit;

/// A built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `SIZE=` above `limits.max_message_size`: 552 at MAIL.
    DeclaredSizeLimit,
    /// The message above `limits.max_message_size`: 552 at DATA.
    SizeLimit,
    /// More than `limits.max_recipients`: 452 to the extra RCPT.
    RecipientLimit,
    /// DMARC fails and the domain says `p=reject`.
    DmarcReject,
    /// DMARC fails and the domain says `p=quarantine`.
    DmarcQuarantine,
    /// DMARC could not be evaluated for a domain that rejects or quarantines.
    DmarcTemperror,
    /// Several From fields, or too many author domains.
    DmarcAmbiguousFrom,
    /// The DATA authentication ran out of time or failed.
    AuthIncomplete,
    /// The DNS failed before any DMARC policy was known (`auth.dmarc_dns_failure: defer`).
    DmarcDnsFailure,
    /// Redis did not answer and `state.redis.on_failure` is `closed`.
    StateUnavailable,
    /// Greylisting: a new triplet, or one retried too early.
    Greylisted,
    /// Bare CR or LF (`smtp.bare_line_endings: reject`).
    BareLineEndings,
    /// NUL bytes (`smtp.nul_bytes: reject`).
    NulBytes,
    /// A line over 998 octets (`smtp.long_lines: reject`).
    LongLines,
}

impl Builtin {
    /// Every built-in rule.
    pub const ALL: [Builtin; 14] = [
        Builtin::DeclaredSizeLimit,
        Builtin::SizeLimit,
        Builtin::RecipientLimit,
        Builtin::DmarcReject,
        Builtin::DmarcQuarantine,
        Builtin::DmarcTemperror,
        Builtin::DmarcAmbiguousFrom,
        Builtin::AuthIncomplete,
        Builtin::DmarcDnsFailure,
        Builtin::StateUnavailable,
        Builtin::Greylisted,
        Builtin::BareLineEndings,
        Builtin::NulBytes,
        Builtin::LongLines,
    ];

    /// The rule's name, as operators see it. An interface: dashboards and alerts select on
    /// it.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::DeclaredSizeLimit => "declared-size-limit",
            Builtin::SizeLimit => "size-limit",
            Builtin::RecipientLimit => "recipient-limit",
            Builtin::DmarcReject => "dmarc-reject",
            Builtin::DmarcQuarantine => "dmarc-quarantine",
            Builtin::DmarcTemperror => "dmarc-temperror",
            Builtin::DmarcAmbiguousFrom => "dmarc-ambiguous-from",
            Builtin::AuthIncomplete => "auth-incomplete",
            Builtin::DmarcDnsFailure => "dmarc-dns-failure",
            Builtin::StateUnavailable => "state-unavailable",
            Builtin::Greylisted => "greylisted",
            Builtin::BareLineEndings => "bare-line-endings",
            Builtin::NulBytes => "nul-bytes",
            Builtin::LongLines => "long-lines",
        }
    }

    /// The limit a refusal by this rule counts in `portcullis_limit_hits_total`, if it is
    /// one. `size-limit` counts none: the intake counts `message_size` whenever a message
    /// goes over, whoever refuses it (`intake::withheld`). `state-unavailable` counts none
    /// either: the limit of that name is admission's, before the banner.
    pub fn limit(self) -> Option<Limit> {
        match self {
            Builtin::DeclaredSizeLimit => Some(Limit::MessageSize),
            Builtin::RecipientLimit => Some(Limit::Recipients),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_limits_are_the_protocol_limits() {
        for (i, b) in Builtin::ALL.iter().enumerate() {
            assert!(
                Builtin::ALL[..i].iter().all(|a| a.name() != b.name()),
                "{b:?}"
            );
        }
        let limits: Vec<(&str, &str)> = Builtin::ALL
            .iter()
            .filter_map(|b| b.limit().map(|l| (b.name(), l.label())))
            .collect();
        assert_eq!(
            limits,
            [
                ("declared-size-limit", "message_size"),
                ("recipient-limit", "recipients")
            ]
        );
    }
}
