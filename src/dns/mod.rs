//! The one DNS resolver of the process, shared by every check that looks things up.
//!
//! Owns: building the hickory resolver from `dns:` (system resolv.conf, or explicit name
//! servers over UDP and TCP; timeout, attempts) inside mail-auth's `MessageAuthenticator`,
//! the record cache with its metrics (`cache.rs`), and our own lookups (`lookup.rs`). Who
//! uses what: SPF, DMARC and the client checks (DNSBL, rDNS/FCrDNS, the HELO name) use
//! `lookup::Resolve` (cached); DKIM and ARC go through mail-auth with the cache handed to
//! it. So every answer, positive or negative, is asked once per TTL (see `cache.rs`).
//! Must not: be bypassed: no other module queries `Dns::authenticator().resolver()` or
//! opens DNS sockets.

pub mod cache;
pub mod lookup;

use std::net::SocketAddr;
use std::sync::Arc;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};

use crate::config::schema::DnsConfig;
use crate::error::Error;
use crate::metrics::Metrics;
pub use cache::Cache;

/// The shared resolver and its cache.
pub struct Dns {
    authenticator: MessageAuthenticator,
    cache: Cache,
}

impl Dns {
    /// Builds the resolver from config.
    pub fn new(config: &DnsConfig, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let (resolver_config, mut opts) = if config.nameservers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                Error::Config(format!(
                    "cannot read the system resolver configuration: {e}"
                ))
            })?
        } else {
            (servers(&config.nameservers), ResolverOpts::default())
        };
        opts.timeout = config.timeout;
        // hickory counts retries after the first try; the config counts tries.
        opts.attempts = config.attempts.saturating_sub(1);
        // Our cache (below) holds parsed records; a second cache inside hickory would only
        // hide lookups from the metrics.
        opts.cache_size = 0;
        let negative_max_ttl = config.negative_max_ttl.min(config.max_ttl);
        let authenticator = MessageAuthenticator::new(resolver_config, opts)
            .map_err(|e| Error::Config(format!("cannot build the DNS resolver: {e}")))?
            .with_max_negative_ttl(negative_max_ttl);
        Ok(Dns {
            authenticator,
            cache: Cache::new(config, metrics),
        })
    }

    /// The mail-auth authenticator (DKIM, ARC) on the shared resolver, and the resolver.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.authenticator
    }

    /// The record cache, to pass to mail-auth with `Parameters::with_cache`.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

/// Name servers at explicit addresses, each over UDP with TCP fallback.
fn servers(addrs: &[SocketAddr]) -> ResolverConfig {
    let servers = addrs
        .iter()
        .map(|addr| {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in ns.connections.iter_mut() {
                connection.port = addr.port();
            }
            ns
        })
        .collect();
    ResolverConfig::from_name_servers(servers)
}
