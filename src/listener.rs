//! Accepting connections: the session limit, PROXY protocol, one task per session.
//!
//! Owns: the accept loop, the session semaphore, session ids and the per-connection set-up.
//! Must not: parse SMTP. A connection over `limits.max_sessions` (or over the capacity the
//! open-file limit allows, `descriptors::plan`), or one taken with the spare descriptor
//! when the table is full (`accept.rs`), is accepted only to be told 421 and closed at
//! once: left in the kernel's backlog it would learn nothing and wait. Reaching the limit
//! and leaving it are logged once each, not once per client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::accept::{Accepted, Acceptor};
use crate::context::Context;
use crate::metrics::{Event, Limit};
use crate::session::{Session, Signals};
use crate::smtp::envelope::SessionInfo;
use crate::smtp::reply;

/// Accepts connections until shutdown; sessions are spawned on `tracker`.
pub async fn accept_loop(
    mut acceptor: Acceptor,
    ctx: Arc<Context>,
    sessions: Arc<Semaphore>,
    signals: Signals,
    tracker: TaskTracker,
) {
    let addr = acceptor.local_addr().ok();
    // Since when, and how many clients were told 421 at the session limit.
    let mut full: Option<(Instant, u64)> = None;
    loop {
        // Why select: shutdown must stop accepting even while no client connects.
        let accepted = tokio::select! {
            biased;
            _ = signals.shutdown.cancelled() => break,
            accepted = acceptor.next() => accepted,
        };
        let (stream, peer) = match accepted {
            Accepted::Normal(stream, peer) => (stream, peer),
            Accepted::Reserve(stream, peer) => {
                // The table is full: the spare descriptor took it, and it goes at once.
                ctx.metrics.emit(Event::LimitHit(Limit::OpenFiles));
                too_busy(&stream);
                tracing::debug!(client = %peer, "open-file limit reached; 421 sent");
                continue;
            }
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            ctx.metrics.emit(Event::Session("rejected_capacity"));
            ctx.metrics.emit(Event::LimitHit(Limit::Sessions));
            too_busy(&stream);
            match &mut full {
                Some((_, refused)) => *refused += 1,
                None => {
                    tracing::warn!(listener = ?addr, "session limit reached: new clients get 421");
                    full = Some((Instant::now(), 1));
                }
            }
            tracing::debug!(client = %peer, "session limit reached; 421 sent");
            continue;
        };
        if let Some((since, refused)) = full.take() {
            tracing::info!(
                listener = ?addr,
                refused,
                lasted_ms = since.elapsed().as_millis() as u64,
                "below the session limit again"
            );
        }
        ctx.metrics.emit(Event::Session("accepted"));
        let (ctx, signals) = (ctx.clone(), signals.clone());
        tracker.spawn(async move {
            // The permit lives as long as the session.
            let _permit = permit;
            serve_connection(stream, peer, ctx, signals).await;
        });
    }
}

/// `421 4.3.2`, best effort and never blocking: a fresh socket's send buffer takes one
/// line. The stream is closed when the caller drops it.
fn too_busy(stream: &TcpStream) {
    let mut out = Vec::new();
    reply::TOO_BUSY.write_to(&mut out);
    let _ = stream.try_write(&out);
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    signals: Signals,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let mut client = peer;
    let mut early = Vec::new();
    if ctx
        .config
        .proxy_protocol
        .trusted
        .iter()
        .any(|net| net.contains(&peer.ip()))
    {
        match crate::proxy::read_header(&mut stream, ctx.config.timeouts.proxy_header).await {
            Ok(p) => {
                client = p.source.unwrap_or(peer);
                early = p.rest;
            }
            Err(e) => {
                tracing::warn!(proxy = %peer, error = %e, "PROXY header refused; closing");
                ctx.metrics
                    .emit(Event::SessionClosed(std::time::Duration::ZERO));
                return;
            }
        }
    }
    // An IPv4 client seen through an IPv6 socket or proxy (::ffff:a.b.c.d) is an IPv4
    // client for every check (SPF ip4:, XCLIENT, logs).
    let client = std::net::SocketAddr::new(client.ip().to_canonical(), client.port());
    // Lists, per-address concurrency and connection rate, before anything else is spent.
    let _ticket = match ctx.admission.admit(client.ip()) {
        Ok(ticket) => ticket,
        Err(refusal) => return refuse(stream, &ctx, client, refusal).await,
    };
    let id = session_id();
    let lease = ctx.config.state.redis.session_lease;
    let shared = match ctx
        .admission
        .admit_shared(&ctx.state, client.ip(), &id, lease)
        .await
    {
        Ok(shared) => shared,
        Err(refusal) => return refuse(stream, &ctx, client, refusal).await,
    };
    let info = SessionInfo::new(id, client, local);
    let session = Session::new(stream, info, early, ctx, signals).run();
    match shared {
        Some(shared) => shared.hold_during(lease, session).await,
        None => session.await,
    }
}

/// Turns a connection away before the banner with the refusal's reply.
async fn refuse(
    mut stream: TcpStream,
    ctx: &Context,
    client: SocketAddr,
    refusal: crate::admission::Refusal,
) {
    ctx.metrics.emit(Event::LimitHit(refusal.limit));
    ctx.metrics
        .emit(Event::SessionClosed(std::time::Duration::ZERO));
    tracing::info!(client = %client, limit = refusal.limit.label(), "connection refused before the banner");
    let mut out = Vec::new();
    refusal.reply.write_to(&mut out);
    let _ = tokio::time::timeout(
        ctx.config.timeouts.write,
        tokio::io::AsyncWriteExt::write_all(&mut stream, &out),
    )
    .await;
}

/// A short id, unique per process run: start time and a counter, in hex.
pub(crate) fn session_id() -> String {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    format!(
        "{:x}{:x}{:06x}",
        start & 0xffff_ffff,
        std::process::id() & 0xffff,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}
