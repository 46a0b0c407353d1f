//! The policies in force: the default one, one per recipient-domain scope, and an optional
//! shadow policy that is evaluated beside the live one but never acts.
//!
//! Owns: loading them together (so a reload swaps all or nothing), choosing a recipient's
//! scope, and the scope rule: a transaction has one scope, that of its first accepted
//! recipient; a recipient of another scope is deferred (452) so that each message gets one
//! verdict. Must not: evaluate conditions (each `Policy` does).

use std::path::PathBuf;

use super::Policy;
use crate::config::Diagnostic;
use crate::config::domains::DomainPattern;
use crate::config::schema::Config;

/// A policy bound to some recipient domains.
#[derive(Debug, Clone)]
struct Scope {
    /// The pattern as written back (`*.example.com`), for logs.
    label: String,
    pattern: DomainPattern,
    policy: Policy,
}

/// Default, scoped and shadow policies.
#[derive(Debug, Clone)]
pub struct PolicySet {
    default: Policy,
    scopes: Vec<Scope>,
    shadow: Option<Policy>,
}

/// Which policy a transaction uses: 0 is the default, 1.. the scopes in config order.
pub type ScopeId = usize;

impl PolicySet {
    /// Only the built-in rules.
    pub fn builtin(config: &Config) -> Self {
        PolicySet {
            default: Policy::builtin(config),
            scopes: Vec::new(),
            shadow: None,
        }
    }

    /// Compiles every policy file the config names; all problems of all files at once.
    pub fn load(config: &Config) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let mut compile = |path: Option<&std::path::Path>| {
            Policy::with_file(config, path)
                .map_err(|p| problems.extend(p))
                .ok()
        };
        let default = compile(config.policy.as_deref());
        let mut scopes = Vec::new();
        for (pattern, path) in &config.policy_scopes {
            if let Some(policy) = compile(Some(path)) {
                scopes.push(Scope {
                    label: pattern.to_string(),
                    pattern: pattern.clone(),
                    policy,
                });
            }
        }
        // Exact names first, then wildcards from the most specific: finance.example.com's own
        // policy wins over *.example.com's, whatever the order of the keys.
        scopes
            .sort_by_key(|s: &Scope| (s.label.starts_with("*."), std::cmp::Reverse(s.label.len())));
        let shadow = config.shadow_policy.as_deref().map(|p| compile(Some(p)));
        if let Some(default) = &default {
            problems.extend(shared_buckets(config, default, &scopes));
        }
        match (default, problems.is_empty()) {
            (Some(default), true) => Ok(PolicySet {
                default,
                scopes,
                shadow: shadow.flatten(),
            }),
            _ => Err(problems),
        }
    }

    /// The scope of a recipient domain (normalised, lower-case A-labels): an exact name before
    /// any wildcard, the longest wildcard before shorter ones, else the default.
    pub fn scope_of(&self, domain: &str) -> ScopeId {
        self.scopes
            .iter()
            .position(|s| s.pattern.matches(domain))
            .map_or(0, |i| i + 1)
    }

    /// The policy of a scope.
    pub fn get(&self, scope: ScopeId) -> &Policy {
        match scope {
            0 => &self.default,
            i => self.scopes.get(i - 1).map_or(&self.default, |s| &s.policy),
        }
    }

    /// The scope's name for logs: `default` or its domain pattern.
    pub fn label(&self, scope: ScopeId) -> &str {
        match scope {
            0 => "default",
            i => self
                .scopes
                .get(i - 1)
                .map_or("default", |s| s.label.as_str()),
        }
    }

    /// The shadow policy, if one is configured.
    pub fn shadow(&self) -> Option<&Policy> {
        self.shadow.as_ref()
    }
}

/// Rate-limit rules of the same name in different policy files would count in one bucket
/// (the bucket is named after the rule) and see each other's `ratelimit` fact: a scope's
/// transaction would be counted at MAIL by the default policy and again at its first RCPT.
/// Several scopes naming the same file share its limits, which is one policy's intent.
fn shared_buckets(config: &Config, default: &Policy, scopes: &[Scope]) -> Vec<Diagnostic> {
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    let mut problems = Vec::new();
    let default_file = config.policy.clone().unwrap_or_default();
    let files = std::iter::once((&default_file, default)).chain(scopes.iter().filter_map(|s| {
        config
            .policy_scopes
            .get(&s.pattern)
            .map(|path| (path, &s.policy))
    }));
    let mut visited = std::collections::HashSet::new();
    for (file, policy) in files {
        if !visited.insert(file) {
            continue;
        }
        for (name, (line, column)) in policy.limit_rules() {
            match seen.get(name) {
                Some(other) if other != file => problems.push(Diagnostic {
                    file: file.display().to_string(),
                    line,
                    column,
                    message: format!(
                        "limit rule {name:?} is also in {}: rename one (they would count in one bucket)",
                        other.display()
                    ),
                }),
                Some(_) => {}
                None => {
                    seen.insert(name.to_string(), file.clone());
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Stage;
    use crate::pipeline::facts;
    use crate::pipeline::outcome::{Action, Fact};

    #[test]
    fn scopes_pick_their_policy_and_files_are_all_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let strict = dir.path().join("strict.yaml");
        std::fs::write(&strict, "rules:\n  - name: strict-spf\n    when: { spf.mailfrom: softfail }\n    action: reject\n").expect("write");
        let mut c = Config::default();
        c.policy_scopes.insert(
            "finance.example.com".parse().expect("pattern"),
            strict.clone(),
        );
        c.policy_scopes
            .insert("*.finance.example.com".parse().expect("pattern"), strict);
        let set = PolicySet::load(&c).expect("valid");
        assert_eq!(set.scope_of("example.com"), 0);
        // Exact names come before wildcards.
        assert_eq!(set.scope_of("finance.example.com"), 1);
        assert_eq!(set.scope_of("eu.finance.example.com"), 2);
        let facts = [Fact::text(&facts::SPF_MAILFROM, "softfail")];
        assert_eq!(
            set.get(0).decide(Stage::Rcpt, &facts).action,
            Action::Accept
        );
        assert!(
            set.get(2)
                .decide(Stage::Rcpt, &facts)
                .action
                .refusal()
                .is_some()
        );
        assert_eq!(set.label(2), "*.finance.example.com");

        let broken = dir.path().join("broken.yaml");
        std::fs::write(
            &broken,
            "rules:\n  - name: x\n    when: { nope: 1 }\n    action: tag\n",
        )
        .expect("write");
        c.shadow_policy = Some(broken.clone());
        c.policy = Some(broken);
        let problems = PolicySet::load(&c).expect_err("two broken files");
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
