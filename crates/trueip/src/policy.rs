//! A policy: whom to trust, for what, and in which order to ask.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use crate::addr::{Node, Peer};
use crate::error::ConfigError;
use crate::headers::{FieldName, Headers, Lines, dashed, names, spells};
use crate::link::PrivateLink;
use crate::params::ParamName;
use crate::resolution::{ListHeader, Resolution, Source, Warnings, rate_limit_key};
use crate::strategy::{
    AllTrusted, Carrier, Ctx, Found, HOPS, Hops, Kind, Leftmost, Preset, Rightmost,
    RightmostUntrusted, Single, Strategy, StrategySpec, bad_hops,
};
use crate::trace::{Mark, NoTrace, Step, StrategyNames, Text, Tracer, Verdict};
use crate::trust::{Cidr, NamedSet, TrustSet};

#[cfg(feature = "lambda")]
use crate::event_kind::EventKind;

/// What the connection itself says, before any header is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The peer: a TCP peer's address, or [`Peer::Unix`] for a connection over a Unix
    /// socket (which has none).
    pub peer: Peer,
    /// The source address of a PROXY protocol header, if the connection began with one.
    pub proxy_source: Option<Node>,
    /// The private endpoint that header named, if any. It does not take part in the
    /// decision; it is evidence shown beside it.
    pub private_link: PrivateLink,
}

impl Connection {
    /// A connection from `peer` (an address, or [`Peer::Unix`]) without a PROXY header.
    pub fn from_peer(peer: impl Into<Peer>) -> Self {
        Connection { peer: peer.into(), proxy_source: None, private_link: PrivateLink::default() }
    }

    /// A connection over a Unix socket, without a PROXY header.
    pub fn unix() -> Self {
        Connection::from_peer(Peer::Unix)
    }

    /// The private endpoint, when `resolution` (this connection's) believed the PROXY
    /// header that named it: the id and the source come from the same header and the
    /// same sender, so the one is believed exactly when the other is.
    pub fn private_link_for(&self, resolution: &Resolution) -> Option<&PrivateLink> {
        (resolution.proxy_source.is_some() && !self.private_link.is_empty())
            .then_some(&self.private_link)
    }
}

impl From<IpAddr> for Node {
    fn from(ip: IpAddr) -> Self {
        Node::ip(crate::addr::normalize(ip))
    }
}

impl From<std::net::SocketAddr> for Node {
    fn from(addr: std::net::SocketAddr) -> Self {
        Node { ip: crate::addr::normalize(addr.ip()), port: Some(addr.port()) }
    }
}

/// A trust specification: a CIDR or address, a named set, a provider's published ranges,
/// or a host name whose addresses the caller resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustSpec {
    /// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
    Cidr(Cidr),
    /// `loopback`, `private`, `any`.
    Named(NamedSet),
    /// A provider whose ranges the caller loads: `cloudfront`, `cloudflare`, `fastly`,
    /// `azure-front-door`; `gcp-lb` is built in (Google Front End ranges).
    Provider(String),
    /// A host name, lower case: `lb.internal`, or `host:nginx` for a name without a dot
    /// (a container's service name), which would otherwise read as a misspelt named set
    /// or provider. This crate does no I/O: the caller resolves it and supplies its
    /// addresses ([`PolicyBuilder::host`]), as it loads a provider's ranges.
    Host(String),
    /// `unix`: connections over a Unix socket (nginx in front of `trueip serve` on the
    /// same host, or an app served on a socket). They have no address; no CIDR or named
    /// set includes them, so they are trusted only when this is said.
    Unix,
}

/// The longest host name (RFC 1035: 253 characters written without the final dot).
const MAX_HOST_NAME: usize = 253;

/// The prefix that makes any word a host name: `host:nginx`.
const HOST_PREFIX: &str = "host:";

/// Checks a host name (RFC 1123 labels: letters, digits and inner hyphens, 1 to 63 each),
/// lower-cases it and drops one final dot. A name whose last label is all digits is
/// refused: that is how an IPv4 address with a typo reads (`10.0.0.256`, `10.0.0`), and
/// resolvers would parse it as an address, not look it up.
fn host_name(text: &str, written: &str) -> Result<String, ConfigError> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let bad = |why: String| {
        Err(ConfigError::new(format!("invalid host name \"{written}\": {why}")).hint(
            "a host name is labels of letters, digits and inner hyphens joined by dots \
             (lb.internal); write a name without a dot as host:NAME",
        ))
    };
    if name.is_empty() || name.len() > MAX_HOST_NAME {
        return bad(format!("it must be 1 to {MAX_HOST_NAME} characters"));
    }
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return bad(format!("\"{label}\" is not a valid label"));
        }
    }
    if name.rsplit('.').next().is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ConfigError::new(format!("invalid address \"{written}\"")).hint(
            "an IPv4 address is four numbers from 0 to 255 (10.0.0.1), a CIDR adds /0 to /32",
        ));
    }
    Ok(name)
}

/// Provider names a trust spec may use.
pub const PROVIDERS: [&str; 5] =
    ["cloudfront", "cloudflare", "fastly", "azure-front-door", "gcp-lb"];

/// Google Front End and health-check ranges, fixed and documented by Google for the
/// external Application Load Balancer ("firewall rules for proxies").
const GCP_FRONT_ENDS: [&str; 2] = ["35.191.0.0/16", "130.211.0.0/22"];

impl FromStr for TrustSpec {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unix") || text.eq_ignore_ascii_case("unix:") {
            return Ok(TrustSpec::Unix);
        }
        if let Some(set) = NamedSet::from_name(text) {
            return Ok(TrustSpec::Named(set));
        }
        let lower = text.to_ascii_lowercase();
        if PROVIDERS.contains(&lower.as_str()) {
            return Ok(TrustSpec::Provider(lower));
        }
        if let Some(name) = lower.strip_prefix(HOST_PREFIX) {
            return host_name(name, text).map(TrustSpec::Host);
        }
        // An address or CIDR: anything with a colon or a slash, or only digits and dots.
        // Such text is never looked up as a name: `10.0.0.256` is a typo, not a host.
        if text.contains([':', '/']) || text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return text.parse().map(TrustSpec::Cidr);
        }
        if text.contains('.') {
            return host_name(text, text).map(TrustSpec::Host);
        }
        Err(
            ConfigError::new(format!("unknown trust spec \"{text}\"")).hint(format!(
                "use a CIDR (10.0.0.0/8), an address, a named set ({}), a provider ({}), unix \
                 (Unix-socket peers), a host name (lb.internal), or host:{text} for a name without a dot",
                NamedSet::ALL.map(NamedSet::name).join(", "),
                PROVIDERS.join(", ")
            )),
        )
    }
}

impl std::fmt::Display for TrustSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustSpec::Cidr(c) => write!(f, "{c}"),
            TrustSpec::Named(n) => f.write_str(n.name()),
            TrustSpec::Provider(p) => f.write_str(p),
            TrustSpec::Host(h) if h.contains('.') => f.write_str(h),
            TrustSpec::Host(h) => write!(f, "{HOST_PREFIX}{h}"),
            TrustSpec::Unix => f.write_str("unix"),
        }
    }
}

/// A header a trusted hop must carry, with this exact value, before any forwarding
/// header counts: CloudFront's custom origin header, Azure Front Door's `X-Azure-FDID`.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginSecret {
    name: FieldName,
    value: Vec<u8>,
}

impl OriginSecret {
    /// A secret header. The value must not be empty, and must be one a request can carry
    /// (the header rule of [`parse_header_field`](crate::headers::parse_header_field)):
    /// any other could never match, and every forwarding header would be ignored.
    pub fn new(name: &str, value: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let value = value.into();
        if value.is_empty() {
            return Err(ConfigError::new("empty origin secret value")
                .hint("set the value your CDN sends in this header"));
        }
        // The error names the fault, never the value: it is a secret.
        let (name, kept) = crate::headers::parse_header_field(name, &value).map_err(|e| {
            ConfigError::new(format!("invalid origin secret header: {}", e.fault()))
                .hint("the header name and value exactly as your CDN sends them")
        })?;
        if kept.len() != value.len() {
            return Err(ConfigError::new(
                "the origin secret value starts or ends with whitespace, which HTTP removes \
                 in transit: no request could match it",
            )
            .hint("remove the spaces around the value"));
        }
        Ok(OriginSecret { name, value })
    }

    /// The header name.
    pub fn name(&self) -> &FieldName {
        &self.name
    }

    fn matches<H: Headers + ?Sized>(&self, headers: &H) -> bool {
        let lines = Lines::read(headers, &self.name);
        match lines.as_slice() {
            [value] => constant_time_eq(crate::addr::trim(value), &self.value),
            _ => false,
        }
    }
}

/// Refuses an origin secret in a header that carries something else: one the policy reads
/// a client from, or one clients and proxies write (`Host`, `Cookie`, every row of the
/// client-IP table but the origin ids). Such a header is never only the CDN's, so no
/// honest request could match the secret, or every request that names the right client
/// would have to carry the secret as its address. Names are compared as apps read them:
/// WSGI, CGI and PHP read `X_Forwarded_For` as `X-Forwarded-For`.
fn check_secret_name(name: &FieldName, strategies: &[Strategy]) -> Result<(), ConfigError> {
    let same = |other: &FieldName| spells(&dashed(other.as_str()), name.as_str());
    let written_by_others =
        names::FORWARDING.iter().any(|row| row.claim != names::Claim::Origin && same(&row.name))
            || same(&FieldName::from_static("host"))
            || same(&names::COOKIE);
    let read_by_a_strategy = strategies.iter().any(|s| match &s.kind {
        Kind::Header(single) => match &single.carrier {
            Carrier::Header(h) => same(h),
            Carrier::Cookie(_) => same(&names::COOKIE),
            Carrier::Query(_) => false,
        },
        _ => false,
    });
    if read_by_a_strategy || written_by_others {
        return Err(ConfigError::new(format!(
            "the origin secret header {name} is not one only your CDN writes: clients and \
             proxies write it, or the policy reads a client address from it"
        ))
        .at("client_ip.origin_secret")
        .hint("use a custom header your CDN adds to every origin request, e.g. X-Origin-Verify"));
    }
    Ok(())
}

/// Refuses `header:NAME` for a header that never holds one bare address: the request's
/// own claims (`Host`, the client-IP table's rows that claim the scheme, host, port or
/// prefix, or the client's certificate), the hops it came through (`Via`), the message's own fields ([`names::MESSAGE`]), and `Forwarded`, whose entries are
/// `for=` pairs. No proxy writes a client address there, so such a strategy could only ever
/// take a value the client chose (`Host: 6.6.6.6` parses as an address).
fn check_address_header(name: &FieldName) -> Result<(), ConfigError> {
    // As apps read names: WSGI, CGI and PHP read `X_Forwarded_Host` as `X-Forwarded-Host`,
    // PHP `X.Forwarded.Host` too, and PHP behind lighttpd `X~Forwarded~Host`.
    let dashed = dashed(name.as_str());
    let claims_the_request = names::FORWARDING.iter().any(|row| {
        matches!(row.claim, names::Claim::Request | names::Claim::Identity | names::Claim::Hops)
            && row.name.as_str() == dashed
    });
    let no_address = ["host", "forwarded"].into_iter().chain(names::MESSAGE);
    if !claims_the_request && !no_address.into_iter().any(|n| n == dashed) {
        return Ok(());
    }
    let hint = match dashed.as_str() {
        "forwarded" => "read Forwarded as a list with `from = \"forwarded\"` (--from forwarded)",
        "cookie" => "read one cookie with `cookie:NAME`",
        _ => "name the header your proxy or CDN writes the client address into, e.g. X-Real-IP",
    };
    Err(ConfigError::new(format!(
        "header:{name} cannot carry a client address: no proxy writes one there, so it would \
         only ever hold a value the client chose"
    ))
    .hint(hint))
}

impl std::fmt::Debug for OriginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OriginSecret({}: <redacted>)", self.name)
    }
}

/// Compares without an early exit, so response timing does not leak how much of a guess
/// was right (an origin secret, a signature's tag); only the lengths may differ in time.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The strategy of a policy that names none ([`PolicyBuilder::build`] says why), else
/// none (the peer). The builder and the lint (`lint.rs`) both ask here, so the lint judges the
/// strategy that will run.
pub(crate) fn implied_strategy(trusts_proxies: bool) -> Option<StrategySpec> {
    trusts_proxies.then_some(StrategySpec::RightmostUntrusted)
}

/// Builds a [`Policy`]. Every name and range is checked in [`build`](Self::build), so a
/// built policy cannot fail on a request.
#[derive(Clone, Debug, Default)]
pub struct PolicyBuilder {
    trusted: Vec<TrustSpec>,
    strategies: Vec<(StrategySpec, Option<Vec<TrustSpec>>)>,
    from: ListHeader,
    all_trusted: AllTrusted,
    origin_secret: Option<OriginSecret>,
    proxy_protocol_from: Vec<TrustSpec>,
    ipv6_prefix: Option<u8>,
    providers: HashMap<String, TrustSet>,
    hosts: HashMap<String, TrustSet>,
    /// The name of the Lambda preset the policy is built from, and the kinds of event
    /// whose stand-in its trust rests on.
    #[cfg(feature = "lambda")]
    lambda_preset: Option<(&'static str, &'static [EventKind])>,
}

impl PolicyBuilder {
    /// Trusts these proxies (for every strategy that does not name its own trust).
    pub fn trust(mut self, spec: TrustSpec) -> Self {
        self.trusted.push(spec);
        self
    }

    /// Parses and adds a trust spec.
    pub fn trust_str(self, spec: &str) -> Result<Self, ConfigError> {
        Ok(self.trust(spec.parse()?))
    }

    /// Appends a strategy to the fallback chain, using the policy's trust.
    pub fn strategy(mut self, spec: StrategySpec) -> Self {
        self.strategies.push((spec, None));
        self
    }

    /// Appends a strategy with its own trust set (trust per hop: e.g. `header:CF-Connecting-IP`
    /// from `cloudflare` only, then `rightmost-untrusted` through your own proxies).
    pub fn strategy_trusting(mut self, spec: StrategySpec, trusted: Vec<TrustSpec>) -> Self {
        self.strategies.push((spec, Some(trusted)));
        self
    }

    /// Parses and appends a strategy.
    pub fn strategy_str(self, spec: &str) -> Result<Self, ConfigError> {
        Ok(self.strategy(spec.parse()?))
    }

    /// The list header the list strategies read (default `X-Forwarded-For`).
    pub fn from_list(mut self, list: ListHeader) -> Self {
        self.from = list;
        self
    }

    /// What "every entry is trusted" resolves to (default: the leftmost entry).
    pub fn all_trusted(mut self, choice: AllTrusted) -> Self {
        self.all_trusted = choice;
        self
    }

    /// Requires an origin secret before forwarding headers count.
    pub fn origin_secret(mut self, secret: OriginSecret) -> Self {
        self.origin_secret = Some(secret);
        self
    }

    /// Senders trusted to speak the PROXY protocol; their header's source replaces the peer.
    pub fn proxy_protocol_from(mut self, spec: TrustSpec) -> Self {
        self.proxy_protocol_from.push(spec);
        self
    }

    /// The prefix IPv6 rate-limit keys are cut to (default 64).
    pub fn ipv6_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_prefix = Some(prefix);
        self
    }

    /// Supplies a provider's ranges (loaded by the caller, e.g. with [`crate::providers`]).
    pub fn provider(mut self, name: &str, ranges: TrustSet) -> Self {
        self.providers.insert(name.to_ascii_lowercase(), ranges);
        self
    }

    /// Supplies the addresses a host name ([`TrustSpec::Host`]) resolved to, each trusted
    /// as a single address. The caller resolves; a name the policy uses must be supplied
    /// (an empty set is allowed, and trusts no one).
    pub fn host(mut self, name: &str, addrs: TrustSet) -> Self {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.hosts.insert(name, addrs);
        self
    }

    /// Marks the policy as the Lambda preset `name`'s: it decides from the stand-in of a
    /// Lambda event of one of `kinds` only (see [`Policy::resolve`]).
    #[cfg(feature = "lambda")]
    pub(crate) fn lambda_preset(mut self, name: &'static str, kinds: &'static [EventKind]) -> Self {
        self.lambda_preset = Some((name, kinds));
        self
    }

    fn resolve_set(&self, specs: &[TrustSpec]) -> Result<TrustSet, ConfigError> {
        let mut cidrs = Vec::new();
        let mut unix = false;
        for spec in specs {
            match spec {
                TrustSpec::Cidr(c) => cidrs.push(*c),
                TrustSpec::Named(n) => cidrs.extend(n.cidrs()),
                TrustSpec::Provider(p) => cidrs.extend(self.provider_set(p)?.cidrs()),
                TrustSpec::Host(h) => match self.hosts.get(h) {
                    Some(set) => cidrs.extend(set.cidrs()),
                    None => {
                        return Err(ConfigError::new(format!("host name \"{h}\" was not resolved"))
                            .hint("the caller resolves host names and supplies their addresses (PolicyBuilder::host); `trueip serve` and `trueip explain` do"));
                    }
                },
                TrustSpec::Unix => unix = true,
            }
        }
        Ok(TrustSet::from_cidrs(cidrs).with_unix(unix))
    }

    fn provider_set(&self, name: &str) -> Result<TrustSet, ConfigError> {
        if let Some(set) = self.providers.get(name) {
            return Ok(set.clone());
        }
        if name == "gcp-lb" {
            return Ok(GCP_FRONT_ENDS.iter().filter_map(|c| c.parse().ok()).collect());
        }
        Err(ConfigError::new(format!("no ranges loaded for provider \"{name}\"")).hint(format!(
            "point to the provider's published list: `--trust {name}=FILE` or [client_ip.providers] {name} = \"FILE\""
        )))
    }

    /// Checks everything and builds the policy.
    ///
    /// With trusted proxies but no strategy, the strategy is `rightmost-untrusted`:
    /// listing proxies means their forwarding headers should count, and that is the
    /// strategy that is safe whenever their addresses are known. Name `peer` explicitly
    /// to trust proxies for the PROXY protocol only.
    pub fn build(mut self) -> Result<Policy, ConfigError> {
        if self.strategies.is_empty()
            && let Some(spec) = implied_strategy(!self.trusted.is_empty())
        {
            self.strategies.push((spec, None));
        }
        let base = self.resolve_set(&self.trusted).map_err(|e| e.at("client_ip.trusted"))?;
        let mut strategies = Vec::new();
        for (i, (spec, own)) in self.strategies.iter().enumerate() {
            let trusted = match own {
                Some(specs) => self
                    .resolve_set(specs)
                    .map_err(|e| e.at(format!("client_ip.strategy[{i}].trusted")))?,
                None => base.clone(),
            };
            self.expand(spec, trusted, &base, &mut strategies)
                .map_err(|e| e.at(format!("client_ip.strategy[{i}]")))?;
        }
        if strategies.len() > usize::from(u8::MAX) {
            return Err(ConfigError::new("too many strategies")
                .hint("a fallback chain of a few strategies is plenty"));
        }
        let ipv6_prefix = self.ipv6_prefix.unwrap_or(64);
        if ipv6_prefix > 128 {
            return Err(ConfigError::new(format!("invalid ipv6_prefix {ipv6_prefix}"))
                .hint("use 0 to 128; /64 is one subscriber"));
        }
        if let Some(secret) = &self.origin_secret {
            check_secret_name(secret.name(), &strategies)?;
        }
        Ok(Policy {
            strategies,
            proxy_protocol_from: self
                .resolve_set(&self.proxy_protocol_from)
                .map_err(|e| e.at("client_ip.proxy_protocol_from"))?,
            all_trusted: self.all_trusted,
            origin_secret: self.origin_secret,
            ipv6_prefix,
            from: self.from,
            withheld: std::sync::OnceLock::new(),
            #[cfg(feature = "lambda")]
            event_only: self.lambda_preset.map(|(preset, kinds)| {
                Box::new(EventOnly {
                    preset,
                    kinds,
                    untrusted: Policy { ipv6_prefix, from: self.from, ..Policy::default() },
                })
            }),
        })
    }

    fn expand(
        &self,
        spec: &StrategySpec,
        trusted: TrustSet,
        base: &TrustSet,
        out: &mut Vec<Strategy>,
    ) -> Result<(), ConfigError> {
        let from = self.from;
        let with =
            |kind: Kind, list: ListHeader| Strategy { kind, list, name: spec.to_string().into() };
        // A header strategy's writers are who may *write* the header; the relays are the
        // trusted proxies that may stand between that writer and the app, recording the
        // hop before them in the policy's list header. A plain `header:NAME` (and `fly`)
        // is written by the hops the strategy trusts and relayed by the policy's proxies;
        // a provider preset's header is written only from the provider's ranges and
        // relayed by the proxies the preset trusts.
        let header = |name: FieldName, writers: TrustSet, relays: &TrustSet| {
            with(Kind::Header(Single::new(name, writers, relays.clone())), from)
        };
        let walk_xff = |trusted: TrustSet| {
            with(
                Kind::RightmostUntrusted(RightmostUntrusted { trusted }),
                ListHeader::XForwardedFor,
            )
        };
        let needs_trust = |what: &str| -> Result<(), ConfigError> {
            if trusted.is_empty() {
                return Err(ConfigError::new(format!("strategy {spec} trusts no one, so it would never read {what}"))
                    .hint("add the proxies in front of the app: --trust 10.0.0.0/8, or --trust any if only the proxy can reach it"));
            }
            Ok(())
        };
        match spec {
            StrategySpec::Peer => {}
            StrategySpec::RightmostUntrusted => {
                needs_trust("a forwarding header")?;
                out.push(with(Kind::RightmostUntrusted(RightmostUntrusted { trusted }), from));
            }
            StrategySpec::Rightmost => {
                needs_trust("a forwarding header")?;
                out.push(with(Kind::Rightmost(Rightmost { trusted }), from));
            }
            StrategySpec::Hops(n) => {
                if !HOPS.contains(n) {
                    return Err(bad_hops(&spec.to_string()));
                }
                needs_trust("a forwarding header")?;
                out.push(with(Kind::Hops(Hops { hops: *n, trusted }), from));
            }
            StrategySpec::Header(name) => {
                check_address_header(name)?;
                needs_trust(name.as_str())?;
                out.push(header(name.clone(), trusted, base));
            }
            // Written by the hops the strategy trusts and relayed by the policy's proxies,
            // as a plain `header:NAME`.
            StrategySpec::Query(name) | StrategySpec::Cookie(name) => {
                let (carrier, what) = match spec {
                    StrategySpec::Query(_) => (Carrier::Query(name.clone()), "the query argument"),
                    _ => (Carrier::Cookie(name.clone()), "the cookie"),
                };
                needs_trust(&format!("{what} {name}"))?;
                let kind = Kind::Header(Single::param(carrier, trusted, base.clone()));
                out.push(with(kind, from));
            }
            StrategySpec::Leftmost => out.push(with(Kind::Leftmost(Leftmost { trusted }), from)),
            StrategySpec::Preset(preset) => {
                let provider = |name: &str| -> Result<TrustSet, ConfigError> {
                    Ok(self.provider_set(name)?.union(&trusted))
                };
                let writers = |name: &str| self.provider_set(name);
                match preset {
                    Preset::Cloudfront => {
                        out.push(header(
                            names::CLOUDFRONT_VIEWER_ADDRESS,
                            writers("cloudfront")?,
                            &trusted,
                        ));
                        out.push(walk_xff(provider("cloudfront")?));
                    }
                    Preset::Cloudflare => {
                        out.push(header(names::CF_CONNECTING_IP, writers("cloudflare")?, &trusted))
                    }
                    Preset::Fastly => {
                        out.push(header(names::FASTLY_CLIENT_IP, writers("fastly")?, &trusted))
                    }
                    Preset::AzureFrontDoor => out.push(header(
                        names::X_AZURE_CLIENTIP,
                        writers("azure-front-door")?,
                        &trusted,
                    )),
                    Preset::GcpLb => out.push(with(
                        Kind::Hops(Hops { hops: 2, trusted: provider("gcp-lb")? }),
                        ListHeader::XForwardedFor,
                    )),
                    Preset::Fly => {
                        let writers = if trusted.is_empty() {
                            TrustSet::from_cidrs(NamedSet::Private.cidrs())
                        } else {
                            trusted
                        };
                        out.push(header(names::FLY_CLIENT_IP, writers, base));
                    }
                    Preset::AwsAlb => {
                        needs_trust("X-Forwarded-For (give the ALB's VPC ranges)")?;
                        out.push(walk_xff(trusted));
                    }
                }
            }
        }
        Ok(())
    }
}

impl StrategyNames for Policy {
    fn strategy_text(&self, index: u8) -> Option<&str> {
        self.strategies.get(usize::from(index)).map(|s| &*s.name)
    }
}

/// A validated policy. Cheap to share (`Arc<Policy>`); `resolve` takes `&self`.
#[derive(Clone, Debug)]
pub struct Policy {
    strategies: Vec<Strategy>,
    proxy_protocol_from: TrustSet,
    all_trusted: AllTrusted,
    origin_secret: Option<OriginSecret>,
    ipv6_prefix: u8,
    from: ListHeader,
    /// Set for a policy built from a Lambda preset.
    #[cfg(feature = "lambda")]
    event_only: Option<Box<EventOnly>>,
    /// [`ForwardingSet::for_policy`](crate::headers::ForwardingSet::for_policy) of this
    /// policy, made the first time a middleware asks ([`withheld_set`](Self::withheld_set)):
    /// a policy that only decides never builds it.
    withheld: std::sync::OnceLock<crate::headers::ForwardingSet>,
}

/// What a policy built from a Lambda preset decides a request without an event of its
/// chain with.
///
/// A preset believes what only the peer stand-in of its chain's event makes safe: the ALB
/// one, the last `X-Forwarded-For` element, whoever the peer is, which holds only when an
/// ALB appended it. Over a server's connection (the same code run outside Lambda, a test
/// server, `axum::serve`) that element is the client's own text, and so it is in an event
/// of another kind: a Function URL keeps only the first `X-Forwarded-For` value the client
/// sent, and API Gateway appends after whatever the client wrote. Such a request is
/// decided as if no proxy were trusted: the connection's peer, or the address the event's
/// front end saw, is the client.
#[cfg(feature = "lambda")]
#[derive(Clone, Debug)]
struct EventOnly {
    /// The preset's name.
    preset: &'static str,
    /// The kinds of event whose stand-in the preset's trust rests on
    /// (`crate::lambda::Preset::event_kinds`).
    kinds: &'static [EventKind],
    /// Trusts no one: the peer is the client, and a forwarding header the request
    /// carries is flagged `header_from_untrusted_peer`.
    untrusted: Policy,
}

/// Whether the line naming a preset decided without an event has been logged.
#[cfg(feature = "lambda")]
static WARNED_NO_EVENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "lambda")]
impl EventOnly {
    /// Whether the preset decides an event of `kind` as it reads.
    fn reads(&self, kind: EventKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The decision for a request without an event of the preset's chain: one that came
    /// over a connection (`event` `None`), or an event of another kind, whose stand-in is
    /// `conn`'s peer. The first one in the process logs a warning naming the misuse and
    /// the fix.
    #[cold]
    #[inline(never)]
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        conn: &Connection,
        headers: &'h H,
        trace: &mut T,
        event: Option<EventKind>,
    ) -> Resolution {
        if !WARNED_NO_EVENT.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!("{}", without_event(self.preset));
        }
        trace.step(|| match event {
            None => Mark::new(
                "lambda-preset",
                self.preset,
                Verdict::Ignored,
                "a Lambda preset decides from an event's peer stand-in only, and this request came over a connection: decided as if no proxy were trusted",
            ),
            Some(kind) => Mark::new(
                "lambda-preset",
                self.preset,
                Verdict::Ignored,
                format!(
                    "this preset's trust rests on the stand-in of its own chain's events, and this is a {} event: decided as if no proxy were trusted, the address its front end saw the client",
                    kind.name()
                ),
            ),
        });
        let mut resolution = self.untrusted.run(conn, headers, trace);
        resolution.warnings.insert(Warnings::NO_LAMBDA_EVENT);
        resolution
    }
}

/// The headers of a Lambda Function URL event, as a policy reads them: without
/// `X-Forwarded-For`.
///
/// A Function URL does not append to `X-Forwarded-For`: it keeps only the first value
/// the request carried, the leftmost, which is whatever the client wrote (reported by
/// <https://speedrun.nobackspacecrew.com/blog/2026/03/06/obtaining-caller-ip-address-with-lambda-furls.html>,
/// not verified against AWS). So behind CloudFront, whose edge is the event's `sourceIp`,
/// a walk trusting CloudFront would reach the client's own text, left of everything
/// CloudFront appended. No policy may read it: the walk finds no list, and the client is
/// what a header the trusted edge overwrites says (`CloudFront-Viewer-Address`, when the
/// origin request policy forwards it), else the edge itself.
#[cfg(feature = "lambda")]
struct FunctionUrl<'h, H: ?Sized>(&'h H);

/// Headers read without `X-Forwarded-For`: a Function URL event's ([`FunctionUrl`]), and
/// an API Gateway event's whose header is API Gateway's own record
/// (`crate::event_kind::FrontEndRecord`) when no proxy is trusted.
#[cfg(feature = "lambda")]
struct WithoutForwardedFor<'h, H: ?Sized>(&'h H);

/// Whether a Function URL decision fell back on a trusted edge has been logged.
#[cfg(feature = "lambda")]
static WARNED_FUNCTION_URL: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "lambda")]
const FUNCTION_URL_XFF: &str = "a Lambda Function URL keeps only the first X-Forwarded-For value it received, which the client wrote: not read";

#[cfg(feature = "lambda")]
impl<'h, H: Headers + ?Sized> FunctionUrl<'h, H> {
    fn decide<T: for<'x> Tracer<'x>>(
        &self,
        policy: &Policy,
        stand_in: &Connection,
        trace: &mut T,
    ) -> Resolution {
        let present = || {
            let mut present = false;
            self.0.for_each_value(&names::X_FORWARDED_FOR, |_| present = true);
            present
        };
        // Read only for a trace, or for the one log line: a lookup the usual decision
        // does without.
        if T::RECORDS && present() {
            trace.step(|| {
                let lines = Lines::read(self.0, &names::X_FORWARDED_FOR);
                let text: Vec<_> =
                    lines.as_slice().iter().map(|l| String::from_utf8_lossy(l)).collect();
                Mark::new("x-forwarded-for", text.join(", "), Verdict::Ignored, FUNCTION_URL_XFF)
            });
        }
        let headers = WithoutForwardedFor(self.0);
        let mut resolution = policy.decide_event(EventKind::FunctionUrl, stand_in, &headers, trace);
        if !policy.came_through_trusted_hop(&resolution) {
            // Every client-IP header is withheld from the app already: the client wrote it.
            return resolution;
        }
        // The URL writes the header itself when the client sent none, so a trusted hop
        // always hands one over: flagged without looking.
        resolution.warnings.insert(Warnings::XFF_NOT_KEPT);
        if resolution.source == Source::Peer
            && !WARNED_FUNCTION_URL.load(std::sync::atomic::Ordering::Relaxed)
            && present()
            && !WARNED_FUNCTION_URL.swap(true, std::sync::atomic::Ordering::Relaxed)
            && let Some(line) = edge_is_client(&resolution)
        {
            log::warn!("{line}");
        }
        resolution
    }
}

#[cfg(feature = "lambda")]
impl<H: Headers + ?Sized> Headers for WithoutForwardedFor<'_, H> {
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8])) {
        if *name != names::X_FORWARDED_FOR {
            self.0.for_each_value(name, f);
        }
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        f: impl FnMut(&'a [u8]),
    ) -> bool {
        if *name == names::X_FORWARDED_FOR {
            let mut present = false;
            self.0.for_each_value(also, |_| present = true);
            present
        } else if *also == names::X_FORWARDED_FOR {
            self.0.for_each_value(name, f);
            false
        } else {
            self.0.for_each_value_noting(name, also, f)
        }
    }

    fn query(&self) -> Option<&[u8]> {
        self.0.query()
    }

    fn for_each_query_value<'a>(
        &'a self,
        name: &crate::params::ParamName,
        f: impl FnMut(&'a [u8]),
    ) -> crate::params::QueryForm {
        self.0.for_each_query_value(name, f)
    }
}

/// The line for a Function URL event whose client is the trusted hop in front of it
/// (`trueip::lambda::edge_is_client`, where the doc is). Here, beside the decision that
/// logs it, so the policy does not import the Lambda module.
#[cfg(feature = "lambda")]
pub(crate) fn edge_is_client(resolution: &Resolution) -> Option<String> {
    (resolution.warnings.contains(Warnings::XFF_NOT_KEPT) && resolution.source == Source::Peer)
        .then(|| {
            format!(
                "trueip: a Lambda Function URL event came from {}, a proxy the policy trusts, \
                 and a Function URL keeps only the first X-Forwarded-For value, which the \
                 client wrote: it is not read, and the client is that proxy's address. Behind \
                 CloudFront, forward CloudFront-Viewer-Address in the origin request policy",
                resolution.client
            )
        })
}

/// The line logged the first time a policy from the Lambda preset `name` decides a request
/// that came without a Lambda event: the misuse and the fix
/// (`trueip::lambda::Preset::without_event`).
#[cfg(feature = "lambda")]
pub(crate) fn without_event(name: &str) -> String {
    format!(
        "trueip: Policy.lambda_preset({name:?}) (in Rust, the policy of \
         trueip::lambda::Preset {name:?}) decides from AWS Lambda events only, of its own \
         chain (alb: ALB target events), and a request came without one: it is decided as if no \
         proxy were trusted, the peer (or the event's sourceIp) is the client and its \
         client-IP headers are withheld. For an API Gateway or Function URL event, use the \
         api-gateway preset. Outside Lambda, use a Policy that trusts \
         your own proxies (Policy(trust=[...], strategy=...); in Rust, Policy::builder()); \
         on Lambda, decide from the event: run the app under a WSGI adapter that keeps the \
         event (serverless-wsgi, apig-wsgi, Zappa, aws-wsgi) or Mangum; in Rust, call \
         trueip::lambda::resolve_event or resolve_request, or use ClientIpLayer under \
         lambda_http::run"
    )
}

impl Default for Policy {
    /// The safe default: trust no one; the peer is the client.
    fn default() -> Self {
        Policy {
            strategies: Vec::new(),
            proxy_protocol_from: TrustSet::empty(),
            all_trusted: AllTrusted::default(),
            origin_secret: None,
            ipv6_prefix: 64,
            from: ListHeader::XForwardedFor,
            #[cfg(feature = "lambda")]
            event_only: None,
            withheld: std::sync::OnceLock::new(),
        }
    }
}

impl Policy {
    /// The prefix IPv6 rate-limit keys are cut to.
    #[cfg_attr(not(feature = "provenance"), allow(dead_code, reason = "read by provenance only"))]
    pub(crate) fn v6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    /// Starts a policy. With nothing added, it trusts no one.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// The name of the Lambda preset this policy was built from, if any
    /// (`Policy::lambda_preset` in `crate::lambda` gives the preset).
    #[cfg(feature = "lambda")]
    pub(crate) fn lambda_preset_name(&self) -> Option<&'static str> {
        self.event_only.as_ref().map(|only| only.preset)
    }

    /// Who may send a PROXY protocol header.
    pub fn proxy_protocol_from(&self) -> &TrustSet {
        &self.proxy_protocol_from
    }

    /// The origin secret, if one is required.
    pub fn origin_secret(&self) -> Option<&OriginSecret> {
        self.origin_secret.as_ref()
    }

    /// The list header list strategies read by default.
    pub fn list_header(&self) -> ListHeader {
        self.from
    }

    /// The name of the `index`-th strategy of the expanded chain.
    pub fn strategy_name(&self, index: u8) -> Option<String> {
        self.strategy_text(index).map(str::to_owned)
    }

    /// The header a single-header strategy reads (for [`Source::Header`] results:
    /// `policy.strategy_header(resolution.strategy?)`).
    pub fn strategy_header(&self, index: u8) -> Option<&FieldName> {
        match &self.strategies.get(usize::from(index))?.kind {
            Kind::Header(Single { carrier: Carrier::Header(name), .. }) => Some(name),
            _ => None,
        }
    }

    /// The query argument or cookie a `query:NAME` or `cookie:NAME` strategy reads (for
    /// [`Source::Query`] and [`Source::Cookie`] results).
    pub fn strategy_param(&self, index: u8) -> Option<&ParamName> {
        match &self.strategies.get(usize::from(index))?.kind {
            Kind::Header(Single {
                carrier: Carrier::Query(name) | Carrier::Cookie(name), ..
            }) => Some(name),
            _ => None,
        }
    }

    /// The query arguments the policy's `query:NAME` strategies read, each once: what
    /// `trueip serve` removes before forwarding when told to (`strip_client_source`).
    pub fn query_names(&self) -> Vec<&ParamName> {
        self.param_names(|carrier| match carrier {
            Carrier::Query(name) => Some(name),
            _ => None,
        })
    }

    /// The cookies the policy's `cookie:NAME` strategies read, each once.
    pub fn cookie_names(&self) -> Vec<&ParamName> {
        self.param_names(|carrier| match carrier {
            Carrier::Cookie(name) => Some(name),
            _ => None,
        })
    }

    fn param_names<'p>(
        &'p self,
        pick: impl Fn(&'p Carrier) -> Option<&'p ParamName>,
    ) -> Vec<&'p ParamName> {
        let mut out: Vec<&ParamName> = Vec::new();
        for strategy in &self.strategies {
            if let Kind::Header(single) = &strategy.kind
                && let Some(name) = pick(&single.carrier)
                && !out.contains(&name)
            {
                out.push(name);
            }
        }
        out
    }

    /// How a resolution's source reads, with the header name filled in.
    pub fn describe_source(&self, resolution: &Resolution) -> String {
        self.source_text(resolution).to_string(self)
    }

    /// [`describe_source`](Self::describe_source), not yet printed.
    pub(crate) fn source_text(&self, resolution: &Resolution) -> Text {
        match (resolution.source, resolution.strategy.and_then(|i| self.strategy_header(i))) {
            (Source::Header, Some(name)) => Text::Owned(name.to_string()),
            (Source::Query | Source::Cookie, _) => {
                match resolution.strategy.and_then(|i| self.strategy_param(i)) {
                    Some(name) => Text::Owned(format!("{}:{name}", resolution.source)),
                    None => Text::Static("parameter"),
                }
            }
            (Source::List { header, from_right }, _) => Text::Entry(header, from_right),
            (Source::Peer, _) => Text::Static("peer"),
            (Source::ProxyProtocol, _) => Text::Static("proxy-protocol"),
            (Source::Header, None) => Text::Static("header"),
        }
    }

    /// Whether the request's forwarding headers came through a hop this policy trusts:
    /// the effective peer (the PROXY source of a trusted sender, else the TCP peer) is
    /// trusted, the origin secret (when one is configured) was right, and no client-IP
    /// header was found to come from a hop not trusted to write it. A trusted peer without
    /// the secret, or a trusted relay carrying a vendor header that someone around the
    /// vendor wrote, is no better than a stranger; nor is any peer of a request a Lambda
    /// preset's policy decided without an event (`no_lambda_event`).
    ///
    /// The one rule for what a request's client-IP headers are worth downstream: when it
    /// is false, every header of [`names::FORWARDING`](crate::headers::names::FORWARDING)
    /// the request carries was written by the client, and `trueip serve` and the Python
    /// middlewares remove them before the app sees the request.
    pub fn came_through_trusted_hop(&self, resolution: &Resolution) -> bool {
        self.trusts_peer(resolution.effective_peer())
            && !resolution.warnings.contains(Warnings::ORIGIN_SECRET)
            && !resolution.warnings.contains(Warnings::UNVOUCHED_HEADER)
            && !resolution.warnings.contains(Warnings::NO_LAMBDA_EVENT)
    }

    /// The hop a request decided as `resolution` came through, as
    /// [`ForwardingSet::withheld`](crate::headers::ForwardingSet::withheld) asks it:
    /// [`Hop::Trusted`](crate::headers::Hop::Trusted) by this policy, decided by the
    /// resolution's strategy, when [`came_through_trusted_hop`](Self::came_through_trusted_hop),
    /// else [`Hop::Untrusted`](crate::headers::Hop::Untrusted). A trusted hop that did not
    /// keep `X-Forwarded-For` ([`Warnings::XFF_NOT_KEPT`]) is one whose `X-Forwarded-For`
    /// is withheld ([`Hop::trusted`](crate::headers::Hop::trusted)).
    pub fn hop(&self, resolution: &Resolution) -> crate::headers::Hop<'_> {
        if self.came_through_trusted_hop(resolution) {
            crate::headers::Hop::trusted(self, resolution)
        } else {
            crate::headers::Hop::Untrusted
        }
    }

    /// The client-IP headers an app behind this policy must not see, and the rule for
    /// when ([`ForwardingSet::withheld`](crate::headers::ForwardingSet::withheld)):
    /// [`ForwardingSet::for_policy`](crate::headers::ForwardingSet::for_policy), built
    /// once per policy, so that a middleware holding the policy reaches it without a
    /// second shared handle to clone per request.
    pub fn withheld_set(&self) -> &crate::headers::ForwardingSet {
        self.withheld.get_or_init(|| crate::headers::ForwardingSet::for_policy(self))
    }

    /// Whether this policy read a client address from the header `name` for a request its
    /// strategy `decided` decided ([`Resolution::strategy`]): the list header each strategy
    /// reads (`X-Forwarded-For`, or `Forwarded` with `from = "forwarded"`; `aws-alb`,
    /// `gcp-lb` and `cloudfront` walk `X-Forwarded-For` whatever `from` says), and the
    /// header of the `header:NAME` strategy that decided. Not another strategy's header:
    /// that strategy was not reached, refused the header (several lines, a peer it does not
    /// trust) or found it absent, so nothing vouched for it. Not the origin secret: it names
    /// no address. These are the client-IP headers a trusted hop may pass to the app; the
    /// app has no reason to read any other, and a hop that relays one the client sent
    /// relays a forgery.
    pub fn reads_client_from(&self, name: &FieldName, decided: Option<u8>) -> bool {
        self.strategies.iter().any(|s| s.list.field_ref() == name)
            || decided.and_then(|i| self.strategies.get(usize::from(i))).is_some_and(|s| {
                match &s.kind {
                    Kind::Header(Single { carrier: Carrier::Header(read), .. }) => read == name,
                    _ => false,
                }
            })
    }

    /// Every header `resolve` may read, lower case, each once: both list headers,
    /// `X-Real-IP` (flagged when sent to a policy that trusts no one), each header
    /// strategy's header, `Cookie` when a `cookie:NAME` strategy reads it, and the origin
    /// secret's. A caller that has to copy headers out of another representation (a Python
    /// dict, a WSGI environ) copies just these (and the query string, for `query:NAME`):
    /// `resolve` over them decides exactly as over the whole request.
    pub fn header_names(&self) -> Vec<FieldName> {
        let mut out = vec![names::X_FORWARDED_FOR, names::FORWARDED, names::X_REAL_IP];
        let singles = self.strategies.iter().filter_map(|s| match &s.kind {
            Kind::Header(single) => match &single.carrier {
                Carrier::Header(name) => Some(name.clone()),
                Carrier::Cookie(_) => Some(names::COOKIE),
                Carrier::Query(_) => None,
            },
            _ => None,
        });
        for name in singles.chain(self.origin_secret.as_ref().map(|s| s.name().clone())) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// The headers this policy reads a client address from, or an origin secret from,
    /// beyond [`names::FORWARDING`]: each `header:NAME` strategy's header and the origin
    /// secret's. They are client-IP headers as much as the table's (a client that names
    /// its own address in `X-Client-Addr` forges the very header the policy believes), so
    /// [`ForwardingSet::for_policy`](crate::headers::ForwardingSet::for_policy) adds them.
    /// A `cookie:NAME` strategy's `Cookie` is not one: it carries everything else too.
    pub fn client_ip_headers(&self) -> impl Iterator<Item = &FieldName> {
        self.strategies
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Header(single) => match &single.carrier {
                    Carrier::Header(name) => Some(name),
                    Carrier::Cookie(_) | Carrier::Query(_) => None,
                },
                _ => None,
            })
            .chain(self.origin_secret.as_ref().map(OriginSecret::name))
    }

    /// Whether `ip` is trusted by any strategy (and so may send forwarding headers).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusts_peer(Peer::from(ip))
    }

    /// Whether `peer` is trusted by any strategy: an address as [`trusts`](Self::trusts)
    /// says, a Unix-socket peer when a strategy's trust names `unix`.
    pub fn trusts_peer(&self, peer: Peer) -> bool {
        self.strategies.iter().any(|s| s.trusts(peer))
    }

    /// Decides who the client is. Allocates nothing.
    ///
    /// A policy built from a Lambda preset ([`crate::lambda::Preset`], feature `lambda`)
    /// decides here as if no proxy were trusted, flagged `no_lambda_event`: `conn` is a
    /// server's connection, not the address an event says AWS's front end saw, which is
    /// what the preset's trust rests on. Decide with such a policy through
    /// [`crate::lambda::resolve_event`] (or `resolve_request`, or
    /// [`ClientIpLayer`](crate::tower::ClientIpLayer) under `lambda_http::run`).
    pub fn resolve<H: Headers + ?Sized>(&self, conn: &Connection, headers: &H) -> Resolution {
        #[cfg(feature = "lambda")]
        if let Some(only) = &self.event_only {
            return only.decide(conn, headers, &mut NoTrace, None);
        }
        self.run(conn, headers, &mut NoTrace)
    }

    /// [`resolve`](Self::resolve) for the address a Lambda event of `kind` names as the
    /// peer: the one entry where a preset's policy decides as it reads, for the kinds of
    /// event of its chain (`EventOnly::reads`). Called only with an event's own kind and
    /// stand-in: by `crate::lambda`, and for a request lambda_http made from an event by
    /// `ClientIpLayer` (`Found::StandIn`) and `provenance::Signed::decide_stand_in`.
    #[cfg(feature = "lambda")]
    pub(crate) fn resolve_stand_in<H: Headers + ?Sized>(
        &self,
        kind: EventKind,
        stand_in: &Connection,
        headers: &H,
    ) -> Resolution {
        self.decide_stand_in(kind, stand_in, headers, &mut NoTrace)
    }

    /// The one rule for a Lambda event, which [`resolve_stand_in`](Self::resolve_stand_in)
    /// and [`explain_stand_in_marks`](Self::explain_stand_in_marks) share: a Function
    /// URL's `X-Forwarded-For` is never read ([`FunctionUrl`]); an API Gateway event's,
    /// when API Gateway wrote all of it (`crate::event_kind::FrontEndRecord`), is read as absent
    /// by a policy that does not trust the stand-in; a preset's policy decides an event of a
    /// kind outside its chain as if no proxy were trusted (`EventOnly::reads`).
    #[cfg(feature = "lambda")]
    fn decide_stand_in<H: Headers + ?Sized, T: for<'h> Tracer<'h>>(
        &self,
        kind: EventKind,
        stand_in: &Connection,
        headers: &H,
        trace: &mut T,
    ) -> Resolution {
        if kind == EventKind::FunctionUrl {
            return FunctionUrl(headers).decide(self, stand_in, trace);
        }
        // API Gateway writes `X-Forwarded-For` itself: with nothing of the client's in it,
        // it is no header a stranger sent, and flagging it as one would flag every
        // ordinary event of a policy that trusts no proxy. Read without it only where no
        // strategy trusts the stand-in (a walk from a trusted one reads it), so the address
        // decided is the same: the stand-in, which is also the header's first element, all
        // that `leftmost` (which reads it from anyone) would take.
        if let Peer::Ip(peer) = stand_in.peer
            && !self.trusts_stand_in(kind, stand_in.peer)
            && let Some(record) = crate::event_kind::FrontEndRecord::of(kind, peer, headers)
        {
            trace.step(|| {
                let lines = Lines::read(headers, &names::X_FORWARDED_FOR);
                Mark::new("x-forwarded-for", lines.joined(", "), Verdict::Ignored, record.why())
            });
            return self.decide_event(kind, stand_in, &WithoutForwardedFor(headers), trace);
        }
        self.decide_event(kind, stand_in, headers, trace)
    }

    /// Whether the policy that decides an event of `kind` (this one, or for a preset
    /// outside its chain one that trusts no one: `EventOnly`) trusts its stand-in `peer`.
    #[cfg(feature = "lambda")]
    fn trusts_stand_in(&self, kind: EventKind, peer: Peer) -> bool {
        match &self.event_only {
            Some(only) if !only.reads(kind) => false,
            _ => self.trusts_peer(peer),
        }
    }

    /// [`decide_stand_in`](Self::decide_stand_in) over headers as they are to be read.
    #[cfg(feature = "lambda")]
    fn decide_event<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        kind: EventKind,
        stand_in: &Connection,
        headers: &'h H,
        trace: &mut T,
    ) -> Resolution {
        if let Some(only) = &self.event_only
            && !only.reads(kind)
        {
            return only.decide(stand_in, headers, trace, Some(kind));
        }
        self.run(stand_in, headers, trace)
    }

    /// Decides, and records every step.
    pub fn explain<H: Headers + ?Sized>(
        &self,
        conn: &Connection,
        headers: &H,
    ) -> (Resolution, Vec<Step>) {
        let (resolution, marks) = self.explain_marks(conn, headers);
        let steps = marks.iter().map(|mark| mark.to_step(self)).collect();
        (resolution, steps)
    }

    /// Decides, and records every step as marks (printed only when read).
    pub(crate) fn explain_marks<H: Headers + ?Sized>(
        &self,
        conn: &Connection,
        headers: &H,
    ) -> (Resolution, Vec<Mark>) {
        let mut marks = Vec::with_capacity(8);
        #[cfg(feature = "lambda")]
        if let Some(only) = &self.event_only {
            let resolution = only.decide(conn, headers, &mut marks, None);
            return (resolution, marks);
        }
        let resolution = self.run(conn, headers, &mut marks);
        (resolution, marks)
    }

    /// [`explain_marks`](Self::explain_marks) for a Lambda event's stand-in, as
    /// [`resolve_stand_in`](Self::resolve_stand_in).
    #[cfg(feature = "lambda")]
    pub(crate) fn explain_stand_in_marks<H: Headers + ?Sized>(
        &self,
        kind: EventKind,
        stand_in: &Connection,
        headers: &H,
    ) -> (Resolution, Vec<Mark>) {
        let mut marks = Vec::with_capacity(8);
        let resolution = self.decide_stand_in(kind, stand_in, headers, &mut marks);
        (resolution, marks)
    }

    fn run<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        conn: &Connection,
        headers: &'h H,
        trace: &mut T,
    ) -> Resolution {
        let mut warnings = Warnings::NONE;
        let peer = self.effective_peer(conn, &mut warnings, trace);
        let (found, strategy) = self.run_strategies(&peer, headers, &mut warnings, trace);
        let from_proxy = peer.source == Source::ProxyProtocol;
        let found = found.unwrap_or(peer);
        let mut resolution = Resolution {
            rate_limit_key: found.client.ip().map(|ip| rate_limit_key(ip, self.ipv6_prefix)),
            client: found.client.peer(),
            source: found.source,
            peer: conn.peer,
            proxy_source: None,
            trusted_hops: found.trusted_hops,
            warnings,
            strategy,
        };
        // Set apart rather than chosen in the literal: a choice between the two there made
        // the common `None` carry every byte of the node, spilled and stored one at a time.
        // Re-derived from `conn` rather than copied from `peer.client`: a copy of the node
        // just written reloads it with loads wider than its stores (a store-forwarding
        // stall).
        if from_proxy && let Some(source) = conn.proxy_source {
            resolution.proxy_source =
                Some(Node { ip: crate::addr::normalize(source.ip), ..source });
        }
        resolution
    }

    #[inline(always)]
    fn effective_peer<'h, T: Tracer<'h>>(
        &self,
        conn: &Connection,
        warnings: &mut Warnings,
        trace: &mut T,
    ) -> Found {
        let tcp = Found { client: conn.peer.into(), source: Source::Peer, trusted_hops: 0 };
        let Some(source) = conn.proxy_source else {
            return tcp;
        };
        let sender_trusted = self.proxy_protocol_from.contains_peer(conn.peer);
        if sender_trusted && !crate::addr::can_be_source(crate::addr::normalize(source.ip)) {
            // A sender that names an address no client connects from (`0.0.0.0`, a
            // broadcast or multicast address) saw no client: the sender stays the peer.
            warnings.insert(Warnings::MALFORMED);
            trace.step(|| {
                Mark::new(
                    "proxy-protocol",
                    source,
                    Verdict::Ignored,
                    "never the source of a TCP connection: the sender stays the peer",
                )
            });
            tcp
        } else if sender_trusted {
            trace.step(|| {
                Mark::new(
                    "peer",
                    conn.peer,
                    Verdict::Trusted,
                    "in proxy_protocol_from: its PROXY header names the client",
                )
            });
            Found {
                client: Node { ip: crate::addr::normalize(source.ip), ..source }.into(),
                source: Source::ProxyProtocol,
                trusted_hops: 1,
            }
        } else {
            warnings.insert(Warnings::UNTRUSTED_PROXY_PROTOCOL);
            trace.step(|| {
                Mark::new(
                    "proxy-protocol",
                    source,
                    Verdict::Ignored,
                    "the peer is not trusted to send PROXY headers",
                )
            });
            tcp
        }
    }

    #[inline(always)]
    fn run_strategies<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        peer: &Found,
        headers: &'h H,
        warnings: &mut Warnings,
        trace: &mut T,
    ) -> (Option<Found>, Option<u8>) {
        if self.strategies.is_empty() {
            // Nothing is read, but a forwarding header sent straight to a service that
            // trusts no one is worth flagging: it is a forgery, or a proxy nobody trusted.
            static SUSPECTS: [FieldName; 3] =
                [names::X_FORWARDED_FOR, names::FORWARDED, names::X_REAL_IP];
            let mut present = None;
            for name in &SUSPECTS {
                if present.is_none() {
                    headers.for_each_value(name, |_| present = Some(name.as_str()));
                }
            }
            if let Some(name) = present {
                warnings.insert(Warnings::UNTRUSTED_HEADER);
                trace.step(|| {
                    Mark::new(name, "(present)", Verdict::Ignored, "no proxy is trusted: ignored")
                });
            }
            trace.step(|| {
                Mark::new(
                    "strategy",
                    "peer",
                    Verdict::Client,
                    "no proxy is trusted: the peer is the client",
                )
            });
            return (None, None);
        }
        if let Some(secret) = &self.origin_secret
            && self.trusts_peer(peer.client.peer())
            && !secret.matches(headers)
        {
            warnings.insert(Warnings::ORIGIN_SECRET);
            trace.step(|| {
                Mark::new(
                    secret.name.to_string(),
                    "<redacted>",
                    Verdict::Ignored,
                    "origin secret missing or wrong: forwarding headers ignored",
                )
            });
            return (None, None);
        }
        for (i, strategy) in self.strategies.iter().enumerate() {
            trace.step(|| {
                Mark::new(
                    "strategy",
                    Text::Strategy(u8::try_from(i).unwrap_or(u8::MAX)),
                    Verdict::Start,
                    match self.strategies.len() {
                        1 => Cow::Borrowed("strategy 1 of 1"),
                        n => Cow::Owned(format!("strategy {} of {n}", i + 1)),
                    },
                )
            });
            let mut ctx =
                Ctx { peer, all_trusted: self.all_trusted, warnings, trace, other_list: None };
            if let Some(found) = strategy.run(headers, &mut ctx) {
                let other_list = ctx.other_list;
                self.check_other_list(strategy, peer, headers, &found, other_list, warnings);
                return (Some(found), u8::try_from(i).ok());
            }
        }
        (None, None)
    }

    /// Flags X-Forwarded-For and Forwarded naming different clients.
    fn check_other_list<H: Headers + ?Sized>(
        &self,
        strategy: &Strategy,
        peer: &Found,
        headers: &H,
        found: &Found,
        other_list: Option<bool>,
        warnings: &mut Warnings,
    ) {
        let Some(list) = strategy.list() else { return };
        if matches!(strategy.kind, Kind::Leftmost(_))
            || !matches!(found.source, Source::List { .. })
        {
            return;
        }
        let present = other_list.unwrap_or_else(|| {
            let mut present = false;
            headers.for_each_value(list.other().field_ref(), |_| present = true);
            present
        });
        if present && self.other_list_disagrees(strategy, list, peer, headers, found) {
            warnings.insert(Warnings::DISAGREE);
        }
    }

    /// Runs `strategy` over the other list header. Out of line: it runs only when both
    /// lists came, and inlined, a second copy of every strategy sat in the common path.
    #[inline(never)]
    fn other_list_disagrees<H: Headers + ?Sized>(
        &self,
        strategy: &Strategy,
        list: ListHeader,
        peer: &Found,
        headers: &H,
        found: &Found,
    ) -> bool {
        let mut scratch = Warnings::NONE;
        let mut ctx = Ctx {
            peer,
            all_trusted: self.all_trusted,
            warnings: &mut scratch,
            trace: &mut NoTrace,
            other_list: None,
        };
        strategy
            .run_on(headers, list.other(), &mut ctx)
            .is_some_and(|o| o.client.ip() != found.client.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_specs() {
        assert_eq!("private".parse::<TrustSpec>().unwrap(), TrustSpec::Named(NamedSet::Private));
        assert_eq!(
            "Cloudflare".parse::<TrustSpec>().unwrap(),
            TrustSpec::Provider("cloudflare".into())
        );
        assert!(matches!("10.0.0.0/8".parse::<TrustSpec>().unwrap(), TrustSpec::Cidr(_)));
        let err = "10.0.0.0/33".parse::<TrustSpec>().unwrap_err().to_string();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        for (text, host, shown) in [
            ("lb.internal", "lb.internal", "lb.internal"),
            ("LB.Internal.", "lb.internal", "lb.internal"),
            ("lb1.internal", "lb1.internal", "lb1.internal"),
            ("host:nginx", "nginx", "host:nginx"),
            ("host:loopback", "loopback", "host:loopback"),
            ("Host:web-1.svc", "web-1.svc", "web-1.svc"),
        ] {
            let spec = text.parse::<TrustSpec>().unwrap();
            assert_eq!(spec, TrustSpec::Host(host.into()), "{text}");
            assert_eq!(spec.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<TrustSpec>().unwrap(), spec, "{text} round trip");
        }
        for (text, says) in [
            ("10.0.0.256", "invalid"),
            ("10.0.0", "invalid"),
            ("1.2.3.4.5", "invalid"),
            ("lb.10", "invalid address"),
            ("lb..internal", "not a valid label"),
            ("-lb.internal", "not a valid label"),
            ("lb_1.internal", "not a valid label"),
            ("host:", "1 to 253"),
            ("host:10.0.0.1", "invalid address"),
            ("nginx", "host:nginx"),
        ] {
            let err = text.parse::<TrustSpec>().unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        let err = "cloudfrnt".parse::<TrustSpec>().unwrap_err().to_string();
        assert!(err.contains("cloudfront"), "{err}");
    }

    #[test]
    fn provider_without_ranges_says_how_to_load_them() {
        let err =
            Policy::builder().strategy_str("cloudflare").unwrap().build().unwrap_err().to_string();
        assert!(err.contains("cloudflare") && err.contains("FILE"), "{err}");
    }

    #[test]
    fn strategies_that_read_headers_need_trust() {
        let err = Policy::builder()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("trusts no one"), "{err}");
    }

    #[test]
    fn hop_counts_are_checked_however_the_spec_was_made() {
        for n in [0, 65, u16::MAX] {
            let err = Policy::builder()
                .trust_str("any")
                .unwrap()
                .strategy(StrategySpec::Hops(n))
                .build()
                .unwrap_err()
                .to_string();
            assert!(err.contains("hop count"), "{n}: {err}");
        }
    }

    #[test]
    fn secret_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
