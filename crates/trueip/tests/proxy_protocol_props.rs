//! Properties of the PROXY protocol codec: no input panics, encodings decode
//! back to what was encoded, and no proper prefix of a header is mistaken for a
//! whole one.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a panic is a test failure"
)]

#[path = "support/cases.rs"]
mod cases;

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::collection::vec;
use proptest::prelude::*;
use trueip::proxy_protocol::*;

const V2_SIGNATURE: [u8; 12] =
    [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

fn v4() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))
}

/// Includes IPv4-mapped and all-zero addresses often enough to matter.
fn v6() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<[u8; 16]>(),
        any::<[u8; 4]>().prop_map(|v4| {
            let mut ip = [0u8; 16];
            ip[10] = 0xFF;
            ip[11] = 0xFF;
            ip[12..].copy_from_slice(&v4);
            ip
        }),
        // Runs of zero groups exercise the `::` compression.
        (any::<[u16; 8]>(), any::<u8>()).prop_map(|(mut groups, mask)| {
            for (i, group) in groups.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *group = 0;
                }
            }
            let mut ip = [0u8; 16];
            for (chunk, group) in ip.chunks_mut(2).zip(groups) {
                chunk.copy_from_slice(&group.to_be_bytes());
            }
            ip
        }),
    ];
    (ip, any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0)))
}

fn same_family_addrs() -> impl Strategy<Value = ProxyAddrs> {
    prop_oneof![(v4(), v4()), (v6(), v6())]
        .prop_map(|(source, destination)| ProxyAddrs { source, destination })
}

fn any_addrs() -> impl Strategy<Value = ProxyAddrs> {
    let any_family = || prop_oneof![v4(), v6()];
    (any_family(), any_family())
        .prop_map(|(source, destination)| ProxyAddrs { source, destination })
}

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("\\PC{0,24}")
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn ssl() -> impl Strategy<Value = Ssl> {
    (any::<u8>(), any::<u32>(), text(), text(), text(), text(), text()).prop_map(
        |(client, verify, version, cipher, sig_alg, key_alg, cn)| Ssl {
            client,
            verify,
            version,
            cipher,
            sig_alg,
            key_alg,
            cn,
        },
    )
}

/// TLVs that decode into `Tlvs::other`: unregistered types, and the AWS and
/// Azure types with a subtype other than 0x01.
fn other_tlv() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        (
            prop_oneof![0x06u8..=0x1F, 0x21u8..=0x2F, 0x31u8..=0xE9, 0xEBu8..=0xED, 0xEFu8..=0xFF],
            bytes(16)
        ),
        (
            prop_oneof![Just(0xEAu8), Just(0xEEu8)],
            (2u8..=0xFF, bytes(8)).prop_map(|(subtype, rest)| [vec![subtype], rest].concat())
        ),
    ]
}

fn tlvs() -> impl Strategy<Value = Tlvs> {
    (
        proptest::option::of(bytes(16)),
        text(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(bytes(128)),
        proptest::option::of(ssl()),
        text(),
        text(),
        proptest::option::of(any::<u32>()),
        vec(other_tlv(), 0..4),
    )
        .prop_map(
            |(
                alpn,
                authority,
                crc32c,
                unique_id,
                ssl,
                netns,
                aws_vpce_id,
                azure_link_id,
                other,
            )| {
                Tlvs {
                    alpn,
                    authority,
                    crc32c,
                    unique_id,
                    ssl,
                    netns,
                    aws_vpce_id,
                    azure_link_id,
                    other,
                }
            },
        )
}

/// Every header `encode_v2` accepts: LOCAL, PROXY without addresses, and PROXY
/// with same-family addresses over a stream or datagram transport.
fn v2_header() -> impl Strategy<Value = ProxyHeader> {
    let header = |command, transport, addrs, tlvs| ProxyHeader {
        version: Version::V2,
        command,
        transport,
        addrs,
        tlvs,
    };
    prop_oneof![
        tlvs().prop_map(move |t| header(Command::Local, Transport::Unspec, None, t)),
        tlvs().prop_map(move |t| header(Command::Proxy, Transport::Unspec, None, t)),
        (
            same_family_addrs(),
            prop_oneof![Just(Transport::Stream), Just(Transport::Datagram)],
            tlvs()
        )
            .prop_map(move |(a, transport, t)| header(
                Command::Proxy,
                transport,
                Some(a),
                t
            )),
    ]
}

/// Bytes that get past the first checks often: raw noise, noise behind either
/// signature, and v1-looking text.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(300),
        bytes(300).prop_map(|tail| [&V2_SIGNATURE[..], &tail].concat()),
        (0u8..=0x0F, any::<u8>(), bytes(300)).prop_map(|(cmd, fam, tail)| {
            let len = u16::try_from(tail.len()).unwrap().to_be_bytes();
            [&V2_SIGNATURE[..], &[0x20 | cmd, fam], &len, &tail].concat()
        }),
        "PROXY [ -~]{0,110}(\r\n)?".prop_map(String::into_bytes),
        "PROXY (TCP4|TCP6|UNKNOWN) [0-9a-fA-F.: ]{0,100}\r\n".prop_map(String::into_bytes),
    ]
}

/// Encodes `header` and decodes it back, returning the decoded header and the
/// encoding.
fn v2_round_trip(header: &ProxyHeader) -> (ProxyHeader, Vec<u8>) {
    let mut out = Vec::new();
    encode_v2(header, &mut out).unwrap();
    match decode(&out).unwrap() {
        Decode::Complete { header, consumed } => {
            assert_eq!(consumed, out.len());
            (header, out)
        }
        other => panic!("encoding of {header:?} decoded as {other:?}"),
    }
}

fn check_outcome(buf: &[u8], outcome: &Result<Decode, ProxyError>) {
    match outcome {
        Ok(Decode::Incomplete { needed }) => {
            assert!(*needed >= 1);
            assert!(buf.len() + needed <= V2_MAX_LEN);
        }
        Ok(Decode::Complete { consumed, .. }) => {
            assert!(*consumed >= 1 && *consumed <= buf.len());
            assert_eq!(looks_like_proxy(buf), Some(true));
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    if looks_like_proxy(buf) == Some(false) {
        assert!(outcome.is_err(), "looks_like_proxy said no, decode said {outcome:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases::or(512)))]

    #[test]
    fn decode_never_panics(buf in hostile_bytes()) {
        let outcome = decode(&buf);
        check_outcome(&buf, &outcome);
        // The version-specific decoders must not panic either, on the wrong version.
        let _ = decode_v1(&buf);
        let _ = decode_v2(&buf);
    }

    #[test]
    fn mutated_headers_never_panic(
        header in v2_header(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (_, mut buf) = v2_round_trip(&header);
        for (at, xor) in flips {
            let i = at.index(buf.len());
            buf[i] ^= xor;
        }
        check_outcome(&buf, &decode(&buf));
    }

    #[test]
    fn v2_decodes_what_it_encodes(header in v2_header(), trailing in bytes(32)) {
        let (decoded, encoded) = v2_round_trip(&header);
        let mut expected = header.clone();
        if expected.tlvs.crc32c.is_some() {
            // The encoder writes the real checksum, whatever value was asked for.
            prop_assert!(decoded.tlvs.crc32c.is_some());
            expected.tlvs.crc32c = decoded.tlvs.crc32c;
        }
        prop_assert_eq!(&decoded, &expected);

        let with_payload = [&encoded[..], &trailing].concat();
        prop_assert_eq!(
            decode(&with_payload).unwrap(),
            Decode::Complete { header: decoded, consumed: encoded.len() }
        );
    }

    #[test]
    fn v1_decodes_what_it_encodes(addrs in proptest::option::of(any_addrs())) {
        let mut out = Vec::new();
        encode_v1(addrs.as_ref(), &mut out);
        prop_assert!(out.len() <= V1_MAX_LEN);
        let same_family = addrs.filter(|a| a.source.is_ipv4() == a.destination.is_ipv4());
        let expected = ProxyHeader {
            version: Version::V1,
            command: if same_family.is_some() { Command::Proxy } else { Command::Local },
            transport: if same_family.is_some() { Transport::Stream } else { Transport::Unspec },
            addrs: same_family,
            tlvs: Tlvs::default(),
        };
        prop_assert_eq!(
            decode(&out).unwrap(),
            Decode::Complete { header: expected, consumed: out.len() }
        );
    }

    #[test]
    fn every_proper_prefix_is_incomplete(
        header in v2_header(),
        v1_addrs in proptest::option::of(any_addrs()),
    ) {
        let (_, v2) = v2_round_trip(&header);
        let mut v1 = Vec::new();
        encode_v1(v1_addrs.as_ref(), &mut v1);
        for encoded in [v1, v2] {
            for len in 0..encoded.len() {
                match decode(&encoded[..len]) {
                    Ok(Decode::Incomplete { needed }) => {
                        prop_assert!(needed >= 1);
                        prop_assert!(len + needed <= encoded.len());
                    }
                    other => prop_assert!(false, "prefix of {} bytes gave {:?}", len, other),
                }
            }
        }
    }
}
