//! What checks find and what policy makes of it.
//!
//! Owns: `Fact` (a finding of a known fact), `Action` (what to do), `Verdict` (the action plus why)
//! and the merge rule. Must not: do I/O.

use std::fmt;

use super::facts::{FactDef, Kind};
use crate::metrics::Limit;
use crate::smtp::reply::Reply;

/// The value of a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactValue {
    /// Something is or is not the case (`size.exceeds_limit`).
    Flag(bool),
    /// A number (`recipients.count`).
    Count(u64),
    /// A result word or a name (`spf` = `softfail`).
    Text(String),
}

/// One finding of one check: a known fact (`facts.rs`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    def: &'static FactDef,
    /// The finding.
    pub value: FactValue,
}

impl Fact {
    /// A boolean fact.
    pub fn flag(def: &'static FactDef, value: bool) -> Self {
        Fact::of(def, Kind::Flag, FactValue::Flag(value))
    }

    /// A numeric fact.
    pub fn count(def: &'static FactDef, value: u64) -> Self {
        Fact::of(def, Kind::Count, FactValue::Count(value))
    }

    /// A textual fact.
    pub fn text(def: &'static FactDef, value: impl Into<String>) -> Self {
        Fact::of(def, Kind::Text, FactValue::Text(value.into()))
    }

    fn of(def: &'static FactDef, kind: Kind, value: FactValue) -> Self {
        debug_assert_eq!(def.kind(), kind, "{def:?} is a {:?} fact", def.kind());
        Fact { def, value }
    }

    /// Its definition.
    pub fn def(&self) -> &'static FactDef {
        self.def
    }

    /// Its dotted name, `check.what`.
    pub fn name(&self) -> &'static str {
        self.def.name()
    }

    /// Whether this is a fact of `def`.
    pub fn is(&self, def: &FactDef) -> bool {
        self.def == def
    }

    /// The text, for a text fact of `def`.
    pub fn text_of(&self, def: &FactDef) -> Option<&str> {
        match &self.value {
            FactValue::Text(t) if self.is(def) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            FactValue::Flag(b) => write!(f, "{}={b}", self.name()),
            FactValue::Count(n) => write!(f, "{}={n}", self.name()),
            FactValue::Text(t) => write!(f, "{}={t}", self.name()),
        }
    }
}

/// What one check hook found: facts for the policy, and header fields to add to the message
/// (such as Authentication-Results) when it is relayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Facts for the policy.
    pub facts: Vec<Fact>,
    /// Complete header fields (name, colon, value, CRLF), prepended in order.
    pub headers: Vec<String>,
}

impl From<Vec<Fact>> for Findings {
    fn from(facts: Vec<Fact>) -> Self {
        Findings {
            facts,
            headers: Vec::new(),
        }
    }
}

/// What the gateway does with a transaction (or one command of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Continue; at DATA, relay the message.
    Accept,
    /// Relay with added headers.
    Tag,
    /// Keep the message out of the mailbox (relayed tagged until quarantine storage lands).
    Quarantine,
    /// Answer 4xx: the client retries later.
    Tempfail(Reply),
    /// Answer 5xx.
    Reject(Reply),
}

impl Action {
    /// The metric label of the action.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Tempfail(_) => "tempfail",
            Action::Reject(_) => "reject",
        }
    }

    /// The reply that ends the transaction here, for tempfail and reject.
    pub fn refusal(&self) -> Option<&Reply> {
        match self {
            Action::Tempfail(r) | Action::Reject(r) => Some(r),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Action::Accept => 0,
            Action::Tag => 1,
            Action::Quarantine => 2,
            Action::Tempfail(_) => 3,
            Action::Reject(_) => 4,
        }
    }
}

/// The decision for one stage, with the names of the rules that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The strongest action of the rules that fired.
    pub action: Action,
    /// Names of the rules that fired, in evaluation order.
    pub rules: Vec<String>,
    /// The summed score of the scoring rules that fired.
    pub score: i64,
    /// The limits of the built-in rules that fired (`Builtin::limit`): the engine counts
    /// them when it acts on a refusal.
    pub limits: Vec<Limit>,
}

impl Verdict {
    /// No rule fired.
    pub fn accept() -> Self {
        Verdict {
            action: Action::Accept,
            rules: Vec::new(),
            score: 0,
            limits: Vec::new(),
        }
    }

    /// Merges one fired rule: the stronger action wins (reject > tempfail > quarantine >
    /// tag > accept); on a tie the earlier rule's action (and reply) stays.
    pub fn merge(&mut self, rule: &str, action: &Action) {
        self.rules.push(rule.to_string());
        if action.rank() > self.action.rank() {
            self.action = action.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply;

    #[test]
    fn strongest_action_wins_first_reply_kept() {
        let mut v = Verdict::accept();
        v.merge("t", &Action::Tag);
        v.merge("a", &Action::Tempfail(reply::TOO_MANY_RECIPIENTS));
        v.merge("b", &Action::Reject(reply::MESSAGE_TOO_BIG));
        v.merge("c", &Action::Reject(reply::POLICY_REJECT));
        v.merge("d", &Action::Tag);
        assert_eq!(v.action, Action::Reject(reply::MESSAGE_TOO_BIG));
        assert_eq!(v.rules, vec!["t", "a", "b", "c", "d"]);
    }
}
