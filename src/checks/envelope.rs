//! The envelope as facts, so that policies can name it: `client.ip`, `client.network` (its
//! /24 or /64) and `client.pregreet` (it talked before the banner) at connect, `helo`, `client.unannounced_pipelining`,
//! `mail_from` and `mail_from.domain` at MAIL, `rcpt` and `rcpt.domain` at RCPT.
//!
//! Must not: judge anything; it only restates what the client said.

use crate::pipeline::outcome::Fact;
use crate::pipeline::{Check, CheckContext, CheckFuture, ready};

/// Restates the envelope as facts.
pub struct EnvelopeFacts;

fn domain(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
}

impl Check for EnvelopeFacts {
    fn name(&self) -> &'static str {
        "envelope"
    }

    fn on_connect<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        ready(vec![
            Fact::text("client.ip", ctx.session.client.ip().to_string()),
            Fact::text(
                "client.network",
                crate::admission::network_of(ctx.session.client.ip()).to_string(),
            ),
            Fact::flag("client.pregreet", ctx.session.pregreet),
        ])
    }

    fn on_helo<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        ready(vec![Fact::text(
            "helo",
            ctx.session.helo.clone().unwrap_or_default(),
        )])
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let from = &ctx.envelope.mail_from;
        let mut facts = vec![
            Fact::text("mail_from", from.clone()),
            Fact::flag(
                "client.unannounced_pipelining",
                ctx.session.unannounced_pipelining,
            ),
        ];
        if let Some(d) = domain(from) {
            facts.push(Fact::text("mail_from.domain", d));
        }
        if let Some(login) = &ctx.envelope.authenticated {
            facts.push(Fact::text("mail_from.authenticated", login.clone()));
        }
        ready(facts)
    }

    fn on_rcpt<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let rcpt = ctx.rcpt.unwrap_or_default();
        let mut facts = vec![Fact::text("rcpt", rcpt)];
        if let Some(d) = domain(rcpt) {
            facts.push(Fact::text("rcpt.domain", d));
        }
        ready(facts)
    }
}
