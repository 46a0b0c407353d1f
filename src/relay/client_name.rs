//! The client's host name as the backend is told it in XCLIENT `NAME=`, in Postfix's terms
//! (XCLIENT_README): the forward-confirmed name, `[UNAVAILABLE]` when there is none, or
//! `[TEMPUNAVAIL]` when a lookup failed, so that Postfix's name-based restrictions
//! (`reject_unknown_client_hostname`, `check_client_access` by name) see what Postfix would
//! have found itself, and defer rather than reject on a DNS failure.
//!
//! Owns: the three cases and their text, and the rule for which names can be sent (Postfix
//! refuses XCLIENT with `501 5.5.4 Bad NAME syntax` for a name that is not a host name).
//! Must not: look anything up (the rDNS check does, and the engine reads its facts).

/// What XCLIENT says the client's name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientName {
    /// A PTR name that resolves back to the client's address (FCrDNS).
    Verified(String),
    /// No PTR, none that resolves back, no lookup made, or a name that cannot be sent.
    Unavailable,
    /// The PTR or a forward lookup failed (timeout, SERVFAIL).
    TempUnavailable,
}

impl ClientName {
    /// A verified name, or `Unavailable` when it is not a host name Postfix takes.
    pub fn verified(name: &str) -> ClientName {
        if is_hostname(name) {
            ClientName::Verified(name.to_ascii_lowercase())
        } else {
            ClientName::Unavailable
        }
    }

    /// The value of `NAME=` (a host name needs no xtext encoding).
    pub fn xclient_value(&self) -> &str {
        match self {
            ClientName::Verified(name) => name,
            ClientName::Unavailable => "[UNAVAILABLE]",
            ClientName::TempUnavailable => "[TEMPUNAVAIL]",
        }
    }
}

/// A host name: dot-separated labels of letters, digits and hyphens (not at either end of a
/// label), each 1 to 63 bytes, 255 in all, and a last label that is not all digits (it
/// would read as an address). Underscores are refused too: Postfix's `valid_hostname`
/// accepts them, but a name from DNS with one is not a host name (RFC 952/1123).
fn is_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= 255
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_are_sent() {
        assert_eq!(
            ClientName::verified("Mail.Example.ORG").xclient_value(),
            "mail.example.org"
        );
        assert_eq!(
            ClientName::verified("mx-1.example.org.").xclient_value(),
            "mx-1.example.org."
        );
        for bad in [
            "",
            ".",
            "a..b",
            "-a.example",
            "a-.example",
            "under_score.example",
            "sp ace.example",
            "x+y.example",
            "192.0.2.1",
            &format!("{}.example", "a".repeat(64)),
        ] {
            assert_eq!(
                ClientName::verified(bad),
                ClientName::Unavailable,
                "{bad:?}"
            );
        }
        assert_eq!(ClientName::Unavailable.xclient_value(), "[UNAVAILABLE]");
        assert_eq!(ClientName::TempUnavailable.xclient_value(), "[TEMPUNAVAIL]");
    }
}
