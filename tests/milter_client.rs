//! The gateway's milter server against clients other than Postfix, for what Postfix never
//! sends: OpenDKIM's `miltertest` (Lua-scripted MTA side, tests/common/miltertest.rs) for
//! negotiation variants (protocol 6 with and without the no-reply flags and SETSYMLIST,
//! protocol 2), missing macros, ABORT in the middle of a body, an SMTP command Postfix
//! did not know (SMFIC_UNKNOWN), a refusal at MAIL (SMFIR_REPLYCODE) and the
//! end-of-message header operations; and hand-built packets over a raw TCP connection for
//! exact bytes and malformed input (too large, unknown command, truncated, zero length,
//! garbage, silence), after each of which the gateway must still serve a normal session.
//!
//! Every gateway is milter-only with authentication on, resolving through the in-process
//! DNS fixture (one empty root zone: every lookup is NXDOMAIN, so results are `none`).
//! Client addresses given in CONNECT are documentation addresses (192.0.2.0/24): they are
//! only data in a packet; nothing is ever sent to them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Gateway;
use common::dns::{DnsFixture, Zone};
use common::miltertest::{self, Run};
use portcullis::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AUTHSERV_ID: &str = "filter.example.test";

const POLICY: &str = "\
rules:
  - name: authenticated-submission
    when: { mail_from.authenticated: { regex: \".\" } }
    action: accept
  - name: refuse-sender
    when: { mail_from: refused@example.org }
    action: reject
    reply: { code: 550, enhanced: 5.7.1, text: Sender refused by the milter test rule }
  - name: refuse-header
    when: { header: { regex: \"(?i)^x-refuse: yes\" } }
    action: reject
    reply: { code: 550, enhanced: 5.7.1, text: Refused by the milter test rule }
";

/// A milter-only gateway (inet, free port) with authentication on, the test policy, and
/// `tweak` applied. The DNS fixture and the policy directory live as long as it.
struct Milter {
    gw: Gateway,
    _dns: DnsFixture,
    _dir: tempfile::TempDir,
}

async fn milter(tweak: impl FnOnce(&mut Config)) -> Milter {
    let dns = DnsFixture::start(vec![Zone::root()]).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let ns = dns.addr();
    let gw = Gateway::start_milter(move |c| {
        c.auth.enabled = true;
        c.auth.authserv_id = Some(AUTHSERV_ID.into());
        c.dns.nameservers = vec![ns];
        c.dns.timeout = Duration::from_secs(2);
        c.dns.attempts = 1;
        c.policy = Some(policy);
        tweak(c);
    })
    .await;
    Milter {
        gw,
        _dns: dns,
        _dir: dir,
    }
}

impl Milter {
    fn addr(&self) -> SocketAddr {
        self.gw.milter_addr.expect("inet milter listener")
    }

    /// Runs a miltertest script body (with `AUTHSERV` and `H`, a plain header set, defined)
    /// against this gateway, for at most 60 s.
    async fn miltertest(&self, body: &str) -> Run {
        let sock = miltertest::socket_arg(&self.gw.milter_sockets[0]);
        let body = format!("{LUA_COMMON}\n{body}");
        match tokio::task::spawn_blocking(move || {
            miltertest::run(&sock, &body, Duration::from_secs(60))
        })
        .await
        {
            Ok(run) => run,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.gw.metric_labeled(name, labels).await
    }
}

/// Runs `script` against a milter with the defaults and fails the test unless it passes
/// (`what` names it in the failure); returns the milter for further checks (metrics).
async fn passes(what: &str, script: &str) -> Milter {
    let m = milter(|_| {}).await;
    m.miltertest(script).await.assert_passed(what);
    m
}

/// Definitions every script body starts with.
const LUA_COMMON: &str = r#"
local AUTHSERV = "filter.example.test"
local H = {
  {"From", "Alice <alice@example.org>"},
  {"To", "Bob <bob@example.net>"},
  {"Subject", "hello from miltertest"},
  {"Date", "Tue, 01 Dec 2026 10:00:00 +0000"},
  {"Message-ID", "<mt-1@example.org>"},
}
local BODY = "Hello Bob,\r\n\r\nsee you.\r\n"
-- Connects (retrying briefly) with a short read timeout: a reply that never comes fails in
-- 3 s rather than miltertest's 10.
local function open()
  local conn = mt.connect(SOCK, 40, 0.05)
  check(conn ~= nil, "mt.connect returned nil")
  mt.set_timeout(3)
  return conn
end
local function greet(conn)
  ok("conninfo", mt.conninfo(conn, "mail.example.org", "192.0.2.25"))
  expect_continue(conn, "conninfo", SMFIP_NR_CONN)
  ok("helo", mt.helo(conn, "mail.example.org"))
  expect_continue(conn, "helo", SMFIP_NR_HELO)
end
"#;

// ---------------------------------------------------------------------------------------
// Harness check (runs without the milter server).

/// miltertest against a port nothing listens on fails cleanly and quickly: exit 1 with
/// the script's failure line naming the connect error, no hang.
#[tokio::test]
async fn miltertest_against_a_closed_port_fails_cleanly() {
    let port = common::free_port();
    let run = tokio::task::spawn_blocking(move || {
        miltertest::run(
            &format!("inet:{port}@127.0.0.1"),
            "local conn = mt.connect(SOCK)\nerror(\"connected to a closed port\", 0)",
            Duration::from_secs(30),
        )
    })
    .await
    .unwrap();
    assert!(!run.timed_out, "{run:?}");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(!run.passed(), "{run:?}");
    let fail = run
        .lines()
        .into_iter()
        .find(|l| l.starts_with(miltertest::FAIL_PREFIX))
        .unwrap_or_else(|| panic!("no failure line: {run:?}"));
    assert!(
        fail.contains("connect") && fail.contains("Connection refused"),
        "{run:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Negotiation.

/// Version 6 with everything Postfix 3.7 offers (actions 0x1ff, protocol 0x1fffff, the
/// no-reply flags included), Postfix-like macros, two messages on one connection: the
/// milter asks for the actions it needs (add and change headers), answers exactly the
/// stages it did not negotiate away (a reply too many or too few puts miltertest out of
/// step and the end-of-message checks fail), and inserts our A-R for each message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_6_as_postfix_offers_it() {
    passes(
        "v6 as Postfix offers it",
        r#"
local conn = open()
negotiate(conn, 6, 0x1ff, 0x1fffff)
check(mt.test_action(conn, SMFIF_ADDHDRS), "SMFIF_ADDHDRS not requested")
check(mt.test_action(conn, SMFIF_CHGHDRS), "SMFIF_CHGHDRS not requested")
check(not mt.test_option(conn, SMFIP_NOCONNECT), "the milter skips CONNECT")
check(not mt.test_option(conn, SMFIP_NOMAIL), "the milter skips MAIL")
check(not mt.test_option(conn, SMFIP_NOHDRS), "the milter skips the headers")
check(not mt.test_option(conn, SMFIP_NOBODY), "the milter skips the body")
mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.net", "{daemon_name}", "mx.example.net",
         "v", "Postfix 3.7.11", "_", "mail.example.org [192.0.2.25]")
greet(conn)
mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "sender@example.org", "{mail_host}", "example.org")
local ar1 = message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.echo("first: " .. ar1)
mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "other@example.org")
local ar2 = message(conn, "<other@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.echo("second: " .. ar2)
check(ar2:find("other@example.org", 1, true) ~= nil, "second A-R is not about the second sender: " .. ar2)
mt.disconnect(conn)
"#,
    )
    .await;
}

/// Version 6 without any no-reply flag offered (0x1fffff minus NR_*): the milter must not
/// request one, and every stage gets its SMFIR_CONTINUE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_6_without_no_reply_flags() {
    passes(
        "v6 without NR flags",
        r#"
local conn = open()
negotiate(conn, 6, 0x1ff, 0x1fffff & ~0xff080)
for _, f in ipairs({SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT,
                    SMFIP_NR_DATA, SMFIP_NR_UNKN, SMFIP_NR_HDR, SMFIP_NR_EOH, SMFIP_NR_BODY}) do
  check(not mt.test_option(conn, f), "the milter requested a no-reply flag not offered: " .. f)
end
greet(conn)
message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.disconnect(conn)
"#,
    )
    .await;
}

/// Version 6 without SMFIF_SETSYMLIST offered: the milter does not request it (nor any
/// macro list) and works as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_6_without_setsymlist() {
    passes(
        "v6 without SETSYMLIST",
        r#"
local conn = open()
negotiate(conn, 6, 0xff, 0x1fffff)
check(not mt.test_action(conn, SMFIF_SETSYMLIST), "SETSYMLIST requested though not offered")
greet(conn)
message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.disconnect(conn)
"#,
    )
    .await;
}

/// Protocol version 2 (Sendmail 8.12 era: actions 0x1f, steps NOCONNECT..NOEOH only): the
/// milter requests nothing newer, answers every stage, and adds our A-R (inserted or
/// appended) at end of message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_is_served() {
    passes(
        "v2",
        r#"
local conn = open()
negotiate(conn, 2, 0x1f, 0x7f)
check(not mt.test_action(conn, SMFIF_SETSYMLIST), "SETSYMLIST requested from a v2 MTA")
check(not mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE requested from a v2 MTA")
greet(conn)
send_message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY)
local inserted = mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results")
local added = mt.eom_check(conn, MT_HDRADD, "Authentication-Results")
check(inserted or added, "no Authentication-Results for the v2 MTA")
check(added_count(conn, "Authentication-Results") == 1, "A-R not exactly once")
local v = mt.getheader(conn, "Authentication-Results", 0):gsub("^%s+", "")
check(v:sub(1, #AUTHSERV + 1) == AUTHSERV .. ";", "A-R not ours: " .. v)
mt.disconnect(conn)
"#,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Sessions Postfix would not send.

/// No macros at all (no `j`, no `i`, no `{mail_addr}`...): the message is judged and gets
/// our A-R all the same (the authserv-id comes from the config, not from `j`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_macros_at_all() {
    passes(
        "no macros",
        r#"
local conn = open()
greet(conn)
local ar = message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
check(ar:find("sender@example.org", 1, true) ~= nil, "A-R does not name the sender: " .. ar)
mt.disconnect(conn)
"#,
    )
    .await;
}

/// ABORT in the middle of a body whose header the policy refuses, then on the same
/// connection a clean message: accepted, one A-R about its own sender; then one with the
/// refused header again: refused (so the first one would have been, had it finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_body_then_a_fresh_verdict() {
    passes(
        "abort then fresh verdict",
        r#"
local conn = open()
greet(conn)
ok("mailfrom 1", mt.mailfrom(conn, "<first@example.org>"))
expect_continue(conn, "mailfrom 1", SMFIP_NR_MAIL)
ok("rcptto 1", mt.rcptto(conn, "<bob@example.net>"))
expect_continue(conn, "rcptto 1", SMFIP_NR_RCPT)
ok("header 1", mt.header(conn, "X-Refuse", "yes"))
expect_continue(conn, "header 1", SMFIP_NR_HDR)
ok("eoh 1", mt.eoh(conn))
expect_continue(conn, "eoh 1", SMFIP_NR_EOH)
ok("body 1", mt.bodystring(conn, "half a body\r\n"))
expect_continue(conn, "body 1", SMFIP_NR_BODY)
ok("abort", mt.abort(conn))

local ar = message(conn, "<second@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
check(ar:find("second@example.org", 1, true) ~= nil, "A-R not about the second message: " .. ar)
check(ar:find("first@example.org", 1, true) == nil, "A-R still about the aborted one: " .. ar)

ok("mailfrom 3", mt.mailfrom(conn, "<third@example.org>"))
expect_continue(conn, "mailfrom 3", SMFIP_NR_MAIL)
ok("rcptto 3", mt.rcptto(conn, "<bob@example.net>"))
expect_continue(conn, "rcptto 3", SMFIP_NR_RCPT)
ok("header 3", mt.header(conn, "X-Refuse", "yes"))
expect_continue(conn, "header 3", SMFIP_NR_HDR)
ok("eoh 3", mt.eoh(conn))
expect_continue(conn, "eoh 3", SMFIP_NR_EOH)
ok("body 3", mt.bodystring(conn, "a whole body\r\n"))
expect_continue(conn, "body 3", SMFIP_NR_BODY)
ok("eom 3", mt.eom(conn))
expect(conn, "eom 3", SMFIR_REPLYCODE)
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Refused by the milter test rule"),
      "not our replycode at end of message")
mt.disconnect(conn)
"#,
    )
    .await;
}

/// No check reads SMTP commands Postfix did not recognise, so negotiation switches them off
/// (SMFIP_NOUNKNOWN: offer only what is used), and a message still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_smtp_commands_are_negotiated_away() {
    let m = passes(
        "unknown commands negotiated away",
        r#"
local conn = open()
negotiate(conn, 6, 0x1ff, 0x1fffff)
check(mt.test_option(conn, SMFIP_NOUNKNOWN),
      "no check reads unknown SMTP commands: the milter must not ask for them")
greet(conn)
message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.disconnect(conn)
"#,
    )
    .await;
    let n = m
        .metric("portcullis_milter_packets_total", &[("command", "unknown")])
        .await;
    assert!(
        n.is_none_or(|v| v == 0.0),
        "no unknown packet may have been sent: {n:?}"
    );
}

/// `{auth_authen}` at MAIL becomes `mail_from.authenticated`: the policy's accept rule for
/// authenticated submission lets the otherwise refused sender through; the same sender
/// without the macro is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_submission_is_a_fact() {
    passes(
        "authenticated submission",
        r#"
local conn = open()
greet(conn)
mt.macro(conn, SMFIC_MAIL, "{auth_authen}", "alice", "{auth_type}", "PLAIN")
ok("mailfrom", mt.mailfrom(conn, "<refused@example.org>"))
expect(conn, "mailfrom authenticated", SMFIR_CONTINUE)
ok("abort", mt.abort(conn))
ok("mailfrom", mt.mailfrom(conn, "<refused@example.org>"))
expect(conn, "mailfrom unauthenticated", SMFIR_REPLYCODE)
mt.disconnect(conn)
"#,
    )
    .await;
}

/// A message larger than `limits.max_message_size` is never accepted truncated: the end of
/// message gets a replycode (552 5.3.4) and the limit hit is counted; a small message on
/// the same connection is accepted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_gets_a_replycode() {
    let m = milter(|c| c.limits.max_message_size = 2000).await;
    m.miltertest(
        r#"
local conn = open()
greet(conn)
ok("mailfrom", mt.mailfrom(conn, "<sender@example.org>"))
expect_continue(conn, "mailfrom", SMFIP_NR_MAIL)
ok("rcptto", mt.rcptto(conn, "<bob@example.net>"))
expect_continue(conn, "rcptto", SMFIP_NR_RCPT)
ok("header", mt.header(conn, "Subject", "big"))
expect_continue(conn, "header", SMFIP_NR_HDR)
ok("eoh", mt.eoh(conn))
expect_continue(conn, "eoh", SMFIP_NR_EOH)
ok("body", mt.bodystring(conn, string.rep("0123456789abcdef\r\n", 300)))
expect_continue(conn, "body", SMFIP_NR_BODY)
ok("eom", mt.eom(conn))
expect(conn, "eom over the limit", SMFIR_REPLYCODE)
message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.disconnect(conn)
"#,
    )
    .await
    .assert_passed("size limit");
    let hits = m
        .metric("portcullis_limit_hits_total", &[("limit", "message_size")])
        .await;
    assert_eq!(hits, Some(1.0), "message_size hits: {hits:?}");
    let rejected = m
        .metric(
            "portcullis_messages_total",
            &[("mode", "milter"), ("verdict", "reject")],
        )
        .await;
    assert_eq!(rejected, Some(1.0), "milter rejects: {rejected:?}");
}

/// A policy rule on the sender refuses at MAIL with SMFIR_REPLYCODE carrying our reply;
/// after ABORT, a message from another sender on the same connection is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_at_mail_is_a_replycode() {
    passes(
        "replycode at MAIL",
        r#"
local conn = open()
greet(conn)
ok("mailfrom", mt.mailfrom(conn, "<refused@example.org>"))
expect(conn, "mailfrom", SMFIR_REPLYCODE)
ok("abort", mt.abort(conn))
message(conn, "<sender@example.org>", "<bob@example.net>", H, BODY, AUTHSERV)
mt.disconnect(conn)
"#,
    )
    .await;
}

/// End of message: our A-R inserted at index 0, the forged one in our authserv-id deleted
/// (SMFIR_CHGHEADER with an empty value, index 1 among the Authentication-Results the
/// milter was given), the other host's left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_message_inserts_ours_and_deletes_the_forgery() {
    passes(
        "eom header operations",
        r#"
local conn = open()
greet(conn)
local headers = {
  {"Authentication-Results", AUTHSERV .. "; dkim=pass header.d=bank.example"},
  {"Authentication-Results", "other.example; spf=pass"},
}
for _, h in ipairs(H) do table.insert(headers, h) end
local ar = message(conn, "<sender@example.org>", "<bob@example.net>", headers, BODY, AUTHSERV)
check(ar:find("bank.example", 1, true) == nil, "our A-R repeats the forgery: " .. ar)
check(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results", 1),
      "the forged Authentication-Results (index 1) was not deleted")
check(not mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results", 2),
      "the other host's Authentication-Results (index 2) was deleted")
check(not mt.eom_check(conn, MT_HDRCHANGE, "Authentication-Results", "other.example; spf=pass"),
      "the other host's Authentication-Results was rewritten")
mt.disconnect(conn)
"#,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Raw packets.

const SMFIC_OPTNEG: u8 = b'O';
const SMFIC_MACRO: u8 = b'D';
const SMFIC_CONNECT: u8 = b'C';
const SMFIC_HELO: u8 = b'H';
const SMFIC_MAIL: u8 = b'M';
const SMFIC_RCPT: u8 = b'R';
const SMFIC_DATA: u8 = b'T';
const SMFIC_HEADER: u8 = b'L';
const SMFIC_EOH: u8 = b'N';
const SMFIC_BODY: u8 = b'B';
const SMFIC_EOM: u8 = b'E';
const SMFIC_QUIT: u8 = b'Q';

const SMFIR_CONTINUE: u8 = b'c';
const SMFIR_ACCEPT: u8 = b'a';
const SMFIR_REPLYCODE: u8 = b'y';
const SMFIR_INSHEADER: u8 = b'i';
const SMFIR_ADDHEADER: u8 = b'h';
/// Replies that end a stage (the others at end of message are modifications).
const FINAL: [u8; 6] = [b'c', b'a', b'r', b't', b'd', b'y'];

// Protocol bits (libmilter mfdef.h).
const NOCONNECT: u32 = 0x1;
const NOHELO: u32 = 0x2;
const NOMAIL: u32 = 0x4;
const NORCPT: u32 = 0x8;
const NOBODY: u32 = 0x10;
const NOHDRS: u32 = 0x20;
const NOEOH: u32 = 0x40;
const NR_HDR: u32 = 0x80;
const NODATA: u32 = 0x200;
const NR_CONN: u32 = 0x1000;
const NR_HELO: u32 = 0x2000;
const NR_MAIL: u32 = 0x4000;
const NR_RCPT: u32 = 0x8000;
const NR_DATA: u32 = 0x10000;
const NR_EOH: u32 = 0x40000;
const NR_BODY: u32 = 0x80000;
const SETSYMLIST: u32 = 0x100;

/// What the milter answered to OPTNEG.
#[derive(Debug)]
struct Negotiated {
    version: u32,
    actions: u32,
    protocol: u32,
    /// Bytes after the 12 (SETSYMLIST macro lists).
    rest: Vec<u8>,
}

/// One raw milter connection (MTA side).
struct Raw {
    s: TcpStream,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect to the milter");
        Raw { s }
    }

    /// Writes raw bytes; an error (the peer closed) is returned, not a panic.
    async fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await
    }

    /// One packet: u32 BE length (command byte included), command, data — one write.
    async fn send(&mut self, cmd: u8, data: &[u8]) {
        let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(cmd);
        p.extend_from_slice(data);
        self.raw(&p).await.expect("send packet");
    }

    /// The next packet; panics on EOF or after 5 s.
    async fn recv(&mut self) -> (u8, Vec<u8>) {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), self.s.read_exact(&mut len))
            .await
            .expect("no reply within 5 s")
            .expect("connection closed instead of a reply");
        let len = u32::from_be_bytes(len) as usize;
        assert!(
            (1..=1024 * 1024).contains(&len),
            "reply length {len} out of range"
        );
        let mut p = vec![0u8; len];
        tokio::time::timeout(Duration::from_secs(5), self.s.read_exact(&mut p))
            .await
            .expect("truncated reply")
            .expect("connection closed in a reply");
        let data = p.split_off(1);
        (p[0], data)
    }

    /// Nothing arrives within `wait` (a stage negotiated as no-reply).
    async fn assert_silent(&mut self, wait: Duration, after: &str) {
        let mut b = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(wait, self.s.read(&mut b)).await {
            panic!(
                "after {after}: expected no reply, got {r:?} (byte {:?})",
                b[0] as char
            );
        }
    }

    /// Reads until the milter closes the connection (EOF or reset), for at most `secs`.
    async fn closed_within(&mut self, secs: u64) -> bool {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(end, self.s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    async fn optneg(&mut self, version: u32, actions: u32, protocol: u32) -> Negotiated {
        let mut d = Vec::new();
        for v in [version, actions, protocol] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        self.send(SMFIC_OPTNEG, &d).await;
        let (cmd, data) = self.recv().await;
        assert_eq!(cmd, SMFIC_OPTNEG, "OPTNEG answered with {:?}", cmd as char);
        assert!(data.len() >= 12, "OPTNEG reply of {} bytes", data.len());
        let u = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap());
        let n = Negotiated {
            version: u(0),
            actions: u(4),
            protocol: u(8),
            rest: data[12..].to_vec(),
        };
        assert!(
            (2..=version).contains(&n.version),
            "version {} answered to an offer of {version}",
            n.version
        );
        assert_eq!(
            n.actions & !actions,
            0,
            "actions {:#x} not within the offer {actions:#x}",
            n.actions
        );
        assert_eq!(
            n.protocol & !protocol,
            0,
            "protocol {:#x} not within the offer {protocol:#x}",
            n.protocol
        );
        if actions & SETSYMLIST == 0 || n.actions & SETSYMLIST == 0 {
            assert!(n.rest.is_empty(), "macro lists without SETSYMLIST: {n:?}");
        }
        n
    }

    /// A stage the milter must answer with SMFIR_CONTINUE.
    async fn expect_continue(&mut self, cmd: u8, data: &[u8]) {
        self.send(cmd, data).await;
        let (r, d) = self.recv().await;
        assert_eq!(
            r,
            SMFIR_CONTINUE,
            "{:?} answered with {:?} {:?}",
            cmd as char,
            r as char,
            String::from_utf8_lossy(&d)
        );
    }

    /// End of message: (modifications, final reply).
    async fn eom(&mut self) -> (Vec<(u8, Vec<u8>)>, (u8, Vec<u8>)) {
        self.send(SMFIC_EOM, b"").await;
        let mut mods = Vec::new();
        loop {
            let p = self.recv().await;
            if FINAL.contains(&p.0) {
                return (mods, p);
            }
            mods.push(p);
        }
    }
}

fn cstr(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

fn connect_data() -> Vec<u8> {
    let mut d = cstr(&["mail.example.org"]);
    d.push(b'4');
    d.extend_from_slice(&25025u16.to_be_bytes());
    d.extend_from_slice(&cstr(&["192.0.2.25"]));
    d
}

/// The header name and value of an SMFIR_INSHEADER (`index` u32 first) or
/// SMFIR_ADDHEADER packet.
fn header_of(cmd: u8, data: &[u8]) -> (Option<u32>, String, String) {
    let (index, rest) = if cmd == SMFIR_INSHEADER {
        (
            Some(u32::from_be_bytes(data[..4].try_into().unwrap())),
            &data[4..],
        )
    } else {
        (None, data)
    };
    let parts: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
    assert!(
        parts.len() >= 3 && parts[2].is_empty(),
        "bad header packet {data:?}"
    );
    (
        index,
        String::from_utf8_lossy(parts[0]).into_owned(),
        String::from_utf8_lossy(parts[1]).into_owned(),
    )
}

/// Asserts the end-of-message modifications insert exactly one A-R of ours at index 0.
fn assert_our_ar(mods: &[(u8, Vec<u8>)]) {
    let ars: Vec<(Option<u32>, String)> = mods
        .iter()
        .filter(|(c, _)| *c == SMFIR_INSHEADER || *c == SMFIR_ADDHEADER)
        .map(|(c, d)| header_of(*c, d))
        .filter(|(_, n, _)| n.eq_ignore_ascii_case("Authentication-Results"))
        .map(|(i, _, v)| (i, v))
        .collect();
    assert_eq!(ars.len(), 1, "{mods:?}");
    assert_eq!(ars[0].0, Some(0), "not inserted at index 0: {ars:?}");
    assert!(
        ars[0]
            .1
            .trim_start()
            .starts_with(&format!("{AUTHSERV_ID};")),
        "{ars:?}"
    );
}

/// A complete, normal session where the MTA offers no step flags (protocol 0), so the
/// milter must answer every stage: connect, helo, one message with a full 65,535-byte body
/// chunk (Postfix's largest), our A-R at end of message, quit. Panics otherwise.
async fn normal_session(addr: SocketAddr) {
    let mut c = Raw::connect(addr).await;
    let n = c.optneg(6, 0x1ff, 0).await;
    assert_eq!(n.protocol, 0, "{n:?}");
    c.send(
        SMFIC_MACRO,
        &[&[SMFIC_CONNECT][..], &cstr(&["j", "mx.example.net"])].concat(),
    )
    .await;
    c.expect_continue(SMFIC_CONNECT, &connect_data()).await;
    c.expect_continue(SMFIC_HELO, &cstr(&["mail.example.org"]))
        .await;
    c.expect_continue(SMFIC_MAIL, &cstr(&["<sender@example.org>"]))
        .await;
    c.expect_continue(SMFIC_RCPT, &cstr(&["<bob@example.net>"]))
        .await;
    c.expect_continue(SMFIC_DATA, b"").await;
    for (name, value) in [
        ("From", "Alice <alice@example.org>"),
        ("To", "bob@example.net"),
        ("Subject", "a normal session"),
    ] {
        c.expect_continue(SMFIC_HEADER, &cstr(&[name, value])).await;
    }
    c.expect_continue(SMFIC_EOH, b"").await;
    let mut chunk = Vec::with_capacity(65535);
    while chunk.len() < 65535 {
        chunk.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n",
        );
    }
    chunk.truncate(65533);
    chunk.extend_from_slice(b"\r\n");
    c.expect_continue(SMFIC_BODY, &chunk).await;
    let (mods, last) = c.eom().await;
    assert!(
        last.0 == SMFIR_CONTINUE || last.0 == SMFIR_ACCEPT,
        "end of message answered {:?} {:?}",
        last.0 as char,
        String::from_utf8_lossy(&last.1)
    );
    assert_our_ar(&mods);
    c.send(SMFIC_QUIT, b"").await;
    assert!(
        c.closed_within(5).await,
        "the milter kept the connection after QUIT"
    );
}

/// A normal session works on a fresh gateway (the baseline of the malformed-input tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_normal_session() {
    let m = milter(|_| {}).await;
    normal_session(m.addr()).await;
}

/// With Postfix's full offer, the milter answers exactly the stages it did not negotiate
/// away: a reply for each stage without its NR flag, silence (checked for 300 ms) for
/// each stage with it; stages with a NO flag are not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_follow_the_negotiated_protocol() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    let n = c.optneg(6, 0x1ff, 0x1fffff).await;
    let p = n.protocol;
    let stages: Vec<(u8, Vec<u8>, u32, u32, &str)> = vec![
        (SMFIC_CONNECT, connect_data(), NOCONNECT, NR_CONN, "connect"),
        (
            SMFIC_HELO,
            cstr(&["mail.example.org"]),
            NOHELO,
            NR_HELO,
            "helo",
        ),
        (
            SMFIC_MAIL,
            cstr(&["<sender@example.org>"]),
            NOMAIL,
            NR_MAIL,
            "mail",
        ),
        (
            SMFIC_RCPT,
            cstr(&["<bob@example.net>"]),
            NORCPT,
            NR_RCPT,
            "rcpt",
        ),
        (SMFIC_DATA, Vec::new(), NODATA, NR_DATA, "data"),
        (
            SMFIC_HEADER,
            cstr(&["From", "alice@example.org"]),
            NOHDRS,
            NR_HDR,
            "header",
        ),
        (
            SMFIC_HEADER,
            cstr(&["Subject", "negotiated"]),
            NOHDRS,
            NR_HDR,
            "header",
        ),
        (SMFIC_EOH, Vec::new(), NOEOH, NR_EOH, "eoh"),
        (SMFIC_BODY, b"body\r\n".to_vec(), NOBODY, NR_BODY, "body"),
    ];
    for (cmd, data, no, nr, name) in stages {
        if p & no != 0 {
            continue;
        }
        c.send(cmd, &data).await;
        if p & nr != 0 {
            c.assert_silent(Duration::from_millis(300), name).await;
        } else {
            let (r, d) = c.recv().await;
            assert_eq!(
                r,
                SMFIR_CONTINUE,
                "{name}: {:?} {:?}",
                r as char,
                String::from_utf8_lossy(&d)
            );
        }
    }
    let (mods, last) = c.eom().await;
    assert!(
        last.0 == SMFIR_CONTINUE || last.0 == SMFIR_ACCEPT,
        "{last:?}"
    );
    assert_our_ar(&mods);
}

/// OPTNEG for version 2 (actions 0x1f, steps 0x7f): answered with version 2, within the
/// offer, no macro lists; a v2 session is answered at every stage not negotiated away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_version_2_negotiation() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    let n = c.optneg(2, 0x1f, 0x7f).await;
    assert_eq!(n.version, 2, "{n:?}");
    assert!(n.rest.is_empty(), "{n:?}");
    assert_eq!(
        n.protocol & (NOCONNECT | NOMAIL | NOHDRS | NOBODY),
        0,
        "{n:?}"
    );
    c.expect_continue(SMFIC_CONNECT, &connect_data()).await;
    if n.protocol & NOHELO == 0 {
        c.expect_continue(SMFIC_HELO, &cstr(&["mail.example.org"]))
            .await;
    }
    c.expect_continue(SMFIC_MAIL, &cstr(&["<sender@example.org>"]))
        .await;
    if n.protocol & NORCPT == 0 {
        c.expect_continue(SMFIC_RCPT, &cstr(&["<bob@example.net>"]))
            .await;
    }
    c.expect_continue(SMFIC_HEADER, &cstr(&["From", "alice@example.org"]))
        .await;
    if n.protocol & NOEOH == 0 {
        c.expect_continue(SMFIC_EOH, b"").await;
    }
    c.expect_continue(SMFIC_BODY, b"body\r\n").await;
    let (mods, last) = c.eom().await;
    assert!(
        last.0 == SMFIR_CONTINUE || last.0 == SMFIR_ACCEPT,
        "{last:?}"
    );
    let ars = mods
        .iter()
        .filter(|(cmd, d)| {
            (*cmd == SMFIR_INSHEADER || *cmd == SMFIR_ADDHEADER)
                && header_of(*cmd, d).1 == "Authentication-Results"
        })
        .count();
    assert_eq!(ars, 1, "{mods:?}");
}

/// SETSYMLIST: not offered, not taken (12-byte answer); offered, any macro lists that
/// follow are well formed (u32 stage 0..=6, then a NUL-terminated list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_setsymlist_only_when_offered() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    let n = c.optneg(6, 0xff, 0x1fffff).await;
    assert_eq!(n.actions & SETSYMLIST, 0, "{n:?}");
    assert!(n.rest.is_empty(), "{n:?}");

    let mut c = Raw::connect(m.addr()).await;
    let n = c.optneg(6, 0x1ff, 0x1fffff).await;
    let mut rest = &n.rest[..];
    while !rest.is_empty() {
        assert!(rest.len() > 4, "truncated macro list: {n:?}");
        let stage = u32::from_be_bytes(rest[..4].try_into().unwrap());
        assert!(stage <= 6, "macro list for stage {stage}: {n:?}");
        let end = rest[4..]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or_else(|| panic!("macro list without NUL: {n:?}"));
        rest = &rest[4 + end + 1..];
    }
    if !n.rest.is_empty() {
        assert_ne!(
            n.actions & SETSYMLIST,
            0,
            "macro lists without SETSYMLIST: {n:?}"
        );
    }
}

/// The refusal at MAIL in bytes: SMFIR_REPLYCODE with "550 5.7.1 <our text>" and a NUL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_replycode_bytes_at_mail() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    c.optneg(6, 0x1ff, 0).await;
    c.expect_continue(SMFIC_CONNECT, &connect_data()).await;
    c.expect_continue(SMFIC_HELO, &cstr(&["mail.example.org"]))
        .await;
    c.send(SMFIC_MAIL, &cstr(&["<refused@example.org>"])).await;
    let (r, d) = c.recv().await;
    assert_eq!(
        r,
        SMFIR_REPLYCODE,
        "{:?} {:?}",
        r as char,
        String::from_utf8_lossy(&d)
    );
    assert_eq!(
        d,
        b"550 5.7.1 Sender refused by the milter test rule\0".to_vec(),
        "{:?}",
        String::from_utf8_lossy(&d)
    );
}

// ---------------------------------------------------------------------------------------
// Malformed input: the connection is closed, the gateway goes on serving.

async fn protocol_errors(m: &Milter, reason: &str) -> Option<f64> {
    m.metric(
        "portcullis_milter_protocol_errors_total",
        &[("reason", reason)],
    )
    .await
}

/// A packet longer than `max_packet_size` (1 MiB by default) after a good OPTNEG: closed
/// without reading it, counted as `too_large`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_the_size_limit_closes_the_connection() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    c.optneg(6, 0x1ff, 0).await;
    let mut p = ((1024 * 1024 + 1000) as u32).to_be_bytes().to_vec();
    p.push(SMFIC_BODY);
    p.extend_from_slice(&[b'x'; 1000]);
    let _ = c.raw(&p).await;
    assert!(
        c.closed_within(5).await,
        "still open after an oversized packet"
    );
    assert_eq!(protocol_errors(&m, "too_large").await, Some(1.0));
    normal_session(m.addr()).await;
}

/// An unknown command byte: closed, counted as `unknown_command`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_command_closes_the_connection() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    c.optneg(6, 0x1ff, 0).await;
    c.send(b'Z', b"abcd").await;
    assert!(c.closed_within(5).await, "still open after command 'Z'");
    assert_eq!(protocol_errors(&m, "unknown_command").await, Some(1.0));
    normal_session(m.addr()).await;
}

/// A packet cut short, then EOF: the milter closes its side too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_packet_then_eof_is_closed() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    c.optneg(6, 0x1ff, 0).await;
    c.expect_continue(SMFIC_CONNECT, &connect_data()).await;
    let mut p = 100u32.to_be_bytes().to_vec();
    p.push(SMFIC_HELO);
    p.extend_from_slice(b"mail.exa");
    c.raw(&p).await.unwrap();
    c.s.shutdown().await.unwrap();
    assert!(
        c.closed_within(5).await,
        "still open after a truncated packet and EOF"
    );
    normal_session(m.addr()).await;
}

/// A zero-length packet (not even a command byte): closed, counted as `malformed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_length_packet_closes_the_connection() {
    let m = milter(|_| {}).await;
    let mut c = Raw::connect(m.addr()).await;
    c.optneg(6, 0x1ff, 0).await;
    c.raw(&0u32.to_be_bytes()).await.unwrap();
    assert!(
        c.closed_within(5).await,
        "still open after a zero-length packet"
    );
    assert_eq!(protocol_errors(&m, "malformed").await, Some(1.0));
    normal_session(m.addr()).await;
}

/// 4 KiB of pseudo-random bytes instead of OPTNEG (the first byte has its top bit set, so
/// the length field says more than 2 GiB), then EOF: closed, a protocol error counted, and
/// other connections are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_the_connection() {
    let m = milter(|_| {}).await;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    garbage[0] |= 0x80;
    let mut c = Raw::connect(m.addr()).await;
    let _ = c.raw(&garbage).await;
    let _ = c.s.shutdown().await;
    assert!(c.closed_within(5).await, "still open after garbage");
    let (_, body) = m.gw.http_get("/metrics").await;
    let errors = common::metric_labeled(&body, "portcullis_milter_protocol_errors_total", &[]);
    assert!(errors.is_some_and(|v| v >= 1.0), "{errors:?}\n{body}");
    normal_session(m.addr()).await;
}

/// Silence longer than `milter.timeout` (1 s here) after OPTNEG: closed, counted as
/// `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_mta_is_timed_out() {
    let m = milter(|c| c.milter.timeout = Duration::from_secs(1)).await;
    let mut c = Raw::connect(m.addr()).await;
    c.optneg(6, 0x1ff, 0).await;
    let started = tokio::time::Instant::now();
    assert!(
        c.closed_within(10).await,
        "still open 10 s after a 1 s timeout"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(protocol_errors(&m, "timeout").await, Some(1.0));
    normal_session(m.addr()).await;
}
