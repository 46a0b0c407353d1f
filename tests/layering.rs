//! The crate's top-level modules form no import circle: read from `use crate::…` and
//! `crate::…` paths in `src/`, test code (after `#[cfg(test)]`) left out. A circle makes
//! two modules one in all but name (neither can change without the other), which is how
//! `config` came to compile policies and `pipeline` to import the policy it serves.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each top-level module and the other top-level modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = without_tests(&text);
        let named = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                named.insert(name);
            }
        }
    }
    graph
}

/// `code` without its test-only items: each `#[cfg(test)]` and the item after it, up to its
/// `;` or through its `{ … }` block.
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let end = match (item.find(';'), item.find('{')) {
            (Some(semi), Some(brace)) if semi < brace => semi + 1,
            (Some(semi), None) => semi + 1,
            (_, Some(brace)) => block_end(item, brace),
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The index just past the `}` that closes the `{` at `open`.
fn block_end(text: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// A path from `from` back to itself, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut paths = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = paths.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut found = path.clone();
                found.push(next.clone());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                paths.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_top_level_module_imports_itself_in_a_circle() {
    let graph = imports();
    assert!(graph.len() > 20, "read too few modules: {graph:?}");
    assert!(
        graph["engine"].contains("policy"),
        "the scan must see imports: {graph:?}"
    );
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| circle(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn only_test_items_are_left_out() {
    let code = "use crate::a;\n#[cfg(test)]\nuse crate::b;\n#[cfg(test)]\nfn t() { if x { crate::c } }\nfn real() { crate::d }\n#[cfg(test)]\nmod tests { use crate::e; }\n";
    let kept = without_tests(code);
    assert!(
        kept.contains("crate::a") && kept.contains("crate::d"),
        "{kept}"
    );
    for gone in ["crate::b", "crate::c", "crate::e"] {
        assert!(!kept.contains(gone), "{gone} in {kept}");
    }
}

#[test]
fn the_scan_finds_a_circle_when_there_is_one() {
    let mut graph = imports();
    graph
        .get_mut("smtp")
        .unwrap()
        .insert("pipeline".to_string());
    let found = circle(&graph, "smtp").expect("smtp -> pipeline -> smtp");
    assert_eq!(found.first(), found.last());
}
