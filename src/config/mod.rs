//! Configuration: load a YAML file into typed values, validate all of it, and hand out a
//! frozen value.
//!
//! Owns: `load` (read → validate → resolve paths → read the list files → `Config`), and the
//! `file:line:column: message` diagnostics, every one at once. Must not: open sockets, do
//! DNS, or compile policies (`policy::set::PolicySet::load` does, for whoever runs them).

pub mod backend_target;
pub mod code_range;
pub mod domains;
pub mod fingerprint;
pub mod lists;
pub mod locate;
mod read;
pub mod reply;
pub mod schema;
pub mod secret;
pub mod suggest;
pub mod units;
pub mod validate;
pub mod wording;

use std::fmt;
use std::path::Path;

pub use backend_target::BackendTarget;
pub use schema::Config;

/// One error in a config file, printed as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// A YAML syntax or type error, at the position serde reports.
    pub fn from_yaml(file: &str, e: &serde_norway::Error) -> Self {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            // The position is in the prefix already.
            message: wording::humanize(e.to_string().split(" at line ").next().unwrap_or_default()),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All the errors found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<Diagnostic>);

/// Reads, parses and validates a config file, and reads the network lists it names. Its
/// policy files are compiled by `policy::set::PolicySet::load`, once, by whoever runs them.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: file.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let mut config = parse(&file, &text)?;
    // Policy, quarantine and list files are relative to the config file.
    let dir = path.parent().unwrap_or(Path::new("."));
    config.policy = config.policy.map(|p| dir.join(p));
    config.shadow_policy = config.shadow_policy.map(|p| dir.join(p));
    config.quarantine.dir = config.quarantine.dir.map(|p| dir.join(p));
    for p in config.policy_scopes.values_mut() {
        *p = dir.join(&*p);
    }
    let c = &mut config.connections;
    for p in c.allow_files.iter_mut().chain(c.deny_files.iter_mut()) {
        *p = dir.join(&*p);
    }
    read_lists(&mut config)?;
    Ok(config)
}

/// Reads the network list files `connections.allow_files` and `deny_files` name into
/// `allow_listed` and `deny_listed`; every bad line is reported at its line.
pub fn read_lists(config: &mut Config) -> Result<(), ConfigErrors> {
    let c = &mut config.connections;
    let mut problems = Vec::new();
    let mut read = |files: &[std::path::PathBuf]| {
        let mut nets = Vec::new();
        for path in files {
            match lists::read_networks(path) {
                Ok(listed) => nets.extend(listed),
                Err(d) => problems.extend(d),
            }
        }
        nets
    };
    c.allow_listed = read(&c.allow_files);
    c.deny_listed = read(&c.deny_files);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ConfigErrors(problems)),
    }
}

/// Parses and validates config text; `file` names it in diagnostics. Every value that
/// cannot be read is reported (`read.rs`), and with them what the checks of single values
/// find in the rest (the rules across values wait until every value reads); all in the order
/// of the text (a missing key at 1:1).
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    // An empty file is an empty mapping: every key at its default, accepted_domains none.
    let text_or_empty = if text.trim().is_empty() { "{}" } else { text };
    let (config, unreadable, removed) = match read::read(file, text_or_empty) {
        Ok(config) => (config, Vec::new(), read::Removed::default()),
        Err(read::Unread {
            problems,
            rest: Some(rest),
            removed,
        }) => (*rest, problems, removed),
        Err(read::Unread { problems, .. }) => {
            return Err(ConfigErrors(
                problems.into_iter().map(|u| u.diagnostic).collect(),
            ));
        }
    };
    // While a value cannot be read, a rule that compares values would compare its default:
    // only the rules of single values run then, and not on what lies inside an unreadable
    // value.
    let checked = validate::validate(&config)
        .into_iter()
        .filter(|p| unreadable.is_empty() || !p.across)
        .map(|p| (removed.remap(&p.path), p.message))
        .filter(|(path, _)| !unreadable.iter().any(|u| inside(path, &u.path)))
        .map(|(path, message)| {
            let (line, column) = locate::locate(text, &path);
            Diagnostic {
                file: file.to_string(),
                line,
                column,
                message,
            }
        })
        .collect::<Vec<_>>();
    let mut all: Vec<Diagnostic> = unreadable.into_iter().map(|u| u.diagnostic).collect();
    all.extend(checked);
    if all.is_empty() {
        return Ok(config);
    }
    all.sort_by_key(|d| (d.line, d.column));
    Err(ConfigErrors(all))
}

/// True when `path` is `outer` or lies inside it.
fn inside(path: &[locate::Seg], outer: &[locate::Seg]) -> bool {
    path.len() >= outer.len() && outer.iter().zip(path).all(|(x, y)| x.name() == y.name())
}

/// A config for unit tests that touches nothing outside the process: the Maildir backend
/// in `dir`, sender authentication and the client DNS checks off, `example.test` and
/// `*.corp.example` accepted.
#[cfg(test)]
pub(crate) fn offline(dir: &std::path::Path) -> Config {
    let mut c = Config {
        hostname: "gw.example.test".into(),
        accepted_domains: domains::AcceptedDomains::parse(&["example.test", "*.corp.example"])
            .expect("valid"),
        ..Config::default()
    };
    c.backend.url = crate::config::BackendTarget::Maildir(dir.to_path_buf());
    c.auth.enabled = false;
    c.client_checks.rdns = false;
    c.client_checks.helo_dns = false;
    c
}

#[cfg(test)]
mod tests;
