//! What the rig's traffic must show on each dashboard panel and in each alert expression,
//! and what it cannot show, with the reason.
//!
//! Owns: the two explicit lists the test holds the dashboard and the rules to. Every panel
//! target (by panel id, title and refId) and every alert must be in its list: a new panel
//! or alert in neither fails the test until it is proven here or explained. Must not:
//! evaluate anything.

/// What a panel target or an alert expression must show over the test's time range.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// Some sample above 0; and for each label set (`"k=v,k=v"`), a series carrying those
    /// labels with a sample above 0.
    Lit(&'static [&'static str]),
    /// Some sample, whatever its value: the traffic cannot make it other than 0 (reason).
    Data(&'static str),
    /// The alert's condition held at some point: its expression returned a sample.
    Fires,
    /// Nothing this test can cause (reason); the expression must still evaluate.
    Dark(&'static str),
}

use Want::{Dark, Data, Fires, Lit};

/// Panel id, title, target refId, and what it must show.
pub const PANELS: &[(u64, &str, &str, Want)] = &[
    (2, "Version", "A", Lit(&[])),
    (
        3,
        "Backend up",
        "A",
        Data("the minimum over the instances: the `broken` gateway's backend is down on purpose"),
    ),
    (4, "Active sessions", "A", Lit(&[])),
    (5, "Messages / s", "A", Lit(&[])),
    (
        7,
        "Sessions / s",
        "A",
        Lit(&["result=accepted", "result=rejected_capacity"]),
    ),
    (8, "Active sessions", "A", Lit(&[])),
    (
        9,
        "Replies by class / s",
        "A",
        Lit(&["class=2xx", "class=4xx", "class=5xx"]),
    ),
    (
        10,
        "Commands / s",
        "A",
        Lit(&[
            "command=EHLO",
            "command=MAIL",
            "command=RCPT",
            "command=DATA",
            "command=STARTTLS",
        ]),
    ),
    (11, "Session duration", "A", Lit(&[])),
    (11, "Session duration", "B", Lit(&[])),
    (11, "Session duration", "C", Lit(&[])),
    (
        12,
        "TLS handshakes / s",
        "A",
        Lit(&["result=ok", "result=error"]),
    ),
    (
        14,
        "Messages by front end and verdict / s",
        "A",
        Lit(&[
            "mode=smtp,verdict=accept",
            "mode=smtp,verdict=tag",
            "mode=smtp,verdict=quarantine",
            "mode=smtp,verdict=tempfail",
            "mode=smtp,verdict=reject",
            "mode=milter,verdict=accept",
        ]),
    ),
    (15, "Message bytes / s", "A", Lit(&[])),
    (16, "Message size p95", "A", Lit(&[])),
    (
        17,
        "Limit hits / s",
        "A",
        Lit(&["limit=message_size", "limit=deny_list", "limit=sessions"]),
    ),
    (
        18,
        "Check duration p95",
        "A",
        Lit(&["stage=mail", "stage=data"]),
    ),
    (20, "Relay duration", "A", Lit(&[])),
    (20, "Relay duration", "B", Lit(&[])),
    (20, "Relay duration", "C", Lit(&[])),
    (21, "Backend errors / s", "A", Lit(&["kind=connect"])),
    (22, "Backend up", "A", Lit(&[])),
    (
        24,
        "Authentication results / s",
        "A",
        Lit(&[
            "method=spf,result=pass",
            "method=spf,result=fail",
            "method=dmarc,result=pass",
            "method=dmarc,result=fail",
            "method=dmarc,result=temperror",
        ]),
    ),
    (25, "DMARC fail ratio", "A", Lit(&[])),
    (
        26,
        "Authentication duration p95",
        "A",
        Lit(&["method=spf", "method=dmarc"]),
    ),
    (27, "DNS cache hit ratio", "A", Lit(&[])),
    (28, "DNS answers / s", "A", Lit(&["outcome=ok,type=TXT"])),
    (
        30,
        "Rate limits exceeded / s",
        "A",
        Lit(&["rule=limited-sender"]),
    ),
    (
        31,
        "Greylisting results / s",
        "A",
        Lit(&["result=new", "result=pass", "result=unchecked"]),
    ),
    (32, "State backend up", "A", Lit(&[])),
    (33, "State fallbacks / s", "A", Lit(&["operation=greylist"])),
    (
        34,
        "Client findings / s",
        "A",
        Lit(&["finding=helo_invalid", "finding=helo_ours"]),
    ),
    (36, "Open files", "A", Lit(&[])),
    (36, "Open files", "B", Lit(&[])),
    (37, "Session capacity", "A", Lit(&[])),
    (37, "Session capacity", "B", Lit(&[])),
    (
        38,
        "Accept errors / s",
        "A",
        Dark(
            "accepts fail only with the descriptor table full (EMFILE), which would starve \
             this test process and the scrapes; tests/descriptors.rs proves the counter",
        ),
    ),
    (
        39,
        "Verification memory",
        "A",
        Data(
            "bytes under verification now: 0 between messages, and a scrape landing inside \
             one 100 KiB read-back would be luck (B, the peak, shows it)",
        ),
    ),
    (39, "Verification memory", "B", Lit(&[])),
    (39, "Verification memory", "C", Lit(&[])),
    (
        40,
        "Verification memory reservations / s",
        "A",
        Lit(&["result=immediate"]),
    ),
    (44, "Memory and CPU", "A", Lit(&[])),
    (44, "Memory and CPU", "B", Lit(&[])),
    (
        42,
        "Milter packets and responses / s",
        "A",
        Lit(&["command=connect", "command=helo", "command=eom"]),
    ),
    (
        42,
        "Milter packets and responses / s",
        "B",
        Lit(&["response=continue"]),
    ),
    (43, "Milter connections and protocol errors", "A", Lit(&[])),
    (
        43,
        "Milter connections and protocol errors",
        "B",
        Lit(&["reason=too_large"]),
    ),
    (
        46,
        "Policy rule hits / s",
        "A",
        Lit(&[
            "rule=dnsbl-listed",
            "rule=verdict-tag",
            "rule=verdict-reject",
        ]),
    ),
    (
        47,
        "DNSBL lookups / s",
        "A",
        Lit(&["zone=bl.test,result=listed", "zone=bl.test,result=clean"]),
    ),
    (48, "Reloads", "A", Lit(&["result=ok", "result=error"])),
    (48, "Reloads", "B", Lit(&["result=error"])),
];

/// Alert name and what its expression must show.
pub const ALERTS: &[(&str, Want)] = &[
    // The target nothing listens on.
    ("GatewayDown", Fires),
    // `broken`: its backend is down, 30 recipients a round get 451 4.4.1 (60 connect
    // errors in the 5m window: above 0.1/s), and a fourth session is refused at capacity.
    ("BackendDown", Fires),
    ("BackendErrorsHigh", Fires),
    ("HighTempfailRatio", Fires),
    ("SessionsNearCapacity", Fires),
    // `main`: one refused policy reload, one refused certificate, a certificate that
    // expires in 7 days, two DMARC temperrors among eight evaluations a round.
    ("PolicyReloadRefused", Fires),
    ("TlsCertificateReloadRefused", Fires),
    ("TlsCertificateExpiresSoon", Fires),
    ("DmarcTempfailsHigh", Fires),
    // `shared`: its Redis killed.
    ("StateBackendDown", Fires),
    (
        "AcceptFailing",
        Dark(
            "accepts fail only with the descriptor table full (EMFILE), which would starve \
             this test process; tests/descriptors.rs proves the counter",
        ),
    ),
    (
        "OpenFilesNearLimit",
        Dark("needs 90% of the test process's RLIMIT_NOFILE in use, for every test in it"),
    ),
    (
        "VerifyMemoryFull",
        Dark(
            "needs a message to wait out its whole DATA deadline for verification memory; \
             tests/verify_memory.rs proves the 451 and the counter",
        ),
    ),
    // `milter`: twelve connections closed on too_large packets (above 5 in 10m).
    ("MilterProtocolErrors", Fires),
];
