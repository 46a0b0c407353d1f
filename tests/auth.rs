//! Sender authentication through the running gateway: DKIM, ARC and DMARC at DATA (SPF
//! from MAIL), the Authentication-Results header we add, the DMARC policy rules, the
//! removal of forged Authentication-Results, and the metrics.
//!
//! Every message is signed at test time with mail-auth (`DkimSigner`, `ArcSealer`) with
//! keys generated at test time; the public keys, SPF and DMARC records are served by the
//! in-process DNS fixture (tests/common/dns.rs), which is the gateway's only name server.
//! Clients connect from distinct loopback addresses: 127.0.0.5 is the SPF-authorised
//! sender of example.org, 127.0.0.9 is not (`-all`: SPF fail).
//!
//! What mail-auth 0.15.1 returns for the edge cases (asserted below, see each test):
//! body changed after signing → `neutral` (body hash mismatch), signed header changed →
//! `fail`, key revoked (`p=` empty) → `permerror`, no key record → `permerror`, expired
//! `x=` → `neutral`, key lookup SERVFAIL → `temperror` (and DMARC `temperror`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::dns::{DnsFixture, Zone};
use common::postfix::Postfix;
use common::{Gateway, LineClient, auth_results, fields};
use hickory_server::proto::rr::RecordType;
use mail_auth::arc::ArcSealer;
use mail_auth::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::headers::HeaderWriter;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, SpfOutput, SpfResult};
use portcullis::config::Config;
use rcgen::PublicKeyData as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The gateway's hostname, hence the authserv-id of its Authentication-Results.
const AUTHSERV_ID: &str = "gw.example.test";
/// Authorised by `v=spf1 ip4:127.0.0.5 -all` at example.org.
const SPF_PASS_IP: &str = "127.0.0.5";
/// Not authorised: SPF fail.
const SPF_FAIL_IP: &str = "127.0.0.9";
/// The MAIL FROM of every test message (the SPF identity, aligned with the From domain).
const MAIL_FROM: &str = "sender@example.org";
/// The maildir recipient.
const RCPT: &str = "bob@example.test";

// ---------------------------------------------------------------------------------------
// Keys, generated once per test process.

/// A generated RSA 2048 key: PKCS#8 DER of the private key, DKIM TXT record of the public.
struct Rsa {
    pkcs8: Vec<u8>,
    txt: String,
}

impl Rsa {
    fn generate() -> Rsa {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("rcgen generates RSA 2048 with aws_lc_rs");
        let spki = kp.subject_public_key_info();
        Rsa {
            pkcs8: kp.serialize_der(),
            // ~400 bytes: the fixture splits it into 255-byte character-strings.
            txt: format!("v=DKIM1; k=rsa; p={}", B64.encode(spki)),
        }
    }

    fn key(&self) -> RsaKey<Sha256> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.as_slice()));
        RsaKey::<Sha256>::from_key_der(der).expect("RSA key")
    }
}

/// The key of example.org (selector `rsa`).
fn sender_rsa() -> &'static Rsa {
    static KEY: OnceLock<Rsa> = OnceLock::new();
    KEY.get_or_init(Rsa::generate)
}

/// The key of the forwarder (ARC, selector `arc` at forwarder.example).
fn forwarder_rsa() -> &'static Rsa {
    static KEY: OnceLock<Rsa> = OnceLock::new();
    KEY.get_or_init(Rsa::generate)
}

/// A generated Ed25519 key: PKCS#8 DER, and the RFC 8463 TXT record (raw 32-byte key).
struct Ed {
    pkcs8: Vec<u8>,
    txt: String,
}

fn sender_ed() -> &'static Ed {
    static KEY: OnceLock<Ed> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let public = kp.public_key().as_ref().to_vec();
        assert_eq!(public.len(), 32);
        Ed {
            pkcs8: doc.as_ref().to_vec(),
            txt: format!("v=DKIM1; k=ed25519; p={}", B64.encode(public)),
        }
    })
}

// ---------------------------------------------------------------------------------------
// DNS, messages, signing.

/// The records of example.org: SPF, DMARC with policy `p`, and the DKIM keys:
/// `rsa` and `ed` (valid), `revoked` (`p=` empty); `missing` has no record at all.
/// One root zone, so that every other name (the HELO, `_dmarc.org` of the DMARC tree
/// walk) is a clean NXDOMAIN rather than REFUSED.
fn zone(dmarc_policy: &str) -> Zone {
    zone_without_dmarc().txt("_dmarc.example.org", &format!("v=DMARC1; p={dmarc_policy}"))
}

/// The records of `zone` but no DMARC record: every `_dmarc.<name>` is NXDOMAIN.
fn zone_without_dmarc() -> Zone {
    Zone::root()
        .txt("example.org", "v=spf1 ip4:127.0.0.5 -all")
        .txt("rsa._domainkey.example.org", &sender_rsa().txt)
        .txt("ed._domainkey.example.org", &sender_ed().txt)
        .txt("revoked._domainkey.example.org", "v=DKIM1; k=rsa; p=")
        .txt("arc._domainkey.forwarder.example", &forwarder_rsa().txt)
}

/// A gateway with authentication on, resolving through `dns` only.
async fn gateway(dns: &DnsFixture) -> Gateway {
    let ns = dns.addr();
    Gateway::start(move |c| auth_on(c, ns)).await
}

fn auth_on(c: &mut Config, ns: std::net::SocketAddr) {
    c.auth.enabled = true;
    c.dns.nameservers = vec![ns];
    c.dns.timeout = Duration::from_secs(2);
    c.dns.attempts = 1;
}

/// A plain RFC 5322 message from alice@example.org (CRLF, no line starting with a dot).
fn message(subject: &str, body: &str) -> String {
    common::message_to("Bob <bob@example.test>", subject, body)
}

const BODY: &str = "Hello Bob,\r\n\r\nthe figures are attached.\r\n\r\n-- \r\nAlice\r\n";
const SIGNED: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

/// `msg` with an rsa-sha256 relaxed/relaxed DKIM-Signature of example.org prepended.
fn sign_rsa(msg: &str, selector: &str) -> String {
    let sig = DkimSigner::from_key(sender_rsa().key())
        .domain("example.org")
        .selector(selector)
        .headers(SIGNED)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(msg.as_bytes())
        .expect("sign");
    sig.to_header() + msg
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One transaction from `ip`: EHLO, MAIL FROM:<sender@example.org>, RCPT, DATA `msg`.
/// Returns the reply to the end of DATA.
async fn send_from(gw: &Gateway, ip: &str, rcpt: &str, msg: &str) -> (u16, String) {
    send_as(gw, ip, MAIL_FROM, rcpt, msg).await
}

/// `send_from` with the envelope sender `from`.
async fn send_as(gw: &Gateway, ip: &str, from: &str, rcpt: &str, msg: &str) -> (u16, String) {
    let ip: IpAddr = ip.parse().unwrap();
    let mut c = LineClient::connect_from(gw.addr, ip).await;
    assert_eq!(c.read_reply().await.0, 220);
    c.envelope(from, &[rcpt]).await;
    let reply = c.data(msg.as_bytes()).await;
    c.cmd("QUIT").await;
    reply
}

/// The one message delivered to bob@example.test, as text.
fn delivered_one(gw: &Gateway) -> String {
    let msgs = gw.delivered("example.test", "bob");
    assert_eq!(msgs.len(), 1, "expected exactly one delivered message");
    String::from_utf8(msgs[0].clone()).unwrap()
}

/// Our Authentication-Results (unfolded value); asserts there is exactly one, that it
/// is the field right below our Received, and that its raw text starts the way RFC 8601
/// says (`Authentication-Results: gw.example.test;`).
fn our_auth_results(msg: &str) -> String {
    let raw_start = format!("Authentication-Results: {AUTHSERV_ID};");
    assert_eq!(
        msg.matches(&raw_start).count(),
        1,
        "expected one {raw_start:?} in:\n{msg}"
    );
    let f = fields(msg);
    assert_eq!(f[0].0, "Received", "{msg}");
    assert!(f[0].1.contains("by gw.example.test (Portcullis)"), "{msg}");
    assert_eq!(f[1].0, "Authentication-Results", "{msg}");
    assert!(
        f[1].1.starts_with(&format!("{AUTHSERV_ID};")),
        "our A-R is not the field below our Received:\n{msg}"
    );
    let ours: Vec<String> = auth_results(msg)
        .into_iter()
        .filter(|v| v.starts_with(&format!("{AUTHSERV_ID};")))
        .collect();
    assert_eq!(ours.len(), 1, "{msg}");
    ours[0].clone()
}

/// The RFC 8601 result of `method` in an unfolded Authentication-Results value: the
/// word after `method=` in the resinfo introduced by `; method=`.
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

fn series(method: &str, result: &str) -> String {
    format!("portcullis_auth_results_total{{method=\"{method}\",result=\"{result}\"}}")
}

// ---------------------------------------------------------------------------------------
// 1, 2: signatures that verify.

/// 1. rsa-sha256 (2048 bits, relaxed/relaxed), SPF pass, DMARC p=reject: delivered with
/// our Authentication-Results reporting dkim, spf and dmarc pass; the metrics count them.
#[tokio::test]
async fn rsa_signed_spf_pass_dmarc_pass() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = sign_rsa(&message("quarterly report", BODY), "rsa");
    assert!(
        msg.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{msg}"
    );
    assert!(msg.contains("c=relaxed/relaxed"), "{msg}");

    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert!(
        got.contains("\r\nAuthentication-Results: gw.example.test;"),
        "{got}"
    );
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    assert!(ar.contains("header.d=example.org header.s=rsa"), "{ar}");
    assert_eq!(result_of(&ar, "spf"), "pass", "{ar}");
    assert!(ar.contains("smtp.mailfrom=sender@example.org"), "{ar}");
    assert_eq!(result_of(&ar, "arc"), "none", "{ar}");
    assert!(ar.contains("smtp.remote-ip=127.0.0.5"), "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert!(
        ar.contains("header.from=example.org policy.dmarc=reject"),
        "{ar}"
    );
    // The message itself is intact below our fields, signature first.
    assert!(got.contains(&msg), "the signed message was altered:\n{got}");
    assert!(!got.contains("X-Portcullis-Verdict"), "{got}");

    assert_eq!(gw.metric(&series("dkim", "pass")).await, Some(1.0));
    assert_eq!(gw.metric(&series("spf", "pass")).await, Some(1.0));
    assert_eq!(gw.metric(&series("dmarc", "pass")).await, Some(1.0));
    assert_eq!(gw.metric(&series("arc", "none")).await, Some(1.0));
    assert_eq!(gw.metric(&series("dkim", "fail")).await, Some(0.0));
}

/// 2. ed25519-sha256 (RFC 8463) with simple/simple canonicalisation verifies.
#[tokio::test]
async fn ed25519_simple_simple_passes() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let plain = message("ed25519 note", BODY);
    let key = Ed25519Key::from_pkcs8_der(&sender_ed().pkcs8).expect("ed25519 key");
    let sig = DkimSigner::from_key(key)
        .domain("example.org")
        .selector("ed")
        .headers(SIGNED)
        .header_canonicalization(Canonicalization::Simple)
        .body_canonicalization(Canonicalization::Simple)
        .sign(plain.as_bytes())
        .unwrap();
    let msg = sig.to_header() + &plain;
    assert!(msg.contains("a=ed25519-sha256"), "{msg}");
    assert!(msg.contains("c=simple/simple"), "{msg}");

    // From the SPF-fail address: DMARC can pass only through the DKIM signature.
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    assert!(ar.contains("header.d=example.org header.s=ed"), "{ar}");
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert_eq!(gw.metric(&series("dkim", "pass")).await, Some(1.0));
    assert_eq!(gw.metric(&series("spf", "fail")).await, Some(1.0));
}

// ---------------------------------------------------------------------------------------
// 3: signatures that do not verify, SPF fail, p=reject: refused at the end of DATA.

/// Sends `msg` from the SPF-fail address to a p=reject gateway and asserts the refusal
/// (550 5.7.26, nothing delivered, dmarc=fail counted) and the DKIM result word counted.
async fn assert_dmarc_reject(dns: &DnsFixture, msg: &str, dkim_word: &str) {
    let gw = gateway(dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, msg).await;
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("550 5.7.26 "), "{text}");
    assert!(text.contains("DMARC"), "{text}");
    assert!(gw.delivered("example.test", "bob").is_empty());
    assert_eq!(
        gw.metric(&series("dkim", dkim_word)).await,
        Some(1.0),
        "dkim={dkim_word} not counted"
    );
    for other in [
        "pass",
        "fail",
        "neutral",
        "permerror",
        "temperror",
        "policy",
    ] {
        if other != dkim_word {
            // Every DKIM result is exposed at 0 from start-up.
            assert_eq!(
                gw.metric(&series("dkim", other)).await,
                Some(0.0),
                "dkim={other}"
            );
        }
    }
    assert_eq!(gw.metric(&series("spf", "fail")).await, Some(1.0));
    assert_eq!(gw.metric(&series("dmarc", "fail")).await, Some(1.0));
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"reject\"}")
            .await,
        Some(1.0)
    );
}

/// 3a. Body changed after signing: the body hash no longer matches: `fail` (RFC 8601
/// §2.7.1; mail-auth alone says `neutral`, see 11d), and DMARC has no aligned pass.
#[tokio::test]
async fn body_changed_after_signing() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let msg = sign_rsa(&message("invoice", BODY), "rsa");
    let tampered = msg.replace("the figures are attached", "wire 10000 EUR to IBAN X");
    assert_ne!(tampered, msg);
    assert_dmarc_reject(&dns, &tampered, "fail").await;
}

/// 3b. A signed header (Subject) changed after signing: the signature fails.
#[tokio::test]
async fn signed_header_changed_after_signing() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let msg = sign_rsa(&message("invoice", BODY), "rsa");
    let tampered = msg.replace("Subject: invoice", "Subject: URGENT invoice");
    assert_ne!(tampered, msg);
    assert_dmarc_reject(&dns, &tampered, "fail").await;
}

/// 3c. The key is revoked (`p=` empty): mail-auth gives `permerror`
/// (DkimError::PublicKeyRevoked).
#[tokio::test]
async fn revoked_key() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let msg = sign_rsa(&message("invoice", BODY), "revoked");
    assert_dmarc_reject(&dns, &msg, "permerror").await;
}

/// 3d. No key record at the selector (NXDOMAIN): `permerror`.
#[tokio::test]
async fn missing_key() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let msg = sign_rsa(&message("invoice", BODY), "missing");
    assert_dmarc_reject(&dns, &msg, "permerror").await;
    assert!(
        dns.query_count("missing._domainkey.example.org", RecordType::TXT) >= 1,
        "the key was never looked up: {:?}",
        dns.queries()
    );
}

/// 3e. An expired signature (`x=` in the past): `neutral` (DkimError::SignatureExpired).
/// DkimSigner only sets `x=` relative to the signing time, so the signature is made with
/// a 1-second lifetime and sent once that second has passed (the signature is otherwise
/// valid: the same message passes before expiry in `rsa_signed_spf_pass_dmarc_pass`).
#[tokio::test]
async fn expired_signature() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let before = now();
    let plain = message("invoice", BODY);
    let sig = DkimSigner::from_key(sender_rsa().key())
        .domain("example.org")
        .selector("rsa")
        .headers(SIGNED)
        .expiration(Duration::from_secs(1))
        .sign(plain.as_bytes())
        .unwrap();
    let msg = sig.to_header() + &plain;
    let x: u64 = tag(&msg, "x").parse().unwrap();
    let t: u64 = tag(&msg, "t").parse().unwrap();
    assert_eq!(x, t + 1, "{msg}");
    assert!(t >= before);
    while now() <= x {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_dmarc_reject(&dns, &msg, "neutral").await;
}

/// The value of tag `name` in the first DKIM-Signature of `msg` (digits only).
fn tag(msg: &str, name: &str) -> String {
    let sig = &fields(msg)
        .into_iter()
        .find(|(n, _)| n == "DKIM-Signature")
        .unwrap()
        .1;
    sig.split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {sig}"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// 4, 5: the other DMARC outcomes.

/// 4. DMARC fails on a p=quarantine domain: accepted (250), delivered marked for
/// quarantine.
#[tokio::test]
async fn dmarc_quarantine_is_delivered_marked() {
    let dns = DnsFixture::start(vec![zone("quarantine")]).await;
    let gw = gateway(&dns).await;
    let msg = message("unsigned", BODY);
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    // No signature: reported as dkim=none (RFC 8601 §2.7.1), not left out.
    assert_eq!(result_of(&ar, "dkim"), "none", "{ar}");
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "fail", "{ar}");
    assert!(ar.contains("policy.dmarc=quarantine"), "{ar}");
    let verdicts: Vec<String> = fields(&got)
        .into_iter()
        .filter(|(n, _)| n == "X-Portcullis-Verdict")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        verdicts,
        vec!["quarantine; score=0; rules=dmarc-quarantine"],
        "{got}"
    );
    assert!(
        got.contains("\r\nX-Portcullis-Verdict: quarantine; score=0; rules=dmarc-quarantine\r\n"),
        "{got}"
    );
    assert_eq!(gw.metric(&series("dkim", "none")).await, Some(1.0));
    assert_eq!(gw.metric(&series("dmarc", "fail")).await, Some(1.0));
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"quarantine\"}")
            .await,
        Some(1.0)
    );
}

/// 5. DMARC temperror on a p=reject domain: the DKIM key lookup gets SERVFAIL and SPF
/// fails, so the outcome hangs on the DKIM signature. What mail-auth 0.15.1 returns
/// (asserted): DKIM `temperror` (DnsError::Resolver from the SERVFAIL), and DMARC
/// `temperror` — verify_dmarc keeps a temperror signature whose d= is aligned as a DKIM
/// TempError, and `DmarcOutput::result()` ranks TempError above Fail — with the domain's
/// policy (reject) known. The gateway defers: 451 4.7.26, nothing delivered.
#[tokio::test]
async fn dkim_key_servfail_defers_on_reject_domain() {
    let dns = DnsFixture::start(vec![
        zone("reject").servfail("flaky._domainkey.example.org"),
    ])
    .await;
    let gw = gateway(&dns).await;
    let msg = sign_rsa(&message("maybe later", BODY), "flaky");
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.7.26 "), "{text}");
    assert!(gw.delivered("example.test", "bob").is_empty());
    assert!(dns.query_count("flaky._domainkey.example.org", RecordType::TXT) >= 1);
    assert_eq!(gw.metric(&series("dkim", "temperror")).await, Some(1.0));
    assert_eq!(gw.metric(&series("dmarc", "temperror")).await, Some(1.0));
    assert_eq!(gw.metric(&series("dmarc", "fail")).await, Some(0.0));
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"tempfail\"}")
            .await,
        Some(1.0)
    );
}

// ---------------------------------------------------------------------------------------
// 6: ARC.

/// `msg` (DKIM-signed by example.org) as forwarder.example relays it: its own
/// Authentication-Results and an ARC set (instance 1, cv=none) sealed with its key.
fn arc_sealed(msg: &str) -> String {
    arc_sealed_with(msg, "arc")
}

/// `arc_sealed` with the forwarder's key named by `selector` in the ARC-Seal and the
/// ARC-Message-Signature (`s=`); the key itself is always the forwarder's.
fn arc_sealed_with(msg: &str, selector: &str) -> String {
    let parsed = AuthenticatedMessage::parse(msg.as_bytes()).expect("parse");
    let spf = SpfOutput::new("example.org".into()).with_result(SpfResult::Pass);
    let params = SpfParameters::mail_from(
        "192.0.2.1".parse().unwrap(),
        "mx.example.org",
        "forwarder.example",
        MAIL_FROM,
    );
    let results = AuthenticationResults::new("forwarder.example").with_spf_result(&spf, &params);
    let set = ArcSealer::from_key(forwarder_rsa().key())
        .domain("forwarder.example")
        .selector(selector)
        .headers([
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "DKIM-Signature",
        ])
        .seal(&parsed, &results, &ArcOutput::default())
        .expect("seal");
    format!("{}{}{}", set.to_header(), results.to_header(), msg)
}

/// 6a. A valid ARC chain: arc=pass.
#[tokio::test]
async fn arc_chain_passes() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = arc_sealed(&sign_rsa(&message("forwarded", BODY), "rsa"));
    assert!(msg.starts_with("ARC-Seal: i=1; a=rsa-sha256;"), "{msg}");
    assert!(msg.contains("cv=none"), "{msg}");
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert_eq!(result_of(&ar, "arc"), "pass", "{ar}");
    assert!(ar.contains("arc=pass smtp.remote-ip=127.0.0.5"), "{ar}");
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    // The forwarder's own results are not ours: kept.
    assert!(
        auth_results(&got)
            .iter()
            .any(|v| v.starts_with("forwarder.example;")),
        "{got}"
    );
    assert!(
        dns.query_count("arc._domainkey.forwarder.example", RecordType::TXT) >= 1,
        "{:?}",
        dns.queries()
    );
    assert_eq!(gw.metric(&series("arc", "pass")).await, Some(1.0));
    assert_eq!(gw.metric(&series("arc", "fail")).await, Some(0.0));
    assert_eq!(gw.metric(&series("arc", "none")).await, Some(0.0));
}

/// 6b. The message is changed after sealing (a header the ARC-Message-Signature covers):
/// arc=fail. (SPF passes, so DMARC still passes and the message is delivered.)
#[tokio::test]
async fn arc_chain_broken_after_sealing_fails() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = arc_sealed(&sign_rsa(&message("forwarded", BODY), "rsa"));
    let broken = msg.replace("Subject: forwarded", "Subject: forwarded and changed");
    assert_ne!(broken, msg);
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &broken).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert_eq!(result_of(&ar, "arc"), "fail", "{ar}");
    // The same edit breaks the DKIM signature (Subject is signed there too).
    assert_eq!(result_of(&ar, "dkim"), "fail", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert_eq!(gw.metric(&series("arc", "fail")).await, Some(1.0));
    assert_eq!(gw.metric(&series("arc", "pass")).await, Some(0.0));
}

/// 6c. No ARC headers: arc=none.
#[tokio::test]
async fn no_arc_headers_is_none() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = sign_rsa(&message("direct", BODY), "rsa");
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "arc"), "none", "{ar}");
    assert_eq!(gw.metric(&series("arc", "none")).await, Some(1.0));
    assert_eq!(gw.metric(&series("arc", "pass")).await, Some(0.0));
}

// ---------------------------------------------------------------------------------------
// 7: forged Authentication-Results.

/// 7. The client's message carries an Authentication-Results claiming our authserv-id
/// (a forgery, RFC 8601 §5) and one of another host: ours replaces the forgery, the
/// other host's is kept.
#[tokio::test]
async fn forged_authentication_results_are_removed() {
    let dns = DnsFixture::start(vec![zone("none")]).await;
    let gw = gateway(&dns).await;
    let msg = format!(
        "Authentication-Results: gw.example.test; dkim=pass header.d=bank.example\r\n\
         Authentication-Results: other.example; spf=pass\r\n\
         {}",
        message("your account", BODY)
    );
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert!(!got.contains("bank.example"), "forgery relayed:\n{got}");
    assert_eq!(result_of(&ar, "dkim"), "none", "{ar}");
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert_eq!(
        auth_results(&got),
        vec![ar.clone(), "other.example; spf=pass".to_string()],
        "{got}"
    );
    // Everything else of the client's header block is there, in order.
    assert!(
        got.contains(&format!(
            "Authentication-Results: other.example; spf=pass\r\n{}",
            message("your account", BODY)
        )),
        "{got}"
    );
}

/// RFC 8601 allows CFWS around the authserv-id (`authres-payload = [CFWS] authserv-id
/// [CFWS authres-version] ...`): comments must not hide a forgery of our id.
#[tokio::test]
async fn forged_authentication_results_with_comments_are_removed() {
    let dns = DnsFixture::start(vec![zone("none")]).await;
    let gw = gateway(&dns).await;
    let msg = format!(
        "Authentication-Results: (trusted) gw.example.test; dkim=pass header.d=bank.example\r\n\
         Authentication-Results: gw.example.test(x); dmarc=pass header.from=bank.example\r\n\
         {}",
        message("your account", BODY)
    );
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    our_auth_results(&got);
    assert!(!got.contains("bank.example"), "forgery relayed:\n{got}");
    assert_eq!(auth_results(&got).len(), 1, "{got}");
}

// ---------------------------------------------------------------------------------------
// 9: end to end through a real Postfix backend.

/// 9. A DKIM-signed, SPF-pass message through the gateway into a real Postfix: it lands
/// in alice's Maildir with Postfix's Received on top, then ours, then our
/// Authentication-Results, then the message as the client sent it (signature intact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_through_postfix() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let pf = blocking(Postfix::backend).await;
    let (port, ns) = (pf.port, dns.addr());
    let gw = Gateway::start(|c| {
        c.backend.url = format!("smtp://127.0.0.1:{port}").parse().unwrap();
        c.accepted_domains =
            portcullis::config::domains::AcceptedDomains::parse(&["example.net"]).unwrap();
        auth_on(c, ns);
    })
    .await;
    let plain = message("through postfix", BODY).replace("bob@example.test", "alice@example.net");
    let msg = sign_rsa(&plain, "rsa");
    let (code, text) = send_from(&gw, SPF_PASS_IP, "alice@example.net", &msg).await;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("queued as"), "{text}");

    let (msgs, pf) = blocking(move || (pf.wait_for_messages("alice", 1, 10), pf)).await;
    assert_eq!(msgs.len(), 1);
    let got = &msgs[0];
    let f = fields(got);
    let pos = |pred: &dyn Fn(&(String, String)) -> bool| {
        f.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("field not found in:\n{got}"))
    };
    let postfix_received = pos(&|(n, v)| n == "Received" && v.contains("(Postfix)"));
    let our_received = pos(&|(n, v)| n == "Received" && v.contains("(Portcullis)"));
    let our_ar = pos(&|(n, v)| n == "Authentication-Results" && v.starts_with("gw.example.test;"));
    let signature = pos(&|(n, _)| n == "DKIM-Signature");
    let subject = pos(&|(n, _)| n == "Subject");
    // Postfix's Received is the first Received (only virtual(8)'s delivery fields above).
    assert!(
        f[..postfix_received]
            .iter()
            .all(|(n, _)| ["Return-Path", "X-Original-To", "Delivered-To"].contains(&n.as_str())),
        "{got}"
    );
    assert!(
        f[postfix_received]
            .1
            .contains(&format!("by {} (Postfix)", pf.hostname())),
        "{got}"
    );
    assert!(
        f[postfix_received].1.contains("[127.0.0.5]"),
        "XCLIENT: {got}"
    );
    assert_eq!(our_received, postfix_received + 1, "{got}");
    assert_eq!(our_ar, our_received + 1, "{got}");
    assert_eq!(signature, our_ar + 1, "{got}");
    assert!(subject > signature, "{got}");
    let ar = &f[our_ar].1;
    assert_eq!(result_of(ar, "dkim"), "pass", "{ar}");
    assert!(ar.contains("header.d=example.org"), "{ar}");
    assert_eq!(result_of(ar, "spf"), "pass", "{ar}");
    assert_eq!(result_of(ar, "dmarc"), "pass", "{ar}");
    // Postfix stores LF line endings; the client's content is there unchanged otherwise.
    assert!(
        got.contains(&msg.replace("\r\n", "\n")),
        "content changed:\n{got}"
    );
    assert_eq!(gw.metric(&series("dkim", "pass")).await, Some(1.0));
}

/// Blocking work (the Postfix harness) off the runtime, re-raising its panics.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

// ---------------------------------------------------------------------------------------
// 10: the remaining ARC and DMARC results (fail, temperror; none), each
// through the real resolver path.
//
// ARC: mail-auth validates the chain, src/checks/arc.rs maps its result to RFC 8617 §5.2's
// none/pass/fail: an ARC header that does not parse (mail-auth: `neutral`, decided before
// any lookup), the newest ARC-Message-Signature's body hash not matching (`neutral`) and a
// sealer key that does not exist (`permerror`) are all `fail` with their reason; a sealer
// key lookup that fails (SERVFAIL) stays `temperror`. DMARC is ours (src/checks/dmarc/):
// no record in the whole tree walk → `none`; a DMARC1 record with an invalid `p=` and no
// usable `rua` → `none` (no DMARC processing), and the walk stops there; two DMARC1
// records at one name → as if there were none.

/// The `portcullis_auth_results_total` series of `method` are 1 for `word`, 0 for every
/// other result word.
async fn assert_counted_once(gw: &Gateway, method: &str, word: &str) {
    let words: &[&str] = if method == "dmarc" {
        &["pass", "fail", "none", "temperror", "permerror"]
    } else {
        &["pass", "fail", "neutral", "none", "temperror", "permerror"]
    };
    assert!(
        words.contains(&word),
        "{method}={word} is not a result word"
    );
    for w in words {
        let expected = if *w == word { 1.0 } else { 0.0 };
        assert_eq!(
            gw.metric(&series(method, w)).await,
            Some(expected),
            "{method}={w} (expected only {method}={word} counted)"
        );
    }
}

/// 10a. An ARC-Seal with an invalid `cv=` value does not parse: arc=fail (RFC 8617 §5.2;
/// mail-auth says neutral), decided before any key lookup. The DKIM signature does not
/// cover ARC-Seal: it still passes.
#[tokio::test]
async fn arc_malformed_seal_is_fail() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = arc_sealed(&sign_rsa(&message("forwarded", BODY), "rsa"));
    assert_eq!(msg.matches("cv=none").count(), 1, "{msg}");
    let broken = msg.replace("cv=none", "cv=maybe");
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &broken).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "arc"), "fail", "{ar}");
    assert!(
        ar.contains("arc=fail (invalid cv= in ARC-Seal) smtp.remote-ip=127.0.0.5"),
        "{ar}"
    );
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert_eq!(
        dns.query_count("arc._domainkey.forwarder.example", RecordType::TXT),
        0,
        "a malformed set is judged before any lookup: {:?}",
        dns.queries()
    );
    assert_counted_once(&gw, "arc", "fail").await;
    assert_counted_once(&gw, "dkim", "pass").await;
    assert_counted_once(&gw, "dmarc", "pass").await;
}

/// 10b. The body is changed after sealing: the newest ARC-Message-Signature's body hash
/// does not match: arc=fail (RFC 8617 §5.2 step 4; mail-auth says neutral), as DKIM's is
/// dkim=fail (11d).
/// SPF passes and is aligned, so DMARC passes and the message is delivered.
#[tokio::test]
async fn arc_body_changed_after_sealing_is_fail() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = arc_sealed(&sign_rsa(&message("forwarded", BODY), "rsa"));
    let tampered = msg.replace("the figures are attached", "wire 10000 EUR to IBAN X");
    assert_ne!(tampered, msg);
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &tampered).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "arc"), "fail", "{ar}");
    assert!(
        ar.contains("(body hash of the newest ARC-Message-Signature did not verify)"),
        "{ar}"
    );
    assert_eq!(result_of(&ar, "dkim"), "fail", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert_counted_once(&gw, "arc", "fail").await;
    assert_counted_once(&gw, "dkim", "fail").await;
    assert_counted_once(&gw, "dmarc", "pass").await;
}

/// 10c. The sealer's key is not published (`gone._domainkey.forwarder.example` is
/// NXDOMAIN): arc=fail (no key, the seal cannot verify; mail-auth says permerror).
#[tokio::test]
async fn arc_sealer_key_missing_is_fail() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let msg = arc_sealed_with(&sign_rsa(&message("forwarded", BODY), "rsa"), "gone");
    assert!(msg.contains("s=gone"), "{msg}");
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "arc"), "fail", "{ar}");
    assert!(ar.contains("arc=fail (no key for signature)"), "{ar}");
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert!(
        dns.query_count("gone._domainkey.forwarder.example", RecordType::TXT) >= 1,
        "the sealer's key was never looked up: {:?}",
        dns.queries()
    );
    assert_counted_once(&gw, "arc", "fail").await;
    assert_counted_once(&gw, "dkim", "pass").await;
}

/// 10d. The sealer's key lookup gets SERVFAIL: arc=temperror (DnsError::Resolver). ARC
/// has no policy rule: DKIM and SPF pass, DMARC passes, the message is delivered.
#[tokio::test]
async fn arc_sealer_key_servfail_is_temperror() {
    let dns = DnsFixture::start(vec![
        zone("reject").servfail("arc._domainkey.forwarder.example"),
    ])
    .await;
    let gw = gateway(&dns).await;
    let msg = arc_sealed(&sign_rsa(&message("forwarded", BODY), "rsa"));
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "arc"), "temperror", "{ar}");
    assert_eq!(result_of(&ar, "dkim"), "pass", "{ar}");
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert!(
        dns.query_count("arc._domainkey.forwarder.example", RecordType::TXT) >= 1,
        "{:?}",
        dns.queries()
    );
    assert_counted_once(&gw, "arc", "temperror").await;
    assert_counted_once(&gw, "dkim", "pass").await;
    assert_counted_once(&gw, "dmarc", "pass").await;
}

/// 10e. No DMARC record anywhere up the tree: `_dmarc.example.org` and `_dmarc.org` are
/// both NXDOMAIN (one root zone; a REFUSED would be a resolver error, hence temperror).
/// dmarc=none: an unsigned message failing SPF is accepted, with no verdict field.
#[tokio::test]
async fn no_dmarc_record_anywhere_is_none() {
    let dns = DnsFixture::start(vec![zone_without_dmarc()]).await;
    let gw = gateway(&dns).await;
    let msg = message("no policy", BODY);
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert_eq!(result_of(&ar, "dmarc"), "none", "{ar}");
    assert!(
        ar.contains("dmarc=none header.from=example.org policy.dmarc=none"),
        "{ar}"
    );
    assert_eq!(result_of(&ar, "dkim"), "none", "{ar}");
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert!(!got.contains("X-Portcullis-Verdict"), "{got}");
    // The whole walk: the author domain, then its parent (the TLD), each asked once.
    for name in ["_dmarc.example.org", "_dmarc.org"] {
        assert!(
            dns.query_count(name, RecordType::TXT) >= 1,
            "{name} not asked: {:?}",
            dns.queries()
        );
    }
    assert_counted_once(&gw, "dmarc", "none").await;
    assert_counted_once(&gw, "dkim", "none").await;
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"accept\"}")
            .await,
        Some(1.0)
    );
}

/// 10f. A DMARC1 record without `p=` (and without `rua=`) does not apply (RFC 9989):
/// dmarc=none as well, although a record exists.
#[tokio::test]
async fn dmarc_record_without_policy_is_none() {
    let dns = DnsFixture::start(vec![
        zone_without_dmarc().txt("_dmarc.example.org", "v=DMARC1; sp=reject"),
    ])
    .await;
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &message("no p", BODY)).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "dmarc"), "none", "{ar}");
    assert!(dns.query_count("_dmarc.example.org", RecordType::TXT) >= 1);
    assert_counted_once(&gw, "dmarc", "none").await;
}

/// 10g. A DMARC1 record with an invalid `p=` (`p=bogus`) and no usable `rua`: no DMARC
/// processing (RFC 9989 §4.10.1), dmarc=none with the reason. It is still the record that
/// applies, so the walk stops there (`_dmarc.org` is not asked); no policy is known
/// (policy.dmarc=none), no DMARC rule applies and the unsigned, SPF-failing message is
/// accepted.
#[tokio::test]
async fn broken_dmarc_record_is_none() {
    let dns = DnsFixture::start(vec![zone("bogus")]).await;
    let gw = gateway(&dns).await;
    let msg = message("broken policy", BODY);
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert_eq!(result_of(&ar, "dmarc"), "none", "{ar}");
    assert!(
        ar.contains("dmarc=none (invalid p at _dmarc.example.org, no DMARC processing)"),
        "{ar}"
    );
    assert!(
        ar.contains("header.from=example.org policy.dmarc=none"),
        "{ar}"
    );
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert!(!got.contains("X-Portcullis-Verdict"), "{got}");
    assert!(dns.query_count("_dmarc.example.org", RecordType::TXT) >= 1);
    assert_eq!(
        dns.query_count("_dmarc.org", RecordType::TXT),
        0,
        "{:?}",
        dns.queries()
    );
    assert_counted_once(&gw, "dmarc", "none").await;
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"accept\"}")
            .await,
        Some(1.0)
    );
}

/// 10h. Two DMARC1 records at `_dmarc.example.org`, one broken: both are discarded (RFC
/// 7489 §6.6.3, RFC 9989 §4.10: a name with more than one DMARC record has none), so no
/// policy applies and the unsigned, SPF-failing message is accepted. mail-auth alone
/// applied the one that parses (p=reject) and refused it.
#[tokio::test]
async fn two_dmarc_records_one_broken_are_no_policy() {
    let dns = DnsFixture::start(vec![
        zone("reject").txt("_dmarc.example.org", "v=DMARC1; p=bogus"),
    ])
    .await;
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &message("two", BODY)).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "dmarc"), "none", "{ar}");
    assert_counted_once(&gw, "dmarc", "none").await;
}

// ---------------------------------------------------------------------------------------
// 11: verdicts exact to the RFCs where mail-auth 0.15.1 is not (src/checks/dkim.rs,
// src/checks/dmarc/). The DKIM cases (11a–11d) first show what mail-auth alone makes of the
// message, so the test would fail if our correction were lost; the DMARC cases are all
// ours and show the reply the client gets.

/// The key record and the message of tests/fixtures/dkim (made by make-rsa-sha1.py there:
/// mail-auth cannot sign with rsa-sha1).
const SHA1_KEY: &str = include_str!("fixtures/dkim/rsa-sha1.txt");
const SHA1_MESSAGE: &str = include_str!("fixtures/dkim/rsa-sha1.eml");

/// What mail-auth alone says of the DKIM signatures of `msg`, resolving through `dns`.
async fn mail_auth_dkim(dns: &DnsFixture, msg: &str) -> Vec<String> {
    let config = portcullis::config::schema::DnsConfig {
        nameservers: vec![dns.addr()],
        timeout: Duration::from_secs(2),
        attempts: 1,
        ..Default::default()
    };
    let metrics = std::sync::Arc::new(portcullis::metrics::Metrics::new());
    let resolver = portcullis::dns::Dns::new(&config, metrics).unwrap();
    let parsed = AuthenticatedMessage::parse(msg.as_bytes()).unwrap();
    let out = resolver.authenticator().verify_dkim(&parsed).await;
    out.iter()
        .map(|o| portcullis::checks::dkim::word(o.result()).to_string())
        .collect()
}

/// 11a. A valid `a=rsa-sha1` signature (RFC 8301 §3.1: must not be used for verifying) is
/// a permerror, never a pass: with p=reject and SPF failing, the message is refused.
#[tokio::test]
async fn rsa_sha1_signature_is_not_a_pass() {
    let zone = || zone("reject").txt("sha1._domainkey.example.org", SHA1_KEY.trim());
    let dns = DnsFixture::start(vec![zone()]).await;
    assert_eq!(mail_auth_dkim(&dns, SHA1_MESSAGE).await, ["pass"]);
    assert_dmarc_reject(&dns, SHA1_MESSAGE, "permerror").await;

    let dns = DnsFixture::start(vec![
        zone_without_dmarc().txt("sha1._domainkey.example.org", SHA1_KEY.trim()),
    ])
    .await;
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, SHA1_MESSAGE).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert!(
        ar.contains("dkim=permerror (rsa-sha1 is not accepted, RFC 8301) header.d=example.org header.s=sha1 header.a=rsa-sha1"),
        "{ar}"
    );
}

/// 11b. A signature whose `h=` leaves out From (RFC 6376 §5.4, §6.1.1) is not valid: a
/// replayed signature of the domain cannot vouch for any From.
#[tokio::test]
async fn signature_without_from_in_h_is_not_a_pass() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let plain = message("replayed", BODY);
    let sig = DkimSigner::from_key(sender_rsa().key())
        .domain("example.org")
        .selector("rsa")
        .headers(["To", "Subject", "Date", "Message-ID"])
        .sign(plain.as_bytes())
        .unwrap();
    let msg = sig.to_header() + &plain;
    assert!(
        !tag_text(&msg, "h").to_ascii_lowercase().contains("from"),
        "{msg}"
    );
    assert_eq!(mail_auth_dkim(&dns, &msg).await, ["pass"]);
    assert_dmarc_reject(&dns, &msg, "permerror").await;
}

/// The raw value of tag `name` in the first DKIM-Signature of `msg`.
fn tag_text(msg: &str, name: &str) -> String {
    let sig = &fields(msg)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("DKIM-Signature"))
        .unwrap()
        .1;
    sig.split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap()
}

/// 11c. A signature without `bh=` does not parse; it is still reported, as a permerror
/// naming its domain and selector (mail-auth drops it from its outputs).
#[tokio::test]
async fn signature_without_body_hash_is_a_reported_permerror() {
    let dns = DnsFixture::start(vec![zone("none")]).await;
    let signed = sign_rsa(&message("no bh", BODY), "rsa");
    // The tag may be folded over lines: cut from `bh=` to the `;` that ends it.
    let start = signed.find(" bh=").unwrap();
    let end = start + signed[start..].find(';').unwrap() + 1;
    let msg = format!("{}{}", &signed[..start], &signed[end..]);
    assert!(!msg.contains("bh="), "{msg}");
    assert!(mail_auth_dkim(&dns, &msg).await.is_empty());
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert!(
        ar.contains(
            "dkim=permerror (malformed signature: no bh= tag) header.d=example.org header.s=rsa"
        ),
        "{ar}"
    );
    assert_counted_once(&gw, "dkim", "permerror").await;
}

/// 11d. The body changed after signing: `dkim=fail (body hash did not verify)`
/// (RFC 8601 §2.7.1), where mail-auth says neutral.
#[tokio::test]
async fn body_hash_mismatch_is_reported_as_fail() {
    let dns = DnsFixture::start(vec![zone("none")]).await;
    let msg = sign_rsa(&message("changed", BODY), "rsa").replace("attached", "elsewhere");
    assert_eq!(mail_auth_dkim(&dns, &msg).await, ["neutral"]);
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert!(
        ar.contains("dkim=fail (body hash did not verify) header.d=example.org header.s=rsa"),
        "{ar}"
    );
}

/// `msg` signed over its first body octets only (`l=`), with content appended after.
fn partially_signed() -> String {
    let plain = message("partial body", BODY);
    let sig = DkimSigner::from_key(sender_rsa().key())
        .domain("example.org")
        .selector("rsa")
        .headers(SIGNED)
        .body_length(true)
        .sign(plain.as_bytes())
        .unwrap();
    sig.to_header() + &plain + "Appended after signing.\r\n"
}

/// 11e. A signature with `l=` whose first `l` octets verify is a pass (RFC 6376 §3.4.5),
/// saying so in its comment; with `auth.dkim_allow_partial_body: false` it is `policy`.
#[tokio::test]
async fn body_length_signature_passes_unless_refused() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let msg = partially_signed();
    let l = tag_text(&msg, "l");
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert!(
        ar.contains(&format!(
            "dkim=pass (only the first {l} octets of the body are signed)"
        )),
        "{ar}"
    );
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert_counted_once(&gw, "dkim", "pass").await;

    let ns = dns.addr();
    let strict = Gateway::start(move |c| {
        auth_on(c, ns);
        c.auth.dkim_allow_partial_body = false;
    })
    .await;
    let (code, text) = send_from(&strict, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(
        code, 550,
        "the refused signature makes nothing pass: {text}"
    );
    assert_eq!(strict.metric(&series("dkim", "policy")).await, Some(1.0));
    assert_eq!(strict.metric(&series("dkim", "pass")).await, Some(0.0));
    // With SPF passing it is delivered, and the header says why DKIM did not count.
    let (code, text) = send_from(&strict, SPF_PASS_IP, RCPT, &msg).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&strict));
    assert!(
        ar.contains(&format!(
            "dkim=policy (body length limit l={l} not accepted here)"
        )),
        "{ar}"
    );

    // An l= that covers the whole body signs all of it: a plain pass, even when refused.
    let plain = message("whole body", BODY);
    let sig = DkimSigner::from_key(sender_rsa().key())
        .domain("example.org")
        .selector("rsa")
        .headers(SIGNED)
        .body_length(true)
        .sign(plain.as_bytes())
        .unwrap();
    let whole = sig.to_header() + &plain;
    let ns = dns.addr();
    let strict2 = Gateway::start(move |c| {
        auth_on(c, ns);
        c.auth.dkim_allow_partial_body = false;
    })
    .await;
    let (code, text) = send_from(&strict2, SPF_FAIL_IP, RCPT, &whole).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&strict2));
    assert!(ar.contains("dkim=pass header.d=example.org"), "{ar}");
}

/// 11f. Two valid DMARC records at one name: both are discarded and DMARC does not apply
/// (RFC 9989 §4.10, RFC 7489 §6.6.3), although each alone says p=reject.
#[tokio::test]
async fn two_dmarc_records_at_one_name_are_no_policy() {
    let dns = DnsFixture::start(vec![
        zone("reject").txt("_dmarc.example.org", "v=DMARC1; p=reject; adkim=s"),
    ])
    .await;
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &message("two", BODY)).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&gw));
    assert_eq!(result_of(&ar, "dmarc"), "none", "{ar}");
    assert!(ar.contains("policy.dmarc=none"), "{ar}");
    assert_counted_once(&gw, "dmarc", "none").await;
}

/// 11g. A From field with the victim's domain and the spoofer's own, which passes DMARC
/// (SPF for spoofer.example passes and aligns): each author domain is evaluated and the
/// strictest outcome applies, so example.org's p=reject refuses, wherever it stands.
#[tokio::test]
async fn several_author_domains_apply_the_strictest() {
    let dns = DnsFixture::start(vec![
        zone("reject")
            .txt("spoofer.example", "v=spf1 ip4:127.0.0.9 -all")
            .txt("_dmarc.spoofer.example", "v=DMARC1; p=none"),
    ])
    .await;
    let gw = gateway(&dns).await;
    for from in [
        "From: Alice <alice@example.org>, Mallory <mallory@spoofer.example>",
        "From: Mallory <mallory@spoofer.example>, Alice <alice@example.org>",
    ] {
        let msg = message("two authors", BODY).replacen("From: Alice <alice@example.org>", from, 1);
        let (code, text) = send_as(&gw, SPF_FAIL_IP, "mallory@spoofer.example", RCPT, &msg).await;
        assert_eq!(code, 550, "{from}: {text}");
        assert!(text.starts_with("550 5.7.26 "), "{text}");
    }
    assert_eq!(gw.metric(&series("spf", "pass")).await, Some(2.0));
    assert_eq!(gw.metric(&series("dmarc", "fail")).await, Some(2.0));
    assert!(gw.delivered("example.test", "bob").is_empty());
}

/// 11g'. A From field DMARC cannot attribute is refused (550 5.7.1): two From fields, one
/// of them written `From :` (which mail-auth's parser does not take for a From field, while
/// a mail reader may show it), and more author domains than are evaluated (5).
#[tokio::test]
async fn ambiguous_from_fields_are_refused() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let gw = gateway(&dns).await;
    let hidden = format!(
        "From : CEO <ceo@example.org>\r\n{}",
        message("hidden author", BODY).replacen(
            "From: Alice <alice@example.org>",
            "From: <x@spoofer.example>",
            1
        )
    );
    let many: Vec<String> = (1..=6).map(|i| format!("<a@d{i}.example>")).collect();
    let crowd = message("many authors", BODY).replacen(
        "From: Alice <alice@example.org>",
        &format!("From: {}, <ceo@example.org>", many.join(", ")),
        1,
    );
    for msg in [hidden, crowd] {
        let (code, text) = send_from(&gw, SPF_PASS_IP, RCPT, &msg).await;
        assert_eq!(code, 550, "{text}");
        assert!(text.starts_with("550 5.7.1 "), "{text}");
        assert!(text.contains("ambiguous"), "{text}");
    }
    assert!(gw.delivered("example.test", "bob").is_empty());
}

/// 11g''. DKIM, ARC and DMARC that do not finish within `timeouts.check` (here: DKIM key
/// lookups that are never answered) cannot let a message skip DMARC: 451 4.7.26.
#[tokio::test]
async fn authentication_that_does_not_finish_defers() {
    let mut zone = zone("reject");
    for i in 0..4 {
        zone = zone.silent(&format!("slow{i}._domainkey.example.org"));
    }
    let dns = DnsFixture::start(vec![zone]).await;
    let mut msg = message("slow keys", BODY);
    for i in 0..4 {
        msg = sign_rsa(&msg, &format!("slow{i}"));
    }
    let ns = dns.addr();
    let gw = Gateway::start(move |c| {
        auth_on(c, ns);
        c.dns.timeout = Duration::from_secs(1);
        c.timeouts.check = Duration::from_secs(3);
    })
    .await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &msg).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.7.26 "), "{text}");
    assert!(gw.delivered("example.test", "bob").is_empty());
}

/// 11h. A p=reject policy found at the author domain needs nothing above it: with every
/// `_dmarc.org` query failing (SERVFAIL), a message that nothing authenticates is refused,
/// not accepted as temperror (as mail-auth's walk did), and `_dmarc.org` is never asked.
/// (Where the parent is needed and fails, 11i defers.)
#[tokio::test]
async fn a_failing_parent_lookup_keeps_a_known_reject_policy() {
    let dns = DnsFixture::start(vec![zone("reject").servfail("_dmarc.org")]).await;
    assert_dmarc_reject(&dns, &message("servfail above", BODY), "none").await;
    assert_eq!(
        dns.query_count("_dmarc.org", RecordType::TXT),
        0,
        "{:?}",
        dns.queries()
    );
}

/// 11i. SPF passes for mail.example.org, and whether it aligns with the author domain
/// news.example.org cannot be found: the Organizational Domain lookup of mail.example.org
/// fails (SERVFAIL). DMARC cannot say fail or pass; the policy is known (example.org's
/// p=reject, as sp for the subdomain), so the message is deferred: 451 4.7.26.
#[tokio::test]
async fn unknown_alignment_under_a_known_reject_policy_defers() {
    let dns = DnsFixture::start(vec![
        zone("reject")
            .txt("mail.example.org", "v=spf1 ip4:127.0.0.9 -all")
            .servfail("_dmarc.mail.example.org"),
    ])
    .await;
    let msg = message("subdomain bounce", BODY).replacen(
        "alice@example.org",
        "alice@news.example.org",
        1,
    );
    let gw = gateway(&dns).await;
    let (code, text) = send_as(&gw, SPF_FAIL_IP, "bounce@mail.example.org", RCPT, &msg).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.7.26 "), "{text}");
    assert_eq!(gw.metric(&series("spf", "pass")).await, Some(1.0));
    assert_counted_once(&gw, "dmarc", "temperror").await;
}

/// 11j. The author domain's own `_dmarc` lookup fails and nothing passed: no policy is
/// known. `auth.dmarc_dns_failure` decides: defer (default) or accept with temperror.
#[tokio::test]
async fn a_failing_author_lookup_defers_by_default_or_accepts() {
    let dns = DnsFixture::start(vec![zone_without_dmarc().servfail("_dmarc.example.org")]).await;
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &message("flaky", BODY)).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.7.26 "), "{text}");
    assert_counted_once(&gw, "dmarc", "temperror").await;

    let ns = dns.addr();
    let accepting = Gateway::start(move |c| {
        auth_on(c, ns);
        c.auth.dmarc_dns_failure = portcullis::config::schema::DmarcDnsFailure::Accept;
    })
    .await;
    let (code, text) = send_from(&accepting, SPF_FAIL_IP, RCPT, &message("flaky", BODY)).await;
    assert_eq!(code, 250, "{text}");
    let ar = our_auth_results(&delivered_one(&accepting));
    assert_eq!(result_of(&ar, "dmarc"), "temperror", "{ar}");
    assert!(
        ar.contains("policy unknown) header.from=example.org"),
        "{ar}"
    );
    assert!(
        !ar.contains("policy.dmarc="),
        "unknown is not a policy.dmarc value: {ar}"
    );
}

/// 11k. `p=reject; pct=0` is a domain testing its policy: treated as `t=y`, one level
/// lower (RFC 9989 §5.3), so the failing message is quarantined, not refused.
#[tokio::test]
async fn reject_at_pct_zero_is_quarantine() {
    let dns = DnsFixture::start(vec![zone("reject; pct=0")]).await;
    let gw = gateway(&dns).await;
    let (code, text) = send_from(&gw, SPF_FAIL_IP, RCPT, &message("testing", BODY)).await;
    assert_eq!(code, 250, "{text}");
    let got = delivered_one(&gw);
    let ar = our_auth_results(&got);
    assert_eq!(result_of(&ar, "dmarc"), "fail", "{ar}");
    assert!(ar.contains("policy.dmarc=quarantine"), "{ar}");
    assert!(
        got.contains("X-Portcullis-Verdict: quarantine; score=0; rules=dmarc-quarantine"),
        "{got}"
    );
}

/// 11l. The dry run reaches the same verdicts through the same resolver path: the
/// two-author From is refused under example.org's p=reject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_gives_the_same_dmarc_verdict() {
    let dns = DnsFixture::start(vec![zone("reject")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "hostname: gw.example.test\naccepted_domains: [example.test]\n",
    )
    .unwrap();
    let msg = dir.path().join("m.eml");
    let text = message("two authors", BODY).replacen(
        "From: Alice <alice@example.org>",
        "From: Mallory <mallory@spoofer.example>, Alice <alice@example.org>",
        1,
    );
    std::fs::write(&msg, text).unwrap();
    let ns = dns.addr().to_string();
    let out = blocking(move || {
        let out = std::process::Command::new(common::bin())
            .args(["policy", "test", "--config"])
            .arg(&config)
            .arg("--message")
            .arg(&msg)
            .args([
                "--dns",
                &ns,
                "--client-ip",
                SPF_FAIL_IP,
                "--from",
                MAIL_FROM,
            ])
            .args(["--rcpt", RCPT, "--helo", "client.example"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    })
    .await;
    assert!(out.contains("fact  dmarc=fail"), "{out}");
    assert!(out.contains("fact  dmarc.policy=reject"), "{out}");
    assert!(out.contains("rule  dmarc-reject: FIRED"), "{out}");
    assert!(out.contains("=> reject (550 5.7.26"), "{out}");
}
