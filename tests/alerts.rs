//! The alert rules' unit tests: `promtool test rules dashboards/alerts.test.yml` passes,
//! and it proves every alert of `dashboards/alerts.yml` both ways: a case where it fires
//! and one where it stays quiet. A new alert without both fails here.
//!
//! What each alert's expression gives on a live gateway is `tests/dashboards/`' job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::prometheus::promtool;
use serde_norway::Value;

fn read(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    serde_norway::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The alert names of the rules file.
fn alerts() -> BTreeSet<String> {
    let rules = read("dashboards/alerts.yml");
    let mut out = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.insert(
                rule["alert"]
                    .as_str()
                    .expect("an alerting rule")
                    .to_string(),
            );
        }
    }
    out
}

/// (alerts with a firing case, alerts with a quiet case) in the unit tests.
fn cases() -> (BTreeSet<String>, BTreeSet<String>) {
    let tests = read("dashboards/alerts.test.yml");
    assert_eq!(
        tests["rule_files"].as_sequence().unwrap(),
        &[Value::from("alerts.yml")],
        "the unit tests must load the shipped rules"
    );
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"].as_sequence().unwrap() {
        let Some(cases) = group.get("alert_rule_test").and_then(Value::as_sequence) else {
            continue;
        };
        for case in cases {
            let name = case["alertname"].as_str().unwrap().to_string();
            let expected = case.get("exp_alerts").and_then(Value::as_sequence);
            if expected.is_some_and(|e| !e.is_empty()) {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    (firing, quiet)
}

#[test]
fn every_alert_fires_and_stays_quiet_in_its_unit_tests() {
    let alerts = alerts();
    assert!(!alerts.is_empty(), "alerts.yml has no alerts");
    let (firing, quiet) = cases();
    let never_fires: Vec<_> = alerts.difference(&firing).collect();
    let never_quiet: Vec<_> = alerts.difference(&quiet).collect();
    assert!(
        never_fires.is_empty() && never_quiet.is_empty(),
        "dashboards/alerts.test.yml lacks a firing case for {never_fires:?} and a quiet one for {never_quiet:?}"
    );
    let unknown: Vec<_> = firing
        .union(&quiet)
        .filter(|a| !alerts.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests = root
        .join("dashboards/alerts.test.yml")
        .display()
        .to_string();
    let (ok, said) = promtool(&["test", "rules", &tests], None);
    assert!(ok && said.contains("SUCCESS"), "{said}");
}
