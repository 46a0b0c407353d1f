//! Shared test harness: an in-process gateway on port 0, a raw SMTP line client, and
//! helpers for files and processes. Real Postfix instances live in `postfix.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod dns;
pub mod postfix;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::app::Running;
use portcullis::config::Config;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A gateway running inside the test process.
pub struct Gateway {
    pub running: Option<Running>,
    pub addr: SocketAddr,
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
        accepted_domains: vec!["example.test".into(), "*.corp.example".into()],
        ..Config::default()
    };
    c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    c.backend.url = format!("maildir:{}", dir.path().display());
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
        let running = portcullis::app::start(config).await.expect("gateway start");
        Gateway {
            addr: running.smtp_addrs[0],
            metrics_addr: running.metrics_addr.expect("metrics addr"),
            running: Some(running),
            maildir: Some(dir),
        }
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
        let mut c = LineClient::connect(self.addr).await;
        let (code, _) = c.read_reply().await;
        assert_eq!(code, 220);
        c
    }

    /// GET a path on the metrics listener; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path).await
    }

    /// The value of one metric line (exact series text before the value), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        metric_value(&body, series)
    }

    /// Stops the gateway (drain).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// Parses `series value` lines of an exposition.
pub fn metric_value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
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
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Files in a Maildir `new/` directory.
pub fn read_maildir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
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

    /// Reads one reply: (code, lines joined by \n). Code 0 on EOF.
    pub async fn read_reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.io.read_line(&mut line))
                .await
                .expect("reply timeout")
                .unwrap_or(0);
            if n == 0 {
                return (0, text.join("\n"));
            }
            let line = line.trim_end().to_string();
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            let last = line.as_bytes().get(3) != Some(&b'-');
            text.push(line);
            if last {
                return (code, text.join("\n"));
            }
        }
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
