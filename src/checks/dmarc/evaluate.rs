//! One DMARC evaluation of a message: each author domain on its own (policy discovery,
//! alignment of the passing SPF and DKIM identifiers, `sp`/`np`, testing), then the
//! strictest of their outcomes.
//!
//! Owns: what a DNS failure does to a result (a policy found stays known: `temperror` with
//! the strictest policy of the known records that could apply; none known: `temperror` with
//! policy `unknown`; a failure that cannot change the answer changes nothing), the bound on author domains (`MAX_AUTHOR_DOMAINS`) and the
//! order "strictest" means (`strictness`). Must not: act on the outcome (the policy does).

use std::collections::HashSet;

use super::align::{self, Aligned};
use super::discover::{Policy, Walker};
use super::record::{Applicable, DmarcRecord, Mode, Role};
use super::{DmarcInput, DmarcOutcome, DmarcPolicy, DmarcResult};
use crate::dns::lookup::Resolve;

/// Author domains evaluated per message; the others are named in the reason only.
pub const MAX_AUTHOR_DOMAINS: usize = 5;

/// DKIM domains tried for relaxed alignment per author domain (each may cost a tree walk);
/// every one is still compared for strict alignment.
const MAX_RELAXED_DKIM: usize = 10;

/// Evaluates DMARC for the author domains of `input` and returns the strictest outcome.
pub async fn evaluate(dns: &impl Resolve, input: &DmarcInput<'_>) -> DmarcOutcome {
    // Each domain once as the DNS knows it (case, a final dot, U-label or A-label make no
    // difference), counted in one pass however long the list; the first few are evaluated.
    let mut distinct: HashSet<String> = HashSet::new();
    let mut domains: Vec<(&str, Option<String>)> = Vec::new();
    for raw in input.from_domains {
        let normalized = normalize(raw);
        let key = normalized.clone().unwrap_or_else(|| raw.clone());
        if distinct.insert(key) && domains.len() < MAX_AUTHOR_DOMAINS {
            domains.push((raw, normalized));
        }
    }
    let count = distinct.len();
    let ids = Identifiers::of(input, "pass", input.dkim_pass_domains);
    let retry = Identifiers::of(input, "temperror", input.dkim_temperror_domains);
    let mut walker = Walker::new(dns);
    let mut strictest: Option<DmarcOutcome> = None;
    for (raw, domain) in domains {
        let outcome = one(&mut walker, raw, domain, &ids, &retry).await;
        if strictest
            .as_ref()
            .is_none_or(|s| strictness(&outcome) < strictness(s))
        {
            strictest = Some(outcome);
        }
    }
    let Some(mut outcome) = strictest else {
        return plain(DmarcResult::None, "", Some("no author domain".into()));
    };
    outcome.author_domains = count;
    if count > MAX_AUTHOR_DOMAINS {
        add_reason(
            &mut outcome,
            format!(
                "{count} author domains, first {MAX_AUTHOR_DOMAINS} evaluated, strictest applied"
            ),
        );
    } else if count > 1 {
        add_reason(
            &mut outcome,
            format!("{count} author domains, strictest applied"),
        );
    }
    outcome
}

/// How strict an outcome is, lowest first: a domain's definite request before a guess, and
/// any result that lets the message through unharmed last, `pass` after `none` (a message
/// passes only when every author domain passes).
pub fn strictness(outcome: &DmarcOutcome) -> u8 {
    use DmarcPolicy as P;
    use DmarcResult as R;
    match (outcome.result, outcome.policy) {
        (R::Fail, P::Reject) => 0,
        (R::TempError, P::Reject) => 1,
        (R::Fail, P::Quarantine) => 2,
        (R::TempError, P::Unknown) => 3,
        (R::TempError, P::Quarantine) => 4,
        (R::Fail, _) => 5,
        (R::TempError, _) => 6,
        (R::PermError, _) => 7,
        (R::None, _) => 8,
        (R::Pass, _) => 9,
    }
}

/// Identifiers with one SPF or DKIM result: the SPF domain when SPF gave it, the DKIM
/// domains that did (each once, in order), all normalized.
struct Identifiers {
    spf: Option<String>,
    dkim: Vec<String>,
}

impl Identifiers {
    /// The SPF domain when SPF's word is `spf_word`, and `dkim`: the passing identifiers
    /// (`pass` and the passing DKIM domains), or those whose check failed temporarily
    /// (`temperror` and the DKIM domains whose key lookup failed).
    fn of(input: &DmarcInput<'_>, spf_word: &str, dkim: &[String]) -> Identifiers {
        let spf = input
            .spf_result
            .eq_ignore_ascii_case(spf_word)
            .then(|| normalize(input.spf_domain))
            .flatten();
        let mut seen = HashSet::new();
        let dkim = dkim
            .iter()
            .filter_map(|d| normalize(d))
            .filter(|d| seen.insert(d.clone()))
            .collect();
        Identifiers { spf, dkim }
    }

    /// Whether one is identical to `domain`: aligned in either mode, under any record.
    fn exact(&self, domain: &str) -> bool {
        self.spf.as_deref() == Some(domain) || self.dkim.iter().any(|d| d == domain)
    }
}

/// A domain as the DNS knows it: lowercase A-labels, without a final dot; `None` for what
/// is not a domain name (empty, a literal, a bad label).
fn normalize(domain: &str) -> Option<String> {
    let domain = domain.trim();
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let ascii = if domain.is_ascii() {
        domain.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(domain).ok()?
    };
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(ascii)
}

/// An outcome with no policy.
fn plain(result: DmarcResult, domain: &str, reason: Option<String>) -> DmarcOutcome {
    DmarcOutcome {
        result,
        domain: domain.to_string(),
        policy: DmarcPolicy::None,
        requested: DmarcPolicy::None,
        testing: false,
        reason,
        author_domains: 0,
    }
}

fn add_reason(outcome: &mut DmarcOutcome, reason: String) {
    outcome.reason = Some(match outcome.reason.take() {
        Some(before) => format!("{before}; {reason}"),
        None => reason,
    });
}

fn joined(reasons: Vec<String>) -> Option<String> {
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The stricter of two policies.
fn stricter(a: DmarcPolicy, b: DmarcPolicy) -> DmarcPolicy {
    let level = |p: DmarcPolicy| match p {
        DmarcPolicy::Reject => 3,
        DmarcPolicy::Unknown => 2,
        DmarcPolicy::Quarantine => 1,
        DmarcPolicy::None => 0,
    };
    if level(b) > level(a) { b } else { a }
}

/// The outcome for one author domain.
async fn one<R: Resolve>(
    walker: &mut Walker<'_, R>,
    raw: &str,
    normalized: Option<String>,
    ids: &Identifiers,
    retry: &Identifiers,
) -> DmarcOutcome {
    let Some(domain) = normalized else {
        return plain(
            DmarcResult::None,
            raw,
            Some(format!("author domain {raw:?} is not a domain name")),
        );
    };
    let found = walker.discover(&domain).await;
    let mut reasons: Vec<String> = found
        .several
        .iter()
        .map(|n| format!("several DMARC records at _dmarc.{n}"))
        .collect();
    match found.policy {
        Policy::Known(None) => plain(DmarcResult::None, &domain, joined(reasons)),
        Policy::Known(Some((at, record))) => {
            known(walker, domain, at, record, ids, retry, reasons).await
        }
        Policy::Open { records, failed } => {
            let name = failed.first().map_or("", String::as_str);
            reasons.insert(0, format!("DNS failure at _dmarc.{name}"));
            open(walker, domain, records, ids, reasons).await
        }
    }
}

/// The outcome for `domain` under the record found at `at`.
async fn known<R: Resolve>(
    walker: &mut Walker<'_, R>,
    domain: String,
    at: String,
    record: DmarcRecord,
    ids: &Identifiers,
    retry: &Identifiers,
    mut reasons: Vec<String>,
) -> DmarcOutcome {
    let role = role(&domain, &at);
    if let Some(fault) = record.fault() {
        reasons.push(if record.rua {
            format!("{fault} at _dmarc.{at}, read as p=none")
        } else {
            format!("{fault} at _dmarc.{at}, no DMARC processing")
        });
    }
    let Applicable::Policy(mut requested) = record.applicable(role) else {
        return plain(DmarcResult::None, &domain, joined(reasons));
    };

    let mut result = if ids.exact(&domain) {
        DmarcResult::Pass
    } else {
        match relaxed(walker, &domain, ids, record.aspf, record.adkim).await {
            Aligned::Yes => DmarcResult::Pass,
            Aligned::No if aligns(walker, &domain, retry, record.aspf, record.adkim).await => {
                // An aligned identifier could not be checked: it might have passed.
                reasons.push("temporary failure of an aligned identifier".into());
                DmarcResult::TempError
            }
            Aligned::No => {
                reasons.push("no aligned identifier".into());
                DmarcResult::Fail
            }
            Aligned::Unknown(names) => {
                let name = names.first().map_or("", String::as_str);
                reasons.push(format!(
                    "DNS failure at _dmarc.{name} (organizational domain)"
                ));
                DmarcResult::TempError
            }
        }
    };

    // `np`: only when it would change what a failing message gets.
    if result != DmarcResult::Pass && role == Role::Subdomain {
        let (policy, settled) = with_np(walker, &domain, &record, requested).await;
        requested = policy;
        if !settled {
            reasons.push(format!("DNS failure checking whether {domain} exists"));
            result = DmarcResult::TempError;
        }
    }

    let testing = record.lowered();
    if testing && result != DmarcResult::Pass {
        reasons.push(testing_reason(&record));
    }
    DmarcOutcome {
        policy: applied(&record, requested),
        requested,
        testing,
        ..plain(result, &domain, joined(reasons))
    }
}

/// The outcome for `domain` when failed lookups leave open which record applies: one of
/// `records`, one at a failed name, or none. `temperror`, with the strictest policy a known
/// record gives, or `unknown` when none gives one. When one does, an identifier identical to
/// the author domain still passes: it aligns under any record (strict or relaxed).
async fn open<R: Resolve>(
    walker: &mut Walker<'_, R>,
    domain: String,
    records: Vec<(String, DmarcRecord)>,
    ids: &Identifiers,
    mut reasons: Vec<String>,
) -> DmarcOutcome {
    let exact = ids.exact(&domain);
    let result = if exact {
        DmarcResult::Pass
    } else {
        DmarcResult::TempError
    };
    // (applied, requested, record), the first of the strictest.
    let mut strictest: Option<(DmarcPolicy, DmarcPolicy, &DmarcRecord)> = None;
    for (at, record) in &records {
        let role = role(&domain, at);
        let Applicable::Policy(mut requested) = record.applicable(role) else {
            continue;
        };
        if !exact && role == Role::Subdomain {
            requested = with_np(walker, &domain, record, requested).await.0;
        }
        let policy = applied(record, requested);
        if strictest.is_none_or(|(best, ..)| stricter(best, policy) != best) {
            strictest = Some((policy, requested, record));
        }
    }
    let Some((policy, requested, record)) = strictest else {
        // No policy known: not even a pass can be told from "no DMARC record".
        return DmarcOutcome {
            policy: DmarcPolicy::Unknown,
            requested: DmarcPolicy::Unknown,
            ..plain(DmarcResult::TempError, &domain, joined(reasons))
        };
    };
    if record.lowered() && result != DmarcResult::Pass {
        reasons.push(testing_reason(record));
    }
    DmarcOutcome {
        policy,
        requested,
        testing: record.lowered(),
        ..plain(result, &domain, joined(reasons))
    }
}

/// Whether the author domain `domain` is the record's domain `at` or below it.
fn role(domain: &str, at: &str) -> Role {
    if domain == at {
        Role::Domain
    } else {
        Role::Subdomain
    }
}

/// `requested` as `record` asks it applied: one level lower when testing.
fn applied(record: &DmarcRecord, requested: DmarcPolicy) -> DmarcPolicy {
    if record.lowered() {
        requested.lowered()
    } else {
        requested
    }
}

fn testing_reason(record: &DmarcRecord) -> String {
    if record.testing {
        "t=y".to_string()
    } else {
        "pct=0 treated as t=y".to_string()
    }
}

/// The policy of `record` for the subdomain `domain`: `sp` (given as `sp`), or `np` when the
/// domain does not exist (looked up only when the two differ). When the lookup fails, the
/// stricter of the two and `false`.
async fn with_np<R: Resolve>(
    walker: &Walker<'_, R>,
    domain: &str,
    record: &DmarcRecord,
    sp: DmarcPolicy,
) -> (DmarcPolicy, bool) {
    // The record is valid or reads as p=none as a whole: np is a policy like sp.
    let Applicable::Policy(np) = record.applicable(Role::NonExistent) else {
        return (sp, true);
    };
    if np == sp {
        return (sp, true);
    }
    match walker.exists(domain).await {
        Some(true) => (sp, true),
        Some(false) => (np, true),
        None => (stricter(sp, np), false),
    }
}

/// Whether one of `ids` aligns with `domain`, exactly or (where the mode allows) relaxed.
async fn aligns<R: Resolve>(
    walker: &mut Walker<'_, R>,
    domain: &str,
    ids: &Identifiers,
    aspf: Mode,
    adkim: Mode,
) -> bool {
    ids.exact(domain) || relaxed(walker, domain, ids, aspf, adkim).await == Aligned::Yes
}

/// Relaxed alignment of `domain` with any passing identifier whose mode is relaxed.
async fn relaxed<R: Resolve>(
    walker: &mut Walker<'_, R>,
    domain: &str,
    ids: &Identifiers,
    aspf: Mode,
    adkim: Mode,
) -> Aligned {
    let may_share = |c: &&str| align::may_share(domain, c);
    let mut candidates: Vec<&str> = Vec::new();
    if aspf == Mode::Relaxed {
        candidates.extend(ids.spf.as_deref().filter(may_share));
    }
    if adkim == Mode::Relaxed {
        // Those that cannot align cost nothing: the bound counts only the others.
        candidates.extend(
            ids.dkim
                .iter()
                .map(String::as_str)
                .filter(may_share)
                .take(MAX_RELAXED_DKIM),
        );
    }
    if candidates.is_empty() {
        return Aligned::No;
    }
    let own = walker.steps(domain).await;
    let mut unknown: Option<Vec<String>> = None;
    for candidate in candidates {
        let theirs = walker.steps(candidate).await;
        match align::relaxed(domain, &own, candidate, &theirs) {
            Aligned::Yes => return Aligned::Yes,
            Aligned::No => {}
            Aligned::Unknown(names) => {
                unknown.get_or_insert(names);
            }
        }
    }
    unknown.map_or(Aligned::No, Aligned::Unknown)
}

#[cfg(test)]
mod tests {
    use super::super::discover::stub::{Stub, run};
    use super::*;

    struct Msg {
        from: Vec<String>,
        spf: (&'static str, &'static str),
        dkim: Vec<String>,
        dkim_temperror: Vec<String>,
    }

    fn from(domains: &[&str]) -> Msg {
        Msg {
            from: domains.iter().map(|d| d.to_string()).collect(),
            spf: ("fail", "attacker.example"),
            dkim: Vec::new(),
            dkim_temperror: Vec::new(),
        }
    }

    impl Msg {
        fn spf_pass(mut self, domain: &'static str) -> Msg {
            self.spf = ("pass", domain);
            self
        }
        fn dkim(mut self, domain: &str) -> Msg {
            self.dkim.push(domain.to_string());
            self
        }
        fn eval(&self, dns: &Stub) -> DmarcOutcome {
            let input = DmarcInput {
                from_domains: &self.from,
                spf_result: self.spf.0,
                spf_domain: self.spf.1,
                dkim_pass_domains: &self.dkim,
                dkim_temperror_domains: &self.dkim_temperror,
            };
            run(evaluate(dns, &input))
        }
    }

    fn reject_at(name: &str) -> Stub {
        Stub::new().txt(&format!("_dmarc.{name}"), "v=DMARC1; p=reject")
    }

    #[test]
    fn the_future_is_send() {
        fn send<T: Send>(_: &T) {}
        let dns = Stub::new();
        let domains = vec!["example.org".to_string()];
        let input = DmarcInput {
            from_domains: &domains,
            spf_result: "none",
            spf_domain: "",
            dkim_pass_domains: &[],
            dkim_temperror_domains: &[],
        };
        send(&evaluate(&dns, &input));
    }

    #[test]
    fn no_author_domain_is_none() {
        let o = from(&[]).eval(&reject_at("example.org"));
        assert_eq!((o.result, o.domain.as_str()), (DmarcResult::None, ""));
    }

    #[test]
    fn no_record_is_none() {
        let o = from(&["example.org"]).eval(&Stub::new());
        assert_eq!(o.result, DmarcResult::None);
        assert_eq!(o.policy, DmarcPolicy::None);
        assert_eq!(o.reason, None);
    }

    #[test]
    fn aligned_spf_or_dkim_passes_and_anything_else_fails() {
        let dns = reject_at("example.org");
        let o = from(&["example.org"]).spf_pass("example.org").eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Pass, DmarcPolicy::Reject)
        );
        let o = from(&["example.org"]).dkim("example.org").eval(&dns);
        assert_eq!(o.result, DmarcResult::Pass);
        // Relaxed: a subdomain of the same Organizational Domain.
        let o = from(&["example.org"]).dkim("mail.example.org").eval(&dns);
        assert_eq!(o.result, DmarcResult::Pass);
        let o = from(&["example.org"])
            .spf_pass("attacker.example")
            .eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Reject)
        );
        assert_eq!(o.reason.as_deref(), Some("no aligned identifier"));
        // SPF that did not pass does not count, even for the same domain.
        let mut msg = from(&["example.org"]);
        msg.spf = ("softfail", "example.org");
        assert_eq!(msg.eval(&dns).result, DmarcResult::Fail);
    }

    #[test]
    fn an_aligned_identifier_that_failed_temporarily_is_a_temperror() {
        let dns = reject_at("example.org");
        let mut msg = from(&["example.org"]);
        msg.dkim_temperror.push("mail.example.org".into());
        let o = msg.eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::TempError, DmarcPolicy::Reject)
        );
        assert_eq!(
            o.reason.as_deref(),
            Some("temporary failure of an aligned identifier")
        );
        let mut msg = from(&["example.org"]);
        msg.spf = ("temperror", "example.org");
        assert_eq!(msg.eval(&dns).result, DmarcResult::TempError);
        // Not aligned: it could not have passed DMARC, so the failure stands.
        let mut msg = from(&["example.org"]);
        msg.dkim_temperror.push("attacker.example".into());
        assert_eq!(msg.eval(&dns).result, DmarcResult::Fail);
    }

    #[test]
    fn unrelated_dkim_domains_do_not_push_an_aligned_one_out_of_the_bound() {
        let dns = reject_at("example.org");
        let mut msg = from(&["example.org"]);
        for i in 0..MAX_RELAXED_DKIM + 2 {
            msg = msg.dkim(&format!("signer{i}.example.net"));
        }
        let o = msg.dkim("mail.example.org").eval(&dns);
        assert_eq!(o.result, DmarcResult::Pass, "{o:?}");
        // The bound still holds for those that could align: the 11th is not tried.
        let dns = reject_at("example.org");
        let mut msg = from(&["example.org"]);
        for i in 0..MAX_RELAXED_DKIM {
            msg = msg.dkim(&format!("signer{i}.org"));
        }
        let o = msg.dkim("mail.example.org").eval(&dns);
        assert_eq!(o.result, DmarcResult::Fail, "{o:?}");
        assert!(!dns.asked().contains(&"_dmarc.mail.example.org".to_string()));
    }

    #[test]
    fn strict_modes_need_the_identical_domain() {
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject; adkim=s; aspf=s");
        let o = from(&["example.org"])
            .dkim("mail.example.org")
            .spf_pass("bounce.example.org");
        assert_eq!(o.eval(&dns).result, DmarcResult::Fail);
        let o = from(&["example.org"]).dkim("example.org");
        assert_eq!(o.eval(&dns).result, DmarcResult::Pass);
    }

    #[test]
    fn a_subdomain_gets_sp_from_its_parent() {
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject; sp=quarantine")
            .exists("news.example.org");
        let o = from(&["news.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Quarantine)
        );
        assert_eq!(o.domain, "news.example.org");
    }

    #[test]
    fn without_its_own_record_a_domain_gets_its_organizational_domains_policy() {
        // Not the first record walking up (b.example.org p=none): example.org's sp.
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=none; sp=reject")
            .txt("_dmarc.b.example.org", "v=DMARC1; p=none")
            .exists("a.b.example.org");
        let o = from(&["a.b.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Reject)
        );
        // b.example.org has its own record.
        let o = from(&["b.example.org"]).eval(&dns);
        assert_eq!((o.result, o.policy), (DmarcResult::Fail, DmarcPolicy::None));
        // No record at the Organizational Domain: the Public Suffix Domain's.
        let dns = Stub::new()
            .txt("_dmarc.org", "v=DMARC1; p=none; sp=quarantine; psd=y")
            .exists("news.example.org");
        let o = from(&["news.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Quarantine)
        );
    }

    #[test]
    fn a_failure_that_leaves_the_record_open_gives_the_strictest_known_policy() {
        // _dmarc.example.org failed: with psd=y there, a.example.org would be the
        // Organizational Domain (p=none); with no record, `org` the highest (p=reject).
        let dns = Stub::new()
            .txt("_dmarc.a.example.org", "v=DMARC1; p=none")
            .fail("_dmarc.example.org")
            .txt("_dmarc.org", "v=DMARC1; p=reject")
            .exists("x.a.example.org");
        let o = from(&["x.a.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::TempError, DmarcPolicy::Reject)
        );
        assert_eq!(
            o.reason.as_deref(),
            Some("DNS failure at _dmarc.example.org")
        );
        // A known record that would be no policy at all gives none: the policy is unknown.
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; sp=reject")
            .fail("_dmarc.b.example.org");
        let o = from(&["a.b.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::TempError, DmarcPolicy::Unknown)
        );
    }

    #[test]
    fn np_applies_to_a_subdomain_that_does_not_exist() {
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=none; np=reject")
            .exists("news.example.org");
        let o = from(&["news.example.org"]).eval(&dns);
        assert_eq!(o.policy, DmarcPolicy::None, "it exists: sp (= p)");
        let o = from(&["invented.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Reject)
        );
        // Existence is not looked up when np changes nothing, nor for a pass.
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject; np=reject");
        from(&["invented.example.org"]).eval(&dns);
        assert!(
            dns.asked().iter().all(|q| !q.starts_with("A ")),
            "{:?}",
            dns.asked()
        );
    }

    #[test]
    fn existence_unknown_is_a_temperror_with_the_stricter_policy() {
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=none; np=reject")
            .address_fails("odd.example.org");
        let o = from(&["odd.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::TempError, DmarcPolicy::Reject)
        );
        assert!(o.reason.unwrap().contains("exists"));
    }

    #[test]
    fn pct_0_is_testing_and_other_pct_values_are_ignored() {
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=0");
        let o = from(&["example.org"]).eval(&dns);
        assert_eq!(o.result, DmarcResult::Fail);
        assert_eq!(o.policy, DmarcPolicy::Quarantine);
        assert_eq!(o.requested, DmarcPolicy::Reject);
        assert!(o.testing);
        assert!(o.reason.unwrap().contains("pct=0 treated as t=y"));
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=quarantine; pct=0");
        assert_eq!(from(&["example.org"]).eval(&dns).policy, DmarcPolicy::None);
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=20");
        let o = from(&["example.org"]).eval(&dns);
        assert_eq!((o.policy, o.testing), (DmarcPolicy::Reject, false));
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject; t=y");
        let o = from(&["example.org"]).eval(&dns);
        assert_eq!((o.policy, o.testing), (DmarcPolicy::Quarantine, true));
    }

    #[test]
    fn several_records_are_discarded_and_the_walk_goes_on() {
        let dns = Stub::new()
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt("_dmarc.example.org", "v=DMARC1; p=none");
        let o = from(&["example.org"]).eval(&dns);
        assert_eq!(o.result, DmarcResult::None);
        assert_eq!(
            o.reason.as_deref(),
            Some("several DMARC records at _dmarc.example.org")
        );
        assert!(dns.asked().contains(&"_dmarc.org".to_string()));
        // Non-DMARC TXT records beside one DMARC record do not count.
        let dns = reject_at("example.org").txt("_dmarc.example.org", "hello");
        assert_eq!(from(&["example.org"]).eval(&dns).result, DmarcResult::Fail);
        // Discarded at the subdomain, the parent's policy applies.
        let dns = reject_at("example.org")
            .txt("_dmarc.sub.example.org", "v=DMARC1; p=none")
            .txt("_dmarc.sub.example.org", "v=DMARC1; p=none")
            .exists("sub.example.org");
        let o = from(&["sub.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Reject)
        );
    }

    #[test]
    fn records_without_policy_and_broken_records() {
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; sp=reject");
        let o = from(&["example.org"]).eval(&dns);
        assert_eq!(o.result, DmarcResult::None);
        assert_eq!(
            o.reason.as_deref(),
            Some("no p at _dmarc.example.org, no DMARC processing")
        );
        // An invalid p without rua: no DMARC processing either (RFC 9989 §4.10.1), and the
        // record still is the one that applies: the walk stops there.
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=bogus");
        let o = from(&["example.org"]).eval(&dns);
        assert_eq!((o.result, o.policy), (DmarcResult::None, DmarcPolicy::None));
        assert_eq!(dns.asked(), ["_dmarc.example.org"], "the walk stops there");
    }

    #[test]
    fn an_invalid_sp_or_np_makes_the_whole_record_p_none_or_nothing() {
        // sp invalid: p=reject does not apply to the domain itself either.
        let dns = Stub::new().txt("_dmarc.example.org", "v=DMARC1; p=reject; sp=quarantin");
        for author in ["example.org", "news.example.org"] {
            let o = from(&[author]).eval(&dns);
            assert_eq!((o.result, o.policy), (DmarcResult::None, DmarcPolicy::None));
            assert_eq!(
                o.reason.as_deref(),
                Some("invalid sp at _dmarc.example.org, no DMARC processing"),
                "{author}"
            );
        }
        // np invalid, a usable rua: p=none for every role, and no existence lookup.
        let dns = Stub::new().txt(
            "_dmarc.example.org",
            "v=DMARC1; p=reject; np=rejekt; rua=mailto:d@example.org",
        );
        for author in ["example.org", "invented.example.org"] {
            let o = from(&[author]).eval(&dns);
            assert_eq!((o.result, o.policy), (DmarcResult::Fail, DmarcPolicy::None));
            assert!(
                o.reason
                    .unwrap()
                    .contains("invalid np at _dmarc.example.org, read as p=none")
            );
        }
        assert!(
            dns.asked().iter().all(|q| !q.starts_with("A ")),
            "{:?}",
            dns.asked()
        );
    }

    #[test]
    fn the_author_domains_own_failure_with_nothing_above_is_temperror_unknown() {
        let dns = Stub::new().fail("_dmarc.example.org");
        let o = from(&["example.org"]).dkim("example.org").eval(&dns);
        assert_eq!(o.result, DmarcResult::TempError);
        assert_eq!(o.policy, DmarcPolicy::Unknown);
        assert_eq!(
            o.reason.as_deref(),
            Some("DNS failure at _dmarc.example.org")
        );
    }

    #[test]
    fn a_failure_below_a_found_policy_keeps_it() {
        let dns = reject_at("example.org").fail("_dmarc.b.example.org");
        let o = from(&["a.b.example.org"]).eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::TempError, DmarcPolicy::Reject)
        );
        assert_eq!(
            o.reason.as_deref(),
            Some("DNS failure at _dmarc.b.example.org")
        );
        // An identical identifier passes whatever the failed name holds.
        let o = from(&["a.b.example.org"])
            .dkim("a.b.example.org")
            .eval(&dns);
        assert_eq!(o.result, DmarcResult::Pass);
    }

    #[test]
    fn a_failure_in_organizational_domain_discovery_keeps_the_policy() {
        let dns = reject_at("example.org").fail("_dmarc.org");
        // Only psd=n at `org` would align these: unknown, the policy is still reject.
        let o = from(&["example.org"]).spf_pass("other.org").eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::TempError, DmarcPolicy::Reject)
        );
        assert!(o.reason.unwrap().contains("_dmarc.org"));
        // Whatever `org` holds, mail.example.org aligns with example.org.
        let o = from(&["example.org"])
            .spf_pass("mail.example.org")
            .eval(&dns);
        assert_eq!(o.result, DmarcResult::Pass);
        // A different TLD needs no lookup at all to fail.
        let o = from(&["example.org"]).spf_pass("example.com").eval(&dns);
        assert_eq!(o.result, DmarcResult::Fail);
    }

    #[test]
    fn several_author_domains_give_the_strictest_outcome() {
        let dns = reject_at("victim.example")
            .txt("_dmarc.attacker.example", "v=DMARC1; p=none")
            .txt("_dmarc.soft.example", "v=DMARC1; p=quarantine");
        // The spoofer's own domain passes; the victim's fails with reject.
        let o = from(&["attacker.example", "victim.example"])
            .dkim("attacker.example")
            .eval(&dns);
        assert_eq!(
            (o.result, o.policy),
            (DmarcResult::Fail, DmarcPolicy::Reject)
        );
        assert_eq!(o.domain, "victim.example");
        assert_eq!(
            o.reason.as_deref(),
            Some("no aligned identifier; 2 author domains, strictest applied")
        );
        let o = from(&["attacker.example", "soft.example", "nothing.example"]).eval(&dns);
        assert_eq!(
            (o.domain.as_str(), o.policy),
            ("soft.example", DmarcPolicy::Quarantine)
        );
        // Pass only when every domain passes: none beats pass.
        let o = from(&["attacker.example", "nothing.example"])
            .dkim("attacker.example")
            .eval(&dns);
        assert_eq!(
            (o.result, o.domain.as_str()),
            (DmarcResult::None, "nothing.example")
        );
        // The same domain twice is one domain.
        let o = from(&["victim.example", "victim.example"]).eval(&dns);
        assert_eq!(o.reason.as_deref(), Some("no aligned identifier"));
    }

    #[test]
    fn at_most_five_author_domains_are_evaluated() {
        let dns = reject_at("six.example");
        let o = from(&[
            "1.example",
            "2.example",
            "3.example",
            "4.example",
            "5.example",
            "six.example",
        ])
        .eval(&dns);
        assert_eq!(o.result, DmarcResult::None);
        // Only 5 are evaluated, but the outcome counts all 6 (a built-in rule refuses more
        // than 5 from this count).
        assert_eq!(o.author_domains, 6);
        assert!(!dns.asked().contains(&"_dmarc.six.example".to_string()));
        assert!(
            o.reason
                .unwrap()
                .contains("6 author domains, first 5 evaluated"),
        );
    }

    #[test]
    fn author_domains_are_counted_once_as_the_dns_knows_them() {
        let dns = reject_at("example.org").txt("_dmarc.xn--bcher-kva.example", "v=DMARC1; p=none");
        let o = from(&[
            "example.org",
            "Example.ORG.",
            "bücher.example",
            "xn--bcher-kva.example",
            "BÜCHER.example",
        ])
        .eval(&dns);
        assert_eq!(o.author_domains, 2);
        assert_eq!(
            (o.domain.as_str(), o.result),
            ("example.org", DmarcResult::Fail)
        );
        assert_eq!(
            o.reason.as_deref(),
            Some("no aligned identifier; 2 author domains, strictest applied")
        );
        assert_eq!(from(&["example.org"]).eval(&dns).author_domains, 1);
        assert_eq!(from(&[]).eval(&dns).author_domains, 0);
        // A long list is counted whole, and only the first 5 distinct domains are looked up.
        let dns = Stub::new();
        let many: Vec<String> = (0..20_000)
            .map(|i| format!("d{}.example", i % 10_000))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let o = from(&many).eval(&dns);
        assert_eq!(o.author_domains, 10_000);
        let asked = dns.asked();
        assert!(
            asked.contains(&"_dmarc.d4.example".to_string()),
            "{asked:?}"
        );
        assert!(
            !asked.contains(&"_dmarc.d5.example".to_string()),
            "{asked:?}"
        );
    }

    #[test]
    fn the_strictest_order() {
        let o = |result, policy| DmarcOutcome {
            policy,
            ..plain(result, "x", None)
        };
        use DmarcPolicy as P;
        use DmarcResult as R;
        let order = [
            o(R::Fail, P::Reject),
            o(R::TempError, P::Reject),
            o(R::Fail, P::Quarantine),
            o(R::TempError, P::Unknown),
            o(R::TempError, P::Quarantine),
            o(R::Fail, P::None),
            o(R::TempError, P::None),
            o(R::PermError, P::None),
            o(R::None, P::None),
            o(R::Pass, P::Reject),
        ];
        for pair in order.windows(2) {
            assert!(
                strictness(&pair[0]) < strictness(&pair[1]),
                "{:?} before {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn author_domains_are_normalized() {
        assert_eq!(normalize("Example.ORG."), Some("example.org".into()));
        assert_eq!(
            normalize("bücher.example"),
            Some("xn--bcher-kva.example".into())
        );
        for bad in ["", "[192.0.2.1]", "a..b", "a b.example"] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
        let o = from(&["[192.0.2.1]"]).eval(&Stub::new());
        assert_eq!(o.result, DmarcResult::None);
    }
}
