//! `backend.url`: where accepted mail goes, read once when the config is.
//!
//! Owns: the two URL forms (`smtp://host:port`, `maildir:PATH`) and their errors. Must not:
//! connect (`relay` does).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// Where mail goes, from `backend.url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum BackendTarget {
    /// `smtp://host:port`: the `host:port` part.
    Smtp(String),
    /// `maildir:PATH`
    Maildir(PathBuf),
}

/// A `backend.url` that is neither form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadBackendUrl {
    /// `smtp://` without a host or a port from 1 to 65535.
    #[error("{0:?}: expected smtp://host:port")]
    Smtp(String),
    /// `maildir:` without a path.
    #[error("{0:?}: expected maildir:PATH")]
    Maildir(String),
    /// Another scheme.
    #[error("{0:?}: the backend URL must start with smtp:// or maildir:")]
    Scheme(String),
}

impl FromStr for BackendTarget {
    type Err = BadBackendUrl;

    fn from_str(url: &str) -> Result<Self, BadBackendUrl> {
        if let Some(rest) = url.strip_prefix("smtp://") {
            let rest = rest.trim_end_matches('/');
            let valid = rest.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                return Err(BadBackendUrl::Smtp(url.to_string()));
            }
            return Ok(BackendTarget::Smtp(rest.to_string()));
        }
        if let Some(path) = url.strip_prefix("maildir:") {
            if path.is_empty() {
                return Err(BadBackendUrl::Maildir(url.to_string()));
            }
            return Ok(BackendTarget::Maildir(PathBuf::from(path)));
        }
        Err(BadBackendUrl::Scheme(url.to_string()))
    }
}

impl TryFrom<String> for BackendTarget {
    type Error = BadBackendUrl;

    fn try_from(url: String) -> Result<Self, BadBackendUrl> {
        url.parse()
    }
}

impl fmt::Display for BackendTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendTarget::Smtp(addr) => write!(f, "smtp://{addr}"),
            BackendTarget::Maildir(path) => write!(f, "maildir:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_and_their_errors() {
        let smtp: BackendTarget = "smtp://127.0.0.1:10025/".parse().expect("valid");
        assert_eq!(smtp, BackendTarget::Smtp("127.0.0.1:10025".into()));
        assert_eq!(smtp.to_string(), "smtp://127.0.0.1:10025");
        assert_eq!(
            "smtp://[::1]:25".parse(),
            Ok(BackendTarget::Smtp("[::1]:25".into()))
        );
        let dir: BackendTarget = "maildir:/var/mail/x".parse().expect("valid");
        assert_eq!(dir.to_string(), "maildir:/var/mail/x");
        for bad in ["smtp://host", "smtp://:25", "smtp://h:0", "smtp://h:70000"] {
            assert_eq!(
                bad.parse::<BackendTarget>(),
                Err(BadBackendUrl::Smtp(bad.into()))
            );
        }
        assert!(matches!(
            "maildir:".parse::<BackendTarget>(),
            Err(BadBackendUrl::Maildir(_))
        ));
        let e = "ftp://x".parse::<BackendTarget>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"ftp://x\": the backend URL must start with smtp:// or maildir:"
        );
    }
}
