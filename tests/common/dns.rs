//! An in-process authoritative DNS server for tests (hickory-server), on 127.0.0.1 with a
//! random port, UDP and TCP on the same port, with a small builder to write zones in tests:
//!
//! ```ignore
//! let dns = DnsFixture::start(vec![
//!     Zone::new("sender.test")
//!         .txt("sender.test", "v=spf1 ip4:127.0.0.5 -all")
//!         .a("mx.sender.test", "127.0.0.5".parse().unwrap())
//!         .mx("sender.test", 10, "mx.sender.test")
//!         .servfail("broken.sender.test"),
//! ])
//! .await;
//! // Point the gateway at it:
//! //   c.dns.nameservers = vec![dns.addr()];
//! //   c.dns.timeout = Duration::from_secs(2);
//! //   c.dns.attempts = 1;
//! ```
//!
//! Every zone carries an SOA at its origin, so negative answers (NXDOMAIN, NODATA) carry one
//! and can be cached. Names are written absolute, with or without the final dot; `Zone::root()`
//! serves everything under `.`, so any name that is not written is NXDOMAIN.
//!
//! Ways to produce a failed lookup (SPF `temperror`):
//! - `servfail(name)` / `servfail_type(name, type)`: the server answers SERVFAIL.
//! - `silent(name)`: the server never answers that name (the resolver times out).
//! - a name in no served zone: hickory-server answers REFUSED, which the resolver treats as
//!   an error too. Mind lookups that walk up the tree (DMARC asks `_dmarc.<parent>` up to
//!   the TLD): serve the TLD zone (`Zone::new("test")`) or `Zone::root()` so that those
//!   names are NXDOMAIN rather than errors.
//! - `SilentServer`: a UDP socket that never answers at all (a dead name server).
//!
//! The server runs as long as the fixture lives; it stops on Drop. Every query received is
//! logged (`queries()`, `query_count()`), so tests can tell a cache hit from a query.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, NULL, PTR, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};

/// Default TTL of records and of negative answers (the SOA minimum).
pub const DEFAULT_TTL: u32 = 60;

/// How a name (or one type at a name) fails instead of being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answered with SERVFAIL.
    ServFail,
    /// Never answered: the client times out.
    Silent,
}

#[derive(Debug, Clone)]
struct FaultRule {
    name: LowerName,
    rtype: Option<RecordType>,
    fault: Fault,
}

/// A zone being written: an origin (with its SOA), records and faults.
pub struct Zone {
    origin: Name,
    ttl: u32,
    negative_ttl: u32,
    records: Vec<Record>,
    faults: Vec<FaultRule>,
}

/// A domain name from text: absolute with or without the final dot; `.` or `` is the root.
/// Labels are taken as raw bytes, so names with spaces or `%` (RFC 7208 macro tests) work.
pub fn name(text: &str) -> Name {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return Name::root();
    }
    let mut n = Name::from_labels(text.split('.').map(str::as_bytes))
        .unwrap_or_else(|e| panic!("bad DNS name {text:?}: {e}"));
    n.set_fqdn(true);
    n
}

/// Splits a TXT string into character-strings of at most 255 bytes (RFC 1035 §3.3.14).
pub fn txt_chunks(text: &[u8]) -> Vec<&[u8]> {
    if text.is_empty() {
        return vec![text];
    }
    text.chunks(255).collect()
}

impl Zone {
    /// An empty zone at `origin` (an SOA is added when the fixture starts).
    pub fn new(origin: &str) -> Zone {
        Zone {
            origin: name(origin),
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_TTL,
            records: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// The root zone: authoritative for every name, NXDOMAIN for any name not written.
    pub fn root() -> Zone {
        Zone::new(".")
    }

    /// The TTL of the records added after this call.
    pub fn ttl(mut self, ttl: u32) -> Zone {
        self.ttl = ttl;
        self
    }

    /// The TTL of negative answers (the SOA MINIMUM and the SOA's own TTL).
    pub fn negative_ttl(mut self, ttl: u32) -> Zone {
        self.negative_ttl = ttl;
        self
    }

    fn owner(&self, owner: &str) -> Name {
        let n = name(owner);
        assert!(
            self.origin.zone_of(&n),
            "{n} is not in the zone {}",
            self.origin
        );
        n
    }

    /// Any record (it must be in the zone).
    pub fn record(mut self, record: Record) -> Zone {
        assert!(
            self.origin.zone_of(&record.name),
            "{} is not in the zone {}",
            record.name,
            self.origin
        );
        self.records.push(record);
        self
    }

    /// Any record data at `owner` with the current TTL.
    pub fn rdata(self, owner: &str, data: RData) -> Zone {
        let n = self.owner(owner);
        let ttl = self.ttl;
        self.record(Record::from_rdata(n, ttl, data))
    }

    /// A TXT record; text longer than 255 bytes is split into 255-byte character-strings.
    pub fn txt(self, owner: &str, text: &str) -> Zone {
        self.txt_bytes(owner, text.as_bytes())
    }

    /// A TXT record from raw bytes, split into 255-byte character-strings.
    pub fn txt_bytes(self, owner: &str, text: &[u8]) -> Zone {
        self.rdata(owner, RData::TXT(TXT::from_bytes(txt_chunks(text))))
    }

    /// One TXT record made of the given character-strings, as they are (each ≤ 255 bytes).
    pub fn txt_strings(self, owner: &str, strings: &[&str]) -> Zone {
        for s in strings {
            assert!(
                s.len() <= 255,
                "a TXT character-string is at most 255 bytes"
            );
        }
        let data = TXT::from_bytes(strings.iter().map(|s| s.as_bytes()).collect());
        self.rdata(owner, RData::TXT(data))
    }

    /// An SPF (type 99, obsolete since RFC 7208) record: TXT wire format under type 99.
    pub fn spf_rr(self, owner: &str, text: &[u8]) -> Zone {
        let mut wire = Vec::new();
        for chunk in txt_chunks(text) {
            wire.push(chunk.len() as u8);
            wire.extend_from_slice(chunk);
        }
        let data = RData::Unknown {
            code: RecordType::Unknown(99),
            rdata: NULL::with(wire),
        };
        self.rdata(owner, data)
    }

    /// An A record.
    pub fn a(self, owner: &str, ip: Ipv4Addr) -> Zone {
        self.rdata(owner, RData::A(A(ip)))
    }

    /// An AAAA record.
    pub fn aaaa(self, owner: &str, ip: Ipv6Addr) -> Zone {
        self.rdata(owner, RData::AAAA(AAAA(ip)))
    }

    /// An MX record.
    pub fn mx(self, owner: &str, preference: u16, exchange: &str) -> Zone {
        self.rdata(owner, RData::MX(MX::new(preference, name(exchange))))
    }

    /// A PTR record for `ip` (its in-addr.arpa / ip6.arpa name must be in the zone: serve
    /// `Zone::new("in-addr.arpa")`, `Zone::new("ip6.arpa")` or `Zone::root()`).
    pub fn ptr(self, ip: IpAddr, target: &str) -> Zone {
        let owner = Name::from(ip).to_ascii();
        self.ptr_at(&owner, target)
    }

    /// A PTR record at an explicit owner name.
    pub fn ptr_at(self, owner: &str, target: &str) -> Zone {
        self.rdata(owner, RData::PTR(PTR(name(target))))
    }

    /// A CNAME record.
    pub fn cname(self, owner: &str, target: &str) -> Zone {
        self.rdata(owner, RData::CNAME(CNAME(name(target))))
    }

    /// Queries of `owner` (of `rtype`, or of every type) fail with `fault`.
    pub fn fault(mut self, owner: &str, rtype: Option<RecordType>, fault: Fault) -> Zone {
        let n = self.owner(owner);
        self.faults.push(FaultRule {
            name: LowerName::new(&n),
            rtype,
            fault,
        });
        self
    }

    /// Every query of `owner` is answered SERVFAIL.
    pub fn servfail(self, owner: &str) -> Zone {
        self.fault(owner, None, Fault::ServFail)
    }

    /// Queries of `owner` for `rtype` are answered SERVFAIL.
    pub fn servfail_type(self, owner: &str, rtype: RecordType) -> Zone {
        self.fault(owner, Some(rtype), Fault::ServFail)
    }

    /// Queries of `owner` are never answered (the resolver times out).
    pub fn silent(self, owner: &str) -> Zone {
        self.fault(owner, None, Fault::Silent)
    }

    fn build(
        self,
    ) -> (
        LowerName,
        InMemoryZoneHandler<TokioRuntimeProvider>,
        Vec<FaultRule>,
    ) {
        let origin = self.origin.clone();
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let label = |l: &str| {
            let mut n = Name::from_ascii(l).unwrap();
            if !origin.is_root() {
                n = n.append_domain(&origin).unwrap();
            }
            n.set_fqdn(true);
            n
        };
        let soa = SOA::new(
            label("ns"),
            label("hostmaster"),
            1,
            3600,
            600,
            86400,
            self.negative_ttl,
        );
        let soa = Record::from_rdata(origin.clone(), self.negative_ttl, RData::SOA(soa));
        assert!(zone.upsert_mut(soa, 1), "SOA of {origin}");
        for record in self.records {
            // false for a record identical to one already there: DNS keeps one (an RRset).
            zone.upsert_mut(record, 1);
        }
        (LowerName::new(&origin), zone, self.faults)
    }
}

/// One query the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Lower case, without the final dot.
    pub name: String,
    pub rtype: RecordType,
    /// Over TCP (else UDP).
    pub tcp: bool,
}

type QueryLog = Arc<Mutex<Vec<Query>>>;

/// The request handler: the catalog of zones, with faults in front and a query log.
pub struct Handler {
    catalog: Catalog,
    faults: Vec<FaultRule>,
    log: QueryLog,
}

impl Handler {
    fn fault_for(&self, n: &LowerName, rtype: RecordType) -> Option<Fault> {
        self.faults
            .iter()
            .find(|f| &f.name == n && f.rtype.is_none_or(|t| t == rtype))
            .map(|f| f.fault)
    }
}

// `RequestHandler` is an `#[async_trait]` trait: this is its desugared signature.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let mut response_handle = response_handle;
            let fault = match request.request_info() {
                Ok(info) => {
                    let qname = info.query.name().clone();
                    let rtype = info.query.query_type();
                    let text = qname.to_string().to_ascii_lowercase();
                    let text = text.strip_suffix('.').unwrap_or(&text).to_string();
                    let tcp = request.protocol() == Protocol::Tcp;
                    self.log.lock().unwrap().push(Query {
                        name: text,
                        rtype,
                        tcp,
                    });
                    self.fault_for(&qname, rtype)
                }
                Err(_) => None,
            };
            match fault {
                None => {
                    self.catalog
                        .handle_request::<R, T>(request, response_handle)
                        .await
                }
                Some(Fault::ServFail) => {
                    let response = MessageResponseBuilder::new(&request.queries, None)
                        .error_msg(&request.metadata, ResponseCode::ServFail);
                    match response_handle.send_response(response).await {
                        Ok(info) => info,
                        Err(_) => silent_info(request),
                    }
                }
                Some(Fault::Silent) => silent_info(request),
            }
        })
    }
}

/// What the handler reports for a request it does not answer.
fn silent_info(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// A running DNS server; stops on Drop.
pub struct DnsFixture {
    addr: SocketAddr,
    server: Option<Server<Handler>>,
    log: QueryLog,
}

impl DnsFixture {
    /// Serves `zones` on 127.0.0.1 (UDP and TCP, same random port).
    pub async fn start(zones: Vec<Zone>) -> DnsFixture {
        let mut catalog = Catalog::new();
        let mut faults = Vec::new();
        let mut origins = HashSet::new();
        for zone in zones {
            let (origin, handler, f) = zone.build();
            assert!(origins.insert(origin.clone()), "zone {origin} given twice");
            catalog.upsert(origin, vec![Arc::new(handler) as Arc<dyn ZoneHandler>]);
            faults.extend(f);
        }
        let log = QueryLog::default();
        let handler = Handler {
            catalog,
            faults,
            log: log.clone(),
        };
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        DnsFixture {
            addr,
            server: Some(server),
            log,
        }
    }

    /// The server's address (`ip:port`), for `dns.nameservers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query received so far, in order.
    pub fn queries(&self) -> Vec<Query> {
        self.log.lock().unwrap().clone()
    }

    /// How many queries of `name` (without the final dot) for `rtype` were received.
    pub fn query_count(&self, name: &str, rtype: RecordType) -> usize {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.name == name && q.rtype == rtype)
            .count()
    }

    /// How many of those came over TCP.
    pub fn tcp_query_count(&self, name: &str, rtype: RecordType) -> usize {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.name == name && q.rtype == rtype && q.tcp)
            .count()
    }
}

impl Drop for DnsFixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Cancelling stops the accept loops; dropping the server aborts its tasks.
            server.shutdown_token().cancel();
            drop(server);
        }
    }
}

/// A UDP socket and a TCP listener on the same random port of 127.0.0.1.
async fn bind_pair() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A name server that never answers: a bound UDP socket nobody reads, and a TCP listener
/// nobody accepts from. Lookups against it time out.
pub struct SilentServer {
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
}

impl SilentServer {
    /// Binds on 127.0.0.1 with a random port.
    pub async fn start() -> SilentServer {
        let (udp, tcp) = bind_pair().await;
        SilentServer { udp, tcp }
    }

    /// Its address, for `dns.nameservers`.
    pub fn addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap()
    }
}
