//! Start-up and shutdown order: config → open-file limit → metrics → listeners → serve →
//! drain.
//!
//! Owns: binding every socket (so port 0 works for tests), raising the open-file limit and
//! sizing the session semaphore by it (`descriptors::plan`), spawning the accept loops and
//! the metrics endpoint, and logging the lifecycle phase. Must not: speak SMTP.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::accept::Acceptor;
use crate::config::Config;
use crate::context::Context;
use crate::descriptors::{self, Plan};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::shutdown::{Drained, Shutdown};

/// A running gateway.
pub struct Running {
    ctx: Arc<Context>,
    /// The bound SMTP addresses (real ports when the config said 0).
    pub smtp_addrs: Vec<SocketAddr>,
    /// The bound milter TCP addresses (`inet:` listeners; real ports when 0 was given).
    pub milter_addrs: Vec<SocketAddr>,
    /// The bound metrics address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The metrics registry (tests read it directly too).
    pub metrics: Arc<Metrics>,
    shutdown: Shutdown,
    metrics_stop: CancellationToken,
    grace: std::time::Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds and starts everything described by `config`.
pub async fn start(config: Config) -> Result<Running, Error> {
    tracing::info!(phase = "starting", version = env!("CARGO_PKG_VERSION"), backend = %config.backend.url, "portcullis starting");
    let capacity = session_capacity(&config)?;
    let metrics = Arc::new(Metrics::new());
    metrics.emit(crate::metrics::Event::Capacity {
        open_files_limit: capacity.limit,
        sessions: capacity.sessions,
    });
    let ctx = Arc::new(Context::new(config, metrics.clone())?);
    crate::reload::announce(&ctx);
    let shutdown = Shutdown::default();
    let metrics_stop = CancellationToken::new();
    let mut tasks = Vec::new();

    let metrics_addr = match ctx.config.metrics.listen {
        Some(addr) => {
            let (bound, serve) = crate::http::bind(
                addr,
                metrics.clone(),
                ctx.backend.clone(),
                metrics_stop.clone(),
            )
            .await?;
            tasks.push(tokio::spawn(serve));
            tracing::info!(addr = %bound, "metrics endpoint listening");
            Some(bound)
        }
        None => None,
    };

    tasks.push(tokio::spawn(crate::reload::watch(
        ctx.clone(),
        metrics_stop.clone(),
    )));
    tasks.push(tokio::spawn(housekeeping(
        ctx.clone(),
        metrics_stop.clone(),
    )));
    tasks.push(tokio::spawn(
        ctx.state.clone().maintain(metrics_stop.clone()),
    ));
    // A shared store starts connected when it can: the first attempt is bounded by four
    // timeouts (state::redis::maintain).
    ctx.state.ready(ctx.config.state.redis.timeout * 5).await;
    tasks.push(tokio::spawn(probe_backend(
        ctx.clone(),
        ctx.config.backend.probe_interval,
        metrics_stop.clone(),
    )));

    let sessions = Arc::new(Semaphore::new(capacity.sessions));
    let mut smtp_addrs = Vec::new();
    for addr in &ctx.config.listen {
        let listener = bind(*addr)?;
        let bound = listener.local_addr()?;
        tracing::info!(addr = %bound, "SMTP listening");
        smtp_addrs.push(bound);
        tasks.push(tokio::spawn(crate::listener::accept_loop(
            Acceptor::new(listener, "smtp", metrics.clone()),
            ctx.clone(),
            sessions.clone(),
            shutdown.signals.clone(),
            shutdown.tracker.clone(),
        )));
    }
    let mut milter_addrs = Vec::new();
    for socket in &ctx.config.milter.listen {
        let m = &ctx.config.milter;
        let listener =
            crate::milter::listener::bind(socket, m.socket_mode, m.socket_owner.as_deref(), bind)?;
        milter_addrs.extend(listener.local_addr());
        tracing::info!(socket = %socket, bound = ?listener.local_addr(), "milter listening");
        tasks.push(tokio::spawn(crate::milter::listener::accept_loop(
            listener,
            ctx.clone(),
            sessions.clone(),
            shutdown.signals.clone(),
            shutdown.tracker.clone(),
        )));
    }
    tracing::info!(phase = "running", "portcullis ready");
    Ok(Running {
        ctx: ctx.clone(),
        smtp_addrs,
        milter_addrs,
        metrics_addr,
        metrics,
        grace: ctx.config.timeouts.shutdown_grace,
        shutdown,
        metrics_stop,
        tasks,
    })
}

/// Raises the open-file limit and sizes the sessions by it: fewer sessions than
/// `limits.max_sessions` when the limit cannot hold them (a loud warning), none at all is an
/// error.
fn session_capacity(config: &Config) -> Result<Plan, Error> {
    let limit = descriptors::raise_limit();
    if limit.now != limit.before {
        tracing::info!(
            from = limit.before,
            to = limit.now,
            "open-file limit raised to the hard limit"
        );
    }
    let plan = descriptors::plan(config, limit.now)?;
    let wanted = config.limits.max_sessions;
    if plan.sessions < wanted {
        tracing::warn!(
            open_files_limit = plan.limit,
            per_session = plan.per_session,
            reserve = plan.reserve,
            sessions = plan.sessions,
            max_sessions = wanted,
            needed = plan.needed(wanted),
            "the open-file limit cannot hold limits.max_sessions: serving at most `sessions` \
             at once (the others get 421); raise the hard limit (ulimit -Hn, systemd \
             LimitNOFILE=) to `needed`, or lower limits.max_sessions"
        );
    }
    Ok(plan)
}

/// Binds an SMTP listener. IPv6 sockets are v6-only so that `0.0.0.0:25` and `[::]:25` can
/// both be listed (a dual-stack `[::]` would otherwise take the IPv4 port too).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Periodic clean-up that keeps in-memory state bounded (the connection-rate limiter, local
/// rate-limit buckets and greylisting triplets).
async fn housekeeping(ctx: Arc<Context>, stop: CancellationToken) {
    loop {
        // Why select: shutdown must not wait for the next round.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                ctx.admission.housekeeping();
                ctx.state.housekeeping();
            }
        }
    }
}

/// Keeps `portcullis_backend_up` current even when nobody polls `/readyz`.
async fn probe_backend(ctx: Arc<Context>, every: std::time::Duration, stop: CancellationToken) {
    let mut was_up = None;
    loop {
        let up = ctx.backend.probe().await;
        ctx.metrics
            .emit(crate::metrics::Event::BackendProbe { up: up.is_ok() });
        // Log changes only: one line when the backend goes away, one when it is back.
        if was_up != Some(up.is_ok()) {
            match &up {
                Ok(()) => tracing::info!("backend reachable"),
                Err(e) => tracing::warn!(error = %e, "backend unreachable"),
            }
            was_up = Some(up.is_ok());
        }
        // Why select: shutdown must not wait for the next probe.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

impl Running {
    /// Drains sessions within the configured grace period and stops every task.
    pub async fn stop(self) -> Drained {
        let drained = self.shutdown.drain(self.grace).await;
        self.metrics_stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        tracing::info!(phase = "stopped", "portcullis stopped");
        drained
    }

    /// Recompiles the policy file and puts it in force (SIGHUP).
    pub fn reload(&self) -> Result<std::time::Duration, crate::config::ConfigErrors> {
        crate::reload::reload(&self.ctx)
    }

    /// Reads the STARTTLS certificate and key again and serves them to new handshakes, unless
    /// the pair is refused (SIGHUP, after the policy).
    pub fn reload_tls(&self) -> Result<(), Error> {
        crate::reload::reload_tls(&self.ctx)
    }

    /// A handle that starts the drain from elsewhere (e.g. a signal handler or a test).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.signals.shutdown.clone()
    }
}
