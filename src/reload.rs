//! Hot reload without a restart: the policy files, and the STARTTLS certificate and key.
//! Both on SIGHUP and when their files change on disk (polled every 2 s).
//!
//! Owns: compiling the new policy beside the old one and swapping it in atomically; a file
//! that does not compile is refused, logged with every problem, counted as
//! `portcullis_config_reloads_total{result="error"}`, and the old policy keeps serving.
//! Sessions already running keep the policy they started with. Likewise the certificate
//! pair: read and checked beside the one in force (`tls::cert::Pair::load`), refused when
//! bad or expired (`portcullis_tls_reloads_total{result="error"}`, the old pair keeps
//! serving), otherwise swapped in for the next handshakes. The config in force is announced
//! in the metrics at start-up and after each policy reload that took. Must not: touch
//! sockets, limits or anything else in the config (those need a restart).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::ConfigErrors;
use crate::context::Context;
use crate::error::Error;
use crate::metrics::Event;
use crate::policy::set::PolicySet;
use crate::stamps::stamps;
use crate::tls::cert::{self, Pair};

/// How often the watched files' modification times and sizes are checked.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Recompiles the policy and puts it in force. Returns how long that took.
pub fn reload(ctx: &Context) -> Result<Duration, ConfigErrors> {
    let started = Instant::now();
    match PolicySet::load(&ctx.config) {
        Ok(policy) => {
            ctx.pipeline.set_policy(Arc::new(policy));
            let took = started.elapsed();
            ctx.metrics.emit(Event::Reload { ok: true });
            announce(ctx);
            tracing::info!(took_ms = took.as_secs_f64() * 1000.0, "policy reloaded");
            Ok(took)
        }
        Err(problems) => {
            let errors = ConfigErrors(problems);
            ctx.metrics.emit(Event::Reload { ok: false });
            tracing::error!(errors = %errors, "policy reload refused; the previous policy stays in force");
            Err(errors)
        }
    }
}

/// Records the config in force and its policy files, now, in the metrics
/// (`portcullis_config_info{hash}`, `portcullis_config_loaded_timestamp_seconds`): at
/// start-up and after each reload that took.
pub fn announce(ctx: &Context) {
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let hash = crate::config::fingerprint::fingerprint(&ctx.config);
    tracing::info!(config_hash = %hash, "configuration in force");
    ctx.metrics.emit(Event::ConfigLoaded { hash, at });
}

/// Reads the certificate and key again and puts the pair in force for new handshakes.
/// Does nothing without `tls:`. A pair that cannot be read, does not match, or whose
/// certificate has expired is refused: logged, counted, and the pair in force keeps serving.
pub fn reload_tls(ctx: &Context) -> Result<(), Error> {
    let (Some(tls), Some(served)) = (&ctx.config.tls, &ctx.tls_cert) else {
        return Ok(());
    };
    // The files' state before reading them: a change made while they are read is seen at
    // the next poll.
    served.set_read(stamps(&cert::files(tls)));
    let pair = Pair::load(tls).and_then(|pair| match pair.expired() {
        true => Err(Error::Tls(format!(
            "{}: the certificate expired at {} (Unix time)",
            tls.cert.display(),
            pair.not_after
        ))),
        false => Ok(pair),
    });
    match pair {
        Ok(pair) => {
            let not_after = pair.not_after;
            served.swap(pair);
            ctx.metrics.emit(Event::TlsReload { ok: true });
            ctx.metrics.emit(Event::TlsCertificate { not_after });
            let days_left = (not_after - cert::unix_now()) / 86_400;
            tracing::info!(cert = %tls.cert.display(), not_after, days_left, "TLS certificate reloaded");
            Ok(())
        }
        Err(e) => {
            ctx.metrics.emit(Event::TlsReload { ok: false });
            tracing::error!(error = %e, "TLS certificate reload refused; the previous certificate stays in force");
            Err(e)
        }
    }
}

/// Reloads the policy whenever a policy file's modification time or size changes, and the
/// certificate pair when one of its files has changed since it was last read and then stayed
/// as it is for one poll: a certificate and its key are two files, and a pair caught between
/// the two writes would be refused as a mismatch. The files' current state is taken now, not
/// when the task first runs, so a change made right after start-up is not mistaken for the
/// starting point.
pub fn watch(ctx: Arc<Context>, stop: CancellationToken) -> impl Future<Output = ()> + Send {
    let paths = ctx.config.policy_files();
    let mut last = stamps(&paths);
    let tls_files = ctx.config.tls.as_ref().map(cert::files).unwrap_or_default();
    let mut tls_seen = stamps(&tls_files);
    async move {
        if paths.is_empty() && tls_files.is_empty() {
            return;
        }
        loop {
            // Why select: shutdown must not wait for the next poll.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            let now = stamps(&paths);
            if now != last {
                last = now;
                let _ = reload(&ctx);
            }
            if let Some(served) = &ctx.tls_cert {
                let now = stamps(&tls_files);
                if now == tls_seen && now != served.last_read() {
                    let _ = reload_tls(&ctx);
                }
                tls_seen = now;
            }
        }
    }
}
