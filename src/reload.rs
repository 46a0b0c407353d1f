//! Policy hot reload: on SIGHUP and when the policy file changes on disk.
//!
//! Owns: compiling the new policy beside the old one and swapping it in atomically; a file
//! that does not compile is refused, logged with every problem, counted as
//! `portcullis_config_reloads_total{result="error"}`, and the old policy keeps serving.
//! Sessions already running keep the policy they started with. Must not: touch sockets,
//! limits or anything else in the config (those need a restart).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::ConfigErrors;
use crate::context::Context;
use crate::metrics::Event;
use crate::policy::set::PolicySet;

/// How often the policy file's modification time is checked.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Recompiles the policy and puts it in force. Returns how long that took.
pub fn reload(ctx: &Context) -> Result<Duration, ConfigErrors> {
    let started = Instant::now();
    match PolicySet::load(&ctx.config) {
        Ok(policy) => {
            ctx.pipeline.set_policy(Arc::new(policy));
            let took = started.elapsed();
            ctx.metrics.emit(Event::Reload { ok: true });
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

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn stamps(paths: &[std::path::PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths.iter().map(|p| stamp(p)).collect()
}

/// Reloads whenever a policy file's modification time or size changes. The file's current
/// state is taken now, not when the task first runs, so a change made right after start-up
/// is not mistaken for the starting point.
pub fn watch(ctx: Arc<Context>, stop: CancellationToken) -> impl Future<Output = ()> + Send {
    let paths = PolicySet::files(&ctx.config);
    let mut last = stamps(&paths);
    async move {
        if paths.is_empty() {
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
        }
    }
}
