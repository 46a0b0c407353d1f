//! One DMARC policy record (RFC 9989 §5): the TXT text at `_dmarc.<domain>` read into a
//! `DmarcRecord`, and which policy of it applies to a given author domain.
//!
//! Owns: telling a DMARC record from any other TXT record (`v=DMARC1` first), the tags that
//! change an evaluation (`p`, `sp`, `np`, `adkim`, `aspf`, `t`, `psd`, `pct` as far as
//! `pct=0` goes, and whether `rua` holds a usable URI), and the rule for a record whose policy
//! tags are not usable (RFC 9989 §4.10.1: `p` missing or invalid, or `sp` or `np` invalid,
//! makes the whole record `p=none` when `rua` is usable, otherwise no DMARC processing).
//! Unknown tags are ignored; a known tag with a bad value falls back to its default (RFC 9989
//! §4.8), except the policy tags (`Applicable`). Must not: look anything up (`discover.rs`
//! does).

use super::DmarcPolicy;

/// Identifier alignment mode (`adkim`, `aspf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The same Organizational Domain is enough (the default).
    Relaxed,
    /// The domains must be identical.
    Strict,
}

/// The `psd` tag: whether the record's domain is a public suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Psd {
    /// `psd=y`: a Public Suffix Domain.
    Yes,
    /// `psd=n`: an Organizational Domain.
    No,
    /// `psd=u` or no tag: not said.
    Unknown,
}

/// A policy tag as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyTag {
    /// Not in the record.
    Absent,
    /// Present with a value other than none, quarantine, reject.
    Invalid,
    /// A valid value.
    Value(DmarcPolicy),
}

/// How the author domain relates to the domain the record was found at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The record is at the author domain itself: `p`.
    Domain,
    /// The author domain is an existing subdomain: `sp`, else `p`.
    Subdomain,
    /// The author domain is a subdomain that does not exist: `np`, else `sp`, else `p`.
    NonExistent,
}

/// What a record asks of an author domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applicable {
    /// This policy.
    Policy(DmarcPolicy),
    /// The policy tags are not usable (`fault`) and there is no usable `rua`: no DMARC
    /// processing applies (result `none`), whatever the role.
    NotApplicable,
}

/// One parsed DMARC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcRecord {
    /// `p`.
    pub p: PolicyTag,
    /// `sp`.
    pub sp: PolicyTag,
    /// `np`.
    pub np: PolicyTag,
    /// `adkim`.
    pub adkim: Mode,
    /// `aspf`.
    pub aspf: Mode,
    /// `t=y`.
    pub testing: bool,
    /// `pct=0` (an RFC 7489 tag, read only for this value: see `mod.rs`).
    pub pct_zero: bool,
    /// `psd`.
    pub psd: Psd,
    /// `rua` holds at least one syntactically valid URI.
    pub rua: bool,
}

/// True when the TXT text is a DMARC record: it starts with the tag `v=DMARC1` (spaces
/// allowed around `=`, `DMARC1` in capitals as the grammar writes it), followed by the end
/// of the text or `;`. Anything else at `_dmarc.<domain>` is not a DMARC record at all.
pub fn is_dmarc(txt: &[u8]) -> bool {
    let rest = trim_wsp(txt);
    let Some((&v, rest)) = rest.split_first() else {
        return false;
    };
    if !v.eq_ignore_ascii_case(&b'v') {
        return false;
    }
    let rest = trim_wsp(rest);
    let Some(rest) = rest.strip_prefix(b"=") else {
        return false;
    };
    let Some(rest) = trim_wsp(rest).strip_prefix(b"DMARC1") else {
        return false;
    };
    let rest = trim_wsp(rest);
    rest.is_empty() || rest.starts_with(b";")
}

fn trim_wsp(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    &s[start..]
}

/// Parses a DMARC record, or `None` when the text is not one (`is_dmarc`).
pub fn parse(txt: &[u8]) -> Option<DmarcRecord> {
    if !is_dmarc(txt) {
        return None;
    }
    let text = String::from_utf8_lossy(txt);
    let mut record = DmarcRecord {
        p: PolicyTag::Absent,
        sp: PolicyTag::Absent,
        np: PolicyTag::Absent,
        adkim: Mode::Relaxed,
        aspf: Mode::Relaxed,
        testing: false,
        pct_zero: false,
        psd: Psd::Unknown,
        rua: false,
    };
    let mut seen: Vec<String> = Vec::new();
    // The first part is `v=DMARC1` (checked above).
    for part in text.split(';').skip(1) {
        let Some((name, value)) = part.split_once('=') else {
            // A syntax error in the rest of the record is discarded (RFC 7489 §6.3).
            continue;
        };
        let name = name.trim_matches([' ', '\t']).to_ascii_lowercase();
        let value = value.trim_matches([' ', '\t']);
        // A repeated tag: the first one counts.
        if seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        match name.as_str() {
            "p" => record.p = policy_tag(value),
            "sp" => record.sp = policy_tag(value),
            "np" => record.np = policy_tag(value),
            "adkim" => record.adkim = mode(value),
            "aspf" => record.aspf = mode(value),
            "t" => record.testing = value.eq_ignore_ascii_case("y"),
            "pct" => record.pct_zero = value.parse::<u8>() == Ok(0),
            "psd" => {
                record.psd = match value.to_ascii_lowercase().as_str() {
                    "y" => Psd::Yes,
                    "n" => Psd::No,
                    _ => Psd::Unknown,
                }
            }
            "rua" => record.rua = value.split(',').any(is_uri),
            _ => {}
        }
    }
    Some(record)
}

fn policy_tag(value: &str) -> PolicyTag {
    match value.to_ascii_lowercase().as_str() {
        "none" => PolicyTag::Value(DmarcPolicy::None),
        "quarantine" => PolicyTag::Value(DmarcPolicy::Quarantine),
        "reject" => PolicyTag::Value(DmarcPolicy::Reject),
        _ => PolicyTag::Invalid,
    }
}

fn mode(value: &str) -> Mode {
    if value.eq_ignore_ascii_case("s") {
        Mode::Strict
    } else {
        Mode::Relaxed
    }
}

/// A URI as far as DMARC needs to know (RFC 3986 §3.1): a scheme, `:`, something. A size
/// suffix (`!10m`, RFC 7489) is allowed.
fn is_uri(uri: &str) -> bool {
    let uri = uri.trim_matches([' ', '\t']);
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.starts_with('!')
}

impl DmarcRecord {
    /// What keeps the policy tags from being used as written, checked once for the whole
    /// record (RFC 9989 §4.10.1: "does not contain a valid "p" tag, or contains an "sp" or
    /// "np" tag that is not valid"): `no p`, `invalid p`, `invalid sp`, `invalid np`.
    pub fn fault(&self) -> Option<&'static str> {
        match (self.p, self.sp, self.np) {
            (PolicyTag::Absent, _, _) => Some("no p"),
            (PolicyTag::Invalid, _, _) => Some("invalid p"),
            (_, PolicyTag::Invalid, _) => Some("invalid sp"),
            (_, _, PolicyTag::Invalid) => Some("invalid np"),
            _ => None,
        }
    }

    /// What this record asks of an author domain in `role` (RFC 9989 §4.10.1). A record with
    /// a `fault` acts as `p=none` for every role when `rua` has a usable URI, and is no policy
    /// at all otherwise; only a record without one chooses among `p`, `sp` and `np`.
    pub fn applicable(&self, role: Role) -> Applicable {
        if self.fault().is_some() {
            return if self.rua {
                Applicable::Policy(DmarcPolicy::None)
            } else {
                Applicable::NotApplicable
            };
        }
        let tags: &[PolicyTag] = match role {
            Role::Domain => &[self.p],
            Role::Subdomain => &[self.sp, self.p],
            Role::NonExistent => &[self.np, self.sp, self.p],
        };
        tags.iter()
            .find_map(|t| match t {
                PolicyTag::Value(policy) => Some(*policy),
                _ => None,
            })
            .map_or(Applicable::NotApplicable, Applicable::Policy)
    }

    /// `t=y`, or `pct=0` read as `t=y`.
    pub fn lowered(&self) -> bool {
        self.testing || self.pct_zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str) -> DmarcRecord {
        parse(text.as_bytes()).unwrap_or_else(|| panic!("not a DMARC record: {text}"))
    }

    #[test]
    fn only_records_starting_with_v_dmarc1_are_dmarc_records() {
        for yes in [
            "v=DMARC1",
            "v=DMARC1;",
            "v=DMARC1; p=reject",
            "V=DMARC1;p=none",
            " v = DMARC1 ; p=none",
            "v=DMARC1\t;p=none",
        ] {
            assert!(is_dmarc(yes.as_bytes()), "{yes:?}");
        }
        for no in [
            "",
            "v=spf1 -all",
            "v=DMARC2; p=reject",
            "v=DMARC10; p=reject",
            "v=dmarc1; p=reject",
            "p=reject; v=DMARC1",
            "x v=DMARC1",
            "v=DMARC1 p=reject",
            "vv=DMARC1",
        ] {
            assert!(!is_dmarc(no.as_bytes()), "{no:?}");
            assert_eq!(parse(no.as_bytes()), None, "{no:?}");
        }
    }

    #[test]
    fn tags_are_read_and_defaults_apply() {
        let r = rec("v=DMARC1; p=reject");
        assert_eq!(r.p, PolicyTag::Value(DmarcPolicy::Reject));
        assert_eq!((r.sp, r.np), (PolicyTag::Absent, PolicyTag::Absent));
        assert_eq!((r.adkim, r.aspf), (Mode::Relaxed, Mode::Relaxed));
        assert_eq!(r.psd, Psd::Unknown);
        assert!(!r.testing && !r.pct_zero && !r.rua);

        let r = rec(
            "v=DMARC1;p=Quarantine;sp=none;np=reject;adkim=s;aspf=S;t=y;psd=n;rua=mailto:d@x.example",
        );
        assert_eq!(r.p, PolicyTag::Value(DmarcPolicy::Quarantine));
        assert_eq!(r.sp, PolicyTag::Value(DmarcPolicy::None));
        assert_eq!(r.np, PolicyTag::Value(DmarcPolicy::Reject));
        assert_eq!((r.adkim, r.aspf), (Mode::Strict, Mode::Strict));
        assert!(r.testing && r.rua);
        assert_eq!(r.psd, Psd::No);
        assert_eq!(rec("v=DMARC1; p=none; psd=y").psd, Psd::Yes);
    }

    #[test]
    fn bad_values_of_other_tags_fall_back_to_defaults_and_unknown_tags_are_ignored() {
        let r = rec("v=DMARC1; p=reject; adkim=x; aspf=; t=maybe; psd=q; fo=9; zz=1; junk");
        assert_eq!(r.p, PolicyTag::Value(DmarcPolicy::Reject));
        assert_eq!((r.adkim, r.aspf), (Mode::Relaxed, Mode::Relaxed));
        assert!(!r.testing);
        assert_eq!(r.psd, Psd::Unknown);
        assert_eq!(rec("v=DMARC1; p=bogus").p, PolicyTag::Invalid);
        assert_eq!(rec("v=DMARC1; p=").p, PolicyTag::Invalid);
    }

    #[test]
    fn the_first_of_a_repeated_tag_counts() {
        assert_eq!(
            rec("v=DMARC1; p=none; p=reject").p,
            PolicyTag::Value(DmarcPolicy::None)
        );
    }

    #[test]
    fn only_pct_0_is_read() {
        assert!(rec("v=DMARC1; p=reject; pct=0").pct_zero);
        assert!(rec("v=DMARC1; p=reject; pct=00").pct_zero);
        for other in ["pct=1", "pct=100", "pct=50", "pct=-0", "pct=x", "pct="] {
            let r = rec(&format!("v=DMARC1; p=reject; {other}"));
            assert!(!r.pct_zero && !r.lowered(), "{other}");
        }
        assert!(rec("v=DMARC1; p=reject; pct=0").lowered());
        assert!(rec("v=DMARC1; p=reject; t=y").lowered());
    }

    #[test]
    fn rua_needs_one_uri() {
        assert!(rec("v=DMARC1; rua=mailto:a@b.example").rua);
        assert!(rec("v=DMARC1; rua=bad, mailto:a@b.example!10m").rua);
        for bad in [
            "rua=",
            "rua=reports@b.example",
            "rua=:x",
            "rua=1x:y",
            "rua=mailto:",
        ] {
            assert!(!rec(&format!("v=DMARC1; {bad}")).rua, "{bad}");
        }
    }

    #[test]
    fn the_policy_applicable_to_each_role() {
        use Applicable::Policy;
        use DmarcPolicy::{None, Quarantine, Reject};
        let r = rec("v=DMARC1; p=reject; sp=quarantine; np=none");
        assert_eq!(r.applicable(Role::Domain), Policy(Reject));
        assert_eq!(r.applicable(Role::Subdomain), Policy(Quarantine));
        assert_eq!(r.applicable(Role::NonExistent), Policy(None));
        // np falls back to sp, sp to p.
        let r = rec("v=DMARC1; p=reject; sp=quarantine");
        assert_eq!(r.applicable(Role::NonExistent), Policy(Quarantine));
        let r = rec("v=DMARC1; p=reject");
        assert_eq!(r.applicable(Role::Subdomain), Policy(Reject));
        assert_eq!(r.applicable(Role::NonExistent), Policy(Reject));
        let r = rec("v=DMARC1; p=none; np=reject");
        assert_eq!(r.applicable(Role::Subdomain), Policy(None));
        assert_eq!(r.applicable(Role::NonExistent), Policy(Reject));
    }

    #[test]
    fn a_record_without_a_valid_policy() {
        use Applicable::*;
        let roles = [Role::Domain, Role::Subdomain, Role::NonExistent];
        // p missing or invalid, or sp or np invalid, without rua: no DMARC processing, for
        // every role (RFC 9989 §4.10.1), whatever the valid tags say.
        for (text, fault) in [
            ("v=DMARC1; sp=reject", "no p"),
            ("v=DMARC1; p=bogus", "invalid p"),
            ("v=DMARC1; p=bogus; sp=reject", "invalid p"),
            ("v=DMARC1; p=reject; sp=quarantin", "invalid sp"),
            ("v=DMARC1; p=reject; sp=none; np=rejct", "invalid np"),
            (
                "v=DMARC1; p=reject; rua=reports@b.example; np=x",
                "invalid np",
            ),
        ] {
            let r = rec(text);
            assert_eq!(r.fault(), Some(fault), "{text}");
            for role in roles {
                assert_eq!(r.applicable(role), NotApplicable, "{text} {role:?}");
            }
        }
        // With a usable rua, the whole record reads as p=none, for every role.
        for text in [
            "v=DMARC1; rua=mailto:a@b.example",
            "v=DMARC1; p=bogus; rua=mailto:a@b.example",
            "v=DMARC1; p=reject; sp=quarantin; rua=mailto:a@b.example",
            "v=DMARC1; p=reject; np=x; rua=mailto:a@b.example",
        ] {
            for role in roles {
                assert_eq!(
                    rec(text).applicable(role),
                    Policy(DmarcPolicy::None),
                    "{text} {role:?}"
                );
            }
        }
        assert_eq!(rec("v=DMARC1; p=reject; sp=none; np=none").fault(), None);
    }
}
