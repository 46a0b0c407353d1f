//! A real Prometheus server for the tests, scraping targets on 127.0.0.1, and a client for
//! its HTTP API (`/api/v1/query`, `/api/v1/query_range`).
//!
//! Owns: the Prometheus child process (its config and TSDB in a temp dir, killed by PID on
//! Drop) and the parsing of the API's JSON answers. Must not: know what a gateway exports
//! or what a dashboard expects; it answers what Prometheus answers, errors included.
//!
//! The JSON is read with `serde_norway`, already a dependency of the crate: JSON is YAML
//! (flow style), so no JSON library is added for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_norway::Value;

/// Runs `promtool` with `args`, `stdin` (a file) as its input when given: whether it exited
/// 0, and what it said (stdout, then stderr).
pub fn promtool(args: &[&str], stdin: Option<std::fs::File>) -> (bool, String) {
    let mut cmd = Command::new("promtool");
    cmd.args(args);
    if let Some(file) = stdin {
        cmd.stdin(file);
    }
    let out = cmd
        .output()
        .expect("promtool not installed: run the README test command, which installs it");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The scrape job's name: the one `dashboards/alerts.yml` requires (GatewayDown).
pub const JOB: &str = "portcullis";

/// One Prometheus child.
pub struct Prometheus {
    /// The HTTP API (`--web.listen-address`).
    pub api: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

/// One series of an answer: its labels (`__name__` included when Prometheus keeps it) and
/// its samples as (Unix time, value); an instant query gives one sample.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) every `every` as job `JOB`, and
    /// waits until its API answers. Panics if it does not within 30 s.
    pub async fn start(targets: &[SocketAddr], every: Duration) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let secs = every.as_secs_f64();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  evaluation_interval: {secs}s\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let port = super::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus not installed: run the README test command, which installs it");
        let prom = Prometheus {
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connected = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(prom.api),
            )
            .await;
            if matches!(connected, Ok(Ok(_)))
                && super::http_get(prom.api, "/-/ready").await.0 == 200
            {
                return prom;
            }
            assert!(Instant::now() < deadline, "Prometheus never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query at the server's now. `Err` is Prometheus' error text (a bad
    /// expression, an unknown function...).
    pub async fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        self.get(&format!("/api/v1/query?query={}", encode(expr)))
            .await
    }

    /// A range query from `start` to `end` (Unix seconds) every `step`.
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<Series>, String> {
        self.get(&format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={}",
            encode(expr),
            step.as_secs_f64()
        ))
        .await
    }

    async fn get(&self, path: &str) -> Result<Vec<Series>, String> {
        let (status, body) = super::http_get(self.api, path).await;
        let answer: Value = serde_norway::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if answer.get("status").and_then(Value::as_str) != Some("success") {
            let kind = answer
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("");
            let error = answer.get("error").and_then(Value::as_str).unwrap_or(&body);
            return Err(format!("HTTP {status}: {kind}: {error}"));
        }
        let data = answer
            .get("data")
            .ok_or_else(|| format!("no data: {body}"))?;
        let result = data
            .get("result")
            .ok_or_else(|| format!("no result: {body}"))?;
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector" | "matrix") => result
                .as_sequence()
                .ok_or_else(|| format!("result is not a list: {body}"))?
                .iter()
                .map(series)
                .collect(),
            // A bare number (`time()`, `1 + 1`): one series without labels.
            Some("scalar") => Ok(vec![Series {
                labels: BTreeMap::new(),
                samples: vec![sample(result)?],
            }]),
            other => Err(format!("unexpected resultType {other:?}: {body}")),
        }
    }

    /// Waits until every one of the `targets` live-or-dead targets has been scraped after
    /// `after` (Unix seconds): a scrape that started later saw everything done before.
    /// Panics after `secs` seconds.
    pub async fn wait_scraped_after(&self, targets: usize, after: f64, secs: u64) {
        let expr = format!("count(timestamp(up{{job=\"{JOB}\"}}) > {after:.3})");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let seen = self
                .query(&expr)
                .await
                .ok()
                .and_then(|s| s.first().and_then(|s| s.samples.first()).map(|v| v.1));
            if seen == Some(targets as f64) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not all {targets} targets scraped after {after} within {secs} s (last: {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Percent-encodes a query parameter (everything but RFC 3986 unreserved characters).
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn series(item: &Value) -> Result<Series, String> {
    let mut labels = BTreeMap::new();
    if let Some(metric) = item.get("metric").and_then(Value::as_mapping) {
        for (k, v) in metric {
            if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                labels.insert(k.to_string(), v.to_string());
            }
        }
    }
    let samples = if let Some(values) = item.get("values").and_then(Value::as_sequence) {
        values.iter().map(sample).collect::<Result<_, _>>()?
    } else if let Some(value) = item.get("value") {
        vec![sample(value)?]
    } else {
        return Err(format!("a series without samples: {item:?}"));
    };
    Ok(Series { labels, samples })
}

/// `[1700000000.123, "1.5"]` → (time, value); `"NaN"`, `"+Inf"` parse as such.
fn sample(pair: &Value) -> Result<(f64, f64), String> {
    let bad = || format!("not a sample: {pair:?}");
    let seq = pair.as_sequence().ok_or_else(bad)?;
    let time = seq.first().and_then(Value::as_f64).ok_or_else(bad)?;
    let value = seq
        .get(1)
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(bad)?;
    Ok((time, value))
}
