//! Graceful shutdown: idle sessions get 421, an in-flight DATA finishes within the grace
//! period, and one that outlives it gets 421 with nothing delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Gateway;

fn stop_in_background(gw: &mut Gateway) -> tokio::task::JoinHandle<portcullis::shutdown::Drained> {
    let running = gw.running.take().expect("running");
    tokio::spawn(running.stop())
}

#[tokio::test]
async fn idle_session_gets_421_and_listener_closes() {
    let mut gw = Gateway::start(|_| {}).await;
    let mut c = gw.client().await;
    assert_eq!(c.cmd("EHLO idle.example").await.0, 250);
    let stopping = stop_in_background(&mut gw);
    let (code, text) = c.read_reply().await;
    assert_eq!((code, text.contains("4.3.2")), (421, true), "{text}");
    assert_eq!(
        stopping.await.unwrap(),
        portcullis::shutdown::Drained::Clean
    );
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn in_flight_data_completes_within_grace() {
    let mut gw = Gateway::start(|c| c.timeouts.shutdown_grace = Duration::from_secs(10)).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["late@example.test"]).await;
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n").await;
    let stopping = stop_in_background(&mut gw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(b"second half\r\n.\r\n").await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 250, "{text}");
    // The next command boundary sees the shutdown.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").await.0, 421);
    assert_eq!(
        stopping.await.unwrap(),
        portcullis::shutdown::Drained::Clean
    );
    assert_eq!(gw.delivered("example.test", "late").len(), 1);
}

#[tokio::test]
async fn data_outliving_the_grace_period_gets_421_and_is_not_delivered() {
    let mut gw = Gateway::start(|c| c.timeouts.shutdown_grace = Duration::from_millis(300)).await;
    let mut c = gw.client().await;
    c.envelope("a@sender.example", &["never@example.test"])
        .await;
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(b"Subject: too slow\r\n").await;
    let stopping = stop_in_background(&mut gw);
    let (code, _) = c.read_reply().await;
    assert_eq!(code, 421);
    assert_eq!(
        stopping.await.unwrap(),
        portcullis::shutdown::Drained::Aborted
    );
    assert!(gw.delivered("example.test", "never").is_empty());
}
