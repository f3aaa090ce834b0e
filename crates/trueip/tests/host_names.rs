//! Trust by host name: the core does no I/O, so a name's addresses are supplied by the
//! caller, as provider ranges are; the policy then trusts them like any address.
#![allow(clippy::unwrap_used, reason = "tests")]
#![cfg(feature = "serde")]

use std::collections::BTreeMap;

use trueip::config::{ClientIpConfig, Strategies, StrategyEntry};
use trueip::{Connection, TrustSet};

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn conn(peer: &str) -> Connection {
    Connection::from_peer(trueip::addr::parse_node(peer.as_bytes()).unwrap())
}

#[test]
fn names_are_collected_once_from_every_trust_list() {
    let c = ClientIpConfig {
        trusted: strings(&["lb.internal", "10.0.0.0/8", "host:nginx", "LB.internal."]),
        strategy: Strategies::Chain(vec![
            StrategyEntry::WithTrust {
                name: "header:X-Real-IP".into(),
                trusted: strings(&["edge.svc"]),
            },
            StrategyEntry::Name("rightmost-untrusted".into()),
        ]),
        proxy_protocol_from: strings(&["nlb.internal", "loopback"]),
        ..ClientIpConfig::default()
    };
    assert_eq!(c.host_names(), ["lb.internal", "nginx", "edge.svc", "nlb.internal"]);
}

#[test]
fn a_resolved_name_is_trusted_and_an_unresolved_one_is_an_error() {
    let c = ClientIpConfig { trusted: strings(&["lb.internal"]), ..ClientIpConfig::default() };
    let mut read = |_: &str| Err::<Vec<u8>, String>("no files".into());
    let err = c.build(&mut read).unwrap_err().to_string();
    assert!(err.contains("lb.internal") && err.contains("client_ip.trusted"), "{err}");

    let addrs: TrustSet =
        ["10.0.0.5/32", "10.0.0.6/32"].iter().map(|c| c.parse().unwrap()).collect();
    let hosts = BTreeMap::from([("lb.internal".to_string(), addrs)]);
    let policy = c.build_resolved(&mut read, &BTreeMap::new(), &hosts).unwrap();
    let headers = [("X-Forwarded-For", "198.51.100.4")];
    for lb in ["10.0.0.5", "10.0.0.6"] {
        let got = policy.resolve(&conn(lb), &headers[..]);
        assert_eq!(got.ip().map(|ip| ip.to_string()).unwrap_or_default(), "198.51.100.4", "{lb}");
    }
    // Only the addresses the name resolved to, not their neighbours.
    let got = policy.resolve(&conn("10.0.0.7"), &headers[..]);
    assert_eq!(got.ip().map(|ip| ip.to_string()).unwrap_or_default(), "10.0.0.7");
}
