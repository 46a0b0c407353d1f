//! Readiness notification to the service manager (systemd's `sd_notify` protocol), so that a
//! `Type=notify` unit counts as started only once the listeners are bound.
//!
//! Owns: reading `$NOTIFY_SOCKET` once, and writing `READY=1`, `RELOADING=1` (with
//! `MONOTONIC_USEC`) and `STOPPING=1` to it as one datagram each. Nothing happens without the
//! variable: the gateway run by hand, in a container or under another supervisor is
//! unaffected. Must not: decide when the gateway is ready (the caller says so), or fail the
//! gateway: a datagram that cannot be sent is logged and the gateway goes on.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

/// Where the service manager listens, from `$NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket (`@name` in the variable).
    Abstract(Vec<u8>),
}

/// The connection to the service manager, or nothing when none asked for notifications.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a notifier that does nothing when it is unset or empty.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| parse(v.as_bytes()));
        Notifier { target }
    }

    /// The listeners are bound and the gateway serves; also the end of a reload.
    pub fn ready(&self) {
        let _ = self.send("READY=1\n");
    }

    /// A reload (SIGHUP) has begun; `ready` follows when it is over, whatever its outcome.
    pub fn reloading(&self) {
        let _ = self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\n",
            monotonic_usec()
        ));
    }

    /// The drain has begun.
    pub fn stopping(&self) {
        let _ = self.send("STOPPING=1\n");
    }

    /// Sends `state`: `Ok(false)` without a manager, an error (also logged) when the
    /// datagram could not be sent.
    fn send(&self, state: &str) -> std::io::Result<bool> {
        let Some(target) = &self.target else {
            return Ok(false);
        };
        match send_to(target, state.as_bytes()) {
            Ok(_) => Ok(true),
            Err(e) => {
                tracing::warn!(error = %e, state = state.trim_end(), "cannot notify the service manager");
                Err(e)
            }
        }
    }
}

/// The variable's value as a target: `/path` or `@abstract`; anything else is ignored, as
/// libsystemd does.
fn parse(value: &[u8]) -> Option<Target> {
    match value.first()? {
        b'/' => Some(Target::Path(PathBuf::from(std::ffi::OsStr::from_bytes(
            value,
        )))),
        b'@' => Some(Target::Abstract(value[1..].to_vec())),
        _ => None,
    }
}

fn send_to(target: &Target, datagram: &[u8]) -> std::io::Result<usize> {
    let socket = UnixDatagram::unbound()?;
    match target {
        Target::Path(path) => socket.send_to(datagram, path),
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            socket.send_to_addr(datagram, &SocketAddr::from_abstract_name(name)?)
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_each_state_as_one_datagram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier {
            target: Some(Target::Path(path.clone())),
        };
        let mut buf = [0u8; 256];
        let mut next = || {
            let n = manager.recv(&mut buf).expect("recv");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        notifier.ready();
        assert_eq!(next(), "READY=1\n");
        notifier.reloading();
        let reloading = next();
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|n| n.parse::<u64>().ok());
        assert!(usec.is_some_and(|n| n > 0), "{reloading:?}");
        notifier.stopping();
        assert_eq!(next(), "STOPPING=1\n");
    }

    #[test]
    fn without_a_manager_nothing_is_sent_and_nothing_fails() {
        assert!(
            !Notifier { target: None }
                .send("READY=1\n")
                .expect("no manager")
        );
        // A socket that does not exist: an error for the caller to ignore, and `ready`
        // (which ignores it) returns as usual.
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = Notifier {
            target: Some(Target::Path(dir.path().join("absent"))),
        };
        assert!(absent.send("READY=1\n").is_err());
        absent.ready();
    }

    #[test]
    fn reads_paths_and_abstract_names_only() {
        assert_eq!(
            parse(b"/run/systemd/notify"),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse(b"@notify"),
            Some(Target::Abstract(b"notify".to_vec()))
        );
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"relative/path"), None);
    }

    #[test]
    fn abstract_sockets_are_reached() {
        let name = format!("portcullis-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt as _;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let manager = UnixDatagram::bind_addr(&addr).expect("bind");
        let notifier = Notifier {
            target: parse(format!("@{name}").as_bytes()),
        };
        notifier.ready();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
