//! Strategies: each decides who the client is from one kind of evidence.
//!
//! Every strategy starts from the (effective) peer and reads headers only when the
//! peer is in the strategy's trust set; an untrusted peer *is* the client. The list
//! strategies share one walk (`walk.rs`) and differ only in where they stop; each
//! lives in its own file with a doc comment saying when it is safe.
//!
//! The names below are the public spelling used by `--strategy`, the TOML config and
//! `Display`; [`StrategySpec::NAMES`] is the one table they come from.

mod header;
mod hops;
mod leftmost;
mod rightmost;
mod rightmost_untrusted;
pub(crate) mod walk;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::ConfigError;
use crate::headers::{FieldName, Headers};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::Tracer;
use crate::trust::TrustSet;

pub(crate) use crate::list::Client;
pub(crate) use header::Single;

/// A strategy as written in config and on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategySpec {
    /// `peer`: the TCP peer is the client; headers are ignored. The default.
    Peer,
    /// `rightmost-untrusted`: walk the list from the right, skipping trusted proxies.
    RightmostUntrusted,
    /// `rightmost`: the last element of the list, if the peer is trusted.
    Rightmost,
    /// `hops:N`: exactly N proxies in front; the client is the N-th element from the right.
    Hops(u16),
    /// `header:NAME`: a single-address header, honoured from trusted peers only.
    Header(FieldName),
    /// `leftmost`: the first element, as the client wrote it. For analytics only.
    Leftmost,
    /// A provider preset: sets the header and trust for that provider.
    Preset(Preset),
}

/// Provider presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Amazon CloudFront: `CloudFront-Viewer-Address` when the origin request policy
    /// forwards it, else X-Forwarded-For walked through CloudFront's origin-facing ranges.
    Cloudfront,
    /// Cloudflare: `CF-Connecting-IP` from Cloudflare's ranges.
    Cloudflare,
    /// Fastly: `Fastly-Client-IP` from Fastly's ranges.
    Fastly,
    /// Fly.io: `Fly-Client-IP` from Fly's proxies (your trust, or `private` when none is given).
    Fly,
    /// AWS Application Load Balancer: X-Forwarded-For walked through your VPC ranges.
    AwsAlb,
    /// Google Cloud external Application Load Balancer: it appends the client and then its
    /// own forwarding-rule address, so the client is 2nd from the right, from Google Front Ends.
    GcpLb,
    /// Azure Front Door: `X-Azure-ClientIP` from the `AzureFrontDoor.Backend` ranges.
    /// Pair it with an origin secret on `X-Azure-FDID`: the ranges are shared by all customers.
    AzureFrontDoor,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 7] = [
        Preset::Cloudfront,
        Preset::Cloudflare,
        Preset::Fastly,
        Preset::Fly,
        Preset::AwsAlb,
        Preset::GcpLb,
        Preset::AzureFrontDoor,
    ];

    /// The preset's name, which is also the name of its provider range list where it has one.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Cloudfront => "cloudfront",
            Preset::Cloudflare => "cloudflare",
            Preset::Fastly => "fastly",
            Preset::Fly => "fly",
            Preset::AwsAlb => "aws-alb",
            Preset::GcpLb => "gcp-lb",
            Preset::AzureFrontDoor => "azure-front-door",
        }
    }
}

impl StrategySpec {
    /// The fixed names (`hops:N` and `header:NAME` take an argument).
    pub const NAMES: [(&'static str, &'static str); 6] = [
        (
            "peer",
            "the TCP peer is the client; forwarding headers are ignored (default)",
        ),
        (
            "rightmost-untrusted",
            "walk the list from the right, skip trusted proxies; first untrusted entry is the client",
        ),
        ("rightmost", "the last list element, if the peer is trusted"),
        (
            "hops:N",
            "exactly N proxies in front: the N-th element from the right",
        ),
        (
            "header:NAME",
            "a single-address header (X-Real-IP, CF-Connecting-IP, ...) from trusted peers",
        ),
        (
            "leftmost",
            "the first element as the client wrote it: spoofable, analytics only",
        ),
    ];
}

impl FromStr for StrategySpec {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let lower = text.trim().to_ascii_lowercase();
        let spec = match lower.as_str() {
            "peer" => StrategySpec::Peer,
            "rightmost-untrusted" => StrategySpec::RightmostUntrusted,
            "rightmost" => StrategySpec::Rightmost,
            "leftmost" => StrategySpec::Leftmost,
            _ => {
                if let Some(n) = lower.strip_prefix("hops:") {
                    match n.parse::<u16>() {
                        Ok(n @ 1..=64) => StrategySpec::Hops(n),
                        _ => {
                            return Err(ConfigError::new(format!("invalid hop count in strategy {text:?}"))
                                .hint("hops:N takes N from 1 to 64, the number of proxies in front of the app"));
                        }
                    }
                } else if let Some((_, name)) = text
                    .trim()
                    .split_once(':')
                    .filter(|(kind, _)| kind.eq_ignore_ascii_case("header"))
                {
                    StrategySpec::Header(FieldName::new(name.trim())?)
                } else if let Some(preset) = Preset::ALL.into_iter().find(|p| p.name() == lower) {
                    StrategySpec::Preset(preset)
                } else {
                    let presets: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                    return Err(ConfigError::new(format!("unknown strategy {text:?}")).hint(format!(
                        "use peer, rightmost-untrusted, rightmost, hops:N, header:NAME, leftmost, or a preset: {}",
                        presets.join(", ")
                    )));
                }
            }
        };
        Ok(spec)
    }
}

impl fmt::Display for StrategySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategySpec::Peer => f.write_str("peer"),
            StrategySpec::RightmostUntrusted => f.write_str("rightmost-untrusted"),
            StrategySpec::Rightmost => f.write_str("rightmost"),
            StrategySpec::Hops(n) => {
                f.write_str("hops:")?;
                f.write_str(crate::text::Short::decimal(u64::from(*n)).as_str())
            }
            StrategySpec::Header(name) => {
                f.write_str("header:")?;
                f.write_str(name.as_str())
            }
            StrategySpec::Leftmost => f.write_str("leftmost"),
            StrategySpec::Preset(p) => f.write_str(p.name()),
        }
    }
}

/// What "every entry is trusted" resolves to. There is no agreed answer among
/// proxies, so it is a named choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AllTrusted {
    /// The leftmost entry (nginx `real_ip_recursive on`). The default: every entry was
    /// written by a trusted hop, and the leftmost is the farthest one we can vouch for.
    #[default]
    Leftmost,
    /// The peer (Caddy's strict mode): refuse to go past the first hop without an untrusted entry.
    Peer,
    /// No answer from this strategy (realclientip-go): the next strategy in the chain
    /// decides, and with none left, the peer stands.
    Fail,
}

impl FromStr for AllTrusted {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "leftmost" => Ok(AllTrusted::Leftmost),
            "peer" => Ok(AllTrusted::Peer),
            "fail" => Ok(AllTrusted::Fail),
            _ => Err(
                ConfigError::new(format!("unknown all_trusted choice {text:?}"))
                    .hint("use leftmost, peer or fail"),
            ),
        }
    }
}

impl fmt::Display for AllTrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllTrusted::Leftmost => "leftmost",
            AllTrusted::Peer => "peer",
            AllTrusted::Fail => "fail",
        })
    }
}

/// A strategy ready to run: what it reads, and whom it trusts.
#[derive(Clone, Debug)]
pub(crate) struct Strategy {
    pub(crate) kind: Kind,
    pub(crate) trusted: TrustSet,
    /// The spec it was built from, as text, made once: explanations print it on every request.
    pub(crate) name: Box<str>,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    RightmostUntrusted(ListHeader),
    Rightmost(ListHeader),
    Hops(u16, ListHeader),
    Header(Single),
    Leftmost(ListHeader),
}

/// A strategy's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) client: Client,
    pub(crate) source: Source,
    pub(crate) trusted_hops: u16,
}

/// What every strategy gets to work with.
pub(crate) struct Ctx<'w, 't, T> {
    /// The effective peer (after the PROXY protocol), its source and the hops it already counts.
    pub(crate) peer: &'w Found,
    pub(crate) all_trusted: AllTrusted,
    pub(crate) warnings: &'w mut Warnings,
    pub(crate) trace: &'t mut T,
    /// Whether the other list header (Forwarded for an X-Forwarded-For walk, and the
    /// reverse) is present, when the walk learned it while reading its own.
    pub(crate) other_list: Option<bool>,
}

impl Strategy {
    #[inline(always)]
    pub(crate) fn run<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        self.run_on(headers, self.list(), ctx)
    }

    /// Runs the strategy; a list strategy reads `list` instead of its own header (used
    /// to check X-Forwarded-For and Forwarded against each other without a copy).
    #[inline(always)]
    pub(crate) fn run_on<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: Option<ListHeader>,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        let list = |own: ListHeader| list.unwrap_or(own);
        match &self.kind {
            Kind::RightmostUntrusted(own) => {
                rightmost_untrusted::resolve(headers, list(*own), &self.trusted, ctx)
            }
            Kind::Rightmost(own) => rightmost::resolve(headers, list(*own), &self.trusted, ctx),
            Kind::Hops(n, own) => hops::resolve(headers, list(*own), *n, &self.trusted, ctx),
            Kind::Header(single) => header::resolve(headers, single, &self.trusted, ctx),
            Kind::Leftmost(own) => leftmost::resolve(headers, list(*own), ctx),
        }
    }

    /// Whether `ip` may hand this strategy its evidence: a hop it trusts, or a relay
    /// in front of a header's writer.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
            || matches!(&self.kind, Kind::Header(single) if single.relays.contains(ip))
    }

    /// The list header this strategy reads, if it reads one.
    pub(crate) fn list(&self) -> Option<ListHeader> {
        match self.kind {
            Kind::RightmostUntrusted(l)
            | Kind::Rightmost(l)
            | Kind::Hops(_, l)
            | Kind::Leftmost(l) => Some(l),
            Kind::Header(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut names: Vec<String> = [
            "peer",
            "rightmost-untrusted",
            "rightmost",
            "hops:3",
            "header:x-real-ip",
            "leftmost",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        names.extend(Preset::ALL.iter().map(|p| p.name().to_string()));
        for name in names {
            let spec: StrategySpec = name.parse().unwrap();
            assert_eq!(spec.to_string(), name);
        }
        assert_eq!(
            "Header:CF-Connecting-IP"
                .parse::<StrategySpec>()
                .unwrap()
                .to_string(),
            "header:cf-connecting-ip"
        );
        for bad in [
            "hops:0",
            "hops:65",
            "hops:x",
            "header:",
            "header:bad name",
            "nope",
        ] {
            let err = bad.parse::<StrategySpec>().unwrap_err().to_string();
            assert!(
                err.contains("hint") || err.contains("header name"),
                "{bad}: {err}"
            );
        }
    }
}
