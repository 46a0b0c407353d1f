//! OpenDKIM's `miltertest` (Debian package `miltertest`) as an independent MTA-side milter
//! client: a Lua script drives the milter protocol (`mt.connect`, `mt.negotiate`,
//! `mt.conninfo`, `mt.helo`, `mt.mailfrom`, `mt.rcptto`, `mt.header`, `mt.eoh`,
//! `mt.bodystring`, `mt.eom`, `mt.abort`, `mt.unknown`, `mt.getreply`, `mt.eom_check`...).
//!
//! `run` writes `PRELUDE` + the test's script + an epilogue to a temp file, runs
//! `miltertest -s FILE` with stdin closed and its output in files (no pipe to fill), kills
//! it when it outlives the bound, and returns its exit code and output. The script body runs
//! under `pcall`: success prints `MILTERTEST-PASS`, failure prints `MILTERTEST-FAIL: <why>`
//! and exits 1 (miltertest itself exits 1 on a Lua error but often prints nothing).
//!
//! What the installed miltertest (2.11.0~beta2, "v1.6.0") does, read from its source and
//! checked here, that the scripts rely on:
//! - The socket is written `inet:PORT@HOST` (not Postfix's `inet:HOST:PORT`) or
//!   `unix:/PATH`: see `socket_arg`.
//! - `mt.negotiate(conn, version, PROTOCOL, ACTIONS)`: the third argument is the protocol
//!   (steps) mask and the fourth the actions, whatever the man page says; the prelude's
//!   `negotiate(conn, version, actions, protocol)` takes them in wire order. Without an
//!   explicit call, the first step negotiates version 6, actions 0x1ff, protocol 0x1fffff
//!   (what Postfix 3.7 offers).
//! - After negotiation it sends a stage only if the milter did not ask to skip it (NO*
//!   bits; the call then errors), and reads a reply only if the milter did not ask for
//!   no reply (NR* bits): a reply the milter sends anyway is read as the reply to a later
//!   command, so the dialogue goes out of step and the end-of-message checks fail.
//! - `mt.getreply` is the last reply read (a number: `SMFIR_CONTINUE` is 99 = 'c').
//! - `mt.eom` reads packets until continue/accept/reject/tempfail/discard or a replycode,
//!   and records the others (insert-header, change-header, quarantine...) for
//!   `mt.eom_check`; `mt.mailfrom` forgets the previous message's records.
//! - Each reply is read with one read(2) of 5 bytes and one of the rest, into a 1024-byte
//!   buffer: a milter packet split over two writes, or one longer than ~1 KiB, breaks it.
//! - The read timeout is 10 s unless `mt.set_timeout(n)`.
//! - It never sends macros by itself (`mt.macro` does), and sends no DATA unless `mt.data`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::config::schema::MilterSocket;

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code; `None` when it was killed (timed out) or died of a signal.
    pub code: Option<i32>,
    pub timed_out: bool,
    /// stdout then stderr.
    pub output: String,
}

impl Run {
    /// The script ran to its end: exit 0 and the epilogue's pass line.
    pub fn passed(&self) -> bool {
        self.code == Some(0) && self.output.lines().any(|l| l == PASS_LINE)
    }

    /// Panics with the whole output unless the script passed.
    pub fn assert_passed(&self, what: &str) {
        assert!(
            self.passed(),
            "miltertest {what}: expected a pass, got exit {:?} (timed out: {})\n--- output ---\n{}--- end ---",
            self.code,
            self.timed_out,
            self.output
        );
    }

    /// The lines the script printed with `mt.echo`.
    pub fn lines(&self) -> Vec<&str> {
        self.output.lines().collect()
    }
}

pub const PASS_LINE: &str = "MILTERTEST-PASS";
pub const FAIL_PREFIX: &str = "MILTERTEST-FAIL: ";

/// Lua helpers every script can use (SOCK is set before them).
pub const PRELUDE: &str = r#"
-- Wire-order negotiation: miltertest's own mt.negotiate takes (conn, version, protocol, actions).
function negotiate(conn, version, actions, protocol)
  local r = mt.negotiate(conn, version, protocol, actions)
  if r ~= nil then error("negotiate: " .. tostring(r), 0) end
end

function rname(r)
  if r == nil then return "nil" end
  local n = math.tointeger(r) or r
  if type(n) == "number" and n >= 32 and n < 127 then
    return string.format("'%s'(%d)", string.char(n), n)
  end
  return tostring(r)
end

-- A step returns nil on success, an error string otherwise.
function ok(what, r)
  if r ~= nil then error(what .. ": " .. tostring(r), 0) end
end

function check(cond, what)
  if not cond then error(what, 0) end
end

function expect(conn, what, want)
  local got = mt.getreply(conn)
  if got ~= want then
    error(what .. ": reply " .. rname(got) .. ", expected " .. rname(want), 0)
  end
end

-- The reply of a stage that is not a refusal: SMFIR_CONTINUE, or nothing at all when the
-- milter negotiated no reply for it (nr_flag).
function expect_continue(conn, what, nr_flag)
  if nr_flag ~= nil and mt.test_option(conn, nr_flag) then return end
  expect(conn, what, SMFIR_CONTINUE)
end

-- The final reply at end of message for an accepted message.
function expect_accepted(conn, what)
  local got = mt.getreply(conn)
  if got ~= SMFIR_CONTINUE and got ~= SMFIR_ACCEPT then
    error(what .. ": reply " .. rname(got) .. ", expected continue or accept", 0)
  end
end

-- How many headers named `name` the milter added or inserted at end of message.
function added_count(conn, name)
  local n = 0
  while mt.getheader(conn, name, n) ~= nil do n = n + 1 end
  return n
end

-- Our Authentication-Results at end of message: inserted (SMFIR_INSHEADER) at index 0,
-- exactly once, its value starting with the authserv-id. Returns the value.
function expect_our_ar(conn, authserv_id)
  check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"),
        "no Authentication-Results inserted (SMFIR_INSHEADER)")
  check(added_count(conn, "Authentication-Results") == 1,
        "Authentication-Results added " .. added_count(conn, "Authentication-Results") .. " times")
  local v = mt.getheader(conn, "Authentication-Results", 0)
  local body = v:gsub("^%s+", "")
  check(body:sub(1, #authserv_id + 1) == authserv_id .. ";",
        "Authentication-Results does not start with " .. authserv_id .. ";: " .. v)
  check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results", v, 0),
        "Authentication-Results not inserted at index 0: " .. v)
  return v
end

-- One accepted message from MAIL to end of message (its replies checked, the end of
-- message answered continue or accept); the header operations are left to the caller.
function send_message(conn, from, rcpt, headers, body)
  ok("mailfrom", mt.mailfrom(conn, from))
  expect_continue(conn, "mailfrom", SMFIP_NR_MAIL)
  ok("rcptto", mt.rcptto(conn, rcpt))
  expect_continue(conn, "rcptto", SMFIP_NR_RCPT)
  for _, h in ipairs(headers) do
    ok("header " .. h[1], mt.header(conn, h[1], h[2]))
    expect_continue(conn, "header " .. h[1], SMFIP_NR_HDR)
  end
  ok("eoh", mt.eoh(conn))
  expect_continue(conn, "eoh", SMFIP_NR_EOH)
  ok("body", mt.bodystring(conn, body))
  expect_continue(conn, "body", SMFIP_NR_BODY)
  ok("eom", mt.eom(conn))
  expect_accepted(conn, "eom")
end

-- send_message, then our A-R checked (expect_our_ar); returns its value.
function message(conn, from, rcpt, headers, body, authserv_id)
  send_message(conn, from, rcpt, headers, body)
  return expect_our_ar(conn, authserv_id)
end
"#;

/// The socket as miltertest writes it: `inet:PORT@127.0.0.1` or `unix:/PATH`.
pub fn socket_arg(socket: &MilterSocket) -> String {
    match socket {
        MilterSocket::Inet(a) => format!("inet:{}@{}", a.port(), a.ip()),
        MilterSocket::Unix(p) => format!("unix:{}", p.display()),
    }
}

/// The whole script: `SOCK`, the prelude, `body` under pcall, the pass/fail epilogue.
pub fn script(socket: &str, body: &str) -> String {
    format!(
        "SOCK = {socket:?}\n{PRELUDE}\nlocal function main()\n{body}\nend\n\
         local passed, err = pcall(main)\n\
         if passed then mt.echo({PASS_LINE:?}) else mt.echo({FAIL_PREFIX:?} .. tostring(err)); os.exit(1) end\n"
    )
}

/// Panics (never skips) when miltertest is missing: the test command installs it.
pub fn ensure_installed() {
    if Command::new("miltertest")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "miltertest is not installed. The test command ./scripts/test.sh installs it when \
             run as root (apt-get install miltertest); these tests need it and are not skipped."
        );
    }
}

/// Runs `body` (see `script`) against `socket` (miltertest's form, `socket_arg`), for at
/// most `limit`; blocking (call it from `spawn_blocking` next to an in-process gateway).
pub fn run(socket: &str, body: &str, limit: Duration) -> Run {
    ensure_installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.lua");
    std::fs::write(&path, script(socket, body)).expect("write script");
    run_file(&path, dir.path(), limit)
}

fn run_file(script: &Path, dir: &Path, limit: Duration) -> Run {
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = Command::new("miltertest")
        .arg("-s")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn miltertest");
    let end = Instant::now() + limit;
    let (status, timed_out) = loop {
        match child.try_wait().expect("wait for miltertest") {
            Some(status) => break (Some(status), false),
            None if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
        }
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        code: status.and_then(|s| s.code()),
        timed_out,
        output: format!("{}{}", read(&out_path), read(&err_path)),
    }
}
