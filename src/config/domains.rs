//! The accepted-domain set: the one thing that makes the gateway not an open relay.
//!
//! Owns: `DomainPattern` (an exact name or a `*.` wildcard, IDNs as A-labels, checked when
//! the config is read) and `AcceptedDomains` (a set of them answering "is this domain
//! ours?"). Must not: parse addresses (`smtp::address`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::smtp::address::normalize_domain;

/// A config entry that is neither a domain nor a `*.domain` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid domain or *.domain wildcard")]
pub struct NotADomain(pub String);

/// One domain as the config names it: `example.com` (that name only) or `*.example.com`
/// (its subdomains only), normalised to lower-case A-labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct DomainPattern {
    /// The normalised name, without `*.`.
    name: String,
    wildcard: bool,
}

impl DomainPattern {
    /// True if `domain` (normalised: lower-case A-labels) is matched.
    pub fn matches(&self, domain: &str) -> bool {
        if !self.wildcard {
            return domain == self.name;
        }
        domain
            .strip_suffix(self.name.as_str())
            .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
    }
}

impl FromStr for DomainPattern {
    type Err = NotADomain;

    fn from_str(entry: &str) -> Result<Self, NotADomain> {
        let (wildcard, name) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let name = normalize_domain(name).ok_or_else(|| NotADomain(entry.to_string()))?;
        Ok(DomainPattern { name, wildcard })
    }
}

impl TryFrom<String> for DomainPattern {
    type Error = NotADomain;

    fn try_from(entry: String) -> Result<Self, NotADomain> {
        entry.parse()
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

/// serde adapter for a mapping keyed by domain patterns (`policy_scopes`): two keys that are
/// one pattern once normalised (`Example.com` and `example.com`) are an error, where a plain
/// map would keep the last one without a word.
pub fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<DomainPattern, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<DomainPattern, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of domains (or *.domain) to files")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<DomainPattern, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "{:?} is given twice (domains are compared in lower case, as A-labels)",
                        key.to_string()
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// Domains we accept mail for. Ordered, so that the config's fingerprint is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Vec<DomainPattern>")]
pub struct AcceptedDomains {
    exact: BTreeSet<String>,
    /// The `*.` patterns, matched by `DomainPattern::matches` (the one wildcard rule).
    wildcard: BTreeSet<DomainPattern>,
}

impl AcceptedDomains {
    /// Parses each entry; the error names the first that is not a domain or wildcard.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, NotADomain> {
        entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<DomainPattern>, _>>()
            .map(AcceptedDomains::from)
    }

    /// The set of these exact names, which must already be lower-case A-labels (the
    /// built-in defaults).
    pub(crate) fn names(names: &[&str]) -> Self {
        AcceptedDomains {
            exact: names.iter().map(|n| n.to_string()).collect(),
            wildcard: BTreeSet::new(),
        }
    }

    /// True if `domain` (already normalised: lower-case A-labels) is ours.
    pub fn contains(&self, domain: &str) -> bool {
        self.exact.contains(domain) || self.wildcard.iter().any(|p| p.matches(domain))
    }

    /// True when no domain is accepted (milter mode leaves relay control to Postfix).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The entries as the config would write them: exact names, then wildcards.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        let wild = self.wildcard.iter().map(|p| p.to_string());
        self.exact.iter().cloned().chain(wild)
    }
}

impl From<Vec<DomainPattern>> for AcceptedDomains {
    fn from(patterns: Vec<DomainPattern>) -> Self {
        let mut set = AcceptedDomains::default();
        for p in patterns {
            if p.wildcard {
                set.wildcard.insert(p);
            } else {
                set.exact.insert(p.name);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    fn ours(addr: &str) -> bool {
        let set = AcceptedDomains::parse(&["example.test", "*.corp.test", "Bücher.Example"])
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
        assert_eq!(
            AcceptedDomains::parse(&["ok.test", "exa mple.test"]),
            Err(NotADomain("exa mple.test".into()))
        );
        assert!("*".parse::<DomainPattern>().is_err());
        assert!("*.".parse::<DomainPattern>().is_err());
    }

    #[test]
    fn a_pattern_matches_like_the_set() {
        let wild: DomainPattern = "*.Corp.test".parse().expect("valid");
        assert_eq!(wild.to_string(), "*.corp.test");
        assert!(wild.matches("a.corp.test"));
        assert!(!wild.matches("corp.test"));
        assert!(!wild.matches("evilcorp.test"));
        let exact: DomainPattern = "corp.test".parse().expect("valid");
        assert!(exact.matches("corp.test") && !exact.matches("a.corp.test"));
        let set = AcceptedDomains::parse(&["b.test", "*.a.test", "a.test"]).expect("valid");
        assert_eq!(
            set.patterns().collect::<Vec<_>>(),
            ["a.test", "b.test", "*.a.test"]
        );
    }
}
