//! Portcullis: an anti-spam inbound SMTP gateway in front of Postfix.
//!
//! A message is a transaction that flows through stages (connect, helo, mail, rcpt, data);
//! at each stage the pipeline runs the checks registered for it, each check adds facts, the
//! policy turns facts into a verdict, and the session turns the verdict into a reply and, for
//! accepted mail, a real-time relay to the backend. See docs/design.md.

pub mod accept;
pub mod admission;
pub mod app;
pub mod checks;
pub mod config;
pub mod context;
pub mod descriptors;
pub mod dns;
pub mod dryrun;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod quarantine;
pub mod relay;
pub mod reload;
pub mod session;
pub mod shutdown;
pub mod smtp;
pub mod spool;
pub mod state;
pub mod tls;
pub mod verify_budget;
