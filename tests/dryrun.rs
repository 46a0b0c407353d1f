//! `portcullis policy test`: the dry run explains a verdict stage by stage, stops where the
//! gateway would refuse, and summarises a directory or an mbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

fn setup(policy: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "accepted_domains: [example.test]\npolicy: policy.yaml\n",
    )
    .unwrap();
    (dir, config)
}

#[test]
fn explains_a_refusal_at_the_stage_where_it_falls() {
    let (dir, config) = setup(
        "rules:\n  - name: no-blocked\n    when: { rcpt.domain: blocked.test }\n    action: reject\n    reply: { code: 550, enhanced: \"5.7.1\", text: \"Blocked recipient domain\" }\n",
    );
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "From: a@sender.example\nSubject: hi\n\nbody\n").unwrap();
    let out = common::policy_test(
        &config,
        &msg,
        &["--from", "a@sender.example", "--rcpt", "u@blocked.test"],
    );
    assert!(out.contains("RCPT <u@blocked.test>"), "{out}");
    assert!(out.contains("fact  rcpt.domain=blocked.test"), "{out}");
    assert!(out.contains("rule  no-blocked: FIRED"), "{out}");
    assert!(
        out.contains("=> reject (550 5.7.1 Blocked recipient domain)"),
        "{out}"
    );
    assert!(
        !out.contains("\nDATA"),
        "the gateway would have stopped at RCPT:\n{out}"
    );

    let out = common::policy_test(
        &config,
        &msg,
        &["--from", "a@sender.example", "--rcpt", "u@example.test"],
    );
    assert!(out.contains("rule  no-blocked: no"), "{out}");
    assert!(out.contains("\nDATA\n"), "{out}");
    assert!(
        out.contains("fact  body.bare_line_endings=false"),
        "an LF-only file is not a bare-LF message:\n{out}"
    );
    assert!(
        out.trim_end().ends_with("=> accept score=0 rules=[]"),
        "{out}"
    );
}

#[test]
fn summarises_a_directory_and_an_mbox() {
    let (dir, config) = setup(
        "thresholds: { tag: 2, quarantine: 4 }\nrules:\n  - name: free-money\n    when: { size.actual: { gt: 100 } }\n    score: 2\n  - name: from-spammer\n    when: { mail_from.domain: spam.example }\n    score: 2\n",
    );
    let msgs = dir.path().join("msgs");
    std::fs::create_dir(&msgs).unwrap();
    std::fs::write(msgs.join("1.eml"), "Subject: short\n\nhi\n").unwrap();
    std::fs::write(
        msgs.join("2.eml"),
        format!("Subject: long\n\n{}\n", "x".repeat(200)),
    )
    .unwrap();
    let out = common::policy_test(
        &config,
        &msgs,
        &["--from", "a@sender.example", "--rcpt", "u@example.test"],
    );
    assert!(
        out.contains("2 message(s)\n  accept       1\n  tag          1\n"),
        "{out}"
    );
    assert!(out.contains("free-money"), "{out}");

    let mbox = dir.path().join("box.mbox");
    std::fs::write(
        &mbox,
        format!("From x Thu Jan  1 00:00:00 2026\nSubject: a\n\n{}\nFrom y Thu Jan  1 00:00:00 2026\nSubject: b\n\nb\n", "y".repeat(200)),
    )
    .unwrap();
    let out = common::policy_test(
        &config,
        &mbox,
        &["--from", "a@spam.example", "--rcpt", "u@example.test"],
    );
    assert!(
        out.contains("box.mbox#1") && out.contains("box.mbox#2"),
        "{out}"
    );
    assert!(
        out.contains("2 message(s)\n  quarantine   1\n  tag          1\n"),
        "{out}"
    );
}

/// The shipped default policy on the fixture set of messages (tests/fixtures/messages: a
/// plain one, a phishing-style invoice, a spammy one, saved with Unix line endings as mail
/// clients store them), as a security team would try it before deploying: every message
/// gets a verdict and the summary adds up.
#[test]
fn shipped_policy_on_the_fixture_messages() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "accepted_domains: [example.test]\npolicy: {}\n",
            root.join("policies/default.yaml").display()
        ),
    )
    .unwrap();
    let out = common::policy_test(
        &config,
        &root.join("tests/fixtures/messages"),
        &[
            "--from",
            "someone@example.org",
            "--rcpt",
            "bob@example.test",
        ],
    );
    for name in ["01-plain.eml", "02-invoice.eml", "03-pills.eml"] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    assert!(out.contains("3 message(s)"), "{out}");
    let counted: usize = out
        .lines()
        .skip_while(|l| !l.contains("message(s)"))
        .skip(1)
        .take_while(|l| !l.starts_with("rules:"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<usize>().ok())
        .sum();
    assert_eq!(counted, 3, "{out}");
    assert!(
        !out.contains("=> reject"),
        "offline, nothing here should be refused:\n{out}"
    );
}
