//! The SPF record parser (src/checks/spf/record.rs: `select`, `parse`) and the macro
//! expander (src/checks/spf/macros.rs), through `portcullis::fuzzing`.
//!
//! Input: TXT records, one a line, up to a NUL; after it, one a line: the sender, the HELO
//! name, the validated name (`%{p}`), our host name (ignored since `exp=` is not
//! expanded), the client IP, and one more macro-string to parse. Missing parts take
//! realistic defaults.
//!
//! Invariants: never panics; `select` finds a record only among the `v=spf1` ones, and
//! `Several` only when there are several; a record that parses is printable ASCII starting
//! with `v=spf1`, has at most one directive per term, prefix lengths in range
//! (/0..32, //0..128), and each directive shows a term of the record; every macro-string
//! expands within a bound (twice its text plus, per macro, three times the longest value:
//! URL escaping triples) and never past the kept tail (`MACRO_TAIL_MAX`), and as a domain
//! to at most 253 octets (a final dot kept, not counted) unless a single label is longer,
//! always a suffix of the expansion.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use portcullis::fuzzing::{
    MACRO_TAIL_MAX, MacroString, MacroVars, Mechanism, SpfSelection, parse_spf_record,
    select_spf_record,
};

fuzz_target!(|data: &[u8]| {
    let (txt, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let records: Vec<Box<[u8]>> = txt.split(|&b| b == b'\n').map(Box::from).collect();
    let mut fields = rest
        .split(|&b| b == b'\n')
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut field = |default: &str| fields.next().unwrap_or_else(|| default.to_string());
    let sender = field("alice@example.org");
    let helo = field("mx.example.org");
    let validated = field("mx.example.org");
    // Our host name (`%{r}`): kept in the input format, though `exp=` is no longer expanded.
    let _receiver = field("gw.example.test");
    let ip: IpAddr = field("192.0.2.1")
        .trim()
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let explanation = field("%{i} is not one of %{d}'s designated mail servers.");
    let (local, domain) = sender.rsplit_once('@').unwrap_or(("postmaster", &sender));
    let vars = MacroVars {
        sender: &sender,
        local,
        sender_domain: domain,
        domain,
        ip,
        validated: &validated,
        helo: &helo,
    };

    let spf1 = |r: &[u8]| {
        r.len() >= 6
            && r[..6].eq_ignore_ascii_case(b"v=spf1")
            && r.get(6).is_none_or(|&b| b == b' ')
    };
    let count = records.iter().filter(|r| spf1(r)).count();
    match select_spf_record(&records) {
        SpfSelection::None => assert_eq!(count, 0),
        SpfSelection::One(r) => {
            assert_eq!(count, 1);
            assert!(spf1(r));
        }
        SpfSelection::Several => assert!(count > 1),
    }

    let record = &records[0];
    if let Ok(parsed) = parse_spf_record(record) {
        assert!(spf1(record));
        assert!(record.iter().all(|b| (0x20..=0x7e).contains(b)));
        let text = std::str::from_utf8(record).expect("ASCII");
        let terms: Vec<&str> = text[6..].split(' ').filter(|t| !t.is_empty()).collect();
        assert!(parsed.directives.len() <= terms.len());
        let mut specs: Vec<&MacroString> = Vec::new();
        for d in &parsed.directives {
            let shown = d.to_string();
            assert!(
                terms.contains(&shown.as_str()),
                "directive {shown:?} is not a term"
            );
            match &d.mechanism {
                Mechanism::Ip4(_, len) => assert!(*len <= 32),
                Mechanism::Ip6(_, len) => assert!(*len <= 128),
                Mechanism::A(spec, cidr) | Mechanism::Mx(spec, cidr) => {
                    assert!(cidr.v4 <= 32 && cidr.v6 <= 128, "{cidr:?}");
                    specs.extend(spec.iter());
                }
                Mechanism::Ptr(spec) => specs.extend(spec.iter()),
                Mechanism::Include(spec) | Mechanism::Exists(spec) => specs.push(spec),
                Mechanism::All => {}
            }
        }
        specs.extend(parsed.redirect.iter());
        // A domain-spec's text is inside the record: bound its expansion by the record.
        for spec in specs {
            check_expansion(spec, text.len(), &vars);
        }
    }
    if let Ok(spec) = MacroString::parse(&explanation) {
        check_expansion(&spec, explanation.len(), &vars);
    }
});

fn check_expansion(spec: &MacroString, text_len: usize, vars: &MacroVars<'_>) {
    let longest = [
        vars.sender.len(),
        vars.local.len(),
        vars.sender_domain.len(),
        vars.domain.len(),
        vars.validated.len(),
        vars.helo.len(),
        63, // %{i} of an IPv6 address: 32 nibbles and their dots
        39, // %{c}: the longest IPv6 text
        20, // %{t}
        7,  // %{v}: in-addr
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    // At most one macro per three octets of text (`%{x}` is four).
    let bound = 2 * text_len + (text_len / 3 + 1) * 3 * longest;
    let expanded = spec.expand(vars);
    assert!(
        expanded.len() <= MACRO_TAIL_MAX,
        "expansion of {} octets, over the kept tail",
        expanded.len()
    );
    assert!(
        expanded.len() <= bound,
        "expansion of {} octets for a text of {text_len}",
        expanded.len()
    );
    // The query name keeps a final dot (the DNS layer drops it): count without it.
    let domain = spec.expand_domain(vars);
    let name = domain.strip_suffix('.').unwrap_or(&domain);
    assert!(
        name.len() <= 253 || !name.contains('.'),
        "a query name of {} octets",
        name.len()
    );
    assert!(
        expanded.ends_with(&domain),
        "the query name is not the tail of the expansion"
    );
}
