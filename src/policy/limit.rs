//! Rate-limit rules: a rule with `limit: { key, rate, burst }` fires when its condition
//! holds and the bucket named by the key's value is over the rate.
//!
//! Owns: the keys a limit may count by, the stage a limit counts at, and the bucket names.
//! A limit counts once, at its own stage (never at MAIL for a message and again at DATA):
//! the policy asks for the count (`Verdict::limits`), the session asks the state store, and
//! an exceeded limit comes back as a `ratelimit` fact naming the rule. Must not: count
//! anything itself (`state` does).

use crate::config::units::Rate;
use crate::pipeline::Stage;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::{Fact, FactValue};

/// The facts a limit may count by, with the stage each exists at.
pub const KEYS: &[(&FactDef, Stage)] = &[
    (&facts::CLIENT_IP, Stage::Mail),
    (&facts::CLIENT_NETWORK, Stage::Mail),
    (&facts::HELO, Stage::Mail),
    (&facts::MAIL_FROM, Stage::Mail),
    (&facts::MAIL_FROM_DOMAIN, Stage::Mail),
    (&facts::RCPT, Stage::Rcpt),
    (&facts::RCPT_DOMAIN, Stage::Rcpt),
    (&facts::SPF_DOMAIN, Stage::Mail),
    (&facts::DKIM_DOMAIN, Stage::Data),
    (&facts::AUTH_DOMAIN, Stage::Data),
];

/// One rule's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// The fact whose value names the bucket (each value its own bucket).
    pub key: &'static FactDef,
    /// The sustained rate.
    pub rate: Rate,
    /// How many may come at once.
    pub burst: u32,
}

/// A count the policy asks for: rule `rule`'s limit, for these key values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The rule.
    pub rule: String,
    /// Its limit.
    pub limit: RateLimit,
    /// The bucket names to count in (one per value of the key fact).
    pub buckets: Vec<String>,
}

/// The key fact named `name` and the stage its limit counts at, if a limit may count by it.
pub fn key(name: &str) -> Option<(&'static FactDef, Stage)> {
    KEYS.iter().find(|(k, _)| k.name() == name).copied()
}

impl RateLimit {
    /// The buckets for the facts known now: `<rule>/<rate>/<burst>/<key>=<value>` (the rate
    /// as written, `200/hour`), one per value of the key fact, so that a changed rate starts
    /// afresh. Empty when the key has no
    /// value (a null sender has no `mail_from.domain`).
    pub fn buckets(&self, rule: &str, facts: &[Fact]) -> Vec<String> {
        let mut out: Vec<String> = facts
            .iter()
            .filter(|f| f.is(self.key))
            .filter_map(|f| match &f.value {
                FactValue::Text(t) if !t.is_empty() => Some(t.to_ascii_lowercase()),
                _ => None,
            })
            .map(|v| {
                format!(
                    "{rule}/{}/{}/{}={v}",
                    self.rate,
                    self.burst,
                    self.key.name()
                )
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// True when rule `rule`'s limit was found exceeded.
pub fn exceeded(rule: &str, facts: &[Fact]) -> bool {
    facts
        .iter()
        .any(|f| f.text_of(&facts::RATELIMIT) == Some(rule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::parse_rate;

    #[test]
    fn one_bucket_per_value_lowercased_and_named_by_the_limit() {
        let l = RateLimit {
            key: &facts::AUTH_DOMAIN,
            rate: parse_rate("10/minute").expect("rate"),
            burst: 5,
        };
        let facts = [
            Fact::text(&facts::AUTH_DOMAIN, "Example.org"),
            Fact::text(&facts::AUTH_DOMAIN, "example.org"),
            Fact::text(&facts::AUTH_DOMAIN, "mailer.example"),
            Fact::text(&facts::MAIL_FROM, "a@b"),
        ];
        assert_eq!(
            l.buckets("r", &facts),
            vec![
                "r/10/minute/5/auth.domain=example.org",
                "r/10/minute/5/auth.domain=mailer.example"
            ]
        );
        assert!(
            l.buckets("r", &[Fact::text(&facts::AUTH_DOMAIN, "")])
                .is_empty()
        );
        assert!(exceeded("r", &[Fact::text(&facts::RATELIMIT, "r")]));
        assert!(!exceeded("r", &[Fact::text(&facts::RATELIMIT, "q")]));
    }
}
