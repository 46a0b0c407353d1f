//! DKIM (RFC 6376, RFC 8463 ed25519) verification of every signature of a message, and the
//! one place where mail-auth's results are corrected to the RFCs.
//!
//! mail-auth verifies the cryptography; `verdicts` turns its outputs into ours, one
//! `DkimVerdict` per DKIM-Signature field, with a reason for the Authentication-Results
//! comment:
//! - `a=rsa-sha1` is never a pass: `permerror` (RFC 8301 §3.1: rsa-sha1 MUST NOT be used for
//!   verifying). mail-auth verifies it.
//! - a signature whose `h=` does not list From is ignored: `permerror` (RFC 6376 §5.4 and
//!   §6.1.1, "From field not signed"). mail-auth passes it, so a replayed signature would
//!   carry any From of its domain.
//! - a field that does not parse (a missing `bh=`, any malformed tag list) is `permerror`
//!   (RFC 6376 §6.1.1 PERMFAIL, signature syntax error). mail-auth leaves it out.
//! - a body hash mismatch is `fail (body hash did not verify)` (RFC 8601 §2.7.1). mail-auth
//!   says `neutral`.
//! - `l=`: a signature whose first `l` octets of body verify is `pass` (RFC 6376 §3.4.5).
//!   When the body is longer than `l` (something unsigned may follow), the fact
//!   `dkim.l_tag` says so, for a policy to distrust; with `auth.dkim_allow_partial_body:
//!   false` it is `policy` instead (RFC 8601: "not acceptable to the ADMD") and adds
//!   `dkim.partial_body_refused`. An `l=` that covers the whole body is a plain pass.
//! - more than `MAX_SIGNATURES` fields: none is verified, one `permerror` says why.
//!
//! Facts: `dkim` (the best result over all signatures), one `dkim.signature` per signature
//! (`d=… s=… a=… result=…`), `dkim.domain` per passing `d=`, the flags above. RSA keys below
//! 1024 bits fail inside mail-auth (RFC 8301 §3.2). Must not: alter the message.

use mail_auth::crypto::Algorithm;
use mail_auth::dkim::{DkimError, Signature};
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, Error};

use crate::pipeline::facts;
use crate::pipeline::outcome::Fact;

/// Our result for one DKIM-Signature field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimVerdict {
    /// The RFC 8601 result word: pass, fail, neutral, policy, temperror, permerror.
    pub result: &'static str,
    /// Why, for the Authentication-Results comment (none for a plain pass).
    pub reason: Option<String>,
    /// `d=`, lowercased, when the field has one.
    pub domain: Option<String>,
    /// `s=`, when the field has one.
    pub selector: Option<String>,
    /// `a=` as written in the field.
    pub algorithm: Option<String>,
    /// The first 8 characters of `b=` (RFC 6008 `header.b`).
    pub b_prefix: Option<String>,
    /// `l=`, when the signature covers only part of the body.
    pub body_length: Option<u64>,
}

impl DkimVerdict {
    /// The verdict of an unsigned message (RFC 8601 §2.7.1: reported, not left out).
    pub fn unsigned() -> DkimVerdict {
        DkimVerdict {
            result: "none",
            reason: None,
            domain: None,
            selector: None,
            algorithm: None,
            b_prefix: None,
            body_length: None,
        }
    }
}

/// The RFC 8601 result word of one mail-auth result, before our corrections.
pub fn word(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

/// The overall result: pass if any signature passes, otherwise the most telling failure.
pub fn overall(verdicts: &[DkimVerdict]) -> &'static str {
    const ORDER: [&str; 6] = [
        "pass",
        "fail",
        "policy",
        "temperror",
        "permerror",
        "neutral",
    ];
    ORDER
        .into_iter()
        .find(|w| verdicts.iter().any(|v| v.result == *w))
        .unwrap_or("none")
}

/// Parses a message for authentication. Signatures with `l=` are always parsed (and
/// verified); `verdicts` decides what a partial-body pass is worth.
pub fn parse(raw: &[u8]) -> Option<AuthenticatedMessage<'_>> {
    AuthenticatedMessage::parse_with_opts(raw, None, false)
}

/// DKIM-Signature fields verified per message at most: each costs a key lookup and a
/// signature check, and a message has one or two in practice. Above it none is verified
/// (`too_many`), which can only make DMARC stricter.
pub const MAX_SIGNATURES: usize = 16;

/// How many DKIM-Signature fields `message` has, parsed or not.
pub fn signature_fields(message: &AuthenticatedMessage<'_>) -> usize {
    let unparsed = message
        .errors()
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"DKIM-Signature"))
        .count();
    message.dkim_signatures().len() + unparsed
}

/// The one verdict of a message with more than `MAX_SIGNATURES` signature fields.
pub fn too_many(fields: usize) -> Vec<DkimVerdict> {
    vec![DkimVerdict {
        result: "permerror",
        reason: Some(format!(
            "{fields} signatures, more than {MAX_SIGNATURES}: none verified"
        )),
        ..DkimVerdict::unsigned()
    }]
}

/// Our verdicts for every DKIM-Signature field of `message`, given mail-auth's `outputs`
/// for it: first the fields mail-auth could not parse, then the parsed ones in order.
pub fn verdicts(
    message: &AuthenticatedMessage<'_>,
    outputs: &[DkimOutput<'_>],
    allow_partial_body: bool,
) -> Vec<DkimVerdict> {
    let mut verdicts = Vec::new();
    for field in message.errors() {
        if !field.name.eq_ignore_ascii_case(b"DKIM-Signature") {
            continue;
        }
        let tags = tags(field.value);
        let tag = |name: &str| tags.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        verdicts.push(DkimVerdict {
            result: "permerror",
            reason: Some(unparsable(&field.header, &tags)),
            domain: tag("d").map(|d| d.to_ascii_lowercase()),
            selector: tag("s"),
            algorithm: tag("a"),
            b_prefix: tag("b").map(|b| b.chars().take(8).collect()),
            body_length: None,
        });
    }
    let body = message.raw_body().len();
    for field in message.dkim_signatures() {
        let signature = &field.header;
        let output = outputs
            .iter()
            .find(|o| o.signature().is_some_and(|s| std::ptr::eq(s, signature)));
        // `l=` at or above the body's length signs all of it (canonicalization only
        // shortens a body): nothing unsigned can follow.
        let partial = signature.l > 0 && usize::try_from(signature.l).is_ok_and(|l| l < body);
        let (result, reason) = judge(
            signature,
            output.map(DkimOutput::result),
            partial,
            allow_partial_body,
        );
        let tags = tags(field.value);
        verdicts.push(DkimVerdict {
            result,
            reason,
            domain: Some(signature.d.to_ascii_lowercase()),
            selector: Some(signature.s.clone()),
            algorithm: Some(algorithm(signature.a).to_string()),
            b_prefix: tags
                .iter()
                .find(|(n, _)| n == "b")
                .map(|(_, b)| b.chars().take(8).collect()),
            body_length: partial.then_some(signature.l),
        });
    }
    verdicts
}

/// The result and reason of one parsed signature. Our rules come first: they hold whatever
/// mail-auth made of the signature.
fn judge(
    signature: &Signature,
    result: Option<&DkimResult>,
    partial: bool,
    allow_partial_body: bool,
) -> (&'static str, Option<String>) {
    if signature.a == Algorithm::RsaSha1 {
        return (
            "permerror",
            Some("rsa-sha1 is not accepted, RFC 8301".into()),
        );
    }
    if !signature.h.iter().any(|h| h.eq_ignore_ascii_case("from")) {
        return ("permerror", Some("From field not signed".into()));
    }
    let Some(result) = result else {
        // mail-auth gives every parsed signature an output; none means we cannot say, and
        // what we cannot say must never soften DMARC (a temperror could).
        return ("permerror", Some("signature not evaluated".into()));
    };
    match result {
        DkimResult::Pass if partial && !allow_partial_body => (
            "policy",
            Some(format!(
                "body length limit l={} not accepted here",
                signature.l
            )),
        ),
        DkimResult::Pass if partial => (
            "pass",
            Some(format!(
                "only the first {} octets of the body are signed",
                signature.l
            )),
        ),
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(Error::Dkim(DkimError::BodyHashMismatch)) => {
            ("fail", Some("body hash did not verify".into()))
        }
        DkimResult::Neutral(err) => ("neutral", Some(describe(err))),
        DkimResult::Fail(err) => ("fail", Some(describe(err))),
        DkimResult::PermError(err) => ("permerror", Some(describe(err))),
        DkimResult::TempError(err) => ("temperror", Some(describe(err))),
        DkimResult::None => ("none", None),
    }
}

/// Why a field could not be parsed, in words.
fn unparsable(err: &Error, tags: &[(String, String)]) -> String {
    let missing: Vec<&str> = ["v", "a", "b", "bh", "d", "h", "s"]
        .into_iter()
        .filter(|t| !tags.iter().any(|(n, _)| n == t))
        .collect();
    if !missing.is_empty() {
        return format!("malformed signature: no {}= tag", missing.join("=, no "));
    }
    format!("malformed signature: {}", describe(err))
}

/// A mail-auth error in the words of an Authentication-Results comment.
pub(crate) fn describe(err: &Error) -> String {
    match err {
        Error::Dkim(DkimError::BodyHashMismatch) => "body hash did not verify".into(),
        Error::Dkim(DkimError::SignatureExpired) => "signature expired".into(),
        Error::Dkim(DkimError::PublicKeyRevoked) => "key revoked".into(),
        Error::Dkim(DkimError::AuidMismatch) => "i= is not within d=".into(),
        Error::Dkim(DkimError::UnsupportedAlgorithm) => "unsupported algorithm".into(),
        Error::Dkim(DkimError::UnsupportedVersion) => "unsupported version".into(),
        Error::Dkim(DkimError::UnsupportedCanonicalization) => {
            "unsupported canonicalization".into()
        }
        Error::Dkim(DkimError::UnsupportedKeyType) => "unsupported key type".into(),
        Error::Crypto(mail_auth::crypto::CryptoError::FailedVerification) => {
            "signature did not verify".into()
        }
        Error::Crypto(_) => "key or signature unusable".into(),
        Error::Dns(mail_auth::DnsError::RecordNotFound(_)) => "no key for signature".into(),
        Error::Dns(mail_auth::DnsError::InvalidRecordType) => "invalid key record".into(),
        Error::Dns(mail_auth::DnsError::Resolver(_)) => "key lookup failed".into(),
        Error::Base64 => "bad base64".into(),
        Error::MissingParameters => "a required tag is missing".into(),
        Error::Parse => "syntax error".into(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// The tags of a raw tag list (RFC 6376 §3.2): names lowercased, folding whitespace
/// removed from values. Good enough to name a field that does not parse.
pub(crate) fn tags(raw: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(raw)
        .split(';')
        .filter_map(|spec| {
            let (name, value) = spec.split_once('=')?;
            let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            Some((name.trim().to_ascii_lowercase(), value))
        })
        .collect()
}

/// Facts for the verdicts of one message.
pub fn facts(verdicts: &[DkimVerdict]) -> Vec<Fact> {
    let mut facts = vec![Fact::text(&facts::DKIM, overall(verdicts))];
    if verdicts
        .iter()
        .any(|v| v.result == "policy" && v.body_length.is_some())
    {
        facts.push(Fact::flag(&facts::DKIM_PARTIAL_BODY_REFUSED, true));
    }
    if verdicts
        .iter()
        .any(|v| v.result == "pass" && v.body_length.is_some())
    {
        facts.push(Fact::flag(&facts::DKIM_L_TAG, true));
    }
    for v in verdicts {
        let line = match (&v.domain, &v.selector) {
            (Some(d), Some(s)) => format!(
                "d={d} s={s} a={} result={}",
                v.algorithm.as_deref().unwrap_or("?"),
                v.result
            ),
            _ => format!("result={}", v.result),
        };
        facts.push(Fact::text(&facts::DKIM_SIGNATURE, line));
        if let (Some(d), "pass") = (&v.domain, v.result) {
            facts.push(Fact::text(&facts::DKIM_DOMAIN, d.clone()));
        }
    }
    facts
}

/// The domains of the signatures that passed.
pub fn pass_domains(verdicts: &[DkimVerdict]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| v.result == "pass")
        .filter_map(|v| v.domain.clone())
        .collect()
}

fn algorithm(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(a: Algorithm, h: &[&str], l: u64) -> Signature {
        Signature {
            a,
            d: "Example.ORG".into(),
            s: "sel".into(),
            h: h.iter().map(|s| s.to_string()).collect(),
            l,
            ..Signature::default()
        }
    }

    #[test]
    fn rsa_sha1_is_never_a_pass() {
        let sig = signature(Algorithm::RsaSha1, &["from", "subject"], 0);
        let (result, reason) = judge(&sig, Some(&DkimResult::Pass), false, true);
        assert_eq!(result, "permerror");
        assert!(reason.unwrap().contains("rsa-sha1"));
    }

    #[test]
    fn a_signature_without_from_in_h_is_not_valid() {
        let sig = signature(Algorithm::RsaSha256, &["subject", "date"], 0);
        let (result, reason) = judge(&sig, Some(&DkimResult::Pass), false, true);
        assert_eq!(result, "permerror");
        assert_eq!(reason.as_deref(), Some("From field not signed"));
        let sig = signature(Algorithm::RsaSha256, &["Subject", "FROM"], 0);
        assert_eq!(judge(&sig, Some(&DkimResult::Pass), false, true).0, "pass");
    }

    #[test]
    fn a_body_hash_mismatch_is_a_fail() {
        let sig = signature(Algorithm::RsaSha256, &["from"], 0);
        let mismatch = DkimResult::Neutral(Error::Dkim(DkimError::BodyHashMismatch));
        let (result, reason) = judge(&sig, Some(&mismatch), false, true);
        assert_eq!(result, "fail");
        assert_eq!(reason.as_deref(), Some("body hash did not verify"));
    }

    #[test]
    fn a_partial_body_pass_is_a_pass_unless_refused() {
        let sig = signature(Algorithm::RsaSha256, &["from"], 120);
        let (result, reason) = judge(&sig, Some(&DkimResult::Pass), true, true);
        assert_eq!(result, "pass");
        assert!(reason.unwrap().contains("120"));
        assert_eq!(
            judge(&sig, Some(&DkimResult::Pass), true, false).0,
            "policy"
        );
        // l= covering the whole body: a plain pass, refused or not.
        assert_eq!(
            judge(&sig, Some(&DkimResult::Pass), false, false),
            ("pass", None)
        );
        let verdict = |result| DkimVerdict {
            result,
            body_length: Some(120),
            domain: Some("example.org".into()),
            selector: Some("sel".into()),
            ..DkimVerdict::unsigned()
        };
        let facts = facts(&[verdict("pass")]);
        assert!(facts.iter().any(|f| f.is(&facts::DKIM_L_TAG)));
        assert!(facts.iter().any(|f| f.is(&facts::DKIM_DOMAIN)));
        let facts = super::facts(&[verdict("policy")]);
        assert!(
            facts
                .iter()
                .any(|f| f.is(&facts::DKIM_PARTIAL_BODY_REFUSED))
        );
        assert!(!facts.iter().any(|f| f.is(&facts::DKIM_DOMAIN)));
    }

    #[test]
    fn other_results_keep_their_word_with_a_reason() {
        let sig = signature(Algorithm::Ed25519Sha256, &["from"], 0);
        let revoked = DkimResult::PermError(Error::Dkim(DkimError::PublicKeyRevoked));
        assert_eq!(
            judge(&sig, Some(&revoked), false, true),
            ("permerror", Some("key revoked".into()))
        );
        let crypto = DkimResult::Fail(Error::Crypto(
            mail_auth::crypto::CryptoError::FailedVerification,
        ));
        assert_eq!(judge(&sig, Some(&crypto), false, true).0, "fail");
    }

    #[test]
    fn a_field_that_does_not_parse_is_a_permerror_naming_its_signature() {
        let raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel;\r\n\
            \th=from:subject; b=QUJDRE VGR0hJSktM\r\n\r\nbody\r\n";
        let message = parse(raw).unwrap();
        let verdicts = verdicts(&message, &[], true);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        let v = &verdicts[0];
        assert_eq!(v.result, "permerror");
        assert_eq!(v.reason.as_deref(), Some("malformed signature: no bh= tag"));
        assert_eq!(v.domain.as_deref(), Some("example.org"));
        assert_eq!(v.selector.as_deref(), Some("sel"));
        assert_eq!(v.b_prefix.as_deref(), Some("QUJDREVG"));
        assert_eq!(overall(&verdicts), "permerror");
        assert_eq!(signature_fields(&message), 1);
    }

    #[test]
    fn a_signature_without_output_is_never_softer_than_permerror() {
        let sig = signature(Algorithm::RsaSha256, &["from"], 0);
        assert_eq!(judge(&sig, None, false, true).0, "permerror");
    }

    #[test]
    fn too_many_signatures_are_one_permerror() {
        let v = too_many(40);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].result, "permerror");
        assert_eq!(overall(&v), "permerror");
        assert!(v[0].reason.as_deref().unwrap().starts_with("40 signatures"));
    }

    #[test]
    fn overall_prefers_pass_then_the_most_telling_failure() {
        let v = |result| DkimVerdict {
            result,
            ..DkimVerdict::unsigned()
        };
        assert_eq!(overall(&[]), "none");
        assert_eq!(overall(&[v("permerror"), v("pass")]), "pass");
        assert_eq!(overall(&[v("neutral"), v("fail")]), "fail");
    }
}
