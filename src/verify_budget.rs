//! The process-wide bound on message bytes read back into memory for DKIM, ARC and DMARC.
//!
//! Owns: `VerifyBudget`, a fair semaphore of `auth.max_verify_memory` counted in KiB, the
//! wait for room before a deadline, the `Reservation` that gives the room back when it is
//! dropped, and the metrics of both (`portcullis_verify_memory_*`). Must not: read messages,
//! or decide what a message that found no room gets (`readback.rs` answers 451).
//! Messages still in memory (at most `spool.memory_limit`) take no room: verifying them
//! copies nothing, and their bytes are bounded by the spool already.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Event, Metrics, VerifyWait};

/// Room is counted in KiB, so one reservation can hold up to 4 TiB (`u32` permits).
const UNIT: u64 = 1024;

/// The budget shared by every session.
pub struct VerifyBudget {
    room: Arc<Semaphore>,
    /// Units in the budget.
    units: u32,
    metrics: Arc<Metrics>,
}

/// Room for one message; given back on drop.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    metrics: Arc<Metrics>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.metrics.emit(Event::VerifyMemoryReturned(self.bytes));
    }
}

/// Why no room was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The deadline came first.
    Deadline,
    /// The stop token was cancelled first (the end of the shutdown grace period).
    Stopped,
}

impl VerifyBudget {
    /// A budget of `bytes` (rounded down to whole KiB).
    pub fn new(bytes: u64, metrics: Arc<Metrics>) -> Self {
        let units = u32::try_from(bytes / UNIT)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        metrics.emit(Event::VerifyMemoryLimit(u64::from(units) * UNIT));
        VerifyBudget {
            room: Arc::new(Semaphore::new(units as usize)),
            units,
            metrics,
        }
    }

    /// Room for a message of `bytes`, waiting (first come, first served) until `deadline`
    /// or `stop`. A message larger than the whole budget waits for all of it.
    pub async fn reserve(
        &self,
        bytes: u64,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<Reservation, NoRoom> {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.units.max(1));
        let permit = match self.room.clone().try_acquire_many_owned(units) {
            Ok(permit) => {
                self.metrics
                    .emit(Event::VerifyMemoryWait(VerifyWait::Immediate));
                permit
            }
            Err(_) => {
                let wait = self.room.clone().acquire_many_owned(units);
                // Why select: the end of the shutdown grace period must end the wait too,
                // not only the DATA deadline.
                let got = tokio::select! {
                    biased;
                    _ = stop.cancelled() => Err(NoRoom::Stopped),
                    got = tokio::time::timeout_at(deadline, wait) => match got {
                        Ok(Ok(permit)) => Ok(permit),
                        // The semaphore is never closed; treat it as the deadline.
                        Ok(Err(_)) | Err(_) => Err(NoRoom::Deadline),
                    },
                };
                let result = match got {
                    Ok(_) => VerifyWait::Waited,
                    Err(_) => VerifyWait::TimedOut,
                };
                self.metrics.emit(Event::VerifyMemoryWait(result));
                got?
            }
        };
        let bytes = u64::from(units) * UNIT;
        self.metrics.emit(Event::VerifyMemoryTaken(bytes));
        Ok(Reservation {
            _permit: permit,
            bytes,
            metrics: self.metrics.clone(),
        })
    }

    /// Bytes free now.
    pub fn available(&self) -> u64 {
        self.room.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt as _;

    use super::*;

    fn budget(kib: u64) -> (VerifyBudget, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        (VerifyBudget::new(kib * UNIT, metrics.clone()), metrics)
    }

    fn series(metrics: &Metrics, name: &str) -> f64 {
        let text = metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(-1.0)
    }

    #[tokio::test(start_paused = true)]
    async fn room_is_taken_waited_for_and_given_back() {
        let (b, m) = budget(100);
        let stop = CancellationToken::new();
        let later = Instant::now() + Duration::from_secs(10);
        // 60 KiB and a byte: 61 units.
        let first = b.reserve(60 * UNIT + 1, later, &stop).await.expect("room");
        assert_eq!(b.available(), 39 * UNIT);
        assert_eq!(series(&m, "portcullis_verify_memory_bytes"), 61.0 * 1024.0);
        // The next one waits until the first is dropped.
        let second = {
            let waiting = b.reserve(50 * UNIT, later, &stop);
            tokio::pin!(waiting);
            assert!(waiting.as_mut().now_or_never().is_none());
            drop(first);
            waiting.await.expect("room after the first")
        };
        assert_eq!(b.available(), 50 * UNIT);
        drop(second);
        assert_eq!(b.available(), 100 * UNIT);
        assert_eq!(series(&m, "portcullis_verify_memory_bytes"), 0.0);
        assert_eq!(
            series(&m, "portcullis_verify_memory_peak_bytes"),
            61.0 * 1024.0
        );
        assert_eq!(
            series(&m, "portcullis_verify_memory_limit_bytes"),
            100.0 * 1024.0
        );
        for (result, n) in [("immediate", 1.0), ("waited", 1.0), ("timed_out", 0.0)] {
            let name =
                format!("portcullis_verify_memory_reservations_total{{result=\"{result}\"}}");
            assert_eq!(series(&m, &name), n, "{result}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_deadline_or_the_stop() {
        let (b, m) = budget(100);
        let stop = CancellationToken::new();
        let soon = Instant::now() + Duration::from_secs(1);
        let _all = b.reserve(100 * UNIT, soon, &stop).await.expect("room");
        assert_eq!(
            b.reserve(1, soon, &stop).await.err(),
            Some(NoRoom::Deadline)
        );
        stop.cancel();
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            b.reserve(1, later, &stop).await.err(),
            Some(NoRoom::Stopped)
        );
        assert_eq!(
            series(
                &m,
                "portcullis_verify_memory_reservations_total{result=\"timed_out\"}"
            ),
            2.0
        );
        assert_eq!(series(&m, "portcullis_verify_memory_bytes"), 100.0 * 1024.0);
    }

    #[tokio::test(start_paused = true)]
    async fn first_come_first_served_so_a_large_message_is_not_starved() {
        let (b, _) = budget(100);
        let stop = CancellationToken::new();
        let later = Instant::now() + Duration::from_secs(60);
        let small = b.reserve(40 * UNIT, later, &stop).await.expect("room");
        let large = b.reserve(100 * UNIT, later, &stop);
        tokio::pin!(large);
        assert!(large.as_mut().now_or_never().is_none());
        // 60 KiB are free, but the large message asked first.
        let after = b.reserve(10 * UNIT, Instant::now(), &stop).await;
        assert_eq!(after.err(), Some(NoRoom::Deadline));
        drop(small);
        assert!(large.await.is_ok());
    }
}
