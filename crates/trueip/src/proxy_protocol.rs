//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
//! `proxy-protocol.txt` specifies them: a decoder for untrusted bytes and an
//! encoder for the headers this crate sends.
//!
//! Written here rather than taken from `ppp` or `proxy-header` (which parse faster by
//! borrowing the TLVs; see BENCHMARKS.md) so that the decoder holds untrusted bytes to
//! trueip's rules — no leading-zero octets or ports, no family mismatch, no duplicate
//! TLV, CRC32c checked — reports exactly how many more bytes it needs, and decodes the
//! AWS and Azure TLVs. It is fuzzed (`fuzz/fuzz_targets/proxy_protocol.rs`).
//!
//! # Incremental use
//!
//! The codec does no I/O. Append every read to one buffer and call [`decode`]
//! on the whole buffer after each read:
//!
//! - [`Decode::Incomplete`] `{ needed }`: read at least `needed` more bytes and
//!   call again. Nothing is consumed; the call is cheap to repeat.
//! - [`Decode::Complete`] `{ header, consumed }`: the header is the first
//!   `consumed` bytes; everything after them is the application's data, untouched.
//! - `Err(_)`: the peer sent something that is not a valid header. The
//!   specification says to abort the connection; do not fall back to treating the
//!   bytes as application data.
//!
//! A v1 line is at most [`V1_MAX_LEN`] bytes and the decoder fails once that many
//! arrived without a CRLF. A v2 header may be up to [`V2_MAX_LEN`] bytes; to impose
//! a smaller cap, reject the connection when `buf.len() + needed` exceeds it.
//!
//! ```
//! use trueip::proxy_protocol::{decode, Command, Decode};
//!
//! let mut buf = Vec::new();
//! let reads: [&[u8]; 2] = [b"PROXY TCP4 192.0.2.1 198.51", b".100.7 56324 443\r\nGET / HTTP/1.1\r\n"];
//! for read in reads {
//!     buf.extend_from_slice(read);
//!     match decode(&buf)? {
//!         Decode::Incomplete { needed } => assert!(needed >= 1), // read more, call again
//!         Decode::Complete { header, consumed } => {
//!             assert_eq!(header.command, Command::Proxy);
//!             let addrs = header.addrs.expect("TCP4 carries addresses");
//!             assert_eq!(addrs.source.to_string(), "192.0.2.1:56324");
//!             assert_eq!(buf.get(consumed..), Some(&b"GET / HTTP/1.1\r\n"[..]));
//!         }
//!     }
//! }
//! # Ok::<(), trueip::proxy_protocol::ProxyError>(())
//! ```
//!
//! # Trust
//!
//! A PROXY header is a claim made by whoever opened the TCP connection. It is
//! *safe* to believe when the listener accepts connections only from your own
//! load balancer, and that load balancer always sends the header. It is *unsafe*
//! on a listener the public can reach: any client can open with
//! `PROXY TCP4 203.0.113.9 ...` and be logged, rate-limited and allow-listed as
//! 203.0.113.9. For the same reason a listener must never guess whether a header
//! is present (specification §5): [`looks_like_proxy`] exists for diagnostics
//! ("this port received a PROXY header but is not configured for one"), not to
//! decide whether to decode.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Longest v1 line a receiver must accept, CRLF included (specification §2.1:
/// `PROXY UNKNOWN` followed by two full-width IPv6 addresses and two ports).
pub const V1_MAX_LEN: usize = 107;

/// Size of the fixed part of a v2 header: signature, version/command,
/// family/transport and the 16-bit length of what follows.
pub const V2_HEADER_MIN: usize = 16;

/// Largest possible v2 header: the fixed part plus a 16-bit payload length.
/// This is a hard bound of the format; callers may impose a smaller cap.
pub const V2_MAX_LEN: usize = V2_HEADER_MIN + 65535;

const V1_PREFIX: &[u8; 6] = b"PROXY ";
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Bytes quoted back in "not a PROXY header" errors.
const QUOTED_PREFIX_LEN: usize = 16;

const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_CRC32C: u8 = 0x03;
const PP2_TYPE_NOOP: u8 = 0x04;
const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
const PP2_TYPE_NETNS: u8 = 0x30;
/// AWS (PrivateLink / NLB); the first value byte is a subtype.
const PP2_TYPE_AWS: u8 = 0xEA;
const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;
/// Azure (Private Link service); the first value byte is a subtype.
const PP2_TYPE_AZURE: u8 = 0xEE;
const PP2_SUBTYPE_AZURE_LINK_ID: u8 = 0x01;
/// Specification §2.2.5: "an opaque byte sequence of up to 128 bytes".
const UNIQUE_ID_MAX: usize = 128;
/// `client` (1 byte) and `verify` (4 bytes) before the SSL sub-TLVs.
const SSL_FIXED_LEN: usize = 5;

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

/// The `PP2_TYPE_SSL` TLV: how the client reached the proxy over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ssl {
    /// Bit field: `0x01` client used TLS, `0x02` client sent a certificate on
    /// this connection, `0x04` client sent a certificate on this TLS session.
    pub client: u8,
    /// Zero if the client certificate was presented and verified, non-zero otherwise.
    pub verify: u32,
    /// TLS version, e.g. `TLSv1.3` (sub-TLV `0x21`).
    pub version: Option<String>,
    /// Cipher, e.g. `ECDHE-RSA-AES128-GCM-SHA256` (sub-TLV `0x23`).
    pub cipher: Option<String>,
    /// Signature algorithm of the proxy's own certificate, e.g. `RSA-SHA256` (sub-TLV `0x24`).
    pub sig_alg: Option<String>,
    /// Key algorithm of the proxy's own certificate, e.g. `RSA2048` (sub-TLV `0x25`).
    pub key_alg: Option<String>,
    /// Common Name of the client certificate's subject (sub-TLV `0x22`).
    pub cn: Option<String>,
}

/// The v2 type-length-value extensions. Empty for v1 headers.
///
/// Each known type may appear at most once in a header; a repeated one is an
/// error rather than a silent "last one wins". `PP2_TYPE_NOOP` is skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tlvs {
    /// `PP2_TYPE_ALPN` (`0x01`): the negotiated application protocol, e.g. `h2`.
    pub alpn: Option<Vec<u8>>,
    /// `PP2_TYPE_AUTHORITY` (`0x02`): the host name the client asked for (TLS SNI).
    pub authority: Option<String>,
    /// `PP2_TYPE_CRC32C` (`0x03`): the header's checksum. Decoding verifies it.
    /// When encoding, `Some(_)` asks for a checksum; the value written is computed
    /// and this field's value is ignored.
    pub crc32c: Option<u32>,
    /// `PP2_TYPE_UNIQUE_ID` (`0x05`): an opaque connection id of at most 128 bytes.
    pub unique_id: Option<Vec<u8>>,
    /// `PP2_TYPE_SSL` (`0x20`) and its sub-TLVs.
    pub ssl: Option<Ssl>,
    /// `PP2_TYPE_NETNS` (`0x30`): the network namespace the connection arrived in.
    pub netns: Option<String>,
    /// AWS (`0xEA`) subtype `0x01`: the VPC endpoint id, e.g. `vpce-08d2bf15fac5001c9`.
    pub aws_vpce_id: Option<String>,
    /// Azure (`0xEE`) subtype `0x01`: the Private Link `LINKID`, little-endian on the wire.
    pub azure_link_id: Option<u32>,
    /// Every other TLV as `(type, value)`, in wire order. This includes `0xEA` and
    /// `0xEE` TLVs whose subtype is not `0x01`.
    pub other: Vec<(u8, Vec<u8>)>,
}

/// A decoded (or to-be-encoded) PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// The format it was read in. [`encode_v2`] ignores this field.
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

/// Which field of a v1 line an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V1Field {
    /// The fourth field, e.g. `192.0.2.1`.
    SourceAddress,
    /// The fifth field.
    DestinationAddress,
    /// The sixth field, e.g. `56324`.
    SourcePort,
    /// The seventh field.
    DestinationPort,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// Why bytes are not a valid PROXY header.
///
/// Apart from [`ProxyError::NotProxy`] (the peer is not speaking the protocol at
/// all: check that it is configured to send it), every variant means the sender
/// produced a malformed header; the fix belongs to the proxy in front. Offsets are
/// byte positions from the start of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// Neither `PROXY ` nor the v2 signature starts the buffer.
    NotProxy {
        /// The first bytes received (at most 16).
        prefix: Vec<u8>,
    },
    /// A v1 line must start with exactly `PROXY ` (uppercase, one space).
    V1BadPrefix {
        /// The first bytes received (at most 16).
        prefix: Vec<u8>,
    },
    /// No CRLF within the first [`V1_MAX_LEN`] bytes.
    V1MissingCrlf,
    /// A CR not followed by LF, or an LF not preceded by CR.
    V1StrayLineBreak {
        /// Where the lone CR or LF is.
        offset: usize,
    },
    /// The line does not have the shape `PROXY <proto> <src> <dst> <sport> <dport>`
    /// with single spaces.
    V1Malformed {
        /// The line, without CRLF (lossily decoded).
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The protocol field is not `TCP4`, `TCP6` or `UNKNOWN` (case matters).
    V1UnknownProtocol {
        /// The protocol field as received (lossily decoded).
        protocol: String,
    },
    /// An address field is not a valid address of the line's family.
    V1InvalidAddress {
        /// Which address.
        field: V1Field,
        /// The field as received (lossily decoded).
        value: String,
        /// `"IPv4"` or `"IPv6"`.
        expected: &'static str,
    },
    /// An IPv4 octet with a leading zero, which some parsers read as octal.
    V1AddressLeadingZero {
        /// Which address.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// An IPv6 address on a `TCP4` line, or an IPv4 address on a `TCP6` line.
    V1FamilyMismatch {
        /// `"TCP4"` or `"TCP6"`.
        protocol: &'static str,
        /// Which address.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// A port field that is not a decimal number.
    V1InvalidPort {
        /// Which port.
        field: V1Field,
        /// The field as received (lossily decoded).
        value: String,
    },
    /// A port with a leading zero.
    V1PortLeadingZero {
        /// Which port.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// A port above 65535.
    V1PortOutOfRange {
        /// Which port.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// The buffer does not start with the 12-byte v2 signature.
    V2BadSignature {
        /// The first bytes received (at most 16).
        prefix: Vec<u8>,
    },
    /// The version nibble (high half of byte 13) is not 2.
    V2BadVersion {
        /// The nibble received.
        version: u8,
    },
    /// The command nibble (low half of byte 13) is neither LOCAL (0) nor PROXY (1).
    V2BadCommand {
        /// The nibble received.
        command: u8,
    },
    /// Byte 14 is not one of `0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32`.
    V2BadFamilyTransport {
        /// The byte received.
        byte: u8,
    },
    /// The declared length is shorter than the family's address block.
    V2AddressBlockTooShort {
        /// `"AF_INET"`, `"AF_INET6"` or `"AF_UNIX"`.
        family: &'static str,
        /// Bytes the family's address block takes.
        required: usize,
        /// Bytes the header declares after its fixed part.
        declared: usize,
    },
    /// Fewer than the 3 bytes of a TLV's type and length remain in the header.
    V2TlvTruncated {
        /// Where the TLV starts.
        offset: usize,
        /// Bytes left in the header.
        available: usize,
    },
    /// A TLV's length runs past the end of the header.
    V2TlvOverrun {
        /// The TLV's type.
        tlv_type: u8,
        /// Where the TLV starts.
        offset: usize,
        /// The length it declares.
        declared: usize,
        /// Bytes left in the header after its type and length.
        available: usize,
    },
    /// A known TLV whose value is malformed (wrong size, invalid UTF-8, too long).
    V2InvalidTlv {
        /// The TLV's type.
        tlv_type: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A known TLV appears more than once.
    V2DuplicateTlv {
        /// The TLV's type.
        tlv_type: u8,
    },
    /// The SSL TLV is shorter than its 5-byte `client` + `verify` prefix.
    V2SslTooShort {
        /// The SSL TLV's length.
        len: usize,
    },
    /// Fewer than 3 bytes of a sub-TLV's type and length remain in the SSL TLV.
    V2SslSubTlvTruncated {
        /// Where the sub-TLV starts.
        offset: usize,
        /// Bytes left in the SSL TLV.
        available: usize,
    },
    /// An SSL sub-TLV's length runs past the end of the SSL TLV.
    V2SslSubTlvOverrun {
        /// The sub-TLV's type.
        subtype: u8,
        /// Where the sub-TLV starts.
        offset: usize,
        /// The length it declares.
        declared: usize,
        /// Bytes left in the SSL TLV after its type and length.
        available: usize,
    },
    /// A known SSL sub-TLV whose value is malformed.
    V2InvalidSslSubTlv {
        /// The sub-TLV's type.
        subtype: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A known SSL sub-TLV appears more than once.
    V2DuplicateSslSubTlv {
        /// The sub-TLV's type.
        subtype: u8,
    },
    /// The header carries a CRC32c TLV that does not match its bytes.
    V2Crc32cMismatch {
        /// The checksum in the TLV.
        declared: u32,
        /// The checksum of the header as received.
        computed: u32,
    },
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy { prefix } => write!(
                f,
                "PROXY: expected \"PROXY \" or the v2 signature, got \"{}\"; \
                 is the peer configured to send the PROXY protocol?",
                prefix.escape_ascii()
            ),
            ProxyError::V1BadPrefix { prefix } => write!(
                f,
                "PROXY v1: line must start with \"PROXY \" (uppercase, one space), got \"{}\"",
                prefix.escape_ascii()
            ),
            ProxyError::V1MissingCrlf => {
                write!(f, "PROXY v1: no CRLF within the first {V1_MAX_LEN} bytes")
            }
            ProxyError::V1StrayLineBreak { offset } => write!(
                f,
                "PROXY v1: lone CR or LF at byte {offset}; the line must end with CRLF"
            ),
            ProxyError::V1Malformed { line, reason } => {
                write!(f, "PROXY v1: {reason} in {line:?}")
            }
            ProxyError::V1UnknownProtocol { protocol } => write!(
                f,
                "PROXY v1: protocol {protocol:?} is not TCP4, TCP6 or UNKNOWN"
            ),
            ProxyError::V1InvalidAddress {
                field,
                value,
                expected,
            } => write!(
                f,
                "PROXY v1: {field} {value:?} is not a valid {expected} address"
            ),
            ProxyError::V1AddressLeadingZero { field, value } => write!(
                f,
                "PROXY v1: {field} {value:?} has an octet with a leading zero"
            ),
            ProxyError::V1FamilyMismatch {
                protocol,
                field,
                value,
            } => write!(
                f,
                "PROXY v1: {field} {value:?} does not match protocol {protocol}"
            ),
            ProxyError::V1InvalidPort { field, value } => {
                write!(f, "PROXY v1: {field} {value:?} is not a decimal number")
            }
            ProxyError::V1PortLeadingZero { field, value } => {
                write!(f, "PROXY v1: {field} {value:?} has a leading zero")
            }
            ProxyError::V1PortOutOfRange { field, value } => {
                write!(f, "PROXY v1: {field} {value:?} out of range")
            }
            ProxyError::V2BadSignature { prefix } => write!(
                f,
                "PROXY v2: bad signature, got \"{}\"",
                prefix.escape_ascii()
            ),
            ProxyError::V2BadVersion { version } => {
                write!(f, "PROXY v2: version {version:#x}, expected 0x2")
            }
            ProxyError::V2BadCommand { command } => write!(
                f,
                "PROXY v2: command {command:#x} is neither LOCAL (0x0) nor PROXY (0x1)"
            ),
            ProxyError::V2BadFamilyTransport { byte } => write!(
                f,
                "PROXY v2: family/transport byte {byte:#04x} is not one the specification defines"
            ),
            ProxyError::V2AddressBlockTooShort {
                family,
                required,
                declared,
            } => write!(
                f,
                "PROXY v2: {family} addresses take {required} bytes but the header declares {declared}"
            ),
            ProxyError::V2TlvTruncated { offset, available } => write!(
                f,
                "PROXY v2: TLV at byte {offset} needs 3 bytes of type and length, {available} left"
            ),
            ProxyError::V2TlvOverrun {
                tlv_type,
                offset,
                declared,
                available,
            } => write!(
                f,
                "PROXY v2: TLV {tlv_type:#04x} at byte {offset} declares {declared} bytes, \
                 {available} left in the header"
            ),
            ProxyError::V2InvalidTlv { tlv_type, reason } => {
                write!(f, "PROXY v2: TLV {tlv_type:#04x}: {reason}")
            }
            ProxyError::V2DuplicateTlv { tlv_type } => {
                write!(f, "PROXY v2: TLV {tlv_type:#04x} appears more than once")
            }
            ProxyError::V2SslTooShort { len } => write!(
                f,
                "PROXY v2: SSL TLV is {len} bytes, needs at least {SSL_FIXED_LEN} (client, verify)"
            ),
            ProxyError::V2SslSubTlvTruncated { offset, available } => write!(
                f,
                "PROXY v2: SSL sub-TLV at byte {offset} needs 3 bytes of type and length, \
                 {available} left"
            ),
            ProxyError::V2SslSubTlvOverrun {
                subtype,
                offset,
                declared,
                available,
            } => write!(
                f,
                "PROXY v2: SSL sub-TLV {subtype:#04x} at byte {offset} declares {declared} bytes, \
                 {available} left in the SSL TLV"
            ),
            ProxyError::V2InvalidSslSubTlv { subtype, reason } => {
                write!(f, "PROXY v2: SSL sub-TLV {subtype:#04x}: {reason}")
            }
            ProxyError::V2DuplicateSslSubTlv { subtype } => write!(
                f,
                "PROXY v2: SSL sub-TLV {subtype:#04x} appears more than once"
            ),
            ProxyError::V2Crc32cMismatch { declared, computed } => write!(
                f,
                "PROXY v2: CRC32c mismatch: header says {declared:#010x}, bytes give {computed:#010x}"
            ),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Why [`encode_v2`] refused a header. Nothing is written to `out` on error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// Everything after the fixed 16 bytes would exceed 65535 bytes.
    PayloadTooLong {
        /// The payload length that would have been written.
        len: usize,
    },
    /// One TLV or SSL sub-TLV value exceeds 65535 bytes.
    TlvTooLong {
        /// The TLV's (or sub-TLV's) type.
        tlv_type: u8,
        /// The value's length.
        len: usize,
    },
    /// `Command::Local` with addresses: LOCAL carries none.
    LocalWithAddresses,
    /// `Command::Local` with a transport other than `Unspec`.
    LocalWithTransport {
        /// The transport given.
        transport: Transport,
    },
    /// `Command::Proxy` with a `Stream` or `Datagram` transport but no addresses.
    /// (v2 `AF_UNIX` addresses are not representable in [`ProxyAddrs`].)
    TransportWithoutAddresses {
        /// The transport given.
        transport: Transport,
    },
    /// Addresses with `Transport::Unspec`: v2 has no "IPv4, unspecified transport".
    AddressesWithoutTransport,
    /// Source and destination are of different address families.
    MixedFamilies {
        /// The source given.
        source: SocketAddr,
        /// The destination given.
        destination: SocketAddr,
    },
    /// `unique_id` is longer than the 128 bytes the specification allows.
    UniqueIdTooLong {
        /// Its length.
        len: usize,
    },
    /// `Tlvs::other` holds a type that has its own field (or NOOP, which decoding
    /// drops), so it would not decode back into `other`.
    ReservedTypeInOther {
        /// The offending type.
        tlv_type: u8,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::PayloadTooLong { len } => write!(
                f,
                "PROXY v2 encode: {len} bytes of addresses and TLVs, at most 65535 fit"
            ),
            EncodeError::TlvTooLong { tlv_type, len } => write!(
                f,
                "PROXY v2 encode: TLV {tlv_type:#04x} value is {len} bytes, at most 65535 fit"
            ),
            EncodeError::LocalWithAddresses => {
                f.write_str("PROXY v2 encode: a LOCAL header carries no addresses")
            }
            EncodeError::LocalWithTransport { transport } => write!(
                f,
                "PROXY v2 encode: a LOCAL header has transport Unspec, not {transport:?}"
            ),
            EncodeError::TransportWithoutAddresses { transport } => write!(
                f,
                "PROXY v2 encode: transport {transport:?} needs source and destination addresses"
            ),
            EncodeError::AddressesWithoutTransport => {
                f.write_str("PROXY v2 encode: addresses need a Stream or Datagram transport")
            }
            EncodeError::MixedFamilies {
                source,
                destination,
            } => write!(
                f,
                "PROXY v2 encode: source {source} and destination {destination} \
                 are of different address families"
            ),
            EncodeError::UniqueIdTooLong { len } => write!(
                f,
                "PROXY v2 encode: unique id is {len} bytes, at most {UNIQUE_ID_MAX} allowed"
            ),
            EncodeError::ReservedTypeInOther { tlv_type } => write!(
                f,
                "PROXY v2 encode: TLV {tlv_type:#04x} in `other` has its own field"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

// ---------------------------------------------------------------------------
// Detection

/// Whether `buf` starts like a PROXY header: `Some(true)` once it holds `PROXY `
/// or the v2 signature and version nibble, `Some(false)` as soon as it cannot,
/// `None` while it is a prefix of either (including when empty).
///
/// For diagnostics only (see the module docs): a listener must know from its
/// configuration whether to expect a header, never from the bytes.
pub fn looks_like_proxy(buf: &[u8]) -> Option<bool> {
    let v1 = match_prefix(buf, V1_PREFIX);
    let v2 = match (
        match_prefix(buf, &V2_SIGNATURE),
        buf.get(V2_SIGNATURE.len()),
    ) {
        (Some(true), Some(&ver_cmd)) => Some(ver_cmd >> 4 == 2),
        (Some(true), None) => None,
        (decided, _) => decided,
    };
    match (v1, v2) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// `Some(false)` once `buf` diverges from `pattern`, `Some(true)` once it holds
/// all of it, `None` while it is a proper prefix.
fn match_prefix(buf: &[u8], pattern: &[u8]) -> Option<bool> {
    let seen = buf.len().min(pattern.len());
    if buf.get(..seen) != pattern.get(..seen) {
        Some(false)
    } else {
        (buf.len() >= pattern.len()).then_some(true)
    }
}

fn quoted_prefix(buf: &[u8]) -> Vec<u8> {
    buf.get(..QUOTED_PREFIX_LEN).unwrap_or(buf).to_vec()
}

// ---------------------------------------------------------------------------
// Decoding

/// Decodes a v1 or v2 header from the start of `buf`, whichever it is.
///
/// The first byte decides: `P` is v1, `\r` is v2, anything else is
/// [`ProxyError::NotProxy`]. An empty buffer is `Incomplete { needed: 1 }`.
pub fn decode(buf: &[u8]) -> Result<Decode, ProxyError> {
    match buf.first() {
        None => Ok(Decode::Incomplete { needed: 1 }),
        Some(b'P') => decode_v1(buf),
        Some(0x0D) => decode_v2(buf),
        Some(_) => Err(ProxyError::NotProxy {
            prefix: quoted_prefix(buf),
        }),
    }
}

/// Decodes a v1 line (`PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n`) from
/// the start of `buf`.
///
/// Strict, as the specification asks: uppercase keywords, single spaces, no
/// leading zeros in IPv4 octets or ports, ports up to 65535, addresses of the
/// declared family, CRLF within [`V1_MAX_LEN`] bytes and no lone CR or LF.
/// `UNKNOWN` decodes as `Command::Local` without addresses; whatever follows it
/// on the line is ignored, as the specification requires.
pub fn decode_v1(buf: &[u8]) -> Result<Decode, ProxyError> {
    let seen = buf.len().min(V1_PREFIX.len());
    if buf.get(..seen) != V1_PREFIX.get(..seen) {
        return Err(ProxyError::V1BadPrefix {
            prefix: quoted_prefix(buf),
        });
    }
    let Some(line_len) = find_crlf(buf)? else {
        return Ok(Decode::Incomplete { needed: 1 });
    };
    let line = buf.get(..line_len).unwrap_or_default();
    let header = parse_v1_line(line)?;
    Ok(Decode::Complete {
        header,
        consumed: line_len + 2,
    })
}

/// The length of the line before its CRLF, `None` if the CRLF has not arrived.
fn find_crlf(buf: &[u8]) -> Result<Option<usize>, ProxyError> {
    let window = buf.get(..V1_MAX_LEN).unwrap_or(buf);
    for (i, &byte) in window.iter().enumerate() {
        match byte {
            b'\r' => {
                if i + 2 > V1_MAX_LEN {
                    return Err(ProxyError::V1MissingCrlf);
                }
                match buf.get(i + 1) {
                    Some(b'\n') => return Ok(Some(i)),
                    Some(_) => return Err(ProxyError::V1StrayLineBreak { offset: i }),
                    None => return Ok(None),
                }
            }
            b'\n' => return Err(ProxyError::V1StrayLineBreak { offset: i }),
            _ => {}
        }
    }
    if window.len() >= V1_MAX_LEN {
        Err(ProxyError::V1MissingCrlf)
    } else {
        Ok(None)
    }
}

#[derive(Clone, Copy)]
enum V1Family {
    Tcp4,
    Tcp6,
}

fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let malformed = |reason| ProxyError::V1Malformed {
        line: String::from_utf8_lossy(line).into_owned(),
        reason,
    };
    let rest = line.strip_prefix(V1_PREFIX).unwrap_or_default();
    let mut fields = rest.split(|&b| b == b' ');
    let family = match fields.next().unwrap_or_default() {
        b"UNKNOWN" => {
            return Ok(ProxyHeader {
                version: Version::V1,
                command: Command::Local,
                transport: Transport::Unspec,
                addrs: None,
                tlvs: Tlvs::default(),
            });
        }
        b"TCP4" => V1Family::Tcp4,
        b"TCP6" => V1Family::Tcp6,
        b"" => return Err(malformed("empty protocol field (extra space?)")),
        other => {
            return Err(ProxyError::V1UnknownProtocol {
                protocol: String::from_utf8_lossy(other).into_owned(),
            });
        }
    };
    let mut next_field = || match fields.next() {
        None => Err(malformed("too few fields")),
        Some([]) => Err(malformed(
            "empty field (two spaces in a row, or a trailing space)",
        )),
        Some(field) => Ok(field),
    };
    let src = next_field()?;
    let dst = next_field()?;
    let sport = next_field()?;
    let dport = next_field()?;
    if fields.next().is_some() {
        return Err(malformed(
            "extra field or trailing space after the destination port",
        ));
    }
    let source = SocketAddr::new(
        parse_v1_addr(family, src, V1Field::SourceAddress)?,
        parse_v1_port(sport, V1Field::SourcePort)?,
    );
    let destination = SocketAddr::new(
        parse_v1_addr(family, dst, V1Field::DestinationAddress)?,
        parse_v1_port(dport, V1Field::DestinationPort)?,
    );
    Ok(ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        transport: Transport::Stream,
        addrs: Some(ProxyAddrs {
            source,
            destination,
        }),
        tlvs: Tlvs::default(),
    })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_v1_addr(
    family: V1Family,
    field: &[u8],
    which: V1Field,
) -> Result<std::net::IpAddr, ProxyError> {
    match family {
        V1Family::Tcp4 => match parse_ipv4_strict(field) {
            Ok(ip) => Ok(ip.into()),
            Err(Ipv4Problem::LeadingZero) => Err(ProxyError::V1AddressLeadingZero {
                field: which,
                value: lossy(field),
            }),
            Err(Ipv4Problem::Invalid) if parse_ipv6(field).is_some() => {
                Err(ProxyError::V1FamilyMismatch {
                    protocol: "TCP4",
                    field: which,
                    value: lossy(field),
                })
            }
            Err(Ipv4Problem::Invalid) => Err(ProxyError::V1InvalidAddress {
                field: which,
                value: lossy(field),
                expected: "IPv4",
            }),
        },
        V1Family::Tcp6 => match parse_ipv6(field) {
            Some(ip) => Ok(ip.into()),
            None if parse_ipv4_strict(field).is_ok() => Err(ProxyError::V1FamilyMismatch {
                protocol: "TCP6",
                field: which,
                value: lossy(field),
            }),
            None => Err(ProxyError::V1InvalidAddress {
                field: which,
                value: lossy(field),
                expected: "IPv6",
            }),
        },
    }
}

enum Ipv4Problem {
    Invalid,
    LeadingZero,
}

/// Dotted decimal, exactly four octets, no leading zeros (specification §2.1).
/// Written out rather than left to `Ipv4Addr::from_str` so that a leading zero
/// gets its own error and the accepted grammar does not depend on std's.
fn parse_ipv4_strict(field: &[u8]) -> Result<Ipv4Addr, Ipv4Problem> {
    let mut parts = field.split(|&b| b == b'.');
    let mut octets = [0u8; 4];
    for slot in &mut octets {
        let part = parts.next().ok_or(Ipv4Problem::Invalid)?;
        *slot = match part {
            [] => return Err(Ipv4Problem::Invalid),
            _ if !part.iter().all(u8::is_ascii_digit) => return Err(Ipv4Problem::Invalid),
            [b'0', _, ..] => return Err(Ipv4Problem::LeadingZero),
            _ if part.len() > 3 => return Err(Ipv4Problem::Invalid),
            _ => u8::try_from(decimal(part)).map_err(|_| Ipv4Problem::Invalid)?,
        };
    }
    if parts.next().is_some() {
        return Err(Ipv4Problem::Invalid);
    }
    Ok(Ipv4Addr::from(octets))
}

/// The value of at most five ASCII digits (callers check both).
fn decimal(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// IPv6 text as `Ipv6Addr::from_str` reads it (hex groups, one `::`, an optional
/// dotted IPv4 tail as `inet_pton` allows; no zone id).
fn parse_ipv6(field: &[u8]) -> Option<Ipv6Addr> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn parse_v1_port(field: &[u8], which: V1Field) -> Result<u16, ProxyError> {
    let value = || lossy(field);
    if !field.iter().all(u8::is_ascii_digit) {
        return Err(ProxyError::V1InvalidPort {
            field: which,
            value: value(),
        });
    }
    if let [b'0', _, ..] = field {
        return Err(ProxyError::V1PortLeadingZero {
            field: which,
            value: value(),
        });
    }
    let out_of_range = || ProxyError::V1PortOutOfRange {
        field: which,
        value: value(),
    };
    if field.len() > 5 {
        return Err(out_of_range());
    }
    u16::try_from(decimal(field)).map_err(|_| out_of_range())
}

/// Address family of a v2 header (high nibble of byte 14).
#[derive(Clone, Copy)]
enum V2Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

impl V2Family {
    fn address_len(self) -> usize {
        match self {
            V2Family::Unspec => 0,
            V2Family::Inet => 4 + 4 + 2 + 2,
            V2Family::Inet6 => 16 + 16 + 2 + 2,
            V2Family::Unix => 108 + 108,
        }
    }

    fn name(self) -> &'static str {
        match self {
            V2Family::Unspec => "AF_UNSPEC",
            V2Family::Inet => "AF_INET",
            V2Family::Inet6 => "AF_INET6",
            V2Family::Unix => "AF_UNIX",
        }
    }
}

/// The seven combinations the specification lists; anything else is rejected,
/// including an address family with an `UNSPEC` transport, where the
/// specification does not say whether ports follow.
fn parse_family_transport(byte: u8) -> Result<(V2Family, Transport), ProxyError> {
    Ok(match byte {
        0x00 => (V2Family::Unspec, Transport::Unspec),
        0x11 => (V2Family::Inet, Transport::Stream),
        0x12 => (V2Family::Inet, Transport::Datagram),
        0x21 => (V2Family::Inet6, Transport::Stream),
        0x22 => (V2Family::Inet6, Transport::Datagram),
        0x31 => (V2Family::Unix, Transport::Stream),
        0x32 => (V2Family::Unix, Transport::Datagram),
        _ => return Err(ProxyError::V2BadFamilyTransport { byte }),
    })
}

fn parse_command(ver_cmd: u8) -> Result<Command, ProxyError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2BadVersion {
            version: ver_cmd >> 4,
        });
    }
    match ver_cmd & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        command => Err(ProxyError::V2BadCommand { command }),
    }
}

/// A read position over untrusted bytes; every read is checked.
struct Cursor<'a> {
    rest: &'a [u8],
    /// Position of `rest` from the start of the header, for error messages.
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], offset: usize) -> Self {
        Cursor {
            rest: bytes,
            offset,
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        self.offset += n;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        self.offset += N;
        Some(*head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
}

/// One TLV as found in the bytes.
struct RawTlv<'a> {
    kind: u8,
    value: &'a [u8],
    /// Where the value starts, from the start of the header.
    value_offset: usize,
}

/// A TLV whose framing is broken; the caller turns it into the right error for
/// its level (header TLV or SSL sub-TLV).
enum Framing {
    Truncated {
        offset: usize,
        available: usize,
    },
    Overrun {
        kind: u8,
        offset: usize,
        declared: usize,
        available: usize,
    },
}

/// The next TLV, `Ok(None)` at the end. Shared by header TLVs and SSL sub-TLVs,
/// which use the same framing.
fn next_tlv<'a>(cur: &mut Cursor<'a>) -> Result<Option<RawTlv<'a>>, Framing> {
    if cur.is_empty() {
        return Ok(None);
    }
    let offset = cur.offset;
    let truncated = Framing::Truncated {
        offset,
        available: cur.rest.len(),
    };
    let Some([kind, len_hi, len_lo]) = cur.array::<3>() else {
        return Err(truncated);
    };
    let declared = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let value_offset = cur.offset;
    let available = cur.rest.len();
    let value = cur.take(declared).ok_or(Framing::Overrun {
        kind,
        offset,
        declared,
        available,
    })?;
    Ok(Some(RawTlv {
        kind,
        value,
        value_offset,
    }))
}

/// Decodes a v2 header from the start of `buf`.
///
/// Checks the signature, version and command as soon as their bytes arrive, so
/// that a non-PROXY peer fails fast. Once the 16-byte fixed part is in, `needed`
/// is exact. A `LOCAL` header's family and transport are ignored, as the
/// specification says (`transport` is `Unspec`, `addrs` `None`), but its
/// address block is still skipped by the length its family byte gives. `AF_UNIX`
/// addresses are consumed but not returned. If a CRC32c TLV is present it is
/// verified over the whole header.
pub fn decode_v2(buf: &[u8]) -> Result<Decode, ProxyError> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..seen) != V2_SIGNATURE.get(..seen) {
        return Err(ProxyError::V2BadSignature {
            prefix: quoted_prefix(buf),
        });
    }
    if let Some(&ver_cmd) = buf.get(12) {
        parse_command(ver_cmd)?;
    }
    if let Some(&fam) = buf.get(13) {
        parse_family_transport(fam)?;
    }
    let Some(&[.., ver_cmd, fam, len_hi, len_lo]) = buf.first_chunk::<V2_HEADER_MIN>() else {
        return Ok(Decode::Incomplete {
            needed: V2_HEADER_MIN - buf.len(),
        });
    };
    let command = parse_command(ver_cmd)?;
    let (family, transport) = parse_family_transport(fam)?;
    let declared = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if declared < family.address_len() {
        return Err(ProxyError::V2AddressBlockTooShort {
            family: family.name(),
            required: family.address_len(),
            declared,
        });
    }
    let total = V2_HEADER_MIN + declared;
    let Some(header) = buf.get(..total) else {
        return Ok(Decode::Incomplete {
            needed: total - buf.len(),
        });
    };
    let payload = header.get(V2_HEADER_MIN..).unwrap_or_default();
    let mut cur = Cursor::new(payload, V2_HEADER_MIN);
    let address_block_too_short = || ProxyError::V2AddressBlockTooShort {
        family: family.name(),
        required: family.address_len(),
        declared,
    };
    let block = cur
        .take(family.address_len())
        .ok_or_else(address_block_too_short)?;
    let addrs = parse_v2_addrs(family, block).ok_or_else(address_block_too_short)?;
    let tlvs = parse_tlvs(header, cur)?;
    let (transport, addrs) = match command {
        Command::Local => (Transport::Unspec, None),
        Command::Proxy => (transport, addrs),
    };
    Ok(Decode::Complete {
        header: ProxyHeader {
            version: Version::V2,
            command,
            transport,
            addrs,
            tlvs,
        },
        consumed: total,
    })
}

/// `None` if the block is too short (callers already checked it is not);
/// `Some(None)` for families without IP addresses.
fn parse_v2_addrs(family: V2Family, block: &[u8]) -> Option<Option<ProxyAddrs>> {
    let mut cur = Cursor::new(block, 0);
    let addrs = match family {
        V2Family::Unspec | V2Family::Unix => return Some(None),
        V2Family::Inet => {
            let src = Ipv4Addr::from(cur.array::<4>()?);
            let dst = Ipv4Addr::from(cur.array::<4>()?);
            ProxyAddrs {
                source: SocketAddrV4::new(src, cur.u16()?).into(),
                destination: SocketAddrV4::new(dst, cur.u16()?).into(),
            }
        }
        V2Family::Inet6 => {
            let src = Ipv6Addr::from(cur.array::<16>()?);
            let dst = Ipv6Addr::from(cur.array::<16>()?);
            ProxyAddrs {
                source: SocketAddrV6::new(src, cur.u16()?, 0, 0).into(),
                destination: SocketAddrV6::new(dst, cur.u16()?, 0, 0).into(),
            }
        }
    };
    Some(Some(addrs))
}

fn set_once<T>(slot: &mut Option<T>, value: T, duplicate: ProxyError) -> Result<(), ProxyError> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}

fn tlv_string(value: &[u8], kind: u8) -> Result<String, ProxyError> {
    String::from_utf8(value.to_vec()).map_err(|_| ProxyError::V2InvalidTlv {
        tlv_type: kind,
        reason: "value is not valid UTF-8",
    })
}

/// Parses the TLVs that follow the address block, then checks the CRC32c if one
/// was present. `header` is the whole header, for the checksum.
fn parse_tlvs(header: &[u8], mut cur: Cursor<'_>) -> Result<Tlvs, ProxyError> {
    let mut tlvs = Tlvs::default();
    let mut crc_value_offset = None;
    loop {
        let tlv = match next_tlv(&mut cur) {
            Ok(Some(tlv)) => tlv,
            Ok(None) => break,
            Err(Framing::Truncated { offset, available }) => {
                return Err(ProxyError::V2TlvTruncated { offset, available });
            }
            Err(Framing::Overrun {
                kind,
                offset,
                declared,
                available,
            }) => {
                return Err(ProxyError::V2TlvOverrun {
                    tlv_type: kind,
                    offset,
                    declared,
                    available,
                });
            }
        };
        let kind = tlv.kind;
        let duplicate = ProxyError::V2DuplicateTlv { tlv_type: kind };
        let invalid = |reason| ProxyError::V2InvalidTlv {
            tlv_type: kind,
            reason,
        };
        match (kind, tlv.value) {
            (PP2_TYPE_ALPN, value) => set_once(&mut tlvs.alpn, value.to_vec(), duplicate)?,
            (PP2_TYPE_AUTHORITY, value) => {
                set_once(&mut tlvs.authority, tlv_string(value, kind)?, duplicate)?;
            }
            (PP2_TYPE_CRC32C, &[a, b, c, d]) => {
                set_once(
                    &mut tlvs.crc32c,
                    u32::from_be_bytes([a, b, c, d]),
                    duplicate,
                )?;
                crc_value_offset = Some(tlv.value_offset);
            }
            (PP2_TYPE_CRC32C, _) => return Err(invalid("CRC32c value must be 4 bytes")),
            (PP2_TYPE_NOOP, _) => {}
            (PP2_TYPE_UNIQUE_ID, value) if value.len() > UNIQUE_ID_MAX => {
                return Err(invalid("unique id longer than 128 bytes"));
            }
            (PP2_TYPE_UNIQUE_ID, value) => {
                set_once(&mut tlvs.unique_id, value.to_vec(), duplicate)?;
            }
            (PP2_TYPE_SSL, value) => {
                set_once(
                    &mut tlvs.ssl,
                    parse_ssl(value, tlv.value_offset)?,
                    duplicate,
                )?;
            }
            (PP2_TYPE_NETNS, value) => {
                set_once(&mut tlvs.netns, tlv_string(value, kind)?, duplicate)?;
            }
            (PP2_TYPE_AWS, [PP2_SUBTYPE_AWS_VPCE_ID, id @ ..]) => {
                set_once(&mut tlvs.aws_vpce_id, tlv_string(id, kind)?, duplicate)?;
            }
            (PP2_TYPE_AZURE, &[PP2_SUBTYPE_AZURE_LINK_ID, a, b, c, d]) => {
                let link_id = u32::from_le_bytes([a, b, c, d]);
                set_once(&mut tlvs.azure_link_id, link_id, duplicate)?;
            }
            (PP2_TYPE_AZURE, [PP2_SUBTYPE_AZURE_LINK_ID, ..]) => {
                return Err(invalid("Azure link id must be 4 bytes"));
            }
            (_, value) => tlvs.other.push((kind, value.to_vec())),
        }
    }
    if let (Some(offset), Some(declared)) = (crc_value_offset, tlvs.crc32c) {
        let computed = crc32c_zeroing(header, offset);
        if computed != declared {
            return Err(ProxyError::V2Crc32cMismatch { declared, computed });
        }
    }
    Ok(tlvs)
}

/// Parses the SSL TLV's value. Unknown sub-TLVs are skipped after their framing
/// is checked: newer HAProxy versions send sub-types this struct has no field
/// for (e.g. the key-exchange group), and rejecting them would reject those
/// proxies.
fn parse_ssl(value: &[u8], value_offset: usize) -> Result<Ssl, ProxyError> {
    let too_short = ProxyError::V2SslTooShort { len: value.len() };
    let Some((&client, rest)) = value.split_first() else {
        return Err(too_short);
    };
    let Some((&verify, subs)) = rest.split_first_chunk::<4>() else {
        return Err(too_short);
    };
    let mut ssl = Ssl {
        client,
        verify: u32::from_be_bytes(verify),
        ..Ssl::default()
    };
    let mut cur = Cursor::new(subs, value_offset + SSL_FIXED_LEN);
    loop {
        let sub = match next_tlv(&mut cur) {
            Ok(Some(sub)) => sub,
            Ok(None) => return Ok(ssl),
            Err(Framing::Truncated { offset, available }) => {
                return Err(ProxyError::V2SslSubTlvTruncated { offset, available });
            }
            Err(Framing::Overrun {
                kind,
                offset,
                declared,
                available,
            }) => {
                return Err(ProxyError::V2SslSubTlvOverrun {
                    subtype: kind,
                    offset,
                    declared,
                    available,
                });
            }
        };
        let slot = match sub.kind {
            PP2_SUBTYPE_SSL_VERSION => &mut ssl.version,
            PP2_SUBTYPE_SSL_CN => &mut ssl.cn,
            PP2_SUBTYPE_SSL_CIPHER => &mut ssl.cipher,
            PP2_SUBTYPE_SSL_SIG_ALG => &mut ssl.sig_alg,
            PP2_SUBTYPE_SSL_KEY_ALG => &mut ssl.key_alg,
            _ => continue,
        };
        let text =
            String::from_utf8(sub.value.to_vec()).map_err(|_| ProxyError::V2InvalidSslSubTlv {
                subtype: sub.kind,
                reason: "value is not valid UTF-8",
            })?;
        set_once(
            slot,
            text,
            ProxyError::V2DuplicateSslSubTlv { subtype: sub.kind },
        )?;
    }
}

// ---------------------------------------------------------------------------
// CRC32c

/// CRC-32C (Castagnoli; reflected polynomial `0x82F63B78`, as in RFC 4960
/// Appendix B, which the specification cites).
///
/// Table-driven, in software: std has no CRC32c, the crate takes no
/// dependencies, and the SSE4.2 / ARMv8 CRC instructions need `unsafe`
/// intrinsics, which the crate forbids. A header is at most 64 KiB and checked
/// once per connection, so a byte-at-a-time 1 KiB table computed at compile time
/// is plenty; a bit-at-a-time loop would be 8× slower for no saving worth having.
const CRC32C_TABLE: [u32; 256] = crc32c_table();

#[allow(
    clippy::indexing_slicing,
    reason = "compile-time loop over 0..256 into a 256-entry array; cannot run on input"
)]
const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[allow(
    clippy::indexing_slicing,
    reason = "the index is a u8 and the table has 256 entries"
)]
fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        let [low, ..] = crc.to_le_bytes();
        crc = CRC32C_TABLE[usize::from(low ^ byte)] ^ (crc >> 8);
    }
    crc
}

fn crc32c(bytes: &[u8]) -> u32 {
    !crc32c_update(!0, bytes)
}

/// The CRC32c of `header` with the 4 bytes at `value_offset` read as zeros, as
/// the specification defines the checksum (§2.2.3), without copying the header.
fn crc32c_zeroing(header: &[u8], value_offset: usize) -> u32 {
    let (before, rest) = header
        .split_at_checked(value_offset)
        .unwrap_or((header, &[]));
    let after = rest.get(4..).unwrap_or_default();
    let crc = crc32c_update(!0, before);
    let crc = crc32c_update(crc, &[0; 4]);
    !crc32c_update(crc, after)
}

// ---------------------------------------------------------------------------
// Encoding

/// Appends a v1 line for `addrs` to `out`.
///
/// `None`, or a source and destination of different families (v1 cannot say
/// that), writes `PROXY UNKNOWN\r\n`. IPv6 addresses are written in RFC 5952
/// form, never with a dotted IPv4 tail, so strict receivers accept them.
pub fn encode_v1(addrs: Option<&ProxyAddrs>, out: &mut Vec<u8>) {
    let line = match addrs.map(|a| (a.source, a.destination)) {
        Some((SocketAddr::V4(src), SocketAddr::V4(dst))) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        ),
        Some((SocketAddr::V6(src), SocketAddr::V6(dst))) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            Rfc5952(*src.ip()),
            Rfc5952(*dst.ip()),
            src.port(),
            dst.port()
        ),
        _ => "PROXY UNKNOWN\r\n".to_owned(),
    };
    out.extend_from_slice(line.as_bytes());
}

/// Formats an IPv6 address as RFC 5952 does, except that IPv4-mapped addresses
/// stay in hex (`::ffff:c000:201`): std's `Display` writes `::ffff:192.0.2.1`,
/// which the v1 grammar ("sets of 4 hexadecimal digits") does not allow.
struct Rfc5952(Ipv6Addr);

impl fmt::Display for Rfc5952 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let segments = self.0.segments();
        // The longest run of two or more zero groups, the first one on a tie.
        let mut best = 0..0;
        let mut run_start = None;
        for (i, &segment) in segments.iter().enumerate() {
            if segment == 0 {
                let start = *run_start.get_or_insert(i);
                if i + 1 - start > best.len() {
                    best = start..i + 1;
                }
            } else {
                run_start = None;
            }
        }
        if best.len() < 2 {
            best = 0..0;
        }
        for (i, segment) in segments.iter().enumerate() {
            if best.contains(&i) {
                if i == best.start {
                    f.write_str("::")?;
                }
                continue;
            }
            if i > 0 && i != best.end {
                f.write_str(":")?;
            }
            write!(f, "{segment:x}")?;
        }
        Ok(())
    }
}

/// Appends a v2 header for `header` to `out`.
///
/// Writes the addresses, then the TLVs it has fields for (ALPN, authority,
/// CRC32c, unique id, SSL, netns, AWS VPC endpoint id, Azure link id) in that
/// order, then `other` in its order. `header.version` is ignored. With
/// `tlvs.crc32c` set, the checksum written is computed over the final header.
///
/// Refuses headers that would not decode back to themselves (see
/// [`EncodeError`]); on error nothing is appended.
pub fn encode_v2(header: &ProxyHeader, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let written = write_v2(header, out, start);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn write_v2(header: &ProxyHeader, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    let fam = family_transport_byte(header)?;
    let tlvs = &header.tlvs;
    if let Some(id) = &tlvs.unique_id
        && id.len() > UNIQUE_ID_MAX
    {
        return Err(EncodeError::UniqueIdTooLong { len: id.len() });
    }
    if let Some((kind, _)) = tlvs
        .other
        .iter()
        .find(|(kind, value)| has_own_field(*kind, value))
    {
        return Err(EncodeError::ReservedTypeInOther { tlv_type: *kind });
    }

    let command = match header.command {
        Command::Local => 0x0,
        Command::Proxy => 0x1,
    };
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[0x20 | command, fam, 0, 0]);
    if header.command == Command::Proxy
        && let Some(addrs) = &header.addrs
    {
        match (addrs.source, addrs.destination) {
            (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
                out.extend_from_slice(&src.ip().octets());
                out.extend_from_slice(&dst.ip().octets());
                out.extend_from_slice(&src.port().to_be_bytes());
                out.extend_from_slice(&dst.port().to_be_bytes());
            }
            (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
                out.extend_from_slice(&src.ip().octets());
                out.extend_from_slice(&dst.ip().octets());
                out.extend_from_slice(&src.port().to_be_bytes());
                out.extend_from_slice(&dst.port().to_be_bytes());
            }
            // family_transport_byte rejected mixed families.
            _ => {}
        }
    }

    if let Some(alpn) = &tlvs.alpn {
        put_tlv(out, PP2_TYPE_ALPN, alpn)?;
    }
    if let Some(authority) = &tlvs.authority {
        put_tlv(out, PP2_TYPE_AUTHORITY, authority.as_bytes())?;
    }
    let crc_value_at = tlvs.crc32c.map(|_| out.len() + 3);
    if tlvs.crc32c.is_some() {
        put_tlv(out, PP2_TYPE_CRC32C, &[0; 4])?;
    }
    if let Some(id) = &tlvs.unique_id {
        put_tlv(out, PP2_TYPE_UNIQUE_ID, id)?;
    }
    if let Some(ssl) = &tlvs.ssl {
        let mut value = vec![ssl.client];
        value.extend_from_slice(&ssl.verify.to_be_bytes());
        for (subtype, text) in [
            (PP2_SUBTYPE_SSL_VERSION, &ssl.version),
            (PP2_SUBTYPE_SSL_CN, &ssl.cn),
            (PP2_SUBTYPE_SSL_CIPHER, &ssl.cipher),
            (PP2_SUBTYPE_SSL_SIG_ALG, &ssl.sig_alg),
            (PP2_SUBTYPE_SSL_KEY_ALG, &ssl.key_alg),
        ] {
            if let Some(text) = text {
                put_tlv(&mut value, subtype, text.as_bytes())?;
            }
        }
        put_tlv(out, PP2_TYPE_SSL, &value)?;
    }
    if let Some(netns) = &tlvs.netns {
        put_tlv(out, PP2_TYPE_NETNS, netns.as_bytes())?;
    }
    if let Some(id) = &tlvs.aws_vpce_id {
        let mut value = vec![PP2_SUBTYPE_AWS_VPCE_ID];
        value.extend_from_slice(id.as_bytes());
        put_tlv(out, PP2_TYPE_AWS, &value)?;
    }
    if let Some(link_id) = tlvs.azure_link_id {
        let [a, b, c, d] = link_id.to_le_bytes();
        put_tlv(
            out,
            PP2_TYPE_AZURE,
            &[PP2_SUBTYPE_AZURE_LINK_ID, a, b, c, d],
        )?;
    }
    for (kind, value) in &tlvs.other {
        put_tlv(out, *kind, value)?;
    }

    let payload = out.len() - start - V2_HEADER_MIN;
    let len = u16::try_from(payload).map_err(|_| EncodeError::PayloadTooLong { len: payload })?;
    if let Some(slot) = out.get_mut(start + 14..start + V2_HEADER_MIN) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    if let Some(at) = crc_value_at {
        let crc = crc32c(out.get(start..).unwrap_or_default());
        if let Some(slot) = out.get_mut(at..at + 4) {
            slot.copy_from_slice(&crc.to_be_bytes());
        }
    }
    Ok(())
}

/// Byte 14 for `header`, after checking that command, transport and addresses
/// agree with each other.
fn family_transport_byte(header: &ProxyHeader) -> Result<u8, EncodeError> {
    let transport_nibble = match header.transport {
        Transport::Unspec => 0x0,
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    match (header.command, header.transport, &header.addrs) {
        (Command::Local, _, Some(_)) => Err(EncodeError::LocalWithAddresses),
        (Command::Local, Transport::Unspec, None) | (Command::Proxy, Transport::Unspec, None) => {
            Ok(0x00)
        }
        (Command::Local, transport, None) => Err(EncodeError::LocalWithTransport { transport }),
        (Command::Proxy, transport, None) => {
            Err(EncodeError::TransportWithoutAddresses { transport })
        }
        (Command::Proxy, Transport::Unspec, Some(_)) => Err(EncodeError::AddressesWithoutTransport),
        (Command::Proxy, _, Some(addrs)) => match (addrs.source, addrs.destination) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => Ok(0x10 | transport_nibble),
            (SocketAddr::V6(_), SocketAddr::V6(_)) => Ok(0x20 | transport_nibble),
            (source, destination) => Err(EncodeError::MixedFamilies {
                source,
                destination,
            }),
        },
    }
}

/// Whether a TLV of this type and value decodes into a dedicated field (or is
/// dropped, for NOOP) rather than into `Tlvs::other`.
fn has_own_field(kind: u8, value: &[u8]) -> bool {
    match kind {
        PP2_TYPE_ALPN | PP2_TYPE_AUTHORITY | PP2_TYPE_CRC32C | PP2_TYPE_NOOP
        | PP2_TYPE_UNIQUE_ID | PP2_TYPE_SSL | PP2_TYPE_NETNS => true,
        PP2_TYPE_AWS => value.first() == Some(&PP2_SUBTYPE_AWS_VPCE_ID),
        PP2_TYPE_AZURE => value.first() == Some(&PP2_SUBTYPE_AZURE_LINK_ID),
        _ => false,
    }
}

fn put_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::TlvTooLong {
        tlv_type: kind,
        len: value.len(),
    })?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: fixed inputs, and a panic is a test failure"
)]
mod tests {
    use super::*;

    /// The signature, restated from the specification rather than taken from the
    /// code under test.
    const SIG: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];

    /// Application bytes that follow a header in the incremental tests; a TLS
    /// ClientHello start, with a CRLF to tempt a sloppy v1 scanner.
    const PAYLOAD: &[u8] = b"\x16\x03\x01\x02\x00 then\r\nmore";

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn addrs(source: &str, destination: &str) -> Option<ProxyAddrs> {
        Some(ProxyAddrs {
            source: sa(source),
            destination: sa(destination),
        })
    }

    fn v1_proxy(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader {
            version: Version::V1,
            command: Command::Proxy,
            transport: Transport::Stream,
            addrs: addrs(source, destination),
            tlvs: Tlvs::default(),
        }
    }

    fn v1_unknown() -> ProxyHeader {
        ProxyHeader {
            version: Version::V1,
            command: Command::Local,
            transport: Transport::Unspec,
            addrs: None,
            tlvs: Tlvs::default(),
        }
    }

    fn v2(
        command: Command,
        transport: Transport,
        addrs: Option<ProxyAddrs>,
        tlvs: Tlvs,
    ) -> ProxyHeader {
        ProxyHeader {
            version: Version::V2,
            command,
            transport,
            addrs,
            tlvs,
        }
    }

    fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
        match decode(buf) {
            Ok(Decode::Complete { header, consumed }) => (header, consumed),
            other => panic!(
                "expected Complete for {:?}, got {other:?}",
                buf.escape_ascii()
            ),
        }
    }

    // --- Hand-built v2 vectors, field by field from §2.2 -------------------------

    /// PROXY TCP4 192.0.2.1:56324 -> 198.51.100.7:443, no TLVs.
    const V2_TCP4: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, // version 2, PROXY
        0x11, // AF_INET, STREAM
        0x00, 0x0C, // 12 bytes follow
        192, 0, 2, 1, // source address
        198, 51, 100, 7, // destination address
        0xDC, 0x04, // source port 56324
        0x01, 0xBB, // destination port 443
    ];

    fn v2_tcp4_header(tlvs: Tlvs) -> ProxyHeader {
        v2(
            Command::Proxy,
            Transport::Stream,
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            tlvs,
        )
    }

    /// LOCAL, AF_UNSPEC, nothing follows: a health check.
    fn v2_local() -> Vec<u8> {
        [&SIG[..], &[0x20, 0x00, 0x00, 0x00]].concat()
    }

    /// PROXY TCP6 [2001:db8::1]:56324 -> [2001:db8::2]:443, ALPN "h2", authority
    /// "example.com".
    fn v2_tcp6_alpn_authority() -> Vec<u8> {
        [
            &SIG[..],
            &[0x21, 0x21, 0x00, 36 + 5 + 14],
            &[
                0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            ],
            &[
                0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
            ],
            &[0xDC, 0x04, 0x01, 0xBB],
            &[0x01, 0x00, 0x02],
            b"h2",
            &[0x02, 0x00, 0x0B],
            b"example.com",
        ]
        .concat()
    }

    fn v2_tcp6_alpn_authority_header() -> ProxyHeader {
        v2(
            Command::Proxy,
            Transport::Stream,
            addrs("[2001:db8::1]:56324", "[2001:db8::2]:443"),
            Tlvs {
                alpn: Some(b"h2".to_vec()),
                authority: Some("example.com".into()),
                ..Tlvs::default()
            },
        )
    }

    /// PROXY UDP6 [::ffff:192.0.2.1]:53 -> [2001:db8::2]:53; the mapped source is
    /// returned as sent.
    fn v2_udp6_mapped() -> Vec<u8> {
        [
            &SIG[..],
            &[0x21, 0x22, 0x00, 36],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1],
            &[
                0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
            ],
            &[0x00, 0x35, 0x00, 0x35],
        ]
        .concat()
    }

    /// V2_TCP4's addresses, then CRC32c and unique id "1234". The checksum
    /// 0xB7DD5C5E was computed with an independent bit-at-a-time CRC-32C over
    /// the header with the checksum field zeroed (§2.2.3).
    fn v2_tcp4_crc_unique_id() -> Vec<u8> {
        [
            &V2_TCP4[..14],
            &[0x00, 12 + 7 + 7],
            &V2_TCP4[16..],
            &[0x03, 0x00, 0x04, 0xB7, 0xDD, 0x5C, 0x5E],
            &[0x05, 0x00, 0x04],
            b"1234",
        ]
        .concat()
    }

    /// V2_TCP4's addresses, then SSL (with all five sub-TLVs), NETNS, AWS VPC
    /// endpoint id, Azure link id 42, and a custom TLV 0xE0: in the order the
    /// encoder writes them.
    fn v2_tcp4_ssl_and_friends() -> Vec<u8> {
        let ssl_len = 5 + (3 + 7) + (3 + 14) + (3 + 22) + (3 + 10) + (3 + 7);
        assert_eq!(ssl_len, 80);
        let total = 12 + (3 + 80) + (3 + 4) + (3 + 23) + (3 + 5) + (3 + 3);
        assert_eq!(total, 0x8E);
        [
            &V2_TCP4[..14],
            &[0x00, 0x8E],
            &V2_TCP4[16..],
            &[0x20, 0x00, 0x50],       // SSL, 80 bytes
            &[0x07],                   // client: SSL | CERT_CONN | CERT_SESS
            &[0x00, 0x00, 0x00, 0x00], // verify: ok
            &[0x21, 0x00, 0x07],
            b"TLSv1.3",
            &[0x22, 0x00, 0x0E],
            b"client.example",
            &[0x23, 0x00, 0x16],
            b"TLS_AES_256_GCM_SHA384",
            &[0x24, 0x00, 0x0A],
            b"RSA-SHA256",
            &[0x25, 0x00, 0x07],
            b"RSA2048",
            &[0x30, 0x00, 0x04],
            b"blue",
            &[0xEA, 0x00, 0x17, 0x01],
            b"vpce-08d2bf15fac5001c9",
            &[0xEE, 0x00, 0x05, 0x01, 0x2A, 0x00, 0x00, 0x00],
            &[0xE0, 0x00, 0x03],
            b"abc",
        ]
        .concat()
    }

    fn v2_tcp4_ssl_and_friends_header() -> ProxyHeader {
        v2_tcp4_header(Tlvs {
            ssl: Some(Ssl {
                client: 0x07,
                verify: 0,
                version: Some("TLSv1.3".into()),
                cipher: Some("TLS_AES_256_GCM_SHA384".into()),
                sig_alg: Some("RSA-SHA256".into()),
                key_alg: Some("RSA2048".into()),
                cn: Some("client.example".into()),
            }),
            netns: Some("blue".into()),
            aws_vpce_id: Some("vpce-08d2bf15fac5001c9".into()),
            azure_link_id: Some(42),
            other: vec![(0xE0, b"abc".to_vec())],
            ..Tlvs::default()
        })
    }

    /// A v2 header with the given version/command and family bytes around `payload`.
    fn v2_raw(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len()).unwrap().to_be_bytes();
        [&SIG[..], &[ver_cmd, fam], &len, payload].concat()
    }

    /// TCP4 addresses from V2_TCP4 followed by `tlvs`.
    fn v2_tcp4_with(tlvs: &[u8]) -> Vec<u8> {
        v2_raw(0x21, 0x11, &[&V2_TCP4[16..], tlvs].concat())
    }

    // --- Decoding: accepted inputs -------------------------------------------

    #[test]
    fn decodes_v1_examples() {
        let worst_case = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(worst_case.len(), V1_MAX_LEN);
        let tcp6_max = format!(
            "PROXY TCP6 {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(tcp6_max.len(), 104);
        let all_f = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        let cases: Vec<(&str, Vec<u8>, ProxyHeader)> = vec![
            (
                "ok: spec example before an HTTP request",
                b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n".to_vec(),
                v1_proxy("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            (
                "ok: longest TCP4 line (56 bytes)",
                b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec(),
                v1_proxy("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (
                "ok: zeros are not leading zeros",
                b"PROXY TCP4 0.0.0.0 10.0.0.100 0 0\r\n".to_vec(),
                v1_proxy("0.0.0.0:0", "10.0.0.100:0"),
            ),
            (
                "ok: TCP6 compressed",
                b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n".to_vec(),
                v1_proxy("[2001:db8::1]:56324", "[2001:db8::2]:443"),
            ),
            (
                "ok: TCP6 upper-case hex",
                b"PROXY TCP6 2001:DB8::A ::1 1 2\r\n".to_vec(),
                v1_proxy("[2001:db8::a]:1", "[::1]:2"),
            ),
            (
                "ok: longest TCP6 line (104 bytes)",
                tcp6_max.into_bytes(),
                v1_proxy(all_f, all_f),
            ),
            (
                "ok: TCP6 IPv4-mapped kept as mapped",
                b"PROXY TCP6 ::ffff:c000:201 ::1 1 2\r\n".to_vec(),
                v1_proxy("[::ffff:192.0.2.1]:1", "[::1]:2"),
            ),
            (
                "ok: UNKNOWN, short form",
                b"PROXY UNKNOWN\r\n".to_vec(),
                v1_unknown(),
            ),
            (
                "ok: UNKNOWN ignores the rest of the line, worst case 107 bytes",
                worst_case.into_bytes(),
                v1_unknown(),
            ),
            (
                "ok: UNKNOWN ignores even garbage",
                b"PROXY UNKNOWN  not  parsed 99999\r\n".to_vec(),
                v1_unknown(),
            ),
        ];
        for (name, input, expected) in cases {
            let (header, consumed) = complete(&input);
            assert_eq!(header, expected, "{name}");
            let line_end = input.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
            assert_eq!(consumed, line_end, "{name}");
            assert_eq!(decode_v1(&input), decode(&input), "{name}");
        }
    }

    #[test]
    fn decodes_v2_examples() {
        let unix_addresses = [&[b'/'; 108][..], &[b'/'; 108][..]].concat();
        let cases: Vec<(&str, Vec<u8>, ProxyHeader)> = vec![
            (
                "ok: TCP4, no TLVs",
                V2_TCP4.to_vec(),
                v2_tcp4_header(Tlvs::default()),
            ),
            (
                "ok: UDP4",
                v2_raw(0x21, 0x12, &V2_TCP4[16..]),
                v2(
                    Command::Proxy,
                    Transport::Datagram,
                    addrs("192.0.2.1:56324", "198.51.100.7:443"),
                    Tlvs::default(),
                ),
            ),
            (
                "ok: TCP6 with ALPN and authority",
                v2_tcp6_alpn_authority(),
                v2_tcp6_alpn_authority_header(),
            ),
            (
                "ok: UDP6, IPv4-mapped source returned as sent",
                v2_udp6_mapped(),
                v2(
                    Command::Proxy,
                    Transport::Datagram,
                    addrs("[::ffff:192.0.2.1]:53", "[2001:db8::2]:53"),
                    Tlvs::default(),
                ),
            ),
            (
                "ok: LOCAL health check",
                v2_local(),
                v2(Command::Local, Transport::Unspec, None, Tlvs::default()),
            ),
            (
                "ok: LOCAL ignores an address block it still skips",
                v2_raw(
                    0x20,
                    0x11,
                    &[&V2_TCP4[16..], &[0x01, 0x00, 0x02], b"h2"].concat(),
                ),
                v2(
                    Command::Local,
                    Transport::Unspec,
                    None,
                    Tlvs {
                        alpn: Some(b"h2".to_vec()),
                        ..Tlvs::default()
                    },
                ),
            ),
            (
                "ok: PROXY with AF_UNSPEC has no addresses",
                v2_raw(0x21, 0x00, &[]),
                v2(Command::Proxy, Transport::Unspec, None, Tlvs::default()),
            ),
            (
                "ok: AF_UNIX stream: 216 address bytes consumed, not returned",
                v2_raw(0x21, 0x31, &unix_addresses),
                v2(Command::Proxy, Transport::Stream, None, Tlvs::default()),
            ),
            (
                "ok: AF_UNIX datagram with a TLV after the addresses",
                v2_raw(
                    0x21,
                    0x32,
                    &[&unix_addresses[..], &[0x30, 0x00, 0x01], b"x"].concat(),
                ),
                v2(
                    Command::Proxy,
                    Transport::Datagram,
                    None,
                    Tlvs {
                        netns: Some("x".into()),
                        ..Tlvs::default()
                    },
                ),
            ),
            (
                "ok: CRC32c and unique id",
                v2_tcp4_crc_unique_id(),
                v2_tcp4_header(Tlvs {
                    crc32c: Some(0xB7DD_5C5E),
                    unique_id: Some(b"1234".to_vec()),
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: SSL, NETNS, AWS, Azure and a custom TLV",
                v2_tcp4_ssl_and_friends(),
                v2_tcp4_ssl_and_friends_header(),
            ),
            (
                "ok: NOOP padding is skipped, empty ALPN kept",
                v2_tcp4_with(&[
                    0x04, 0x00, 0x03, 0, 0, 0, 0x04, 0x00, 0x00, 0x01, 0x00, 0x00,
                ]),
                v2_tcp4_header(Tlvs {
                    alpn: Some(Vec::new()),
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: SSL with no sub-TLVs, and an unknown sub-TLV skipped",
                v2_tcp4_with(&[
                    0x20, 0x00, 0x0A, 0x01, 0, 0, 0, 0x02, 0x26, 0x00, 0x02, b'x', b'y',
                ]),
                v2_tcp4_header(Tlvs {
                    ssl: Some(Ssl {
                        client: 0x01,
                        verify: 2,
                        ..Ssl::default()
                    }),
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: AWS and Azure TLVs with other subtypes go to `other`, in order",
                v2_tcp4_with(&[
                    0xEE, 0x00, 0x02, 0x02, 0x09, // Azure subtype 2
                    0xEA, 0x00, 0x00, // AWS, empty
                    0xEA, 0x00, 0x02, 0x03, 0x07, // AWS subtype 3
                    0xF8, 0x00, 0x01, 0xFF, // future range
                ]),
                v2_tcp4_header(Tlvs {
                    other: vec![
                        (0xEE, vec![0x02, 0x09]),
                        (0xEA, vec![]),
                        (0xEA, vec![0x03, 0x07]),
                        (0xF8, vec![0xFF]),
                    ],
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: unique id of exactly 128 bytes",
                v2_tcp4_with(&[&[0x05, 0x00, 0x80][..], &[0xAB; 128]].concat()),
                v2_tcp4_header(Tlvs {
                    unique_id: Some(vec![0xAB; 128]),
                    ..Tlvs::default()
                }),
            ),
        ];
        for (name, input, expected) in cases {
            let (header, consumed) = complete(&input);
            assert_eq!(header, expected, "{name}");
            assert_eq!(consumed, input.len(), "{name}");
            assert_eq!(decode_v2(&input), decode(&input), "{name}");
        }
    }

    // --- Decoding: rejected inputs -------------------------------------------

    type Decoder = fn(&[u8]) -> Result<Decode, ProxyError>;

    #[test]
    fn rejects_malformed_v1() {
        use V1Field::*;
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 93]].concat();
        let crlf_at_108 = [&b"PROXY UNKNOWN "[..], &[b'x'; 92], b"\r\n"].concat();
        assert_eq!(crlf_at_108.len(), V1_MAX_LEN + 1);
        let malformed = |line: &str, reason| ProxyError::V1Malformed {
            line: line.into(),
            reason,
        };
        let s = String::from;
        let cases: Vec<(&str, Decoder, Vec<u8>, ProxyError)> = vec![
            (
                "fail: lowercase proxy (decode_v1)",
                decode_v1,
                b"proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1BadPrefix {
                    prefix: b"proxy TCP4 1.1.1".to_vec(),
                },
            ),
            (
                "fail: lowercase proxy (decode)",
                decode,
                b"proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::NotProxy {
                    prefix: b"proxy TCP4 1.1.1".to_vec(),
                },
            ),
            (
                "fail: PROXY without its space, detected before CRLF",
                decode,
                b"PROXYTCP4".to_vec(),
                ProxyError::V1BadPrefix {
                    prefix: b"PROXYTCP4".to_vec(),
                },
            ),
            (
                "fail: HTTP request",
                decode,
                b"GET / HTTP/1.1\r\n".to_vec(),
                ProxyError::NotProxy {
                    prefix: b"GET / HTTP/1.1\r\n".to_vec(),
                },
            ),
            (
                "fail: lowercase protocol",
                decode,
                b"PROXY tcp4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1UnknownProtocol {
                    protocol: s("tcp4"),
                },
            ),
            (
                "fail: unknown protocol",
                decode,
                b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1UnknownProtocol {
                    protocol: s("UDP4"),
                },
            ),
            (
                "fail: UNKNOWN glued to more text",
                decode,
                b"PROXY UNKNOWNX\r\n".to_vec(),
                ProxyError::V1UnknownProtocol {
                    protocol: s("UNKNOWNX"),
                },
            ),
            (
                "fail: two spaces after PROXY",
                decode,
                b"PROXY  TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                malformed(
                    "PROXY  TCP4 1.1.1.1 2.2.2.2 1 2",
                    "empty protocol field (extra space?)",
                ),
            ),
            (
                "fail: two spaces between addresses",
                decode,
                b"PROXY TCP4 1.1.1.1  2.2.2.2 1 2\r\n".to_vec(),
                malformed(
                    "PROXY TCP4 1.1.1.1  2.2.2.2 1 2",
                    "empty field (two spaces in a row, or a trailing space)",
                ),
            ),
            (
                "fail: trailing space",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 \r\n".to_vec(),
                malformed(
                    "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 ",
                    "extra field or trailing space after the destination port",
                ),
            ),
            (
                "fail: missing destination port",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n".to_vec(),
                malformed("PROXY TCP4 1.1.1.1 2.2.2.2 1", "too few fields"),
            ),
            (
                "fail: extra field",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n".to_vec(),
                malformed(
                    "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3",
                    "extra field or trailing space after the destination port",
                ),
            ),
            (
                "fail: tab instead of space",
                decode,
                b"PROXY TCP4 1.1.1.1\t2.2.2.2 1 2\r\n".to_vec(),
                malformed("PROXY TCP4 1.1.1.1\t2.2.2.2 1 2", "too few fields"),
            ),
            (
                "fail: leading zero in an IPv4 octet",
                decode,
                b"PROXY TCP4 010.0.0.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1AddressLeadingZero {
                    field: SourceAddress,
                    value: s("010.0.0.1"),
                },
            ),
            (
                "fail: leading zero in the last octet of the destination",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.00 1 2\r\n".to_vec(),
                ProxyError::V1AddressLeadingZero {
                    field: DestinationAddress,
                    value: s("2.2.2.00"),
                },
            ),
            (
                "fail: octet above 255",
                decode,
                b"PROXY TCP4 256.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("256.1.1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: three octets",
                decode,
                b"PROXY TCP4 1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1.1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: five octets",
                decode,
                b"PROXY TCP4 1.1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1.1.1.1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: empty octet",
                decode,
                b"PROXY TCP4 1..1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1..1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: TCP4 with an IPv6 address",
                decode,
                b"PROXY TCP4 1.1.1.1 2001:db8::1 1 2\r\n".to_vec(),
                ProxyError::V1FamilyMismatch {
                    protocol: "TCP4",
                    field: DestinationAddress,
                    value: s("2001:db8::1"),
                },
            ),
            (
                "fail: TCP6 with an IPv4 address",
                decode,
                b"PROXY TCP6 1.1.1.1 ::1 1 2\r\n".to_vec(),
                ProxyError::V1FamilyMismatch {
                    protocol: "TCP6",
                    field: SourceAddress,
                    value: s("1.1.1.1"),
                },
            ),
            (
                "fail: IPv6 zone id",
                decode,
                b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("fe80::1%eth0"),
                    expected: "IPv6",
                },
            ),
            (
                "fail: two double colons",
                decode,
                b"PROXY TCP6 1::2::3 ::1 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1::2::3"),
                    expected: "IPv6",
                },
            ),
            (
                "fail: port above 65535",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 99999 2\r\n".to_vec(),
                ProxyError::V1PortOutOfRange {
                    field: SourcePort,
                    value: s("99999"),
                },
            ),
            (
                "fail: port 65536",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 65536\r\n".to_vec(),
                ProxyError::V1PortOutOfRange {
                    field: DestinationPort,
                    value: s("65536"),
                },
            ),
            (
                "fail: port with six digits",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 100000\r\n".to_vec(),
                ProxyError::V1PortOutOfRange {
                    field: DestinationPort,
                    value: s("100000"),
                },
            ),
            (
                "fail: port with a leading zero",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 0443 2\r\n".to_vec(),
                ProxyError::V1PortLeadingZero {
                    field: SourcePort,
                    value: s("0443"),
                },
            ),
            (
                "fail: port 00",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 00\r\n".to_vec(),
                ProxyError::V1PortLeadingZero {
                    field: DestinationPort,
                    value: s("00"),
                },
            ),
            (
                "fail: signed port",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 +1 2\r\n".to_vec(),
                ProxyError::V1InvalidPort {
                    field: SourcePort,
                    value: s("+1"),
                },
            ),
            (
                "fail: hex port",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 0x1\r\n".to_vec(),
                ProxyError::V1InvalidPort {
                    field: DestinationPort,
                    value: s("0x1"),
                },
            ),
            (
                "fail: lone LF ends the line",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n".to_vec(),
                ProxyError::V1StrayLineBreak { offset: 30 },
            ),
            (
                "fail: CR not followed by LF",
                decode,
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\rX".to_vec(),
                ProxyError::V1StrayLineBreak { offset: 30 },
            ),
            (
                "fail: 107 bytes and no CRLF",
                decode,
                long,
                ProxyError::V1MissingCrlf,
            ),
            (
                "fail: CRLF that would end at byte 108",
                decode,
                crlf_at_108,
                ProxyError::V1MissingCrlf,
            ),
            (
                "fail: non-ASCII in an address",
                decode,
                "PROXY TCP4 1.1.1.\u{661} 2.2.2.2 1 2\r\n"
                    .as_bytes()
                    .to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1.1.1.\u{661}"),
                    expected: "IPv4",
                },
            ),
        ];
        for (name, decoder, input, expected) in cases {
            assert_eq!(decoder(&input), Err(expected), "{name}");
        }
    }

    #[test]
    fn rejects_malformed_v2() {
        let mut bad_crc = v2_tcp4_crc_unique_id();
        bad_crc[12 + 16 + 3] ^= 0x01;
        let mut payload_changed = v2_tcp4_crc_unique_id();
        *payload_changed.last_mut().unwrap() = b'5';
        let mut bad_sig = V2_TCP4.to_vec();
        bad_sig[7] = b'q';
        let cases: Vec<(&str, Decoder, Vec<u8>, ProxyError)> = vec![
            (
                "fail: signature differs in byte 8",
                decode,
                bad_sig.clone(),
                ProxyError::V2BadSignature {
                    prefix: bad_sig[..16].to_vec(),
                },
            ),
            (
                "fail: v1 text given to decode_v2",
                decode_v2,
                b"PROXY UNKNOWN\r\n".to_vec(),
                ProxyError::V2BadSignature {
                    prefix: b"PROXY UNKNOWN\r\n".to_vec(),
                },
            ),
            (
                "fail: version 1 nibble",
                decode,
                v2_raw(0x11, 0x11, &V2_TCP4[16..]),
                ProxyError::V2BadVersion { version: 1 },
            ),
            (
                "fail: version 3 nibble",
                decode,
                v2_raw(0x31, 0x11, &V2_TCP4[16..]),
                ProxyError::V2BadVersion { version: 3 },
            ),
            (
                "fail: command 2",
                decode,
                v2_raw(0x22, 0x11, &V2_TCP4[16..]),
                ProxyError::V2BadCommand { command: 2 },
            ),
            (
                "fail: command 0xF",
                decode,
                v2_raw(0x2F, 0x00, &[]),
                ProxyError::V2BadCommand { command: 0xF },
            ),
            (
                "fail: family 4",
                decode,
                v2_raw(0x21, 0x41, &V2_TCP4[16..]),
                ProxyError::V2BadFamilyTransport { byte: 0x41 },
            ),
            (
                "fail: transport 3",
                decode,
                v2_raw(0x21, 0x13, &V2_TCP4[16..]),
                ProxyError::V2BadFamilyTransport { byte: 0x13 },
            ),
            (
                "fail: AF_INET with UNSPEC transport",
                decode,
                v2_raw(0x21, 0x10, &V2_TCP4[16..]),
                ProxyError::V2BadFamilyTransport { byte: 0x10 },
            ),
            (
                "fail: family byte checked for LOCAL too",
                decode,
                v2_raw(0x20, 0x03, &[]),
                ProxyError::V2BadFamilyTransport { byte: 0x03 },
            ),
            (
                "fail: AF_INET block one byte short",
                decode,
                v2_raw(0x21, 0x11, &V2_TCP4[16..27]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_INET",
                    required: 12,
                    declared: 11,
                },
            ),
            (
                "fail: AF_INET6 block one byte short",
                decode,
                v2_raw(0x21, 0x21, &[0; 35]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_INET6",
                    required: 36,
                    declared: 35,
                },
            ),
            (
                "fail: AF_UNIX block one byte short",
                decode,
                v2_raw(0x21, 0x31, &[0; 215]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_UNIX",
                    required: 216,
                    declared: 215,
                },
            ),
            (
                "fail: LOCAL AF_INET with no room for its addresses",
                decode,
                v2_raw(0x20, 0x11, &[]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_INET",
                    required: 12,
                    declared: 0,
                },
            ),
            (
                "fail: two bytes left where a TLV header needs three",
                decode,
                v2_tcp4_with(&[0x01, 0x00]),
                ProxyError::V2TlvTruncated {
                    offset: 28,
                    available: 2,
                },
            ),
            (
                "fail: TLV length runs past the header",
                decode,
                v2_tcp4_with(&[0x01, 0x00, 0x03, b'h', b'2']),
                ProxyError::V2TlvOverrun {
                    tlv_type: 0x01,
                    offset: 28,
                    declared: 3,
                    available: 2,
                },
            ),
            (
                "fail: second TLV runs past the header",
                decode,
                v2_tcp4_with(&[0x04, 0x00, 0x00, 0xE0, 0xFF, 0xFF, 0x00]),
                ProxyError::V2TlvOverrun {
                    tlv_type: 0xE0,
                    offset: 31,
                    declared: 0xFFFF,
                    available: 1,
                },
            ),
            (
                "fail: SSL TLV shorter than client + verify",
                decode,
                v2_tcp4_with(&[0x20, 0x00, 0x04, 0x01, 0, 0, 0]),
                ProxyError::V2SslTooShort { len: 4 },
            ),
            (
                "fail: SSL sub-TLV runs past the SSL TLV",
                decode,
                // The SSL TLV is 9 bytes; its sub-TLV claims 2 but only 1 is left,
                // even though the header has bytes after the SSL TLV.
                v2_tcp4_with(&[
                    0x20, 0x00, 0x09, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x02, b'v', //
                    0x04, 0x00, 0x00,
                ]),
                ProxyError::V2SslSubTlvOverrun {
                    subtype: 0x21,
                    offset: 36,
                    declared: 2,
                    available: 1,
                },
            ),
            (
                "fail: SSL sub-TLV header truncated",
                decode,
                v2_tcp4_with(&[0x20, 0x00, 0x07, 0x01, 0, 0, 0, 0, 0x21, 0x00]),
                ProxyError::V2SslSubTlvTruncated {
                    offset: 36,
                    available: 2,
                },
            ),
            (
                "fail: SSL sub-TLV repeated",
                decode,
                v2_tcp4_with(&[
                    0x20, 0x00, 0x0B, 0x01, 0, 0, 0, 0, 0x22, 0x00, 0x00, 0x22, 0x00, 0x00,
                ]),
                ProxyError::V2DuplicateSslSubTlv { subtype: 0x22 },
            ),
            (
                "fail: SSL sub-TLV not UTF-8",
                decode,
                v2_tcp4_with(&[0x20, 0x00, 0x09, 0x01, 0, 0, 0, 0, 0x22, 0x00, 0x01, 0xFF]),
                ProxyError::V2InvalidSslSubTlv {
                    subtype: 0x22,
                    reason: "value is not valid UTF-8",
                },
            ),
            (
                "fail: CRC32c does not match (checksum altered)",
                decode,
                bad_crc,
                ProxyError::V2Crc32cMismatch {
                    declared: 0xB6DD_5C5E,
                    computed: 0xB7DD_5C5E,
                },
            ),
            (
                "fail: CRC32c does not match (payload altered)",
                decode,
                payload_changed.clone(),
                ProxyError::V2Crc32cMismatch {
                    declared: 0xB7DD_5C5E,
                    computed: crc32c_zeroing(&payload_changed, 31),
                },
            ),
            (
                "fail: CRC32c TLV of 3 bytes",
                decode,
                v2_tcp4_with(&[0x03, 0x00, 0x03, 0, 0, 0]),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0x03,
                    reason: "CRC32c value must be 4 bytes",
                },
            ),
            (
                "fail: two CRC32c TLVs",
                decode,
                v2_tcp4_with(&[0x03, 0x00, 0x04, 0, 0, 0, 0, 0x03, 0x00, 0x04, 0, 0, 0, 0]),
                ProxyError::V2DuplicateTlv { tlv_type: 0x03 },
            ),
            (
                "fail: ALPN repeated (no silent last-one-wins)",
                decode,
                v2_tcp4_with(&[0x01, 0x00, 0x01, b'a', 0x01, 0x00, 0x01, b'b']),
                ProxyError::V2DuplicateTlv { tlv_type: 0x01 },
            ),
            (
                "fail: authority not UTF-8",
                decode,
                v2_tcp4_with(&[0x02, 0x00, 0x02, 0xC3, 0x28]),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0x02,
                    reason: "value is not valid UTF-8",
                },
            ),
            (
                "fail: unique id of 129 bytes",
                decode,
                v2_tcp4_with(&[&[0x05, 0x00, 0x81][..], &[0xAB; 129]].concat()),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0x05,
                    reason: "unique id longer than 128 bytes",
                },
            ),
            (
                "fail: Azure link id of 3 bytes",
                decode,
                v2_tcp4_with(&[0xEE, 0x00, 0x04, 0x01, 1, 2, 3]),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0xEE,
                    reason: "Azure link id must be 4 bytes",
                },
            ),
            (
                "fail: AWS VPC endpoint id not UTF-8",
                decode,
                v2_tcp4_with(&[0xEA, 0x00, 0x02, 0x01, 0xFF]),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0xEA,
                    reason: "value is not valid UTF-8",
                },
            ),
        ];
        for (name, decoder, input, expected) in cases {
            assert_eq!(decoder(&input), Err(expected), "{name}");
        }
    }

    #[test]
    fn v2_fails_as_soon_as_the_bad_byte_arrives() {
        let cases: [(&str, Vec<u8>, ProxyError); 4] = [
            (
                "fail: first byte",
                vec![0x0D, 0x0B],
                ProxyError::V2BadSignature {
                    prefix: vec![0x0D, 0x0B],
                },
            ),
            (
                "fail: version, 13 bytes in",
                [&SIG[..], &[0x11]].concat(),
                ProxyError::V2BadVersion { version: 1 },
            ),
            (
                "fail: family, 14 bytes in",
                [&SIG[..], &[0x21, 0x51]].concat(),
                ProxyError::V2BadFamilyTransport { byte: 0x51 },
            ),
            (
                "fail: short address block, 16 bytes in",
                [&SIG[..], &[0x21, 0x21, 0x00, 0x10]].concat(),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_INET6",
                    required: 36,
                    declared: 16,
                },
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decode(&input), Err(expected), "{name}");
        }
    }

    // --- Incremental feeding -------------------------------------------------

    fn valid_headers() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "v1 TCP4",
                b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
            ),
            (
                "v1 TCP6",
                b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n".to_vec(),
            ),
            ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
            ("v2 TCP4", V2_TCP4.to_vec()),
            ("v2 LOCAL", v2_local()),
            ("v2 TCP6 ALPN authority", v2_tcp6_alpn_authority()),
            ("v2 CRC32c", v2_tcp4_crc_unique_id()),
            ("v2 SSL and friends", v2_tcp4_ssl_and_friends()),
        ]
    }

    #[test]
    fn every_prefix_is_incomplete_and_the_payload_is_untouched() {
        for (name, header) in valid_headers() {
            for len in 0..header.len() {
                let prefix = &header[..len];
                let Ok(Decode::Incomplete { needed }) = decode(prefix) else {
                    panic!("{name}: prefix of {len} bytes gave {:?}", decode(prefix));
                };
                assert!(needed >= 1, "{name}: {len}");
                assert!(len + needed <= header.len(), "{name}: {len} + {needed}");
                // With no bytes at all the version is unknown, so 1 is the answer.
                if header.starts_with(&SIG) && len > 0 {
                    let exact = if len < 16 {
                        16 - len
                    } else {
                        header.len() - len
                    };
                    assert_eq!(needed, exact, "{name}: v2 needed at {len}");
                }
            }
            let with_payload = [&header[..], PAYLOAD].concat();
            let (decoded, consumed) = complete(&with_payload);
            assert_eq!(consumed, header.len(), "{name}");
            assert_eq!(&with_payload[consumed..], PAYLOAD, "{name}");
            assert_eq!(complete(&header).0, decoded, "{name}");
        }
    }

    #[test]
    fn byte_at_a_time_reaches_the_same_header() {
        for (name, header) in valid_headers() {
            let mut buf = Vec::new();
            let mut stream = header.iter().chain(PAYLOAD);
            let decoded = loop {
                match decode(&buf).unwrap() {
                    Decode::Incomplete { needed } => {
                        for _ in 0..needed {
                            buf.push(*stream.next().unwrap());
                        }
                    }
                    Decode::Complete { header, consumed } => break (header, consumed),
                }
            };
            assert_eq!(decoded.1, header.len(), "{name}");
            assert_eq!(buf.len(), header.len(), "{name}: read past the header");
        }
    }

    // --- Detection -----------------------------------------------------------

    #[test]
    fn looks_like_proxy_decides_as_early_as_it_can() {
        let cases: [(&str, &[u8], Option<bool>); 12] = [
            ("undecided: empty", b"", None),
            ("undecided: P", b"P", None),
            ("undecided: PROXY", b"PROXY", None),
            ("yes: PROXY space", b"PROXY ", Some(true)),
            ("yes: a whole v1 line", b"PROXY UNKNOWN\r\n", Some(true)),
            ("no: lowercase", b"p", Some(false)),
            ("no: HTTP", b"GET / HTTP/1.1", Some(false)),
            ("no: TLS", b"\x16\x03\x01", Some(false)),
            ("undecided: v2 signature alone", &SIG, None),
            (
                "yes: v2 signature and version 2",
                &V2_TCP4[..13],
                Some(true),
            ),
            (
                "no: v2 signature and version 1",
                &[&SIG[..], &[0x11]].concat(),
                Some(false),
            ),
            ("no: CRLF then something else", b"\r\n\r\nX", Some(false)),
        ];
        for (name, input, expected) in cases {
            assert_eq!(looks_like_proxy(input), expected, "{name}");
        }
    }

    // --- Encoding ------------------------------------------------------------

    #[test]
    fn encode_v1_writes_the_spec_format() {
        let cases: Vec<(&str, Option<ProxyAddrs>, &str)> = vec![
            (
                "TCP4",
                addrs("192.0.2.1:56324", "198.51.100.7:443"),
                "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
            ),
            (
                "TCP6",
                addrs("[2001:db8::1]:56324", "[2001:db8::2]:443"),
                "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
            ),
            (
                "TCP6: IPv4-mapped written in hex, not dotted",
                addrs("[::ffff:192.0.2.1]:1", "[::]:0"),
                "PROXY TCP6 ::ffff:c000:201 :: 1 0\r\n",
            ),
            ("no addresses: UNKNOWN", None, "PROXY UNKNOWN\r\n"),
            (
                "mixed families: UNKNOWN",
                addrs("192.0.2.1:1", "[2001:db8::2]:2"),
                "PROXY UNKNOWN\r\n",
            ),
        ];
        for (name, addrs, expected) in cases {
            let mut out = b"kept".to_vec();
            encode_v1(addrs.as_ref(), &mut out);
            let expected = [&b"kept"[..], expected.as_bytes()].concat();
            assert_eq!(out, expected, "{name}: {}", out.escape_ascii());
        }
    }

    #[test]
    fn ipv6_text_is_rfc_5952() {
        let cases = [
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("0:0:1:0:0:0:0:0", "0:0:1::"),
            ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ];
        for (input, expected) in cases {
            let ip: Ipv6Addr = input.parse().unwrap();
            assert_eq!(Rfc5952(ip).to_string(), expected, "{input}");
            if ip.to_ipv4_mapped().is_none() {
                assert_eq!(Rfc5952(ip).to_string(), ip.to_string(), "{input} vs std");
            }
        }
    }

    #[test]
    fn encode_v2_matches_hand_built_vectors() {
        let cases: Vec<(&str, ProxyHeader, Vec<u8>)> = vec![
            ("TCP4", v2_tcp4_header(Tlvs::default()), V2_TCP4.to_vec()),
            (
                "LOCAL",
                v2(Command::Local, Transport::Unspec, None, Tlvs::default()),
                v2_local(),
            ),
            (
                "TCP6 with ALPN and authority",
                v2_tcp6_alpn_authority_header(),
                v2_tcp6_alpn_authority(),
            ),
            (
                "CRC32c computed, whatever value was asked for",
                v2_tcp4_header(Tlvs {
                    crc32c: Some(0xDEAD_BEEF),
                    unique_id: Some(b"1234".to_vec()),
                    ..Tlvs::default()
                }),
                v2_tcp4_crc_unique_id(),
            ),
            (
                "SSL, NETNS, AWS, Azure, custom",
                v2_tcp4_ssl_and_friends_header(),
                v2_tcp4_ssl_and_friends(),
            ),
        ];
        for (name, header, expected) in cases {
            let mut out = b"kept".to_vec();
            encode_v2(&header, &mut out).unwrap();
            assert_eq!(&out[..4], b"kept", "{name}");
            assert_eq!(out[4..], expected[..], "{name}");
        }
    }

    #[test]
    fn encode_v2_refuses_headers_that_would_not_round_trip() {
        let tcp4 = addrs("192.0.2.1:1", "198.51.100.7:2");
        let with_tlvs = |tlvs| v2(Command::Proxy, Transport::Stream, tcp4, tlvs);
        let cases: Vec<(&str, ProxyHeader, EncodeError)> = vec![
            (
                "LOCAL with addresses",
                v2(Command::Local, Transport::Unspec, tcp4, Tlvs::default()),
                EncodeError::LocalWithAddresses,
            ),
            (
                "LOCAL with a transport",
                v2(Command::Local, Transport::Stream, None, Tlvs::default()),
                EncodeError::LocalWithTransport {
                    transport: Transport::Stream,
                },
            ),
            (
                "Stream without addresses",
                v2(Command::Proxy, Transport::Stream, None, Tlvs::default()),
                EncodeError::TransportWithoutAddresses {
                    transport: Transport::Stream,
                },
            ),
            (
                "addresses without transport",
                v2(Command::Proxy, Transport::Unspec, tcp4, Tlvs::default()),
                EncodeError::AddressesWithoutTransport,
            ),
            (
                "mixed families",
                v2(
                    Command::Proxy,
                    Transport::Stream,
                    addrs("192.0.2.1:1", "[::1]:2"),
                    Tlvs::default(),
                ),
                EncodeError::MixedFamilies {
                    source: sa("192.0.2.1:1"),
                    destination: sa("[::1]:2"),
                },
            ),
            (
                "unique id of 129 bytes",
                with_tlvs(Tlvs {
                    unique_id: Some(vec![0; 129]),
                    ..Tlvs::default()
                }),
                EncodeError::UniqueIdTooLong { len: 129 },
            ),
            (
                "ALPN in other",
                with_tlvs(Tlvs {
                    other: vec![(0x01, b"h2".to_vec())],
                    ..Tlvs::default()
                }),
                EncodeError::ReservedTypeInOther { tlv_type: 0x01 },
            ),
            (
                "NOOP in other",
                with_tlvs(Tlvs {
                    other: vec![(0x04, vec![])],
                    ..Tlvs::default()
                }),
                EncodeError::ReservedTypeInOther { tlv_type: 0x04 },
            ),
            (
                "AWS VPC endpoint subtype in other",
                with_tlvs(Tlvs {
                    other: vec![(0xEA, vec![0x01, b'x'])],
                    ..Tlvs::default()
                }),
                EncodeError::ReservedTypeInOther { tlv_type: 0xEA },
            ),
            (
                "one TLV over 65535 bytes",
                with_tlvs(Tlvs {
                    alpn: Some(vec![0; 65536]),
                    ..Tlvs::default()
                }),
                EncodeError::TlvTooLong {
                    tlv_type: 0x01,
                    len: 65536,
                },
            ),
            (
                "payload over 65535 bytes",
                with_tlvs(Tlvs {
                    alpn: Some(vec![0; 40000]),
                    authority: Some("a".repeat(40000)),
                    ..Tlvs::default()
                }),
                EncodeError::PayloadTooLong {
                    len: 12 + 40003 + 40003,
                },
            ),
        ];
        for (name, header, expected) in cases {
            let mut out = b"kept".to_vec();
            assert_eq!(encode_v2(&header, &mut out), Err(expected), "{name}");
            assert_eq!(out, b"kept", "{name}: nothing appended on error");
        }
    }

    #[test]
    fn largest_v2_header_round_trips() {
        let header = v2(
            Command::Proxy,
            Transport::Stream,
            addrs("192.0.2.1:1", "198.51.100.7:2"),
            Tlvs {
                other: vec![(0xE0, vec![7; 65535 - 12 - 3])],
                ..Tlvs::default()
            },
        );
        let mut out = Vec::new();
        encode_v2(&header, &mut out).unwrap();
        assert_eq!(out.len(), V2_MAX_LEN);
        assert_eq!(complete(&out), (header, V2_MAX_LEN));
    }

    #[test]
    fn v1_round_trips() {
        let cases = [
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
            addrs("0.0.0.0:0", "255.255.255.255:65535"),
            addrs("[2001:db8::1]:1", "[2001:db8::2]:2"),
            addrs("[::]:0", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            addrs("[::ffff:192.0.2.1]:1", "[::1]:2"),
            None,
        ];
        for addrs in cases {
            let mut out = Vec::new();
            encode_v1(addrs.as_ref(), &mut out);
            assert!(out.len() <= V1_MAX_LEN);
            let (header, consumed) = complete(&out);
            assert_eq!(consumed, out.len());
            assert_eq!(header.addrs, addrs, "{:?}", out.escape_ascii());
            assert_eq!(header.version, Version::V1);
        }
    }

    #[test]
    fn v2_round_trips_with_every_tlv() {
        let everything = Tlvs {
            alpn: Some(b"http/1.1".to_vec()),
            authority: Some("ünïcode.example".into()),
            crc32c: None,
            unique_id: Some(vec![0, 1, 2, 255]),
            ssl: Some(Ssl {
                client: 0x05,
                verify: 0x0102_0304,
                version: None,
                cipher: Some("ECDHE-RSA-AES128-GCM-SHA256".into()),
                sig_alg: None,
                key_alg: Some(String::new()),
                cn: Some("CN with spaces".into()),
            }),
            netns: Some("ns1".into()),
            aws_vpce_id: Some(String::new()),
            azure_link_id: Some(u32::MAX),
            other: vec![(0xE1, vec![]), (0x06, vec![1]), (0xE1, vec![2])],
        };
        let headers = [
            v2(
                Command::Proxy,
                Transport::Datagram,
                addrs("[2001:db8::1]:0", "[::ffff:10.0.0.1]:65535"),
                everything.clone(),
            ),
            v2(Command::Local, Transport::Unspec, None, everything.clone()),
            v2(Command::Proxy, Transport::Unspec, None, Tlvs::default()),
        ];
        for header in headers {
            for crc in [None, Some(0)] {
                let mut header = header.clone();
                header.tlvs.crc32c = crc;
                let mut out = Vec::new();
                encode_v2(&header, &mut out).unwrap();
                let (mut decoded, consumed) = complete(&out);
                assert_eq!(consumed, out.len());
                if crc.is_some() {
                    assert!(decoded.tlvs.crc32c.is_some(), "checksum written");
                    decoded.tlvs.crc32c = Some(0);
                }
                assert_eq!(decoded, header);
            }
        }
    }

    // --- CRC32c and messages -------------------------------------------------

    #[test]
    fn crc32c_matches_published_check_values() {
        let ascending: Vec<u8> = (0..32).collect();
        let cases: [(&str, &[u8], u32); 5] = [
            ("empty", b"", 0),
            ("check value of \"123456789\"", b"123456789", 0xE306_9283),
            ("RFC 3720 B.4: 32 zeros", &[0; 32], 0x8A91_36AA),
            ("RFC 3720 B.4: 32 x 0xFF", &[0xFF; 32], 0x62A8_AB43),
            ("RFC 3720 B.4: 0..32", &ascending, 0x46DD_794E),
        ];
        for (name, input, expected) in cases {
            assert_eq!(crc32c(input), expected, "{name}");
        }
    }

    #[test]
    fn messages_name_what_was_parsed() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"PROXY TCP4 1.1.1.1 2.2.2.2 99999 2\r\n",
                "PROXY v1: source port \"99999\" out of range",
            ),
            (
                b"PROXY TCP4 010.0.0.1 2.2.2.2 1 2\r\n",
                "PROXY v1: source address \"010.0.0.1\" has an octet with a leading zero",
            ),
            (
                b"PROXY TCP4 1.1.1.1 ::1 1 2\r\n",
                "PROXY v1: destination address \"::1\" does not match protocol TCP4",
            ),
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                "PROXY: expected \"PROXY \" or the v2 signature, got \"SSH-2.0-OpenSSH_\"; \
                 is the peer configured to send the PROXY protocol?",
            ),
            (
                &[
                    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21,
                    0x11, 0x00, 0x00,
                ],
                "PROXY v2: AF_INET addresses take 12 bytes but the header declares 0",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input).unwrap_err().to_string(), expected);
        }
    }
}
