//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
//! `process_max_fds`), under the names every Prometheus client library uses, so that generic
//! process dashboards and alerts work on the gateway too: they are the one family without
//! the `portcullis_` prefix.
//!
//! Owns: those names, their registration in the root registry and their `Event` arms
//! (`Event::Process` for CPU, memory and start time, `Event::OpenFiles`, which
//! `resources.rs` also records as `portcullis_open_files`). Must not: read `/proc` itself
//! (`procstat.rs` and `descriptors.rs` do).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::events::Event;

/// The process metrics of one process.
#[derive(Default)]
pub struct Process {
    cpu_seconds: Counter<f64, AtomicU64>,
    resident: Gauge,
    virtual_size: Gauge,
    start_time: Gauge<f64, AtomicU64>,
    open_fds: Gauge,
    max_fds: Gauge,
}

impl Process {
    /// Registers every metric in `root`, the registry without a prefix.
    pub fn register(&self, root: &mut Registry) {
        root.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds (read at each scrape)",
            self.cpu_seconds.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes (read at each scrape)",
            self.resident.clone(),
        );
        root.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes (read at each scrape)",
            self.virtual_size.clone(),
        );
        root.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            self.start_time.clone(),
        );
        root.register(
            "process_open_fds",
            "Number of open file descriptors (read at each scrape)",
            self.open_fds.clone(),
        );
        root.register(
            "process_max_fds",
            "Maximum number of open file descriptors: the soft RLIMIT_NOFILE",
            self.max_fds.clone(),
        );
    }

    /// Records the process events (`Process`, `OpenFiles`); other events are ignored.
    /// `OpenFiles` is not consumed: `resources.rs` records it too.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Process(sample) => {
                // The kernel's figure is the total itself: stored, not added (a counter has
                // no `set`, and CPU time only grows).
                self.cpu_seconds
                    .inner()
                    .store(sample.cpu_seconds.to_bits(), Ordering::Relaxed);
                self.resident.set(gauge(sample.resident_bytes));
                self.virtual_size.set(gauge(sample.virtual_bytes));
                self.start_time.set(sample.start_time_seconds);
            }
            Event::OpenFiles { open, limit } => {
                if let Some(open) = open {
                    self.open_fds.set(gauge(*open));
                }
                self.max_fds.set(gauge(*limit));
            }
            _ => {}
        }
    }
}

/// A count as a gauge value (saturating).
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
