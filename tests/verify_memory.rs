//! The bound on message bytes under verification (`auth.max_verify_memory`) through the
//! running gateway: large messages that spilled to disk and arrive together are verified a
//! few at a time, the bytes under verification never exceed the budget (the peak gauge),
//! and a message that finds no room before its DATA deadline gets `451 4.3.0`: it is
//! deferred, never relayed unverified.
//!
//! Every message carries a DKIM signature of `slow.test`, whose key the DNS fixture never
//! answers: each verification then lasts one resolver timeout while its message holds its
//! room, so messages sent together overlap. DKIM is `temperror`, DMARC of `sender.test`
//! (`p=none`) does not refuse, and a verified message is delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use common::dns::{DnsFixture, Zone};
use common::{Gateway, LineClient};
use mail_auth::crypto::Ed25519Key;
use mail_auth::dkim::DkimSigner;
use mail_auth::headers::HeaderWriter;

const KIB: u64 = 1024;
/// The budget of every gateway here: one message of `BODY` at a time.
const BUDGET: u64 = 1024 * KIB;
/// A message body above `spool.memory_limit` (64 KiB) and below `auth.max_verify_size`.
const BODY: usize = 600 * 1024;

/// An Ed25519 key in PKCS#8, generated once per test process (its public half is never
/// published: the key lookup is never answered anyway).
fn key() -> Ed25519Key {
    static PKCS8: OnceLock<Vec<u8>> = OnceLock::new();
    let pkcs8 = PKCS8.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        doc.as_ref().to_vec()
    });
    Ed25519Key::from_pkcs8_der(pkcs8).unwrap()
}

/// A message of about `BODY` bytes from sender.test, DKIM-signed by slow.test.
fn message(subject: &str) -> String {
    let line = base64::engine::general_purpose::STANDARD.encode([0x5au8; 57]) + "\r\n";
    let body = line.repeat(BODY / line.len());
    let plain = format!(
        "From: <a@sender.test>\r\nTo: <bob@example.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.test>\r\n\r\n{body}"
    );
    let sig = DkimSigner::from_key(key())
        .domain("slow.test")
        .selector("s")
        .headers(["From", "To", "Subject"])
        .sign(plain.as_bytes())
        .unwrap();
    sig.to_header() + &plain
}

/// Authentication on, resolving through `dns` only; each key lookup lasts `dns_timeout`.
async fn gateway(dns: &DnsFixture, dns_timeout: Duration, data: Duration) -> Gateway {
    let ns = dns.addr();
    Gateway::start(move |c| {
        c.auth.enabled = true;
        c.dns.nameservers = vec![ns];
        c.dns.timeout = dns_timeout;
        c.dns.attempts = 1;
        c.spool.memory_limit = 64 * KIB;
        c.auth.max_verify_size = 700 * KIB;
        c.auth.max_verify_memory = BUDGET;
        c.timeouts.data = data;
    })
    .await
}

fn zone() -> Zone {
    Zone::root()
        .txt("_dmarc.sender.test", "v=DMARC1; p=none")
        .silent("s._domainkey.slow.test")
}

/// One transaction to `rcpt`; the reply to the end of DATA.
async fn send(gw: &Gateway, rcpt: &str, msg: &str) -> (u16, String) {
    let mut c = LineClient::connect(gw.addr).await;
    assert_eq!(c.read_reply().await.0, 220);
    c.envelope("a@sender.test", &[rcpt]).await;
    let reply = c.data(msg.as_bytes()).await;
    c.cmd("QUIT").await;
    reply
}

#[tokio::test]
async fn messages_arriving_together_are_verified_within_the_budget() {
    let dns = DnsFixture::start(vec![zone()]).await;
    let gw = gateway(&dns, Duration::from_secs(1), Duration::from_secs(20)).await;
    assert_eq!(
        gw.metric("portcullis_verify_memory_limit_bytes").await,
        Some(BUDGET as f64)
    );
    let gw = std::sync::Arc::new(gw);
    let sending: Vec<_> = (0..4)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(
                async move { send(&gw, "bob@example.test", &message(&format!("m{i}"))).await },
            )
        })
        .collect();
    for s in sending {
        let (code, text) = s.await.unwrap();
        assert_eq!(code, 250, "{text}");
    }
    // Each was verified (not skipped): its Authentication-Results has a DKIM result.
    let delivered = gw.delivered("example.test", "bob");
    assert_eq!(delivered.len(), 4);
    for m in &delivered {
        let text = String::from_utf8_lossy(&m[..m.len().min(4096)]).into_owned();
        assert!(text.contains("dkim=temperror"), "{text}");
    }
    // Never more than the budget under verification, and the bound made some wait.
    let peak = gw
        .metric("portcullis_verify_memory_peak_bytes")
        .await
        .expect("the peak is exposed");
    assert!(peak >= BODY as f64 && peak <= BUDGET as f64, "peak {peak}");
    assert!(
        gw.metric("portcullis_verify_memory_reservations_total{result=\"waited\"}")
            .await
            .is_some_and(|v| v >= 1.0)
    );
    assert_eq!(
        gw.metric("portcullis_verify_memory_reservations_total{result=\"timed_out\"}")
            .await,
        Some(0.0)
    );
    assert_eq!(gw.metric("portcullis_verify_memory_bytes").await, Some(0.0));
}

#[tokio::test]
async fn no_room_before_the_data_deadline_defers_the_message() {
    let dns = DnsFixture::start(vec![zone()]).await;
    // The first message holds the whole budget for 5 s; the second's DATA deadline is 1 s.
    let gw =
        std::sync::Arc::new(gateway(&dns, Duration::from_secs(5), Duration::from_secs(1)).await);
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move { send(&gw, "first@example.test", &message("first")).await })
    };
    let mut holding = false;
    for _ in 0..400 {
        if gw
            .metric("portcullis_verify_memory_bytes")
            .await
            .is_some_and(|v| v > 0.0)
        {
            holding = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(holding, "the first message never got its room");

    let (code, text) = send(&gw, "second@example.test", &message("second")).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.3.0 "), "{text}");
    assert!(gw.delivered("example.test", "second").is_empty());
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"verify_memory\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("portcullis_verify_memory_reservations_total{result=\"timed_out\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"tempfail\"}")
            .await,
        Some(1.0)
    );
    // The first is verified and delivered once its lookup has timed out.
    let (code, text) = first.await.unwrap();
    assert_eq!(code, 250, "{text}");
    assert_eq!(gw.delivered("example.test", "first").len(), 1);
    assert!(
        gw.metric("portcullis_verify_memory_peak_bytes")
            .await
            .is_some_and(|v| v <= BUDGET as f64)
    );
}
