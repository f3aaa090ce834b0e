//! Headers built by hand, field by field from the specification, and the helpers the
//! tests of every part of the codec share.

use std::net::SocketAddr;

use super::*;

/// The signature, restated from the specification rather than taken from the
/// code under test.
pub(super) const SIG: [u8; 12] =
    [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// Application bytes that follow a header in the incremental tests; a TLS
/// ClientHello start, with a CRLF to tempt a sloppy v1 scanner.
pub(super) const PAYLOAD: &[u8] = b"\x16\x03\x01\x02\x00 then\r\nmore";

pub(super) fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub(super) fn addrs(source: &str, destination: &str) -> Option<ProxyAddrs> {
    Some(ProxyAddrs { source: sa(source), destination: sa(destination) })
}

pub(super) fn v1_proxy(source: &str, destination: &str) -> ProxyHeader {
    ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        transport: Transport::Stream,
        addrs: addrs(source, destination),
        tlvs: Tlvs::default(),
    }
}

pub(super) fn v1_unknown() -> ProxyHeader {
    ProxyHeader {
        version: Version::V1,
        command: Command::Local,
        transport: Transport::Unspec,
        addrs: None,
        tlvs: Tlvs::default(),
    }
}

pub(super) fn v2(
    command: Command,
    transport: Transport,
    addrs: Option<ProxyAddrs>,
    tlvs: Tlvs,
) -> ProxyHeader {
    ProxyHeader { version: Version::V2, command, transport, addrs, tlvs }
}

pub(super) fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
    match decode(buf) {
        Ok(Decode::Complete { header, consumed }) => (header, consumed),
        other => panic!("expected Complete for {:?}, got {other:?}", buf.escape_ascii()),
    }
}

/// Each v2 case decodes whole to the expected header, and the v2 decoder alone agrees
/// with the dispatching one.
pub(super) fn assert_v2_accepts(cases: Vec<(&str, Vec<u8>, ProxyHeader)>) {
    for (name, input, expected) in cases {
        let (header, consumed) = complete(&input);
        assert_eq!(header, expected, "{name}");
        assert_eq!(consumed, input.len(), "{name}");
        assert_eq!(super::v2::decode_v2(&input), decode(&input), "{name}");
    }
}

// --- Hand-built v2 vectors, field by field from §2.2 -------------------------

/// PROXY TCP4 192.0.2.1:56324 -> 198.51.100.7:443, no TLVs.
pub(super) const V2_TCP4: [u8; 28] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
    0x21, // version 2, PROXY
    0x11, // AF_INET, STREAM
    0x00, 0x0C, // 12 bytes follow
    192, 0, 2, 1, // source address
    198, 51, 100, 7, // destination address
    0xDC, 0x04, // source port 56324
    0x01, 0xBB, // destination port 443
];

pub(super) fn v2_tcp4_header(tlvs: Tlvs) -> ProxyHeader {
    v2(Command::Proxy, Transport::Stream, addrs("192.0.2.1:56324", "198.51.100.7:443"), tlvs)
}

/// LOCAL, AF_UNSPEC, nothing follows: a health check.
pub(super) fn v2_local() -> Vec<u8> {
    [&SIG[..], &[0x20, 0x00, 0x00, 0x00]].concat()
}

/// PROXY TCP6 [2001:db8::1]:56324 -> [2001:db8::2]:443, ALPN "h2", authority
/// "example.com".
pub(super) fn v2_tcp6_alpn_authority() -> Vec<u8> {
    [
        &SIG[..],
        &[0x21, 0x21, 0x00, 36 + 5 + 14],
        &[0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01],
        &[0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02],
        &[0xDC, 0x04, 0x01, 0xBB],
        &[0x01, 0x00, 0x02],
        b"h2",
        &[0x02, 0x00, 0x0B],
        b"example.com",
    ]
    .concat()
}

pub(super) fn v2_tcp6_alpn_authority_header() -> ProxyHeader {
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
pub(super) fn v2_udp6_mapped() -> Vec<u8> {
    [
        &SIG[..],
        &[0x21, 0x22, 0x00, 36],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1],
        &[0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02],
        &[0x00, 0x35, 0x00, 0x35],
    ]
    .concat()
}

/// V2_TCP4's addresses, then CRC32c and unique id "1234". The checksum
/// 0xB7DD5C5E was computed with an independent bit-at-a-time CRC-32C over
/// the header with the checksum field zeroed (§2.2.3).
pub(super) fn v2_tcp4_crc_unique_id() -> Vec<u8> {
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
pub(super) fn v2_tcp4_ssl_and_friends() -> Vec<u8> {
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

pub(super) fn v2_tcp4_ssl_and_friends_header() -> ProxyHeader {
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
pub(super) fn v2_raw(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap().to_be_bytes();
    [&SIG[..], &[ver_cmd, fam], &len, payload].concat()
}

/// TCP4 addresses from V2_TCP4 followed by `tlvs`.
pub(super) fn v2_tcp4_with(tlvs: &[u8]) -> Vec<u8> {
    v2_raw(0x21, 0x11, &[&V2_TCP4[16..], tlvs].concat())
}

pub(super) fn valid_headers() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("v1 TCP4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec()),
        ("v1 TCP6", b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n".to_vec()),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        ("v2 TCP4", V2_TCP4.to_vec()),
        ("v2 LOCAL", v2_local()),
        ("v2 TCP6 ALPN authority", v2_tcp6_alpn_authority()),
        ("v2 CRC32c", v2_tcp4_crc_unique_id()),
        ("v2 SSL and friends", v2_tcp4_ssl_and_friends()),
    ]
}
