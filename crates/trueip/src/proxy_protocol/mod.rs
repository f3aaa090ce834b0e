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

// The parts, each using only those listed before it:
//   spec     the sizes, signature and type codes the specification fixes
//   cursor   checked reads over untrusted bytes
//   crc32c   the v2 checksum
//   error    ProxyError, EncodeError
//   tlv      Tlvs and Ssl: which v2 extensions are decoded, and why
//   header   ProxyHeader and Decode
//   v1, v2   the two decoders
//   encode   encode_v1, encode_v2
//   read     (feature `tokio`) a connection's preamble from an async stream: the sender
//            rule, the bound and the timeout around `decode`
// This file, the entry point, picks a decoder from the first byte.
mod crc32c;
mod cursor;
mod encode;
mod error;
mod header;
#[cfg(feature = "tokio")]
mod read;
mod spec;
mod tlv;
mod v1;
mod v2;

#[cfg(test)]
mod fixtures;

pub use encode::{EncodeError, encode_v1, encode_v2};
pub use error::{ProxyError, V1Field};
pub use header::{Command, Decode, ProxyAddrs, ProxyHeader, Transport, Version};
#[cfg(feature = "tokio")]
pub use read::{
    Accept, Preamble, PreambleError, PreambleRead, ReadRules, Untrusted, read_preamble,
    read_preamble_into, read_preamble_until,
};
pub use spec::{V1_MAX_LEN, V2_HEADER_MIN, V2_MAX_LEN};
pub use tlv::{Ssl, Tlvs};
pub use v1::decode_v1;
pub use v2::decode_v2;

use error::quoted_prefix;
use spec::{V1_PREFIX, V2_SIGNATURE};

/// Decodes a v1 or v2 header from the start of `buf`, whichever it is.
///
/// The first byte decides: `P` is v1, `\r` is v2, anything else is
/// [`ProxyError::NotProxy`]. An empty buffer is `Incomplete { needed: 1 }`.
pub fn decode(buf: &[u8]) -> Result<Decode, ProxyError> {
    match buf.first() {
        None => Ok(Decode::Incomplete { needed: 1 }),
        Some(b'P') => decode_v1(buf),
        Some(0x0D) => decode_v2(buf),
        Some(_) => Err(ProxyError::NotProxy { prefix: quoted_prefix(buf) }),
    }
}

/// Whether `buf` starts like a PROXY header: `Some(true)` once it holds `PROXY `
/// or the v2 signature and version nibble, `Some(false)` as soon as it cannot,
/// `None` while it is a prefix of either (including when empty).
///
/// For diagnostics only (see the module docs): a listener must know from its
/// configuration whether to expect a header, never from the bytes.
pub fn looks_like_proxy(buf: &[u8]) -> Option<bool> {
    let v1 = match_prefix(buf, V1_PREFIX);
    let v2 = match (match_prefix(buf, &V2_SIGNATURE), buf.get(V2_SIGNATURE.len())) {
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

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

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
                    let exact = if len < 16 { 16 - len } else { header.len() - len };
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
            ("yes: v2 signature and version 2", &V2_TCP4[..13], Some(true)),
            ("no: v2 signature and version 1", &[&SIG[..], &[0x11]].concat(), Some(false)),
            ("no: CRLF then something else", b"\r\n\r\nX", Some(false)),
        ];
        for (name, input, expected) in cases {
            assert_eq!(looks_like_proxy(input), expected, "{name}");
        }
    }
}
