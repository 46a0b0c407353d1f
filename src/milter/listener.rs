//! The milter listeners: `inet:` (TCP, with TCP_NODELAY for our responses, and quick ACKs
//! for the MTA's packets, `quickack.rs`) and
//! `unix:` (a socket file made with `milter.socket_mode` and `milter.socket_owner`).
//!
//! Owns: binding, the accept loop (one task per MTA connection, under the same session
//! limit as SMTP sessions: a connection over it is closed at once, which Postfix answers
//! with its `milter_default_action`), and stopping at shutdown. Must not: speak the
//! protocol (`session.rs`).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::quickack::QuickAck;
use super::session::MilterSession;
use crate::config::schema::MilterSocket;
use crate::context::Context;
use crate::metrics::{Event, Limit};
use crate::session::Signals;

/// A bound milter listener.
pub enum Bound {
    /// `inet:`.
    Inet(TcpListener),
    /// `unix:`.
    Unix(UnixListener),
}

impl Bound {
    /// The bound TCP address (real port when 0 was configured); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Inet(l) => l.local_addr().ok(),
            Bound::Unix(_) => None,
        }
    }
}

/// Binds one listener. A unix socket file left by an earlier run is replaced (a file
/// that is not a socket is not: that is a configuration error).
pub fn bind(
    socket: &MilterSocket,
    mode: u32,
    owner: Option<&str>,
    bind_tcp: impl Fn(SocketAddr) -> std::io::Result<TcpListener>,
) -> std::io::Result<Bound> {
    match socket {
        MilterSocket::Inet(addr) => Ok(Bound::Inet(bind_tcp(*addr)?)),
        MilterSocket::Unix(path) => {
            remove_stale(path)?;
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            if let Some(owner) = owner {
                let (uid, gid) = lookup_owner(owner)?;
                std::os::unix::fs::chown(path, Some(uid), gid)?;
            }
            Ok(Bound::Unix(listener))
        }
    }
}

fn remove_stale(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `user` or `user:group`, names from /etc/passwd and /etc/group or numbers. Without a
/// group the socket keeps the gateway's.
fn lookup_owner(owner: &str) -> std::io::Result<(u32, Option<u32>)> {
    let (user, group) = match owner.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (owner, None),
    };
    let uid = id_of(user, "/etc/passwd")?;
    let gid = group.map(|g| id_of(g, "/etc/group")).transpose()?;
    Ok((uid, gid))
}

/// A name's id in a passwd-format file (`name:x:id:...`), or the number itself.
fn id_of(name: &str, file: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let id = f.nth(1)?;
            (n == name).then(|| id.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("milter.socket_owner: no {name:?} in {file}"),
            )
        })
}

/// Accepts MTA connections until shutdown; each runs as a `MilterSession` on `tracker`.
pub async fn accept_loop(
    listener: Bound,
    ctx: Arc<Context>,
    sessions: Arc<Semaphore>,
    signals: Signals,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = signals.shutdown.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "milter accept failed");
                ctx.metrics.emit(Event::AcceptError {
                    listener: "milter",
                    kind: crate::metrics::AcceptError::Other,
                });
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            // Closing at once: Postfix applies milter_default_action (tempfail).
            ctx.metrics.emit(Event::LimitHit(Limit::Sessions));
            tracing::info!("milter connection refused: session limit reached");
            continue;
        };
        let ctx = ctx.clone();
        let abort = signals.abort.clone();
        tracker.spawn(async move {
            ctx.metrics.emit(Event::MilterConnection(true));
            match stream {
                Stream::Tcp(s) => {
                    MilterSession::new(QuickAck(s), ctx.clone(), abort)
                        .run()
                        .await
                }
                Stream::Unix(s) => MilterSession::new(s, ctx.clone(), abort).run().await,
            }
            ctx.metrics.emit(Event::MilterConnection(false));
            drop(permit);
        });
    }
    if let Bound::Unix(l) = &listener
        && let Ok(addr) = l.local_addr()
        && let Some(path) = addr.as_pathname()
    {
        let _ = std::fs::remove_file(path);
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Bound) -> std::io::Result<Stream> {
    match listener {
        Bound::Inet(l) => {
            let (s, _) = l.accept().await?;
            // Postfix's milter client does not set TCP_NODELAY; without it on our side a
            // response waits for the MTA's delayed ACK (Nagle), tens of ms per message.
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        Bound::Unix(l) => Ok(Stream::Unix(l.accept().await?.0)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    #[test]
    fn owners_are_names_or_numbers() {
        assert_eq!(lookup_owner("0").unwrap(), (0, None));
        assert_eq!(lookup_owner("root:root").unwrap(), (0, Some(0)));
        assert_eq!(lookup_owner("12:34").unwrap(), (12, Some(34)));
        let e = lookup_owner("no-such-user-here").unwrap_err();
        assert!(
            e.to_string()
                .contains("no \"no-such-user-here\" in /etc/passwd"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_unix_socket_gets_its_mode_and_owner_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let me = std::fs::metadata(dir.path()).unwrap();
        let owner = format!("{}:{}", me.uid(), me.gid());
        let socket = MilterSocket::Unix(path.clone());
        let no_tcp = |_| Err(std::io::Error::other("no TCP here"));
        let first = bind(&socket, 0o600, Some(&owner), no_tcp).unwrap();
        drop(first);
        // The file of the listener just dropped is stale: binding again replaces it.
        let _second = bind(&socket, 0o640, Some(&owner), no_tcp).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!((m.uid(), m.gid()), (me.uid(), me.gid()));
        // Anything but a socket at that path is left alone.
        let file = dir.path().join("f");
        std::fs::write(&file, "keep").unwrap();
        let e = bind(&MilterSocket::Unix(file.clone()), 0o600, None, no_tcp).err();
        assert!(e.is_some_and(|e| e.to_string().contains("is not a socket")));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }
}
