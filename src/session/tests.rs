//! The session over an in-memory stream (`tokio::io::duplex`), with tokio's clock paused
//! where deadlines matter: no socket, no real waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::*;
use crate::config::Config;
use crate::metrics::Metrics;

fn context(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Arc<Context> {
    let mut c = crate::config::offline(dir);
    tweak(&mut c);
    Arc::new(Context::new(c, Arc::new(Metrics::new())).unwrap())
}

fn start(ctx: Arc<Context>) -> BufReader<DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let info = SessionInfo::new(
        "t",
        "192.0.2.7:4000".parse().unwrap(),
        "127.0.0.1:25".parse().unwrap(),
    );
    tokio::spawn(Session::new(server, info, Vec::new(), ctx, Signals::default()).run());
    BufReader::new(client)
}

async fn reply(c: &mut BufReader<DuplexStream>) -> String {
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

async fn cmd(c: &mut BufReader<DuplexStream>, line: &str) -> String {
    c.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(c).await
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_closed_by_the_idle_clock_not_the_command_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), |c| {
        c.timeouts.command = Duration::from_secs(600);
        c.timeouts.idle = Duration::from_secs(300);
    });
    let mut c = start(ctx);
    assert!(reply(&mut c).await.starts_with("220 "));
    assert!(cmd(&mut c, "EHLO client.example").await.starts_with("250"));
    let started = tokio::time::Instant::now();
    // Paused time: the session's wait is the only timer, so it runs out at once.
    let r = reply(&mut c).await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited < Duration::from_secs(301),
        "{waited:?}"
    );
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
