//! What is dangerous in a trust configuration, with the fix: the checks `trueip check`
//! prints. A configuration can be valid and still hand every client the power to name its
//! own address; these are the ways that happens in practice, each found in some peer's bug
//! reports (a trusted `0.0.0.0/0`, a hop count behind a public port, a CDN header without
//! the CDN's secret, `leftmost` used for rate limits, a PROXY listener open to anyone).

use std::net::{IpAddr, SocketAddr};

use crate::config::{ClientIpConfig, Strategies, StrategyEntry};
use crate::policy::{TrustSpec, implied_strategy};
use crate::strategy::{Preset, StrategySpec};
use crate::trust::NamedSet;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Severity {
    /// Worth knowing; nothing is forgeable because of it.
    Note,
    /// Forgeable under a condition the configuration cannot see (who can reach the port).
    Warning,
    /// Forgeable as configured.
    Danger,
}

impl Severity {
    /// `danger`, `warning`, `note`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Danger => "danger",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One thing found, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// A stable name for scripts (`trust_any_on_a_public_listener`, ...).
    pub code: &'static str,
    /// What is wrong, and how a client exploits it.
    pub message: String,
    /// The change that removes it.
    pub fix: String,
}

impl Finding {
    /// The finding about `listen[i]`'s own `client_ip` table, named so.
    pub fn in_listener(mut self, i: usize) -> Finding {
        self.message = format!("listen[{i}].client_ip: {}", self.message);
        self
    }
}

impl std::fmt::Display for Finding {
    /// `danger: code: message`, and the fix on the next line: how `trueip check` and
    /// `trueip serve --check` print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}\n  fix: {}", self.severity.name(), self.code, self.message, self.fix)
    }
}

/// What a check needs to know of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The address it listens on; `None` for a Unix socket (reachable on this host only).
    pub address: Option<SocketAddr>,
    /// Whether it expects PROXY protocol headers.
    pub proxy_protocol: bool,
}

impl Listener {
    /// Whether others than this host can reach it: not loopback, not a Unix socket.
    pub fn is_public(&self) -> bool {
        self.address.is_some_and(|a| !a.ip().is_loopback())
    }
}

/// Whether a trust spec lets in every address, or every private one.
fn breadth(spec: &str) -> Option<Breadth> {
    match spec.trim().parse::<TrustSpec>().ok()? {
        TrustSpec::Named(NamedSet::Any) => Some(Breadth::Everyone),
        TrustSpec::Named(NamedSet::Private) => Some(Breadth::Private),
        TrustSpec::Cidr(c) if c.prefix() == 0 => Some(Breadth::Everyone),
        // Wider than any one network's addresses: no proxy fleet fills a /7 of IPv4 (each
        // holds public addresses) or a /15 of public IPv6, and a few such ranges
        // (`0.0.0.0/1` and `128.0.0.0/1`, `2000::/3`) trust every client as a /0 does.
        TrustSpec::Cidr(c) if c.prefix() < wide(c.network()) && reaches_public(spec) => {
            Some(Breadth::Everyone)
        }
        TrustSpec::Cidr(c) => match c.network() {
            IpAddr::V4(v4) if v4.is_private() && c.prefix() <= 12 => Some(Breadth::Private),
            // Unique-local fc00::/7, or a wide part of it.
            IpAddr::V6(v6) if u128::from(v6) >> 121 == 0x7e && c.prefix() <= 8 => {
                Some(Breadth::Private)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The longest prefix [`breadth`] counts as trusting everyone: shorter than any network a
/// proxy fleet is numbered from.
fn wide(network: IpAddr) -> u8 {
    match network {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 16,
    }
}

/// Whether a trust spec reaches public addresses: a CIDR outside private, loopback and
/// link-local space, or a provider's ranges (named sets other than `any` do not).
fn reaches_public(spec: &str) -> bool {
    match spec.trim().parse::<TrustSpec>() {
        Ok(TrustSpec::Cidr(c)) => match c.network() {
            IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local()),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                !(v6.is_loopback() || bits >> 121 == 0x7e || bits >> 118 == 0x3fa)
            }
        },
        Ok(TrustSpec::Provider(_)) => true,
        _ => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Breadth {
    Everyone,
    Private,
}

/// Every check over a whole `trueip serve` config: `[client_ip]` with the listeners it
/// decides for (those whose policy is `None`), and each listener's own `client_ip` table
/// with that listener alone, its findings named `listen[i].client_ip: ...`. What
/// `trueip check` and `trueip serve --check` print.
pub fn lint_listeners(
    client_ip: &ClientIpConfig,
    listeners: &[(Listener, Option<&ClientIpConfig>)],
) -> Vec<Finding> {
    let shared: Vec<Listener> =
        listeners.iter().filter(|(_, own)| own.is_none()).map(|(l, _)| *l).collect();
    let mut found = match shared.is_empty() {
        true => Vec::new(),
        false => lint(client_ip, &shared),
    };
    for (i, (l, own)) in listeners.iter().enumerate() {
        if let Some(own) = own {
            found.extend(lint(own, std::slice::from_ref(l)).into_iter().map(|f| f.in_listener(i)));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.severity));
    found
}

/// Every check, over a `[client_ip]` section and the listeners that serve it.
pub fn lint(config: &ClientIpConfig, listeners: &[Listener]) -> Vec<Finding> {
    let mut out = Vec::new();
    let public = listeners.iter().any(Listener::is_public);
    let entries: Vec<(String, Vec<String>)> = match &config.strategy {
        Strategies::One(name) => vec![(name.clone(), config.trusted.clone())],
        Strategies::Chain(list) => list
            .iter()
            .map(|e| match e {
                StrategyEntry::Name(name) => (name.clone(), config.trusted.clone()),
                StrategyEntry::WithTrust { name, trusted } => (name.clone(), trusted.clone()),
            })
            .collect(),
    };
    let mut specs: Vec<(StrategySpec, &Vec<String>)> = entries
        .iter()
        .filter_map(|(name, trusted)| Some((name.parse::<StrategySpec>().ok()?, trusted)))
        .collect();
    if entries.is_empty()
        && let Some(spec) = implied_strategy(!config.trusted.is_empty())
    {
        specs.push((spec, &config.trusted));
    }
    // `peer` reads no forwarding header: what it trusts names no client.
    let trusts = |b: Breadth| {
        specs
            .iter()
            .filter(|(s, _)| !matches!(s, StrategySpec::Peer))
            .any(|(_, trusted)| trusted.iter().any(|t| breadth(t) == Some(b)))
    };

    if trusts(Breadth::Everyone) {
        let hops = specs.iter().any(|(s, _)| matches!(s, StrategySpec::Hops(_)));
        if public {
            out.push(Finding {
                severity: Severity::Danger,
                code: if hops { "hops_with_any_on_a_public_listener" } else { "trust_any_on_a_public_listener" },
                message: if hops {
                    "hops:N trusting `any` on a listener others can reach: a client that connects directly sends N entries of its own choosing and is believed".to_string()
                } else {
                    "every peer is trusted (`any`, a /0, or a range wider than a /8 of IPv4 or a /16 of IPv6) on a listener others can reach: any client can name any address in X-Forwarded-For".to_string()
                },
                fix: "trust your proxies' addresses only (trusted = [\"10.0.0.0/16\"], a provider's ranges), or listen on loopback or a Unix socket behind them".to_string(),
            });
        } else {
            out.push(Finding {
                severity: Severity::Note,
                code: "trust_any_on_loopback",
                message: "every peer is trusted, and every listener is loopback or a Unix socket: any process on this host can name any address".to_string(),
                fix: "trust the local proxy's address (127.0.0.1) rather than `any` if other users share the host".to_string(),
            });
        }
    }
    if public && trusts(Breadth::Private) {
        out.push(Finding {
            severity: Severity::Warning,
            code: "private_ranges_trusted_on_a_public_listener",
            message: "whole private ranges are trusted on a listener others can reach: a client on a private network (a VPN, an office, another VPC, a container next door) connects from a trusted address and names any address".to_string(),
            fix: "trust only your proxies' subnets or addresses (the ALB's subnets, the nginx host), not 10.0.0.0/8 or `private`".to_string(),
        });
    }
    if specs.iter().any(|(s, _)| matches!(s, StrategySpec::Leftmost)) {
        out.push(Finding {
            severity: Severity::Warning,
            code: "leftmost_is_the_clients_text",
            message: "`leftmost` answers the first X-Forwarded-For entry, which the client wrote: fine for analytics, forgeable for rate limits, access control or logs you rely on".to_string(),
            fix: "use rightmost-untrusted (or hops:N) for anything that matters; keep leftmost for analytics only".to_string(),
        });
    }
    let cdn_headers =
        [Preset::Cloudfront, Preset::Cloudflare, Preset::Fastly, Preset::AzureFrontDoor];
    // A CDN trusted by its preset, or by its ranges under another strategy (`trusted =
    // ["cloudflare"]` with rightmost-untrusted, as nginx's set_real_ip_from over the CDN's
    // list): either way the ranges vouch for whoever sends through them. Once per CDN.
    let mut cdns: Vec<(Preset, String)> = Vec::new();
    for (spec, trusted) in &specs {
        if let StrategySpec::Preset(preset) = spec
            && cdn_headers.contains(preset)
            && !cdns.iter().any(|(p, _)| p == preset)
        {
            cdns.push((*preset, format!("the {} preset", preset.name())));
        }
        // `peer` reads no forwarding header: what it trusts names no client.
        let reads = !matches!(spec, StrategySpec::Peer);
        for t in trusted.iter().filter(|_| reads) {
            if let Ok(TrustSpec::Provider(name)) = t.trim().parse::<TrustSpec>()
                && let Some(preset) = cdn_headers.iter().find(|p| p.ranges() == Some(&*name))
                && !cdns.iter().any(|(p, _)| p == preset)
            {
                cdns.push((*preset, format!("{name}'s ranges trusted")));
            }
        }
    }
    for (_, what) in cdns {
        if config.origin_secret.is_none() {
            out.push(Finding {
                severity: Severity::Warning,
                code: "cdn_without_origin_secret",
                message: format!(
                    "{what} without an origin secret: the CDN's ranges are shared by all its customers, so anyone can send through it with their own configuration and have it vouch for any address, unless this origin accepts traffic from your distribution only"
                ),
                fix: "set a custom origin header with a secret value at the CDN and require it: origin_secret = { header = \"X-Origin-Verify\", value = \"...\" }".to_string(),
            });
        }
    }
    let proxy_listener = listeners.iter().any(|l| l.proxy_protocol && l.is_public());
    if proxy_listener {
        let open = config.proxy_protocol_from.iter().any(|s| breadth(s) == Some(Breadth::Everyone));
        let public: Vec<&String> = config
            .proxy_protocol_from
            .iter()
            .filter(|s| breadth(s) != Some(Breadth::Everyone) && reaches_public(s))
            .collect();
        if !open && !public.is_empty() {
            out.push(Finding {
                severity: Severity::Warning,
                code: "proxy_protocol_from_public_ranges",
                message: format!(
                    "PROXY headers are taken from public addresses ({}): a balancer sends them from its own private addresses, and whoever else holds a public one there names any source",
                    public.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                fix: "set proxy_protocol_from to the balancer's private addresses (the NLB's subnets, the HAProxy host)".to_string(),
            });
        }
        if open {
            out.push(Finding {
                severity: Severity::Danger,
                code: "proxy_protocol_from_anyone",
                message: "a public listener takes PROXY headers from any sender: a client opens with `PROXY TCP4 <any address> ...` and becomes that address".to_string(),
                fix: "set proxy_protocol_from to the balancer's addresses (the NLB's subnets, the HAProxy host)".to_string(),
            });
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// The check that needs AWS's list beside the config: a trusted range that AWS publishes
/// under another service (`AMAZON`, `EC2`, ...) but not under `CLOUDFRONT_ORIGIN_FACING`.
/// Ranges copied from the wrong rows of `ip-ranges.json` are the classic way to "trust
/// CloudFront" and trust every EC2 instance instead. `aws_json` is AWS's `ip-ranges.json`.
pub fn aws_trust(
    config: &ClientIpConfig,
    aws_json: &[u8],
) -> Result<Vec<Finding>, crate::ConfigError> {
    let all = crate::providers::aws_services(aws_json)?;
    let origin_facing: Vec<_> = all
        .iter()
        .filter(|(_, s)| s == crate::providers::CLOUDFRONT_ORIGIN_FACING)
        .map(|(c, _)| *c)
        .collect();
    let mut trusted: Vec<&String> = config.trusted.iter().collect();
    if let Strategies::Chain(list) = &config.strategy {
        for entry in list {
            if let StrategyEntry::WithTrust { trusted: own, .. } = entry {
                trusted.extend(own);
            }
        }
    }
    let mut out = Vec::new();
    for spec in trusted {
        let Ok(TrustSpec::Cidr(cidr)) = spec.trim().parse::<TrustSpec>() else {
            continue;
        };
        if origin_facing.iter().any(|o| o.contains(cidr.network()) && o.prefix() <= cidr.prefix()) {
            continue;
        }
        let mut services: Vec<&str> = all
            .iter()
            .filter(|(c, s)| {
                s != crate::providers::CLOUDFRONT_ORIGIN_FACING
                    && (c.contains(cidr.network()) || cidr.contains(c.network()))
            })
            .map(|(_, s)| s.as_str())
            .collect();
        services.sort_unstable();
        services.dedup();
        if services.is_empty() {
            continue;
        }
        out.push(Finding {
            severity: Severity::Danger,
            code: "aws_range_not_cloudfront_origin_facing",
            message: format!(
                "trusted {spec} is in AWS's {} ranges, not CloudFront's origin-facing ones: CloudFront does not reach origins from there, and what does (other AWS customers' instances, services) is a trusted proxy that names any address",
                services.join("/")
            ),
            fix: "trust CloudFront by its list: strategy = \"cloudfront\" (or trusted = [\"cloudfront\"]) with `trueip ranges update cloudfront`, which reads only CLOUDFRONT_ORIGIN_FACING".to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_like: (&[&str], &[&str], Option<&str>)) -> ClientIpConfig {
        let (trusted, strategy, secret) = toml_like;
        let mut c = ClientIpConfig {
            trusted: trusted.iter().map(|s| s.to_string()).collect(),
            ..ClientIpConfig::default()
        };
        c.set_strategies(&strategy.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        c.origin_secret = secret.map(|v| crate::config::OriginSecretConfig {
            header: "X-Origin-Verify".into(),
            value: v.into(),
        });
        c
    }

    fn listener(addr: &str, proxy: bool) -> Listener {
        Listener {
            address: Some(addr.parse().unwrap_or_else(|_| unreachable!("test address"))),
            proxy_protocol: proxy,
        }
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn each_check_fires_on_its_case_and_not_on_the_safe_one() {
        let public = [listener("0.0.0.0:8080", false)];
        let local = [listener("127.0.0.1:8080", false)];
        let any = config((&["any"], &["rightmost-untrusted"], None));
        assert_eq!(codes(&lint(&any, &public)), ["trust_any_on_a_public_listener"]);
        assert_eq!(codes(&lint(&any, &local)), ["trust_any_on_loopback"]);
        let slash0 = config((&["0.0.0.0/0"], &["hops:2"], None));
        assert_eq!(codes(&lint(&slash0, &public)), ["hops_with_any_on_a_public_listener"]);
        // Two halves of IPv4 and all of global IPv6: every client, as a /0 (check said
        // "nothing dangerous found" before).
        for wide in [&["0.0.0.0/1", "128.0.0.0/1"][..], &["2000::/3"], &["64.0.0.0/2"]] {
            let halves = config((wide, &["rightmost-untrusted"], None));
            assert_eq!(
                codes(&lint(&halves, &public)),
                ["trust_any_on_a_public_listener"],
                "{wide:?}"
            );
        }
        for narrow in ["8.0.0.0/8", "2001:db8::/32", "fc00::/7"] {
            let narrow = config((&[narrow], &["rightmost-untrusted"], None));
            assert!(
                !codes(&lint(&narrow, &public)).contains(&"trust_any_on_a_public_listener"),
                "{:?}",
                narrow.trusted
            );
        }
        let private = config((&["private"], &["rightmost-untrusted"], None));
        assert_eq!(
            codes(&lint(&private, &public)),
            ["private_ranges_trusted_on_a_public_listener"]
        );
        assert!(lint(&private, &local).is_empty());
        let ten = config((&["10.0.0.0/8"], &["rightmost-untrusted"], None));
        assert_eq!(codes(&lint(&ten, &public)), ["private_ranges_trusted_on_a_public_listener"]);
        let subnet = config((&["10.50.1.0/24"], &["rightmost-untrusted"], None));
        assert!(lint(&subnet, &public).is_empty());
        let leftmost = config((&["10.50.1.0/24"], &["leftmost"], None));
        assert_eq!(codes(&lint(&leftmost, &public)), ["leftmost_is_the_clients_text"]);
        let cdn = config((&[], &["cloudflare"], None));
        assert_eq!(codes(&lint(&cdn, &public)), ["cdn_without_origin_secret"]);
        // The CDN's ranges under another strategy are as shared (check said "nothing
        // dangerous found" before); named once with its preset.
        for strategy in ["rightmost-untrusted", "cloudflare"] {
            let ranges = config((&["cloudflare"], &[strategy], None));
            assert_eq!(codes(&lint(&ranges, &public)), ["cdn_without_origin_secret"], "{strategy}");
        }
        let secret = config((&["cloudflare"], &["rightmost-untrusted"], Some("s3cret")));
        assert!(lint(&secret, &public).is_empty());
        assert!(lint(&config((&["cloudflare"], &["peer"], None)), &public).is_empty());
        assert!(lint(&config((&[], &["cloudflare"], Some("s3cret"))), &public).is_empty());
        let mut proxy = config((&[], &["peer"], None));
        proxy.proxy_protocol_from = vec!["any".into()];
        let nlb = [listener("0.0.0.0:8080", true)];
        assert_eq!(codes(&lint(&proxy, &nlb)), ["proxy_protocol_from_anyone"]);
        proxy.proxy_protocol_from = vec!["10.50.0.0/16".into()];
        assert!(lint(&proxy, &nlb).is_empty());
        proxy.proxy_protocol_from = vec!["10.50.0.0/16".into(), "198.51.100.0/24".into()];
        assert_eq!(codes(&lint(&proxy, &nlb)), ["proxy_protocol_from_public_ranges"]);
    }

    /// Trusting proxies without naming a strategy runs `rightmost-untrusted`: the lint
    /// judges that strategy (it once saw an empty chain and found nothing).
    #[test]
    fn trust_without_a_strategy_is_judged_as_the_strategy_that_runs() {
        let public = [listener("0.0.0.0:8080", false)];
        let any = config((&["any"], &[], None));
        assert_eq!(codes(&lint(&any, &public)), ["trust_any_on_a_public_listener"]);
        let private = config((&["private"], &[], None));
        assert_eq!(
            codes(&lint(&private, &public)),
            ["private_ranges_trusted_on_a_public_listener"]
        );
        assert!(lint(&config((&[], &[], None)), &public).is_empty());
    }

    /// `peer` reads no forwarding header, so what it trusts lets no client name an
    /// address; another entry of the chain that reads one is still judged. Fails on the old
    /// code, which flagged `peer` with `any` as trust_any_on_a_public_listener.
    #[test]
    fn trust_under_the_peer_strategy_names_no_client() {
        let public = [listener("0.0.0.0:8080", false)];
        for trusted in ["any", "private"] {
            let peer = config((&[trusted], &["peer"], None));
            assert!(lint(&peer, &public).is_empty(), "{trusted}");
        }
        let chain = config((&["any"], &["rightmost-untrusted", "peer"], None));
        assert_eq!(codes(&lint(&chain, &public)), ["trust_any_on_a_public_listener"]);
    }

    #[test]
    fn a_listener_with_its_own_policy_is_judged_by_it_alone() {
        let any = config((&["any"], &["rightmost-untrusted"], None));
        let safe = config((&["10.50.1.0/24"], &["rightmost-untrusted"], None));
        let public = listener("0.0.0.0:8080", false);
        let local = listener("127.0.0.1:8081", false);
        // `[client_ip]` decides for the loopback listener only: a note.
        let found = lint_listeners(&any, &[(local, None), (public, Some(&safe))]);
        assert_eq!(codes(&found), ["trust_any_on_loopback"]);
        // The public listener's own policy trusts everyone: named with its listener.
        let found = lint_listeners(&safe, &[(local, None), (public, Some(&any))]);
        assert_eq!(codes(&found), ["trust_any_on_a_public_listener"]);
        assert!(found[0].message.starts_with("listen[1].client_ip: "), "{found:?}");
        // No listener left to `[client_ip]`: nothing in it is judged.
        assert!(lint_listeners(&any, &[(public, Some(&safe))]).is_empty());
    }

    #[test]
    fn the_worst_comes_first() {
        let mut c = config((&["any"], &["leftmost"], None));
        c.proxy_protocol_from = vec!["any".into()];
        let found = lint(&c, &[listener("[::]:443", true)]);
        assert!(found.windows(2).all(|w| w[0].severity >= w[1].severity), "{found:?}");
        assert_eq!(found.first().map(|f| f.severity), Some(Severity::Danger));
    }

    #[test]
    fn aws_ranges_of_other_services_are_named() {
        let aws = br#"{"syncToken":"1","createDate":"2025-07-24-20-23-14","prefixes":[
            {"ip_prefix":"3.0.0.0/15","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"},
            {"ip_prefix":"3.0.0.0/15","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"},
            {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"AMAZON","network_border_group":"GLOBAL"},
            {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}],
            "ipv6_prefixes":[]}"#;
        let ec2 = config((
            &["3.0.0.0/15", "13.32.0.0/16", "10.50.1.0/24"],
            &["rightmost-untrusted"],
            None,
        ));
        let found = aws_trust(&ec2, aws).unwrap();
        assert_eq!(codes(&found), ["aws_range_not_cloudfront_origin_facing"]);
        assert!(
            found[0].message.contains("3.0.0.0/15") && found[0].message.contains("AMAZON/EC2"),
            "{found:?}"
        );
        assert!(aws_trust(&ec2, b"{}").is_err());
    }

    #[test]
    fn a_unix_socket_is_not_public() {
        let any = config((&["any"], &["rightmost-untrusted"], None));
        let unix = [Listener { address: None, proxy_protocol: false }];
        assert_eq!(codes(&lint(&any, &unix)), ["trust_any_on_loopback"]);
    }
}
