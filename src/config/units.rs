//! Human units in the config and policies: durations (`300s`, `5m`, `250ms`, `1h`, `35d`),
//! sizes (`26214400`, `25MiB`, `10MB`, `512KiB`) and rates (`100/hour`, `10/minute`).
//!
//! Owns: parsing those strings and their serde adapters. Must not: validate ranges.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration, size, rate or file mode that cannot be read; each names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUnit {
    /// No number in front.
    #[error("invalid duration {0:?}: expected e.g. 30s, 5m, 250ms")]
    Duration(String),
    /// A unit that is not `ms`, `s`, `m`, `h` or `d`.
    #[error("invalid duration unit in {0:?}: use ms, s, m, h or d")]
    DurationUnit(String),
    /// More than `u64` milliseconds or seconds.
    #[error("duration {0:?} is too large")]
    DurationTooLarge(String),
    /// No number in front.
    #[error("invalid size {0:?}: expected e.g. 26214400 or 25MiB")]
    Size(String),
    /// A unit that is not a byte multiple we know.
    #[error("invalid size unit in {0:?}: use KB, MB, GB, KiB, MiB or GiB")]
    SizeUnit(String),
    /// More than `u64` bytes.
    #[error("size {0:?} is too large")]
    SizeTooLarge(String),
    /// Not `count/period`.
    #[error("invalid rate {0:?}: expected e.g. 100/hour, 10/minute or 30/10m")]
    Rate(String),
    /// A count or a period of zero.
    #[error("rate {0:?} must allow at least one event per period")]
    EmptyRate(String),
    /// Not octal, or above `0o7777`.
    #[error("invalid file mode {0:?}: expected octal such as \"0660\"")]
    FileMode(String),
}

/// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, BadUnit> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| BadUnit::Duration(s.to_string()))?;
    let (mult, millis) = match unit.trim() {
        "ms" => (1, true),
        "s" => (1, false),
        "m" => (60, false),
        "h" => (3600, false),
        "d" => (86400, false),
        _ => return Err(BadUnit::DurationUnit(s.to_string())),
    };
    let n = n
        .checked_mul(mult)
        .ok_or_else(|| BadUnit::DurationTooLarge(s.to_string()))?;
    Ok(if millis {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    })
}

/// Parses a byte size: a plain number, or a number with KB/MB/GB (×1000) or KiB/MiB/GiB (×1024).
pub fn parse_size(s: &str) -> Result<u64, BadUnit> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| BadUnit::Size(s.to_string()))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        _ => return Err(BadUnit::SizeUnit(s.to_string())),
    };
    n.checked_mul(mult)
        .ok_or_else(|| BadUnit::SizeTooLarge(s.to_string()))
}

/// A rate: `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many.
    pub count: u32,
    /// Per how long.
    pub period: Duration,
}

impl Rate {
    /// The time one event "costs": `period / count` (the GCRA emission interval).
    pub fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.period;
        let unit = match (p.as_secs(), p.subsec_nanos()) {
            (1, 0) => "second".to_string(),
            (60, 0) => "minute".to_string(),
            (3600, 0) => "hour".to_string(),
            (86400, 0) => "day".to_string(),
            (n, 0) => format!("{n}s"),
            _ => format!("{}ms", p.as_millis()),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Parses `<count>/<period>`: `100/hour`, `10/minute`, `5/second`, `1000/day`, or a
/// duration as the period (`30/10m`).
pub fn parse_rate(s: &str) -> Result<Rate, BadUnit> {
    let bad = || BadUnit::Rate(s.to_string());
    let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = match period.trim() {
        "second" | "sec" | "s" => Duration::from_secs(1),
        "minute" | "min" | "m" => Duration::from_secs(60),
        "hour" | "h" => Duration::from_secs(3600),
        "day" | "d" => Duration::from_secs(86400),
        other => parse_duration(other).map_err(|_| bad())?,
    };
    if count == 0 || period.is_zero() {
        return Err(BadUnit::EmptyRate(s.to_string()));
    }
    Ok(Rate { count, period })
}

/// Parses a string value inside its own deserializer, so that an error carries the key's
/// YAML path (`timeouts.command`), not the enclosing section's, as one raised after the
/// string was read would; plain numbers go to `number` when it is given.
struct Parsed<T> {
    what: &'static str,
    parse: fn(&str) -> Result<T, BadUnit>,
    number: Option<fn(u64) -> T>,
}

impl<T> serde::de::Visitor<'_> for Parsed<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        match self.number {
            Some(number) => Ok(number(v)),
            None => Err(E::invalid_type(serde::de::Unexpected::Unsigned(v), &self)),
        }
    }
}

/// serde adapter for durations written as strings.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(Parsed {
        what: "a duration such as 30s, 5m or 250ms",
        parse: parse_duration,
        number: None,
    })
}

/// serde adapter for sizes written as numbers or strings with units.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Parsed {
        what: "a size such as 26214400 or 25MiB",
        parse: parse_size,
        number: Some(|n| n),
    })
}

/// Parses a file mode written in octal (`"0660"`, `"660"`); at most `0o7777`.
pub fn parse_octal_mode(s: &str) -> Result<u32, BadUnit> {
    let s = s.trim();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(BadUnit::FileMode(s.to_string())),
    }
}

/// Serde adapter for `parse_octal_mode` (a string; a YAML number would be read as decimal).
pub fn octal_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    parse_octal_mode(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
        assert_eq!(parse_size("25MiB"), Ok(25 * 1024 * 1024));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(parse_duration("35d"), Ok(Duration::from_secs(35 * 86400)));
    }

    #[test]
    fn rates() {
        let r = parse_rate("100/hour").expect("rate");
        assert_eq!((r.count, r.period), (100, Duration::from_secs(3600)));
        assert_eq!(r.interval(), Duration::from_secs(36));
        assert_eq!(r.to_string(), "100/hour");
        assert_eq!(
            parse_rate("30/10m").map(|r| r.period),
            Ok(Duration::from_secs(600))
        );
        assert_eq!(parse_rate(" 5 / second ").map(|r| r.count), Ok(5));
        assert_eq!(parse_rate("30/10m").expect("rate").to_string(), "30/600s");
        assert_eq!(
            parse_rate("10/500ms").expect("rate").to_string(),
            "10/500ms"
        );
        for bad in ["100", "0/hour", "x/hour", "10/fortnight", "10/0s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
