//! `tls.require`: the client networks that must use STARTTLS before MAIL, and the recipient
//! domains a RCPT may name only inside TLS.
//!
//! Owns: compiling the two lists and answering "must this client, or this recipient, have
//! TLS?". Must not: reply or see the session (`session/transaction.rs` sends `530 5.7.0`).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::domains::AcceptedDomains;
use crate::config::schema::TlsConfig;

/// Who must use TLS; nobody when `tls:` is absent or `tls.require` is empty.
#[derive(Debug, Clone, Default)]
pub struct Required {
    networks: Vec<IpNet>,
    domains: AcceptedDomains,
}

impl Required {
    /// `tls.require`, or nobody without `tls:`.
    pub fn new(tls: Option<&TlsConfig>) -> Self {
        let Some(tls) = tls else {
            return Required::default();
        };
        Required {
            networks: tls.require.client_networks.clone(),
            domains: tls.require.recipient_domains.clone(),
        }
    }

    /// True when a client at `ip` must use STARTTLS before MAIL. An IPv4 address mapped into
    /// IPv6 is matched as the IPv4 address it is.
    pub fn client(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// True when a RCPT to `domain` (normalised: lower-case A-labels) needs TLS.
    pub fn recipient(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::TlsRequire;

    fn required(networks: &[&str], domains: &[&str]) -> Required {
        let tls = TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            require: TlsRequire {
                client_networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
                recipient_domains: AcceptedDomains::parse(domains).unwrap(),
            },
        };
        Required::new(Some(&tls))
    }

    #[test]
    fn matches_networks_and_domain_patterns() {
        let r = required(
            &["192.0.2.0/24", "2001:db8::/32"],
            &["bank.test", "*.corp.test"],
        );
        for (ip, want) in [
            ("192.0.2.77", true),
            ("::ffff:192.0.2.77", true),
            ("2001:db8:1::5", true),
            ("198.51.100.1", false),
            ("127.0.0.1", false),
        ] {
            assert_eq!(r.client(ip.parse().unwrap()), want, "{ip}");
        }
        for (domain, want) in [
            ("bank.test", true),
            ("a.corp.test", true),
            ("corp.test", false),
            ("other.test", false),
        ] {
            assert_eq!(r.recipient(domain), want, "{domain}");
        }
    }

    #[test]
    fn nothing_is_required_without_tls() {
        let r = Required::new(None);
        assert!(!r.client("192.0.2.1".parse().unwrap()));
        assert!(!r.recipient("bank.test"));
    }
}
