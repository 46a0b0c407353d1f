//! Network list files: one CIDR network or bare address per line, `#` starts a comment,
//! blank lines are ignored. Used by `connections.allow_files` / `deny_files` (and the same
//! format by the policies' `cidr_file`); the inline lists of the config take the same
//! entries (`networks`).
//!
//! Owns: the format and its error messages (`path:line: ...`). Must not: decide what a
//! listed network means.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::Diagnostic;

/// One network: `192.0.2.0/24`, or a bare address as a /32 or /128.
pub fn parse_network(item: &str) -> Option<IpNet> {
    item.parse()
        .ok()
        .or_else(|| item.parse::<IpAddr>().ok().map(IpNet::from))
}

/// serde adapter for inline network lists (`connections.allow`, `tls.require.client_networks`
/// …): CIDR networks or bare addresses (`192.0.2.1` is `192.0.2.1/32`), as in list files.
/// A bad entry is named with its value and its key's YAML path.
pub fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    struct Entry(IpNet);
    impl<'de> serde::Deserialize<'de> for Entry {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(EntryVisitor)
        }
    }
    struct EntryVisitor;
    impl serde::de::Visitor<'_> for EntryVisitor {
        type Value = Entry;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an IP network (192.0.2.0/24, 2001:db8::/32) or address")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Entry, E> {
            parse_network(v).map(Entry).ok_or_else(|| {
                E::custom(format!(
                    "{v:?} is not an IP network or address (expected e.g. 192.0.2.0/24, \
                     2001:db8::/32 or 192.0.2.1)"
                ))
            })
        }
    }
    let entries: Vec<Entry> = serde::Deserialize::deserialize(d)?;
    Ok(entries.into_iter().map(|e| e.0).collect())
}

/// The lines of a list file that carry an entry, with their line numbers (from 1).
pub fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let entry = line.split('#').next().unwrap_or("").trim();
        (!entry.is_empty()).then_some((i + 1, entry))
    })
}

/// Reads a network list file; every bad line is reported at its line.
pub fn read_networks(path: &Path) -> Result<Vec<IpNet>, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let problem = |line, message| Diagnostic {
        file: file.clone(),
        line,
        column: 1,
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![problem(1, format!("cannot read: {e}"))])?;
    let mut nets = Vec::new();
    let mut problems = Vec::new();
    for (line, entry) in entries(&text) {
        match parse_network(entry) {
            Some(net) => nets.push(net),
            None => problems.push(problem(
                line,
                format!("{entry:?} is not a network (CIDR) or an address"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(nets)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_addresses_comments_and_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deny.cidr");
        std::fs::write(
            &path,
            "# bad neighbours\n192.0.2.0/24\n\n2001:db8::1  # one host\n10.0.0.300/8\n",
        )
        .expect("write");
        let problems = read_networks(&path).expect_err("line 5 is bad");
        assert_eq!(problems.len(), 1);
        let shown = problems[0].to_string();
        assert!(
            shown
                .ends_with("deny.cidr:5:1: \"10.0.0.300/8\" is not a network (CIDR) or an address"),
            "{shown}"
        );
        std::fs::write(&path, "192.0.2.0/24\n2001:db8::1 # host\n").expect("write");
        let nets = read_networks(&path).expect("valid");
        assert_eq!(nets[1], "2001:db8::1/128".parse::<IpNet>().expect("net"));
    }
}
