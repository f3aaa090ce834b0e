//! Header hygiene: what the upstream may believe about the client.
//!
//! The order matters, and each step closes a known hole:
//!
//! 1. **Hop-by-hop.** `Connection`, `Keep-Alive`, `TE`, `Upgrade`, ... and every header
//!    *named* in `Connection` are removed — except client-IP headers and `Host`. Other
//!    proxies honour `Connection: X-Real-IP` *after* setting their own headers, so a
//!    client can delete what the proxy wrote; here such tokens are ignored, and the
//!    gateway's own headers are written last anyway.
//! 2. **Underscore spellings.** `X_Forwarded_For` becomes `HTTP_X_FORWARDED_FOR` in
//!    WSGI/CGI, the same variable as the real header. Any spelling of a client-IP header
//!    with underscores is removed, whoever sent it: no honest proxy writes one.
//! 3. **Untrusted hop.** If the request did not come through a trusted hop (the peer, or
//!    the PROXY source of a trusted sender, is not trusted by the policy), every
//!    client-IP header is removed: the client wrote it. From a trusted hop they stay,
//!    several lines of one header merged into one.
//! 4. **The gateway's own headers**, one clean line each: `X-Real-IP`,
//!    `X-Forwarded-For` and `Forwarded` (`replace`: the client and the trusted hops
//!    after it; `append`: the received list plus the peer), `X-Forwarded-Proto`,
//!    `-Host`, `-Port`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use trueip::headers::names;
use trueip::origin::Origin;
use trueip::{FieldName, ListHeader, Node, Resolution, Source};

use crate::config::{HeaderSettings, ListMode};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard ones proxies still see).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// The header policy, with names prepared once.
#[derive(Clone, Debug)]
pub struct Hygiene {
    settings: HeaderSettings,
    /// Every client-IP header: the core's list plus configured names.
    managed: Vec<HeaderName>,
}

/// What the gateway knows about one request, beyond its headers.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The decision.
    pub resolution: &'a Resolution,
    /// Whether the request came through a trusted hop (its client-IP headers may stay).
    pub trusted_hop: bool,
    /// Scheme, host and port as trusted hops reported them.
    pub origin: &'a Origin,
    /// The scheme of the gateway's own connection (`https` under TLS).
    pub scheme: &'static str,
    /// The host the request asked for (Host header or `:authority`).
    pub host: Option<&'a HeaderValue>,
    /// The port the client connected to (the listener's, or the PROXY destination's).
    pub port: u16,
}

impl Hygiene {
    /// Prepares the header policy.
    pub fn new(settings: HeaderSettings) -> Self {
        let mut managed: Vec<HeaderName> = names::FORWARDING
            .iter()
            .map(|n| n.as_http().clone())
            .collect();
        for name in settings.extra.iter().chain(&settings.origin_secret) {
            if !managed.contains(name.as_http()) {
                managed.push(name.as_http().clone());
            }
        }
        Hygiene { settings, managed }
    }

    /// Whether `lower` (a lower-case header name) is a client-IP header.
    pub fn is_managed(&self, lower: &str) -> bool {
        self.managed.iter().any(|n| n.as_str() == lower)
    }

    /// Rewrites request headers for the upstream. Returns how many client-IP header
    /// lines were removed because they did not come through a trusted hop (or were
    /// underscore spellings).
    pub fn request(&self, headers: &mut HeaderMap, facts: &Facts<'_>) -> u64 {
        let mut stripped = 0;
        self.remove_hop_by_hop(headers);

        // Underscore spellings, always.
        let underscored: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().contains('_') && self.is_managed(&k.as_str().replace('_', "-")))
            .cloned()
            .collect();
        for name in underscored {
            stripped += remove_all(headers, &name);
        }

        // The origin secret has done its job; the app has no use for it.
        if let Some(secret) = &self.settings.origin_secret {
            headers.remove(secret.as_http());
        }

        if facts.trusted_hop {
            for name in &self.managed {
                merge_lines(headers, name);
            }
        } else {
            for name in &self.managed {
                stripped += remove_all(headers, name);
            }
        }

        self.set_own(headers, facts);
        stripped
    }

    fn remove_hop_by_hop(&self, headers: &mut HeaderMap) {
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                let Ok(name) = HeaderName::from_bytes(token) else {
                    continue;
                };
                let lower = name.as_str();
                let protected = lower == "host"
                    || self.is_managed(lower)
                    || self.is_managed(&lower.replace('_', "-"));
                if !protected && !named.contains(&name) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    }

    fn set_own(&self, headers: &mut HeaderMap, facts: &Facts<'_>) {
        let r = facts.resolution;
        let s = &self.settings;
        if s.x_real_ip {
            set(headers, names::X_REAL_IP.as_http(), r.client.ip.to_string());
        }
        let peer = effective_peer(r);
        // Read before any header is rewritten: the chain comes from the received list.
        let chain = trusted_chain(headers, r);
        if s.x_forwarded_for != ListMode::Off {
            let value = match s.x_forwarded_for {
                ListMode::Append => append(headers, &names::X_FORWARDED_FOR, peer.ip.to_string()),
                _ => chain
                    .iter()
                    .map(|n| n.ip.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            set(headers, names::X_FORWARDED_FOR.as_http(), value);
        }
        let proto = facts.origin.proto.map_or(facts.scheme, |p| p.as_str());
        let host = match &facts.origin.host {
            Some(h) => Some(h.as_str()),
            None => facts.host.and_then(|h| h.to_str().ok()),
        };
        if s.forwarded != ListMode::Off {
            let value = match s.forwarded {
                ListMode::Append => {
                    let mut own = String::new();
                    trueip::forwarded::write_element(
                        &mut own,
                        Some(&Node::ip(peer.ip)),
                        None,
                        Some(facts.scheme),
                        facts.host.and_then(|h| h.to_str().ok()),
                    );
                    append(headers, &names::FORWARDED, own)
                }
                _ => {
                    let mut out = String::new();
                    for (i, node) in chain.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let node = Node::ip(node.ip);
                        // The client's element says what the client asked for.
                        let (proto, host) = if i == 0 {
                            (Some(proto), host)
                        } else {
                            (None, None)
                        };
                        trueip::forwarded::write_element(&mut out, Some(&node), None, proto, host);
                    }
                    out
                }
            };
            set(headers, names::FORWARDED.as_http(), value);
        }
        if s.x_forwarded_proto {
            set(
                headers,
                names::X_FORWARDED_PROTO.as_http(),
                proto.to_string(),
            );
        }
        if s.x_forwarded_host {
            match host {
                Some(h) => set(headers, names::X_FORWARDED_HOST.as_http(), h.to_string()),
                None => {
                    headers.remove(names::X_FORWARDED_HOST.as_http());
                }
            }
        }
        if s.x_forwarded_port {
            set(
                headers,
                names::X_FORWARDED_PORT.as_http(),
                facts.origin.port.unwrap_or(facts.port).to_string(),
            );
        }
    }

    /// Removes hop-by-hop headers from an upstream response.
    pub fn response(&self, headers: &mut HeaderMap) {
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            for token in value.as_bytes().split(|&b| b == b',') {
                if let Ok(name) = HeaderName::from_bytes(token.trim_ascii()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// The hop that handed the request to the gateway, as HTTP sees it: the PROXY source
/// when a trusted sender supplied one, else the TCP peer.
pub fn effective_peer(r: &Resolution) -> Node {
    r.proxy_source.unwrap_or(r.peer)
}

/// The client followed by the trusted hops after it, left to right: what a clean
/// `X-Forwarded-For` would have held had every hop been honest. Entries the client
/// wrote (left of it) are gone.
pub fn trusted_chain(headers: &HeaderMap, r: &Resolution) -> Vec<Node> {
    let mut chain = vec![r.client];
    match &r.source {
        Source::Peer | Source::ProxyProtocol => return chain,
        Source::List { header, from_right } => {
            let field = header.field();
            let lines: Vec<&[u8]> = headers
                .get_all(field.as_http())
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            let take = usize::from(from_right.saturating_sub(1));
            let mut hops: Vec<Node> = match header {
                ListHeader::XForwardedFor => trueip::xff::Rev::new(&lines)
                    .take(take)
                    .filter_map(|e| e.node())
                    .collect(),
                ListHeader::Forwarded => trueip::forwarded::Rev::new(&lines)
                    .take(take)
                    .filter_map(|e| e.ok().and_then(|el| el.for_node.node()))
                    .collect(),
            };
            hops.reverse();
            chain.extend(hops);
        }
        Source::Header => {}
    }
    chain.push(effective_peer(r));
    chain
}

fn append(headers: &HeaderMap, name: &FieldName, own: String) -> String {
    let mut out = String::new();
    for line in headers.get_all(name.as_http()) {
        let text = String::from_utf8_lossy(line.as_bytes());
        let text = text.trim().trim_matches(',').trim();
        if !text.is_empty() {
            out.push_str(text);
            out.push_str(", ");
        }
    }
    out.push_str(&own);
    out
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    match HeaderValue::try_from(value) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn remove_all(headers: &mut HeaderMap, name: &HeaderName) -> u64 {
    match headers.entry(name) {
        header::Entry::Occupied(e) => e.remove_entry_mult().1.count() as u64,
        header::Entry::Vacant(_) => 0,
    }
}

/// Several lines of one header become one, in order, joined by `, ` (RFC 9110 §5.3).
fn merge_lines(headers: &mut HeaderMap, name: &HeaderName) {
    let mut values = headers.get_all(name).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut merged: Vec<u8> = Vec::new();
    for v in headers.get_all(name) {
        let v = v.as_bytes().trim_ascii();
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
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use trueip::{Connection, Policy};

    fn settings() -> HeaderSettings {
        HeaderSettings {
            x_real_ip: true,
            x_forwarded_for: ListMode::Replace,
            forwarded: ListMode::Replace,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            x_forwarded_port: true,
            extra: vec![FieldName::new("X-Custom-IP").unwrap()],
            origin_secret: None,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Runs the whole pipeline: resolve on the inbound headers, then rewrite.
    fn run(
        policy: &Policy,
        peer: &str,
        pairs: &[(&str, &str)],
        s: HeaderSettings,
    ) -> (HeaderMap, u64) {
        let mut headers = map(pairs);
        let peer: SocketAddr = peer.parse().unwrap();
        let conn = Connection::from_peer(peer);
        let r = policy.resolve(&conn, &headers);
        let trusted_hop = policy.trusts(effective_peer(&r).ip);
        let origin = if r.trusted_hops > 0 {
            trueip::origin::origin(&headers, &r)
        } else {
            Origin::default()
        };
        let host = headers.get(header::HOST).cloned();
        let facts = Facts {
            resolution: &r,
            trusted_hop,
            origin: &origin,
            scheme: "http",
            host: host.as_ref(),
            port: 8080,
        };
        let stripped = Hygiene::new(s).request(&mut headers, &facts);
        (headers, stripped)
    }

    fn one(h: &HeaderMap, name: &str) -> String {
        let all: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {all:?}");
        all[0].to_str().unwrap().to_string()
    }

    fn trusting() -> Policy {
        Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn untrusted_peer_loses_every_spelling() {
        let (h, stripped) = run(
            &trusting(),
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
        assert_eq!(
            one(&h, "forwarded"),
            "for=203.0.113.7;proto=http;host=app.example"
        );
        assert_eq!(one(&h, "x-forwarded-proto"), "http");
        assert_eq!(one(&h, "x-forwarded-port"), "8080");
        assert_eq!(one(&h, "x-forwarded-host"), "app.example");
        for gone in [
            "x_forwarded_for",
            "x_real_ip",
            "true-client-ip",
            "x-custom-ip",
        ] {
            assert!(h.get(gone).is_none(), "{gone} survived");
        }
        assert_eq!(one(&h, "user-agent"), "curl");
        assert_eq!(stripped, 8);
    }

    #[test]
    fn underscore_spellings_go_even_from_a_trusted_hop() {
        let (h, _) = run(
            &trusting(),
            "10.0.0.5:1",
            &[
                ("X_Forwarded_For", "6.6.6.6"),
                ("X-Forwarded-For", "198.51.100.9"),
            ],
            settings(),
        );
        assert!(h.get("x_forwarded_for").is_none());
        assert_eq!(one(&h, "x-forwarded-for"), "198.51.100.9, 10.0.0.5");
    }

    #[test]
    fn connection_tokens_cannot_delete_gateway_headers() {
        let (h, _) = run(
            &trusting(),
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
        assert!(
            h.get("x-secret-thing").is_none(),
            "named hop-by-hop header stays removed"
        );
        assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
    }

    #[test]
    fn several_lines_become_one_and_forged_entries_go() {
        let (h, _) = run(
            &trusting(),
            "10.0.0.5:1",
            &[
                ("X-Forwarded-For", "6.6.6.6, 7.7.7.7"),
                ("X-Forwarded-For", "198.51.100.9, 10.1.1.1"),
                ("CF-Connecting-IP", "1.1.1.1"),
                ("CF-Connecting-IP", "2.2.2.2"),
            ],
            settings(),
        );
        assert_eq!(
            one(&h, "x-forwarded-for"),
            "198.51.100.9, 10.1.1.1, 10.0.0.5"
        );
        assert_eq!(
            one(&h, "forwarded"),
            "for=198.51.100.9;proto=http, for=10.1.1.1, for=10.0.0.5"
        );
        assert_eq!(one(&h, "cf-connecting-ip"), "1.1.1.1, 2.2.2.2");
    }

    #[test]
    fn append_mode_keeps_what_trusted_hops_sent() {
        let mut s = settings();
        s.x_forwarded_for = ListMode::Append;
        s.forwarded = ListMode::Append;
        let (h, _) = run(
            &trusting(),
            "10.0.0.5:1",
            &[
                ("Host", "h"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-For", "198.51.100.9"),
                ("Forwarded", "for=198.51.100.9"),
            ],
            s.clone(),
        );
        assert_eq!(
            one(&h, "x-forwarded-for"),
            "6.6.6.6, 198.51.100.9, 10.0.0.5"
        );
        assert_eq!(
            one(&h, "forwarded"),
            "for=198.51.100.9, for=10.0.0.5;proto=http;host=h"
        );
        let (h, _) = run(
            &trusting(),
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
        assert_eq!(
            one(&h, "x-forwarded-for"),
            "2001:db8::1, 10.2.2.2, 10.0.0.5"
        );
        assert_eq!(one(&h, "x-forwarded-proto"), "https");
        assert_eq!(one(&h, "x-forwarded-host"), "a.example");
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(one(&h, "cookie"), "a=1; b=2");
    }

    #[test]
    fn response_hop_by_hop() {
        let mut h = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "5"),
            ("content-type", "text/plain"),
        ]);
        Hygiene::new(settings()).response(&mut h);
        assert_eq!(h.len(), 1);
    }
}
