//! The frozen bundle a session works with: config, accepted domains, pipeline, backend,
//! TLS, metrics and the verification memory budget, built once from a validated config.
//!
//! Owns: building that bundle and the EHLO capability list. Must not: do per-session work.
//! A session holds an `Arc<Context>` for its whole life, so a later config generation never
//! changes a session in flight.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::checks;
use crate::config::Config;
use crate::config::domains::AcceptedDomains;
use crate::dns::Dns;
use crate::metrics::Metrics;
use crate::pipeline::runner::Pipeline;
use crate::policy::set::PolicySet;
use crate::relay::Backend;

/// Everything a session needs that is shared between sessions.
pub struct Context {
    /// The validated config.
    pub config: Config,
    /// Compiled accepted domains (relay protection).
    pub domains: AcceptedDomains,
    /// Checks and policy.
    pub pipeline: Pipeline,
    /// Where mail goes.
    pub backend: Arc<Backend>,
    /// Metrics sink.
    pub metrics: Arc<Metrics>,
    /// STARTTLS acceptor, when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
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
        let domains =
            AcceptedDomains::new(&config.accepted_domains).map_err(crate::error::Error::Config)?;
        let tls = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(t)?)),
            None => None,
        };
        let backend = Arc::new(Backend::new(&config).map_err(crate::error::Error::Config)?);
        let dns = match checks::needs_dns(&config) {
            true => Some(Arc::new(Dns::new(&config.dns, metrics.clone())?)),
            false => None,
        };
        let pipeline = Pipeline::new(
            checks::registry(&config, dns, &metrics),
            Arc::new(PolicySet::load(&config).map_err(|d| {
                crate::error::Error::Config(crate::config::ConfigErrors(d).to_string())
            })?),
            config.timeouts.check,
            metrics.clone(),
        );
        let admission = Arc::new(
            crate::admission::Admission::new(&config.connections)
                .map_err(crate::error::Error::Config)?,
        );
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
            domains,
            pipeline,
            backend,
            metrics,
            tls,
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
