//! The skeleton of HACKING.md's "Adding a check", compiled with every build of the examples
//! (`cargo build --examples`, and `cargo clippy --all-targets`) so that it cannot drift from
//! the `Check` trait: a check that flags a MAIL FROM in the gateway's own host name (mail
//! from outside claiming to come from `mx.example.com` itself is forged).
//!
//! It runs through the pipeline's runner on three senders and asserts its fact for each,
//! as a test (`test = true` in Cargo.toml: `cargo test --example own_check`) and as
//! `cargo run --ignore-rust-version --example own_check`.
//!
//! In the tree the check is `src/checks/example.rs`, it uses `crate::` paths instead of
//! `portcullis::`, and its fact is a constant of the `facts!` list in `src/pipeline/facts.rs`
//! (step 3) rather than the `FactDef::new` below, which only a check outside the tree needs.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use portcullis::metrics::Metrics;
use portcullis::pipeline::facts::{FactDef, Kind};
use portcullis::pipeline::outcome::Fact;
use portcullis::pipeline::{Check, CheckContext, CheckFuture, Stage, ready};
use portcullis::policy::set::PolicySet;
use portcullis::runner::Pipeline;
use portcullis::smtp::envelope::{Envelope, SessionInfo};

// ---- src/pipeline/facts.rs, in the `facts!` list (step 3) -------------------------------
//     /// The MAIL FROM domain is the gateway's own host name.
//     EXAMPLE_HIT = "example.hit", Mail, Flag;
/// The MAIL FROM domain is the gateway's own host name.
const EXAMPLE_HIT: FactDef = FactDef::new("example.hit", Stage::Mail, Kind::Flag);

// ---- src/checks/example.rs (step 1) -------------------------------------------------------

/// Flags MAIL FROM addresses whose domain is our own host name.
pub struct Example {
    hostname: String,
}

impl Example {
    /// A check for senders at `hostname` (compared case-insensitively).
    pub fn new(hostname: &str) -> Self {
        Example {
            hostname: hostname.to_string(),
        }
    }
}

impl Check for Example {
    fn name(&self) -> &'static str {
        "example"
    }

    /// Every fact any hook of the check may report: the runner asserts it in debug builds,
    /// and the registry test holds the registry's lists to `facts::ALL`.
    fn emits(&self) -> &'static [&'static FactDef] {
        &[&EXAMPLE_HIT]
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        // The null sender `<>` has no domain and is never a hit.
        let hit = ctx
            .envelope
            .mail_from
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(&self.hostname));
        ready(vec![Fact::flag(&EXAMPLE_HIT, hit)])
    }
}

// ---- what the check's unit test does, here through the runner ---------------------------

#[tokio::main(flavor = "current_thread")]
async fn main() {
    senders_at_our_host_name_are_flagged().await;
}

#[cfg(test)]
#[tokio::test]
async fn flags_senders_at_our_host_name() {
    senders_at_our_host_name_are_flagged().await;
}

async fn senders_at_our_host_name_are_flagged() {
    let pipeline = Pipeline::new(
        vec![Box::new(Example::new("mx.example.com"))],
        Arc::new(PolicySet::builtin(&Default::default())),
        Duration::from_secs(5),
        Arc::new(Metrics::new()),
    );
    let mut session = SessionInfo::new(
        "t",
        "192.0.2.1:40000".parse().expect("addr"),
        "127.0.0.1:25".parse().expect("addr"),
    );
    session.helo = Some("client.example".into());
    for (from, hit) in [
        ("forged@MX.Example.com", true),
        ("someone@example.com", false),
        ("", false),
    ] {
        let envelope = Envelope {
            mail_from: from.into(),
            ..Envelope::default()
        };
        let ctx = CheckContext {
            session: &session,
            envelope: &envelope,
            facts: &[],
            rcpt: None,
            message: None,
        };
        let found = pipeline.run(Stage::Mail, ctx).await.facts;
        assert_eq!(found, vec![Fact::flag(&EXAMPLE_HIT, hit)], "{from:?}");
        println!("MAIL FROM:<{from}> → {}", found[0]);
    }
}
