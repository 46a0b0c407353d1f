//! No-loss soak: many concurrent clients send messages with unique Message-IDs through the
//! in-process gateway into a real Postfix backend that stores them in Maildirs, while the
//! backend is crashed (`postfix abort`, SIGKILL of master, SIGKILL of its whole process
//! group) and restarted at pseudo-random intervals. The promise under test is the README's:
//! the client hears `250` only after the backend said `250`, so **every message a client
//! heard 250 for is delivered**, with its content intact. Everything else (4xx, broken
//! connections, messages stored twice or stored without a 250 because the reply was lost)
//! is allowed and counted: a real sender retries those.
//!
//! Short mode (the defaults) runs in the normal test command. Long mode is the same test
//! with more load, through environment variables (bench/soak sets them):
//! `SOAK_MESSAGES` (300), `SOAK_CLIENTS` (8), `SOAK_SECONDS` (10: the first attempts of the
//! messages are spread evenly over this many seconds, during which the backend is crashed,
//! so that the crashes land on a steady load rather than after a one-second burst; the
//! retries then finish against a backend that stays up; `0` sends as fast as the clients
//! can, with crashes throughout; the sending phase ends at twice this plus 30 s at the
//! latest), `SOAK_ATTEMPTS` (tries per
//! message, 8), `SOAK_SEED` (the seed printed by an earlier run: the same crash schedule,
//! message contents and batch sizes; the interleaving of the clients still depends on the
//! machine).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Gateway;
use common::postfix::{Crash, Postfix, USERS};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The run's parameters, from the environment (short mode by default).
#[derive(Debug, Clone, Copy)]
struct Params {
    messages: usize,
    clients: usize,
    seconds: u64,
    attempts: u32,
    seed: u64,
}

impl Params {
    fn from_env() -> Params {
        let num = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => parse_num(&v).unwrap_or_else(|| panic!("{name}={v:?} is not a number")),
                Err(_) => default,
            }
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Params {
            messages: num("SOAK_MESSAGES", 300).max(1) as usize,
            clients: num("SOAK_CLIENTS", 8).max(1) as usize,
            seconds: num("SOAK_SECONDS", 10),
            attempts: num("SOAK_ATTEMPTS", 8).max(1) as u32,
            seed: num("SOAK_SEED", clock ^ u64::from(std::process::id())),
        }
    }
}

/// Decimal, or hexadecimal with `0x` (as the seed is printed).
fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// xorshift64* (Vigna), seeded through splitmix64 so that nearby seeds give unrelated
/// streams. Not for cryptography; for a schedule that a printed seed reproduces.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// FNV-1a, 64 bits: the digest of a body as the Maildir holds it (LF line endings).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One message of the run, made from the seed and its index alone.
struct Message {
    rcpts: Vec<&'static str>,
    /// What follows DATA: header and body, CRLF, dot-stuffed, without the final dot.
    wire: Vec<u8>,
}

fn message_id(seed: u64, idx: usize) -> String {
    format!("<soak-{seed:x}-{idx}@soak.test>")
}

fn make_message(seed: u64, idx: usize) -> Message {
    let mut rng = Rng::new(seed ^ (idx as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let rcpts = match rng.next() % 6 {
        0 => vec!["alice", "bob"],
        1 | 2 => vec!["bob"],
        _ => vec!["alice"],
    };
    // Mostly small; one in ten large enough that a crash often lands in its transfer.
    let target = if rng.one_in(10) {
        rng.range(64 * 1024, 512 * 1024)
    } else {
        rng.range(100, 8 * 1024)
    } as usize;
    let mut body = Vec::with_capacity(target + 128);
    while body.len() < target {
        if rng.one_in(12) {
            // Lines that start with a dot: unstuffed by the gateway, stuffed again for
            // Postfix. A lone "." among them.
            body.push(b'.');
        }
        let len = rng.range(0, 100);
        for _ in 0..len {
            body.push(b' ' + (rng.next() % 95) as u8);
        }
        body.push(b'\n');
    }
    let digest = fnv(&body);
    let to: Vec<String> = rcpts.iter().map(|u| format!("{u}@example.net")).collect();
    let mut wire = format!(
        "From: <soak@sender.example>\r\nTo: {}\r\nSubject: soak {idx}\r\nMessage-ID: {}\r\nX-Soak-Digest: {digest:016x}\r\n\r\n",
        to.join(", "),
        message_id(seed, idx)
    )
    .into_bytes();
    for line in body.split_inclusive(|b| *b == b'\n') {
        let line = &line[..line.len() - 1];
        if line.first() == Some(&b'.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\n");
    }
    Message { rcpts, wire }
}

/// How one attempt at one message ended.
enum Outcome {
    Acked,
    Temporary(String),
    Permanent(String),
    Connection(String),
}

/// What became of a message in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Unsent,
    Pending,
    Acked,
    Rejected,
    GaveUp,
}

/// Shared bookkeeping of the clients: the work queue and every count.
struct Ledger {
    /// (not before, message): first attempts spread over the sending phase, retries after
    /// a back-off, as a sending MTA keeps a retry time per message.
    queue: BinaryHeap<Reverse<(tokio::time::Instant, usize)>>,
    in_flight: usize,
    fate: Vec<Fate>,
    tries: Vec<u32>,
    attempts: u64,
    acked: u64,
    temporary: u64,
    permanent: u64,
    connection: u64,
    /// "stage code enhanced" → count, for the table.
    kinds: BTreeMap<String, u64>,
    rng: Rng,
}

impl Ledger {
    /// Every message queued: message `i` first at `i × seconds / messages` from `begin`
    /// (all at once when `seconds` is 0).
    fn new(p: &Params, begin: tokio::time::Instant) -> Ledger {
        let step = if p.seconds == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(p.seconds) / p.messages as u32
        };
        Ledger {
            queue: (0..p.messages)
                .map(|i| Reverse((begin + step * i as u32, i)))
                .collect(),
            in_flight: 0,
            fate: vec![Fate::Unsent; p.messages],
            tries: vec![0; p.messages],
            attempts: 0,
            acked: 0,
            temporary: 0,
            permanent: 0,
            connection: 0,
            kinds: BTreeMap::new(),
            rng: Rng::new(p.seed ^ 0x1ED6_E500),
        }
    }

    /// Up to `want` messages that are due, marked in flight.
    fn take(&mut self, want: usize) -> Vec<usize> {
        let now = tokio::time::Instant::now();
        let mut batch = Vec::new();
        while batch.len() < want {
            match self.queue.peek() {
                Some(Reverse((due, _))) if *due <= now => {}
                _ => break,
            }
            let Reverse((_, idx)) = self.queue.pop().unwrap();
            self.fate[idx] = Fate::Pending;
            batch.push(idx);
        }
        self.in_flight += batch.len();
        batch
    }

    /// Nothing queued and nothing in flight that may come back.
    fn finished(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0
    }

    fn record(&mut self, idx: usize, outcome: Outcome, max_tries: u32) {
        self.attempts += 1;
        self.tries[idx] += 1;
        let (retry, kind) = match outcome {
            Outcome::Acked => {
                self.acked += 1;
                self.fate[idx] = Fate::Acked;
                (false, None)
            }
            Outcome::Permanent(k) => {
                self.permanent += 1;
                self.fate[idx] = Fate::Rejected;
                (false, Some(k))
            }
            Outcome::Temporary(k) => {
                self.temporary += 1;
                (true, Some(k))
            }
            Outcome::Connection(k) => {
                self.connection += 1;
                (true, Some(k))
            }
        };
        if let Some(k) = kind {
            *self.kinds.entry(k).or_default() += 1;
        }
        if retry {
            if self.tries[idx] < max_tries {
                // 0.25 s, 0.5 s, 1 s, 2 s, then 3 s, each ±50 %: the backend is back within
                // seconds, and a retry storm on every restart is what real senders avoid.
                let base = (250u64 << (self.tries[idx] - 1).min(4)).min(3000);
                let wait = self.rng.range(base / 2, base * 3 / 2);
                let due = tokio::time::Instant::now() + Duration::from_millis(wait);
                self.queue.push(Reverse((due, idx)));
            } else {
                self.fate[idx] = Fate::GaveUp;
            }
        }
    }

    /// Messages a session did not get to: due again at once, not counted as attempts.
    fn untried(&mut self, idx: usize) {
        self.queue.push(Reverse((tokio::time::Instant::now(), idx)));
    }
}

/// A bare SMTP client whose failures are values, not panics: in a soak a broken
/// connection is an outcome to count.
struct Smtp {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

/// Longer than any gateway deadline of the soak config: a client that waits this long has
/// found a hung session, which is counted, not hidden.
const CLIENT_WAIT: Duration = Duration::from_secs(90);

impl Smtp {
    async fn connect(addr: SocketAddr) -> Result<Smtp, String> {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timeout".to_string())?
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Ok(Smtp {
            r: BufReader::new(r),
            w,
        })
    }

    /// One reply: (code, last line).
    async fn reply(&mut self) -> Result<(u16, String), String> {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(CLIENT_WAIT, self.r.read_line(&mut line))
                .await
                .map_err(|_| "reply timeout".to_string())?
                .map_err(|e| format!("read: {}", e.kind()))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("bad reply line {line:?}"))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, line.to_string()));
            }
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), String> {
        tokio::time::timeout(CLIENT_WAIT, self.w.write_all(data))
            .await
            .map_err(|_| "write timeout".to_string())?
            .map_err(|e| format!("write: {}", e.kind()))
    }

    async fn cmd(&mut self, line: &str) -> Result<(u16, String), String> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }
}

/// "RCPT 451 4.4.1" from the stage and a reply line.
fn kind(stage: &str, line: &str) -> String {
    let mut words = line.split([' ', '-']);
    let code = words.next().unwrap_or("");
    let enhanced = words.next().unwrap_or("");
    format!("{stage} {code} {enhanced}")
}

/// The result of a reply that is not the expected one; `closing` when the session is over.
fn refused(stage: &str, code: u16, line: &str) -> (Outcome, bool) {
    let k = kind(stage, line);
    if code >= 500 {
        (Outcome::Permanent(k), false)
    } else {
        (Outcome::Temporary(k), code == 421)
    }
}

/// One client session carrying `batch`; returns the outcome of every message it tried.
/// Messages not tried (the session ended first) are left out: they go back to the queue
/// without counting as an attempt.
async fn session(
    addr: SocketAddr,
    seed: u64,
    batch: &[usize],
    rng: &mut Rng,
) -> Vec<(usize, Outcome)> {
    let mut done = Vec::new();
    let mut c = match Smtp::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            done.push((batch[0], Outcome::Connection(format!("connect {e}"))));
            return done;
        }
    };
    let opening = async {
        match c.reply().await? {
            (220, _) => {}
            (code, line) => return Ok(Some(refused("banner", code, &line).0)),
        }
        match c.cmd("EHLO soak-client.example").await? {
            (250, _) => Ok::<_, String>(None),
            (code, line) => Ok(Some(refused("EHLO", code, &line).0)),
        }
    };
    match opening.await {
        Ok(None) => {}
        Ok(Some(outcome)) => {
            done.push((batch[0], outcome));
            return done;
        }
        Err(e) => {
            done.push((batch[0], Outcome::Connection(format!("greeting {e}"))));
            return done;
        }
    }
    for &idx in batch {
        let msg = make_message(seed, idx);
        // One message in three comes in pieces with pauses between them, as over a slow
        // link: the backend transaction (open since the first RCPT) then stays open long
        // enough for crashes to land in it.
        let pauses: Vec<u64> = if rng.one_in(3) {
            (0..rng.range(2, 6)).map(|_| rng.range(30, 250)).collect()
        } else {
            Vec::new()
        };
        match transaction(&mut c, &msg, &pauses).await {
            Ok((outcome, closing)) => {
                done.push((idx, outcome));
                if closing {
                    return done;
                }
            }
            Err((stage, e)) => {
                done.push((idx, Outcome::Connection(format!("{stage} {e}"))));
                return done;
            }
        }
    }
    let _ = c.cmd("QUIT").await;
    done
}

/// MAIL, RCPTs, DATA (the content in `pauses.len() + 1` pieces, with those pauses between
/// them): Ok((outcome, session closing)), or Err((stage, connection error)).
async fn transaction(
    c: &mut Smtp,
    msg: &Message,
    pauses: &[u64],
) -> Result<(Outcome, bool), (String, String)> {
    let at = |stage: &str| {
        let stage = stage.to_string();
        move |e: String| (stage, e)
    };
    let (code, line) = c
        .cmd("MAIL FROM:<soak@sender.example>")
        .await
        .map_err(at("MAIL"))?;
    if code != 250 {
        return Ok(rset_after(c, refused("MAIL", code, &line)).await);
    }
    for rcpt in &msg.rcpts {
        let (code, line) = c
            .cmd(&format!("RCPT TO:<{rcpt}@example.net>"))
            .await
            .map_err(at("RCPT"))?;
        if code != 250 {
            // Any recipient refused: the whole message is tried again later.
            return Ok(rset_after(c, refused("RCPT", code, &line)).await);
        }
    }
    let (code, line) = c.cmd("DATA").await.map_err(at("DATA"))?;
    if code != 354 {
        return Ok(rset_after(c, refused("DATA", code, &line)).await);
    }
    let piece = msg.wire.len() / (pauses.len() + 1) + 1;
    for (i, chunk) in msg.wire.chunks(piece).enumerate() {
        if let Some(ms) = i.checked_sub(1).and_then(|i| pauses.get(i)) {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
        }
        c.send(chunk).await.map_err(at("content"))?;
    }
    c.send(b".\r\n").await.map_err(at("content"))?;
    let (code, line) = c.reply().await.map_err(at("end of data"))?;
    if code == 250 {
        return Ok((Outcome::Acked, false));
    }
    Ok(refused("end of data", code, &line))
}

/// RSET after a refusal (unless the session is closing), so the next message starts clean.
async fn rset_after(c: &mut Smtp, (outcome, closing): (Outcome, bool)) -> (Outcome, bool) {
    if closing {
        return (outcome, true);
    }
    match c.cmd("RSET").await {
        Ok((250, _)) => (outcome, false),
        _ => (outcome, true),
    }
}

/// One client: takes batches of 1–3 due messages off the queue, one session per batch,
/// until everything is done (nothing queued, nothing in flight that may come back) or the
/// sending phase is over.
async fn client(
    addr: SocketAddr,
    p: Params,
    n: usize,
    ledger: Arc<Mutex<Ledger>>,
    until: tokio::time::Instant,
) {
    let mut rng = Rng::new(p.seed ^ 0xC11E_0000 ^ n as u64);
    while tokio::time::Instant::now() < until {
        let want = rng.range(1, 4) as usize;
        let batch = {
            let mut l = ledger.lock().unwrap();
            if l.finished() {
                return;
            }
            l.take(want)
        };
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(rng.range(5, 40))).await;
            continue;
        }
        let results = session(addr, p.seed, &batch, &mut rng).await;
        let mut l = ledger.lock().unwrap();
        let tried = results.len();
        for (idx, outcome) in results {
            l.record(idx, outcome, p.attempts);
        }
        for &idx in &batch[tried..] {
            l.untried(idx);
        }
        l.in_flight -= batch.len();
    }
}

/// The crashes the killer did.
#[derive(Debug, Default)]
struct Kills {
    abort: u32,
    kill_master: u32,
    kill_all: u32,
    /// "+12.3s KillAll (down 0.4s)" per crash.
    log: Vec<String>,
}

impl Kills {
    fn total(&self) -> u32 {
        self.abort + self.kill_master + self.kill_all
    }
}

/// Sleeps `ms` in small steps; false when `stop` was raised meanwhile.
fn nap(ms: u64, stop: &AtomicBool) -> bool {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Crashes and restarts `pf` until `stop`: up 0.8–3 s (the first time 0.3–1.2 s, so that
/// even a short run sees a crash under load), then one of the three crashes, down
/// 0.1–1.5 s, restart. Always leaves the backend running.
fn killer(mut pf: Postfix, seed: u64, stop: Arc<AtomicBool>) -> (Postfix, Kills) {
    let mut rng = Rng::new(seed ^ 0x4B11_1E55);
    let mut kills = Kills::default();
    let started = Instant::now();
    let mut first = true;
    loop {
        let up = if first {
            rng.range(300, 1200)
        } else {
            rng.range(800, 3000)
        };
        first = false;
        if !nap(up, &stop) {
            break;
        }
        let how = match rng.next() % 3 {
            0 => Crash::Abort,
            1 => Crash::KillMaster,
            _ => Crash::KillAll,
        };
        let at = started.elapsed();
        pf.crash(how);
        match how {
            Crash::Abort => kills.abort += 1,
            Crash::KillMaster => kills.kill_master += 1,
            Crash::KillAll => kills.kill_all += 1,
        }
        let down = rng.range(100, 1500);
        std::thread::sleep(Duration::from_millis(down));
        pf.restart();
        kills.log.push(format!(
            "+{:.1}s {how:?} (down {:.1}s)",
            at.as_secs_f64(),
            (started.elapsed() - at).as_secs_f64()
        ));
    }
    (pf, kills)
}

/// What the Maildirs hold.
#[derive(Default)]
struct Stored {
    /// (message index, user) → copies.
    copies: HashMap<(usize, &'static str), u32>,
    files: u64,
    /// Copies whose body digest differs from the one the message was sent with.
    corrupted: Vec<String>,
    /// Files that are not messages of this run.
    foreign: u64,
}

fn scan(pf: &Postfix, seed: u64) -> Stored {
    let prefix = format!("<soak-{seed:x}-");
    let mut out = Stored::default();
    for user in USERS {
        let dir = pf.dir.join("mail/example.net").join(user).join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            out.files += 1;
            let split = bytes
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| p + 2)
                .unwrap_or(bytes.len());
            let head = String::from_utf8_lossy(&bytes[..split]);
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let idx = header("Message-ID").and_then(|id| {
                id.strip_prefix(&prefix)?
                    .strip_suffix("@soak.test>")?
                    .parse()
                    .ok()
            });
            let Some(idx) = idx else {
                out.foreign += 1;
                continue;
            };
            *out.copies.entry((idx, *user)).or_default() += 1;
            let sent = header("X-Soak-Digest");
            let found = format!("{:016x}", fnv(&bytes[split..]));
            if sent.as_deref() != Some(found.as_str()) {
                out.corrupted.push(format!(
                    "{} ({user}, {})",
                    message_id(seed, idx),
                    entry.path().display()
                ));
            }
        }
    }
    out
}

/// Blocking work off the runtime, with a panic re-raised here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The soak itself; see the file's doc comment. Fails when a message acknowledged with
/// 250 is missing or altered in the Maildirs, when nothing was acknowledged or the backend
/// was never crashed (the run would prove nothing), and on any 5xx (every message is valid:
/// a 5xx would turn a transient failure into a bounce).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_message_is_lost_while_the_backend_crashes() {
    let p = Params::from_env();
    eprintln!(
        "soak: seed=0x{:x} messages={} clients={} seconds={} attempts={} (repeat with SOAK_SEED=0x{:x})",
        p.seed, p.messages, p.clients, p.seconds, p.attempts, p.seed
    );
    let started = Instant::now();
    let pf = blocking(Postfix::backend).await;
    let port = pf.port;
    let mut gw = Gateway::start(|c| {
        c.backend.url = format!("smtp://127.0.0.1:{port}").parse().unwrap();
        c.accepted_domains =
            portcullis::config::domains::AcceptedDomains::parse(&["example.net"]).unwrap();
        // Every client comes from 127.0.0.1: the per-address limits are not under test.
        c.connections.max_per_ip = 0;
        c.connections.max_per_network = 0;
        c.limits.max_sessions = 1000.max(p.clients * 2);
        // Short backend deadlines: after SIGKILL of master, orphaned smtpd processes keep
        // the old listening socket, and a connection the kernel queues there is never
        // greeted. It costs the client this deadline and a 451, not minutes.
        c.timeouts.backend_connect = Duration::from_secs(2);
        c.timeouts.backend_command = Duration::from_secs(3);
        c.timeouts.backend_data = Duration::from_secs(20);
        c.timeouts.command = Duration::from_secs(30);
        c.timeouts.data = Duration::from_secs(60);
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        std::thread::spawn(move || killer(pf, p.seed, stop))
    };
    let load_started = Instant::now();
    let begin = tokio::time::Instant::now();
    let ledger = Arc::new(Mutex::new(Ledger::new(&p, begin)));
    let until = begin
        + if p.seconds == 0 {
            Duration::from_secs(600)
        } else {
            Duration::from_secs(p.seconds * 2 + 30)
        };
    let clients: Vec<_> = (0..p.clients)
        .map(|n| tokio::spawn(client(gw.addr, p, n, ledger.clone(), until)))
        .collect();
    // The crashes go on while first attempts are being released; the retries after that
    // finish against a backend that stays up (a tail of crashes would only add time).
    let window = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if p.seconds > 0 {
                tokio::time::sleep(Duration::from_secs(p.seconds)).await;
                stop.store(true, Ordering::SeqCst);
            }
        })
    };
    for c in clients {
        c.await.unwrap();
    }
    let load_took = load_started.elapsed();
    stop.store(true, Ordering::SeqCst);
    window.abort();
    let (pf, kills) = blocking(move || killer.join().unwrap()).await;

    // Postfix runs again (the killer always restarts it); deliver everything it holds.
    let expected: Vec<(usize, &'static str)> = {
        let l = ledger.lock().unwrap();
        (0..p.messages)
            .filter(|&i| l.fate[i] == Fate::Acked)
            .flat_map(|i| {
                make_message(p.seed, i)
                    .rcpts
                    .into_iter()
                    .map(move |u| (i, u))
            })
            .collect()
    };
    let wait = Duration::from_secs((30 + p.messages as u64 / 20).min(600));
    let seed = p.seed;
    let (pf, stored, queue_left, delivery_took) = blocking(move || {
        let begun = Instant::now();
        let mut last_flush = Instant::now() - Duration::from_secs(10);
        loop {
            if last_flush.elapsed() >= Duration::from_secs(2) {
                pf.flush();
                last_flush = Instant::now();
            }
            let stored = scan(&pf, seed);
            let queue = pf.queue_json().len();
            let complete = expected.iter().all(|k| stored.copies.contains_key(k));
            if (complete && queue == 0) || begun.elapsed() > wait {
                return (pf, stored, queue, begun.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await;

    // Every client has finished: the ledger is ours alone.
    let l = Arc::into_inner(ledger)
        .expect("clients still hold the ledger")
        .into_inner()
        .unwrap();
    let count = |f: Fate| l.fate.iter().filter(|x| **x == f).count();
    let acked_msgs = count(Fate::Acked);
    let mut expected_copies = 0;
    let mut missing = Vec::new();
    let mut stored_unacked = 0;
    let mut duplicates = 0;
    for i in 0..p.messages {
        let rcpts = make_message(p.seed, i).rcpts;
        for u in rcpts {
            let copies = stored.copies.get(&(i, u)).copied().unwrap_or(0);
            duplicates += copies.saturating_sub(1);
            if l.fate[i] == Fate::Acked {
                expected_copies += 1;
                if copies == 0 {
                    missing.push(format!("{} for {u}", message_id(p.seed, i)));
                }
            } else if copies > 0 {
                stored_unacked += 1;
            }
        }
    }
    let stored_msgs = {
        let mut ids: Vec<usize> = stored.copies.keys().map(|(i, _)| *i).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let mut t = String::new();
    let row = |t: &mut String, name: &str, v: String| {
        let _ = writeln!(t, "  {name:<44} {v:>8}");
    };
    let _ = writeln!(
        t,
        "soak accounting (seed 0x{:x}; {} clients; sending {:.1}s, delivery wait {:.1}s)",
        p.seed,
        p.clients,
        load_took.as_secs_f64(),
        delivery_took.as_secs_f64()
    );
    row(&mut t, "messages", p.messages.to_string());
    let sent = l.tries.iter().filter(|n| **n > 0).count();
    row(&mut t, "sent (at least one attempt)", sent.to_string());
    row(&mut t, "attempts", l.attempts.to_string());
    row(&mut t, "  acknowledged with 250", l.acked.to_string());
    row(&mut t, "  4xx", l.temporary.to_string());
    row(&mut t, "  5xx", l.permanent.to_string());
    row(&mut t, "  connection errors", l.connection.to_string());
    row(&mut t, "messages acknowledged", acked_msgs.to_string());
    row(
        &mut t,
        "messages given up (4xx on every attempt)",
        count(Fate::GaveUp).to_string(),
    );
    row(
        &mut t,
        "messages refused (5xx)",
        count(Fate::Rejected).to_string(),
    );
    row(
        &mut t,
        "messages unfinished when sending stopped",
        (count(Fate::Unsent) + count(Fate::Pending)).to_string(),
    );
    row(
        &mut t,
        "copies expected (acknowledged × recipients)",
        expected_copies.to_string(),
    );
    row(
        &mut t,
        "stored: messages / files",
        format!("{stored_msgs}/{}", stored.files),
    );
    row(&mut t, "  duplicate copies", duplicates.to_string());
    row(
        &mut t,
        "  stored without a 250 (reply lost)",
        stored_unacked.to_string(),
    );
    row(
        &mut t,
        "  corrupted copies",
        stored.corrupted.len().to_string(),
    );
    row(&mut t, "  not of this run", stored.foreign.to_string());
    row(&mut t, "still in the Postfix queue", queue_left.to_string());
    row(
        &mut t,
        "ACKNOWLEDGED-BUT-MISSING (must be 0)",
        missing.len().to_string(),
    );
    let _ = writeln!(
        t,
        "  backend crashes: {} (abort {}, SIGKILL master {}, SIGKILL all {})",
        kills.total(),
        kills.abort,
        kills.kill_master,
        kills.kill_all
    );
    let _ = writeln!(t, "  crash schedule: {}", kills.log.join(", "));
    let _ = writeln!(t, "  refusals and errors by stage:");
    for (k, n) in &l.kinds {
        let _ = writeln!(t, "    {k:<50} {n:>6}");
    }
    let _ = writeln!(t, "  total {:.1}s", started.elapsed().as_secs_f64());
    eprintln!("{t}");

    assert!(
        missing.is_empty(),
        "acknowledged with 250 but not delivered: {missing:?}\n{t}\nPostfix log tail:\n{}",
        pf.log_tail(40)
    );
    assert!(
        stored.corrupted.is_empty(),
        "delivered with another body than was sent: {:?}\n{t}",
        stored.corrupted
    );
    assert!(kills.total() > 0, "the backend was never crashed\n{t}");
    assert!(acked_msgs > 0, "nothing was acknowledged\n{t}");
    assert_eq!(l.permanent, 0, "a valid message got a 5xx\n{t}");
    assert_eq!(stored.foreign, 0, "{t}");
    gw.stop().await;
    drop(pf);
}
