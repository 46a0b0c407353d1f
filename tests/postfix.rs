//! The gateway in front of a real Postfix: each test starts its own throwaway Postfix
//! backend (tests/common/postfix.rs) and an in-process gateway relaying to it in real time,
//! and drives them with real clients (swaks, Python's smtplib, Postfix's own smtp client)
//! or raw SMTP lines. Requires postfix, swaks and python3 (./scripts/test.sh installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Gateway;
use common::postfix::Postfix;
use portcullis::config::Config;

/// A backend Postfix and a gateway relaying to it (accepting example.net only).
async fn setup() -> (Postfix, Gateway) {
    setup_with(|_| {}).await
}

async fn setup_with(tweak: impl FnOnce(&mut Config)) -> (Postfix, Gateway) {
    let pf = blocking(Postfix::backend).await;
    let gw = gateway_for(&pf, tweak).await;
    (pf, gw)
}

/// A gateway relaying to `pf` (accepting example.net only).
async fn gateway_for(pf: &Postfix, tweak: impl FnOnce(&mut Config)) -> Gateway {
    let port = pf.port;
    Gateway::start(|c| {
        c.backend.url = format!("smtp://127.0.0.1:{port}").parse().unwrap();
        c.accepted_domains =
            portcullis::config::domains::AcceptedDomains::parse(&["example.net"]).unwrap();
        tweak(c);
    })
    .await
}

/// Runs a blocking program off the runtime (the in-process gateway keeps serving);
/// returns (exit code, stdout + stderr).
async fn run(program: &str, args: Vec<String>) -> (i32, String) {
    let program = program.to_string();
    blocking(move || {
        let out = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}); ./scripts/test.sh installs it")
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    })
    .await
}

/// swaks against the gateway; `extra` follows the server option.
async fn swaks(gw: &Gateway, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "--server".to_string(),
        gw.addr.to_string(),
        "--timeout".into(),
        "20".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run("swaks", args).await
}

/// `python3 -c SCRIPT GATEWAY-PORT`
async fn python(script: &str, gw: SocketAddr) -> (i32, String) {
    let args = vec!["-c".to_string(), script.to_string(), gw.port().to_string()];
    run("python3", args).await
}

/// Blocking work (subprocesses, the Postfix harness) off the runtime, so the in-process
/// gateway keeps serving; a panic inside is re-raised here with its own message.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The queue id in a "250 2.0.0 Ok: queued as ID" reply.
fn queue_id(reply: &str) -> String {
    let (_, rest) = reply
        .split_once("queued as ")
        .unwrap_or_else(|| panic!("no queue id in {reply:?}"));
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(!id.is_empty(), "no queue id in {reply:?}");
    id
}

/// The folded header starting at `prefix` (e.g. "Received: from x"), unfolded lines joined.
fn header_starting(msg: &str, prefix: &str) -> Option<String> {
    let start = msg.find(prefix)?;
    let mut out = String::new();
    for (i, line) in msg[start..].lines().enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        out.push_str(line.trim());
        out.push(' ');
    }
    Some(out)
}

/// The gateway's own Received header (the one naming Portcullis), unfolded.
fn gateway_received(msg: &str) -> String {
    let at = msg
        .find("(Portcullis)")
        .unwrap_or_else(|| panic!("no gateway Received header:\n{msg}"));
    let start = msg[..at]
        .rfind("Received: ")
        .expect("Received: before (Portcullis)");
    header_starting(&msg[start..], "Received: ").unwrap()
}

/// The id in Postfix's own Received header (`by <host> (Postfix) with ESMTP id ID`).
fn postfix_id(pf: &Postfix, msg: &str) -> String {
    let by = format!("by {} (Postfix) with ", pf.hostname());
    let start = msg
        .find(&by)
        .unwrap_or_else(|| panic!("no {by:?} in:\n{msg}"));
    let rest = &msg[start + by.len()..];
    let rest = &rest[rest.find(" id ").expect("id") + 4..];
    rest.chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// a. swaks from a distinct loopback address: Postfix's Received header names the original
/// client (XCLIENT worked), and the gateway's own Received header is there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_with_xclient_identity() {
    let (pf, gw) = setup().await;
    let (rc, out) = swaks(
        &gw,
        &[
            "--local-interface",
            "127.0.0.7",
            "--ehlo",
            "client.example",
            "--from",
            "sender@example.org",
            "--to",
            "alice@example.net",
            "--header",
            "Subject: xclient test",
            "--body",
            "hello through the gateway",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as "), "{out}");
    let (msgs, pf) = blocking(move || (pf.wait_for_messages("alice", 1, 10), pf)).await;
    let msg = &msgs[0];
    let postfix_received =
        header_starting(msg, "Received: from client.example (unknown [127.0.0.7])")
            .unwrap_or_else(|| panic!("Postfix did not see the original client 127.0.0.7:\n{msg}"));
    assert!(
        postfix_received.contains(&format!("by {} (Postfix) with ESMTP id", pf.hostname())),
        "{postfix_received}"
    );
    let gw_received = header_starting(msg, "Received: from client.example ([127.0.0.7])")
        .unwrap_or_else(|| panic!("no gateway Received header:\n{msg}"));
    assert!(
        gw_received.contains("by gw.example.test (Portcullis) with ESMTP id"),
        "{gw_received}"
    );
    assert!(
        gw_received.contains("for <alice@example.net>"),
        "{gw_received}"
    );
    // Postfix prepends its header above ours.
    assert!(
        msg.find("(Postfix)").unwrap() < msg.find("(Portcullis)").unwrap(),
        "{msg}"
    );
    assert!(msg.contains("Subject: xclient test"), "{msg}");
    assert!(msg.contains("hello through the gateway"), "{msg}");
    // And Postfix logged the XCLIENT identity, not the gateway's.
    assert!(
        pf.wait_for_log(&["client=unknown[127.0.0.7]"], 10)
            .is_some(),
        "{}",
        pf.log()
    );
}

/// b. An unknown user: Postfix's 550 5.1.1 is the client's RCPT reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_gets_postfix_550_at_rcpt() {
    let (pf, gw) = setup().await;
    let (rc, out) = swaks(
        &gw,
        &[
            "--local-interface",
            "127.0.0.7",
            "--from",
            "sender@example.org",
            "--to",
            "nosuch@example.net",
        ],
    )
    .await;
    assert_eq!(rc, 24, "swaks should fail at RCPT:\n{out}");
    assert!(
        out.contains(
            "<** 550 5.1.1 <nosuch@example.net>: Recipient address rejected: User unknown"
        ),
        "{out}"
    );
    // The reply really came from Postfix (it logged the reject for the XCLIENT address).
    let line = blocking(move || {
        pf.wait_for_log(
            &["NOQUEUE: reject: RCPT from unknown[127.0.0.7]", "550 5.1.1"],
            10,
        )
    })
    .await;
    assert!(line.is_some(), "Postfix did not log the reject");
}

/// b2. Unknown users have their own limit (`limits.max_unknown_recipients`, 20 by default),
/// not `max_errors` (10): a message to 40 recipients of which 10 are unknown to Postfix
/// reaches the other 30, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipients_below_their_limit_do_not_end_the_session() {
    let users: Vec<String> = (0..30).map(|i| format!("user{i}")).collect();
    let pf = blocking({
        let users = users.clone();
        move || Postfix::backend_with_users(&users)
    })
    .await;
    let gw = gateway_for(&pf, |c| assert_eq!(c.limits.max_errors, 10)).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<list@example.org>").await.0, 250);
    let mut known = users.iter();
    for i in 0..40 {
        if i % 4 == 3 {
            let (code, text) = c.cmd(&format!("RCPT TO:<gone{i}@example.net>")).await;
            assert_eq!((code, text.contains("5.1.1")), (550, true), "{text}");
        } else {
            let user = known.next().unwrap();
            let (code, text) = c.cmd(&format!("RCPT TO:<{user}@example.net>")).await;
            assert_eq!(code, 250, "{user}: {text}");
        }
    }
    let (code, text) = c.data(b"Subject: to thirty\r\n\r\nhello\r\n").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221, "the session is still open");
    let pf = blocking(move || {
        for user in &users {
            pf.wait_for_messages(user, 1, 20);
        }
        pf
    })
    .await;
    assert!(pf.maildir_messages("alice").is_empty());
    for limit in ["errors", "unknown_recipients"] {
        let series = format!("portcullis_limit_hits_total{{limit=\"{limit}\"}}");
        assert_eq!(gw.metric(&series).await, Some(0.0), "{series}");
    }
}

/// b3. A dictionary attack still ends: the 20th user unknown to Postfix gets its 550, then
/// the session gets `421 4.7.0` and is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_attack_ends_at_the_unknown_recipient_limit() {
    let (_pf, gw) = setup().await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<harvest@example.org>").await.0, 250);
    for i in 1..20 {
        let (code, text) = c.cmd(&format!("RCPT TO:<guess{i}@example.net>")).await;
        assert_eq!(
            (code, text.contains("5.1.1")),
            (550, true),
            "guess {i}: {text}"
        );
    }
    let (code, text) = c.cmd("RCPT TO:<guess20@example.net>").await;
    assert_eq!((code, text.contains("5.1.1")), (550, true), "{text}");
    let (code, text) = c.read_reply().await;
    assert_eq!(
        (
            code,
            text.contains("4.7.0"),
            text.contains("unknown recipients")
        ),
        (421, true, true),
        "{text}"
    );
    assert_eq!(c.read_reply().await.0, 0, "connection closed");
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"unknown_recipients\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"errors\"}")
            .await,
        Some(0.0)
    );
}

/// c. Relaying to a foreign domain: 550 5.7.1 from the gateway; Postfix never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_attempt_refused_by_gateway() {
    let (pf, gw) = setup().await;
    // The foreign recipient first, then a local one in the same transaction, so that a
    // backend session exists and its log is there to search.
    let (rc, out) = swaks(
        &gw,
        &[
            "--from",
            "sender@example.org",
            "--to",
            "someone@elsewhere.example,alice@example.net",
        ],
    )
    .await;
    assert!(
        out.contains("<** 550 5.7.1 Relay access denied"),
        "gateway did not refuse the relay attempt:\n{out}"
    );
    assert_eq!(rc, 0, "the local recipient should still go through:\n{out}");
    let pf = blocking(move || {
        pf.wait_for_messages("alice", 1, 10);
        pf.wait_for_log(&["to=<alice@example.net>", "status=sent"], 10)
            .expect("delivery logged");
        pf
    })
    .await;
    let log = pf.log();
    assert!(
        !log.contains("elsewhere.example"),
        "Postfix saw the foreign recipient:\n{log}"
    );
}

/// d. A pipelined transaction with two recipients: one Postfix transaction, both delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batch_to_two_recipients() {
    let (pf, gw) = setup().await;
    let (rc, out) = swaks(
        &gw,
        &[
            "--pipeline",
            "--from",
            "sender@example.org",
            "--to",
            "alice@example.net,bob@example.net",
            "--header",
            "Subject: pipelined",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}");
    let gw_id = queue_id(&out);
    let (a, b, pf) = blocking(move || {
        let a = pf.wait_for_messages("alice", 1, 10);
        let b = pf.wait_for_messages("bob", 1, 10);
        (a, b, pf)
    })
    .await;
    assert!(a[0].contains("Subject: pipelined") && b[0].contains("Subject: pipelined"));
    // One backend transaction: the same Postfix queue id as in the client's 250.
    assert_eq!(postfix_id(&pf, &a[0]), gw_id, "{}", a[0]);
    assert_eq!(postfix_id(&pf, &b[0]), gw_id, "{}", b[0]);
    // With two recipients the gateway's Received header names none of them (Bcc privacy).
    let ours = gateway_received(&a[0]);
    assert!(ours.contains("with ESMTP id"), "{ours}");
    assert!(!ours.contains("for <"), "{ours}");
}

const PY_TWO_MESSAGES: &str = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.example', timeout=20)
print('EHLO', s.ehlo()[0])
for i, rcpt in enumerate(['alice@example.net', 'bob@example.net']):
    if i:
        print('RSET', s.rset()[0])
    print('MAIL', s.mail('py@example.org')[0])
    print('RCPT', s.rcpt(rcpt)[0])
    # smtplib dot-stuffs the line starting with '.'; the delivered copy must have one dot.
    body = 'Subject: py %d\r\n\r\nmessage number %d\r\n.dotted line\r\n' % (i + 1, i + 1)
    code, msg = s.data(body.encode())
    print('DATA', code, msg.decode())
print('QUIT', s.quit()[0])
"#;

/// e. Python smtplib, two transactions in one session (RSET between): both delivered over
/// one reused backend connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_two_messages_one_session_reuses_backend() {
    let (pf, gw) = setup().await;
    let (rc, out) = python(PY_TWO_MESSAGES, gw.addr).await;
    assert_eq!(rc, 0, "{out}");
    let data: Vec<&str> = out.lines().filter(|l| l.starts_with("DATA ")).collect();
    assert_eq!(data.len(), 2, "{out}");
    for line in &data {
        assert!(line.starts_with("DATA 250 2.0.0 Ok: queued as "), "{out}");
    }
    assert_ne!(queue_id(data[0]), queue_id(data[1]), "{out}");
    assert!(
        out.contains("RSET 250") && out.contains("QUIT 221"),
        "{out}"
    );
    let (a, b, pf) = blocking(move || {
        let a = pf.wait_for_messages("alice", 1, 10);
        let b = pf.wait_for_messages("bob", 1, 10);
        (a, b, pf)
    })
    .await;
    assert!(a[0].contains("Subject: py 1"), "{}", a[0]);
    assert!(
        a[0].ends_with("\nmessage number 1\n.dotted line\n"),
        "{}",
        a[0]
    );
    assert!(b[0].contains("Subject: py 2"), "{}", b[0]);
    assert!(
        b[0].ends_with("\nmessage number 2\n.dotted line\n"),
        "{}",
        b[0]
    );
    assert_eq!(postfix_id(&pf, &a[0]), queue_id(data[0]));
    assert_eq!(postfix_id(&pf, &b[0]), queue_id(data[1]));
    // Connection reuse: Postfix saw one SMTP session carrying both transactions.
    let disconnect = blocking(move || {
        pf.wait_for_log(&["disconnect from", "mail=2", "data=2"], 10)
            .map(|l| (l, pf.log()))
            .ok_or_else(|| pf.log())
    })
    .await;
    let (line, log) = disconnect.unwrap_or_else(|log| {
        panic!("backend connection not reused for the second transaction:\n{log}")
    });
    // Exactly one backend session carried mail (the others are probes: EHLO/QUIT at most).
    let mail_sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("disconnect from") && l.contains(" mail="))
        .collect();
    assert_eq!(mail_sessions, vec![line.as_str()], "{log}");
    // A completed transaction needs no RSET: the backend's reply to the message ended it.
    assert!(!line.contains("rset="), "{line}");
}

/// f. Size limit: a 20 KB message against max_message_size 10000 gets 552 after the data and
/// is not delivered; SIZE=20000 on MAIL gets 552 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_refused_with_552() {
    let (pf, gw) = setup_with(|c| c.limits.max_message_size = 10_000).await;
    let body: String = (0..200)
        .map(|i| format!("{i:04} {}\n", "x".repeat(95)))
        .collect();
    assert!(body.len() >= 20_000);
    let (rc, out) = swaks(
        &gw,
        &[
            "--from",
            "sender@example.org",
            "--to",
            "alice@example.net",
            "--body",
            &body,
        ],
    )
    .await;
    assert!(
        out.contains("<** 552 5.3.4 Message size exceeds fixed maximum message size"),
        "{out}"
    );
    assert_eq!(
        rc, 26,
        "swaks: message refused after the final dot expected:\n{out}"
    );

    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let (code, text) = c.cmd("MAIL FROM:<sender@example.org> SIZE=20000").await;
    assert_eq!(code, 552, "{text}");
    assert!(text.contains("5.3.4"), "{text}");
    // A small message to bob afterwards: once it is delivered, alice's would have been too.
    let (code, text) = c.cmd("MAIL FROM:<sender@example.org> SIZE=100").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await.0, 250);
    let (code, text) = c.data(b"Subject: small\r\n\r\nsmall\r\n").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221);
    let pf = blocking(move || {
        pf.wait_for_messages("bob", 1, 10);
        pf
    })
    .await;
    assert!(
        pf.maildir_messages("alice").is_empty(),
        "oversized message delivered"
    );
    assert!(pf.queue_json().is_empty(), "{:?}", pf.queue_json());
    assert!(!pf.log().contains("to=<alice@example.net>"), "{}", pf.log());
}

/// g. BDAT in two chunks (a line split across them, a line starting with a dot): the backend's
/// 250 with its queue id, and the content delivered intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunks_relayed_to_postfix() {
    let (pf, gw) = setup().await;
    let mut c = gw.client().await;
    let (code, ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    assert!(ehlo.lines().any(|l| l[4..].trim() == "CHUNKING"), "{ehlo}");
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<alice@example.net>").await;
    assert_eq!(code, 250, "{text}");
    let chunk1 = "Subject: bdat test\r\nFrom: <sender@example.org>\r\n\r\nfirst line of the bo";
    let chunk2 = "dy\r\n.a line starting with a dot\r\n..two dots\r\nlast line\r\n";
    c.send(format!("BDAT {}\r\n{chunk1}", chunk1.len()).as_bytes())
        .await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 250, "{text}");
    c.send(format!("BDAT {} LAST\r\n{chunk2}", chunk2.len()).as_bytes())
        .await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 250, "{text}");
    let id = queue_id(&text);
    assert_eq!(c.cmd("QUIT").await.0, 221);
    let (msgs, pf) = blocking(move || (pf.wait_for_messages("alice", 1, 10), pf)).await;
    let msg = &msgs[0];
    assert_eq!(
        postfix_id(&pf, msg),
        id,
        "the 250 was not Postfix's:\n{msg}"
    );
    assert!(msg.contains("Subject: bdat test\n"), "{msg}");
    assert!(
        msg.ends_with(
            "\n\nfirst line of the body\n.a line starting with a dot\n..two dots\nlast line\n"
        ),
        "content changed:\n{msg}"
    );
}

/// h. Backend down: Postfix (as the sending MTA) gets 4xx and keeps the message; once the
/// backend is back, a flush delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_defers_and_nothing_is_lost() {
    let (pf, gw) = setup().await;
    let gw_addr = gw.addr;
    let (mut pf, client) = blocking(move || {
        let client = Postfix::client(gw_addr);
        let mut pf = pf;
        pf.stop();
        client.sendmail(
            "me@client.test",
            "alice@example.net",
            "Subject: while the backend was down\n\nkeep me\n",
        );
        (pf, client)
    })
    .await;
    let (deferred, client) = blocking(move || {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let q = client.queue_json();
            if let Some(line) = q
                .iter()
                .find(|l| l.contains("\"queue_name\": \"deferred\"") && l.contains("451 4.4.1"))
            {
                return (line.clone(), client);
            }
            if Instant::now() > end {
                panic!("not deferred with 451 4.4.1: {q:?}\n{}", client.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await;
    assert!(deferred.contains("Backend unavailable"), "{deferred}");
    assert!(deferred.contains("alice@example.net"), "{deferred}");
    assert!(pf.maildir_messages("alice").is_empty());

    // Backend back: the client's retry (forced with a flush) delivers the message.
    let (msgs, client, _pf) = blocking(move || {
        pf.start();
        client.flush();
        let msgs = pf.wait_for_messages("alice", 1, 15);
        (msgs, client, pf)
    })
    .await;
    assert!(
        msgs[0].contains("Subject: while the backend was down"),
        "{}",
        msgs[0]
    );
    assert!(msgs[0].contains("keep me"));
    assert!(
        msgs[0].contains("Received: from client.test ([127.0.0.1])"),
        "{}",
        msgs[0]
    );
    let client = blocking(move || {
        let end = Instant::now() + Duration::from_secs(10);
        while !client.queue_json().is_empty() {
            assert!(Instant::now() < end, "{:?}", client.queue_json());
            std::thread::sleep(Duration::from_millis(100));
        }
        client
    })
    .await;
    let sent = client.wait_for_log(&["to=<alice@example.net>", "status=sent"], 10);
    assert!(sent.is_some(), "{}", client.log());
}

/// i. The backend dies between RCPT and DATA: the end of DATA gets 451, never 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dies_mid_transaction_gives_451() {
    let (pf, gw) = setup().await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<alice@example.net>").await;
    assert_eq!(code, 250, "{text}");
    assert!(
        text.contains("2.1.5"),
        "RCPT reply should be Postfix's: {text}"
    );
    let mut pf = blocking(move || {
        let mut pf = pf;
        pf.stop();
        pf
    })
    .await;
    assert!(!common::postfix::port_open(pf.port));
    let (code, text) = c.data(b"Subject: doomed\r\n\r\nbody\r\n").await;
    assert_eq!(code, 451, "end of DATA after the backend died: {text}");
    // The session goes on: a new transaction after the backend is back works.
    let pf = blocking(move || {
        pf.start();
        pf
    })
    .await;
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<bob@example.net>").await;
    assert_eq!(code, 250, "{text}");
    let (code, text) = c.data(b"Subject: after\r\n\r\nbody\r\n").await;
    assert_eq!(code, 250, "{text}");
    let pf = blocking(move || {
        pf.wait_for_messages("bob", 1, 10);
        pf
    })
    .await;
    assert!(pf.maildir_messages("alice").is_empty());
}

/// j. Postfix's own SMTP client relays through the gateway to the backend: delivered, and the
/// client logs status=sent with the backend's queue id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_client_through_gateway() {
    let (pf, gw) = setup().await;
    let gw_addr = gw.addr;
    let (msgs, pf, client) = blocking(move || {
        let client = Postfix::client(gw_addr);
        client.sendmail(
            "me@client.test",
            "alice@example.net",
            "Subject: from postfix\n\nrelayed by postfix\n",
        );
        let msgs = pf.wait_for_messages("alice", 1, 15);
        (msgs, pf, client)
    })
    .await;
    let msg = &msgs[0];
    assert!(msg.contains("Subject: from postfix") && msg.contains("relayed by postfix"));
    assert!(
        msg.contains("Received: from client.test ([127.0.0.1])"),
        "{msg}"
    );
    let sent = blocking(move || client.wait_for_log(&["status=sent", "queued as"], 10)).await;
    let sent = sent.expect("client log has no status=sent");
    assert!(
        sent.contains(&format!("relay=127.0.0.1[127.0.0.1]:{}", gw_addr.port())),
        "{sent}"
    );
    assert_eq!(queue_id(&sent), postfix_id(&pf, msg), "{sent}\n{msg}");
}

const PY_STARTTLS: &str = r#"
import smtplib, ssl, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='tls.example', timeout=20)
s.ehlo()
assert s.has_extn('starttls'), s.esmtp_features
print('STARTTLS', s.starttls(context=ssl._create_unverified_context())[0])
s.ehlo()
assert not s.has_extn('starttls'), s.esmtp_features
print('CIPHER', s.sock.cipher())
print('MAIL', s.mail('tls@example.org')[0])
print('RCPT', s.rcpt('alice@example.net')[0])
code, msg = s.data(b'Subject: over tls\r\n\r\nencrypted hop\r\n')
print('DATA', code, msg.decode())
s.quit()
"#;

/// k. STARTTLS with a certificate generated now: delivered, and our Received header says ESMTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_relay() {
    let certs = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (pf, gw) = setup_with(move |c| {
        c.tls = Some(portcullis::config::schema::TlsConfig {
            cert,
            key,
            require: Default::default(),
        });
    })
    .await;
    let (rc, out) = python(PY_STARTTLS, gw.addr).await;
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("STARTTLS 220"), "{out}");
    assert!(out.contains("DATA 250 2.0.0 Ok: queued as "), "{out}");
    let (msgs, _pf) = blocking(move || (pf.wait_for_messages("alice", 1, 10), pf)).await;
    let msg = &msgs[0];
    let ours = header_starting(msg, "Received: from tls.example ([127.0.0.1])")
        .unwrap_or_else(|| panic!("no gateway Received header:\n{msg}"));
    assert!(
        ours.contains("by gw.example.test (Portcullis) with ESMTPS id"),
        "{ours}"
    );
    assert!(msg.contains("encrypted hop"), "{msg}");
}

/// Postfix's Received header (the one `by <host> (Postfix)`), unfolded.
fn postfix_received(pf: &Postfix, msg: &str) -> String {
    let by = format!("by {} (Postfix)", pf.hostname());
    let at = msg
        .find(&by)
        .unwrap_or_else(|| panic!("no {by:?} in:\n{msg}"));
    let start = msg[..at]
        .rfind("Received: ")
        .expect("Received: before Postfix's by");
    header_starting(&msg[start..], "Received: ").unwrap()
}

/// l. A kept backend connection that Postfix closed on its idle timeout (421) is replaced
/// by a fresh one: the client never sees the stale connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_kept_backend_connection_is_replaced() {
    let (pf, gw) = setup().await;
    let pf = blocking(move || {
        let mut pf = pf;
        pf.set(&["smtpd_timeout = 1s"]);
        pf
    })
    .await;
    let mut c = gw.client().await;
    c.envelope("sender@example.org", &["alice@example.net"])
        .await;
    assert_eq!(c.data(b"Subject: first\r\n\r\none\r\n").await.0, 250);
    // Longer than the backend's smtpd_timeout: the kept connection is dead by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<bob@example.net>").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.data(b"Subject: second\r\n\r\ntwo\r\n").await.0, 250);
    let (pf, msgs) = blocking(move || {
        let m = pf.wait_for_messages("bob", 1, 10);
        (pf, m)
    })
    .await;
    assert!(msgs[0].contains("Subject: second"));
    drop(pf);
}

/// m. A second EHLO with another name reaches the backend (the kept connection with the old
/// XCLIENT identity is dropped), and a HELO client is logged by Postfix as SMTP, not ESMTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_changes_reach_postfix() {
    let (pf, gw) = setup().await;
    let mut c = gw.client().await;
    c.envelope("sender@example.org", &["alice@example.net"])
        .await;
    assert_eq!(c.data(b"Subject: first\r\n\r\none\r\n").await.0, 250);
    assert_eq!(c.cmd("HELO second.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await.0, 250);
    assert_eq!(c.data(b"Subject: second\r\n\r\ntwo\r\n").await.0, 250);
    let (pf, msgs) = blocking(move || {
        let m = pf.wait_for_messages("bob", 1, 10);
        (pf, m)
    })
    .await;
    let received = postfix_received(&pf, &msgs[0]);
    assert!(
        received.starts_with("Received: from second.example "),
        "{received}"
    );
    assert!(
        received.contains(" with SMTP id "),
        "HELO client must stay SMTP: {received}"
    );
    let alice = pf.maildir_messages("alice");
    let first = postfix_received(&pf, &alice[0]);
    assert!(
        first.starts_with("Received: from client.example ") && first.contains(" with ESMTP id "),
        "{first}"
    );
}

/// n. Postfix answers 421 (and hangs up) at MAIL, RCPT, DATA and the final dot, through
/// access maps. Each is the backend connection ending, not the client's: the client gets
/// `451 4.4.2`, its session goes on, and the next transaction opens a new backend
/// connection. Nothing is delivered but the messages whose transaction saw no 421.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_421_is_451_and_the_client_session_goes_on() {
    let (pf, gw) = setup().await;
    let pf = blocking(move || {
        let mut pf = pf;
        let etc = pf.etc();
        for (map, key, stage) in [
            ("rcpt421", "gone@example.net", "RCPT"),
            ("mail421", "mail421@example.org", "MAIL"),
            ("data421", "data421@example.org", "DATA"),
            ("eod421", "eod421@example.org", "end of data"),
        ] {
            std::fs::write(etc.join(map), format!("{key} 421 4.3.2 Closing at {stage}\n"))
                .unwrap();
        }
        let e = etc.display();
        pf.set(&[
            "smtpd_delay_reject = no",
            &format!("smtpd_sender_restrictions = check_sender_access texthash:{e}/mail421"),
            &format!(
                "smtpd_recipient_restrictions = check_recipient_access texthash:{e}/rcpt421, reject_unlisted_recipient"
            ),
            &format!("smtpd_data_restrictions = check_sender_access texthash:{e}/data421"),
            &format!("smtpd_end_of_data_restrictions = check_sender_access texthash:{e}/eod421"),
        ]);
        pf
    })
    .await;
    let failed = |(code, text): (u16, String)| {
        assert_eq!((code, text.contains("4.4.2")), (451, true), "{text}");
    };
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);

    // RCPT: a 421 after an accepted recipient breaks the transaction, so DATA gets 451 too.
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.net>").await.0, 250);
    failed(c.cmd("RCPT TO:<gone@example.net>").await);
    failed(c.cmd("DATA").await);
    // A 421 to the first recipient: the next recipient opens a new backend connection.
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
    failed(c.cmd("RCPT TO:<gone@example.net>").await);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await.0, 250);
    assert_eq!(c.data(b"Subject: after rcpt 421\r\n\r\nx\r\n").await.0, 250);

    // MAIL: the backend's 421 comes with the first recipient (the kept connection, then a
    // fresh one, both say 421).
    assert_eq!(c.cmd("MAIL FROM:<mail421@example.org>").await.0, 250);
    failed(c.cmd("RCPT TO:<alice@example.net>").await);
    assert_eq!(c.cmd("RSET").await.0, 250);

    // DATA and the final dot: the message is not accepted, the client keeps it.
    for sender in ["data421@example.org", "eod421@example.org"] {
        transaction(&mut c, sender, "alice@example.net").await;
        failed(c.data(b"Subject: refused\r\n\r\nx\r\n").await);
        assert_eq!(c.cmd("NOOP").await.0, 250, "{sender}: the session goes on");
    }

    // And the session still delivers.
    transaction(&mut c, "sender@example.org", "alice@example.net").await;
    assert_eq!(c.data(b"Subject: last\r\n\r\nx\r\n").await.0, 250);
    assert_eq!(c.cmd("QUIT").await.0, 221);
    let (pf, bob, alice) = blocking(move || {
        let bob = pf.wait_for_messages("bob", 1, 10);
        let alice = pf.wait_for_messages("alice", 1, 10);
        (pf, bob, alice)
    })
    .await;
    assert!(bob[0].contains("Subject: after rcpt 421"), "{}", bob[0]);
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert!(alice[0].contains("Subject: last"), "{}", alice[0]);
    assert_eq!(
        gw.metric("portcullis_backend_errors_total{kind=\"tempfail\"}")
            .await,
        // RCPT twice, MAIL (on the fresh connection: the kept one's failure is retried),
        // DATA, the final dot.
        Some(5.0)
    );
    drop(pf);
}

/// MAIL and one RCPT in an open session, each answered 250.
async fn transaction(c: &mut common::LineClient, from: &str, rcpt: &str) {
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    assert_eq!(r.0, 250, "{r:?}");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    assert_eq!(r.0, 250, "{r:?}");
}

/// o. Postfix answers the final dot after `timeouts.backend_data`: the client hears
/// `451 4.4.2`, never a 250 the backend has not given, and its session goes on. The backend
/// did take the message in the end, so the client's retry will deliver it twice: a late
/// 250 becomes a duplicate, never a loss (docs/design.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_final_reply_is_451_and_at_worst_a_duplicate() {
    let (pf, gw) = setup_with(|c| c.timeouts.backend_data = Duration::from_secs(1)).await;
    let pf = blocking(move || {
        let mut pf = pf;
        pf.set(&["smtpd_end_of_data_restrictions = sleep 3"]);
        pf
    })
    .await;
    let mut c = gw.client().await;
    c.envelope("sender@example.org", &["alice@example.net"])
        .await;
    let (code, text) = c.data(b"Subject: slow backend\r\n\r\nx\r\n").await;
    assert_eq!((code, text.contains("4.4.2")), (451, true), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250, "the session goes on");
    assert_eq!(
        gw.metric("portcullis_backend_errors_total{kind=\"timeout\"}")
            .await,
        Some(1.0)
    );
    let (pf, msgs) = blocking(move || {
        let m = pf.wait_for_messages("alice", 1, 15);
        (pf, m)
    })
    .await;
    assert!(msgs[0].contains("Subject: slow backend"), "{}", msgs[0]);
    drop(pf);
}

/// XCLIENT `NAME=` carries the rDNS check's outcome, so Postfix's name-based restrictions
/// see what Postfix would have found itself: the forward-confirmed name passes
/// `reject_unknown_client_hostname` and appears in Postfix's Received header; a PTR that does
/// not resolve back is `[UNAVAILABLE]` (rejected, `unknown_client_reject_code = 550`); a
/// failed PTR lookup is `[TEMPUNAVAIL]`, which Postfix defers (450) rather than rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_name_is_the_forward_confirmed_name() {
    use common::LineClient;
    use common::dns::{DnsFixture, Zone};
    let dns = DnsFixture::start(vec![
        Zone::root()
            .ptr("192.0.2.21".parse().unwrap(), "mx.good.test.")
            .a("mx.good.test", "192.0.2.21".parse().unwrap())
            .ptr("192.0.2.22".parse().unwrap(), "liar.bad.test.")
            .a("liar.bad.test", "192.0.2.99".parse().unwrap())
            .servfail("23.2.0.192.in-addr.arpa"),
    ])
    .await;
    let pf = blocking(|| {
        let mut pf = Postfix::backend();
        pf.set(&[
            "smtpd_client_restrictions = reject_unknown_client_hostname",
            "unknown_client_reject_code = 550",
        ]);
        pf
    })
    .await;
    let ns = dns.addr();
    let gw = gateway_for(&pf, move |c| {
        c.dns.nameservers = vec![ns];
        c.dns.timeout = Duration::from_secs(2);
        c.dns.attempts = 1;
        c.client_checks.rdns = true;
        c.proxy_protocol.trusted = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let session = |ip: &'static str| {
        let addr = gw.addr;
        async move {
            let mut c = LineClient::connect(addr).await;
            c.send(format!("PROXY TCP4 {ip} 127.0.0.1 40000 25\r\n").as_bytes())
                .await;
            assert_eq!(c.read_reply().await.0, 220);
            assert_eq!(c.cmd("EHLO client.example").await.0, 250);
            assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").await.0, 250);
            let rcpt = c.cmd("RCPT TO:<alice@example.net>").await;
            (c, rcpt)
        }
    };
    let (_, (code, text)) = session("192.0.2.22").await;
    assert_eq!(code, 550, "no confirmed name: [UNAVAILABLE] ({text})");
    let (_, (code, text)) = session("192.0.2.23").await;
    assert_eq!(code, 450, "PTR lookup failed: [TEMPUNAVAIL] ({text})");
    let (mut c, (code, text)) = session("192.0.2.21").await;
    assert_eq!(code, 250, "confirmed: {text}");
    assert_eq!(c.data(b"Subject: named\r\n\r\nhello\r\n").await.0, 250);
    let (msgs, pf) = blocking(move || (pf.wait_for_messages("alice", 1, 10), pf)).await;
    assert!(
        header_starting(
            &msgs[0],
            "Received: from client.example (mx.good.test [192.0.2.21])"
        )
        .is_some(),
        "{}",
        msgs[0]
    );
    assert!(
        pf.wait_for_log(&["client=mx.good.test[192.0.2.21]"], 10)
            .is_some(),
        "{}",
        pf.log()
    );
}

/// The message log line names the backend's queue id (`queued_as`), parsed from Postfix's
/// `250 2.0.0 Ok: queued as …`, so one message can be followed from the gateway's log into
/// Postfix's. Runs the real binary with JSON logs and reads its stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_log_line_carries_the_backend_queue_id() {
    use std::io::BufRead as _;
    let pf = blocking(Postfix::backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (gw_port, metrics_port) = (common::free_port(), common::free_port());
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: gw.example.test\nlisten: [\"127.0.0.1:{gw_port}\"]\naccepted_domains: [example.net]\n\
             backend: {{ url: \"smtp://127.0.0.1:{}\" }}\nmetrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\n\
             auth: {{ enabled: false }}\nclient_checks: {{ rdns: false, helo_dns: false }}\n\
             log: {{ format: json, level: info }}\n",
            pf.port
        ),
    )
    .unwrap();
    let mut child = Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child is killed whatever happens below.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _child = Kill(child);
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: SocketAddr = format!("127.0.0.1:{gw_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the gateway did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = common::LineClient::connect(addr).await;
    assert_eq!(c.read_reply().await.0, 220);
    c.envelope("sender@example.org", &["alice@example.net"])
        .await;
    let (code, text) = c.data(b"Subject: traced\r\n\r\nhello\r\n").await;
    assert_eq!(code, 250);
    let id = text
        .rsplit("queued as ")
        .next()
        .filter(|_| text.contains("queued as "))
        .unwrap_or_else(|| panic!("not Postfix's reply: {text}"))
        .trim()
        .to_string();
    let line = blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) if line.contains("\"message\":\"message\"") => return line,
                Ok(_) => continue,
                Err(e) => panic!("no message log line: {e}"),
            }
        }
    })
    .await;
    assert!(
        line.contains(&format!("\"queued_as\":\"{id}\"")),
        "queue id {id} not in {line}"
    );
    // And Postfix's log knows the message by that id.
    assert!(
        pf.wait_for_log(&[&format!("{id}: client=")], 10).is_some(),
        "{}",
        pf.log()
    );
}

/// MAIL goes to the backend with the first RCPT (PIPELINING): a sender Postfix refuses at
/// MAIL still gets Postfix's own refusal, at that first RCPT, with its text; the session
/// goes on and the next transaction, on a fresh connection, delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_the_backend_refuses_gets_its_reply_at_the_first_rcpt() {
    let (pf, gw) = setup().await;
    let pf = blocking(move || {
        let mut pf = pf;
        let map = pf.etc().join("senders");
        std::fs::write(&map, "refused@example.org 550 5.7.1 Sender refused here\n").unwrap();
        pf.set(&[
            "smtpd_delay_reject = no",
            &format!(
                "smtpd_sender_restrictions = check_sender_access texthash:{}",
                map.display()
            ),
        ]);
        pf
    })
    .await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<refused@example.org>").await.0, 250);
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.net>").await,
        (
            550,
            "550 5.7.1 <refused@example.org>: Sender address rejected: Sender refused here"
                .to_string()
        )
    );
    assert_eq!(c.cmd("RSET").await.0, 250);
    transaction(&mut c, "sender@example.org", "alice@example.net").await;
    assert_eq!(
        c.data(b"Subject: after a refused sender\r\n\r\nx\r\n")
            .await
            .0,
        250
    );
    let msgs = blocking(move || pf.wait_for_messages("alice", 1, 10)).await;
    assert!(
        msgs[0].contains("Subject: after a refused sender"),
        "{}",
        msgs[0]
    );
}
