//! Identifier alignment (RFC 9989 §4.4): whether an authenticated domain (SPF MAIL FROM, DKIM
//! `d=`) is the author domain (strict) or shares its Organizational Domain (relaxed), and the
//! Organizational Domain itself (§4.10.2) from the steps of a DNS Tree Walk, which also says
//! whose record gives an author domain's policy (§4.10.1).
//!
//! Owns: the Organizational Domain rule (RFC 9989 §4.10.2: a `psd=n` record marks it; a
//! `psd=y` record above the start marks the name one label below it; otherwise the highest
//! name with a record, which is the start itself when a `psd=y` record there ended the walk;
//! with no record at all, the domain itself), the policy domain rule (the author domain's own
//! record, else its Organizational Domain's, else its Public Suffix Domain's), and what a
//! failed lookup in a walk means for both: the failed names are tried as every answer they
//! could have given (no record, a record with `psd=u`, `y` or `n`), and the answer is open
//! only when those disagree. So a DNS failure that cannot change the answer
//! (`mail.example.org` and `example.org` share their Organizational Domain whatever
//! `_dmarc.org` says) does not turn a pass into an error. Must not: query (the steps come
//! from `discover.rs`).

use super::discover::Step;
use super::record::Psd;

/// Whether two domains are aligned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aligned {
    /// Aligned, whatever any failed lookup would have said.
    Yes,
    /// Not aligned, likewise.
    No,
    /// It depends on these names, whose lookups failed.
    Unknown(Vec<String>),
}

/// At most this many failed names are tried every way (4^n combinations); beyond, `Unknown`.
const MAX_FAILED: usize = 3;

/// The answers a failed name could have given.
const GUESSES: [Step; 4] = [
    Step::Nothing,
    Step::Record(Psd::Unknown),
    Step::Record(Psd::Yes),
    Step::Record(Psd::No),
];

/// Strict alignment: the same name (both lowercase, without a final dot).
pub fn strict(a: &str, b: &str) -> bool {
    a == b
}

/// Whether relaxed alignment is possible at all: the Organizational Domain of a name is the
/// name or one of its parents, so two names whose last labels differ never share one (and
/// no lookup is needed to say so).
pub fn may_share(a: &str, b: &str) -> bool {
    a.rsplit('.').next() == b.rsplit('.').next()
}

/// The Organizational Domain of `domain` from the `steps` of its walk, a failed step read as
/// `guess` gives for its name. The walk ends at the first `psd=y` or `psd=n` record (the
/// start included), so the steps after one (which a failed name, guessed so, would have
/// stopped) do not count.
pub fn org_domain(domain: &str, steps: &[(String, Step)], guess: &dyn Fn(&str) -> Step) -> String {
    organizational(domain, steps, guess).domain
}

/// An Organizational Domain, and the Public Suffix Domain whose `psd=y` record marked it.
struct Organizational {
    domain: String,
    psd: Option<String>,
}

fn organizational(
    domain: &str,
    steps: &[(String, Step)],
    guess: &dyn Fn(&str) -> Step,
) -> Organizational {
    let mut highest: Option<&str> = None;
    for (name, step) in steps {
        let org = |domain: String, psd: Option<String>| Organizational { domain, psd };
        match answer(name, *step, guess) {
            Step::Nothing | Step::Failed => {}
            Step::Record(Psd::No) => return org(name.clone(), None),
            Step::Record(Psd::Yes) if name != domain => {
                return org(one_below(name, domain), Some(name.clone()));
            }
            // psd=y at the start: the walk stopped there, its record is the highest found.
            Step::Record(Psd::Yes) => return org(name.clone(), None),
            Step::Record(Psd::Unknown) => highest = Some(name),
        }
    }
    Organizational {
        domain: highest.unwrap_or(domain).to_string(),
        psd: None,
    }
}

/// A step as known, or as guessed when its lookup failed.
fn answer(name: &str, step: Step, guess: &dyn Fn(&str) -> Step) -> Step {
    match step {
        Step::Failed => guess(name),
        known => known,
    }
}

/// The name whose record gives the policy of `domain` (RFC 9989 §4.10.1: "The Author
/// Domain", else "The Organizational Domain of the Author Domain", else "The Public Suffix
/// Domain of the Author Domain"), from the steps of its walk, a failed step read as `guess`
/// gives; `None` when no record applies. An Organizational Domain that the walk skipped (a
/// long name cut to 7 labels) was not asked: it has no record as far as this walk knows,
/// which keeps the walk to its 8 queries.
fn policy_domain(
    domain: &str,
    steps: &[(String, Step)],
    guess: &dyn Fn(&str) -> Step,
) -> Option<String> {
    let has_record = |name: &str| {
        steps
            .iter()
            .find(|(n, _)| n == name)
            .is_some_and(|(n, step)| matches!(answer(n, *step, guess), Step::Record(_)))
    };
    if has_record(domain) {
        return Some(domain.to_string());
    }
    let org = organizational(domain, steps, guess);
    if has_record(&org.domain) {
        return Some(org.domain);
    }
    org.psd
}

/// Every name whose record could give the policy of `domain`, in the order of its walk, and
/// `None` last when it could also be that no record applies. One entry when no failed lookup
/// can change it. Beyond `MAX_FAILED` failed names, every name that has or could have a
/// record, and `None`.
pub fn policy_domains(domain: &str, steps: &[(String, Step)]) -> Vec<Option<String>> {
    let failed = failed_names([steps]);
    let mut possible: Vec<Option<String>> = Vec::new();
    if failed.len() > MAX_FAILED {
        possible.extend(
            steps
                .iter()
                .filter(|(_, step)| *step != Step::Nothing)
                .map(|(name, _)| Some(name.clone())),
        );
        possible.push(None);
        return possible;
    }
    each_guess(&failed, |guess| {
        let place = policy_domain(domain, steps, guess);
        if !possible.contains(&place) {
            possible.push(place);
        }
    });
    let position = |place: &Option<String>| match place {
        Some(name) => steps.iter().position(|(n, _)| n == name).unwrap_or(0),
        None => steps.len(),
    };
    possible.sort_by_key(position);
    possible
}

/// The names of the failed steps of these walks, each once, in order.
fn failed_names<'a>(walks: impl IntoIterator<Item = &'a [(String, Step)]>) -> Vec<String> {
    let mut failed: Vec<String> = Vec::new();
    for (name, step) in walks.into_iter().flatten() {
        if *step == Step::Failed && !failed.contains(name) {
            failed.push(name.clone());
        }
    }
    failed
}

/// Calls `each` with every combination of the answers the `failed` names could have given
/// (`GUESSES`, 4^n combinations, as a number in base 4).
fn each_guess(failed: &[String], mut each: impl FnMut(&dyn Fn(&str) -> Step)) {
    for combination in 0..GUESSES.len().pow(failed.len() as u32) {
        let guess = |name: &str| {
            let index = failed.iter().position(|f| f == name).unwrap_or(0);
            GUESSES[(combination / GUESSES.len().pow(index as u32)) % GUESSES.len()]
        };
        each(&guess);
    }
}

/// The name one label below `parent` on the way to `domain` (`parent` is a proper parent).
fn one_below(parent: &str, domain: &str) -> String {
    let keep = parent.split('.').count() + 1;
    let labels: Vec<&str> = domain.split('.').collect();
    labels[labels.len().saturating_sub(keep)..].join(".")
}

/// Relaxed alignment of `a` and `b` from the steps of both walks.
pub fn relaxed(
    a: &str,
    a_steps: &[(String, Step)],
    b: &str,
    b_steps: &[(String, Step)],
) -> Aligned {
    let failed = failed_names([a_steps, b_steps]);
    if failed.len() > MAX_FAILED {
        return Aligned::Unknown(failed);
    }
    let (mut yes, mut no) = (false, false);
    each_guess(&failed, |guess| {
        if org_domain(a, a_steps, guess) == org_domain(b, b_steps, guess) {
            yes = true;
        } else {
            no = true;
        }
    });
    match (yes, no) {
        (true, false) => Aligned::Yes,
        (false, _) => Aligned::No,
        (true, true) => Aligned::Unknown(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(list: &[(&str, Step)]) -> Vec<(String, Step)> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    fn known(_: &str) -> Step {
        Step::Nothing
    }

    const U: Step = Step::Record(Psd::Unknown);
    const Y: Step = Step::Record(Psd::Yes);
    const N: Step = Step::Record(Psd::No);
    const NO: Step = Step::Nothing;
    const FAIL: Step = Step::Failed;

    #[test]
    fn strict_is_identity() {
        assert!(strict("example.org", "example.org"));
        assert!(!strict("mail.example.org", "example.org"));
    }

    #[test]
    fn different_tlds_never_share_an_organizational_domain() {
        assert!(may_share("a.example.org", "b.org"));
        assert!(!may_share("example.org", "example.com"));
    }

    #[test]
    fn the_organizational_domain_is_the_highest_record_without_psd() {
        let s = steps(&[
            ("a.b.example.org", NO),
            ("b.example.org", U),
            ("example.org", U),
            ("org", NO),
        ]);
        assert_eq!(org_domain("a.b.example.org", &s, &known), "example.org");
    }

    #[test]
    fn with_no_record_a_domain_is_its_own_organizational_domain() {
        let s = steps(&[("mail.example.org", NO), ("example.org", NO), ("org", NO)]);
        assert_eq!(
            org_domain("mail.example.org", &s, &known),
            "mail.example.org"
        );
    }

    #[test]
    fn psd_n_marks_the_organizational_domain() {
        let s = steps(&[("a.b.example.org", NO), ("b.example.org", N)]);
        assert_eq!(org_domain("a.b.example.org", &s, &known), "b.example.org");
    }

    #[test]
    fn psd_y_marks_the_name_one_label_below_it() {
        let s = steps(&[("a.agency.gov", NO), ("agency.gov", NO), ("gov", Y)]);
        assert_eq!(org_domain("a.agency.gov", &s, &known), "agency.gov");
        // Across the skip of a long name: still one label below the PSD, on the way down.
        let d = "1.2.3.4.5.6.7.8.example.org";
        let s = steps(&[(d, NO), ("5.6.7.8.example.org", NO), ("org", Y)]);
        assert_eq!(org_domain(d, &s, &known), "example.org");
        // psd=y at the start does not make the domain a public suffix of itself, and it ends
        // the walk (RFC 9989 §4.10 step 2): the domain is its own Organizational Domain.
        let s = steps(&[("agency.gov", Y)]);
        assert_eq!(org_domain("agency.gov", &s, &known), "agency.gov");
        // A failed start guessed as psd=y stops there too, whatever was found above it.
        let s = steps(&[("agency.gov", FAIL), ("gov", U)]);
        assert_eq!(org_domain("agency.gov", &s, &|_: &str| Y), "agency.gov");
        assert_eq!(org_domain("agency.gov", &s, &known), "gov");
    }

    #[test]
    fn relaxed_alignment_compares_organizational_domains() {
        let a = steps(&[("mail.example.org", NO), ("example.org", U), ("org", NO)]);
        let b = steps(&[("example.org", U), ("org", NO)]);
        assert_eq!(
            relaxed("mail.example.org", &a, "example.org", &b),
            Aligned::Yes
        );
        let c = steps(&[("other.org", U), ("org", NO)]);
        assert_eq!(relaxed("example.org", &b, "other.org", &c), Aligned::No);
    }

    #[test]
    fn a_failure_that_cannot_change_the_answer_is_not_an_error() {
        // Whatever _dmarc.org holds, mail.example.org and example.org share it.
        let a = steps(&[("mail.example.org", NO), ("example.org", U), ("org", FAIL)]);
        let b = steps(&[("example.org", U), ("org", FAIL)]);
        assert_eq!(
            relaxed("mail.example.org", &a, "example.org", &b),
            Aligned::Yes
        );
    }

    #[test]
    fn a_failure_that_could_change_the_answer_is_unknown() {
        // _dmarc.org with psd=n would make `org` the Organizational Domain of both.
        let a = steps(&[("example.org", U), ("org", FAIL)]);
        let b = steps(&[("other.org", NO), ("org", FAIL)]);
        assert_eq!(
            relaxed("example.org", &a, "other.org", &b),
            Aligned::Unknown(vec!["org".to_string()])
        );
        // A failure between the two: _dmarc.b.example.org could hold psd=n.
        let a = steps(&[
            ("a.b.example.org", NO),
            ("b.example.org", FAIL),
            ("example.org", U),
            ("org", NO),
        ]);
        let b = steps(&[("example.org", U), ("org", NO)]);
        assert_eq!(
            relaxed("a.b.example.org", &a, "example.org", &b),
            Aligned::Unknown(vec!["b.example.org".to_string()])
        );
    }

    #[test]
    fn too_many_failures_are_unknown() {
        let a = steps(&[
            ("a.b.c.d.org", FAIL),
            ("b.c.d.org", FAIL),
            ("c.d.org", FAIL),
            ("d.org", FAIL),
            ("org", NO),
        ]);
        let b = steps(&[("d.org", FAIL), ("org", NO)]);
        assert!(
            matches!(relaxed("a.b.c.d.org", &a, "d.org", &b), Aligned::Unknown(f) if f.len() == 4)
        );
    }
}
