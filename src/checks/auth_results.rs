//! The Authentication-Results header field (RFC 8601) that reports every method's verdict,
//! written from our own verdicts (SPF, DKIM and DMARC are ours; ARC's word comes from
//! mail-auth).
//!
//! Shape: `Authentication-Results: <authserv-id>;` then one folded line per method,
//! `method=result (reason) ptype.property=value`. Reasons are RFC 5322 comments (so a
//! reader that does not want them skips them); property values are written as tokens,
//! `local-part@domain` or quoted strings, whichever RFC 8601 §2.2's `pvalue` allows.
//! Must not: decide anything (it reports what the checks found).

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::checks::dkim::DkimVerdict;

/// One Authentication-Results field under construction.
pub struct AuthResults {
    authserv_id: String,
    entries: Vec<String>,
}

impl AuthResults {
    /// An empty field for `authserv_id` (written `; none` if nothing is added).
    pub fn new(authserv_id: &str) -> AuthResults {
        AuthResults {
            authserv_id: authserv_id.to_string(),
            entries: Vec::new(),
        }
    }

    /// `spf=` for the MAIL FROM identity (`postmaster@<helo>` for the null sender).
    pub fn spf(&mut self, result: &str, reason: Option<&str>, mail_from: &str, helo: &str) {
        let mut entry = format!("spf={result}");
        push_comment(&mut entry, reason);
        entry.push_str(" smtp.mailfrom=");
        if mail_from.is_empty() {
            entry.push_str(&pvalue(&format!("postmaster@{helo}")));
        } else {
            entry.push_str(&pvalue(mail_from));
        }
        self.entries.push(entry);
    }

    /// `dkim=` for one signature (or `dkim=none` for an unsigned message).
    pub fn dkim(&mut self, verdict: &DkimVerdict) {
        let mut entry = format!("dkim={}", verdict.result);
        push_comment(&mut entry, verdict.reason.as_deref());
        for (property, value) in [
            ("header.d", verdict.domain.as_deref()),
            ("header.s", verdict.selector.as_deref()),
            ("header.a", verdict.algorithm.as_deref()),
            ("header.b", verdict.b_prefix.as_deref()),
        ] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                let _ = write!(entry, " {property}={}", pvalue(value));
            }
        }
        self.entries.push(entry);
    }

    /// `arc=` (RFC 8617 §10.2 asks for the client address).
    pub fn arc(&mut self, result: &str, reason: Option<&str>, remote_ip: IpAddr) {
        let mut entry = format!("arc={result}");
        push_comment(&mut entry, reason);
        let _ = write!(entry, " smtp.remote-ip={}", pvalue(&remote_ip.to_string()));
        self.entries.push(entry);
    }

    /// `dmarc=`, with the author domain and the policy that applies. `policy.dmarc` takes
    /// only none, quarantine or reject (RFC 9989's registry): an unknown policy (its lookup
    /// failed) is said in the comment instead.
    pub fn dmarc(&mut self, result: &str, reason: Option<&str>, header_from: &str, policy: &str) {
        let mut entry = format!("dmarc={result}");
        let known = matches!(policy, "none" | "quarantine" | "reject");
        let comment = match (known, reason) {
            (true, reason) => reason.map(str::to_string),
            (false, Some(reason)) => Some(format!("{reason}; policy unknown")),
            (false, None) => Some("policy unknown".to_string()),
        };
        push_comment(&mut entry, comment.as_deref());
        if !header_from.is_empty() {
            let _ = write!(entry, " header.from={}", pvalue(header_from));
        }
        if known {
            let _ = write!(entry, " policy.dmarc={policy}");
        }
        self.entries.push(entry);
    }

    /// The whole field, folded, ending in CRLF: one line per method, and an entry that
    /// would make its line longer than RFC 5322's 998 octets folded again between its parts
    /// (the spaces between the result, the comment and the properties are CFWS).
    pub fn to_header(&self) -> String {
        let mut out = format!("Authentication-Results: {}", self.authserv_id);
        if self.entries.is_empty() {
            out.push_str("; none");
        }
        for entry in &self.entries {
            out.push_str(";\r\n\t");
            // The line so far holds the TAB; the ';' or CRLF after the entry ends it.
            let mut line = 1;
            for (i, part) in parts(entry).into_iter().enumerate() {
                if i > 0 {
                    if line + 1 + part.len() + 1 > MAX_LINE {
                        out.push_str("\r\n\t");
                        line = 1;
                    } else {
                        out.push(' ');
                        line += 1;
                    }
                }
                out.push_str(part);
                line += part.len();
            }
        }
        out.push_str("\r\n");
        out
    }
}

/// RFC 5322 §2.1.1: a line is at most 998 octets, CRLF not counted.
const MAX_LINE: usize = 998;

/// An entry's parts: split at the spaces outside comments and quoted strings (the ones
/// `push_comment` and `pvalue` write, with their backslash escapes).
fn parts(entry: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    let mut start = 0;
    for (i, c) in entry.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 || quoted => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            ' ' if depth == 0 && !quoted => {
                out.push(&entry[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&entry[start..]);
    out
}

/// The longest comment, in characters: a reason may quote a record or a name the sender
/// chose, and a header line must stay under 998 octets (RFC 5322 §2.1.1).
const MAX_COMMENT: usize = 200;

/// The longest property value, in characters (a mailbox is at most 64 + 1 + 255).
const MAX_VALUE: usize = 320;

/// Appends ` (text)` as an RFC 5322 comment: backslash, parentheses escaped, control
/// characters dropped (a reason must never end the field early), non-ASCII as `?` (the
/// field must be readable whether or not the message is SMTPUTF8), cut at `MAX_COMMENT`.
fn push_comment(entry: &mut String, text: Option<&str>) {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return;
    };
    entry.push_str(" (");
    for c in text.chars().take(MAX_COMMENT) {
        match c {
            '\\' | '(' | ')' => {
                entry.push('\\');
                entry.push(c);
            }
            c if c.is_control() => {}
            c if !c.is_ascii() => entry.push('?'),
            c => entry.push(c),
        }
    }
    entry.push(')');
}

/// A MIME token character (RFC 2045 §5.1: no space, control or tspecial).
fn token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// An RFC 8601 `pvalue`: a token, `local-part@domain` with a dot-atom local part and a
/// domain of letters, digits, hyphens and underscores, or else a quoted string; non-ASCII as
/// `?`, cut at `MAX_VALUE` characters.
fn pvalue(value: &str) -> String {
    let value: String = value
        .chars()
        .take(MAX_VALUE)
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    let value = value.as_str();
    let domain = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
    };
    let atom = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
            })
    };
    if !value.is_empty() && value.chars().all(token_char) {
        return value.to_string();
    }
    if let Some((local, host)) = value.rsplit_once('@')
        && atom(local)
        && domain(host)
    {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_method_with_comments_and_properties() {
        let mut ar = AuthResults::new("gw.example.test");
        ar.spf("pass", None, "alice@example.org", "mx.example.org");
        ar.dkim(&DkimVerdict {
            result: "fail",
            reason: Some("body hash did not verify".into()),
            domain: Some("example.org".into()),
            selector: Some("sel".into()),
            algorithm: Some("rsa-sha256".into()),
            b_prefix: Some("abc+/123".into()),
            body_length: None,
        });
        ar.arc("none", None, "192.0.2.1".parse().unwrap());
        ar.dmarc("fail", None, "example.org", "reject");
        assert_eq!(
            ar.to_header(),
            "Authentication-Results: gw.example.test;\r\n\
             \tspf=pass smtp.mailfrom=alice@example.org;\r\n\
             \tdkim=fail (body hash did not verify) header.d=example.org header.s=sel \
             header.a=rsa-sha256 header.b=\"abc+/123\";\r\n\
             \tarc=none smtp.remote-ip=192.0.2.1;\r\n\
             \tdmarc=fail header.from=example.org policy.dmarc=reject\r\n"
        );
    }

    #[test]
    fn the_null_sender_is_reported_as_the_identity_spf_checked() {
        let mut ar = AuthResults::new("gw");
        ar.spf("none", None, "", "mx.example.org");
        assert!(
            ar.to_header()
                .contains("smtp.mailfrom=postmaster@mx.example.org")
        );
    }

    #[test]
    fn values_and_comments_cannot_break_out_of_the_field() {
        assert_eq!(pvalue("a b\"c\r\n"), "\"a b\\\"c\"");
        assert_eq!(pvalue("x;y"), "\"x;y\"");
        assert_eq!(pvalue("first.last@example.org"), "first.last@example.org");
        assert_eq!(pvalue("\"odd\"@example.org"), "\"\\\"odd\\\"@example.org\"");
        let mut entry = String::from("dkim=neutral");
        push_comment(&mut entry, Some("a (nested) \\ reason\r\nX-Evil: 1"));
        assert_eq!(entry, "dkim=neutral (a \\(nested\\) \\\\ reasonX-Evil: 1)");
    }

    #[test]
    fn an_unknown_policy_is_a_comment_not_a_property() {
        let mut ar = AuthResults::new("gw");
        ar.dmarc(
            "temperror",
            Some("DNS failure at _dmarc.example.org"),
            "example.org",
            "unknown",
        );
        let header = ar.to_header();
        assert!(
            header.contains(
                "dmarc=temperror (DNS failure at _dmarc.example.org; policy unknown) header.from=example.org\r\n"
            ),
            "{header}"
        );
        assert!(!header.contains("policy.dmarc"), "{header}");
    }

    #[test]
    fn long_and_foreign_values_are_bounded_and_ascii() {
        let long = "x".repeat(5000);
        assert_eq!(pvalue(&long).len(), MAX_VALUE);
        let mut entry = String::new();
        push_comment(&mut entry, Some(&long));
        assert_eq!(entry.len(), MAX_COMMENT + 3);
        assert_eq!(pvalue("ü@exämple.org"), "\"?@ex?mple.org\"");
        // A domain part that is not a domain name is quoted.
        assert_eq!(pvalue("a@b=c"), "\"a@b=c\"");
    }

    /// The fuzz/auth_results oracle's 998-octet rule, on a hand-built verdict: a DKIM
    /// signature's own d=, s= and a= (the sender writes them) quoted and escaped, plus a
    /// long reason, made one line of the field 3027 octets long. Long entries are now folded
    /// between their parts.
    #[test]
    fn no_line_is_longer_than_998_octets() {
        let quotes = "\"".repeat(400);
        let mut ar = AuthResults::new("gw.example.test");
        ar.dkim(&DkimVerdict {
            result: "permerror",
            reason: Some("(".repeat(400)),
            domain: Some(quotes.clone()),
            selector: Some(quotes.clone()),
            algorithm: Some(quotes.clone()),
            b_prefix: Some(quotes.clone()),
            body_length: None,
        });
        ar.spf("fail", Some(&"\\".repeat(300)), &quotes, "mx.example.org");
        let header = ar.to_header();
        for line in header.split("\r\n") {
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
        // Folding adds line breaks only: unfolded, the parts are as before.
        let unfolded = header.replace("\r\n\t", " ");
        assert!(unfolded.contains(&format!(" header.d={}", pvalue(&quotes))));
        assert!(unfolded.contains(&format!(" header.s={} header.a=", pvalue(&quotes))));
        assert_eq!(crate::smtp::headers::unfold(header.as_bytes()).len(), 1);
    }

    #[test]
    fn nothing_reported_is_none() {
        assert_eq!(
            AuthResults::new("gw").to_header(),
            "Authentication-Results: gw; none\r\n"
        );
    }
}
