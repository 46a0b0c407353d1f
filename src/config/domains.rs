//! The accepted-domain set: the one thing that makes the gateway not an open relay.
//!
//! Owns: compiling `accepted_domains` (exact names and `*.` wildcards, IDNs as A-labels)
//! and answering "is this domain ours?". Must not: parse addresses (`smtp::address`).

use std::collections::HashSet;

use crate::smtp::address::normalize_domain;

/// Domains we accept mail for.
#[derive(Debug, Clone, Default)]
pub struct AcceptedDomains {
    exact: HashSet<String>,
    /// Suffixes with a leading dot: `*.example.com` is stored as `.example.com`.
    wildcard: Vec<String>,
}

impl AcceptedDomains {
    /// Compiles the list; returns the first entry that is not a valid domain or wildcard.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let mut set = AcceptedDomains::default();
        for entry in entries {
            let (wild, name) = match entry.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, entry.as_str()),
            };
            let name = normalize_domain(name)
                .ok_or_else(|| format!("{entry:?} is not a valid domain or *.domain wildcard"))?;
            if wild {
                set.wildcard.push(format!(".{name}"));
            } else {
                set.exact.insert(name);
            }
        }
        Ok(set)
    }

    /// True if `domain` (already normalised: lower-case A-labels) is ours.
    pub fn contains(&self, domain: &str) -> bool {
        self.exact.contains(domain)
            || self
                .wildcard
                .iter()
                .any(|suffix| domain.ends_with(suffix.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn ours(addr: &str) -> bool {
        let set = AcceptedDomains::new(&[
            "example.test".into(),
            "*.corp.test".into(),
            "Bücher.Example".into(),
        ])
        .expect("valid");
        parse_mailbox(addr, true)
            .map(|m| set.contains(&m.domain))
            .unwrap_or(false)
    }

    #[test]
    fn exact_wildcard_case_idn() {
        assert!(ours("a@example.test"));
        assert!(ours("a@EXAMPLE.Test"));
        assert!(ours("a@mx.corp.test"));
        assert!(ours("a@a.b.corp.test"));
        assert!(!ours("a@corp.test"), "wildcard covers subdomains only");
        assert!(!ours("a@evilcorp.test"));
        assert!(!ours("a@example.test.evil"));
        assert!(ours("a@bücher.example"));
        assert!(ours("a@xn--bcher-kva.example"));
    }

    #[test]
    fn every_relay_trick_is_refused() {
        for trick in [
            "user%other.example@example.test",
            "user@other.example@example.test",
            "other.example!user@example.test",
            "user@example.test.",
            "user@other.example",
            "user@[192.0.2.1]",
            "user@example.test.other.example",
        ] {
            assert!(!ours(trick), "{trick} accepted");
        }
    }

    #[test]
    fn invalid_entries_are_refused() {
        assert!(AcceptedDomains::new(&["exa mple.test".into()]).is_err());
        assert!(AcceptedDomains::new(&["*".into()]).is_err());
    }
}
