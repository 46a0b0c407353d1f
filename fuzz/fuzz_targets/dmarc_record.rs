//! The DMARC record parser (src/checks/dmarc/record.rs `parse`, `is_dmarc`, `applicable`).
//!
//! Invariants: never panics; `parse` gives a record exactly when `is_dmarc` says the text
//! is one; the policy for each role follows the tags: with a valid `p`, the domain gets `p`,
//! an existing subdomain the first present of `sp`, `p`, a non-existent one the first of
//! `np`, `sp`, `p`; without a valid `p`, `p` itself decides. A valid tag is that policy; an
//! invalid or absent one is `none` with a usable `rua`, else broken (invalid) or no policy
//! at all (absent). `lowered` is `t=y` or `pct=0`; the first occurrence of a tag counts, so
//! appending another `p=` never changes a `p` already there.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::checks::dmarc::DmarcPolicy;
use portcullis::checks::dmarc::record::{Applicable, PolicyTag, Role, is_dmarc, parse};

fuzz_target!(|data: &[u8]| {
    let Some(record) = parse(data) else {
        assert!(!is_dmarc(data), "a DMARC record that does not parse");
        return;
    };
    assert!(is_dmarc(data));
    for role in [Role::Domain, Role::Subdomain, Role::NonExistent] {
        let order: &[PolicyTag] = match (record.p, role) {
            (PolicyTag::Value(_), Role::Subdomain) => &[record.sp, record.p],
            (PolicyTag::Value(_), Role::NonExistent) => &[record.np, record.sp, record.p],
            _ => &[record.p],
        };
        let tag = order
            .iter()
            .copied()
            .find(|t| *t != PolicyTag::Absent)
            .unwrap_or(PolicyTag::Absent);
        let expected = match tag {
            PolicyTag::Value(p) => Applicable::Policy(p),
            _ if record.rua => Applicable::Policy(DmarcPolicy::None),
            PolicyTag::Absent => Applicable::NotApplicable,
            PolicyTag::Invalid => Applicable::Broken,
        };
        assert_eq!(record.applicable(role), expected, "{role:?} of {record:?}");
    }
    assert_eq!(record.lowered(), record.testing || record.pct_zero);
    if record.p != PolicyTag::Absent {
        let mut more = data.to_vec();
        more.extend_from_slice(b"; p=reject");
        let again = parse(&more).expect("still a DMARC record");
        assert_eq!(again.p, record.p, "a later p= overrode the first");
    }
});
