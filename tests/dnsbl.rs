//! DNSBL/DNSWL (RFC 5782) through the running gateway: the shared resolver pointed at the
//! in-process DNS fixture, clients on distinct loopback addresses (every client is looked
//! up, loopback included), authentication off.
//!
//! - a client listed in a block zone is refused at connect by a `dnsbl.listed` rule, with the
//!   rule's reply instead of the banner, and the connection is closed;
//! - a client listed nowhere is served;
//! - an error answer (127.255.255.254) is no listing: it gives `dnsbl.error`, counts as
//!   `error_answer` and marks the zone unhealthy;
//! - an allow zone (DNSWL) gives `dnswl.listed`;
//! - a code filter ignores answers outside it;
//! - `dnsbl.score` sums the weights of the listing zones;
//! - every lookup is counted by zone and result;
//! - a domain list (DBL) is asked about the MAIL FROM domain (`dbl.mail_from`) and the DKIM
//!   signing domains (`dbl.dkim`), and its error answers are no listing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::dns::{DnsFixture, Zone};
use common::{Gateway, LineClient};
use portcullis::config::schema::{DnsblZoneConfig, ZoneKind};

const POLICY: &str = r#"rules:
  - name: trusted
    when: { dnswl.listed: wl.test }
    action: accept
  - name: blocked
    when: { dnsbl.listed: bl.test }
    action: reject
    reply: { code: 554, enhanced: "5.7.1", text: "Listed in bl.test" }
  - name: high-score
    when: { dnsbl.score: { ge: 5 } }
    action: reject
    reply: { code: 554, enhanced: "5.7.1", text: "DNSBL score too high" }
  - name: bl-broken
    when: { dnsbl.error: bl.test }
    action: tag
"#;

fn ip(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

/// Which client is where:
/// - 127.0.0.2: bl.test (listed, weight 5);
/// - 127.0.0.3: nowhere;
/// - 127.0.0.4: filtered.test answers 127.0.0.4, outside its codes (ignored);
/// - 127.0.0.5: bl.test and the allow zone wl.test;
/// - 127.0.0.6: bl.test answers the error code 127.255.255.254;
/// - 127.0.0.7: filtered.test (127.0.0.3, weight 3) and two.test (weight 2): score 5;
/// - 127.0.0.8: two.test only: score 2.
fn zones() -> Vec<Zone> {
    vec![
        Zone::new("bl.test")
            .a("2.0.0.127.bl.test", ip("127.0.0.2"))
            .a("5.0.0.127.bl.test", ip("127.0.0.2"))
            .a("6.0.0.127.bl.test", ip("127.255.255.254")),
        Zone::new("wl.test").a("5.0.0.127.wl.test", ip("127.0.10.2")),
        Zone::new("filtered.test")
            .a("4.0.0.127.filtered.test", ip("127.0.0.4"))
            .a("7.0.0.127.filtered.test", ip("127.0.0.3")),
        Zone::new("two.test")
            .a("7.0.0.127.two.test", ip("127.0.0.2"))
            .a("8.0.0.127.two.test", ip("127.0.0.2")),
    ]
}

fn zone(name: &str, weight: u64, codes: &[&str], allow: bool) -> DnsblZoneConfig {
    DnsblZoneConfig {
        zone: name.into(),
        weight,
        codes: codes.iter().map(|c| c.parse().unwrap()).collect(),
        allow,
        kind: ZoneKind::Ip,
    }
}

async fn gateway(dns: &DnsFixture, dir: &std::path::Path) -> Gateway {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let ns = dns.addr();
    Gateway::start(move |c| {
        c.dns.nameservers = vec![ns];
        c.dns.timeout = Duration::from_secs(2);
        c.dns.attempts = 1;
        c.dnsbl.zones = vec![
            zone("bl.test", 5, &[], false),
            zone("wl.test", 1, &[], true),
            zone("filtered.test", 3, &["127.0.0.2-127.0.0.3"], false),
            zone("two.test", 2, &["127.0.0.2"], false),
        ];
        c.policy = Some(policy);
    })
    .await
}

/// Connects from `source` and returns the first reply.
async fn connect(gw: &Gateway, source: &str) -> (LineClient, u16, String) {
    let source: IpAddr = source.parse().unwrap();
    let mut c = LineClient::connect_from(gw.addr, source).await;
    let (code, text) = c.read_reply().await;
    (c, code, text)
}

/// Sends one message from a served client; returns the final reply code.
async fn send_message(c: &mut LineClient, to: &str) -> u16 {
    c.envelope("a@sender.test", &[to]).await;
    let body = format!("From: a@sender.test\r\nTo: {to}\r\nSubject: hi\r\n\r\nhello\r\n");
    c.data(body.as_bytes()).await.0
}

async fn lookups(gw: &Gateway, zone: &str, result: &str) -> Option<f64> {
    gw.metric(&format!(
        "portcullis_dnsbl_lookups_total{{zone=\"{zone}\",result=\"{result}\"}}"
    ))
    .await
}

async fn healthy(gw: &Gateway, zone: &str) -> Option<f64> {
    gw.metric(&format!("portcullis_dnsbl_zone_healthy{{zone=\"{zone}\"}}"))
        .await
}

#[tokio::test]
async fn series_exist_from_start_up() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&dns, dir.path()).await;
    let (_, body) = gw.http_get("/metrics").await;
    for zone in ["bl.test", "wl.test", "filtered.test", "two.test"] {
        for result in ["listed", "clean", "error_answer", "failed"] {
            let series =
                format!("portcullis_dnsbl_lookups_total{{zone=\"{zone}\",result=\"{result}\"}} 0");
            assert!(body.contains(&series), "{series} missing:\n{body}");
        }
        assert_eq!(healthy(&gw, zone).await, Some(1.0), "{zone}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn listed_client_is_refused_at_connect() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&dns, dir.path()).await;
    let (mut c, code, text) = connect(&gw, "127.0.0.2").await;
    assert_eq!(code, 554, "{text}");
    assert!(text.contains("5.7.1 Listed in bl.test"), "{text}");
    // Closed after the refusal.
    assert_eq!(c.read_reply().await, (0, String::new()));
    assert_eq!(lookups(&gw, "bl.test", "listed").await, Some(1.0));
    assert_eq!(lookups(&gw, "wl.test", "clean").await, Some(1.0));
    assert_eq!(lookups(&gw, "filtered.test", "clean").await, Some(1.0));
    assert_eq!(lookups(&gw, "two.test", "clean").await, Some(1.0));
    assert_eq!(healthy(&gw, "bl.test").await, Some(1.0));
    assert_eq!(
        gw.metric("portcullis_policy_rule_hits_total{rule=\"blocked\"}")
            .await,
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn unlisted_and_filtered_clients_are_served() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&dns, dir.path()).await;
    // Listed nowhere.
    let (mut c, code, text) = connect(&gw, "127.0.0.3").await;
    assert_eq!(code, 220, "{text}");
    assert_eq!(send_message(&mut c, "u@example.test").await, 250);
    // 127.0.0.4 is outside filtered.test's codes: no listing.
    let (mut c, code, text) = connect(&gw, "127.0.0.4").await;
    assert_eq!(code, 220, "{text}");
    assert_eq!(send_message(&mut c, "u@example.test").await, 250);
    assert_eq!(gw.delivered("example.test", "u").len(), 2);
    assert_eq!(lookups(&gw, "filtered.test", "clean").await, Some(2.0));
    assert_eq!(lookups(&gw, "filtered.test", "listed").await, Some(0.0));
    assert_eq!(lookups(&gw, "bl.test", "clean").await, Some(2.0));
    gw.stop().await;
}

#[tokio::test]
async fn error_answer_is_not_a_listing_and_marks_the_zone_unhealthy() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&dns, dir.path()).await;
    let (mut c, code, text) = connect(&gw, "127.0.0.6").await;
    assert_eq!(code, 220, "not refused: {text}");
    assert_eq!(send_message(&mut c, "e@example.test").await, 250);
    // dnsbl.error reached the policy (the tag rule), dnsbl.listed did not.
    let delivered = gw.delivered("example.test", "e");
    assert_eq!(delivered.len(), 1);
    let message = String::from_utf8_lossy(&delivered[0]);
    assert!(
        message.contains("X-Portcullis-Verdict: tag; score=0; rules=bl-broken"),
        "{message}"
    );
    assert_eq!(lookups(&gw, "bl.test", "error_answer").await, Some(1.0));
    assert_eq!(lookups(&gw, "bl.test", "listed").await, Some(0.0));
    assert_eq!(healthy(&gw, "bl.test").await, Some(0.0));
    assert_eq!(healthy(&gw, "two.test").await, Some(1.0));
    // The next sensible answer makes the zone healthy again.
    let (_c, code, _) = connect(&gw, "127.0.0.3").await;
    assert_eq!(code, 220);
    assert_eq!(healthy(&gw, "bl.test").await, Some(1.0));
    gw.stop().await;
}

#[tokio::test]
async fn allow_zone_listing_gives_dnswl_listed() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&dns, dir.path()).await;
    // Listed in bl.test too, but the `trusted` rule (dnswl.listed) accepts first.
    let (mut c, code, text) = connect(&gw, "127.0.0.5").await;
    assert_eq!(code, 220, "{text}");
    assert_eq!(send_message(&mut c, "w@example.test").await, 250);
    assert_eq!(lookups(&gw, "wl.test", "listed").await, Some(1.0));
    assert_eq!(lookups(&gw, "bl.test", "listed").await, Some(1.0));
    gw.stop().await;
}

#[tokio::test]
async fn score_sums_the_weights_of_listing_zones() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&dns, dir.path()).await;
    // filtered.test (3) + two.test (2) = 5.
    let (_c, code, text) = connect(&gw, "127.0.0.7").await;
    assert_eq!(code, 554, "{text}");
    assert!(text.contains("DNSBL score too high"), "{text}");
    // two.test alone: 2.
    let (mut c, code, text) = connect(&gw, "127.0.0.8").await;
    assert_eq!(code, 220, "{text}");
    assert_eq!(send_message(&mut c, "s@example.test").await, 250);
    assert_eq!(lookups(&gw, "two.test", "listed").await, Some(2.0));
    assert_eq!(lookups(&gw, "filtered.test", "listed").await, Some(1.0));
    gw.stop().await;
}

#[tokio::test]
async fn silent_zone_counts_as_failed_within_the_timeout() {
    let dns = DnsFixture::start(vec![
        Zone::new("bl.test").a("2.0.0.127.bl.test", ip("127.0.0.2")),
        Zone::new("slow.test").silent("3.0.0.127.slow.test"),
    ])
    .await;
    let ns = dns.addr();
    let mut gw = Gateway::start(move |c| {
        c.dns.nameservers = vec![ns];
        c.dns.timeout = Duration::from_secs(5);
        c.dns.attempts = 1;
        c.dnsbl.timeout = Duration::from_millis(300);
        c.dnsbl.zones = vec![zone("slow.test", 1, &[], false)];
    })
    .await;
    // No rule reads the DNSBL facts before DATA: the banner does not wait for the lookups,
    // which go on beside the session and fail at dnsbl.timeout, well before the DNS timeout.
    let (_c, code, _) = connect(&gw, "127.0.0.3").await;
    assert_eq!(code, 220);
    assert_eq!(
        lookups(&gw, "slow.test", "failed").await,
        Some(0.0),
        "still running"
    );
    let mut failed = None;
    for _ in 0..100 {
        failed = lookups(&gw, "slow.test", "failed").await;
        if failed == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(failed, Some(1.0));
    assert_eq!(healthy(&gw, "slow.test").await, Some(0.0));
    gw.stop().await;
}

const DBL_POLICY: &str = r#"rules:
  - name: listed-sender-domain
    when: { dbl.mail_from: dbl.test }
    action: reject
    reply: { code: 550, enhanced: "5.7.1", text: "Sender domain listed in dbl.test" }
  - name: listed-signer
    when: { dbl.dkim: dbl.test }
    action: reject
    reply: { code: 550, enhanced: "5.7.1", text: "Signing domain listed in dbl.test" }
  - name: dbl-broken
    when: { dbl.error: dbl.test }
    action: tag
"#;

#[tokio::test]
async fn domain_lists_cover_the_sender_and_the_signing_domains() {
    let dns = DnsFixture::start(vec![
        Zone::new("dbl.test")
            .a("spammer.example.dbl.test", ip("127.0.1.2"))
            .a("bad-signer.example.dbl.test", ip("127.0.1.2"))
            .a("public-resolver.example.dbl.test", ip("127.255.255.254")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, DBL_POLICY).unwrap();
    let ns = dns.addr();
    let gw = Gateway::start(move |c| {
        c.dns.nameservers = vec![ns];
        c.dns.attempts = 1;
        c.dnsbl.zones = vec![DnsblZoneConfig {
            kind: ZoneKind::Domain,
            ..zone("dbl.test", 1, &[], false)
        }];
        c.policy = Some(policy);
    })
    .await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(
        c.cmd("MAIL FROM:<a@Spammer.Example>").await,
        (
            550,
            "550 5.7.1 Sender domain listed in dbl.test".to_string()
        )
    );
    // A clean sender whose message carries a signature of a listed domain.
    assert_eq!(c.cmd("MAIL FROM:<a@clean.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
    let signed = b"DKIM-Signature: v=1; a=rsa-sha256; s=s;\r\n d=bad-signer.example; bh=x; b=y\r\nFrom: a@clean.example\r\nSubject: hi\r\n\r\nhello\r\n";
    assert_eq!(
        c.data(signed).await,
        (
            550,
            "550 5.7.1 Signing domain listed in dbl.test".to_string()
        )
    );
    // An error answer is no listing: the message goes through, tagged by the policy.
    c.envelope("a@public-resolver.example", &["u@example.test"])
        .await;
    assert_eq!(c.data(b"Subject: hi\r\n\r\nhello\r\n").await.0, 250);
    let delivered = gw.delivered("example.test", "u");
    assert_eq!(delivered.len(), 1);
    let text = String::from_utf8_lossy(&delivered[0]).to_string();
    assert!(text.contains("rules=dbl-broken"), "{text}");
    assert_eq!(lookups(&gw, "dbl.test", "listed").await, Some(2.0));
    assert_eq!(lookups(&gw, "dbl.test", "error_answer").await, Some(1.0));
    assert_eq!(healthy(&gw, "dbl.test").await, Some(0.0));
    // Four names were asked: three sender domains and one signing domain.
    assert_eq!(lookups(&gw, "dbl.test", "clean").await, Some(1.0));
    // A domain zone is never asked about the client's address.
    let a = hickory_server::proto::rr::RecordType::A;
    assert_eq!(dns.query_count("1.0.0.127.dbl.test.", a), 0);
}

#[tokio::test]
async fn lookups_are_awaited_where_a_rule_needs_them() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    // No rule acts on a listing at CONNECT: one refuses at MAIL (with the sender's domain),
    // one only scores (which waits for DATA).
    std::fs::write(
        &policy,
        r#"thresholds: { tag: 5 }
rules:
  - name: listed-bulk-sender
    when: { dnsbl.listed: bl.test, mail_from.domain: bulk.example }
    action: reject
  - name: listed-scores
    when: { dnsbl.listed: bl.test }
    score: 5
"#,
    )
    .unwrap();
    let ns = dns.addr();
    let gw = Gateway::start(move |c| {
        c.dns.nameservers = vec![ns];
        c.dns.attempts = 1;
        c.dnsbl.zones = vec![zone("bl.test", 5, &[], false)];
        c.policy = Some(policy);
    })
    .await;
    let (mut c, code, _) = connect(&gw, "127.0.0.2").await;
    assert_eq!(code, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@bulk.example>").await.0, 550);
    assert_eq!(c.cmd("MAIL FROM:<a@other.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.test>").await.0, 250);
    assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
    let m = String::from_utf8_lossy(&gw.delivered("example.test", "u")[0]).to_string();
    assert!(
        m.contains("X-Portcullis-Verdict: tag; score=5; rules=listed-scores,score>=5\r\n"),
        "{m}"
    );
    // One lookup per connection, however many stages used it.
    assert_eq!(lookups(&gw, "bl.test", "listed").await, Some(1.0));
}
