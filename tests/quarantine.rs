//! Quarantine: a message the policy quarantines is stored (not relayed) and answered as
//! configured; `portcullis quarantine list|show|release|delete` reviews it, and release
//! hands it to the backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Gateway;
use portcullis::config::schema::QuarantineAnswer;

const POLICY: &str = "rules:\n  - name: spam-domain\n    when: { mail_from.domain: spam.example }\n    action: quarantine\n";

fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::bin())
        .arg("quarantine")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_mail_is_kept_listed_released_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let qdir = dir.path().join("quarantine");
    let (policy, q) = (dir.path().join("policy.yaml"), qdir.clone());
    let gw = Gateway::start(|c| {
        c.policy = Some(policy);
        c.quarantine.dir = Some(q);
    })
    .await;
    for subject in ["first", "second"] {
        let mut c = gw.client().await;
        c.envelope("a@spam.example", &["u@example.test"]).await;
        let (code, text) = c
            .data(format!("Subject: {subject}\r\n\r\nbuy now\r\n").as_bytes())
            .await;
        assert_eq!(code, 250, "{text}");
    }
    assert!(
        gw.delivered("example.test", "u").is_empty(),
        "quarantined mail must not be relayed"
    );
    assert_eq!(
        gw.metric("portcullis_messages_total{mode=\"smtp\",verdict=\"quarantine\"}")
            .await,
        Some(2.0)
    );

    // The CLI works on the same directories through a config file.
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!("accepted_domains: [example.test]\nbackend: {{ url: \"maildir:{}\" }}\nquarantine: {{ dir: quarantine }}\n", gw.maildir().display()),
    )
    .unwrap();
    let (ok, list) = cli(&config, &["list"]);
    assert!(ok, "{list}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].contains("<a@spam.example>\tu@example.test\trules=spam-domain; score=0\tfirst"),
        "{list}"
    );
    let first = lines[0].split('\t').next().unwrap();
    let second = lines[1].split('\t').next().unwrap();

    let (ok, shown) = cli(&config, &["show", first]);
    assert!(
        ok && shown.contains("X-Portcullis-Quarantine: rules=spam-domain")
            && shown.contains("X-Portcullis-Verdict: quarantine"),
        "{shown}"
    );

    let (ok, out) = cli(&config, &["release", first]);
    assert!(ok, "{out}");
    let delivered = gw.delivered("example.test", "u");
    assert_eq!(delivered.len(), 1);
    let text = String::from_utf8_lossy(&delivered[0]);
    assert!(
        text.contains("Subject: first") && !text.contains("X-Portcullis-Envelope"),
        "{text}"
    );

    let (ok, out) = cli(&config, &["delete", second]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&config, &["list"]);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        format!("no quarantined messages in {}\n", qdir.display())
    );
    let (ok, out) = cli(&config, &["show", "../../etc/passwd"]);
    assert!(!ok && out.contains("not a quarantine id"), "{out}");
}

#[tokio::test]
async fn the_answer_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let (policy, q) = (dir.path().join("policy.yaml"), dir.path().join("q"));
    let gw = Gateway::start(|c| {
        c.policy = Some(policy);
        c.quarantine.dir = Some(q);
        c.quarantine.answer = QuarantineAnswer::Tempfail;
    })
    .await;
    let mut c = gw.client().await;
    c.envelope("a@spam.example", &["u@example.test"]).await;
    assert_eq!(c.data(b"Subject: s\r\n\r\nx\r\n").await.0, 451);
    let stored = std::fs::read_dir(dir.path().join("q/new")).unwrap().count();
    assert_eq!(stored, 1);
}

/// Runs `portcullis ARGS` with `--config CONFIG` at `at` (an index into `args`); returns
/// (exit code, stdout, stderr).
fn run_at(config: &std::path::Path, args: &[&str], at: usize) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(&args[..at])
        .arg("--config")
        .arg(config)
        .args(&args[at..]);
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 13: an id that is not there gets one line naming it and the directory, not a
/// doubled nameless I/O error; an empty quarantine says so; `--config` goes before or
/// after the subcommand.
#[test]
fn missing_ids_and_an_empty_quarantine_are_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        "accepted_domains: [example.test]\nbackend: { url: \"smtp://127.0.0.1:9\" }\nquarantine: { dir: q }\n",
    )
    .unwrap();
    let q = dir.path().join("q");
    for at in [0, 1, 2] {
        let (code, out, err) = run_at(&config, &["quarantine", "list"], at);
        assert_eq!(code, Some(0), "--config at {at}: {err}");
        assert_eq!(out, "", "stdout stays for the messages alone");
        assert_eq!(err, format!("no quarantined messages in {}\n", q.display()));
    }
    for command in ["show", "delete", "release"] {
        for at in [0, 1, 3] {
            let (code, out, err) = run_at(&config, &["quarantine", command, "nosuch-id"], at);
            assert_eq!(code, Some(1), "{command}, --config at {at}: {out}{err}");
            assert_eq!(
                err,
                format!(
                    "portcullis: no quarantined message nosuch-id in {}\n",
                    q.display()
                ),
                "{command}, --config at {at}"
            );
        }
    }
    let out = Command::new(common::bin())
        .args(["quarantine", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("quarantine needs --config FILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
