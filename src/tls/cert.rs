//! The certificate STARTTLS presents, replaceable while the gateway runs.
//!
//! Owns: reading `tls.cert` and `tls.key` and judging the pair (`Pair::load`: readable, PEM,
//! at least one certificate, a private key rustls can use, the key matching the leaf
//! certificate, a readable `notAfter`), and `ServedCert`, the resolver every handshake asks
//! for its certificate, whose pair a reload swaps (`arc-swap`): a handshake that has begun
//! keeps the pair it got, and a session already in TLS never looks again. Must not: decide
//! when to reload or whether an expired pair may serve (`reload.rs` and `context.rs`), or
//! emit metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::validity;
use crate::config::schema::TlsConfig;
use crate::error::Error;
use crate::stamps::Stamps;

/// The files of the pair: certificate, then key.
pub fn files(tls: &TlsConfig) -> Vec<PathBuf> {
    vec![tls.cert.clone(), tls.key.clone()]
}

/// A certificate chain and its private key, checked to belong together.
pub struct Pair {
    key: Arc<CertifiedKey>,
    /// The leaf certificate's `notAfter`, in Unix seconds.
    pub not_after: i64,
}

impl Pair {
    /// Reads and checks the pair named by `tls`; the error names the file at fault.
    pub fn load(tls: &TlsConfig) -> Result<Pair, Error> {
        let cert_file = tls.cert.display();
        let certs = CertificateDer::pem_file_iter(&tls.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Tls(format!("{cert_file}: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!("{cert_file}: no PEM CERTIFICATE block")));
        }
        let key = PrivateKeyDer::from_pem_file(&tls.key)
            .map_err(|e| Error::Tls(format!("{}: {e}", tls.key.display())))?;
        let key = CertifiedKey::from_der(certs, key, &super::provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => Error::Tls(format!(
                "{}: the private key does not match the certificate in {cert_file}",
                tls.key.display()
            )),
            e => Error::Tls(format!("{cert_file} and {}: {e}", tls.key.display())),
        })?;
        let leaf = key
            .end_entity_cert()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let not_after =
            validity::not_after(leaf).map_err(|e| Error::Tls(format!("{cert_file}: {e}")))?;
        Ok(Pair {
            key: Arc::new(key),
            not_after,
        })
    }

    /// True when the leaf certificate's validity has ended.
    pub fn expired(&self) -> bool {
        self.not_after <= unix_now()
    }
}

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The pair in force for new handshakes, and the state of its files when last read.
#[derive(Debug)]
pub struct ServedCert {
    current: ArcSwap<CertifiedKey>,
    read: Mutex<Stamps>,
}

impl ServedCert {
    /// Serves `pair`, read when its files were as `read` says.
    pub fn new(pair: Pair, read: Stamps) -> Self {
        ServedCert {
            current: ArcSwap::new(pair.key),
            read: Mutex::new(read),
        }
    }

    /// Puts `pair` in force: every handshake from now on presents it.
    pub fn swap(&self, pair: Pair) {
        self.current.store(pair.key);
    }

    /// The state of the files when they were last read, whether the pair was taken or not.
    pub fn last_read(&self) -> Stamps {
        self.read.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records the state of the files at a read.
    pub fn set_read(&self, stamps: Stamps) {
        if let Ok(mut s) = self.read.lock() {
            *s = stamps;
        }
    }

    /// The leaf certificate in force, DER (tests compare it with what a client was shown).
    pub fn leaf(&self) -> Option<Vec<u8>> {
        let key = self.current.load();
        key.end_entity_cert().ok().map(|c| c.to_vec())
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &std::path::Path, cert: &str, key: &str) -> TlsConfig {
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        TlsConfig {
            cert: c,
            key: k,
            require: Default::default(),
        }
    }

    fn generated() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["gw.example.test".into()]).unwrap()
    }

    #[test]
    fn loads_a_matching_pair_and_reads_its_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let g = generated();
        let tls = write_pair(dir.path(), &g.cert.pem(), &g.signing_key.serialize_pem());
        let pair = Pair::load(&tls).unwrap();
        // rcgen's default notAfter is 4096-01-01.
        assert_eq!(pair.not_after, 67_090_118_400);
        assert!(!pair.expired());
        let served = ServedCert::new(pair, Vec::new());
        assert_eq!(served.leaf().unwrap(), g.cert.der().to_vec());
    }

    #[test]
    fn refuses_bad_pairs_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (generated(), generated());
        let cases = [
            (
                a.cert.pem(),
                b.signing_key.serialize_pem(),
                "does not match",
            ),
            (
                "not pem\n".to_string(),
                a.signing_key.serialize_pem(),
                "no PEM CERTIFICATE",
            ),
            (a.cert.pem(), "not pem\n".to_string(), "key.pem"),
            (
                a.signing_key.serialize_pem(),
                a.signing_key.serialize_pem(),
                "cert.pem",
            ),
        ];
        for (cert, key, want) in cases {
            let tls = write_pair(dir.path(), &cert, &key);
            let err = Pair::load(&tls).err().expect("refused").to_string();
            assert!(err.contains(want), "{err} should say {want}");
        }
        let tls = TlsConfig {
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("key.pem"),
            require: Default::default(),
        };
        let err = Pair::load(&tls).err().expect("refused").to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn an_expired_certificate_is_seen_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["gw.example.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let tls = write_pair(dir.path(), &cert.pem(), &key.serialize_pem());
        let pair = Pair::load(&tls).unwrap();
        assert_eq!(pair.not_after, 1_609_459_200);
        assert!(pair.expired());
    }
}
