//! Content negotiation for `/metrics`: which exposition format a scraper asked for.
//!
//! Owns: reading an HTTP `Accept` header (media ranges with `q` values, RFC 9110 §12.5.1)
//! into a `Format`, and each format's `Content-Type`. Must not: encode metrics (that is
//! `Metrics::render`) or know about HTTP beyond the header's value.

use prometheus_client::encoding::prometheus_text;

/// An exposition format `/metrics` can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text: `# EOF`, `# UNIT`, `info` and counters typed by family name.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, what `promtool check metrics` reads.
    Prometheus,
}

impl Format {
    /// What a client gets when it states no preference between the two: OpenMetrics, which
    /// `/metrics` has always served.
    pub const DEFAULT: Format = Format::OpenMetrics;

    /// The `Content-Type` header of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format an `Accept` header prefers: the acceptable one with the highest `q`,
    /// OpenMetrics on a tie, and `DEFAULT` without a header or when it accepts neither.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::DEFAULT;
        };
        let (mut open, mut classic) = (None::<(u8, f32)>, None::<(u8, f32)>);
        for range in accept.split(',') {
            let Some((matches, q)) = parse_range(range) else {
                continue;
            };
            // A specific range such as `text/plain` outranks `*/*` for the format it
            // names, whatever their order (RFC 9110: the most specific reference wins).
            for (format, slot) in [
                (Format::OpenMetrics, &mut open),
                (Format::Prometheus, &mut classic),
            ] {
                if let Some(specificity) = matches.specificity(format) {
                    slot_update(slot, specificity, q);
                }
            }
        }
        let open = open.map(|(_, q)| q).unwrap_or(0.0);
        let classic = classic.map(|(_, q)| q).unwrap_or(0.0);
        match (open, classic) {
            (o, c) if o <= 0.0 && c <= 0.0 => Format::DEFAULT,
            (o, c) if c > o => Format::Prometheus,
            _ => Format::OpenMetrics,
        }
    }
}

/// Keeps the `q` of the most specific range seen for one format.
fn slot_update(slot: &mut Option<(u8, f32)>, specificity: u8, q: f32) {
    match slot {
        Some((s, _)) if *s > specificity => {}
        Some((s, old)) if *s == specificity => *old = old.max(q),
        _ => *slot = Some((specificity, q)),
    }
}

/// One media range of an `Accept` header.
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    version: Option<&'a str>,
}

impl Range<'_> {
    /// How specifically this range names `format` (3 exact type, 2 `type/*`, 1 `*/*`), or
    /// `None` when it does not accept it. A version other than the one served does not match.
    fn specificity(&self, format: Format) -> Option<u8> {
        let (kind, subtype, versions): (&str, &str, &[&str]) = match format {
            Format::OpenMetrics => ("application", "openmetrics-text", &["1.0.0", "0.0.1"]),
            Format::Prometheus => ("text", "plain", &["0.0.4"]),
        };
        if self.kind == "*" && self.subtype == "*" {
            return Some(1);
        }
        if !self.kind.eq_ignore_ascii_case(kind) {
            return None;
        }
        if self.subtype == "*" {
            return Some(2);
        }
        let version_ok = self.version.is_none_or(|v| versions.contains(&v));
        (self.subtype.eq_ignore_ascii_case(subtype) && version_ok).then_some(3)
    }
}

/// A media range and its `q` (1 when absent; ranges that do not parse are skipped).
fn parse_range(text: &str) -> Option<(Range<'_>, f32)> {
    let mut parts = text.split(';').map(str::trim);
    let (kind, subtype) = parts.next()?.split_once('/')?;
    let mut range = Range {
        kind: kind.trim(),
        subtype: subtype.trim(),
        version: None,
    };
    let mut q = 1.0;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "q" => {
                q = value
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))?
            }
            "version" => range.version = Some(value),
            _ => {}
        }
    }
    Some((range, q))
}

#[cfg(test)]
mod tests {
    use super::Format::{self, OpenMetrics, Prometheus};

    #[test]
    fn what_prometheus_sends_gets_openmetrics() {
        // Prometheus 2.x and 3.x scrape headers, verbatim.
        for accept in [
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        ] {
            assert_eq!(Format::from_accept(Some(accept)), OpenMetrics, "{accept}");
        }
    }

    #[test]
    fn a_scraper_preferring_the_text_format_gets_it() {
        for accept in [
            "text/plain",
            "text/plain;version=0.0.4",
            "text/plain; version=0.0.4; charset=utf-8",
            "text/*",
            // Prometheus with `scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]`.
            "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1",
            "application/openmetrics-text;q=0, */*",
            "*/*;q=0.5, text/plain",
        ] {
            assert_eq!(Format::from_accept(Some(accept)), Prometheus, "{accept}");
        }
    }

    #[test]
    fn no_preference_keeps_openmetrics() {
        for accept in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/plain, application/openmetrics-text"),
            Some("application/json"),
            // A text format version we do not write is not a match.
            Some("text/plain;version=1.0.0"),
            Some("text/plain;q=0"),
            Some("garbage;;;"),
            Some("text/plain;q=2"),
        ] {
            assert_eq!(Format::from_accept(accept), OpenMetrics, "{accept:?}");
        }
    }

    #[test]
    fn the_specific_range_decides_over_a_wildcard() {
        // `*/*;q=1` does not raise text/plain above its own q=0.1.
        let accept = "*/*, text/plain;q=0.1, application/openmetrics-text;q=0.2";
        assert_eq!(Format::from_accept(Some(accept)), OpenMetrics);
        let accept = "*/*, application/openmetrics-text;q=0";
        assert_eq!(Format::from_accept(Some(accept)), Prometheus);
    }

    #[test]
    fn content_types() {
        assert!(
            OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );
        assert_eq!(
            Prometheus.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
