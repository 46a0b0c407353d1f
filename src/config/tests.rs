//! check-config's words and places: what `parse` reports for configs that are wrong in
//! one or many ways.

use super::*;

#[test]
fn unknown_key_is_an_error_with_position() {
    let err = parse(
        "c.yaml",
        "hostname: mx.example.test\nlimits:\n  max_recipent: 5\n",
    )
    .unwrap_err();
    // The file also lacks accepted_domains, but that rule compares keys and waits.
    assert_eq!(err.0.len(), 1, "{err}");
    let d = &err.0[0];
    assert_eq!((d.line, d.column), (3, 3), "{d}");
    assert!(d.message.contains("unknown field `max_recipent`"), "{d}");
    assert!(d.to_string().starts_with("c.yaml:3:3: "));
}

#[test]
fn check_config_speaks_plainly() {
    let msg = |text: &str| {
        parse("c.yaml", &format!("accepted_domains: [a.test]\n{text}"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        msg("connections:\n  deny: [192.0.2.0/24, 10.0.0.0/33]\n"),
        "c.yaml:3:24: connections.deny[1]: \"10.0.0.0/33\" is not an IP network or address \
         (expected e.g. 192.0.2.0/24, 2001:db8::/32 or 192.0.2.1)"
    );
    assert_eq!(
        msg("timeouts:\n  data: 5m\n  command: 30 parsecs\n"),
        "c.yaml:4:12: timeouts.command: invalid duration unit in \"30 parsecs\": use ms, s, m, h or d"
    );
    assert_eq!(
        msg("limits:\n  max_message_size: 10 parsecs\n"),
        "c.yaml:3:21: limits.max_message_size: invalid size unit in \"10 parsecs\": use KB, MB, GB, KiB, MiB or GiB"
    );
    assert_eq!(
        msg("limits:\n  max_recipients: lots\n"),
        "c.yaml:3:19: limits.max_recipients: invalid type: string \"lots\", expected a whole number"
    );
    let e = msg("limits:\n  max_recipent: 5\n");
    assert!(
        e.starts_with("c.yaml:3:3: limits: unknown field `max_recipent`; did you mean `max_recipients`? (expected one of `max_sessions`"),
        "{e}"
    );
}

#[test]
fn bare_addresses_in_network_lists_are_single_hosts() {
    let c = parse(
        "c.yaml",
        "accepted_domains: [a.test]\nconnections:\n  allow: [192.0.2.1, \"2001:db8::1\", 198.51.100.0/24]\n",
    )
    .expect("valid");
    let allow: Vec<String> = c.connections.allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        allow,
        ["192.0.2.1/32", "2001:db8::1/128", "198.51.100.0/24"]
    );
    // Sizes still take plain numbers, durations do not.
    let c = parse(
        "c.yaml",
        "accepted_domains: [a.test]\nlimits:\n  max_message_size: 1000\n",
    )
    .expect("valid");
    assert_eq!(c.limits.max_message_size, 1000);
    let e = parse(
        "c.yaml",
        "accepted_domains: [a.test]\ntimeouts:\n  command: 30\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("timeouts.command: invalid type: integer `30`, expected a duration"),
        "{e}"
    );
}

#[test]
fn semantic_errors_all_reported_with_lines() {
    // Values that cannot be read (a domain, the backend URL) and a range check, at once.
    let text = "hostname: mx.example.test\naccepted_domains:\n  - ok.test\n  - 'bad domain'\nlimits:\n  max_recipients: 0\nbackend:\n  url: ftp://x\n";
    let err = parse("c.yaml", text).unwrap_err();
    let lines: Vec<String> = err.0.iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("c.yaml:4:5: accepted_domains[1]: "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("c.yaml:6:3: max_recipients"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("c.yaml:8:8: backend.url: "),
        "{lines:?}"
    );
}

/// Found in review: with values that cannot be read, the rules across values judged
/// their defaults, and a removed list item shifted the ones after it.
#[test]
fn with_unreadable_values_only_single_values_are_judged_where_they_are() {
    let all = |text: &str| -> Vec<String> {
        match parse("c.yaml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
        }
    };
    // zones[0] cannot be read; zones[1]'s bad name is still told, at zones[1].
    assert_eq!(
        all(
            "accepted_domains: [a.test]\ndnsbl:\n  zones:\n    - zen.spamhaus.org\n    - { zone: \"bad zone\" }\n"
        ),
        [
            "c.yaml:4:7: dnsbl.zones[0]: invalid type: string \"zen.spamhaus.org\", expected a mapping of keys to values",
            "c.yaml:5:9: \"bad zone\" is not a valid zone (a dotted domain)",
        ]
    );
    // milter.listen cannot be read: "a listen address is required" would judge its
    // default, so it waits.
    assert_eq!(
        all("listen: []\nmilter:\n  listen: [\"inet:localhost\"]\n").len(),
        1
    );
    // A number where a string is wanted is judged as the string the text has.
    let e = all(
        "accepted_domains: [a.test]\nlimits:\n  max_errors: x\nbackend:\n  url: 10025\nlog:\n  level:\n",
    );
    // (An empty `level:` is the empty string read from text, not null: no problem.)
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[1].starts_with("c.yaml:5:8: backend.url: \"10025\": the backend URL must start"),
        "{e:?}"
    );
    // A bad key is shown at the key.
    let e = all("accepted_domains: [a.test]\npolicy_scopes:\n  'bad domain': p.yaml\n");
    assert_eq!(
        e,
        [
            "c.yaml:3:3: policy_scopes.bad domain: \"bad domain\" is not a valid domain or *.domain wildcard"
        ]
    );
    // Two scopes for one domain, written in two cases.
    let e = all(
        "accepted_domains: [a.test]\npolicy_scopes:\n  Bank.test: a.yaml\n  bank.TEST: b.yaml\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("policy_scopes") && e[0].contains("\"bank.test\" is given twice"),
        "{e:?}"
    );
    // An empty file is an empty mapping, not the built-in defaults.
    assert!(all("\n")[0].contains("at least one accepted domain is required"));
}

#[test]
fn a_file_wrong_everywhere_says_that_more_follow() {
    let text: String = (0..60).map(|i| format!("k{i}: 1\n")).collect();
    let e = parse("c.yaml", &text).unwrap_err().0;
    assert_eq!(e.len(), read::MAX_PROBLEMS + 1);
    assert!(
        e.last()
            .is_some_and(|d| d.message.ends_with("more problems follow: fix these first")),
        "{e:?}"
    );
}

#[test]
fn tls_require_needs_a_certificate_and_every_entry_is_placed() {
    let msg = |text: &str| parse("c.yaml", text).unwrap_err().to_string();
    let e =
        msg("accepted_domains: [a.test]\ntls:\n  require:\n    client_networks: [192.0.2.0/24]\n");
    assert_eq!(
        e,
        "c.yaml:3:3: tls.require needs tls.cert and tls.key: without a certificate \
         STARTTLS is not offered, and no client could meet the requirement"
    );
    assert_eq!(
        msg("accepted_domains: [a.test]\ntls:\n  key: /dev/null\n"),
        "c.yaml:2:1: tls.cert is required"
    );
    let tls = "accepted_domains: [a.test]\ntls:\n  cert: /dev/null\n  key: /dev/null\n  require:\n";
    let e = msg(&format!("{tls}    client_networks: [192.0.2.0/33]\n"));
    assert!(
        e.starts_with(
            "c.yaml:6:23: tls.require.client_networks[0]: \"192.0.2.0/33\" is not an IP network"
        ),
        "{e}"
    );
    let e = msg(&format!(
        "{tls}    recipient_domains: [ok.test, 'bad domain']\n"
    ));
    assert!(
        e.starts_with(
            "c.yaml:6:34: tls.require.recipient_domains[1]: \"bad domain\" is not a valid"
        ),
        "{e}"
    );
    let c = parse(
        "c.yaml",
        &format!("{tls}    client_networks: [192.0.2.0/24]\n    recipient_domains: [bank.test]\n"),
    )
    .expect("valid");
    let require = c.tls.expect("tls").require;
    assert_eq!(
        require.recipient_domains.patterns().collect::<Vec<_>>(),
        ["bank.test"]
    );
    assert_eq!(require.client_networks.len(), 1);
}

#[test]
fn units_parse_in_yaml() {
    let c = parse(
        "c.yaml",
        "accepted_domains: [a.test]\nlimits:\n  max_message_size: 10MiB\ntimeouts:\n  command: 30s\n",
    )
    .expect("valid");
    assert_eq!(c.limits.max_message_size, 10 * 1024 * 1024);
    assert_eq!(c.timeouts.command.as_secs(), 30);
    let err = parse("c.yaml", "timeouts:\n  command: 30 parsecs\n").unwrap_err();
    assert_eq!(err.0[0].line, 2, "{err}");
    assert!(err.0[0].message.starts_with("timeouts.command: "), "{err}");
}

#[test]
fn accepted_domains_are_required_with_an_smtp_listener_only() {
    let err = parse("c.yaml", "hostname: mx.example.test\n").unwrap_err();
    assert!(
        err.to_string().contains("accepted domain is required"),
        "{err}"
    );
    let c = parse(
        "c.yaml",
        "listen: []\nmilter:\n  listen: [\"inet:127.0.0.1:8891\", \"unix:/run/p/milter.sock\"]\n  socket_mode: \"0660\"\n",
    )
    .expect("a milter-only config without accepted_domains is valid");
    assert!(c.accepted_domains.is_empty());
    assert_eq!(c.milter.listen.len(), 2);
    assert_eq!(c.milter.socket_mode, 0o660);
    let err = parse("c.yaml", "listen: []\n").unwrap_err();
    assert!(err.to_string().contains("milter.listen"), "{err}");
    let err = parse(
        "c.yaml",
        "listen: []\nmilter:\n  listen: [\"inet:localhost\"]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected inet:IP:PORT"), "{err}");
    let err = parse(
        "c.yaml",
        "listen: []\nmilter:\n  listen: [\"unix:/x\"]\n  socket_mode: \"999\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid file mode"), "{err}");
    let err = parse(
        "c.yaml",
        "listen: []\nmilter:\n  listen: [\"unix:/x\"]\n  quarantine: store\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs quarantine.dir"), "{err}");
    let milter = |extra: &str| {
        parse(
            "c.yaml",
            &format!("listen: []\nmilter:\n  listen: [\"unix:/x\"]\n{extra}"),
        )
        .unwrap_err()
        .to_string()
    };
    let e = milter("  socket_owner: \"a:b:c\"\n");
    assert!(e.contains("expected user or user:group"), "{e}");
    let e = milter("  max_packet_size: 4096\n");
    assert!(e.contains("must hold a 65,535-byte body chunk"), "{e}");
    let e = milter("  timeout: 0s\n");
    assert!(
        e.contains("milter.timeout") || e.contains("greater than 0"),
        "{e}"
    );
}
