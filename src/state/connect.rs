//! How the gateway reaches Redis: a client for each mode (standalone, Sentinel, Cluster),
//! with TLS for `rediss://` URLs and the passwords of `state.redis`.
//!
//! Owns: reading the `state.redis.tls` files (at every connection attempt, so a renewed
//! client certificate is used from the next reconnection on, with no restart), building the
//! clients, and making aws-lc-rs the process' default rustls provider, which the redis crate
//! builds its TLS configs with. Must not: keep the connection or judge its health
//! (`redis.rs`), or check the settings (`config::validate` did).

use std::path::Path;

use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, RedisError, RedisResult, TlsCertificates, TlsMode,
};

use super::redis::Conn;
use crate::config::schema::{RedisConfig, RedisMode, RedisTlsConfig};

/// Opens a connection as `c` says (not yet PINGed).
pub(super) async fn open(c: &RedisConfig) -> RedisResult<Conn> {
    let infos = c
        .urls
        .iter()
        .map(|url| url.as_str().into_connection_info())
        .collect::<RedisResult<Vec<ConnectionInfo>>>()?;
    let tls = infos
        .iter()
        .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
    if tls {
        // The redis crate builds its rustls config with `ClientConfig::builder()`, which
        // takes the process' default provider: make it the one the rest of the gateway names,
        // so a second provider compiled in by some dependency can never make that ambiguous.
        // An error means a default is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let certs = match &c.tls {
        Some(files) if tls => certificates(files)?,
        _ => None,
    };
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(c.timeout))
        .set_response_timeout(Some(c.timeout));
    Ok(match c.mode {
        RedisMode::Standalone => {
            let mut info = infos.into_iter().next().ok_or_else(no_url)?;
            if let Some(password) = &c.password {
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_password(password.expose());
                info = info.set_redis_settings(settings);
            }
            let client = match certs {
                Some(certs) => Client::build_with_tls(info, certs)?,
                None => Client::open(info)?,
            };
            Conn::Single(
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?,
            )
        }
        RedisMode::Sentinel => {
            let mut client = sentinel(c, &infos, tls, certs)?;
            Conn::Single(client.get_async_connection_with_config(&cfg).await?)
        }
        RedisMode::Cluster => {
            let mut builder = ClusterClientBuilder::new(infos)
                .connection_timeout(c.timeout)
                .response_timeout(c.timeout);
            if let Some(password) = &c.password {
                builder = builder.password(password.expose());
            }
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            Conn::Cluster(builder.build()?.get_async_connection().await?)
        }
    })
}

/// A client of the master the sentinels `infos` name. The sentinels are asked with the
/// first URL's user and `sentinel_password` (or the URL's); the master with `password`. With
/// `rediss://` sentinels the master is reached over TLS too, trusting and presenting the same
/// certificates.
fn sentinel(
    c: &RedisConfig,
    infos: &[ConnectionInfo],
    tls: bool,
    certs: Option<TlsCertificates>,
) -> RedisResult<redis::sentinel::SentinelClient> {
    let mut b = SentinelClientBuilder::new(
        infos.iter().map(|i| i.addr().clone()),
        &c.sentinel_service,
        SentinelServerType::Master,
    )?;
    let first = infos.first().ok_or_else(no_url)?.redis_settings();
    if let Some(user) = first.username() {
        b = b.set_client_to_sentinel_username(user);
    }
    let sentinel_password = c.sentinel_password.as_ref().map(|p| p.expose());
    if let Some(password) = sentinel_password.or(first.password()) {
        b = b.set_client_to_sentinel_password(password);
    }
    if let Some(password) = &c.password {
        b = b.set_client_to_redis_password(password.expose());
    }
    if tls {
        b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(certs) = certs {
            b = b
                .set_client_to_sentinel_certificates(certs.clone())
                .set_client_to_redis_certificates(certs);
        }
    }
    b.build()
}

fn no_url() -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, "no Redis URL"))
}

/// The files of `tls`, read now; `None` when none is named (the system's roots, no client
/// certificate).
fn certificates(tls: &RedisTlsConfig) -> RedisResult<Option<TlsCertificates>> {
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
    Ok(
        (client_tls.is_some() || root_cert.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

fn read(path: &Path) -> RedisResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read a state.redis.tls file",
            format!("{}: {e}", path.display()),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_read_when_connecting_and_a_missing_one_is_named() {
        let mut tls = RedisTlsConfig::default();
        assert!(
            matches!(certificates(&tls), Ok(None)),
            "no file: system roots"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "PEM\n").expect("write");
        tls.ca_file = Some(ca.clone());
        let certs = certificates(&tls).expect("readable").expect("certificates");
        assert_eq!(certs.root_cert.as_deref(), Some(&b"PEM\n"[..]));
        assert!(certs.client_tls.is_none());
        std::fs::remove_file(&ca).expect("remove");
        let e = certificates(&tls).expect_err("gone").to_string();
        assert!(e.starts_with("cannot read a state.redis.tls file"), "{e}");
        assert!(e.contains(&ca.display().to_string()), "{e}");
    }
}
