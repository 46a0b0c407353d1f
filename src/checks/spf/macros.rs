//! SPF macros (RFC 7208 §7): parsing a macro-string once, when its record is parsed, and
//! expanding it for one evaluation.
//!
//! Owns: the macro grammar of a domain-spec (`%{` letter transformers delimiters `}`, `%%`,
//! `%_`, `%-`; a `%` followed by anything else is a syntax error; `c`, `r` and `t`, the
//! letters of explanation text, are errors here too, §7.1), the transformers (keep the N
//! right-hand parts, reverse, split on `.-+,/_=`), URL escaping for upper-case letters,
//! the §7.3 rule that an expanded domain over 253 characters loses labels on its left, and
//! the bound that makes expanding cheap: at most `TAIL_MAX` bytes (the tail of a longer
//! expansion, which gives the same name). Explanation text (§6.2) is never fetched, so never expanded. Must not: look anything up
//! (the `p` value is found by `validated.rs` and handed in through `Vars`).

use std::borrow::Cow;
use std::net::IpAddr;

/// A macro letter (RFC 7208 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    /// `s`: the sender, `local@domain`.
    Sender,
    /// `l`: the sender's local-part.
    Local,
    /// `o`: the sender's domain.
    SenderDomain,
    /// `d`: the domain whose record is being evaluated.
    Domain,
    /// `i`: the client IP, dotted (nibbles for IPv6).
    Ip,
    /// `p`: the validated domain name of the client IP (RFC 7208 §5.5), or `unknown`.
    Validated,
    /// `v`: `in-addr` or `ip6`.
    Version,
    /// `h`: the HELO/EHLO name.
    Helo,
}

impl Letter {
    fn from_byte(b: u8) -> Option<Letter> {
        Some(match b.to_ascii_lowercase() {
            b's' => Letter::Sender,
            b'l' => Letter::Local,
            b'o' => Letter::SenderDomain,
            b'd' => Letter::Domain,
            b'i' => Letter::Ip,
            b'p' => Letter::Validated,
            b'v' => Letter::Version,
            b'h' => Letter::Helo,
            _ => return None,
        })
    }
}

/// `c`, `r`, `t`: letters of explanation text only (RFC 7208 §7.1).
fn explanation_only(b: u8) -> bool {
    matches!(b.to_ascii_lowercase(), b'c' | b'r' | b't')
}

/// One piece of a parsed macro-string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text (`%%`, `%_` and `%-` already turned into `%`, ` ` and `%20`).
    Text(String),
    /// A `%{...}` macro.
    Expand {
        letter: Letter,
        /// Upper-case letter: URL-escape the result.
        escape: bool,
        /// Keep this many right-hand parts (never 0).
        keep: Option<usize>,
        reverse: bool,
        /// The delimiters to split on; empty means `.`.
        delimiters: String,
    },
}

/// A macro-string whose syntax has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    parts: Vec<Part>,
    ends_with_expand: bool,
}

/// A macro-string that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MacroError(String);

/// The values the letters expand to, for one evaluation of one domain.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// `s`.
    pub sender: &'a str,
    /// `l`.
    pub local: &'a str,
    /// `o`.
    pub sender_domain: &'a str,
    /// `d`.
    pub domain: &'a str,
    /// `i`, `c`, `v` (IPv4-mapped addresses already turned into IPv4).
    pub ip: IpAddr,
    /// `p`.
    pub validated: &'a str,
    /// `h`.
    pub helo: &'a str,
}

/// The longest domain name a query can carry, in text without the final dot.
const MAX_NAME: usize = 253;

/// The longest expansion kept whole (`MacroString::expand`).
pub const TAIL_MAX: usize = 4 * 1024;

/// What is kept of a longer one: its tail, far more than the 254 bytes §7.3 can keep.
const TAIL_KEEP: usize = 1024;

impl MacroString {
    /// Parses `text` as the macro-string of a domain-spec or of a modifier's value.
    pub fn parse(text: &str) -> Result<MacroString, MacroError> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut ends_with_expand = false;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                if !matches!(b, 0x21..=0x7e) {
                    return Err(MacroError(format!(
                        "character {:?} not allowed",
                        char::from(b)
                    )));
                }
                literal.push(char::from(b));
                ends_with_expand = false;
                i += 1;
                continue;
            }
            ends_with_expand = true;
            match bytes.get(i + 1) {
                Some(b'%') => literal.push('%'),
                Some(b'_') => literal.push(' '),
                Some(b'-') => literal.push_str("%20"),
                Some(b'{') => {
                    let Some(len) = bytes[i + 2..].iter().position(|&c| c == b'}') else {
                        return Err(MacroError("unterminated macro".into()));
                    };
                    let inner = &text[i + 2..i + 2 + len];
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_expand(inner)?);
                    i += 2 + len + 1;
                    continue;
                }
                _ => {
                    return Err(MacroError(
                        "'%' must be followed by '{', '%', '_' or '-'".into(),
                    ));
                }
            }
            i += 2;
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(MacroString {
            parts,
            ends_with_expand,
        })
    }

    /// True when the text ends in a macro-expand (`%{..}`, `%%`, `%_`, `%-`): a domain-spec
    /// may end so instead of in a top label (RFC 7208 §7.1 `domain-end`).
    pub fn ends_with_expand(&self) -> bool {
        self.ends_with_expand
    }

    /// True when expanding needs the validated domain name (`%{p}`), which costs lookups.
    pub fn uses_validated(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Expand {
                    letter: Letter::Validated,
                    ..
                }
            )
        })
    }

    /// The expanded text, or its last `TAIL_KEEP` bytes or so when it would be longer than
    /// `TAIL_MAX`: never more than `TAIL_MAX` bytes, however many macros over however
    /// long a sender. It is built from the right, and once it holds `TAIL_KEEP` bytes the
    /// parts further left are not even expanded: §7.3 keeps at most the last 254 bytes of
    /// a name (253 and a final dot), all of them in that tail, so the name is the same.
    pub fn expand(&self, vars: &Vars<'_>) -> String {
        let mut pieces = Vec::new();
        let mut len = 0;
        for part in self.parts.iter().rev() {
            if len >= TAIL_KEEP {
                break;
            }
            let piece = expand_part(part, vars);
            len += piece.len();
            pieces.push(piece);
        }
        let mut out = String::with_capacity(len);
        for piece in pieces.iter().rev() {
            out.push_str(piece);
        }
        if out.len() > TAIL_MAX {
            keep_tail(&mut out, TAIL_KEEP);
        }
        out
    }

    /// The expanded text as a name to query, cut down to 253 characters (not counting a
    /// final dot) by dropping whole labels from the left (RFC 7208 §7.3). A final dot is
    /// kept: dropping it is the DNS layer's (`dns::lookup`), once, so that `foo.com..`
    /// stays a name that cannot be queried instead of becoming `foo.com`.
    pub fn expand_domain(&self, vars: &Vars<'_>) -> String {
        let mut name = self.expand(vars);
        let end = name.len() - usize::from(name.ends_with('.'));
        let mut start = 0;
        while end - start > MAX_NAME {
            match name[start..end].find('.') {
                Some(dot) => start += dot + 1,
                None => break,
            }
        }
        name.drain(..start);
        name
    }
}

/// One part's text.
fn expand_part(part: &Part, vars: &Vars<'_>) -> String {
    match part {
        Part::Text(t) => t.clone(),
        Part::Expand {
            letter,
            escape,
            keep,
            reverse,
            delimiters,
        } => {
            let value = transform(&value(*letter, vars), *keep, *reverse, delimiters);
            if *escape {
                let mut out = String::with_capacity(value.len());
                url_escape(&value, &mut out);
                out
            } else {
                value
            }
        }
    }
}

/// Drops the front of `text` to keep about its last `keep` bytes (at a character boundary).
fn keep_tail(text: &mut String, keep: usize) {
    let mut start = text.len().saturating_sub(keep);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.drain(..start);
}

/// The inside of `%{...}`: letter, digits, `r`, delimiters.
fn parse_expand(inner: &str) -> Result<Part, MacroError> {
    let bytes = inner.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(MacroError("empty macro".into()));
    };
    if explanation_only(first) {
        return Err(MacroError(format!(
            "macro letter {:?} is only allowed in explanations",
            char::from(first)
        )));
    }
    let Some(letter) = Letter::from_byte(first) else {
        return Err(MacroError(format!(
            "unknown macro letter {:?}",
            char::from(first)
        )));
    };
    let mut i = 1;
    let digits_end = i + bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let keep = if digits_end > i {
        let n = inner[i..digits_end].bytes().fold(0usize, |n, d| {
            n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
        });
        if n == 0 {
            return Err(MacroError("a macro cannot keep 0 parts".into()));
        }
        Some(n)
    } else {
        None
    };
    i = digits_end;
    let reverse = bytes.get(i).is_some_and(|b| b.eq_ignore_ascii_case(&b'r'));
    if reverse {
        i += 1;
    }
    let delimiters = &inner[i..];
    if let Some(bad) = delimiters.chars().find(|c| !".-+,/_=".contains(*c)) {
        return Err(MacroError(format!("{bad:?} is not a macro delimiter")));
    }
    Ok(Part::Expand {
        letter,
        escape: first.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters: delimiters.to_string(),
    })
}

/// A letter's value before transformation.
fn value<'a>(letter: Letter, vars: &Vars<'a>) -> Cow<'a, str> {
    match letter {
        Letter::Sender => Cow::Borrowed(vars.sender),
        Letter::Local => Cow::Borrowed(vars.local),
        Letter::SenderDomain => Cow::Borrowed(vars.sender_domain),
        Letter::Domain => Cow::Borrowed(vars.domain),
        Letter::Validated => Cow::Borrowed(vars.validated),
        Letter::Helo => Cow::Borrowed(vars.helo),
        Letter::Ip => Cow::Owned(dotted(vars.ip)),
        Letter::Version => Cow::Borrowed(match vars.ip {
            IpAddr::V4(_) => "in-addr",
            IpAddr::V6(_) => "ip6",
        }),
    }
}

/// `i`: dotted quad for IPv4, dot-separated nibbles for IPv6 (RFC 7208 §7.3).
fn dotted(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(63);
            for byte in v6.octets() {
                for nibble in [byte >> 4, byte & 0xf] {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            out
        }
    }
}

/// Split on the delimiters, reverse if asked, keep the right-hand parts, join with dots.
fn transform(value: &str, keep: Option<usize>, reverse: bool, delimiters: &str) -> String {
    if keep.is_none() && !reverse && delimiters.is_empty() {
        return value.to_string();
    }
    let delimiters = if delimiters.is_empty() {
        "."
    } else {
        delimiters
    };
    let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
    if reverse {
        parts.reverse();
    }
    let skip = keep.map_or(0, |n| parts.len().saturating_sub(n));
    parts[skip..].join(".")
}

/// URL escaping (RFC 3986): everything but the unreserved characters becomes `%XX`.
fn url_escape(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 7208 §7.4 example values.
    fn vars(ip: &str) -> Vars<'static> {
        Vars {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            validated: "mx.example.org",
            helo: "mx.example.org",
        }
    }

    fn expand(text: &str, ip: &str) -> String {
        MacroString::parse(text).unwrap().expand(&vars(ip))
    }

    #[test]
    fn rfc7208_section_7_4_examples() {
        let v4 = "192.0.2.3";
        for (macro_text, expansion) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
        ] {
            assert_eq!(expand(macro_text, v4), expansion, "{macro_text}");
        }
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn escapes_and_upper_case_letters() {
        assert_eq!(expand("a%%b%_c%-d", "192.0.2.3"), "a%b c%20d");
        let mut v = vars("192.0.2.3");
        v.local = "~jack&jill=up-a_b3.c";
        let m = MacroString::parse("l=%{L}").unwrap();
        assert_eq!(m.expand(&v), "l=~jack%26jill%3Dup-a_b3.c");
        // Upper-case transformers and delimiters work the same.
        assert_eq!(expand("%{D2R}", "192.0.2.3"), "example.email");
    }

    #[test]
    fn several_delimiters_split_together() {
        let mut v = vars("192.0.2.3");
        v.local = "foo-bar+zip+quux";
        let m = MacroString::parse("%{l2r+-}").unwrap();
        assert_eq!(m.expand(&v), "bar.foo");
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "%",
            "foo%",
            "%.",
            "%(ir)",
            "%{",
            "%{}",
            "%{x}",
            "%{a}",
            "%{d0}",
            "%{d2q}",
            "%{ir:}",
            "a\u{0}b",
            "a b",
            "caf\u{e9}",
        ] {
            assert!(MacroString::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn c_r_t_are_for_explanations_only() {
        for letter in ["%{c}", "%{r}", "%{t}", "%{C}", "%{R2r}"] {
            let err = MacroString::parse(letter).unwrap_err();
            assert!(err.to_string().contains("explanations"), "{letter}: {err}");
        }
    }

    #[test]
    fn ends_with_expand_tracks_the_last_token() {
        let ends = |t: &str| MacroString::parse(t).unwrap().ends_with_expand();
        assert!(ends("foo.%{d}"));
        assert!(ends("foo%%"));
        assert!(ends("foo%-"));
        assert!(!ends("%{d}.com"));
        assert!(!ends("%{d}."));
    }

    #[test]
    fn long_names_lose_labels_on_the_left() {
        let mut v = vars("192.0.2.3");
        let long = "a234567890.".repeat(30) + "example.com";
        v.domain = &long;
        let m = MacroString::parse("%{d}.").unwrap();
        let name = m.expand_domain(&v);
        assert!(name.len() <= 254, "{}", name.len());
        assert!(name.len() > 240, "{}", name.len());
        assert!(name.ends_with(".example.com.") && name.starts_with("a234567890."));
        // Without the final dot, the same cut.
        let bare = MacroString::parse("%{d}").unwrap().expand_domain(&v);
        assert_eq!(bare, name.strip_suffix('.').unwrap());
        // Short names are left alone, final dots and all: the DNS layer drops one, and
        // refuses a name that still ends in a dot after that.
        v.domain = "example.com";
        assert_eq!(m.expand_domain(&v), "example.com.");
        let two = MacroString::parse("%{d}..").unwrap().expand_domain(&v);
        assert_eq!(two, "example.com..");
        assert!(!crate::dns::lookup::queryable(&two));
    }

    /// The §7.3 cut of a whole expansion, as if it had no bound.
    fn cut(expanded: &str) -> String {
        let dot = if expanded.ends_with('.') { "." } else { "" };
        let mut name = expanded.strip_suffix('.').unwrap_or(expanded);
        while name.len() > MAX_NAME {
            match name.split_once('.') {
                Some((_, rest)) => name = rest,
                None => break,
            }
        }
        format!("{name}{dot}")
    }

    #[test]
    fn a_record_of_macros_over_a_long_sender_stays_within_the_bound() {
        // ~60 KB of %{S} over a 2 KB sender: unbounded, some 30 MB.
        let local = "a23456789.".repeat(200) + "x";
        let sender = format!("{local}@example.com");
        let mut v = vars("192.0.2.3");
        v.sender = &sender;
        let one = MacroString::parse("%{S}").unwrap().expand(&v);
        assert_eq!(one.len(), 2015);
        let many = MacroString::parse(&"%{S}".repeat(15_000)).unwrap();
        let tail = many.expand(&v);
        assert!(tail.len() <= TAIL_MAX, "{}", tail.len());
        assert!(tail.len() >= TAIL_KEEP, "{}", tail.len());
        // The same name as the whole would give: its end is the end of any three copies.
        let name = many.expand_domain(&v);
        assert_eq!(name, cut(&one.repeat(3)));
        assert_eq!(name, "a23456789.".repeat(23) + "x%40example.com");
    }

    #[test]
    fn the_tail_gives_the_same_name_as_the_whole() {
        let long = "jörg.ü-".repeat(300) + "x";
        for (unit, local) in [
            ("%{s}.", "a.b"),
            ("%{S}", "x.y.z"),
            ("%{l}-%{d}.", long.as_str()),
            ("%{L}.%{o}", long.as_str()),
            ("ab.%{l2r-}", long.as_str()),
        ] {
            let sender = format!("{local}@email.example.com");
            let mut v = vars("192.0.2.3");
            v.sender = &sender;
            v.local = local;
            let one = MacroString::parse(unit).unwrap().expand(&v);
            for n in [1, 2, 10, 100, 1000] {
                let spec = MacroString::parse(&unit.repeat(n)).unwrap();
                let bounded = spec.expand(&v);
                assert!(bounded.len() <= TAIL_MAX, "{unit} x {n}: {}", bounded.len());
                assert_eq!(spec.expand_domain(&v), cut(&one.repeat(n)), "{unit} x {n}");
            }
        }
    }

    #[test]
    fn tails_are_cut_at_a_character_boundary() {
        let mut text = "é".repeat(3000);
        keep_tail(&mut text, 1001);
        assert_eq!(text, "é".repeat(500));
        let mut short = String::from("abc");
        keep_tail(&mut short, 10);
        assert_eq!(short, "abc");
    }

    #[test]
    fn only_p_needs_lookups() {
        let uses = |t: &str| MacroString::parse(t).unwrap().uses_validated();
        assert!(uses("%{p}.example.com"));
        assert!(uses("x.%{P2}"));
        assert!(!uses("%{d}.example.com"));
    }
}
