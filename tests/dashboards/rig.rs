//! The gateways the dashboard test watches, and the traffic that should light every panel.
//!
//! Owns: four real gateways in this process, each for one part of the dashboard, their
//! DNS fixture, Redis and policy files, and the SMTP/milter dialogues driven through them
//! (each reply asserted, so traffic that silently did something else fails here rather
//! than as a dark panel). Must not: talk to Prometheus or read the dashboard.
//!
//! - `main`: authentication and DNSBL through the DNS fixture, STARTTLS with a certificate
//!   that expires in 7 days, a policy whose rules turn a header into each verdict and a
//!   rate limit, a quarantine store, a deny list, verification of spilled messages.
//! - `shared`: greylisting and its triplets in a real redis-server, which `outage` kills.
//! - `broken`: a backend nobody listens on, and room for 3 sessions only.
//! - `milter`: milter mode, driven by miltertest and by packets that break the protocol.
//!
//! Everything listens on 127.0.0.1; clients come from 127.0.0.0/8 addresses. What each
//! round sends is in `rig/traffic.rs`.

mod traffic;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::dns::{DnsFixture, Fault, Zone};
use crate::common::redis::RedisServer;
use crate::common::{Gateway, LineClient, free_port, miltertest};
use portcullis::config::schema::{DnsblZoneConfig, StateBackend, TlsConfig};
use tokio::io::AsyncWriteExt;

/// The policy of `main`: a header picks the verdict, one sender domain is rate limited,
/// the DNSBL zone refuses at connect.
const POLICY: &str = r#"rules:
  - name: dnsbl-listed
    when: { dnsbl.listed: bl.test }
    action: reject
  - name: verdict-tag
    when: { header: { regex: "(?i)^x-verdict: tag" } }
    action: tag
  - name: verdict-quarantine
    when: { header: { regex: "(?i)^x-verdict: quarantine" } }
    action: quarantine
  - name: verdict-tempfail
    when: { header: { regex: "(?i)^x-verdict: tempfail" } }
    action: tempfail
  - name: verdict-reject
    when: { header: { regex: "(?i)^x-verdict: reject" } }
    action: reject
  - name: limited-sender
    when: { mail_from.domain: limited.example }
    limit: { key: mail_from.domain, rate: 1/hour, burst: 1 }
"#;

/// The client address `main` refuses by its deny list.
const DENIED: [u8; 4] = [127, 0, 0, 66];
/// The client address the DNSBL zone `bl.test` lists.
const LISTED: [u8; 4] = [127, 0, 0, 2];

/// The gateways and what they depend on, alive as long as the rig.
pub struct Rig {
    pub main: Gateway,
    pub shared: Gateway,
    pub broken: Gateway,
    pub milter: Gateway,
    /// A metrics address nothing listens on: a scrape target that is down (GatewayDown).
    pub dead: SocketAddr,
    redis: RedisServer,
    /// The connection held open through the rounds, so that a scrape sees a session in
    /// progress (the active-session gauges); `None` once closed.
    held: Option<LineClient>,
    /// A milter connection held open likewise (the milter connection gauge).
    held_milter: Option<tokio::net::TcpStream>,
    policy: PathBuf,
    tls: TlsConfig,
    _dns: DnsFixture,
    _dir: tempfile::TempDir,
}

/// The DNS of `main`: SPF and DMARC of the sender domains, a DMARC record that fails to
/// resolve (temperror), and the DNSBL listing of `LISTED`. Every other name is NXDOMAIN.
fn zones() -> Vec<Zone> {
    vec![
        Zone::root()
            .txt("pass.example", "v=spf1 ip4:127.0.0.0/8 -all")
            .txt("_dmarc.pass.example", "v=DMARC1; p=none")
            .txt("fail.example", "v=spf1 ip4:192.0.2.1 -all")
            .txt("_dmarc.fail.example", "v=DMARC1; p=none")
            .fault("_dmarc.broken.example", None, Fault::ServFail)
            .a("2.0.0.127.bl.test", "127.0.0.2".parse().unwrap()),
    ]
}

/// A self-signed certificate for gw.example.test valid from yesterday for `days` days:
/// (certificate PEM, key PEM).
fn certificate(days: u64) -> (String, String) {
    let now = crate::common::prometheus::unix_now() as u64;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let mut params = rcgen::CertificateParams::new(vec!["gw.example.test".into()]).unwrap();
    params.not_before = epoch + Duration::from_secs(now - 86_400);
    params.not_after = epoch + Duration::from_secs(now + days * 86_400);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Rig {
    pub async fn start() -> Rig {
        let dns = DnsFixture::start(zones()).await;
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, POLICY).unwrap();
        let tls = TlsConfig {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            require: Default::default(),
        };
        let (cert, key) = certificate(7);
        std::fs::write(&tls.cert, cert).unwrap();
        std::fs::write(&tls.key, key).unwrap();
        let (ns, p, t, q) = (
            dns.addr(),
            policy.clone(),
            tls.clone(),
            dir.path().join("quarantine"),
        );
        let main = Gateway::start(move |c| {
            c.auth.enabled = true;
            c.dns.nameservers = vec![ns];
            c.dns.timeout = Duration::from_secs(2);
            c.dns.attempts = 1;
            c.dnsbl.zones = vec![DnsblZoneConfig {
                zone: "bl.test".into(),
                ..DnsblZoneConfig::default()
            }];
            c.policy = Some(p);
            c.tls = Some(t);
            c.quarantine.dir = Some(q);
            c.connections.deny = vec![IpAddr::from(DENIED).into()];
            // The smallest spool in memory (64 KiB): a bigger message spills to disk and
            // is read back for verification within auth.max_verify_memory.
            c.spool.memory_limit = 64 * 1024;
            // The session held open through the rounds must not time out.
            c.timeouts.command = Duration::from_secs(300);
        })
        .await;

        let redis = RedisServer::start();
        let url = redis.url();
        let shared = Gateway::start(move |c| {
            c.state.backend = StateBackend::Redis;
            c.state.redis.urls = vec![url];
            c.state.redis.reconnect_min = Duration::from_millis(100);
            c.state.redis.reconnect_max = Duration::from_millis(400);
            c.state.redis.health_interval = Duration::from_millis(200);
            c.greylisting.enabled = true;
            c.greylisting.delay = Duration::from_secs(1);
            c.greylisting.auto_allow_after = 0;
        })
        .await;

        let dead_backend = free_port();
        let broken = Gateway::start(move |c| {
            c.backend.url = format!("smtp://127.0.0.1:{dead_backend}").parse().unwrap();
            c.backend.probe_interval = Duration::from_secs(1);
            c.timeouts.backend_connect = Duration::from_secs(1);
            c.limits.max_sessions = 3;
        })
        .await;

        let milter = Gateway::start_milter(|_| {}).await;
        miltertest::ensure_installed();

        let mut rig = Rig {
            main,
            shared,
            broken,
            milter,
            dead: SocketAddr::from(([127, 0, 0, 1], free_port())),
            redis,
            held: None,
            held_milter: None,
            policy,
            tls,
            _dns: dns,
            _dir: dir,
        };
        rig.held = Some(rig.main.client().await);
        let milter_addr = rig.milter.milter_addr.expect("an inet milter listener");
        rig.held_milter = Some(tokio::net::TcpStream::connect(milter_addr).await.unwrap());
        rig
    }

    /// The scrape targets: each gateway's metrics listener, and the dead one.
    pub fn targets(&self) -> Vec<SocketAddr> {
        vec![
            self.main.metrics_addr,
            self.shared.metrics_addr,
            self.broken.metrics_addr,
            self.milter.metrics_addr,
            self.dead,
        ]
    }
}
