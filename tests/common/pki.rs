//! Certificates made at test time: a CA, and under it a certificate for a server on
//! 127.0.0.1 and one for a client, written as PEM files into a temporary directory.
//!
//! Each `Pki` has its own CA (an ECDSA P-256 key made now), so a second one is a CA the first
//! one's servers are not signed by.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and two certificates it signed, as files.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA whose common name is `name`, a server certificate for `127.0.0.1` and
    /// `localhost` (usable as a client certificate too, as a Sentinel uses it), and a client
    /// certificate.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let write = |file: &str, text: String| {
            std::fs::write(dir.path().join(file), text).expect("write a PEM file");
        };
        write("ca.pem", ca_cert.pem());
        let leaf = |stem: &str, sans: &[&str], usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().expect("key");
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).expect("params");
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} {stem}"));
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer).expect("sign");
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}.key"), key.serialize_pem());
        };
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        leaf(
            "server",
            &["127.0.0.1", "localhost"],
            vec![ServerAuth, ClientAuth],
        );
        leaf("client", &[], vec![ClientAuth]);
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server certificate and its key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.path("server.pem"), self.path("server.key"))
    }

    /// The client certificate and its key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client.key"))
    }
}
