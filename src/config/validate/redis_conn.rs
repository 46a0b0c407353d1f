//! The rules on how the gateway reaches Redis safely: `rediss://` URLs, the files of
//! `state.redis.tls`, and the passwords.
//!
//! Owns: each file readable and holding what it should (certificates, a private key that
//! matches the client certificate), TLS on every URL or on none, and each password given in
//! one place only. Must not: connect (what the server thinks of our certificate, or of our
//! password, shows only then: `state::connect` reports it), or repeat the URL syntax checks
//! of `validate.rs` (a URL that does not parse is skipped here).

use std::path::Path;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::super::locate::Seg::{self, Index, Key};
use super::super::schema::{RedisConfig, RedisMode, RedisTlsConfig};
use super::{Problem, across, problem};

/// Checks the TLS and password settings of `r` (with `state.backend: redis`).
pub(super) fn check(r: &RedisConfig, out: &mut Vec<Problem>) {
    let infos: Vec<(usize, ConnectionInfo)> = (r.urls.iter().enumerate())
        .filter_map(|(i, url)| Some((i, url.as_str().into_connection_info().ok()?)))
        .collect();
    urls(r, &infos, out);
    passwords(r, &infos, out);
    if let Some(tls) = &r.tls {
        if !infos.iter().any(|(_, info)| is_tls(info)) {
            out.push(across(
                &[Key("state"), Key("redis"), Key("tls")],
                "tls is set, but no URL is rediss://: the connection would not be encrypted",
            ));
        }
        files(tls, out);
    }
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

fn url_at(i: usize) -> [Seg; 4] {
    [Key("state"), Key("redis"), Key("urls"), Index(i)]
}

/// Every URL like the first: all TLS or none, the same credentials (the sentinels and the
/// cluster nodes are all asked with one); and no URL that turns certificate checks off.
fn urls(r: &RedisConfig, infos: &[(usize, ConnectionInfo)], out: &mut Vec<Problem>) {
    let Some((_, first)) = infos.first() else {
        return;
    };
    for (i, info) in infos {
        let url = &r.urls[*i];
        if is_tls(info) != is_tls(first) {
            out.push(across(
                &url_at(*i),
                format!("{url:?}: mixes redis:// and rediss:// with the first URL: every connection is encrypted or none is"),
            ));
        }
        if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
            out.push(across(
                &url_at(*i),
                format!("{url:?}: #insecure would turn certificate checks off, which is not supported: name the CA in state.redis.tls.ca_file"),
            ));
        }
        let (a, b) = (info.redis_settings(), first.redis_settings());
        if r.mode != RedisMode::Standalone
            && (a.username() != b.username() || a.password() != b.password())
        {
            out.push(across(
                &url_at(*i),
                format!("{url:?}: every URL must carry the user and password of the first (one is used for all)"),
            ));
        }
    }
}

/// Each password in one place: `password` or the URLs (standalone, cluster), and
/// `sentinel_password` or the URLs (sentinel); none empty.
fn passwords(r: &RedisConfig, infos: &[(usize, ConnectionInfo)], out: &mut Vec<Problem>) {
    let at = |k| [Key("state"), Key("redis"), Key(k)];
    let in_url = infos
        .iter()
        .any(|(_, info)| info.redis_settings().password().is_some());
    let sentinel = r.mode == RedisMode::Sentinel;
    // A URL's password is the sentinels' in sentinel mode, the server's otherwise.
    let url_key = if sentinel {
        "sentinel_password"
    } else {
        "password"
    };
    for (key, value) in [
        ("password", &r.password),
        ("sentinel_password", &r.sentinel_password),
    ] {
        let Some(value) = value else { continue };
        if value.expose().is_empty() {
            out.push(across(
                &at(key),
                format!("{key} must not be empty: leave it out for no password"),
            ));
        }
        if key == "sentinel_password" && !sentinel {
            out.push(across(
                &at(key),
                "sentinel_password is the sentinels' password: it is used in sentinel mode only",
            ));
        } else if in_url && key == url_key {
            let whose = if sentinel {
                "the sentinels'"
            } else {
                "the server's"
            };
            out.push(across(
                &at(key),
                format!("a URL carries {whose} password too: give it in one place"),
            ));
        }
    }
}

/// The files: readable, PEM, and a client certificate with its own key.
fn files(tls: &RedisTlsConfig, out: &mut Vec<Problem>) {
    let at = |k| [Key("state"), Key("redis"), Key("tls"), Key(k)];
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => out.push(problem(
            &at("cert_file"),
            "cert_file needs key_file, its private key",
        )),
        (None, Some(_)) => out.push(problem(
            &at("key_file"),
            "key_file needs cert_file, the client certificate",
        )),
        _ => {}
    }
    if let Some(path) = &tls.ca_file
        && let Err(e) = certificates(path)
    {
        out.push(problem(&at("ca_file"), e.to_string()));
    }
    let certs = tls.cert_file.as_deref().map(certificates);
    if let Some(Err(e)) = &certs {
        out.push(problem(&at("cert_file"), e.to_string()));
    }
    let key = tls.key_file.as_deref().map(private_key);
    if let Some(Err(e)) = &key {
        out.push(problem(&at("key_file"), e.to_string()));
    }
    if let (Some(Ok(certs)), Some(Ok(key)), Some(path)) = (certs, key, &tls.key_file) {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Err(e) = rustls::sign::CertifiedKey::from_der(certs, key, &provider) {
            let e = match e {
                rustls::Error::InconsistentKeys(_) => "does not match cert_file".to_string(),
                e => e.to_string(),
            };
            out.push(problem(&at("key_file"), format!("{}: {e}", path.display())));
        }
    }
}

/// A PEM file that cannot serve; each names the file.
#[derive(Debug, thiserror::Error)]
enum BadPem {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Pem(String, rustls::pki_types::pem::Error),
    #[error("{0}: no PEM CERTIFICATE block")]
    NoCertificate(String),
    #[error("{0}: no private key: {1}")]
    NoKey(String, rustls::pki_types::pem::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, BadPem> {
    std::fs::read(path).map_err(|e| BadPem::Read(path.display().to_string(), e))
}

/// At least one PEM certificate.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, BadPem> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BadPem::Pem(path.display().to_string(), e))?;
    match certs.is_empty() {
        true => Err(BadPem::NoCertificate(path.display().to_string())),
        false => Ok(certs),
    }
}

/// One PEM private key.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, BadPem> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| BadPem::NoKey(path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::super::schema::{Config, RedisMode, RedisTlsConfig, StateBackend};
    use super::super::super::secret::Secret;
    use super::super::validate;
    use super::*;

    fn redis(urls: &[&str]) -> Config {
        let mut c = Config::default();
        c.state.backend = StateBackend::Redis;
        c.state.redis.urls = urls.iter().map(|u| u.to_string()).collect();
        c
    }

    /// (path below `state.redis`, message) of every problem.
    fn problems(c: &Config) -> Vec<(String, String)> {
        let name = |s: &Seg| match s {
            Key(k) => k.to_string(),
            Index(i) => i.to_string(),
            other => format!("{other:?}"),
        };
        validate(c)
            .into_iter()
            .map(|p| {
                let path: Vec<String> = p.path.iter().skip(2).map(name).collect();
                (path.join("."), p.message)
            })
            .collect()
    }

    #[test]
    fn tls_files_must_be_readable_pem_and_the_key_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            Some(path)
        };
        let a = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let mut c = redis(&["rediss://127.0.0.1:6380/0"]);
        let tls = RedisTlsConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            cert_file: write("a.pem", &a.cert.pem()),
            key_file: None,
        };
        c.state.redis.tls = Some(tls.clone());
        let found = problems(&c);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "tls.cert_file");
        assert!(found[0].1.contains("needs key_file"), "{found:?}");
        assert_eq!(found[1].0, "tls.ca_file");
        assert!(found[1].1.starts_with("cannot read "), "{found:?}");

        // Not PEM, and a key of another certificate.
        c.state.redis.tls = Some(RedisTlsConfig {
            ca_file: write("ca.pem", "hello\n"),
            key_file: write("b.key", &b.signing_key.serialize_pem()),
            ..tls.clone()
        });
        let found = problems(&c);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "tls.ca_file");
        assert!(
            found[0].1.ends_with("no PEM CERTIFICATE block"),
            "{found:?}"
        );
        assert_eq!(found[1].0, "tls.key_file");
        assert!(
            found[1].1.ends_with("does not match cert_file"),
            "{found:?}"
        );
        // A certificate is no key.
        c.state.redis.tls = Some(RedisTlsConfig {
            ca_file: write("ca.pem", &b.cert.pem()),
            key_file: write("a.key", &a.cert.pem()),
            ..tls.clone()
        });
        let found = problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("no private key"), "{found:?}");

        c.state.redis.tls = Some(RedisTlsConfig {
            key_file: write("a.key", &a.signing_key.serialize_pem()),
            ..c.state.redis.tls.clone().unwrap()
        });
        assert_eq!(problems(&c), vec![]);
        // Nothing is checked unless the state is in Redis.
        c.state.redis.tls = Some(tls);
        c.state.backend = StateBackend::Local;
        assert_eq!(problems(&c), vec![]);
    }

    #[test]
    fn tls_is_on_every_url_or_none_and_never_unchecked() {
        let mut c = redis(&["redis://127.0.0.1:6379/0"]);
        c.state.redis.tls = Some(RedisTlsConfig::default());
        let found = problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "tls");
        assert!(found[0].1.contains("no URL is rediss://"), "{found:?}");

        let mut c = redis(&["rediss://10.0.0.1:26379", "redis://10.0.0.2:26379"]);
        c.state.redis.mode = RedisMode::Sentinel;
        let found = problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "urls.1");
        assert!(
            found[0].1.contains("mixes redis:// and rediss://"),
            "{found:?}"
        );

        let c = redis(&["rediss://127.0.0.1:6380/0#insecure"]);
        let found = problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("#insecure"), "{found:?}");
        // The system's roots, no file: nothing to check.
        assert_eq!(problems(&redis(&["rediss://127.0.0.1:6380/0"])), vec![]);
    }

    #[test]
    fn each_password_is_given_in_one_place() {
        let secret = |s: &str| Some(Secret::new(s));
        let mut c = redis(&["rediss://:pw@127.0.0.1:6380/0"]);
        assert_eq!(problems(&c), vec![]);
        c.state.redis.password = secret("pw");
        c.state.redis.sentinel_password = secret("");
        let found = problems(&c);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "password");
        assert!(found[0].1.contains("give it in one place"), "{found:?}");
        assert_eq!(found[1].0, "sentinel_password");
        assert!(found[1].1.contains("must not be empty"), "{found:?}");
        assert!(found[2].1.contains("sentinel mode only"), "{found:?}");

        // Sentinel mode: a URL's password is the sentinels', `password` the master's.
        let mut c = redis(&["redis://:s@10.0.0.1:26379", "redis://:t@10.0.0.2:26379"]);
        c.state.redis.mode = RedisMode::Sentinel;
        c.state.redis.password = secret("m");
        let found = problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "urls.1");
        assert!(
            found[0].1.contains("user and password of the first"),
            "{found:?}"
        );
        c.state.redis.urls[1] = "redis://:s@10.0.0.2:26379".into();
        assert_eq!(problems(&c), vec![]);
        c.state.redis.sentinel_password = secret("s");
        let found = problems(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "sentinel_password");
        c.state.redis.urls = vec!["redis://10.0.0.1:26379".into()];
        assert_eq!(problems(&c), vec![]);
    }
}
