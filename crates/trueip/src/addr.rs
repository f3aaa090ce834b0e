//! Addresses as forwarding headers write them, parsed strictly and normalised.
//!
//! Every comparison trueip makes (is this hop trusted?) happens on a normalised
//! [`IpAddr`]: IPv4-mapped IPv6 (`::ffff:10.0.0.1`) becomes the IPv4 address, IPv6
//! zone ids (`fe80::1%eth0`) are dropped, and IPv4 text with leading zeros
//! (`010.0.0.1`, which some libraries read as octal) or out-of-range octets is
//! rejected rather than guessed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest address text we look at: a bracketed IPv6 with zone id and port
/// fits well inside this. Longer text is malformed without further parsing.
const MAX_NODE_LEN: usize = 96;

/// An address taken from a header, with the port when the header carried one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The normalised address.
    pub ip: IpAddr,
    /// The port written next to it (`1.2.3.4:80`, `[2001:db8::1]:443`), if any.
    pub port: Option<u16>,
}

impl Node {
    /// A node without a port.
    pub const fn ip(ip: IpAddr) -> Self {
        Node { ip, port: None }
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`: as `IpAddr` and
/// `SocketAddr` print them. Width and fill are not applied.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => write!(f, "{ip}"),
            (IpAddr::V4(ip), Some(port)) => write!(f, "{ip}:{port}"),
            (IpAddr::V6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
        }
    }
}

/// Who is at the other end of a connection, or who the client turned out to be: an
/// address (and port), or a process on this host connected over a Unix socket.
///
/// A Unix-socket connection has no IP peer, and trueip never invents one: such a peer
/// is [`Peer::Unix`], which no CIDR, named set or provider list contains — only the
/// trust spec `unix` trusts it. When a trusted Unix peer's forwarding headers name the
/// client, the client is an address as usual; when nothing names one (the peer is not
/// trusted, or sent no usable header), the client is [`Peer::Unix`]: a local process,
/// not an address, so nothing that needs an IP (a rate-limit key, an allow-list, a
/// header naming the client) can mistake it for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// An IP peer (a TCP connection), or a client address found in a header.
    Ip(Node),
    /// A connection over a Unix socket: a process on this host, with no address.
    Unix,
}

impl Peer {
    /// The address, if there is one.
    pub fn node(self) -> Option<Node> {
        match self {
            Peer::Ip(node) => Some(node),
            Peer::Unix => None,
        }
    }

    /// The IP address, if there is one.
    pub fn ip(self) -> Option<IpAddr> {
        self.node().map(|n| n.ip)
    }

    /// Whether this is a Unix-socket peer.
    pub fn is_unix(self) -> bool {
        matches!(self, Peer::Unix)
    }
}

impl From<Node> for Peer {
    fn from(node: Node) -> Self {
        Peer::Ip(node)
    }
}

impl From<IpAddr> for Peer {
    fn from(ip: IpAddr) -> Self {
        Peer::Ip(Node::ip(normalize(ip)))
    }
}

impl From<std::net::SocketAddr> for Peer {
    fn from(addr: std::net::SocketAddr) -> Self {
        Peer::Ip(Node { ip: normalize(addr.ip()), port: Some(addr.port()) })
    }
}

/// An address prints as [`Node`] does; a Unix-socket peer as `unix:` (nginx's
/// `$remote_addr` for such a connection), which no address parser reads back.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(node) => node.fmt(f),
            Peer::Unix => f.write_str("unix:"),
        }
    }
}

/// Why a piece of header text is not an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// Nothing but whitespace.
    Empty,
    /// Longer than any address can be.
    TooLong,
    /// Not IPv4, not IPv6.
    NotAnAddress,
    /// An IPv4 octet with a leading zero (`010`): octal to some parsers, decimal to others.
    LeadingZero,
    /// A port that is not 1–5 digits up to 65535.
    BadPort,
    /// An address that is never the source of a TCP connection: unspecified (`0.0.0.0`,
    /// `::`), the IPv4 broadcast address or multicast. No hop saw a client there.
    NotASource,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::Empty => "empty",
            AddrError::TooLong => "too long to be an address",
            AddrError::NotAnAddress => "not an IP address",
            AddrError::LeadingZero => {
                "IPv4 octet with a leading zero (ambiguous: octal or decimal?)"
            }
            AddrError::BadPort => "invalid port",
            AddrError::NotASource => {
                "never the source of a TCP connection (unspecified, broadcast or multicast)"
            }
        })
    }
}

impl std::error::Error for AddrError {}

/// Whether `ip` can be the source address of a TCP connection, and so a client: not
/// unspecified (`0.0.0.0`, `::`), not the IPv4 broadcast address, not multicast. nginx
/// refuses `255.255.255.255` the same way; a hop that writes one did not see a client.
/// Every parser of an address a hop *reports* (list elements, single-address headers,
/// PROXY sources) goes through this one rule.
#[inline(always)]
pub fn can_be_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_can_be_source(v4.to_bits()),
        IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_multicast(),
    }
}

/// [`can_be_source`] for an IPv4 address as bits, for the per-element fast paths.
#[inline(always)]
pub(crate) const fn v4_can_be_source(bits: u32) -> bool {
    // 224.0.0.0/4 is multicast.
    bits != 0 && bits != u32::MAX && bits >> 28 != 0xE
}

/// `node`, if its address [`can_be_source`].
#[inline(always)]
pub(crate) fn source(node: Node) -> Result<Node, AddrError> {
    if can_be_source(node.ip) { Ok(node) } else { Err(AddrError::NotASource) }
}

/// Maps IPv4-mapped IPv6 to IPv4; leaves everything else alone.
#[inline]
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        // `::ffff:a.b.c.d`: the upper 96 bits are 0xffff. Tested as one number rather than
        // octet by octet (`to_ipv4_mapped`): that split the address into bytes, which a
        // caller building a `Peer` stored one at a time and `resolve` read back eight at a
        // time, a load that waits for the stores it cannot be forwarded from.
        IpAddr::V6(v6) if v6.to_bits() >> 32 == 0xffff => {
            IpAddr::V4(Ipv4Addr::from_bits(v6.to_bits() as u32))
        }
        ip => ip,
    }
}

/// Parses a bare address (no port, no brackets): IPv4 in strict dotted-decimal, or
/// IPv6 with an optional zone id, which is dropped. The result is normalised.
pub fn parse_ip(text: &[u8]) -> Result<IpAddr, AddrError> {
    if text.is_empty() {
        return Err(AddrError::Empty);
    }
    if text.len() > MAX_NODE_LEN {
        return Err(AddrError::TooLong);
    }
    if text.contains(&b':') {
        parse_ipv6(text).map(|v6| normalize(IpAddr::V6(v6)))
    } else {
        parse_ipv4(text).map(IpAddr::V4)
    }
}

/// Strict dotted-decimal IPv4: four octets, 0–255, no leading zeros, nothing else.
///
/// Written by hand rather than with `Ipv4Addr::from_str` because it sits on the
/// per-request path and works on bytes: it is several times faster than going
/// through `str` and the standard parser, and it reports leading zeros separately.
pub fn parse_ipv4(text: &[u8]) -> Result<Ipv4Addr, AddrError> {
    if let Some(addr) = parse_ipv4_exact(text) {
        return Ok(addr);
    }
    match parse_ipv4_prefix(text)? {
        (addr, []) => Ok(addr),
        _ => Err(AddrError::NotAnAddress),
    }
}

/// The decimal octet at the end of `text` (1–3 digits, no leading zero, at most 255),
/// the byte left of it (`None` at the start of `text`), and the text left of that byte.
/// A digit as that byte is caught by the caller, which expects a separator there.
///
/// Written as a cascade that looks at each byte once, from the right, and hands back the
/// separator it read rather than have the caller read it again: a `match` over slice
/// patterns of each length re-tested the same bytes in every arm, and was a third of
/// the time of a whole walk.
#[inline(always)]
fn octet_back(text: &[u8]) -> Option<(u32, Option<u8>, &[u8])> {
    let digit = |b: u8| u32::from(b.wrapping_sub(b'0'));
    let (&c, rest) = text.split_last()?;
    let c = digit(c);
    if c > 9 {
        return None;
    }
    let Some((&b, rest)) = rest.split_last() else {
        return Some((c, None, rest));
    };
    let b_digit = digit(b);
    if b_digit > 9 {
        return Some((c, Some(b), rest));
    }
    let Some((&a, rest)) = rest.split_last() else {
        return (b_digit != 0).then_some((b_digit * 10 + c, None, rest));
    };
    let a_digit = digit(a);
    if a_digit > 9 {
        return (b_digit != 0).then_some((b_digit * 10 + c, Some(a), rest));
    }
    let value = a_digit * 100 + b_digit * 10 + c;
    if a_digit == 0 || value > 255 {
        return None;
    }
    match rest.split_last() {
        Some((&separator, rest)) => Some((value, Some(separator), rest)),
        None => Some((value, None, rest)),
    }
}

/// A canonical dotted quad ending `text`, read from the right in one pass: its bits, the
/// byte left of it (if any) and the text left of that byte. `None` when the end of
/// `text` is not one.
#[inline(always)]
pub(crate) fn dotted_quad_back(text: &[u8]) -> Option<(u32, Option<u8>, &[u8])> {
    // Octets from the right, kept in one u32 (a register), lowest octet first.
    let mut rest = text;
    let mut addr = 0u32;
    for shift in [0, 8, 16] {
        let (octet, Some(b'.'), left) = octet_back(rest)? else {
            return None;
        };
        addr |= octet << shift;
        rest = left;
    }
    let (octet, separator, left) = octet_back(rest)?;
    Some((addr | octet << 24, separator, left))
}

/// Exactly a dotted quad in canonical form, read from the right; `None` for anything
/// else, including every error, which [`parse_ipv4_prefix`] then names.
#[inline(always)]
fn parse_ipv4_exact(text: &[u8]) -> Option<Ipv4Addr> {
    match dotted_quad_back(text)? {
        (addr, None, _) => Some(Ipv4Addr::from_bits(addr)),
        _ => None,
    }
}

/// A dotted quad at the start of `text`, and the bytes after it.
#[inline(always)]
fn parse_ipv4_prefix(text: &[u8]) -> Result<(Ipv4Addr, &[u8]), AddrError> {
    // Accumulated in one u32 rather than four u8 slots: writing bytes and reading them
    // back as a word stalls store forwarding on the per-element path.
    let mut addr: u32 = 0;
    let mut rest = text;
    for i in 0..4 {
        let mut value: u32 = 0;
        let mut digits = 0u32;
        let mut first = 0u8;
        while let [d @ b'0'..=b'9', tail @ ..] = rest {
            if digits == 3 {
                return Err(AddrError::NotAnAddress);
            }
            if digits == 0 {
                first = *d;
            }
            value = value * 10 + u32::from(d - b'0');
            digits += 1;
            rest = tail;
        }
        if digits == 0 || value > 255 {
            return Err(AddrError::NotAnAddress);
        }
        if digits > 1 && first == b'0' {
            return Err(AddrError::LeadingZero);
        }
        addr = (addr << 8) | value;
        if i < 3 {
            match rest {
                [b'.', tail @ ..] => rest = tail,
                _ => return Err(AddrError::NotAnAddress),
            }
        }
    }
    Ok((Ipv4Addr::from_bits(addr), rest))
}

/// IPv6 text, with an optional `%zone` that is dropped. An embedded IPv4 part is
/// held to the same no-leading-zeros rule as plain IPv4.
fn parse_ipv6(text: &[u8]) -> Result<Ipv6Addr, AddrError> {
    let addr = match text.iter().position(|&b| b == b'%') {
        Some(at) => {
            let (addr, zone) = split_around(text, at);
            // A zone id is an interface name or number: printable, no separators.
            if zone.is_empty()
                || !zone.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
            {
                return Err(AddrError::NotAnAddress);
            }
            addr
        }
        None => text,
    };
    if let Some(dot) = addr.iter().position(|&b| b == b'.') {
        // The standard parser accepts `::ffff:010.0.0.1`; we do not.
        let start = addr.split_at(dot).0.iter().rposition(|&b| b == b':').map_or(0, |c| c + 1);
        parse_ipv4(addr.split_at(start).1)?;
    }
    let s = std::str::from_utf8(addr).map_err(|_| AddrError::NotAnAddress)?;
    s.parse::<Ipv6Addr>().map_err(|_| AddrError::NotAnAddress)
}

/// Parses 1–5 decimal digits into a port.
pub fn parse_port(text: &[u8]) -> Result<u16, AddrError> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return Err(AddrError::BadPort);
    }
    let value = text.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| AddrError::BadPort)
}

/// Parses an address as X-Forwarded-For, X-Real-IP and similar headers write it:
/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
/// Surrounding whitespace is ignored. A bare IPv6 address never carries a port. An
/// address that [cannot be a source](can_be_source) is an error.
#[inline]
pub fn parse_node(text: &[u8]) -> Result<Node, AddrError> {
    // The fast path below only takes addresses that can be sources.
    if let Some((v4, port)) = parse_v4_node_fast(trim(text)) {
        return Ok(Node { ip: IpAddr::V4(v4), port });
    }
    parse_any_node(text).and_then(source)
}

/// [`parse_node`] without the source rule.
fn parse_any_node(text: &[u8]) -> Result<Node, AddrError> {
    let text = trim(text);
    if text.len() > MAX_NODE_LEN {
        return Err(AddrError::TooLong);
    }
    match text {
        [] => Err(AddrError::Empty),
        [b'[', inner @ ..] => {
            let close = inner.iter().position(|&b| b == b']').ok_or(AddrError::NotAnAddress)?;
            let (v6, after) = split_around(inner, close);
            let ip = normalize(IpAddr::V6(parse_ipv6(v6)?));
            match after {
                [] => Ok(Node { ip, port: None }),
                [b':', port @ ..] => Ok(Node { ip, port: Some(parse_port(port)?) }),
                _ => Err(AddrError::NotAnAddress),
            }
        }
        _ => {
            let mut colons = text.iter().enumerate().filter(|(_, b)| **b == b':');
            match (colons.next(), colons.next()) {
                (Some((at, _)), None) => {
                    let (host, port) = split_around(text, at);
                    let ip = IpAddr::V4(parse_ipv4(host)?);
                    Ok(Node { ip, port: Some(parse_port(port)?) })
                }
                _ => parse_ip(text).map(Node::ip),
            }
        }
    }
}

/// `1.2.3.4` or `1.2.3.4:80` (already trimmed), in one pass; `None` for anything else,
/// which [`parse_node`] then decides. Returns plain integers so the per-element walk keeps
/// them in registers instead of copying 17-byte `IpAddr`s through the stack.
#[inline(always)]
pub(crate) fn parse_v4_node_fast(text: &[u8]) -> Option<(Ipv4Addr, Option<u16>)> {
    match parse_ipv4_prefix(text).ok().filter(|(v4, _)| v4_can_be_source(v4.to_bits()))? {
        (v4, []) => Some((v4, None)),
        (v4, [b':', port @ ..]) if !port.contains(&b':') => {
            Some((v4, Some(parse_port(port).ok()?)))
        }
        _ => None,
    }
}

/// Parses `ip:port` where an IPv6 address is written without brackets and the
/// port follows the last colon, as in CloudFront's `CloudFront-Viewer-Address`
/// (`2001:db8::1:443`). The bracketed form is accepted too.
pub fn parse_ip_port_last_colon(text: &[u8]) -> Result<Node, AddrError> {
    let text = trim(text);
    if let [b'[', ..] = text {
        return parse_node(text);
    }
    let at = text.iter().rposition(|&b| b == b':').ok_or(AddrError::BadPort)?;
    let (host, port) = split_around(text, at);
    let ip = parse_ip(host)?;
    source(Node { ip, port: Some(parse_port(port)?) })
}

/// The bytes before and after the separator at `at` (the separator itself dropped).
pub(crate) fn split_around(text: &[u8], at: usize) -> (&[u8], &[u8]) {
    let (before, after) = text.split_at(at.min(text.len()));
    (before, after.get(1..).unwrap_or_default())
}

/// Strips spaces and tabs (HTTP's optional whitespace) from both ends.
pub(crate) fn trim(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `normalize` tests the upper 96 bits as one number; the standard library's
    /// `to_ipv4_mapped` reads the octets. They agree on a mapped address and on every
    /// address one bit away from it (each bit of the prefix, each of the IPv4 part).
    #[test]
    fn normalize_maps_exactly_the_ipv4_mapped_addresses() {
        let mapped: u128 = 0xffff_c633_6405; // ::ffff:198.51.100.5
        for bits in std::iter::once(mapped).chain((0..128).map(|i| mapped ^ (1u128 << i))) {
            let v6 = Ipv6Addr::from_bits(bits);
            let want = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            assert_eq!(normalize(IpAddr::V6(v6)), want, "{v6}");
        }
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 5));
        assert_eq!(normalize(IpAddr::V6(Ipv6Addr::from_bits(mapped))), v4);
        assert_eq!(normalize(v4), v4);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Explanations, the whoami page and the access log print nodes; a port makes the
    /// text a socket address as `std` writes one.
    #[test]
    fn nodes_print_as_std_prints_addresses() {
        for text in ["0.0.0.0", "10.0.0.1", "255.255.255.255", "2001:db8::1", "::ffff:10.0.0.1"] {
            let addr = ip(text);
            assert_eq!(Node::ip(addr).to_string(), addr.to_string());
            for port in [0, 9, 443, 65535] {
                let node = Node { ip: addr, port: Some(port) };
                assert_eq!(node.to_string(), std::net::SocketAddr::new(addr, port).to_string());
            }
        }
    }

    /// The one-pass reader takes every canonical quad and nothing else: over every
    /// combination of awkward octets, it agrees with the digit-by-digit parser.
    #[test]
    fn exact_ipv4_agrees_with_general_parser() {
        let octets = [
            "0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "00", "01",
            "010", "1000", "", "1a", " 1",
        ];
        for a in octets {
            for b in octets {
                for c in octets {
                    for d in octets {
                        let text = format!("{a}.{b}.{c}.{d}");
                        let general = match parse_ipv4_prefix(text.as_bytes()) {
                            Ok((addr, [])) => Some(addr),
                            _ => None,
                        };
                        assert_eq!(parse_ipv4_exact(text.as_bytes()), general, "{text:?}");
                    }
                }
            }
        }
        for text in ["1.2.3", "1.2.3.4.5", ".1.2.3.4", "1.2.3.4.", "1,2.3.4", "1.2.3.4:80"] {
            assert_eq!(parse_ipv4_exact(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn ipv4_strict() {
        let cases: &[(&str, Result<&str, AddrError>)] = &[
            ("1.2.3.4", Ok("1.2.3.4")),
            ("0.0.0.0", Ok("0.0.0.0")),
            ("255.255.255.255", Ok("255.255.255.255")),
            ("256.1.1.1", Err(AddrError::NotAnAddress)),
            ("010.0.0.1", Err(AddrError::LeadingZero)),
            ("10.00.0.1", Err(AddrError::LeadingZero)),
            ("1.2.3", Err(AddrError::NotAnAddress)),
            ("1.2.3.4.5", Err(AddrError::NotAnAddress)),
            ("1.2.3.4 ", Err(AddrError::NotAnAddress)),
            ("1..3.4", Err(AddrError::NotAnAddress)),
            ("1.2.3.0004", Err(AddrError::NotAnAddress)),
            ("0x1.2.3.4", Err(AddrError::NotAnAddress)),
            ("", Err(AddrError::Empty)),
        ];
        for (text, want) in cases {
            let got = parse_ip(text.as_bytes());
            assert_eq!(got, want.map(ip), "{text:?}");
        }
    }

    #[test]
    fn ipv6_normalised() {
        assert_eq!(parse_ip(b"::ffff:10.0.0.1"), Ok(ip("10.0.0.1")));
        assert_eq!(parse_ip(b"::FFFF:a00:1"), Ok(ip("10.0.0.1")));
        assert_eq!(parse_ip(b"fe80::1%eth0"), Ok(ip("fe80::1")));
        assert_eq!(parse_ip(b"fe80::1%"), Err(AddrError::NotAnAddress));
        assert_eq!(parse_ip(b"::ffff:010.0.0.1"), Err(AddrError::LeadingZero));
        assert_eq!(parse_ip(b"2001:db8::1"), Ok(ip("2001:db8::1")));
        assert_eq!(parse_ip(b"2001:db8:::1"), Err(AddrError::NotAnAddress));
        assert_eq!(parse_ip(b"::1.2.3.4"), Ok(ip("::1.2.3.4")), "IPv4-compatible is not mapped");
    }

    #[test]
    fn nodes() {
        let node = |s: &str, p: Option<u16>| Ok(Node { ip: ip(s), port: p });
        assert_eq!(parse_node(b" 1.2.3.4 "), node("1.2.3.4", None));
        assert_eq!(parse_node(b"1.2.3.4:80"), node("1.2.3.4", Some(80)));
        assert_eq!(parse_node(b"[2001:db8::1]:443"), node("2001:db8::1", Some(443)));
        assert_eq!(parse_node(b"[2001:db8::1]"), node("2001:db8::1", None));
        assert_eq!(parse_node(b"2001:db8::1"), node("2001:db8::1", None));
        assert_eq!(parse_node(b"[::ffff:1.2.3.4]:1"), node("1.2.3.4", Some(1)));
        assert_eq!(parse_node(b"1.2.3.4:65536"), Err(AddrError::BadPort));
        assert_eq!(parse_node(b"1.2.3.4:"), Err(AddrError::BadPort));
        assert_eq!(parse_node(b"[2001:db8::1]x"), Err(AddrError::NotAnAddress));
        assert_eq!(parse_node(b"[2001:db8::1"), Err(AddrError::NotAnAddress));
        assert_eq!(parse_node(b"unknown"), Err(AddrError::NotAnAddress));
        assert_eq!(parse_node(b"  "), Err(AddrError::Empty));
    }

    #[test]
    fn viewer_address() {
        let got = parse_ip_port_last_colon(b"2001:db8::1:443").unwrap();
        assert_eq!((got.ip, got.port), (ip("2001:db8::1"), Some(443)));
        let got = parse_ip_port_last_colon(b"203.0.113.7:5123").unwrap();
        assert_eq!((got.ip, got.port), (ip("203.0.113.7"), Some(5123)));
        assert!(parse_ip_port_last_colon(b"203.0.113.7").is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in ["1.2.3.4", "1.2.3.4:80", "[2001:db8::1]:443", "2001:db8::1"] {
            let node = parse_node(text.as_bytes()).unwrap();
            assert_eq!(parse_node(node.to_string().as_bytes()), Ok(node));
        }
    }
}
