//! SPF through the running gateway: the real resolver (`dns.nameservers`) pointed at an
//! in-process DNS server (tests/common/dns.rs), clients on distinct loopback addresses.
//!
//! - every SPF result (pass, fail, softfail, neutral, none, temperror, permerror) is produced
//!   through the resolver path and shows in `portcullis_auth_results_total` and in the
//!   delivered message's Authentication-Results header;
//! - a name server that never answers does not hang MAIL beyond the DNS timeouts, gives
//!   temperror, and the message is still accepted;
//! - the DNS cache answers the second message from the same domain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::dns::{DnsFixture, SilentServer, Zone};
use common::{Gateway, LineClient};
use hickory_server::proto::rr::RecordType;
use portcullis::config::schema::DmarcDnsFailure;

/// The SMTP client's source address: the one `pass.sender.test` authorises.
const CLIENT: &str = "127.0.0.5";
/// Our EHLO name; its SPF record authorises CLIENT (spf_helo = pass).
const HELO: &str = "helo.sender.test";

/// Sender domains and the SPF result each gives for a client at CLIENT.
const RESULTS: &[(&str, &str)] = &[
    ("pass.sender.test", "pass"),
    ("fail.sender.test", "fail"),
    ("softfail.sender.test", "softfail"),
    ("neutral.sender.test", "neutral"),
    // The name exists (an A record) but has no TXT record: NODATA.
    ("none.sender.test", "none"),
    // The name does not exist at all: NXDOMAIN.
    ("nx.sender.test", "none"),
    // include: of a domain without an SPF record.
    ("permerror.sender.test", "permerror"),
    // The name server answers SERVFAIL.
    ("servfail.sender.test", "temperror"),
    // A name in no zone the server serves: hickory-server answers REFUSED, an error too.
    ("unserved.example", "temperror"),
];

/// The `test.` zone (not just `sender.test.`): DMARC's tree walk also asks for
/// `_dmarc.test`, which must be NXDOMAIN, not REFUSED (a DNS error: dmarc=temperror).
fn sender_zone() -> Zone {
    Zone::new("test")
        .txt(HELO, "v=spf1 a -all")
        .a(HELO, CLIENT.parse().unwrap())
        .txt("pass.sender.test", "v=spf1 ip4:127.0.0.5 -all")
        .txt("fail.sender.test", "v=spf1 ip4:127.0.0.99 -all")
        .txt("softfail.sender.test", "v=spf1 ip4:127.0.0.99 ~all")
        .txt("neutral.sender.test", "v=spf1 ?all")
        .a("none.sender.test", "127.0.0.99".parse().unwrap())
        .txt(
            "permerror.sender.test",
            "v=spf1 include:none.sender.test -all",
        )
        .servfail("servfail.sender.test")
}

/// A gateway resolving through `dns`. DMARC lookups that fail (the temperror sender, the
/// silent server) accept the message here (`auth.dmarc_dns_failure: accept`), so that these
/// tests see SPF's own effect; the default, defer, is tested in tests/auth.rs (11j) and in
/// `a_dead_resolver_defers_at_data_in_bounded_time` below.
async fn gateway(dns: std::net::SocketAddr, timeout: Duration, attempts: usize) -> Gateway {
    gateway_with(dns, timeout, attempts, DmarcDnsFailure::Accept).await
}

async fn gateway_with(
    dns: std::net::SocketAddr,
    timeout: Duration,
    attempts: usize,
    dmarc_dns_failure: DmarcDnsFailure,
) -> Gateway {
    Gateway::start(move |c| {
        c.auth.enabled = true;
        c.auth.dmarc_dns_failure = dmarc_dns_failure;
        c.dns.nameservers = vec![dns];
        c.dns.timeout = timeout;
        c.dns.attempts = attempts;
    })
    .await
}

/// A line client from `source`, banner read.
async fn client(gw: &Gateway, source: &str) -> LineClient {
    let source: IpAddr = source.parse().unwrap();
    let mut c = LineClient::connect_from(gw.addr, source).await;
    assert_eq!(c.read_reply().await.0, 220);
    c
}

fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\n\
         Message-ID: <{subject}@sender.test>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// One whole transaction from CLIENT; returns the MAIL and DATA reply codes.
async fn send(gw: &Gateway, from: &str, user: &str) -> (u16, u16) {
    let mut c = client(gw, CLIENT).await;
    assert_eq!(c.cmd(&format!("EHLO {HELO}")).await.0, 250);
    let mail = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    if mail.0 != 250 {
        return (mail.0, 0);
    }
    let to = format!("{user}@example.test");
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>")).await;
    assert_eq!(rcpt.0, 250, "{rcpt:?}");
    let data = c.data(&message(from, &to, user)).await;
    c.cmd("QUIT").await;
    (mail.0, data.0)
}

/// The header block of a message, unfolded: one string per field.
fn header_fields(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
}

/// Our Authentication-Results field(s) in a delivered message.
fn our_auth_results(message: &[u8]) -> Vec<String> {
    header_fields(message)
        .into_iter()
        .filter(|f| {
            f.to_ascii_lowercase()
                .strip_prefix("authentication-results:")
                .is_some_and(|v| v.trim_start().starts_with("gw.example.test"))
        })
        .collect()
}

fn series(method: &str, result: &str) -> String {
    format!("portcullis_auth_results_total{{method=\"{method}\",result=\"{result}\"}}")
}

#[tokio::test]
async fn every_spf_result_is_counted_and_reported() {
    let dns = DnsFixture::start(vec![sender_zone()]).await;
    let mut gw = gateway(dns.addr(), Duration::from_secs(2), 1).await;

    for (i, (domain, expected)) in RESULTS.iter().enumerate() {
        let user = format!("u{i}");
        let from = format!("alice@{domain}");
        let started = Instant::now();
        let (mail, data) = send(&gw, &from, &user).await;
        // No SPF result rejects by itself (only DMARC policies do): all are accepted.
        assert_eq!((mail, data), (250, 250), "{domain} ({expected})");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{domain}: {:?}",
            started.elapsed()
        );
    }

    // Metrics: one SPF result per transaction, by result.
    let mut expected_counts = std::collections::BTreeMap::new();
    for (_, result) in RESULTS {
        *expected_counts.entry(*result).or_insert(0.0) += 1.0;
    }
    for result in [
        "pass",
        "fail",
        "softfail",
        "neutral",
        "none",
        "temperror",
        "permerror",
    ] {
        let want = expected_counts.get(result).copied();
        assert!(want >= Some(1.0), "the table produces {result}");
        let got = gw.metric(&series("spf", result)).await;
        assert_eq!(got, want, "{}", series("spf", result));
    }
    // The HELO identity (helo.sender.test authorises the client) passed every time.
    let helo_pass = gw.metric(&series("spf_helo", "pass")).await;
    assert_eq!(helo_pass, Some(RESULTS.len() as f64));

    // The delivered message says what SPF found, in our Authentication-Results.
    for (i, (domain, expected)) in RESULTS.iter().enumerate() {
        let user = format!("u{i}");
        let delivered = gw.delivered("example.test", &user);
        assert_eq!(delivered.len(), 1, "{domain}: one message for {user}");
        let ours = our_auth_results(&delivered[0]);
        assert_eq!(
            ours.len(),
            1,
            "{domain}: one Authentication-Results of ours in\n{}",
            String::from_utf8_lossy(&delivered[0])
        );
        println!("{domain}: {}", ours[0]);
        let field = ours[0].to_ascii_lowercase();
        assert!(
            field.contains(&format!("spf={expected} "))
                || field.ends_with(&format!("spf={expected}")),
            "{domain}: expected spf={expected} in {}",
            ours[0]
        );
        assert!(
            field.contains(&format!("smtp.mailfrom=alice@{domain}")),
            "{domain}: smtp.mailfrom in {}",
            ours[0]
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn dns_that_never_answers_does_not_hang_mail() {
    let silent = SilentServer::start().await;
    let timeout = Duration::from_secs(1);
    let attempts = 2;
    let mut gw = gateway(silent.addr(), timeout, attempts).await;

    let mut c = client(&gw, CLIENT).await;
    assert_eq!(c.cmd(&format!("EHLO {HELO}")).await.0, 250);
    let started = Instant::now();
    let mail = c.cmd("MAIL FROM:<alice@pass.sender.test>").await;
    let took = started.elapsed();
    println!("MAIL answered in {took:?} (timeout {timeout:?} x {attempts} attempts)");
    assert_eq!(mail.0, 250, "{mail:?}");
    // Two identities (HELO and MAIL FROM), evaluated at the same time, each one TXT lookup
    // that times out; the bound allows them one after the other too. hickory's `attempts`
    // (which `dns.attempts` is passed to) counts retries: a lookup is tried attempts + 1
    // times, each try bounded by `timeout`.
    let per_lookup = timeout * (attempts as u32 + 1);
    let bound = per_lookup * 2 + Duration::from_secs(2);
    assert!(took < bound, "MAIL took {took:?}, bound {bound:?}");
    // ...and it did wait for the DNS: this was not answered from nowhere.
    assert!(
        took >= timeout,
        "MAIL took {took:?}: no DNS timeout happened?"
    );
    assert_eq!(gw.metric(&series("spf", "temperror")).await, Some(1.0));
    assert_eq!(gw.metric(&series("spf_helo", "temperror")).await, Some(1.0));

    // temperror alone does not reject: the message is accepted.
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>").await.0, 250);
    let started = Instant::now();
    let data = c
        .data(&message(
            "alice@pass.sender.test",
            "bob@example.test",
            "silent",
        ))
        .await;
    println!("DATA answered in {:?}", started.elapsed());
    assert_eq!(data.0, 250, "{data:?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "DATA took {:?}",
        started.elapsed()
    );
    c.cmd("QUIT").await;
    let delivered = gw.delivered("example.test", "bob");
    assert_eq!(delivered.len(), 1);
    let ours = our_auth_results(&delivered[0]);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(
        ours[0].to_ascii_lowercase().contains("spf=temperror"),
        "{}",
        ours[0]
    );
    gw.stop().await;
}

/// With the default `auth.dmarc_dns_failure: defer`, a resolver that never answers defers
/// the message at the end of DATA (no SPF, DKIM or DMARC result can be had: 451 4.7.26),
/// within the DNS timeouts, and delivers nothing.
#[tokio::test]
async fn a_dead_resolver_defers_at_data_in_bounded_time() {
    let silent = SilentServer::start().await;
    let mut gw = gateway_with(
        silent.addr(),
        Duration::from_secs(1),
        1,
        DmarcDnsFailure::Defer,
    )
    .await;
    let mut c = client(&gw, CLIENT).await;
    assert_eq!(c.cmd(&format!("EHLO {HELO}")).await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<alice@pass.sender.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>").await.0, 250);
    let started = Instant::now();
    let data = c
        .data(&message(
            "alice@pass.sender.test",
            "bob@example.test",
            "dead",
        ))
        .await;
    assert_eq!(data.0, 451, "{data:?}");
    assert!(data.1.starts_with("451 4.7.26 "), "{data:?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "DATA took {:?}",
        started.elapsed()
    );
    c.cmd("QUIT").await;
    assert!(gw.delivered("example.test", "bob").is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn dns_cache_answers_the_second_message() {
    let dns = DnsFixture::start(vec![sender_zone()]).await;
    let mut gw = gateway(dns.addr(), Duration::from_secs(2), 1).await;
    let hits = "portcullis_dns_cache_lookups_total{type=\"TXT\",result=\"hit\"}";
    let misses = "portcullis_dns_cache_lookups_total{type=\"TXT\",result=\"miss\"}";

    assert_eq!(
        send(&gw, "alice@pass.sender.test", "first").await,
        (250, 250)
    );
    let hits_after_first = gw.metric(hits).await.expect(hits);
    let misses_after_first = gw.metric(misses).await.expect(misses);
    assert!(misses_after_first > 0.0, "the first message queried TXT");
    assert_eq!(dns.query_count("pass.sender.test", RecordType::TXT), 1);

    assert_eq!(
        send(&gw, "bob@pass.sender.test", "second").await,
        (250, 250)
    );
    let hits_after_second = gw.metric(hits).await.expect(hits);
    assert!(
        hits_after_second > hits_after_first,
        "TXT cache hits: {hits_after_first} then {hits_after_second}"
    );
    // The second message's SPF record came from the cache, not from the wire.
    assert_eq!(dns.query_count("pass.sender.test", RecordType::TXT), 1);
    assert_eq!(dns.query_count(HELO, RecordType::TXT), 1);
    assert_eq!(gw.metric(&series("spf", "pass")).await, Some(2.0));
    gw.stop().await;
}

#[tokio::test]
async fn long_spf_record_comes_over_tcp() {
    // An answer larger than the resolver's EDNS payload size (1232): the UDP answer is
    // truncated and the resolver asks again over TCP (same port). The TXT record is split
    // into 255-byte character-strings.
    let mut record = String::from("v=spf1");
    for i in 10..140 {
        record.push_str(&format!(" ip4:127.0.1.{i}"));
    }
    record.push_str(" ip4:127.0.0.5 -all");
    assert!(record.len() > 2000, "{}", record.len());
    let zone = sender_zone().txt("long.sender.test", &record);
    let dns = DnsFixture::start(vec![zone]).await;
    let mut gw = gateway(dns.addr(), Duration::from_secs(2), 1).await;

    assert_eq!(
        send(&gw, "alice@long.sender.test", "long").await,
        (250, 250)
    );
    assert_eq!(gw.metric(&series("spf", "pass")).await, Some(1.0));
    assert!(
        dns.tcp_query_count("long.sender.test", RecordType::TXT) >= 1,
        "{:?}",
        dns.queries()
    );
    let delivered = gw.delivered("example.test", "long");
    let ours = our_auth_results(&delivered[0]);
    assert!(ours[0].contains("spf=pass"), "{}", ours[0]);
    gw.stop().await;
}
