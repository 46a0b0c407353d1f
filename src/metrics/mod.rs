//! Prometheus metrics: `Event` values mapped to counters, gauges and histograms.
//!
//! Owns: the registry and every metric name (prefix `portcullis_`, units in the name,
//! `_total` added to counters by the client library). Labels are bounded: stage, check,
//! verdict, reply class, limit, command verb, and names from the config (policy rules,
//! DNSBL zones); never sender, domain or IP of a client.
//! Must not: take unbounded labels.

pub mod config_info;
pub mod events;
pub mod negotiate;
pub mod process;
pub mod resources;
#[cfg(test)]
mod tests;
pub mod tls;

use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use events::{AcceptError, BackendErrorKind, DnsblResult, Event, Limit, VerifyWait};
pub use negotiate::Format;

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];
type ZoneL1 = [(&'static str, String); 1];
type ZoneL2 = [(&'static str, String); 2];
type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

const SPF_RESULTS: [&str; 7] = [
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
];
const DKIM_RESULTS: [&str; 7] = [
    "pass",
    "fail",
    "neutral",
    "none",
    "temperror",
    "permerror",
    "policy",
];
const ARC_RESULTS: [&str; 6] = ["pass", "fail", "neutral", "none", "temperror", "permerror"];
const DMARC_RESULTS: [&str; 5] = ["pass", "fail", "none", "temperror", "permerror"];

/// All metrics of one gateway process.
pub struct Metrics {
    registry: Registry,
    sessions: Family<L1, Counter>,
    sessions_active: Gauge,
    session_duration: Histogram,
    commands: Family<L1, Counter>,
    replies: Family<L1, Counter>,
    messages: Family<L2, Counter>,
    milter_connections: Gauge,
    milter_packets: Family<L1, Counter>,
    milter_responses: Family<L1, Counter>,
    milter_errors: Family<L1, Counter>,
    message_bytes: Counter,
    message_size: Histogram,
    limit_hits: Family<L1, Counter>,
    backend_errors: Family<L1, Counter>,
    backend_up: Gauge,
    relay_duration: Histogram,
    check_duration: HistFamily<L2>,
    tls_handshakes: Family<L1, Counter>,
    dns_lookups: Family<L2, Counter>,
    dns_answers: Family<L2, Counter>,
    auth_results: Family<L2, Counter>,
    auth_duration: HistFamily<L1>,
    rule_hits: Family<[(&'static str, String); 1], Counter>,
    reloads: Family<L1, Counter>,
    shadow: Family<L2, Counter>,
    dnsbl_lookups: Family<ZoneL2, Counter>,
    dnsbl_healthy: Family<ZoneL1, Gauge>,
    state_up: Family<L1, Gauge>,
    state_fallbacks: Family<L1, Counter>,
    ratelimit: Family<[(&'static str, String); 2], Counter>,
    greylist: Family<L1, Counter>,
    client_findings: Family<L1, Counter>,
    resources: resources::Resources,
    tls: tls::TlsMetrics,
    process: process::Process,
    config_info: config_info::ConfigInfo,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        // The process metrics go unprefixed at the root (`process.rs`); everything else is
        // under `portcullis_`.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("portcullis");
        registry.register(
            "build",
            "Build information",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let m = Metrics {
            sessions: Family::default(),
            sessions_active: Gauge::default(),
            session_duration: seconds_histogram(),
            commands: Family::default(),
            replies: Family::default(),
            messages: Family::default(),
            milter_connections: Gauge::default(),
            milter_packets: Family::default(),
            milter_responses: Family::default(),
            milter_errors: Family::default(),
            message_bytes: Counter::default(),
            message_size: Histogram::new(exponential_buckets(1024.0, 4.0, 10)),
            limit_hits: Family::default(),
            backend_errors: Family::default(),
            backend_up: Gauge::default(),
            relay_duration: seconds_histogram(),
            check_duration: Family::new_with_constructor(seconds_histogram),
            tls_handshakes: Family::default(),
            dns_lookups: Family::default(),
            dns_answers: Family::default(),
            auth_results: Family::default(),
            auth_duration: Family::new_with_constructor(seconds_histogram),
            rule_hits: Family::default(),
            reloads: Family::default(),
            shadow: Family::default(),
            dnsbl_lookups: Family::default(),
            dnsbl_healthy: Family::default(),
            state_up: Family::default(),
            state_fallbacks: Family::default(),
            ratelimit: Family::default(),
            greylist: Family::default(),
            client_findings: Family::default(),
            resources: resources::Resources::default(),
            tls: tls::TlsMetrics::default(),
            process: process::Process::default(),
            config_info: config_info::ConfigInfo::default(),
            registry: Registry::default(),
        };
        let r = registry;
        r.register(
            "sessions",
            "SMTP sessions by result (accepted, rejected_capacity)",
            m.sessions.clone(),
        );
        r.register(
            "sessions_active",
            "SMTP sessions in progress",
            m.sessions_active.clone(),
        );
        r.register(
            "session_duration_seconds",
            "Duration of SMTP sessions",
            m.session_duration.clone(),
        );
        r.register(
            "commands",
            "SMTP commands received by verb",
            m.commands.clone(),
        );
        r.register("replies", "SMTP replies sent by class", m.replies.clone());
        r.register(
            "messages",
            "Messages by front end (mode: smtp, milter) and final verdict",
            m.messages.clone(),
        );
        r.register(
            "milter_connections_active",
            "Milter connections from the MTA in progress",
            m.milter_connections.clone(),
        );
        r.register(
            "milter_packets",
            "Milter packets received from the MTA, by command",
            m.milter_packets.clone(),
        );
        r.register(
            "milter_responses",
            "Milter responses sent to the MTA, by type",
            m.milter_responses.clone(),
        );
        r.register(
            "milter_protocol_errors",
            "Milter connections closed on a protocol error, by reason",
            m.milter_errors.clone(),
        );
        r.register(
            "message_bytes",
            "Bytes of message content received",
            m.message_bytes.clone(),
        );
        r.register(
            "message_size_bytes",
            "Size of received messages",
            m.message_size.clone(),
        );
        r.register(
            "limit_hits",
            "Resource limits hit, by limit",
            m.limit_hits.clone(),
        );
        r.register(
            "backend_errors",
            "Backend failures by kind",
            m.backend_errors.clone(),
        );
        r.register(
            "backend_up",
            "1 if the last backend probe succeeded",
            m.backend_up.clone(),
        );
        r.register(
            "relay_duration_seconds",
            "Time to relay a message to the backend",
            m.relay_duration.clone(),
        );
        r.register(
            "check_duration_seconds",
            "Time spent in each check hook",
            m.check_duration.clone(),
        );
        r.register(
            "tls_handshakes",
            "Inbound STARTTLS handshakes by result",
            m.tls_handshakes.clone(),
        );
        r.register(
            "dns_cache_lookups",
            "DNS cache lookups by record type and result (hit, miss)",
            m.dns_lookups.clone(),
        );
        r.register(
            "dns_answers",
            "DNS answers by record type and outcome (ok, nxdomain, nodata)",
            m.dns_answers.clone(),
        );
        r.register(
            "auth_results",
            "Sender authentication results by method and result",
            m.auth_results.clone(),
        );
        r.register(
            "auth_duration_seconds",
            "Time to evaluate each authentication method",
            m.auth_duration.clone(),
        );
        r.register(
            "policy_rule_hits",
            "Policy rules in verdicts that were acted upon, by rule",
            m.rule_hits.clone(),
        );
        r.register(
            "config_reloads",
            "Policy reloads by result (ok, error)",
            m.reloads.clone(),
        );
        r.register(
            "shadow_verdicts",
            "Live and shadow policy actions compared where the live one acted",
            m.shadow.clone(),
        );
        r.register(
            "dnsbl_lookups",
            "DNSBL/DNSWL lookups by zone and result (listed, clean, error_answer, failed)",
            m.dnsbl_lookups.clone(),
        );
        r.register(
            "dnsbl_zone_healthy",
            "1 if the zone's last answer was sensible, 0 after an error answer or a failure",
            m.dnsbl_healthy.clone(),
        );
        r.register(
            "state_backend_up",
            "1 while the shared state backend (Redis) answers, 0 while the gateway falls back",
            m.state_up.clone(),
        );
        r.register(
            "state_fallbacks",
            "State operations (rate, greylist, sessions) that could not use Redis and fell back",
            m.state_fallbacks.clone(),
        );
        r.register(
            "ratelimit_checks",
            "Rate-limit rule evaluations by rule and result (allowed, exceeded, unavailable)",
            m.ratelimit.clone(),
        );
        r.register(
            "client_findings",
            "Findings about clients as checks report them (pregreet, unannounced_pipelining, no_ptr, not_fcrdns, helo_invalid, helo_literal_mismatch, helo_ours, helo_unresolvable)",
            m.client_findings.clone(),
        );
        r.register(
            "greylist_results",
            "Greylisting decisions (new, early, pass, auto_allowed, unchecked, skipped, unavailable)",
            m.greylist.clone(),
        );
        m.resources.register(r);
        m.tls.register(r);
        m.config_info.register(r);
        m.process.register(&mut root);
        m.precreate();
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Creates every known label value at zero, so dashboards and alerts see a series (and
    /// panels show 0, not "No data") before the first event.
    fn precreate(&self) {
        for result in ["accepted", "rejected_capacity"] {
            drop(self.sessions.get_or_create(&[("result", result)]));
        }
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            drop(self.replies.get_or_create(&[("class", class)]));
        }
        for verdict in ["accept", "tag", "quarantine", "tempfail", "reject"] {
            for mode in ["smtp", "milter"] {
                drop(
                    self.messages
                        .get_or_create(&[("mode", mode), ("verdict", verdict)]),
                );
            }
        }
        for command in [
            "connect", "helo", "mail", "rcpt", "header", "eoh", "body", "eom", "abort",
        ] {
            drop(self.milter_packets.get_or_create(&[("command", command)]));
        }
        for response in [
            "continue",
            "accept",
            "replycode",
            "quarantine",
            "discard",
            "insert_header",
            "change_header",
        ] {
            drop(
                self.milter_responses
                    .get_or_create(&[("response", response)]),
            );
        }
        for reason in ["too_large", "unknown_command", "malformed", "timeout"] {
            drop(self.milter_errors.get_or_create(&[("reason", reason)]));
        }
        for limit in Limit::ALL {
            drop(self.limit_hits.get_or_create(&[("limit", limit.label())]));
        }
        for kind in BackendErrorKind::ALL {
            drop(self.backend_errors.get_or_create(&[("kind", kind.label())]));
        }
        for (_, _, finding) in events::CLIENT_FINDINGS {
            drop(self.client_findings.get_or_create(&[("finding", *finding)]));
        }
        for operation in ["rate", "greylist", "sessions"] {
            drop(
                self.state_fallbacks
                    .get_or_create(&[("operation", operation)]),
            );
        }
        for result in [
            "new",
            "early",
            "pass",
            "auto_allowed",
            "unchecked",
            "skipped",
            "unavailable",
        ] {
            drop(self.greylist.get_or_create(&[("result", result)]));
        }
        for result in ["ok", "error"] {
            drop(self.reloads.get_or_create(&[("result", result)]));
            drop(self.tls_handshakes.get_or_create(&[("result", result)]));
        }
        for kind in ["TXT", "MX", "A", "AAAA", "PTR"] {
            for result in ["hit", "miss"] {
                drop(
                    self.dns_lookups
                        .get_or_create(&[("type", kind), ("result", result)]),
                );
            }
            for outcome in ["ok", "nxdomain", "nodata"] {
                drop(
                    self.dns_answers
                        .get_or_create(&[("type", kind), ("outcome", outcome)]),
                );
            }
        }
        for (method, results) in [
            ("spf", &SPF_RESULTS[..]),
            ("spf_helo", &SPF_RESULTS[..]),
            ("dkim", &DKIM_RESULTS[..]),
            ("arc", &ARC_RESULTS[..]),
            ("dmarc", &DMARC_RESULTS[..]),
        ] {
            drop(self.auth_duration.get_or_create(&[("method", method)]));
            for result in results {
                drop(
                    self.auth_results
                        .get_or_create(&[("method", method), ("result", result)]),
                );
            }
        }
    }

    /// Records one event.
    pub fn emit(&self, event: Event) {
        self.process.observe(&event);
        if self.resources.emit(&event) || self.tls.emit(&event) || self.config_info.emit(&event) {
            return;
        }
        match event {
            Event::Session(result) => {
                self.sessions.get_or_create(&[("result", result)]).inc();
                if result == "accepted" {
                    self.sessions_active.inc();
                }
            }
            Event::SessionClosed(d) => {
                self.sessions_active.dec();
                self.session_duration.observe(d.as_secs_f64());
            }
            Event::Command(verb) => {
                self.commands.get_or_create(&[("command", verb)]).inc();
            }
            Event::Reply(class) => {
                self.replies
                    .get_or_create(&[("class", class.label())])
                    .inc();
            }
            Event::Message { verdict, bytes } => {
                self.messages
                    .get_or_create(&[("mode", "smtp"), ("verdict", verdict)])
                    .inc();
                self.message_bytes.inc_by(bytes);
                self.message_size.observe(bytes as f64);
            }
            Event::MilterMessage { verdict, bytes } => {
                self.messages
                    .get_or_create(&[("mode", "milter"), ("verdict", verdict)])
                    .inc();
                self.message_bytes.inc_by(bytes);
                self.message_size.observe(bytes as f64);
            }
            Event::MilterConnection(open) => {
                if open {
                    self.milter_connections.inc();
                } else {
                    self.milter_connections.dec();
                }
            }
            Event::MilterPacket(command) => {
                self.milter_packets
                    .get_or_create(&[("command", command)])
                    .inc();
            }
            Event::MilterResponse(response) => {
                self.milter_responses
                    .get_or_create(&[("response", response)])
                    .inc();
            }
            Event::MilterProtocolError(reason) => {
                self.milter_errors
                    .get_or_create(&[("reason", reason)])
                    .inc();
            }
            Event::LimitHit(limit) => {
                self.limit_hits
                    .get_or_create(&[("limit", limit.label())])
                    .inc();
            }
            Event::BackendError(kind) => {
                self.backend_errors
                    .get_or_create(&[("kind", kind.label())])
                    .inc();
            }
            Event::Relayed(d) => self.relay_duration.observe(d.as_secs_f64()),
            Event::CheckFinished {
                check,
                stage,
                duration,
            } => {
                self.check_duration
                    .get_or_create(&[("check", check), ("stage", stage.label())])
                    .observe(duration.as_secs_f64());
            }
            Event::TlsHandshake { ok } => {
                let result = if ok { "ok" } else { "error" };
                self.tls_handshakes
                    .get_or_create(&[("result", result)])
                    .inc();
            }
            Event::DnsLookup { kind, result } => {
                self.dns_lookups
                    .get_or_create(&[("type", kind), ("result", result)])
                    .inc();
            }
            Event::DnsAnswer { kind, outcome } => {
                self.dns_answers
                    .get_or_create(&[("type", kind), ("outcome", outcome)])
                    .inc();
            }
            Event::AuthResult {
                method,
                result,
                duration,
            } => {
                self.auth_results
                    .get_or_create(&[("method", method), ("result", result)])
                    .inc();
                self.auth_duration
                    .get_or_create(&[("method", method)])
                    .observe(duration.as_secs_f64());
            }
            Event::ShadowVerdict { live, shadow } => {
                self.shadow
                    .get_or_create(&[("live", live), ("shadow", shadow)])
                    .inc();
            }
            Event::Reload { ok } => {
                let result = if ok { "ok" } else { "error" };
                self.reloads.get_or_create(&[("result", result)]).inc();
            }
            Event::RuleHit(rule) => {
                self.rule_hits.get_or_create(&[("rule", rule)]).inc();
            }
            Event::StateBackendUp(up) => {
                self.state_up
                    .get_or_create(&[("backend", "redis")])
                    .set(i64::from(up));
            }
            Event::StateFallback(operation) => {
                self.state_fallbacks
                    .get_or_create(&[("operation", operation)])
                    .inc();
            }
            Event::RateLimit { rule, result } => {
                self.ratelimit
                    .get_or_create(&[("rule", rule), ("result", result.to_string())])
                    .inc();
            }
            Event::ClientFinding(finding) => {
                self.client_findings
                    .get_or_create(&[("finding", finding)])
                    .inc();
            }
            Event::Greylist(result) => {
                self.greylist.get_or_create(&[("result", result)]).inc();
            }
            Event::BackendProbe { up } => {
                self.backend_up.set(i64::from(up));
            }
            Event::DnsblZoneConfigured { zone } => {
                for result in DnsblResult::ALL {
                    drop(self.dnsbl_lookups.get_or_create(&[
                        ("zone", zone.clone()),
                        ("result", result.label().to_string()),
                    ]));
                }
                self.dnsbl_healthy.get_or_create(&[("zone", zone)]).set(1);
            }
            Event::DnsblLookup { zone, result } => {
                self.dnsbl_lookups
                    .get_or_create(&[("zone", zone.clone()), ("result", result.label().into())])
                    .inc();
                let healthy = i64::from(result.healthy());
                self.dnsbl_healthy
                    .get_or_create(&[("zone", zone)])
                    .set(healthy);
            }
            // Recorded by `resources.emit` above.
            Event::AcceptError { .. }
            | Event::Capacity { .. }
            | Event::OpenFiles { .. }
            | Event::VerifyMemoryLimit(_)
            | Event::VerifyMemoryTaken(_)
            | Event::VerifyMemoryReturned(_)
            | Event::VerifyMemoryWait(_) => {}
            // Recorded by `process.observe` and `config_info.emit` above.
            Event::Process(_) | Event::ConfigLoaded { .. } => {}
            // Recorded by `tls.emit` above.
            Event::TlsReload { .. } | Event::TlsCertificate { .. } | Event::TlsRequired(_) => {}
        }
    }

    /// Counts the client findings among `facts` (`CLIENT_FINDINGS`).
    pub fn client_findings(&self, facts: &[crate::pipeline::outcome::Fact]) {
        use crate::pipeline::outcome::FactValue;
        for fact in facts {
            let found = events::CLIENT_FINDINGS
                .iter()
                .find(|(def, flag, _)| fact.is(def) && fact.value == FactValue::Flag(*flag));
            if let Some((_, _, label)) = found {
                self.emit(Event::ClientFinding(label));
            }
        }
    }

    /// Convenience for timing: emits `CheckFinished`.
    pub fn check_finished(
        &self,
        check: &'static str,
        stage: crate::pipeline::Stage,
        duration: Duration,
    ) {
        self.emit(Event::CheckFinished {
            check,
            stage,
            duration,
        });
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        self.render_as(Format::OpenMetrics)
    }

    /// The exposition in `format`.
    pub fn render_as(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = match format {
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
            Format::Prometheus => prometheus_text::encode(&mut out, &self.registry),
        };
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
