//! The systemd unit, checked without deploying it: `systemd-analyze verify`, the keys
//! docs/operations.md relies on, `LimitNOFILE` against the session capacity, and readiness
//! over `$NOTIFY_SOCKET` from the real binary. No running systemd is needed. The Docker
//! files are tests/docker.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, free_port};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `Key=Value` settings of a unit file, in order, comments and section headers left out.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not a setting: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn values<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The unit as shipped, with the binary's path replaced by the one cargo built, since
/// `systemd-analyze verify` refuses a unit whose commands do not exist.
fn unit_with_built_binary(dir: &Path) -> PathBuf {
    let text = read("dist/portcullis.service")
        .replace("/usr/local/bin/portcullis", &bin().display().to_string());
    let path = dir.join("portcullis.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_built_binary(dir.path());
    // scripts/test.sh installs systemd (for systemd-analyze); it needs no running systemd.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd; scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // An unknown key or a bad value is only a warning, with the exit status 0: any line
    // about our file fails the test.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("portcullis.service"))
        .collect();
    assert!(ours.is_empty(), "{stderr}");
}

#[test]
fn systemd_analyze_reports_a_broken_unit() {
    // The test above can fail: the same check on a unit with a mistake finds it.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_built_binary(dir.path());
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("NoNewPrivileges=", "NoNewPrivilege=")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("portcullis.service") && stderr.contains("NoNewPrivilege"),
        "{stderr}"
    );
}

#[test]
fn unit_runs_unprivileged_with_only_the_port_25_capability() {
    let s = unit_settings(&read("dist/portcullis.service"));
    let one = |key: &str| {
        let v = values(&s, key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("User"), "portcullis");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    let state: BTreeSet<&str> = one("StateDirectory").split_whitespace().collect();
    assert_eq!(
        state,
        BTreeSet::from(["portcullis", "portcullis/quarantine"])
    );
    // The reload is SIGHUP to the main process, after check-config.
    let reload = values(&s, "ExecReload");
    assert_eq!(
        reload.last(),
        Some(&"/bin/kill -HUP $MAINPID"),
        "{reload:?}"
    );
    let start = one("ExecStart");
    assert_eq!(
        start,
        "/usr/local/bin/portcullis serve --config /etc/portcullis/portcullis.yaml"
    );
    // The stop timeout leaves the drain its two graces (timeouts.shutdown_grace, 30s by
    // default: sessions finish within one, the rest are told 421 and get one more).
    let stop: u64 = one("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    let config = portcullis::config::load(&repo("etc/portcullis.yaml")).unwrap();
    assert!(
        Duration::from_secs(stop) > 2 * config.timeouts.shutdown_grace,
        "TimeoutStopSec={stop}"
    );
}

#[test]
fn unit_open_file_limit_holds_the_shipped_max_sessions() {
    let s = unit_settings(&read("dist/portcullis.service"));
    let limit: u64 = values(&s, "LimitNOFILE")[0].parse().unwrap();
    let config = portcullis::config::load(&repo("etc/portcullis.yaml")).unwrap();
    let plan = portcullis::descriptors::plan(&config, limit).unwrap();
    assert_eq!(
        plan.sessions,
        config.limits.max_sessions,
        "LimitNOFILE={limit} holds {} sessions, etc/portcullis.yaml wants {} (needs {})",
        plan.sessions,
        config.limits.max_sessions,
        plan.needed(config.limits.max_sessions)
    );
}

/// Kills the child on drop, by its pid.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// `serve` under `Type=notify`: READY=1 once the SMTP listener accepts, RELOADING=1 then
/// READY=1 around a SIGHUP, STOPPING=1 at SIGTERM.
#[test]
fn serve_notifies_readiness_reload_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let manager_path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&manager_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = free_port();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: gw.example.test\nlisten: [\"127.0.0.1:{port}\"]\n\
             accepted_domains: [example.test]\nbackend: {{ url: \"maildir:mail\" }}\n\
             metrics: {{ listen: null }}\nauth: {{ enabled: false }}\n\
             client_checks: {{ rdns: false, helo_dns: false }}\n"
        ),
    )
    .unwrap();
    let child = Child(
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("NOTIFY_SOCKET", &manager_path)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = manager.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1\n");
    // Ready means bound: the very first connection after READY=1 gets the banner.
    let mut smtp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    smtp.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 3];
    std::io::Read::read_exact(&mut smtp, &mut banner).unwrap();
    assert_eq!(&banner, b"220");
    drop(smtp);

    signal(&child, "HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next(), "READY=1\n");

    signal(&child, "TERM");
    assert_eq!(next(), "STOPPING=1\n");
}
