//! Running the checks of a stage and turning their facts into a verdict.
//!
//! Owns: the order of checks (as the registry declared them), the per-check budget, panic
//! isolation, timing metrics, and the hand-off to the policy. Must not: read YAML or reply.
//! It is not in `pipeline`: `pipeline` is the vocabulary that checks, policy and metrics
//! share, and runs nothing; this runs the checks and asks the policy.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;

use crate::metrics::Metrics;
use crate::pipeline::facts::{self, FactDef};
use crate::pipeline::outcome::{Fact, Findings};
use crate::pipeline::{Check, CheckContext, Deferred, Stage};
use crate::policy::set::PolicySet;

/// The checks and the policy that one session uses (a snapshot: a reload does not change
/// a session in flight).
pub struct Pipeline {
    checks: Vec<Box<dyn Check>>,
    policy: ArcSwap<PolicySet>,
    budget: Duration,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// A pipeline running `checks` in this order, each hook within `budget`.
    pub fn new(
        checks: Vec<Box<dyn Check>>,
        policy: Arc<PolicySet>,
        budget: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Pipeline {
            checks,
            policy: ArcSwap::new(policy),
            budget,
            metrics,
        }
    }

    /// Runs every check's hook for `stage` and returns what they found, in check order.
    pub async fn run(&self, stage: Stage, ctx: CheckContext<'_>) -> Findings {
        let mut all = Findings::default();
        for check in &self.checks {
            let started = Instant::now();
            let hook = match stage {
                Stage::Connect => check.on_connect(ctx),
                Stage::Helo => check.on_helo(ctx),
                Stage::Mail => check.on_mail(ctx),
                Stage::Rcpt => check.on_rcpt(ctx),
                Stage::Data => check.on_data(ctx),
            };
            // The declaration is asserted inside the isolation: in a debug build an
            // undeclared fact is a panic of that check, not of the session.
            let hook = async {
                let found = hook.await;
                debug_assert_declared(check.name(), check.emits(), &found.facts);
                found
            };
            // A check that hangs or panics must not take the session down with it: it
            // yields a `check.error` fact and the policy decides what that means.
            match tokio::time::timeout(self.budget, AssertUnwindSafe(hook).catch_unwind()).await {
                Ok(Ok(found)) => {
                    all.facts.extend(found.facts);
                    all.headers.extend(found.headers);
                }
                Ok(Err(_)) => {
                    tracing::error!(
                        check = check.name(),
                        stage = stage.label(),
                        "check panicked"
                    );
                    all.facts
                        .push(Fact::text(&facts::CHECK_ERROR, check.name()));
                }
                Err(_) => {
                    tracing::warn!(
                        check = check.name(),
                        stage = stage.label(),
                        "check exceeded its budget"
                    );
                    all.facts
                        .push(Fact::text(&facts::CHECK_ERROR, check.name()));
                }
            }
            self.metrics
                .check_finished(check.name(), stage, started.elapsed());
        }
        self.metrics.client_findings(&all.facts);
        all
    }

    /// Starts every check's deferred connect lookups (`Check::start_at_connect`).
    pub fn start(&self, ctx: CheckContext<'_>) -> Vec<Deferred> {
        self.checks
            .iter()
            .filter_map(|c| c.start_at_connect(ctx))
            .collect()
    }

    /// Awaits deferred lookups, within the per-check budget counted from now: a panic or
    /// an overrun gives a `check.error` fact, as for a hook.
    pub async fn settle(&self, deferred: Deferred) -> Vec<Fact> {
        let abort = deferred.task.abort_handle();
        let facts = match tokio::time::timeout(self.budget, deferred.task).await {
            // Outside a task's isolation, an undeclared fact is told and dropped rather
            // than panicking the session.
            Ok(Ok(found))
                if cfg!(debug_assertions) && undeclared(deferred.facts, &found).is_some() =>
            {
                tracing::error!(
                    check = deferred.check,
                    "deferred lookups reported a fact they do not declare"
                );
                vec![Fact::text(&facts::CHECK_ERROR, deferred.check)]
            }
            Ok(Ok(found)) => found,
            Ok(Err(_)) => {
                tracing::error!(check = deferred.check, "deferred lookups failed");
                vec![Fact::text(&facts::CHECK_ERROR, deferred.check)]
            }
            Err(_) => {
                abort.abort();
                tracing::warn!(
                    check = deferred.check,
                    "deferred lookups exceeded the budget"
                );
                vec![Fact::text(&facts::CHECK_ERROR, deferred.check)]
            }
        };
        self.metrics.client_findings(&facts);
        facts
    }

    /// The policy now in force. A session takes it once and keeps it: a reload never
    /// changes the rules under a transaction in flight.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.load_full()
    }

    /// Puts a new policy in force for sessions that start from now on.
    pub fn set_policy(&self, policy: Arc<PolicySet>) {
        self.policy.store(policy);
    }
}

/// The facts the runner reports itself, for any check: `check.error`.
pub const EMITS: &[&FactDef] = &[&facts::CHECK_ERROR];

/// In debug builds, every fact a check returns must be one it declares (`Check::emits`):
/// a hook that reports another panics inside its isolation, so the stage gets `check.error`
/// in its place and the panic is printed. A test that runs the check through a `Pipeline`
/// (as `examples/own_check.rs` does) sees that instead of its fact. Release builds do not
/// look.
fn debug_assert_declared(check: &str, emits: &[&FactDef], found: &[Fact]) {
    if cfg!(debug_assertions)
        && let Some(fact) = undeclared(emits, found)
    {
        panic!(
            "check {check} reported {} but does not declare it in `emits`",
            fact.name()
        );
    }
}

/// The first fact of `found` that is not in `emits`.
fn undeclared<'f>(emits: &[&FactDef], found: &'f [Fact]) -> Option<&'f Fact> {
    found.iter().find(|f| !emits.contains(&f.def()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::CheckFuture;
    use crate::smtp::envelope::{Envelope, SessionInfo};

    struct Slow;
    impl Check for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn emits(&self) -> &'static [&'static FactDef] {
            &[&facts::SPF_MAILFROM]
        }
        fn on_mail<'a>(&'a self, _: CheckContext<'a>) -> CheckFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                vec![Fact::text(&facts::SPF_MAILFROM, "pass")].into()
            })
        }
    }

    struct Panics;
    impl Check for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn emits(&self) -> &'static [&'static FactDef] {
            &[]
        }
        fn on_mail<'a>(&'a self, _: CheckContext<'a>) -> CheckFuture<'a> {
            Box::pin(async { panic!("boom") })
        }
    }

    struct Undeclared;
    impl Check for Undeclared {
        fn name(&self) -> &'static str {
            "undeclared"
        }
        fn emits(&self) -> &'static [&'static FactDef] {
            &[&facts::SPF_HELO]
        }
        fn on_mail<'a>(&'a self, _: CheckContext<'a>) -> CheckFuture<'a> {
            crate::pipeline::ready(vec![Fact::text(&facts::SPF_MAILFROM, "pass")])
        }
    }

    fn mail_ctx<'a>(session: &'a SessionInfo, env: &'a Envelope) -> CheckContext<'a> {
        CheckContext {
            session,
            envelope: env,
            facts: &[],
            rcpt: None,
            message: None,
        }
    }

    #[tokio::test]
    #[cfg(debug_assertions)]
    async fn an_undeclared_fact_is_a_check_error_in_debug_builds() {
        let p = Pipeline::new(
            vec![Box::new(Undeclared)],
            Arc::new(PolicySet::builtin(&Default::default())),
            Duration::from_secs(5),
            Arc::new(Metrics::new()),
        );
        let session = SessionInfo::new(
            "t",
            "127.0.0.1:1".parse().expect("addr"),
            "127.0.0.1:2".parse().expect("addr"),
        );
        let env = Envelope::default();
        let found = p.run(Stage::Mail, mail_ctx(&session, &env)).await;
        assert_eq!(
            found.facts,
            [Fact::text(&facts::CHECK_ERROR, "undeclared")],
            "the undeclared spf.mailfrom is not passed on"
        );
    }

    #[tokio::test]
    #[cfg(debug_assertions)]
    async fn undeclared_deferred_facts_are_a_check_error_in_debug_builds() {
        let p = Pipeline::new(
            Vec::new(),
            Arc::new(PolicySet::builtin(&Default::default())),
            Duration::from_secs(5),
            Arc::new(Metrics::new()),
        );
        let deferred = |facts| Deferred {
            check: "lists",
            facts,
            task: tokio::spawn(async { vec![Fact::text(&facts::DNSBL_ERROR, "bl.test")] }),
        };
        let declared: &'static [&'static FactDef] = &[&facts::DNSBL_ERROR];
        assert_eq!(
            p.settle(deferred(declared)).await,
            [Fact::text(&facts::DNSBL_ERROR, "bl.test")]
        );
        assert_eq!(
            p.settle(deferred(&[])).await,
            [Fact::text(&facts::CHECK_ERROR, "lists")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_and_panic_become_error_facts() {
        let metrics = Arc::new(Metrics::new());
        let p = Pipeline::new(
            vec![Box::new(Slow), Box::new(Panics)],
            Arc::new(PolicySet::builtin(&Default::default())),
            Duration::from_secs(5),
            metrics,
        );
        let session = SessionInfo::new(
            "t",
            "127.0.0.1:1".parse().expect("addr"),
            "127.0.0.1:2".parse().expect("addr"),
        );
        let env = Envelope::default();
        let facts = p.run(Stage::Mail, mail_ctx(&session, &env)).await.facts;
        assert_eq!(
            facts,
            vec![
                Fact::text(&facts::CHECK_ERROR, "slow"),
                Fact::text(&facts::CHECK_ERROR, "panics")
            ]
        );
    }
}
