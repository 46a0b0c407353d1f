//! Conditions over facts, as written in YAML policies and compiled once.
//!
//! Owns: `Condition` (fact tests and all/any/not), `Matcher` (equality, sets, numeric
//! comparisons, CIDR, glob, regex, lists from files) and their evaluation. A condition on a
//! fact holds when any fact of that name matches (recipients and DKIM signatures come many).
//! Must not: do I/O at evaluation time (list files are read when the policy is compiled).

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

use crate::pipeline::facts::FactDef;
use crate::pipeline::outcome::{Fact, FactValue};

/// A test on one fact value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal (text case-insensitively, flags and numbers exactly).
    Eq(Scalar),
    /// Equal to one of these.
    OneOf(Vec<Scalar>),
    /// Numeric comparison.
    Cmp(Cmp, i64),
    /// The text is an IP address inside one of these networks.
    Cidr(Vec<IpNet>),
    /// The text matches this regex (glob patterns are compiled to one too).
    Regex(Regex),
    /// The matcher does not hold.
    Not(Box<Matcher>),
}

/// A literal in a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A word, name or address.
    Text(String),
    /// true / false.
    Flag(bool),
    /// A number.
    Number(i64),
}

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// >
    Gt,
    /// >=
    Ge,
    /// <
    Lt,
    /// <=
    Le,
}

/// When a rule fires.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The fact is present as `Flag(true)`.
    Flag(&'static FactDef),
    /// The fact is present with this text (`dmarc` = `fail`).
    Is(&'static FactDef, &'static str),
    /// Some fact of `.0` satisfies the matcher.
    Fact(&'static FactDef, Matcher),
    /// Every condition holds (an empty list holds).
    All(Vec<Condition>),
    /// At least one condition holds.
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// Evaluates the condition over the facts known now.
    pub fn holds(&self, facts: &[Fact]) -> bool {
        match self {
            Condition::Flag(def) => facts
                .iter()
                .any(|f| f.is(def) && f.value == FactValue::Flag(true)),
            Condition::Is(def, text) => facts.iter().any(|f| f.text_of(def) == Some(*text)),
            Condition::Fact(def, m) => facts.iter().any(|f| f.is(def) && m.matches(&f.value)),
            Condition::All(all) => all.iter().all(|c| c.holds(facts)),
            Condition::Any(any) => any.iter().any(|c| c.holds(facts)),
            Condition::Not(c) => !c.holds(facts),
        }
    }

    /// Every fact the condition reads.
    pub fn facts(&self, out: &mut Vec<&'static FactDef>) {
        match self {
            Condition::Flag(d) | Condition::Is(d, _) | Condition::Fact(d, _) => out.push(d),
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.facts(out)),
            Condition::Not(c) => c.facts(out),
        }
    }
}

impl Matcher {
    /// Tests one fact value.
    pub fn matches(&self, value: &FactValue) -> bool {
        match self {
            Matcher::Eq(s) => scalar_eq(s, value),
            Matcher::OneOf(list) => list.iter().any(|s| scalar_eq(s, value)),
            Matcher::Cmp(op, n) => match value {
                FactValue::Count(v) => {
                    let v = i64::try_from(*v).unwrap_or(i64::MAX);
                    match op {
                        Cmp::Gt => v > *n,
                        Cmp::Ge => v >= *n,
                        Cmp::Lt => v < *n,
                        Cmp::Le => v <= *n,
                    }
                }
                _ => false,
            },
            Matcher::Cidr(nets) => match value {
                FactValue::Text(t) => t
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| nets.iter().any(|n| n.contains(&ip))),
                _ => false,
            },
            Matcher::Regex(re) => matches!(value, FactValue::Text(t) if re.is_match(t)),
            Matcher::Not(m) => !m.matches(value),
        }
    }
}

fn scalar_eq(s: &Scalar, value: &FactValue) -> bool {
    match (s, value) {
        (Scalar::Text(a), FactValue::Text(b)) => a.eq_ignore_ascii_case(b),
        (Scalar::Flag(a), FactValue::Flag(b)) => a == b,
        (Scalar::Number(a), FactValue::Count(b)) => i64::try_from(*b).is_ok_and(|b| *a == b),
        _ => false,
    }
}

/// Compiles a glob (`*` any run, `?` one character) to an anchored, case-insensitive regex.
pub fn glob(pattern: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("(?i)^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::facts;

    fn t(def: &'static FactDef, v: &str) -> Fact {
        Fact::text(def, v)
    }

    #[test]
    fn matchers() {
        let facts = vec![
            t(&facts::SPF_MAILFROM, "softfail"),
            t(&facts::CLIENT_IP, "192.0.2.7"),
            Fact::count(&facts::SIZE_ACTUAL, 5000),
            t(&facts::RCPT, "a@example.com"),
            t(&facts::RCPT, "b@finance.example.com"),
            Fact::flag(&facts::BODY_BARE_LINE_ENDINGS, false),
        ];
        let c = |def: &'static FactDef, m: Matcher| Condition::Fact(def, m);
        let text = |s: &str| Scalar::Text(s.into());
        assert!(
            c(
                &facts::SPF_MAILFROM,
                Matcher::OneOf(vec![text("fail"), text("SOFTFAIL")])
            )
            .holds(&facts)
        );
        assert!(!c(&facts::SPF_MAILFROM, Matcher::Eq(text("fail"))).holds(&facts));
        assert!(
            c(
                &facts::CLIENT_IP,
                Matcher::Cidr(vec!["192.0.2.0/24".parse().unwrap()])
            )
            .holds(&facts)
        );
        assert!(
            !c(
                &facts::CLIENT_IP,
                Matcher::Cidr(vec!["10.0.0.0/8".parse().unwrap()])
            )
            .holds(&facts)
        );
        assert!(c(&facts::SIZE_ACTUAL, Matcher::Cmp(Cmp::Gt, 4999)).holds(&facts));
        assert!(!c(&facts::SIZE_ACTUAL, Matcher::Cmp(Cmp::Gt, 5000)).holds(&facts));
        assert!(
            c(
                &facts::RCPT,
                Matcher::Regex(glob("*@finance.example.com").unwrap())
            )
            .holds(&facts)
        );
        assert!(
            c(
                &facts::BODY_BARE_LINE_ENDINGS,
                Matcher::Eq(Scalar::Flag(false))
            )
            .holds(&facts)
        );
        assert!(
            !c(&facts::DKIM, Matcher::Eq(text("pass"))).holds(&facts),
            "absent fact never matches"
        );
        let any = Condition::Any(vec![
            c(&facts::DKIM, Matcher::Eq(text("pass"))),
            c(&facts::SPF_MAILFROM, Matcher::Eq(text("softfail"))),
        ]);
        assert!(any.holds(&facts));
        assert!(!Condition::Not(Box::new(any)).holds(&facts));
        assert!(Condition::All(vec![]).holds(&facts));
    }

    #[test]
    fn globs_are_anchored_and_escaped() {
        let g = glob("*.example.com").unwrap();
        assert!(g.is_match("mx.EXAMPLE.com"));
        assert!(!g.is_match("mx.example.com.evil"));
        assert!(!g.is_match("mxXexample.com"));
    }
}
