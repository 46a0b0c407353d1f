//! The fingerprint of a loaded config: one short hash that changes when the config in force
//! or one of its policy files does, exported as `portcullis_config_info{hash}` so that a
//! reload that took, or two gateways that disagree, can be seen.
//!
//! Owns: what goes into the hash (the parsed config with its defaults filled in and the
//! networks of its list files, then each policy file's path and bytes, in
//! `Config::policy_files` order) and its text form. Must not:
//! be taken for a checksum of the config file (`sha256sum` of the file gives another value:
//! comments do not count, and defaults do).

use aws_lc_rs::digest::{SHA256, digest};

use super::Config;

/// Hex digits kept of the SHA-256: 64 bits, plenty to tell configs apart.
const HEX_DIGITS: usize = 16;

/// The fingerprint of `config` and of its policy files as they are on disk now. A file that
/// cannot be read counts as its read error, so that it too changes the hash.
pub fn fingerprint(config: &Config) -> String {
    let mut input = format!("{config:?}").into_bytes();
    for path in config.policy_files() {
        input.extend_from_slice(b"\0");
        input.extend_from_slice(path.as_os_str().as_encoded_bytes());
        input.extend_from_slice(b"\0");
        match std::fs::read(&path) {
            Ok(bytes) => input.extend_from_slice(&bytes),
            Err(e) => input.extend_from_slice(e.to_string().as_bytes()),
        }
    }
    digest(&SHA256, &input)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..HEX_DIGITS]
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_with_the_config_and_with_a_policy_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = crate::config::offline(dir.path());
        let hash = fingerprint(&base);
        assert_eq!(hash.len(), HEX_DIGITS);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
        assert_eq!(
            fingerprint(&base.clone()),
            hash,
            "the same config, the same hash"
        );

        let mut other = base.clone();
        other.limits.max_recipients += 1;
        assert_ne!(fingerprint(&other), hash);

        let policy = dir.path().join("p.yaml");
        std::fs::write(&policy, "rules: []\n").unwrap();
        let with_policy = Config {
            policy: Some(policy.clone()),
            ..base.clone()
        };
        let first = fingerprint(&with_policy);
        assert_ne!(first, hash);
        std::fs::write(&policy, "rules: [] # edited\n").unwrap();
        assert_ne!(fingerprint(&with_policy), first, "an edited policy file");
    }
}
