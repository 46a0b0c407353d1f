//! The Docker files, checked without a Docker engine: every COPY source of both images
//! exists, compose.yaml parses and mounts files that exist, the ports agree between
//! EXPOSE, the configs, compose, Prometheus and the health check, and the config the
//! image's entry point writes from the environment passes `check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bin;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
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
    assert_eq!(
        config.accepted_domains.patterns().collect::<Vec<_>>(),
        ["example.com", "*.example.com"]
    );
    assert_eq!(config.backend.url.to_string(), "smtp://192.0.2.25:25");
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
