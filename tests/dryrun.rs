//! `portcullis policy test`: the dry run explains a verdict stage by stage, stops where the
//! gateway would refuse, and summarises a directory or an mbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

fn setup(policy: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    setup_with(policy, "")
}

/// A config naming `policy.yaml` (written with `policy`), plus the config lines `extra`.
fn setup_with(policy: &str, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!("accepted_domains: [example.test]\npolicy: policy.yaml\n{extra}"),
    )
    .unwrap();
    (dir, config)
}

/// The report's lines for one stage: from its heading to the next heading.
fn stage<'a>(out: &'a str, heading: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
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
    assert!(out.contains("\n  => accept score=0 rules=[]\n"), "{out}");
    assert!(
        out.trim_end()
            .ends_with("(from the maildir backend, once the message is written to ./data/mail)"),
        "the reply after the final dot comes last:\n{out}"
    );
}

/// Issue 13: a rule after one that decided (an `accept`, a refusal, a built-in refusal) is
/// never evaluated by the gateway, so the dry run must not say it FIRED.
#[test]
fn rules_after_a_deciding_rule_are_skipped_not_fired() {
    let (dir, config) = setup(
        "thresholds: { tag: 2 }\nrules:\n  - name: trusted\n    when: { client.ip: { cidr: [192.0.2.0/24] } }\n    action: accept\n  - name: sender-score\n    when: { mail_from.domain: sender.example }\n    score: 3\n  - name: sender-refused\n    when: { mail_from.domain: refused.example }\n    action: reject\n  - name: after-refusal\n    when: { mail_from.domain: refused.example }\n    action: tag\n  - name: unsigned\n    when: { dkim: none }\n    score: 1\n",
    );
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "From: a@sender.example\nSubject: hi\n\nbody\n").unwrap();
    let out = common::policy_test(
        &config,
        &msg,
        &[
            "--client-ip",
            "192.0.2.5",
            "--from",
            "a@sender.example",
            "--rcpt",
            "u@example.test",
        ],
    );
    let data = stage(&out, "DATA");
    assert!(data.contains(&"  rule  trusted: FIRED"), "{out}");
    for later in [
        "sender-score",
        "sender-refused",
        "after-refusal",
        "unsigned",
    ] {
        let line = format!("  rule  {later}: SKIPPED (decided by rule trusted)");
        assert!(data.contains(&line.as_str()), "{line} missing:\n{out}");
    }
    assert!(
        data.contains(&"  rule  score>=2: SKIPPED (decided by rule trusted)"),
        "an accept skips the thresholds too:\n{out}"
    );
    assert!(
        data.contains(&"  => accept score=0 rules=[\"trusted\"]"),
        "{out}"
    );

    // A reject stops the rules after it, at the stage where it falls.
    let out = common::policy_test(
        &config,
        &msg,
        &["--from", "a@refused.example", "--rcpt", "u@example.test"],
    );
    let mail = stage(&out, "MAIL");
    assert!(mail.contains(&"  rule  sender-refused: FIRED"), "{out}");
    assert!(
        mail.contains(&"  rule  after-refusal: SKIPPED (decided by rule sender-refused)"),
        "{out}"
    );

    // A built-in refusal (a bare LF in a CRLF message) stops every YAML rule.
    std::fs::write(
        &msg,
        "From: a@sender.example\r\nSubject: hi\r\n\r\nbare\nLF\r\n",
    )
    .unwrap();
    let out = common::policy_test(
        &config,
        &msg,
        &["--from", "a@sender.example", "--rcpt", "u@example.test"],
    );
    let data = stage(&out, "DATA");
    assert!(data.contains(&"  rule  bare-line-endings: FIRED"), "{out}");
    assert!(
        data.contains(&"  rule  sender-score: SKIPPED (decided by rule bare-line-endings)"),
        "{out}"
    );
    assert!(!data.contains(&"  rule  sender-score: FIRED"), "{out}");
}

/// Issue 13: accept and quarantine verdicts show what the client would hear after the final
/// dot, and where the message would go.
#[test]
fn accept_and_quarantine_verdicts_show_the_reply() {
    let policy = "rules:\n  - name: spam-domain\n    when: { mail_from.domain: spam.example }\n    action: quarantine\n";
    let args = |from: &'static str| ["--from", from, "--rcpt", "u@example.test"];
    let mail = tempfile::tempdir().unwrap();
    let (dir, config) = setup_with(
        policy,
        &format!(
            "backend: {{ url: \"maildir:{}\" }}\n",
            mail.path().display()
        ),
    );
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "Subject: hi\n\nbody\n").unwrap();
    let out = common::policy_test(&config, &msg, &args("a@sender.example"));
    let data = stage(&out, "DATA");
    let mail = mail.path();
    assert!(
        data.contains(&format!("  reply 250 2.0.0 Ok: queued as <id> (from the maildir backend, once the message is written to {})", mail.display()).as_str()),
        "{out}"
    );
    // Without quarantine.dir, a quarantined message is relayed, marked.
    let out = common::policy_test(&config, &msg, &args("a@spam.example"));
    let data = stage(&out, "DATA");
    assert!(
        data.contains(&"  => quarantine score=0 rules=[\"spam-domain\"]"),
        "{out}"
    );
    assert!(
        data.iter()
            .any(|l| l.starts_with("  reply 250 2.0.0 Ok: queued as <id>")),
        "{out}"
    );
    assert!(
        data.contains(&"  relayed with X-Portcullis-Verdict: quarantine (no quarantine.dir): the backend files it"),
        "{out}"
    );

    let (dir, config) = setup_with(
        policy,
        "backend: { url: \"smtp://127.0.0.1:10025\" }\nquarantine: { dir: q }\n",
    );
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "Subject: hi\n\nbody\n").unwrap();
    let out = common::policy_test(&config, &msg, &args("a@sender.example"));
    assert!(
        stage(&out, "DATA").contains(&"  reply the backend's own reply to the message, passed through (a 250 once smtp://127.0.0.1:10025 accepts it; no backend is contacted in a dry run)"),
        "{out}"
    );
    let out = common::policy_test(&config, &msg, &args("a@spam.example"));
    let data = stage(&out, "DATA");
    let q = dir.path().join("q");
    assert!(
        data.contains(&"  reply 250 2.0.0 Ok (quarantine.answer: accept)"),
        "{out}"
    );
    assert!(
        data.contains(
            &format!(
                "  quarantined: stored in {}, not relayed (review with portcullis quarantine list)",
                q.display()
            )
            .as_str()
        ),
        "{out}"
    );

    let (dir, config) = setup_with(policy, "quarantine: { dir: q, answer: tempfail }\n");
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "Subject: hi\n\nbody\n").unwrap();
    let out = common::policy_test(&config, &msg, &args("a@spam.example"));
    assert!(
        stage(&out, "DATA").contains(&"  reply 451 4.7.1 Message deferred by policy, try again later (quarantine.answer: tempfail)"),
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
