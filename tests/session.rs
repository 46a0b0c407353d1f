//! SMTP dialogues against the in-process gateway with the Maildir backend: command order,
//! syntax errors, limits, pipelining, DATA/BDAT, relay protection, STARTTLS, PROXY protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, LineClient};

#[tokio::test]
async fn delivers_with_trace_header_and_unstuffed_dots() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    c.envelope("alice@sender.example", &["Bob@Example.TEST"])
        .await;
    let (code, text) = c.data(b"Subject: hi\r\n\r\n..dot line\r\nend\r\n").await;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("2.0.0"), "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221);
    let msgs = gw.delivered("example.test", "bob");
    assert_eq!(msgs.len(), 1);
    let m = String::from_utf8_lossy(&msgs[0]);
    assert!(m.starts_with("Received: from client.example ([127.0.0.1])\r\n\tby gw.example.test (Portcullis) with ESMTP id "), "{m}");
    assert!(
        m.ends_with("Subject: hi\r\n\r\n.dot line\r\nend\r\n"),
        "{m}"
    );
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let gw = Gateway::start(|c| c.limits.max_message_size = 12345).await;
    let mut c = gw.client().await;
    let (code, text) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    for ext in [
        "PIPELINING",
        "SIZE 12345",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
    ] {
        assert!(text.contains(ext), "{ext} missing in {text}");
    }
    assert!(
        !text.contains("STARTTLS"),
        "STARTTLS offered without a certificate"
    );
    assert_eq!(c.cmd("HELO client.example").await.0, 250);
}

#[tokio::test]
async fn command_order_errors() {
    let gw = Gateway::start(|c| c.limits.max_errors = 100).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await.0, 503);
    assert_eq!(c.cmd("RCPT TO:<a@example.test>").await.0, 503);
    assert_eq!(c.cmd("DATA").await.0, 503);
    assert_eq!(c.cmd("EHLO x.example").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<a@example.test>").await.0, 503);
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await.0, 250);
    let (code, text) = c.cmd("MAIL FROM:<a@b.example>").await;
    assert_eq!((code, text.contains("5.5.1")), (503, true), "{text}");
    assert_eq!(
        c.cmd("DATA").await.0,
        554,
        "DATA without any valid recipient"
    );
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(
        c.cmd("RCPT TO:<a@example.test>").await.0,
        503,
        "RSET ends the transaction"
    );
    assert_eq!(c.cmd("NOOP").await.0, 250);
    assert_eq!(c.cmd("VRFY alice").await.0, 252);
    assert_eq!(c.cmd("HELP").await.0, 214);
    assert_eq!(c.cmd("STARTTLS").await.0, 502, "no certificate configured");
    assert_eq!(c.cmd("AUTH PLAIN AGFiAGM=").await.0, 502);
    assert_eq!(c.cmd("EXPN staff").await.0, 502);
}

#[tokio::test]
async fn syntax_errors() {
    let gw = Gateway::start(|c| c.limits.max_errors = 100).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO x.example").await.0, 250);
    assert_eq!(c.cmd("FOO bar").await.0, 500);
    let (code, text) = c.cmd("MAIL FROM:<not an address>").await;
    assert_eq!(code, 501, "{text}");
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> FROBNICATE=1").await.0 / 100,
        5
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<>").await.0, 501);
    assert_eq!(
        c.cmd("RCPT TO:<postmaster>").await.0,
        250,
        "RFC 5321 §4.5.1"
    );
    let (code, text) = c.cmd("RCPT TO:<josé@example.test>").await;
    assert_eq!((code, text.contains("5.6.7")), (553, true), "{text}");
}

#[tokio::test]
async fn relay_protection_refuses_every_trick() {
    let gw = Gateway::start(|c| c.limits.max_errors = 100).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &[]).await;
    for trick in [
        "<victim@elsewhere.example>",
        "<victim%elsewhere.example@example.test>",
        "<\"victim@elsewhere.example\"@example.test>",
        "<@example.test:victim@elsewhere.example>",
        "<elsewhere.example!victim@example.test>",
        "<victim@example.test.>",
        "<victim@example.test.elsewhere.example>",
        "<victim@corp.example>",
        "<victim@[127.0.0.1]>",
        "<victim@xn--exmple-cua.test>",
    ] {
        let (code, text) = c.cmd(&format!("RCPT TO:{trick}")).await;
        assert!(code == 550 || code == 501, "{trick} got {code} {text}");
        if code == 550 {
            assert!(text.contains("5.7.1"), "{trick}: {text}");
        }
    }
    for ok in [
        "<ok@example.test>",
        "<OK@EXAMPLE.TEST>",
        "<ok@mx.corp.example>",
    ] {
        assert_eq!(c.cmd(&format!("RCPT TO:{ok}")).await.0, 250, "{ok}");
    }
    assert!(
        gw.metric("portcullis_replies_total{class=\"5xx\"}")
            .await
            .is_some_and(|v| v >= 10.0)
    );
}

#[tokio::test]
async fn pipelined_batch_gets_replies_in_order() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO pipe.example").await.0, 250);
    // The whole transaction in one write, as RFC 2920 allows up to DATA.
    c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<one@example.test>\r\nRCPT TO:<nobody@elsewhere.example>\r\nRCPT TO:<two@example.test>\r\nDATA\r\n").await;
    let codes: Vec<u16> = [(); 5].iter().map(|_| 0).collect();
    let mut got = Vec::new();
    for _ in codes {
        got.push(c.read_reply().await.0);
    }
    assert_eq!(got, vec![250, 250, 550, 250, 354]);
    c.send(b"Subject: batch\r\n\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n")
        .await;
    assert_eq!(c.read_reply().await.0, 250);
    assert_eq!(c.read_reply().await.0, 250);
    assert_eq!(c.read_reply().await.0, 221);
    assert_eq!(gw.delivered("example.test", "one").len(), 1);
    assert_eq!(gw.delivered("example.test", "two").len(), 1);
}

#[tokio::test]
async fn declared_size_over_limit_is_refused_at_mail() {
    let gw = Gateway::start(|c| c.limits.max_message_size = 1000).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO x.example").await.0, 250);
    let (code, text) = c.cmd("MAIL FROM:<a@sender.example> SIZE=1001").await;
    assert_eq!((code, text.contains("5.3.4")), (552, true), "{text}");
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example> SIZE=1000").await.0, 250);
    assert!(
        gw.metric("portcullis_limit_hits_total{limit=\"message_size\"}")
            .await
            .is_some_and(|v| v >= 1.0)
    );
}

#[tokio::test]
async fn actual_size_over_limit_reads_to_the_end_then_552() {
    let gw = Gateway::start(|c| c.limits.max_message_size = 1000).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["big@example.test"]).await;
    let line = "x".repeat(98) + "\r\n";
    let body = line.repeat(50); // 5000 bytes
    let (code, text) = c.data(body.as_bytes()).await;
    assert_eq!(code, 552, "{text}");
    // The session is still in sync: the next transaction works.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<big@example.test>").await.0, 250);
    assert_eq!(c.data(b"small\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "big").len(), 1);
}

#[tokio::test]
async fn large_message_spills_to_disk_and_arrives_intact() {
    let gw = Gateway::start(|c| c.spool.memory_limit = 64 * 1024).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["big@example.test"]).await;
    let mut body = Vec::new();
    for i in 0..20_000 {
        body.extend_from_slice(
            format!("line {i:06} .........................................\r\n").as_bytes(),
        );
    }
    assert_eq!(c.data(&body).await.0, 250);
    let got = gw.delivered("example.test", "big");
    assert!(
        got[0].ends_with(&body),
        "content changed in the spool round trip"
    );
}

#[tokio::test]
async fn too_many_recipients_get_452() {
    let gw = Gateway::start(|c| c.limits.max_recipients = 3).await;
    let mut c = gw.client().await;
    c.envelope(
        "a@sender.example",
        &["r1@example.test", "r2@example.test", "r3@example.test"],
    )
    .await;
    let (code, text) = c.cmd("RCPT TO:<r4@example.test>").await;
    assert_eq!((code, text.contains("4.5.3")), (452, true), "{text}");
    // The accepted three still get the message.
    assert_eq!(c.data(b"Subject: x\r\n\r\ny\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "r3").len(), 1);
    assert!(gw.delivered("example.test", "r4").is_empty());
}

#[tokio::test]
async fn over_long_line_gets_500_and_session_continues() {
    let gw = Gateway::start(|c| c.limits.max_line_length = 512).await;
    let mut c = gw.client().await;
    let long = format!("NOOP {}\r\n", "a".repeat(5000));
    c.send(long.as_bytes()).await;
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("5.5.2")), (500, true), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250);
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"line_length\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn too_many_errors_close_with_421() {
    let gw = Gateway::start(|c| c.limits.max_errors = 3).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("BOGUS").await.0, 500);
    assert_eq!(c.cmd("BOGUS").await.0, 500);
    c.send(b"BOGUS\r\n").await;
    assert_eq!(c.read_reply().await.0, 500);
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("4.7.0")), (421, true), "{text}");
    assert_eq!(c.read_reply().await.0, 0, "connection closed");
}

/// RFC 5321 §4.5.3.1.10: a 452 for recipients over the limit tells the client to go on. A
/// pipelined batch of 1000 RCPTs under the default limits delivers the first 100 in one
/// message, and no limit closes the session.
#[tokio::test]
async fn recipients_over_the_limit_are_deferred_not_counted_as_errors() {
    let gw = Gateway::start(|c| assert_eq!(c.limits.max_recipients, 100)).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO bulk.example").await.0, 250);
    let mut batch = b"MAIL FROM:<list@sender.example>\r\n".to_vec();
    for i in 0..1000 {
        batch.extend_from_slice(format!("RCPT TO:<r{i}@example.test>\r\n").as_bytes());
    }
    batch.extend_from_slice(b"DATA\r\n");
    c.send(&batch).await;
    assert_eq!(c.read_reply().await.0, 250, "MAIL");
    for i in 0..1000 {
        let (code, text) = c.read_reply().await;
        let want = if i < 100 { 250 } else { 452 };
        assert_eq!(code, want, "RCPT {i}: {text}");
        if i >= 100 {
            assert!(text.contains("4.5.3"), "RCPT {i}: {text}");
        }
    }
    assert_eq!(c.read_reply().await.0, 354);
    c.send(b"Subject: many\r\n\r\nto a hundred\r\n.\r\n").await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221, "the session is still open");
    for i in 0..100 {
        assert_eq!(
            gw.delivered("example.test", &format!("r{i}")).len(),
            1,
            "r{i}"
        );
    }
    assert!(gw.delivered("example.test", "r100").is_empty());
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"accept\"}")
            .await,
        Some(1.0),
        "one message"
    );
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"errors\"}")
            .await,
        Some(0.0)
    );
}

/// Only protocol errors count towards `max_errors`: deferred recipients and a DATA behind
/// refused ones do not, garbage commands and relay attempts do.
#[tokio::test]
async fn max_errors_counts_protocol_errors_only() {
    let gw = Gateway::start(|c| {
        c.limits.max_errors = 3;
        c.limits.max_recipients = 1;
    })
    .await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["one@example.test"]).await;
    for i in 0..5 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<more{i}@example.test>")).await.0,
            452
        );
    }
    assert_eq!(c.data(b"Subject: x\r\n\r\ny\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "one").len(), 1);
    // A transaction whose only recipient was refused, with DATA pipelined behind it.
    c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\nRSET\r\n")
        .await;
    let codes = [
        c.read_reply().await.0,
        c.read_reply().await.0,
        c.read_reply().await.0,
        c.read_reply().await.0,
    ];
    assert_eq!(codes, [250, 550, 554, 250], "one error: the relay attempt");
    assert_eq!(c.cmd("BOGUS").await.0, 500);
    c.send(b"BOGUS\r\n").await;
    assert_eq!(c.read_reply().await.0, 500);
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("4.7.0")), (421, true), "{text}");
    assert_eq!(c.read_reply().await.0, 0, "connection closed");
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"errors\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn too_many_commands_close_with_421() {
    let gw = Gateway::start(|c| c.limits.max_commands = 5).await;
    let mut c = gw.client().await;
    for _ in 0..5 {
        assert_eq!(c.cmd("NOOP").await.0, 250);
    }
    assert_eq!(c.cmd("NOOP").await.0, 421);
}

/// The one deadline over a real socket: the session's timers are wired to the listener's
/// streams. Every deadline's cases (session, idle, DATA, BDAT) are unit tests over a duplex
/// stream with the clock paused, in `src/session/tests/deadlines.rs`.
#[tokio::test]
async fn idle_client_times_out_with_421() {
    let gw = Gateway::start(|c| c.timeouts.command = Duration::from_millis(300)).await;
    let mut c = gw.client().await;
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("4.4.2")), (421, true), "{text}");
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"command_timeout\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn bare_lf_is_rejected_by_default_and_fixed_on_request() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["v@example.test"]).await;
    // A smuggling attempt: "\n.\r\n" must not end DATA, and the message is refused.
    let (code, text) = c
        .data(b"Subject: s\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x.example>\r\n")
        .await;
    assert_eq!((code, text.contains("5.6.0")), (550, true), "{text}");
    assert!(gw.delivered("example.test", "v").is_empty());

    let gw = Gateway::start(|c| {
        c.smtp.bare_line_endings = portcullis::config::schema::BareLineEndings::Fix
    })
    .await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["v@example.test"]).await;
    assert_eq!(c.data(b"Subject: s\r\n\r\nhello\n.\nbye\r\n").await.0, 250);
    let m = gw.delivered("example.test", "v");
    assert!(
        m[0].ends_with(b"hello\r\n.\r\nbye\r\n"),
        "{:?}",
        String::from_utf8_lossy(&m[0])
    );
}

#[tokio::test]
async fn nul_bytes_are_rejected_by_default_and_stripped_on_request() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["n@example.test"]).await;
    // The whole message is read (the line after the NUL is content, not a command), then
    // refused: never acknowledged.
    let (code, text) = c
        .data(b"Subject: n\r\n\r\nhel\0lo\r\nRSET\r\nbye\r\n")
        .await;
    assert_eq!((code, text.contains("5.6.0")), (550, true), "{text}");
    assert!(text.contains("NUL"), "{text}");
    // The same through BDAT.
    c.envelope("a@sender.example", &["n@example.test"]).await;
    c.send(b"BDAT 9 LAST\r\nx: \0y\r\n\r\n").await;
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("5.6.0")), (550, true), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250);
    assert!(gw.delivered("example.test", "n").is_empty());
    assert_eq!(
        gw.metric("portcullis_policy_rule_hits_total{rule=\"nul-bytes\"}")
            .await,
        Some(2.0)
    );

    let gw =
        Gateway::start(|c| c.smtp.nul_bytes = portcullis::config::schema::NulBytes::Strip).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["n@example.test"]).await;
    let (code, text) = c.data(b"Subject: n\r\n\r\nhel\0lo\0\r\n.\0\r\n").await;
    assert_eq!(code, 250, "{text}");
    let m = gw.delivered("example.test", "n");
    assert!(!m[0].contains(&0), "{:?}", String::from_utf8_lossy(&m[0]));
    // `.` NUL was a line of content: its dot was stuffing, its NUL is gone.
    assert!(
        m[0].ends_with(b"Subject: n\r\n\r\nhello\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&m[0])
    );
}

#[tokio::test]
async fn long_lines_pass_by_default_and_are_rejected_on_request() {
    let line = |n: usize| {
        let mut body = b"Subject: l\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', n));
        body.extend_from_slice(b"\r\n");
        body
    };
    // As Postfix: relayed unchanged, neither cut nor folded.
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["l@example.test"]).await;
    assert_eq!(c.data(&line(5000)).await.0, 250);
    let m = gw.delivered("example.test", "l");
    assert!(m[0].ends_with(&line(5000)), "the long line was changed");

    let gw =
        Gateway::start(|c| c.smtp.long_lines = portcullis::config::schema::LongLines::Reject).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["l@example.test"]).await;
    let (code, text) = c.data(&line(999)).await;
    assert_eq!((code, text.contains("5.6.0")), (550, true), "{text}");
    assert!(text.contains("998"), "{text}");
    // 998 characters is the limit itself (RFC 5322 §2.1.1), and the session went on.
    c.envelope("a@sender.example", &["l@example.test"]).await;
    assert_eq!(c.data(&line(998)).await.0, 250);
    let m = gw.delivered("example.test", "l");
    assert_eq!(m.len(), 1);
    assert!(m[0].ends_with(&line(998)));
}

#[tokio::test]
async fn bdat_chunks_are_assembled_and_refused_chunks_are_consumed() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["chunky@example.test"])
        .await;
    c.send(b"BDAT 16\r\nSubject: chunk\r\n").await;
    assert_eq!(c.read_reply().await.0, 250);
    c.send(b"BDAT 10 LAST\r\n\r\n.body.\r\n").await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 250, "{text}");
    let m = gw.delivered("example.test", "chunky");
    assert!(
        m[0].ends_with(b"Subject: chunk\r\n\r\n.body.\r\n"),
        "{:?}",
        String::from_utf8_lossy(&m[0])
    );
    // BDAT out of order: refused, but its bytes are read so the next command parses.
    c.send(b"BDAT 6\r\nQUIT\r\n").await;
    assert_eq!(c.read_reply().await.0, 503);
    assert_eq!(c.cmd("NOOP").await.0, 250);
    // BDAT 0 LAST on an empty chunk sequence is valid.
    c.envelope("a@sender.example", &["chunky@example.test"])
        .await;
    c.send(b"BDAT 8\r\nX: y\r\n\r\n").await;
    assert_eq!(c.read_reply().await.0, 250);
    assert_eq!(c.cmd("BDAT 0 LAST").await.0, 250);
    assert_eq!(gw.delivered("example.test", "chunky").len(), 2);
}

#[tokio::test]
async fn session_limit_gets_421() {
    let gw = Gateway::start(|c| c.limits.max_sessions = 2).await;
    let a = gw.client().await;
    let _b = gw.client().await;
    let mut third = LineClient::connect(gw.addr).await;
    let (code, text) = third.read_reply().await;
    assert_eq!((code, text.contains("4.3.2")), (421, true), "{text}");
    assert_eq!(
        gw.metric("portcullis_sessions_total{result=\"rejected_capacity\"}")
            .await,
        Some(1.0)
    );
    drop(a);
    // The slot frees up once that session has ended.
    let mut freed = false;
    for _ in 0..100 {
        let mut again = LineClient::connect(gw.addr).await;
        if again.read_reply().await.0 == 220 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "a closed session did not release its slot");
}

#[tokio::test]
async fn proxy_protocol_from_trusted_peer_sets_the_client_address() {
    let gw =
        Gateway::start(|c| c.proxy_protocol.trusted = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let mut c = LineClient::connect(gw.addr).await;
    c.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n")
        .await;
    assert_eq!(c.read_reply().await.0, 220);
    c.envelope("a@sender.example", &["p@example.test"]).await;
    assert_eq!(c.data(b"Subject: p\r\n\r\nx\r\n").await.0, 250);
    let m = gw.delivered("example.test", "p");
    assert!(
        String::from_utf8_lossy(&m[0]).contains("([203.0.113.9])"),
        "{}",
        String::from_utf8_lossy(&m[0])
    );

    // A trusted peer that sends no PROXY header is dropped.
    let mut c = LineClient::connect(gw.addr).await;
    c.send(b"EHLO not-a-proxy\r\n").await;
    assert_eq!(c.read_reply().await.0, 0);
}

#[tokio::test]
async fn proxy_header_from_untrusted_peer_is_just_a_bad_command() {
    let gw =
        Gateway::start(|c| c.proxy_protocol.trusted = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let mut c = gw.client().await;
    assert_eq!(
        c.cmd("PROXY TCP4 203.0.113.9 127.0.0.1 40000 25").await.0,
        500
    );
}

#[tokio::test]
async fn ipv4_and_ipv6_listeners_share_a_port() {
    let port = common::free_port();
    let gw = Gateway::start(|c| {
        c.listen = vec![
            format!("127.0.0.1:{port}").parse().unwrap(),
            format!("[::1]:{port}").parse().unwrap(),
        ];
    })
    .await;
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut c = LineClient::connect(addr.parse().unwrap()).await;
        assert_eq!(c.read_reply().await.0, 220, "{addr}");
        c.envelope("a@sender.example", &["six@example.test"]).await;
        assert_eq!(c.data(b"Subject: v\r\n\r\nx\r\n").await.0, 250, "{addr}");
    }
    let msgs = gw.delivered("example.test", "six");
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs.iter()
            .any(|m| String::from_utf8_lossy(m).contains("([IPv6:::1])"))
    );
}

/// Every reply code until the gateway closes the connection.
async fn codes_until_close(c: &mut LineClient) -> Vec<(u16, String)> {
    let mut replies = Vec::new();
    loop {
        let reply = c.read_reply().await;
        if reply.0 == 0 {
            return replies;
        }
        replies.push(reply);
    }
}

/// The bytes a smuggler hides behind a chunk size the parser cannot hold: if any of it ran as
/// commands, a second message would reach `victim`.
const SMUGGLED: &[u8] = b"Subject: first\r\n\r\nx\r\n\r\nRSET\r\nMAIL FROM:<evil@smuggler.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n.\r\n";

#[tokio::test]
async fn bdat_size_beyond_u64_is_refused_and_nothing_after_it_runs() {
    let gw = Gateway::start(|_| {}).await;
    // 10000000000000000000024 used to wrap to 24 (a 24-byte chunk, the rest as commands);
    // 100000000000000000000000 to 0 (an empty message relayed and acknowledged).
    for size in ["10000000000000000000024", "100000000000000000000000"] {
        let mut c = gw.client().await;
        c.envelope("a@sender.example", &["big@example.test"]).await;
        let mut line = format!("BDAT {size} LAST\r\n").into_bytes();
        line.extend_from_slice(SMUGGLED);
        c.send(&line).await;
        let replies = codes_until_close(&mut c).await;
        let codes: Vec<u16> = replies.iter().map(|r| r.0).collect();
        assert_eq!(codes, vec![501, 421], "{size}: {replies:?}");
        assert!(
            replies[0].1.contains("5.5.4") && replies[0].1.contains("out of range"),
            "{replies:?}"
        );
    }
    assert!(gw.delivered("example.test", "big").is_empty());
    assert!(gw.delivered("example.test", "victim").is_empty());
    // One MAIL per session, the envelope's: none of the smuggled lines ran.
    assert_eq!(
        gw.metric("portcullis_commands_total{command=\"MAIL\"}")
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn mail_size_beyond_u64_is_refused_not_wrapped() {
    let gw = Gateway::start(|c| c.limits.max_message_size = 1000).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    for size in ["100000000000000000000000", "18446744073709551616"] {
        let (code, text) = c
            .cmd(&format!("MAIL FROM:<a@sender.example> SIZE={size}"))
            .await;
        assert_eq!(code, 501, "{size}: {text}");
        assert!(
            text.contains("5.5.4") && text.contains("out of range"),
            "{text}"
        );
        // No transaction started.
        assert_eq!(c.cmd("RCPT TO:<s@example.test>").await.0, 503);
    }
    // The largest number that fits is read as itself, and is over the limit.
    let (code, text) = c
        .cmd("MAIL FROM:<a@sender.example> SIZE=18446744073709551615")
        .await;
    assert_eq!((code, text.contains("5.3.4")), (552, true), "{text}");
    let (code, text) = c.cmd("MAIL FROM:<a@sender.example> SIZE=x").await;
    assert_eq!((code, text.contains("5.5.4")), (501, true), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250, "the session goes on");
    assert!(gw.delivered("example.test", "s").is_empty());
}

#[tokio::test]
async fn bdat_with_extra_words_is_refused_and_its_chunk_dropped() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["words@example.test"])
        .await;
    // The chunk is "QUIT\n": read and dropped, never a command.
    c.send(b"BDAT 5 LAST extra\r\nQUIT\n").await;
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("5.5.4")), (501, true), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250, "QUIT in the chunk ran");
    // In a BDAT sequence, a refused chunk ends the transaction (RFC 3030 §2).
    c.send(b"BDAT 4\r\nab\r\n").await;
    assert_eq!(c.read_reply().await.0, 250);
    c.send(b"BDAT 4 LAST now\r\ncd\r\n").await;
    assert_eq!(c.read_reply().await.0, 501);
    assert_eq!(c.cmd("BDAT 0 LAST").await.0, 503, "the transaction is over");
    assert!(gw.delivered("example.test", "words").is_empty());
}

#[tokio::test]
async fn bdat_chunk_over_the_size_limit_is_read_then_552() {
    let gw = Gateway::start(|c| c.limits.max_message_size = 100).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["huge@example.test"]).await;
    // A chunk over the limit is read to its end (its bytes are no commands) and dropped.
    let mut chunk = b"BDAT 300\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'Q', 294));
    chunk.extend_from_slice(b"QUIT\r\n");
    c.send(&chunk).await;
    assert_eq!(c.read_reply().await.0, 250);
    let (code, text) = c.cmd("BDAT 0 LAST").await;
    assert_eq!((code, text.contains("5.3.4")), (552, true), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250, "the stream is in sync");
    assert!(gw.delivered("example.test", "huge").is_empty());
}

#[tokio::test]
async fn verbs_without_parameters_refuse_them() {
    let gw = Gateway::start(|c| c.limits.max_errors = 100).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let (code, text) = c.cmd("STARTTLS now").await;
    assert_eq!((code, text.contains("5.5.4")), (501, true), "{text}");
    c.envelope("a@sender.example", &["plain@example.test"])
        .await;
    for line in ["DATA x", "RSET x", "QUIT x"] {
        let (code, text) = c.cmd(line).await;
        assert_eq!(
            (code, text.contains("5.5.4")),
            (501, true),
            "{line}: {text}"
        );
    }
    // NOOP and HELP take an argument (RFC 5321 §4.1.1.8, §4.1.1.9).
    assert_eq!(c.cmd("NOOP x").await.0, 250);
    assert_eq!(c.cmd("HELP MAIL").await.0, 214);
    // RSET x reset nothing and QUIT x closed nothing: the transaction goes on.
    assert_eq!(c.data(b"Subject: p\r\n\r\nx\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "plain").len(), 1);
    assert_eq!(c.cmd("QUIT").await.0, 221);
}

#[tokio::test]
async fn help_names_only_what_ehlo_offers() {
    let gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    let (code, text) = c.cmd("HELP").await;
    assert_eq!(code, 214);
    assert!(text.contains("BDAT"), "{text}");
    assert!(!text.contains("STARTTLS"), "no tls: configured: {text}");
}
