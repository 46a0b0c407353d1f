//! Reverse DNS and HELO facts through the real resolver and the DNS fixture. The clients come
//! through a trusted PROXY header with public documentation addresses (192.0.2.x): the
//! resolver answers loopback PTRs itself (localhost, RFC 6761), and private clients are not
//! looked up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::dns::{DnsFixture, Zone};
use common::{Gateway, LineClient};
use hickory_server::proto::rr::RecordType;

const POLICY: &str = "rules:\n  - name: no-ptr\n    when: { rdns.ptr: false }\n    score: 1\n  - name: forged-us\n    when: { helo.ours: true }\n    action: reject\n    reply: { code: 550, enhanced: \"5.7.1\", text: \"You are not us\" }\n  - name: wrong-literal\n    when: { helo.literal_mismatch: true }\n    action: reject\n  - name: fcrdns\n    when: { rdns.fcrdns: true }\n    action: tag\n  - name: helo-unresolvable\n    when: { helo.resolves: false }\n    action: tag\n";

async fn gateway(dns: &DnsFixture, dir: &std::path::Path) -> Gateway {
    gateway_with(dns, dir, POLICY, |_| {}).await
}

/// A gateway asking `dns`, with both client checks on, trusting PROXY headers from
/// 127.0.0.1, `policy` as its policy file, and `tweak` applied last.
async fn gateway_with(
    dns: &DnsFixture,
    dir: &std::path::Path,
    policy: &str,
    tweak: impl FnOnce(&mut portcullis::config::Config) + Send + 'static,
) -> Gateway {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let ns = dns.addr();
    Gateway::start(move |c| {
        c.dns.nameservers = vec![ns];
        c.dns.timeout = Duration::from_secs(2);
        c.dns.attempts = 1;
        c.client_checks.rdns = true;
        c.client_checks.helo_dns = true;
        c.proxy_protocol.trusted = vec!["127.0.0.1/32".parse().unwrap()];
        c.policy = Some(path);
        tweak(c);
    })
    .await
}

fn zones() -> Vec<Zone> {
    vec![
        Zone::root()
            .ptr("192.0.2.21".parse().unwrap(), "mx.good.test.")
            .a("mx.good.test", "192.0.2.21".parse().unwrap())
            .ptr("192.0.2.22".parse().unwrap(), "liar.bad.test.")
            .a("liar.bad.test", "192.0.2.99".parse().unwrap()),
    ]
}

async fn session(gw: &Gateway, from: &str, helo: &str) -> (LineClient, u16, String) {
    let mut c = LineClient::connect(gw.addr).await;
    c.send(format!("PROXY TCP4 {from} 127.0.0.1 40000 25\r\n").as_bytes())
        .await;
    assert_eq!(c.read_reply().await.0, 220);
    let (code, text) = c.cmd(&format!("EHLO {helo}")).await;
    (c, code, text)
}

/// MAIL and RCPT without a new EHLO (which would replace the HELO facts).
async fn mail(c: &mut LineClient, from: &str, to: &str) {
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).await.0, 250);
}

#[tokio::test]
async fn rdns_and_helo_facts_reach_the_policy() {
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&dns, dir.path()).await;

    // Forward-confirmed, resolvable HELO: tagged by the fcrdns rule only.
    let (mut c, code, _) = session(&gw, "192.0.2.21", "mx.good.test").await;
    assert_eq!(code, 250);
    mail(&mut c, "a@good.test", "u@example.test").await;
    assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
    let m = String::from_utf8_lossy(&gw.delivered("example.test", "u")[0]).to_string();
    assert!(
        m.contains("X-Portcullis-Verdict: tag; score=0; rules=fcrdns\r\n"),
        "{m}"
    );

    // A PTR that does not resolve back, and a HELO that does not resolve: tagged, not fcrdns.
    let (mut c, code, _) = session(&gw, "192.0.2.22", "nowhere.bad.test").await;
    assert_eq!(code, 250);
    mail(&mut c, "a@bad.test", "v@example.test").await;
    assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
    let m = String::from_utf8_lossy(&gw.delivered("example.test", "v")[0]).to_string();
    assert!(m.contains("rules=helo-unresolvable\r\n"), "{m}");

    // No PTR at all scores; claiming to be us or another address is refused at EHLO.
    let (_, code, text) = session(&gw, "192.0.2.23", "gw.example.test").await;
    assert_eq!((code, text.as_str()), (550, "550 5.7.1 You are not us"));
    let (_, code, _) = session(&gw, "192.0.2.23", "[127.0.0.1]").await;
    assert_eq!(code, 550);
    let (_, code, _) = session(&gw, "192.0.2.23", "[192.0.2.23]").await;
    assert_eq!(code, 250, "the client's own literal is fine");

    // Each finding is counted as the checks report it, whatever the policy made of it.
    let finding = |f: &str| format!("portcullis_client_findings_total{{finding=\"{f}\"}}");
    for (label, expected) in [
        ("not_fcrdns", 4.0), // 192.0.2.22 once, 192.0.2.23 (no PTR) three times
        ("no_ptr", 3.0),
        ("helo_unresolvable", 2.0), // nowhere.bad.test, and gw.example.test (not in the zones)
        ("helo_ours", 1.0),
        ("helo_literal_mismatch", 1.0),
        ("helo_invalid", 0.0),
        ("pregreet", 0.0),
    ] {
        assert_eq!(gw.metric(&finding(label)).await, Some(expected), "{label}");
    }
}

/// Every client-side lookup goes through the cache: the PTR, its forward confirmation, the
/// HELO name and the DNSBL zone are asked once, and a client seen again within the TTLs
/// (positive and negative answers alike) costs no query at all.
#[tokio::test]
async fn a_client_seen_again_costs_no_dns_query() {
    use portcullis::config::schema::DnsblZoneConfig;
    let dns = DnsFixture::start(zones()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(&dns, dir.path(), POLICY, |c| {
        c.dnsbl.zones = vec![DnsblZoneConfig {
            zone: "bl.test".into(),
            ..DnsblZoneConfig::default()
        }];
    })
    .await;
    // Forward-confirmed with a resolvable HELO (positive answers), and no PTR with a HELO
    // that does not exist (negative answers, kept for the SOA minimum).
    let round = || async {
        for (from, helo) in [
            ("192.0.2.21", "mx.good.test"),
            ("192.0.2.23", "nowhere.bad.test"),
        ] {
            let (mut c, code, _) = session(&gw, from, helo).await;
            assert_eq!(code, 250);
            mail(&mut c, "a@good.test", "u@example.test").await;
            assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
        }
    };
    round().await;
    let first = dns.queries();
    for (name, rtype) in [
        ("21.2.0.192.in-addr.arpa", RecordType::PTR),
        ("mx.good.test", RecordType::A),
        ("21.2.0.192.bl.test", RecordType::A),
        ("23.2.0.192.in-addr.arpa", RecordType::PTR),
        ("nowhere.bad.test", RecordType::A),
        ("nowhere.bad.test", RecordType::AAAA),
        ("23.2.0.192.bl.test", RecordType::A),
    ] {
        assert_eq!(dns.query_count(name, rtype), 1, "{name} {rtype}: {first:?}");
    }
    // An IPv4 client's PTR name is confirmed by its A records only; a HELO name with an A
    // record is not asked for AAAA.
    assert_eq!(
        dns.query_count("mx.good.test", RecordType::AAAA),
        0,
        "{first:?}"
    );

    round().await;
    let second = dns.queries();
    assert_eq!(
        second.len(),
        first.len(),
        "asked again: {:?}",
        &second[first.len()..]
    );
    let hits = gw
        .metric_labeled(
            "portcullis_dns_cache_lookups_total",
            &[("type", "PTR"), ("result", "hit")],
        )
        .await;
    assert_eq!(hits, Some(2.0));
}

/// A failed lookup is not "no PTR": `rdns.temperror` says the facts are false only for now,
/// for a failed PTR lookup and for a failed forward lookup alike; a clean answer keeps it
/// false, and a name that confirms wins over another name's failure.
#[tokio::test]
async fn failed_lookups_are_temperror_not_missing_ptr() {
    let policy = "rules:\n  - name: dns-trouble\n    when: { rdns.temperror: true }\n    action: tag\n  - name: confirmed\n    when: { rdns.fcrdns: true }\n    action: tag\n";
    let dns = DnsFixture::start(vec![
        Zone::root()
            .ptr("192.0.2.21".parse().unwrap(), "mx.good.test.")
            .a("mx.good.test", "192.0.2.21".parse().unwrap())
            .servfail("24.2.0.192.in-addr.arpa")
            .ptr("192.0.2.25".parse().unwrap(), "broken.bad.test.")
            .servfail("broken.bad.test")
            // Two PTR names: the first one's forward lookup fails, the second confirms.
            .ptr("192.0.2.26".parse().unwrap(), "a-broken.bad.test.")
            .ptr("192.0.2.26".parse().unwrap(), "b-good.good.test.")
            .servfail("a-broken.bad.test")
            .a("b-good.good.test", "192.0.2.26".parse().unwrap()),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(&dns, dir.path(), policy, |_| {}).await;
    for (ip, who, rules) in [
        ("192.0.2.21", "a", "rules=confirmed"),
        ("192.0.2.24", "b", "rules=dns-trouble"),
        ("192.0.2.25", "c", "rules=dns-trouble"),
        ("192.0.2.26", "d", "rules=confirmed"),
    ] {
        let (mut c, code, _) = session(&gw, ip, "client.example").await;
        assert_eq!(code, 250);
        mail(&mut c, "x@good.test", &format!("{who}@example.test")).await;
        assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 250);
        let m = String::from_utf8_lossy(&gw.delivered("example.test", who)[0]).to_string();
        assert!(
            m.contains(&format!("X-Portcullis-Verdict: tag; score=0; {rules}\r\n")),
            "{ip}: {m}"
        );
    }
}
