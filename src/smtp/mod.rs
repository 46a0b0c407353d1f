//! SMTP vocabulary: commands, replies, the codec, addresses and the envelope.
//!
//! Owns: protocol values and byte-level framing. Must not: do I/O, decide policy, or use
//! anything of the crate outside `smtp` (the protocol vocabulary depends on no pipeline,
//! engine or policy type; a test below holds every file to that).

pub mod address;
pub mod codec;
pub mod command;
pub mod envelope;
pub mod headers;
pub mod reply;

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn uses_nothing_of_the_crate_outside_smtp() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/smtp");
        // Built here so that this file does not match itself.
        let (path_start, ours) = (["crate", "::"].concat(), ["crate", "::smtp"].concat());
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).expect("src/smtp") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            files += 1;
            for (n, line) in text.lines().enumerate() {
                for (at, _) in line.match_indices(path_start.as_str()) {
                    assert!(
                        line[at..].starts_with(ours.as_str()),
                        "{}:{}: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        assert!(files >= 7, "only {files} files in {}", dir.display());
    }
}
