//! A list header's entries, read from the right: the iteration every walk, the trace and
//! `explain` share. Each header kind only chooses its parser; nothing here decides trust.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::{Node, Peer};
use crate::entry::Entry;
use crate::headers::Lines;
use crate::resolution::ListHeader;
use crate::trust::TrustSet;
use crate::{forwarded, xff};

/// A list header's entries from the right. Each header kind only chooses its parser.
#[derive(Clone)]
pub(crate) enum Rev<'a, 'l> {
    Xff(xff::Rev<'a, 'l>),
    Forwarded(forwarded::Rev<'a, 'l>),
}

impl<'a, 'l> Rev<'a, 'l> {
    pub(crate) fn new(list: ListHeader, lines: &'l Lines<'a>) -> Self {
        match list {
            ListHeader::XForwardedFor => Rev::Xff(xff::Rev::new(lines.as_slice())),
            ListHeader::Forwarded => Rev::Forwarded(forwarded::Rev::new(lines.as_slice())),
        }
    }
}

impl<'a> Iterator for Rev<'a, '_> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        match self {
            Rev::Xff(rev) => rev.next(),
            Rev::Forwarded(rev) => rev.next().map(|element| match element {
                Ok(element) => element.for_node,
                Err((text, why)) => Entry::Malformed { text, why },
            }),
        }
    }
}

/// One list entry as the walk needs it: an IPv4 address (the common case, kept in
/// registers), or any other entry as [`Entry`] classifies it.
#[derive(Clone, Copy)]
pub(crate) enum Hop<'a> {
    V4(std::net::Ipv4Addr, Option<u16>),
    Entry(Entry<'a>),
}

impl<'a> Hop<'a> {
    /// The address, if the entry is one, as the walk carries it.
    #[inline(always)]
    pub(crate) fn client(self) -> Option<Client> {
        match self {
            Hop::V4(ip, port) => Some(Client::v4(ip, port)),
            Hop::Entry(entry) => entry.node().map(Client::from),
        }
    }

    /// The entry, as [`Entry`] classifies it.
    #[inline]
    pub(crate) fn entry(self) -> Entry<'a> {
        match self {
            Hop::V4(ip, port) => Entry::Addr(Node { ip: IpAddr::V4(ip), port }),
            Hop::Entry(entry) => entry,
        }
    }
}

/// The address of the `n`-th entry from the right (1-based), re-read from the lines.
pub(crate) fn node_at(list: ListHeader, lines: &Lines<'_>, n: u16) -> Option<Node> {
    Rev::new(list, lines).nth(usize::from(n).checked_sub(1)?)?.node()
}

impl<'a> Rev<'a, '_> {
    /// Like `next`, with X-Forwarded-For's IPv4 elements parsed on the fast path.
    #[inline(always)]
    pub(crate) fn next_hop(&mut self) -> Option<Hop<'a>> {
        match self {
            Rev::Xff(rev) => Some(match rev.next_fast()? {
                xff::Raw::V4(bits) => Hop::V4(std::net::Ipv4Addr::from_bits(bits), None),
                xff::Raw::Other(raw) => match crate::addr::parse_v4_node_fast(raw) {
                    Some((ip, port)) => Hop::V4(ip, port),
                    None => Hop::Entry(xff::parse_element(raw)),
                },
            }),
            Rev::Forwarded(_) => self.next().map(Hop::Entry),
        }
    }

    /// Whether any entry is left, without parsing it where that can be avoided.
    pub(crate) fn has_more(&mut self) -> bool {
        match self {
            Rev::Xff(rev) => rev.next_raw().is_some(),
            Rev::Forwarded(_) => self.next().is_some(),
        }
    }
}

/// A [`Node`] as the per-request path carries it, turned back into one only for the
/// [`Resolution`](crate::Resolution).
///
/// Why not `Node`: `IpAddr` is a 17-byte enum with 1-byte alignment, so LLVM kept every
/// `Found` in memory and copied it in odd-sized pieces; reloading those pieces with wider
/// loads right after the narrow stores that wrote them stalled store forwarding on every
/// request. Plain integer fields are split into registers instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    /// The address bits (an IPv4 address in the low 32 bits; none for a Unix peer).
    bits: u128,
    family: Family,
    port: Option<u16>,
}

/// What kind of party a [`Client`] is. A Unix-socket peer has no address bits: it is
/// told apart by this tag, never by a reserved address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Unix,
}

impl Client {
    #[inline(always)]
    pub(crate) fn v4(ip: Ipv4Addr, port: Option<u16>) -> Self {
        Client { bits: u128::from(ip.to_bits()), family: Family::V4, port }
    }

    /// A peer connected over a Unix socket.
    pub(crate) fn unix() -> Self {
        Client { bits: 0, family: Family::Unix, port: None }
    }

    /// Whether `set` trusts this party; an IPv4 address goes straight to the IPv4
    /// intervals, a Unix peer is trusted only by a set that names `unix`.
    #[inline(always)]
    pub(crate) fn trusted_by(self, set: &TrustSet) -> bool {
        match self.family {
            Family::V4 => set.contains_v4(Ipv4Addr::from_bits(self.bits as u32)),
            Family::V6 => set.contains(IpAddr::V6(Ipv6Addr::from_bits(self.bits))),
            Family::Unix => set.trusts_unix(),
        }
    }

    /// The address; `None` for a Unix peer.
    #[inline(always)]
    pub(crate) fn ip(self) -> Option<IpAddr> {
        match self.family {
            Family::V4 => Some(IpAddr::V4(Ipv4Addr::from_bits(self.bits as u32))),
            Family::V6 => Some(IpAddr::V6(Ipv6Addr::from_bits(self.bits))),
            Family::Unix => None,
        }
    }

    #[inline(always)]
    pub(crate) fn peer(self) -> Peer {
        match self.ip() {
            Some(ip) => Peer::Ip(Node { ip, port: self.port }),
            None => Peer::Unix,
        }
    }
}

impl From<Node> for Client {
    #[inline(always)]
    fn from(node: Node) -> Self {
        match node.ip {
            IpAddr::V4(ip) => Client::v4(ip, node.port),
            IpAddr::V6(ip) => Client { bits: ip.to_bits(), family: Family::V6, port: node.port },
        }
    }
}

impl From<Peer> for Client {
    #[inline(always)]
    fn from(peer: Peer) -> Self {
        match peer {
            Peer::Ip(node) => Client::from(node),
            Peer::Unix => Client::unix(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_round_trips_nodes() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4:80",
            "[::]:1",
            "[::1.2.3.4]:65535",
            "2001:db8::1",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:443",
        ] {
            let node = match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => Node::from(addr),
                Err(_) => Node::ip(text.parse().unwrap()),
            };
            let client = Client::from(node);
            assert_eq!(client.peer(), Peer::Ip(node), "{text}");
            assert_eq!(client.ip(), Some(node.ip), "{text}");
        }
        // The same bits as IPv4 and as IPv6 are different clients.
        let v4 = Client::from(Node::ip("0.0.0.1".parse().unwrap()));
        let v6 = Client::from(Node::ip("::1".parse().unwrap()));
        assert_ne!(v4, v6);
        assert_ne!(v4.ip(), v6.ip());
    }
}
