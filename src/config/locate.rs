//! Finding where a key sits in a YAML text, so that semantic errors can say `file:line:column`.
//!
//! Owns: a small indentation-based search for a path such as `limits.max_recipients` or
//! `accepted_domains[2]` in block or flow style. Must not: parse YAML values (serde does).

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(&'static str),
    /// A mapping key known only at run time (a rule's condition field).
    Name(String),
    /// A sequence index.
    Index(usize),
}

impl Seg {
    /// The key or index as text, to compare paths made of `Key` and of `Name`.
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Seg::Key(k) => (*k).into(),
            Seg::Name(k) => k.as_str().into(),
            Seg::Index(i) => i.to_string().into(),
        }
    }
}

/// Returns the 1-based (line, column) of the deepest part of `path` found in `text`;
/// (1, 1) when even the first key is absent (the value came from a default).
pub fn locate(text: &str, path: &[Seg]) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = (1, 1);
    let mut from = 0; // first line to search
    let mut parent_indent: isize = -1;
    for seg in path {
        let found = match seg {
            Seg::Key(key) => find_key(&lines, from, parent_indent, key),
            Seg::Name(key) => find_key(&lines, from, parent_indent, key),
            Seg::Index(i) => find_item(&lines, from, parent_indent, pos, *i),
        };
        match found {
            Some((line, col)) => {
                pos = (line + 1, col + 1);
                from = line;
                // The keys of a block list item sit at the item's content column, which is
                // deeper than its dash: they belong to the item, so the dash is the parent.
                parent_indent = match seg {
                    Seg::Index(_) if lines[line].trim_start().starts_with('-') => {
                        indent(lines[line]) as isize
                    }
                    _ => col as isize,
                };
            }
            None => break,
        }
    }
    pos
}

/// Like `locate`, but for a key whose value is on its own line (`command: 30 parsecs`), the
/// position of the value: where a value that cannot be read is.
pub fn locate_value(text: &str, path: &[Seg]) -> (usize, usize) {
    let (line, column) = locate(text, path);
    let key = match path.last() {
        Some(Seg::Key(k)) => *k,
        Some(Seg::Name(k)) => k.as_str(),
        _ => return (line, column),
    };
    let Some(at) = text.lines().nth(line - 1).and_then(|l| l.get(column - 1..)) else {
        return (line, column);
    };
    let Some(after) = at.strip_prefix(key) else {
        return (line, column); // the key itself was not found
    };
    let Some(value) = after.trim_start().strip_prefix(':').map(str::trim_start) else {
        return (line, column);
    };
    match value.is_empty() || value.starts_with('#') {
        true => (line, column),
        false => (line, column + key.len() + after.len() - value.len()),
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn find_key(lines: &[&str], from: usize, parent: isize, key: &str) -> Option<(usize, usize)> {
    for (n, line) in lines.iter().enumerate().skip(from) {
        let ind = indent(line);
        let body = line.trim_start().trim_start_matches("- ");
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if n > from && (ind as isize) <= parent {
            return None; // left the parent's block
        }
        // The key as written: plain, or quoted (`'bad domain': …`).
        for written in [key.to_string(), format!("'{key}'"), format!("\"{key}\"")] {
            if body.starts_with(&written) && body[written.len()..].trim_start().starts_with(':') {
                return Some((n, line.find(&written).unwrap_or(ind)));
            }
        }
        if let Some(col) = flow_key(line, key) {
            return Some((n, col));
        }
    }
    None
}

/// The column of `key:` inside a flow mapping on this line (`{ a: 1, key: 2 }`).
fn flow_key(line: &str, key: &str) -> Option<usize> {
    line.match_indices(key).map(|(i, _)| i).find(|&i| {
        let before = line[..i].trim_end().chars().last();
        let after = line[i + key.len()..].trim_start();
        matches!(before, Some('{' | ',')) && after.starts_with(':')
    })
}

fn find_item(
    lines: &[&str],
    from: usize,
    parent: isize,
    at: (usize, usize),
    i: usize,
) -> Option<(usize, usize)> {
    // Flow style on the key's own line: `key: [a, b, c]`.
    let line = lines.get(from)?;
    if let Some(open) = line[at.1.saturating_sub(1)..]
        .find('[')
        .map(|o| o + at.1 - 1)
    {
        let mut col = open + 1;
        for (k, item) in line[open + 1..].split(',').enumerate() {
            if k == i {
                return Some((from, col + (item.len() - item.trim_start().len())));
            }
            col += item.len() + 1;
        }
        return None;
    }
    // Block style: the i-th `- ` line below the key.
    let mut k = 0;
    for (n, line) in lines.iter().enumerate().skip(from + 1) {
        let ind = indent(line);
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if (ind as isize) < parent || ((ind as isize) == parent && !t.starts_with('-')) {
            return None;
        }
        if t.starts_with("- ") || t == "-" {
            if k == i {
                return Some((n, ind + 2));
            }
            k += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "hostname: mx\n# comment\nlimits:\n  max_errors: 3\n  max_recipients: 0\naccepted_domains:\n  - a.test\n  - 'bad domain'\nlisten: [\"127.0.0.1:1\", \"x\"]\n";

    #[test]
    fn finds_nested_keys_and_items() {
        assert_eq!(
            locate(DOC, &[Seg::Key("limits"), Seg::Key("max_recipients")]),
            (5, 3)
        );
        assert_eq!(
            locate(DOC, &[Seg::Key("accepted_domains"), Seg::Index(1)]),
            (8, 5)
        );
        assert_eq!(locate(DOC, &[Seg::Key("listen"), Seg::Index(1)]), (9, 25));
        assert_eq!(
            locate(DOC, &[Seg::Key("limits"), Seg::Key("absent")]),
            (3, 1)
        );
        assert_eq!(locate(DOC, &[Seg::Key("nothing")]), (1, 1));
        let flow = "rules:\n  - name: a\n    when: { spf: fail, dkim: pass }\n";
        let path = [
            Seg::Key("rules"),
            Seg::Index(0),
            Seg::Key("when"),
            Seg::Name("dkim".into()),
        ];
        assert_eq!(locate(flow, &path), (3, 24));
        assert_eq!(locate_value(flow, &path), (3, 30));
        let command = "timeouts:\n  command:   30 parsecs\n  data:\n    5m\n";
        let at = |key| [Seg::Key("timeouts"), Seg::Key(key)];
        assert_eq!(locate_value(command, &at("command")), (2, 14));
        assert_eq!(locate_value(command, &at("data")), (3, 3));
        assert_eq!(locate_value(command, &at("absent")), (1, 1));
    }
}
