//! Rate-limit rules and greylisting through the in-process gateway (local state store, no
//! Redis), the compile errors of a broken `limit:`, and the dry run's "would count" line.
//!
//! - a MAIL-stage limit by sender domain: the burst is admitted over several sessions, the
//!   next MAIL is deferred with the rate-limit reply, other domains are unaffected;
//! - a RCPT-stage limit by recipient: the recipient over its rate is deferred, another
//!   recipient of the same transaction is not;
//! - `when:` narrows what is counted, `action: reject` with a reply uses it, a score-only
//!   limit scores (and the score shows in `X-Portcullis-Verdict` once a threshold tags);
//! - an `accept` rule before a limit stops evaluation: nothing is counted;
//! - greylisting: new → early → pass, auto-allowed networks, skipped networks, disabled;
//! - compile errors of `limit:` with their `file:line:column`;
//! - `portcullis policy test` reports what it would count and never counts it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Gateway, LineClient, bin};

const RATE_LIMITED: &str = "451 4.7.1 Rate limit exceeded, try again later";
const GREYLISTED: &str = "451 4.7.1 Greylisted, please try again later";
const MESSAGE: &[u8] = b"Subject: hello\r\n\r\nbody\r\n";

/// Writes `policy` to a fresh temp dir; returns the dir (keep it alive) and the file.
fn policy_file(policy: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    (dir, path)
}

/// A gateway with the policy file `policy`.
async fn gateway_with(policy: &str) -> (Gateway, tempfile::TempDir) {
    let (dir, path) = policy_file(policy);
    let gw = Gateway::start(|c| c.policy = Some(path)).await;
    (gw, dir)
}

/// A rate limit's checks by result. Labelled by the rule's name, so no series is exposed
/// before its first count: a count that must still be zero is asserted `None`, beside a
/// sibling series of the same rule that must exist.
fn checks(rule: &str, result: &str) -> String {
    format!("portcullis_ratelimit_checks_total{{rule=\"{rule}\",result=\"{result}\"}}")
}

/// A rule's hits; like `checks`, exposed only from the rule's first hit.
fn hits(rule: &str) -> String {
    format!("portcullis_policy_rule_hits_total{{rule=\"{rule}\"}}")
}

fn grey(result: &str) -> String {
    format!("portcullis_greylist_results_total{{result=\"{result}\"}}")
}

async fn ehlo(gw: &Gateway) -> LineClient {
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    c
}

async fn ehlo_from(gw: &Gateway, ip: &str) -> LineClient {
    let ip: IpAddr = ip.parse().unwrap();
    let mut c = LineClient::connect_from(gw.addr, ip).await;
    assert_eq!(c.read_reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    c
}

async fn mail(c: &mut LineClient, from: &str) -> (u16, String) {
    c.cmd(&format!("MAIL FROM:<{from}>")).await
}

// ---------------------------------------------------------------------------------------
// Limits through the gateway.

#[tokio::test]
async fn sender_domain_limit_admits_the_burst_then_defers_at_mail() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: flood\n    limit: { key: mail_from.domain, rate: 3/minute, burst: 3 }\n",
    )
    .await;
    // Three MAILs over two sessions; the key is lowercased, so the case does not matter.
    let mut a = ehlo(&gw).await;
    assert_eq!(mail(&mut a, "a@flood.example").await.0, 250);
    assert_eq!(a.cmd("RSET").await.0, 250);
    assert_eq!(mail(&mut a, "b@FLOOD.example").await.0, 250);
    assert_eq!(a.cmd("QUIT").await.0, 221);
    let mut b = ehlo(&gw).await;
    assert_eq!(mail(&mut b, "a@flood.example").await.0, 250);
    assert_eq!(b.cmd("RSET").await.0, 250);
    assert_eq!(gw.metric(&checks("flood", "allowed")).await, Some(3.0));
    assert_eq!(gw.metric(&checks("flood", "exceeded")).await, None);
    assert_eq!(gw.metric(&hits("flood")).await, None);

    // The fourth is over the rate, in a new session as in the old one.
    let (code, text) = mail(&mut b, "a@flood.example").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    let mut c = ehlo(&gw).await;
    let (code, text) = mail(&mut c, "c@flood.example").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    // A refused MAIL leaves no transaction behind.
    assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 503);

    // Another domain has its own bucket, on the same connection.
    assert_eq!(mail(&mut c, "a@other.example").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
    assert_eq!(c.data(MESSAGE).await.0, 250);
    assert_eq!(gw.delivered("example.test", "u").len(), 1);

    assert_eq!(gw.metric(&checks("flood", "allowed")).await, Some(4.0));
    assert_eq!(gw.metric(&checks("flood", "exceeded")).await, Some(2.0));
    assert_eq!(gw.metric(&checks("flood", "unavailable")).await, None);
    assert_eq!(gw.metric(&hits("flood")).await, Some(2.0));
}

#[tokio::test]
async fn recipient_limit_defers_that_recipient_only() {
    let (gw, _dir) =
        gateway_with("rules:\n  - name: per-rcpt\n    limit: { key: rcpt, rate: 2/hour }\n").await;
    let mut c = ehlo(&gw).await;
    for _ in 0..2 {
        assert_eq!(mail(&mut c, "a@sender.example").await.0, 250);
        assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
        assert_eq!(c.data(MESSAGE).await.0, 250);
    }
    // MAIL is not counted by a RCPT-stage limit: only the two recipients were.
    assert_eq!(gw.metric(&checks("per-rcpt", "allowed")).await, Some(2.0));

    assert_eq!(mail(&mut c, "a@sender.example").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<u@example.test>").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    // The burst defaults to the rate's count (2), so a third recipient is still fine.
    assert_eq!(c.cmd("RCPT TO:<v@example.test>").await.0, 250);
    assert_eq!(c.data(MESSAGE).await.0, 250);

    assert_eq!(gw.delivered("example.test", "u").len(), 2);
    assert_eq!(gw.delivered("example.test", "v").len(), 1);
    assert_eq!(gw.metric(&checks("per-rcpt", "allowed")).await, Some(3.0));
    assert_eq!(gw.metric(&checks("per-rcpt", "exceeded")).await, Some(1.0));
    assert_eq!(gw.metric(&hits("per-rcpt")).await, Some(1.0));
}

#[tokio::test]
async fn a_when_condition_narrows_what_is_counted() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: bulk\n    when: { mail_from.domain: bulk.example }\n    limit: { key: client.ip, rate: 1/hour, burst: 1 }\n",
    )
    .await;
    let mut c = ehlo(&gw).await;
    for _ in 0..3 {
        assert_eq!(mail(&mut c, "a@other.example").await.0, 250);
        assert_eq!(c.cmd("RSET").await.0, 250);
    }
    assert_eq!(
        gw.metric(&checks("bulk", "allowed")).await,
        None,
        "other senders are not counted"
    );
    assert_eq!(mail(&mut c, "a@bulk.example").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);
    let (code, text) = mail(&mut c, "b@bulk.example").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    // The client's bucket is spent, but only for mail the condition selects.
    assert_eq!(mail(&mut c, "a@other.example").await.0, 250);
    assert_eq!(gw.metric(&checks("bulk", "allowed")).await, Some(1.0));
    assert_eq!(gw.metric(&checks("bulk", "exceeded")).await, Some(1.0));
}

#[tokio::test]
async fn a_limit_with_action_reject_uses_its_own_reply() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: one-per-sender\n    limit: { key: mail_from, rate: 1/hour, burst: 1 }\n    action: reject\n    reply: { code: 550, enhanced: \"5.7.1\", text: \"Too many messages from this sender\" }\n",
    )
    .await;
    let mut c = ehlo(&gw).await;
    assert_eq!(mail(&mut c, "Someone@Sender.example").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);
    let (code, text) = mail(&mut c, "someone@sender.example").await;
    assert_eq!(
        (code, text.as_str()),
        (550, "550 5.7.1 Too many messages from this sender")
    );
    assert_eq!(mail(&mut c, "someone.else@sender.example").await.0, 250);
    assert_eq!(gw.metric(&hits("one-per-sender")).await, Some(1.0));
}

#[tokio::test]
async fn a_score_only_limit_scores_instead_of_refusing() {
    let (gw, _dir) = gateway_with(
        "thresholds: { tag: 5 }\nrules:\n  - name: busy-sender\n    limit: { key: mail_from.domain, rate: 1/hour, burst: 1 }\n    score: 5\n",
    )
    .await;
    let mut c = ehlo(&gw).await;
    for _ in 0..2 {
        assert_eq!(mail(&mut c, "a@busy.example").await.0, 250);
        assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
        assert_eq!(c.data(MESSAGE).await.0, 250);
    }
    let msgs = gw.delivered("example.test", "u");
    assert_eq!(msgs.len(), 2);
    let headers: Vec<String> = msgs
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find(|l| l.starts_with("X-Portcullis-Verdict:"))
                .map(String::from)
        })
        .collect();
    assert_eq!(
        headers,
        vec!["X-Portcullis-Verdict: tag; score=5; rules=busy-sender,score>=5"],
        "only the message over the rate is scored"
    );
    assert_eq!(
        gw.metric(&checks("busy-sender", "allowed")).await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(&checks("busy-sender", "exceeded")).await,
        Some(1.0)
    );
    // Counted once, at DATA where the score takes effect (MAIL did not refuse).
    assert_eq!(gw.metric(&hits("busy-sender")).await, Some(1.0));
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"tag\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn an_earlier_accept_stops_evaluation_before_the_limit() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: trusted\n    when: { client.ip: { cidr: [127.0.0.1/32] } }\n    action: accept\n  - name: per-client\n    limit: { key: client.ip, rate: 1/hour, burst: 1 }\n",
    )
    .await;
    let mut c = ehlo_from(&gw, "127.0.0.1").await;
    for _ in 0..3 {
        assert_eq!(mail(&mut c, "a@sender.example").await.0, 250);
        assert_eq!(c.cmd("RSET").await.0, 250);
    }
    assert_eq!(gw.metric(&checks("per-client", "allowed")).await, None);
    assert_eq!(gw.metric(&checks("per-client", "exceeded")).await, None);

    // Another client is not trusted and is counted.
    let mut d = ehlo_from(&gw, "127.0.0.2").await;
    assert_eq!(mail(&mut d, "a@sender.example").await.0, 250);
    assert_eq!(d.cmd("RSET").await.0, 250);
    let (code, text) = mail(&mut d, "a@sender.example").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    assert_eq!(gw.metric(&checks("per-client", "allowed")).await, Some(1.0));
    assert_eq!(
        gw.metric(&checks("per-client", "exceeded")).await,
        Some(1.0)
    );
    // And the trusted one still is not.
    assert_eq!(mail(&mut c, "a@sender.example").await.0, 250);
    assert_eq!(gw.metric(&checks("per-client", "allowed")).await, Some(1.0));
}

// ---------------------------------------------------------------------------------------
// Greylisting.

fn greylisting(c: &mut portcullis::config::Config, auto_allow_after: u32) {
    c.greylisting.enabled = true;
    c.greylisting.delay = Duration::from_secs(1);
    c.greylisting.expiry = Duration::from_secs(3600);
    c.greylisting.auto_allow_after = auto_allow_after;
}

/// One attempt of a whole transaction in its own connection; the reply to DATA.
async fn attempt(gw: &Gateway, from: &str, rcpt: &str) -> (u16, String) {
    let mut c = gw.client().await;
    c.envelope(from, &[rcpt]).await;
    let r = c.data(MESSAGE).await;
    assert_eq!(c.cmd("QUIT").await.0, 221);
    r
}

#[tokio::test]
async fn greylisting_defers_new_and_early_then_passes_and_auto_allows() {
    let gw = Gateway::start(|c| greylisting(c, 1)).await;
    let (code, text) = attempt(&gw, "a@sender.example", "u@example.test").await;
    assert_eq!((code, text.as_str()), (451, GREYLISTED));
    let (code, text) = attempt(&gw, "a@sender.example", "u@example.test").await;
    assert_eq!(
        (code, text.as_str()),
        (451, GREYLISTED),
        "retried too early"
    );
    assert!(gw.delivered("example.test", "u").is_empty());
    assert_eq!(gw.metric(&grey("new")).await, Some(1.0));
    assert_eq!(gw.metric(&grey("early")).await, Some(1.0));
    assert_eq!(gw.metric(&grey("pass")).await, Some(0.0));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, text) = attempt(&gw, "A@Sender.example", "U@example.test").await;
    assert_eq!(code, 250, "the triplet is case-insensitive: {text}");
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    assert_eq!(gw.metric(&grey("pass")).await, Some(1.0));

    // One pass from 127.0.0.0/24 is enough: a new triplet of the network passes at once.
    let (code, text) = attempt(&gw, "b@elsewhere.example", "v@example.test").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(gw.delivered("example.test", "v").len(), 1);
    assert_eq!(gw.metric(&grey("auto_allowed")).await, Some(1.0));
    assert_eq!(gw.metric(&grey("new")).await, Some(1.0));
    assert_eq!(gw.metric(&grey("skipped")).await, Some(0.0));
    assert_eq!(gw.metric(&hits("greylisted")).await, Some(2.0));
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"tempfail\"}")
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn greylisting_without_auto_allow_defers_each_new_triplet() {
    let gw = Gateway::start(|c| greylisting(c, 0)).await;
    assert_eq!(attempt(&gw, "a@s.example", "u@example.test").await.0, 451);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(attempt(&gw, "a@s.example", "u@example.test").await.0, 250);
    // Passed once: remembered, no delay for the next message of the triplet.
    assert_eq!(attempt(&gw, "a@s.example", "u@example.test").await.0, 250);
    // A message to two recipients is deferred while either triplet is new.
    let mut c = gw.client().await;
    c.envelope("a@s.example", &["u@example.test", "v@example.test"])
        .await;
    let (code, text) = c.data(MESSAGE).await;
    assert_eq!((code, text.as_str()), (451, GREYLISTED));
    assert_eq!(gw.delivered("example.test", "u").len(), 2);
    assert!(gw.delivered("example.test", "v").is_empty());
    assert_eq!(gw.metric(&grey("new")).await, Some(2.0));
    assert_eq!(gw.metric(&grey("pass")).await, Some(2.0));
    assert_eq!(gw.metric(&grey("auto_allowed")).await, Some(0.0));
}

#[tokio::test]
async fn greylisting_skips_listed_networks_and_refused_messages() {
    let (_dir, path) = policy_file(
        "rules:\n  - name: no-spam\n    when: { header: { regex: \"(?i)^subject: spam\" } }\n    action: reject\n",
    );
    let gw = Gateway::start(|c| {
        greylisting(c, 0);
        c.policy = Some(path);
    })
    .await;
    // Refused anyway: no triplet is recorded, so nothing is counted.
    let mut c = gw.client().await;
    c.envelope("a@s.example", &["u@example.test"]).await;
    let (code, text) = c.data(b"Subject: spam\r\n\r\nx\r\n").await;
    assert_eq!(
        (code, text.as_str()),
        (550, "550 5.7.1 Message rejected by policy")
    );
    for result in ["new", "early", "pass", "auto_allowed", "skipped"] {
        assert_eq!(gw.metric(&grey(result)).await, Some(0.0), "{result}");
    }
    // The same triplet's first acceptable message is new, not a pass.
    let (code, text) = attempt(&gw, "a@s.example", "u@example.test").await;
    assert_eq!((code, text.as_str()), (451, GREYLISTED));
    assert_eq!(gw.metric(&grey("new")).await, Some(1.0));

    let gw = Gateway::start(|c| {
        greylisting(c, 0);
        c.greylisting.skip_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (code, text) = attempt(&gw, "a@s.example", "u@example.test").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    assert_eq!(gw.metric(&grey("skipped")).await, Some(1.0));
    assert_eq!(gw.metric(&grey("new")).await, Some(0.0));
}

#[tokio::test]
async fn greylisting_disabled_asks_nothing() {
    let gw = Gateway::start(|c| {
        c.greylisting.enabled = false;
        c.greylisting.delay = Duration::from_secs(1);
    })
    .await;
    let (code, text) = attempt(&gw, "a@s.example", "u@example.test").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    let (_, body) = gw.http_get("/metrics").await;
    for result in [
        "new",
        "early",
        "pass",
        "auto_allowed",
        "skipped",
        "unavailable",
    ] {
        let series = grey(result);
        assert!(
            body.contains(&format!("{series} 0")),
            "{series} in:\n{body}"
        );
    }
    assert_eq!(gw.metric(&hits("greylisted")).await, None);
}

// ---------------------------------------------------------------------------------------
// Compile errors.

fn diagnostics(text: &str) -> Vec<String> {
    match portcullis::policy::file::compile("p.yaml", text, Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(d) => d.into_iter().map(|d| d.to_string()).collect(),
    }
}

const KEYS: &str = "client.ip, client.network, helo, mail_from, mail_from.domain, rcpt, rcpt.domain, spf.domain, dkim.domain, auth.domain";

#[test]
fn limit_problems_are_reported_at_their_position() {
    // Flow style: every field on the `limit:` line.
    let got = diagnostics(
        "rules:\n  - name: flow\n    limit: { key: client.port, rate: 5/fortnight, burst: 0 }\n",
    );
    assert_eq!(
        got,
        vec![
            format!("p.yaml:3:14: a limit cannot count by \"client.port\": use one of {KEYS}"),
            "p.yaml:3:32: invalid rate \"5/fortnight\": expected e.g. 100/hour, 10/minute or 30/10m".to_string(),
            "p.yaml:3:51: burst must be at least 1".to_string(),
        ]
    );

    // Block style, after a valid rule, with a condition.
    let got = diagnostics(
        "rules:\n  - name: ok\n    limit: { key: rcpt, rate: 10/hour }\n  - name: block\n    when: { mail_from.domain: bulk.example }\n    limit:\n      key: subject\n      rate: 0/minute\n      burst: 0\n",
    );
    assert_eq!(
        got,
        vec![
            format!("p.yaml:7:7: a limit cannot count by \"subject\": use one of {KEYS}"),
            "p.yaml:8:7: rate \"0/minute\" must allow at least one event per period".to_string(),
            "p.yaml:9:7: burst must be at least 1".to_string(),
        ]
    );

    // A limit alone is a complete rule (it defers), and a valid one compiles at its stage.
    let c = portcullis::policy::file::compile(
        "p.yaml",
        "rules:\n  - name: a\n    limit: { key: rcpt.domain, rate: 30/10m }\n  - name: b\n    when: { dkim: pass }\n    limit: { key: mail_from.domain, rate: 5/minute }\n",
        Path::new("."),
    )
    .expect("valid");
    let a = &c.rules[0];
    assert_eq!(a.stage, portcullis::pipeline::Stage::Rcpt);
    let l = a.limit.as_ref().expect("limit");
    assert_eq!(
        (l.key.name(), l.rate.to_string(), l.burst),
        ("rcpt.domain", "30/600s".into(), 30)
    );
    assert_eq!(
        c.rules[1].stage,
        portcullis::pipeline::Stage::Data,
        "the condition's DATA fact moves the count to DATA"
    );
    // An unknown field in a limit is a syntax error with its position.
    let got =
        diagnostics("rules:\n  - name: a\n    limit: { key: rcpt, rate: 1/hour, brust: 2 }\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("p.yaml:3:") && got[0].contains("unknown field `brust`"),
        "{got:#?}"
    );
}

#[test]
fn check_config_reports_limit_problems() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "hostname: gw.example.test\naccepted_domains: [example.test]\npolicy: policy.yaml\n",
    )
    .unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: flood\n    limit:\n      key: mail_from.domain\n      rate: 5/fortnight\n      burst: 0\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let f = policy.display();
    assert!(
        err.contains(&format!("{f}:5:7: invalid rate \"5/fortnight\"")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:6:7: burst must be at least 1")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
}

// ---------------------------------------------------------------------------------------
// The dry run.

fn dry_run(config: &Path, message: &Path, rcpt: &str) -> String {
    common::policy_test(
        config,
        message,
        &["--from", "a@Flood.example", "--rcpt", rcpt],
    )
}

#[test]
fn the_dry_run_says_what_it_would_count_and_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "rules:\n  - name: flood\n    limit: { key: mail_from.domain, rate: 1/minute, burst: 1 }\n  - name: per-rcpt\n    limit: { key: rcpt, rate: 2/hour }\n",
    )
    .unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "accepted_domains: [example.test]\npolicy: policy.yaml\n",
    )
    .unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "Subject: hi\n\nbody\n").unwrap();
    let out = dry_run(&config, &msg, "u@example.test");
    let mail_line = "  limit flood: would count flood/1/minute/1/mail_from.domain=flood.example (1/minute burst 1), not counted in a dry run\n";
    let rcpt_line = "  limit per-rcpt: would count per-rcpt/2/hour/2/rcpt=u@example.test (2/hour burst 2), not counted in a dry run\n";
    let mail_at = out.find(mail_line).unwrap_or_else(|| panic!("{out}"));
    let rcpt_at = out.find(rcpt_line).unwrap_or_else(|| panic!("{out}"));
    let rcpt_section = out.find("RCPT <u@example.test>").expect("RCPT section");
    assert!(mail_at < rcpt_section && rcpt_section < rcpt_at, "{out}");
    assert_eq!(
        out.matches("limit flood:").count(),
        1,
        "counted once: {out}"
    );
    assert_eq!(out.matches("limit per-rcpt:").count(), 1, "{out}");
    assert!(out.contains("rule  flood: no"), "{out}");
    assert!(out.contains("\nDATA\n"), "{out}");
    assert!(
        out.contains("\n  => accept score=0 rules=[]\n  reply 250 "),
        "the message's verdict, then its reply: {out}"
    );

    // Three messages through a burst of one: a dry run never spends the allowance.
    let msgs = dir.path().join("msgs");
    std::fs::create_dir(&msgs).unwrap();
    for i in 1..=3 {
        std::fs::write(msgs.join(format!("{i}.eml")), "Subject: hi\n\nbody\n").unwrap();
    }
    let out = dry_run(&config, &msgs, "u@example.test");
    assert!(out.contains("3 message(s)\n  accept       3\n"), "{out}");
    assert!(!out.contains("tempfail"), "{out}");
}

/// A scope's MAIL rules are due at RCPT (docs/configuration.md, `policy_scopes`), so a
/// scope's MAIL-keyed limit is counted there, once per transaction: at MAIL the session
/// still decides with the default policy.
#[tokio::test]
async fn a_scoped_policy_counts_its_mail_stage_limit_at_rcpt() {
    let (_dir, path) = policy_file(
        "rules:\n  - name: scoped-flood\n    limit: { key: mail_from.domain, rate: 1/hour, burst: 1 }\n",
    );
    let gw = Gateway::start(|c| {
        c.policy_scopes
            .insert("finance.corp.example".parse().unwrap(), path);
    })
    .await;
    let mut c = ehlo(&gw).await;
    assert_eq!(mail(&mut c, "a@flood.example").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<v@finance.corp.example>").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(mail(&mut c, "a@flood.example").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<v@finance.corp.example>").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    assert_eq!(
        gw.metric(&checks("scoped-flood", "allowed")).await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(&checks("scoped-flood", "exceeded")).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn counting_stops_at_the_first_limit_that_refuses() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: per-sender\n    limit: { key: mail_from, rate: 1/hour, burst: 1 }\n  - name: per-client\n    limit: { key: client.ip, rate: 2/hour, burst: 2 }\n",
    )
    .await;
    let mut c = ehlo(&gw).await;
    assert_eq!(mail(&mut c, "x@sender.example").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);
    // Refused by per-sender: per-client, after it in the file, is not spent.
    for _ in 0..2 {
        assert_eq!(mail(&mut c, "x@sender.example").await.0, 451);
        assert_eq!(c.cmd("RSET").await.0, 250);
    }
    assert_eq!(mail(&mut c, "y@sender.example").await.0, 250);
    assert_eq!(gw.metric(&checks("per-client", "allowed")).await, Some(2.0));
    assert_eq!(gw.metric(&checks("per-client", "exceeded")).await, None);
    assert_eq!(
        gw.metric(&checks("per-sender", "exceeded")).await,
        Some(2.0)
    );
}

#[tokio::test]
async fn a_limit_with_a_data_condition_counts_at_the_end_of_data() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: big-senders\n    when: { size.actual: { gt: 0 } }\n    limit: { key: mail_from.domain, rate: 1/hour, burst: 1 }\n",
    )
    .await;
    let mut c = ehlo(&gw).await;
    for expected in [(250, None), (451, Some(RATE_LIMITED))] {
        assert_eq!(mail(&mut c, "a@big.example").await.0, 250, "not at MAIL");
        assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
        let (code, text) = c.data(MESSAGE).await;
        assert_eq!(code, expected.0, "{text}");
        if let Some(t) = expected.1 {
            assert_eq!(text, t);
        }
    }
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    assert_eq!(
        gw.metric(&checks("big-senders", "allowed")).await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(&checks("big-senders", "exceeded")).await,
        Some(1.0)
    );
    assert_eq!(gw.metric(&hits("big-senders")).await, Some(1.0));
}

#[tokio::test]
async fn a_recipient_domain_limit_counts_each_recipient() {
    let (gw, _dir) = gateway_with(
        "rules:\n  - name: per-domain\n    limit: { key: rcpt.domain, rate: 2/hour }\n",
    )
    .await;
    let mut c = ehlo(&gw).await;
    assert_eq!(mail(&mut c, "a@sender.example").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<v@Example.Test>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<w@example.test>").await;
    assert_eq!((code, text.as_str()), (451, RATE_LIMITED));
    assert_eq!(c.cmd("RCPT TO:<w@a.corp.example>").await.0, 250);
    assert_eq!(c.data(MESSAGE).await.0, 250);
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    assert_eq!(gw.delivered("example.test", "w").len(), 0);
    assert_eq!(gw.metric(&checks("per-domain", "allowed")).await, Some(3.0));
    assert_eq!(
        gw.metric(&checks("per-domain", "exceeded")).await,
        Some(1.0)
    );
}

#[test]
fn a_limit_name_in_two_policy_files_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let limit = "rules:\n  - name: per-sender\n    limit: { key: mail_from, rate: 10/hour }\n";
    std::fs::write(dir.path().join("default.yaml"), limit).unwrap();
    std::fs::write(dir.path().join("finance.yaml"), limit).unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "accepted_domains: [corp.example]\npolicy: default.yaml\npolicy_scopes:\n  finance.corp.example: finance.yaml\n  hr.corp.example: finance.yaml\n",
    )
    .unwrap();
    let policies = |path| {
        portcullis::policy::set::PolicySet::load(&portcullis::config::load(path).unwrap())
            .map_err(portcullis::config::ConfigErrors)
    };
    let problems = policies(&config).unwrap_err().to_string();
    let default = dir.path().join("default.yaml");
    let expected = format!(
        "finance.yaml:2:5: limit rule \"per-sender\" is also in {}: rename one (they would count in one bucket)",
        default.display()
    );
    assert!(problems.ends_with(&expected), "{problems}");
    assert_eq!(
        problems.lines().count(),
        1,
        "two scopes sharing one file is fine: {problems}"
    );
    std::fs::write(
        dir.path().join("finance.yaml"),
        limit.replace("per-sender", "finance-per-sender"),
    )
    .unwrap();
    assert!(policies(&config).is_ok());
}
