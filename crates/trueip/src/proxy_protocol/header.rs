//! What a header decodes into, and what the encoder takes: [`ProxyHeader`] and its
//! parts, and [`Decode`], the answer to "is there a whole header in these bytes yet?".

use std::net::SocketAddr;

use super::tlv::Tlvs;

/// Which header format was on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The human-readable `PROXY ...\r\n` line.
    V1,
    /// The binary format starting with the 12-byte signature.
    V2,
}

/// What the sender says the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// The proxy opened the connection for itself (a health check): use the
    /// socket's own addresses. v1 `UNKNOWN` decodes to this too, since the
    /// specification gives it the same meaning.
    Local,
    /// The connection is relayed on behalf of a client; `addrs`, when present,
    /// are that client's.
    Proxy,
}

/// The proxied connection's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Unknown or not applicable (v1 `UNKNOWN`, v2 `UNSPEC`, every `LOCAL` header).
    Unspec,
    /// `SOCK_STREAM`: TCP, or a UNIX stream socket.
    Stream,
    /// `SOCK_DGRAM`: UDP, or a UNIX datagram socket.
    Datagram,
}

/// The proxied connection's endpoints. Both have the same address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyAddrs {
    /// The client, as the proxy saw it (`getpeername`).
    pub source: SocketAddr,
    /// The address the client connected to on the proxy (`getsockname`).
    pub destination: SocketAddr,
}

/// A decoded (or to-be-encoded) PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// The format it was read in. [`encode_v2`](super::encode_v2) ignores this field.
    pub version: Version,
    /// `Local` (use the socket's addresses) or `Proxy` (relayed).
    pub command: Command,
    /// The relayed connection's transport; `Unspec` for every `Local` header.
    pub transport: Transport,
    /// The relayed endpoints. `None` for `Local`, v1 `UNKNOWN`, v2 `UNSPEC`, and
    /// v2 `AF_UNIX` (whose addresses are consumed but not returned).
    /// IPv4-mapped IPv6 addresses are returned as sent.
    pub addrs: Option<ProxyAddrs>,
    /// v2 extensions; empty for v1.
    pub tlvs: Tlvs,
}

/// The outcome of feeding bytes to a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per connection and matched at once; boxing would cost an \
              allocation and a deref in every caller to save a few hundred bytes of stack"
)]
pub enum Decode {
    /// The buffer is a valid beginning of a header but not a whole one.
    Incomplete {
        /// The fewest additional bytes after which calling again can make
        /// progress (always at least 1). Exact for v2 once the 16-byte fixed part
        /// has arrived; 1 for v1, which has no length field.
        needed: usize,
    },
    /// A whole, valid header.
    Complete {
        /// The decoded header.
        header: ProxyHeader,
        /// The header's length in bytes; `buf[consumed..]` is application data.
        consumed: usize,
    },
}
