//! What checks find, and the actions a policy can take on it.
//!
//! Owns: `Fact` (a finding of a known fact), `Findings`, and `Action` (what to do) with its
//! order of strength. Must not: do I/O. The verdict, which names rules and counts limits, is
//! the policy's (`policy/verdict.rs`).

use std::fmt;

use super::facts::{FactDef, Kind};
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
    /// True for the actions that end the evaluation of a policy's rules (`accept`, `reject`,
    /// `tempfail`); tags and quarantines add up instead.
    pub fn decides(&self) -> bool {
        matches!(
            self,
            Action::Accept | Action::Reject(_) | Action::Tempfail(_)
        )
    }

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

    /// The order of strength, for merging: accept 0 < tag < quarantine < tempfail < reject 4.
    pub fn rank(&self) -> u8 {
        match self {
            Action::Accept => 0,
            Action::Tag => 1,
            Action::Quarantine => 2,
            Action::Tempfail(_) => 3,
            Action::Reject(_) => 4,
        }
    }
}
