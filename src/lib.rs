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
pub mod engine;
pub mod error;
pub mod http;
pub mod intake;
pub mod listener;
pub mod metrics;
pub mod milter;
pub mod notify;
pub mod peer_write;
pub mod pipeline;
pub mod policy;
pub mod procstat;
pub mod proxy;
pub mod quarantine;
pub mod readback;
pub mod relay;
pub mod reload;
pub mod runner;
pub mod session;
pub mod shutdown;
pub mod smtp;
pub mod spool;
pub mod stamps;
pub mod state;
pub mod tls;
pub mod verify_budget;

/// Entry points for the fuzz targets in `fuzz/` into parsers that are private to their
/// module (the SPF record and macro parsers, the DKIM tag-list reader). Not an API: nothing
/// but `fuzz/` uses it, and it follows the parsers wherever they change.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::checks::spf::macros::{
        MacroString, TAIL_MAX as MACRO_TAIL_MAX, Vars as MacroVars,
    };
    pub use crate::checks::spf::record::{
        DualCidr, Mechanism, Qualifier, Record as SpfRecord, Selection as SpfSelection,
        parse as parse_spf_record, select as select_spf_record,
    };

    /// The DKIM tag-list reader (`checks::dkim`), names lowercased, values without spaces.
    pub fn dkim_tags(raw: &[u8]) -> Vec<(String, String)> {
        crate::checks::dkim::tags(raw)
    }
}
