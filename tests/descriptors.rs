//! The gateway binary under a low open-file limit: it raises the soft limit to the hard one,
//! serves only the sessions the limit can hold and tells every further client `421`, keeps
//! `/metrics` answering, and when the descriptor table fills anyway (the limit lowered
//! under it with `prlimit --pid`) takes each waiting client with its spare descriptor to
//! tell it `421`, backs off instead of spinning, and logs one line when accepts start
//! failing and one when they work again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{LineClient, free_port, http_get, metric_value};

/// The binary, stopped by PID when the test ends, pass or fail.
struct Served {
    child: Child,
    smtp: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `portcullis serve` with `extra` config lines (no DNS: 4 descriptors per session),
    /// run through `prlimit --nofile=<nofile>` when given.
    async fn start(nofile: Option<&str>, extra: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let (smtp, metrics) = (free_port(), free_port());
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "hostname: gw.example.test\n\
                 listen: [\"127.0.0.1:{smtp}\"]\n\
                 accepted_domains: [example.test]\n\
                 metrics: {{ listen: \"127.0.0.1:{metrics}\" }}\n\
                 auth: {{ enabled: false }}\n\
                 client_checks: {{ rdns: false, helo_dns: false }}\n\
                 spool: {{ memory_limit: 64KiB }}\n\
                 connections: {{ max_per_ip: 0, max_per_network: 0 }}\n\
                 backend: {{ url: \"maildir:{}\", probe_interval: 1h }}\n\
                 {extra}",
                dir.path().join("mail").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("stderr.log");
        let mut command = match nofile {
            Some(limit) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={limit}")).arg(common::bin());
                c
            }
            None => Command::new(common::bin()),
        };
        let child = command
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prlimit (util-linux) and the binary");
        let served = Served {
            child,
            smtp: ([127, 0, 0, 1], smtp).into(),
            metrics: ([127, 0, 0, 1], metrics).into(),
            log,
            _dir: dir,
        };
        let up = common::wait_for(10, || {
            let ready = std::fs::read_to_string(&served.log).unwrap_or_default();
            ready.contains("portcullis ready").then_some(())
        })
        .await;
        assert!(up.is_some(), "not started: {}", served.log_text());
        served
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value of `series`, `None` when the gateway does not expose it.
    async fn metric(&self, series: &str) -> Option<f64> {
        let (status, body) = http_get(self.metrics, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        metric_value(&body, series)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait for the exit; returns the log.
    fn stop(mut self) -> String {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        self.log_text()
    }
}

/// Lines of `log` containing every one of `words`.
fn lines_with(log: &str, words: &[&str]) -> usize {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// A client over the limit: `421` first, then the connection is closed.
async fn assert_told_421(addr: SocketAddr) {
    let mut c = LineClient::connect(addr).await;
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4.3.2 "), "{text}");
    assert_eq!(c.read_reply().await.0, 0, "closed after the 421");
}

#[tokio::test]
async fn sessions_beyond_what_the_limit_holds_get_421_and_metrics_answer() {
    // Soft 100, hard 300: raised to 300 at start. 300 holds (300 - 68) / 4 = 58 sessions:
    // 64 + 2 × 2 descriptors for the process and its two listeners, and 4 per session
    // without DNS (client, backend, spool file, Maildir file).
    let gw = Served::start(Some("100:300"), "limits: { max_sessions: 1000 }\n").await;
    assert_eq!(gw.metric("portcullis_open_files_limit").await, Some(300.0));
    let capacity = gw
        .metric("portcullis_sessions_capacity")
        .await
        .expect("the capacity is exposed");
    assert_eq!(capacity, 58.0);

    // Every session the limit holds is served, each holding a message that spilled to a
    // temp file, all at once.
    let mut held = Vec::new();
    for i in 0..capacity as usize {
        let mut c = LineClient::connect(gw.smtp).await;
        let r = c.read_reply().await;
        assert_eq!(r.0, 220, "session {i}: {}", gw.log_text());
        c.envelope("a@sender.example", &["bob@example.test"]).await;
        assert_eq!(c.cmd("DATA").await.0, 354);
        c.send(b"Subject: held\r\n\r\n").await;
        c.send(&b"0123456789abcdef\r\n".repeat(4096)).await;
        held.push(c);
    }
    assert_eq!(
        gw.metric("portcullis_sessions_active").await,
        Some(capacity)
    );
    // Past it, every client is told 421 at once, and the metrics endpoint still answers.
    for _ in 0..10 {
        assert_told_421(gw.smtp).await;
    }
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"sessions\"}")
            .await,
        Some(10.0)
    );
    // Each held session has its socket and its spool file open (a Maildir backend holds
    // no connection).
    let open = gw
        .metric("portcullis_open_files")
        .await
        .expect("the open files are exposed");
    assert!(open > 2.0 * capacity && open <= 300.0, "{open}");
    assert_eq!(http_get(gw.metrics, "/healthz").await.0, 200);
    // Every held message is delivered: the descriptors per session sufficed.
    for c in &mut held {
        c.send(b".\r\n").await;
    }
    for c in &mut held {
        assert_eq!(c.read_reply().await.0, 250);
        assert_eq!(c.cmd("QUIT").await.0, 221);
    }
    drop(held);
    for _ in 0..200 {
        if gw.metric("portcullis_sessions_active").await == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = LineClient::connect(gw.smtp).await;
    assert_eq!(c.read_reply().await.0, 220, "served again below the limit");
    assert_eq!(c.cmd("QUIT").await.0, 221);
    assert_eq!(
        gw.metric("portcullis_accept_errors_total{listener=\"smtp\",kind=\"open_files\"}")
            .await,
        Some(0.0),
        "the table never filled"
    );

    let log = gw.stop();
    assert_eq!(lines_with(&log, &["open-file limit raised"]), 1, "{log}");
    assert_eq!(
        lines_with(&log, &["cannot hold limits.max_sessions", "sessions=58"]),
        1,
        "{log}"
    );
    // One line when the limit is reached and one when it is left, not one per client.
    assert_eq!(lines_with(&log, &["session limit reached"]), 1, "{log}");
    assert_eq!(
        lines_with(&log, &["below the session limit again", "refused=10"]),
        1,
        "{log}"
    );
    assert_eq!(lines_with(&log, &["accept fail"]), 0, "{log}");
}

/// The lowest descriptor number `pid` does not use: with the soft limit there, every new
/// descriptor fails with EMFILE (the kernel hands out the lowest free number).
fn lowest_free_fd(pid: u32) -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

fn set_soft_limit(pid: u32, soft: u64) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .status()
        .unwrap();
    assert!(status.success());
}

fn soft_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_full_descriptor_table_sheds_with_421_backs_off_and_logs_once() {
    let gw = Served::start(None, "limits: { max_sessions: 10 }\n").await;
    // Let the start-up settle (the first backend probe), then fill the table: the soft
    // limit goes down to the lowest free descriptor number.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = soft_limit(gw.pid());
    set_soft_limit(gw.pid(), lowest_free_fd(gw.pid()));

    // Each client is taken with the spare descriptor, told 421 and closed.
    for _ in 0..5 {
        assert_told_421(gw.smtp).await;
    }
    // The metrics endpoint answers through its own spare.
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"open_files\"}")
            .await,
        Some(5.0)
    );
    assert!(
        gw.metric("portcullis_accept_errors_total{listener=\"smtp\",kind=\"open_files\"}")
            .await
            .is_some_and(|v| v >= 5.0)
    );

    // Room again: clients are served.
    set_soft_limit(gw.pid(), before);
    let mut c = LineClient::connect(gw.smtp).await;
    assert_eq!(c.read_reply().await.0, 220);
    assert_eq!(c.cmd("QUIT").await.0, 221);

    let log = gw.stop();
    assert_eq!(
        lines_with(&log, &["accept failing", "smtp", "open_files"]),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &["accepting again", "smtp", "taken_with_spare=5"]),
        1,
        "{log}"
    );
    // At most the SMTP and the metrics listener each report the episode.
    assert!(lines_with(&log, &["accept failing"]) <= 2, "{log}");
    assert_eq!(lines_with(&log, &["accept failed"]), 0, "{log}");
}
