//! Host names in trust specs (`--trust lb.internal`): resolved at start-up, then again
//! every `[client_ip] resolve_every` by the refresh thread (`reload`), which swaps in a
//! policy built with the new addresses the way a range refresh does.
//!
//! Resolution goes through [`Resolve`]: the system resolver in production, or — when
//! `TRUEIP_HOSTS_FILE` names a file, for tests — that file alone, in `/etc/hosts` format,
//! so that a test decides what a name resolves to and never touches the network.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use trueip::{Cidr, ConfigError, TrustSet};

/// The environment variable that points name resolution at a hosts file (for tests).
pub const HOSTS_FILE_ENV: &str = "TRUEIP_HOSTS_FILE";

/// The most addresses one name contributes: a name is a few balancers, not a network.
const MAX_ADDRESSES: usize = 256;

/// `[client_ip] resolve_every` when not set.
pub(crate) const DEFAULT_EVERY: Duration = Duration::from_secs(30);

/// The shortest `resolve_every`: a lookup a second per name is already plenty.
const MIN_EVERY: Duration = Duration::from_secs(1);

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

/// The resolver `trueip serve` and `trueip explain` use: the hosts file named by
/// [`HOSTS_FILE_ENV`] when it is set, else the system's.
pub fn resolver() -> Box<dyn Resolve> {
    match std::env::var_os(HOSTS_FILE_ENV) {
        Some(path) if !path.is_empty() => Box::new(HostsFile(path.into())),
        _ => Box::new(System),
    }
}

/// One name's addresses, normalised, or why there are none.
fn lookup(resolver: &dyn Resolve, name: &str) -> Result<Vec<IpAddr>, String> {
    let mut addrs: Vec<IpAddr> = resolver
        .lookup(name)?
        .into_iter()
        .map(trueip::addr::normalize)
        .collect();
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
                    ConfigError::new(format!("host name {name:?} does not resolve: {why}"))
                        .hint("check the name (a container's service name needs host:NAME), or trust its addresses as CIDRs")
                        .at("client_ip")
                })
        })
        .collect()
}

/// Resolves every name again; a name that fails keeps its addresses from `last` (the
/// ones in use). Returns the addresses and the names that failed, with why.
pub(crate) fn refresh(
    names: &[String],
    resolver: &dyn Resolve,
    last: &Addresses,
) -> (Addresses, Vec<(String, String)>) {
    let mut out = Addresses::new();
    let mut failed = Vec::new();
    for name in names {
        match (lookup(resolver, name), last.get(name)) {
            (Ok(addrs), _) => {
                out.insert(name.clone(), addrs);
            }
            (Err(why), Some(kept)) => {
                out.insert(name.clone(), kept.clone());
                failed.push((name.clone(), why));
            }
            // A name without a last good answer is not in use: the build that needs it
            // refuses the config.
            (Err(why), None) => failed.push((name.clone(), why)),
        }
    }
    (out, failed)
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

/// `[client_ip] resolve_every`, checked: 1s to 24h, [`DEFAULT_EVERY`] when not set.
pub(crate) fn every(text: Option<&str>) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(DEFAULT_EVERY);
    };
    let bad = |why: String| {
        ConfigError::new(format!("invalid resolve_every {text:?}: {why}"))
            .hint("write a duration from \"1s\" to \"24h\", e.g. \"30s\"")
            .at("client_ip.resolve_every")
    };
    let d = crate::duration::parse_duration(text).map_err(bad)?;
    if !(MIN_EVERY..=crate::duration::MAX_TIMEOUT).contains(&d) {
        return Err(bad("out of range".into()));
    }
    Ok(d)
}

/// `lb.internal: 10.0.0.5, 10.0.0.6`, for `--check` and `explain`.
pub fn describe(name: &str, addrs: &[IpAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    format!("{name}: {}", list.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    struct Stub(BTreeMap<&'static str, Vec<&'static str>>);

    impl Resolve for Stub {
        fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
            self.0
                .get(name)
                .map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect())
                .ok_or_else(|| "NXDOMAIN".into())
        }
    }

    #[test]
    fn start_up_needs_every_name_and_refresh_keeps_the_last_good() {
        let names = vec!["lb.internal".to_string(), "edge.internal".to_string()];
        let good = Stub(BTreeMap::from([
            (
                "lb.internal",
                vec!["10.0.0.6", "::ffff:10.0.0.5", "10.0.0.6"],
            ),
            ("edge.internal", vec!["10.1.0.1"]),
        ]));
        let addrs = resolve_all(&names, &good).unwrap();
        assert_eq!(
            describe("lb.internal", &addrs["lb.internal"]),
            "lb.internal: 10.0.0.5, 10.0.0.6"
        );

        let half = Stub(BTreeMap::from([("lb.internal", vec!["10.0.0.7"])]));
        let err = resolve_all(&names, &half).unwrap_err().to_string();
        assert!(
            err.contains("edge.internal") && err.contains("NXDOMAIN"),
            "{err}"
        );

        let (now, failed) = refresh(&names, &half, &addrs);
        assert_eq!(now["lb.internal"], ["10.0.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(now["edge.internal"], addrs["edge.internal"]);
        assert_eq!(failed.len(), 1);
        let empty = Stub(BTreeMap::from([("lb.internal", vec![])]));
        assert!(resolve_all(&names[..1], &empty).is_err());
    }

    #[test]
    fn hosts_files_are_read_as_etc_hosts() {
        let dir = std::env::temp_dir().join(format!("trueip-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(
            &path,
            "# test hosts\n10.0.0.5 lb.internal lb\n10.0.0.6\tLB.internal. # second\nnot-an-ip lb.internal\n2001:db8::5 lb.internal\n",
        )
        .unwrap();
        let file = HostsFile(path);
        let got: Vec<String> = lookup(&file, "lb.internal")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.0.0.5", "10.0.0.6", "2001:db8::5"]);
        assert!(lookup(&file, "other.internal").is_err());
        assert!(lookup(&HostsFile(dir.join("missing")), "lb.internal").is_err());
    }

    #[test]
    fn resolve_every_is_bounded() {
        assert_eq!(every(None).unwrap(), DEFAULT_EVERY);
        assert_eq!(every(Some("5m")).unwrap(), Duration::from_secs(300));
        for bad in ["0s", "500ms", "25h", "soon"] {
            let err = every(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("client_ip.resolve_every"), "{bad}: {err}");
        }
    }
}
