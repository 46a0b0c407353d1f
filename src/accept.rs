//! Taking connections off a listening socket, also when descriptors run out.
//!
//! Owns: `Acceptor::next`, one step of an accept loop: a failed accept is retried after a
//! bounded exponential back-off (`BACKOFF_MIN` doubling to `BACKOFF_MAX`), logged once
//! when failures start and once when accepting works again (with the counts), and counted
//! in `portcullis_accept_errors_total`; when the descriptor table is full (EMFILE,
//! ENFILE), the listener's spare descriptor is given up so that the waiting connection can
//! still be taken (`Accepted::Reserve`), and held again on the next step.
//! Must not: decide what a connection gets (the SMTP loop tells a reserve connection
//! `421`, the metrics endpoint serves it) or speak any protocol.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use rustix::io::Errno;
use tokio::net::{TcpListener, TcpStream};

use crate::descriptors::Spare;
use crate::metrics::{AcceptError, Event, Metrics};

/// The first wait after a failed accept.
pub const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest wait between two attempts while accepts keep failing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A connection taken off the listener.
pub enum Accepted {
    /// Accepted normally.
    Normal(TcpStream, SocketAddr),
    /// Accepted with the spare descriptor because the table was full: close it soon, the
    /// spare is held again only once a descriptor is free.
    Reserve(TcpStream, SocketAddr),
}

/// A listener with its spare descriptor and its error state.
pub struct Acceptor {
    listener: TcpListener,
    spare: Spare,
    /// `smtp` or `metrics`: the metric label and the log field.
    name: &'static str,
    metrics: Arc<Metrics>,
    failing: Option<Failing>,
    delay: Duration,
}

/// Accepts have been failing since `since`.
struct Failing {
    since: Instant,
    errors: u64,
    reserve: u64,
}

impl Acceptor {
    /// Wraps `listener` (called `name` in logs and metrics) and takes its spare descriptor.
    pub fn new(listener: TcpListener, name: &'static str, metrics: Arc<Metrics>) -> Self {
        Acceptor {
            listener,
            spare: Spare::new(),
            name,
            metrics,
            failing: None,
            delay: BACKOFF_MIN,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection; waits (and backs off while accepts fail) until there is one.
    pub async fn next(&mut self) -> Accepted {
        loop {
            self.spare.restore();
            let error = match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.recovered();
                    return Accepted::Normal(stream, peer);
                }
                Err(e) if connection_gone(&e) => continue,
                Err(e) => e,
            };
            let cause = kind(&error);
            if cause == AcceptError::OpenFiles && self.spare.release() {
                // The waiting connection takes the number the spare gave up.
                match self.listener.accept().now_or_never() {
                    Some(Ok((stream, peer))) => {
                        self.failed(cause, &error);
                        if let Some(failing) = &mut self.failing {
                            failing.reserve += 1;
                        }
                        return Accepted::Reserve(stream, peer);
                    }
                    // Linux says EMFILE before it looks for a connection: with none
                    // waiting nothing failed (and the listener now waits for the next).
                    None => continue,
                    Some(Err(again)) => self.failed(kind(&again), &again),
                }
            } else {
                self.failed(cause, &error);
            }
            tokio::time::sleep(self.delay).await;
            self.delay = (self.delay * 2).min(BACKOFF_MAX);
        }
    }

    fn failed(&mut self, kind: AcceptError, error: &io::Error) {
        self.metrics.emit(Event::AcceptError {
            listener: self.name,
            kind,
        });
        match &mut self.failing {
            Some(failing) => failing.errors += 1,
            None => {
                tracing::warn!(
                    listener = self.name,
                    addr = ?self.listener.local_addr().ok(),
                    kind = kind.label(),
                    error = %error,
                    "accept failing: retrying with back-off; one more line when it works again"
                );
                self.failing = Some(Failing {
                    since: Instant::now(),
                    errors: 1,
                    reserve: 0,
                });
            }
        }
    }

    fn recovered(&mut self) {
        self.delay = BACKOFF_MIN;
        if let Some(failing) = self.failing.take() {
            tracing::info!(
                listener = self.name,
                addr = ?self.listener.local_addr().ok(),
                errors = failing.errors,
                taken_with_spare = failing.reserve,
                lasted_ms = failing.since.elapsed().as_millis() as u64,
                "accepting again"
            );
        }
    }
}

/// The error's label.
fn kind(e: &io::Error) -> AcceptError {
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    match errno {
        Some(Errno::MFILE | Errno::NFILE) => AcceptError::OpenFiles,
        Some(Errno::NOBUFS | Errno::NOMEM) => AcceptError::Memory,
        _ => AcceptError::Other,
    }
}

/// A connection that went away before it was taken: nothing is wrong with the listener.
fn connection_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let of = |errno: Errno| kind(&io::Error::from_raw_os_error(errno.raw_os_error()));
        assert_eq!(of(Errno::MFILE), AcceptError::OpenFiles);
        assert_eq!(of(Errno::NFILE), AcceptError::OpenFiles);
        assert_eq!(of(Errno::NOBUFS), AcceptError::Memory);
        assert_eq!(of(Errno::PERM), AcceptError::Other);
        assert!(connection_gone(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!connection_gone(&io::Error::from_raw_os_error(
            Errno::MFILE.raw_os_error()
        )));
    }

    #[tokio::test]
    async fn a_connection_is_accepted_and_the_spare_held() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut acceptor = Acceptor::new(listener, "smtp", Arc::new(Metrics::new()));
        let _client = TcpStream::connect(addr).await.expect("connect");
        assert!(matches!(acceptor.next().await, Accepted::Normal(..)));
        assert!(acceptor.spare.release(), "the spare is held");
        assert!(acceptor.failing.is_none());
    }
}
