//! The decision for one stage: the action, the rules that produced it, and the limits they
//! enforced.
//!
//! Owns: `Verdict` and the merge rule (the stronger action wins; on a tie the earlier rule's
//! reply stays). Must not: evaluate rules (`walk.rs`) or emit metrics (the engine counts
//! `rules` and `limits` when it acts on a verdict).

use crate::metrics::Limit;
use crate::pipeline::outcome::Action;

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
    /// them when it acts on the verdict.
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
