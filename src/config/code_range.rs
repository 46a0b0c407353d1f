//! `dnsbl.zones[].codes`: the answers of a DNS list that count as a listing, read once when
//! the config is.
//!
//! Owns: one entry's forms (`127.0.0.2` or `127.0.0.2-127.0.0.11`) and their errors. Must
//! not: classify answers (`checks::dnsbl` does).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Deserialize;

/// An inclusive range of return codes, `127.0.0.2-127.0.0.11` or a single `127.0.0.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CodeRange {
    low: Ipv4Addr,
    high: Ipv4Addr,
}

/// A `codes` entry that is not one address or two joined by `-`, lowest first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCodeRange {
    /// A side that is not an IPv4 address.
    #[error("{0:?} is not an IPv4 address")]
    NotAnAddress(String),
    /// The first address is above the second.
    #[error("{0:?}: the first address is above the second")]
    Reversed(String),
}

impl CodeRange {
    /// True if `code` is in the range, ends included.
    pub fn contains(&self, code: Ipv4Addr) -> bool {
        self.low <= code && code <= self.high
    }
}

impl FromStr for CodeRange {
    type Err = BadCodeRange;

    fn from_str(text: &str) -> Result<Self, BadCodeRange> {
        let parse = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| BadCodeRange::NotAnAddress(s.to_string()))
        };
        let (low, high) = match text.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let one = parse(text)?;
                (one, one)
            }
        };
        if low > high {
            return Err(BadCodeRange::Reversed(text.to_string()));
        }
        Ok(CodeRange { low, high })
    }
}

impl TryFrom<String> for CodeRange {
    type Error = BadCodeRange;

    fn try_from(text: String) -> Result<Self, BadCodeRange> {
        text.parse()
    }
}

impl fmt::Display for CodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.low == self.high {
            true => write!(f, "{}", self.low),
            false => write!(f, "{}-{}", self.low, self.high),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_codes_and_ranges() {
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let r: CodeRange = " 127.0.0.2 - 127.0.0.11 ".parse().expect("valid");
        assert!(r.contains(a("127.0.0.2")) && r.contains(a("127.0.0.11")));
        assert!(!r.contains(a("127.0.0.12")) && !r.contains(a("127.0.0.1")));
        assert_eq!(r.to_string(), "127.0.0.2-127.0.0.11");
        let one: CodeRange = "127.0.0.4".parse().expect("valid");
        assert_eq!(one.to_string(), "127.0.0.4");
        assert!(one.contains(a("127.0.0.4")) && !one.contains(a("127.0.0.5")));
        assert_eq!(
            "127.0.0.9-127.0.0.2".parse::<CodeRange>(),
            Err(BadCodeRange::Reversed("127.0.0.9-127.0.0.2".into()))
        );
        for bad in ["127.0.0", "", "x-127.0.0.2", "::1"] {
            assert!(
                matches!(bad.parse::<CodeRange>(), Err(BadCodeRange::NotAnAddress(_))),
                "{bad}"
            );
        }
    }
}
