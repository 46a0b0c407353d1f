//! The metrics endpoint as its consumers see it: a real Prometheus scrapes /metrics, the
//! health endpoints answer, and every metric the shipped dashboard and alert rules use
//! exists (so the dashboards cannot silently go blank).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Gateway;
use common::prometheus::{JOB, Prometheus, promtool};

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
        Some(1.0)
    );
    assert_eq!(
        common::metric_value(&body, "portcullis_commands_total{command=\"DATA\"}"),
        Some(1.0)
    );
    assert_eq!(
        common::metric_value(&body, "portcullis_backend_up"),
        Some(1.0)
    );
    assert!(common::metric_value(&body, "portcullis_message_bytes_total").is_some_and(|v| v > 0.0));
    assert!(body.ends_with("# EOF\n"));
}

/// A GET with one `Accept` header: status, the response's `Content-Type`, and the body.
async fn get_accepting(gw: &Gateway, path: &str, accept: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.metrics_addr)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\nAccept: {accept}\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .expect("a content-type header")
        .to_string();
    (status, content_type, body.to_string())
}

/// What `promtool check metrics` says about an exposition (stdout and stderr), and whether
/// it exited 0.
fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, exposition).unwrap();
    promtool(
        &["check", "metrics"],
        Some(std::fs::File::open(&file).unwrap()),
    )
}

/// The scrape formats side by side: OpenMetrics for a client that prefers it (Prometheus's
/// own header), the 0.0.4 text format for `Accept: text/plain`, which `promtool check
/// metrics` then lints without a single complaint (while it refuses the OpenMetrics text).
#[tokio::test]
async fn text_format_on_request_passes_promtool() {
    let gw = Gateway::start(|_| {}).await;
    traffic(&gw).await;
    let prometheus =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (status, content_type, open) = get_accepting(&gw, "/metrics", prometheus).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"));
    let (ok, said) = promtool_check_metrics(&open);
    assert!(
        !ok && said.contains("info"),
        "promtool took OpenMetrics: {said}"
    );

    let (status, content_type, body) = get_accepting(&gw, "/metrics", "text/plain").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!body.contains("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE portcullis_build_info gauge\n"),
        "{body}"
    );
    assert_eq!(
        common::metric_value(
            &body,
            "portcullis_messages_total{mode=\"smtp\",verdict=\"accept\"}"
        ),
        Some(1.0)
    );
    // Errors fail the check; lint findings (missing help, naming) are printed too, and
    // none is acceptable either.
    let (ok, said) = promtool_check_metrics(&body);
    assert!(ok && said.trim().is_empty(), "promtool: {said}");
}

/// The `hash` label of `portcullis_config_info` in an exposition.
fn config_hash(body: &str) -> String {
    let line = body
        .lines()
        .find(|l| l.starts_with("portcullis_config_info{"))
        .unwrap_or_else(|| panic!("no portcullis_config_info: {body}"));
    let hash = line
        .strip_prefix("portcullis_config_info{hash=\"")
        .and_then(|l| l.strip_suffix("\"} 1"))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    hash.to_string()
}

/// The process metrics are read at each scrape, and the config in force is announced at
/// start-up and again by a policy reload that took, not by one that was refused.
#[tokio::test]
async fn process_metrics_and_the_config_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "rules: []\n").unwrap();
    let gw = Gateway::start(|c| c.policy = Some(policy.clone())).await;
    let (_, body) = gw.http_get("/metrics").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        common::metric_value(&body, "process_resident_memory_bytes").is_some_and(|v| v > 1e6),
        "{body}"
    );
    assert!(common::metric_value(&body, "process_virtual_memory_bytes").is_some_and(|v| v > 1e6));
    // A tenth of a second of CPU spent on purpose, so that the counter cannot be 0.
    let burn = std::time::Instant::now();
    while burn.elapsed() < Duration::from_millis(100) {
        std::hint::black_box(burn.elapsed());
    }
    let (_, burnt) = gw.http_get("/metrics").await;
    assert!(
        common::metric_value(&burnt, "process_cpu_seconds_total").is_some_and(|v| v >= 0.05),
        "{burnt}"
    );
    let present = |series: &str| {
        common::metric_value(&body, series).unwrap_or_else(|| panic!("no {series}:\n{body}"))
    };
    let started = present("process_start_time_seconds");
    assert!(
        started > now - 3600.0 && started <= now,
        "{started} vs {now}"
    );
    let open = present("process_open_fds");
    assert!(open > 3.0, "{open}");
    assert!(common::metric_value(&body, "process_max_fds").is_some_and(|v| v > open));
    assert_eq!(open, present("portcullis_open_files"));
    let loaded = present("portcullis_config_loaded_timestamp_seconds");
    assert!(loaded > now - 60.0 && loaded <= now, "{loaded} vs {now}");
    let first = config_hash(&body);

    let running = gw.running.as_ref().unwrap();
    std::fs::write(&policy, "rules: [ broken\n").unwrap();
    running.reload().unwrap_err();
    let (_, body) = gw.http_get("/metrics").await;
    assert_eq!(
        config_hash(&body),
        first,
        "a refused reload changes nothing"
    );
    std::fs::write(
        &policy,
        "rules:\n  - name: r\n    when: { helo: x.test }\n    action: reject\n",
    )
    .unwrap();
    running.reload().unwrap();
    let (_, body) = gw.http_get("/metrics").await;
    assert_ne!(config_hash(&body), first);
    assert!(
        common::metric_value(&body, "portcullis_config_loaded_timestamp_seconds")
            .is_some_and(|v| v >= loaded)
    );
}

#[tokio::test]
async fn readyz_fails_when_the_backend_is_down() {
    let dead = common::free_port();
    let gw = Gateway::start(|c| {
        c.backend.url = format!("smtp://127.0.0.1:{dead}").parse().unwrap();
        c.timeouts.backend_connect = Duration::from_secs(1);
    })
    .await;
    let (status, body) = gw.http_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(gw.metric("portcullis_backend_up").await, Some(0.0));
}

#[tokio::test]
async fn real_prometheus_scrapes_the_gateway() {
    let gw = Gateway::start(|_| {}).await;
    traffic(&gw).await;
    let prom = Prometheus::start(&[gw.metrics_addr], Duration::from_secs(1)).await;
    let mut answer = Vec::new();
    for _ in 0..300 {
        match prom
            .query("portcullis_messages_total{verdict=\"accept\",mode=\"smtp\"}")
            .await
        {
            Ok(series) if !series.is_empty() => {
                answer = series;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let stored = answer.first().expect("Prometheus never stored our series");
    assert_eq!(
        stored.labels.get("job").map(String::as_str),
        Some(JOB),
        "{stored:?}"
    );
    assert_eq!(stored.samples[0].1, 1.0, "value should be 1: {stored:?}");
    let up = prom.query("up{job=\"portcullis\"}").await.unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].samples[0].1, 1.0, "{up:?}");
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

/// `portcullis_*` and `process_*` identifiers used in a dashboard or rules file.
fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let starts = text
        .match_indices("portcullis_")
        .chain(text.match_indices("process_"))
        // Not the tail of another name (`my_process_x`).
        .filter(|(i, _)| {
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    for (i, _) in starts {
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
    // Rate-limit series exist once a limit has counted, rule hits once a rule is in a
    // verdict, the DNSBL series with a zone configured (asked of a name server nobody
    // listens on: the lookups fail, off the network), the state backend gauge with
    // `state.backend: redis` (here a Redis nobody listens on: the gateway falls back), and
    // the certificate expiry gauge with `tls:`.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("limits.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: per-sender\n    limit: { key: mail_from.domain, rate: 1000/hour }\n  - name: tag-sender\n    when: { mail_from.domain: sender.example }\n    action: tag\n",
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
        c.dns.nameservers = vec![
            format!("127.0.0.1:{}", common::free_port())
                .parse()
                .unwrap(),
        ];
        c.dns.timeout = std::time::Duration::from_millis(200);
        c.dns.attempts = 1;
        c.dnsbl.zones = vec![portcullis::config::schema::DnsblZoneConfig {
            zone: "bl.test".into(),
            weight: 1,
            codes: Vec::new(),
            allow: false,
            kind: portcullis::config::schema::ZoneKind::Ip,
        }];
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
    let rules = root.join("dashboards/alerts.yml").display().to_string();
    let (ok, said) = promtool(&["check", "rules", &rules], None);
    assert!(ok, "{said}");
}
