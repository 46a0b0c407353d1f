//! The gateways the dashboard test watches, and the traffic that should light every panel.
//!
//! Owns: four real gateways in this process, each for one part of the dashboard, their
//! DNS fixture, Redis and policy files, and the SMTP/milter dialogues driven through them
//! (each reply asserted, so traffic that silently did something else fails here rather
//! than as a dark panel). Must not: talk to Prometheus or read the dashboard.
//!
//! - `main`: authentication and DNSBL through the DNS fixture, STARTTLS with a certificate
//!   that expires in 7 days, a policy whose rules turn a header into each verdict and a
//!   rate limit, a quarantine store, a deny list, verification of spilled messages.
//! - `shared`: greylisting and its triplets in a real redis-server, which `outage` kills.
//! - `broken`: a backend nobody listens on, and room for 3 sessions only.
//! - `milter`: milter mode, driven by miltertest and by packets that break the protocol.
//!
//! Everything listens on 127.0.0.1; clients come from 127.0.0.0/8 addresses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::dns::{DnsFixture, Fault, Zone};
use crate::common::redis::RedisServer;
use crate::common::{Gateway, LineClient, free_port, miltertest};
use portcullis::config::schema::{DnsblZoneConfig, StateBackend, TlsConfig, ZoneKind};
use tokio::io::AsyncWriteExt;

/// The policy of `main`: a header picks the verdict, one sender domain is rate limited,
/// the DNSBL zone refuses at connect.
const POLICY: &str = r#"rules:
  - name: dnsbl-listed
    when: { dnsbl.listed: bl.test }
    action: reject
  - name: verdict-tag
    when: { header: { regex: "(?i)^x-verdict: tag" } }
    action: tag
  - name: verdict-quarantine
    when: { header: { regex: "(?i)^x-verdict: quarantine" } }
    action: quarantine
  - name: verdict-tempfail
    when: { header: { regex: "(?i)^x-verdict: tempfail" } }
    action: tempfail
  - name: verdict-reject
    when: { header: { regex: "(?i)^x-verdict: reject" } }
    action: reject
  - name: limited-sender
    when: { mail_from.domain: limited.example }
    limit: { key: mail_from.domain, rate: 1/hour, burst: 1 }
"#;

/// The client address `main` refuses by its deny list.
const DENIED: [u8; 4] = [127, 0, 0, 66];
/// The client address the DNSBL zone `bl.test` lists.
const LISTED: [u8; 4] = [127, 0, 0, 2];

/// The gateways and what they depend on, alive as long as the rig.
pub struct Rig {
    pub main: Gateway,
    pub shared: Gateway,
    pub broken: Gateway,
    pub milter: Gateway,
    /// A metrics address nothing listens on: a scrape target that is down (GatewayDown).
    pub dead: SocketAddr,
    redis: RedisServer,
    /// The connection held open through the rounds, so that a scrape sees a session in
    /// progress (the active-session gauges); `None` once closed.
    held: Option<LineClient>,
    /// A milter connection held open likewise (the milter connection gauge).
    held_milter: Option<tokio::net::TcpStream>,
    policy: PathBuf,
    tls: TlsConfig,
    _dns: DnsFixture,
    _dir: tempfile::TempDir,
}

/// The DNS of `main`: SPF and DMARC of the sender domains, a DMARC record that fails to
/// resolve (temperror), and the DNSBL listing of `LISTED`. Every other name is NXDOMAIN.
fn zones() -> Vec<Zone> {
    vec![
        Zone::root()
            .txt("pass.example", "v=spf1 ip4:127.0.0.0/8 -all")
            .txt("_dmarc.pass.example", "v=DMARC1; p=none")
            .txt("fail.example", "v=spf1 ip4:192.0.2.1 -all")
            .txt("_dmarc.fail.example", "v=DMARC1; p=none")
            .fault("_dmarc.broken.example", None, Fault::ServFail)
            .a("2.0.0.127.bl.test", "127.0.0.2".parse().unwrap()),
    ]
}

/// A self-signed certificate for gw.example.test valid from yesterday for `days` days:
/// (certificate PEM, key PEM).
fn certificate(days: u64) -> (String, String) {
    let now = crate::common::prometheus::unix_now() as u64;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let mut params = rcgen::CertificateParams::new(vec!["gw.example.test".into()]).unwrap();
    params.not_before = epoch + Duration::from_secs(now - 86_400);
    params.not_after = epoch + Duration::from_secs(now + days * 86_400);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Rig {
    pub async fn start() -> Rig {
        let dns = DnsFixture::start(zones()).await;
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, POLICY).unwrap();
        let tls = TlsConfig {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            require: Default::default(),
        };
        let (cert, key) = certificate(7);
        std::fs::write(&tls.cert, cert).unwrap();
        std::fs::write(&tls.key, key).unwrap();
        let (ns, p, t, q) = (
            dns.addr(),
            policy.clone(),
            tls.clone(),
            dir.path().join("quarantine"),
        );
        let main = Gateway::start(move |c| {
            c.auth.enabled = true;
            c.dns.nameservers = vec![ns];
            c.dns.timeout = Duration::from_secs(2);
            c.dns.attempts = 1;
            c.dnsbl.zones = vec![DnsblZoneConfig {
                zone: "bl.test".into(),
                weight: 1,
                codes: Vec::new(),
                allow: false,
                kind: ZoneKind::Ip,
            }];
            c.policy = Some(p);
            c.tls = Some(t);
            c.quarantine.dir = Some(q);
            c.connections.deny = vec![IpAddr::from(DENIED).into()];
            // The smallest spool in memory (64 KiB): a bigger message spills to disk and
            // is read back for verification within auth.max_verify_memory.
            c.spool.memory_limit = 64 * 1024;
            // The session held open through the rounds must not time out.
            c.timeouts.command = Duration::from_secs(300);
        })
        .await;

        let redis = RedisServer::start();
        let url = redis.url();
        let shared = Gateway::start(move |c| {
            c.state.backend = StateBackend::Redis;
            c.state.redis.urls = vec![url];
            c.state.redis.reconnect_min = Duration::from_millis(100);
            c.state.redis.reconnect_max = Duration::from_millis(400);
            c.state.redis.health_interval = Duration::from_millis(200);
            c.greylisting.enabled = true;
            c.greylisting.delay = Duration::from_secs(1);
            c.greylisting.auto_allow_after = 0;
        })
        .await;

        let dead_backend = free_port();
        let broken = Gateway::start(move |c| {
            c.backend.url = format!("smtp://127.0.0.1:{dead_backend}").parse().unwrap();
            c.backend.probe_interval = Duration::from_secs(1);
            c.timeouts.backend_connect = Duration::from_secs(1);
            c.limits.max_sessions = 3;
        })
        .await;

        let milter = Gateway::start_milter(|_| {}).await;
        miltertest::ensure_installed();

        let mut rig = Rig {
            main,
            shared,
            broken,
            milter,
            dead: SocketAddr::from(([127, 0, 0, 1], free_port())),
            redis,
            held: None,
            held_milter: None,
            policy,
            tls,
            _dns: dns,
            _dir: dir,
        };
        rig.held = Some(rig.main.client().await);
        let milter_addr = rig.milter.milter_addr.expect("an inet milter listener");
        rig.held_milter = Some(tokio::net::TcpStream::connect(milter_addr).await.unwrap());
        rig
    }

    /// The scrape targets: each gateway's metrics listener, and the dead one.
    pub fn targets(&self) -> Vec<SocketAddr> {
        vec![
            self.main.metrics_addr,
            self.shared.metrics_addr,
            self.broken.metrics_addr,
            self.milter.metrics_addr,
            self.dead,
        ]
    }

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
