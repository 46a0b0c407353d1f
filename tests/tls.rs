//! STARTTLS (RFC 3207) with certificates generated at test time: the upgrade, the reset of
//! state after it, the dropping of commands injected before the handshake, the certificate
//! reloaded without a restart (SIGHUP's path, the poll, the real binary's SIGHUP) or refused,
//! and `tls.require`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, LineClient};
use portcullis::config::schema::TlsConfig;

fn cert(dir: &std::path::Path) -> TlsConfig {
    let key = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let (cert, keyfile) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&keyfile, key.signing_key.serialize_pem()).unwrap();
    TlsConfig {
        cert,
        key: keyfile,
        require: Default::default(),
    }
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
        Some(1.0)
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
    // A TLS alert record (content type 21), then the close; never an SMTP reply.
    let rest = c.read_until_closed().await;
    assert_eq!(
        rest.first(),
        Some(&21),
        "connection must close after an alert: {rest:?}"
    );
    let mut counted = None;
    for _ in 0..100 {
        counted = gw
            .metric("portcullis_tls_handshakes_total{result=\"error\"}")
            .await;
        if counted.is_some_and(|v| v > 0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(counted, Some(1.0));
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

const EXPIRY: &str = "portcullis_tls_certificate_expiry_seconds";
const RELOADS_OK: &str = "portcullis_tls_reloads_total{result=\"ok\"}";
const RELOADS_ERROR: &str = "portcullis_tls_reloads_total{result=\"error\"}";
/// 2039-01-01 and 2040-06-01, 00:00 UTC, as Unix time.
const OLD_UNTIL: (i32, u8, u8, f64) = (2039, 1, 1, 2_177_452_800.0);
const NEW_UNTIL: (i32, u8, u8, f64) = (2040, 6, 1, 2_222_121_600.0);

/// A self-signed certificate for gw.example.test and its key, as PEM, and the certificate's
/// DER (what a client is shown).
struct Pair {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn pair(until: (i32, u8, u8, f64)) -> Pair {
    let mut params = rcgen::CertificateParams::new(vec!["gw.example.test".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn install(tls: &TlsConfig, cert: &str, key: &str) {
    std::fs::write(&tls.cert, cert).unwrap();
    std::fs::write(&tls.key, key).unwrap();
}

fn files_in(dir: &std::path::Path, p: &Pair) -> TlsConfig {
    let tls = TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        require: Default::default(),
    };
    install(&tls, &p.cert, &p.key);
    tls
}

/// The leaf certificate a new STARTTLS handshake is shown.
async fn presented(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut c = LineClient::connect(addr).await;
    assert_eq!(c.read_reply().await.0, 220);
    assert_eq!(c.cmd("EHLO tls.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    c.starttls_certificate("gw.example.test").await.1
}

#[tokio::test]
async fn a_reloaded_pair_serves_new_handshakes_and_sessions_in_tls_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (pair(OLD_UNTIL), pair(NEW_UNTIL));
    let tls = files_in(dir.path(), &old);
    let t = tls.clone();
    let gw = Gateway::start(|c| c.tls = Some(t)).await;
    assert_eq!(gw.metric(EXPIRY).await, Some(OLD_UNTIL.3));
    assert_eq!(presented(gw.addr).await, old.der);
    // One session is inside TLS before the reload, another still in plain text.
    let mut inside = gw.client().await;
    assert_eq!(inside.cmd("EHLO tls.example").await.0, 250);
    assert_eq!(inside.cmd("STARTTLS").await.0, 220);
    let (mut inside, shown) = inside.starttls_certificate("gw.example.test").await;
    assert_eq!(shown, old.der);
    let mut plain = gw.client().await;
    assert_eq!(plain.cmd("EHLO tls.example").await.0, 250);

    install(&tls, &new.cert, &new.key);
    gw.running
        .as_ref()
        .unwrap()
        .reload_tls()
        .expect("a good pair reloads");
    assert_eq!(presented(gw.addr).await, new.der);
    // The plain session's handshake comes after the reload: it gets the new pair.
    assert_eq!(plain.cmd("STARTTLS").await.0, 220);
    assert_eq!(
        plain.starttls_certificate("gw.example.test").await.1,
        new.der
    );
    // The session that was already in TLS is untouched and delivers.
    assert_eq!(inside.cmd("EHLO tls.example").await.0, 250);
    inside
        .envelope("a@sender.example", &["kept@example.test"])
        .await;
    assert_eq!(
        inside.data(b"Subject: kept\r\n\r\nstill TLS\r\n").await.0,
        250
    );
    assert_eq!(gw.delivered("example.test", "kept").len(), 1);
    assert_eq!(gw.metric(RELOADS_OK).await, Some(1.0));
    assert_eq!(gw.metric(RELOADS_ERROR).await, Some(0.0));
    assert_eq!(gw.metric(EXPIRY).await, Some(NEW_UNTIL.3));
}

#[tokio::test]
async fn a_bad_pair_is_refused_counted_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (old, other) = (pair(OLD_UNTIL), pair(NEW_UNTIL));
    let expired = pair((2021, 1, 1, 1_609_459_200.0));
    let tls = files_in(dir.path(), &old);
    let t = tls.clone();
    let gw = Gateway::start(|c| c.tls = Some(t)).await;
    let running = gw.running.as_ref().unwrap();
    let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let cases = [
        (
            other.cert.as_str(),
            old.key.as_str(),
            "does not match the certificate",
        ),
        (
            "not a certificate\n",
            old.key.as_str(),
            "no PEM CERTIFICATE block",
        ),
        (old.cert.as_str(), not_a_key, "key.pem"),
        (
            expired.cert.as_str(),
            expired.key.as_str(),
            "the certificate expired",
        ),
    ];
    for (i, (cert, key, why)) in cases.into_iter().enumerate() {
        install(&tls, cert, key);
        let err = running.reload_tls().expect_err(why).to_string();
        assert!(err.contains(why), "{err} should say {why}");
        assert_eq!(presented(gw.addr).await, old.der, "after {why}");
        assert_eq!(
            gw.metric(RELOADS_ERROR).await,
            Some((i + 1) as f64),
            "{why}"
        );
    }
    std::fs::remove_file(&tls.key).unwrap();
    let err = running.reload_tls().expect_err("no key file").to_string();
    assert!(err.contains("key.pem"), "{err}");
    assert_eq!(presented(gw.addr).await, old.der);
    assert_eq!(gw.metric(RELOADS_ERROR).await, Some(5.0));
    assert_eq!(gw.metric(RELOADS_OK).await, Some(0.0));
    assert_eq!(
        gw.metric(EXPIRY).await,
        Some(OLD_UNTIL.3),
        "the gauge follows the pair in force"
    );
    // Once the files are right, the next reload takes.
    install(&tls, &other.cert, &other.key);
    running.reload_tls().expect("a good pair reloads");
    assert_eq!(presented(gw.addr).await, other.der);
    assert_eq!(gw.metric(EXPIRY).await, Some(NEW_UNTIL.3));
}

#[tokio::test]
async fn a_pair_changed_on_disk_is_picked_up_by_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (pair(OLD_UNTIL), pair(NEW_UNTIL));
    let tls = files_in(dir.path(), &old);
    let t = tls.clone();
    let gw = Gateway::start(|c| c.tls = Some(t)).await;
    assert_eq!(presented(gw.addr).await, old.der);
    install(&tls, &new.cert, &new.key);
    let mut seen = false;
    for _ in 0..100 {
        if presented(gw.addr).await == new.der {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen, "the watcher never loaded the new pair");
    // One reload: the pair is read once it has settled, and not again while it stays.
    assert_eq!(gw.metric(RELOADS_OK).await, Some(1.0));
    assert_eq!(gw.metric(RELOADS_ERROR).await, Some(0.0));
}

#[test]
fn sighup_reloads_the_pair_of_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let old = pair(OLD_UNTIL);
    // A new pair of the same sizes, written with the old modification times: the poll
    // cannot see the change, so only SIGHUP can load it.
    let new = (0..200)
        .map(|_| pair(NEW_UNTIL))
        .find(|p| p.cert.len() == old.cert.len() && p.key.len() == old.key.len())
        .expect("a pair of the same sizes");
    let tls = files_in(dir.path(), &old);
    let (smtp, metrics) = (common::free_port(), common::free_port());
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: gw.example.test\naccepted_domains: [example.test]\nlisten: [\"127.0.0.1:{smtp}\"]\nmetrics: {{ listen: \"127.0.0.1:{metrics}\" }}\nauth: {{ enabled: false }}\nbackend: {{ url: \"maildir:{}\" }}\ntls: {{ cert: {}, key: {} }}\n",
            dir.path().join("mail").display(),
            tls.cert.display(),
            tls.key.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let smtp_addr: std::net::SocketAddr = format!("127.0.0.1:{smtp}").parse().unwrap();
    let value = |series: &str| {
        rt.block_on(async {
            match tokio::net::TcpStream::connect(metrics_addr).await {
                Ok(_) => common::metric_value(
                    &common::http_get(metrics_addr, "/metrics").await.1,
                    series,
                ),
                // Not listening yet.
                Err(_) => None,
            }
        })
    };
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        value(RELOADS_OK) == Some(0.0)
    });
    assert!(
        up,
        "gateway did not start, or did not expose {RELOADS_OK} 0"
    );
    assert_eq!(rt.block_on(presented(smtp_addr)), old.der);

    for (path, text) in [(&tls.cert, &new.cert), (&tls.key, &new.key)] {
        let modified = std::fs::metadata(path).unwrap().modified().unwrap();
        std::fs::write(path, text).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(modified).unwrap();
    }
    std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    let reloaded = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        value(RELOADS_OK) == Some(1.0)
    });
    assert!(reloaded, "SIGHUP did not reload the pair");
    assert_eq!(rt.block_on(presented(smtp_addr)), new.der);
    assert_eq!(value(EXPIRY), Some(NEW_UNTIL.3));
}

/// Stops the binary by its PID when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway with `tls.require` as given, the client 127.0.0.9 and the domain
/// secure.corp.example among the candidates.
async fn requiring(networks: &[&str], domains: &[&str], dir: &std::path::Path) -> Gateway {
    let mut tls = cert(dir);
    tls.require.client_networks = networks.iter().map(|n| n.parse().unwrap()).collect();
    tls.require.recipient_domains =
        portcullis::config::domains::AcceptedDomains::parse(domains).unwrap();
    Gateway::start(|c| {
        c.tls = Some(tls);
        // 530s are not protocol errors: three of them must not end the session.
        c.limits.max_errors = 2;
    })
    .await
}

async fn greeted_from(gw: &Gateway, source: &str) -> LineClient {
    let mut c = LineClient::connect_from(gw.addr, source.parse().unwrap()).await;
    assert_eq!(c.read_reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    c
}

#[tokio::test]
async fn a_required_client_network_must_starttls_before_mail() {
    let dir = tempfile::tempdir().unwrap();
    let gw = requiring(&["127.0.0.9/32"], &[], dir.path()).await;
    let mut c = greeted_from(&gw, "127.0.0.9").await;
    for _ in 0..3 {
        let r = c.cmd("MAIL FROM:<a@sender.example>").await;
        assert_eq!(
            r,
            (530, "530 5.7.0 Must issue a STARTTLS command first".into())
        );
    }
    // Nothing was opened: a RCPT still lacks its MAIL.
    assert_eq!(c.cmd("RCPT TO:<x@example.test>").await.0, 503);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = c.starttls("gw.example.test").await;
    c.envelope("a@sender.example", &["tls@example.test"]).await;
    assert_eq!(c.data(b"Subject: t\r\n\r\nbody\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "tls").len(), 1);
    assert_eq!(
        gw.metric("portcullis_tls_required_refusals_total{stage=\"mail\"}")
            .await,
        Some(3.0)
    );

    // A client outside the listed network needs no TLS on the same gateway.
    let mut other = greeted_from(&gw, "127.0.0.1").await;
    let r = other.cmd("MAIL FROM:<a@sender.example>").await;
    assert_eq!(r.0, 250, "{r:?}");
    assert_eq!(other.cmd("RCPT TO:<plain@example.test>").await.0, 250);
    assert_eq!(other.data(b"Subject: p\r\n\r\nbody\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "plain").len(), 1);
}

#[tokio::test]
async fn a_required_recipient_domain_must_be_named_inside_tls() {
    let dir = tempfile::tempdir().unwrap();
    let gw = requiring(&[], &["secure.corp.example"], dir.path()).await;
    let mut c = greeted_from(&gw, "127.0.0.1").await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await.0, 250);
    for _ in 0..3 {
        let r = c.cmd("RCPT TO:<vault@secure.corp.example>").await;
        assert_eq!(
            r,
            (530, "530 5.7.0 Must issue a STARTTLS command first".into())
        );
    }
    // Other recipients, a sibling domain included, go on in plain text in the same
    // transaction, and the message reaches only them.
    assert_eq!(c.cmd("RCPT TO:<open@example.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@other.corp.example>").await.0, 250);
    assert_eq!(c.data(b"Subject: p\r\n\r\nbody\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "open").len(), 1);
    assert!(gw.delivered("secure.corp.example", "vault").is_empty());
    assert_eq!(
        gw.metric("portcullis_tls_required_refusals_total{stage=\"rcpt\"}")
            .await,
        Some(3.0)
    );

    // Inside TLS the same recipient is accepted.
    let mut c = greeted_from(&gw, "127.0.0.1").await;
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = c.starttls("gw.example.test").await;
    c.envelope("a@sender.example", &["vault@secure.corp.example"])
        .await;
    assert_eq!(c.data(b"Subject: s\r\n\r\nbody\r\n").await.0, 250);
    assert_eq!(gw.delivered("secure.corp.example", "vault").len(), 1);
}
