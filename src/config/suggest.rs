//! "Did you mean": the known name closest to a misspelt one.
//!
//! Owns: the edit distance (Levenshtein, over characters) and how close a name must be to be
//! suggested. Must not: know which names are known (callers pass them).

/// The candidate closest to `word`, if one is close enough to be a likely typo: one edit per
/// 4 characters (at least one), and never a name that needs as many edits as it has
/// characters.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 4).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= limit && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"` for the closest candidate, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The Levenshtein distance: insertions, deletions and substitutions of characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("max_recipent", "max_recipients"), 2);
        assert_eq!(distance("spf.reslt", "spf.result"), 1);
        assert_eq!(distance("é", "e"), 1, "characters, not bytes");
    }

    #[test]
    fn suggests_only_likely_typos() {
        let keys = ["max_sessions", "max_recipients", "max_errors"];
        assert_eq!(closest("max_recipent", keys), Some("max_recipients"));
        assert_eq!(closest("max_error", keys), Some("max_errors"));
        assert_eq!(closest("timeout", keys), None);
        // Three edits in nine characters is another word.
        assert_eq!(closest("spf.reslt", ["spf.helo"]), None);
        assert_eq!(closest("x", ["y"]), None, "a full rewrite is no typo");
        assert_eq!(
            did_you_mean("max_sesions", keys),
            "; did you mean `max_sessions`?"
        );
        assert_eq!(did_you_mean("colour", keys), "");
    }
}
