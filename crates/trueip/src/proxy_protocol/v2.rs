//! Version 2, the binary header (§2.2): the fixed 16 bytes, the address block, then the
//! TLVs, which [`super::tlv`] decodes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::cursor::Cursor;
use super::error::{ProxyError, quoted_prefix};
use super::header::{Command, Decode, ProxyAddrs, ProxyHeader, Transport, Version};
use super::spec::{V2_HEADER_MIN, V2_SIGNATURE};
use super::tlv::parse_tlvs;

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
        return Err(ProxyError::V2BadSignature { prefix: quoted_prefix(buf) });
    }
    if let Some(&ver_cmd) = buf.get(12) {
        parse_command(ver_cmd)?;
    }
    if let Some(&fam) = buf.get(13) {
        parse_family_transport(fam)?;
    }
    let Some(&[.., ver_cmd, fam, len_hi, len_lo]) = buf.first_chunk::<V2_HEADER_MIN>() else {
        return Ok(Decode::Incomplete { needed: V2_HEADER_MIN - buf.len() });
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
        return Ok(Decode::Incomplete { needed: total - buf.len() });
    };
    let payload = header.get(V2_HEADER_MIN..).unwrap_or_default();
    let mut cur = Cursor::new(payload, V2_HEADER_MIN);
    let address_block_too_short = || ProxyError::V2AddressBlockTooShort {
        family: family.name(),
        required: family.address_len(),
        declared,
    };
    let block = cur.take(family.address_len()).ok_or_else(address_block_too_short)?;
    let addrs = parse_v2_addrs(family, block).ok_or_else(address_block_too_short)?;
    let tlvs = parse_tlvs(header, cur)?;
    let (transport, addrs) = match command {
        Command::Local => (Transport::Unspec, None),
        Command::Proxy => (transport, addrs),
    };
    Ok(Decode::Complete {
        header: ProxyHeader { version: Version::V2, command, transport, addrs, tlvs },
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
        return Err(ProxyError::V2BadVersion { version: ver_cmd >> 4 });
    }
    match ver_cmd & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        command => Err(ProxyError::V2BadCommand { command }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::fixtures::*;
    use crate::proxy_protocol::*;

    #[test]
    fn decodes_v2_examples() {
        let unix_addresses = [&[b'/'; 108][..], &[b'/'; 108][..]].concat();
        let cases: Vec<(&str, Vec<u8>, ProxyHeader)> = vec![
            ("ok: TCP4, no TLVs", V2_TCP4.to_vec(), v2_tcp4_header(Tlvs::default())),
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
                v2_raw(0x20, 0x11, &[&V2_TCP4[16..], &[0x01, 0x00, 0x02], b"h2"].concat()),
                v2(
                    Command::Local,
                    Transport::Unspec,
                    None,
                    Tlvs { alpn: Some(b"h2".to_vec()), ..Tlvs::default() },
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
                v2_raw(0x21, 0x32, &[&unix_addresses[..], &[0x30, 0x00, 0x01], b"x"].concat()),
                v2(
                    Command::Proxy,
                    Transport::Datagram,
                    None,
                    Tlvs { netns: Some("x".into()), ..Tlvs::default() },
                ),
            ),
        ];
        assert_v2_accepts(cases);
    }

    #[test]
    fn rejects_malformed_v2() {
        let mut bad_sig = V2_TCP4.to_vec();
        bad_sig[7] = b'q';
        assert_eq!(
            decode_v2(b"PROXY UNKNOWN\r\n"),
            Err(ProxyError::V2BadSignature { prefix: b"PROXY UNKNOWN\r\n".to_vec() }),
            "fail: v1 text given to decode_v2"
        );
        let cases: Vec<(&str, Vec<u8>, ProxyError)> = vec![
            (
                "fail: signature differs in byte 8",
                bad_sig.clone(),
                ProxyError::V2BadSignature { prefix: bad_sig[..16].to_vec() },
            ),
            (
                "fail: version 1 nibble",
                v2_raw(0x11, 0x11, &V2_TCP4[16..]),
                ProxyError::V2BadVersion { version: 1 },
            ),
            (
                "fail: version 3 nibble",
                v2_raw(0x31, 0x11, &V2_TCP4[16..]),
                ProxyError::V2BadVersion { version: 3 },
            ),
            (
                "fail: command 2",
                v2_raw(0x22, 0x11, &V2_TCP4[16..]),
                ProxyError::V2BadCommand { command: 2 },
            ),
            (
                "fail: command 0xF",
                v2_raw(0x2F, 0x00, &[]),
                ProxyError::V2BadCommand { command: 0xF },
            ),
            (
                "fail: family 4",
                v2_raw(0x21, 0x41, &V2_TCP4[16..]),
                ProxyError::V2BadFamilyTransport { byte: 0x41 },
            ),
            (
                "fail: transport 3",
                v2_raw(0x21, 0x13, &V2_TCP4[16..]),
                ProxyError::V2BadFamilyTransport { byte: 0x13 },
            ),
            (
                "fail: AF_INET with UNSPEC transport",
                v2_raw(0x21, 0x10, &V2_TCP4[16..]),
                ProxyError::V2BadFamilyTransport { byte: 0x10 },
            ),
            (
                "fail: family byte checked for LOCAL too",
                v2_raw(0x20, 0x03, &[]),
                ProxyError::V2BadFamilyTransport { byte: 0x03 },
            ),
            (
                "fail: AF_INET block one byte short",
                v2_raw(0x21, 0x11, &V2_TCP4[16..27]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_INET",
                    required: 12,
                    declared: 11,
                },
            ),
            (
                "fail: AF_INET6 block one byte short",
                v2_raw(0x21, 0x21, &[0; 35]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_INET6",
                    required: 36,
                    declared: 35,
                },
            ),
            (
                "fail: AF_UNIX block one byte short",
                v2_raw(0x21, 0x31, &[0; 215]),
                ProxyError::V2AddressBlockTooShort {
                    family: "AF_UNIX",
                    required: 216,
                    declared: 215,
                },
            ),
            (
                "fail: LOCAL AF_INET with no room for its addresses",
                v2_raw(0x20, 0x11, &[]),
                ProxyError::V2AddressBlockTooShort { family: "AF_INET", required: 12, declared: 0 },
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decode(&input), Err(expected), "{name}");
        }
    }

    #[test]
    fn v2_fails_as_soon_as_the_bad_byte_arrives() {
        let cases: [(&str, Vec<u8>, ProxyError); 4] = [
            (
                "fail: first byte",
                vec![0x0D, 0x0B],
                ProxyError::V2BadSignature { prefix: vec![0x0D, 0x0B] },
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
}
