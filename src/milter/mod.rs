//! Milter mode: the Sendmail milter protocol (v6, as Postfix 3.7 speaks it), so that Postfix
//! can consult the gateway's checks from its own smtpd (`smtpd_milters`).
//!
//! Owns: the protocol vocabulary and its byte layout, with no I/O: framing (`packet`), what
//! the MTA sends (`command`), what we answer (`response`) and the OPTNEG agreement
//! (`negotiate`); and the front end over the transaction engine: one MTA connection
//! (`session`) and the listeners (`listener`). Must not: decide policy (the engine does).

pub mod command;
pub mod listener;
pub mod negotiate;
pub mod packet;
pub mod quickack;
pub mod response;
pub mod session;

#[cfg(test)]
pub(crate) mod testkit;
