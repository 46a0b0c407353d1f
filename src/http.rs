//! The HTTP endpoint: `/metrics`, `/healthz` (the process runs) and `/readyz` (the backend
//! answers, so mail can flow).
//!
//! Owns: the axum router and its listener, which accepts through `accept::Acceptor`, so a
//! scrape is still answered when the descriptor table is full (the listener's spare
//! descriptor takes it) and accept failures back off and are logged once. Each scrape
//! refreshes the descriptor and process gauges, and is answered in the format its `Accept` header
//! prefers (`metrics/negotiate.rs`). Must not: be reachable from outside by default (the
//! default address is 127.0.0.1:9465).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accept::{Accepted, Acceptor};
use crate::metrics::{Event, Format, Metrics};
use crate::relay::Backend;

/// The metrics listener as axum sees it.
struct Scrapes(Acceptor);

impl axum::serve::Listener for Scrapes {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.next().await {
            Accepted::Normal(stream, peer) | Accepted::Reserve(stream, peer) => (stream, peer),
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[derive(Clone)]
struct Ctx {
    metrics: Arc<Metrics>,
    backend: Arc<Backend>,
}

/// Binds the metrics listener; returns the bound address and the serving future.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    backend: Arc<Backend>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let listener = Scrapes(Acceptor::new(listener, "metrics", metrics.clone()));
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(Ctx { metrics, backend });
    let serve = async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    };
    Ok((local, serve))
}

async fn metrics_handler(State(ctx): State<Ctx>, headers: HeaderMap) -> impl IntoResponse {
    ctx.metrics.emit(Event::OpenFiles {
        open: crate::descriptors::open_count(),
        limit: crate::descriptors::soft_limit(),
    });
    match crate::procstat::read() {
        Ok(sample) => ctx.metrics.emit(Event::Process(sample)),
        // The process metrics keep their last values.
        Err(e) => tracing::debug!(error = %e, "cannot read the process's resources"),
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            // The answer depends on Accept: a cache must not hand one scraper's format to
            // another.
            (header::VARY, "Accept"),
        ],
        ctx.metrics.render_as(format),
    )
}

async fn ready_handler(State(ctx): State<Ctx>) -> impl IntoResponse {
    let up = ctx.backend.probe().await;
    ctx.metrics.emit(Event::BackendProbe { up: up.is_ok() });
    match up {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backend unavailable: {e}\n"),
        ),
    }
}
