//! The check pipeline: stages, the `Check` trait and what a check gets to look at.
//!
//! Owns: the `Check` trait (one hook per SMTP stage, each a documented no-op by default,
//! and the facts it emits), `Stage`, `CheckContext`, and the facts themselves (`facts.rs`). Must not: name any concrete check (`checks::registry`
//! does) or know SMTP syntax.

pub mod facts;
pub mod outcome;

use std::future::Future;
use std::pin::Pin;

use crate::smtp::envelope::{Envelope, SessionInfo};
use facts::FactDef;
use outcome::{Fact, Findings};

/// The SMTP stages at which checks run (RFC 5321 §4.1.4 order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// After accept, before the banner.
    Connect,
    /// After EHLO/HELO.
    Helo,
    /// After MAIL FROM parsed.
    Mail,
    /// After each RCPT TO, before it is relayed to the backend.
    Rcpt,
    /// After the whole message is received, before it is relayed.
    Data,
}

impl Stage {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Helo => "helo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }
}

/// A received message as checks see it at the DATA stage.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    /// Size of the content in bytes (after dot-unstuffing), counting what was discarded
    /// beyond the size limit.
    pub size: u64,
    /// The first bytes of the message (at least the header block, up to 64 KiB).
    pub head: &'a [u8],
    /// True if bare CR or LF were seen in the content.
    pub bare_line_endings: bool,
    /// True if NUL bytes were seen in the content (they are not in the spool).
    pub nul_bytes: bool,
    /// The longest content line, in octets without its CRLF.
    pub longest_line: u64,
    /// The whole message, when it was loaded for content checks (authentication); `None`
    /// above `auth.max_verify_size` or when no check needs it.
    pub raw: Option<&'a [u8]>,
}

/// Everything a check may look at. Per-transaction: never shared between messages.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// The connection.
    pub session: &'a SessionInfo,
    /// The transaction so far.
    pub envelope: &'a Envelope,
    /// The facts of the earlier stages that hold for this one (the connection's, then the
    /// transaction's): DMARC reads the MAIL stage's SPF results here.
    pub facts: &'a [Fact],
    /// At RCPT: the recipient being checked.
    pub rcpt: Option<&'a str>,
    /// At DATA: the message.
    pub message: Option<MessageView<'a>>,
}

/// Lookups a check started at connect and that run beside the session until a rule needs
/// their facts (`Pipeline::settle`): a DNSBL answer does not hold the banner back when no
/// rule would act on it before DATA.
pub struct Deferred {
    /// The check that started it (metric label, `check.error` value).
    pub check: &'static str,
    /// The facts it will report: the policy says whether a stage needs them.
    pub facts: &'static [&'static FactDef],
    /// The lookups, running.
    pub task: tokio::task::JoinHandle<Vec<Fact>>,
}

/// The future a hook returns: what it found.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Findings> + Send + 'a>>;

/// A hook result available at once (for checks that do no I/O).
pub fn ready<'a>(findings: impl Into<Findings>) -> CheckFuture<'a> {
    Box::pin(std::future::ready(findings.into()))
}

fn nothing<'a>() -> CheckFuture<'a> {
    ready(Findings::default())
}

/// One check. Hooks run at their stage in the order the registry declares, each within the
/// per-check budget (`timeouts.check`); a hook that times out or panics contributes a
/// `check.error` fact instead of its findings. Hooks report facts; they never reply.
pub trait Check: Send + Sync {
    /// The check's name, used in metric labels and logs.
    fn name(&self) -> &'static str;

    /// Every fact the check may report, from any hook or deferred lookup (`facts.rs`). In
    /// debug builds the runner asserts each fact a hook returns is listed here, and a test
    /// holds the registry's lists to `facts::ALL`. No default: a check declares its facts.
    fn emits(&self) -> &'static [&'static FactDef];

    /// Runs once per connection before the banner. Default: finds nothing.
    fn on_connect<'a>(&'a self, _ctx: CheckContext<'a>) -> CheckFuture<'a> {
        nothing()
    }

    /// Starts lookups at connect that the session awaits only when a rule needs their facts
    /// (at DATA at the latest). Default: none.
    fn start_at_connect(&self, _ctx: CheckContext<'_>) -> Option<Deferred> {
        None
    }

    /// Runs after each EHLO/HELO. Default: finds nothing.
    fn on_helo<'a>(&'a self, _ctx: CheckContext<'a>) -> CheckFuture<'a> {
        nothing()
    }

    /// Runs after MAIL FROM, before the 250. Default: finds nothing.
    fn on_mail<'a>(&'a self, _ctx: CheckContext<'a>) -> CheckFuture<'a> {
        nothing()
    }

    /// Runs for each RCPT TO after relay protection, before the backend sees it.
    /// Default: finds nothing.
    fn on_rcpt<'a>(&'a self, _ctx: CheckContext<'a>) -> CheckFuture<'a> {
        nothing()
    }

    /// Runs once the message is received, before it is relayed. Default: finds nothing.
    fn on_data<'a>(&'a self, _ctx: CheckContext<'a>) -> CheckFuture<'a> {
        nothing()
    }
}
