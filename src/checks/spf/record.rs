//! SPF records (RFC 7208 §4.5, §4.6, §5, §6, §12): picking the one `v=spf1` record among a
//! name's TXT records, and parsing it whole before anything is evaluated.
//!
//! Owns: record selection (exactly one TXT record that starts with `v=spf1`, in any case,
//! followed by a space or its end; none: no record; several: an error), the ABNF of terms
//! (the eight mechanisms with their arguments and CIDR lengths, `redirect=` and `exp=` at
//! most once each, unknown modifiers that must still be well-formed, unknown mechanisms an
//! error; `exp=` is validated like any domain-spec but not kept: it is never fetched), and
//! the `domain-end` rule (a domain-spec ends in a top label or a macro). A record with any
//! error anywhere is refused whole (§4.6: permerror before evaluation).
//! Must not: expand macros or look anything up (`macros.rs`, `eval.rs`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::macros::MacroString;

/// What a name's TXT records hold (RFC 7208 §4.5).
#[derive(Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// No `v=spf1` record.
    None,
    /// Exactly one: its text.
    One(&'a [u8]),
    /// More than one `v=spf1` record: permerror.
    Several,
}

/// Picks the SPF record among `records` (each TXT record's strings already joined).
pub fn select(records: &[Box<[u8]>]) -> Selection<'_> {
    let mut spf = records.iter().filter(|r| is_spf1(r));
    match (spf.next(), spf.next()) {
        (None, _) => Selection::None,
        (Some(one), None) => Selection::One(one),
        (Some(_), Some(_)) => Selection::Several,
    }
}

/// `v=spf1` (any case) followed by a space or the end of the record.
fn is_spf1(record: &[u8]) -> bool {
    record.len() >= 6
        && record[..6].eq_ignore_ascii_case(b"v=spf1")
        && record.get(6).is_none_or(|&b| b == b' ')
}

/// A parsed SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The mechanisms, in order.
    pub directives: Vec<Directive>,
    /// `redirect=`.
    pub redirect: Option<MacroString>,
}

/// A qualifier and its mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// `+` (the default), `-`, `~` or `?`.
    pub qualifier: Qualifier,
    /// What is matched.
    pub mechanism: Mechanism,
    /// The term as written, for reports.
    term: String,
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.term)
    }
}

/// The result a matching mechanism gives (RFC 7208 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `+`.
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

/// The prefix lengths of `a` and `mx` (`/n` for IPv4, `//n` for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DualCidr {
    /// IPv4 prefix length, 0..=32 (default 32).
    pub v4: u8,
    /// IPv6 prefix length, 0..=128 (default 128).
    pub v6: u8,
}

impl Default for DualCidr {
    fn default() -> Self {
        DualCidr { v4: 32, v6: 128 }
    }
}

/// A mechanism (RFC 7208 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `all`.
    All,
    /// `include:<domain-spec>`.
    Include(MacroString),
    /// `a[:<domain-spec>][<dual-cidr>]`.
    A(Option<MacroString>, DualCidr),
    /// `mx[:<domain-spec>][<dual-cidr>]`.
    Mx(Option<MacroString>, DualCidr),
    /// `ptr[:<domain-spec>]`.
    Ptr(Option<MacroString>),
    /// `ip4:<network>[/<len>]`.
    Ip4(Ipv4Addr, u8),
    /// `ip6:<network>[/<len>]`.
    Ip6(Ipv6Addr, u8),
    /// `exists:<domain-spec>`.
    Exists(MacroString),
}

impl Mechanism {
    /// True for the mechanisms that cost a DNS lookup (RFC 7208 §4.6.4).
    pub fn looks_up(&self) -> bool {
        !matches!(
            self,
            Mechanism::All | Mechanism::Ip4(..) | Mechanism::Ip6(..)
        )
    }
}

/// Why a record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(String);

fn err<T>(message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError(message.into()))
}

/// Parses a whole `v=spf1` record (as `select` returned it).
pub fn parse(record: &[u8]) -> Result<Record, SyntaxError> {
    if !is_spf1(record) {
        return err("not a v=spf1 record");
    }
    if let Some(&bad) = record.iter().find(|&&b| !(0x20..=0x7e).contains(&b)) {
        return err(format!("byte 0x{bad:02x} is not printable ASCII"));
    }
    let text = std::str::from_utf8(&record[6..]).or_else(|_| err("not ASCII"))?;
    let mut parsed = Record {
        directives: Vec::new(),
        redirect: None,
    };
    // `exp=` is checked (syntax, at most once) and then dropped: we never fetch it (§6.2
    // makes it optional, and we never refuse with an SPF explanation).
    let mut exp = None;
    for term in text.split(' ').filter(|t| !t.is_empty()) {
        parse_term(term, &mut parsed, &mut exp)?;
    }
    Ok(parsed)
}

fn parse_term(
    term: &str,
    record: &mut Record,
    exp: &mut Option<MacroString>,
) -> Result<(), SyntaxError> {
    // A modifier has its '=' before any ':' or '/' (RFC 7208 §4.6.1).
    let first = term.find(['=', ':', '/']);
    if let Some(eq) = first.filter(|&i| term.as_bytes()[i] == b'=') {
        return parse_modifier(&term[..eq], &term[eq + 1..], record, exp);
    }
    let (qualifier, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, args) = rest.split_at(name_end);
    let mechanism = parse_mechanism(&name.to_ascii_lowercase(), args)
        .map_err(|e| SyntaxError(format!("{term}: {e}")))?;
    record.directives.push(Directive {
        qualifier,
        mechanism,
        term: term.to_string(),
    });
    Ok(())
}

fn parse_modifier(
    name: &str,
    value: &str,
    record: &mut Record,
    exp: &mut Option<MacroString>,
) -> Result<(), SyntaxError> {
    let mut chars = name.bytes();
    let valid_name = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid_name {
        return err(format!("{name:?} is not a modifier name"));
    }
    let name = name.to_ascii_lowercase();
    let slot = match name.as_str() {
        "redirect" => &mut record.redirect,
        "exp" => exp,
        _ => {
            // Unknown modifiers are ignored, but must be well-formed (RFC 7208 §6).
            MacroString::parse(value).map_err(|e| SyntaxError(format!("{name}={value}: {e}")))?;
            return Ok(());
        }
    };
    if slot.is_some() {
        return err(format!("{name}= appears twice"));
    }
    *slot = Some(domain_spec(value).map_err(|e| SyntaxError(format!("{name}={value}: {e}")))?);
    Ok(())
}

fn parse_mechanism(name: &str, args: &str) -> Result<Mechanism, SyntaxError> {
    let target = |args: &str| match args.strip_prefix(':') {
        Some(spec) => domain_spec(spec),
        None => err("a domain is required"),
    };
    Ok(match name {
        "all" if args.is_empty() => Mechanism::All,
        "all" => return err("all takes no argument"),
        "include" => Mechanism::Include(target(args)?),
        "exists" => Mechanism::Exists(target(args)?),
        "a" | "mx" => {
            let (spec, cidr) = dual_cidr(args)?;
            let domain = match spec.strip_prefix(':') {
                Some(spec) => Some(domain_spec(spec)?),
                None if spec.is_empty() => None,
                None => return err("bad prefix length"),
            };
            if name == "a" {
                Mechanism::A(domain, cidr)
            } else {
                Mechanism::Mx(domain, cidr)
            }
        }
        "ptr" => match args.strip_prefix(':') {
            Some(spec) => Mechanism::Ptr(Some(domain_spec(spec)?)),
            None if args.is_empty() => Mechanism::Ptr(None),
            None => return err("ptr takes no prefix length"),
        },
        "ip4" => {
            let Some(network) = args.strip_prefix(':') else {
                return err("an address is required");
            };
            let (addr, len) = network.split_once('/').unwrap_or((network, ""));
            let Some(addr) = ip4_network(addr) else {
                return err(format!("{addr:?} is not an IPv4 address"));
            };
            let len = if network.contains('/') {
                cidr_length(len, 32)?
            } else {
                32
            };
            Mechanism::Ip4(addr, len)
        }
        "ip6" => {
            let Some(network) = args.strip_prefix(':') else {
                return err("an address is required");
            };
            let (addr, len) = network.split_once('/').unwrap_or((network, ""));
            let Ok(addr) = addr.parse::<Ipv6Addr>() else {
                return err(format!("{addr:?} is not an IPv6 address"));
            };
            let len = if network.contains('/') {
                cidr_length(len, 128)?
            } else {
                128
            };
            Mechanism::Ip6(addr, len)
        }
        other => return err(format!("unknown mechanism {other:?}")),
    })
}

/// Splits a trailing `[/n][//n]` off `args` (`a` and `mx`, RFC 7208 §5.3, §5.4).
fn dual_cidr(args: &str) -> Result<(&str, DualCidr), SyntaxError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut rest = args;
    let mut cidr = DualCidr::default();
    if let Some(i) = rest.rfind("//").filter(|&i| digits(&rest[i + 2..])) {
        cidr.v6 = cidr_length(&rest[i + 2..], 128)?;
        rest = &rest[..i];
    }
    if let Some(i) = rest.rfind('/').filter(|&i| digits(&rest[i + 1..])) {
        cidr.v4 = cidr_length(&rest[i + 1..], 32)?;
        rest = &rest[..i];
    }
    Ok((rest, cidr))
}

/// A prefix length: digits without a leading zero, at most `max` (RFC 7208 §5.6 ABNF).
fn cidr_length(text: &str, max: u8) -> Result<u8, SyntaxError> {
    let valid = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && text.len() <= 3;
    match text.parse::<u8>() {
        Ok(n) if valid && n <= max => Ok(n),
        _ => err(format!("bad prefix length /{text} (0..={max})")),
    }
}

/// `ip4-network`: four decimal octets without leading zeros.
fn ip4_network(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        let valid = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        if !valid {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// A domain-spec: a macro-string ending in `.toplabel[.]` or in a macro (RFC 7208 §7.1).
fn domain_spec(text: &str) -> Result<MacroString, SyntaxError> {
    if text.is_empty() {
        return err("empty domain");
    }
    let spec = MacroString::parse(text).map_err(|e| SyntaxError(e.to_string()))?;
    if spec.ends_with_expand() || ends_with_toplabel(text) {
        Ok(spec)
    } else {
        err(format!(
            "{text:?} does not end in a top-level domain or a macro"
        ))
    }
}

fn ends_with_toplabel(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    text.rsplit_once('.')
        .is_some_and(|(_, top)| is_toplabel(top))
}

/// `toplabel`: letters, digits and inner dashes, not all digits.
fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && (label.contains('-') || b.iter().any(u8::is_ascii_alphabetic))
}

impl Qualifier {
    /// The result a match gives.
    pub fn result(self) -> super::SpfResult {
        match self {
            Qualifier::Pass => super::SpfResult::Pass,
            Qualifier::Fail => super::SpfResult::Fail,
            Qualifier::SoftFail => super::SpfResult::SoftFail,
            Qualifier::Neutral => super::SpfResult::Neutral,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Record {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn bad(text: &str) {
        assert!(
            parse(text.as_bytes()).is_err(),
            "{text:?} should be refused"
        );
    }

    fn mechanisms(text: &str) -> Vec<Mechanism> {
        ok(text)
            .directives
            .into_iter()
            .map(|d| d.mechanism)
            .collect()
    }

    fn records(texts: &[&[u8]]) -> Vec<Box<[u8]>> {
        texts.iter().map(|t| Box::from(*t)).collect()
    }

    #[test]
    fn selection_wants_exactly_one_v_spf1_record() {
        let r = records(&[b"v=spf1 -all", b"other text"]);
        assert_eq!(select(&r), Selection::One(b"v=spf1 -all"));
        let r = records(&[b"V=SpF1", b"v=spf10 +all", b"v=spf1mx"]);
        assert_eq!(select(&r), Selection::One(b"V=SpF1"));
        let r = records(&[b"v=spf1 -all", b"v=spf1 -all"]);
        assert_eq!(select(&r), Selection::Several);
        let r = records(&[b"v=spf1 -all", b"V=sPf1 +all"]);
        assert_eq!(select(&r), Selection::Several);
        let r = records(&[b"v=spf10", b"v=spf3 -all", b"\x96"]);
        assert_eq!(select(&r), Selection::None);
        assert_eq!(select(&[]), Selection::None);
    }

    #[test]
    fn terms_are_separated_by_spaces_only() {
        assert_eq!(mechanisms("v=spf1 a  -all ").len(), 2);
        assert!(mechanisms("v=spf1").is_empty());
        bad("v=spf1 a:ctrl.example.com\rptr -all");
        bad("v=spf1 ip4:192.0.2.5\n include:example.com ~all");
        bad("v=spf1 a:foo.example.com\0");
        bad("v=spf1 \u{80}a:example.net -all");
        bad("v=spf1 a:example.net \u{96}all");
    }

    #[test]
    fn qualifiers() {
        let q: Vec<Qualifier> = ok("v=spf1 all +all -all ~all ?all")
            .directives
            .iter()
            .map(|d| d.qualifier)
            .collect();
        use Qualifier::*;
        assert_eq!(q, [Pass, Pass, Fail, SoftFail, Neutral]);
    }

    #[test]
    fn unknown_mechanisms_and_bad_all() {
        bad("v=spf1 ip4:1.2.3.4 -all moo");
        bad("v=spf1 -all.");
        bad("v=spf1 -all:foobar");
        bad("v=spf1 -all/8");
        bad("v=spf1 redirect:example.com");
        bad("v=spf1 moo.cow/far_out=man:dog/cat -all");
        bad("v=spf1 moo.cow:far_out=man:dog/cat -all");
        assert_eq!(mechanisms("v=spf1 ALL"), [Mechanism::All]);
    }

    #[test]
    fn modifiers() {
        let r = ok("v=spf1 moo.cow-far_out=man:dog/cat default=+ ip4:1.2.3.4 -all");
        assert_eq!(r.directives.len(), 2);
        assert!(r.redirect.is_none());
        // exp= is validated, not kept.
        let r = ok("v=spf1 Redirect=example.com EXP=exp.%{d}");
        assert!(r.redirect.is_some());
        bad("v=spf1 1up=foo");
        bad("v=spf1 =all");
        bad("v=spf1 -all foo=%abc");
        bad("v=spf1 exp=a.example.com -all exp=b.example.com");
        bad("v=spf1 redirect=a.example.com redirect=a.example.com");
        bad("v=spf1 exp= -all");
        bad("v=spf1 exp=-all");
        bad("v=spf1 redirect=-all ?all");
        bad("v=spf1 ?all redirect=");
        bad("v=spf1 exp=%{r}.example.com");
    }

    #[test]
    fn domain_specs_end_in_a_toplabel_or_a_macro() {
        for good in [
            "v=spf1 a:foo.example.xn--zckzah",
            "v=spf1 a:foo:bar/baz.example.com",
            "v=spf1 a:mail.example...com",
            "v=spf1 a:example.com.",
            "v=spf1 a:%{H}",
            "v=spf1 a:%{d}.1-2",
            "v=spf1 exists:%{i}.%{l2r-}.user.%{d2}",
            "v=spf1 a:macro%%percent%_%_space%-url-space.example.com",
        ] {
            ok(good);
        }
        for wrong in [
            "v=spf1 a:foo-bar",
            "v=spf1 a:111.222.33.44",
            "v=spf1 a:abc.123",
            "v=spf1 a:museum",
            "v=spf1 a:museum.",
            "v=spf1 a:example.-com",
            "v=spf1 a:example.com-",
            "v=spf1 a:example.com:8080",
            "v=spf1 a:",
            "v=spf1 mx:",
            "v=spf1 include:",
            "v=spf1 include",
            "v=spf1 exists",
            "v=spf1 exists:",
            "v=spf1 ptr:",
            "v=spf1 a:%{d}.",
            "v=spf1 exists:%(ir).sbl.example.com",
        ] {
            bad(wrong);
        }
    }

    #[test]
    fn include_exists_and_ptr_take_no_prefix_length() {
        bad("v=spf1 include:ip5.example.com/24 -all");
        bad("v=spf1 exists:mail.example.com/24");
        bad("v=spf1 ptr/0 -all");
        assert!(matches!(mechanisms("v=spf1 ptr")[0], Mechanism::Ptr(None)));
        assert!(matches!(
            mechanisms("v=spf1 ptr:example.com")[0],
            Mechanism::Ptr(Some(_))
        ));
    }

    #[test]
    fn dual_cidr_lengths() {
        let cidr = |text: &str| match &mechanisms(text)[0] {
            Mechanism::A(_, c) | Mechanism::Mx(_, c) => *c,
            other => panic!("{other:?}"),
        };
        assert_eq!(cidr("v=spf1 a"), DualCidr { v4: 32, v6: 128 });
        assert_eq!(cidr("v=spf1 a/24//64"), DualCidr { v4: 24, v6: 64 });
        assert_eq!(cidr("v=spf1 mx//0"), DualCidr { v4: 32, v6: 0 });
        assert_eq!(
            cidr("v=spf1 a:foo.example.com/24"),
            DualCidr { v4: 24, v6: 128 }
        );
        assert_eq!(
            cidr("v=spf1 mx:foo.example.com//33"),
            DualCidr { v4: 32, v6: 33 }
        );
        for wrong in [
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/24/64",
            "v=spf1 mx/33",
            "v=spf1 a/032",
            "v=spf1 a/",
            "v=spf1 a:foo.example.com/33",
        ] {
            bad(wrong);
        }
    }

    #[test]
    fn ip4_networks() {
        assert_eq!(
            mechanisms("v=spf1 ip4:1.1.1.1/0 ip4:1.2.3.4/32 ip4:10.0.0.0"),
            [
                Mechanism::Ip4(Ipv4Addr::new(1, 1, 1, 1), 0),
                Mechanism::Ip4(Ipv4Addr::new(1, 2, 3, 4), 32),
                Mechanism::Ip4(Ipv4Addr::new(10, 0, 0, 0), 32),
            ]
        );
        for wrong in [
            "v=spf1 ip4",
            "v=spf1 ip4:",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4.5",
            "v=spf1 ip4:01.2.3.4",
            "v=spf1 ip4:256.2.3.4",
            "v=spf1 ip4:1.2.3.4/",
        ] {
            bad(wrong);
        }
    }

    #[test]
    fn ip6_networks() {
        assert_eq!(
            mechanisms("v=spf1 ip6:::1.1.1.1/0 ip6:Cafe:Babe:8000::/33 ip6:2001:db8::1"),
            [
                Mechanism::Ip6("::1.1.1.1".parse().unwrap(), 0),
                Mechanism::Ip6("cafe:babe:8000::".parse().unwrap(), 33),
                Mechanism::Ip6("2001:db8::1".parse().unwrap(), 128),
            ]
        );
        for wrong in [
            "v=spf1 -all ip6",
            "v=spf1 ip6:::1.1.1.1/129",
            "v=spf1 ip6:::1.1.1.1//33",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 ip6:2001:db8::/064",
        ] {
            bad(wrong);
        }
    }

    #[test]
    fn lookups_are_counted_for_the_dns_mechanisms() {
        let counted: Vec<bool> =
            mechanisms("v=spf1 a mx ptr include:x.com exists:x.com ip4:1.2.3.4 ip6:::1 all")
                .iter()
                .map(Mechanism::looks_up)
                .collect();
        assert_eq!(counted, [true, true, true, true, true, false, false, false]);
    }
}
