//! DMARC evaluation (`portcullis::checks::dmarc::evaluate`) through the real resolver path:
//! the records are served by the in-process DNS fixture (tests/common/dns.rs), one root zone
//! so every name not written is NXDOMAIN, and looked up by a `portcullis::dns::Dns` pointed at
//! it (1 s timeout, 1 attempt), with its cache.
//!
//! Covers the four faults of mail-auth 0.15.1's `verify_dmarc` that our evaluation fixes
//! (several records at one name, several author domains, DNS failures dropping a known
//! policy, `pct=0`), and what already worked (the tree walk up to the TLD, records without a
//! policy, broken records), plus `np` with real existence lookups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::dns::{DnsFixture, Zone};
use hickory_server::proto::rr::RecordType;
use portcullis::checks::dmarc::{DmarcInput, DmarcOutcome, DmarcPolicy, DmarcResult, evaluate};
use portcullis::config::schema::DnsConfig;
use portcullis::dns::Dns;
use portcullis::dns::lookup::Uncached;

/// A resolver on `fixture` only, with a fresh cache.
fn dns(fixture: &DnsFixture) -> Dns {
    let config = DnsConfig {
        nameservers: vec![fixture.addr()],
        timeout: Duration::from_secs(1),
        attempts: 1,
        ..DnsConfig::default()
    };
    Dns::new(&config, Arc::new(portcullis::metrics::Metrics::new())).expect("resolver")
}

/// One message: its author domains, SPF (word, domain) and passing DKIM domains.
struct Message {
    from: Vec<String>,
    spf: (&'static str, &'static str),
    dkim: Vec<String>,
}

/// A message from `domains`, SPF failing for an unrelated domain, no DKIM pass.
fn from(domains: &[&str]) -> Message {
    Message {
        from: domains.iter().map(|d| d.to_string()).collect(),
        spf: ("fail", "bounce.attacker.example"),
        dkim: Vec::new(),
    }
}

impl Message {
    fn spf_pass(mut self, domain: &'static str) -> Message {
        self.spf = ("pass", domain);
        self
    }

    fn dkim(mut self, domain: &str) -> Message {
        self.dkim.push(domain.to_string());
        self
    }

    async fn on(&self, dns: &Dns) -> DmarcOutcome {
        let input = DmarcInput {
            from_domains: &self.from,
            spf_result: self.spf.0,
            spf_domain: self.spf.1,
            dkim_pass_domains: &self.dkim,
            dkim_temperror_domains: &[],
        };
        let outcome = tokio::time::timeout(Duration::from_secs(30), evaluate(dns, &input))
            .await
            .expect("evaluation finishes");
        // The cache never changes a result.
        let uncached = evaluate(&Uncached(dns), &input).await;
        assert_eq!(outcome, uncached, "cached and uncached evaluations differ");
        outcome
    }
}

/// The TXT names asked, in order, that start with `_dmarc.`.
fn dmarc_queries(fixture: &DnsFixture) -> Vec<String> {
    fixture
        .queries()
        .into_iter()
        .filter(|q| q.rtype == RecordType::TXT && q.name.starts_with("_dmarc."))
        .map(|q| q.name)
        .collect()
}

fn reason(outcome: &DmarcOutcome) -> &str {
    outcome.reason.as_deref().unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// What already worked.

/// No record anywhere: `_dmarc.example.org` then `_dmarc.org` (the TLD) are asked, none.
#[tokio::test]
async fn no_record_anywhere_is_none_after_walking_to_the_tld() {
    let fixture = DnsFixture::start(vec![Zone::root()]).await;
    let dns = dns(&fixture);
    let o = from(&["example.org"]).on(&dns).await;
    assert_eq!(o.result, DmarcResult::None, "{o:?}");
    assert_eq!(o.policy, DmarcPolicy::None);
    assert_eq!(o.domain, "example.org");
    let asked = dmarc_queries(&fixture);
    assert!(
        asked.contains(&"_dmarc.example.org".to_string()),
        "{asked:?}"
    );
    assert!(asked.contains(&"_dmarc.org".to_string()), "{asked:?}");
}

/// A long name: the first query, then the 7 rightmost labels down to the TLD: 8 queries.
#[tokio::test]
async fn the_walk_of_a_long_name_is_at_most_eight_queries() {
    let fixture = DnsFixture::start(vec![Zone::root()]).await;
    let dns = dns(&fixture);
    let author = "a.b.c.d.e.f.g.h.example.org";
    let _ = evaluate(
        &dns,
        &DmarcInput {
            from_domains: &[author.to_string()],
            spf_result: "fail",
            spf_domain: "x.example",
            dkim_pass_domains: &[],
            dkim_temperror_domains: &[],
        },
    )
    .await;
    let expected: Vec<String> = [
        author,
        "d.e.f.g.h.example.org",
        "e.f.g.h.example.org",
        "f.g.h.example.org",
        "g.h.example.org",
        "h.example.org",
        "example.org",
        "org",
    ]
    .iter()
    .map(|n| format!("_dmarc.{n}"))
    .collect();
    // 10 labels: the name itself, then its 7 rightmost labels, 6, ... 1; each asked once
    // (no de-duplication here: a name asked twice in a row would show).
    let asked = dmarc_queries(&fixture);
    assert_eq!(asked, expected);
    assert_eq!(asked.len(), 8);
}

/// A DMARC1 record without `p=` (and without `rua=`): not a policy record, none.
#[tokio::test]
async fn a_record_without_policy_is_none() {
    let fixture = DnsFixture::start(vec![
        Zone::root().txt("_dmarc.example.org", "v=DMARC1; sp=reject"),
    ])
    .await;
    let o = from(&["example.org"]).on(&dns(&fixture)).await;
    assert_eq!(o.result, DmarcResult::None, "{o:?}");
    assert_eq!(
        reason(&o),
        "no p at _dmarc.example.org, no DMARC processing"
    );
}

/// `p=bogus` without `rua`: no DMARC processing (RFC 9989 §4.10.1), so `none`, and the walk
/// stops there (`_dmarc.org` not asked). An invalid `sp` does the same to the whole record,
/// the domain itself included; with a usable `rua` the record reads as `p=none`.
#[tokio::test]
async fn a_broken_record_is_none_and_stops_the_walk() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=bogus")
            .txt("_dmarc.sp.example", "v=DMARC1; p=reject; sp=bogus")
            .txt(
                "_dmarc.rua.example",
                "v=DMARC1; p=reject; sp=bogus; rua=mailto:d@rua.example",
            ),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::None, DmarcPolicy::None),
        "{o:?}"
    );
    assert_eq!(
        reason(&o),
        "invalid p at _dmarc.example.org, no DMARC processing"
    );
    assert_eq!(fixture.query_count("_dmarc.org", RecordType::TXT), 0);
    let o = from(&["sp.example"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::None, DmarcPolicy::None),
        "{o:?}"
    );
    let o = from(&["rua.example"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::None),
        "{o:?}"
    );
}

/// The policy of a parent applies to a subdomain (`sp`), and aligned identifiers pass.
#[tokio::test]
async fn a_parent_policy_applies_and_aligned_identifiers_pass() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject; sp=quarantine")
            .a("news.example.org", "192.0.2.1".parse().unwrap()),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["news.example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Quarantine),
        "{o:?}"
    );
    let o = from(&["news.example.org"])
        .dkim("example.org")
        .on(&dns)
        .await;
    assert_eq!(o.result, DmarcResult::Pass, "relaxed DKIM alignment: {o:?}");
    let o = from(&["example.org"])
        .spf_pass("bounces.example.org")
        .on(&dns)
        .await;
    assert_eq!(o.result, DmarcResult::Pass, "relaxed SPF alignment: {o:?}");
}

/// A `psd=y` record at the author domain ends its walk (RFC 9989 §4.10 step 2): it is its
/// own Organizational Domain, so an SPF domain whose walk reaches `gov` does not align with
/// it, whatever `_dmarc.gov` says.
#[tokio::test]
async fn psd_y_at_the_author_domain_ends_its_walk() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.agency.gov", "v=DMARC1; p=reject; psd=y")
            .txt("_dmarc.other.gov", "v=DMARC1; p=none")
            .txt("_dmarc.gov", "v=DMARC1; p=none"),
    ])
    .await;
    let o = from(&["agency.gov"])
        .spf_pass("other.gov")
        .on(&dns(&fixture))
        .await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Reject),
        "{o:?}"
    );
}

/// Without a record of its own, an author domain gets its Organizational Domain's (the
/// highest name with a record, RFC 9989 §4.10.1 and B.4.2), not the first record walking up.
#[tokio::test]
async fn the_organizational_domains_record_applies_not_the_first_found() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt("_dmarc.b.example.org", "v=DMARC1; p=none")
            .a("a.b.example.org", "192.0.2.1".parse().unwrap()),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["a.b.example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Reject),
        "{o:?}"
    );
    assert!(fixture.query_count("_dmarc.org", RecordType::TXT) >= 1);
    // b.example.org's own record applies to it.
    let o = from(&["b.example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::None),
        "{o:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Several records at one name.

/// Two DMARC1 records at `_dmarc.example.org` (one valid `p=reject`, one broken): both are
/// discarded and the walk goes on as if there were none: none, `_dmarc.org` asked.
#[tokio::test]
async fn several_records_at_one_name_are_all_discarded() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt("_dmarc.example.org", "v=DMARC1; p=bogus"),
    ])
    .await;
    let o = from(&["example.org"]).on(&dns(&fixture)).await;
    assert_eq!(o.result, DmarcResult::None, "{o:?}");
    assert_eq!(reason(&o), "several DMARC records at _dmarc.example.org");
    assert!(fixture.query_count("_dmarc.org", RecordType::TXT) >= 1);
}

/// Discarded at the author domain, the parent's record applies.
#[tokio::test]
async fn several_records_at_a_subdomain_leave_the_parent_policy() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt("_dmarc.news.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.news.example.org", "v=DMARC1; p=quarantine"),
    ])
    .await;
    let o = from(&["news.example.org"]).on(&dns(&fixture)).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Reject),
        "{o:?}"
    );
    assert!(reason(&o).contains("several DMARC records at _dmarc.news.example.org"));
}

/// Other TXT records beside one DMARC record are not DMARC records: it applies.
#[tokio::test]
async fn other_txt_records_do_not_count() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt("_dmarc.example.org", "google-site-verification=abc")
            .txt("_dmarc.example.org", "v=DMARC10; p=none"),
    ])
    .await;
    let o = from(&["example.org"]).on(&dns(&fixture)).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Reject),
        "{o:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Several author domains.

/// The spoofer lists his own (passing) domain beside the victim's: the victim's reject wins.
#[tokio::test]
async fn several_author_domains_give_the_strictest_outcome() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt("_dmarc.attacker.example", "v=DMARC1; p=none"),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["attacker.example", "example.org"])
        .dkim("attacker.example")
        .spf_pass("attacker.example")
        .on(&dns)
        .await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Reject),
        "{o:?}"
    );
    assert_eq!(o.domain, "example.org");
    assert!(
        reason(&o).contains("2 author domains, strictest applied"),
        "{o:?}"
    );
    // When both pass, the outcome is a pass.
    let o = from(&["attacker.example", "example.org"])
        .dkim("attacker.example")
        .dkim("example.org")
        .on(&dns)
        .await;
    assert_eq!(o.result, DmarcResult::Pass, "{o:?}");
}

/// More than 5 author domains: the first 5 are evaluated, and the reason says so.
#[tokio::test]
async fn at_most_five_author_domains_are_evaluated() {
    let fixture = DnsFixture::start(vec![
        Zone::root().txt("_dmarc.example.org", "v=DMARC1; p=quarantine"),
    ])
    .await;
    let o = from(&[
        "a.test",
        "b.test",
        "example.org",
        "c.test",
        "d.test",
        "e.test",
        "f.test",
    ])
    .on(&dns(&fixture))
    .await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Quarantine),
        "{o:?}"
    );
    assert!(
        reason(&o).contains("7 author domains, first 5 evaluated, strictest applied"),
        "{o:?}"
    );
    // All 7 are counted (a built-in rule refuses more than 5 from this count); the last two
    // are never looked up.
    assert_eq!(o.author_domains, 7);
    assert_eq!(fixture.query_count("_dmarc.e.test", RecordType::TXT), 0);
    assert_eq!(fixture.query_count("_dmarc.f.test", RecordType::TXT), 0);
}

// ---------------------------------------------------------------------------------------
// 3. DNS failures keep a known policy.

/// The author domain's own `_dmarc` lookup fails and nothing is found above: temperror,
/// policy unknown.
#[tokio::test]
async fn own_lookup_failing_with_nothing_known_is_temperror_unknown() {
    let fixture = DnsFixture::start(vec![
        Zone::root().servfail_type("_dmarc.example.org", RecordType::TXT),
    ])
    .await;
    let o = from(&["example.org"]).on(&dns(&fixture)).await;
    assert_eq!(o.result, DmarcResult::TempError, "{o:?}");
    assert_eq!(o.policy, DmarcPolicy::Unknown);
    assert_eq!(reason(&o), "DNS failure at _dmarc.example.org");
}

/// `_dmarc.example.org` is found (and cached by a first, passing evaluation); then the
/// Organizational Domain walk needs `_dmarc.org`, which fails (SERVFAIL): the policy is still
/// reject, the result temperror (the built-in rule answers 451). A failure that cannot change
/// the answer (a subdomain of the author domain) still passes.
#[tokio::test]
async fn cached_policy_then_parents_servfail_keeps_reject() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .servfail("_dmarc.org"),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["example.org"])
        .spf_pass("example.org")
        .on(&dns)
        .await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Pass, DmarcPolicy::Reject),
        "{o:?}"
    );
    // Once by the cached evaluation, once by the uncached one.
    assert_eq!(
        fixture.query_count("_dmarc.example.org", RecordType::TXT),
        2
    );
    assert_eq!(fixture.query_count("_dmarc.org", RecordType::TXT), 0);

    // SPF passed for a domain that would share an Organizational Domain with example.org
    // only if `_dmarc.org` said psd=n (or held a record without psd): unknown.
    let input = DmarcInput {
        from_domains: &["example.org".to_string()],
        spf_result: "pass",
        spf_domain: "other.org",
        dkim_pass_domains: &[],
        dkim_temperror_domains: &[],
    };
    let o = evaluate(&dns, &input).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::TempError, DmarcPolicy::Reject),
        "{o:?}"
    );
    assert_eq!(o.requested, DmarcPolicy::Reject);
    assert!(reason(&o).contains("DNS failure at _dmarc.org"), "{o:?}");
    assert_eq!(
        fixture.query_count("_dmarc.example.org", RecordType::TXT),
        2,
        "the record came from the cache"
    );
    assert!(fixture.query_count("_dmarc.org", RecordType::TXT) >= 1);

    let o = from(&["example.org"])
        .spf_pass("mail.example.org")
        .on(&dns)
        .await;
    assert_eq!(o.result, DmarcResult::Pass, "{o:?}");
}

/// The walk from a subdomain: its parent's lookup fails, the grandparent has `p=reject`:
/// temperror with reject (the record at the failed name could say anything, but the policy
/// found is not dropped).
#[tokio::test]
async fn a_failure_below_the_found_policy_keeps_it() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .servfail_type("_dmarc.b.example.org", RecordType::TXT),
    ])
    .await;
    let o = from(&["a.b.example.org"]).on(&dns(&fixture)).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::TempError, DmarcPolicy::Reject),
        "{o:?}"
    );
    assert_eq!(reason(&o), "DNS failure at _dmarc.b.example.org");
}

/// A timeout (the server never answers `_dmarc.org`) is a failure like SERVFAIL.
#[tokio::test]
async fn a_timeout_in_organizational_domain_discovery_keeps_reject() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .silent("_dmarc.org"),
    ])
    .await;
    let dns = dns(&fixture);
    let input = DmarcInput {
        from_domains: &["example.org".to_string()],
        spf_result: "pass",
        spf_domain: "other.org",
        dkim_pass_domains: &[],
        dkim_temperror_domains: &[],
    };
    let o = evaluate(&dns, &input).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::TempError, DmarcPolicy::Reject),
        "{o:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 4. pct=0.

/// `p=reject; pct=0` is testing: one level lower (quarantine), the request kept apart.
#[tokio::test]
async fn pct_0_is_treated_as_testing() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=0")
            .txt("_dmarc.half.example", "v=DMARC1; p=reject; pct=50"),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["example.org"]).on(&dns).await;
    assert_eq!(o.result, DmarcResult::Fail, "{o:?}");
    assert_eq!(o.policy, DmarcPolicy::Quarantine);
    assert_eq!(o.requested, DmarcPolicy::Reject);
    assert!(o.testing);
    assert!(reason(&o).contains("pct=0 treated as t=y"), "{o:?}");
    // Any other pct is ignored: the full policy applies.
    let o = from(&["half.example"]).on(&dns).await;
    assert_eq!((o.policy, o.testing), (DmarcPolicy::Reject, false), "{o:?}");
}

// ---------------------------------------------------------------------------------------
// np.

/// `np` applies to a subdomain that does not exist (NXDOMAIN); one with only an MX or only a
/// TXT record (NODATA for A) exists, and gets `sp` (here `p`).
#[tokio::test]
async fn np_applies_to_non_existent_subdomains() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=none; np=reject")
            .mx("mail.example.org", 10, "mx.example.org")
            .txt("empty.example.org", "not an address"),
    ])
    .await;
    let dns = dns(&fixture);
    let o = from(&["invented.example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::Reject),
        "{o:?}"
    );
    // NODATA for A: the name exists (RFC 8020, RFC 9989 §3.2.13).
    let o = from(&["empty.example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::None),
        "{o:?}"
    );
    let o = from(&["mail.example.org"]).on(&dns).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::Fail, DmarcPolicy::None),
        "{o:?}"
    );
    // One A query is the whole existence test.
    for name in [
        "invented.example.org",
        "empty.example.org",
        "mail.example.org",
    ] {
        assert!(fixture.query_count(name, RecordType::A) >= 1, "{name}");
        assert_eq!(fixture.query_count(name, RecordType::AAAA), 0, "{name}");
        assert_eq!(fixture.query_count(name, RecordType::MX), 0, "{name}");
    }
}

/// Existence cannot be told (the A lookup fails, nothing else exists): temperror, with the
/// stricter of `sp` and `np`.
#[tokio::test]
async fn np_with_existence_unknown_is_temperror() {
    let fixture = DnsFixture::start(vec![
        Zone::root()
            .txt("_dmarc.example.org", "v=DMARC1; p=none; np=reject")
            .servfail_type("odd.example.org", RecordType::A),
    ])
    .await;
    let o = from(&["odd.example.org"]).on(&dns(&fixture)).await;
    assert_eq!(
        (o.result, o.policy),
        (DmarcResult::TempError, DmarcPolicy::Reject),
        "{o:?}"
    );
    assert!(
        reason(&o).contains("whether odd.example.org exists"),
        "{o:?}"
    );
}
