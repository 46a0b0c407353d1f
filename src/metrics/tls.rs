//! The metrics of the inbound TLS certificate and of `tls.require`: certificate reloads by
//! result, the expiry of the certificate in force, and the commands refused for lack of TLS.
//!
//! Owns: those metric names, their registration and their `Event` arms. Must not: read
//! certificates (`tls/cert.rs` does, `reload.rs` and `context.rs` report).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::events::Event;
use crate::pipeline::Stage;

/// The TLS metrics of one process.
#[derive(Default)]
pub struct TlsMetrics {
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
    /// No labels; the one series exists only once a certificate is loaded, so that a gateway
    /// without `tls:` shows none rather than a 0 an expiry alert would take for 1970.
    expiry: Family<[(&'static str, &'static str); 0], Gauge>,
    required: Family<[(&'static str, &'static str); 1], Counter>,
}

impl TlsMetrics {
    /// Registers every metric in `r` and creates its known series at zero.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tls_reloads",
            "TLS certificate reloads (SIGHUP, or tls.cert or tls.key changed) by result (ok, error)",
            self.reloads.clone(),
        );
        r.register(
            "tls_certificate_expiry_seconds",
            "notAfter of the STARTTLS certificate in force, as Unix time",
            self.expiry.clone(),
        );
        r.register(
            "tls_required_refusals",
            "Commands refused with 530 5.7.0 by tls.require, by stage (mail, rcpt)",
            self.required.clone(),
        );
        for result in ["ok", "error"] {
            drop(self.reloads.get_or_create(&[("result", result)]));
        }
        for stage in [Stage::Mail, Stage::Rcpt] {
            drop(self.required.get_or_create(&[("stage", stage.label())]));
        }
    }

    /// Records one of the TLS events; false for any other event.
    pub fn emit(&self, event: &Event) -> bool {
        match event {
            Event::TlsReload { ok } => {
                let result = if *ok { "ok" } else { "error" };
                self.reloads.get_or_create(&[("result", result)]).inc();
            }
            Event::TlsCertificate { not_after } => {
                self.expiry.get_or_create(&[]).set(*not_after);
            }
            Event::TlsRequired(stage) => {
                self.required
                    .get_or_create(&[("stage", stage.label())])
                    .inc();
            }
            _ => return false,
        }
        true
    }
}
