//! Unit tests of the registry as a whole: the two exposition formats of one registry.

use std::collections::BTreeSet;

use super::{Event, Format, Metrics};

/// The sample names of an exposition (comments left out).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// `(name, type)` of every `# TYPE` line.
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[test]
fn the_text_format_is_prometheus_0_0_4_with_the_same_series() {
    let m = Metrics::new();
    m.emit(Event::Session("accepted"));
    let open = m.render_as(Format::OpenMetrics);
    let classic = m.render_as(Format::Prometheus);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE portcullis_build info\n"), "{open}");
    assert!(!classic.contains("# EOF"), "{classic}");
    assert!(!classic.contains("# UNIT"), "{classic}");
    assert!(
        classic.contains("# TYPE portcullis_build_info gauge\n"),
        "{classic}"
    );
    assert!(classic.contains("portcullis_sessions_total{result=\"accepted\"} 1\n"));
    let classic_types = types(&classic);
    assert!(!classic_types.is_empty());
    for (name, kind) in &classic_types {
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind.as_str()),
            "{name} {kind}"
        );
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} {kind}");
    }
    // Every OpenMetrics family is there, and the samples are the same series.
    assert_eq!(types(&open).len(), classic_types.len());
    assert_eq!(sample_names(&open), sample_names(&classic));
}
