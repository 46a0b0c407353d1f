//! The metrics of the process's own resources: descriptors, the accept loops, the session
//! capacity the open-file limit allows, and the memory of messages under verification.
//!
//! Owns: those metric names, their registration and their `Event` arms. Must not: read the
//! resources itself (`descriptors.rs` and `verify_budget.rs` report them).

use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::events::{AcceptError, Event, VerifyWait};

/// The resource metrics of one process.
#[derive(Default)]
pub struct Resources {
    accept_errors: Family<[(&'static str, &'static str); 2], Counter>,
    open_files: Gauge,
    open_files_limit: Gauge,
    sessions_capacity: Gauge,
    verify_bytes: Gauge,
    verify_peak: Gauge,
    verify_limit: Gauge,
    verify_reservations: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Resources {
    /// Registers every metric in `r` and creates its known series at zero.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "accept_errors",
            "Failed accepts by listener (smtp, metrics) and kind (open_files, memory, other)",
            self.accept_errors.clone(),
        );
        r.register(
            "open_files",
            "Descriptors open in the process (read at each scrape)",
            self.open_files.clone(),
        );
        r.register(
            "open_files_limit",
            "The soft RLIMIT_NOFILE in force (read at each scrape)",
            self.open_files_limit.clone(),
        );
        r.register(
            "sessions_capacity",
            "Sessions served at once: limits.max_sessions, or fewer when the open-file limit cannot hold that many",
            self.sessions_capacity.clone(),
        );
        r.register(
            "verify_memory_bytes",
            "Bytes of messages read back into memory for DKIM/ARC/DMARC now",
            self.verify_bytes.clone(),
        );
        r.register(
            "verify_memory_peak_bytes",
            "The highest verify_memory_bytes since start",
            self.verify_peak.clone(),
        );
        r.register(
            "verify_memory_limit_bytes",
            "auth.max_verify_memory: the most bytes under verification at once",
            self.verify_limit.clone(),
        );
        r.register(
            "verify_memory_reservations",
            "Messages that asked for verification memory, by result (immediate, waited, timed_out)",
            self.verify_reservations.clone(),
        );
        for listener in ["smtp", "metrics"] {
            for kind in AcceptError::ALL {
                drop(
                    self.accept_errors
                        .get_or_create(&[("listener", listener), ("kind", kind.label())]),
                );
            }
        }
        for result in VerifyWait::ALL {
            drop(
                self.verify_reservations
                    .get_or_create(&[("result", result.label())]),
            );
        }
    }

    /// Records one of the resource events; false for any other event.
    pub fn emit(&self, event: &Event) -> bool {
        match event {
            Event::AcceptError { listener, kind } => {
                self.accept_errors
                    .get_or_create(&[("listener", listener), ("kind", kind.label())])
                    .inc();
            }
            Event::Capacity {
                open_files_limit,
                sessions,
            } => {
                self.open_files_limit.set(gauge(*open_files_limit));
                self.sessions_capacity.set(gauge(*sessions as u64));
            }
            Event::OpenFiles { open, limit } => {
                if let Some(open) = open {
                    self.open_files.set(gauge(*open));
                }
                self.open_files_limit.set(gauge(*limit));
            }
            Event::VerifyMemoryLimit(bytes) => {
                self.verify_limit.set(gauge(*bytes));
            }
            Event::VerifyMemoryTaken(bytes) => {
                let now = self.verify_bytes.inc_by(gauge(*bytes)) + gauge(*bytes);
                self.verify_peak.inner().fetch_max(now, Ordering::Relaxed);
            }
            Event::VerifyMemoryReturned(bytes) => {
                self.verify_bytes.dec_by(gauge(*bytes));
            }
            Event::VerifyMemoryWait(result) => {
                self.verify_reservations
                    .get_or_create(&[("result", result.label())])
                    .inc();
            }
            _ => return false,
        }
        true
    }
}

/// A count as a gauge value (saturating: no count here comes near `i64::MAX`).
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
