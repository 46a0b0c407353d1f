//! The DMARC record parser (src/checks/dmarc/record.rs `parse`, `is_dmarc`, `fault`,
//! `applicable`).
//!
//! Invariants: never panics; `parse` gives a record exactly when `is_dmarc` says the text
//! is one; the policy for each role follows the tags (RFC 9989 §4.10.1): a record whose `p`
//! is missing or invalid, or whose `sp` or `np` is invalid, is `none` for every role with a
//! usable `rua` and no policy at all without; otherwise the domain gets `p`, an existing
//! subdomain `sp` or else `p`, a non-existent one `np`, else `sp`, else `p`. `lowered` is
//! `t=y` or `pct=0`; the first occurrence of a tag counts, so appending another `p=` never
//! changes a `p` already there.

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
    let usable = matches!(record.p, PolicyTag::Value(_))
        && record.sp != PolicyTag::Invalid
        && record.np != PolicyTag::Invalid;
    assert_eq!(record.fault().is_none(), usable, "{record:?}");
    for role in [Role::Domain, Role::Subdomain, Role::NonExistent] {
        let order: &[PolicyTag] = match role {
            Role::Domain => &[record.p],
            Role::Subdomain => &[record.sp, record.p],
            Role::NonExistent => &[record.np, record.sp, record.p],
        };
        let expected = if !usable {
            if record.rua {
                Applicable::Policy(DmarcPolicy::None)
            } else {
                Applicable::NotApplicable
            }
        } else {
            match order.iter().find(|t| **t != PolicyTag::Absent) {
                Some(PolicyTag::Value(p)) => Applicable::Policy(*p),
                other => panic!("a usable record without a policy for {role:?}: {other:?}"),
            }
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
