//! One decision, in full: what `trueip explain`, the whoami page and debug logs show.

use std::fmt;

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
            client_ip: resolution.client.ip.to_string(),
            client_port: resolution.client.port,
            source: policy.describe_source(&resolution),
            peer: resolution.peer.to_string(),
            proxy_source: resolution.proxy_source.map(|n| n.to_string()),
            chain_header: list.field().to_string(),
            chain: chain(list, headers),
            trusted_hops: resolution.trusted_hops,
            warnings: resolution.warnings.names().collect(),
            strategy: resolution.strategy.and_then(|i| policy.strategy_name(i)),
            rate_limit_key: resolution.rate_limit_key.to_string(),
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
        .map(|e| e.to_string())
        .collect();
    if entries.len() > MAX_CHAIN || lines.truncated {
        entries.truncate(MAX_CHAIN);
        entries.push("…".to_string());
    }
    entries.reverse();
    entries
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
