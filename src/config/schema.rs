//! The YAML configuration as serde structs, with every default in one place.
//!
//! Owns: field names, types and defaults; unknown keys are errors (`deny_unknown_fields`).
//! Must not: validate across fields (that is `validate.rs`). docs/configuration.md documents
//! every key; keep the two in step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::backend_target::BackendTarget;
use super::code_range::CodeRange;
use super::domains::{AcceptedDomains, DomainPattern};
use super::reply::RefusalReply;
use super::secret::Secret;
use super::units;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Our host name: banner, EHLO reply, Received header, EHLO to the backend.
    pub hostname: String,
    /// SMTP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Domains we accept mail for: exact names or `*.example.com` (subdomains only). Absent
    /// from a config file means none (required with an SMTP listener; in milter mode Postfix
    /// does relay control); without a config file, `example.test` and `localhost`.
    #[serde(default)]
    pub accepted_domains: AcceptedDomains,
    /// Where accepted mail goes.
    pub backend: BackendConfig,
    /// The Prometheus / health endpoint.
    pub metrics: MetricsConfig,
    /// Resource limits.
    pub limits: Limits,
    /// Deadlines for every wait.
    pub timeouts: Timeouts,
    /// STARTTLS certificate; absent means STARTTLS is not offered.
    pub tls: Option<TlsConfig>,
    /// PROXY protocol (v1 and v2) from trusted load balancers.
    pub proxy_protocol: ProxyProtocolConfig,
    /// SMTP protocol options.
    pub smtp: SmtpOptions,
    /// Where message bodies are kept while in flight.
    pub spool: SpoolConfig,
    /// The DNS resolver shared by every check.
    pub dns: DnsConfig,
    /// Sender authentication: SPF, DKIM, DMARC, ARC and the Authentication-Results header.
    pub auth: AuthConfig,
    /// A YAML policy file (docs/policies.md), relative to this config file; unset means the
    /// built-in rules only.
    pub policy: Option<PathBuf>,
    /// Policies for some recipient domains (exact or `*.domain`), each a YAML policy file;
    /// the rest use `policy`.
    #[serde(deserialize_with = "super::domains::unique_keys")]
    pub policy_scopes: BTreeMap<DomainPattern, PathBuf>,
    /// A candidate policy evaluated beside the live one, never acting; where the two differ
    /// is logged and counted.
    pub shadow_policy: Option<PathBuf>,
    /// Where quarantined messages are kept.
    pub quarantine: QuarantineConfig,
    /// Connection admission before the banner.
    pub connections: ConnectionsConfig,
    /// Facts about the client: reverse DNS and the HELO name.
    pub client_checks: ClientChecksConfig,
    /// DNS block and allow lists asked about the client at connect (RFC 5782).
    pub dnsbl: DnsblConfig,
    /// Where rate-limit counters and greylisting triplets live: in process or in Redis.
    pub state: StateConfig,
    /// Greylisting (off by default).
    pub greylisting: GreylistingConfig,
    /// Logging.
    pub log: LogConfig,
    /// Milter mode: listeners Postfix's `smtpd_milters` connects to (off when empty).
    pub milter: MilterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            accepted_domains: AcceptedDomains::names(&["example.test", "localhost"]),
            backend: BackendConfig::default(),
            metrics: MetricsConfig::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            tls: None,
            proxy_protocol: ProxyProtocolConfig::default(),
            smtp: SmtpOptions::default(),
            spool: SpoolConfig::default(),
            dns: DnsConfig::default(),
            auth: AuthConfig::default(),
            policy: None,
            policy_scopes: BTreeMap::new(),
            shadow_policy: None,
            quarantine: QuarantineConfig::default(),
            connections: ConnectionsConfig::default(),
            client_checks: ClientChecksConfig::default(),
            dnsbl: DnsblConfig::default(),
            state: StateConfig::default(),
            greylisting: GreylistingConfig::default(),
            log: LogConfig::default(),
            milter: MilterConfig::default(),
        }
    }
}

impl Config {
    /// Every policy file the config names: the default, the scopes', the shadow (what a
    /// reload recompiles and the watcher watches).
    pub fn policy_files(&self) -> Vec<PathBuf> {
        self.policy
            .iter()
            .chain(self.policy_scopes.values())
            .chain(self.shadow_policy.iter())
            .cloned()
            .collect()
    }

    /// The authserv-id of our Authentication-Results header: `auth.authserv_id`, else `hostname`.
    pub fn authserv_id(&self) -> &str {
        self.auth.authserv_id.as_deref().unwrap_or(&self.hostname)
    }
}

/// The backend MTA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `smtp://host:port` (relay in real time) or `maildir:PATH` (local delivery).
    pub url: BackendTarget,
    /// Send XCLIENT with the real client's address (Postfix `smtpd_authorized_xclient_hosts`).
    pub xclient: bool,
    /// STARTTLS towards the backend.
    pub starttls: StartTlsMode,
    /// The name we send in EHLO to the backend; defaults to `hostname`.
    pub helo_name: Option<String>,
    /// How often the backend is probed for `portcullis_backend_up` (and `/readyz` on demand).
    #[serde(deserialize_with = "units::duration")]
    pub probe_interval: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            url: BackendTarget::Maildir("./data/mail".into()),
            xclient: true,
            starttls: StartTlsMode::Off,
            helo_name: None,
            probe_interval: Duration::from_secs(15),
        }
    }
}

/// Whether to use STARTTLS towards the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTlsMode {
    /// Never.
    Off,
    /// When the backend offers it (certificate not verified: a local hop).
    Opportunistic,
    /// Always; a backend without STARTTLS is an error (4xx to the client).
    Required,
}

/// The metrics endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Listen address for /metrics, /healthz and /readyz; loopback by default. `null` disables it.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9465))),
        }
    }
}

/// Resource limits; each one has a metric (`portcullis_limit_hits_total`) and a test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent SMTP sessions; the next one gets 421.
    pub max_sessions: usize,
    /// Largest message accepted, in bytes (advertised as SIZE).
    #[serde(deserialize_with = "units::size")]
    pub max_message_size: u64,
    /// RCPT commands per transaction; more get 452.
    pub max_recipients: usize,
    /// Longest command line in bytes, CRLF included (RFC 5321 §4.5.3.1.4: at least 512).
    pub max_line_length: usize,
    /// Protocol errors per session (unknown commands, syntax, sequence, relay attempts)
    /// before 421 and close; which replies count: `session/limits.rs`.
    pub max_errors: u32,
    /// Recipients the backend refused with 5xx (unknown users) per session before 421 and
    /// close.
    pub max_unknown_recipients: u32,
    /// Commands per session before 421 and close.
    pub max_commands: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1000,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            max_errors: 10,
            max_unknown_recipients: 20,
            max_commands: 10_000,
        }
    }
}

/// Deadlines, written as `30s`, `5m`, `250ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Waiting for the next command (RFC 5321 §4.5.3.2.7: 5 minutes).
    #[serde(deserialize_with = "units::duration")]
    pub command: Duration,
    /// Receiving a whole message after DATA or the BDAT chunks (RFC 5321: 10 minutes).
    #[serde(deserialize_with = "units::duration")]
    pub data: Duration,
    /// Writing a reply to the client.
    #[serde(deserialize_with = "units::duration")]
    pub write: Duration,
    /// The TLS handshake after STARTTLS.
    #[serde(deserialize_with = "units::duration")]
    pub tls_handshake: Duration,
    /// Reading the PROXY protocol header from a trusted proxy.
    #[serde(deserialize_with = "units::duration")]
    pub proxy_header: Duration,
    /// TCP connect to the backend.
    #[serde(deserialize_with = "units::duration")]
    pub backend_connect: Duration,
    /// Each backend command reply (greeting, EHLO, XCLIENT, MAIL, RCPT, DATA's 354).
    #[serde(deserialize_with = "units::duration")]
    pub backend_command: Duration,
    /// Sending the message to the backend, and then its reply after the final dot. A reply
    /// later than this becomes a duplicate (the client was told 451 and retries), never a
    /// loss; 10 minutes is how long the client itself waits (RFC 5321 §4.5.3.2.6) and
    /// Postfix's `smtp_data_done_timeout`.
    #[serde(deserialize_with = "units::duration")]
    pub backend_data: Duration,
    /// Budget of each check hook; a check over budget contributes `check.error`.
    #[serde(deserialize_with = "units::duration")]
    pub check: Duration,
    /// One SPF identity's evaluation (RFC 7208 §4.6.4: at least 20 s); past it, that
    /// identity is `temperror`. Below `check`, so that SPF ends before its check does.
    #[serde(deserialize_with = "units::duration")]
    pub spf: Duration,
    /// How long sessions may run on after shutdown starts before they get 421.
    #[serde(deserialize_with = "units::duration")]
    pub shutdown_grace: Duration,
    /// A session's whole life: past it, 421 at the next command boundary outside a message.
    #[serde(deserialize_with = "units::duration")]
    pub session: Duration,
    /// Time outside a transaction since connect or the last completed transaction: past
    /// it, 421 at the next command boundary outside a transaction.
    #[serde(deserialize_with = "units::duration")]
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            data: Duration::from_secs(600),
            write: Duration::from_secs(60),
            tls_handshake: Duration::from_secs(30),
            proxy_header: Duration::from_secs(10),
            backend_connect: Duration::from_secs(10),
            backend_command: Duration::from_secs(60),
            backend_data: Duration::from_secs(600),
            check: Duration::from_secs(30),
            spf: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            session: Duration::from_secs(30 * 60),
            idle: Duration::from_secs(5 * 60),
        }
    }
}

/// Certificate and key for STARTTLS (PEM), and who must use it.
///
/// `cert` and `key` are required; they default to the empty path only so that their absence
/// is reported by `validate.rs`, with its position and, beside a `tls.require`, its reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Reloaded on SIGHUP and when it changes.
    #[serde(default)]
    pub cert: PathBuf,
    /// PEM private key. Reloaded with the certificate.
    #[serde(default)]
    pub key: PathBuf,
    /// Clients and recipient domains for which STARTTLS is not optional.
    #[serde(default)]
    pub require: TlsRequire,
}

/// `tls.require`: STARTTLS before MAIL for some clients, before RCPT for some domains.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsRequire {
    /// Clients in these networks get `530 5.7.0` to a MAIL sent without TLS.
    #[serde(deserialize_with = "super::lists::networks")]
    pub client_networks: Vec<IpNet>,
    /// A RCPT to these domains (exact or `*.domain`) sent without TLS gets `530 5.7.0`.
    pub recipient_domains: AcceptedDomains,
}

/// PROXY protocol settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyProtocolConfig {
    /// Peers that must send a PROXY header (v1 or v2); others are served directly.
    #[serde(deserialize_with = "super::lists::networks")]
    pub trusted: Vec<IpNet>,
}

/// What to do with bare CR or LF in message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Refuse the message with 550 5.6.0 after reading it.
    Reject,
    /// Convert to CRLF (safe: only CRLF.CRLF ends DATA and the relay re-stuffs dots).
    Fix,
}

/// What to do with NUL bytes in message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NulBytes {
    /// Refuse the message with 550 5.6.0 after reading it.
    Reject,
    /// Remove them and relay the rest.
    Strip,
}

/// What to do with message lines over 998 characters (RFC 5322 §2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongLines {
    /// Relay them unchanged, as Postfix accepts them.
    Pass,
    /// Refuse the message with 550 5.6.0 after reading it.
    Reject,
}

/// SMTP protocol options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpOptions {
    /// Handling of bare CR / LF in message content.
    pub bare_line_endings: BareLineEndings,
    /// Handling of NUL bytes in message content.
    pub nul_bytes: NulBytes,
    /// Handling of lines over 998 characters in message content.
    pub long_lines: LongLines,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        SmtpOptions {
            bare_line_endings: BareLineEndings::Reject,
            nul_bytes: NulBytes::Reject,
            long_lines: LongLines::Pass,
        }
    }
}

/// Message spool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory for bodies above `memory_limit`; the system temp dir when unset.
    pub dir: Option<PathBuf>,
    /// Bytes of a message kept in memory before it spills to disk.
    #[serde(deserialize_with = "units::size")]
    pub memory_limit: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            memory_limit: 1024 * 1024,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `portcullis=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The shared DNS resolver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `ip:port` (UDP, falling back to TCP); empty means /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Attempts per query before it counts as failed (temperror).
    pub attempts: usize,
    /// Entries per record type in the cache.
    pub cache_size: usize,
    /// Shortest time an answer is cached, whatever its TTL.
    #[serde(deserialize_with = "units::duration")]
    pub min_ttl: Duration,
    /// Longest time an answer (positive or negative) is cached.
    #[serde(deserialize_with = "units::duration")]
    pub max_ttl: Duration,
    /// Longest time a negative answer (NXDOMAIN, NODATA) is cached (at most `max_ttl`).
    #[serde(deserialize_with = "units::duration")]
    pub negative_max_ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_size: 10_000,
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(3600),
            negative_max_ttl: Duration::from_secs(300),
        }
    }
}

/// Sender authentication (RFC 7208, 6376, 8463, 7489, 8617, 8601).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Run SPF, DKIM, ARC and DMARC and add Authentication-Results.
    pub enabled: bool,
    /// The authserv-id of our Authentication-Results header; defaults to `hostname`.
    /// Incoming Authentication-Results headers claiming it are removed.
    pub authserv_id: Option<String>,
    /// A signature that covers only part of the body (`l=`) and verifies is a pass (RFC 6376
    /// §3.4.5, with the fact `dkim.l_tag`); off: it is `dkim=policy` and counts for nothing.
    pub dkim_allow_partial_body: bool,
    /// What a DNS failure at the From domain's own `_dmarc` record does when no policy is
    /// known and nothing passed (`dmarc=temperror`, `dmarc.policy=unknown`): defer (`451
    /// 4.7.26`, the default) or accept.
    pub dmarc_dns_failure: DmarcDnsFailure,
    /// Messages above this size are not DKIM/ARC/DMARC-verified (they are read into memory).
    #[serde(deserialize_with = "units::size")]
    pub max_verify_size: u64,
    /// The most bytes of spilled messages read back into memory for verification at once,
    /// over all sessions; a message that finds no room before the DATA deadline gets 451.
    #[serde(deserialize_with = "units::size")]
    pub max_verify_memory: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            authserv_id: None,
            dkim_allow_partial_body: true,
            dmarc_dns_failure: DmarcDnsFailure::Defer,
            max_verify_size: 25 * 1024 * 1024,
            max_verify_memory: 256 * 1024 * 1024,
        }
    }
}

/// `auth.dmarc_dns_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmarcDnsFailure {
    /// `451 4.7.26`: the sender retries, by which time the DNS may answer.
    Defer,
    /// Accept with `dmarc=temperror`, as if the domain had no policy.
    Accept,
}

/// Quarantine storage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// A Maildir for quarantined messages (relative to the config file). Unset: a message the
    /// policy quarantines is relayed with `X-Portcullis-Verdict: quarantine` for the backend
    /// to file instead.
    pub dir: Option<PathBuf>,
    /// What the client hears for a stored message: `accept` (250, the default: the sender
    /// learns nothing), `tempfail` (451) or `reject` (550).
    pub answer: QuarantineAnswer,
}

/// The reply for a quarantined message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineAnswer {
    /// 250, as if delivered.
    #[default]
    Accept,
    /// 451: the sender keeps the message and retries.
    Tempfail,
    /// 550: refused.
    Reject,
}

/// Connection admission (before the banner) and early-talker detection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Clients that skip every connection limit (your own relays).
    #[serde(deserialize_with = "super::lists::networks")]
    pub allow: Vec<IpNet>,
    /// Clients refused at once with 554 5.7.1 (the allow list wins over it).
    #[serde(deserialize_with = "super::lists::networks")]
    pub deny: Vec<IpNet>,
    /// Files of more allowed networks (one CIDR or address per line, `#` comments),
    /// relative to the config file; read at start.
    pub allow_files: Vec<PathBuf>,
    /// Files of more denied networks, same format.
    pub deny_files: Vec<PathBuf>,
    /// The networks of `allow_files`, read by `config::load` (not a config key).
    #[serde(skip)]
    pub allow_listed: Vec<IpNet>,
    /// The networks of `deny_files`, read by `config::load` (not a config key).
    #[serde(skip)]
    pub deny_listed: Vec<IpNet>,
    /// What refused clients are told (each optional; the defaults are in docs).
    pub replies: ConnectionReplies,
    /// Concurrent sessions per client address; 0 = no limit.
    pub max_per_ip: usize,
    /// Concurrent sessions per /24 (IPv4) or /64 (IPv6); 0 = no limit.
    pub max_per_network: usize,
    /// New connections per client address per minute (GCRA); 0 = no limit.
    pub rate_per_minute: u32,
    /// How many connections may come at once within that rate; 0 = the rate itself.
    pub rate_burst: u32,
    /// Wait this long before the banner and note clients that talk first (`client.pregreet`);
    /// 0s = send the banner at once.
    #[serde(deserialize_with = "units::duration")]
    pub pregreet_wait: Duration,
    /// During `pregreet_wait`, show the first line of a multi-line banner (`220-`), as
    /// postscreen's `postscreen_greet_banner` does: bots that answer the first line instead
    /// of waiting for the last one are caught as early talkers too.
    pub multiline_banner: bool,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            allow: Vec::new(),
            deny: Vec::new(),
            allow_files: Vec::new(),
            deny_files: Vec::new(),
            allow_listed: Vec::new(),
            deny_listed: Vec::new(),
            replies: ConnectionReplies::default(),
            max_per_ip: 50,
            max_per_network: 200,
            rate_per_minute: 0,
            rate_burst: 0,
            pregreet_wait: Duration::ZERO,
            multiline_banner: false,
        }
    }
}

/// The replies of connection admission; the connection is closed after each.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionReplies {
    /// To a client on the deny list (default `554 5.7.1 Connection refused`).
    pub deny: Option<RefusalReply>,
    /// Over the connection rate (default `421 4.7.0 Connection rate limit exceeded, …`).
    pub rate: Option<RefusalReply>,
    /// Over `max_per_ip` or `max_per_network` (default `421 4.7.0 Too many connections
    /// from your network, …`).
    pub concurrency: Option<RefusalReply>,
}

/// Reverse DNS and HELO checks (facts only; policies decide what they cost).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientChecksConfig {
    /// Look up the client's PTR and confirm it forward (`rdns.*` facts).
    pub rdns: bool,
    /// Look up whether the HELO name resolves (`helo.resolves`); the syntax facts need no DNS.
    pub helo_dns: bool,
    /// Also look up loopback, private and link-local clients (off: they have no public PTR).
    pub lookup_private: bool,
}

impl Default for ClientChecksConfig {
    fn default() -> Self {
        ClientChecksConfig {
            rdns: true,
            helo_dns: true,
            lookup_private: false,
        }
    }
}

/// DNS block and allow lists (RFC 5782): facts only; policies decide what a listing costs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsblConfig {
    /// The zones to ask, all at once; empty means the check does nothing.
    pub zones: Vec<DnsblZoneConfig>,
    /// How long each zone's lookup may take before it counts as failed.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
}

impl Default for DnsblConfig {
    fn default() -> Self {
        DnsblConfig {
            zones: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// One DNSBL or DNSWL zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsblZoneConfig {
    /// The zone, such as `zen.spamhaus.org`.
    pub zone: String,
    /// Added to `dnsbl.score` when this (block) zone lists the client.
    pub weight: u64,
    /// Answers that count as a listing: addresses or `low-high` ranges; empty means any
    /// 127.0.0.0/8 answer except the error codes 127.255.255.0/24.
    pub codes: Vec<CodeRange>,
    /// An allow list (DNSWL): a listing gives `dnswl.listed` instead of `dnsbl.listed`.
    pub allow: bool,
    /// What the zone lists: client addresses (`ip`) or domain names (`domain`: DBL/URIBL,
    /// asked about the MAIL FROM domain and the DKIM signing domains).
    pub kind: ZoneKind,
}

/// What a DNS list zone lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    /// IP addresses (`2.0.0.127.zone`).
    #[default]
    Ip,
    /// Domain names (`example.com.zone`).
    Domain,
}

impl Default for DnsblZoneConfig {
    fn default() -> Self {
        DnsblZoneConfig {
            zone: String::new(),
            weight: 1,
            codes: Vec::new(),
            allow: false,
            kind: ZoneKind::Ip,
        }
    }
}

/// Where shared state (rate-limit counters, greylisting triplets) lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `local` (this process only) or `redis` (shared by every gateway using the same Redis).
    pub backend: StateBackend,
    /// The Redis connection, for `backend: redis`.
    pub redis: RedisConfig,
}

/// The state backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// In this process: counters are per gateway.
    #[default]
    Local,
    /// In Redis: counters are shared.
    Redis,
}

/// How Redis is reached and what happens when it is not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `standalone`, `sentinel` or `cluster`.
    pub mode: RedisMode,
    /// `redis://host:port/db` URLs (`rediss://` for TLS): the server (standalone), the
    /// sentinels (sentinel) or some cluster nodes (cluster).
    pub urls: Vec<String>,
    /// The master's service name, for `mode: sentinel`.
    pub sentinel_service: String,
    /// Prefix of every key we write, so several sites (or tests) can share one Redis.
    pub key_prefix: String,
    /// Deadline for connecting and for each operation; past it the operation falls back.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// `open`: count locally while Redis is unreachable; `closed`: defer (451) what a rate
    /// limit or greylisting would have judged.
    pub on_failure: FailureMode,
    /// First wait before reconnecting; doubles on each failure up to `reconnect_max`.
    #[serde(deserialize_with = "units::duration")]
    pub reconnect_min: Duration,
    /// Longest wait between reconnection attempts.
    #[serde(deserialize_with = "units::duration")]
    pub reconnect_max: Duration,
    /// How often a healthy connection is checked (PING), so `portcullis_state_backend_up`
    /// tells the truth when no mail flows.
    #[serde(deserialize_with = "units::duration")]
    pub health_interval: Duration,
    /// The lease of a session in the shared concurrency limits: a crashed gateway's sessions
    /// stop counting after this; a running session renews it every half lease.
    #[serde(deserialize_with = "units::duration")]
    pub session_lease: Duration,
    /// The password of the Redis that holds the state: the server (standalone), every node
    /// (cluster) or the master the sentinels name (sentinel). `None`: the URLs' (standalone,
    /// cluster), or none.
    pub password: Option<Secret>,
    /// The sentinels' own password, for `mode: sentinel`. `None`: the URLs', or none.
    pub sentinel_password: Option<Secret>,
    /// What TLS trusts and presents, for `rediss://` URLs; `None`: the system's roots and no
    /// client certificate.
    pub tls: Option<RedisTlsConfig>,
}

/// The certificates of `rediss://` connections (to the server, the nodes, the sentinels and
/// the master they name alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTlsConfig {
    /// PEM certificates of the CAs that sign the servers' certificates, instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, leaf first (with `key_file`), for
    /// `tls-auth-clients yes`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            mode: RedisMode::Standalone,
            urls: vec!["redis://127.0.0.1:6379/0".into()],
            sentinel_service: "mymaster".into(),
            key_prefix: "portcullis:".into(),
            timeout: Duration::from_millis(250),
            on_failure: FailureMode::Open,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            health_interval: Duration::from_secs(5),
            session_lease: Duration::from_secs(600),
            password: None,
            sentinel_password: None,
            tls: None,
        }
    }
}

/// How Redis is deployed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server (or a replica set behind one address).
    #[default]
    Standalone,
    /// Masters found through Redis Sentinel.
    Sentinel,
    /// Redis Cluster.
    Cluster,
}

/// What the controls do while the state backend is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Fall back to this gateway's own counters.
    #[default]
    Open,
    /// Defer with 451 4.3.0 until the backend is back.
    Closed,
}

/// Greylisting: the first delivery attempt of an unknown (network, sender, recipient)
/// triplet is deferred; a retry after `delay` passes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistingConfig {
    /// Off by default: greylisting delays legitimate first-time mail.
    pub enabled: bool,
    /// How long a sender must wait before its retry is accepted.
    #[serde(deserialize_with = "units::duration")]
    pub delay: Duration,
    /// How long a deferred triplet waits for its retry before it is forgotten.
    #[serde(deserialize_with = "units::duration")]
    pub expiry: Duration,
    /// How long a triplet that passed is remembered (renewed by each message).
    #[serde(deserialize_with = "units::duration")]
    pub pass_ttl: Duration,
    /// A client network whose mail passed this many times skips greylisting; 0 = never.
    pub auto_allow_after: u32,
    /// Skip messages with a passing DKIM signature.
    pub skip_dkim_pass: bool,
    /// Skip clients listed by a DNSWL zone.
    pub skip_dnswl: bool,
    /// Clients that are never greylisted (`connections.allow` is added to these).
    #[serde(deserialize_with = "super::lists::networks")]
    pub skip_networks: Vec<IpNet>,
}

impl Default for GreylistingConfig {
    fn default() -> Self {
        GreylistingConfig {
            enabled: false,
            delay: Duration::from_secs(300),
            expiry: Duration::from_secs(4 * 3600),
            pass_ttl: Duration::from_secs(35 * 86400),
            auto_allow_after: 5,
            skip_dkim_pass: true,
            skip_dnswl: true,
            skip_networks: Vec::new(),
        }
    }
}

/// One milter listener, written as Postfix writes it in `smtpd_milters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterSocket {
    /// `inet:HOST:PORT` (an IPv6 host in brackets: `inet:[::1]:8891`).
    Inet(SocketAddr),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl std::str::FromStr for MilterSocket {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("`{s}`: a unix socket path must be absolute"));
            }
            return Ok(MilterSocket::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("inet:") {
            return addr
                .parse()
                .map(MilterSocket::Inet)
                .map_err(|_| format!("`{s}`: expected inet:IP:PORT (IPv6 as inet:[::1]:PORT)"));
        }
        Err(format!("`{s}`: expected inet:IP:PORT or unix:/PATH"))
    }
}

impl std::fmt::Display for MilterSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MilterSocket::Inet(a) => write!(f, "inet:{a}"),
            MilterSocket::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for MilterSocket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a message the policy quarantines goes in milter mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterQuarantine {
    /// Postfix's hold queue (SMFIR_QUARANTINE): `postqueue -p` lists it, `postsuper -H`
    /// releases it.
    #[default]
    Hold,
    /// Our quarantine store (`quarantine.dir`); Postfix is told to discard the message.
    Store,
}

/// Milter mode (the Sendmail milter protocol v6, as Postfix speaks it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// Listeners: `inet:IP:PORT` or `unix:/PATH`. Empty: milter mode is off.
    pub listen: Vec<MilterSocket>,
    /// Permissions of a unix socket, octal (`"0660"`).
    #[serde(deserialize_with = "units::octal_mode")]
    pub socket_mode: u32,
    /// Owner of a unix socket, `user` or `user:group` (Postfix's smtpd runs as `postfix`).
    pub socket_owner: Option<String>,
    /// `hold` (Postfix's hold queue) or `store` (our quarantine store).
    pub quarantine: MilterQuarantine,
    /// The largest packet accepted from the MTA; a larger one closes the connection.
    #[serde(deserialize_with = "units::size")]
    pub max_packet_size: u64,
    /// The longest wait for the MTA's next packet (Postfix waits up to `smtpd_timeout`,
    /// 300 s, for its client between two commands).
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: Vec::new(),
            socket_mode: 0o660,
            socket_owner: None,
            quarantine: MilterQuarantine::Hold,
            max_packet_size: 1024 * 1024,
            timeout: Duration::from_secs(600),
        }
    }
}
