//! Gateways whose rate limits live in Redis, and what the Redis suites ask of them
//! (`shared_state.rs`, `redis_tls.rs`).
//!
//! Owns: the policy with one per-sender-domain limit, the gateway set up for Redis with
//! quick reconnects, waiting for `portcullis_state_backend_up`, and one bounded MAIL FROM.
//! Must not: start Redis (`redis.rs` does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::config::Config;
use portcullis::config::schema::StateBackend;

use super::Gateway;

/// Whether the gateway's shared store is up.
pub const UP: &str = "portcullis_state_backend_up{backend=\"redis\"}";

/// A policy in `dir` with one per-sender-domain limit: `n` messages a minute, all at once.
pub fn limit_policy(dir: &Path, n: u32) -> PathBuf {
    let path = dir.join("limits.yaml");
    let text = format!(
        "rules:\n  - name: sender-domain-rate\n    limit: {{ key: mail_from.domain, rate: {n}/minute, burst: {n} }}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A gateway with `policy` and its state in Redis, reconnecting within 100-400 ms and
/// checking the connection every 200 ms; then `tweak` (the URLs, TLS, failure mode…).
pub async fn redis_gateway(
    policy: &Path,
    tweak: impl FnOnce(&mut Config) + Send + 'static,
) -> Gateway {
    let policy = policy.to_path_buf();
    Gateway::start(move |c| {
        c.policy = Some(policy);
        c.state.backend = StateBackend::Redis;
        c.state.redis.reconnect_min = Duration::from_millis(100);
        c.state.redis.reconnect_max = Duration::from_millis(400);
        c.state.redis.health_interval = Duration::from_millis(200);
        tweak(c);
    })
    .await
}

/// Waits (5 s at most) until the gateway's `portcullis_state_backend_up` is `want`.
pub async fn wait_up(gw: &Gateway, want: f64) {
    for _ in 0..200 {
        if gw.metric(UP).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("state_backend_up never became {want}");
}

/// One MAIL FROM in a fresh session; the reply code and text. Bounded: a hang fails.
pub async fn mail_from(gw: &Gateway, from: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = gw.client().await;
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        c.cmd(&format!("MAIL FROM:<{from}>")).await
    })
    .await
    .expect("MAIL FROM answered without hanging")
}
