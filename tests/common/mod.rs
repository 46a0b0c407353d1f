//! Shared test harness: an in-process gateway on port 0, a raw SMTP line client, and
//! helpers for files and processes. Real Postfix instances live in `postfix.rs`, a real
//! Prometheus in `prometheus.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod dns;
pub mod miltertest;
pub mod pki;
pub mod postfix;
pub mod prometheus;
pub mod redis;
pub mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::app::Running;
use portcullis::config::Config;
use portcullis::config::schema::MilterSocket;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A gateway running inside the test process.
pub struct Gateway {
    pub running: Option<Running>,
    /// The first SMTP listener. A milter-only gateway (`start_milter`) has none: this is
    /// then 127.0.0.1:0, which nothing accepts, and `client()` refuses to use it.
    pub addr: SocketAddr,
    /// The first `inet:` milter listener (`start_milter`), as configured: Postfix needs the
    /// port in main.cf before it starts, so the test picks it (`free_port`) rather than
    /// reading it back from the running gateway.
    pub milter_addr: Option<SocketAddr>,
    /// The milter listeners as configured (inet and unix).
    pub milter_sockets: Vec<MilterSocket>,
    pub metrics_addr: SocketAddr,
    /// Maildir root when the backend is the default maildir (kept alive with the gateway).
    pub maildir: Option<tempfile::TempDir>,
}

/// A config for tests: ports 0, short timeouts, maildir backend in a temp dir.
pub fn test_config() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Config {
        hostname: "gw.example.test".into(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        accepted_domains: portcullis::config::domains::AcceptedDomains::parse(&[
            "example.test",
            "*.corp.example",
        ])
        .unwrap(),
        ..Config::default()
    };
    c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    c.backend.url = format!("maildir:{}", dir.path().display()).parse().unwrap();
    c.timeouts.command = Duration::from_secs(10);
    c.timeouts.data = Duration::from_secs(20);
    c.timeouts.shutdown_grace = Duration::from_secs(5);
    // No test may reach the internet: authentication stays off unless a test enables it
    // with the in-process DNS fixture as the name server.
    c.auth.enabled = false;
    c.client_checks.rdns = false;
    c.client_checks.helo_dns = false;
    (c, dir)
}

impl Gateway {
    /// Starts a gateway with the maildir backend and `tweak` applied to the config.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Gateway {
        let (mut config, dir) = test_config();
        tweak(&mut config);
        let milter_sockets = config.milter.listen.clone();
        let running = portcullis::app::start(config).await.expect("gateway start");
        Gateway {
            addr: running.smtp_addrs[0],
            milter_addr: first_inet(&milter_sockets),
            milter_sockets,
            metrics_addr: running.metrics_addr.expect("metrics addr"),
            running: Some(running),
            maildir: Some(dir),
        }
    }

    /// Starts a gateway in milter mode only: no SMTP listener (`listen: []`), no
    /// `accepted_domains` (Postfix does relay control), one milter listener on
    /// `inet:127.0.0.1:<free port>`; then `tweak` (which may replace the listeners, e.g.
    /// with a `unix:` socket, or set `accepted_domains`). Metrics on a port of its own.
    pub async fn start_milter(tweak: impl FnOnce(&mut Config)) -> Gateway {
        let (mut config, dir) = test_config();
        config.listen = Vec::new();
        config.accepted_domains = Default::default();
        config.milter.listen = vec![MilterSocket::Inet(SocketAddr::from((
            [127, 0, 0, 1],
            free_port(),
        )))];
        tweak(&mut config);
        let milter_sockets = config.milter.listen.clone();
        assert!(
            !milter_sockets.is_empty(),
            "start_milter: the tweak removed every milter listener"
        );
        let running = portcullis::app::start(config).await.expect("gateway start");
        let addr = running
            .smtp_addrs
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        Gateway {
            addr,
            milter_addr: first_inet(&milter_sockets),
            milter_sockets,
            metrics_addr: running.metrics_addr.expect("metrics addr"),
            running: Some(running),
            maildir: Some(dir),
        }
    }

    /// The milter listener as Postfix writes it in `smtpd_milters` (`inet:127.0.0.1:PORT`
    /// or `unix:/PATH`): the first one configured.
    pub fn milter_spec(&self) -> String {
        self.milter_sockets
            .first()
            .expect("this gateway has no milter listener")
            .to_string()
    }

    /// The maildir root.
    pub fn maildir(&self) -> &Path {
        self.maildir.as_ref().expect("maildir backend").path()
    }

    /// Messages delivered to `who@domain` (contents), in no particular order.
    pub fn delivered(&self, domain: &str, who: &str) -> Vec<Vec<u8>> {
        read_maildir(&self.maildir().join(domain).join(who).join("new"))
    }

    /// Connects a line client and reads the banner.
    pub async fn client(&self) -> LineClient {
        assert_ne!(
            self.addr.port(),
            0,
            "this gateway has no SMTP listener (milter mode only)"
        );
        let mut c = LineClient::connect(self.addr).await;
        let (code, _) = c.read_reply().await;
        assert_eq!(code, 220);
        c
    }

    /// GET a path on the metrics listener; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path).await
    }

    /// The value of one metric line (exact series text before the value); `None` when the
    /// exposition has no such series (so a renamed metric or label can never pass for a 0).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await;
        metric_value(&body, series)
    }

    /// The summed value of the series of metric `name` (e.g. `portcullis_messages_total`)
    /// whose labels include every `labels` pair, in any order; `None` when no series has
    /// them (so a missing series can never pass for a zero or a count).
    pub async fn metric_labeled(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await;
        metric_labeled(&body, name, labels)
    }

    /// Stops the gateway (drain).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// The value of the `series value` line of an exposition whose series text (name and
/// labels, exactly as exposed) is `series`; `None` when there is no such line. A line that
/// names the series with a value that is not a number panics: that is a broken exposition,
/// not a missing series.
pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    let value = body.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
    })?;
    let number = value.split_whitespace().next().unwrap_or(value);
    Some(
        number
            .parse()
            .unwrap_or_else(|e| panic!("{series}: value {value:?} is not a number: {e}")),
    )
}

/// The first `inet:` listener of `sockets`.
fn first_inet(sockets: &[MilterSocket]) -> Option<SocketAddr> {
    sockets.iter().find_map(|s| match s {
        MilterSocket::Inet(a) => Some(*a),
        MilterSocket::Unix(_) => None,
    })
}

/// The summed value of the series of `name` whose labels include every `labels` pair (in
/// any order, other labels allowed); `None` when no series of `name` has them.
pub fn metric_labeled(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(inner) = rest.strip_prefix('{') {
            let Some((l, v)) = inner.split_once("} ") else {
                continue;
            };
            (l, v)
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue; // another metric whose name starts with `name`
        };
        let have = parse_labels(label_text);
        let all = labels
            .iter()
            .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v));
        if !all {
            continue;
        }
        let Ok(v) = value.split_whitespace().next().unwrap_or("").parse::<f64>() else {
            continue;
        };
        sum = Some(sum.unwrap_or(0.0) + v);
    }
    sum
}

/// `a="x",b="y"` → [(a, x), (b, y)] (values unescaped for `\"` and `\\`).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let key = key.trim_start_matches(',').trim().to_string();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &after[end..];
    }
    out
}

/// Minimal HTTP/1.0 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    // No status or no end of the head is a broken response, never an empty page.
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: no HTTP status in {text:?}"));
    let (_, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no end of the head in {text:?}"));
    (status, body.to_string())
}

/// Files in a Maildir `new/` directory; none when the directory does not exist (the
/// backend creates it with the first delivery). Any other failure to read panics, so an
/// unreadable Maildir never passes for an empty one.
pub fn read_maildir(dir: &Path) -> Vec<Vec<u8>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    entries
        .map(|e| {
            let path = e.expect("a Maildir entry").path();
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// Polls `f` until it returns Some, up to `secs` seconds.
pub async fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A byte stream a `LineClient` can run over: plain TCP, or TLS after `starttls`.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw SMTP client: send lines, read (multi-line) replies.
pub struct LineClient {
    io: BufReader<Box<dyn Io>>,
}

impl LineClient {
    pub async fn connect(addr: SocketAddr) -> LineClient {
        let s = TcpStream::connect(addr).await.expect("connect");
        Self::from_stream(s)
    }

    /// Connects from a chosen loopback source address (e.g. 127.0.0.9).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> LineClient {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(source, 0)).unwrap();
        Self::from_stream(sock.connect(addr).await.expect("connect"))
    }

    pub fn from_stream(s: TcpStream) -> LineClient {
        LineClient {
            io: BufReader::new(Box::new(s)),
        }
    }

    /// The TLS handshake after a `220` to STARTTLS (the certificate is not verified: test
    /// certificates are self-signed). Nothing read ahead is kept, as RFC 3207 requires.
    pub async fn starttls(self, server_name: &str) -> LineClient {
        self.starttls_certificate(server_name).await.0
    }

    /// As `starttls`, and the leaf certificate the server presented (DER). Each call has a
    /// client config of its own, so no session is resumed: every handshake is a full one.
    pub async fn starttls_certificate(self, server_name: &str) -> (LineClient, Vec<u8>) {
        let connector =
            tokio_rustls::TlsConnector::from(portcullis::tls::backend_client_config().unwrap());
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let tls = connector
            .connect(name, self.io.into_inner())
            .await
            .expect("handshake");
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server presented a certificate")
            .to_vec();
        let c = LineClient {
            io: BufReader::new(Box::new(tls)),
        };
        (c, leaf)
    }

    pub async fn send(&mut self, data: &[u8]) {
        self.io.write_all(data).await.expect("send");
    }

    /// Reads one reply: (code, lines joined by \n). Code 0 on EOF (or a reset); a line
    /// without a three-digit code, or bytes that are not text, panic, so garbage can never
    /// pass for a closed connection.
    pub async fn read_reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(30), self.io.read_line(&mut line))
                .await
                .expect("reply timeout");
            let n = match read {
                Ok(n) => n,
                // How a peer ends a connection it closes with input unread (a reset), or a
                // TLS session without close_notify: the connection is closed.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    0
                }
                // Bytes that are not UTF-8 are not a reply, and not a close either.
                Err(e) => panic!("reading a reply: {e}"),
            };
            if n == 0 {
                return (0, text.join("\n"));
            }
            let line = line.trim_end().to_string();
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("not an SMTP reply line: {line:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            text.push(line);
            if last {
                return (code, text.join("\n"));
            }
        }
    }

    /// Reads every byte until the server closes the connection (at most 30 s), for a close
    /// that is not preceded by a reply line (a TLS alert after a failed handshake).
    pub async fn read_until_closed(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read_to_end(&mut self.io, &mut all),
        )
        .await
        .expect("the connection was not closed within 30 s")
        .expect("read until closed");
        all
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    /// EHLO, MAIL, RCPTs; asserts each is 2xx.
    pub async fn envelope(&mut self, from: &str, rcpts: &[&str]) {
        assert_eq!(self.cmd("EHLO client.example").await.0, 250);
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert_eq!(r.0, 250, "{r:?}");
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            assert_eq!(r.0, 250, "{r:?}");
        }
    }

    /// DATA with `body` (already dot-stuffed, CRLF, without the final dot); returns the reply.
    pub async fn data(&mut self, body: &[u8]) -> (u16, String) {
        assert_eq!(self.cmd("DATA").await.0, 354);
        self.send(body).await;
        self.send(b".\r\n").await;
        self.read_reply().await
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `portcullis policy test --dns-offline --config CONFIG --message MESSAGE EXTRA…`: asserts
/// it succeeded and returns its report.
pub fn policy_test(config: &Path, message: &Path, extra: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(["policy", "test", "--dns-offline", "--config"])
        .arg(config)
        .arg("--message")
        .arg(message)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Path of the portcullis binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// The header fields of a message, in order: (name, value unfolded to one line, trimmed).
/// Maildir files have LF line ends; a CR before the LF is dropped.
pub fn fields(msg: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in msg.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            let last = out.last_mut().expect("continuation before any field");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').expect("header field without a colon");
            out.push((name.to_string(), value.trim().to_string()));
        }
    }
    out
}

/// The values of every Authentication-Results field of a message, in order.
pub fn auth_results(msg: &str) -> Vec<String> {
    fields(msg)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Authentication-Results"))
        .map(|(_, v)| v)
        .collect()
}

/// A plain RFC 5322 message from alice@example.org to the `To:` field `to` (CRLF, no line
/// starting with a dot), its Message-ID made from the subject.
pub fn message_to(to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         {body}",
        subject.replace(' ', "-")
    )
}
