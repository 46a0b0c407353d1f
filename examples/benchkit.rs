//! The helpers of `bench/auth.sh`, one program so the bench needs nothing but Postfix's
//! smtp-source and smtp-sink besides:
//!
//! ```text
//! benchkit serve DIR SIZE...          a name server for the bench's sender; DKIM-signed messages
//! benchkit latency ADDR FILE N C      N messages over C concurrent sessions: p50, p99, msg/s
//! benchkit idle ADDR N SECONDS        N sessions that say nothing after the banner, held
//! benchkit big ADDR BYTES             one message of BYTES bytes, made as it is sent
//! ```
//!
//! `serve` makes an RSA-2048 key, writes `DIR/msg-SIZE.eml` for each SIZE (a message of
//! about SIZE bytes from `sender@sender.bench.test`, signed rsa-sha256 relaxed/relaxed, with
//! LF line ends as smtp-source's `-F` wants them), then serves a root zone on 127.0.0.1
//! (the tests' fixture, `tests/common/dns.rs`) with the sender's SPF, DKIM key and DMARC
//! record, the HELO name `client.bench.test`, and SOAs so negative answers can be cached.
//! It writes the port to `DIR/dns.port` and the number of queries received so far to
//! `DIR/dns.count` every 100 ms, until it is killed.
//!
//! Every client here speaks to 127.0.0.1 only, sends a bounded number of messages and stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/dns.rs"]
mod dns;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::crypto::{RsaKey, Sha256};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::headers::HeaderWriter as _;
use rcgen::PublicKeyData as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The envelope and header sender's domain, with SPF, DKIM and DMARC records.
const SENDER: &str = "sender.bench.test";
/// The name smtp-source (`-M`) and our clients give at EHLO; it has an A record.
const HELO: &str = "client.bench.test";
/// The recipient domain (the gateway's accepted domain).
const RCPT: &str = "rcpt@bench.test";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    let num = |i: usize| -> usize { arg(i).parse().unwrap_or_else(|_| usage()) };
    match arg(0) {
        "serve" => serve(Path::new(arg(1)), &args[2..]).await,
        "latency" => {
            latency(
                addr(arg(1)),
                &std::fs::read(arg(2)).unwrap(),
                num(3),
                num(4),
            )
            .await
        }
        "idle" => idle(addr(arg(1)), num(2), Duration::from_secs(num(3) as u64)).await,
        "big" => big(addr(arg(1)), num(2)).await,
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: benchkit serve DIR SIZE... | latency ADDR FILE N C | idle ADDR N SECONDS | big ADDR BYTES"
    );
    std::process::exit(2)
}

/// An address on the loopback network, or exit.
fn addr(text: &str) -> SocketAddr {
    let addr: SocketAddr = text.parse().unwrap_or_else(|_| usage());
    if !addr.ip().is_loopback() {
        eprintln!("benchkit sends to 127.0.0.0/8 or ::1 only, not {addr}");
        std::process::exit(2);
    }
    addr
}

async fn serve(dir: &Path, sizes: &[String]) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA 2048");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    for size in sizes {
        let size: usize = size.parse().unwrap_or_else(|_| usage());
        let signer = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der.clone_key()).unwrap())
            .domain(SENDER)
            .selector("bench")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        let message = message(size);
        let signature = signer.sign(message.as_bytes()).expect("sign");
        // smtp-source -F appends CRLF to each line: the file has LF line ends.
        let signed = (signature.to_header() + &message).replace("\r\n", "\n");
        std::fs::write(dir.join(format!("msg-{size}.eml")), signed).unwrap();
    }
    let txt = format!(
        "v=DKIM1; k=rsa; p={}",
        B64.encode(key.subject_public_key_info())
    );
    let zone = dns::Zone::root()
        .ttl(3600)
        .negative_ttl(3600)
        .txt(SENDER, "v=spf1 ip4:127.0.0.0/8 -all")
        .txt(&format!("bench._domainkey.{SENDER}"), &txt)
        .txt(&format!("_dmarc.{SENDER}"), "v=DMARC1; p=reject")
        .a(SENDER, "127.0.0.1".parse().unwrap())
        .a(HELO, "127.0.0.1".parse().unwrap());
    let server = dns::DnsFixture::start(vec![zone]).await;
    write_atomically(&dir.join("dns.port"), &server.addr().port().to_string());
    let mut last = usize::MAX;
    loop {
        let count = server.queries().len();
        if count != last {
            write_atomically(&dir.join("dns.count"), &count.to_string());
            last = count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `text` to `path` through a temporary file, so a reader never sees half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A message of about `size` bytes with CRLF line ends: headers, then lines of 76 letters.
fn message(size: usize) -> String {
    let mut m = format!(
        "From: Sender <sender@{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: bench\r\n\
         Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench@{SENDER}>\r\n\r\n"
    );
    let line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmn\r\n";
    while m.len() < size {
        m.push_str(line);
    }
    m
}

/// One SMTP session over `stream`, line by line.
struct Client {
    stream: BufReader<TcpStream>,
    line: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream: BufReader::new(stream),
            line: String::new(),
        };
        c.expect(220).await?;
        Ok(c)
    }

    /// Reads one reply (all its lines) and fails unless its code is `code`.
    async fn expect(&mut self, code: u16) -> std::io::Result<()> {
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            if self.line.len() < 4 || !self.line.starts_with(&code.to_string()) {
                return Err(std::io::Error::other(format!(
                    "expected {code}, got {:?}",
                    self.line.trim_end()
                )));
            }
            if self.line.as_bytes()[3] == b' ' {
                return Ok(());
            }
        }
    }

    async fn command(&mut self, line: &str, code: u16) -> std::io::Result<()> {
        self.stream.get_mut().write_all(line.as_bytes()).await?;
        self.expect(code).await
    }

    /// EHLO, MAIL, RCPT and DATA up to the 354.
    async fn envelope(&mut self) -> std::io::Result<()> {
        self.command(&format!("EHLO {HELO}\r\n"), 250).await?;
        self.command(&format!("MAIL FROM:<sender@{SENDER}>\r\n"), 250)
            .await?;
        self.command(&format!("RCPT TO:<{RCPT}>\r\n"), 250).await?;
        self.command("DATA\r\n", 354).await
    }
}

/// `message` (LF or CRLF line ends) as DATA content: CRLF line ends, dot-stuffed, with the
/// final dot.
fn data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 40 + 8);
    for line in message.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// One message on a new connection: the time from connect to the 250 after the final dot.
async fn one(addr: SocketAddr, data: &[u8]) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut c = Client::connect(addr).await?;
    c.envelope().await?;
    c.stream.get_mut().write_all(data).await?;
    c.expect(250).await?;
    let took = start.elapsed();
    let _ = c.stream.get_mut().write_all(b"QUIT\r\n").await;
    Ok(took)
}

async fn latency(addr: SocketAddr, message: &[u8], n: usize, concurrency: usize) {
    let data = std::sync::Arc::new(data(message));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (data, next) = (data.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                match tokio::time::timeout(Duration::from_secs(60), one(addr, &data)).await {
                    Ok(Ok(t)) => times.push(t),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("no reply within 60 s".to_string()),
                }
            }
            Ok(times)
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(t) => times.extend(t),
            Err(e) => {
                eprintln!("benchkit latency: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed();
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{:.2} {:.2} {:.0}",
        pct(0.50),
        pct(0.99),
        times.len() as f64 / elapsed.as_secs_f64()
    );
}

async fn idle(addr: SocketAddr, n: usize, hold: Duration) {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        match Client::connect(addr).await {
            Ok(c) => held.push(c),
            Err(e) => {
                eprintln!("benchkit idle: session {i}: {e}");
                break;
            }
        }
    }
    println!("held {}", held.len());
    tokio::time::sleep(hold).await;
}

async fn big(addr: SocketAddr, bytes: usize) {
    let start = Instant::now();
    let result = async {
        let mut c = Client::connect(addr).await?;
        c.envelope().await?;
        let w = c.stream.get_mut();
        w.write_all(
            format!("From: <sender@{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: big\r\n\r\n").as_bytes(),
        )
        .await?;
        let line = [b'x'; 998];
        let mut sent = 0;
        while sent < bytes {
            w.write_all(&line).await?;
            w.write_all(b"\r\n").await?;
            sent += line.len() + 2;
        }
        w.write_all(b".\r\n").await?;
        c.line.clear();
        c.stream.read_line(&mut c.line).await?;
        Ok::<_, std::io::Error>(c.line.trim_end().to_string())
    }
    .await;
    match result {
        Ok(reply) => println!("{:.1} {reply}", start.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("benchkit big: {e}");
            std::process::exit(1);
        }
    }
}
