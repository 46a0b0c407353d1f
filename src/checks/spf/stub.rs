//! A DNS in a map for the evaluator's unit tests (`eval.rs`, `identity.rs`, `validated.rs`,
//! `mod.rs`): a `Resolve` that answers from tables and records every query it is asked.
//!
//! Owns: the test double and the shortcuts `run` and `result`. Names not in a table do not
//! exist (NXDOMAIN); a name with records of another type is NODATA; `fail` names answer
//! SERVFAIL; `hang` never answers; `delay` answers every TXT query after a wait (paused
//! time). A name that is not `dns::lookup::queryable` is `InvalidName`, as on the real
//! path. Must not: be used outside tests.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eval::check_host;
use super::identity::Identity;
use super::result::{SpfOutput, SpfResult};
use crate::dns::lookup::{Answer, LookupError, LookupResult, MxHost, Resolve, queryable};

/// The limit of one evaluation in these tests (the `timeouts.spf` default).
pub const LIMIT: Duration = Duration::from_secs(20);

/// A DNS in a map.
#[derive(Default)]
pub struct Stub {
    txt: HashMap<String, Vec<String>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
    aaaa: HashMap<String, Vec<Ipv6Addr>>,
    mx: HashMap<String, Vec<String>>,
    ptr: HashMap<IpAddr, Vec<String>>,
    fail: Vec<String>,
    /// No query is ever answered.
    pub hang: bool,
    /// Every TXT answer comes after this long.
    pub delay: Option<Duration>,
    queries: Mutex<Vec<String>>,
}

impl Stub {
    /// With a TXT record at `name`.
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.txt.entry(name.into()).or_default().push(text.into());
        self
    }

    /// With an A record at `name`.
    pub fn a(mut self, name: &str, ip: &str) -> Self {
        self.a
            .entry(name.into())
            .or_default()
            .push(ip.parse().expect("IPv4"));
        self
    }

    /// With an AAAA record at `name`.
    pub fn aaaa(mut self, name: &str, ip: &str) -> Self {
        self.aaaa
            .entry(name.into())
            .or_default()
            .push(ip.parse().expect("IPv6"));
        self
    }

    /// With an MX record at `name` (preferences in the order given).
    pub fn mx(mut self, name: &str, host: &str) -> Self {
        self.mx.entry(name.into()).or_default().push(host.into());
        self
    }

    /// With a PTR record for `ip`.
    pub fn ptr(mut self, ip: &str, name: &str) -> Self {
        self.ptr
            .entry(ip.parse().expect("IP"))
            .or_default()
            .push(name.into());
        self
    }

    /// Every query of `name` fails (SERVFAIL).
    pub fn fail(mut self, name: &str) -> Self {
        self.fail.push(name.into());
        self
    }

    /// How many queries were asked that start with `prefix` (`"TXT example.com"`, `"A "`).
    pub fn count(&self, prefix: &str) -> usize {
        self.log().iter().filter(|q| q.starts_with(prefix)).count()
    }

    /// How many times exactly `query` was asked (`"A mx.example.com"`).
    pub fn asked(&self, query: &str) -> usize {
        self.log().iter().filter(|q| *q == query).count()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.queries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer<T: Clone>(
        &self,
        kind: &str,
        name: &str,
        map: &HashMap<String, Vec<T>>,
    ) -> LookupResult<T> {
        self.log().push(format!("{kind} {name}"));
        if !queryable(name) {
            return Err(LookupError::InvalidName);
        }
        // Names are case-insensitive (RFC 4343), and one final dot is the root.
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if self.fail.contains(&name) {
            return Err(LookupError::Failed("SERVFAIL".into()));
        }
        match map.get(&name) {
            Some(v) => Ok(Answer::Records(Arc::from(v.clone()))),
            None if self.known(&name) => Ok(Answer::NoData),
            None => Ok(Answer::NxDomain),
        }
    }

    fn known(&self, name: &str) -> bool {
        self.txt.contains_key(name)
            || self.a.contains_key(name)
            || self.aaaa.contains_key(name)
            || self.mx.contains_key(name)
    }
}

fn map<T, U>(answer: Answer<T>, f: impl Fn(usize, &T) -> U) -> Answer<U> {
    match answer {
        Answer::Records(v) => Answer::Records(v.iter().enumerate().map(|(i, r)| f(i, r)).collect()),
        Answer::NxDomain => Answer::NxDomain,
        Answer::NoData => Answer::NoData,
    }
}

impl Resolve for Stub {
    async fn txt(&self, name: &str) -> LookupResult<Box<[u8]>> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let r = self.answer("TXT", name, &self.txt)?;
        Ok(map(r, |_, s| Box::from(s.as_bytes())))
    }

    async fn a(&self, name: &str) -> LookupResult<Ipv4Addr> {
        self.answer("A", name, &self.a)
    }

    async fn aaaa(&self, name: &str) -> LookupResult<Ipv6Addr> {
        self.answer("AAAA", name, &self.aaaa)
    }

    async fn mx(&self, name: &str) -> LookupResult<MxHost> {
        let r = self.answer("MX", name, &self.mx)?;
        Ok(map(r, |i, h| MxHost {
            preference: u16::try_from(i).unwrap_or(u16::MAX),
            exchange: h.as_str().into(),
        }))
    }

    async fn ptr(&self, ip: IpAddr) -> LookupResult<Box<str>> {
        self.log().push(format!("PTR {ip}"));
        Ok(match self.ptr.get(&ip) {
            Some(v) => Answer::Records(v.iter().map(|s| Box::from(s.as_str())).collect()),
            None => Answer::NxDomain,
        })
    }
}

/// The MAIL FROM identity `mail_from` of a client at `ip` (HELO `helo.example.org`).
pub async fn run(dns: &Stub, ip: &str, mail_from: &str) -> SpfOutput {
    let ip = ip.parse().expect("IP");
    check_host(
        dns,
        &Identity::mail_from(ip, "helo.example.org", mail_from),
        LIMIT,
    )
    .await
}

/// `run`'s result alone.
pub async fn result(dns: &Stub, ip: &str, mail_from: &str) -> SpfResult {
    run(dns, ip, mail_from).await.result()
}
