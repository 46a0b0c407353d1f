//! The outcome of one SPF evaluation: the RFC 7208 §2.6 result, the domain it is about and a
//! short reason for reports.
//!
//! Owns: `SpfResult` with its RFC 8601 words, and `SpfOutput`. Must not: decide anything
//! (policy acts on the words).

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

    /// With a short human reason ("several SPF records", "matched ip4:192.0.2.0/24").
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
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
