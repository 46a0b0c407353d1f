//! Throwaway Postfix instances for the integration tests (recipes: POSTFIX.md, pfx-lib.sh).
//!
//! Every instance lives entirely under `/tmp/pfx-<pid>-<n>/{etc,queue,data,log,mail}` and is
//! driven with `postfix -c DIR/etc`; the machine's default instance is never read or touched.
//! Pitfalls handled here (numbers from POSTFIX.md): config mtimes are backdated before every
//! start (P1, saves ~2.4 s), `postfix start` runs under `script` so its fatal errors are
//! visible (P2), `compatibility_level = 3.6` (P3), the port is checked to be free before
//! start because master sets SO_REUSEPORT (P4), stop waits for `postfix status` to fail
//! rather than probing the master pid, which PID 1 does not reap (P5), chroot is off (P6),
//! and paths stay short for postlogd's socket (P8).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Users of the backend's `example.net`, delivering to `DIR/mail/example.net/<user>/`.
pub const USERS: &[&str] = &["alice", "bob"];

static COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEAN_STALE: Once = Once::new();

/// What an instance is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts example.net (alice, bob) into Maildirs; trusts XCLIENT from 127.0.0.0/8.
    Backend,
    /// Sends everything to a relayhost (the gateway); smtpd only for injection.
    Client,
    /// Receives on its smtpd port and delivers example.net (alice, bob) into Maildirs like
    /// `Backend`, with a milter (the gateway in milter mode) on every smtpd session:
    /// `smtpd_milters = <milter>`, protocol 6, `milter_default_action = tempfail`.
    MilterHost,
}

/// How `Postfix::crash` brings an instance down: abruptly, never with `postfix stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// `postfix abort`: SIGTERM to master, which terminates its children at once (sessions
    /// in the middle of a transaction break) and exits without waiting for them.
    Abort,
    /// SIGKILL to master alone: its children are orphaned. An smtpd in a session may still
    /// finish it (its queue file then waits in `incoming/` for the next start), and it keeps
    /// the old listening socket open until it exits.
    KillMaster,
    /// SIGKILL to master's whole process group: every process of the instance dies at once
    /// (smtpd, cleanup in the middle of a queue file, qmgr, virtual in the middle of a
    /// delivery).
    KillAll,
}

/// One running (or stopped) Postfix instance.
pub struct Postfix {
    /// `pfx-<pid>-<n>`; also the first label of `myhostname` (see `hostname()`).
    pub name: String,
    /// `/tmp/<name>`.
    pub dir: PathBuf,
    /// The smtpd port on 127.0.0.1.
    pub port: u16,
    pub role: Role,
    /// `smtpd_milters` of a `MilterHost` (`inet:127.0.0.1:PORT` or `unix:/PATH`).
    pub milter: Option<String>,
    running: bool,
}

/// One message of `postqueue -j` (the fields the tests read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// `active`, `deferred`, `hold`, `incoming` or `maildrop`.
    pub queue_name: String,
    pub queue_id: String,
    pub sender: String,
    /// The raw JSON line, for diagnostics.
    pub json: String,
}

impl Postfix {
    /// A backend on a free port, started: example.net with alice and bob (Maildir),
    /// XCLIENT from 127.0.0.0/8, unknown users get 550 5.1.1 at RCPT.
    pub fn backend() -> Postfix {
        Self::create(Role::Backend, None, &[])
    }

    /// A backend like `backend()` whose example.net also has the users in `extra`.
    pub fn backend_with_users(extra: &[String]) -> Postfix {
        Self::create(Role::Backend, None, extra)
    }

    /// A client instance, started, that relays everything to `relayhost` with
    /// `smtp_helo_name = client.test`; its own smtpd (on `port`) accepts injection.
    pub fn client(relayhost: SocketAddr) -> Postfix {
        Self::create(Role::Client, Some(relayhost), &[])
    }

    /// A Postfix that hands every smtpd session to the milter `milter` (as written in
    /// `smtpd_milters`: `inet:127.0.0.1:PORT` or `unix:/PATH`), started. It receives on
    /// its smtpd port and delivers example.net (alice, bob) into Maildirs like `backend()`;
    /// XCLIENT is allowed from 127.0.0.0/8, so a test can present another client address
    /// and HELO to the milter (Postfix then opens a new milter connection with them).
    /// `milter_protocol = 6`, `milter_default_action = tempfail` (no milter: 4xx),
    /// `non_smtpd_milters` empty (bounces Postfix writes itself are not filtered).
    ///
    /// Start the milter first when the test cares about every milter connection: the
    /// readiness probe of the smtpd port is an SMTP session too, and Postfix opens a milter
    /// connection for it (OPTNEG, CONNECT, then ABORT/QUIT when the probe hangs up).
    pub fn milter_host(milter: &str) -> Postfix {
        assert!(
            milter.starts_with("inet:127.0.0.1:") || milter.starts_with("unix:/"),
            "milter socket {milter:?}: tests use inet:127.0.0.1:PORT or unix:/PATH only"
        );
        Self::create_with(Role::MilterHost, None, &[], Some(milter.to_string()))
    }

    /// `myhostname`: `<name>.test` (Postfix's Received header says `by <this> (Postfix)`).
    pub fn hostname(&self) -> String {
        format!("{}.test", self.name)
    }

    /// `DIR/etc`, the argument of `postfix -c`, `postqueue -c` and `sendmail -C`.
    pub fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    fn create(role: Role, relayhost: Option<SocketAddr>, extra_users: &[String]) -> Postfix {
        Self::create_with(role, relayhost, extra_users, None)
    }

    fn create_with(
        role: Role,
        relayhost: Option<SocketAddr>,
        extra_users: &[String],
        milter: Option<String>,
    ) -> Postfix {
        ensure_installed();
        CLEAN_STALE.call_once(clean_stale_instances);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("pfx-{}-{n}", std::process::id());
        let dir = PathBuf::from("/tmp").join(&name);
        if dir.join("etc").exists() {
            // A leftover of an earlier process with the same pid.
            let _ = stop_instance(&dir.join("etc"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["etc", "queue", "data", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create instance dir");
        }
        // Without this: "warning: not owned by postfix: .../data".
        run_ok(Command::new("chown").arg("postfix").arg(dir.join("data")));
        let mut pf = Postfix {
            name,
            dir,
            port: 0,
            role,
            milter,
            running: false,
        };
        pf.write_main_cf(relayhost);
        if matches!(role, Role::Backend | Role::MilterHost) {
            let mail = pf.dir.join("mail");
            std::fs::create_dir_all(&mail).expect("mail dir");
            // virtual(8) writes as virtual_uid_maps' uid.
            std::os::unix::fs::chown(&mail, Some(65534), Some(65534)).expect("chown mail dir");
            let map: String = USERS
                .iter()
                .copied()
                .chain(extra_users.iter().map(String::as_str))
                .map(|u| format!("{u}@example.net example.net/{u}/\n"))
                .collect();
            std::fs::write(pf.etc().join("vmailbox"), map).expect("vmailbox");
        }
        // The port comes from the kernel (bound, then released); something else may take it
        // before master binds it, so a failed start on a port that is now busy is retried.
        let mut last_error = String::new();
        for _ in 0..5 {
            pf.port = pick_port();
            pf.write_master_cf();
            match pf.try_start() {
                Ok(()) => return pf,
                Err(e) if port_open(pf.port) || e.contains("in use") => last_error = e,
                Err(e) => panic!("{e}"),
            }
            let _ = stop_instance(&pf.etc());
        }
        panic!("could not start {} on a free port: {last_error}", pf.name)
    }

    fn write_main_cf(&self, relayhost: Option<SocketAddr>) {
        let d = self.dir.display();
        let mut cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
myhostname = {host}
mydomain = test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_banner = $myhostname ESMTP
maillog_file_prefixes = /tmp
maillog_file = {d}/log/maillog
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
",
            host = self.hostname()
        );
        if self.role == Role::MilterHost {
            let milter = self
                .milter
                .as_deref()
                .expect("a milter host needs a milter");
            // Timeouts: Postfix's defaults (30 s connect) would turn a dead milter into a
            // long wait; the command and content timeouts leave room for DNS-bound checks.
            cf.push_str(&format!(
                "smtpd_milters = {milter}
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 30s
milter_content_timeout = 60s
"
            ));
        }
        match self.role {
            Role::Backend | Role::MilterHost => cf.push_str(&format!(
                "inet_protocols = all
virtual_mailbox_domains = example.net
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 100
"
            )),
            Role::Client => {
                let relay = relayhost.expect("client instance needs a relayhost");
                cf.push_str(&format!(
                    "inet_protocols = ipv4
relayhost = [{}]:{}
smtp_helo_name = client.test
",
                    relay.ip(),
                    relay.port()
                ));
            }
        }
        std::fs::write(self.etc().join("main.cf"), cf).expect("main.cf");
    }

    fn write_master_cf(&self) {
        // chroot = n everywhere (P6); postlog is required with maillog_file. The services
        // are shared with bench/postfix.sh.
        let cf = format!(
            "127.0.0.1:{} inet n - n - - smtpd\n{}",
            self.port,
            include_str!("../fixtures/postfix/services.cf")
        );
        std::fs::write(self.etc().join("master.cf"), cf).expect("master.cf");
    }

    /// Starts the instance and waits until its smtpd port accepts connections. Panics with
    /// Postfix's own error text (and the log tail) when it cannot start.
    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        self.start_checked(true)
    }

    /// Starts the instance again after `crash`. Unlike `start` it does not require the port
    /// to be free: after `Crash::KillMaster` an orphaned smtpd may still hold the old
    /// listening socket, and master's SO_REUSEPORT lets the new one bind beside it (P4).
    pub fn restart(&mut self) {
        if let Err(e) = self.start_checked(false) {
            panic!("{e}");
        }
    }

    /// master's pid, from `queue/pid/master.pid` (also its process group: master is the
    /// leader of the group of its children).
    pub fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Brings the instance down abruptly (see `Crash`) and waits until `postfix status`
    /// says it is gone. Panics when there is no master to kill or it does not go away.
    pub fn crash(&mut self, how: Crash) {
        let pid = self
            .master_pid()
            .unwrap_or_else(|| panic!("{}: no master.pid to crash", self.name));
        match how {
            Crash::Abort => {
                let _ = Command::new(sbin("postfix"))
                    .arg("-c")
                    .arg(self.etc())
                    .arg("abort")
                    .stdin(Stdio::null())
                    .output();
            }
            Crash::KillMaster => signal("-KILL", &pid.to_string()),
            Crash::KillAll => signal("-KILL", &format!("-{pid}")),
        }
        self.running = false;
        let end = Instant::now() + Duration::from_secs(10);
        while status_running(&self.etc()) {
            assert!(
                Instant::now() < end,
                "{}: still running 10 s after {how:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_checked(&mut self, port_must_be_free: bool) -> Result<(), String> {
        if port_must_be_free && port_open(self.port) {
            return Err(format!(
                "port {} already in use; refusing to start {} (another listener would share it: SO_REUSEPORT)",
                self.port, self.name
            ));
        }
        backdate_config(&self.etc());
        // Postfix prints fatal errors only to a tty or syslog: `script` gives it a pty.
        let out = Command::new("script")
            .arg("-qec")
            .arg(format!(
                "{} -c {} start",
                sbin("postfix"),
                self.etc().display()
            ))
            .arg("/dev/null")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run script(1) (bsdutils): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "postfix start failed for {} ({}): {}\nlog:\n{}",
                self.name,
                out.status,
                text(&out).trim(),
                self.log_tail(20)
            ));
        }
        // `postfix start` returns once master bound its listeners; poll anyway.
        let end = Instant::now() + Duration::from_secs(10);
        while !port_open(self.port) {
            if Instant::now() > end {
                return Err(format!(
                    "{} started but port {} is not open after 10 s\nlog:\n{}",
                    self.name,
                    self.port,
                    self.log_tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.running = true;
        Ok(())
    }

    /// Stops the instance and waits until `postfix status` says it is gone (its smtpd
    /// processes are terminated too, so open connections break).
    pub fn stop(&mut self) {
        self.running = false;
        if let Err(e) = stop_instance(&self.etc()) {
            panic!("{}: {e}\nlog:\n{}", self.name, self.log_tail(20));
        }
    }

    /// Appends `key = value` lines to main.cf (later lines win) and restarts the instance
    /// if it runs, so that every new smtpd sees them.
    pub fn set(&mut self, settings: &[&str]) {
        let path = self.etc().join("main.cf");
        let mut cf = std::fs::read_to_string(&path).expect("read main.cf");
        for s in settings {
            cf.push_str(s);
            cf.push('\n');
        }
        std::fs::write(&path, cf).expect("write main.cf");
        if self.running {
            self.stop();
            self.start();
        }
    }

    /// Whether `postfix status` says the instance runs.
    pub fn is_running(&self) -> bool {
        status_running(&self.etc())
    }

    /// Messages in `user@example.net`'s Maildir `new/`, oldest first (file names start
    /// with the delivery time).
    pub fn maildir_messages(&self, user: &str) -> Vec<String> {
        let dir = self.dir.join("mail/example.net").join(user).join("new");
        // No directory yet is no mail (virtual creates it with the first delivery); any
        // other failure panics, so an unreadable Maildir never passes for an empty one.
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.expect("a Maildir entry").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Polls until `user` has at least `n` messages (delivery is asynchronous: qmgr →
    /// virtual); panics with the log tail after `secs` seconds.
    pub fn wait_for_messages(&self, user: &str, n: usize, secs: u64) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let msgs = self.maildir_messages(user);
            if msgs.len() >= n {
                return msgs;
            }
            if Instant::now() > end {
                panic!(
                    "{}: {user} has {} message(s) after {secs} s, expected {n}\nqueue: {:?}\nlog:\n{}",
                    self.name,
                    msgs.len(),
                    self.queue_json(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postqueue -j`: one JSON object per queued message, as raw lines (empty: queue empty).
    pub fn queue_json(&self) -> Vec<String> {
        let out = run_ok(
            Command::new(sbin("postqueue"))
                .arg("-c")
                .arg(self.etc())
                .arg("-j"),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `postqueue -j`, parsed: every queued message with its queue name.
    pub fn queued(&self) -> Vec<Queued> {
        self.queue_json()
            .into_iter()
            .map(|line| Queued {
                queue_name: json_string(&line, "queue_name")
                    .unwrap_or_else(|| panic!("no queue_name in postqueue -j line {line:?}")),
                queue_id: json_string(&line, "queue_id")
                    .unwrap_or_else(|| panic!("no queue_id in postqueue -j line {line:?}")),
                sender: json_string(&line, "sender")
                    .unwrap_or_else(|| panic!("no sender in postqueue -j line {line:?}")),
                json: line,
            })
            .collect()
    }

    /// The messages in the `hold` queue (where SMFIR_QUARANTINE puts them).
    pub fn held(&self) -> Vec<Queued> {
        self.queued()
            .into_iter()
            .filter(|q| q.queue_name == "hold")
            .collect()
    }

    /// Polls until the hold queue has at least `n` messages; panics with the queue and the
    /// log tail after `secs` seconds.
    pub fn wait_for_held(&self, n: usize, secs: u64) -> Vec<Queued> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let held = self.held();
            if held.len() >= n {
                return held;
            }
            if Instant::now() > end {
                panic!(
                    "{}: {} message(s) on hold after {secs} s, expected {n}\nqueue: {:?}\nlog:\n{}",
                    self.name,
                    held.len(),
                    self.queue_json(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The header and body of queued message `queue_id` as Postfix stores it (`postcat -bh`,
    /// any queue, the hold queue included).
    pub fn queued_content(&self, queue_id: &str) -> String {
        let out = run_ok(
            Command::new(sbin("postcat"))
                .arg("-c")
                .arg(self.etc())
                .arg("-bh")
                .arg("-q")
                .arg(queue_id),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `postqueue -f`: retry deferred mail now.
    pub fn flush(&self) {
        run_ok(
            Command::new(sbin("postqueue"))
                .arg("-c")
                .arg(self.etc())
                .arg("-f"),
        );
    }

    /// The whole maillog (empty before anything was logged).
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("log/maillog"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the maillog.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls the maillog (postlogd writes it asynchronously) for a line containing every
    /// one of `needles`; returns that line, or `None` after `secs` seconds.
    pub fn wait_for_log(&self, needles: &[&str], secs: u64) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self
                .log()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_string);
            if found.is_some() || Instant::now() > end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Injects `message` (headers and body, LF line endings) with this instance's
    /// `sendmail -C DIR/etc -f from -- to`.
    pub fn sendmail(&self, from: &str, to: &str, message: &str) {
        let mut child = Command::new(sbin("sendmail"))
            .arg("-C")
            .arg(self.etc())
            .arg("-f")
            .arg(from)
            .arg("--")
            .arg(to)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sendmail");
        child
            .stdin
            .take()
            .expect("sendmail stdin")
            .write_all(message.as_bytes())
            .expect("write to sendmail");
        let out = child.wait_with_output().expect("sendmail");
        assert!(
            out.status.success(),
            "sendmail -C {} failed ({}): {}",
            self.etc().display(),
            out.status,
            text(&out)
        );
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({:?}, port {}) maillog tail ---\n{}\n--- end ---",
                self.name,
                self.role,
                self.port,
                self.log_tail(40)
            );
        }
        if (self.running || status_running(&self.etc()))
            && let Err(e) = stop_instance(&self.etc())
        {
            eprintln!("{}: {e}", self.name);
            return; // keep the directory of an instance that may still run
        }
        // What `postfix stop` cannot reach: children orphaned by `Crash::KillMaster`.
        kill_leftovers(&self.etc());
        if std::env::var_os("PFX_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The string value of `"key": "..."` in one `postqueue -j` line (its JSON is flat for the
/// fields read here; `\"` and `\\` are unescaped, other escapes kept as written).
fn json_string(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\": \"");
    let start = line.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

/// Panics (never skips) when Postfix is missing: the test command installs it.
fn ensure_installed() {
    if Command::new(sbin("postconf"))
        .arg("-h")
        .arg("-d")
        .arg("mail_version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "Postfix is not installed (no postconf/postfix found). The test command \
             ./scripts/test.sh installs it when run as root (apt-get install postfix swaks); \
             these tests need a real Postfix and are not skipped."
        );
    }
}

/// `/usr/sbin/<name>` when present (PATH may lack /usr/sbin), else the bare name.
fn sbin(name: &str) -> String {
    let p = Path::new("/usr/sbin").join(name);
    if p.exists() {
        p.display().to_string()
    } else {
        name.to_string()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        text(&out)
    );
    out
}

/// SIGKILL to every process of the instance at `etc` that is still alive: those whose
/// environment has `MAIL_CONFIG=<etc>` (master passes it to every child). After
/// `postfix stop` these are only children of an earlier master killed with SIGKILL,
/// which are in that master's process group, not in the running one's.
pub fn kill_leftovers(etc: &Path) {
    let want = format!("MAIL_CONFIG={}", etc.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            signal("-KILL", &name);
        }
    }
}

/// `kill SIGNAL -- TARGET` (TARGET `-<pgid>` for a process group); a target that is already
/// gone is not an error.
fn signal(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// True when something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn pick_port() -> u16 {
    for _ in 0..20 {
        let port = super::free_port();
        if !port_open(port) {
            return port;
        }
    }
    panic!("no free port found")
}

/// Postfix ignores config and map files younger than ~2 s and sleeps until they age (P1).
fn backdate_config(etc: &Path) {
    let old = SystemTime::now() - Duration::from_secs(10);
    for entry in std::fs::read_dir(etc).expect("read etc").flatten() {
        let f = std::fs::File::options()
            .write(true)
            .open(entry.path())
            .expect("open config file");
        f.set_modified(old).expect("backdate config file");
    }
}

/// Runs `postfix -c ETC VERB` for at most `secs` seconds: its exit status, or `None` when
/// it did not finish (then it and every process of the instance are killed). `postfix stop`
/// and `status` run `master -t`, which logs through the instance's postlogd; a postlogd
/// left over by a start that failed half-way can block on its own socket, and the command
/// with it (seen here: `unix_wait_for_peer`), so no call may wait unbounded.
fn postfix_bounded(etc: &Path, verb: &str, secs: u64) -> Option<std::process::ExitStatus> {
    let mut child = Command::new(sbin("postfix"))
        .arg("-c")
        .arg(etc)
        .arg(verb)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                eprintln!(
                    "postfix -c {} {verb} hung; killing the instance",
                    etc.display()
                );
                kill_leftovers(etc);
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn status_running(etc: &Path) -> bool {
    postfix_bounded(etc, "status", 10).is_some_and(|s| s.success())
}

/// `postfix stop`, then wait until `postfix status` fails (P5: no kill -0 on master.pid).
/// Bounded: an instance that does not stop within 10 s is killed (`kill_leftovers`).
fn stop_instance(etc: &Path) -> Result<(), String> {
    let _ = postfix_bounded(etc, "stop", 15);
    let end = Instant::now() + Duration::from_secs(10);
    while status_running(etc) {
        if Instant::now() > end {
            kill_leftovers(etc);
            return Err(format!(
                "postfix -c {} did not stop within 10 s; its processes were killed",
                etc.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Stops and removes `/tmp/pfx-<pid>-<n>` instances left by test processes that no longer
/// exist (a killed `cargo test`); instances of live processes are left alone.
fn clean_stale_instances() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("pfx-") else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !numeric(pid) || !numeric(n) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let etc = entry.path().join("etc");
        if etc.join("main.cf").exists() && stop_instance(&etc).is_err() {
            continue;
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}
