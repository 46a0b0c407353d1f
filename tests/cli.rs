//! The binary: `check-config` diagnostics and exit codes, `version`, `--config` before or
//! after every subcommand, and `serve` on its built-in default (127.0.0.1:2525 →
//! ./data/mail), which the README's first command runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{LineClient, bin};

/// Writes `text` to `path`, runs `check-config` on it; returns (exit code, stderr).
fn check_config(path: &std::path::Path, text: &str) -> (Option<i32>, String) {
    std::fs::write(path, text).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_error_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let f = path.display();
    let (code, err) = check_config(
        &path,
        "hostname: gw.example.test\naccepted_domains:\n  - example.test\n  - 'not a domain'\nlimits:\n  max_recipients: 0\nbackend:\n  url: ftp://nowhere\n",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("{f}:4:5: ")), "{err}");
    assert!(
        err.contains(&format!("{f}:6:3: max_recipients must be greater than 0")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:8:8: backend.url: \"ftp://nowhere\"")),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "every problem, in the order of the file: {err}"
    );
    assert!(lines[2].starts_with(&format!("{f}:8:8: ")), "{err}");

    let (code, err) = check_config(
        &path,
        "hostname: gw.example.test\nlisten: [\"127.0.0.1:25\"]\ntypo_key: 1\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("{f}:3:1: unknown field `typo_key`")),
        "{err}"
    );
}

#[test]
fn shipped_configs_are_valid() {
    for file in ["etc/portcullis.yaml", "docker/portcullis.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let out = Command::new(bin())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs the binary; returns (exit code, stdout, stderr).
fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 13: `--config FILE` (and `-c`) is one global option, taken before or after the
/// subcommand by every command that reads a config; `version`, which reads none, refuses it.
#[test]
fn config_goes_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "accepted_domains: [example.test]\n").unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "typo_key: 1\n").unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "Subject: hi\n\nbody\n").unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);
    let with = |before: &[&str], flag: &str, file: &std::path::Path, after: &[&str]| {
        let mut v: Vec<std::ffi::OsString> = before.iter().map(|s| os(s)).collect();
        v.push(os(flag));
        v.push(file.as_os_str().to_owned());
        v.extend(after.iter().map(|s| os(s)));
        v
    };
    let call = |v: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = v.iter().map(|s| s.as_os_str()).collect();
        run(&refs)
    };

    // check-config: the positional FILE as before, or --config anywhere; same output.
    let ok = format!("{}: ok\n", good.display());
    for v in [
        vec![os("check-config"), good.as_os_str().to_owned()],
        with(&["check-config"], "--config", &good, &[]),
        with(&[], "-c", &good, &["check-config"]),
    ] {
        let (code, out, err) = call(v);
        assert_eq!((code, out.as_str()), (Some(0), ok.as_str()), "{err}");
    }
    let (code, _, err) = call(vec![os("check-config")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("check-config needs a FILE"), "{err}");

    // serve: a config it cannot use is refused the same way wherever --config is.
    let refused = format!("{}:1:1: unknown field `typo_key`", bad.display());
    for v in [
        with(&["serve"], "--config", &bad, &[]),
        with(&[], "--config", &bad, &["serve"]),
    ] {
        let (code, _, err) = call(v);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.starts_with(&refused), "{err}");
    }

    // policy test: after `test`, between `policy` and `test`, before `policy`.
    let rest = [
        "--dns-offline",
        "--message",
        msg.to_str().unwrap(),
        "--rcpt",
        "u@example.test",
    ];
    for (before, after) in [
        (vec!["policy", "test"], rest.to_vec()),
        (vec!["policy"], [&["test"][..], &rest].concat()),
        (vec![], [&["policy", "test"][..], &rest].concat()),
    ] {
        let (code, out, err) = call(with(&before, "--config", &bad, &after));
        assert_eq!(code, Some(1), "{before:?}: {out}{err}");
        assert!(err.starts_with(&refused), "{err}");
        let (code, out, err) = call(with(&before, "--config", &good, &after));
        assert_eq!(code, Some(0), "{before:?}: {err}");
        assert!(out.contains("\nDATA\n"), "{out}");
    }

    let (code, _, err) = call(with(&["version"], "--config", &good, &[]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("version reads no config"), "{err}");
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(bin()).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// `portcullis serve` with no flags: the README's first command. Uses the fixed default
/// ports 2525/9465, so no other test may use them.
#[tokio::test]
async fn serve_without_config_delivers_to_local_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .arg("serve")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:2525".parse().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "default gateway did not listen on 127.0.0.1:2525");
    let mut c = LineClient::connect(addr).await;
    assert_eq!(c.read_reply().await.0, 220);
    // The default config authenticates senders through the system resolver. So that this
    // test stays off the network, the client gives an address literal as HELO, the null
    // sender and no From header: SPF and DMARC then have no domain to look up.
    assert_eq!(c.cmd("EHLO [127.0.0.1]").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 250);
    assert_eq!(c.data(b"Subject: default\r\n\r\nhello\r\n").await.0, 250);
    let (code, _) = c.cmd("RCPT TO:<x@elsewhere.example>").await;
    assert_eq!(code, 503, "no open transaction");
    assert_eq!(c.cmd("MAIL FROM:<>").await.0, 250);
    let (code, _) = c.cmd("RCPT TO:<x@elsewhere.example>").await;
    assert_eq!(code, 550, "default is not an open relay");
    let (status, body) = common::http_get("127.0.0.1:9465".parse().unwrap(), "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let new = dir.path().join("data/mail/example.test/user/new");
    let delivered = common::read_maildir(&new);
    assert_eq!(delivered.len(), 1, "nothing in {}", new.display());
    let text = String::from_utf8_lossy(&delivered[0]);
    assert!(
        text.contains("Authentication-Results: localhost;"),
        "{text}"
    );

    // SIGTERM drains and exits 0.
    let pid = child.id().to_string();
    Command::new("kill")
        .arg("-TERM")
        .arg(&pid)
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
