//! The frozen bundle a session works with: config, accepted domains, pipeline, backend,
//! TLS (the acceptor, the reloadable certificate, `tls.require`), metrics and the
//! verification memory budget, built once from a validated config.
//!
//! Owns: building that bundle (the certificate read at start-up, an expired one served with
//! a warning) and the EHLO capability list. Must not: do per-session work. A session holds
//! an `Arc<Context>` for its whole life, so a later config generation never changes a
//! session in flight; what a reload swaps (the policy set, the certificate pair) sits behind
//! its own `ArcSwap` inside.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::checks;
use crate::config::Config;
use crate::config::schema::TlsConfig;
use crate::dns::Dns;
use crate::metrics::Metrics;
use crate::policy::set::PolicySet;
use crate::relay::Backend;
use crate::runner::Pipeline;
use crate::tls::cert::{self, ServedCert};
use crate::tls::require::Required;

/// Everything a session needs that is shared between sessions.
pub struct Context {
    /// The validated config.
    pub config: Config,
    /// Checks and policy.
    pub pipeline: Pipeline,
    /// Where mail goes.
    pub backend: Arc<Backend>,
    /// Metrics sink.
    pub metrics: Arc<Metrics>,
    /// STARTTLS acceptor, when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
    /// The certificate pair the acceptor presents, which a reload swaps (`reload::reload_tls`).
    pub tls_cert: Option<Arc<ServedCert>>,
    /// `tls.require`: the clients and recipient domains that must use STARTTLS.
    pub tls_require: Required,
    /// Connection admission (lists, per-address limits, connection rate).
    pub admission: Arc<crate::admission::Admission>,
    /// Rate-limit counters and greylisting triplets (local or Redis).
    pub state: Arc<crate::state::StateStore>,
    /// Room for messages read back into memory for verification (`auth.max_verify_memory`).
    pub verify_budget: crate::verify_budget::VerifyBudget,
}

impl Context {
    /// Builds the context; fails on what validation cannot see (unreadable PEM contents).
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Self, crate::error::Error> {
        let tls_cert = match &config.tls {
            Some(t) => Some(Arc::new(served_cert(t, &metrics)?)),
            None => None,
        };
        let tls = match &tls_cert {
            Some(c) => Some(TlsAcceptor::from(crate::tls::server_config(c.clone())?)),
            None => None,
        };
        let tls_require = Required::new(config.tls.as_ref());
        let backend = Arc::new(Backend::new(&config));
        let dns = match checks::needs_dns(&config) {
            true => Some(Arc::new(Dns::new(&config.dns, metrics.clone())?)),
            false => None,
        };
        let pipeline = Pipeline::new(
            checks::registry(&config, dns, &metrics),
            Arc::new(PolicySet::load(&config).map_err(crate::config::ConfigErrors)?),
            config.timeouts.check,
            metrics.clone(),
        );
        let admission = Arc::new(crate::admission::Admission::new(&config.connections));
        let state = Arc::new(crate::state::StateStore::new(
            &config.state,
            metrics.clone(),
        ));
        let verify_budget =
            crate::verify_budget::VerifyBudget::new(config.auth.max_verify_memory, metrics.clone());
        Ok(Context {
            admission,
            state,
            verify_budget,
            config,
            pipeline,
            backend,
            metrics,
            tls,
            tls_cert,
            tls_require,
        })
    }

    /// The EHLO keywords we offer; STARTTLS only before TLS and when configured.
    pub fn capabilities(&self, tls_active: bool) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.limits.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
            "CHUNKING".into(),
        ];
        if self.tls.is_some() && !tls_active {
            caps.push("STARTTLS".into());
        }
        caps
    }
}

/// The pair `tls` names, read at start-up. An expired certificate is served all the same,
/// with a warning: refusing to start would stop all mail over a certificate that
/// opportunistic senders do not verify (a reload, which has a pair to keep, refuses one).
fn served_cert(tls: &TlsConfig, metrics: &Metrics) -> Result<ServedCert, crate::error::Error> {
    let read = crate::stamps::stamps(&cert::files(tls));
    let pair = cert::Pair::load(tls)?;
    let days_left = (pair.not_after - cert::unix_now()) / 86_400;
    if pair.expired() {
        tracing::warn!(cert = %tls.cert.display(), not_after = pair.not_after, "the TLS certificate has expired; serving it until a valid one is loaded");
    } else {
        tracing::info!(cert = %tls.cert.display(), not_after = pair.not_after, days_left, "TLS certificate loaded");
    }
    metrics.emit(crate::metrics::Event::TlsCertificate {
        not_after: pair.not_after,
    });
    Ok(ServedCert::new(pair, read))
}
