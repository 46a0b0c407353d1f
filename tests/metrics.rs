//! The metrics endpoint as its consumers see it: a real Prometheus scrapes /metrics, the
//! health endpoints answer, and every metric the shipped dashboard and alert rules use
//! exists (so the dashboards cannot silently go blank).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Gateway, free_port, http_get};

/// Kills the Prometheus process by PID when the test ends, pass or fail.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn traffic(gw: &Gateway) {
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["m@example.test"]).await;
    assert_eq!(c.data(b"Subject: m\r\n\r\nx\r\n").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").await.0, 503);
    assert_eq!(c.cmd("QUIT").await.0, 221);
}

#[tokio::test]
async fn health_endpoints_and_exposition() {
    let gw = Gateway::start(|_| {}).await;
    traffic(&gw).await;
    assert_eq!(gw.http_get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(gw.http_get("/readyz").await.0, 200);
    let (status, body) = gw.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_build_info{version=\""), "{body}");
    assert_eq!(
        common::metric_value(
            &body,
            "portcullis_messages_total{mode=\"smtp\",verdict=\"accept\"}"
        ),
        1.0
    );
    assert_eq!(
        common::metric_value(&body, "portcullis_commands_total{command=\"DATA\"}"),
        1.0
    );
    assert_eq!(common::metric_value(&body, "portcullis_backend_up"), 1.0);
    assert!(common::metric_value(&body, "portcullis_message_bytes_total") > 0.0);
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn readyz_fails_when_the_backend_is_down() {
    let dead = free_port();
    let gw = Gateway::start(|c| {
        c.backend.url = format!("smtp://127.0.0.1:{dead}");
        c.timeouts.backend_connect = Duration::from_secs(1);
    })
    .await;
    let (status, body) = gw.http_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(gw.metric("portcullis_backend_up").await, 0.0);
}

#[tokio::test]
async fn real_prometheus_scrapes_the_gateway() {
    let gw = Gateway::start(|_| {}).await;
    traffic(&gw).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: portcullis\n    static_configs:\n      - targets: ['{}']\n",
            gw.metrics_addr
        ),
    )
    .unwrap();
    let port = free_port();
    let prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus not installed: run the README test command, which installs it"),
    );
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let query = "/api/v1/query?query=portcullis_messages_total%7Bverdict%3D%22accept%22%7D";
    let mut answer = String::new();
    for _ in 0..300 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(api)).await
        {
            drop(s);
            let (status, body) = http_get(api, query).await;
            if status == 200 && body.contains("\"result\":[{") {
                answer = body;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answer.contains("\"job\":\"portcullis\""),
        "Prometheus never stored our series: {answer}"
    );
    assert!(answer.contains(",\"1\"]"), "value should be 1: {answer}");
    let (_, up) = http_get(api, "/api/v1/query?query=up%7Bjob%3D%22portcullis%22%7D").await;
    assert!(up.contains(",\"1\"]"), "{up}");
    drop(prom);
}

/// Metric families the endpoint exposes (names from `# TYPE` lines).
async fn exposed_families(gw: &Gateway) -> BTreeSet<String> {
    let (_, body) = gw.http_get("/metrics").await;
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// `portcullis_*` identifiers used in a dashboard or rules file.
fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("portcullis_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

#[tokio::test]
async fn dashboards_and_alerts_use_only_exposed_metrics() {
    // Rate-limit series exist once a limit has counted, the state backend gauge with
    // `state.backend: redis` (here a Redis nobody listens on: the gateway falls back), and
    // the certificate expiry gauge with `tls:`.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("limits.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: per-sender\n    limit: { key: mail_from.domain, rate: 1000/hour }\n",
    )
    .unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap();
    let tls = portcullis::config::schema::TlsConfig {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        require: Default::default(),
    };
    std::fs::write(&tls.cert, pair.cert.pem()).unwrap();
    std::fs::write(&tls.key, pair.signing_key.serialize_pem()).unwrap();
    let gw = Gateway::start(|c| {
        c.policy = Some(policy.clone());
        c.state.backend = portcullis::config::schema::StateBackend::Redis;
        c.state.redis.urls = vec![format!("redis://127.0.0.1:{}/0", common::free_port())];
        c.tls = Some(tls);
    })
    .await;
    // Families labelled by command or check exist once the first command has run.
    traffic(&gw).await;
    let families = exposed_families(&gw).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["dashboards/gateway.json", "dashboards/alerts.yml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let used = used_metrics(&text);
        assert!(!used.is_empty(), "{file} uses no portcullis metric");
        for name in used {
            let family = ["_total", "_bucket", "_count", "_sum", "_info"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                families.contains(family) || families.contains(&name),
                "{file} uses {name}, which /metrics does not expose (families: {families:?})"
            );
        }
    }
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(root.join("dashboards/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
