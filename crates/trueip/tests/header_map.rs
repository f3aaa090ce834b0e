//! An `http::HeaderMap` decides as the same lines in a slice do. A header map of up to 24
//! lines is scanned name by name rather than looked up (`Headers for http::HeaderMap`),
//! and hyper's HTTP/1.1 and HTTP/2 requests both reach the gateway's policy as one: a
//! scan that missed a repeated line, took a line of a longer or shorter name, or lost a
//! line's order would make `header:X-Real-IP` believe one of two lines (a client's
//! beside the proxy's), or a list walk start from a client's entry. The slice, read line
//! by line, is the oracle.
#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/cases.rs"]
mod cases;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use trueip::{Connection, Policy};

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..4, 0u8..255).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        (1u8..100, 0u8..255).prop_map(|(a, b)| format!("198.51.{a}.{b}")),
        (0u16..0xffff).prop_map(|a| format!("2001:db8::{a:x}")),
        Just("unknown".to_string()),
        Just("s3cret".to_string()),
    ]
}

/// A line a policy reads (in any case), one whose name it could be mistaken for, or filler.
fn line() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        4 => Just("X-Forwarded-For"),
        2 => Just("x-forwarded-for"),
        2 => Just("Forwarded"),
        4 => Just("X-Real-IP"),
        2 => Just("x-real-ip"),
        2 => Just("X-Origin-Verify"),
        1 => Just("CF-Connecting-IP"),
        1 => Just("Cookie"),
        // The same length as a name read, a prefix of one, one that extends one.
        1 => Just("X-Forwarded-Fox"),
        1 => Just("X-Forwarded-Fo"),
        1 => Just("X-Real-IPs"),
        1 => Just("X-Real-I"),
        1 => Just("x_real_ip"),
        1 => Just("Forwarded-For"),
        6 => Just("X-Filler"),
        6 => Just("Accept"),
    ];
    let value = prop_oneof![
        address(),
        prop::collection::vec(address(), 1..4).prop_map(|a| a.join(", ")),
        address().prop_map(|a| format!("for=\"{a}\"")),
        address().prop_map(|a| format!("ip={a}; other=1")),
    ];
    (name.prop_map(str::to_string), value)
}

fn policies() -> Vec<Policy> {
    let chains: [&[&str]; 4] = [
        &["rightmost-untrusted"],
        &["header:X-Real-IP", "rightmost-untrusted"],
        &["cookie:ip", "header:CF-Connecting-IP", "hops:1"],
        &["header:X-Real-IP", "leftmost"],
    ];
    let mut out: Vec<Policy> = chains
        .iter()
        .map(|chain| {
            let mut b = Policy::builder().trust_str("10.0.0.0/14").unwrap();
            for s in *chain {
                b = b.strategy_str(s).unwrap();
            }
            b.build().unwrap()
        })
        .collect();
    out.push(
        Policy::builder()
            .trust_str("10.0.0.0/14")
            .unwrap()
            .strategy_str("header:X-Real-IP")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .from_list(trueip::ListHeader::Forwarded)
            .origin_secret(trueip::OriginSecret::new("X-Origin-Verify", "s3cret").unwrap())
            .build()
            .unwrap(),
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases::or(512)))]

    #[test]
    fn a_header_map_decides_as_its_lines_do(
        lines in prop::collection::vec(line(), 0..40),
        peer in prop_oneof![Just("10.0.0.9"), Just("198.51.100.1")],
    ) {
        let mut map = HeaderMap::new();
        for (n, v) in &lines {
            map.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let conn = Connection::from_peer(trueip::addr::parse_node(peer.as_bytes()).unwrap());
        for policy in policies() {
            prop_assert_eq!(
                policy.resolve(&conn, &map),
                policy.resolve(&conn, lines.as_slice()),
                "{} lines", lines.len()
            );
        }
    }
}

/// Many lines of one name, past the 16 a walk reads (kept from the right) and on both
/// sides of the 24-line scan, among other names: the map decides as the lines do, and the
/// answer is read from the right end.
#[test]
fn many_lines_of_one_name_decide_from_the_right_in_a_map_as_in_lines() {
    let conn = Connection::from_peer(trueip::addr::parse_node(b"10.0.0.9").unwrap());
    for xff_lines in [15, 16, 17, 22, 23, 24, 25, 40] {
        for other in [0, 1, 2, 10] {
            let mut lines: Vec<(String, String)> = Vec::new();
            for i in 0..xff_lines {
                if i % 3 == 0 && lines.len() < other + i {
                    lines.push(("X-Other".into(), "v".into()));
                }
                let v = if i + 1 == xff_lines {
                    "198.51.100.7".to_string()
                } else {
                    format!("203.0.113.{i}")
                };
                lines.push(("X-Forwarded-For".into(), v));
            }
            for _ in 0..other {
                lines.insert(0, ("Accept".into(), "v".into()));
            }
            let mut map = HeaderMap::new();
            for (n, v) in &lines {
                map.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            let policy = &policies()[0];
            let from_map = policy.resolve(&conn, &map);
            assert_eq!(from_map, policy.resolve(&conn, lines.as_slice()), "{} lines", lines.len());
            assert_eq!(
                from_map.client.ip(),
                Some("198.51.100.7".parse().unwrap()),
                "{} lines",
                lines.len()
            );
        }
    }
}
