//! The registry of checks: which checks run, in which order, built from the config.
//!
//! Owns: the declared order of checks. Must not: share state between messages (each
//! check keeps per-message state in the context it is given, never in itself).

pub mod line_endings;
pub mod recipients;
pub mod size;

use crate::config::Config;
use crate::pipeline::Check;

/// Builds the checks in their declared order.
pub fn registry(config: &Config) -> Vec<Box<dyn Check>> {
    vec![
        Box::new(size::SizeCheck::new(config.limits.max_message_size)),
        Box::new(recipients::RecipientLimit::new(
            config.limits.max_recipients,
        )),
        Box::new(line_endings::LineEndings),
    ]
}
