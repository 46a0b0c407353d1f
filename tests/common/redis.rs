//! Throwaway redis-server instances for the shared-state tests (recipe: shared/recipes/redis.sh).
//!
//! Each server listens on 127.0.0.1 on its own port, keeps nothing on disk (`--save ''`,
//! no AOF), runs in the foreground as our child and is stopped by its PID. Readiness is a
//! PING answered with PONG (an open port is not enough while Redis loads). A TLS server
//! (`tls`, `sentinel_tls`) listens with TLS only (`--port 0`), with certificates of a
//! `pki::Pki`, and is PINGed through `redis-cli --tls` with the client certificate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server child.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra arguments (cluster mode), or a config file for a sentinel.
    mode: Mode,
    /// `redis-cli` arguments for the readiness PING (TLS files, password); empty: a plain
    /// PING over TCP.
    cli: Vec<String>,
}

enum Mode {
    Plain(Vec<String>),
    /// TLS only, on `port`: the certificate arguments, then extra ones.
    Tls(Vec<String>),
    Sentinel(PathBuf),
}

/// `redis-cli` arguments that reach a server of `pki` with its client certificate.
fn cli_args(pki: &super::pki::Pki, password: Option<&str>) -> Vec<String> {
    let (cert, key) = pki.client();
    let mut args = vec!["--tls".to_string(), "--cacert".into()];
    args.push(pki.ca().display().to_string());
    args.extend(["--cert".to_string(), cert.display().to_string()]);
    args.extend(["--key".to_string(), key.display().to_string()]);
    if let Some(password) = password {
        args.extend(["-a", password, "--no-auth-warning"].map(String::from));
    }
    args
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::with_args(&[])
    }

    /// Starts a server with extra command-line settings.
    pub fn with_args(args: &[&str]) -> RedisServer {
        let mode = Mode::Plain(args.iter().map(|a| a.to_string()).collect());
        Self::launch(super::free_port(), tempdir(), mode, Vec::new())
    }

    /// A server of `mode` on `port` in `dir`, started and answering PING; `cli` are
    /// redis-cli's arguments for reaching it.
    fn launch(port: u16, dir: tempfile::TempDir, mode: Mode, cli: Vec<String>) -> RedisServer {
        let mut r = RedisServer {
            port,
            dir,
            child: None,
            mode,
            cli,
        };
        r.restart();
        r
    }

    /// A Sentinel whose `sentinel.conf` is `conf(port, dir)`.
    fn sentinel_with(
        conf: impl FnOnce(u16, &std::path::Path) -> String,
        cli: Vec<String>,
    ) -> RedisServer {
        let dir = tempdir();
        let port = super::free_port();
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf(port, dir.path())).expect("sentinel.conf");
        Self::launch(port, dir, Mode::Sentinel(path), cli)
    }

    /// Starts a TLS-only server with `pki`'s server certificate, trusting `pki`'s CA for
    /// client certificates, and `extra` settings (`--tls-auth-clients`, `--requirepass`:
    /// pass the password as `password` too, for the readiness PING).
    pub fn tls(pki: &super::pki::Pki, password: Option<&str>, extra: &[&str]) -> RedisServer {
        let (cert, key) = pki.server();
        let mut args: Vec<String> = vec!["--tls-cert-file".into(), cert.display().to_string()];
        args.extend(["--tls-key-file".to_string(), key.display().to_string()]);
        args.extend([
            "--tls-ca-cert-file".to_string(),
            pki.ca().display().to_string(),
        ]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let cli = cli_args(pki, password);
        Self::launch(super::free_port(), tempdir(), Mode::Tls(args), cli)
    }

    /// Starts a TLS-only Sentinel watching the TLS `master` as `mymaster` (quorum 1): it
    /// asks for `sentinel_password` (`requirepass`), and reaches the master over TLS with
    /// `master_password` (`auth-pass`). Clients need no certificate.
    pub fn sentinel_tls(
        pki: &super::pki::Pki,
        master: &RedisServer,
        sentinel_password: &str,
        master_password: &str,
    ) -> RedisServer {
        let (cert, key) = pki.server();
        let conf = |port, dir: &std::path::Path| {
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {}\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\nrequirepass {sentinel_password}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel auth-pass mymaster {master_password}\n",
                dir.display(),
                cert.display(),
                key.display(),
                pki.ca().display(),
                master.port
            )
        };
        Self::sentinel_with(conf, cli_args(pki, Some(sentinel_password)))
    }

    /// Starts a Sentinel watching `master` as service `mymaster` (quorum 1).
    pub fn sentinel(master: &RedisServer) -> RedisServer {
        let conf = |port, dir: &std::path::Path| {
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
                dir.display(),
                master.port
            )
        };
        Self::sentinel_with(conf, Vec::new())
    }

    /// Three empty cluster nodes joined into one Redis Cluster (slots split, no replicas).
    pub fn cluster() -> Vec<RedisServer> {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                Self::with_args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return nodes;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster never reached cluster_state:ok");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `rediss://127.0.0.1:<port>/0`, for a TLS server.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log: PathBuf = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        match &self.mode {
            Mode::Sentinel(conf) => {
                cmd.arg(conf).arg("--sentinel");
            }
            Mode::Plain(extra) => {
                cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(self.dir.path())
                    .args(extra);
            }
            Mode::Tls(extra) => {
                cmd.args(["--bind", "127.0.0.1", "--port", "0"])
                    .args(["--tls-port", &self.port.to_string()])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(self.dir.path())
                    .args(extra);
            }
        }
        let child = cmd
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; scripts/test.sh does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("redis-server on {} not ready:\n{log}", self.port);
    }

    /// True if the server answers a plain-text PING on its port with PONG.
    pub fn ping_plain(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// True if the server answers PING with PONG (through `redis-cli` for a TLS server).
    pub fn ping(&self) -> bool {
        if !self.cli.is_empty() {
            return Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(&self.cli)
                .arg("PING")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
        }
        self.ping_plain()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections stay open, nothing is
    /// answered, as with a hung Redis.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Stops the server (SIGKILL: like a crash, connections just break) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ping() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.freeze(false);
        }
        self.stop();
    }
}
