//! STARTTLS (RFC 3207) with a certificate generated at test time: the upgrade, the reset of
//! state after it, and the dropping of commands injected before the handshake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Gateway;
use portcullis::config::schema::TlsConfig;

fn cert(dir: &std::path::Path) -> TlsConfig {
    let key = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let (cert, keyfile) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&keyfile, key.signing_key.serialize_pem()).unwrap();
    TlsConfig { cert, key: keyfile }
}

#[tokio::test]
async fn starttls_upgrade_resets_state_and_drops_injected_commands() {
    let dir = tempfile::tempdir().unwrap();
    let tls = cert(dir.path());
    let gw = Gateway::start(|c| c.tls = Some(tls)).await;
    let mut c = gw.client().await;
    let (code, text) = c.cmd("EHLO tls.example").await;
    assert!(code == 250 && text.contains("STARTTLS"), "{text}");
    // "NOOP" pipelined after STARTTLS in clear text must never be answered.
    c.send(b"STARTTLS\r\nNOOP\r\n").await;
    assert_eq!(c.read_reply().await.0, 220);
    let mut c = c.starttls("gw.example.test").await;
    // After the handshake the state is reset: MAIL before EHLO is a sequence error.
    let (code, _) = c.cmd("MAIL FROM:<a@sender.example>").await;
    assert_eq!(code, 503, "the injected NOOP or old state leaked into TLS");
    let (code, text) = c.cmd("EHLO tls.example").await;
    assert!(code == 250 && !text.contains("STARTTLS"), "{text}");
    for line in [
        "MAIL FROM:<a@sender.example>",
        "RCPT TO:<secure@example.test>",
        "DATA",
    ] {
        assert!(c.cmd(line).await.0 < 400, "{line}");
    }
    c.send(b"Subject: tls\r\n\r\nsecret\r\n.\r\n").await;
    assert_eq!(c.read_reply().await.0, 250);
    let m = gw.delivered("example.test", "secure");
    assert!(
        String::from_utf8_lossy(&m[0]).contains("with ESMTPS id"),
        "{}",
        String::from_utf8_lossy(&m[0])
    );
    assert_eq!(
        gw.metric("portcullis_tls_handshakes_total{result=\"ok\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn failed_handshake_closes_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tls = cert(dir.path());
    let gw = Gateway::start(|c| c.tls = Some(tls)).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO tls.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    c.send(b"this is not a TLS ClientHello\r\n").await;
    assert_eq!(c.read_reply().await.0, 0, "connection must close");
    let mut counted = 0.0;
    for _ in 0..100 {
        counted = gw
            .metric("portcullis_tls_handshakes_total{result=\"error\"}")
            .await;
        if counted > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 1.0);
}

#[tokio::test]
async fn help_names_starttls_only_while_ehlo_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    let tls = cert(dir.path());
    let gw = Gateway::start(|c| c.tls = Some(tls)).await;
    let mut c = gw.client().await;
    let (code, text) = c.cmd("HELP").await;
    assert!(code == 214 && text.contains("STARTTLS"), "{text}");
    assert_eq!(c.cmd("EHLO tls.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = c.starttls("gw.example.test").await;
    let (code, text) = c.cmd("EHLO tls.example").await;
    assert!(code == 250 && !text.contains("STARTTLS"), "{text}");
    let (code, text) = c.cmd("HELP").await;
    assert!(code == 214 && !text.contains("STARTTLS"), "{text}");
}
