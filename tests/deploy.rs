//! The deployment files, checked without deploying: the systemd unit (`systemd-analyze
//! verify`, the keys docs/operations.md relies on, `LimitNOFILE` against the session
//! capacity, readiness over `$NOTIFY_SOCKET` from the real binary) and the Docker files
//! (every COPY source exists, compose.yaml parses and names files that exist, the ports
//! agree, the config the image's entry point writes passes `check-config`). No Docker
//! engine and no running systemd are needed.
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

/// Every COPY source of each image compose builds, relative to that build's context.
#[test]
fn docker_copy_sources_exist() {
    let compose = compose();
    let mut checked = 0;
    for (name, service) in mapping(&compose["services"]) {
        let Some(build) = service.get("build") else {
            continue;
        };
        let context = repo("docker").join(build["context"].as_str().unwrap());
        let dockerfile = build
            .get("dockerfile")
            .map(|d| context.join(d.as_str().unwrap()))
            .unwrap_or_else(|| context.join("Dockerfile"));
        let text = std::fs::read_to_string(&dockerfile)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", dockerfile.display()));
        for line in text.lines().filter(|l| l.starts_with("COPY ")) {
            let words: Vec<&str> = line.split_whitespace().skip(1).collect();
            if words.iter().any(|w| w.starts_with("--from=")) {
                continue;
            }
            let sources = &words[..words.len() - 1];
            assert!(!sources.is_empty(), "{line}");
            for source in sources.iter().filter(|w| !w.starts_with("--")) {
                let path = context.join(source);
                assert!(path.exists(), "{name}: {line}: no {}", path.display());
                checked += 1;
            }
        }
    }
    // Both images, the gateway's and Postfix's, were found and read.
    assert!(checked >= 4, "{checked} COPY sources");
}

fn compose() -> serde_norway::Value {
    serde_norway::from_str(&read("docker/compose.yaml")).expect("compose.yaml parses")
}

fn mapping(v: &serde_norway::Value) -> Vec<(String, &serde_norway::Value)> {
    v.as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
        .collect()
}

#[test]
fn compose_mounts_files_that_exist() {
    let compose = compose();
    let mut mounts = 0;
    for (name, service) in mapping(&compose["services"]) {
        for volume in service
            .get("volumes")
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
        {
            let spec = volume.as_str().unwrap();
            let source = spec.split(':').next().unwrap();
            if source.starts_with('.') {
                let path = repo("docker").join(source);
                assert!(path.exists(), "{name}: {spec}: no {}", path.display());
                mounts += 1;
            }
        }
    }
    assert!(mounts >= 5, "{mounts} bind mounts");
}

/// The port of an `IP:port` listen address.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The ports the Dockerfile's EXPOSE lines name.
fn exposed() -> BTreeSet<u16> {
    read("docker/Dockerfile")
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect()
}

/// `docker/entrypoint.sh print-config` with these variables: (exit code, stdout, stderr).
fn entrypoint_config(vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("sh");
    cmd.arg(repo("docker/entrypoint.sh"))
        .arg("print-config")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The variables of the Dockerfile's own example, with the shipped default policy (in the
/// image at /etc/portcullis/policies, here in the source tree).
fn example_vars() -> Vec<(&'static str, String)> {
    vec![
        ("PORTCULLIS_HOSTNAME", "mx.example.com".into()),
        (
            "PORTCULLIS_ACCEPTED_DOMAINS",
            "example.com, *.example.com".into(),
        ),
        ("PORTCULLIS_BACKEND_URL", "smtp://192.0.2.25:25".into()),
        (
            "PORTCULLIS_POLICY",
            repo("policies/default.yaml").display().to_string(),
        ),
    ]
}

#[test]
fn the_image_config_from_the_environment_passes_check_config() {
    let vars = example_vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, text, err) = entrypoint_config(&vars);
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = portcullis::config::load(&path).unwrap();
    assert_eq!(config.hostname, "mx.example.com");
    assert_eq!(config.accepted_domains, ["example.com", "*.example.com"]);
    assert_eq!(config.backend.url, "smtp://192.0.2.25:25");
    assert!(config.policy.is_some());
    // What the image listens on is what it exposes.
    let mut ports: BTreeSet<u16> = config.listen.iter().map(|a| a.port()).collect();
    ports.insert(config.metrics.listen.unwrap().port());
    assert_eq!(ports, exposed());
}

#[test]
fn the_image_config_needs_its_three_variables() {
    let vars = example_vars();
    for missing in [
        "PORTCULLIS_HOSTNAME",
        "PORTCULLIS_ACCEPTED_DOMAINS",
        "PORTCULLIS_BACKEND_URL",
    ] {
        let rest: Vec<(&str, &str)> = vars
            .iter()
            .filter(|(k, _)| *k != missing)
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (code, _, err) = entrypoint_config(&rest);
        assert_ne!(code, Some(0), "{missing}");
        assert!(err.contains(missing), "{missing}: {err}");
    }
    // A value cannot add YAML of its own: the quote is escaped, so the newline and what
    // follows stay inside the host name (folded to a space), which validation refuses.
    let mut vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars[0].1 = "mx\"\nlisten: [\"0.0.0.0:25\"]";
    let (code, text, err) = entrypoint_config(&vars);
    assert_eq!(code, Some(0), "{err}");
    let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let keys: BTreeSet<String> = mapping(&yaml).into_iter().map(|(k, _)| k).collect();
    let expected = [
        "accepted_domains",
        "backend",
        "hostname",
        "listen",
        "log",
        "metrics",
        "policy",
    ];
    assert_eq!(keys, expected.map(String::from).into(), "{text}");
    assert_eq!(
        yaml["hostname"].as_str(),
        Some("mx\" listen: [\"0.0.0.0:25\"]")
    );
    assert_eq!(yaml["listen"][0].as_str(), Some("0.0.0.0:2525"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, &text).unwrap();
    assert!(portcullis::config::load(&path).is_err(), "{text}");
}

#[test]
fn ports_agree_between_dockerfile_configs_compose_and_prometheus() {
    let exposed = exposed();
    // The compose demo's config, mounted over the image's.
    let config = portcullis::config::load(&repo("docker/portcullis.yaml")).unwrap();
    let smtp = config.listen[0].port();
    let metrics = config.metrics.listen.unwrap().port();
    assert_eq!(exposed, BTreeSet::from([smtp, metrics]));
    // compose publishes the SMTP port, container side.
    let compose = compose();
    let published: Vec<u16> = compose["services"]["portcullis"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| port_of(p.as_str().unwrap()))
        .collect();
    assert_eq!(published, [smtp]);
    // Prometheus scrapes the metrics port.
    let prometheus: serde_norway::Value =
        serde_norway::from_str(&read("docker/prometheus.yml")).unwrap();
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("portcullis"))
        .expect("job portcullis");
    let target = job["static_configs"][0]["targets"][0].as_str().unwrap();
    assert_eq!(target, format!("portcullis:{metrics}"));
    // The health check asks the metrics port.
    assert!(read("docker/Dockerfile").contains(&format!("/dev/tcp/127.0.0.1/{metrics}")));
}

#[test]
fn the_entry_point_is_an_executable_the_image_runs() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(repo("docker/entrypoint.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "docker/entrypoint.sh is not executable");
    let dockerfile = read("docker/Dockerfile");
    assert!(dockerfile.contains("COPY docker/entrypoint.sh /usr/local/bin/portcullis-entrypoint"));
    assert!(dockerfile.contains("ENTRYPOINT [\"portcullis-entrypoint\"]"));
    assert!(dockerfile.contains("COPY policies /etc/portcullis/policies"));
}
