//! Every dashboard panel and every alert, proven against a real Prometheus: it scrapes
//! four real gateways (and one target that is down) every second while `rig.rs` (and
//! `rig/traffic.rs`) drives traffic meant to light every panel; then every PromQL expression of
//! `dashboards/gateway.json` and `dashboards/alerts.yml` is evaluated through Prometheus'
//! HTTP API (`/api/v1/query_range` over the test's time range, one step a second). An
//! expression that errors fails the test, and so does one that shows nothing where
//! `expect.rs` says the traffic must have lit it. The alert rules' own behaviour (firing,
//! staying quiet, `for:` durations) is `tests/alerts.rs`' job (`promtool test rules`).
//!
//! Grafana's variables are substituted as Grafana would for the dashboard's defaults:
//! - `$instance` → `.*` (the variable's "All" value, its default: `allValue` in the JSON);
//! - `$__rate_interval` → `1m`: Grafana computes it from the scrape interval and the
//!   panel's resolution (at least 4 scrape intervals); a minute covers the whole test's
//!   traffic at every step after it, so each rate sees every increase.
//!
//! Any other `$` left in an expression fails the test: a new variable must be substituted
//! here, explicitly. `${DS_PROMETHEUS}` is the datasource, never part of an expression.
//!
//! Counters are read as Prometheus reads them: an increase needs a sample before it. So
//! the traffic starts after each target's first scrape, and runs in two rounds with a
//! scrape between them: a series born in round 1 (a rate-limit rule's first count) has
//! grown by round 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod expect;
mod rig;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::prometheus::{Prometheus, Series, unix_now};
use expect::Want;
use serde_norway::Value;

/// The scrape interval, and the step of the range queries.
const EVERY: Duration = Duration::from_secs(1);
/// How long a scrape of every target may take to happen on a loaded machine.
const SCRAPE_WAIT_SECS: u64 = 30;

/// One expression to evaluate: where it comes from (for messages), and the PromQL.
struct Target {
    /// Panel id, title and refId; or 0, the alert's name and "".
    id: u64,
    title: String,
    ref_id: String,
    expr: String,
}

impl Target {
    fn name(&self) -> String {
        match self.id {
            0 => format!("alert {}", self.title),
            id => format!("panel {id} \"{}\" [{}]", self.title, self.ref_id),
        }
    }
}

fn read_yaml(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    // JSON is YAML: the dashboard parses with the YAML library the crate already has.
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every panel target of the dashboard, rows' nested panels included.
fn panel_targets() -> Vec<Target> {
    fn walk(panels: &[Value], out: &mut Vec<Target>) {
        for p in panels {
            for t in p
                .get("targets")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                out.push(Target {
                    id: p.get("id").and_then(Value::as_u64).expect("a panel id"),
                    title: p.get("title").and_then(Value::as_str).unwrap().into(),
                    ref_id: t.get("refId").and_then(Value::as_str).unwrap().into(),
                    expr: t
                        .get("expr")
                        .and_then(Value::as_str)
                        .expect("a PromQL expr")
                        .into(),
                });
            }
            if let Some(nested) = p.get("panels").and_then(Value::as_sequence) {
                walk(nested, out);
            }
        }
    }
    let dashboard = read_yaml("dashboards/gateway.json");
    let mut out = Vec::new();
    walk(dashboard["panels"].as_sequence().unwrap(), &mut out);
    assert!(!out.is_empty(), "the dashboard has no panel targets");
    out
}

/// Every alerting rule of the rules file.
fn alert_targets() -> Vec<Target> {
    let rules = read_yaml("dashboards/alerts.yml");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule.get("alert").and_then(Value::as_str);
            out.push(Target {
                id: 0,
                title: name.expect("only alerting rules in alerts.yml").into(),
                ref_id: String::new(),
                expr: rule["expr"].as_str().unwrap().into(),
            });
        }
    }
    assert!(!out.is_empty(), "alerts.yml has no alerts");
    out
}

/// The expression with Grafana's variables replaced (see the file's header).
fn substitute(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$instance", ".*");
    assert!(
        !out.contains('$'),
        "a Grafana variable this test does not substitute: {expr}"
    );
    out
}

/// What the answer fails to show, against `want`; `None` when it shows it.
fn judge(want: Want, answer: &[Series]) -> Option<String> {
    let positive = |s: &Series| s.samples.iter().any(|(_, v)| v.is_finite() && *v > 0.0);
    match want {
        Want::Dark(_) => None,
        Want::Data(_) | Want::Fires if answer.iter().any(|s| !s.samples.is_empty()) => None,
        Want::Data(_) | Want::Fires => Some("no data".into()),
        Want::Lit(_) if answer.iter().all(|s| s.samples.is_empty()) => {
            Some("no data (a metric or label that /metrics does not expose?)".into())
        }
        Want::Lit(_) if !answer.iter().any(positive) => Some("nothing above 0".into()),
        Want::Lit(sets) => {
            let dark: Vec<&str> = sets
                .iter()
                .copied()
                .filter(|set| {
                    let labels: BTreeMap<&str, &str> = set
                        .split(',')
                        .map(|kv| kv.split_once('=').expect("k=v"))
                        .collect();
                    !answer.iter().any(|s| {
                        positive(s)
                            && labels
                                .iter()
                                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                    })
                })
                .collect();
            (!dark.is_empty()).then(|| format!("nothing above 0 for {dark:?}"))
        }
    }
}

/// What `expect.rs` says of `target`; `None` when it is in neither list.
fn wanted(target: &Target) -> Option<Want> {
    if target.id == 0 {
        expect::ALERTS
            .iter()
            .find(|(name, _)| *name == target.title)
            .map(|(_, w)| *w)
    } else {
        expect::PANELS
            .iter()
            .find(|(id, title, r, _)| {
                *id == target.id && *title == target.title && *r == target.ref_id
            })
            .map(|(.., w)| *w)
    }
}

/// Entries of `expect.rs` that match no expression any more.
fn stale(targets: &[Target]) -> Vec<String> {
    let panels = expect::PANELS.iter().filter_map(|(id, title, r, _)| {
        let found = targets
            .iter()
            .any(|t| t.id == *id && t.title == *title && t.ref_id == *r);
        (!found).then(|| {
            format!("expect::PANELS has panel {id} \"{title}\" [{r}], which the dashboard has not")
        })
    });
    let alerts = expect::ALERTS.iter().filter_map(|(name, _)| {
        let found = targets.iter().any(|t| t.id == 0 && t.title == *name);
        (!found).then(|| format!("expect::ALERTS has {name}, which alerts.yml has not"))
    });
    panels.chain(alerts).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_evaluates_and_shows_the_traffic() {
    let took = Instant::now();
    let targets: Vec<Target> = panel_targets().into_iter().chain(alert_targets()).collect();
    let mut failures = stale(&targets);
    for t in &targets {
        if wanted(t).is_none() {
            failures.push(format!(
                "{} is in neither list of tests/dashboards/expect.rs: prove it or say why not",
                t.name()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let mut rig = rig::Rig::start().await;
    let scraped = rig.targets();
    let prom = Prometheus::start(&scraped, EVERY).await;
    let start = unix_now();
    prom.wait_scraped_after(scraped.len(), start, SCRAPE_WAIT_SECS)
        .await;
    rig.round(1).await;
    prom.wait_scraped_after(scraped.len(), unix_now(), SCRAPE_WAIT_SECS)
        .await;
    rig.round(2).await;
    rig.once().await;
    // Two scrapes after the traffic: the range's last step (every `EVERY` from `start`)
    // then falls after the first of them, which saw everything.
    for _ in 0..2 {
        prom.wait_scraped_after(scraped.len(), unix_now(), SCRAPE_WAIT_SECS)
            .await;
    }
    let end = unix_now();

    for t in &targets {
        let want = wanted(t).unwrap();
        match prom
            .query_range(&substitute(&t.expr), start, end, EVERY)
            .await
        {
            Err(e) => failures.push(format!("{}: {e}\n    {}", t.name(), t.expr)),
            Ok(answer) => {
                if let Some(missing) = judge(want, &answer) {
                    failures.push(format!("{}: {missing}\n    {}", t.name(), t.expr));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions failed:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );
    for t in &targets {
        if let Some(Want::Dark(why) | Want::Data(why)) = wanted(t) {
            println!("{} evaluated, not lit: {why}", t.name());
        }
    }
    println!(
        "{} expressions evaluated and shown in {:?}",
        targets.len(),
        took.elapsed()
    );
}

/// The judge itself can say no: zeros, a missing label set and an empty answer fail.
#[test]
fn judging_refuses_zeros_missing_labels_and_nothing() {
    let series = |labels: &[(&str, &str)], values: &[f64]| Series {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        samples: values
            .iter()
            .enumerate()
            .map(|(t, v)| (t as f64, *v))
            .collect(),
    };
    let zeros = [series(&[("result", "ok")], &[0.0, 0.0, f64::NAN])];
    assert!(judge(Want::Lit(&[]), &zeros).is_some());
    assert!(judge(Want::Data("0 is fine"), &zeros).is_none());
    let one = [series(&[("result", "ok")], &[0.0, 2.0])];
    assert!(judge(Want::Lit(&["result=ok"]), &one).is_none());
    assert!(judge(Want::Lit(&["result=ok", "result=error"]), &one).is_some());
    assert!(judge(Want::Fires, &[]).is_some());
    assert!(judge(Want::Data("x"), &[]).is_some());
    assert!(judge(Want::Dark("x"), &[]).is_none());
}
