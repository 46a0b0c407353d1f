//! Relay protection for both front ends: a recipient outside `accepted_domains` is refused
//! at RCPT. Not a policy decision: no YAML rule can accept what this refuses.
//!
//! Owns: the accepted-domain answer for one forward path. Must not: consult the policy.

use crate::config::domains::AcceptedDomains;
use crate::smtp::address::{AddressError, parse_mailbox};
use crate::smtp::reply::{self, Reply};

/// The refusal of `address` as a recipient, or `None` when it may proceed.
pub fn refusal(domains: &AcceptedDomains, address: &str, smtputf8: bool) -> Option<Reply> {
    // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
    if address.eq_ignore_ascii_case("postmaster") {
        return None;
    }
    match parse_mailbox(address, smtputf8) {
        Ok(m) if domains.contains(&m.domain) => None,
        Ok(_) | Err(AddressError::RelayTrick) => Some(reply::RELAY_DENIED),
        Err(AddressError::Syntax) => Some(reply::BAD_RECIPIENT_SYNTAX),
        Err(AddressError::NeedsSmtpUtf8) => Some(reply::NEEDS_SMTPUTF8),
    }
}
