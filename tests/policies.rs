//! YAML policies (docs/policies.md), from the shipped files to the running gateway:
//!
//! - every shipped `policies/*.yaml` compiles, and keeps the promises its comments make
//!   (default.yaml never refuses or quarantines on SPF alone, monitor-only.yaml never
//!   refuses, strict.yaml refuses SPF fail at MAIL);
//! - `policies/schema.json` (the editors' JSON Schema) names exactly the facts of
//!   `pipeline::facts::ALL`, the test operators and the actions the compiler accepts;
//! - `portcullis check-config` reports a broken policy file as `file:line:column` and exits 1;
//! - through the in-process gateway, with authentication on and the DNS fixture as its only
//!   name server: a MAIL-stage refusal with the rule's own reply, a RCPT-stage refusal of one
//!   recipient, tag and quarantine by score at DATA with `X-Portcullis-Verdict`, and
//!   `portcullis_policy_rule_hits_total{rule}`;
//! - `bug_*` tests: regression tests for bugs found in review (client.ip after STARTTLS and
//!   at HELO, RCPT facts at DATA, the dry run's scopes, forged quarantine envelopes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::dns::{DnsFixture, Zone};
use common::{Gateway, LineClient, bin};
use portcullis::config::Config;
use portcullis::pipeline::Stage;
use portcullis::pipeline::facts;
use portcullis::pipeline::outcome::{Action, Fact};
use portcullis::policy::Policy;
use portcullis::policy::file::{self, Compiled};
use serde_norway::Value;

/// The test operators file.rs accepts.
const OPERATORS: [&str; 10] = [
    "gt",
    "ge",
    "lt",
    "le",
    "not",
    "regex",
    "glob",
    "cidr",
    "cidr_file",
    "in_file",
];

/// The actions a rule may take.
const ACTIONS: [&str; 5] = ["accept", "tag", "quarantine", "tempfail", "reject"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_policies() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("policies"))
        .expect("policies/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn load_shipped(name: &str) -> Compiled {
    file::load(&repo().join("policies").join(name)).unwrap_or_else(|d| panic!("{name}: {d:#?}"))
}

/// The built-in rules (auth on) plus the policy file at `path`.
fn policy_with(path: &Path) -> Policy {
    let mut c = Config::default();
    c.auth.enabled = true;
    c.policy = Some(path.to_path_buf());
    Policy::load(&c).unwrap_or_else(|d| panic!("{}: {d:#?}", path.display()))
}

fn rule<'a>(c: &'a Compiled, name: &str) -> &'a portcullis::policy::CustomRule {
    c.rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name:?}"))
}

// ---------------------------------------------------------------------------------------
// (a) The shipped policies.

#[test]
fn every_shipped_policy_compiles() {
    let files = shipped_policies();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["default.yaml", "strict.yaml", "monitor-only.yaml"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for path in &files {
        match file::load(path) {
            Ok(c) => assert!(!c.rules.is_empty(), "{}: no rules", path.display()),
            Err(problems) => {
                let lines: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
                panic!("{} does not compile:\n{}", path.display(), lines.join("\n"));
            }
        }
    }
}

const SPF_WORDS: [&str; 7] = [
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
];

#[test]
fn default_policy_never_refuses_or_quarantines_on_spf_alone() {
    let c = load_shipped("default.yaml");
    // Scores and the trusted-relays accept only: every refusal comes from the thresholds.
    for r in &c.rules {
        assert!(
            matches!(r.action, None | Some(Action::Accept)),
            "{}: {:?}",
            r.name,
            r.action
        );
    }
    let t = c.thresholds;
    assert!(t.tag.is_some() && t.quarantine.is_some() && t.reject.is_some());
    assert_eq!(rule(&c, "spf-fail").stage, Stage::Mail);
    assert_eq!(rule(&c, "unsigned-and-spf-not-pass").stage, Stage::Data);

    let p = policy_with(&repo().join("policies/default.yaml"));
    for mailfrom in SPF_WORDS {
        for helo in SPF_WORDS {
            // A message whose DKIM and DMARC pass: only SPF is bad.
            let facts = [
                Fact::text(&facts::CLIENT_IP, "203.0.113.7"),
                Fact::text(&facts::SPF_MAILFROM, mailfrom),
                Fact::text(&facts::SPF_HELO, helo),
                Fact::text(&facts::DKIM, "pass"),
                Fact::text(&facts::DMARC, "pass"),
                Fact::text(&facts::DMARC_POLICY, "none"),
            ];
            for stage in [Stage::Mail, Stage::Rcpt, Stage::Data] {
                let v = p.decide(stage, &facts);
                assert!(
                    matches!(v.action, Action::Accept | Action::Tag),
                    "spf.mailfrom={mailfrom} spf.helo={helo} at {stage:?}: {v:?}"
                );
            }
        }
    }
    // Everything failing together does reach the reject threshold.
    let facts = [
        Fact::text(&facts::CLIENT_IP, "203.0.113.7"),
        Fact::text(&facts::SPF_MAILFROM, "fail"),
        Fact::text(&facts::SPF_HELO, "fail"),
        Fact::text(&facts::DKIM, "none"),
        Fact::text(&facts::DMARC, "fail"),
        Fact::text(&facts::DMARC_POLICY, "none"),
    ];
    let v = p.decide(Stage::Data, &facts);
    assert!(matches!(v.action, Action::Reject(_)), "{v:?}");
    // ...unless the client is a trusted relay (lists/example-allow.cidr).
    let mut trusted = facts.to_vec();
    trusted[0] = Fact::text(&facts::CLIENT_IP, "192.0.2.44");
    let v = p.decide(Stage::Data, &trusted);
    assert_eq!(v.action, Action::Accept, "{v:?}");
    assert_eq!(v.rules, vec!["trusted-relays"]);
    trusted[0] = Fact::text(&facts::CLIENT_IP, "2001:db8:25::1");
    assert_eq!(p.decide(Stage::Data, &trusted).action, Action::Accept);
}

#[test]
fn strict_policy_refuses_spf_fail_at_mail() {
    let c = load_shipped("strict.yaml");
    let r = rule(&c, "spf-fail-reject");
    assert_eq!(r.stage, Stage::Mail);
    match &r.action {
        Some(Action::Reject(reply)) => {
            assert_eq!(reply.code, 550);
            assert!(reply.to_string().contains("5.7.23"), "{reply}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rule(&c, "dmarc-none-spf-fail").action,
        Some(Action::Quarantine)
    );

    let p = policy_with(&repo().join("policies/strict.yaml"));
    let v = p.decide(
        Stage::Mail,
        &[
            Fact::text(&facts::CLIENT_IP, "203.0.113.7"),
            Fact::text(&facts::SPF_MAILFROM, "fail"),
        ],
    );
    assert!(matches!(v.action, Action::Reject(_)), "{v:?}");
    // Trusted relays are accepted before the refusal is reached.
    let v = p.decide(
        Stage::Mail,
        &[
            Fact::text(&facts::CLIENT_IP, "198.51.100.25"),
            Fact::text(&facts::SPF_MAILFROM, "fail"),
        ],
    );
    assert_eq!(v.action, Action::Accept, "{v:?}");
    // DMARC p=none failing with SPF softfail is quarantined.
    let v = p.decide(
        Stage::Data,
        &[
            Fact::text(&facts::SPF_MAILFROM, "softfail"),
            Fact::text(&facts::DKIM, "pass"),
            Fact::text(&facts::DMARC, "fail"),
            Fact::text(&facts::DMARC_POLICY, "none"),
        ],
    );
    assert_eq!(v.action, Action::Quarantine, "{v:?}");
}

#[test]
fn monitor_only_policy_never_refuses() {
    let c = load_shipped("monitor-only.yaml");
    for r in &c.rules {
        assert!(
            matches!(r.action, None | Some(Action::Tag)),
            "{}: {:?}",
            r.name,
            r.action
        );
    }
    assert!(c.thresholds.tag.is_some());
    assert_eq!(c.thresholds.quarantine, None);
    assert_eq!(c.thresholds.reject, None);

    let p = policy_with(&repo().join("policies/monitor-only.yaml"));
    let worst = [
        Fact::text(&facts::SPF_MAILFROM, "fail"),
        Fact::text(&facts::SPF_HELO, "fail"),
        Fact::text(&facts::DKIM, "none"),
        Fact::text(&facts::DMARC, "fail"),
        Fact::text(&facts::DMARC_POLICY, "none"),
        Fact::text(&facts::CHECK_ERROR, "spf"),
    ];
    for stage in [Stage::Mail, Stage::Rcpt, Stage::Data] {
        let v = p.decide(stage, &worst);
        assert!(
            matches!(v.action, Action::Accept | Action::Tag),
            "{stage:?}: {v:?}"
        );
    }
    assert_eq!(p.decide(Stage::Data, &worst).action, Action::Tag);
}

// ---------------------------------------------------------------------------------------
// (b) The JSON Schema stays in sync with the code.

fn schema() -> Value {
    let text = std::fs::read_to_string(repo().join("policies/schema.json")).unwrap();
    // JSON is YAML: the config's own parser reads it.
    serde_norway::from_str(&text).expect("schema.json parses")
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| {
        v.get(*k)
            .unwrap_or_else(|| panic!("schema.json has no {}", path.join(".")))
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_mapping()
        .expect("a mapping")
        .keys()
        .map(|k| k.as_str().expect("a string key").to_string())
        .collect()
}

fn set<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    items.into_iter().map(|s| s.as_ref().to_string()).collect()
}

/// Compiles `text` as `p.yaml` in `dir`; the diagnostics as strings.
fn problems(text: &str, dir: &Path) -> Vec<String> {
    match file::compile("p.yaml", text, dir) {
        Ok(_) => Vec::new(),
        Err(d) => d.into_iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn schema_names_exactly_the_known_facts() {
    let s = schema();
    assert_eq!(
        at(&s, &["$schema"]).as_str(),
        Some("https://json-schema.org/draft/2020-12/schema")
    );
    let known: Vec<&str> = facts::ALL.iter().map(|d| d.name()).collect();
    let listed = strings(at(&s, &["$defs", "fact", "enum"]));
    assert_eq!(listed.len(), set(&listed).len(), "duplicates in {listed:?}");
    assert_eq!(set(&listed), set(&known), "$defs.fact.enum vs facts::ALL");
    // The per-fact entries (descriptions for editors) name the same facts, plus all/any/not.
    let mut described = keys(at(&s, &["$defs", "condition", "properties"]));
    for combinator in ["all", "any", "not"] {
        assert!(described.remove(combinator), "{combinator} in condition");
    }
    assert_eq!(described, set(&known), "$defs.condition.properties");
}

/// docs/policies.md's table of facts: one row per fact of `facts::ALL`, in its order, each
/// with the definition's stage and kind of value.
#[test]
fn policies_md_lists_every_fact_with_its_stage_and_kind() {
    let doc = std::fs::read_to_string(repo().join("docs/policies.md")).unwrap();
    let table = doc
        .split_once("Every fact Portcullis knows (`src/pipeline/facts.rs`):")
        .expect("the facts table")
        .1;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip_while(|l| !l.starts_with("| `"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.split(" | ")
                .map(|c| c.trim_matches(['|', ' ', '`']))
                .collect()
        })
        .collect();
    let documented: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let known: Vec<&str> = facts::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(
        documented, known,
        "docs/policies.md vs facts::ALL (names and order)"
    );
    for (row, def) in rows.iter().zip(facts::ALL) {
        let stage = format!("{:?}", def.stage()).to_uppercase();
        assert_eq!(row[1], stage, "stage of {}", row[0]);
        let kind = match row[2] {
            "true/false" => facts::Kind::Flag,
            "number" => facts::Kind::Count,
            t if t.starts_with("text") => facts::Kind::Text,
            other => panic!("type {other:?} of {}", row[0]),
        };
        assert_eq!(kind, def.kind(), "type of {}", row[0]);
    }
}

#[test]
fn schema_names_exactly_the_operators_the_compiler_accepts() {
    let s = schema();
    let listed = strings(at(&s, &["$defs", "operator", "enum"]));
    assert_eq!(listed.len(), set(&listed).len(), "duplicates in {listed:?}");
    assert_eq!(set(&listed), set(OPERATORS), "$defs.operator.enum");
    assert_eq!(
        keys(at(&s, &["$defs", "operator_test", "properties"])),
        set(OPERATORS),
        "$defs.operator_test.properties"
    );

    // The compiler accepts each of them...
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nets.cidr"), "192.0.2.0/24\n").unwrap();
    std::fs::write(dir.path().join("names.txt"), "mx.example.test\n").unwrap();
    for op in OPERATORS {
        let (fact, arg) = match op {
            "gt" | "ge" | "lt" | "le" => ("size.actual", "1000"),
            "not" => ("spf.mailfrom", "pass"),
            "regex" => ("helo", "'^mx[0-9]+\\.'"),
            "glob" => ("helo", "'*.example.test'"),
            "cidr" => ("client.ip", "[192.0.2.0/24]"),
            "cidr_file" => ("client.ip", "nets.cidr"),
            "in_file" => ("helo", "names.txt"),
            other => panic!("no sample for {other}"),
        };
        let text = format!(
            "rules:\n  - name: r\n    when: {{ {fact}: {{ {op}: {arg} }} }}\n    score: 1\n"
        );
        assert_eq!(problems(&text, dir.path()), Vec::<String>::new(), "{text}");
    }
    // ...and names no other: its message for an unknown test lists the same set.
    let got = problems(
        "rules:\n  - name: r\n    when: { helo: { nope: x } }\n    score: 1\n",
        dir.path(),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    let list = got[0]
        .rsplit_once("one of ")
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(set(list.split(", ")), set(OPERATORS), "{}", got[0]);
}

#[test]
fn schema_names_exactly_the_actions_the_compiler_accepts() {
    let s = schema();
    let listed = strings(at(&s, &["$defs", "action", "enum"]));
    assert_eq!(listed.len(), set(&listed).len(), "duplicates in {listed:?}");
    assert_eq!(set(&listed), set(ACTIONS), "$defs.action.enum");
    for action in ACTIONS {
        let text = format!("rules:\n  - name: r\n    when: {{ helo: x }}\n    action: {action}\n");
        assert_eq!(
            problems(&text, Path::new(".")),
            Vec::<String>::new(),
            "{text}"
        );
    }
    let got = problems(
        "rules:\n  - name: r\n    when: { helo: x }\n    action: block\n",
        Path::new("."),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    let named: BTreeSet<String> = got[0]
        .rsplit_once("expected one of ")
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("{got:?}"))
        .split(", ")
        .map(|w| w.trim_matches('`').to_string())
        .collect();
    assert_eq!(named, set(ACTIONS), "{}", got[0]);
}

// ---------------------------------------------------------------------------------------
// (c) check-config validates the policy file the config names.

fn check_config(config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin())
        .arg("check-config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_policy_problems_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pol")).unwrap();
    let config = dir.path().join("portcullis.yaml");
    // The policy path is relative to the config file.
    std::fs::write(
        &config,
        "hostname: gw.example.test\naccepted_domains: [example.test]\npolicy: pol/broken.yaml\n",
    )
    .unwrap();
    let policy = dir.path().join("pol/broken.yaml");
    std::fs::write(
        &policy,
        "thresholds: { tag: 5, quarantine: 5 }\n\
         rules:\n\
         \x20 - name: a\n\
         \x20   when: { spf: fail }\n\
         \x20   action: reject\n\
         \x20 - name: b\n\
         \x20   when:\n\
         \x20     client.ip: { cidr: [10.0.0.300/8] }\n\
         \x20   action: reject\n\
         \x20   reply: { code: 451, enhanced: 4.7.1, text: later }\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, Some(1), "{err}");
    let f = policy.display();
    for expected in [
        format!("{f}:1:1: thresholds must grow"),
        format!("{f}:4:13: unknown fact \"spf\""),
        format!("{f}:8:20: bad network \"10.0.0.300/8\""),
        format!("{f}:10:5: reply code 451 does not fit the action"),
    ] {
        assert!(err.contains(&expected), "{expected:?} in:\n{err}");
    }
    assert_eq!(
        err.lines().count(),
        4,
        "all problems at once, one a line:\n{err}"
    );
    // `serve` compiles the policies once, when it builds the gateway, and says the same.
    let serving = dir.path().join("serve.yaml");
    std::fs::write(
        &serving,
        "hostname: gw.example.test\naccepted_domains: [example.test]\npolicy: pol/broken.yaml\n\
         listen: [\"127.0.0.1:0\"]\nmetrics: { listen: null }\nbackend: { url: \"maildir:mail\" }\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&serving)
        .output()
        .unwrap();
    let served = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{served}");
    assert!(
        served.contains(&format!("start-up failed:\n{f}:1:1: thresholds must grow")),
        "{served}"
    );
    assert!(
        served.contains(&format!("\n{f}:10:5: reply code 451 does not fit")),
        "{served}"
    );

    // A syntax error is reported alone, with its position.
    std::fs::write(&policy, "rules:\n  - name: a\n    wen: { dkim: pass }\n").unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{f}:3:5: ")), "{err}");
    assert!(err.contains("unknown field `wen`"), "{err}");

    // A list file that cannot be read points at the test that names it.
    std::fs::write(
        &policy,
        "rules:\n  - name: a\n    when: { client.ip: { cidr_file: missing.cidr } }\n    action: accept\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{f}:3:26: cannot read list ")),
        "{err}"
    );
    assert!(err.contains("missing.cidr"), "{err}");

    // A missing policy file.
    std::fs::remove_file(&policy).unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{f}:1:1: cannot read")), "{err}");

    // Fixed: ok, exit 0. List files are relative to the policy file.
    std::fs::write(dir.path().join("pol/allow.cidr"), "192.0.2.0/24\n").unwrap();
    std::fs::write(
        &policy,
        "rules:\n  - name: a\n    when: { client.ip: { cidr_file: allow.cidr } }\n    action: accept\n",
    )
    .unwrap();
    let (code, out, err) = check_config(&config);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn check_config_accepts_the_shipped_policies() {
    let dir = tempfile::tempdir().unwrap();
    for policy in shipped_policies() {
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "hostname: gw.example.test\naccepted_domains: [example.test]\npolicy: {}\n",
                policy.display()
            ),
        )
        .unwrap();
        let (code, out, err) = check_config(&config);
        assert_eq!(code, Some(0), "{}: {err}", policy.display());
        assert!(out.contains(": ok"), "{out}");
    }
}

// ---------------------------------------------------------------------------------------
// (d) Through the running gateway.

/// Authorised by `v=spf1 ip4:127.0.0.5 -all` at example.org.
const SPF_PASS_IP: &str = "127.0.0.5";
/// Not authorised: SPF fail.
const SPF_FAIL_IP: &str = "127.0.0.9";
const MAIL_FROM: &str = "sender@example.org";

/// example.org: SPF for 127.0.0.5 only, DMARC p=none (so no built-in rule acts). A root
/// zone, so every other name (the HELO, the DMARC tree walk) is a clean NXDOMAIN.
fn zone() -> Zone {
    Zone::root()
        .txt("example.org", "v=spf1 ip4:127.0.0.5 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=none")
}

/// A gateway with authentication on, resolving through `dns` only, and the policy `text`
/// written to a file in `dir`.
async fn gateway(dns: &DnsFixture, dir: &Path, text: &str) -> Gateway {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    let ns = dns.addr();
    Gateway::start(move |c| {
        c.auth.enabled = true;
        c.dns.nameservers = vec![ns];
        c.dns.timeout = Duration::from_secs(2);
        c.dns.attempts = 1;
        c.policy = Some(path);
    })
    .await
}

async fn client_from(gw: &Gateway, ip: &str) -> LineClient {
    let ip: IpAddr = ip.parse().unwrap();
    let mut c = LineClient::connect_from(gw.addr, ip).await;
    assert_eq!(c.read_reply().await.0, 220);
    c
}

/// An unsigned message from example.org.
fn message(to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{MAIL_FROM}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\
         \r\nHello.\r\n"
    )
    .into_bytes()
}

fn hits(rule: &str) -> String {
    format!("portcullis_policy_rule_hits_total{{rule=\"{rule}\"}}")
}

/// The X-Portcullis-Verdict field of a delivered message (unfolded), if any.
fn verdict_header(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .find_map(|l| l.strip_prefix("X-Portcullis-Verdict:"))
        .map(|v| v.trim().to_string())
}

#[tokio::test]
async fn spf_fail_rule_refuses_at_mail_with_its_own_reply() {
    let dns = DnsFixture::start(vec![zone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(
        &dns,
        dir.path(),
        "rules:\n\
         \x20 - name: spf-fail\n\
         \x20   when: { spf.mailfrom: fail }\n\
         \x20   action: reject\n\
         \x20   reply: { code: 550, enhanced: 5.7.23, text: SPF validation failed }\n",
    )
    .await;

    let mut c = client_from(&gw, SPF_FAIL_IP).await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let r = c.cmd(&format!("MAIL FROM:<{MAIL_FROM}>")).await;
    assert_eq!(r, (550, "550 5.7.23 SPF validation failed".to_string()));
    // The transaction did not start.
    assert_eq!(c.cmd("RCPT TO:<bob@example.test>").await.0, 503);
    c.cmd("QUIT").await;
    assert_eq!(gw.metric(&hits("spf-fail")).await, Some(1.0));

    // The authorised client gets through, and the rule is not counted.
    let mut c = client_from(&gw, SPF_PASS_IP).await;
    c.envelope(MAIL_FROM, &["bob@example.test"]).await;
    let r = c.data(&message("bob@example.test", "pass")).await;
    assert_eq!(r.0, 250, "{r:?}");
    c.cmd("QUIT").await;
    assert_eq!(gw.delivered("example.test", "bob").len(), 1);
    assert_eq!(gw.metric(&hits("spf-fail")).await, Some(1.0));
    gw.stop().await;
}

#[tokio::test]
async fn rcpt_domain_rule_refuses_one_recipient_and_accepts_another() {
    let dns = DnsFixture::start(vec![zone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(
        &dns,
        dir.path(),
        "rules:\n\
         \x20 - name: closed-mailbox-domain\n\
         \x20   when: { rcpt.domain: sales.corp.example }\n\
         \x20   action: reject\n\
         \x20   reply: { code: 550, enhanced: 5.7.1, text: This domain takes no mail from outside }\n",
    )
    .await;

    let mut c = client_from(&gw, SPF_PASS_IP).await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{MAIL_FROM}>")).await.0, 250);
    let refused = c.cmd("RCPT TO:<alice@sales.corp.example>").await;
    assert_eq!(
        refused,
        (
            550,
            "550 5.7.1 This domain takes no mail from outside".to_string()
        )
    );
    // Domains are compared case-insensitively.
    let refused = c.cmd("RCPT TO:<alice@Sales.Corp.Example>").await;
    assert_eq!(refused.0, 550, "{refused:?}");
    let accepted = c.cmd("RCPT TO:<bob@example.test>").await;
    assert_eq!(accepted.0, 250, "{accepted:?}");
    let r = c.data(&message("bob@example.test", "rcpt")).await;
    assert_eq!(r.0, 250, "{r:?}");
    c.cmd("QUIT").await;

    assert_eq!(gw.delivered("example.test", "bob").len(), 1);
    assert!(gw.delivered("sales.corp.example", "alice").is_empty());
    assert_eq!(gw.metric(&hits("closed-mailbox-domain")).await, Some(2.0));
    gw.stop().await;
}

#[tokio::test]
async fn scores_tag_and_quarantine_at_data() {
    let dns = DnsFixture::start(vec![zone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(
        &dns,
        dir.path(),
        "thresholds: { tag: 3, quarantine: 6 }\n\
         rules:\n\
         \x20 - name: spf-fail\n\
         \x20   when: { spf.mailfrom: fail }\n\
         \x20   score: 4\n\
         \x20 - name: unsigned\n\
         \x20   when: { dkim: none }\n\
         \x20   score: 3\n",
    )
    .await;

    // SPF pass, unsigned: 3, the tag threshold.
    let mut c = client_from(&gw, SPF_PASS_IP).await;
    c.envelope(MAIL_FROM, &["bob@example.test"]).await;
    let r = c.data(&message("bob@example.test", "tagged")).await;
    assert_eq!(r.0, 250, "{r:?}");
    c.cmd("QUIT").await;

    // SPF fail, unsigned: 7, above the quarantine threshold. The MAIL-stage score did not
    // refuse anything at MAIL: scores count at DATA only.
    let mut c = client_from(&gw, SPF_FAIL_IP).await;
    c.envelope(MAIL_FROM, &["carol@example.test"]).await;
    let r = c.data(&message("carol@example.test", "quarantined")).await;
    assert_eq!(r.0, 250, "{r:?}");
    c.cmd("QUIT").await;

    let tagged = gw.delivered("example.test", "bob");
    assert_eq!(tagged.len(), 1);
    assert_eq!(
        verdict_header(&tagged[0]).as_deref(),
        Some("tag; score=3; rules=unsigned,score>=3"),
        "{}",
        String::from_utf8_lossy(&tagged[0])
    );
    let quarantined = gw.delivered("example.test", "carol");
    assert_eq!(quarantined.len(), 1);
    assert_eq!(
        verdict_header(&quarantined[0]).as_deref(),
        Some("quarantine; score=7; rules=spf-fail,unsigned,score>=6"),
        "{}",
        String::from_utf8_lossy(&quarantined[0])
    );

    assert_eq!(gw.metric(&hits("unsigned")).await, Some(2.0));
    assert_eq!(gw.metric(&hits("spf-fail")).await, Some(1.0));
    assert_eq!(gw.metric(&hits("score>=3")).await, Some(1.0));
    assert_eq!(gw.metric(&hits("score>=6")).await, Some(1.0));
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"tag\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"quarantine\"}")
            .await,
        Some(1.0)
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------
// (e) Regression tests for bugs found in review; each failed before its fix.

/// A gateway without authentication (no DNS needed) and the policy `text`.
async fn plain_gateway(dir: &Path, text: &str, tweak: impl FnOnce(&mut Config)) -> Gateway {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    Gateway::start(move |c| {
        c.policy = Some(path);
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn bug_helo_stage_rules_see_client_ip() {
    let dir = tempfile::tempdir().unwrap();
    // Refuse our own name in HELO, except from our own network (here: loopback).
    let mut gw = plain_gateway(
        dir.path(),
        "rules:\n\
         \x20 - name: forged-helo\n\
         \x20   when:\n\
         \x20     helo: { glob: '*.example.test' }\n\
         \x20     not: { client.ip: { cidr: [127.0.0.0/8] } }\n\
         \x20   action: reject\n",
        |_| {},
    )
    .await;
    let mut c = gw.client().await;
    // Today: 550 5.7.1, because client.ip is absent from the facts of the HELO decision.
    let r = c.cmd("EHLO mx.example.test").await;
    assert_eq!(r.0, 250, "{r:?}");
    gw.stop().await;
}

#[tokio::test]
async fn bug_client_ip_survives_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let (cert, keyfile) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&keyfile, key.signing_key.serialize_pem()).unwrap();
    let mut gw = plain_gateway(
        dir.path(),
        "rules:\n\
         \x20 - name: blocked-from-here\n\
         \x20   when:\n\
         \x20     client.ip: { cidr: [127.0.0.0/8] }\n\
         \x20     mail_from.domain: blocked.test\n\
         \x20   action: reject\n",
        |c| {
            c.tls = Some(portcullis::config::schema::TlsConfig {
                cert,
                key: keyfile,
                require: Default::default(),
            });
        },
    )
    .await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@blocked.test>").await.0, 550);
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = c.starttls("gw.example.test").await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let (_, last) = c.cmd("MAIL FROM:<a@blocked.test>").await;
    // Before the fix: 250, the rule no longer saw the client's address after STARTTLS.
    assert!(last.starts_with("550"), "{last}");
    gw.stop().await;
}

#[tokio::test]
async fn bug_rcpt_rule_does_not_refuse_at_data_what_rcpt_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // Only the sales domain takes mail from this sender.
    let mut gw = plain_gateway(
        dir.path(),
        "rules:\n\
         \x20 - name: only-sales\n\
         \x20   when:\n\
         \x20     mail_from.domain: partner.test\n\
         \x20     not: { rcpt.domain: sales.corp.example }\n\
         \x20   action: reject\n",
        |_| {},
    )
    .await;
    let mut c = gw.client().await;
    c.envelope("a@partner.test", &["bob@sales.corp.example"])
        .await;
    // Today: 550 5.7.1 after the final dot, for a recipient the same rule accepted at RCPT.
    let r = c.data(b"Subject: x\r\n\r\nhi\r\n").await;
    assert_eq!(r.0, 250, "{r:?}");
    gw.stop().await;
}

#[test]
fn bug_dry_run_uses_the_default_policy_before_rcpt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.yaml"),
        "rules:\n  - name: block-spam\n    when: { mail_from.domain: spam.example }\n    action: reject\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("finance.yaml"),
        "rules:\n  - name: finance-tag\n    when: { dkim: none }\n    action: tag\n",
    )
    .unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "accepted_domains: [example.test, finance.example.test]\npolicy: default.yaml\n\
         policy_scopes:\n  finance.example.test: finance.yaml\n",
    )
    .unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "Subject: x\n\nhi\n").unwrap();
    let out = common::policy_test(
        &config,
        &msg,
        &[
            "--from",
            "a@spam.example",
            "--rcpt",
            "u@finance.example.test",
        ],
    );
    // The gateway answers this MAIL with 550 (block-spam, default policy) before it knows
    // any recipient. Today the dry run evaluates MAIL with finance.yaml and accepts.
    assert!(out.contains("rule  block-spam: FIRED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bug_quarantine_release_ignores_senders_envelope_fields() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("quarantine");
    let mut gw = plain_gateway(
        dir.path(),
        "rules:\n  - name: q\n    when: { mail_from.domain: spam.example }\n    action: quarantine\n",
        |c| c.quarantine.dir = Some(q),
    )
    .await;
    let mut c = gw.client().await;
    c.envelope("a@spam.example", &["u@example.test"]).await;
    // A header field in the message itself, named like the quarantine's envelope fields.
    let r = c
        .data(b"X-Portcullis-Envelope-To: <victim@elsewhere.example>\r\nSubject: s\r\n\r\nx\r\n")
        .await;
    assert_eq!(r.0, 250, "{r:?}");
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "accepted_domains: [example.test]\nbackend: {{ url: \"maildir:{}\" }}\nquarantine: {{ dir: quarantine }}\n",
            gw.maildir().display()
        ),
    )
    .unwrap();
    let quarantine = |args: &[&str]| {
        let out = Command::new(bin())
            .args(["quarantine", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = quarantine(&["list"]);
    let id = list.split('\t').next().unwrap().to_string();
    quarantine(&["release", &id]);
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    // Today: delivered there too, a domain the gateway does not even accept mail for.
    assert!(
        gw.delivered("elsewhere.example", "victim").is_empty(),
        "released to a recipient the sender chose"
    );
    gw.stop().await;
}
