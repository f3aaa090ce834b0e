//! One decision, in full: what `trueip explain`, the whoami page and debug logs show.

use std::fmt;
use std::net::IpAddr;

use crate::addr::Node;
use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::policy::{Connection, Policy};
use crate::resolution::{ListHeader, Resolution, Source};
use crate::strategy::walk::Rev;
use crate::trace::Step;

/// How many chain entries an explanation lists; the rest are summarised.
const MAX_CHAIN: usize = 256;

/// A resolution with its evidence, in owned, printable form.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Explanation {
    /// The client address.
    pub client_ip: String,
    /// The client port, when the source carried one.
    pub client_port: Option<u16>,
    /// Where it came from: `peer`, `proxy-protocol`, `x-forwarded-for[-2]`, `x-real-ip`.
    pub source: String,
    /// The TCP peer.
    pub peer: String,
    /// The PROXY protocol source, when a trusted sender supplied one.
    pub proxy_source: Option<String>,
    /// The list header the chain below comes from.
    pub chain_header: String,
    /// Its entries as seen, left to right (the client's end first).
    pub chain: Vec<String>,
    /// How many trusted proxies stood in front of the client.
    pub trusted_hops: u16,
    /// Warning names (`spoof_attempt`, `malformed`, ...).
    pub warnings: Vec<&'static str>,
    /// The strategy that decided, or `null` when the peer stands by default.
    pub strategy: Option<String>,
    /// The rate-limit key.
    pub rate_limit_key: String,
    /// Every step of the decision.
    pub steps: Vec<Step>,
    /// The decision itself, for callers that want typed values.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub resolution: Resolution,
}

impl Explanation {
    /// Resolves with `policy` and records the evidence.
    pub fn new<H: Headers + ?Sized>(policy: &Policy, conn: &Connection, headers: &H) -> Self {
        let (resolution, steps) = policy.explain(conn, headers);
        let list = match resolution.source {
            Source::List { header, .. } => header,
            _ => policy.list_header(),
        };
        Explanation {
            client_ip: ip_string(resolution.client.ip),
            client_port: resolution.client.port,
            source: policy.describe_source(&resolution),
            peer: node_string(&resolution.peer),
            proxy_source: resolution.proxy_source.as_ref().map(node_string),
            chain_header: list.field().to_string(),
            chain: chain(list, headers),
            trusted_hops: resolution.trusted_hops,
            warnings: resolution.warnings.names().collect(),
            strategy: resolution.strategy.and_then(|i| policy.strategy_name(i)),
            rate_limit_key: ip_string(resolution.rate_limit_key),
            steps,
            resolution,
        }
    }
}

/// The entries of a list header, left to right, at most [`MAX_CHAIN`] (the rightmost ones).
fn chain<H: Headers + ?Sized>(list: ListHeader, headers: &H) -> Vec<String> {
    let lines = Lines::read(headers, &list.field());
    let mut entries: Vec<String> = Rev::new(list, &lines)
        .take(MAX_CHAIN + 1)
        .map(|e| match e {
            Entry::Addr(node) => node_string(&node),
            other => other.to_string(),
        })
        .collect();
    if entries.len() > MAX_CHAIN || lines.truncated {
        entries.truncate(MAX_CHAIN);
        entries.push("…".to_string());
    }
    entries.reverse();
    entries
}

/// `ip.to_string()`; IPv4, the common case on every whoami request, without the
/// formatting machinery.
fn ip_string(ip: IpAddr) -> String {
    let mut out = String::with_capacity(21);
    push_ip(&mut out, ip);
    out
}

/// `node.to_string()` (`1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443`), likewise.
fn node_string(node: &Node) -> String {
    let mut out = String::with_capacity(21);
    match (node.ip, node.port) {
        (IpAddr::V4(_), port) => {
            push_ip(&mut out, node.ip);
            if let Some(port) = port {
                out.push(':');
                push_decimal(&mut out, port);
            }
        }
        (IpAddr::V6(_), _) => {
            use fmt::Write as _;
            let _ = write!(out, "{node}");
        }
    }
    out
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u16::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_decimal(out: &mut String, n: u16) {
    let mut started = false;
    for div in [10_000, 1_000, 100, 10, 1] {
        let digit = (n / div) % 10;
        if started || digit != 0 || div == 1 {
            started = true;
            out.push(char::from(b'0' + digit as u8));
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "client   {}{}",
            self.client_ip,
            self.client_port
                .map(|p| format!(" port {p}"))
                .unwrap_or_default()
        )?;
        writeln!(f, "source   {}", self.source)?;
        writeln!(f, "peer     {}", self.peer)?;
        if let Some(proxy) = &self.proxy_source {
            writeln!(f, "proxy    {proxy} (PROXY protocol)")?;
        }
        writeln!(
            f,
            "strategy {}",
            self.strategy.as_deref().unwrap_or("peer (default)")
        )?;
        writeln!(f, "hops     {} trusted", self.trusted_hops)?;
        if !self.chain.is_empty() {
            writeln!(
                f,
                "chain    {}: {}",
                self.chain_header,
                self.chain.join(", ")
            )?;
        }
        writeln!(
            f,
            "warnings {}",
            if self.warnings.is_empty() {
                "none".to_string()
            } else {
                self.warnings.join(", ")
            }
        )?;
        writeln!(f)?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(
                f,
                "{:>3}. {:<28} {:<28} {:<14} {}",
                i + 1,
                step.subject,
                step.value,
                step.verdict,
                step.why
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_as_display_does() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.0.1",
            "255.255.255.255",
            "100.64.9.99",
            "::",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = text
                .parse()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            assert_eq!(ip_string(ip), ip.to_string());
            for port in [
                None,
                Some(0),
                Some(1),
                Some(80),
                Some(443),
                Some(8080),
                Some(10000),
                Some(65535),
            ] {
                let node = Node { ip, port };
                assert_eq!(node_string(&node), node.to_string());
            }
        }
    }
}
