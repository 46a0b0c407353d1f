//! The policy: rules that turn facts into a verdict.
//!
//! Owns: the compiled rule list and `decide`. The built-in rules enforce the protocol limits
//! (size, recipients, bare line endings) and DMARC as the sender's domain asks; YAML rules (docs/design.md, "Policies") are added
//! after them and can never loosen them. Must not: perform checks or I/O.

use crate::config::schema::{BareLineEndings, Config};
use crate::pipeline::Stage;
use crate::pipeline::outcome::{Action, Fact, FactValue, Verdict};
use crate::smtp::reply;

/// When a rule fires.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The named fact is present as `Flag(true)`.
    Flag(&'static str),
    /// The named fact is present with this text (`dmarc` = `fail`).
    Is(&'static str, &'static str),
    /// Every condition holds.
    All(Vec<Condition>),
}

impl Condition {
    fn holds(&self, facts: &[Fact]) -> bool {
        match self {
            Condition::Flag(name) => facts
                .iter()
                .any(|f| f.name == *name && f.value == FactValue::Flag(true)),
            Condition::Is(name, text) => facts
                .iter()
                .any(|f| f.name == *name && matches!(&f.value, FactValue::Text(t) if t == text)),
            Condition::All(all) => all.iter().all(|c| c.holds(facts)),
        }
    }
}

/// One rule: a name for logs and metrics, a condition, an action.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Shown in logs and verdict explanations.
    pub name: &'static str,
    /// When it fires.
    pub when: Condition,
    /// What it does.
    pub action: Action,
}

/// A compiled, immutable policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// The built-in rules that enforce the configured limits.
    pub fn builtin(config: &Config) -> Self {
        let mut rules = vec![
            Rule {
                name: "declared-size-limit",
                when: Condition::Flag("size.declared_exceeds_limit"),
                action: Action::Reject(reply::MESSAGE_TOO_BIG),
            },
            Rule {
                name: "size-limit",
                when: Condition::Flag("size.exceeds_limit"),
                action: Action::Reject(reply::MESSAGE_TOO_BIG),
            },
            Rule {
                name: "recipient-limit",
                when: Condition::Flag("recipients.exceeds_limit"),
                action: Action::Tempfail(reply::TOO_MANY_RECIPIENTS),
            },
        ];
        if config.auth.enabled {
            rules.extend(dmarc_rules());
        }
        if config.smtp.bare_line_endings == BareLineEndings::Reject {
            rules.push(Rule {
                name: "bare-line-endings",
                when: Condition::Flag("body.bare_line_endings"),
                action: Action::Reject(reply::BARE_LINE_ENDING),
            });
        }
        Policy { rules }
    }

    /// Evaluates every rule over the facts known at `stage` and merges the actions of those
    /// that fire (see `Verdict::merge`). The stage is part of the signature because YAML rules
    /// will be bound to the earliest stage at which their facts exist.
    pub fn decide(&self, _stage: Stage, facts: &[Fact]) -> Verdict {
        let mut verdict = Verdict::accept();
        for rule in &self.rules {
            if rule.when.holds(facts) {
                verdict.merge(rule.name, &rule.action);
            }
        }
        verdict
    }
}

/// DMARC as the sending domain asked (RFC 7489 §6.3): `p=reject` failures are refused,
/// `p=quarantine` failures are relayed marked for quarantine, and a temporary DNS failure
/// on a `p=reject` domain is deferred (451) rather than guessed. SPF or DKIM results alone
/// never refuse mail here: DMARC is where a domain says how much they count.
fn dmarc_rules() -> Vec<Rule> {
    use Condition::{All, Is};
    vec![
        Rule {
            name: "dmarc-reject",
            when: All(vec![Is("dmarc", "fail"), Is("dmarc.policy", "reject")]),
            action: Action::Reject(reply::DMARC_REJECT),
        },
        Rule {
            name: "dmarc-quarantine",
            when: All(vec![Is("dmarc", "fail"), Is("dmarc.policy", "quarantine")]),
            action: Action::Quarantine,
        },
        Rule {
            name: "dmarc-temperror",
            when: All(vec![Is("dmarc", "temperror"), Is("dmarc.policy", "reject")]),
            action: Action::Tempfail(reply::AUTH_TEMPFAIL),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_map_to_their_replies() {
        let p = Policy::builtin(&Config::default());
        let v = p.decide(
            Stage::Data,
            &[
                Fact::flag("size.exceeds_limit", true),
                Fact::count("size.actual", 9),
            ],
        );
        assert_eq!(v.action, Action::Reject(reply::MESSAGE_TOO_BIG));
        assert_eq!(v.rules, vec!["size-limit"]);
        let v = p.decide(Stage::Rcpt, &[Fact::flag("recipients.exceeds_limit", true)]);
        assert_eq!(v.action, Action::Tempfail(reply::TOO_MANY_RECIPIENTS));
        assert_eq!(
            p.decide(Stage::Data, &[Fact::flag("size.exceeds_limit", false)])
                .action,
            Action::Accept
        );
    }

    #[test]
    fn dmarc_policy_of_the_domain_is_honoured() {
        let p = Policy::builtin(&Config::default());
        let facts = |result: &str, policy: &str| {
            vec![
                Fact::text("dmarc", result),
                Fact::text("dmarc.policy", policy),
            ]
        };
        for (result, policy, expected) in [
            ("fail", "reject", Action::Reject(reply::DMARC_REJECT)),
            ("fail", "quarantine", Action::Quarantine),
            ("fail", "none", Action::Accept),
            ("pass", "reject", Action::Accept),
            (
                "temperror",
                "reject",
                Action::Tempfail(reply::AUTH_TEMPFAIL),
            ),
            ("temperror", "none", Action::Accept),
        ] {
            let got = p.decide(Stage::Data, &facts(result, policy)).action;
            assert_eq!(got, expected, "dmarc={result} p={policy}");
        }
        let mut off = Config::default();
        off.auth.enabled = false;
        assert_eq!(
            Policy::builtin(&off)
                .decide(Stage::Data, &facts("fail", "reject"))
                .action,
            Action::Accept
        );
    }

    #[test]
    fn bare_line_endings_follow_config() {
        let mut c = Config::default();
        let facts = [Fact::flag("body.bare_line_endings", true)];
        assert_eq!(
            Policy::builtin(&c).decide(Stage::Data, &facts).action,
            Action::Reject(reply::BARE_LINE_ENDING)
        );
        c.smtp.bare_line_endings = BareLineEndings::Fix;
        assert_eq!(
            Policy::builtin(&c).decide(Stage::Data, &facts).action,
            Action::Accept
        );
    }
}
