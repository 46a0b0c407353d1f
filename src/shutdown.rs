//! Graceful shutdown: a broadcast, a tracker of session tasks and the grace timer.
//!
//! Owns: the order stop accepting → let sessions finish within the grace period → abort
//! the rest (they answer 421) → wait for them. Must not: know about SMTP or checks.

use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::session::Signals;

/// Shutdown state shared by the listeners and every session.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// What sessions watch.
    pub signals: Signals,
    /// Every session task.
    pub tracker: TaskTracker,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every session ended within the grace period.
    Clean,
    /// Some sessions were aborted after the grace period (they were sent 421).
    Aborted,
}

impl Shutdown {
    /// Stops accepting, waits up to `grace` for sessions, then aborts what is left and
    /// waits for those to write their 421 (bounded by `grace` again).
    pub async fn drain(&self, grace: Duration) -> Drained {
        tracing::info!(
            phase = "draining",
            sessions = self.tracker.len(),
            "shutdown: no longer accepting"
        );
        self.signals.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            tracing::info!(phase = "drained", "shutdown: all sessions finished");
            return Drained::Clean;
        }
        tracing::warn!(
            phase = "aborting",
            sessions = self.tracker.len(),
            "shutdown: grace period over"
        );
        self.signals.abort.cancel();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        Drained::Aborted
    }
}
