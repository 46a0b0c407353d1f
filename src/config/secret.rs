//! A string from the config file that must not end up in a log: a password.
//!
//! Owns: `Secret`, which deserializes like a string and prints as `"<redacted>"` with `{:?}`,
//! so a config dumped for debugging, or an error that shows a struct, does not show it. Must
//! not: encrypt, or read the value from elsewhere (a file, the environment).

use serde::Deserialize;

/// A password, exactly as written in the config file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let s: Secret = serde_norway::from_str("hunter2").expect("a string");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert!(!format!("{:?}", Some(s)).contains("hunter2"));
    }
}
