//! The answer: who the client is, how we know, and what looked wrong.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::addr::{Node, Peer};
use crate::headers::FieldName;
use crate::trust::mask128;

/// Which list header a list strategy reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ListHeader {
    /// `X-Forwarded-For` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`, its `for=` parameters.
    Forwarded,
}

impl ListHeader {
    /// The header's name.
    pub fn field(self) -> FieldName {
        match self {
            ListHeader::XForwardedFor => crate::headers::names::X_FORWARDED_FOR,
            ListHeader::Forwarded => crate::headers::names::FORWARDED,
        }
    }

    /// The header's name, lower-case.
    pub(crate) fn field_str(self) -> &'static str {
        self.field_ref().as_str()
    }

    /// [`field`](Self::field) by reference: the per-request path uses this so it does
    /// not build and drop a `FieldName` (and its `http::HeaderName`) on every call.
    pub(crate) fn field_ref(self) -> &'static FieldName {
        static X_FORWARDED_FOR: FieldName = crate::headers::names::X_FORWARDED_FOR;
        static FORWARDED: FieldName = crate::headers::names::FORWARDED;
        match self {
            ListHeader::XForwardedFor => &X_FORWARDED_FOR,
            ListHeader::Forwarded => &FORWARDED,
        }
    }

    /// The other list header.
    pub fn other(self) -> Self {
        match self {
            ListHeader::XForwardedFor => ListHeader::Forwarded,
            ListHeader::Forwarded => ListHeader::XForwardedFor,
        }
    }

    /// The spelling used by `--from` and the config: `xff` or `forwarded`.
    pub fn name(self) -> &'static str {
        match self {
            ListHeader::XForwardedFor => "xff",
            ListHeader::Forwarded => "forwarded",
        }
    }
}

impl std::str::FromStr for ListHeader {
    type Err = crate::ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "xff" | "x-forwarded-for" => Ok(ListHeader::XForwardedFor),
            "forwarded" => Ok(ListHeader::Forwarded),
            _ => Err(crate::ConfigError::new(format!("unknown list header \"{s}\""))
                .hint("use \"xff\" or \"forwarded\"")),
        }
    }
}

impl fmt::Display for ListHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the client address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The TCP peer: no trusted proxy vouched for anything else.
    Peer,
    /// The source address of a PROXY protocol header sent by a trusted sender.
    ProxyProtocol,
    /// An element of a list header.
    List {
        /// Which header.
        header: ListHeader,
        /// Position counted from the right: 1 is the element the nearest hop wrote.
        from_right: u16,
    },
    /// A single-address header such as `X-Real-IP`: the one the deciding strategy reads
    /// ([`Policy::strategy_header`](crate::Policy::strategy_header) names it).
    Header,
    /// A query argument (`query:NAME`): the one the deciding strategy reads
    /// ([`Policy::strategy_param`](crate::Policy::strategy_param) names it).
    Query,
    /// A cookie (`cookie:NAME`): the one the deciding strategy reads
    /// ([`Policy::strategy_param`](crate::Policy::strategy_param) names it).
    Cookie,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Peer => f.write_str("peer"),
            Source::ProxyProtocol => f.write_str("proxy-protocol"),
            Source::List { header, from_right } => {
                write!(f, "{}[-{from_right}]", header.field_ref().as_str())
            }
            Source::Header => f.write_str("header"),
            Source::Query => f.write_str("query"),
            Source::Cookie => f.write_str("cookie"),
        }
    }
}

macro_rules! warnings {
    ($( $(#[$doc:meta])* $name:ident = $bit:expr, $text:literal; )*) => {
        impl Warnings {
            $( $(#[$doc])* pub const $name: Warnings = Warnings(1 << $bit); )*
            const TABLE: &'static [(Warnings, &'static str)] = &[$( (Warnings::$name, $text), )*];
        }
    };
}

/// Things that looked wrong while resolving; a set of flags.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Warnings(u16);

warnings! {
    /// Untrusted entries stand left of the client: a forgery attempt, or a proxy on the client's side.
    SPOOF_ATTEMPT = 0, "spoof_attempt";
    /// The walk met an element it could not read and stopped at the last address it could vouch for.
    MALFORMED = 1, "malformed";
    /// The walk met `unknown`, an obfuscated identifier or a `Forwarded` element without `for=`.
    OPAQUE = 2, "opaque";
    /// A forwarding header arrived from a peer not trusted to send it; it was ignored. (In an
    /// API Gateway event, not for the `X-Forwarded-For` API Gateway wrote with nothing left
    /// of `sourceIp`: `trueip::lambda`, "What stands in for the peer".)
    UNTRUSTED_HEADER = 3, "header_from_untrusted_peer";
    /// Fewer list elements than the configured hop count.
    FEWER_HOPS = 4, "fewer_hops_than_configured";
    /// `X-Forwarded-For` and `Forwarded` name different clients.
    DISAGREE = 5, "xff_forwarded_disagree";
    /// Every entry was a trusted proxy.
    ALL_TRUSTED = 6, "all_trusted";
    /// The answer came from `leftmost`: client-written text, spoofable by anyone.
    SPOOFABLE = 7, "spoofable";
    /// The configured origin secret was missing or wrong; forwarding headers were ignored.
    ORIGIN_SECRET = 8, "origin_secret_mismatch";
    /// The header had more lines or elements than trueip reads; the walk stopped at the cap.
    TRUNCATED = 9, "truncated";
    /// A PROXY protocol header came from a sender not trusted to send one; it was ignored.
    UNTRUSTED_PROXY_PROTOCOL = 10, "proxy_protocol_from_untrusted_peer";
    /// A single-address header appeared on several lines: ambiguous, ignored.
    DUPLICATE_HEADER = 11, "duplicate_header";
    /// A single-address header came through trusted proxies, but the hop that handed it to
    /// them is not trusted to write it (or nothing records that hop); it was ignored. Also a
    /// Lambda event that carried a header whose lines' order counts under two spellings,
    /// whose order is lost: not read (`trueip::lambda::Event::resolve`). Either way no hop
    /// is trusted with the request's client-IP headers.
    UNVOUCHED_HEADER = 12, "header_writer_not_trusted";
    /// A signed client header (`trueip::provenance`) was missing, forged, stale or for
    /// another request; the TCP peer stands.
    SIGNATURE_REJECTED = 13, "signature_rejected";
    /// A policy built from a Lambda preset (`trueip::lambda::Preset`) decided a request
    /// that came without a Lambda event of its chain (a server's connection, or for the
    /// ALB preset an API Gateway or Function URL event): as if no proxy were trusted, the
    /// peer (or the address the event's front end saw) the client, the hop untrusted.
    NO_LAMBDA_EVENT = 14, "no_lambda_event";
    /// A Lambda Function URL event came through a hop the policy trusts (CloudFront's
    /// edge): the URL keeps only the first `X-Forwarded-For` value the request carried,
    /// which the client wrote (and writes its `sourceIp` when none came), so the header
    /// was not read, and [`Policy::hop`](crate::Policy::hop) has the middlewares withhold
    /// it from the app though the hop is trusted.
    XFF_NOT_KEPT = 15, "x_forwarded_for_not_kept";
}

impl Warnings {
    /// No warnings.
    pub const NONE: Warnings = Warnings(0);

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags that mean a request carried an address its sender had no right to
    /// write: text left of the client (`spoof_attempt`), a forwarding header from an
    /// untrusted peer or an untrusted writer, a missing or wrong origin secret, a PROXY
    /// header from an untrusted sender, a single-address header on several lines. The
    /// others (`malformed`, `truncated`, `all_trusted`, ...) describe broken or unusual
    /// proxies as often as attackers. `trueip serve` keeps requests with one of these
    /// at `/.trueip/forgeries`.
    pub const FORGERY: Warnings = Warnings(
        Warnings::SPOOF_ATTEMPT.0
            | Warnings::UNTRUSTED_HEADER.0
            | Warnings::UNVOUCHED_HEADER.0
            | Warnings::ORIGIN_SECRET.0
            | Warnings::UNTRUSTED_PROXY_PROTOCOL.0
            | Warnings::DUPLICATE_HEADER.0,
    );

    /// The flags of [`FORGERY`](Self::FORGERY) that are set.
    pub fn forgeries(self) -> Warnings {
        Warnings(self.0 & Self::FORGERY.0)
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Warnings) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Warnings) {
        self.0 |= other.0;
    }

    /// The snake_case names of the flags set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::TABLE.iter().filter(move |(flag, _)| self.contains(*flag)).map(|(_, name)| *name)
    }

    /// Every warning name, for documentation.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        Self::TABLE.iter().map(|(_, name)| *name)
    }
}

impl std::ops::BitOr for Warnings {
    type Output = Warnings;
    fn bitor(self, rhs: Warnings) -> Warnings {
        Warnings(self.0 | rhs.0)
    }
}

impl fmt::Debug for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl fmt::Display for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for name in self.names() {
            write!(f, "{sep}{name}")?;
            sep = ",";
        }
        Ok(())
    }
}

/// The decision for one request.
///
/// A small `Copy` value: building one allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The client: address, and port when the source carried one; [`Peer::Unix`] when
    /// the connection came over a Unix socket and nothing it carried named an address
    /// (the peer was not trusted, or sent no usable header): a process on this host.
    pub client: Peer,
    /// Where the client address came from.
    pub source: Source,
    /// The peer of the connection: a TCP peer's address, or [`Peer::Unix`].
    pub peer: Peer,
    /// The PROXY protocol source, when a trusted sender supplied one (it replaced the peer).
    pub proxy_source: Option<Node>,
    /// How many trusted proxies the request crossed that we vouched for (0: the peer is the client).
    pub trusted_hops: u16,
    /// What looked wrong.
    pub warnings: Warnings,
    /// Which strategy of the policy's fallback chain decided (`None`: none applied, the peer stands).
    pub strategy: Option<u8>,
    /// The key to rate-limit on: the IPv4 address, or the IPv6 address cut to the
    /// policy's prefix (/64 by default), since one subscriber usually holds a whole /64.
    /// `None` when the client is a Unix-socket peer (no address).
    pub rate_limit_key: Option<IpAddr>,
}

impl Resolution {
    /// The client address; `None` when the client is a Unix-socket peer
    /// ([`Peer::Unix`]): a local process, which has none.
    pub fn ip(&self) -> Option<IpAddr> {
        self.client.ip()
    }

    /// The hop the request came from: the PROXY protocol source when a trusted sender
    /// supplied one, else the peer.
    pub fn effective_peer(&self) -> Peer {
        self.proxy_source.map_or(self.peer, Peer::Ip)
    }
}

#[inline]
pub(crate) fn rate_limit_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(v6_prefix))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_names_are_unique_and_listed() {
        let names: Vec<_> = Warnings::all_names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names.len(), sorted.len());
        let w = Warnings::SPOOF_ATTEMPT | Warnings::TRUNCATED;
        assert_eq!(w.to_string(), "spoof_attempt,truncated");
        assert!(w.contains(Warnings::TRUNCATED) && !w.contains(Warnings::MALFORMED));
    }

    #[test]
    fn forgeries_are_the_flags_someone_wrote_on_purpose() {
        let w = Warnings::SPOOF_ATTEMPT | Warnings::TRUNCATED | Warnings::DUPLICATE_HEADER;
        assert_eq!(w.forgeries().to_string(), "spoof_attempt,duplicate_header");
        assert!((Warnings::MALFORMED | Warnings::ALL_TRUSTED).forgeries().is_empty());
        assert_eq!(
            Warnings::FORGERY.to_string(),
            "spoof_attempt,header_from_untrusted_peer,origin_secret_mismatch,\
             proxy_protocol_from_untrusted_peer,duplicate_header,header_writer_not_trusted"
        );
    }

    #[test]
    fn rate_limit_keys() {
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(rate_limit_key(ip, 64).to_string(), "2001:db8:1:2::");
        assert_eq!(rate_limit_key(ip, 128), ip);
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(rate_limit_key(v4, 64), v4);
    }
}
