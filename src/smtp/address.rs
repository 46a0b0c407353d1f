//! Mailbox parsing for relay protection.
//!
//! Owns: splitting a forward path into local part and domain, normalising the domain
//! (case, IDN to A-labels) and refusing the classic relay tricks. Must not: know which
//! domains are accepted (that is `config::domains`) or reply to the client.
//!
//! smtp-proto has already removed source routes (`@ours:user@other` arrives as
//! `user@other`) and quotes (`"user@other"@ours` arrives as `user@other@ours`), so what
//! remains to catch is routing syntax left inside the local part.

/// A recipient address split and normalised for the accepted-domain decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part as the client sent it (case preserved: it is the backend's business).
    pub local: String,
    /// The domain, lower-case ASCII (IDNs as A-labels).
    pub domain: String,
}

/// Why a recipient address is refused before any domain lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Not `local@domain` at all.
    Syntax,
    /// Routing syntax in the local part (`@`, `%`, `!`), a trailing dot, an address
    /// literal, or a domain that is not a valid host name: treated as a relay attempt.
    RelayTrick,
    /// Non-ASCII address without SMTPUTF8 on MAIL (RFC 6531 §3.4).
    NeedsSmtpUtf8,
}

/// Parses a forward path. `smtputf8` tells whether the transaction declared SMTPUTF8.
pub fn parse_mailbox(address: &str, smtputf8: bool) -> Result<Mailbox, AddressError> {
    if !smtputf8 && !address.is_ascii() {
        return Err(AddressError::NeedsSmtpUtf8);
    }
    let (local, domain) = address.rsplit_once('@').ok_or(AddressError::Syntax)?;
    if local.is_empty() || domain.is_empty() {
        return Err(AddressError::Syntax);
    }
    if local.contains(['@', '%', '!']) {
        return Err(AddressError::RelayTrick);
    }
    if domain.ends_with('.') || domain.starts_with('[') {
        return Err(AddressError::RelayTrick);
    }
    let domain = normalize_domain(domain).ok_or(AddressError::RelayTrick)?;
    Ok(Mailbox {
        local: local.to_string(),
        domain,
    })
}

/// Lower-cases a domain and converts U-labels to A-labels; `None` if it is not a valid
/// host name (so that odd characters can never slip past a suffix comparison).
pub fn normalize_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_idn() {
        let m = parse_mailbox("Alice@Example.TEST", false);
        assert_eq!(
            m,
            Ok(Mailbox {
                local: "Alice".into(),
                domain: "example.test".into()
            })
        );
        let m = parse_mailbox("josé@bücher.example", true);
        assert_eq!(m.map(|m| m.domain), Ok("xn--bcher-kva.example".into()));
        assert_eq!(
            parse_mailbox("josé@bücher.example", false),
            Err(AddressError::NeedsSmtpUtf8)
        );
    }

    #[test]
    fn relay_tricks() {
        for trick in [
            "user%other.example@ours.test",
            "user@other.example@ours.test", // what `"user@other.example"@ours.test` becomes
            "other.example!user@ours.test",
            "user@ours.test.",
            "user@[127.0.0.1]",
            "user@ours.test\u{0}.evil",
            "user@ours..test",
            "user@-ours.test",
        ] {
            assert!(
                matches!(
                    parse_mailbox(trick, true),
                    Err(AddressError::RelayTrick | AddressError::Syntax)
                ),
                "{trick} was not refused"
            );
        }
        assert_eq!(
            parse_mailbox("postmaster", false),
            Err(AddressError::Syntax)
        );
    }
}
