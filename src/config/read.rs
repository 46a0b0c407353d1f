//! Reading YAML text into a `Config`, with every value that cannot be read reported, not
//! only the first.
//!
//! Owns: the repeat-and-remove loop. serde stops at the first value it cannot read, so the
//! text is parsed once into a YAML tree; the tree is deserialized, and the value at the
//! failing path is removed and the tree deserialized again, until it reads or
//! `MAX_PROBLEMS` are found. Each problem is placed by its path (`locate.rs`), which is
//! more exact than serde's own position for a value read through `try_from` (serde points
//! at the enclosing mapping). A config without problems is the one read from the text
//! itself: the tree only looks for more problems, since it reads some scalars differently
//! (an unquoted `0660` is a number in the tree, a string when read from text). Must not:
//! check across fields (`validate.rs`).

use serde_norway::Value;
use serde_path_to_error::Segment;

use super::locate::{Seg, locate, locate_value};
use super::{Config, Diagnostic, wording};

/// Enough to show every problem of a config file that is wrong everywhere.
pub const MAX_PROBLEMS: usize = 50;

/// A value that could not be read, at its path.
pub struct Unreadable {
    /// Where, as `locate` takes it.
    pub path: Vec<Seg>,
    /// The diagnostic, placed.
    pub diagnostic: Diagnostic,
}

/// What could not be read in a config text.
pub struct Unread {
    /// Every value that could not be read, in the order found.
    pub problems: Vec<Unreadable>,
    /// The config the rest reads as (each unreadable value removed), so that the checks of
    /// single values can report what is wrong elsewhere; `None` when the text is not YAML or
    /// the rest could not be read either.
    pub rest: Option<Box<Config>>,
    /// The list items taken out, to tell a path into `rest` in the text's own indices.
    pub removed: Removed,
}

/// The config in `text`, or every value in it that cannot be read, each with its path.
pub fn read(file: &str, text: &str) -> Result<Config, Unread> {
    let first = serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text));
    let error = match first {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let mut removed = Removed::default();
    let Ok(mut tree) = serde_norway::from_str::<Value>(text) else {
        // Not YAML at all: serde's own position is the only one there is.
        let diagnostic = Diagnostic::from_yaml(file, error.inner());
        let problems = vec![Unreadable {
            path: Vec::new(),
            diagnostic,
        }];
        return Err(Unread {
            problems,
            rest: None,
            removed,
        });
    };
    // The text's own first problem is real whatever the tree says; the tree finds the rest.
    let segments: Vec<&Segment> = error.path().iter().collect();
    let path = removed.original(&segments);
    let message = bare(&error.inner().to_string(), &path);
    let mut problems = vec![place(file, text, path.clone(), &message)];
    let mut rest = None;
    if remove(&mut tree, &segments) {
        removed.record(&path);
        // Each round removes a value or turns one into a string, so the tree shrinks or
        // settles; the bound is for safety.
        for _ in 0..MAX_PROBLEMS * 4 {
            let error = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
                Ok(config) => {
                    rest = Some(Box::new(config));
                    break;
                }
                Err(e) => e,
            };
            let segments: Vec<&Segment> = error.path().iter().collect();
            // Where a string is wanted, a plain scalar the tree reads as a number, a boolean
            // or null is a string when read from text: give it to the tree as that string and
            // read again, so that it is judged as the text would judge it.
            let message = error.inner().to_string();
            let wants_text = ["expected a string", "expected path string"]
                .iter()
                .any(|w| message.contains(w));
            if wants_text && as_text(&mut tree, &segments) {
                continue;
            }
            let path = removed.original(&segments);
            if problems.len() == MAX_PROBLEMS {
                let more = "more problems follow: fix these first".to_string();
                problems.push(place(file, text, path, &more));
                break;
            }
            problems.push(place(file, text, path.clone(), &message));
            if !remove(&mut tree, &segments) {
                break; // nothing left to take out: report what was found
            }
            removed.record(&path);
        }
    }
    Err(Unread {
        problems,
        rest,
        removed,
    })
}

/// serde_norway's message without what it adds when reading text: the path of the value or
/// of a mapping around it in front, the position behind.
fn bare(message: &str, path: &[Seg]) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    (1..=path.len())
        .rev()
        .find_map(|k| message.strip_prefix(&format!("{}: ", dotted(&path[..k]))))
        .unwrap_or(message)
        .to_string()
}

/// Turns the number, boolean or null at `path` into the string the text has there (null:
/// empty); false when the value there is something else, or nothing.
fn as_text(tree: &mut Value, path: &[&Segment]) -> bool {
    let Some(node) = node_at(tree, path) else {
        return false;
    };
    let text = match &*node {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        _ => return false,
    };
    *node = Value::String(text);
    true
}

/// The diagnostic for `message` at `path`: an unknown key is shown at the key, under its
/// mapping's name; any other value at the value, under its own path.
fn place(file: &str, text: &str, path: Vec<Seg>, message: &str) -> Unreadable {
    let unknown_key = message.starts_with("unknown field");
    // A key that is itself a value (a `policy_scopes` domain) is quoted in its message.
    let bad_key = matches!(path.last(), Some(Seg::Name(k)) if message.contains(&format!("{k:?}")));
    let (prefix, (line, column)) = match (unknown_key, bad_key) {
        (true, _) => (&path[..path.len().saturating_sub(1)], locate(text, &path)),
        (false, true) => (&path[..], locate(text, &path)),
        (false, false) => (&path[..], locate_value(text, &path)),
    };
    let message = match prefix.is_empty() {
        true => wording::humanize(message),
        false => format!("{}: {}", dotted(prefix), wording::humanize(message)),
    };
    Unreadable {
        diagnostic: Diagnostic {
            file: file.to_string(),
            line,
            column,
            message,
        },
        path,
    }
}

/// `limits.max_recipients`, `accepted_domains[1]`.
pub fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => push_key(&mut out, k),
            Seg::Name(k) => push_key(&mut out, k),
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

/// The node at `path` in `tree`, if there is one.
fn node_at<'t>(tree: &'t mut Value, path: &[&Segment]) -> Option<&'t mut Value> {
    let mut node = tree;
    for seg in path {
        node = match (seg, node) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str())?,
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Takes the node at `path` out of `tree`; false when there is none.
fn remove(tree: &mut Value, path: &[&Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let Some(node) = node_at(tree, parents) else {
        return false;
    };
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(s)) if *index < s.len() => {
            s.remove(*index);
            true
        }
        _ => false,
    }
}

/// The sequence items taken out so far, by the path of their sequence in the text, so that a
/// later path through a shortened sequence can be told in the text's own indices.
#[derive(Default)]
pub struct Removed(Vec<(Vec<Seg>, Vec<usize>)>);

impl Removed {
    /// `path` (into the config read without the removed items) in the text's indices.
    pub fn remap(&self, path: &[Seg]) -> Vec<Seg> {
        let mut out: Vec<Seg> = Vec::new();
        for seg in path {
            match seg {
                Seg::Index(i) => {
                    let index = self.shifted(&out, *i);
                    out.push(Seg::Index(index));
                }
                other => out.push(other.clone()),
            }
        }
        out
    }

    /// `index` of the list at `list` (the text's indices), counting the items removed.
    fn shifted(&self, list: &[Seg], mut index: usize) -> usize {
        let same = |p: &[Seg]| {
            p.len() == list.len() && p.iter().zip(list).all(|(a, b)| a.name() == b.name())
        };
        if let Some((_, gone)) = self.0.iter().find(|(p, _)| same(p)) {
            // `gone` is ascending: each item taken out at or before the index moves it one
            // further in the text.
            for g in gone {
                if *g <= index {
                    index += 1;
                }
            }
        }
        index
    }

    /// `path` (in the tree as it is now) in the text's indices.
    fn original(&self, path: &[&Segment]) -> Vec<Seg> {
        let as_seg: Vec<Seg> = path
            .iter()
            .filter_map(|seg| match seg {
                Segment::Map { key } => Some(Seg::Name(key.clone())),
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        self.remap(&as_seg)
    }

    /// Notes that the item at `path` (the text's indices) was taken out.
    fn record(&mut self, path: &[Seg]) {
        let Some((Seg::Index(i), parent)) = path.split_last() else {
            return;
        };
        match self.0.iter_mut().find(|(p, _)| p == parent) {
            Some((_, gone)) => {
                gone.push(*i);
                gone.sort_unstable();
            }
            None => self.0.push((parent.to_vec(), vec![*i])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        match read("c.yaml", text) {
            Ok(_) => Vec::new(),
            Err(unread) => unread
                .problems
                .iter()
                .map(|p| p.diagnostic.to_string())
                .collect(),
        }
    }

    #[test]
    fn every_unreadable_value_is_reported_where_it_is() {
        let text = "accepted_domains: [a.test, 'bad one', 'x y', b.test, '*']\n\
                    limits:\n  max_recipent: 5\n  max_errors: lots\n\
                    backend: { url: \"ftp://x\" }\n\
                    timeouts:\n  command: 30 parsecs\n";
        assert_eq!(
            messages(text),
            [
                "c.yaml:1:28: accepted_domains[1]: \"bad one\" is not a valid domain or *.domain wildcard",
                "c.yaml:1:39: accepted_domains[2]: \"x y\" is not a valid domain or *.domain wildcard",
                "c.yaml:1:54: accepted_domains[4]: \"*\" is not a valid domain or *.domain wildcard",
                "c.yaml:3:3: limits: unknown field `max_recipent`; did you mean `max_recipients`? (expected one of `max_sessions`, `max_message_size`, `max_recipients`, `max_line_length`, `max_errors`, `max_unknown_recipients`, `max_commands`)",
                "c.yaml:4:15: limits.max_errors: invalid type: string \"lots\", expected a whole number",
                "c.yaml:5:17: backend.url: \"ftp://x\": the backend URL must start with smtp:// or maildir:",
                "c.yaml:7:12: timeouts.command: invalid duration unit in \"30 parsecs\": use ms, s, m, h or d",
            ]
        );
    }

    #[test]
    fn a_scalar_the_tree_reads_as_a_number_is_judged_as_text() {
        let m = messages(
            "listen: []\nmilter:\n  listen: [\"unix:/x\"]\n  socket_mode: 0660\nlimits:\n  max_errors: x\n",
        );
        assert_eq!(
            m,
            ["c.yaml:6:15: limits.max_errors: invalid type: string \"x\", expected a whole number"]
        );
    }

    #[test]
    fn a_readable_config_is_read_from_the_text_itself() {
        // In the tree an unquoted 0660 is the number 660; read from the text it is the
        // octal mode the operator meant.
        let c = read(
            "c.yaml",
            "listen: []\nmilter:\n  listen: [\"unix:/x\"]\n  socket_mode: 0660\n",
        )
        .unwrap_or_else(|_| panic!("valid"));
        assert_eq!(c.milter.socket_mode, 0o660);
    }

    #[test]
    fn not_yaml_is_one_problem_at_serdes_position() {
        let m = messages("limits:\n  max_errors: [1\n");
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("c.yaml:"), "{m:?}");
    }

    #[test]
    fn items_taken_out_keep_their_place_in_the_text() {
        let mut removed = Removed::default();
        let zones = vec![Seg::Name("zones".into())];
        let at = |i| {
            let mut p = zones.clone();
            p.push(Seg::Index(i));
            p
        };
        removed.record(&at(1));
        removed.record(&at(2));
        let map = Segment::Map {
            key: "zones".into(),
        };
        let seq = |index| Segment::Seq { index };
        assert_eq!(removed.original(&[&map, &seq(0)]), at(0));
        assert_eq!(removed.original(&[&map, &seq(1)]), at(3));
    }
}
