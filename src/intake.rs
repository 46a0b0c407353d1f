//! A message being received under `limits.max_message_size`, for both front ends (the SMTP
//! session's DATA/BDAT and the milter's header fields and body chunks).
//!
//! Owns: counting every content octet, keeping only those within the limit (beyond it they
//! are counted and dropped, so memory and disk stay bounded and the session stays in
//! sync), keeping the first spool write error rather than losing it, and what a decided
//! message that must not be delivered gets (`withheld`: the refusal, 552 over the limit,
//! 451 after a spool error). Must not: interpret content or judge it (the engine does).

use crate::config::Config;
use crate::engine::Final;
use crate::metrics::{Event, Limit, Metrics};
use crate::smtp::reply::{self, Reply};
use crate::spool::Spool;

/// One message's bytes so far.
#[derive(Debug)]
pub struct Intake {
    /// Where the kept bytes are.
    pub spool: Spool,
    size: u64,
    limit: u64,
    io_error: Option<std::io::Error>,
}

impl Intake {
    /// An empty message under `config`'s spool and size limit.
    pub fn new(config: &Config) -> Self {
        Intake {
            spool: Spool::new(
                usize::try_from(config.spool.memory_limit).unwrap_or(usize::MAX),
                config.spool.dir.clone(),
            ),
            size: 0,
            limit: config.limits.max_message_size,
            io_error: None,
        }
    }

    /// Counts `data` and keeps it while the message is within the limit.
    pub async fn write(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if self.size <= self.limit
            && self.io_error.is_none()
            && let Err(e) = self.spool.write(data).await
        {
            self.io_error = Some(e);
        }
    }

    /// Content octets seen, including those dropped beyond the limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// True when the message grew past the limit (it was not kept whole).
    pub fn over_limit(&self) -> bool {
        self.size > self.limit
    }

    /// The first error writing or reading the spool, if any.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        self.io_error.as_ref()
    }

    /// Keeps a read error (the message cannot be relayed as received).
    pub fn set_io_error(&mut self, e: std::io::Error) {
        self.io_error.get_or_insert(e);
    }
}

/// The answer for a decided message that is not to be delivered, with its outcome label:
/// the policy's refusal; `552 5.3.4` for a message over the size limit, which is never
/// delivered truncated whatever the policy says; `451 4.3.0` when its bytes were lost to a
/// spool error. `None`: deliver it (relay, or quarantine). A message over the limit counts
/// as a limit hit whoever refuses it.
pub fn withheld(
    decided: &Final,
    intake: &Intake,
    metrics: &Metrics,
    session: &str,
) -> Option<(Reply, &'static str)> {
    if intake.over_limit() {
        metrics.emit(Event::LimitHit(Limit::MessageSize));
    }
    if let Some(refusal) = decided.refusal() {
        return Some((refusal.clone(), decided.verdict.action.label()));
    }
    if intake.over_limit() {
        return Some((reply::MESSAGE_TOO_BIG, "reject"));
    }
    if let Some(e) = intake.io_error() {
        tracing::error!(session, error = %e, "spool write failed");
        return Some((reply::LOCAL_ERROR, "tempfail"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_limit_is_counted_not_kept() {
        let mut c = Config::default();
        c.limits.max_message_size = 10;
        let mut i = Intake::new(&c);
        i.write(b"0123456789").await;
        assert!(!i.over_limit());
        i.write(b"abc").await;
        assert_eq!(i.size(), 13);
        assert!(i.over_limit());
        assert_eq!(i.spool.len(), 10);
        assert!(i.io_error().is_none());
    }
}
