//! Every fact the gateway knows: one definition each, with the stage at which it first exists
//! and the kind of value it takes.
//!
//! Owns: `FactDef`, `Kind`, one constant per fact and `ALL`, declared from one list so that
//! none can be left out of it; `lookup` (a policy file's fact name to its definition) and
//! the stage order (`Stage::rank`). Checks build facts from these constants
//! (`Fact::flag(&facts::SPF_MAILFROM, …)`), never from a string, and the policy compiles a
//! YAML name to one of them. Must not: compute facts (checks do) or know what a policy makes
//! of them.
//!
//! The names are an interface: operators' policy files, `policies/schema.json` and
//! docs/policies.md use them, and the test `schema_names_exactly_the_known_facts` holds the
//! schema to `ALL`. Which check emits which fact is each check's `Check::emits`, and the
//! test `every_known_fact_is_emitted_and_every_emitted_fact_known` (`checks/mod.rs`) holds
//! their union to `ALL`.

use std::fmt;

use super::Stage;

/// The kind of value a fact takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// true/false (`FactValue::Flag`).
    Flag,
    /// A number (`FactValue::Count`).
    Count,
    /// A word, a name or an address (`FactValue::Text`).
    Text,
}

/// The definition of one fact: its dotted name, the stage at which it first exists (a rule
/// naming it is evaluated from there on) and its kind of value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FactDef {
    name: &'static str,
    stage: Stage,
    kind: Kind,
}

impl FactDef {
    /// A fact definition. The gateway's facts are the constants of this module: a fact
    /// defined anywhere else is unknown to policies, and a check of the registry that emits
    /// one fails `every_known_fact_is_emitted_and_every_emitted_fact_known`.
    pub const fn new(name: &'static str, stage: Stage, kind: Kind) -> Self {
        FactDef { name, stage, kind }
    }

    /// The dotted name, `check.what`, as policy files write it.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The stage at which the fact first exists.
    pub const fn stage(&self) -> Stage {
        self.stage
    }

    /// The kind of value it takes.
    pub const fn kind(&self) -> Kind {
        self.kind
    }
}

impl fmt::Debug for FactDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The definition named `name` (as a policy file writes it); `None` for an unknown fact.
pub fn lookup(name: &str) -> Option<&'static FactDef> {
    ALL.iter().copied().find(|d| d.name == name)
}

impl Stage {
    /// The order of stages, for "the latest stage a rule needs" (CONNECT 0 … DATA 4).
    pub fn rank(self) -> u8 {
        match self {
            Stage::Connect => 0,
            Stage::Helo => 1,
            Stage::Mail => 2,
            Stage::Rcpt => 3,
            Stage::Data => 4,
        }
    }
}

/// Declares each fact as a constant and `ALL` from the same list.
macro_rules! facts {
    ($( $(#[$doc:meta])* $id:ident = $name:literal, $stage:ident, $kind:ident; )*) => {
        $(
            $(#[$doc])*
            pub const $id: FactDef = FactDef::new($name, Stage::$stage, Kind::$kind);
        )*
        /// Every fact a policy may name, in the order of docs/policies.md.
        pub const ALL: &[&FactDef] = &[$(&$id),*];
    };
}

facts! {
    /// The client's IP address (the PROXY protocol's source, if trusted).
    CLIENT_IP = "client.ip", Connect, Text;
    /// The client's /24 or /64.
    CLIENT_NETWORK = "client.network", Connect, Text;
    /// Whether the client spoke before the banner.
    CLIENT_PREGREET = "client.pregreet", Connect, Flag;
    /// Whether the client sent commands ahead of replies where RFC 2920 forbids it.
    CLIENT_UNANNOUNCED_PIPELINING = "client.unannounced_pipelining", Mail, Flag;
    /// Whether the client's address has a PTR record.
    RDNS_PTR = "rdns.ptr", Connect, Flag;
    /// The confirmed PTR name, else the first.
    RDNS_NAME = "rdns.name", Connect, Text;
    /// Whether a PTR name resolves back to the client.
    RDNS_FCRDNS = "rdns.fcrdns", Connect, Flag;
    /// Whether a reverse or forward lookup failed and no name confirmed the client.
    RDNS_TEMPERROR = "rdns.temperror", Connect, Flag;
    /// A block zone that lists the client, one fact per zone.
    DNSBL_LISTED = "dnsbl.listed", Connect, Text;
    /// The summed weight of the block zones that list the client.
    DNSBL_SCORE = "dnsbl.score", Connect, Count;
    /// An allow zone that lists the client.
    DNSWL_LISTED = "dnswl.listed", Connect, Text;
    /// A DNS list zone that answered with an error code.
    DNSBL_ERROR = "dnsbl.error", Connect, Text;
    /// The EHLO/HELO name as written.
    HELO = "helo", Helo, Text;
    /// Whether the HELO name is a host name with a dot or an address literal.
    HELO_VALID = "helo.valid", Helo, Flag;
    /// Whether the HELO name is an address literal.
    HELO_LITERAL = "helo.literal", Helo, Flag;
    /// Whether the HELO address literal is not the client's address.
    HELO_LITERAL_MISMATCH = "helo.literal_mismatch", Helo, Flag;
    /// Whether the HELO name is ours (the hostname or an accepted domain).
    HELO_OURS = "helo.ours", Helo, Flag;
    /// Whether the HELO name has an A or AAAA record.
    HELO_RESOLVES = "helo.resolves", Helo, Flag;
    /// The MAIL FROM address, empty for `<>`.
    MAIL_FROM = "mail_from", Mail, Text;
    /// The MAIL FROM domain, lower-cased; absent for `<>`.
    MAIL_FROM_DOMAIN = "mail_from.domain", Mail, Text;
    /// Milter mode: the client's SASL login at Postfix.
    MAIL_FROM_AUTHENTICATED = "mail_from.authenticated", Mail, Text;
    /// A domain zone that lists the MAIL FROM domain.
    DBL_MAIL_FROM = "dbl.mail_from", Mail, Text;
    /// A domain zone that answered with an error code.
    DBL_ERROR = "dbl.error", Mail, Text;
    /// The `SIZE=` the client declared.
    SIZE_DECLARED = "size.declared", Mail, Count;
    /// Whether `SIZE=` is above `limits.max_message_size`.
    SIZE_DECLARED_EXCEEDS_LIMIT = "size.declared_exceeds_limit", Mail, Flag;
    /// SPF for the MAIL FROM identity.
    SPF_MAILFROM = "spf.mailfrom", Mail, Text;
    /// SPF for the HELO identity.
    SPF_HELO = "spf.helo", Mail, Text;
    /// The domain whose SPF record was evaluated for MAIL FROM.
    SPF_DOMAIN = "spf.domain", Mail, Text;
    /// Why `spf.mailfrom` is what it is, in words.
    SPF_REASON = "spf.reason", Mail, Text;
    /// The recipient being checked.
    RCPT = "rcpt", Rcpt, Text;
    /// The recipient's domain, lower-cased.
    RCPT_DOMAIN = "rcpt.domain", Rcpt, Text;
    /// The RCPT commands of the transaction so far, this one included.
    RECIPIENTS_COUNT = "recipients.count", Rcpt, Count;
    /// Whether `recipients.count` is above `limits.max_recipients`.
    RECIPIENTS_EXCEEDS_LIMIT = "recipients.exceeds_limit", Rcpt, Flag;
    /// The message size in bytes.
    SIZE_ACTUAL = "size.actual", Data, Count;
    /// Whether the message is above `limits.max_message_size`.
    SIZE_EXCEEDS_LIMIT = "size.exceeds_limit", Data, Flag;
    /// Whether the message has a bare CR or LF.
    BODY_BARE_LINE_ENDINGS = "body.bare_line_endings", Data, Flag;
    /// Whether the message has a NUL byte.
    BODY_NUL_BYTES = "body.nul_bytes", Data, Flag;
    /// Whether the message has a line over 998 octets.
    BODY_LONG_LINES = "body.long_lines", Data, Flag;
    /// One header field, `Name: value`, one fact per field.
    HEADER = "header", Data, Text;
    /// The message's DKIM result.
    DKIM = "dkim", Data, Text;
    /// One DKIM signature and its result, one fact per signature.
    DKIM_SIGNATURE = "dkim.signature", Data, Text;
    /// A domain zone that lists a DKIM-Signature's `d=` domain.
    DBL_DKIM = "dbl.dkim", Data, Text;
    /// The `d=` domain of a passing DKIM signature.
    DKIM_DOMAIN = "dkim.domain", Data, Text;
    /// A signature with `l=` passed: content after that length is unauthenticated.
    DKIM_L_TAG = "dkim.l_tag", Data, Flag;
    /// A signature with `l=` that counts as `policy` (`auth.dkim_allow_partial_body`).
    DKIM_PARTIAL_BODY_REFUSED = "dkim.partial_body_refused", Data, Flag;
    /// The ARC chain's result.
    ARC = "arc", Data, Text;
    /// The DMARC result.
    DMARC = "dmarc", Data, Text;
    /// The DMARC policy that applies.
    DMARC_POLICY = "dmarc.policy", Data, Text;
    /// The author domain of the DMARC outcome.
    DMARC_DOMAIN = "dmarc.domain", Data, Text;
    /// How many distinct domains the From field names.
    DMARC_AUTHOR_DOMAINS = "dmarc.author_domains", Data, Count;
    /// How many From fields the message has.
    DMARC_FROM_FIELDS = "dmarc.from_fields", Data, Count;
    /// Whose message it is cannot be said (several From fields, too many author domains).
    DMARC_AMBIGUOUS_FROM = "dmarc.ambiguous_from", Data, Flag;
    /// A domain that authenticated the message (DKIM, or SPF on a pass).
    AUTH_DOMAIN = "auth.domain", Data, Text;
    /// The message was above `auth.max_verify_size`: no DKIM, ARC or DMARC facts.
    AUTH_SKIPPED_TOO_LARGE = "auth.skipped_too_large", Data, Flag;
    /// What greylisting found (`new`, `early`, `pass`, …).
    GREYLIST = "greylist", Data, Text;
    /// The name of a rate-limit rule found over its rate.
    RATELIMIT = "ratelimit", Mail, Text;
    /// Redis did not answer and `state.redis.on_failure` is `closed`.
    STATE_UNAVAILABLE = "state.unavailable", Mail, Flag;
    /// The name of a check that ran out of time or failed (any stage: listed at DATA, where
    /// every stage's errors are known).
    CHECK_ERROR = "check.error", Data, Text;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_looked_up() {
        for (i, def) in ALL.iter().enumerate() {
            assert!(
                ALL[..i].iter().all(|d| d.name() != def.name()),
                "{def:?} twice"
            );
            assert_eq!(lookup(def.name()), Some(*def));
        }
        assert_eq!(lookup("spf.mailfrom"), Some(&SPF_MAILFROM));
        assert_eq!(
            lookup("spf.mailfrom").map(FactDef::stage),
            Some(Stage::Mail)
        );
        assert_eq!(lookup("spf.result"), None);
    }
}
