//! The policy: rules that turn facts into a verdict.
//!
//! Owns: the built-in rules (protocol limits, and DMARC as the sender's domain asks), the
//! rules of the operator's YAML file (`file.rs`, docs/policies.md), score thresholds and
//! `decide`. Built-in rules are evaluated first and a refusal among them is final: YAML rules
//! can add refusals, tags and scores but never loosen a limit. Must not: perform checks or
//! I/O at decision time.

pub mod builtin;
pub mod condition;
pub mod file;
pub mod limit;
pub mod set;
pub mod verdict;
pub mod walk;

use std::path::Path;

use crate::config::Diagnostic;
use crate::config::schema::{BareLineEndings, Config, DmarcDnsFailure, LongLines, NulBytes};
use crate::pipeline::Stage;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::{Action, Fact};
use crate::smtp::reply;
pub use builtin::Builtin;
pub use condition::Condition;
pub use verdict::Verdict;

/// One built-in rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which built-in rule (its name is shown in logs and verdict explanations).
    pub builtin: Builtin,
    /// When it fires.
    pub when: Condition,
    /// What it does.
    pub action: Action,
}

/// One rule of a YAML policy file.
#[derive(Debug, Clone)]
pub struct CustomRule {
    /// Its name, unique in the file.
    pub name: String,
    /// Where its name is written in the file (line, column), for diagnostics.
    pub at: (usize, usize),
    /// The earliest stage at which every fact it reads exists; it is evaluated from then on.
    pub stage: Stage,
    /// When it fires.
    pub when: Condition,
    /// What it does; `None` for a rule that only scores.
    pub action: Option<Action>,
    /// What it adds to the message's score.
    pub score: i64,
    /// A rate limit: the rule fires only when `when` holds and this is exceeded.
    pub limit: Option<limit::RateLimit>,
}

/// Summed-score thresholds, applied at DATA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Tag at or above this score.
    pub tag: Option<i64>,
    /// Quarantine at or above this score.
    pub quarantine: Option<i64>,
    /// Reject at or above this score.
    pub reject: Option<i64>,
}

/// A compiled, immutable policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    custom: Vec<CustomRule>,
    thresholds: Thresholds,
}

impl Policy {
    /// The built-in rules that enforce the configured limits.
    pub fn builtin(config: &Config) -> Self {
        let mut rules = vec![
            Rule {
                builtin: Builtin::DeclaredSizeLimit,
                when: Condition::Flag(&facts::SIZE_DECLARED_EXCEEDS_LIMIT),
                action: Action::Reject(reply::MESSAGE_TOO_BIG),
            },
            Rule {
                builtin: Builtin::SizeLimit,
                when: Condition::Flag(&facts::SIZE_EXCEEDS_LIMIT),
                action: Action::Reject(reply::MESSAGE_TOO_BIG),
            },
            Rule {
                builtin: Builtin::RecipientLimit,
                when: Condition::Flag(&facts::RECIPIENTS_EXCEEDS_LIMIT),
                action: Action::Tempfail(reply::TOO_MANY_RECIPIENTS),
            },
        ];
        if config.auth.enabled {
            rules.extend(dmarc_rules(config.auth.dmarc_dns_failure));
        }
        rules.push(Rule {
            builtin: Builtin::StateUnavailable,
            when: Condition::Flag(&facts::STATE_UNAVAILABLE),
            action: Action::Tempfail(reply::STATE_UNAVAILABLE),
        });
        if config.greylisting.enabled {
            rules.push(Rule {
                builtin: Builtin::Greylisted,
                when: Condition::Any(vec![
                    Condition::Is(&facts::GREYLIST, "new"),
                    Condition::Is(&facts::GREYLIST, "early"),
                ]),
                action: Action::Tempfail(reply::GREYLISTED),
            });
        }
        if config.smtp.bare_line_endings == BareLineEndings::Reject {
            rules.push(Rule {
                builtin: Builtin::BareLineEndings,
                when: Condition::Flag(&facts::BODY_BARE_LINE_ENDINGS),
                action: Action::Reject(reply::BARE_LINE_ENDING),
            });
        }
        if config.smtp.nul_bytes == NulBytes::Reject {
            rules.push(Rule {
                builtin: Builtin::NulBytes,
                when: Condition::Flag(&facts::BODY_NUL_BYTES),
                action: Action::Reject(reply::NUL_BYTES),
            });
        }
        if config.smtp.long_lines == LongLines::Reject {
            rules.push(Rule {
                builtin: Builtin::LongLines,
                when: Condition::Flag(&facts::BODY_LONG_LINES),
                action: Action::Reject(reply::LONG_LINES),
            });
        }
        Policy {
            rules,
            custom: Vec::new(),
            thresholds: Thresholds::default(),
        }
    }

    /// The built-in rules plus the operator's policy file (`policy:` in the config), if any.
    pub fn load(config: &Config) -> Result<Self, Vec<Diagnostic>> {
        Policy::with_file(config, config.policy.as_deref())
    }

    /// The built-in rules plus the rules of `path`, if given.
    pub fn with_file(config: &Config, path: Option<&Path>) -> Result<Self, Vec<Diagnostic>> {
        let mut policy = Policy::builtin(config);
        if let Some(path) = path {
            let compiled = file::load(path)?;
            policy.custom = compiled.rules;
            policy.thresholds = compiled.thresholds;
        }
        Ok(policy)
    }

    /// Whether a rule due at `stage` reads one of `names` and could act on it now: at DATA
    /// any rule; before, only rules that decide (accept, reject, tempfail) or count a limit,
    /// since tags and scores wait for DATA. Deferred lookups are awaited only then.
    pub fn needs(&self, stage: Stage, names: &[&FactDef]) -> bool {
        self.custom
            .iter()
            .filter(|r| r.stage.rank() <= stage.rank())
            .filter(|r| {
                stage == Stage::Data
                    || r.limit.is_some()
                    || r.action.as_ref().is_some_and(Action::decides)
            })
            .any(|r| {
                let mut used = Vec::new();
                r.when.facts(&mut used);
                used.iter().any(|u| names.contains(u))
            })
    }

    /// The rate-limit rules of the policy file: name and position.
    pub fn limit_rules(&self) -> impl Iterator<Item = (&str, (usize, usize))> {
        self.custom
            .iter()
            .filter(|r| r.limit.is_some())
            .map(|r| (r.name.as_str(), r.at))
    }

    /// The verdict over the facts known at `stage`: final, given those facts.
    ///
    /// Built-in rules first: a refusal among them is final. Then the YAML rules whose facts
    /// exist by now, in file order: `accept`, `reject` and `tempfail` decide and stop; `tag`
    /// and `quarantine` accumulate (the stronger wins); scores add up. At DATA the score is
    /// held against the thresholds. Before DATA only a refusal has an effect: the session
    /// acts on nothing else until the message is complete. A rate-limit rule takes part only
    /// once its count has been found over the rate (the `ratelimit` fact naming it): what to
    /// count is `probes`' answer, and counting is the transaction engine's.
    pub fn decide(&self, stage: Stage, facts: &[Fact]) -> Verdict {
        self.walk(stage, facts, None)
    }

    /// The rate limits to count at `stage`, in file order: the limit rules whose condition
    /// holds over `facts`, that are not already found exceeded, whose key has a value, and
    /// whose own stage lies between `count_from` and `stage` (a limit counts once, at its
    /// own stage; a scope's policy first meets a transaction at its first RCPT, after the
    /// MAIL its MAIL limits would have counted at, so they count there).
    pub fn probes(&self, stage: Stage, count_from: Stage, facts: &[Fact]) -> Vec<limit::Probe> {
        let counts_now = |s: Stage| (count_from.rank()..=stage.rank()).contains(&s.rank());
        let mut out = Vec::new();
        for rule in self.due(stage) {
            if !rule.when.holds(facts) {
                continue;
            }
            match &rule.limit {
                Some(l) if !limit::exceeded(&rule.name, facts) => {
                    let buckets = l.buckets(&rule.name, facts);
                    if counts_now(rule.stage) && !buckets.is_empty() {
                        out.push(limit::Probe {
                            rule: rule.name.clone(),
                            limit: l.clone(),
                            buckets,
                        });
                    }
                }
                // A rule that decides ends the evaluation, as in `decide`: the limits after
                // it are not asked for.
                _ if rule.action.as_ref().is_some_and(Action::decides) => break,
                _ => {}
            }
        }
        out
    }

    /// The YAML rules due at `stage` (their facts exist by then), in file order.
    fn due(&self, stage: Stage) -> impl Iterator<Item = &CustomRule> {
        self.custom
            .iter()
            .filter(move |r| r.stage.rank() <= stage.rank())
    }

    /// What `decide` does with every rule due at `stage` over `facts`, in evaluation order
    /// (for dry runs): fired, did not hold, or skipped because an earlier rule decided.
    pub fn explain(&self, stage: Stage, facts: &[Fact]) -> Vec<walk::Evaluated> {
        let mut trace = Vec::new();
        self.walk(stage, facts, Some(&mut trace));
        trace
    }
}

/// DMARC as the sending domain asked (RFC 7489 §6.3): `p=reject` failures are refused,
/// `p=quarantine` failures are relayed marked for quarantine, and a temporary DNS failure
/// on a `p=reject` or `p=quarantine` domain is deferred (451) rather than guessed. A From
/// field DMARC cannot attribute (several From fields, more author domains than are
/// evaluated) is refused, and a DATA authentication that did not finish is deferred. When the DNS failed before
/// any policy was known (`dmarc.policy=unknown`), `auth.dmarc_dns_failure` decides. SPF or
/// DKIM results alone never refuse mail here: DMARC is where a domain says how much they
/// count.
fn dmarc_rules(dns_failure: DmarcDnsFailure) -> Vec<Rule> {
    use Condition::{All, Any, Flag, Is};
    let mut rules = vec![
        Rule {
            builtin: Builtin::DmarcReject,
            when: All(vec![
                Is(&facts::DMARC, "fail"),
                Is(&facts::DMARC_POLICY, "reject"),
            ]),
            action: Action::Reject(reply::DMARC_REJECT),
        },
        Rule {
            builtin: Builtin::DmarcQuarantine,
            when: All(vec![
                Is(&facts::DMARC, "fail"),
                Is(&facts::DMARC_POLICY, "quarantine"),
            ]),
            action: Action::Quarantine,
        },
        Rule {
            builtin: Builtin::DmarcTemperror,
            when: All(vec![
                Is(&facts::DMARC, "temperror"),
                Any(vec![
                    Is(&facts::DMARC_POLICY, "reject"),
                    Is(&facts::DMARC_POLICY, "quarantine"),
                ]),
            ]),
            action: Action::Tempfail(reply::AUTH_TEMPFAIL),
        },
        Rule {
            builtin: Builtin::DmarcAmbiguousFrom,
            when: Flag(&facts::DMARC_AMBIGUOUS_FROM),
            action: Action::Reject(reply::AMBIGUOUS_FROM),
        },
        // The DATA authentication ran out of time or failed: DMARC could not be decided,
        // and a sender must not be able to skip it by making its lookups slow.
        Rule {
            builtin: Builtin::AuthIncomplete,
            when: Is(&facts::CHECK_ERROR, "message_auth"),
            action: Action::Tempfail(reply::AUTH_TEMPFAIL),
        },
    ];
    if dns_failure == DmarcDnsFailure::Defer {
        rules.push(Rule {
            builtin: Builtin::DmarcDnsFailure,
            when: All(vec![
                Is(&facts::DMARC, "temperror"),
                Is(&facts::DMARC_POLICY, "unknown"),
            ]),
            action: Action::Tempfail(reply::AUTH_TEMPFAIL),
        });
    }
    rules
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
                Fact::flag(&facts::SIZE_EXCEEDS_LIMIT, true),
                Fact::count(&facts::SIZE_ACTUAL, 9),
            ],
        );
        assert_eq!(v.action, Action::Reject(reply::MESSAGE_TOO_BIG));
        assert_eq!(v.rules, vec!["size-limit"]);
        assert_eq!(
            v.limits,
            [],
            "the intake counts an actual size over the limit"
        );
        let v = p.decide(
            Stage::Rcpt,
            &[Fact::flag(&facts::RECIPIENTS_EXCEEDS_LIMIT, true)],
        );
        assert_eq!(v.action, Action::Tempfail(reply::TOO_MANY_RECIPIENTS));
        assert_eq!(v.limits, [crate::metrics::Limit::Recipients]);
        let v = p.decide(
            Stage::Mail,
            &[Fact::flag(&facts::SIZE_DECLARED_EXCEEDS_LIMIT, true)],
        );
        assert_eq!(v.rules, vec!["declared-size-limit"]);
        assert_eq!(v.limits, [crate::metrics::Limit::MessageSize]);
        assert_eq!(
            p.decide(
                Stage::Data,
                &[Fact::flag(&facts::SIZE_EXCEEDS_LIMIT, false)]
            )
            .action,
            Action::Accept
        );
    }

    #[test]
    fn dmarc_policy_of_the_domain_is_honoured() {
        let p = Policy::builtin(&Config::default());
        let facts = |result: &str, policy: &str| {
            vec![
                Fact::text(&facts::DMARC, result),
                Fact::text(&facts::DMARC_POLICY, policy),
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
            (
                "temperror",
                "quarantine",
                Action::Tempfail(reply::AUTH_TEMPFAIL),
            ),
            (
                "temperror",
                "unknown",
                Action::Tempfail(reply::AUTH_TEMPFAIL),
            ),
        ] {
            let got = p.decide(Stage::Data, &facts(result, policy)).action;
            assert_eq!(got, expected, "dmarc={result} p={policy}");
        }
        let mut accept = Config::default();
        accept.auth.dmarc_dns_failure = DmarcDnsFailure::Accept;
        let p = Policy::builtin(&accept);
        assert_eq!(
            p.decide(Stage::Data, &facts("temperror", "unknown")).action,
            Action::Accept
        );
        assert_eq!(
            p.decide(Stage::Data, &facts("temperror", "reject")).action,
            Action::Tempfail(reply::AUTH_TEMPFAIL),
            "a known p=reject defers whatever auth.dmarc_dns_failure says"
        );
        let p = Policy::builtin(&Config::default());
        let v = p.decide(
            Stage::Data,
            &[Fact::flag(&facts::DMARC_AMBIGUOUS_FROM, true)],
        );
        assert_eq!(v.action, Action::Reject(reply::AMBIGUOUS_FROM));
        let v = p.decide(
            Stage::Data,
            &[Fact::text(&facts::CHECK_ERROR, "message_auth")],
        );
        assert_eq!(v.action, Action::Tempfail(reply::AUTH_TEMPFAIL));
        assert_eq!(v.rules, vec!["auth-incomplete"]);
        let v = p.decide(Stage::Data, &[Fact::text(&facts::CHECK_ERROR, "dnsbl")]);
        assert_eq!(
            v.action,
            Action::Accept,
            "other checks' errors are the policy's call"
        );
        let mut off = Config::default();
        off.auth.enabled = false;
        assert_eq!(
            Policy::builtin(&off)
                .decide(Stage::Data, &facts("fail", "reject"))
                .action,
            Action::Accept
        );
    }

    fn with_file(text: &str) -> Policy {
        let mut c = Config::default();
        c.auth.enabled = true;
        let compiled = file::compile("p.yaml", text, Path::new(".")).expect("valid policy");
        Policy {
            custom: compiled.rules,
            thresholds: compiled.thresholds,
            ..Policy::builtin(&c)
        }
    }

    #[test]
    fn yaml_rules_act_from_their_stage_on() {
        let p = with_file(
            "rules:\n  - name: spf-fail\n    when: { spf.mailfrom: fail }\n    action: reject\n  - name: unsigned\n    when: { dkim: none }\n    action: tag\n",
        );
        let mail = [Fact::text(&facts::SPF_MAILFROM, "fail")];
        let v = p.decide(Stage::Mail, &mail);
        assert_eq!(v.action, Action::Reject(reply::POLICY_REJECT));
        assert_eq!(v.rules, vec!["spf-fail"]);
        // A DATA rule is not evaluated at MAIL even if its fact were somehow present.
        let v = p.decide(Stage::Mail, &[Fact::text(&facts::DKIM, "none")]);
        assert_eq!(v.action, Action::Accept);
        assert_eq!(
            p.decide(Stage::Data, &[Fact::text(&facts::DKIM, "none")])
                .action,
            Action::Tag
        );
    }

    #[test]
    fn accept_stops_scores_add_up_and_thresholds_apply_at_data() {
        let p = with_file(
            "thresholds: { tag: 2, quarantine: 4, reject: 6 }\nrules:\n  - name: partner\n    when: { client.ip: { cidr: [192.0.2.0/24] } }\n    action: accept\n  - name: soft\n    when: { spf.mailfrom: softfail }\n    score: 3\n  - name: nodkim\n    when: { dkim: none }\n    score: 2\n",
        );
        let facts = |ip: &str| {
            vec![
                Fact::text(&facts::CLIENT_IP, ip),
                Fact::text(&facts::SPF_MAILFROM, "softfail"),
                Fact::text(&facts::DKIM, "none"),
            ]
        };
        let v = p.decide(Stage::Data, &facts("198.51.100.1"));
        assert_eq!(
            (v.score, v.action.clone()),
            (5, Action::Quarantine),
            "{v:?}"
        );
        assert_eq!(v.rules, vec!["soft", "nodkim", "score>=4"]);
        let v = p.decide(Stage::Mail, &facts("198.51.100.1"));
        assert_eq!(v.action, Action::Accept, "thresholds wait for DATA");
        let v = p.decide(Stage::Data, &facts("192.0.2.9"));
        assert_eq!(
            (v.action, v.rules, v.score),
            (Action::Accept, vec!["partner".to_string()], 0)
        );
    }

    /// The explanation is the decision's own walk: the rules it says FIRED are exactly the
    /// verdict's, and nothing after a deciding rule is said to have been evaluated.
    #[test]
    fn explain_follows_decide() {
        use walk::Seen;
        let p = with_file(
            "thresholds: { tag: 2, quarantine: 4 }\nrules:\n  - name: partner\n    when: { client.ip: { cidr: [192.0.2.0/24] } }\n    action: accept\n  - name: soft\n    when: { spf.mailfrom: softfail }\n    score: 3\n  - name: refuse\n    when: { dkim: fail }\n    action: reject\n  - name: nodkim\n    when: { dkim: [none, fail] }\n    score: 2\n",
        );
        let facts = |ip: &str, dkim: &str, bare: bool| {
            vec![
                Fact::text(&facts::CLIENT_IP, ip),
                Fact::text(&facts::SPF_MAILFROM, "softfail"),
                Fact::text(&facts::DKIM, dkim),
                Fact::flag(&facts::BODY_BARE_LINE_ENDINGS, bare),
            ]
        };
        let seen = |stage, f: &[Fact], name: &str| {
            p.explain(stage, f)
                .into_iter()
                .find(|e| e.name == name)
                .map(|e| e.seen)
        };
        for stage in [Stage::Mail, Stage::Data] {
            for f in [
                facts("192.0.2.9", "none", false),
                facts("198.51.100.1", "none", false),
                facts("198.51.100.1", "fail", false),
                facts("198.51.100.1", "none", true),
            ] {
                let fired: Vec<String> = p
                    .explain(stage, &f)
                    .into_iter()
                    .filter(|e| e.seen == Seen::Fired)
                    .map(|e| e.name)
                    .collect();
                assert_eq!(fired, p.decide(stage, &f).rules, "{stage:?} {f:?}");
            }
        }
        let skipped = |by: &str| Some(Seen::Skipped(by.to_string()));
        let trusted = facts("192.0.2.9", "fail", false);
        assert_eq!(seen(Stage::Data, &trusted, "partner"), Some(Seen::Fired));
        for later in ["soft", "refuse", "nodkim", "score>=2", "score>=4"] {
            assert_eq!(
                seen(Stage::Data, &trusted, later),
                skipped("partner"),
                "{later}"
            );
        }
        let refused = facts("198.51.100.1", "fail", false);
        assert_eq!(seen(Stage::Data, &refused, "soft"), Some(Seen::Fired));
        assert_eq!(seen(Stage::Data, &refused, "nodkim"), skipped("refuse"));
        let bare = facts("198.51.100.1", "none", true);
        assert_eq!(
            seen(Stage::Data, &bare, "partner"),
            skipped("bare-line-endings")
        );
        // Score 5: quarantine (4) applies, tag (2) is not also merged.
        let scored = facts("198.51.100.1", "none", false);
        assert_eq!(seen(Stage::Data, &scored, "score>=4"), Some(Seen::Fired));
        assert_eq!(seen(Stage::Data, &scored, "score>=2"), Some(Seen::No));
        assert_eq!(
            seen(Stage::Mail, &scored, "score>=4"),
            None,
            "thresholds are DATA's"
        );
        assert_eq!(
            Seen::Skipped("partner".into()).to_string(),
            "SKIPPED (decided by rule partner)"
        );
    }

    #[test]
    fn deferred_facts_are_needed_where_a_rule_could_act_on_them() {
        let names = [&facts::DNSBL_LISTED, &facts::DNSBL_SCORE];
        let scores =
            with_file("rules:\n  - name: s\n    when: { dnsbl.listed: bl.test }\n    score: 3\n");
        assert!(!scores.needs(Stage::Connect, &names));
        assert!(!scores.needs(Stage::Rcpt, &names));
        assert!(scores.needs(Stage::Data, &names));
        let at_mail = with_file(
            "rules:\n  - name: r\n    when: { dnsbl.score: { ge: 5 }, mail_from.domain: x.example }\n    action: reject\n",
        );
        assert!(!at_mail.needs(Stage::Helo, &names));
        assert!(at_mail.needs(Stage::Mail, &names));
        let other = with_file("rules:\n  - name: r\n    when: { helo: x }\n    action: reject\n");
        assert!(!other.needs(Stage::Data, &names));
    }

    #[test]
    fn header_regexes() {
        let p = with_file(
            "rules:\n  - name: pills\n    when: { header: { regex: \"(?i)^subject:.*pills\" } }\n    action: quarantine\n",
        );
        let facts = [
            Fact::text(&facts::HEADER, "From: a@b"),
            Fact::text(&facts::HEADER, "Subject: Cheap PILLS"),
        ];
        assert_eq!(p.decide(Stage::Data, &facts).action, Action::Quarantine);
        assert_eq!(p.decide(Stage::Data, &facts[..1]).action, Action::Accept);
    }

    #[test]
    fn yaml_cannot_loosen_builtin_limits() {
        let p = with_file("rules:\n  - name: everything\n    action: accept\n");
        let v = p.decide(Stage::Data, &[Fact::flag(&facts::SIZE_EXCEEDS_LIMIT, true)]);
        assert_eq!(v.action, Action::Reject(reply::MESSAGE_TOO_BIG));
    }

    #[test]
    fn bare_line_endings_follow_config() {
        let mut c = Config::default();
        let facts = [Fact::flag(&facts::BODY_BARE_LINE_ENDINGS, true)];
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

    #[test]
    fn nul_bytes_and_long_lines_follow_config() {
        let nul = [Fact::flag(&facts::BODY_NUL_BYTES, true)];
        let long = [Fact::flag(&facts::BODY_LONG_LINES, true)];
        let mut c = Config::default();
        let v = Policy::builtin(&c).decide(Stage::Data, &nul);
        assert_eq!(v.action, Action::Reject(reply::NUL_BYTES));
        assert_eq!(v.rules, vec!["nul-bytes"]);
        // Long lines pass by default, as Postfix lets them.
        assert_eq!(
            Policy::builtin(&c).decide(Stage::Data, &long).action,
            Action::Accept
        );
        c.smtp.nul_bytes = NulBytes::Strip;
        c.smtp.long_lines = LongLines::Reject;
        let p = Policy::builtin(&c);
        assert_eq!(p.decide(Stage::Data, &nul).action, Action::Accept);
        let v = p.decide(Stage::Data, &long);
        assert_eq!(v.action, Action::Reject(reply::LONG_LINES));
        assert_eq!(v.rules, vec!["long-lines"]);
    }
}
