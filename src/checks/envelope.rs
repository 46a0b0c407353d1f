//! The envelope as facts, so that policies can name it: `client.ip`, `client.network` (its
//! /24 or /64) and `client.pregreet` (it talked before the banner) at connect, `helo`, `client.unannounced_pipelining`,
//! `mail_from` and `mail_from.domain` at MAIL, `rcpt` and `rcpt.domain` at RCPT.
//!
//! Must not: judge anything; it only restates what the client said.

use crate::pipeline::facts::{self, FactDef};
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

    fn emits(&self) -> &'static [&'static FactDef] {
        &[
            &facts::CLIENT_IP,
            &facts::CLIENT_NETWORK,
            &facts::CLIENT_PREGREET,
            &facts::HELO,
            &facts::MAIL_FROM,
            &facts::CLIENT_UNANNOUNCED_PIPELINING,
            &facts::MAIL_FROM_DOMAIN,
            &facts::MAIL_FROM_AUTHENTICATED,
            &facts::RCPT,
            &facts::RCPT_DOMAIN,
        ]
    }

    fn on_connect<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        ready(vec![
            Fact::text(&facts::CLIENT_IP, ctx.session.client.ip().to_string()),
            Fact::text(
                &facts::CLIENT_NETWORK,
                crate::admission::network_of(ctx.session.client.ip()).to_string(),
            ),
            Fact::flag(&facts::CLIENT_PREGREET, ctx.session.pregreet),
        ])
    }

    fn on_helo<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        ready(vec![Fact::text(
            &facts::HELO,
            ctx.session.helo.clone().unwrap_or_default(),
        )])
    }

    fn on_mail<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let from = &ctx.envelope.mail_from;
        let mut facts = vec![
            Fact::text(&facts::MAIL_FROM, from.clone()),
            Fact::flag(
                &facts::CLIENT_UNANNOUNCED_PIPELINING,
                ctx.session.unannounced_pipelining,
            ),
        ];
        if let Some(d) = domain(from) {
            facts.push(Fact::text(&facts::MAIL_FROM_DOMAIN, d));
        }
        if let Some(login) = &ctx.envelope.authenticated {
            facts.push(Fact::text(&facts::MAIL_FROM_AUTHENTICATED, login.clone()));
        }
        ready(facts)
    }

    fn on_rcpt<'a>(&'a self, ctx: CheckContext<'a>) -> CheckFuture<'a> {
        let rcpt = ctx.rcpt.unwrap_or_default();
        let mut facts = vec![Fact::text(&facts::RCPT, rcpt)];
        if let Some(d) = domain(rcpt) {
            facts.push(Fact::text(&facts::RCPT_DOMAIN, d));
        }
        ready(facts)
    }
}
