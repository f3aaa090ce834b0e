//! Version 1, the text line (§2.1): `PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n`.
//! Read strictly: the grammar below is the specification's, not whatever std's address
//! parsers would also take.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::{ProxyError, V1Field, quoted_prefix};
use super::header::{Command, Decode, ProxyAddrs, ProxyHeader, Transport, Version};
use super::spec::{V1_MAX_LEN, V1_PREFIX};
use super::tlv::Tlvs;

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
        return Err(ProxyError::V1BadPrefix { prefix: quoted_prefix(buf) });
    }
    let Some(line_len) = find_crlf(buf)? else {
        return Ok(Decode::Incomplete { needed: 1 });
    };
    let line = buf.get(..line_len).unwrap_or_default();
    let header = parse_v1_line(line)?;
    Ok(Decode::Complete { header, consumed: line_len + 2 })
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
    if window.len() >= V1_MAX_LEN { Err(ProxyError::V1MissingCrlf) } else { Ok(None) }
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
        Some([]) => Err(malformed("empty field (two spaces in a row, or a trailing space)")),
        Some(field) => Ok(field),
    };
    let src = next_field()?;
    let dst = next_field()?;
    let sport = next_field()?;
    let dport = next_field()?;
    if fields.next().is_some() {
        return Err(malformed("extra field or trailing space after the destination port"));
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
        addrs: Some(ProxyAddrs { source, destination }),
        tlvs: Tlvs::default(),
    })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_v1_addr(family: V1Family, field: &[u8], which: V1Field) -> Result<IpAddr, ProxyError> {
    match family {
        V1Family::Tcp4 => match parse_ipv4_strict(field) {
            Ok(ip) => Ok(ip.into()),
            Err(Ipv4Problem::LeadingZero) => {
                Err(ProxyError::V1AddressLeadingZero { field: which, value: lossy(field) })
            }
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
    digits.iter().fold(0, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// IPv6 text as `Ipv6Addr::from_str` reads it (hex groups, one `::`, an optional
/// dotted IPv4 tail as `inet_pton` allows; no zone id).
fn parse_ipv6(field: &[u8]) -> Option<Ipv6Addr> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn parse_v1_port(field: &[u8], which: V1Field) -> Result<u16, ProxyError> {
    let value = || lossy(field);
    if !field.iter().all(u8::is_ascii_digit) {
        return Err(ProxyError::V1InvalidPort { field: which, value: value() });
    }
    if let [b'0', _, ..] = field {
        return Err(ProxyError::V1PortLeadingZero { field: which, value: value() });
    }
    let out_of_range = || ProxyError::V1PortOutOfRange { field: which, value: value() };
    if field.len() > 5 {
        return Err(out_of_range());
    }
    u16::try_from(decimal(field)).map_err(|_| out_of_range())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::decode;
    use crate::proxy_protocol::fixtures::*;

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
            ("ok: longest TCP6 line (104 bytes)", tcp6_max.into_bytes(), v1_proxy(all_f, all_f)),
            (
                "ok: TCP6 IPv4-mapped kept as mapped",
                b"PROXY TCP6 ::ffff:c000:201 ::1 1 2\r\n".to_vec(),
                v1_proxy("[::ffff:192.0.2.1]:1", "[::1]:2"),
            ),
            ("ok: UNKNOWN, short form", b"PROXY UNKNOWN\r\n".to_vec(), v1_unknown()),
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
    fn rejects_malformed_v1() {
        use V1Field::*;
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 93]].concat();
        let crlf_at_108 = [&b"PROXY UNKNOWN "[..], &[b'x'; 92], b"\r\n"].concat();
        assert_eq!(crlf_at_108.len(), V1_MAX_LEN + 1);
        let malformed = |line: &str, reason| ProxyError::V1Malformed { line: line.into(), reason };
        let s = String::from;
        assert_eq!(
            decode_v1(b"proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n"),
            Err(ProxyError::V1BadPrefix { prefix: b"proxy TCP4 1.1.1".to_vec() }),
            "fail: lowercase proxy (decode_v1)"
        );
        let cases: Vec<(&str, Vec<u8>, ProxyError)> = vec![
            (
                "fail: lowercase proxy (decode)",
                b"proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::NotProxy { prefix: b"proxy TCP4 1.1.1".to_vec() },
            ),
            (
                "fail: PROXY without its space, detected before CRLF",
                b"PROXYTCP4".to_vec(),
                ProxyError::V1BadPrefix { prefix: b"PROXYTCP4".to_vec() },
            ),
            (
                "fail: HTTP request",
                b"GET / HTTP/1.1\r\n".to_vec(),
                ProxyError::NotProxy { prefix: b"GET / HTTP/1.1\r\n".to_vec() },
            ),
            (
                "fail: lowercase protocol",
                b"PROXY tcp4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1UnknownProtocol { protocol: s("tcp4") },
            ),
            (
                "fail: unknown protocol",
                b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1UnknownProtocol { protocol: s("UDP4") },
            ),
            (
                "fail: UNKNOWN glued to more text",
                b"PROXY UNKNOWNX\r\n".to_vec(),
                ProxyError::V1UnknownProtocol { protocol: s("UNKNOWNX") },
            ),
            (
                "fail: two spaces after PROXY",
                b"PROXY  TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                malformed("PROXY  TCP4 1.1.1.1 2.2.2.2 1 2", "empty protocol field (extra space?)"),
            ),
            (
                "fail: two spaces between addresses",
                b"PROXY TCP4 1.1.1.1  2.2.2.2 1 2\r\n".to_vec(),
                malformed(
                    "PROXY TCP4 1.1.1.1  2.2.2.2 1 2",
                    "empty field (two spaces in a row, or a trailing space)",
                ),
            ),
            (
                "fail: trailing space",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 \r\n".to_vec(),
                malformed(
                    "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 ",
                    "extra field or trailing space after the destination port",
                ),
            ),
            (
                "fail: missing destination port",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n".to_vec(),
                malformed("PROXY TCP4 1.1.1.1 2.2.2.2 1", "too few fields"),
            ),
            (
                "fail: extra field",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n".to_vec(),
                malformed(
                    "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3",
                    "extra field or trailing space after the destination port",
                ),
            ),
            (
                "fail: tab instead of space",
                b"PROXY TCP4 1.1.1.1\t2.2.2.2 1 2\r\n".to_vec(),
                malformed("PROXY TCP4 1.1.1.1\t2.2.2.2 1 2", "too few fields"),
            ),
            (
                "fail: leading zero in an IPv4 octet",
                b"PROXY TCP4 010.0.0.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1AddressLeadingZero { field: SourceAddress, value: s("010.0.0.1") },
            ),
            (
                "fail: leading zero in the last octet of the destination",
                b"PROXY TCP4 1.1.1.1 2.2.2.00 1 2\r\n".to_vec(),
                ProxyError::V1AddressLeadingZero {
                    field: DestinationAddress,
                    value: s("2.2.2.00"),
                },
            ),
            (
                "fail: octet above 255",
                b"PROXY TCP4 256.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("256.1.1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: three octets",
                b"PROXY TCP4 1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1.1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: five octets",
                b"PROXY TCP4 1.1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1.1.1.1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: empty octet",
                b"PROXY TCP4 1..1.1 2.2.2.2 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1..1.1"),
                    expected: "IPv4",
                },
            ),
            (
                "fail: TCP4 with an IPv6 address",
                b"PROXY TCP4 1.1.1.1 2001:db8::1 1 2\r\n".to_vec(),
                ProxyError::V1FamilyMismatch {
                    protocol: "TCP4",
                    field: DestinationAddress,
                    value: s("2001:db8::1"),
                },
            ),
            (
                "fail: TCP6 with an IPv4 address",
                b"PROXY TCP6 1.1.1.1 ::1 1 2\r\n".to_vec(),
                ProxyError::V1FamilyMismatch {
                    protocol: "TCP6",
                    field: SourceAddress,
                    value: s("1.1.1.1"),
                },
            ),
            (
                "fail: IPv6 zone id",
                b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("fe80::1%eth0"),
                    expected: "IPv6",
                },
            ),
            (
                "fail: two double colons",
                b"PROXY TCP6 1::2::3 ::1 1 2\r\n".to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1::2::3"),
                    expected: "IPv6",
                },
            ),
            (
                "fail: port above 65535",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 99999 2\r\n".to_vec(),
                ProxyError::V1PortOutOfRange { field: SourcePort, value: s("99999") },
            ),
            (
                "fail: port 65536",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 65536\r\n".to_vec(),
                ProxyError::V1PortOutOfRange { field: DestinationPort, value: s("65536") },
            ),
            (
                "fail: port with six digits",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 100000\r\n".to_vec(),
                ProxyError::V1PortOutOfRange { field: DestinationPort, value: s("100000") },
            ),
            (
                "fail: port with a leading zero",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 0443 2\r\n".to_vec(),
                ProxyError::V1PortLeadingZero { field: SourcePort, value: s("0443") },
            ),
            (
                "fail: port 00",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 00\r\n".to_vec(),
                ProxyError::V1PortLeadingZero { field: DestinationPort, value: s("00") },
            ),
            (
                "fail: signed port",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 +1 2\r\n".to_vec(),
                ProxyError::V1InvalidPort { field: SourcePort, value: s("+1") },
            ),
            (
                "fail: hex port",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 0x1\r\n".to_vec(),
                ProxyError::V1InvalidPort { field: DestinationPort, value: s("0x1") },
            ),
            (
                "fail: lone LF ends the line",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n".to_vec(),
                ProxyError::V1StrayLineBreak { offset: 30 },
            ),
            (
                "fail: CR not followed by LF",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\rX".to_vec(),
                ProxyError::V1StrayLineBreak { offset: 30 },
            ),
            ("fail: 107 bytes and no CRLF", long, ProxyError::V1MissingCrlf),
            ("fail: CRLF that would end at byte 108", crlf_at_108, ProxyError::V1MissingCrlf),
            (
                "fail: non-ASCII in an address",
                "PROXY TCP4 1.1.1.\u{661} 2.2.2.2 1 2\r\n".as_bytes().to_vec(),
                ProxyError::V1InvalidAddress {
                    field: SourceAddress,
                    value: s("1.1.1.\u{661}"),
                    expected: "IPv4",
                },
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decode(&input), Err(expected), "{name}");
        }
    }
}
