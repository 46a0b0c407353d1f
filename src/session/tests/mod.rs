//! The session over an in-memory stream (`tokio::io::duplex`), with tokio's clock paused
//! where deadlines matter: no socket, no real waiting.
//!
//! Owns: the harness (a `Context` from `config::offline`, a session on one end of a duplex,
//! replies read from the other, the Maildir and the metrics read back) and the dialogue
//! through the engine. Must not: open sockets; the deadlines' cases are in `deadlines.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deadlines;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::*;
use crate::config::Config;
use crate::metrics::Metrics;

/// The client's end of a session.
type Client = BufReader<DuplexStream>;

/// A context on `config::offline(dir)` (Maildir backend in `dir`) with `tweak` applied.
fn context(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Arc<Context> {
    let mut c = crate::config::offline(dir);
    tweak(&mut c);
    Arc::new(Context::new(c, Arc::new(Metrics::new())).unwrap())
}

/// Runs a session of `ctx` on a duplex stream; the client's end.
fn start(ctx: Arc<Context>) -> Client {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let info = SessionInfo::new(
        "t",
        "192.0.2.7:4000".parse().unwrap(),
        "127.0.0.1:25".parse().unwrap(),
    );
    tokio::spawn(Session::new(server, info, Vec::new(), ctx, Signals::default()).run());
    BufReader::new(client)
}

/// One (multi-line) reply; empty at EOF.
async fn reply(c: &mut Client) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if c.read_line(&mut line).await.unwrap() == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return all;
        }
    }
}

/// Sends `bytes` as they are.
async fn send(c: &mut Client, bytes: &[u8]) {
    c.get_mut().write_all(bytes).await.unwrap();
}

/// Sends one command line (CRLF added) and reads its reply.
async fn cmd(c: &mut Client, line: &str) -> String {
    send(c, format!("{line}\r\n").as_bytes()).await;
    reply(c).await
}

/// Asserts that `r` starts with `code`, with the reply in the message.
#[track_caller]
fn expect(r: &str, code: &str) {
    assert!(r.starts_with(code), "wanted {code}, got {r:?}");
}

/// Reads the banner and greets.
async fn greet(c: &mut Client) {
    expect(&reply(c).await, "220 ");
    expect(&cmd(c, "EHLO client.example").await, "250");
}

/// The banner, EHLO, MAIL from `a@sender.example` and RCPT to `rcpt`, each accepted.
async fn envelope(c: &mut Client, rcpt: &str) {
    greet(c).await;
    expect(&cmd(c, "MAIL FROM:<a@sender.example>").await, "250");
    expect(&cmd(c, &format!("RCPT TO:<{rcpt}>")).await, "250");
}

/// Messages in the Maildir of `who@example.test` under `dir`; none when the Maildir was
/// never created (the backend creates it with the first delivery).
fn delivered(dir: &std::path::Path, who: &str) -> usize {
    match std::fs::read_dir(dir.join("example.test").join(who).join("new")) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("{who}: {e}"),
    }
}

/// The value of `series` (name and labels exactly as exposed) in the context's metrics;
/// `None` when it is not exposed.
fn metric(ctx: &Context, series: &str) -> Option<f64> {
    let text = ctx.metrics.render();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?;
    Some(value.split_whitespace().next()?.parse().unwrap())
}

#[tokio::test]
async fn a_message_goes_through_the_engine_to_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), |_| {});
    let mut c = start(ctx);
    assert!(reply(&mut c).await.starts_with("220 "));
    assert!(cmd(&mut c, "EHLO client.example").await.starts_with("250"));
    assert!(
        cmd(&mut c, "MAIL FROM:<a@sender.example>")
            .await
            .starts_with("250")
    );
    assert!(
        cmd(&mut c, "RCPT TO:<x@other.example>")
            .await
            .starts_with("550 5.7.1")
    );
    assert!(
        cmd(&mut c, "RCPT TO:<alice@example.test>")
            .await
            .starts_with("250")
    );
    assert!(cmd(&mut c, "DATA").await.starts_with("354"));
    let r = cmd(&mut c, "Subject: t\r\n\r\nhello\r\n.").await;
    assert!(r.starts_with("250"), "{r}");
    let new = dir.path().join("example.test/alice/new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(
        text.starts_with("Received: from client.example ([192.0.2.7])"),
        "{text}"
    );
    assert!(text.ends_with("hello\r\n"), "{text}");
}
