//! Milter mode end to end: a real Postfix (tests/common/postfix.rs, `Postfix::milter_host`)
//! hands every smtpd session to the in-process gateway over the milter protocol (v6), and
//! real clients (swaks, or raw SMTP lines with `LineClient`) talk to Postfix's smtpd port.
//! Each test has its own Postfix, gateway (`listen: []`, milter only) and DNS fixture (the
//! gateway's only name server), so SPF, DKIM and DMARC results are real. XCLIENT on
//! Postfix's port presents the client address the SPF record authorises (127.0.0.5) or not
//! (127.0.0.9) to the milter.
//!
//! What Postfix 3.7 does with the milter's replies (measured here with a stand-in milter,
//! and what the assertions rely on):
//! - SMFIR_INSHEADER at index 0 puts the header above Postfix's own `Received:`; the
//!   delivered Maildir file then starts with the delivery agent's `Return-Path:`,
//!   `X-Original-To:` and `Delivered-To:`, then our Authentication-Results, then Postfix's
//!   `Received:`. So "topmost" here means: the first field after those three.
//! - SMFIR_CHGHEADER (delete) indexes count a header the milter inserted earlier in the
//!   same end of message, and shift after each delete: forged fields must be deleted
//!   before the insert, highest index first (test b has two forgeries around a foreign
//!   field, so any other order leaves one behind or deletes the wrong one).
//! - SMFIR_QUARANTINE puts the message in the hold queue (`postqueue -j`: `"queue_name":
//!   "hold"`); its reason text is not logged (`milter triggers HOLD action`).
//! - SMFIR_REPLYCODE at end of message: the client gets that exact reply after its dot.
//! - With no milter listening, `milter_default_action = tempfail`: 220 and EHLO succeed,
//!   MAIL gets `451 4.7.1 Service unavailable - try again later`.
//!
//! Requires postfix and swaks (./scripts/test.sh installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::dns::{DnsFixture, Zone};
use common::postfix::Postfix;
use common::{Gateway, LineClient, auth_results, fields, free_port};
use mail_auth::crypto::Ed25519Key;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::headers::HeaderWriter;
use portcullis::config::Config;
use portcullis::config::schema::{MilterQuarantine, MilterSocket};

/// The authserv-id the gateway is configured with (not its hostname, gw.example.test).
const AUTHSERV_ID: &str = "filter.example.test";
/// Authorised by `v=spf1 ip4:127.0.0.5 -all` at example.org.
const SPF_PASS_IP: &str = "127.0.0.5";
/// Not authorised: SPF fail.
const SPF_FAIL_IP: &str = "127.0.0.9";
const MAIL_FROM: &str = "sender@example.org";
/// A plain message to alice, as swaks arguments.
const PLAIN: [&str; 6] = [
    "--ehlo",
    "mail.example.org",
    "--from",
    MAIL_FROM,
    "--to",
    "alice@example.net",
];
/// The fields `virtual(8)` writes above everything when it delivers.
const DELIVERY_FIELDS: [&str; 3] = ["Return-Path", "X-Original-To", "Delivered-To"];

// ---------------------------------------------------------------------------------------
// DNS, keys, messages.

/// A generated Ed25519 key: PKCS#8 DER and the RFC 8463 TXT record.
struct Ed {
    pkcs8: Vec<u8>,
    txt: String,
}

fn sender_key() -> &'static Ed {
    static KEY: OnceLock<Ed> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        Ed {
            pkcs8: doc.as_ref().to_vec(),
            txt: format!(
                "v=DKIM1; k=ed25519; p={}",
                B64.encode(kp.public_key().as_ref())
            ),
        }
    })
}

/// example.org: SPF for 127.0.0.5, DMARC with policy `p`, the DKIM key `ed`. One root zone,
/// so every other name is a clean NXDOMAIN.
fn zone(dmarc_policy: &str) -> Zone {
    Zone::root()
        .txt("example.org", "v=spf1 ip4:127.0.0.5 -all")
        .txt("_dmarc.example.org", &format!("v=DMARC1; p={dmarc_policy}"))
        .txt("ed._domainkey.example.org", &sender_key().txt)
}

/// A message from alice@example.org to alice@example.net (CRLF, no line starts with a dot).
fn message(subject: &str, body: &str) -> String {
    common::message_to("Alice <alice@example.net>", subject, body)
}

const BODY: &str = "Hello,\r\n\r\nthe figures are attached.\r\n\r\n-- \r\nAlice\r\n";

/// `msg` with an ed25519-sha256 relaxed/relaxed DKIM-Signature of example.org prepended
/// (the field is folded: Postfix passes folded fields to the milter with LF inside).
fn sign(msg: &str) -> String {
    let key = Ed25519Key::from_pkcs8_der(&sender_key().pkcs8).expect("ed25519 key");
    let sig = DkimSigner::from_key(key)
        .domain("example.org")
        .selector("ed")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(msg.as_bytes())
        .expect("sign");
    sig.to_header() + msg
}

// ---------------------------------------------------------------------------------------
// The rig: DNS fixture, milter-only gateway, Postfix in front of it.

struct Rig {
    gw: Gateway,
    pf: Postfix,
    _dns: DnsFixture,
    /// Holds the policy file (and anything else a test writes).
    dir: tempfile::TempDir,
}

fn auth_on(c: &mut Config, ns: SocketAddr) {
    c.auth.enabled = true;
    c.auth.authserv_id = Some(AUTHSERV_ID.into());
    c.dns.nameservers = vec![ns];
    c.dns.timeout = Duration::from_secs(2);
    c.dns.attempts = 1;
}

/// DNS fixture with `zone(dmarc_policy)`, a milter-only gateway with authentication on
/// (and `policy` as its policy file when given), then `tweak`; then a Postfix whose
/// `smtpd_milters` is the gateway's (first) milter listener.
async fn rig(dmarc_policy: &str, policy: Option<&str>, tweak: impl FnOnce(&mut Config)) -> Rig {
    let dns = DnsFixture::start(vec![zone(dmarc_policy)]).await;
    let dir = tempfile::tempdir().unwrap();
    let policy_path = policy.map(|text| {
        let p = dir.path().join("policy.yaml");
        std::fs::write(&p, text).unwrap();
        p
    });
    let ns = dns.addr();
    let gw = Gateway::start_milter(move |c| {
        auth_on(c, ns);
        c.policy = policy_path;
        tweak(c);
    })
    .await;
    let spec = gw.milter_spec();
    let pf = sync(|| Postfix::milter_host(&spec));
    Rig {
        gw,
        pf,
        _dns: dns,
        dir,
    }
}

/// Blocking harness work (Postfix, polling) on this worker thread while the runtime's
/// other worker keeps the in-process gateway serving.
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// swaks against Postfix's smtpd port; returns (exit code, transcript). Bounded: swaks
/// times out each step after 20 s itself, and is killed after 90 s.
async fn swaks(pf: &Postfix, extra: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new("swaks");
    cmd.arg("--server")
        .arg(format!("127.0.0.1:{}", pf.port))
        .args(["--timeout", "20"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("swaks did not finish within 90 s")
        .unwrap_or_else(|e| panic!("cannot run swaks ({e}); ./scripts/test.sh installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The lines of a swaks transcript that carry an error reply (`<** ...`), without the marker.
fn swaks_errors(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|l| l.strip_prefix("<** "))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The one SMTP error of a swaks transcript, which must start with `prefix`.
fn the_error(out: &str, prefix: &str) -> String {
    let errors = swaks_errors(out);
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].starts_with(prefix), "{out}");
    errors[0].clone()
}

/// Postfix logged a line with every one of `needles` within 5 s (so the answer came from
/// where the test says), and a second later alice has exactly `delivered` messages and
/// the queue is empty.
fn assert_logged_then_nothing_more(pf: &Postfix, needles: &[&str], delivered: usize) {
    sync(|| {
        assert!(
            pf.wait_for_log(needles, 5).is_some(),
            "no log line with {needles:?}:\n{}",
            pf.log_tail(20)
        );
        assert_nothing_more(pf, "alice", delivered, 1);
    });
}

/// Writes `msg` into the rig's directory for `swaks --data FILE`; returns the path.
fn data_file(rig: &Rig, name: &str, msg: &str) -> String {
    let p: PathBuf = rig.dir.path().join(name);
    std::fs::write(&p, msg).unwrap();
    p.display().to_string()
}

/// An SMTP session on Postfix's smtpd port, after EHLO; with `client_ip`, XCLIENT first
/// presents that address and `helo` (Postfix then opens a new milter connection).
async fn session(pf: &Postfix, client_ip: Option<&str>, helo: &str) -> LineClient {
    let mut c = LineClient::connect(SocketAddr::from(([127, 0, 0, 1], pf.port))).await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 220, "{text}");
    let (code, text) = c.cmd(&format!("EHLO {helo}")).await;
    assert_eq!(code, 250, "{text}");
    if let Some(ip) = client_ip {
        assert!(text.contains("XCLIENT"), "XCLIENT not offered: {text}");
        let (code, text) = c
            .cmd(&format!(
                "XCLIENT NAME=[UNAVAILABLE] ADDR={ip} HELO={helo} PROTO=ESMTP"
            ))
            .await;
        assert_eq!(code, 220, "XCLIENT: {text}");
        let (code, text) = c.cmd(&format!("EHLO {helo}")).await;
        assert_eq!(code, 250, "{text}");
    }
    c
}

/// Dot-stuffs a CRLF message for DATA.
fn dot_stuff(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len() + 16);
    for line in msg.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
}

/// One transaction: MAIL, RCPTs, DATA, the message. Returns the first reply that is not
/// positive with the command it answered, or ("DATA", reply to the final dot).
async fn transaction(
    c: &mut LineClient,
    from: &str,
    rcpts: &[&str],
    msg: &str,
) -> (&'static str, u16, String) {
    let (code, text) = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    if code != 250 {
        return ("MAIL", code, text);
    }
    for r in rcpts {
        let (code, text) = c.cmd(&format!("RCPT TO:<{r}>")).await;
        if code != 250 {
            return ("RCPT", code, text);
        }
    }
    let (code, text) = c.cmd("DATA").await;
    if code != 354 {
        return ("DATA", code, text);
    }
    c.send(dot_stuff(msg).as_bytes()).await;
    c.send(b".\r\n").await;
    let (code, text) = c.read_reply().await;
    ("DATA", code, text)
}

// ---------------------------------------------------------------------------------------
// Reading what Postfix delivered.

/// Whether an A-R value is ours (authserv-id compared case-insensitively).
fn is_ours(ar: &str) -> bool {
    ar.split(';')
        .next()
        .is_some_and(|id| id.trim().eq_ignore_ascii_case(AUTHSERV_ID))
}

/// Our Authentication-Results in a delivered message, asserting where it is: the first
/// field after the delivery agent's (Return-Path, X-Original-To, Delivered-To), directly
/// above Postfix's own Received, exactly once, with our authserv-id. Returns its value.
fn our_auth_results(pf: &Postfix, msg: &str) -> String {
    let f = fields(msg);
    let top = f
        .iter()
        .position(|(n, _)| !DELIVERY_FIELDS.contains(&n.as_str()))
        .unwrap_or_else(|| panic!("no header fields besides the delivery agent's:\n{msg}"));
    assert_eq!(
        f[top].0, "Authentication-Results",
        "our Authentication-Results is not the topmost field:\n{msg}"
    );
    assert!(
        f[top].1.starts_with(&format!("{AUTHSERV_ID};")),
        "the topmost Authentication-Results is not ours ({AUTHSERV_ID}):\n{msg}"
    );
    let below = f
        .get(top + 1)
        .unwrap_or_else(|| panic!("nothing below our Authentication-Results:\n{msg}"));
    assert!(
        below.0 == "Received" && below.1.contains(&format!("by {} (Postfix)", pf.hostname())),
        "Postfix's Received is not right below our Authentication-Results:\n{msg}"
    );
    let ours: Vec<String> = auth_results(msg)
        .into_iter()
        .filter(|v| is_ours(v))
        .collect();
    assert_eq!(ours.len(), 1, "expected exactly one of ours:\n{msg}");
    ours[0].clone()
}

/// The word after `; method=` (or at the start) in an unfolded A-R value.
fn result_of(ar: &str, method: &str) -> String {
    let key = format!("; {method}=");
    let at = ar
        .find(&key)
        .unwrap_or_else(|| panic!("no {method} result in {ar:?}"));
    ar[at + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// The body of a delivered message (after the first empty line), LF line ends.
fn body_of(msg: &str) -> &str {
    msg.split_once("\n\n")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no body in:\n{msg}"))
}

fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits `secs` and asserts `user` still has exactly `n` messages and the queue holds
/// nothing (a refused message leaves no queue file; it must not show up late either).
fn assert_nothing_more(pf: &Postfix, user: &str, n: usize, secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
    let got = pf.maildir_messages(user);
    assert_eq!(got.len(), n, "{user} has unexpected mail: {got:#?}");
    assert_eq!(pf.queue_json(), Vec::<String>::new(), "queue not empty");
}

// ---------------------------------------------------------------------------------------
// Harness check (runs without the milter server): Postfix with no milter answers 4xx.

/// No milter listens where `smtpd_milters` points: `milter_default_action = tempfail`
/// makes Postfix answer MAIL with 451 4.7.1, and nothing is queued or delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_without_its_milter_answers_4xx() {
    let dead = free_port();
    let pf = sync(|| Postfix::milter_host(&format!("inet:127.0.0.1:{dead}")));
    let (rc, out) = swaks(
        &pf,
        &[
            "--ehlo",
            "client.example",
            "--from",
            MAIL_FROM,
            "--to",
            "alice@example.net",
        ],
    )
    .await;
    assert_eq!(rc, 23, "expected MAIL refused (swaks 23):\n{out}");
    the_error(&out, "451 4.7.1 ");
    assert_logged_then_nothing_more(&pf, &["connect to Milter service", "Connection refused"], 0);
}

// ---------------------------------------------------------------------------------------
// a. Accepted mail: delivered, our Authentication-Results on top.

/// a. A DKIM-signed message from the SPF-authorised address (XCLIENT via swaks): Postfix
/// delivers it with our Authentication-Results as the topmost field (above Postfix's
/// Received) naming our configured authserv-id, reporting spf, dkim and dmarc pass for the
/// address XCLIENT presented; the message itself is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_has_our_authentication_results_on_top() {
    let rig = rig("reject", None, |_| {}).await;
    let msg = sign(&message("quarterly report", BODY));
    let data = data_file(&rig, "signed.eml", &msg);
    let (rc, out) = swaks(
        &rig.pf,
        &[
            "--ehlo",
            "mail.example.org",
            "--xclient-addr",
            SPF_PASS_IP,
            "--xclient-name",
            "mail.example.org",
            "--xclient-helo",
            "mail.example.org",
            "--from",
            MAIL_FROM,
            "--to",
            "alice@example.net",
            "--data",
            &data,
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("queued as"), "{out}");
    let got = sync(|| rig.pf.wait_for_messages("alice", 1, 10)).remove(0);
    let ar = our_auth_results(&rig.pf, &got);
    assert_eq!(result_of(&ar, "spf"), "pass", "{ar}");
    assert!(ar.contains("smtp.mailfrom=sender@example.org"), "{ar}");
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    assert!(ar.contains("header.d=example.org"), "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert!(ar.contains("header.from=example.org"), "{ar}");
    // The milter judged the client XCLIENT presented, not the loopback connection.
    assert!(ar.contains("smtp.remote-ip=127.0.0.5"), "{ar}");
    // Below Postfix's Received, the message as the client sent it.
    assert!(
        lf(&got).contains(&lf(&msg)),
        "the message was altered:\n{got}"
    );
    assert!(!got.contains("X-Portcullis-Verdict"), "{got}");
}

// ---------------------------------------------------------------------------------------
// b. Forged Authentication-Results.

/// b. The incoming message carries two Authentication-Results in our authserv-id (one in
/// upper case) around one of another host: both forgeries are gone from the delivered
/// file, the other host's is kept, ours is on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authentication_results_are_removed_others_kept() {
    let rig = rig("none", None, |_| {}).await;
    let msg = format!(
        "Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=bank.example\r\n\
         Authentication-Results: other.example; spf=pass smtp.mailfrom=other.example\r\n\
         Authentication-Results: {}; dmarc=pass header.from=bank.example\r\n\
         {}",
        AUTHSERV_ID.to_uppercase(),
        message("your account", BODY)
    );
    let mut c = session(&rig.pf, Some(SPF_FAIL_IP), "mail.example.org").await;
    let (stage, code, text) = transaction(&mut c, MAIL_FROM, &["alice@example.net"], &msg).await;
    assert_eq!((stage, code), ("DATA", 250), "{text}");
    c.cmd("QUIT").await;
    let got = sync(|| rig.pf.wait_for_messages("alice", 1, 10)).remove(0);
    let ar = our_auth_results(&rig.pf, &got);
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert_eq!(result_of(&ar, "dkim"), "none", "{ar}");
    assert!(
        !got.contains("bank.example"),
        "a forgery was delivered:\n{got}"
    );
    assert_eq!(
        auth_results(&got),
        vec![
            ar.clone(),
            "other.example; spf=pass smtp.mailfrom=other.example".to_string()
        ],
        "{got}"
    );
    assert!(
        lf(&got).contains(&lf(&message("your account", BODY))),
        "the rest of the message was altered:\n{got}"
    );
}

// ---------------------------------------------------------------------------------------
// c, d. Refusals: our reply reaches the client through Postfix.

/// c. DMARC p=reject, no DKIM signature, SPF fail: Postfix answers the end of DATA with
/// our 550 5.7.26 and text (the built-in rule dmarc-reject); nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_reject_gives_our_550_at_end_of_data() {
    let rig = rig("reject", None, |_| {}).await;
    let data = data_file(&rig, "unsigned.eml", &message("not really alice", BODY));
    let (rc, out) = swaks(
        &rig.pf,
        &[
            "--ehlo",
            "mail.example.org",
            "--xclient-addr",
            SPF_FAIL_IP,
            "--xclient-name",
            "[UNAVAILABLE]",
            "--from",
            MAIL_FROM,
            "--to",
            "alice@example.net",
            "--data",
            &data,
        ],
    )
    .await;
    assert_eq!(rc, 26, "expected the message refused after the dot:\n{out}");
    let want = portcullis::smtp::reply::DMARC_REJECT;
    let expected = format!(
        "{} {} {}",
        want.code,
        want.enhanced.expect("enhanced code"),
        want.text
    );
    assert_eq!(swaks_errors(&out), vec![expected.clone()], "{out}");
    assert!(expected.starts_with("550 5.7.26 "), "{expected}");
    assert_logged_then_nothing_more(&rig.pf, &["milter-reject: END-OF-MESSAGE", "5.7.26"], 0);
}

const DEFER_POLICY: &str = "\
rules:
  - name: defer-sender
    when: { mail_from: defer@example.org }
    action: tempfail
    reply: { code: 451, enhanced: 4.7.1, text: Sender deferred by the milter test rule }
  - name: defer-subject
    when: { header: { regex: \"(?i)^subject: defer me\" } }
    action: tempfail
    reply: { code: 451, enhanced: 4.7.1, text: Message deferred by the milter test rule }
";

/// d. YAML rules with `action: tempfail`: on the sender (Postfix answers MAIL with our
/// 451 4.7.1 and text) and on a header (the end of DATA gets ours); nothing delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_rules_give_our_451() {
    let rig = rig("none", Some(DEFER_POLICY), |_| {}).await;
    let (rc, out) = swaks(
        &rig.pf,
        &[
            "--ehlo",
            "mail.example.org",
            "--from",
            "defer@example.org",
            "--to",
            "alice@example.net",
        ],
    )
    .await;
    assert_eq!(rc, 23, "expected MAIL deferred:\n{out}");
    assert_eq!(
        swaks_errors(&out),
        vec!["451 4.7.1 Sender deferred by the milter test rule".to_string()],
        "{out}"
    );

    let (rc, out) = swaks(
        &rig.pf,
        &[
            "--ehlo",
            "mail.example.org",
            "--from",
            MAIL_FROM,
            "--to",
            "alice@example.net",
            "--header",
            "Subject: defer me please",
        ],
    )
    .await;
    assert_eq!(
        rc, 26,
        "expected the message deferred after the dot:\n{out}"
    );
    assert_eq!(
        swaks_errors(&out),
        vec!["451 4.7.1 Message deferred by the milter test rule".to_string()],
        "{out}"
    );
    assert_logged_then_nothing_more(&rig.pf, &["milter-reject: MAIL", "4.7.1"], 0);
}

// ---------------------------------------------------------------------------------------
// e. Quarantine.

const QUARANTINE_POLICY: &str = "\
rules:
  - name: spam-domain
    when: { mail_from.domain: spam.example }
    action: quarantine
";

/// A message QUARANTINE_POLICY quarantines, as swaks arguments.
const SPAM: [&str; 8] = [
    "--ehlo",
    "mail.spam.example",
    "--from",
    "a@spam.example",
    "--to",
    "alice@example.net",
    "--header",
    "Subject: buy now",
];

/// e. `quarantine: hold` (the default): a quarantined message is accepted (250), lands in
/// Postfix's hold queue with our Authentication-Results and `X-Portcullis-Verdict:
/// quarantine`, and is never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_holds_the_message_in_postfix() {
    let rig = rig("none", Some(QUARANTINE_POLICY), |c| {
        assert_eq!(c.milter.quarantine, MilterQuarantine::Hold, "default");
    })
    .await;
    let (rc, out) = swaks(&rig.pf, &SPAM).await;
    assert_eq!(rc, 0, "{out}");
    let id = queue_id(&out);
    let held = sync(|| rig.pf.wait_for_held(1, 10));
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].queue_id, id, "{held:?}");
    assert_eq!(held[0].sender, "a@spam.example", "{held:?}");
    let content = sync(|| rig.pf.queued_content(&id));
    assert!(
        content.contains("X-Portcullis-Verdict: quarantine"),
        "{content}"
    );
    assert!(
        content.contains(&format!("Authentication-Results: {AUTHSERV_ID};")),
        "{content}"
    );
    assert!(content.contains("Subject: buy now"), "{content}");
    sync(|| {
        assert!(
            rig.pf.wait_for_log(&[&id, "milter-hold"], 5).is_some(),
            "{}",
            rig.pf.log_tail(20)
        );
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(rig.pf.maildir_messages("alice"), Vec::<String>::new());
        assert_eq!(rig.pf.held().len(), 1, "{:?}", rig.pf.queue_json());
    });
    assert!(
        rig.gw
            .metric_labeled(
                "portcullis_messages_total",
                &[("mode", "milter"), ("verdict", "quarantine")]
            )
            .await
            .is_some_and(|v| v >= 1.0)
    );
}

/// e'. `quarantine: store`: the message goes to our quarantine store and Postfix is told to
/// discard it: the client gets 250, nothing is delivered or held, the store has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_store_keeps_it_and_postfix_discards() {
    let store = tempfile::tempdir().unwrap();
    let qdir = store.path().join("q");
    let q = qdir.clone();
    let rig = rig("none", Some(QUARANTINE_POLICY), move |c| {
        c.milter.quarantine = MilterQuarantine::Store;
        c.quarantine.dir = Some(q);
    })
    .await;
    let (rc, out) = swaks(&rig.pf, &SPAM).await;
    assert_eq!(rc, 0, "{out}");
    let id = queue_id(&out);
    assert_logged_then_nothing_more(&rig.pf, &[&id, "milter-discard"], 0);
    let stored: Vec<_> = std::fs::read_dir(qdir.join("new"))
        .expect("quarantine store new/")
        .flatten()
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let text = std::fs::read_to_string(stored[0].path()).unwrap();
    assert!(text.contains("Subject: buy now"), "{text}");
}

/// The queue id in swaks' "250 2.0.0 Ok: queued as ID".
fn queue_id(transcript: &str) -> String {
    let (_, rest) = transcript
        .split_once("queued as ")
        .unwrap_or_else(|| panic!("no queue id in:\n{transcript}"));
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(!id.is_empty(), "no queue id in:\n{transcript}");
    id
}

// ---------------------------------------------------------------------------------------
// f. Several messages in one SMTP session (one milter connection).

const SESSION_POLICY: &str = "\
rules:
  - name: tag-subject
    when: { header: { regex: \"(?i)^subject: tag me\" } }
    action: tag
  - name: refuse-subject
    when: { header: { regex: \"(?i)^subject: refuse me\" } }
    action: reject
    reply: { code: 550, enhanced: 5.7.1, text: Refused by the milter test rule }
";

/// f. One SMTP session: a tagged message, an abandoned transaction (RSET after RCPT), a
/// message refused at the end of DATA, then a plain one. Each is judged on its own: the
/// first is delivered tagged, the refused one is refused with our reply, the last is
/// delivered without the first one's tag; each delivered one has exactly one A-R of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_of_a_session_is_judged_on_its_own() {
    let rig = rig("none", Some(SESSION_POLICY), |_| {}).await;
    let mut c = session(&rig.pf, None, "mail.example.org").await;
    let rcpt = ["alice@example.net"];

    let (stage, code, text) =
        transaction(&mut c, MAIL_FROM, &rcpt, &message("tag me first", BODY)).await;
    assert_eq!((stage, code), ("DATA", 250), "{text}");

    assert_eq!(c.cmd(&format!("MAIL FROM:<{MAIL_FROM}>")).await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);

    let (stage, code, text) =
        transaction(&mut c, MAIL_FROM, &rcpt, &message("refuse me second", BODY)).await;
    assert_eq!(stage, "DATA", "{text}");
    assert_eq!(
        (code, text.as_str()),
        (550, "550 5.7.1 Refused by the milter test rule"),
        "{text}"
    );

    let (stage, code, text) =
        transaction(&mut c, MAIL_FROM, &rcpt, &message("plain third", BODY)).await;
    assert_eq!((stage, code), ("DATA", 250), "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221);

    let msgs = sync(|| rig.pf.wait_for_messages("alice", 2, 10));
    let first = msgs
        .iter()
        .find(|m| m.contains("Subject: tag me first"))
        .unwrap_or_else(|| panic!("first message not delivered: {msgs:#?}"));
    let third = msgs
        .iter()
        .find(|m| m.contains("Subject: plain third"))
        .unwrap_or_else(|| panic!("third message not delivered: {msgs:#?}"));
    our_auth_results(&rig.pf, first);
    our_auth_results(&rig.pf, third);
    let verdict: Vec<String> = fields(first)
        .into_iter()
        .filter(|(n, _)| n == "X-Portcullis-Verdict")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(verdict.len(), 1, "{first}");
    assert!(
        verdict[0].starts_with("tag;") && verdict[0].contains("tag-subject"),
        "{first}"
    );
    assert!(
        !third.contains("X-Portcullis-Verdict"),
        "the first message's tag leaked into the third:\n{third}"
    );
    sync(|| {
        assert_nothing_more(&rig.pf, "alice", 2, 1);
        assert_eq!(rig.pf.maildir_messages("bob"), Vec::<String>::new());
    });
}

// ---------------------------------------------------------------------------------------
// g. A message larger than the in-memory spool limit.

/// g. `spool.memory_limit` 64 KiB, a 300 KiB message: delivered intact (body digest), with
/// our Authentication-Results on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_above_the_memory_limit_is_delivered_intact() {
    let rig = rig("none", None, |c| c.spool.memory_limit = 64 * 1024).await;
    let mut body = String::new();
    let mut n: u64 = 0;
    while body.len() < 300 * 1024 {
        // 72 printable characters per line, varying, never starting with a dot.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        body.push_str(&format!("line {:06} {:016x} ", body.len() / 74, n));
        while body.len() % 74 < 72 {
            body.push((b'a' + (body.len() % 26) as u8) as char);
        }
        body.push_str("\r\n");
    }
    let msg = message("large", &body);
    assert!(msg.len() > 300 * 1024);
    let mut c = session(&rig.pf, Some(SPF_PASS_IP), "mail.example.org").await;
    let (stage, code, text) = transaction(&mut c, MAIL_FROM, &["alice@example.net"], &msg).await;
    assert_eq!((stage, code), ("DATA", 250), "{text}");
    c.cmd("QUIT").await;
    let got = sync(|| rig.pf.wait_for_messages("alice", 1, 20)).remove(0);
    let ar = our_auth_results(&rig.pf, &got);
    assert_eq!(result_of(&ar, "spf"), "pass", "{ar}");
    let delivered = body_of(&got);
    assert_eq!(delivered.len(), lf(&body).len());
    assert_eq!(
        sha256_hex(delivered.as_bytes()),
        sha256_hex(lf(&body).as_bytes())
    );
}

// ---------------------------------------------------------------------------------------
// h. The gateway stops.

/// h. A message is delivered while the gateway runs; after `stop`, Postfix cannot reach
/// the milter and answers 4xx (milter_default_action = tempfail): the client keeps the
/// message, nothing more is delivered or queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gateway_stopped_postfix_answers_4xx() {
    let mut rig = rig("none", None, |_| {}).await;
    let (rc, out) = swaks(&rig.pf, &PLAIN).await;
    assert_eq!(rc, 0, "{out}");
    sync(|| rig.pf.wait_for_messages("alice", 1, 10));

    rig.gw.stop().await;
    let (rc, out) = swaks(&rig.pf, &PLAIN).await;
    assert_eq!(rc, 23, "expected MAIL refused with 4xx:\n{out}");
    the_error(&out, "451 4.7.1 ");
    assert_logged_then_nothing_more(&rig.pf, &["milter-reject: MAIL", "451 4.7.1"], 1);
}

// ---------------------------------------------------------------------------------------
// i. Relay protection in milter mode.

/// i. With `accepted_domains: [other.example]`, a recipient Postfix itself accepts
/// (alice@example.net) is refused by the milter at RCPT with 550 5.7.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_outside_accepted_domains_get_550_at_rcpt() {
    let rig = rig("none", None, |c| {
        c.accepted_domains =
            portcullis::config::domains::AcceptedDomains::parse(&["other.example"]).unwrap();
    })
    .await;
    let (rc, out) = swaks(&rig.pf, &PLAIN).await;
    assert_eq!(rc, 24, "expected the RCPT refused:\n{out}");
    let error = the_error(&out, "550 5.7.1 ");
    assert!(
        error.contains(&*portcullis::smtp::reply::RELAY_DENIED.text),
        "{out}"
    );
    assert_logged_then_nothing_more(&rig.pf, &["milter-reject: RCPT", "5.7.1"], 0);
}

// ---------------------------------------------------------------------------------------
// j. A unix socket listener.

/// j. The milter listens on a unix socket (mode 0666, so Postfix's smtpd, running as user
/// postfix, may connect): the socket has that mode, and a message through it is
/// delivered with our Authentication-Results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_serves_postfix() {
    // Short path under /tmp (sun_path holds 108 bytes), traversable by user postfix.
    let sockdir = tempfile::Builder::new()
        .prefix("pcm")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = sockdir.path().join("milter.sock");
    let s = sock.clone();
    let rig = rig("none", None, move |c| {
        c.milter.listen = vec![MilterSocket::Unix(s)];
        c.milter.socket_mode = 0o666;
    })
    .await;
    assert_eq!(rig.gw.milter_spec(), format!("unix:{}", sock.display()));
    let meta = std::fs::metadata(&sock).expect("the unix socket exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o666, "socket mode");
    let (rc, out) = swaks(
        &rig.pf,
        &[
            "--ehlo",
            "mail.example.org",
            "--from",
            MAIL_FROM,
            "--to",
            "bob@example.net",
            "--header",
            "Subject: over a unix socket",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}");
    let got = sync(|| rig.pf.wait_for_messages("bob", 1, 10)).remove(0);
    our_auth_results(&rig.pf, &got);
    assert!(got.contains("Subject: over a unix socket"), "{got}");
}

// ---------------------------------------------------------------------------------------
// k. Metrics.

/// k. After one delivered message: the milter packet counters of every stage Postfix
/// sends, the insert-header response, and `portcullis_messages_total` with
/// `mode="milter"` and `verdict="accept"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_milter_packets_responses_and_messages() {
    let rig = rig("none", None, |_| {}).await;
    let (rc, out) = swaks(&rig.pf, &PLAIN).await;
    assert_eq!(rc, 0, "{out}");
    sync(|| rig.pf.wait_for_messages("alice", 1, 10));
    let (_, body) = rig.gw.http_get("/metrics").await;
    for command in [
        "optneg", "macro", "connect", "helo", "mail", "rcpt", "header", "body", "eom",
    ] {
        let v = common::metric_labeled(
            &body,
            "portcullis_milter_packets_total",
            &[("command", command)],
        );
        assert!(
            v.is_some_and(|v| v >= 1.0),
            "portcullis_milter_packets_total{{command=\"{command}\"}} = {v:?}\n{body}"
        );
    }
    for response in ["optneg", "insert_header"] {
        let v = common::metric_labeled(
            &body,
            "portcullis_milter_responses_total",
            &[("response", response)],
        );
        assert!(
            v.is_some_and(|v| v >= 1.0),
            "portcullis_milter_responses_total{{response=\"{response}\"}} = {v:?}\n{body}"
        );
    }
    let accepted = common::metric_labeled(
        &body,
        "portcullis_messages_total",
        &[("mode", "milter"), ("verdict", "accept")],
    );
    assert!(accepted.is_some_and(|v| v >= 1.0), "{accepted:?}\n{body}");
    // Postfix ends the milter connection (QUIT) after the SMTP session ended.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let quit = rig
            .gw
            .metric_labeled("portcullis_milter_packets_total", &[("command", "quit")])
            .await;
        if quit.is_some_and(|v| v >= 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no quit packet counted after 10 s: {quit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
