//! OPTNEG: the protocol constants, and our answer to the MTA's offer.
//!
//! Owns: the `SMFIF_*`, `SMFIP_*` and `SMFIM_*` numbers, what the gateway asks for
//! (`Wants`), and the pure function `answer` that turns an offer into what both sides agreed
//! (`Negotiated`): version, actions, protocol flags, macro lists, and for every event whether
//! the MTA sends it and whether it waits for a reply. Must not: do I/O, or decide what to
//! reply to an event (the session does).
//!
//! Versions: we speak 6 (Sendmail 8.14+, Postfix 2.6+) and answer with the lower of the
//! offer and 6. Version 1 is refused. Older versions are subsets, and `answer` only uses what
//! the agreed version defines (the masks Postfix's milter8.c uses):
//! - v2: events CONNECT to EOH can be switched off (`NOCONNECT`..`NOEOH`), actions up to
//!   `QUARANTINE`; there is no `NOUNKNOWN`, `NODATA`, `SKIP`, `RCPT_REJ`, `HDR_LEADSPC`,
//!   no `NR_*` flags (so every event the MTA sends waits for a reply), no `CHGFROM`,
//!   `ADDRCPT_PAR` and no macro lists (`SETSYMLIST`): the MTA's configured macros arrive;
//! - v3 adds `NOUNKNOWN`; v4 (and 5) add `NODATA`;
//! - `NR_HDR` is used below v6 only when offered (Postfix's `no_header_reply` extension).
//!
//! Beyond the version, the answer never holds an action or a flag the MTA did not offer
//! (Postfix drops the connection when we claim an action it did not offer). A wanted action
//! that was not offered is reported by `Negotiated::missing_actions` and the `can_*`
//! accessors, so the session can log it and do without.

use super::command::Command;
use super::response::Response;

/// Action: add (and insert) header fields.
pub const SMFIF_ADDHDRS: u32 = 0x01;
/// Action: replace the body.
pub const SMFIF_CHGBODY: u32 = 0x02;
/// Action: add recipients.
pub const SMFIF_ADDRCPT: u32 = 0x04;
/// Action: delete recipients.
pub const SMFIF_DELRCPT: u32 = 0x08;
/// Action: change or delete header fields.
pub const SMFIF_CHGHDRS: u32 = 0x10;
/// Action: quarantine the message.
pub const SMFIF_QUARANTINE: u32 = 0x20;
/// Action (v6): change the envelope sender.
pub const SMFIF_CHGFROM: u32 = 0x40;
/// Action (v6): add recipients with ESMTP parameters.
pub const SMFIF_ADDRCPT_PAR: u32 = 0x80;
/// Action (v6): send the macro lists we want after the OPTNEG words.
pub const SMFIF_SETSYMLIST: u32 = 0x100;

/// Protocol: do not send CONNECT.
pub const SMFIP_NOCONNECT: u32 = 0x1;
/// Protocol: do not send HELO.
pub const SMFIP_NOHELO: u32 = 0x2;
/// Protocol: do not send MAIL.
pub const SMFIP_NOMAIL: u32 = 0x4;
/// Protocol: do not send RCPT.
pub const SMFIP_NORCPT: u32 = 0x8;
/// Protocol: do not send body chunks.
pub const SMFIP_NOBODY: u32 = 0x10;
/// Protocol: do not send header fields.
pub const SMFIP_NOHDRS: u32 = 0x20;
/// Protocol: do not send end of headers.
pub const SMFIP_NOEOH: u32 = 0x40;
/// Protocol: no reply to header fields.
pub const SMFIP_NR_HDR: u32 = 0x80;
/// Protocol (v3): do not send unknown SMTP commands.
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
/// Protocol (v4): do not send DATA.
pub const SMFIP_NODATA: u32 = 0x200;
/// Protocol (v6): the milter may answer SKIP.
pub const SMFIP_SKIP: u32 = 0x400;
/// Protocol (v6): also send recipients that the MTA rejected.
pub const SMFIP_RCPT_REJ: u32 = 0x800;
/// Protocol (v6): no reply to CONNECT.
pub const SMFIP_NR_CONN: u32 = 0x1000;
/// Protocol (v6): no reply to HELO.
pub const SMFIP_NR_HELO: u32 = 0x2000;
/// Protocol (v6): no reply to MAIL.
pub const SMFIP_NR_MAIL: u32 = 0x4000;
/// Protocol (v6): no reply to RCPT.
pub const SMFIP_NR_RCPT: u32 = 0x8000;
/// Protocol (v6): no reply to DATA.
pub const SMFIP_NR_DATA: u32 = 0x10000;
/// Protocol (v6): no reply to unknown commands.
pub const SMFIP_NR_UNKN: u32 = 0x20000;
/// Protocol (v6): no reply to end of headers.
pub const SMFIP_NR_EOH: u32 = 0x40000;
/// Protocol (v6): no reply to body chunks.
pub const SMFIP_NR_BODY: u32 = 0x80000;
/// Protocol (v6): header values keep the whitespace after the colon, both ways.
pub const SMFIP_HDR_LEADSPC: u32 = 0x100000;

/// Macro stage: CONNECT.
pub const SMFIM_CONNECT: u32 = 0;
/// Macro stage: HELO.
pub const SMFIM_HELO: u32 = 1;
/// Macro stage: MAIL.
pub const SMFIM_ENVFROM: u32 = 2;
/// Macro stage: RCPT.
pub const SMFIM_ENVRCPT: u32 = 3;
/// Macro stage: DATA.
pub const SMFIM_DATA: u32 = 4;
/// Macro stage: end of message (also sent with each body chunk).
pub const SMFIM_EOM: u32 = 5;
/// Macro stage: end of headers (also sent with each header field).
pub const SMFIM_EOH: u32 = 6;

/// The newest version we speak.
pub const VERSION: u32 = 6;

/// The macros our checks read, per stage, as we ask for them with `SETSYMLIST`. A list we
/// send replaces the MTA's list for that stage, so asking pins them whatever the MTA's
/// configuration says, and leaves out what we never read. Postfix 3.7's defaults are a
/// superset of these (see `recipes/captures`), so without `SETSYMLIST` we still get them:
/// - CONNECT `j _ {daemon_name}` (Postfix default: `j {daemon_name} {daemon_addr} v _`);
/// - HELO `{tls_version} {cipher}` (default adds `{cipher_bits} {cert_subject}
///   {cert_issuer}`; all are TLS-only, so an empty macro packet comes before HELO without TLS);
/// - MAIL `i {auth_authen} {auth_type} {mail_addr}` (default adds `{auth_author}
///   {mail_host} {mail_mailer}`; `i` is not yet known at MAIL in Postfix);
/// - RCPT `{rcpt_addr}` (default adds `i {rcpt_host} {rcpt_mailer}`);
/// - DATA, EOH, EOM `i` (the defaults).
pub const DEFAULT_MACROS: [(u32, &str); 7] = [
    (SMFIM_CONNECT, "j _ {daemon_name}"),
    (SMFIM_HELO, "{tls_version} {cipher}"),
    (SMFIM_ENVFROM, "i {auth_authen} {auth_type} {mail_addr}"),
    (SMFIM_ENVRCPT, "{rcpt_addr}"),
    (SMFIM_DATA, "i"),
    (SMFIM_EOH, "i"),
    (SMFIM_EOM, "i"),
];

/// An MTA event that negotiation can switch off (`SMFIP_NO*`) or make reply-less
/// (`SMFIP_NR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// CONNECT.
    Connect,
    /// HELO / EHLO.
    Helo,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command.
    Data,
    /// One header field.
    Header,
    /// End of headers.
    EndOfHeaders,
    /// One body chunk.
    Body,
    /// An unknown SMTP command.
    Unknown,
    /// End of message: always sent, always answered.
    EndOfMessage,
}

impl Event {
    /// The event a command is, `None` for those outside negotiation (OPTNEG, macros, ABORT,
    /// QUIT, QUIT_NC), which are never answered (OPTNEG excepted, answered by `answer`).
    pub fn of(command: &Command) -> Option<Event> {
        Some(match command {
            Command::Connect { .. } => Event::Connect,
            Command::Helo(_) => Event::Helo,
            Command::Mail { .. } => Event::Mail,
            Command::Rcpt { .. } => Event::Rcpt,
            Command::Data => Event::Data,
            Command::Header { .. } => Event::Header,
            Command::EndOfHeaders => Event::EndOfHeaders,
            Command::Body(_) => Event::Body,
            Command::Unknown(_) => Event::Unknown,
            Command::EndOfMessage(_) => Event::EndOfMessage,
            Command::Optneg { .. }
            | Command::Macros { .. }
            | Command::Abort
            | Command::Quit
            | Command::QuitNewConnection => return None,
        })
    }

    /// (`SMFIP_NO*`, `SMFIP_NR_*`) for this event; 0 where none exists.
    fn flags(self) -> (u32, u32) {
        match self {
            Event::Connect => (SMFIP_NOCONNECT, SMFIP_NR_CONN),
            Event::Helo => (SMFIP_NOHELO, SMFIP_NR_HELO),
            Event::Mail => (SMFIP_NOMAIL, SMFIP_NR_MAIL),
            Event::Rcpt => (SMFIP_NORCPT, SMFIP_NR_RCPT),
            Event::Data => (SMFIP_NODATA, SMFIP_NR_DATA),
            Event::Header => (SMFIP_NOHDRS, SMFIP_NR_HDR),
            Event::EndOfHeaders => (SMFIP_NOEOH, SMFIP_NR_EOH),
            Event::Body => (SMFIP_NOBODY, SMFIP_NR_BODY),
            Event::Unknown => (SMFIP_NOUNKNOWN, SMFIP_NR_UNKN),
            Event::EndOfMessage => (0, 0),
        }
    }
}

/// The MTA's OPTNEG offer (the fields of `Command::Optneg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Protocol version.
    pub version: u32,
    /// `SMFIF_*` actions allowed.
    pub actions: u32,
    /// `SMFIP_*` flags understood.
    pub protocol: u32,
}

/// What the session needs from the MTA. `Default` is what the gateway's checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wants {
    /// Add and insert header fields (`SMFIF_ADDHDRS`): Authentication-Results, tags.
    pub add_header: bool,
    /// Change and delete header fields (`SMFIF_CHGHDRS`): remove forged results.
    pub change_header: bool,
    /// Quarantine (`SMFIF_QUARANTINE`).
    pub quarantine: bool,
    /// Header fields and end of headers (else `NOHDRS` and `NOEOH`).
    pub headers: bool,
    /// Body chunks (else `NOBODY`).
    pub body: bool,
    /// Header values with the whitespace after the colon intact (`HDR_LEADSPC`), as DKIM's
    /// simple canonicalisation needs. Both ways: values we send must then bring their own
    /// leading space (`Negotiated::outgoing_value`).
    pub leading_space: bool,
    /// Permission to answer SKIP to body chunks (`SMFIP_SKIP`); asked for only when body
    /// chunks get replies, that is when the MTA does not offer `NR_BODY`.
    pub skip: bool,
    /// Events the session may answer with a refusal. Those left out, and DATA, header
    /// fields, end of headers, body chunks and unknown commands always, get `NR_*` where
    /// the MTA offers it. End of message is always answered.
    pub replies: Vec<Event>,
    /// Macro lists to ask for: an `SMFIM_*` stage and space-separated macro names.
    pub macros: Vec<(u32, String)>,
}

impl Default for Wants {
    fn default() -> Wants {
        Wants {
            add_header: true,
            change_header: true,
            quarantine: true,
            headers: true,
            body: true,
            leading_space: true,
            skip: true,
            // Policy can refuse at every envelope stage.
            replies: vec![Event::Connect, Event::Helo, Event::Mail, Event::Rcpt],
            macros: DEFAULT_MACROS
                .iter()
                .map(|&(stage, names)| (stage, names.to_owned()))
                .collect(),
        }
    }
}

/// Why no agreement is possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The MTA offered a version below 2.
    #[error("milter protocol version {0} is not supported (2 to 6 are)")]
    Version(u32),
}

/// What both sides agreed on; the session follows it for the rest of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    version: u32,
    actions: u32,
    protocol: u32,
    macros: Vec<(u32, String)>,
    missing: u32,
}

/// The `SMFIF_*` bits version `v` defines.
fn known_actions(v: u32) -> u32 {
    if v >= 6 { 0x1ff } else { 0x3f }
}

/// The `SMFIP_*` bits version `v` defines (Postfix's `MILTER8_V*_PROTO_MASK`), plus `NR_HDR`
/// (used below v6 only when offered).
fn known_protocol(v: u32) -> u32 {
    match v {
        2 => 0x7f | SMFIP_NR_HDR,
        3 => 0x17f | SMFIP_NR_HDR,
        4 | 5 => 0x37f | SMFIP_NR_HDR,
        _ => 0x1f_ffff,
    }
}

/// Our answer to `offer`, given what the session `wants`.
pub fn answer(offer: Offer, wants: &Wants) -> Result<Negotiated, NegotiateError> {
    if offer.version < 2 {
        return Err(NegotiateError::Version(offer.version));
    }
    let version = offer.version.min(VERSION);
    let offered_actions = offer.actions & known_actions(version);
    let offered_protocol = offer.protocol & known_protocol(version);

    // Postfix ignores unknown stages with a warning; we do not send them at all.
    let lists: Vec<(u32, String)> = wants
        .macros
        .iter()
        .filter(|(stage, _)| *stage <= SMFIM_EOH)
        .cloned()
        .collect();
    let mut want_actions = 0;
    for (wanted, bit) in [
        (wants.add_header, SMFIF_ADDHDRS),
        (wants.change_header, SMFIF_CHGHDRS),
        (wants.quarantine, SMFIF_QUARANTINE),
        (!lists.is_empty(), SMFIF_SETSYMLIST),
    ] {
        if wanted {
            want_actions |= bit;
        }
    }

    // Events we never use, events the session does not want, and no reply wherever the
    // session has nothing to say.
    let mut want_protocol = SMFIP_NOUNKNOWN | SMFIP_NODATA;
    if !wants.headers {
        want_protocol |= SMFIP_NOHDRS | SMFIP_NOEOH;
    }
    if !wants.body {
        want_protocol |= SMFIP_NOBODY;
    }
    if wants.leading_space {
        want_protocol |= SMFIP_HDR_LEADSPC;
    }
    for event in [
        Event::Connect,
        Event::Helo,
        Event::Mail,
        Event::Rcpt,
        Event::Data,
        Event::Header,
        Event::EndOfHeaders,
        Event::Body,
        Event::Unknown,
    ] {
        let early = matches!(
            event,
            Event::Connect | Event::Helo | Event::Mail | Event::Rcpt
        );
        if !(early && wants.replies.contains(&event)) {
            want_protocol |= event.flags().1;
        }
    }

    let mut protocol = want_protocol & offered_protocol;
    // SKIP answers a body chunk, so it is of no use when body chunks get no reply.
    if wants.skip && protocol & SMFIP_NR_BODY == 0 {
        protocol |= SMFIP_SKIP & offered_protocol;
    }
    let actions = want_actions & offered_actions;
    let macros = if actions & SMFIF_SETSYMLIST != 0 {
        lists
    } else {
        Vec::new()
    };
    Ok(Negotiated {
        version,
        actions,
        protocol,
        macros,
        missing: want_actions & !offered_actions,
    })
}

impl Negotiated {
    /// The OPTNEG packet to send back.
    pub fn response(&self) -> Response {
        Response::Optneg {
            version: self.version,
            actions: self.actions,
            protocol: self.protocol,
            macros: self.macros.clone(),
        }
    }

    /// Agreed protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Agreed `SMFIF_*` actions.
    pub fn actions(&self) -> u32 {
        self.actions
    }

    /// Agreed `SMFIP_*` protocol flags.
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// `SMFIF_*` actions the session wanted but the MTA did not offer (0 when none).
    pub fn missing_actions(&self) -> u32 {
        self.missing
    }

    /// `Response::AddHeader` may be sent (at end of message).
    pub fn can_add_header(&self) -> bool {
        self.actions & SMFIF_ADDHDRS != 0
    }

    /// `Response::InsertHeader` may be sent: the same permission as adding.
    pub fn can_insert_header(&self) -> bool {
        self.can_add_header()
    }

    /// `Response::ChangeHeader` may be sent.
    pub fn can_change_header(&self) -> bool {
        self.actions & SMFIF_CHGHDRS != 0
    }

    /// `Response::Quarantine` may be sent.
    pub fn can_quarantine(&self) -> bool {
        self.actions & SMFIF_QUARANTINE != 0
    }

    /// `Response::Skip` may be sent (to a body chunk).
    pub fn may_skip(&self) -> bool {
        self.protocol & SMFIP_SKIP != 0
    }

    /// Our macro lists went out, so the macros per stage are exactly `macro_lists`; when
    /// false the MTA sends whatever its configuration says.
    pub fn sent_macro_lists(&self) -> bool {
        !self.macros.is_empty()
    }

    /// The macro lists we asked for (empty when none were sent).
    pub fn macro_lists(&self) -> &[(u32, String)] {
        &self.macros
    }

    /// Header values arrive with the whitespace after the colon, and are sent verbatim.
    pub fn leading_space(&self) -> bool {
        self.protocol & SMFIP_HDR_LEADSPC != 0
    }

    /// `value` as a header value to send: with `HDR_LEADSPC` the MTA writes it right after
    /// the colon, so it gets a leading space unless it has one; without, the MTA adds one.
    pub fn outgoing_value(&self, value: &str) -> String {
        if self.leading_space() && !value.starts_with([' ', '\t']) {
            format!(" {value}")
        } else {
            value.to_owned()
        }
    }

    /// The MTA sends this event (it was not switched off).
    pub fn sends(&self, event: Event) -> bool {
        self.protocol & event.flags().0 == 0
    }

    /// The MTA waits for a reply to this event; when false the session must not send one
    /// (an unexpected reply puts the connection out of step).
    pub fn expects_reply(&self, event: Event) -> bool {
        self.protocol & event.flags().1 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTFIX: Offer = Offer {
        version: 6,
        actions: 0x1ff,
        protocol: 0x1f_ffff,
    };

    #[test]
    fn postfix_37_offer() {
        let n = answer(POSTFIX, &Wants::default()).unwrap();
        assert_eq!(n.version(), 6);
        assert_eq!(
            n.actions(),
            SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST
        );
        assert_eq!(
            n.protocol(),
            SMFIP_NOUNKNOWN
                | SMFIP_NODATA
                | SMFIP_HDR_LEADSPC
                | SMFIP_NR_DATA
                | SMFIP_NR_HDR
                | SMFIP_NR_EOH
                | SMFIP_NR_BODY
                | SMFIP_NR_UNKN
        );
        assert_eq!(n.protocol(), 0x1f_0380);
        assert_eq!(n.missing_actions(), 0);
        assert!(n.can_add_header() && n.can_insert_header() && n.can_change_header());
        assert!(n.can_quarantine() && n.leading_space());
        assert!(!n.may_skip(), "no SKIP where body chunks get no reply");
        assert!(n.sent_macro_lists());
        assert_eq!(n.macro_lists().len(), 7);
        assert_eq!(
            n.macro_lists()[0],
            (SMFIM_CONNECT, "j _ {daemon_name}".to_owned())
        );
        for e in [Event::Connect, Event::Helo, Event::Mail, Event::Rcpt] {
            assert!(n.sends(e) && n.expects_reply(e), "{e:?}");
        }
        for e in [Event::Header, Event::EndOfHeaders, Event::Body] {
            assert!(n.sends(e) && !n.expects_reply(e), "{e:?}");
        }
        assert!(!n.sends(Event::Data) && !n.sends(Event::Unknown));
        assert!(n.sends(Event::EndOfMessage) && n.expects_reply(Event::EndOfMessage));
        let Response::Optneg {
            version,
            actions,
            protocol,
            macros,
        } = n.response()
        else {
            panic!("not an optneg")
        };
        assert_eq!((version, actions, protocol), (6, 0x131, 0x1f_0380));
        assert_eq!(macros, n.macro_lists());
    }

    #[test]
    fn version_2_offer() {
        let n = answer(
            Offer {
                version: 2,
                actions: 0x3f,
                protocol: 0x7f,
            },
            &Wants::default(),
        )
        .unwrap();
        assert_eq!(n.version(), 2);
        assert_eq!(
            n.actions(),
            SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE
        );
        assert_eq!(n.protocol(), 0, "v2 has no flag we use");
        assert!(!n.sent_macro_lists() && !n.may_skip() && !n.leading_space());
        // Every event it sends waits for a reply.
        for e in [
            Event::Connect,
            Event::Helo,
            Event::Mail,
            Event::Rcpt,
            Event::Data,
            Event::Header,
            Event::EndOfHeaders,
            Event::Body,
            Event::Unknown,
            Event::EndOfMessage,
        ] {
            assert!(n.sends(e) && n.expects_reply(e), "{e:?}");
        }
    }

    #[test]
    fn version_2_with_v6_bits_uses_only_v2_ones() {
        // An MTA that names v2 but sets every bit: v6 features stay unused.
        let n = answer(
            Offer {
                version: 2,
                actions: 0x1ff,
                protocol: 0x1f_ffff,
            },
            &Wants::default(),
        )
        .unwrap();
        assert_eq!(n.actions(), 0x31);
        assert_eq!(n.protocol(), SMFIP_NR_HDR);
        assert!(!n.sent_macro_lists());
        assert_eq!(
            n.response(),
            Response::Optneg {
                version: 2,
                actions: 0x31,
                protocol: SMFIP_NR_HDR,
                macros: vec![]
            }
        );
    }

    #[test]
    fn versions_3_and_4_add_nounknown_then_nodata() {
        let offer = |version| Offer {
            version,
            actions: 0x3f,
            protocol: 0x3ff,
        };
        let v3 = answer(offer(3), &Wants::default()).unwrap();
        assert_eq!(v3.protocol(), SMFIP_NOUNKNOWN | SMFIP_NR_HDR);
        assert!(v3.sends(Event::Data) && v3.expects_reply(Event::Data));
        let v4 = answer(offer(4), &Wants::default()).unwrap();
        assert_eq!(v4.protocol(), SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_HDR);
        assert!(!v4.sends(Event::Data));
    }

    #[test]
    fn newer_versions_get_6() {
        let n = answer(
            Offer {
                version: 7,
                ..POSTFIX
            },
            &Wants::default(),
        )
        .unwrap();
        assert_eq!(n.version(), 6);
        assert_eq!(
            answer(
                Offer {
                    version: u32::MAX,
                    ..POSTFIX
                },
                &Wants::default()
            )
            .unwrap()
            .version(),
            6
        );
    }

    #[test]
    fn skip_only_where_body_chunks_are_answered() {
        let n = answer(
            Offer {
                protocol: 0x1f_ffff & !SMFIP_NR_BODY,
                ..POSTFIX
            },
            &Wants::default(),
        )
        .unwrap();
        assert!(n.may_skip() && n.expects_reply(Event::Body));
        let no_skip = Wants {
            skip: false,
            ..Wants::default()
        };
        let n = answer(
            Offer {
                protocol: 0x1f_ffff & !SMFIP_NR_BODY,
                ..POSTFIX
            },
            &no_skip,
        )
        .unwrap();
        assert!(!n.may_skip());
    }

    #[test]
    fn offer_without_setsymlist() {
        let n = answer(
            Offer {
                actions: 0x1ff & !SMFIF_SETSYMLIST,
                ..POSTFIX
            },
            &Wants::default(),
        )
        .unwrap();
        assert_eq!(
            n.actions(),
            SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE
        );
        assert!(!n.sent_macro_lists());
        assert!(n.macro_lists().is_empty());
        assert_eq!(n.missing_actions(), SMFIF_SETSYMLIST);
        let Response::Optneg { macros, .. } = n.response() else {
            panic!()
        };
        assert!(macros.is_empty());
    }

    #[test]
    fn offer_without_chghdrs() {
        let n = answer(
            Offer {
                actions: 0x1ff & !SMFIF_CHGHDRS,
                ..POSTFIX
            },
            &Wants::default(),
        )
        .unwrap();
        assert!(!n.can_change_header());
        assert!(n.can_add_header() && n.can_insert_header());
        assert_eq!(n.missing_actions(), SMFIF_CHGHDRS);
        assert_eq!(
            n.actions() & SMFIF_CHGHDRS,
            0,
            "never claim what was not offered"
        );
    }

    #[test]
    fn version_1_and_0_refused() {
        for version in [0, 1] {
            assert_eq!(
                answer(Offer { version, ..POSTFIX }, &Wants::default()),
                Err(NegotiateError::Version(version))
            );
        }
        assert_eq!(
            NegotiateError::Version(1).to_string(),
            "milter protocol version 1 is not supported (2 to 6 are)"
        );
    }

    #[test]
    fn answer_is_always_within_the_offer() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offer = Offer {
                version: 2 + (x % 6) as u32,
                actions: (x >> 8) as u32 & 0x3ff,
                protocol: (x >> 20) as u32 & 0x3f_ffff,
            };
            let n = answer(offer, &Wants::default()).unwrap();
            assert_eq!(n.actions() & !offer.actions, 0, "{offer:?}");
            assert_eq!(n.protocol() & !offer.protocol, 0, "{offer:?}");
            assert!(n.version() <= offer.version);
            if n.version() < 6 {
                assert_eq!(n.protocol() & !0x3ff, 0, "{offer:?}: v6 flag below v6");
                assert!(!n.sent_macro_lists());
            }
            assert!(n.expects_reply(Event::EndOfMessage));
        }
    }

    #[test]
    fn wants_shape_the_answer() {
        let wants = Wants {
            add_header: true,
            change_header: false,
            quarantine: false,
            headers: false,
            body: false,
            leading_space: false,
            skip: false,
            replies: vec![Event::Mail],
            macros: vec![(SMFIM_ENVFROM, "{auth_authen}".into()), (9, "x".into())],
        };
        let n = answer(POSTFIX, &wants).unwrap();
        assert_eq!(n.actions(), SMFIF_ADDHDRS | SMFIF_SETSYMLIST);
        assert!(!n.sends(Event::Header) && !n.sends(Event::EndOfHeaders) && !n.sends(Event::Body));
        assert!(n.expects_reply(Event::Mail));
        for e in [Event::Connect, Event::Helo, Event::Rcpt] {
            assert!(n.sends(e) && !n.expects_reply(e), "{e:?}");
        }
        assert!(!n.leading_space() && !n.may_skip());
        assert_eq!(
            n.macro_lists(),
            [(SMFIM_ENVFROM, "{auth_authen}".to_owned())],
            "stage 9 dropped"
        );
        // No macros wanted: no SETSYMLIST.
        let none = answer(
            POSTFIX,
            &Wants {
                macros: vec![],
                ..Wants::default()
            },
        )
        .unwrap();
        assert_eq!(none.actions() & SMFIF_SETSYMLIST, 0);
        assert_eq!(none.missing_actions(), 0);
    }

    #[test]
    fn outgoing_values_follow_leading_space() {
        let with = answer(POSTFIX, &Wants::default()).unwrap();
        assert_eq!(with.outgoing_value("pass"), " pass");
        assert_eq!(with.outgoing_value(" pass"), " pass");
        assert_eq!(with.outgoing_value("\tpass"), "\tpass");
        let without = answer(
            POSTFIX,
            &Wants {
                leading_space: false,
                ..Wants::default()
            },
        )
        .unwrap();
        assert_eq!(without.outgoing_value("pass"), "pass");
    }

    #[test]
    fn events_of_commands() {
        assert_eq!(Event::of(&Command::Helo("x".into())), Some(Event::Helo));
        assert_eq!(
            Event::of(&Command::EndOfMessage(vec![])),
            Some(Event::EndOfMessage)
        );
        assert_eq!(Event::of(&Command::Body(vec![])), Some(Event::Body));
        for c in [Command::Abort, Command::Quit, Command::QuitNewConnection] {
            assert_eq!(Event::of(&c), None);
        }
        assert_eq!(
            Event::of(&Command::Macros {
                stage: b'C',
                pairs: vec![]
            }),
            None
        );
    }
}
