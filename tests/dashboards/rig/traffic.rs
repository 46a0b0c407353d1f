//! The traffic that should light every panel: each SMTP and milter dialogue of a round,
//! with its replies asserted.
//!
//! Owns: what a round sends through each gateway of the rig. Must not: start gateways
//! (`rig.rs`) or talk to Prometheus.

use super::*;

impl Rig {
    /// One round of traffic through every gateway. `round` is 1 or 2: the second repeats
    /// the first, so that series created by the first (a rule's first rate-limit count)
    /// have grown between two scrapes, and greylisted triplets are retried.
    pub async fn round(&mut self, round: u32) {
        self.messages(round).await;
        self.refusals().await;
        self.tls_handshakes().await;
        self.client_findings().await;
        self.rate_limit(round).await;
        self.greylisting(round).await;
        self.backend_down().await;
        self.milter_traffic().await;
    }

    /// What happens once: a refused policy reload, a refused certificate reload, Redis
    /// killed (and mail through the shared gateway without it), the held sessions closed.
    pub async fn once(&mut self) {
        let running = self.main.running.as_ref().unwrap();
        let good = std::fs::read_to_string(&self.policy).unwrap();
        std::fs::write(&self.policy, "rules: [ broken\n").unwrap();
        running.reload().expect_err("a broken policy is refused");
        std::fs::write(&self.policy, good).unwrap();
        running.reload().expect("the good policy reloads");

        let (cert, key) = (
            std::fs::read(&self.tls.cert).unwrap(),
            std::fs::read(&self.tls.key).unwrap(),
        );
        std::fs::write(&self.tls.cert, "not a certificate\n").unwrap();
        running
            .reload_tls()
            .expect_err("a broken certificate is refused");
        std::fs::write(&self.tls.cert, cert).unwrap();
        std::fs::write(&self.tls.key, key).unwrap();

        self.redis.stop();
        let up = "portcullis_state_backend_up";
        wait_metric(&self.shared, up, &[("backend", "redis")], 0.0).await;
        // Fail open: let through ungreylisted, and counted as a fallback.
        let code = send(&self.shared, "a@outage.example", "x@example.test").await;
        assert_eq!(code, 250, "with Redis down, greylisting lets mail through");

        let mut held = self.held.take().unwrap();
        assert_eq!(held.cmd("QUIT").await.0, 221);
        drop(self.held_milter.take());
    }

    /// Each verdict once through `main`, with SPF pass and fail and a DMARC temperror.
    async fn messages(&self, round: u32) {
        let pass = "a@pass.example";
        // (what, MAIL FROM, From: domain, extra header field, a big body, final reply).
        let cases: [(&str, &str, &str, &str, bool, u16); 8] = [
            // Above spool.memory_limit: spilled, then read back for DKIM and DMARC.
            ("accept", pass, "pass.example", "", true, 250),
            (
                "dmarc fail",
                "a@fail.example",
                "fail.example",
                "",
                false,
                250,
            ),
            (
                "tag",
                pass,
                "pass.example",
                "X-Verdict: tag\r\n",
                false,
                250,
            ),
            (
                "quarantine",
                pass,
                "pass.example",
                "X-Verdict: quarantine\r\n",
                false,
                250,
            ),
            (
                "tempfail",
                pass,
                "pass.example",
                "X-Verdict: tempfail\r\n",
                false,
                451,
            ),
            (
                "reject",
                pass,
                "pass.example",
                "X-Verdict: reject\r\n",
                false,
                550,
            ),
            // Deferred or let through, as auth.dmarc_dns_failure says: 0 takes either.
            ("dmarc temperror", pass, "broken.example", "", false, 0),
            (
                "dmarc temperror again",
                pass,
                "broken.example",
                "",
                false,
                0,
            ),
        ];
        for (what, from, domain, header, big, want) in cases {
            let body = if big {
                "0123456789abcdef\r\n".repeat(6000)
            } else {
                "hi\r\n".to_string()
            };
            let msg = format!(
                "From: <a@{domain}>\r\nTo: <u@example.test>\r\nSubject: {what} {round}\r\n\
                 Message-ID: <{round}.{}@{domain}>\r\n{header}\r\n{body}",
                what.replace(' ', "-")
            );
            let mut c = self.main.client().await;
            c.envelope(from, &["u@example.test"]).await;
            let (code, text) = c.data(msg.as_bytes()).await;
            match want {
                0 => assert!(code == 250 || code == 451, "{what}: {code} {text}"),
                _ => assert_eq!(code, want, "{what}: {text}"),
            }
            assert_eq!(c.cmd("QUIT").await.0, 221);
        }
    }

    /// Refusals counted as limit hits: a declared size over the limit, the deny list, the
    /// DNSBL listing (at connect, by the policy rule).
    async fn refusals(&self) {
        let gw = &self.main;
        let mut c = gw.client().await;
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        let r = c.cmd("MAIL FROM:<a@pass.example> SIZE=999999999999").await;
        assert_eq!(r.0, 552, "{r:?}");
        assert_eq!(c.cmd("QUIT").await.0, 221);
        for (from, what) in [(DENIED, "deny list"), (LISTED, "DNSBL listing")] {
            let mut c = LineClient::connect_from(gw.addr, IpAddr::from(from)).await;
            let (code, text) = c.read_reply().await;
            assert_eq!(code / 100, 5, "{what}: {code} {text}");
        }
    }

    /// One STARTTLS that completes and one that a client breaks with clear text.
    async fn tls_handshakes(&self) {
        let mut c = self.main.client().await;
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        assert_eq!(c.cmd("STARTTLS").await.0, 220);
        let mut c = c.starttls("gw.example.test").await;
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        assert_eq!(c.cmd("QUIT").await.0, 221);

        let mut c = self.main.client().await;
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        assert_eq!(c.cmd("STARTTLS").await.0, 220);
        c.send(b"this is not a TLS ClientHello\r\n").await;
        // A TLS alert record (content type 21), then the close.
        let rest = c.read_until_closed().await;
        assert_eq!(
            rest.first(),
            Some(&21),
            "the gateway closes a failed handshake: {rest:?}"
        );
    }

    /// HELO names that give client findings: no dot (invalid), and our own name.
    async fn client_findings(&self) {
        for helo in ["nodots", "gw.example.test"] {
            let mut c = self.main.client().await;
            assert_eq!(c.cmd(&format!("EHLO {helo}")).await.0, 250);
            // The HELO facts are counted when a stage judges them: at MAIL.
            assert_eq!(c.cmd("MAIL FROM:<a@pass.example>").await.0, 250);
            assert_eq!(c.cmd("QUIT").await.0, 221);
        }
    }

    /// The sender domain allowed once an hour: the second MAIL (and every one in round 2)
    /// is over the rate.
    async fn rate_limit(&self, round: u32) {
        let mut c = self.main.client().await;
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        let first = c.cmd("MAIL FROM:<a@limited.example>").await.0;
        assert_eq!(first, if round == 1 { 250 } else { 451 });
        assert_eq!(c.cmd("RSET").await.0, 250);
        let second = c.cmd("MAIL FROM:<a@limited.example>").await;
        assert!(
            second.0 == 451 && second.1.contains("Rate limit"),
            "{second:?}"
        );
        assert_eq!(c.cmd("QUIT").await.0, 221);
    }

    /// Round 1: a new triplet is greylisted. Round 2: its retry (after the 1 s delay)
    /// passes.
    async fn greylisting(&self, round: u32) {
        let code = send(&self.shared, "a@grey.example", "u@example.test").await;
        assert_eq!(
            code,
            if round == 1 { 451 } else { 250 },
            "greylisting round {round}"
        );
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }

    /// Three sessions fill `broken`, a fourth is refused at capacity, and each of the
    /// three asks for recipients the dead backend cannot take (451 4.4.1 each).
    async fn backend_down(&self) {
        let gw = &self.broken;
        // The sessions of the last round may not have given their room back yet.
        wait_metric(gw, "portcullis_sessions_active", &[], 0.0).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(gw.client().await);
        }
        let mut extra = LineClient::connect(gw.addr).await;
        assert_eq!(
            extra.read_reply().await.0,
            421,
            "the fourth session is refused"
        );
        for c in &mut held {
            assert_eq!(c.cmd("EHLO client.example").await.0, 250);
            assert_eq!(c.cmd("MAIL FROM:<a@pass.example>").await.0, 250);
            for i in 0..10 {
                let r = c.cmd(&format!("RCPT TO:<u{i}@example.test>")).await;
                assert_eq!(r.0, 451, "{r:?}");
            }
            assert_eq!(c.cmd("QUIT").await.0, 221);
        }
    }

    /// One message through the milter (miltertest), and six connections that each open
    /// with a packet longer than milter.max_packet_size (too_large).
    async fn milter_traffic(&self) {
        let sock = miltertest::socket_arg(&self.milter.milter_sockets[0]);
        let run = tokio::task::spawn_blocking(move || {
            miltertest::run(&sock, MILTER_SCRIPT, Duration::from_secs(30))
        })
        .await
        .unwrap();
        run.assert_passed("one message through the milter");
        let addr = self.milter.milter_addr.unwrap();
        for _ in 0..6 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(&[0x7f, 0xff, 0xff, 0xff, b'O']).await.unwrap();
            // The milter closes the connection: a read returns 0 (or the reset).
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::io::AsyncReadExt::read(&mut s, &mut buf),
            )
            .await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "the milter keeps a connection whose packet is too large: {read:?}"
            );
        }
    }
}

/// Waits (10 s at most) until the series of `name` with `labels` on `gw` sum to `want`
/// (a missing series never does).
async fn wait_metric(gw: &Gateway, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gw.metric_labeled(name, labels).await != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One message from `from` to `to` through `gw`; the final reply code (of DATA, or of
/// the RCPT that refused it).
async fn send(gw: &Gateway, from: &str, to: &str) -> u16 {
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>")).await.0;
    if rcpt != 250 {
        return rcpt;
    }
    let msg = format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: s\r\n\r\nhi\r\n");
    let code = c.data(msg.as_bytes()).await.0;
    assert_eq!(c.cmd("QUIT").await.0, 221);
    code
}

/// One plain message through the milter, accepted.
const MILTER_SCRIPT: &str = r#"
local conn = mt.connect(SOCK, 40, 0.05)
check(conn ~= nil, "mt.connect returned nil")
mt.set_timeout(5)
ok("conninfo", mt.conninfo(conn, "mail.example.org", "192.0.2.25"))
expect_continue(conn, "conninfo", SMFIP_NR_CONN)
ok("helo", mt.helo(conn, "mail.example.org"))
expect_continue(conn, "helo", SMFIP_NR_HELO)
send_message(conn, "<a@example.org>", "<b@example.net>",
  {{"From", "a@example.org"}, {"To", "b@example.net"}, {"Subject", "dashboards"}},
  "hello\r\n")
ok("disconnect", mt.disconnect(conn))
"#;
