//! Rate limits and greylisting shared by two gateways through a real redis-server, and
//! what happens when Redis goes away and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::Gateway;
use common::redis::RedisServer;
use common::state::{limit_policy, mail_from, redis_gateway, wait_up};
use portcullis::config::schema::{FailureMode, StateBackend};

/// A per-sender-domain limit: `n` messages a minute, all of them at once.
/// Starts a gateway whose state lives in `redis` under `prefix`.
async fn gateway(redis: &RedisServer, prefix: &str, policy: &Path, closed: bool) -> Gateway {
    gateway_with(redis, prefix, policy, closed, |_| {}).await
}

async fn gateway_with(
    redis: &RedisServer,
    prefix: &str,
    policy: &Path,
    closed: bool,
    tweak: impl FnOnce(&mut portcullis::config::Config) + Send + 'static,
) -> Gateway {
    let (url, prefix) = (redis.url(), prefix.to_string());
    redis_gateway(policy, move |c| {
        c.state.redis.urls = vec![url];
        c.state.redis.key_prefix = prefix;
        if closed {
            c.state.redis.on_failure = FailureMode::Closed;
        }
        tweak(c);
    })
    .await
}

/// `attempts` MAIL FROMs spread over both gateways, all at once; how many got 250.
async fn admitted(a: &Gateway, b: &Gateway, from: &str, attempts: usize) -> usize {
    let tries = (0..attempts).map(|i| mail_from(if i % 2 == 0 { a } else { b }, from));
    let replies = futures_util::future::join_all(tries).await;
    for (code, text) in &replies {
        assert!(
            *code == 250 || (*code == 451 && text.contains("4.7.1 Rate limit exceeded")),
            "{code} {text}"
        );
    }
    replies.iter().filter(|(code, _)| *code == 250).count()
}

/// `series` summed over both gateways; `None` when neither exposes it. A per-rule series
/// appears with its first count, and which gateway counts first is up to the race, so one
/// gateway without it adds nothing (a renamed series is missing from both and fails).
async fn metric_sum(a: &Gateway, b: &Gateway, series: &str) -> Option<f64> {
    let exposed: Vec<f64> = [a.metric(series).await, b.metric(series).await]
        .into_iter()
        .flatten()
        .collect();
    (!exposed.is_empty()).then(|| exposed.iter().sum())
}

#[tokio::test]
async fn two_gateways_admit_exactly_n_per_minute_together() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 5);
    let a = gateway(&redis, "t1:", &policy, false).await;
    let b = gateway(&redis, "t1:", &policy, false).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;

    // 16 concurrent attempts, half through each gateway: the script admits exactly 5.
    assert_eq!(admitted(&a, &b, "x@flood.example", 16).await, 5);
    // Each gateway alone would have admitted 5 with local counters; together they did not.
    let allowed =
        "portcullis_ratelimit_checks_total{rule=\"sender-domain-rate\",result=\"allowed\"}";
    let exceeded =
        "portcullis_ratelimit_checks_total{rule=\"sender-domain-rate\",result=\"exceeded\"}";
    assert_eq!(metric_sum(&a, &b, allowed).await, Some(5.0));
    assert_eq!(metric_sum(&a, &b, exceeded).await, Some(11.0));
    // Another sender domain has its own bucket.
    assert_eq!(admitted(&a, &b, "x@calm.example", 4).await, 4);
    assert_eq!(
        metric_sum(
            &a,
            &b,
            "portcullis_state_fallbacks_total{operation=\"rate\"}"
        )
        .await,
        Some(0.0)
    );

    // Every key is ours (prefixed) and expires: Redis never grows without bound.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let rate_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with("t1:rate:")).collect();
    assert_eq!(rate_keys.len(), 2, "{keys:?}");
    for key in &rate_keys {
        assert!(key.starts_with("t1:rate:sender-domain-rate/"), "{key}");
    }
    // Sessions still closing hold a place in t1:sessions:{127.0.0.0/24}:… for a moment.
    for key in &keys {
        let ours = key.starts_with("t1:rate:") || key.starts_with("t1:sessions:");
        assert!(ours, "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 600_000, "{key} has TTL {ttl} ms");
    }
}

#[tokio::test]
async fn redis_down_falls_back_to_local_counters_and_sharing_resumes_when_it_is_back() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 3);
    let a = gateway(&redis, "t2:", &policy, false).await;
    let b = gateway(&redis, "t2:", &policy, false).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    assert_eq!(admitted(&a, &b, "x@one.example", 8).await, 3, "shared");

    redis.stop();
    // Fail-open: each gateway counts alone, so 3 per gateway; no attempt hangs.
    assert_eq!(
        admitted(&a, &b, "x@two.example", 10).await,
        6,
        "per gateway"
    );
    wait_up(&a, 0.0).await;
    wait_up(&b, 0.0).await;
    assert!(
        a.metric("portcullis_state_fallbacks_total{operation=\"rate\"}")
            .await
            .is_some_and(|v| v >= 1.0)
    );
    assert!(
        b.metric("portcullis_state_fallbacks_total{operation=\"rate\"}")
            .await
            .is_some_and(|v| v >= 1.0)
    );

    redis.restart();
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    let fallbacks = metric_sum(
        &a,
        &b,
        "portcullis_state_fallbacks_total{operation=\"rate\"}",
    )
    .await
    .expect("both gateways fell back");
    assert_eq!(
        admitted(&a, &b, "x@three.example", 8).await,
        3,
        "shared again"
    );
    assert_eq!(
        metric_sum(
            &a,
            &b,
            "portcullis_state_fallbacks_total{operation=\"rate\"}"
        )
        .await,
        Some(fallbacks),
        "no fallback once Redis is back"
    );
}

#[tokio::test]
async fn fail_closed_defers_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 3);
    // No connection limits here: only the rate limit at MAIL needs Redis.
    let a = gateway_with(&redis, "t3:", &policy, true, |c| {
        c.connections.max_per_ip = 0;
        c.connections.max_per_network = 0;
    })
    .await;
    // With the default connection limits, admission needs Redis too.
    let b = gateway(&redis, "t3:", &policy, true).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    assert_eq!(mail_from(&a, "x@one.example").await.0, 250);
    assert_eq!(mail_from(&b, "x@one.example").await.0, 250);
    redis.stop();
    let mut refused = common::LineClient::connect(b.addr).await;
    assert_eq!(
        refused.read_reply().await,
        (
            421,
            "421 4.3.0 Temporary local problem, please try again later".to_string()
        )
    );
    assert_eq!(
        b.metric("portcullis_limit_hits_total{limit=\"state_unavailable\"}")
            .await,
        Some(1.0)
    );
    for _ in 0..3 {
        let (code, text) = mail_from(&a, "x@one.example").await;
        assert_eq!(
            (code, text.as_str()),
            (
                451,
                "451 4.3.0 Temporary local problem, please try again later"
            )
        );
    }
    assert!(
        a.metric(
            "portcullis_ratelimit_checks_total{rule=\"sender-domain-rate\",result=\"unavailable\"}"
        )
        .await
        .is_some_and(|v| v >= 3.0)
    );
    redis.restart();
    wait_up(&a, 1.0).await;
    assert_eq!(mail_from(&a, "x@one.example").await.0, 250);
}

#[tokio::test]
async fn a_greylisted_triplet_retried_through_the_other_gateway_passes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("empty.yaml");
    std::fs::write(&policy, "rules: []\n").unwrap();
    let (url, p) = (redis.url(), policy.clone());
    let start = |url: String, p: std::path::PathBuf| {
        Gateway::start(move |c| {
            c.policy = Some(p);
            c.state.backend = StateBackend::Redis;
            c.state.redis.urls = vec![url];
            c.state.redis.key_prefix = "t4:".into();
            c.greylisting.enabled = true;
            c.greylisting.delay = Duration::from_secs(1);
            c.greylisting.auto_allow_after = 0;
        })
    };
    let a = start(url.clone(), p.clone()).await;
    let b = start(url, p).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    let send = |gw: &Gateway| {
        let addr = gw.addr;
        async move {
            let mut c = common::LineClient::connect(addr).await;
            assert_eq!(c.read_reply().await.0, 220);
            c.envelope("s@sender.example", &["u@example.test"]).await;
            c.data(b"Subject: grey\r\n\r\nhello\r\n").await
        }
    };
    let (code, text) = send(&a).await;
    assert_eq!((code, text.contains("Greylisted")), (451, true), "{text}");
    // Too early through the other gateway: it knows the triplet, so "early", not "new".
    assert_eq!(send(&b).await.0, 451);
    assert_eq!(
        b.metric("portcullis_greylist_results_total{result=\"early\"}")
            .await,
        Some(1.0)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(&b).await.0, 250);
    assert_eq!(b.delivered("example.test", "u").len(), 1);
    // Remembered as passed, for either gateway.
    assert_eq!(send(&a).await.0, 250);
}

/// A gateway with connection limits and the state in `redis`.
async fn limited_gateway(redis: &RedisServer, prefix: &str, per_ip: usize, rate: u32) -> Gateway {
    let (url, prefix) = (redis.url(), prefix.to_string());
    let gw = Gateway::start(move |c| {
        c.state.backend = StateBackend::Redis;
        c.state.redis.urls = vec![url];
        c.state.redis.key_prefix = prefix;
        c.connections.max_per_ip = per_ip;
        c.connections.rate_per_minute = rate;
    })
    .await;
    wait_up(&gw, 1.0).await;
    gw
}

/// Connects and returns the client with its first reply.
async fn connect(gw: &Gateway) -> (common::LineClient, u16, String) {
    let mut c = common::LineClient::connect(gw.addr).await;
    let (code, text) = c.read_reply().await;
    (c, code, text)
}

/// True once a new session through `gw` is served (a place given back at a session's end
/// is released by the gateway just after the client has gone), within about 2 s.
async fn admitted_soon(gw: &Gateway) -> bool {
    for _ in 0..100 {
        let (mut c, code, _) = connect(gw).await;
        if code == 220 {
            assert_eq!(c.cmd("QUIT").await.0, 221);
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn concurrent_sessions_per_address_are_counted_across_gateways() {
    let redis = RedisServer::start();
    let a = limited_gateway(&redis, "t5:", 2, 0).await;
    let b = limited_gateway(&redis, "t5:", 2, 0).await;
    let (first, code, _) = connect(&a).await;
    assert_eq!(code, 220);
    let (_second, code, _) = connect(&b).await;
    assert_eq!(code, 220);
    // Each gateway holds one session from 127.0.0.1: alone, either would admit a second.
    let (_, code, text) = connect(&a).await;
    assert_eq!(
        (code, text.as_str()),
        (
            421,
            "421 4.7.0 Too many connections from your network, try again later"
        )
    );
    assert_eq!(
        a.metric("portcullis_limit_hits_total{limit=\"sessions_per_ip\"}")
            .await,
        Some(1.0)
    );
    // A session that ends gives its place back, through whichever gateway.
    drop(first);
    assert!(
        admitted_soon(&b).await,
        "the released place was never given back"
    );
}

#[tokio::test]
async fn the_connection_rate_per_address_is_shared() {
    let redis = RedisServer::start();
    let a = limited_gateway(&redis, "t6:", 0, 3).await;
    let b = limited_gateway(&redis, "t6:", 0, 3).await;
    let mut codes = Vec::new();
    for i in 0..6 {
        let (_c, code, _) = connect(if i % 2 == 0 { &a } else { &b }).await;
        codes.push(code);
    }
    assert_eq!(codes, vec![220, 220, 220, 421, 421, 421]);
    let hits = metric_sum(
        &a,
        &b,
        "portcullis_limit_hits_total{limit=\"connection_rate\"}",
    )
    .await;
    assert_eq!(hits, Some(3.0));
}

/// Gateways on `urls` in `mode`: the shared limit and greylisting both work.
async fn shared_limit_and_greylisting(
    mode: portcullis::config::schema::RedisMode,
    urls: Vec<String>,
    prefix: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 2);
    let start = |urls: Vec<String>| {
        let (policy, prefix) = (policy.clone(), prefix.to_string());
        Gateway::start(move |c| {
            c.policy = Some(policy);
            c.state.backend = StateBackend::Redis;
            c.state.redis.mode = mode;
            c.state.redis.urls = urls;
            c.state.redis.key_prefix = prefix;
            c.state.redis.timeout = Duration::from_secs(1);
            c.timeouts.check = Duration::from_secs(5);
            c.greylisting.enabled = true;
            c.greylisting.delay = Duration::from_secs(60);
        })
    };
    let a = start(urls.clone()).await;
    let b = start(urls).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    assert_eq!(admitted(&a, &b, "x@flood.example", 6).await, 2);
    // Greylisting needs two keys in one script: a hash tag keeps them in one slot.
    let mut c = a.client().await;
    c.envelope("s@sender.example", &["u@example.test"]).await;
    let (code, text) = c.data(b"Subject: grey\r\n\r\nhello\r\n").await;
    assert_eq!((code, text.contains("Greylisted")), (451, true), "{text}");
    let mut c = b.client().await;
    c.envelope("s@sender.example", &["u@example.test"]).await;
    assert_eq!(c.data(b"Subject: grey\r\n\r\nhello\r\n").await.0, 451);
    assert_eq!(
        b.metric("portcullis_greylist_results_total{result=\"early\"}")
            .await,
        Some(1.0)
    );
    let fallbacks = "portcullis_state_fallbacks_total{operation=\"greylist\"}";
    assert_eq!(metric_sum(&a, &b, fallbacks).await, Some(0.0));
    let fallbacks = "portcullis_state_fallbacks_total{operation=\"sessions\"}";
    assert_eq!(metric_sum(&a, &b, fallbacks).await, Some(0.0));
}

#[tokio::test]
async fn sentinel_mode_finds_the_master() {
    let master = RedisServer::start();
    let sentinel = RedisServer::sentinel(&master);
    shared_limit_and_greylisting(
        portcullis::config::schema::RedisMode::Sentinel,
        vec![format!("redis://127.0.0.1:{}", sentinel.port)],
        "t7:",
    )
    .await;
}

#[tokio::test]
async fn cluster_mode_keeps_each_script_in_one_slot() {
    let nodes = RedisServer::cluster();
    let urls = nodes.iter().map(|n| n.url().replace("/0", "")).collect();
    shared_limit_and_greylisting(portcullis::config::schema::RedisMode::Cluster, urls, "t8:").await;
}

#[tokio::test]
async fn a_hung_redis_costs_one_timeout_then_the_gateway_falls_back_at_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = limit_policy(dir.path(), 3);
    let a = gateway_with(&redis, "t9:", &policy, false, |c| {
        c.state.redis.timeout = Duration::from_millis(300);
    })
    .await;
    wait_up(&a, 1.0).await;
    assert_eq!(mail_from(&a, "x@one.example").await.0, 250);
    // Frozen: the connection stays open and nothing answers.
    redis.freeze(true);
    let started = std::time::Instant::now();
    assert_eq!(mail_from(&a, "x@two.example").await.0, 250, "fail-open");
    let first = started.elapsed();
    wait_up(&a, 0.0).await;
    // Once marked down, operations do not wait for Redis at all: three more limited MAILs
    // answer (by local counters: 3 per minute, so the third of the domain is refused).
    let replies = [
        mail_from(&a, "x@two.example").await.0,
        mail_from(&a, "x@two.example").await.0,
        mail_from(&a, "x@two.example").await.0,
    ];
    assert_eq!(replies, [250, 250, 451]);
    assert!(
        a.metric("portcullis_state_fallbacks_total{operation=\"rate\"}")
            .await
            .is_some_and(|v| v >= 4.0)
    );
    // Logged (and measured) for the record, not asserted: timing is for benchmarks.
    eprintln!("first operation against the hung Redis took {first:?}");
    redis.freeze(false);
    wait_up(&a, 1.0).await;
    assert_eq!(mail_from(&a, "x@three.example").await.0, 250);
}

#[tokio::test]
async fn greylisting_lets_mail_through_unrecorded_while_redis_is_down_fail_open() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("empty.yaml");
    std::fs::write(&policy, "rules: []\n").unwrap();
    let gw = gateway_with(&redis, "t10:", &policy, false, |c| {
        c.greylisting.enabled = true;
    })
    .await;
    wait_up(&gw, 1.0).await;
    redis.stop();
    // This gateway has never seen the triplet: its own memory would defer it, which is
    // not what "open" promises.
    let mut c = gw.client().await;
    c.envelope("s@sender.example", &["u@example.test"]).await;
    assert_eq!(c.data(b"Subject: grey\r\n\r\nhello\r\n").await.0, 250);
    assert_eq!(gw.delivered("example.test", "u").len(), 1);
    let unchecked = "portcullis_greylist_results_total{result=\"unchecked\"}";
    assert_eq!(gw.metric(unchecked).await, Some(1.0));
    let fallbacks = "portcullis_state_fallbacks_total{operation=\"greylist\"}";
    assert_eq!(gw.metric(fallbacks).await, Some(1.0));
}

#[tokio::test]
async fn a_long_session_keeps_its_place_by_renewing_its_lease() {
    let redis = RedisServer::start();
    let (url_a, url_b) = (redis.url(), redis.url());
    let start = |url: String| {
        Gateway::start(move |c| {
            c.state.backend = StateBackend::Redis;
            c.state.redis.urls = vec![url];
            c.state.redis.key_prefix = "t11:".into();
            c.state.redis.session_lease = Duration::from_millis(400);
            c.connections.max_per_ip = 1;
        })
    };
    let a = start(url_a).await;
    let b = start(url_b).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    let (mut long, code, _) = connect(&a).await;
    assert_eq!(code, 220);
    // Three leases later the session still holds its place (renewed every 200 ms).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(long.cmd("NOOP").await.0, 250);
        let (_, code, _) = connect(&b).await;
        assert_eq!(code, 421, "the long session's place was lost");
    }
    assert_eq!(long.cmd("QUIT").await.0, 221);
    assert!(admitted_soon(&b).await, "the place was never given back");
}
