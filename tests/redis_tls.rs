//! Redis over TLS (`rediss://`): real TLS-only redis-servers (`--port 0 --tls-port`, and a
//! Sentinel) with certificates made at test time, and what the gateway does when the TLS
//! handshake or the password is refused: the store stays down and, fail-closed, what needs
//! it is deferred with 451 4.3.0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Gateway;
use common::pki::Pki;
use common::redis::RedisServer;
use common::state::{UP, limit_policy, mail_from, redis_gateway, wait_up};
use portcullis::config::schema::{FailureMode, RedisConfig, RedisMode, RedisTlsConfig};
use portcullis::config::secret::Secret;

/// A gateway with the limit of `policy` in Redis (`on_failure: closed`, so a connection
/// that does not work shows as a deferral; no connection limits, so only MAIL needs Redis),
/// then `tweak` on `state.redis` (the URLs, TLS, passwords).
async fn gateway(policy: &Path, tweak: impl FnOnce(&mut RedisConfig) + Send + 'static) -> Gateway {
    redis_gateway(policy, move |c| {
        c.state.redis.on_failure = FailureMode::Closed;
        c.state.redis.timeout = Duration::from_secs(1);
        c.timeouts.check = Duration::from_secs(5);
        c.connections.max_per_ip = 0;
        c.connections.max_per_network = 0;
        tweak(&mut c.state.redis);
    })
    .await
}

/// `state.redis.tls` trusting `ca`, presenting `client` if given.
fn tls(ca: Option<PathBuf>, client: Option<(PathBuf, PathBuf)>) -> Option<RedisTlsConfig> {
    let (cert_file, key_file) = client.unzip();
    Some(RedisTlsConfig {
        ca_file: ca,
        cert_file,
        key_file,
    })
}

const DEFERRED: (u16, &str) = (
    451,
    "451 4.3.0 Temporary local problem, please try again later",
);

/// Asserts that `gw` never got a working connection: after several reconnection attempts
/// the store is still down, and MAIL is deferred as `on_failure: closed` says.
async fn assert_refused(gw: &Gateway, what: &str) {
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(gw.metric(UP).await, Some(0.0), "{what}: the store came up");
    let (code, text) = mail_from(gw, "x@refused.example").await;
    assert_eq!((code, text.as_str()), DEFERRED, "{what}");
    let unavailable =
        "portcullis_ratelimit_checks_total{rule=\"sender-domain-rate\",result=\"unavailable\"}";
    assert!(
        gw.metric(unavailable).await.is_some_and(|v| v >= 1.0),
        "{what}"
    );
}

#[tokio::test]
async fn two_gateways_share_a_rate_limit_through_a_tls_only_redis() {
    let pki = Pki::new("shared CA");
    let redis = RedisServer::tls(&pki, None, &["--tls-auth-clients", "no"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 4);
    let start = |url: String, ca: PathBuf| {
        gateway(&policy, move |r| {
            r.urls = vec![url];
            r.key_prefix = "tls1:".into();
            r.tls = tls(Some(ca), None);
        })
    };
    let a = start(redis.tls_url(), pki.ca()).await;
    let b = start(redis.tls_url(), pki.ca()).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    let tries = (0..10).map(|i| mail_from(if i % 2 == 0 { &a } else { &b }, "x@flood.example"));
    let replies = futures_util::future::join_all(tries).await;
    let codes: Vec<u16> = replies.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == 250).count(),
        4,
        "{replies:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == 451).count(),
        6,
        "{replies:?}"
    );
    for gw in [&a, &b] {
        let fallbacks = "portcullis_state_fallbacks_total{operation=\"rate\"}";
        assert_eq!(
            gw.metric(fallbacks).await,
            Some(0.0),
            "every answer came from Redis"
        );
    }
    // The only way in is TLS: the server has no plain port.
    assert!(!redis.ping_plain(), "a plain PING was answered");
}

#[tokio::test]
async fn a_required_client_certificate_is_presented_and_without_one_the_state_is_unavailable() {
    let pki = Pki::new("client CA");
    let other = Pki::new("other CA");
    let redis = RedisServer::tls(&pki, None, &["--tls-auth-clients", "yes"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 100);
    let start = |client: Option<(PathBuf, PathBuf)>| {
        let (url, ca) = (redis.tls_url(), pki.ca());
        gateway(&policy, move |r| {
            r.urls = vec![url];
            r.tls = tls(Some(ca), client);
        })
    };
    let with = start(Some(pki.client())).await;
    wait_up(&with, 1.0).await;
    assert_eq!(mail_from(&with, "x@ok.example").await.0, 250);

    let without = start(None).await;
    assert_refused(&without, "no client certificate").await;
    // A certificate the server's CA did not sign is no better.
    let foreign = start(Some(other.client())).await;
    assert_refused(&foreign, "a client certificate of another CA").await;
}

#[tokio::test]
async fn a_server_certificate_of_another_ca_is_refused() {
    let pki = Pki::new("server CA");
    let other = Pki::new("other CA");
    let redis = RedisServer::tls(&pki, None, &["--tls-auth-clients", "no"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 100);
    let start = |tls_config: Option<RedisTlsConfig>| {
        let url = redis.tls_url();
        gateway(&policy, move |r| {
            r.urls = vec![url];
            r.tls = tls_config;
        })
    };
    let right = start(tls(Some(pki.ca()), None)).await;
    wait_up(&right, 1.0).await;
    assert_eq!(mail_from(&right, "x@ok.example").await.0, 250);

    let wrong = start(tls(Some(other.ca()), None)).await;
    assert_refused(&wrong, "ca_file of another CA").await;
    // Without ca_file the system's roots are trusted, and they did not sign it either.
    let system = start(None).await;
    assert_refused(&system, "the system's roots").await;
}

#[tokio::test]
async fn a_password_in_the_url_or_in_password_works_and_a_wrong_one_fails() {
    let pki = Pki::new("password CA");
    let redis = RedisServer::tls(
        &pki,
        Some("s3cret"),
        &["--tls-auth-clients", "no", "--requirepass", "s3cret"],
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 100);
    let start = |url: String, password: Option<&str>| {
        let (ca, password) = (pki.ca(), password.map(Secret::new));
        gateway(&policy, move |r| {
            r.urls = vec![url];
            r.password = password;
            r.tls = tls(Some(ca), None);
        })
    };
    let port = redis.port;
    let in_url = start(format!("rediss://:s3cret@127.0.0.1:{port}/0"), None).await;
    wait_up(&in_url, 1.0).await;
    assert_eq!(mail_from(&in_url, "x@ok.example").await.0, 250);
    let in_key = start(redis.tls_url(), Some("s3cret")).await;
    wait_up(&in_key, 1.0).await;
    assert_eq!(mail_from(&in_key, "x@ok.example").await.0, 250);

    let wrong = start(redis.tls_url(), Some("guess")).await;
    assert_refused(&wrong, "a wrong password").await;
    let none = start(redis.tls_url(), None).await;
    assert_refused(&none, "no password").await;
}

#[tokio::test]
async fn sentinel_over_tls_with_its_own_password_and_the_masters() {
    let pki = Pki::new("sentinel CA");
    let master = RedisServer::tls(
        &pki,
        Some("master-pw"),
        &["--tls-auth-clients", "no", "--requirepass", "master-pw"],
    );
    let sentinel = RedisServer::sentinel_tls(&pki, &master, "sentinel-pw", "master-pw");
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 3);
    let start = |sentinel_pw: &str, master_pw: &str| {
        let url = format!("rediss://127.0.0.1:{}", sentinel.port);
        let (ca, s, m) = (pki.ca(), Secret::new(sentinel_pw), Secret::new(master_pw));
        gateway(&policy, move |r| {
            r.mode = RedisMode::Sentinel;
            r.urls = vec![url];
            r.key_prefix = "tls5:".into();
            r.sentinel_password = Some(s);
            r.password = Some(m);
            r.tls = tls(Some(ca), None);
        })
    };
    let a = start("sentinel-pw", "master-pw").await;
    let b = start("sentinel-pw", "master-pw").await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    let mut admitted = 0;
    for i in 0..8 {
        let (code, text) = mail_from(if i % 2 == 0 { &a } else { &b }, "x@flood.example").await;
        assert!(code == 250 || code == 451, "{code} {text}");
        admitted += usize::from(code == 250);
    }
    assert_eq!(admitted, 3, "the two gateways count together on the master");

    let wrong_master = start("sentinel-pw", "guess").await;
    assert_refused(&wrong_master, "a wrong master password").await;
    let wrong_sentinel = start("guess", "master-pw").await;
    assert_refused(&wrong_sentinel, "a wrong sentinel password").await;
}

#[test]
fn check_config_names_the_line_of_an_unreadable_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis.yaml");
    let missing = dir.path().join("missing-ca.pem");
    let text = format!(
        "hostname: gw.example.test\nlisten: [\"127.0.0.1:2525\"]\naccepted_domains: [example.test]\nstate:\n  backend: redis\n  redis:\n    urls: [\"rediss://127.0.0.1:6380/0\"]\n    tls:\n      ca_file: {}\n",
        missing.display()
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "{}:9:7: cannot read {}: ",
        path.display(),
        missing.display()
    );
    assert!(err.contains(&want), "{err}");
}
