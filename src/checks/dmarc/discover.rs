//! The DNS Tree Walk of RFC 9989 §4.10: which names are asked, what each answer means, and
//! the two questions asked of it: the policy record of an author domain (§4.10.1: its own,
//! else its Organizational Domain's, else its Public Suffix Domain's, as `align.rs` reads the
//! walk), and what `align.rs` needs to find an Organizational Domain (every step of the walk,
//! with the `psd` tag of each record).
//!
//! Owns: the list of query names (`_dmarc.<name>` for the domain, then its parents up to the
//! TLD, skipping to the 7 rightmost labels after the first query of a longer name: at most 8
//! queries; the walk stops at a record with `psd=y` or `psd=n`), reading an answer (records
//! not starting with `v=DMARC1` are ignored; several DMARC records at one name are all
//! discarded, as if there were none), and what a failed query does: it is remembered, never
//! read as "no record", and the walk goes on so a policy published higher up is still known.
//! Each name is asked once per evaluation (`Walker` keeps the answers), on top of the shared
//! cache of `Dns`. Must not: decide a result (`evaluate.rs` does).

use std::collections::HashMap;

use super::align;
use super::record::{self, DmarcRecord, Psd};
use crate::dns::lookup::{Answer, LookupError, Resolve};

/// At most this many names are asked by one walk (RFC 9989 §4.10).
pub const MAX_QUERIES: usize = 8;

/// What `_dmarc.<name>` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtName {
    /// No DMARC record (NXDOMAIN, NODATA, only other TXT records, or a name that cannot be
    /// queried).
    Nothing,
    /// Exactly one DMARC record.
    One(DmarcRecord),
    /// More than one DMARC record: all discarded, read as `Nothing`.
    Several,
    /// The lookup failed (timeout, SERVFAIL): unknown.
    Failed,
}

/// The names a walk from `domain` asks about, in order (without the `_dmarc.` label):
/// `domain`, then its parents one label at a time down to one label, except that after the
/// first name a name of more than 7 labels is cut to its 7 rightmost labels.
pub fn walk_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let mut names = vec![domain.to_string()];
    let next = labels.len().min(MAX_QUERIES) - 1;
    for keep in (1..=next).rev() {
        names.push(labels[labels.len() - keep..].join("."));
    }
    names
}

/// The walks of one evaluation, sharing their answers.
pub struct Walker<'a, R> {
    dns: &'a R,
    seen: HashMap<String, AtName>,
}

/// The result of policy discovery for one author domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The record that applies, and where it was found.
    pub policy: Policy,
    /// Names of the walk whose several DMARC records were discarded.
    pub several: Vec<String>,
}

/// Which record applies to an author domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// This one (`None`: no record applies), whatever any failed lookup would have said.
    Known(Option<(String, DmarcRecord)>),
    /// Failed lookups leave it open: `records` are the known records that could apply
    /// (possibly none), and a record at a failed name, or none at all, could too.
    Open {
        /// The known records that could apply, in the order of the walk.
        records: Vec<(String, DmarcRecord)>,
        /// The failed names of the walk, in order.
        failed: Vec<String>,
    },
}

impl<'a, R: Resolve> Walker<'a, R> {
    /// A walker on `dns`, with no answer yet.
    pub fn new(dns: &'a R) -> Self {
        Walker {
            dns,
            seen: HashMap::new(),
        }
    }

    /// What `_dmarc.<name>` holds (asked once).
    pub async fn at(&mut self, name: &str) -> AtName {
        if let Some(known) = self.seen.get(name) {
            return known.clone();
        }
        let answer = match self.dns.txt(&format!("_dmarc.{name}")).await {
            Ok(answer) => {
                let mut records = answer.records().iter().filter_map(|t| record::parse(t));
                match (records.next(), records.next()) {
                    (None, _) => AtName::Nothing,
                    (Some(one), None) => AtName::One(one),
                    (Some(_), Some(_)) => AtName::Several,
                }
            }
            Err(LookupError::InvalidName) => AtName::Nothing,
            Err(LookupError::Failed(_)) => AtName::Failed,
        };
        self.seen.insert(name.to_string(), answer.clone());
        answer
    }

    /// Policy discovery (RFC 9989 §4.10.1): the author domain's own record; without one,
    /// the record of its Organizational Domain, else of its Public Suffix Domain, found by
    /// the same walk (`steps`) as for alignment. A failed name does not stop the walk; it
    /// leaves the policy open only when some answer it could have given changes the record
    /// that applies.
    pub async fn discover(&mut self, domain: &str) -> Discovery {
        if let AtName::One(record) = self.at(domain).await {
            return Discovery {
                policy: Policy::Known(Some((domain.to_string(), record))),
                several: Vec::new(),
            };
        }
        let steps = self.steps(domain).await;
        let several = steps
            .iter()
            .filter(|(name, _)| self.seen.get(name) == Some(&AtName::Several))
            .map(|(name, _)| name.clone())
            .collect();
        let failed: Vec<String> = steps
            .iter()
            .filter(|(_, step)| *step == Step::Failed)
            .map(|(name, _)| name.clone())
            .collect();
        let possible = align::policy_domains(domain, &steps);
        let record = |name: &str| match self.seen.get(name) {
            Some(AtName::One(record)) => Some((name.to_string(), record.clone())),
            _ => None,
        };
        let policy = match possible.as_slice() {
            [None] => Policy::Known(None),
            [Some(name)] if !failed.contains(name) => Policy::Known(record(name)),
            _ => Policy::Open {
                records: possible
                    .iter()
                    .flatten()
                    .filter_map(|n| record(n))
                    .collect(),
                failed,
            },
        };
        Discovery { policy, several }
    }

    /// Every step of the walk from `domain`, for the Organizational Domain (`align.rs`).
    /// It stops after a `psd=y` or `psd=n` record, at `domain` itself too (RFC 9989 §4.10
    /// steps 2 and 6: "If a single record remains and it contains a "psd=n" or "psd=y" tag,
    /// stop"). A failed name does not stop it.
    pub async fn steps(&mut self, domain: &str) -> Vec<(String, Step)> {
        let mut steps = Vec::new();
        for name in walk_names(domain) {
            let step = match self.at(&name).await {
                AtName::One(record) => Step::Record(record.psd),
                AtName::Nothing | AtName::Several => Step::Nothing,
                AtName::Failed => Step::Failed,
            };
            steps.push((name, step));
            if matches!(step, Step::Record(Psd::No | Psd::Yes)) {
                break;
            }
        }
        steps
    }

    /// Whether `domain` exists for `np` (RFC 9989 §3.2.13 and A.4, after RFC 8020: only an
    /// NXDOMAIN says a name does not exist; NODATA says it exists without records of the type
    /// asked). One A query answers it: NXDOMAIN → no, records or NODATA → yes. `None` when
    /// the lookup failed.
    pub async fn exists(&self, domain: &str) -> Option<bool> {
        match self.dns.a(domain).await {
            Ok(Answer::NxDomain) | Err(LookupError::InvalidName) => Some(false),
            Ok(Answer::Records(_) | Answer::NoData) => Some(true),
            Err(LookupError::Failed(_)) => None,
        }
    }
}

/// One step of an Organizational Domain walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No (single) DMARC record.
    Nothing,
    /// One DMARC record, with its `psd` tag.
    Record(Psd),
    /// The lookup failed.
    Failed,
}

#[cfg(test)]
pub(super) mod stub {
    //! A `Resolve` answering from a table, counting the queries it is asked.

    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, Mutex};

    use crate::dns::lookup::{Answer, LookupError, LookupResult, MxHost, Resolve};

    /// Runs a future to its end on a runtime of its own (the tests of `discover.rs` and
    /// `evaluate.rs`).
    pub fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Names → TXT records; `fail` names fail; other names are NXDOMAIN. `a` names have an A
    /// record; `a_fail` names' address lookups fail.
    #[derive(Default)]
    pub struct Stub {
        pub txt: HashMap<String, Vec<String>>,
        pub fail: Vec<String>,
        pub a: Vec<String>,
        pub nodata: Vec<String>,
        pub a_fail: Vec<String>,
        pub asked: Mutex<Vec<String>>,
    }

    impl Stub {
        pub fn new() -> Stub {
            Stub::default()
        }
        pub fn txt(mut self, name: &str, text: &str) -> Stub {
            self.txt
                .entry(name.to_string())
                .or_default()
                .push(text.to_string());
            self
        }
        pub fn fail(mut self, name: &str) -> Stub {
            self.fail.push(name.to_string());
            self
        }
        pub fn exists(mut self, name: &str) -> Stub {
            self.a.push(name.to_string());
            self
        }
        /// `name` exists in the DNS but has no A, AAAA or MX record (NODATA).
        pub fn empty(mut self, name: &str) -> Stub {
            self.nodata.push(name.to_string());
            self
        }
        pub fn address_fails(mut self, name: &str) -> Stub {
            self.a_fail.push(name.to_string());
            self
        }
        pub fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
        fn log(&self, what: String) {
            self.asked.lock().unwrap().push(what);
        }
        fn address<T: Clone>(&self, name: &str, kind: &str, value: T) -> LookupResult<T> {
            self.log(format!("{kind} {name}"));
            if self.a_fail.iter().any(|n| n == name) {
                return Err(LookupError::Failed("stub".into()));
            }
            if self.a.iter().any(|n| n == name) {
                return Ok(Answer::Records(Arc::from(vec![value])));
            }
            if self.nodata.iter().any(|n| n == name) {
                return Ok(Answer::NoData);
            }
            Ok(Answer::NxDomain)
        }
    }

    impl Resolve for Stub {
        async fn txt(&self, name: &str) -> LookupResult<Box<[u8]>> {
            self.log(name.to_string());
            if self.fail.iter().any(|n| n == name) {
                return Err(LookupError::Failed("stub".into()));
            }
            match self.txt.get(name) {
                Some(texts) => Ok(Answer::Records(
                    texts
                        .iter()
                        .map(|t| t.as_bytes().to_vec().into_boxed_slice())
                        .collect::<Vec<_>>()
                        .into(),
                )),
                None => Ok(Answer::NxDomain),
            }
        }
        async fn a(&self, name: &str) -> LookupResult<Ipv4Addr> {
            self.address(name, "A", Ipv4Addr::LOCALHOST)
        }
        async fn aaaa(&self, name: &str) -> LookupResult<Ipv6Addr> {
            self.address(name, "AAAA", Ipv6Addr::LOCALHOST)
        }
        async fn mx(&self, name: &str) -> LookupResult<MxHost> {
            let mx = MxHost {
                preference: 10,
                exchange: "mx.example".into(),
            };
            self.address(name, "MX", mx)
        }
        async fn ptr(&self, _ip: IpAddr) -> LookupResult<Box<str>> {
            Ok(Answer::NxDomain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stub::{Stub, run};
    use super::*;
    use crate::checks::dmarc::DmarcPolicy;
    use crate::checks::dmarc::record::PolicyTag;

    #[test]
    fn the_walk_asks_the_domain_then_each_parent_up_to_the_tld() {
        assert_eq!(walk_names("org"), ["org"]);
        assert_eq!(walk_names("example.org"), ["example.org", "org"]);
        assert_eq!(
            walk_names("a.b.example.org"),
            ["a.b.example.org", "b.example.org", "example.org", "org"]
        );
        // 7 labels: 7 queries, no skip.
        assert_eq!(walk_names("a.b.c.d.e.f.g").len(), 7);
    }

    #[test]
    fn a_long_name_skips_to_its_seven_rightmost_labels_after_the_first_query() {
        let names = walk_names("1.2.3.4.5.6.7.8.9.10");
        assert_eq!(names.len(), MAX_QUERIES);
        assert_eq!(names[0], "1.2.3.4.5.6.7.8.9.10");
        assert_eq!(names[1], "4.5.6.7.8.9.10");
        assert_eq!(names[2], "5.6.7.8.9.10");
        assert_eq!(names[7], "10");
        assert_eq!(walk_names("1.2.3.4.5.6.7.8")[1], "2.3.4.5.6.7.8");
    }

    fn known(got: &Discovery) -> Option<&str> {
        match &got.policy {
            Policy::Known(found) => found.as_ref().map(|(name, _)| name.as_str()),
            open => panic!("not known: {open:?}"),
        }
    }

    #[test]
    fn the_author_domains_own_record_comes_first() {
        let dns = Stub::new()
            .txt("_dmarc.b.example.org", "v=DMARC1; p=quarantine")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject");
        let got = run(Walker::new(&dns).discover("b.example.org"));
        assert_eq!(known(&got), Some("b.example.org"));
        assert_eq!(dns.asked(), ["_dmarc.b.example.org"]);
    }

    #[test]
    fn without_its_own_record_the_organizational_domains_applies() {
        // Not the first record walking up (b.example.org): the Organizational Domain's,
        // the highest name with a record (RFC 9989 §4.10.1, §4.10.2, B.4.2).
        let dns = Stub::new()
            .txt("_dmarc.b.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject");
        let got = run(Walker::new(&dns).discover("a.b.example.org"));
        let Policy::Known(Some((name, record))) = got.policy else {
            panic!("{got:?}")
        };
        assert_eq!(name, "example.org");
        assert_eq!(record.p, PolicyTag::Value(DmarcPolicy::Reject));
        assert_eq!(
            dns.asked(),
            [
                "_dmarc.a.b.example.org",
                "_dmarc.b.example.org",
                "_dmarc.example.org",
                "_dmarc.org"
            ]
        );
        // psd=n marks the Organizational Domain, and ends the walk.
        let dns = Stub::new()
            .txt("_dmarc.b.example.org", "v=DMARC1; p=none; psd=n")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject");
        let got = run(Walker::new(&dns).discover("a.b.example.org"));
        assert_eq!(known(&got), Some("b.example.org"));
        assert!(!dns.asked().contains(&"_dmarc.example.org".to_string()));
    }

    #[test]
    fn without_a_record_at_the_organizational_domain_the_public_suffix_domains_applies() {
        // psd=y at `org`: example.org is the Organizational Domain; it has no record, and
        // b.example.org's is neither the author domain's nor the Organizational Domain's.
        let dns = Stub::new()
            .txt("_dmarc.b.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.org", "v=DMARC1; p=reject; psd=y");
        let got = run(Walker::new(&dns).discover("a.b.example.org"));
        assert_eq!(known(&got), Some("org"));
        let got = run(Walker::new(&dns).discover("example.org"));
        assert_eq!(known(&got), Some("org"));
        // With a record, the Organizational Domain's applies.
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.org", "v=DMARC1; p=reject; psd=y");
        let got = run(Walker::new(&dns).discover("a.b.example.org"));
        assert_eq!(known(&got), Some("example.org"));
        // No record anywhere: none applies.
        let got = run(Walker::new(&Stub::new()).discover("a.example.org"));
        assert_eq!(known(&got), None);
    }

    #[test]
    fn other_txt_records_are_ignored_and_several_dmarc_records_are_discarded() {
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=spf1 -all")
            .txt("_dmarc.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.b.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.b.example.org", "v=DMARC1; p=reject");
        // One DMARC record beside another TXT record: it is found.
        let got = run(Walker::new(&dns).discover("example.org"));
        assert_eq!(known(&got), Some("example.org"));
        // Two: both discarded, the walk goes on to the parent.
        let got = run(Walker::new(&dns).discover("b.example.org"));
        assert_eq!(got.several, ["b.example.org"]);
        assert_eq!(known(&got), Some("example.org"));
    }

    #[test]
    fn a_failed_name_that_could_change_the_record_leaves_it_open() {
        // _dmarc.b.example.org could hold psd=n (its own record would apply), or psd=y.
        let dns = Stub::new()
            .fail("_dmarc.b.example.org")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject");
        let got = run(Walker::new(&dns).discover("a.b.example.org"));
        let Policy::Open { records, failed } = got.policy else {
            panic!("{got:?}")
        };
        assert_eq!(failed, ["b.example.org"]);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, "example.org");
        // The author domain's own lookup failed, nothing above: open, no record known.
        let dns = Stub::new().fail("_dmarc.example.org");
        let got = run(Walker::new(&dns).discover("example.org"));
        assert_eq!(
            got.policy,
            Policy::Open {
                records: Vec::new(),
                failed: vec!["example.org".to_string()]
            }
        );
        // A failure the walk never reaches (it stopped at psd=n) changes nothing.
        let dns = Stub::new()
            .fail("_dmarc.org")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject; psd=n");
        let got = run(Walker::new(&dns).discover("a.example.org"));
        assert_eq!(known(&got), Some("example.org"));
    }

    #[test]
    fn each_name_is_asked_once_per_walker() {
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject");
        run(async {
            let mut walker = Walker::new(&dns);
            walker.discover("a.example.org").await;
            walker.steps("a.example.org").await;
            walker.steps("b.example.org").await;
        });
        assert_eq!(
            dns.asked(),
            [
                "_dmarc.a.example.org",
                "_dmarc.example.org",
                "_dmarc.org",
                "_dmarc.b.example.org"
            ]
        );
    }

    #[test]
    fn steps_stop_at_psd_n_and_at_psd_y_the_start_included() {
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=none; psd=n")
            .txt("_dmarc.gov", "v=DMARC1; p=reject; psd=y")
            .txt("_dmarc.agency.gov", "v=DMARC1; p=reject; psd=y");
        let steps = run(Walker::new(&dns).steps("a.example.org"));
        assert_eq!(
            steps,
            [
                ("a.example.org".to_string(), Step::Nothing),
                ("example.org".to_string(), Step::Record(Psd::No))
            ]
        );
        // psd=y at the start stops the walk too (RFC 9989 §4.10 step 2).
        let steps = run(Walker::new(&dns).steps("agency.gov"));
        assert_eq!(steps, [("agency.gov".to_string(), Step::Record(Psd::Yes))]);
        let steps = run(Walker::new(&dns).steps("x.agency.gov"));
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!(steps[1], ("agency.gov".to_string(), Step::Record(Psd::Yes)));
    }

    #[test]
    fn existence_for_np() {
        let dns = Stub::new()
            .exists("here.example.org")
            .empty("empty.example.org")
            .address_fails("broken.example.org");
        let walker = Walker::new(&dns);
        assert_eq!(run(walker.exists("here.example.org")), Some(true));
        assert_eq!(run(walker.exists("gone.example.org")), Some(false));
        // NODATA: the name exists, it only has no A record (RFC 8020, RFC 9989 A.4).
        assert_eq!(run(walker.exists("empty.example.org")), Some(true));
        assert_eq!(run(walker.exists("broken.example.org")), None);
        // One A query each, nothing else.
        assert_eq!(
            dns.asked(),
            [
                "A here.example.org",
                "A gone.example.org",
                "A empty.example.org",
                "A broken.example.org"
            ]
        );
    }
}
