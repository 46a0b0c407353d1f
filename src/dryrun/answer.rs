//! The dry run's last lines for a message the policy lets through (accept, tag,
//! quarantine): the reply its client would get after the final dot, and where the message
//! would go, as the front end the config runs would answer (the SMTP gateway, or the milter
//! when only `milter.listen` is set).
//!
//! Owns: those lines, with the reply texts taken from `smtp::reply` and `quarantine`, the
//! values the front ends send. Must not: decide (the verdict is the engine's), or contact a
//! backend (a backend's own reply is named as such, never made up).

use crate::config::BackendTarget;
use crate::config::Config;
use crate::config::schema::{MilterQuarantine, QuarantineAnswer};
use crate::pipeline::outcome::Action;
use crate::policy::verdict::Verdict;
use crate::smtp::reply;

/// The lines for `verdict` at the end of DATA under `config`; none for a refusal, whose
/// reply the verdict line already gives.
pub fn lines(config: &Config, verdict: &Verdict) -> Vec<String> {
    if verdict.action.refusal().is_some() {
        return Vec::new();
    }
    let milter = config.listen.is_empty() && !config.milter.listen.is_empty();
    let quarantined = verdict.action == Action::Quarantine;
    match (milter, quarantined) {
        (false, true) if config.quarantine.dir.is_some() => stored(config, None),
        (false, _) => {
            let mut out = vec![relayed(config)];
            if verdict.action != Action::Accept {
                let why = if quarantined {
                    " (no quarantine.dir): the backend files it"
                } else {
                    ""
                };
                out.push(format!(
                    "  relayed with X-Portcullis-Verdict: {}{why}",
                    verdict.action.label()
                ));
            }
            out
        }
        (true, true) if config.milter.quarantine == MilterQuarantine::Store => {
            stored(config, Some("Postfix is told to discard its copy"))
        }
        (true, true) => vec![
            "  reply Postfix's own reply to the message (the milter accepts it)".into(),
            "  quarantined: in Postfix's hold queue (milter.quarantine: hold; postqueue -p, release with postsuper -H)".into(),
        ],
        (true, false) => {
            vec!["  reply Postfix's own reply to the message (the milter accepts it)".into()]
        }
    }
}

/// The SMTP gateway relays: the client hears the backend's final reply.
fn relayed(config: &Config) -> String {
    match &config.backend.url {
        BackendTarget::Maildir(root) => format!(
            "  reply {} (from the maildir backend, once the message is written to {})",
            reply::queued("<id>"),
            root.display()
        ),
        BackendTarget::Smtp(addr) => format!(
            "  reply the backend's own reply to the message, passed through (a 250 once smtp://{addr} accepts it; no backend is contacted in a dry run)"
        ),
    }
}

/// The message is kept in `quarantine.dir`, and the client hears `quarantine.answer`.
fn stored(config: &Config, milter: Option<&str>) -> Vec<String> {
    let answer = config.quarantine.answer;
    let word = match answer {
        QuarantineAnswer::Accept => "accept",
        QuarantineAnswer::Tempfail => "tempfail",
        QuarantineAnswer::Reject => "reject",
    };
    let reply = match (crate::quarantine::refusal(answer), milter) {
        (Some(r), _) => format!("  reply {r} (quarantine.answer: {word})"),
        (None, None) => format!("  reply {} (quarantine.answer: {word})", reply::OK),
        (None, Some(_)) => format!(
            "  reply Postfix's own reply to the message, as if delivered (quarantine.answer: {word})"
        ),
    };
    let dir = config
        .quarantine
        .dir
        .as_deref()
        .map_or_else(|| "quarantine.dir".into(), |d| d.display().to_string());
    let after = milter.map(|m| format!("; {m}")).unwrap_or_default();
    vec![
        reply,
        format!(
            "  quarantined: stored in {dir}, not relayed{after} (review with portcullis quarantine list)"
        ),
    ]
}
