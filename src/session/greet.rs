//! EHLO, HELO and STARTTLS.
//!
//! Owns: the greeting exchange, the capability reply and the TLS upgrade (RFC 3207): after
//! STARTTLS every buffered byte is dropped and the session starts over unauthenticated.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;

use super::Session;
use super::state::State;
use crate::metrics::Event;
use crate::smtp::reply;
use crate::tls::MaybeTls;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// EHLO (`esmtp`) or HELO: resets any transaction, runs HELO checks, replies.
    pub(super) async fn helo(&mut self, name: String, esmtp: bool) {
        self.reset_transaction().await;
        // A kept backend connection carries the old HELO name in its XCLIENT: drop it.
        self.drop_idle_backend().await;
        if let Some(refusal) = self.engine.helo(name, esmtp).await.refusal() {
            self.reply(refusal);
            return;
        }
        self.state = State::Greeted;
        let host = &self.ctx.config.hostname;
        let r = if esmtp {
            let caps = self.ctx.capabilities(self.io.is_tls());
            reply::ehlo(host, &self.info().client.ip().to_string(), &caps)
        } else {
            reply::helo(host)
        };
        self.reply(r);
    }

    /// STARTTLS: 220, then the handshake within `timeouts.tls_handshake`.
    pub(super) async fn starttls(&mut self) {
        let Some(acceptor) = self.ctx.tls.clone() else {
            self.client_error(reply::NOT_IMPLEMENTED);
            return;
        };
        if self.io.is_tls() {
            self.client_error(reply::ALREADY_TLS);
            return;
        }
        self.reply(reply::READY_TLS);
        if self.flush().await.is_err() {
            return;
        }
        // Anything the client pipelined after STARTTLS arrived in clear text and must not
        // be executed inside the TLS session (the CVE-2011-0411 class of injection).
        self.rbuf.clear();
        let MaybeTls::Plain(plain) = std::mem::replace(&mut self.io, MaybeTls::Upgrading) else {
            self.closing = true;
            return;
        };
        match timeout(
            self.ctx.config.timeouts.tls_handshake,
            acceptor.accept(plain),
        )
        .await
        {
            Ok(Ok(tls)) => {
                self.io = MaybeTls::Tls(Box::new(tls.into()));
                // The client must greet again; what it said before TLS no longer counts,
                // while the connect facts (client.ip) still hold.
                self.engine.tls_started();
                self.state = State::Connected;
                self.reset_transaction().await;
                self.drop_idle_backend().await;
                self.ctx.metrics.emit(Event::TlsHandshake { ok: true });
            }
            Ok(Err(e)) => {
                tracing::info!(session = %self.info().id, error = %e, "TLS handshake failed");
                self.ctx.metrics.emit(Event::TlsHandshake { ok: false });
                self.closing = true;
            }
            Err(_) => {
                tracing::info!(session = %self.info().id, "TLS handshake timed out");
                self.ctx.metrics.emit(Event::TlsHandshake { ok: false });
                self.closing = true;
            }
        }
    }
}
