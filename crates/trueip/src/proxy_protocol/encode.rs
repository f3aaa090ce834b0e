//! Writing headers: [`encode_v1`] for the text line, [`encode_v2`] for the binary form
//! with its TLVs. The encoder refuses what would not decode back to itself, so that
//! `decode(encode(h)) == h` holds for every header it writes.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};

use super::crc32c::crc32c;
use super::header::{Command, ProxyAddrs, ProxyHeader, Transport};
use super::spec::*;
use super::tlv::has_own_field;

/// Why [`encode_v2`](encode_v2) refused a header. Nothing is written to `out` on error.
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
    /// (v2 `AF_UNIX` addresses are not representable in [`ProxyAddrs`](super::ProxyAddrs).)
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
            EncodeError::PayloadTooLong { len } => {
                write!(f, "PROXY v2 encode: {len} bytes of addresses and TLVs, at most 65535 fit")
            }
            EncodeError::TlvTooLong { tlv_type, len } => write!(
                f,
                "PROXY v2 encode: TLV {tlv_type:#04x} value is {len} bytes, at most 65535 fit"
            ),
            EncodeError::LocalWithAddresses => {
                f.write_str("PROXY v2 encode: a LOCAL header carries no addresses")
            }
            EncodeError::LocalWithTransport { transport } => {
                write!(f, "PROXY v2 encode: a LOCAL header has transport Unspec, not {transport:?}")
            }
            EncodeError::TransportWithoutAddresses { transport } => write!(
                f,
                "PROXY v2 encode: transport {transport:?} needs source and destination addresses"
            ),
            EncodeError::AddressesWithoutTransport => {
                f.write_str("PROXY v2 encode: addresses need a Stream or Datagram transport")
            }
            EncodeError::MixedFamilies { source, destination } => write!(
                f,
                "PROXY v2 encode: source {source} and destination {destination} \
                 are of different address families"
            ),
            EncodeError::UniqueIdTooLong { len } => write!(
                f,
                "PROXY v2 encode: unique id is {len} bytes, at most {UNIQUE_ID_MAX} allowed"
            ),
            EncodeError::ReservedTypeInOther { tlv_type } => {
                write!(f, "PROXY v2 encode: TLV {tlv_type:#04x} in `other` has its own field")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Appends a v1 line for `addrs` to `out`.
///
/// `None`, or a source and destination of different families (v1 cannot say
/// that), writes `PROXY UNKNOWN\r\n`. IPv6 addresses are written in RFC 5952
/// form, never with a dotted IPv4 tail, so strict receivers accept them.
pub fn encode_v1(addrs: Option<&ProxyAddrs>, out: &mut Vec<u8>) {
    let line = match addrs.map(|a| (a.source, a.destination)) {
        Some((SocketAddr::V4(src), SocketAddr::V4(dst))) => {
            format!("PROXY TCP4 {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port())
        }
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
    if let Some((kind, _)) = tlvs.other.iter().find(|(kind, value)| has_own_field(*kind, value)) {
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
        put_tlv(out, PP2_TYPE_AZURE, &[PP2_SUBTYPE_AZURE_LINK_ID, a, b, c, d])?;
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
            (source, destination) => Err(EncodeError::MixedFamilies { source, destination }),
        },
    }
}

fn put_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len())
        .map_err(|_| EncodeError::TlvTooLong { tlv_type: kind, len: value.len() })?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::fixtures::*;
    use crate::proxy_protocol::*;

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
            ("LOCAL", v2(Command::Local, Transport::Unspec, None, Tlvs::default()), v2_local()),
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
                EncodeError::LocalWithTransport { transport: Transport::Stream },
            ),
            (
                "Stream without addresses",
                v2(Command::Proxy, Transport::Stream, None, Tlvs::default()),
                EncodeError::TransportWithoutAddresses { transport: Transport::Stream },
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
                with_tlvs(Tlvs { unique_id: Some(vec![0; 129]), ..Tlvs::default() }),
                EncodeError::UniqueIdTooLong { len: 129 },
            ),
            (
                "ALPN in other",
                with_tlvs(Tlvs { other: vec![(0x01, b"h2".to_vec())], ..Tlvs::default() }),
                EncodeError::ReservedTypeInOther { tlv_type: 0x01 },
            ),
            (
                "NOOP in other",
                with_tlvs(Tlvs { other: vec![(0x04, vec![])], ..Tlvs::default() }),
                EncodeError::ReservedTypeInOther { tlv_type: 0x04 },
            ),
            (
                "AWS VPC endpoint subtype in other",
                with_tlvs(Tlvs { other: vec![(0xEA, vec![0x01, b'x'])], ..Tlvs::default() }),
                EncodeError::ReservedTypeInOther { tlv_type: 0xEA },
            ),
            (
                "one TLV over 65535 bytes",
                with_tlvs(Tlvs { alpn: Some(vec![0; 65536]), ..Tlvs::default() }),
                EncodeError::TlvTooLong { tlv_type: 0x01, len: 65536 },
            ),
            (
                "payload over 65535 bytes",
                with_tlvs(Tlvs {
                    alpn: Some(vec![0; 40000]),
                    authority: Some("a".repeat(40000)),
                    ..Tlvs::default()
                }),
                EncodeError::PayloadTooLong { len: 12 + 40003 + 40003 },
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
            Tlvs { other: vec![(0xE0, vec![7; 65535 - 12 - 3])], ..Tlvs::default() },
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
}
