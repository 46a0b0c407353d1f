//! The config in force: `portcullis_config_info{hash="…"} 1` and
//! `portcullis_config_loaded_timestamp_seconds`, set at start-up and at each policy reload
//! that took.
//!
//! Owns: those two metrics and the `ConfigLoaded` arm. Must not: compute the hash
//! (`config::fingerprint` does) or see a refused reload (the config in force did not change).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::events::Event;

/// An info metric whose labels can change: prometheus-client's `Info` is fixed at
/// registration, and a reload changes the hash.
#[derive(Clone, Debug, Default)]
struct ChangingInfo(Arc<Mutex<Vec<(&'static str, String)>>>);

impl EncodeMetric for ChangingInfo {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // A poisoned lock still holds the last labels written whole.
        let labels = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        encoder.encode_info(&labels)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Info
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// The config metrics of one process.
#[derive(Default)]
pub struct ConfigInfo {
    info: ChangingInfo,
    loaded: Gauge<f64, AtomicU64>,
}

impl ConfigInfo {
    /// Registers both metrics in `r` (the `portcullis` registry).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "config",
            "The config in force: hash is its fingerprint with its policy files (changes on each reload that took)",
            self.info.clone(),
        );
        r.register(
            "config_loaded_timestamp_seconds",
            "When the config in force was loaded (start-up or the last policy reload that took), in seconds since the Unix epoch",
            self.loaded.clone(),
        );
    }

    /// Records `ConfigLoaded`; false for any other event.
    pub fn emit(&self, event: &Event) -> bool {
        let Event::ConfigLoaded { hash, at } = event else {
            return false;
        };
        *self.info.0.lock().unwrap_or_else(|e| e.into_inner()) = vec![("hash", hash.clone())];
        self.loaded.set(*at);
        true
    }
}
