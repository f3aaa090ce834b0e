//! Header hygiene: what the upstream may believe about the client.
//!
//! The order matters, and each step closes a known hole:
//!
//! 1. **Hop-by-hop.** `Connection`, `Keep-Alive`, `TE`, `Upgrade`, ... and every header
//!    *named* in `Connection` are removed — except client-IP headers and `Host`. Other
//!    proxies honour `Connection: X-Real-IP` *after* setting their own headers, so a
//!    client can delete what the proxy wrote; here such tokens are ignored, and the
//!    gateway's own headers are written last anyway. Of the upgrades a client may ask
//!    for, only a WebSocket one is set again for the upstream ([`upgrade_to_forward`]),
//!    and only a `101` to that upgrade starts a tunnel ([`may_tunnel`]).
//! 2. **Underscore spellings.** `X_Forwarded_For` becomes `HTTP_X_FORWARDED_FOR` in
//!    WSGI/CGI, the same variable as the real header. Any spelling of a client-IP header
//!    with underscores is removed, whoever sent it: no honest proxy writes one.
//! 3. **Untrusted hop.** If the request did not come through a trusted hop (the peer, or
//!    the PROXY source of a trusted sender, is not trusted by the policy), every
//!    client-IP header is removed: the client wrote it. From a trusted hop, claims about
//!    the request (`X-Forwarded-Proto`, ...) stay, and so do the client addresses the
//!    decision read (the list headers, the header of the `header:NAME` strategy that
//!    decided) and those `[headers] relay` names, several lines of one header merged
//!    into one; any other client address is dropped, since the hop may have relayed the
//!    client's (the rule is the core's [`ForwardingSet::fate`]).
//! 4. **The gateway's own headers**, one clean line each: `X-Real-IP`,
//!    `X-Forwarded-For` and `Forwarded` (`replace`: the client and the trusted hops
//!    after it; `append`: the received list plus the peer), `X-Forwarded-Proto`,
//!    `-Host`, `-Port`, and with `[upstream] sign` the signed client header
//!    (`trueip::provenance`). That header is removed from every request whoever sent it,
//!    trusted hop or not, signing or not: only this gateway writes it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use trueip::addr::Peer;
use trueip::headers::{ForwardingSet, Headers, Hop, names};
use trueip::origin::Origin;
use trueip::{FieldName, ListHeader, Node, Resolution, Source};

use crate::config::{HeaderSettings, HostPattern, ListMode};

pub(crate) use trueip::headers::{is_lower_name, spells as same_name};

/// Whether `name` (any case) is one of [`HOP_BY_HOP`].
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    // Every received line of a lean request and of an upstream response asks this: most
    // names have none of the lengths, and are answered by one test.
    HOP_BY_HOP_LENGTHS & length_bit(name) != 0
        && HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The lengths of the [`HOP_BY_HOP`] names, as [`length_bit`] sets them.
const HOP_BY_HOP_LENGTHS: u64 = {
    let mut bits = 0;
    let mut rest: &[&str] = &HOP_BY_HOP;
    while let [name, more @ ..] = rest {
        bits |= 1 << name.len();
        rest = more;
    }
    bits
};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard ones proxies still see).
/// `HTTP2-Settings` belongs to an `h2c` upgrade and to one connection (RFC 7540 §3.2.1);
/// the gateway never forwards that upgrade (see [`upgrade_to_forward`]).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "http2-settings",
];

/// The one protocol the gateway lets a connection switch to.
///
/// After a `101 Switching Protocols` the gateway copies bytes and can no longer clean
/// request headers. WebSocket frames carry none, so a WebSocket tunnel cannot carry a
/// forged client address to the app. Any other upgrade could: after `Upgrade: h2c` the
/// connection carries HTTP/2 streams, each with whatever `x-real-ip` the client wrote,
/// straight to an upstream that accepts h2c (Hypercorn does). So every other `Upgrade`
/// token is dropped with the hop-by-hop headers and the request goes on as plain
/// HTTP/1.1, as nginx does (it forwards `Upgrade` only when configured to, and then only
/// what its config names).
pub(crate) const WEBSOCKET: &str = "websocket";

/// The upgrade to ask of the upstream for a request: [`WEBSOCKET`] for a WebSocket opening
/// handshake (RFC 6455 §4.1: `GET`, HTTP/1.1, `Connection: upgrade`, `websocket` among the
/// `Upgrade` tokens), else `None` — the request is then forwarded without any upgrade.
pub(crate) fn upgrade_to_forward(
    method: &http::Method,
    version: http::Version,
    headers: &HeaderMap,
) -> Option<&'static str> {
    if method != http::Method::GET || version != http::Version::HTTP_11 {
        return None;
    }
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
    };
    let asks = tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    let websocket = tokens(header::UPGRADE).any(|t| t.eq_ignore_ascii_case(WEBSOCKET.as_bytes()));
    (asks && websocket).then_some(WEBSOCKET)
}

/// Whether a `101` whose `Upgrade` header is `answered` may turn the connection into a
/// tunnel, given the upgrade the gateway forwarded (`asked`, from [`upgrade_to_forward`]):
/// only when one was forwarded and the upstream switched to exactly that protocol. A `101`
/// nobody asked for, or naming another protocol, is a broken or hostile upstream: the
/// client gets 502 and no byte goes through.
pub(crate) fn may_tunnel(asked: Option<&str>, answered: Option<&[u8]>) -> bool {
    match (asked, answered) {
        (Some(asked), Some(answered)) => {
            answered.trim_ascii().eq_ignore_ascii_case(asked.as_bytes())
        }
        _ => false,
    }
}

/// The header policy, with names prepared once.
#[derive(Clone, Debug)]
pub(crate) struct Hygiene {
    settings: HeaderSettings,
    /// Every client-IP header: the core's table ([`names::FORWARDING`]) less the names
    /// kept on purpose, plus the configured names; its
    /// [`withheld`](ForwardingSet::withheld) is the strip rule.
    managed: ForwardingSet,
    /// The index of the origin secret in `managed`.
    secret: Option<usize>,
    /// The index of the signed client header in `managed`.
    signature: usize,
    /// The lengths of the `managed` and [`HOP_BY_HOP`] names together: a line of any
    /// other length is kept, unless `Connection` names it.
    special_lengths: u64,
}

/// A name length's bit in a set of name lengths (as [`Hygiene::special_lengths`]); 63
/// and longer share the last.
fn length_bit(name: &str) -> u64 {
    1 << name.len().min(63)
}

/// What the gateway knows about one request, beyond its headers.
#[derive(Clone, Debug)]
pub(crate) struct Facts<'a> {
    /// The decision.
    pub(crate) resolution: &'a Resolution,
    /// The hop the request came through: what its client-IP headers are worth.
    pub(crate) hop: Hop<'a>,
    /// Scheme, host and port as trusted hops reported them.
    pub(crate) origin: Origin,
    /// The scheme of the gateway's own connection (`https` under TLS).
    pub(crate) scheme: &'static str,
    /// The host the request asked for (Host header or `:authority`).
    pub(crate) host: Option<&'a HeaderValue>,
    /// The port the client connected to (the listener's, or the PROXY destination's);
    /// `None` on a `unix:` listener.
    pub(crate) port: Option<u16>,
    /// The request as the upstream receives it: what the signed client header is bound to.
    pub(crate) request: UpstreamLine<'a>,
    /// The signature's time in Unix seconds; `None`: the wall clock, read when a signature
    /// is written. Only `[upstream] sign` needs the time, so a gateway that does not sign
    /// reads no wall clock per request.
    pub(crate) time: Option<u64>,
}

impl<'a> Facts<'a> {
    /// The facts of a request with `headers` (as received) decided as `resolution`.
    pub(crate) fn new<H: Headers + ?Sized>(
        policy: &'a trueip::Policy,
        resolution: &'a Resolution,
        headers: &H,
        scheme: &'static str,
        host: Option<&'a HeaderValue>,
        port: Option<u16>,
        request: UpstreamLine<'a>,
    ) -> Self {
        Facts {
            resolution,
            hop: policy.hop(resolution),
            origin: trueip::origin::origin(headers, resolution),
            scheme,
            host,
            port,
            request,
            time: None,
        }
    }
}

/// The request line as the upstream receives it, which the signed client header is bound
/// to ([`trueip::provenance::RequestLine`]) with the Host the upstream receives
/// ([`Facts::request_line`]). Its Host is left for the signer to read: a gateway that does
/// not sign checks no Host per request for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpstreamLine<'a> {
    pub(crate) method: &'a str,
    /// The upstream's authority: the Host it receives for a request that has none.
    pub(crate) authority: &'a str,
    pub(crate) target: &'a str,
}

impl<'a> Facts<'a> {
    /// The request line the signed client header is bound to. Its Host is the request's,
    /// else the upstream's authority; a Host that is not visible ASCII is bound as empty:
    /// the app reads it otherwise, and the signature fails closed.
    pub(crate) fn request_line(&self) -> trueip::provenance::RequestLine<'a> {
        trueip::provenance::RequestLine {
            method: self.request.method,
            host: match self.host {
                Some(h) => h.to_str().unwrap_or_default(),
                None => self.request.authority,
            },
            target: self.request.target,
        }
    }
}

/// What becomes of one received request header line on its way upstream (steps 1 to 3
/// of the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Forwarded; from a trusted hop, several lines of one client-IP header as one.
    Keep,
    /// Removed and counted (`trueip_stripped_headers_total`): a client-IP header that
    /// did not come through a trusted hop, or an underscore spelling of one.
    Strip,
    /// Removed: hop-by-hop, named in `Connection`, or the origin secret.
    Drop,
}

/// One of the gateway's own header values.
#[derive(Clone, Debug)]
pub(crate) enum Own<'f> {
    /// `OwnValues::buf[range]`.
    Range(Range<usize>),
    /// A fixed value.
    Static(&'static str),
    /// The value the request carried (its Host).
    Received(&'f HeaderValue),
    /// No value: the header is removed.
    Remove,
}

/// The gateway's own headers for one request: names and values, the values written
/// into one buffer.
#[derive(Clone, Debug)]
pub(crate) struct OwnValues<'f> {
    /// Where [`Own::Range`] values point.
    pub(crate) buf: String,
    /// Each header the gateway sets (or removes), once, in order.
    pub(crate) values: Vec<(FieldName, Own<'f>)>,
    /// The lengths of their names ([`length_bit`]): most received lines are none of them.
    lengths: u64,
    /// Whether `buf` is a valid header value whole: then every [`Own::Range`] is one,
    /// found by one pass instead of one per value.
    buf_valid: bool,
}

impl OwnValues<'_> {
    /// Whether the gateway sets (or removes) `name`, given in any case: a received line
    /// of that name is replaced.
    pub(crate) fn sets(&self, name: &str) -> bool {
        self.lengths & length_bit(name) != 0
            && self.values.iter().any(|(f, _)| is_lower_name(name, f.as_str()))
    }

    /// The bytes of a value as they go upstream: `None` for [`Own::Remove`], and for a
    /// value that is not a valid header value ([`valid_value`]), which is not sent, as
    /// [`set_own`] removes it from a header map.
    pub(crate) fn bytes<'v>(&'v self, value: &'v Own<'_>) -> Option<&'v [u8]> {
        match value {
            Own::Range(r) => {
                let bytes = self.buf.as_bytes().get(r.clone()).unwrap_or_default();
                (self.buf_valid || valid_value(bytes)).then_some(bytes)
            }
            Own::Static(v) => Some(v.as_bytes()).filter(|b| valid_value(b)),
            // A `HeaderValue` is a valid one.
            Own::Received(v) => Some(v.as_bytes()),
            Own::Remove => None,
        }
    }
}

/// The received header lines of a request as they go upstream before the gateway writes
/// its own ([`Fate::Keep`] only): what `append` mode extends. Reading the raw lines
/// instead would extend what an untrusted client wrote.
pub(crate) struct Kept<'a, H: ?Sized> {
    pub(crate) headers: &'a H,
    pub(crate) hygiene: &'a Hygiene,
    pub(crate) hop: Hop<'a>,
    /// What the request's `Connection` lines name ([`Hygiene::connection_named`]).
    pub(crate) named: &'a [&'a [u8]],
}

impl<H: Headers + ?Sized> Headers for Kept<'_, H> {
    fn for_each_value<'b>(&'b self, name: &FieldName, f: impl FnMut(&'b [u8])) {
        let fate = self.hygiene.request_fate(name.as_str(), self.hop, self.named);
        if fate == Fate::Keep {
            self.headers.for_each_value(name, f);
        }
    }
}

impl Hygiene {
    /// Prepares the header policy.
    pub(crate) fn new(settings: HeaderSettings) -> Self {
        // The table, less what the config keeps on purpose, plus the configured names.
        let managed = settings
            .extra
            .iter()
            .chain(&settings.origin_secret)
            .chain([&settings.signing.header])
            .fold(ForwardingSet::default().without(&settings.kept), |set, name| {
                set.with(name.clone())
            })
            .relaying(&settings.relayed);
        let signature = managed.position(settings.signing.header.as_str()).unwrap_or_default();
        let secret = settings.origin_secret.as_ref().and_then(|s| managed.position(s.as_str()));
        Hygiene {
            special_lengths: managed
                .names()
                .iter()
                .map(FieldName::as_str)
                .chain(HOP_BY_HOP)
                .fold(0, |bits, n| bits | length_bit(n)),
            settings,
            managed,
            secret,
            signature,
        }
    }

    /// The request target without the query arguments `query:NAME` strategies read, when
    /// `[headers] strip_client_source` asks for it: the app must not read an address the
    /// gateway may have refused (a client's own `?client=1.2.3.4`), nor see a second
    /// answer beside `X-Real-IP`. Borrowed when there is nothing to remove; a query left
    /// empty loses its `?`.
    pub(crate) fn strip_target<'t>(&self, target: &'t str) -> Cow<'t, str> {
        let args = &self.settings.source_args;
        // No `query:NAME` source (the usual config): the target is not even scanned.
        if args.is_empty() {
            return Cow::Borrowed(target);
        }
        let Some((path, query)) = target.split_once('?') else {
            return Cow::Borrowed(target);
        };
        let mut kept: Cow<'_, str> = Cow::Borrowed(query);
        for name in args {
            if let Some(rest) = trueip::params::strip_query(&kept, name) {
                kept = Cow::Owned(rest);
            }
        }
        match kept {
            Cow::Borrowed(_) => Cow::Borrowed(target),
            Cow::Owned(q) if q.is_empty() => Cow::Owned(path.to_owned()),
            Cow::Owned(q) => Cow::Owned(format!("{path}?{q}")),
        }
    }

    /// Whether `Cookie` lines must be rewritten (`strip_client_source` with a
    /// `cookie:NAME` strategy).
    pub(crate) fn strips_cookies(&self) -> bool {
        !self.settings.source_cookies.is_empty()
    }

    /// A `Cookie` line without the cookies `cookie:NAME` strategies read (when
    /// `strip_client_source` asks for it): `None` when nothing is left of it, the line
    /// as it came when nothing was removed.
    pub(crate) fn strip_cookie<'v>(&self, value: &'v [u8]) -> Option<Cow<'v, [u8]>> {
        let mut kept: Cow<'_, [u8]> = Cow::Borrowed(value);
        for name in &self.settings.source_cookies {
            if let Some(rest) = trueip::params::strip_cookie(&kept, name) {
                kept = Cow::Owned(rest);
            }
        }
        (!kept.is_empty()).then_some(kept)
    }

    /// [`strip_cookie`](Self::strip_cookie) over a header map's `Cookie` lines.
    pub(crate) fn strip_cookies(&self, headers: &mut HeaderMap) {
        if !self.strips_cookies() || !headers.contains_key(header::COOKIE) {
            return;
        }
        let lines: Vec<HeaderValue> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| match self.strip_cookie(v.as_bytes())? {
                Cow::Borrowed(_) => Some(v.clone()),
                // Bytes of a valid value, less some: still valid.
                Cow::Owned(rest) => HeaderValue::from_bytes(&rest).ok(),
            })
            .collect();
        headers.remove(header::COOKIE);
        for line in lines {
            headers.append(header::COOKIE, line);
        }
    }

    /// Whether the hosts the request names pass `headers.allowed_hosts`: its own Host
    /// (`:authority`), which the upstream receives unchanged, and the host a trusted hop
    /// reported (X-Forwarded-Host, `Forwarded: host=`), which becomes the upstream's
    /// X-Forwarded-Host. A request without a Host cannot be checked, and fails. With no
    /// list, every host passes and nothing is read.
    pub(crate) fn hosts_allowed(&self, facts: &Facts<'_>) -> bool {
        let allowed = &self.settings.allowed;
        if allowed.is_empty() {
            return true;
        }
        let own = facts.host.is_some_and(|h| host_allowed(allowed, h.as_bytes()));
        own && facts.origin.host.as_deref().is_none_or(|h| host_allowed(allowed, h.as_bytes()))
    }

    /// The origin secret header, if one is configured.
    pub(crate) fn origin_secret(&self) -> Option<&FieldName> {
        self.settings.origin_secret.as_ref()
    }

    /// Whether `name`, in any spelling (see [`same_name`]), is a client-IP header.
    pub(crate) fn is_managed_spelled(&self, name: &str) -> bool {
        self.managed.spelled(name.as_bytes())
    }

    /// The index of a client-IP header name given in any case.
    pub(crate) fn managed_index_ignore_case(&self, name: &str) -> Option<usize> {
        self.managed.position(name)
    }

    /// What a request's `Connection` lines name and hop-by-hop removal may take: every
    /// token but `Host` and the client-IP headers (in any spelling). Other proxies honour
    /// `Connection: X-Real-IP` after setting their own headers, so a client could delete
    /// what a proxy wrote; here such tokens are ignored.
    pub(crate) fn connection_named<'v>(
        &self,
        lines: impl Iterator<Item = &'v [u8]>,
    ) -> Vec<&'v [u8]> {
        let mut named: Vec<&[u8]> = lines.flat_map(connection_tokens).collect();
        named.retain(|token| {
            let name = String::from_utf8_lossy(token);
            !name.is_empty()
                && !name.eq_ignore_ascii_case("host")
                && !self.is_managed_spelled(&name)
        });
        named
    }

    /// What becomes of a received request line named `name` (any case), for a request
    /// that came through `hop` and whose `Connection` lines name `named`
    /// ([`Hygiene::connection_named`]).
    pub(crate) fn request_fate(&self, name: &str, hop: Hop<'_>, named: &[&[u8]]) -> Fate {
        let bit = length_bit(name);
        if bit & self.special_lengths == 0 && named.is_empty() {
            return Fate::Keep;
        }
        let fate = self.managed.fate(name, hop);
        if fate.index.is_some() && fate.index == self.secret {
            // The origin secret has done its job; the app has no use for it.
            return Fate::Drop;
        }
        if fate.index == Some(self.signature) {
            // Only this gateway writes it, even behind trusted hops.
            return Fate::Strip;
        }
        if fate.withheld {
            // A client address a trusted hop passed that no strategy read is not counted
            // as a forgery: the hop may have written it.
            return if fate.forged { Fate::Strip } else { Fate::Drop };
        }
        if fate.index.is_some() {
            // Through a trusted hop; `Connection` may not name a client-IP header.
            return Fate::Keep;
        }
        if is_hop_by_hop(name) || named.iter().any(|n| n.eq_ignore_ascii_case(name.as_bytes())) {
            Fate::Drop
        } else {
            Fate::Keep
        }
    }

    /// Rewrites request headers for the upstream: every line by its [`Fate`], then the
    /// gateway's own headers. Returns how many lines were stripped.
    pub(crate) fn request(&self, headers: &mut HeaderMap, facts: &Facts<'_>) -> u64 {
        self.request_noting(headers, facts, &mut Vec::new())
    }

    /// [`request`](Self::request), handing every stripped line to `stripped` (for the
    /// record of forgeries; nothing is pushed, so nothing allocated, for a request
    /// with nothing to strip).
    pub(crate) fn request_noting(
        &self,
        headers: &mut HeaderMap,
        facts: &Facts<'_>,
        stripped_lines: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> u64 {
        let stripped = self.received_noting(headers, facts, stripped_lines);
        set_own(headers, self.own_values(headers, facts));
        stripped
    }

    /// The received lines of [`request_noting`](Self::request_noting), each by its
    /// [`Fate`], without the gateway's own headers: a caller that writes the upstream
    /// head itself writes [`own_values`](Self::own_values) of the lines left, and no
    /// received line [`OwnValues::sets`].
    pub(crate) fn received_noting(
        &self,
        headers: &mut HeaderMap,
        facts: &Facts<'_>,
        stripped_lines: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> u64 {
        let mut stripped = 0;
        let mut gone: Vec<HeaderName> = Vec::new();
        let mut merge: Vec<HeaderName> = Vec::new();
        {
            let named = self.connection_named(
                headers.get_all(header::CONNECTION).iter().map(HeaderValue::as_bytes),
            );
            // `iter` yields each name's lines together: a line whose name is the line
            // before's is a second line of it, found without a lookup per name.
            let mut last: Option<(&HeaderName, Fate)> = None;
            for (name, _) in headers.iter() {
                if let Some((before, fate)) = last
                    && std::ptr::eq(before, name)
                {
                    if fate == Fate::Keep
                        && merge.last() != Some(name)
                        && self.managed_index_ignore_case(name.as_str()).is_some()
                    {
                        merge.push(name.clone());
                    }
                    continue;
                }
                let fate = self.request_fate(name.as_str(), facts.hop, &named);
                last = Some((name, fate));
                match fate {
                    Fate::Keep => {}
                    Fate::Strip => {
                        for value in headers.get_all(name) {
                            stripped += 1;
                            stripped_lines.push((name.clone(), value.clone()));
                        }
                        gone.push(name.clone());
                    }
                    Fate::Drop => gone.push(name.clone()),
                }
            }
        }
        for name in gone {
            headers.remove(name);
        }
        for name in merge {
            merge_lines(headers, &name);
        }
        stripped
    }

    /// The gateway's own headers for a request, in the order they are written, read
    /// from any representation of the received headers: the same values whether the
    /// request came through hyper (a `HeaderMap`) or the lean HTTP/1.1 path.
    pub(crate) fn own_values<'f, H: Headers + ?Sized>(
        &self,
        headers: &H,
        facts: &Facts<'f>,
    ) -> OwnValues<'f> {
        let r = facts.resolution;
        let s = &self.settings;
        let peer = r.effective_peer();
        let proto = facts.origin.proto.map_or(facts.scheme, |p| p.as_str());
        // The host as a header value: the received one when trusted hops reported none.
        // Either way only a valid `host[:port]` (`trueip::origin::is_host`, which the
        // reported one already passed): anything else would put the client's text into
        // the gateway's own `Forwarded` and `X-Forwarded-Host`.
        let received = facts.host.and_then(|h| {
            let valid = trueip::origin::is_host(h.as_bytes());
            if !valid {
                tracing::debug!(host = ?h, "the request's Host is not a host[:port]: left out of Forwarded and X-Forwarded-Host");
            }
            valid.then(|| h.to_str().ok().map(|s| (s, h))).flatten()
        });
        let (host, host_value) = match &facts.origin.host {
            Some(h) => (Some(h.as_str()), None),
            None => match received {
                Some((s, h)) => (Some(s), Some(h)),
                None => (None, None),
            },
        };

        // Every value is written into one buffer, then handed out as slices of it: one
        // allocation for all of them instead of one (or more) per header.
        let mut out = String::with_capacity(192);
        let mut values = Vec::with_capacity(6);
        // A Unix-socket peer has no address: it is left out of every header that lists
        // addresses (an app walking X-Forwarded-For would stop at a `unix:` element, as
        // at any unreadable one), and a client that is one gets no X-Real-IP.
        let range_or_remove = |at: usize, end: usize| match end > at {
            true => Own::Range(at..end),
            false => Own::Remove,
        };
        // Each address of the chain is written once, then copied by the next header
        // that lists it: the client's is in up to three.
        let mut addrs = Addrs::new();
        if s.x_real_ip {
            let at = out.len();
            if let Some(ip) = r.client.ip() {
                addrs.write(&mut out, 0, ip);
            }
            values.push((names::X_REAL_IP, range_or_remove(at, out.len())));
        }
        // The trusted chain, walked once for both list headers that write it.
        let mut chain = Chain::new(r.client);
        if s.x_forwarded_for == ListMode::Replace || s.forwarded == ListMode::Replace {
            for_chain(headers, r, |_, node| chain.push(node));
        }
        if s.x_forwarded_for != ListMode::Off {
            let at = out.len();
            match s.x_forwarded_for {
                ListMode::Append => {
                    append(&mut out, headers, &names::X_FORWARDED_FOR);
                    match peer.ip() {
                        Some(ip) => write_ip(&mut out, ip),
                        None => trim_separator(&mut out, at),
                    }
                }
                _ => chain.write_list(&mut out, |out, i, ip| addrs.write(out, i, ip)),
            }
            values.push((names::X_FORWARDED_FOR, range_or_remove(at, out.len())));
        }
        if s.forwarded != ListMode::Off {
            let at = out.len();
            match s.forwarded {
                ListMode::Append => {
                    append(&mut out, headers, &names::FORWARDED);
                    match peer.ip() {
                        Some(ip) => write_element(
                            &mut out,
                            ip,
                            Some(facts.scheme),
                            received.map(|(s, _)| s),
                            |out| write_ip(out, ip),
                        ),
                        None => trim_separator(&mut out, at),
                    }
                }
                _ => chain.write_list(&mut out, |out, i, ip| {
                    // The client's element says what the client asked for.
                    let (proto, host) = match i {
                        0 => (Some(proto), host),
                        _ => (None, None),
                    };
                    write_element(out, ip, proto, host, |out| addrs.write(out, i, ip));
                }),
            }
            values.push((names::FORWARDED, range_or_remove(at, out.len())));
        }
        if s.x_forwarded_proto {
            values.push((names::X_FORWARDED_PROTO, Own::Static(proto)));
        }
        if s.x_forwarded_host {
            let value = match (host, host_value) {
                (Some(_), Some(v)) => Own::Received(v),
                (Some(h), None) => {
                    let at = out.len();
                    out.push_str(h);
                    Own::Range(at..out.len())
                }
                (None, _) => Own::Remove,
            };
            values.push((names::X_FORWARDED_HOST, value));
        }
        if s.x_forwarded_port {
            let at = out.len();
            if let Some(port) = facts.origin.port.or(facts.port) {
                write_port(&mut out, port);
            }
            values.push((names::X_FORWARDED_PORT, range_or_remove(at, out.len())));
        }
        // A client with no address (a Unix-socket peer nothing named) has nothing to sign:
        // the app sees no signature, and answers as it does for an unsigned request.
        if let (Some(key), Some(client)) = (&s.signing.key, r.client.node()) {
            let claim = trueip::provenance::Claim {
                client,
                source: r.source,
                hops: r.trusted_hops,
                time: facts.time.unwrap_or_else(crate::clock::unix_now),
            };
            let at = out.len();
            trueip::provenance::sign(key, &claim, &facts.request_line(), &mut out);
            values.push((s.signing.header.clone(), Own::Range(at..out.len())));
        }
        let lengths = values.iter().fold(0, |bits, (f, _)| bits | length_bit(f.as_str()));
        OwnValues { buf_valid: valid_value(out.as_bytes()), buf: out, values, lengths }
    }
}

/// A valid header value (what `HeaderValue::from_bytes` accepts): no control byte but
/// the horizontal tab, and no DEL.
pub(crate) fn valid_value(v: &[u8]) -> bool {
    // Eight bytes at a time first (the last word overlapping the one before it), since a
    // value is nearly always valid and read to its end anyway; without an early exit, so
    // that the compiler takes several words at once. The screen only says whether *some*
    // byte is below 0x20 or is 0x7f, so a word with a tab in it fails it too: then the
    // bytes decide, one at a time.
    let Some(last) = v.last_chunk::<8>() else {
        return valid_bytes(v);
    };
    let mut flags = suspicious(u64::from_le_bytes(*last));
    for word in v.as_chunks::<8>().0 {
        flags |= suspicious(u64::from_le_bytes(*word));
    }
    flags & HIGH_BITS == 0 || valid_bytes(v)
}

/// The rule itself, a byte at a time.
fn valid_bytes(v: &[u8]) -> bool {
    v.iter().fold(true, |ok, &b| ok & (((b >= 0x20) & (b != 0x7f)) | (b == b'\t')))
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// A high bit set in some byte when some byte of `x` is below 0x20 or is 0x7f (and
/// never else); which byte it marks may be wrong, past the first such byte.
const fn suspicious(x: u64) -> u64 {
    // `x - 0x20` in every byte borrows into a high bit only below 0x20 (`!x`: not from a
    // byte whose own high bit was set); `d - 1` does the same for a zero byte of `d`,
    // a byte of 0x7f in `x`. A borrow carries only from a byte the test already caught.
    let below = x.wrapping_sub(ONES * 0x20) & !x;
    let d = x ^ (ONES * 0x7f);
    (below | (d.wrapping_sub(ONES) & !d)) & HIGH_BITS
}

/// Writes the gateway's own headers into a header map, each replacing the lines of its
/// name (or removing them: [`Own::Remove`], or a value that is not a valid one).
pub(crate) fn set_own(headers: &mut HeaderMap, own: OwnValues<'_>) {
    let buf = Bytes::from(own.buf);
    headers.reserve(6);
    for (field, value) in own.values {
        let name = field.as_http();
        match value {
            Own::Range(range) => set(headers, name, &buf, range),
            Own::Static(v) => {
                headers.insert(name.clone(), HeaderValue::from_static(v));
            }
            Own::Received(v) => {
                headers.insert(name.clone(), v.clone());
            }
            Own::Remove => {
                headers.remove(name);
            }
        }
    }
}

/// Whether an upstream response line named `name` goes to the client: not hop-by-hop,
/// and not named by the response's `Connection` lines (`named`).
pub(crate) fn response_keeps(name: &str, named: &[&[u8]]) -> bool {
    !is_hop_by_hop(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
}

/// The tokens of one `Connection` line, in order, each trimmed (an empty one names
/// nothing). Every path reads a `Connection` line through this, so hyper's path and the
/// bare exchanges drop the same response lines.
pub(crate) fn connection_tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// `Content-Length` lines that do not name one length (RFC 9112 §6.3): a value that is
/// not decimal digits, or numbers that disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadLength;

/// The length so far (`None` before any `Content-Length` line) with one more line of
/// `Content-Length` read: the line holds one number, or a list of one number repeated
/// (`2, 2`, which RFC 9110 §8.6 lets a recipient take for one field), equal to the
/// length so far; anything else is [`BadLength`].
///
/// The one rule for every path's `Content-Length`, in requests and in upstream responses
/// (RFC 9110 §8.6, RFC 9112 §6.3): lengths that disagree make a request a 400 and a
/// response a 502, never forwarded; lengths that agree go on as one line of one number
/// ([`one_content_length`]), never as the lines received. Two lines of one length are
/// harmless only to a reader that merges them: one that refuses duplicates, or reads
/// the list as text, reads the message apart from the gateway, and two parsers reading
/// one message apart is what request smuggling needs. The lean HTTP/1.1 path keeps only
/// a request with one `Content-Length: 0` line, and hands every other to hyper's path.
pub(crate) fn add_content_length(
    so_far: Option<u64>,
    line: &[u8],
) -> Result<Option<u64>, BadLength> {
    let mut length = so_far;
    for value in line.split(|&b| b == b',') {
        let value = value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(BadLength);
        }
        // Digits only, checked above: past `u64` is the one way left to fail.
        let n = value
            .iter()
            .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .ok_or(BadLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(BadLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// Leaves a header map's `Content-Length` as one line of one number, by
/// [`add_content_length`]: several lines or a list of one length become one line;
/// lengths that disagree, or a value that is no length, are [`BadLength`] and the map is
/// left as it was. Beside a `Transfer-Encoding` line no `Content-Length` is left: the
/// coding frames the message and a proxy removes the length (RFC 9112 §6.3), as the bare
/// exchanges' framing does ([`add_content_length`]'s callers drop it too); kept, it
/// told a client the body a chunked response decodes to was as long as the upstream's
/// stray length, and the body was cut there and presented as whole. A map with no line,
/// or one line of digits and no coding (nearly every message), is not written.
pub(crate) fn one_content_length(headers: &mut HeaderMap) -> Result<(), BadLength> {
    let mut length = None;
    let mut lines = 0usize;
    let mut plain = true;
    for line in headers.get_all(header::CONTENT_LENGTH) {
        lines += 1;
        plain &= line.as_bytes().iter().all(u8::is_ascii_digit);
        length = add_content_length(length, line.as_bytes())?;
    }
    let Some(n) = length else {
        return Ok(());
    };
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    } else if lines > 1 || !plain {
        headers.insert(header::CONTENT_LENGTH, length_value(n));
    }
    Ok(())
}

/// The transfer codings of a response's `Transfer-Encoding` lines, read line by line
/// ([`Codings::add`]). The gateway frames an upstream body by one coding, `chunked`: it
/// passes it (the lean path) or takes it off and frames the body again (hyper's paths).
/// Any other coding stayed on the bytes while hyper's client dropped its label (`gzip,
/// chunked` reached the client as gzip bytes marked only `chunked`, RFC 9112 §6.1 asks a
/// proxy to say what it did), or went on as a list a client reads apart from the gateway
/// (`chunked, chunked`: chunked twice). No codec can pass such a body to an HTTP/2 or
/// HTTP/1.0 client at all. So an answer whose codings are anything but one `chunked` is
/// refused on every path (502), as HAProxy refuses it; nginx 1.22 did what hyper's path
/// did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Codings {
    /// Codings named so far (empty list elements are none, RFC 9110 §5.6.1).
    named: usize,
    /// Whether one of them was not `chunked`.
    other: bool,
}

impl Codings {
    /// The codings of `lines` (`None`: no line).
    pub(crate) fn of<'v>(lines: impl IntoIterator<Item = &'v [u8]>) -> Option<Self> {
        let mut codings = None;
        for line in lines {
            Codings::add(codings.get_or_insert_default(), line);
        }
        codings
    }

    /// Adds one `Transfer-Encoding` line.
    pub(crate) fn add(&mut self, line: &[u8]) {
        for coding in line.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if !coding.is_empty() {
                self.named += 1;
                self.other |= !coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }

    /// Whether the lines named `chunked` once and nothing else.
    pub(crate) fn only_chunked(&self) -> bool {
        self.named == 1 && !self.other
    }
}

/// Whether an upstream answer without a body keeps its `Content-Length` for the client:
/// an answer to `HEAD` does (the length a `GET` would have had, RFC 9110 §8.6); a `204`
/// never may, and a `304` does not either. RFC 9110 §8.6 lets a `304` carry the length of
/// the `200` it stands for, but no recipient may use it (a cache does not take a 304's
/// `Content-Length` into what it stored, RFC 9111 §3.2), and the gateway cannot check it:
/// hyper's server, which serves HTTP/1.0, bodies and upgrades, drops it, so every path
/// drops it.
pub(crate) fn bodiless_keeps_length(status: u16) -> bool {
    status != 204 && status != 304
}

/// `n` as a header value (a `Content-Length`): its digits written on the stack and
/// copied once. `HeaderValue::from(u64)` formats into a 20-byte buffer and shares it,
/// two allocations and an atomic count where one allocation does, on every answer of
/// the bare exchange.
pub(crate) fn length_value(n: u64) -> HeaderValue {
    let mut digits = [0u8; 20];
    // Digits are always a valid value: the fallback is never taken.
    HeaderValue::from_bytes(length_digits(n, &mut digits)).unwrap_or_else(|_| HeaderValue::from(n))
}

/// `n`'s decimal digits, written at the end of `digits` (a length written into a head
/// without a `String` for it).
pub(crate) fn length_digits(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut rest = n;
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + u8::try_from(rest % 10).unwrap_or_default();
        start -= 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    digits.get(start..).unwrap_or_default()
}

/// Whether a frame of a client's request body goes upstream: its data does, its
/// trailers never.
///
/// Trailer fields arrive after the head the header rules cleaned, and some servers and
/// frameworks an upstream runs merge them into the request's headers or hand them to the
/// app beside them: a client's `X-Forwarded-For` trailer would reach the app past every
/// rule. hyper's HTTP/2 client sends whatever trailers it is handed (its HTTP/1.1 client
/// only those a `Trailer` line names, and that hop-by-hop line never goes upstream). No
/// proxy writes a client's address into trailers, and nginx drops request trailers too.
pub(crate) fn request_frame_goes_upstream<D>(frame: &http_body::Frame<D>) -> bool {
    !frame.is_trailers()
}

/// Removes the lines of an upstream response that [`response_keeps`] does not keep.
pub(crate) fn response(headers: &mut HeaderMap) {
    let gone: Vec<HeaderName> = {
        let named: Vec<&[u8]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|line| connection_tokens(line.as_bytes()))
            .collect();
        headers.keys().filter(|name| !response_keeps(name.as_str(), &named)).cloned().collect()
    };
    for name in gone {
        headers.remove(name);
    }
}

/// The nodes [`for_chain`] hands out, kept in order: most chains are a few nodes.
struct Chain {
    few: [Peer; 8],
    len: usize,
    more: Vec<Peer>,
}

impl Chain {
    /// An empty chain; `filler` only fills the unused slots.
    fn new(filler: Peer) -> Self {
        Chain { few: [filler; 8], len: 0, more: Vec::new() }
    }

    fn push(&mut self, node: Peer) {
        match self.few.get_mut(self.len) {
            Some(slot) => *slot = node,
            None => self.more.push(node),
        }
        self.len += 1;
    }

    /// The nodes, left to right.
    fn iter(&self) -> impl Iterator<Item = Peer> + '_ {
        self.few.iter().take(self.len).chain(self.more.iter()).copied()
    }

    /// A list header's value: each node with an address through `write` (given its index
    /// in the chain), `, ` between them.
    fn write_list(&self, out: &mut String, mut write: impl FnMut(&mut String, usize, IpAddr)) {
        let mut first = true;
        for (i, node) in self.iter().enumerate() {
            let Some(node) = node.node() else { continue };
            if !std::mem::take(&mut first) {
                out.push_str(", ");
            }
            write(out, i, node.ip);
        }
    }
}

/// Calls `f` with each node of the trusted chain and its index, left to right: the
/// client followed by the trusted hops after it, what a clean `X-Forwarded-For` would have
/// held had every hop been honest. Entries the client wrote (left of it) are gone.
fn for_chain<H: Headers + ?Sized>(headers: &H, r: &Resolution, mut f: impl FnMut(usize, Peer)) {
    f(0, r.client);
    let mut next = 1;
    match &r.source {
        Source::Peer | Source::ProxyProtocol => return,
        Source::List { header, from_right } => {
            let take = usize::from(from_right.saturating_sub(1));
            if take > 0 {
                let field = header.field();
                // Nearly always one line: no list of lines to allocate.
                let mut one: [&[u8]; 1] = [&[]];
                let mut many: Vec<&[u8]> = Vec::new();
                let mut count = 0;
                headers.for_each_value(&field, |v| {
                    match count {
                        0 => one = [v],
                        1 => {
                            many.push(one[0]);
                            many.push(v);
                        }
                        _ => many.push(v),
                    }
                    count += 1;
                });
                let lines: &[&[u8]] = if many.is_empty() { &one } else { &many };
                let mut hops = [Node::ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)); 8];
                let mut spill: Vec<Node> = Vec::new();
                let mut n = 0;
                let mut keep = |node: Node| {
                    if let Some(slot) = hops.get_mut(n) {
                        *slot = node;
                    } else {
                        spill.push(node);
                    }
                    n += 1;
                };
                match header {
                    ListHeader::XForwardedFor => trueip::xff::Rev::new(lines)
                        .take(take)
                        .filter_map(|e| e.node())
                        .for_each(&mut keep),
                    ListHeader::Forwarded => trueip::forwarded::Rev::new(lines)
                        .take(take)
                        .filter_map(|e| e.ok().and_then(|el| el.for_node.node()))
                        .for_each(&mut keep),
                }
                // Collected right to left; handed out left to right.
                for node in spill.iter().rev().chain(hops.iter().take(n.min(8)).rev()) {
                    f(next, Peer::Ip(*node));
                    next += 1;
                }
            }
        }
        Source::Header | Source::Query | Source::Cookie => {}
    }
    f(next, r.effective_peer());
}

/// Where the text of each of the first chain nodes' addresses is in the own values'
/// buffer, once [`write_ip`] wrote it there: a header that lists the node again copies
/// it (a copy costs a fraction of writing the digits).
struct Addrs {
    /// By index in the chain (the client first); empty until written.
    written: [Range<usize>; 8],
}

impl Addrs {
    fn new() -> Self {
        Addrs { written: [const { 0..0 }; 8] }
    }

    /// Writes `ip`, chain node `i`'s address, as [`write_ip`] does.
    fn write(&mut self, out: &mut String, i: usize, ip: IpAddr) {
        match self.written.get_mut(i) {
            Some(at) if at.end > at.start => out.extend_from_within(at.clone()),
            Some(slot) => {
                let at = out.len();
                write_ip(out, ip);
                *slot = at..out.len();
            }
            None => write_ip(out, ip),
        }
    }
}

/// Writes an address as `Display` would, IPv4 without the formatting machinery: each
/// octet's digits come from a table (no division), pushed one ASCII byte at a time (a
/// `str` made of them would be validated again: more than the pushes cost).
fn write_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.reserve(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                let [a, b, c, len] = OCTETS.get(usize::from(octet)).copied().unwrap_or_default();
                out.push(char::from(a));
                if len > 1 {
                    out.push(char::from(b));
                }
                if len > 2 {
                    out.push(char::from(c));
                }
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Each octet's decimal digits, left-aligned, and how many there are.
#[allow(clippy::indexing_slicing, reason = "n < 256 by the loop condition")]
const OCTETS: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        let o = n as u8;
        table[n] = if o >= 100 {
            [b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, 3]
        } else if o >= 10 {
            [b'0' + o / 10, b'0' + o % 10, 0, 2]
        } else {
            [b'0' + o, 0, 0, 1]
        };
        n += 1;
    }
    table
};

/// Appends a port in decimal, without `fmt`.
fn write_port(out: &mut String, port: u16) {
    let mut divisor = 10_000;
    while divisor > 1 && port < divisor {
        divisor /= 10;
    }
    while divisor > 0 {
        out.push(char::from(b'0' + (port / divisor % 10) as u8));
        divisor /= 10;
    }
}

/// One `Forwarded` element naming `ip` (no port), as
/// [`trueip::forwarded::write_element`] writes it; an IPv4 address is a token, as
/// `write_v4` writes it ([`write_ip`], or a copy of what it wrote).
fn write_element(
    out: &mut String,
    ip: IpAddr,
    proto: Option<&str>,
    host: Option<&str>,
    write_v4: impl FnOnce(&mut String),
) {
    out.push_str("for=");
    match ip {
        IpAddr::V4(_) => write_v4(out),
        IpAddr::V6(_) => trueip::forwarded::write_node(out, &Node::ip(ip)),
    }
    if let Some(proto) = proto {
        out.push_str(";proto=");
        trueip::forwarded::write_value(out, proto);
    }
    if let Some(host) = host {
        out.push_str(";host=");
        trueip::forwarded::write_value(out, host);
    }
}

/// Whether `host` (`name`, `name:port`, `[v6]:port`, any case, a trailing dot allowed)
/// matches one of `allowed`. The port is not compared (as Django's ALLOWED_HOSTS and
/// ASP.NET's AllowedHosts): a listener decides which ports are served. Only a host
/// passes a pattern (`trueip::origin::is_host`): `shop.example:80@evil.com` is not
/// `shop.example` with a port, and an app that builds a link from it points at evil.com.
pub(crate) fn host_allowed(allowed: &[HostPattern], host: &[u8]) -> bool {
    if !trueip::origin::is_host(host) {
        return allowed.contains(&HostPattern::Any);
    }
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: keep the brackets, drop the port.
        Some(rest) => match rest.split_once(']') {
            Some((v6, _)) => format!("[{}]", v6.to_ascii_lowercase()),
            None => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name).to_ascii_lowercase(),
    };
    let name = name.trim_end_matches('.');
    allowed.iter().any(|p| match p {
        HostPattern::Any => true,
        HostPattern::Exact(h) => name == h,
        HostPattern::Subdomains(suffix) => {
            name.len() > suffix.len() && name.ends_with(suffix.as_str())
        }
    })
}

/// Removes the `, ` that [`append`] left at the end of `out` (past `at`), when nothing
/// follows it.
fn trim_separator(out: &mut String, at: usize) {
    if out.len() >= at + 2 && out.ends_with(", ") {
        out.truncate(out.len().saturating_sub(2));
    }
}

/// What of a received line of a list header is joined to what follows it on the
/// upstream's one line ([`append`], [`merge_lines`]): of a `Forwarded` line only what reads
/// from the right ([`trueip::forwarded::readable_suffix`]). A client's quote that never
/// closes (`for=6.6.6.6;x="` on a line of its own, or left of a trusted hop's element)
/// would otherwise open onto the trusted hops' elements and the gateway's, and an app that
/// reads the line left to right, quotes and all, would find the client's element last.
/// The decision never lets a quote span lines; the line the gateway makes must not either.
fn joinable(forwarded: bool, line: &[u8]) -> &[u8] {
    match forwarded {
        true => trueip::forwarded::readable_suffix(line),
        false => line,
    }
}

/// The received lines of `name`, each followed by `, `: what the gateway's own entry
/// is appended to.
fn append<H: Headers + ?Sized>(out: &mut String, headers: &H, name: &FieldName) {
    let forwarded = *name == names::FORWARDED;
    headers.for_each_value(name, |line| {
        let text = String::from_utf8_lossy(joinable(forwarded, line));
        let text = text.trim().trim_matches(',').trim();
        if !text.is_empty() {
            out.push_str(text);
            out.push_str(", ");
        }
    });
}

/// Sets `name` to `buf[range]`, or removes it when that is not a valid value.
fn set(headers: &mut HeaderMap, name: &HeaderName, buf: &Bytes, range: Range<usize>) {
    match HeaderValue::from_maybe_shared(buf.slice(range)) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// Several lines of one header become one, in order, joined by `, ` (RFC 9110 §5.3), each
/// [`joinable`].
fn merge_lines(headers: &mut HeaderMap, name: &HeaderName) {
    let mut values = headers.get_all(name).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let forwarded = name == header::FORWARDED;
    let mut merged: Vec<u8> = Vec::new();
    for v in headers.get_all(name) {
        let v = joinable(forwarded, v.as_bytes()).trim_ascii();
        if v.is_empty() {
            continue;
        }
        if !merged.is_empty() {
            merged.extend_from_slice(b", ");
        }
        merged.extend_from_slice(v);
    }
    match HeaderValue::from_bytes(&merged) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// HTTP/2 splits `Cookie` into one field per crumb; an HTTP/1.1 upstream needs one line
/// joined by `; ` (RFC 9113 §8.2.3).
pub(crate) fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> =
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map;
    use std::net::SocketAddr;
    use trueip::{Connection, Policy};

    #[test]
    fn every_hop_by_hop_name_is_one_in_any_case_and_no_other_is() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
            assert!(is_hop_by_hop(&name.to_ascii_uppercase()), "{name}");
        }
        for name in ["", "t", "tee", "connectio", "x-connection", "date", "content-length"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop(&"a".repeat(80)));
    }

    #[test]
    fn a_length_value_is_the_decimal_text_of_the_length() {
        let mut lengths = vec![0, u64::MAX, u64::MAX - 1];
        let mut power = 1u64;
        while let Some(next) = power.checked_mul(10) {
            lengths.extend([power - 1, power, power + 1]);
            power = next;
        }
        lengths.extend([power - 1, power, power + 1, 20, 163, 4096]);
        for n in lengths {
            let value = length_value(n);
            assert_eq!(value.as_bytes(), n.to_string().as_bytes(), "{n}");
            assert_eq!(value, HeaderValue::from(n), "{n}");
        }
    }

    /// `chunked` once, in any case, among empty list elements, is the one coding list
    /// a response may carry; anything else names a coding no path can pass on.
    #[test]
    fn only_chunked_alone_is_a_coding_the_gateway_passes() {
        let cases: &[(&[&str], Option<bool>)] = &[
            (&[], None),
            (&["chunked"], Some(true)),
            (&["Chunked"], Some(true)),
            (&[" chunked ,"], Some(true)),
            (&["", "chunked"], Some(true)),
            (&["gzip, chunked"], Some(false)),
            (&["gzip", "chunked"], Some(false)),
            (&["chunked, chunked"], Some(false)),
            (&["chunked", "chunked"], Some(false)),
            (&["gzip"], Some(false)),
            (&["identity"], Some(false)),
            (&["chunked;q=1"], Some(false)),
            (&[""], Some(false)),
            (&["chunke"], Some(false)),
        ];
        for (lines, want) in cases {
            let got = Codings::of(lines.iter().map(|l| l.as_bytes())).map(|c| c.only_chunked());
            assert_eq!(got, *want, "{lines:?}");
        }
    }

    #[test]
    fn content_length_lines_name_one_length_or_none() {
        let read = |lines: &[&str]| {
            lines.iter().try_fold(None, |so_far, line| add_content_length(so_far, line.as_bytes()))
        };
        for (lines, want) in [
            (&[][..], Ok(None)),
            (&["0"][..], Ok(Some(0))),
            (&["42"], Ok(Some(42))),
            (&["42", "42"], Ok(Some(42))),
            (&["42, 42"], Ok(Some(42))),
            (&[" 42 ,42 ", "042"], Ok(Some(42))),
            (&["18446744073709551615"], Ok(Some(u64::MAX))),
            (&["42", "43"], Err(BadLength)),
            (&["42, 43"], Err(BadLength)),
            (&["0", "100"], Err(BadLength)),
            (&[""], Err(BadLength)),
            (&["42,"], Err(BadLength)),
            (&["+42"], Err(BadLength)),
            (&["-0"], Err(BadLength)),
            (&["4 2"], Err(BadLength)),
            (&["0x10"], Err(BadLength)),
            (&["18446744073709551616"], Err(BadLength)),
        ] {
            assert_eq!(read(lines), want, "{lines:?}");
        }
        let mut map = HeaderMap::new();
        for (lines, want) in [
            (&["7", "7"][..], Some(vec!["7"])),
            (&["7, 7"], Some(vec!["7"])),
            (&["007"], Some(vec!["007"])),
            (&[], Some(vec![])),
            (&["7", "8"], None),
        ] {
            map.clear();
            for line in lines {
                map.append(header::CONTENT_LENGTH, HeaderValue::from_static(line));
            }
            // Beside a coding: checked all the same, then none is left.
            let mut coded = map.clone();
            coded.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            let coded_got = one_content_length(&mut coded);
            assert_eq!(coded_got.is_ok(), want.is_some(), "{lines:?} chunked");
            if want.is_some() {
                assert!(!coded.contains_key(header::CONTENT_LENGTH), "{lines:?} chunked");
            }
            let got = one_content_length(&mut map);
            let left: Vec<&str> = map
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            match want {
                Some(want) => assert_eq!((got, left), (Ok(()), want), "{lines:?}"),
                // Refused: the map as it was.
                None => assert_eq!((got, left), (Err(BadLength), lines.to_vec()), "{lines:?}"),
            }
        }
    }

    #[test]
    fn valid_values_are_what_header_value_accepts() {
        for b in 0..=u8::MAX {
            for value in
                [vec![b], vec![b'a', b, b'z'], [b'x'; 40].iter().chain([&b]).copied().collect()]
            {
                assert_eq!(
                    valid_value(&value),
                    HeaderValue::from_bytes(&value).is_ok(),
                    "byte {b:#04x} in {value:?}"
                );
            }
        }
    }

    /// Every byte value at every place of values up to 40 bytes long (a word and its
    /// overlapping last one, the tail, the screen's borrows), among bytes of each kind
    /// the screen treats apart: plain, tab (caught by the screen, valid), obs-text (high
    /// bit set, valid), and a bad byte before it.
    #[test]
    fn valid_value_decides_every_byte_anywhere_as_header_value_does() {
        for around in [b'a', b'\t', 0x80, 0xff, 0x00, 0x1f] {
            for len in 1..=40 {
                for at in 0..len {
                    for b in 0..=u8::MAX {
                        let mut value = vec![around; len];
                        if let Some(slot) = value.get_mut(at) {
                            *slot = b;
                        }
                        assert_eq!(
                            valid_value(&value),
                            HeaderValue::from_bytes(&value).is_ok(),
                            "byte {b:#04x} at {at} of {len} among {around:#04x}"
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any value: the screen and its byte-at-a-time fallback accept exactly what
        /// `HeaderValue::from_bytes` does.
        #[test]
        fn valid_value_is_what_header_value_accepts(
            value in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        0x00, 0x01, 0x08, b'\t', b'\n', b'\r', 0x1f, b' ', b'~', 0x7f, 0x80, 0xfe, 0xff,
                    ]),
                    0x20u8..0x7f,
                    proptest::num::u8::ANY,
                ],
                0..100,
            ),
        ) {
            proptest::prop_assert_eq!(
                valid_value(&value),
                HeaderValue::from_bytes(&value).is_ok(),
                "{:?}", value
            );
        }
    }

    /// An own value goes upstream only when it is a valid header value, whichever kind
    /// it is; a bad one among good ones in the buffer costs only itself.
    #[test]
    fn own_values_go_upstream_only_when_valid() {
        let received = HeaderValue::from_static("app.example");
        let buf = String::from("203.0.113.7a\u{1}bok");
        let own = OwnValues {
            buf_valid: valid_value(buf.as_bytes()),
            buf,
            values: Vec::new(),
            lengths: 0,
        };
        assert!(!own.buf_valid);
        assert_eq!(own.bytes(&Own::Range(0..11)), Some(&b"203.0.113.7"[..]));
        assert_eq!(own.bytes(&Own::Range(11..14)), None);
        assert_eq!(own.bytes(&Own::Range(14..16)), Some(&b"ok"[..]));
        assert_eq!(own.bytes(&Own::Static("https")), Some(&b"https"[..]));
        assert_eq!(own.bytes(&Own::Static("a\tb\u{7f}")), None);
        assert_eq!(own.bytes(&Own::Static("a\tb")), Some(&b"a\tb"[..]));
        assert_eq!(own.bytes(&Own::Received(&received)), Some(&b"app.example"[..]));
        assert_eq!(own.bytes(&Own::Remove), None);
    }

    #[test]
    fn ipv4_addresses_are_written_as_display_writes_them() {
        let mut out = String::new();
        // Every octet value, in every position.
        for a in 0..=u8::MAX {
            for b in [0u8, 7, 10, 100, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, 255 - a, a.rotate_left(3)));
                out.clear();
                write_ip(&mut out, ip);
                assert_eq!(out, ip.to_string());
            }
        }
    }

    #[test]
    fn ports_are_written_as_display_writes_them() {
        let mut out = String::new();
        for port in 0..=u16::MAX {
            out.clear();
            write_port(&mut out, port);
            assert_eq!(out, port.to_string());
        }
    }

    fn settings() -> HeaderSettings {
        HeaderSettings {
            extra: vec![FieldName::new("X-Custom-IP").unwrap()],
            ..HeaderSettings::default()
        }
    }

    /// Runs the whole pipeline: resolve on the inbound headers, then rewrite.
    fn run(
        policy: &Policy,
        peer: &str,
        pairs: &[(&str, &str)],
        s: HeaderSettings,
    ) -> (HeaderMap, u64) {
        let mut headers = header_map(pairs);
        let peer: SocketAddr = peer.parse().unwrap();
        let conn = Connection::from_peer(peer);
        let r = policy.resolve(&conn, &headers);
        let host = headers.get(header::HOST).cloned();
        let request = UpstreamLine {
            method: REQUEST.method,
            authority: REQUEST.host,
            target: REQUEST.target,
        };
        let facts = Facts {
            time: Some(1_765_020_000),
            ..Facts::new(policy, &r, &headers, "http", host.as_ref(), Some(8080), request)
        };
        let stripped = Hygiene::new(s).request(&mut headers, &facts);
        (headers, stripped)
    }

    #[test]
    fn every_client_ip_header_is_found_at_its_index_in_any_case() {
        let h = Hygiene::new(settings());
        for (i, name) in h.managed.names().iter().enumerate() {
            let name = name.as_str();
            assert_eq!(h.managed_index_ignore_case(name), Some(i), "{name}");
            let upper = name.to_ascii_uppercase();
            assert_eq!(h.managed_index_ignore_case(&upper), Some(i), "{upper}");
        }
        for other in ["accept-encoding", "x-forwarded-fox", "X-FORWARDED-FO\\", "", "x"] {
            assert_eq!(h.managed_index_ignore_case(other), None, "{other}");
        }
    }

    const REQUEST: trueip::provenance::RequestLine<'static> =
        trueip::provenance::RequestLine { method: "GET", host: "app.example", target: "/a?b=c" };

    fn signing(header: &str) -> crate::config::Signing {
        crate::config::Signing {
            header: FieldName::new(header).unwrap(),
            key: Some(trueip::provenance::Key::new(&[b'k'; 32]).unwrap()),
        }
    }

    #[test]
    fn a_client_signature_is_stripped_behind_trusted_hops_and_replaced_by_the_gateways() {
        let key = trueip::provenance::Key::new(&[b'k'; 32]).unwrap();
        let verifier =
            trueip::provenance::Verifier::new([key], trueip::provenance::MAX_WINDOW).unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_765_020_000);
        let forged = "v1;ip=1.2.3.4;port=;src=peer;hops=0;t=1765020000;n=0000000000000001;kid=AAAAAAAA;sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for (peer, signs, want_ip, want_hops) in [
            ("203.0.113.7:5000", true, "203.0.113.7", 0),
            ("10.0.0.5:5000", true, "198.51.100.1", 1),
            ("10.0.0.5:5000", false, "", 0),
            ("203.0.113.7:5000", false, "", 0),
        ] {
            let mut s = settings();
            if signs {
                s.signing = signing("trueip-signature");
            }
            let (h, stripped) = run(
                &crate::test_support::trusting_ten(),
                peer,
                &[
                    ("Host", "app.example"),
                    ("X-Forwarded-For", "198.51.100.1"),
                    ("Trueip-Signature", forged),
                    ("trueip-signature", forged),
                    ("User-Agent", "curl"),
                ],
                s,
            );
            let lines: Vec<_> = h.get_all("trueip-signature").iter().collect();
            assert!(stripped >= 2, "{peer}: {stripped}");
            if !signs {
                assert!(lines.is_empty(), "{peer}: {lines:?}");
                continue;
            }
            assert_eq!(lines.len(), 1, "{peer}: {lines:?}");
            let claim = verifier.verify_at(Some(lines[0].as_bytes()), &REQUEST, at).unwrap();
            assert_eq!(claim.client.ip.to_string(), want_ip, "{peer}");
            assert_eq!(claim.hops, want_hops, "{peer}");
        }
    }

    #[test]
    fn a_renamed_signature_header_is_the_one_stripped() {
        let mut s = settings();
        s.signing = signing("x-app-client");
        let (h, _) = run(
            &crate::test_support::trusting_ten(),
            "10.0.0.5:5000",
            &[("Host", "app.example"), ("X-App-Client", "forged")],
            s,
        );
        let lines: Vec<_> = h.get_all("x-app-client").iter().collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].to_str().unwrap().starts_with("v1;ip=10.0.0.5;"));
    }

    fn one(h: &HeaderMap, name: &str) -> String {
        let all: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {all:?}");
        all[0].to_str().unwrap().to_string()
    }

    #[test]
    fn untrusted_peer_loses_every_spelling() {
        let (h, stripped) = run(
            &crate::test_support::trusting_ten(),
            "203.0.113.7:5000",
            &[
                ("Host", "app.example"),
                ("X-Forwarded-For", "1.2.3.4"),
                ("x_forwarded_for", "1.2.3.4"),
                ("X_Real_IP", "1.2.3.4"),
                ("X-Real-Ip", "1.2.3.4"),
                ("True-Client-IP", "1.2.3.4"),
                ("X-Custom-IP", "1.2.3.4"),
                ("Forwarded", "for=1.2.3.4"),
                ("X-Forwarded-Proto", "https"),
                ("User-Agent", "curl"),
            ],
            settings(),
        );
        assert_eq!(one(&h, "x-real-ip"), "203.0.113.7");
        assert_eq!(one(&h, "x-forwarded-for"), "203.0.113.7");
        assert_eq!(one(&h, "forwarded"), "for=203.0.113.7;proto=http;host=app.example");
        assert_eq!(one(&h, "x-forwarded-proto"), "http");
        assert_eq!(one(&h, "x-forwarded-port"), "8080");
        assert_eq!(one(&h, "x-forwarded-host"), "app.example");
        for gone in ["x_forwarded_for", "x_real_ip", "true-client-ip", "x-custom-ip"] {
            assert!(h.get(gone).is_none(), "{gone} survived");
        }
        assert_eq!(one(&h, "user-agent"), "curl");
        assert_eq!(stripped, 8);
    }

    #[test]
    fn underscore_spellings_go_even_from_a_trusted_hop() {
        let (h, _) = run(
            &crate::test_support::trusting_ten(),
            "10.0.0.5:1",
            &[("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.9")],
            settings(),
        );
        assert!(h.get("x_forwarded_for").is_none());
        assert_eq!(one(&h, "x-forwarded-for"), "198.51.100.9, 10.0.0.5");
    }

    #[test]
    fn connection_tokens_cannot_delete_gateway_headers() {
        let (h, _) = run(
            &crate::test_support::trusting_ten(),
            "10.0.0.5:1",
            &[
                (
                    "Connection",
                    "X-Real-IP, X-Forwarded-For, x_forwarded_for, Forwarded, Host, X-Secret-Thing",
                ),
                ("Host", "app.example"),
                ("X-Forwarded-For", "198.51.100.9"),
                ("X-Secret-Thing", "hop-only"),
                ("Keep-Alive", "timeout=5"),
            ],
            settings(),
        );
        assert_eq!(one(&h, "x-real-ip"), "198.51.100.9");
        assert_eq!(one(&h, "x-forwarded-for"), "198.51.100.9, 10.0.0.5");
        assert_eq!(one(&h, "host"), "app.example");
        assert!(h.get("forwarded").is_some());
        assert!(h.get("x-secret-thing").is_none(), "named hop-by-hop header stays removed");
        assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
    }

    #[test]
    fn several_lines_become_one_and_forged_entries_go() {
        let (h, _) = run(
            &crate::test_support::trusting_ten(),
            "10.0.0.5:1",
            &[
                ("X-Forwarded-For", "6.6.6.6, 7.7.7.7"),
                ("X-Forwarded-For", "198.51.100.9, 10.1.1.1"),
                ("CF-Connecting-IP", "1.1.1.1"),
                ("CF-Connecting-IP", "2.2.2.2"),
            ],
            settings(),
        );
        assert_eq!(one(&h, "x-forwarded-for"), "198.51.100.9, 10.1.1.1, 10.0.0.5");
        assert_eq!(one(&h, "forwarded"), "for=198.51.100.9;proto=http, for=10.1.1.1, for=10.0.0.5");
        // The policy reads X-Forwarded-For only: a trusted hop's CF-Connecting-IP may be
        // the client's, relayed.
        assert!(h.get("cf-connecting-ip").is_none());
        let (h, stripped) = run(
            &crate::test_support::trusting_ten(),
            "10.0.0.5:1",
            &[("CF-Connecting-IP", "1.1.1.1"), ("CF-Connecting-IP", "2.2.2.2")],
            HeaderSettings {
                relayed: vec![FieldName::new("cf-connecting-ip").unwrap()],
                ..settings()
            },
        );
        assert_eq!(one(&h, "cf-connecting-ip"), "1.1.1.1, 2.2.2.2");
        assert_eq!(stripped, 0);
    }

    /// Each address of the chain in every header that lists it is the address as
    /// `Display` writes it (in `Forwarded`, IPv6 quoted and bracketed): the first few are
    /// written once and copied after, the rest written each time, IPv4 and IPv6 in any
    /// mix, the client in `X-Real-IP` too.
    #[test]
    fn chain_addresses_are_written_alike_in_every_header() {
        let policy = Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .trust_str("fd00::/8")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap();
        for hops in 0..12usize {
            for mix in 0..4usize {
                let six = |k: usize| match mix {
                    0 => false,
                    1 => true,
                    _ => (k + mix).is_multiple_of(2),
                };
                let chain: Vec<IpAddr> = (0..hops + 2)
                    .map(|k| {
                        let text = match (k, six(k)) {
                            (0, false) => "203.0.113.7".to_owned(),
                            (0, true) => "2001:db8::7".to_owned(),
                            (k, false) => format!("10.0.{k}.1"),
                            (k, true) => format!("fd00::{k:x}"),
                        };
                        text.parse().unwrap()
                    })
                    .collect();
                let (sent, peer) = chain.split_at(hops + 1);
                let xff: Vec<String> = sent.iter().map(ToString::to_string).collect();
                let peer = SocketAddr::new(peer[0], 1).to_string();
                let (h, _) =
                    run(&policy, &peer, &[("X-Forwarded-For", &xff.join(", "))], settings());
                let case = format!("{hops} hops, mix {mix}");
                let listed: Vec<String> = chain.iter().map(ToString::to_string).collect();
                assert_eq!(one(&h, "x-real-ip"), listed[0], "{case}");
                assert_eq!(one(&h, "x-forwarded-for"), listed.join(", "), "{case}");
                let elements: Vec<String> = chain
                    .iter()
                    .enumerate()
                    .map(|(i, ip)| {
                        let node = match ip {
                            IpAddr::V4(_) => ip.to_string(),
                            IpAddr::V6(_) => format!("\"[{ip}]\""),
                        };
                        match i {
                            0 => format!("for={node};proto=http"),
                            _ => format!("for={node}"),
                        }
                    })
                    .collect();
                assert_eq!(one(&h, "forwarded"), elements.join(", "), "{case}");
            }
        }
    }

    #[test]
    fn append_mode_keeps_what_trusted_hops_sent() {
        let mut s = settings();
        s.x_forwarded_for = ListMode::Append;
        s.forwarded = ListMode::Append;
        // As the config's check relays them: `append` extends what trusted hops sent.
        s.relayed =
            vec![trueip::headers::names::X_FORWARDED_FOR, trueip::headers::names::FORWARDED];
        let (h, _) = run(
            &crate::test_support::trusting_ten(),
            "10.0.0.5:1",
            &[
                ("Host", "h"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-For", "198.51.100.9"),
                ("Forwarded", "for=198.51.100.9"),
            ],
            s.clone(),
        );
        assert_eq!(one(&h, "x-forwarded-for"), "6.6.6.6, 198.51.100.9, 10.0.0.5");
        assert_eq!(one(&h, "forwarded"), "for=198.51.100.9, for=10.0.0.5;proto=http;host=h");
        let (h, _) = run(
            &crate::test_support::trusting_ten(),
            "192.0.2.1:1",
            &[("X-Forwarded-For", "6.6.6.6")],
            s,
        );
        assert_eq!(one(&h, "x-forwarded-for"), "192.0.2.1");
    }

    #[test]
    fn mixed_forwarded_and_x_headers_from_an_untrusted_peer() {
        let (h, _) = run(
            &Policy::default(),
            "[2001:db8::7]:443",
            &[
                ("Forwarded", "for=1.2.3.4;proto=https"),
                ("X-Forwarded-For", "5.6.7.8"),
                ("X-Forwarded-Host", "evil"),
            ],
            settings(),
        );
        assert_eq!(one(&h, "forwarded"), "for=\"[2001:db8::7]\";proto=http");
        assert_eq!(one(&h, "x-forwarded-for"), "2001:db8::7");
        assert!(h.get("x-forwarded-host").is_none());
    }

    #[test]
    fn switched_off_headers_are_not_set_but_still_stripped() {
        let mut s = settings();
        s.x_real_ip = false;
        s.forwarded = ListMode::Off;
        s.x_forwarded_port = false;
        let (h, _) = run(
            &Policy::default(),
            "192.0.2.1:1",
            &[("X-Real-IP", "1.1.1.1"), ("Forwarded", "for=1.1.1.1")],
            s,
        );
        assert!(
            h.get("x-real-ip").is_none()
                && h.get("forwarded").is_none()
                && h.get("x-forwarded-port").is_none()
        );
        assert_eq!(one(&h, "x-forwarded-for"), "192.0.2.1");
    }

    #[test]
    fn forwarded_chain_from_forwarded_source() {
        let policy = Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .from_list(ListHeader::Forwarded)
            .build()
            .unwrap();
        let (h, _) = run(
            &policy,
            "10.0.0.5:1",
            &[(
                "Forwarded",
                "for=6.6.6.6, for=\"[2001:db8::1]:80\";proto=https;host=a.example, for=10.2.2.2",
            )],
            settings(),
        );
        assert_eq!(one(&h, "x-forwarded-for"), "2001:db8::1, 10.2.2.2, 10.0.0.5");
        assert_eq!(one(&h, "x-forwarded-proto"), "https");
        assert_eq!(one(&h, "x-forwarded-host"), "a.example");
    }

    #[test]
    fn only_a_websocket_upgrade_is_forwarded() {
        use http::{Method, Version};
        let ws = header_map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")]);
        assert_eq!(upgrade_to_forward(&Method::GET, Version::HTTP_11, &ws), Some(WEBSOCKET));
        assert_eq!(upgrade_to_forward(&Method::POST, Version::HTTP_11, &ws), None);
        assert_eq!(upgrade_to_forward(&Method::GET, Version::HTTP_10, &ws), None);
        let h2c = header_map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ]);
        assert_eq!(upgrade_to_forward(&Method::GET, Version::HTTP_11, &h2c), None);
        let unasked = header_map(&[("upgrade", "websocket")]);
        assert_eq!(upgrade_to_forward(&Method::GET, Version::HTTP_11, &unasked), None);
        // Offered among others: only websocket is forwarded.
        let both = header_map(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        assert_eq!(upgrade_to_forward(&Method::GET, Version::HTTP_11, &both), Some(WEBSOCKET));
    }

    #[test]
    fn a_101_tunnels_only_to_the_protocol_asked() {
        assert!(may_tunnel(Some(WEBSOCKET), Some(b"websocket")));
        assert!(may_tunnel(Some(WEBSOCKET), Some(b" WebSocket ")));
        assert!(!may_tunnel(Some(WEBSOCKET), Some(b"h2c")));
        assert!(!may_tunnel(Some(WEBSOCKET), Some(b"websocket, h2c")));
        assert!(!may_tunnel(Some(WEBSOCKET), None));
        assert!(!may_tunnel(None, Some(b"h2c")));
        assert!(!may_tunnel(None, Some(b"websocket")));
    }

    /// The fate of one line is the rule both wire paths apply (the hyper path to a
    /// `HeaderMap`, the lean path line by line).
    #[test]
    fn each_line_has_one_fate() {
        let mut s = settings();
        s.origin_secret = Some(FieldName::new("X-Origin-Verify").unwrap());
        let h = Hygiene::new(s);
        let named = h.connection_named(
            [&b"close, X-Internal, X-Real-IP, x_forwarded_for, Host"[..]].into_iter(),
        );
        assert_eq!(named, [&b"close"[..], b"X-Internal"]);
        let policy = Policy::builder().trust_str("10.0.0.0/8").unwrap().build().unwrap();
        // From a trusted hop, a client address the policy does not read is dropped (not
        // counted as a forgery); a claim about the request passes.
        for (name, trusted, untrusted) in [
            ("X-Forwarded-For", Fate::Keep, Fate::Strip),
            ("x-custom-ip", Fate::Drop, Fate::Strip),
            ("True-Client-IP", Fate::Drop, Fate::Strip),
            ("X-Forwarded-Proto", Fate::Keep, Fate::Strip),
            ("X_Forwarded_For", Fate::Strip, Fate::Strip),
            ("X-Origin-Verify", Fate::Drop, Fate::Drop),
            ("X_Origin_Verify", Fate::Strip, Fate::Strip),
            ("Keep-Alive", Fate::Drop, Fate::Drop),
            ("HTTP2-Settings", Fate::Drop, Fate::Drop),
            ("x-internal", Fate::Drop, Fate::Drop),
            ("X-Real-IP", Fate::Drop, Fate::Strip),
            ("Host", Fate::Keep, Fate::Keep),
            ("User-Agent", Fate::Keep, Fate::Keep),
        ] {
            assert_eq!(
                h.request_fate(
                    name,
                    Hop::Trusted { policy: &policy, decided: Some(0), unkept: None },
                    &named
                ),
                trusted,
                "{name} trusted"
            );
            assert_eq!(h.request_fate(name, Hop::Untrusted, &named), untrusted, "{name}");
        }
        assert!(response_keeps("content-type", &named));
        assert!(!response_keeps("X-Internal", &named));
        assert!(!response_keeps("transfer-encoding", &[]));
    }

    #[test]
    fn http2_settings_never_reaches_the_upstream() {
        let (h, _) = run(
            &Policy::default(),
            "192.0.2.1:1",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
            settings(),
        );
        for gone in ["connection", "upgrade", "http2-settings"] {
            assert!(h.get(gone).is_none(), "{gone} survived");
        }
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = header_map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(one(&h, "cookie"), "a=1; b=2");
    }

    #[test]
    fn response_hop_by_hop() {
        let mut h = header_map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "5"),
            ("content-type", "text/plain"),
        ]);
        response(&mut h);
        assert_eq!(h.len(), 1);
    }
}
