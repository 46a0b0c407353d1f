//! SMTP vocabulary: commands, replies, the codec, addresses and the envelope.
//!
//! Owns: protocol values and byte-level framing. Must not: do I/O or decide policy.

pub mod address;
pub mod codec;
pub mod command;
pub mod envelope;
pub mod headers;
pub mod reply;
