//! Policy hot reload: explicit (SIGHUP's path), on file change, refused when invalid, and
//! never under a session in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, LineClient};

fn rule(domain: &str) -> String {
    format!(
        "rules:\n  - name: block-{domain}\n    when: {{ mail_from.domain: {domain} }}\n    action: reject\n"
    )
}

async fn mail_code(c: &mut LineClient, from: &str) -> u16 {
    let code = c.cmd(&format!("MAIL FROM:<{from}>")).await.0;
    c.cmd("RSET").await;
    code
}

async fn greeted(gw: &Gateway) -> LineClient {
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO reload.example").await.0, 250);
    c
}

#[tokio::test]
async fn reload_applies_to_new_sessions_only_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, rule("one.example")).unwrap();
    let p = path.clone();
    let gw = Gateway::start(|c| c.policy = Some(p)).await;
    let mut before = greeted(&gw).await;
    assert_eq!(mail_code(&mut before, "a@one.example").await, 550);
    assert_eq!(mail_code(&mut before, "a@two.example").await, 250);

    std::fs::write(&path, rule("two.example")).unwrap();
    let took = gw
        .running
        .as_ref()
        .unwrap()
        .reload()
        .expect("valid policy reloads");
    assert!(took < Duration::from_secs(1), "reload took {took:?}");
    println!("policy reload took {took:?}");
    // The session that started before keeps its policy...
    assert_eq!(mail_code(&mut before, "a@one.example").await, 550);
    assert_eq!(mail_code(&mut before, "a@two.example").await, 250);
    // ...new sessions get the new one.
    let mut after = greeted(&gw).await;
    assert_eq!(mail_code(&mut after, "a@one.example").await, 250);
    assert_eq!(mail_code(&mut after, "a@two.example").await, 550);

    // A broken file is refused with its position; the last good policy keeps serving.
    std::fs::write(
        &path,
        "rules:\n  - name: x\n    when: { no.such.fact: 1 }\n    action: reject\n",
    )
    .unwrap();
    let err = gw
        .running
        .as_ref()
        .unwrap()
        .reload()
        .expect_err("broken policy refused");
    assert!(
        err.to_string().contains("policy.yaml:3:13: unknown fact"),
        "{err}"
    );
    let mut later = greeted(&gw).await;
    assert_eq!(mail_code(&mut later, "a@two.example").await, 550);
    assert_eq!(
        gw.metric("portcullis_config_reloads_total{result=\"error\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("portcullis_config_reloads_total{result=\"ok\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_changed_policy_file_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, rule("one.example")).unwrap();
    let p = path.clone();
    let gw = Gateway::start(|c| c.policy = Some(p)).await;
    std::fs::write(&path, rule("three.example")).unwrap();
    let mut seen = false;
    for _ in 0..100 {
        let mut c = greeted(&gw).await;
        if mail_code(&mut c, "a@three.example").await == 550 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the watcher never reloaded the changed file");
    assert!(
        gw.metric("portcullis_config_reloads_total{result=\"ok\"}")
            .await
            .is_some_and(|v| v >= 1.0)
    );
}

#[test]
fn sighup_reloads_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, metrics) = (common::free_port(), common::free_port());
    std::fs::write(dir.path().join("policy.yaml"), rule("one.example")).unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: gw.example.test\naccepted_domains: [example.test]\nlisten: [\"127.0.0.1:{smtp}\"]\nmetrics: {{ listen: \"127.0.0.1:{metrics}\" }}\nauth: {{ enabled: false }}\nbackend: {{ url: \"maildir:{}\" }}\npolicy: policy.yaml\n",
            dir.path().join("mail").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let value = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => common::metric_value(
                    &common::http_get(addr, "/metrics").await.1,
                    "portcullis_config_reloads_total{result=\"ok\"}",
                ),
                // Not listening yet.
                Err(_) => None,
            }
        })
    };
    let mut up = false;
    for _ in 0..100 {
        if value(&rt) == Some(0.0) {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        up,
        "gateway did not start, or did not expose a reload count of 0"
    );
    std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        if value(&rt) == Some(1.0) {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(reloaded, "SIGHUP did not reload");
    assert!(status.success(), "{status:?}");
}
