//! The outcome of one SPF evaluation: the RFC 7208 §2.6 result, the domain it is about and a
//! short reason for reports.
//!
//! Owns: `SpfResult` with its RFC 8601 words, `SpfOutput`, and the length of reasons: a
//! term or name quoted in one is cut to `QUOTE_MAX` characters (`quote`) and a reason to
//! `REASON_MAX`, since they go into the Authentication-Results comment and the log, and a
//! record's terms and a sender's macros can be kilobytes long. Must not: decide anything
//! (policy acts on the words).

use std::borrow::Cow;

/// The longest term, name or error quoted in a reason, in characters.
pub const QUOTE_MAX: usize = 100;
/// The longest reason, in characters.
pub const REASON_MAX: usize = 200;

/// `text` cut to at most `max` characters, the cut marked by `...`.
fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let keep = max.saturating_sub(3);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            Cow::Owned(format!("{}...", &text[..end]))
        }
    }
}

/// `value` as a reason quotes it: at most `QUOTE_MAX` characters.
pub fn quote(value: &impl std::fmt::Display) -> String {
    clip(&value.to_string(), QUOTE_MAX).into_owned()
}

/// An SPF result (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// The client is authorised.
    Pass,
    /// The client is not authorised.
    Fail,
    /// Probably not authorised, says the domain.
    SoftFail,
    /// The domain makes no assertion.
    Neutral,
    /// No record, or no valid domain to look one up for.
    None,
    /// A transient (DNS) error.
    TempError,
    /// The domain's records are in error.
    PermError,
}

impl SpfResult {
    /// The RFC 8601 word.
    pub fn word(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// One identity's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutput {
    result: SpfResult,
    domain: String,
    reason: Option<String>,
}

impl SpfOutput {
    /// An output for `domain` (the identity's domain).
    pub fn new(result: SpfResult, domain: impl Into<String>) -> Self {
        SpfOutput {
            result,
            domain: domain.into(),
            reason: None,
        }
    }

    /// With a short human reason ("several SPF records", "matched ip4:192.0.2.0/24"), cut
    /// to `REASON_MAX` characters.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        self.reason = Some(clip(&reason, REASON_MAX).into_owned());
        self
    }

    /// The result.
    pub fn result(&self) -> SpfResult {
        self.result
    }

    /// The domain whose record was evaluated first: the identity's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Why this result, in a few words (for an RFC 8601 comment or a log line).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_quotes_are_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("exactly10!", 10), "exactly10!");
        assert_eq!(clip("eleven char", 10), "eleven ...");
        // Characters, not bytes: never inside a UTF-8 sequence.
        assert_eq!(clip(&"é".repeat(20), 10), format!("{}...", "é".repeat(7)));
        assert_eq!(quote(&"x".repeat(500)).chars().count(), QUOTE_MAX);
        let out = SpfOutput::new(SpfResult::Fail, "example.com").with_reason("y".repeat(5000));
        assert_eq!(out.reason().unwrap().chars().count(), REASON_MAX);
        assert!(out.reason().unwrap().ends_with("..."));
    }
}
