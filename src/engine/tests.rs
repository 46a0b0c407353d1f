//! The engine without sockets: stages driven directly, a real pipeline and policy from a
//! YAML file, the in-process state store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::outcome::Action;

/// An engine under `policy` (and `tweak` on the config, given the temp dir), for a client
/// at 192.0.2.7.
fn engine_tweaked(
    policy: &str,
    mode: Mode,
    tweak: impl FnOnce(&mut Config, &std::path::Path),
) -> (Engine, Arc<Metrics>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let mut c = crate::config::offline(dir.path());
    c.policy = Some(dir.path().join("policy.yaml"));
    tweak(&mut c, dir.path());
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(c, metrics.clone()).unwrap());
    let info = SessionInfo::new(
        "t",
        "192.0.2.7:4000".parse().unwrap(),
        "127.0.0.1:25".parse().unwrap(),
    );
    (Engine::new(ctx, info, mode), metrics, dir)
}

fn engine_with(policy: &str, mode: Mode) -> (Engine, Arc<Metrics>, tempfile::TempDir) {
    engine_tweaked(policy, mode, |_, _| {})
}

/// One rate limit on the sender, at MAIL, one message an hour.
const PER_SENDER: &str = "rules:
  - name: per-sender
    when: { mail_from.domain: sender.example }
    limit: { key: mail_from, rate: 1/hour, burst: 1 }
";

fn from(address: &str) -> Envelope {
    Envelope {
        mail_from: address.into(),
        ..Envelope::default()
    }
}

fn view(message: &[u8]) -> MessageView<'_> {
    MessageView {
        size: message.len() as u64,
        head: message,
        bare_line_endings: false,
        nul_bytes: false,
        longest_line: 10,
        raw: Some(message),
    }
}

const MSG: &[u8] = b"Subject: hi\r\n\r\nbody\r\n";

async fn greet(e: &mut Engine) {
    e.start_lookups();
    assert_eq!(e.connect().await, Step::Continue);
    assert_eq!(
        e.helo("mx.sender.example".into(), true).await,
        Step::Continue
    );
}

#[tokio::test]
async fn a_refused_recipients_facts_never_reach_the_message() {
    let policy = "rules:
  - name: no-bob
    when: { rcpt: bob@example.test }
    action: reject
  - name: tag-bob
    when: { rcpt: bob@example.test }
    action: tag
";
    let (mut e, _, _dir) = engine_with(policy, Mode::Live);
    greet(&mut e).await;
    assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    assert_eq!(e.rcpt_admit("alice@example.test"), None);
    assert_eq!(e.rcpt("alice@example.test").await, Step::Continue);
    e.rcpt_accepted();
    let Step::Refuse(v) = e.rcpt("bob@example.test").await else {
        panic!("bob must be refused");
    };
    assert_eq!(v.rules, ["no-bob"]);
    assert!(matches!(v.action, Action::Reject(_)));
    let decided = e.message(view(MSG)).await;
    // tag-bob would fire if bob's facts had joined the message.
    assert_eq!(
        decided.verdict.action,
        Action::Accept,
        "{:?}",
        decided.verdict
    );
    assert_eq!(e.envelope().rcpts, ["alice@example.test"]);
    assert!(decided.headers.is_empty());
}

#[tokio::test]
async fn relay_protection_refuses_before_any_rule_and_counts_the_attempt() {
    let policy = "rules:\n  - name: everyone\n    when: { rcpt.domain: other.example }\n    action: accept\n";
    let (mut e, _, _dir) = engine_with(policy, Mode::Live);
    greet(&mut e).await;
    assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    let refusal = e
        .rcpt_admit("x@other.example")
        .expect("outside accepted_domains");
    assert_eq!(refusal, crate::smtp::reply::RELAY_DENIED);
    assert_eq!(e.envelope().rcpt_attempts, 1);
    assert_eq!(e.rcpt_admit("postmaster"), None);
    let mut off = engine_with(policy, Mode::Live).0.with_relay_control(false);
    greet(&mut off).await;
    assert_eq!(off.rcpt_admit("x@other.example"), None);
}

#[tokio::test]
async fn a_mail_limit_counts_once_and_its_excess_is_the_final_verdict() {
    let (mut e, metrics, _dir) = engine_with(PER_SENDER, Mode::Live);
    greet(&mut e).await;
    assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    assert_eq!(e.rcpt("alice@example.test").await, Step::Continue);
    e.rcpt_accepted();
    // Counted at MAIL only: the RCPT and the message did not spend the allowance again.
    let decided = e.message(view(MSG)).await;
    assert_eq!(decided.verdict.action, Action::Accept);
    e.reset();
    let Step::Refuse(v) = e.mail(from("a@sender.example")).await else {
        panic!("the second MAIL is over the rate");
    };
    assert_eq!(v.rules, ["per-sender"]);
    assert_eq!(
        v.action.refusal().map(|r| r.code),
        Some(451),
        "a limit without an action defers"
    );
    let text = metrics.render();
    assert!(
        text.contains(
            "portcullis_ratelimit_checks_total{rule=\"per-sender\",result=\"allowed\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_dry_run_explains_and_never_counts() {
    let (mut e, metrics, _dir) = engine_with(PER_SENDER, Mode::DryRun);
    for _ in 0..3 {
        assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    }
    assert!(
        e.report().contains(
            "limit per-sender: would count per-sender/1/hour/1/mail_from=a@sender.example"
        ),
        "{}",
        e.report()
    );
    assert!(
        !metrics
            .render()
            .contains("portcullis_ratelimit_checks_total{")
    );
}

#[tokio::test]
async fn a_recipient_under_another_scope_is_deferred() {
    let (mut e, _, _dir) = engine_tweaked("rules: []\n", Mode::Live, |c, dir| {
        std::fs::write(dir.join("finance.yaml"), "rules: []\n").unwrap();
        c.policy_scopes.insert(
            "finance.corp.example".parse().unwrap(),
            dir.join("finance.yaml"),
        );
    });
    e.info_mut().helo = Some("mx.sender.example".into());
    assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    assert_eq!(e.rcpt("x@finance.corp.example").await, Step::Continue);
    e.rcpt_accepted();
    assert_eq!(e.rcpt("alice@example.test").await, Step::OtherScope);
    assert_eq!(
        Step::OtherScope.refusal(),
        Some(crate::smtp::reply::OTHER_SCOPE)
    );
    // A new transaction starts without a scope.
    e.reset();
    assert_eq!(e.scope(), None);
    assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    assert_eq!(e.rcpt("alice@example.test").await, Step::Continue);
}

#[tokio::test]
async fn a_tag_verdict_adds_its_header_and_auth_off_strips_nothing() {
    let policy =
        "rules:\n  - name: mark\n    when: { mail_from.domain: sender.example }\n    action: tag\n";
    let (mut e, _, _dir) = engine_with(policy, Mode::Live);
    greet(&mut e).await;
    assert_eq!(e.mail(from("a@sender.example")).await, Step::Continue);
    assert_eq!(e.rcpt("alice@example.test").await, Step::Continue);
    e.rcpt_accepted();
    let decided = e.message(view(MSG)).await;
    assert_eq!(decided.verdict.action, Action::Tag);
    assert_eq!(
        decided.headers,
        ["X-Portcullis-Verdict: tag; score=0; rules=mark\r\n"]
    );
    assert_eq!(decided.strip_authserv_id, None);
    assert!(!decided.quarantined());
}
