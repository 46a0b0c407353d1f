//! Per-recipient-domain policy scopes and the shadow policy, through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Gateway;

const BLOCK_SPAM: &str = "rules:\n  - name: no-spam-example\n    when: { mail_from.domain: spam.example }\n    action: reject\n    reply: { code: 550, enhanced: \"5.7.1\", text: \"Not from spam.example here\" }\n";

#[tokio::test]
async fn each_transaction_has_one_scope_and_other_scopes_are_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.yaml");
    std::fs::write(&strict, BLOCK_SPAM).unwrap();
    let gw = Gateway::start(|c| {
        c.policy_scopes
            .insert("finance.corp.example".parse().unwrap(), strict);
    })
    .await;
    let mut c = gw.client().await;
    c.envelope("a@spam.example", &["u@example.test"]).await;
    // The transaction is in the default scope now; finance's policy would decide otherwise.
    let (code, text) = c.cmd("RCPT TO:<v@finance.corp.example>").await;
    assert_eq!((code, text.contains("4.5.3")), (452, true), "{text}");
    assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    // Sent again on its own, the finance recipient meets the finance policy.
    assert_eq!(c.cmd("MAIL FROM:<a@spam.example>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<v@finance.corp.example>").await;
    assert_eq!(
        (code, text.as_str()),
        (550, "550 5.7.1 Not from spam.example here")
    );
    assert_eq!(c.cmd("RCPT TO:<w@finance.corp.example>").await.0, 550);
    // A clean sender reaches finance, and then the default scope is the other one.
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@good.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<v@finance.corp.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 452);
    assert_eq!(
        gw.metric("portcullis_policy_rule_hits_total{rule=\"no-spam-example\"}")
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn the_shadow_policy_never_acts_but_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("candidate.yaml");
    std::fs::write(&shadow, BLOCK_SPAM).unwrap();
    let gw = Gateway::start(|c| c.shadow_policy = Some(shadow)).await;
    let mut c = gw.client().await;
    c.envelope("a@spam.example", &["u@example.test"]).await;
    assert_eq!(
        c.data(b"Subject: s\r\n\r\nx\r\n").await.0,
        250,
        "the shadow policy must not act"
    );
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    // Compared wherever either side would act: MAIL and RCPT (the shadow's MAIL rule stays
    // due and refuses) and DATA.
    let differs = gw
        .metric("portcullis_shadow_verdicts_total{live=\"accept\",shadow=\"reject\"}")
        .await;
    assert_eq!(differs, Some(3.0));
    let mut c = gw.client().await;
    c.envelope("a@good.example", &["u@example.test"]).await;
    assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
    assert_eq!(
        gw.metric("portcullis_shadow_verdicts_total{live=\"accept\",shadow=\"accept\"}")
            .await,
        Some(1.0)
    );
}
