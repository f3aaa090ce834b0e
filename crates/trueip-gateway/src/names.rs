//! Host names in trust specs (`--trust lb.internal`): resolved at start-up
//! ([`trueip::hosts`]), then again every `[client_ip] resolve_every` by the refresh
//! thread (`reload`), which swaps in a policy built with the new addresses the way a
//! range refresh does.

use std::time::Duration;

use trueip::ConfigError;
pub use trueip::hosts::{
    Addresses, HOSTS_FILE_ENV, HostsFile, Resolve, System, describe, lookup, resolve_all, resolver,
    sets,
};

/// `[client_ip] resolve_every` when not set.
pub(crate) const DEFAULT_EVERY: Duration = Duration::from_secs(30);

/// The shortest `resolve_every`: a lookup a second per name is already plenty.
const MIN_EVERY: Duration = Duration::from_secs(1);

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

/// `[client_ip] resolve_every`, checked: 1s to 24h, [`DEFAULT_EVERY`] when not set.
pub(crate) fn every(text: Option<&str>) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(DEFAULT_EVERY);
    };
    let bad = |why: String| {
        ConfigError::new(format!("invalid resolve_every \"{text}\": {why}"))
            .hint("write a duration from \"1s\" to \"24h\", e.g. \"30s\"")
            .at("client_ip.resolve_every")
    };
    let d = crate::duration::parse_duration(text).map_err(|_| bad("not a duration".into()))?;
    if !(MIN_EVERY..=crate::duration::MAX_TIMEOUT).contains(&d) {
        return Err(bad("out of range".into()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

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
            ("lb.internal", vec!["10.0.0.6", "::ffff:10.0.0.5", "10.0.0.6"]),
            ("edge.internal", vec!["10.1.0.1"]),
        ]));
        let addrs = resolve_all(&names, &good).unwrap();
        assert_eq!(
            describe("lb.internal", &addrs["lb.internal"]),
            "lb.internal: 10.0.0.5, 10.0.0.6"
        );

        let half = Stub(BTreeMap::from([("lb.internal", vec!["10.0.0.7"])]));
        let err = resolve_all(&names, &half).unwrap_err().to_string();
        assert!(err.contains("edge.internal") && err.contains("NXDOMAIN"), "{err}");

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
        let got: Vec<String> =
            lookup(&file, "lb.internal").unwrap().iter().map(ToString::to_string).collect();
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
