//! The DMARC record parser (src/checks/dmarc/record.rs `parse`, `is_dmarc`, `applicable`).
//!
//! Invariants: never panics; `parse` gives a record exactly when `is_dmarc` says the text
//! is one; the policy for each role follows the tags (a valid `p` is the domain's policy;
//! without a valid `p`, a usable `rua` means `none` and its absence means no policy, or a
//! broken one); `lowered` is `t=y` or `pct=0`; the first occurrence of a tag counts, so
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
        let applicable = record.applicable(role);
        match record.p {
            PolicyTag::Value(p) if role == Role::Domain => {
                assert_eq!(applicable, Applicable::Policy(p));
            }
            PolicyTag::Value(_) => assert!(matches!(applicable, Applicable::Policy(_))),
            _ if record.rua => assert_eq!(applicable, Applicable::Policy(DmarcPolicy::None)),
            PolicyTag::Absent => assert_eq!(applicable, Applicable::NotApplicable),
            PolicyTag::Invalid => assert_eq!(applicable, Applicable::Broken),
        }
    }
    assert_eq!(record.lowered(), record.testing || record.pct_zero);
    if record.p != PolicyTag::Absent {
        let mut more = data.to_vec();
        more.extend_from_slice(b"; p=reject");
        let again = parse(&more).expect("still a DMARC record");
        assert_eq!(again.p, record.p, "a later p= overrode the first");
    }
});
