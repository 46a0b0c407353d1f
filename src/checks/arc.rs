//! ARC (RFC 8617) chain validation, so that policies can trust known forwarders; the one
//! place where mail-auth's chain results are mapped to RFC 8617's.
//!
//! mail-auth validates the chain; `verdict` maps its result to the chain validation status of
//! RFC 8617 §5.2, which knows only `none`, `pass` and `fail`: every way a chain can be wrong
//! is `fail` with its reason (mail-auth says `neutral` for an ARC field that does not parse
//! and for the newest ARC-Message-Signature's body hash or expiry, and `permerror` for a
//! sealer key that does not exist). A key lookup that fails for a moment is `temperror`: a
//! DNS outage of ours is not a broken chain (RFC 8617 has no word for it; written down as a
//! deviation in docs/design.md).
//!
//! Fact: `arc` (pass, fail, none, temperror). Sealing is not done.

use mail_auth::arc::ArcError;
use mail_auth::{ArcOutput, DkimResult, Error};

use crate::checks::dkim;
use crate::pipeline::facts;
use crate::pipeline::outcome::Fact;

/// Our result for one message's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcVerdict {
    /// `none`, `pass`, `fail` or `temperror`.
    pub result: &'static str,
    /// Why, for the Authentication-Results comment (none for pass and none).
    pub reason: Option<String>,
}

/// The chain's verdict.
pub fn verdict(output: &ArcOutput<'_>) -> ArcVerdict {
    map(output.result())
}

fn map(result: &DkimResult) -> ArcVerdict {
    let (result, reason) = match result {
        DkimResult::Pass => ("pass", None),
        DkimResult::None => ("none", None),
        DkimResult::TempError(err) => ("temperror", Some(describe(err))),
        DkimResult::Neutral(err) | DkimResult::Fail(err) | DkimResult::PermError(err) => {
            ("fail", Some(describe(err)))
        }
    };
    ArcVerdict { result, reason }
}

/// An ARC error in words; the DKIM ones (keys, signatures) as DKIM says them.
fn describe(err: &Error) -> String {
    match err {
        Error::Arc(ArcError::BrokenChain) => "incomplete or unparsable ARC set".into(),
        Error::Arc(ArcError::ChainTooLong) => "more than 50 ARC sets".into(),
        Error::Arc(ArcError::InvalidInstance(i)) => format!("ARC instance i={i} out of order"),
        Error::Arc(ArcError::InvalidChainValidation) => "invalid cv= in ARC-Seal".into(),
        Error::Arc(ArcError::HasHeaderTag) => "h= in ARC-Seal".into(),
        Error::Arc(ArcError::BodyHashMismatch) => {
            "body hash of the newest ARC-Message-Signature did not verify".into()
        }
        Error::Arc(ArcError::SignatureExpired) => "newest ARC-Message-Signature expired".into(),
        Error::Arc(ArcError::BodyLengthTag) => "l= in ARC-Message-Signature".into(),
        other => dkim::describe(other),
    }
}

/// Facts for one chain.
pub fn facts(verdict: &ArcVerdict) -> Vec<Fact> {
    vec![Fact::text(&facts::ARC, verdict.result)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_broken_chain_is_a_fail_with_its_reason() {
        let cases = [
            (
                DkimResult::Neutral(Error::Arc(ArcError::BrokenChain)),
                "incomplete or unparsable ARC set",
            ),
            (
                DkimResult::Neutral(Error::Arc(ArcError::BodyHashMismatch)),
                "body hash of the newest ARC-Message-Signature did not verify",
            ),
            (
                DkimResult::PermError(Error::Dns(mail_auth::DnsError::InvalidRecordType)),
                "invalid key record",
            ),
            (
                DkimResult::Fail(Error::Crypto(
                    mail_auth::crypto::CryptoError::FailedVerification,
                )),
                "signature did not verify",
            ),
        ];
        for (result, reason) in cases {
            assert_eq!(
                map(&result),
                ArcVerdict {
                    result: "fail",
                    reason: Some(reason.into())
                },
                "{result:?}"
            );
        }
    }

    #[test]
    fn pass_none_and_temporary_failures_keep_their_word() {
        assert_eq!(map(&DkimResult::Pass).result, "pass");
        assert_eq!(map(&DkimResult::None).result, "none");
        let dns = DkimResult::TempError(Error::Dns(mail_auth::DnsError::Resolver("x".into())));
        assert_eq!(map(&dns).result, "temperror");
        assert_eq!(map(&dns).reason.as_deref(), Some("key lookup failed"));
    }
}
