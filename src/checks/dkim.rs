//! DKIM (RFC 6376, RFC 8463 ed25519) verification of every signature of a message.
//!
//! Facts: `dkim` (the best result over all signatures: pass, fail, neutral, temperror,
//! permerror, none — the same words mail-auth writes into Authentication-Results) and one
//! `dkim.signature` per signature (`d=… s=… a=… result=…`). Signatures with `l=` are refused
//! unless `auth.dkim_allow_partial_body`: they are `neutral` and add the flag
//! `dkim.partial_body_refused`. RSA keys below 1024 bits fail inside mail-auth (RFC 8301).
//! Must not: alter the message.

use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult};

use crate::pipeline::outcome::Fact;

/// The RFC 8601 result word of one output.
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
pub fn overall(outputs: &[DkimOutput<'_>]) -> &'static str {
    const ORDER: [&str; 5] = ["pass", "fail", "temperror", "permerror", "neutral"];
    ORDER
        .into_iter()
        .find(|w| outputs.iter().any(|o| word(o.result()) == *w))
        .unwrap_or("none")
}

/// Facts for the outputs of one message.
pub fn facts(outputs: &[DkimOutput<'_>]) -> Vec<Fact> {
    let mut facts = vec![Fact::text("dkim", overall(outputs))];
    let body_length = |o: &DkimOutput<'_>| {
        matches!(
            o.result(),
            DkimResult::Neutral(mail_auth::Error::Dkim(
                mail_auth::dkim::DkimError::BodyLengthTag
            ))
        )
    };
    if outputs.iter().any(body_length) {
        facts.push(Fact::flag("dkim.partial_body_refused", true));
    }
    for out in outputs {
        let result = word(out.result());
        let line = match out.signature() {
            Some(sig) => format!(
                "d={} s={} a={} result={result}",
                sig.d,
                sig.s,
                algorithm(sig.a)
            ),
            None => format!("result={result}"),
        };
        facts.push(Fact::text("dkim.signature", line));
        if let (Some(sig), "pass") = (out.signature(), result) {
            facts.push(Fact::text("dkim.domain", sig.d.to_ascii_lowercase()));
        }
    }
    facts
}

fn algorithm(a: mail_auth::crypto::Algorithm) -> &'static str {
    match a {
        mail_auth::crypto::Algorithm::RsaSha1 => "rsa-sha1",
        mail_auth::crypto::Algorithm::RsaSha256 => "rsa-sha256",
        mail_auth::crypto::Algorithm::Ed25519Sha256 => "ed25519-sha256",
        _ => "other",
    }
}

/// Parses a message for authentication; `strict` refuses `l=` signatures.
pub fn parse(raw: &[u8], allow_partial_body: bool) -> Option<AuthenticatedMessage<'_>> {
    AuthenticatedMessage::parse_with_opts(raw, None, !allow_partial_body)
}
