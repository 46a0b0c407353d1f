//! Typed events that sessions, the pipeline and the relay emit.
//!
//! Owns: the `Event` vocabulary and its bounded label values. Must not: depend on
//! prometheus (the mapping lives in `metrics::mod`).

use std::time::Duration;

use crate::pipeline::Stage;
use crate::pipeline::facts::{self, FactDef};
use crate::smtp::reply::ReplyClass;

/// Which limit was hit (label values of `portcullis_limit_hits_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A command line over `limits.max_line_length`.
    LineLength,
    /// A message over `limits.max_message_size` (declared or actual).
    MessageSize,
    /// More RCPTs than `limits.max_recipients`.
    Recipients,
    /// `limits.max_errors` protocol errors.
    Errors,
    /// `limits.max_unknown_recipients` recipients refused by the backend.
    UnknownRecipients,
    /// More commands than `limits.max_commands`.
    Commands,
    /// `timeouts.command` expired.
    CommandTimeout,
    /// `timeouts.data` expired.
    DataTimeout,
    /// `timeouts.session` expired.
    SessionTimeout,
    /// `timeouts.idle` expired.
    IdleTimeout,
    /// `limits.max_sessions` reached.
    Sessions,
    /// `connections.max_per_ip` reached.
    SessionsPerIp,
    /// `connections.max_per_network` reached.
    SessionsPerNetwork,
    /// `connections.rate_per_minute` exceeded.
    ConnectionRate,
    /// The client is on `connections.deny`.
    DenyList,
    /// The shared state backend is down and `state.redis.on_failure` is `closed`.
    StateUnavailable,
    /// The open-file limit was reached: the client was taken with the spare descriptor and
    /// told 421.
    OpenFiles,
    /// No room in `auth.max_verify_memory` before the DATA deadline: the message got 451.
    VerifyMemory,
}

impl Limit {
    /// Every limit, for pre-creating series.
    pub const ALL: [Limit; 18] = [
        Limit::LineLength,
        Limit::MessageSize,
        Limit::Recipients,
        Limit::Errors,
        Limit::UnknownRecipients,
        Limit::Commands,
        Limit::CommandTimeout,
        Limit::DataTimeout,
        Limit::SessionTimeout,
        Limit::IdleTimeout,
        Limit::Sessions,
        Limit::SessionsPerIp,
        Limit::SessionsPerNetwork,
        Limit::ConnectionRate,
        Limit::DenyList,
        Limit::StateUnavailable,
        Limit::OpenFiles,
        Limit::VerifyMemory,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Limit::LineLength => "line_length",
            Limit::MessageSize => "message_size",
            Limit::Recipients => "recipients",
            Limit::Errors => "errors",
            Limit::UnknownRecipients => "unknown_recipients",
            Limit::Commands => "commands",
            Limit::CommandTimeout => "command_timeout",
            Limit::DataTimeout => "data_timeout",
            Limit::SessionTimeout => "session_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::Sessions => "sessions",
            Limit::SessionsPerIp => "sessions_per_ip",
            Limit::SessionsPerNetwork => "sessions_per_network",
            Limit::ConnectionRate => "connection_rate",
            Limit::DenyList => "deny_list",
            Limit::StateUnavailable => "state_unavailable",
            Limit::OpenFiles => "open_files",
            Limit::VerifyMemory => "verify_memory",
        }
    }
}

/// What went wrong with the backend (label values of `portcullis_backend_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Could not connect.
    Connect,
    /// A step did not answer in time.
    Timeout,
    /// The connection broke or the backend spoke nonsense.
    Protocol,
    /// A 4xx where a 2xx was needed to set up the transaction.
    Tempfail,
    /// A 5xx where a 2xx was needed to set up the transaction.
    Permfail,
}

impl BackendErrorKind {
    /// Every kind, for pre-creating series.
    pub const ALL: [BackendErrorKind; 5] = [
        BackendErrorKind::Connect,
        BackendErrorKind::Timeout,
        BackendErrorKind::Protocol,
        BackendErrorKind::Tempfail,
        BackendErrorKind::Permfail,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            BackendErrorKind::Connect => "connect",
            BackendErrorKind::Timeout => "timeout",
            BackendErrorKind::Protocol => "protocol",
            BackendErrorKind::Tempfail => "tempfail",
            BackendErrorKind::Permfail => "permfail",
        }
    }
}

/// Why an accept failed (label values of `portcullis_accept_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// EMFILE or ENFILE: the process's (or the system's) descriptor table is full.
    OpenFiles,
    /// ENOBUFS or ENOMEM.
    Memory,
    /// Anything else.
    Other,
}

impl AcceptError {
    /// Every kind, for pre-creating series.
    pub const ALL: [AcceptError; 3] = [
        AcceptError::OpenFiles,
        AcceptError::Memory,
        AcceptError::Other,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AcceptError::OpenFiles => "open_files",
            AcceptError::Memory => "memory",
            AcceptError::Other => "other",
        }
    }
}

/// How a message waited for `auth.max_verify_memory` (label values of
/// `portcullis_verify_memory_reservations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyWait {
    /// There was room at once.
    Immediate,
    /// It waited, then got room.
    Waited,
    /// The DATA deadline (or the end of the shutdown grace) came first.
    TimedOut,
}

impl VerifyWait {
    /// Every result, for pre-creating series.
    pub const ALL: [VerifyWait; 3] = [
        VerifyWait::Immediate,
        VerifyWait::Waited,
        VerifyWait::TimedOut,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            VerifyWait::Immediate => "immediate",
            VerifyWait::Waited => "waited",
            VerifyWait::TimedOut => "timed_out",
        }
    }
}

/// What one DNSBL/DNSWL lookup gave (label values of `portcullis_dnsbl_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsblResult {
    /// An A record within the zone's listing codes.
    Listed,
    /// NXDOMAIN, no A record, or only codes outside the zone's listing codes.
    Clean,
    /// An error code (127.255.255.0/24 or outside 127.0.0.0/8): never a listing.
    ErrorAnswer,
    /// No answer within `dnsbl.timeout`, SERVFAIL or another lookup error.
    Failed,
}

impl DnsblResult {
    /// Every result, for pre-creating series.
    pub const ALL: [DnsblResult; 4] = [
        DnsblResult::Listed,
        DnsblResult::Clean,
        DnsblResult::ErrorAnswer,
        DnsblResult::Failed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DnsblResult::Listed => "listed",
            DnsblResult::Clean => "clean",
            DnsblResult::ErrorAnswer => "error_answer",
            DnsblResult::Failed => "failed",
        }
    }

    /// Whether the zone answered sensibly (`portcullis_dnsbl_zone_healthy`).
    pub fn healthy(self) -> bool {
        matches!(self, DnsblResult::Listed | DnsblResult::Clean)
    }
}

/// Findings about the client worth a series of their own, whatever the policy makes of
/// them: (fact, the flag value that is the finding, label of
/// `portcullis_client_findings_total`).
pub const CLIENT_FINDINGS: &[(&FactDef, bool, &str)] = &[
    (&facts::CLIENT_PREGREET, true, "pregreet"),
    (
        &facts::CLIENT_UNANNOUNCED_PIPELINING,
        true,
        "unannounced_pipelining",
    ),
    (&facts::RDNS_PTR, false, "no_ptr"),
    (&facts::RDNS_FCRDNS, false, "not_fcrdns"),
    (&facts::HELO_VALID, false, "helo_invalid"),
    (&facts::HELO_LITERAL_MISMATCH, true, "helo_literal_mismatch"),
    (&facts::HELO_OURS, true, "helo_ours"),
    (&facts::HELO_RESOLVES, false, "helo_unresolvable"),
];

/// Something that happened, to be counted.
#[derive(Debug, Clone)]
pub enum Event {
    /// A session was accepted (`result="accepted"`) or turned away at the session limit
    /// (`rejected_capacity`).
    Session(&'static str),
    /// A session ended after `Duration`.
    SessionClosed(Duration),
    /// A command was received.
    Command(&'static str),
    /// A reply was sent.
    Reply(ReplyClass),
    /// A message got its final answer: the verdict label and its size.
    Message {
        /// accept | tag | quarantine | tempfail | reject
        verdict: &'static str,
        /// Size in bytes.
        bytes: u64,
    },
    /// A message judged in milter mode (`mode="milter"` on the message series).
    MilterMessage {
        /// accept | tag | quarantine | tempfail | reject
        verdict: &'static str,
        /// Size in bytes.
        bytes: u64,
    },
    /// A milter connection was accepted (`accepted`) or closed.
    MilterConnection(bool),
    /// A packet from the MTA, by command (`optneg`, `mail`, `eom`, ...).
    MilterPacket(&'static str),
    /// A response to the MTA, by type (`continue`, `replycode`, `insert_header`, ...).
    MilterResponse(&'static str),
    /// A milter connection ended on a protocol error (`too_large`, `unknown_command`,
    /// `malformed`, `timeout`).
    MilterProtocolError(&'static str),
    /// A limit was hit.
    LimitHit(Limit),
    /// The backend failed.
    BackendError(BackendErrorKind),
    /// A message was handed to the backend (any final reply) in this time.
    Relayed(Duration),
    /// A check hook finished.
    CheckFinished {
        /// The check's name.
        check: &'static str,
        /// The stage.
        stage: Stage,
        /// How long it took.
        duration: Duration,
    },
    /// A STARTTLS handshake ended.
    TlsHandshake {
        /// True when it succeeded.
        ok: bool,
    },
    /// A DNS cache lookup: `result` is `hit` or `miss` (a query on the wire follows a miss).
    DnsLookup {
        /// Record type: TXT, MX, A, AAAA, PTR.
        kind: &'static str,
        /// hit | miss
        result: &'static str,
    },
    /// A DNS answer was received and cached.
    DnsAnswer {
        /// Record type.
        kind: &'static str,
        /// ok | nxdomain | nodata
        outcome: &'static str,
    },
    /// An authentication method produced a result.
    AuthResult {
        /// spf | spf_helo | dkim | arc | dmarc
        method: &'static str,
        /// The RFC 8601 result word (pass, fail, softfail, neutral, none, temperror, permerror, policy).
        result: &'static str,
        /// How long the method took (DNS included).
        duration: Duration,
    },
    /// A policy rule took part in a verdict that was acted upon (a refusal, or the final
    /// verdict of a message). Rule names come from the operator's policy: a bounded set.
    RuleHit(String),
    /// The shadow policy was compared with the live one where the live one acted.
    ShadowVerdict {
        /// The live action label.
        live: &'static str,
        /// The shadow action label.
        shadow: &'static str,
    },
    /// A policy reload finished.
    Reload {
        /// False when the new policy was refused.
        ok: bool,
    },
    /// A reload of the STARTTLS certificate and key finished (SIGHUP, or a change of
    /// `tls.cert` or `tls.key`).
    TlsReload {
        /// False when the new pair was refused and the old one kept serving.
        ok: bool,
    },
    /// A certificate was put in force (at start-up, and at each reload that took).
    TlsCertificate {
        /// Its leaf's `notAfter`, in Unix seconds.
        not_after: i64,
    },
    /// `tls.require` refused a command sent without TLS (`530 5.7.0`): MAIL from a required
    /// client network, or RCPT to a required recipient domain.
    TlsRequired(Stage),
    /// A DNSBL/DNSWL zone is configured (at start-up): its series are created, the zone
    /// counted healthy until a lookup says otherwise. Zone names come from the config: a
    /// bounded set.
    DnsblZoneConfigured {
        /// The zone, as configured (lower case, no final dot).
        zone: String,
    },
    /// A DNSBL/DNSWL zone was asked about a client.
    DnsblLookup {
        /// The zone, as configured.
        zone: String,
        /// What it answered.
        result: DnsblResult,
    },
    /// The readiness probe reached (or failed to reach) the backend.
    BackendProbe {
        /// True when the backend answered.
        up: bool,
    },
    /// The Redis state backend became reachable (true) or unreachable (false).
    StateBackendUp(bool),
    /// An operation (`rate`, `greylist` or `sessions`) could not use Redis and fell back (to local
    /// counters, or to a deferral under `on_failure: closed`).
    StateFallback(&'static str),
    /// A rate-limit rule counted an event. Rule names come from the policy: a bounded set.
    RateLimit {
        /// The rule.
        rule: String,
        /// allowed | exceeded | unavailable
        result: &'static str,
    },
    /// A check reported a client finding (a label of `CLIENT_FINDINGS`).
    ClientFinding(&'static str),
    /// Greylisting judged a message: new | early | pass | auto_allowed | unchecked | skipped |
    /// unavailable.
    Greylist(&'static str),
    /// An accept failed on a listener (`smtp`, `milter` or `metrics`).
    AcceptError {
        /// smtp | milter | metrics
        listener: &'static str,
        /// Why.
        kind: AcceptError,
    },
    /// The open-file limit and the session capacity it allows (at start-up).
    Capacity {
        /// The soft `RLIMIT_NOFILE`.
        open_files_limit: u64,
        /// Sessions served at once (`limits.max_sessions`, or fewer).
        sessions: usize,
    },
    /// The process's CPU time, memory and start time now (at each scrape).
    Process(crate::procstat::Sample),
    /// A config and its policy files were put in force (at start-up and at each successful
    /// policy reload).
    ConfigLoaded {
        /// `config::fingerprint` of what was loaded.
        hash: String,
        /// When, in seconds since the Unix epoch.
        at: f64,
    },
    /// Descriptors open now and the soft limit now (at each scrape).
    OpenFiles {
        /// Open descriptors, when the system tells.
        open: Option<u64>,
        /// The soft `RLIMIT_NOFILE`.
        limit: u64,
    },
    /// The verification memory budget (at start-up), in bytes.
    VerifyMemoryLimit(u64),
    /// Bytes reserved for verifying one message.
    VerifyMemoryTaken(u64),
    /// Bytes given back after verifying one message.
    VerifyMemoryReturned(u64),
    /// A message asked for verification memory and got it, or not.
    VerifyMemoryWait(VerifyWait),
}
