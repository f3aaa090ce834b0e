//! Host names in trust specs (`lb.internal`, `host:nginx`): resolving them to the
//! addresses a policy trusts. A policy never resolves names itself
//! ([`PolicyBuilder::host`](crate::PolicyBuilder::host) takes the addresses); the callers
//! that build policies from a config (`trueip serve`, `trueip explain`, the Python
//! package) resolve through here, so each reads a name alike.
//!
//! Resolution goes through [`Resolve`]: the system resolver, or — when
//! `TRUEIP_HOSTS_FILE` names a file, for tests — that file alone, in `/etc/hosts` format,
//! so that a test decides what a name resolves to and never touches the network.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::{Cidr, ConfigError, TrustSet};

/// The environment variable that points name resolution at a hosts file (for tests).
pub const HOSTS_FILE_ENV: &str = "TRUEIP_HOSTS_FILE";

/// The most addresses one name contributes: a name is a few balancers, not a network.
const MAX_ADDRESSES: usize = 256;

/// What each name resolved to, sorted, without duplicates (IPv4-mapped IPv6 as IPv4).
pub type Addresses = BTreeMap<String, Vec<IpAddr>>;

/// Looks a host name up.
pub trait Resolve: Send + Sync {
    /// The name's addresses; an error (or none) means it does not resolve now.
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String>;
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, DNS, per `nsswitch.conf`).
pub struct System;

impl Resolve for System {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        (name, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }
}

/// An `/etc/hosts`-format file, read on every lookup (so a test can change it between
/// two refreshes): `ADDRESS NAME [ALIAS...]`, `#` comments.
pub struct HostsFile(pub PathBuf);

impl Resolve for HostsFile {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let text = std::fs::read_to_string(&self.0)
            .map_err(|e| format!("cannot read {}: {e}", self.0.display()))?;
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            if words.any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name)) {
                out.push(ip);
            }
        }
        Ok(out)
    }
}

/// The resolver `trueip serve`, `trueip explain` and the Python package use: the hosts file named by
/// [`HOSTS_FILE_ENV`] when it is set, else the system's.
pub fn resolver() -> Box<dyn Resolve> {
    match std::env::var_os(HOSTS_FILE_ENV) {
        Some(path) if !path.is_empty() => Box::new(HostsFile(path.into())),
        _ => Box::new(System),
    }
}

/// One name's addresses, normalised, or why there are none.
pub fn lookup(resolver: &dyn Resolve, name: &str) -> Result<Vec<IpAddr>, String> {
    let mut addrs: Vec<IpAddr> =
        resolver.lookup(name)?.into_iter().map(crate::addr::normalize).collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs.truncate(MAX_ADDRESSES);
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// Resolves every name, or fails on the first that does not resolve: at start-up (and on
/// SIGHUP, which keeps the running config), a name that does not resolve is a config error.
pub fn resolve_all(names: &[String], resolver: &dyn Resolve) -> Result<Addresses, ConfigError> {
    names
        .iter()
        .map(|name| {
            lookup(resolver, name)
                .map(|addrs| (name.clone(), addrs))
                .map_err(|why| {
                    ConfigError::new(format!("host name \"{name}\" does not resolve: {why}"))
                        .hint("check the name (a container's service name needs host:NAME), or trust its addresses as CIDRs")
                        .at("client_ip")
                })
        })
        .collect()
}

/// The trust sets the policy builder takes.
pub fn sets(addrs: &Addresses) -> BTreeMap<String, TrustSet> {
    addrs
        .iter()
        .map(|(name, ips)| {
            let set = TrustSet::from_cidrs(ips.iter().map(|ip| Cidr::host(*ip)));
            (name.clone(), set)
        })
        .collect()
}

/// `lb.internal: 10.0.0.5, 10.0.0.6`, for `--check` and `explain`.
pub fn describe(name: &str, addrs: &[IpAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    format!("{name}: {}", list.join(", "))
}
