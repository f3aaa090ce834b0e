//! The sizes, the signature and the type codes that HAProxy's `proxy-protocol.txt`
//! fixes, in one place: the decoders, the encoder and the error messages read them from
//! here, so they cannot disagree about a number.

/// Longest v1 line a receiver must accept, CRLF included (specification §2.1:
/// `PROXY UNKNOWN` followed by two full-width IPv6 addresses and two ports).
pub const V1_MAX_LEN: usize = 107;

/// Size of the fixed part of a v2 header: signature, version/command,
/// family/transport and the 16-bit length of what follows.
pub const V2_HEADER_MIN: usize = 16;

/// Largest possible v2 header: the fixed part plus a 16-bit payload length.
/// This is a hard bound of the format; callers may impose a smaller cap.
pub const V2_MAX_LEN: usize = V2_HEADER_MIN + 65535;

/// The start of every v1 line (§2.1): uppercase, one space.
pub(super) const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The first 12 bytes of every v2 header (§2.2).
pub(super) const V2_SIGNATURE: [u8; 12] =
    [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

// TLV types (§2.2.1 to §2.2.7) and SSL sub-types (§2.2.6).
pub(super) const PP2_TYPE_ALPN: u8 = 0x01;
pub(super) const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub(super) const PP2_TYPE_CRC32C: u8 = 0x03;
pub(super) const PP2_TYPE_NOOP: u8 = 0x04;
pub(super) const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
pub(super) const PP2_TYPE_SSL: u8 = 0x20;
pub(super) const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub(super) const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub(super) const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub(super) const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
pub(super) const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
pub(super) const PP2_TYPE_NETNS: u8 = 0x30;
/// AWS (PrivateLink / NLB); the first value byte is a subtype.
pub(super) const PP2_TYPE_AWS: u8 = 0xEA;
pub(super) const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;
/// Azure (Private Link service); the first value byte is a subtype.
pub(super) const PP2_TYPE_AZURE: u8 = 0xEE;
pub(super) const PP2_SUBTYPE_AZURE_LINK_ID: u8 = 0x01;
/// Specification §2.2.5: "an opaque byte sequence of up to 128 bytes".
pub(super) const UNIQUE_ID_MAX: usize = 128;
/// `client` (1 byte) and `verify` (4 bytes) before the SSL sub-TLVs.
pub(super) const SSL_FIXED_LEN: usize = 5;
