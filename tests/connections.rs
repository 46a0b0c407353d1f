//! Connection admission and early talkers, through the gateway: deny list (inline and from
//! files), per-address concurrency, connection rate, allow list, the operator's replies,
//! and `client.pregreet`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, LineClient};

#[tokio::test]
async fn deny_list_per_ip_limit_and_allow_list() {
    let gw = Gateway::start(|c| {
        c.connections.deny = vec!["127.0.0.66/32".parse().unwrap()];
        c.connections.allow = vec!["127.0.0.77/32".parse().unwrap()];
        c.connections.max_per_ip = 2;
    })
    .await;
    let mut denied = LineClient::connect_from(gw.addr, "127.0.0.66".parse().unwrap()).await;
    let (code, text) = denied.read_reply().await;
    assert_eq!((code, text.contains("5.7.1")), (554, true), "{text}");
    assert_eq!(denied.read_reply().await.0, 0, "closed after the refusal");

    let from = |ip: &str| ip.parse::<std::net::IpAddr>().unwrap();
    let mut a = LineClient::connect_from(gw.addr, from("127.0.0.5")).await;
    let mut b = LineClient::connect_from(gw.addr, from("127.0.0.5")).await;
    assert_eq!((a.read_reply().await.0, b.read_reply().await.0), (220, 220));
    let mut c = LineClient::connect_from(gw.addr, from("127.0.0.5")).await;
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("4.7.0")), (421, true), "{text}");
    // Another address is not affected, and the allow list skips the limit.
    let mut other = LineClient::connect_from(gw.addr, from("127.0.0.6")).await;
    assert_eq!(other.read_reply().await.0, 220);
    let mut trusted = Vec::new();
    for _ in 0..4 {
        let mut t = LineClient::connect_from(gw.addr, from("127.0.0.77")).await;
        assert_eq!(t.read_reply().await.0, 220);
        trusted.push(t);
    }
    // Closing a session frees its place.
    drop(a);
    let mut freed = false;
    for _ in 0..50 {
        let mut again = LineClient::connect_from(gw.addr, from("127.0.0.5")).await;
        if again.read_reply().await.0 == 220 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed);
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"deny_list\"}")
            .await,
        Some(1.0)
    );
    assert!(
        gw.metric("portcullis_limit_hits_total{limit=\"sessions_per_ip\"}")
            .await
            .is_some_and(|v| v >= 1.0)
    );
}

#[tokio::test]
async fn connection_rate_per_address() {
    let gw = Gateway::start(|c| {
        c.connections.rate_per_minute = 3;
        c.connections.rate_burst = 3;
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let mut c = LineClient::connect_from(gw.addr, "127.0.0.8".parse().unwrap()).await;
        codes.push(c.read_reply().await.0);
    }
    assert_eq!(codes, vec![220, 220, 220, 421, 421]);
    let mut c = LineClient::connect_from(gw.addr, "127.0.0.9".parse().unwrap()).await;
    assert_eq!(c.read_reply().await.0, 220, "the limit is per address");
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"connection_rate\"}")
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn list_files_and_the_operators_replies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deny.cidr"),
        "# from the abuse desk
127.0.0.64/30   # a bad neighbourhood
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("allow.cidr"),
        "127.0.0.66
",
    )
    .unwrap();
    let (deny, allow) = (dir.path().join("deny.cidr"), dir.path().join("allow.cidr"));
    let gw = Gateway::start(move |c| {
        c.connections.deny_files = vec![deny];
        c.connections.allow_files = vec![allow];
        c.connections.max_per_ip = 1;
        portcullis::config::read_lists(c).unwrap();
        let reply = |yaml: &str| serde_norway::from_str(yaml).unwrap();
        c.connections.replies.deny = Some(reply(
            "{ code: 521, enhanced: \"5.7.1\", text: No mail from your network }",
        ));
        c.connections.replies.concurrency = Some(reply(
            "{ code: 421, enhanced: \"4.7.0\", text: \"One at a time, please\" }",
        ));
    })
    .await;
    let from = |ip: &str| ip.parse::<std::net::IpAddr>().unwrap();
    let mut denied = LineClient::connect_from(gw.addr, from("127.0.0.65")).await;
    assert_eq!(
        denied.read_reply().await,
        (521, "521 5.7.1 No mail from your network".to_string())
    );
    // On the allow file: the deny file and the limit do not apply.
    let mut allowed = LineClient::connect_from(gw.addr, from("127.0.0.66")).await;
    assert_eq!(allowed.read_reply().await.0, 220);
    let mut first = LineClient::connect_from(gw.addr, from("127.0.0.9")).await;
    assert_eq!(first.read_reply().await.0, 220);
    let mut second = LineClient::connect_from(gw.addr, from("127.0.0.9")).await;
    assert_eq!(
        second.read_reply().await,
        (421, "421 4.7.0 One at a time, please".to_string())
    );
}

#[tokio::test]
async fn bad_list_files_and_replies_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deny.cidr"),
        "192.0.2.0/24
192.0.2.300
",
    )
    .unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "accepted_domains: [example.test]
connections:
  deny_files: [deny.cidr]
  replies:
    rate: { code: 250, enhanced: \"2.0.0\", text: ok }
",
    )
    .unwrap();
    let problems = portcullis::config::load(&config).unwrap_err().to_string();
    assert!(
        problems.contains(
            "portcullis.yaml:5:11: connections.replies.rate: reply code 250 must be a 4xx or 5xx code"
        ),
        "{problems}"
    );
    std::fs::write(
        &config,
        "accepted_domains: [example.test]
connections:
  deny_files: [deny.cidr]
",
    )
    .unwrap();
    let problems = portcullis::config::load(&config).unwrap_err().to_string();
    assert!(
        problems.ends_with("deny.cidr:2:1: \"192.0.2.300\" is not a network (CIDR) or an address"),
        "{problems}"
    );
}

#[tokio::test]
async fn early_talkers_are_a_fact_the_policy_can_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "rules:\n  - name: pregreet\n    when: { client.pregreet: true }\n    action: reject\n    reply: { code: 554, enhanced: \"5.5.1\", text: \"Protocol error: talking before the banner\" }\n").unwrap();
    let gw = Gateway::start(|c| {
        c.connections.pregreet_wait = Duration::from_millis(300);
        c.policy = Some(policy);
    })
    .await;
    // A polite client waits for the banner.
    let mut polite = LineClient::connect(gw.addr).await;
    assert_eq!(polite.read_reply().await.0, 220);
    // A bot talks first.
    let mut bot = LineClient::connect(gw.addr).await;
    bot.send(b"EHLO bot.example\r\n").await;
    let (code, text) = bot.read_reply().await;
    assert_eq!(
        (code, text.as_str()),
        (554, "554 5.5.1 Protocol error: talking before the banner")
    );
    assert_eq!(
        gw.metric("portcullis_client_findings_total{finding=\"pregreet\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_multiline_banner_catches_bots_that_answer_its_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: pregreet\n    when: { client.pregreet: true }\n    action: reject\n",
    )
    .unwrap();
    let gw = Gateway::start(|c| {
        c.connections.pregreet_wait = Duration::from_millis(300);
        c.connections.multiline_banner = true;
        c.policy = Some(policy);
    })
    .await;
    // A polite client reads one two-line 220 reply.
    let mut polite = LineClient::connect(gw.addr).await;
    assert_eq!(
        polite.read_reply().await,
        (
            220,
            "220-gw.example.test ESMTP\n220 gw.example.test ESMTP Portcullis".to_string()
        )
    );
    assert_eq!(polite.cmd("EHLO polite.example").await.0, 250);
    // A bot answers as soon as it sees "220-".
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut first = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut first)
        .await
        .unwrap();
    assert_eq!(first, "220-gw.example.test ESMTP\r\n");
    let mut bot = LineClient::from_stream(reader.into_inner());
    bot.send(b"EHLO bot.example\r\n").await;
    // The banner is finished with its own code (one reply, one code), then the refusal
    // answers every command but QUIT.
    assert_eq!(
        bot.read_reply().await,
        (220, "220 gw.example.test ESMTP Portcullis".to_string())
    );
    let (code, text) = bot.read_reply().await;
    assert_eq!(
        (code, text.as_str()),
        (550, "550 5.7.1 Message rejected by policy")
    );
    assert_eq!(bot.cmd("MAIL FROM:<a@bot.example>").await.0, 550);
    assert_eq!(bot.cmd("QUIT").await.0, 221);
    assert_eq!(
        gw.metric("portcullis_policy_rule_hits_total{rule=\"pregreet\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn talking_ahead_without_pipelining_is_a_fact() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: impatient\n    when: { client.unannounced_pipelining: true }\n    action: reject\n    reply: { code: 550, enhanced: \"5.5.1\", text: \"Wait for replies\" }\n",
    )
    .unwrap();
    let gw = Gateway::start(|c| c.policy = Some(policy)).await;
    // EHLO must end a group (RFC 2920): a bot sends its whole dialogue at once.
    let mut bot = gw.client().await;
    bot.send(b"EHLO bot.example\r\nMAIL FROM:<a@b.example>\r\n")
        .await;
    assert_eq!(bot.read_reply().await.0, 250);
    assert_eq!(
        bot.read_reply().await,
        (550, "550 5.5.1 Wait for replies".to_string())
    );
    // A HELO client never saw PIPELINING.
    let mut old = gw.client().await;
    assert_eq!(old.cmd("HELO old.example").await.0, 250);
    old.send(b"NOOP\r\nMAIL FROM:<a@b.example>\r\n").await;
    assert_eq!(old.read_reply().await.0, 250);
    assert_eq!(old.read_reply().await.0, 550);
    // Pipelining after the EHLO reply advertised it is fine.
    let mut good = gw.client().await;
    assert_eq!(good.cmd("EHLO good.example").await.0, 250);
    good.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n")
        .await;
    assert_eq!(good.read_reply().await.0, 250);
    assert_eq!(good.read_reply().await.0, 250);
    // The bot and the HELO client, once each (at their MAIL).
    assert_eq!(
        gw.metric("portcullis_client_findings_total{finding=\"unannounced_pipelining\"}")
            .await,
        Some(2.0)
    );
}
