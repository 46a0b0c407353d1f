//! Cross-field validation: every rule runs and every failure is collected with its YAML path.
//!
//! Owns: the rules that span fields or need the file system (ranges, budgets that must fit
//! in one another, TLS files readable); `redis_conn.rs` those of Redis' TLS files and
//! passwords. A value that is wrong on its own (a domain, the backend URL, a DNSBL code, a
//! connection reply) is a type of its own and fails when the config is read.
//! Must not: do I/O beyond checking that referenced files can be read.

mod redis_conn;

use super::locate::Seg::{self, Index, Key};
use super::schema::Config;
use crate::smtp::address::normalize_domain;

/// One validation failure: where (a path into the YAML) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The YAML path of the offending value.
    pub path: Vec<Seg>,
    /// What is wrong, in words an operator can act on.
    pub message: String,
    /// Found by comparing values: it is not told while some value cannot be read, since it
    /// would compare that value's default.
    pub across: bool,
}

fn problem(path: &[Seg], message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_vec(),
        message: message.into(),
        across: false,
    }
}

/// A problem that a rule across values finds (one value against another, or against the
/// rest of a list).
fn across(path: &[Seg], message: impl Into<String>) -> Problem {
    Problem {
        across: true,
        ..problem(path, message)
    }
}

/// Checks `config` and returns every problem found (empty when valid).
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if normalize_domain(&config.hostname).is_none() {
        out.push(problem(
            &[Key("hostname")],
            format!("{:?} is not a valid host name", config.hostname),
        ));
    }
    if config.listen.is_empty() && config.milter.listen.is_empty() {
        out.push(across(
            &[Key("listen")],
            "at least one listen address (or a milter.listen socket) is required",
        ));
    }
    // In milter mode Postfix does relay control; an SMTP listener cannot go without it.
    if config.accepted_domains.is_empty() && !config.listen.is_empty() {
        out.push(across(
            &[Key("accepted_domains")],
            "at least one accepted domain is required while `listen` has an SMTP address",
        ));
    }
    if config.backend.probe_interval.is_zero() {
        out.push(problem(
            &[Key("backend"), Key("probe_interval")],
            "probe_interval must be greater than 0",
        ));
    }
    limits(config, &mut out);
    if let Some(dir) = &config.spool.dir
        && !dir.is_dir()
    {
        out.push(problem(
            &[Key("spool"), Key("dir")],
            format!("{} is not a directory", dir.display()),
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        out.push(problem(
            &[Key("log"), Key("level")],
            format!("invalid log level {:?}: {e}", config.log.level),
        ));
    }
    dns_and_auth(config, &mut out);
    dnsbl(config, &mut out);
    state_and_greylisting(config, &mut out);
    if let Some(name) = &config.backend.helo_name
        && normalize_domain(name).is_none()
    {
        out.push(problem(
            &[Key("backend"), Key("helo_name")],
            format!("{name:?} is not a valid host name"),
        ));
    }
    tls(config, &mut out);
    milter(config, &mut out);
    out
}

/// A unix socket's owner names a user (and group), and `quarantine: store` has a store.
fn milter(config: &Config, out: &mut Vec<Problem>) {
    let m = &config.milter;
    if let Some(owner) = &m.socket_owner
        && (owner.is_empty() || owner.split(':').count() > 2 || owner.split(':').any(str::is_empty))
    {
        out.push(problem(
            &[Key("milter"), Key("socket_owner")],
            format!("{owner:?}: expected user or user:group"),
        ));
    }
    if m.quarantine == crate::config::schema::MilterQuarantine::Store
        && config.quarantine.dir.is_none()
    {
        out.push(across(
            &[Key("milter"), Key("quarantine")],
            "`store` needs quarantine.dir",
        ));
    }
    if m.max_packet_size < 65_536 + 16 {
        out.push(problem(
            &[Key("milter"), Key("max_packet_size")],
            "must hold a 65,535-byte body chunk (at least 64KiB + 16)",
        ));
    }
    if m.timeout.is_zero() {
        out.push(problem(
            &[Key("milter"), Key("timeout")],
            "must be greater than 0",
        ));
    }
}

/// `tls.cert` and `tls.key` are given and exist (a `tls.require` without them is told why
/// it cannot work), and `tls.require`'s domains are domains or `*.domain` patterns.
fn tls(config: &Config, out: &mut Vec<Problem>) {
    let Some(tls) = &config.tls else {
        return;
    };
    let files = [("tls.cert", &tls.cert), ("tls.key", &tls.key)];
    let missing: Vec<&str> = files
        .iter()
        .filter(|(_, path)| path.as_os_str().is_empty())
        .map(|(key, _)| *key)
        .collect();
    let require = &tls.require;
    let requires = !require.client_networks.is_empty() || !require.recipient_domains.is_empty();
    if !missing.is_empty() && requires {
        out.push(across(
            &[Key("tls"), Key("require")],
            format!(
                "tls.require needs {}: without a certificate STARTTLS is not offered, and no \
                 client could meet the requirement",
                missing.join(" and ")
            ),
        ));
    } else if !missing.is_empty() {
        let verb = if missing.len() > 1 { "are" } else { "is" };
        out.push(problem(
            &[Key("tls")],
            format!("{} {verb} required", missing.join(" and ")),
        ));
    }
    for (key, path) in files {
        if path.as_os_str().is_empty() {
            continue;
        }
        if let Err(e) = std::fs::metadata(path) {
            let key = key.trim_start_matches("tls.");
            out.push(problem(
                &[Key("tls"), Key(key)],
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    }
}

fn dns_and_auth(config: &Config, out: &mut Vec<Problem>) {
    let (dns, auth) = (&config.dns, &config.auth);
    if dns.attempts == 0 {
        out.push(problem(
            &[Key("dns"), Key("attempts")],
            "attempts must be at least 1",
        ));
    }
    if dns.timeout.is_zero() {
        out.push(problem(
            &[Key("dns"), Key("timeout")],
            "timeout must be greater than 0",
        ));
    }
    if dns.cache_size == 0 {
        out.push(problem(
            &[Key("dns"), Key("cache_size")],
            "cache_size must be greater than 0",
        ));
    }
    if dns.min_ttl > dns.max_ttl {
        out.push(across(
            &[Key("dns"), Key("min_ttl")],
            "min_ttl must not exceed max_ttl",
        ));
    }
    // One SPF evaluation makes its lookups in a row (the record, then a mechanism's), each
    // of which may use every try; the check budget must leave room for two or SPF is cut
    // off as check.error.
    let worst = dns.timeout * (dns.attempts.max(1) as u32) * 2;
    if auth.enabled && worst >= config.timeouts.check {
        out.push(across(
            &[Key("dns"), Key("timeout")],
            format!(
                "timeout x attempts x 2 ({}s) must stay below timeouts.check ({}s)",
                worst.as_secs_f64(),
                config.timeouts.check.as_secs_f64()
            ),
        ));
    }
    // Each identity gives temperror at timeouts.spf; past timeouts.check the whole check is
    // cut off and gives check.error instead, with no SPF facts at all.
    if auth.enabled && config.timeouts.spf >= config.timeouts.check {
        out.push(across(
            &[Key("timeouts"), Key("spf")],
            format!(
                "spf ({}s) must stay below timeouts.check ({}s), or SPF is cut off as check.error",
                config.timeouts.spf.as_secs_f64(),
                config.timeouts.check.as_secs_f64()
            ),
        ));
    }
    // We write it bare, so it must be an RFC 2045 token (RFC 8601 §2.2): printable ASCII
    // without spaces or tspecials. A control character or a non-ASCII letter would go
    // into every Authentication-Results field we write.
    if let Some(id) = &auth.authserv_id
        && (id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)))
    {
        out.push(problem(
            &[Key("auth"), Key("authserv_id")],
            format!(
                "{id:?} is not a valid authserv-id (one token: printable ASCII, no spaces \
                 or ()<>@,;:\\\"/[]?=)"
            ),
        ));
    }
    if auth.max_verify_size == 0 {
        out.push(problem(
            &[Key("auth"), Key("max_verify_size")],
            "max_verify_size must be greater than 0",
        ));
    }
    // The largest message read back must fit on its own, or it could never be verified.
    let largest = auth.max_verify_size.min(config.limits.max_message_size);
    if auth.max_verify_memory < largest {
        out.push(across(
            &[Key("auth"), Key("max_verify_memory")],
            format!(
                "max_verify_memory must be at least the largest message verified ({largest} \
                 bytes: the smaller of auth.max_verify_size and limits.max_message_size)"
            ),
        ));
    }
}

fn dnsbl(config: &Config, out: &mut Vec<Problem>) {
    let d = &config.dnsbl;
    if d.timeout.is_zero() {
        out.push(problem(
            &[Key("dnsbl"), Key("timeout")],
            "timeout must be greater than 0",
        ));
    } else if !d.zones.is_empty() && d.timeout >= config.timeouts.check {
        out.push(across(
            &[Key("dnsbl"), Key("timeout")],
            "timeout must stay below timeouts.check, or the check is cut off as check.error",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, zone) in d.zones.iter().enumerate() {
        let at = |key| [Key("dnsbl"), Key("zones"), Index(i), Key(key)];
        match normalize_domain(zone.zone.trim_end_matches('.')) {
            Some(name) if name.contains('.') => {
                if !seen.insert(name) {
                    out.push(across(
                        &at("zone"),
                        format!("{:?} is listed twice", zone.zone),
                    ));
                }
            }
            _ => out.push(problem(
                &at("zone"),
                format!("{:?} is not a valid zone (a dotted domain)", zone.zone),
            )),
        }
        if zone.allow && zone.kind == super::schema::ZoneKind::Domain {
            out.push(across(
                &at("allow"),
                "allow lists are lists of addresses: a domain zone cannot be one",
            ));
        }
    }
}

fn state_and_greylisting(config: &Config, out: &mut Vec<Problem>) {
    use super::schema::{RedisMode, StateBackend};
    let r = &config.state.redis;
    let at = |k| [Key("state"), Key("redis"), Key(k)];
    if config.state.backend == StateBackend::Redis {
        if r.urls.is_empty() {
            out.push(across(&at("urls"), "at least one redis:// URL is needed"));
        }
        for (i, url) in r.urls.iter().enumerate() {
            let path = [Key("state"), Key("redis"), Key("urls"), Index(i)];
            match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
                Err(e) => out.push(problem(&path, format!("bad Redis URL {url:?}: {e}"))),
                // A sentinel has no databases: the URL names the sentinel, and the master is
                // used with database 0 (and `state.redis.password`).
                Ok(info) if r.mode == RedisMode::Sentinel && info.redis_settings().db() != 0 => out
                    .push(across(
                        &path,
                        format!("{url:?}: a sentinel URL cannot select a database"),
                    )),
                Ok(info) if r.mode == RedisMode::Cluster && info.redis_settings().db() != 0 => out
                    .push(across(
                        &path,
                        format!("{url:?}: Redis Cluster has only database 0"),
                    )),
                Ok(_) => {}
            }
        }
        redis_conn::check(r, out);
        if r.mode == RedisMode::Sentinel && r.sentinel_service.is_empty() {
            out.push(across(
                &at("sentinel_service"),
                "sentinel mode needs the master's service name",
            ));
        }
        for key in [
            "timeout",
            "reconnect_min",
            "health_interval",
            "session_lease",
        ] {
            let value = match key {
                "timeout" => r.timeout,
                "reconnect_min" => r.reconnect_min,
                "health_interval" => r.health_interval,
                _ => r.session_lease,
            };
            if value.is_zero() {
                out.push(problem(&at(key), format!("{key} must be greater than 0")));
            }
        }
        if r.reconnect_max < r.reconnect_min {
            out.push(across(
                &at("reconnect_max"),
                "reconnect_max must not be below reconnect_min",
            ));
        }
        if r.timeout >= config.timeouts.check {
            out.push(across(
                &at("timeout"),
                "timeout must stay below timeouts.check, or a slow Redis stalls every transaction",
            ));
        }
    }
    let g = &config.greylisting;
    if g.enabled {
        let gat = |k| [Key("greylisting"), Key(k)];
        if g.delay.is_zero() {
            out.push(problem(&gat("delay"), "delay must be greater than 0"));
        }
        if g.expiry <= g.delay {
            out.push(across(
                &gat("expiry"),
                "expiry must be longer than delay, or no retry can ever pass",
            ));
        }
        if g.pass_ttl.is_zero() {
            out.push(problem(&gat("pass_ttl"), "pass_ttl must be greater than 0"));
        }
    }
}

fn limits(config: &Config, out: &mut Vec<Problem>) {
    let l = &config.limits;
    let lim = |k| [Key("limits"), Key(k)];
    for (key, value) in [
        ("max_sessions", l.max_sessions as u64),
        ("max_message_size", l.max_message_size),
        ("max_recipients", l.max_recipients as u64),
        ("max_errors", u64::from(l.max_errors)),
        (
            "max_unknown_recipients",
            u64::from(l.max_unknown_recipients),
        ),
        ("max_commands", u64::from(l.max_commands)),
    ] {
        if value == 0 {
            out.push(problem(&lim(key), format!("{key} must be greater than 0")));
        }
    }
    if l.max_line_length < 512 {
        out.push(problem(
            &lim("max_line_length"),
            "max_line_length must be at least 512 (RFC 5321 §4.5.3.1.4)",
        ));
    }
    if config.spool.memory_limit < 64 * 1024 {
        out.push(problem(
            &[Key("spool"), Key("memory_limit")],
            "memory_limit must be at least 64KiB",
        ));
    }
    let t = &config.timeouts;
    for (key, d) in [
        ("command", t.command),
        ("data", t.data),
        ("write", t.write),
        ("tls_handshake", t.tls_handshake),
        ("proxy_header", t.proxy_header),
        ("backend_connect", t.backend_connect),
        ("backend_command", t.backend_command),
        ("backend_data", t.backend_data),
        ("check", t.check),
        ("spf", t.spf),
        ("session", t.session),
        ("idle", t.idle),
    ] {
        if d.is_zero() {
            out.push(problem(
                &[Key("timeouts"), Key(key)],
                format!("{key} must be greater than 0"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(validate(&Config::default()), vec![]);
    }

    /// Found by fuzz/auth_results: an authserv-id with a NUL or other control character
    /// (or non-ASCII) was accepted and then written into every Authentication-Results field.
    #[test]
    fn authserv_id_is_one_ascii_token() {
        let mut c = Config::default();
        for bad in [
            "",
            "gw example",
            "gw;x",
            "gw\0x",
            "gw\u{1}",
            "gw.ex\u{e4}mple",
            "a@b",
            "\"gw\"",
        ] {
            c.auth.authserv_id = Some(bad.into());
            let problems = validate(&c);
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
            assert_eq!(problems[0].path, vec![Key("auth"), Key("authserv_id")]);
        }
        for good in ["mx.example.com", "gw-1.example.test", "example_gw"] {
            c.auth.authserv_id = Some(good.into());
            assert_eq!(validate(&c), vec![], "{good:?}");
        }
    }

    #[test]
    fn dns_budget_must_fit_the_check_budget() {
        let mut c = Config::default();
        c.dns.timeout = std::time::Duration::from_secs(10);
        c.dns.attempts = 2;
        let problems = validate(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("timeouts.check"),
            "{problems:?}"
        );
        c.auth.enabled = false;
        assert_eq!(validate(&c), vec![]);
    }

    #[test]
    fn verify_memory_must_hold_the_largest_verified_message() {
        let mut c = Config::default();
        c.auth.max_verify_memory = 10 * 1024 * 1024;
        let problems = validate(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("(26214400 bytes"),
            "{problems:?}"
        );
        // Only what can be verified counts: smaller messages make a smaller budget enough.
        c.limits.max_message_size = 10 * 1024 * 1024;
        assert_eq!(validate(&c), vec![]);
    }

    #[test]
    fn spf_must_end_before_its_check() {
        let mut c = Config::default();
        c.timeouts.spf = c.timeouts.check;
        let problems = validate(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("must stay below timeouts.check"),
            "{problems:?}"
        );
        c.auth.enabled = false;
        assert_eq!(validate(&c), vec![]);
        c.timeouts.spf = std::time::Duration::ZERO;
        let problems = validate(&c);
        assert!(
            problems
                .iter()
                .any(|p| p.message == "spf must be greater than 0"),
            "{problems:?}"
        );
    }

    #[test]
    fn state_and_greylisting_are_checked() {
        use crate::config::schema::{RedisMode, StateBackend};
        let mut c = Config::default();
        c.state.backend = StateBackend::Redis;
        c.state.redis.mode = RedisMode::Sentinel;
        c.state.redis.urls = vec!["redis://127.0.0.1:26379/2".into(), "nonsense".into()];
        c.state.redis.reconnect_max = std::time::Duration::from_millis(1);
        c.state.redis.timeout = std::time::Duration::from_secs(60);
        c.greylisting.enabled = true;
        c.greylisting.expiry = c.greylisting.delay;
        let messages: Vec<String> = validate(&c).into_iter().map(|p| p.message).collect();
        for expected in [
            "a sentinel URL cannot select a database",
            "bad Redis URL \"nonsense\"",
            "reconnect_max must not be below reconnect_min",
            "timeout must stay below timeouts.check",
            "expiry must be longer than delay",
        ] {
            assert!(
                messages.iter().any(|m| m.contains(expected)),
                "{expected}: {messages:?}"
            );
        }
        assert_eq!(messages.len(), 5, "{messages:?}");
        // Off, greylisting and the Redis settings are not looked at.
        c.state.backend = StateBackend::Local;
        c.greylisting.enabled = false;
        assert_eq!(validate(&c), vec![]);
    }

    #[test]
    fn dnsbl_zones_and_codes_are_checked() {
        use super::super::schema::DnsblZoneConfig;
        let zone = |name: &str, codes: &[&str]| DnsblZoneConfig {
            zone: name.into(),
            codes: codes.iter().map(|c| c.parse().expect("range")).collect(),
            ..DnsblZoneConfig::default()
        };
        let mut c = Config::default();
        c.dnsbl.zones = vec![
            zone("zen.spamhaus.org", &["127.0.0.2-127.0.0.11", "127.0.0.20"]),
            zone("list.dnswl.org.", &[]),
        ];
        assert_eq!(validate(&c), vec![]);
        c.dnsbl.zones.push(zone("bad zone", &["127.0.0.2"]));
        c.dnsbl.zones.push(zone("ZEN.spamhaus.org", &[]));
        c.dnsbl.timeout = std::time::Duration::ZERO;
        let paths: Vec<_> = validate(&c).into_iter().map(|p| p.path).collect();
        let z = |i, key| vec![Key("dnsbl"), Key("zones"), Index(i), Key(key)];
        assert_eq!(
            paths,
            vec![
                vec![Key("dnsbl"), Key("timeout")],
                z(2, "zone"),
                z(3, "zone"),
            ]
        );
    }

    #[test]
    fn collects_every_problem() {
        let mut c = Config::default();
        c.limits.max_recipients = 0;
        c.limits.max_line_length = 100;
        c.spool.dir = Some("/nonexistent/spool".into());
        c.log.level = "info,=[".into();
        c.dns.attempts = 0;
        let problems = validate(&c);
        let paths: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(paths.contains(&vec![Key("dns"), Key("attempts")]));
        assert!(paths.contains(&vec![Key("spool"), Key("dir")]));
        assert!(paths.contains(&vec![Key("log"), Key("level")]));
        assert!(paths.contains(&vec![Key("limits"), Key("max_recipients")]));
        assert!(paths.contains(&vec![Key("limits"), Key("max_line_length")]));
    }

    #[test]
    fn session_limits_must_be_positive() {
        let mut c = Config::default();
        c.limits.max_unknown_recipients = 0;
        c.timeouts.session = std::time::Duration::ZERO;
        c.timeouts.idle = std::time::Duration::ZERO;
        let paths: Vec<_> = validate(&c).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            vec![
                vec![Key("limits"), Key("max_unknown_recipients")],
                vec![Key("timeouts"), Key("session")],
                vec![Key("timeouts"), Key("idle")],
            ]
        );
    }
}
