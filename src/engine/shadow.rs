//! The shadow policy: a candidate evaluated beside the live policy over the same facts,
//! never acting. The two are compared where the live one would act: a refusal by either,
//! or the end of the message.
//!
//! Owns: when they are compared, and the comparison's metric and log line (or, in a dry
//! run, its line in the report). Must not: change the live verdict.

use super::explain::Explain;
use crate::context::Context;
use crate::metrics::Event;
use crate::pipeline::Stage;
use crate::pipeline::outcome::Fact;
use crate::policy::set::PolicySet;
use crate::policy::verdict::Verdict;

/// Compares the shadow policy of `set` (if any) with the live `verdict` at `stage`.
pub fn compare(
    ctx: &Context,
    set: &PolicySet,
    session: &str,
    stage: Stage,
    facts: &[Fact],
    verdict: &Verdict,
    explain: Option<&mut Explain>,
) {
    let Some(shadow) = set.shadow() else {
        return;
    };
    let candidate = shadow.decide(stage, facts);
    let acts = stage == Stage::Data
        || verdict.action.refusal().is_some()
        || candidate.action.refusal().is_some();
    if !acts {
        return;
    }
    if let Some(explain) = explain {
        explain.shadow(&candidate);
        return;
    }
    let (live, shadow) = (verdict.action.label(), candidate.action.label());
    ctx.metrics.emit(Event::ShadowVerdict { live, shadow });
    if live != shadow {
        tracing::info!(
            session,
            stage = stage.label(),
            live,
            shadow,
            live_rules = ?verdict.rules,
            shadow_rules = ?candidate.rules,
            "shadow policy differs"
        );
    }
}
