//! The session's deadlines over a duplex stream with tokio's clock paused: the command
//! timeout against the idle clock, `timeouts.session`, `timeouts.idle` and `timeouts.data`
//! (DATA and BDAT).
//!
//! Owns: when each deadline ends a session, to the virtual millisecond, with its reply, its
//! `limit_hits` label and nothing delivered. Must not: sleep in real time (a paused clock
//! only moves when every task waits, so a wait here costs no wall time) or open sockets;
//! that the timers are wired to a real socket is `tests/session.rs`'s one timeout case.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// Asserts that `since` is at least `deadline` ago and less than `deadline + slack`: the
/// deadline ended the wait, not an earlier or a later one.
#[track_caller]
fn ended_at(since: Instant, deadline: Duration, slack: Duration) {
    let waited = since.elapsed();
    assert!(
        waited >= deadline && waited < deadline + slack,
        "ended after {waited:?}, the deadline is {deadline:?}"
    );
}

/// Sends NOOP every 50 ms (at most 200 times) until one is not answered 250; that reply.
async fn noop_until_refused(c: &mut Client) -> String {
    for _ in 0..200 {
        let r = cmd(c, "NOOP").await;
        if !r.starts_with("250") {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session was never ended");
}

fn limit_hits(ctx: &Context, limit: &str) -> Option<f64> {
    metric(
        ctx,
        &format!("portcullis_limit_hits_total{{limit=\"{limit}\"}}"),
    )
}

const SESSION_TOO_LONG: &str = "421 4.4.2 Session too long";
const IDLE_TOO_LONG: &str = "421 4.4.2 Idle too long";
const TIMEOUT: &str = "421 4.4.2 Timeout exceeded";

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_closed_by_the_idle_clock_not_the_command_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(300);
    let ctx = context(dir.path(), |c| {
        c.timeouts.command = Duration::from_secs(600);
        c.timeouts.idle = idle;
    });
    let started = Instant::now();
    let mut c = start(ctx.clone());
    greet(&mut c).await;
    // Paused time: the session's wait is the only timer, so it runs out at once.
    expect(&reply(&mut c).await, IDLE_TOO_LONG);
    ended_at(started, idle, Duration::from_secs(1));
    assert_eq!(limit_hits(&ctx, "idle_timeout"), Some(1.0));
    assert_eq!(limit_hits(&ctx, "command_timeout"), Some(0.0));
}

/// A client that keeps the session busy with cheap commands is ended by `timeouts.session`
/// at a command boundary; so is one that waits silently past it.
#[tokio::test(start_paused = true)]
async fn session_deadline_ends_a_busy_client() {
    let dir = tempfile::tempdir().unwrap();
    let session = Duration::from_millis(1500);
    let ctx = context(dir.path(), |c| c.timeouts.session = session);
    let started = Instant::now();
    let mut c = start(ctx.clone());
    greet(&mut c).await;
    expect(&noop_until_refused(&mut c).await, SESSION_TOO_LONG);
    ended_at(started, session, Duration::from_millis(51));
    assert_eq!(reply(&mut c).await, "", "the connection is closed");

    // Silent past the deadline, well within timeouts.command (5 minutes).
    let started = Instant::now();
    let mut c = start(ctx.clone());
    greet(&mut c).await;
    expect(&reply(&mut c).await, SESSION_TOO_LONG);
    ended_at(started, session, Duration::from_millis(1));
    assert_eq!(limit_hits(&ctx, "session_timeout"), Some(2.0));
}

/// The session deadline never interrupts a message: one whose DATA began before it is read
/// and relayed, and the 421 comes at the next command (pipelined behind the message's end,
/// since the session closes at once after it).
#[tokio::test(start_paused = true)]
async fn session_deadline_waits_for_the_message_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let session = Duration::from_secs(2);
    let ctx = context(dir.path(), |c| c.timeouts.session = session);
    let mut c = start(ctx.clone());
    envelope(&mut c, "late@example.test").await;
    expect(&cmd(&mut c, "DATA").await, "354");
    send(&mut c, b"Subject: begun in time\r\n\r\n").await;
    tokio::time::sleep(session + Duration::from_millis(500)).await;
    send(
        &mut c,
        b"finished after the deadline\r\n.\r\nMAIL FROM:<a@sender.example>\r\n",
    )
    .await;
    expect(&reply(&mut c).await, "250");
    assert_eq!(delivered(dir.path(), "late"), 1);
    expect(&reply(&mut c).await, SESSION_TOO_LONG);
    assert_eq!(reply(&mut c).await, "", "the connection is closed");

    // Nor between the chunks of a BDAT message.
    let mut c = start(ctx.clone());
    envelope(&mut c, "chunked@example.test").await;
    send(&mut c, b"BDAT 24\r\nSubject: begun in time\r\n").await;
    expect(&reply(&mut c).await, "250");
    tokio::time::sleep(session + Duration::from_millis(500)).await;
    send(&mut c, b"BDAT 8 LAST\r\n\r\nlate\r\nNOOP\r\n").await;
    expect(&reply(&mut c).await, "250");
    assert_eq!(delivered(dir.path(), "chunked"), 1);
    expect(&reply(&mut c).await, SESSION_TOO_LONG);
    assert_eq!(limit_hits(&ctx, "session_timeout"), Some(2.0));
}

/// `timeouts.idle` ends a client that sends no mail, however busy it keeps the session.
#[tokio::test(start_paused = true)]
async fn idle_bound_ends_a_client_that_sends_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_millis(1500);
    let ctx = context(dir.path(), |c| c.timeouts.idle = idle);
    let started = Instant::now();
    let mut c = start(ctx.clone());
    greet(&mut c).await;
    expect(&noop_until_refused(&mut c).await, IDLE_TOO_LONG);
    ended_at(started, idle, Duration::from_millis(51));
    assert_eq!(limit_hits(&ctx, "idle_timeout"), Some(1.0));
}

/// The idle clock restarts when a transaction completes and does not run inside one; after
/// RSET it runs again from the last completed transaction.
#[tokio::test(start_paused = true)]
async fn idle_clock_restarts_after_each_completed_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(3);
    let ctx = context(dir.path(), |c| c.timeouts.idle = idle);
    let mut c = start(ctx.clone());
    greet(&mut c).await;
    tokio::time::sleep(idle / 2).await;
    expect(&cmd(&mut c, "MAIL FROM:<a@sender.example>").await, "250");
    expect(&cmd(&mut c, "RCPT TO:<steady@example.test>").await, "250");
    expect(&cmd(&mut c, "DATA").await, "354");
    expect(&cmd(&mut c, "Subject: one\r\n\r\nx\r\n.").await, "250");
    let completed = Instant::now();
    tokio::time::sleep(idle / 2).await;
    // The idle bound since connect, within it since the message.
    expect(&cmd(&mut c, "NOOP").await, "250");
    expect(&cmd(&mut c, "MAIL FROM:<a@sender.example>").await, "250");
    tokio::time::sleep(idle).await;
    // Inside a transaction the idle bound does not apply.
    expect(&cmd(&mut c, "RCPT TO:<steady@example.test>").await, "250");
    // RSET leaves the transaction uncompleted: the clock from the last message has run out.
    expect(&cmd(&mut c, "RSET").await, "250");
    let rset = Instant::now();
    expect(&reply(&mut c).await, IDLE_TOO_LONG);
    assert_eq!(rset.elapsed(), Duration::ZERO, "at once after RSET");
    assert!(completed.elapsed() >= idle);
    assert_eq!(delivered(dir.path(), "steady"), 1);
    assert_eq!(limit_hits(&ctx, "idle_timeout"), Some(1.0));
}

/// `timeouts.data` bounds a BDAT message as a whole, the waits for the BDAT commands between
/// its chunks included (each of which is within `timeouts.command`).
#[tokio::test(start_paused = true)]
async fn bdat_message_is_bounded_by_the_data_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let data = Duration::from_millis(800);
    let ctx = context(dir.path(), |c| c.timeouts.data = data);
    let mut c = start(ctx.clone());
    envelope(&mut c, "chunks@example.test").await;
    let began = Instant::now();
    send(&mut c, b"BDAT 9\r\nSubject: ").await;
    expect(&reply(&mut c).await, "250");
    expect(&reply(&mut c).await, TIMEOUT);
    ended_at(began, data, Duration::from_millis(1));
    assert_eq!(delivered(dir.path(), "chunks"), 0);
    assert_eq!(limit_hits(&ctx, "data_timeout"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn stalled_data_times_out_with_421_and_nothing_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let data = Duration::from_millis(500);
    let ctx = context(dir.path(), |c| c.timeouts.data = data);
    let mut c = start(ctx.clone());
    envelope(&mut c, "slow@example.test").await;
    let began = Instant::now();
    expect(&cmd(&mut c, "DATA").await, "354");
    send(&mut c, b"Subject: never finished\r\n").await;
    expect(&reply(&mut c).await, TIMEOUT);
    ended_at(began, data, Duration::from_millis(1));
    assert_eq!(delivered(dir.path(), "slow"), 0);
    assert_eq!(limit_hits(&ctx, "data_timeout"), Some(1.0));
}
