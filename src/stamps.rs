//! What a watched file looked like when it was read: its modification time and size, so that
//! the reload watcher can tell that it changed.
//!
//! Owns: `Stamps` and taking them. Must not: read the files' contents.

use std::path::PathBuf;
use std::time::SystemTime;

/// The state of some files when they were read: modification time and size of each, `None`
/// for one that could not be examined.
pub type Stamps = Vec<Option<(SystemTime, u64)>>;

/// The stamps of `paths`, now.
pub fn stamps(paths: &[PathBuf]) -> Stamps {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}
