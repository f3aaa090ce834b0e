//! The whole decision over arbitrary headers: never panics, and the answer is always the
//! peer or an address that appears in the headers; walking X-Forwarded-For or Forwarded
//! from the right, it is the first entry left of the trusted ones, as a plain walk over
//! the public parsers finds it; `resolve` agrees with `explain`, and the decision's JSON
//! writer agrees with serde_json.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trueip::{Connection, Node, Policy};

const NAMES: [&str; 6] = [
    "X-Forwarded-For",
    "Forwarded",
    "X-Real-IP",
    "CloudFront-Viewer-Address",
    "CF-Connecting-IP",
    "X-Forwarded-Proto",
];

fn policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        let build = |trust: &str, strategies: &[&str], from: trueip::ListHeader| {
            let mut b = Policy::builder().trust_str(trust).unwrap().from_list(from);
            for s in strategies {
                b = b.strategy_str(s).unwrap();
            }
            b.build().unwrap()
        };
        vec![
            build("10.0.0.0/8", &["rightmost-untrusted"], trueip::ListHeader::XForwardedFor),
            build("10.0.0.0/8", &["rightmost-untrusted"], trueip::ListHeader::Forwarded),
            build("any", &["hops:2"], trueip::ListHeader::XForwardedFor),
            build(
                "any",
                &["header:x-real-ip", "header:cloudfront-viewer-address", "rightmost"],
                trueip::ListHeader::XForwardedFor,
            ),
        ]
    })
}

/// The walk written the slow, obvious way over the public parser: the policy's fast
/// path (one-pass IPv4, indexed trust lookups) must agree with it.
fn reference_rightmost_untrusted(
    lines: &[&[u8]],
    trusted: &trueip::TrustSet,
    peer: std::net::IpAddr,
) -> std::net::IpAddr {
    let mut last = peer;
    for entry in trueip::xff::Rev::new(lines) {
        match entry.node() {
            Some(node) if trusted.contains(node.ip) => last = node.ip,
            Some(node) => return node.ip,
            None => return last,
        }
    }
    last
}

/// The same walk over `Forwarded` elements: an element that does not parse, or whose
/// `for` is no address, stops it at the last trusted hop.
fn reference_forwarded(
    lines: &[&[u8]],
    trusted: &trueip::TrustSet,
    peer: std::net::IpAddr,
) -> std::net::IpAddr {
    let mut last = peer;
    for element in trueip::forwarded::Rev::new(lines) {
        match element.ok().and_then(|e| e.for_node.node()) {
            Some(node) if trusted.contains(node.ip) => last = node.ip,
            Some(node) => return node.ip,
            None => return last,
        }
    }
    last
}

/// The chain an explanation lists, read the slow, obvious way: the list header's entries
/// from the right by the public parsers, over the last `MAX_LINES` lines (the lines
/// trueip reads), the rightmost 256 kept, left to right, and `…` when entries or lines
/// were left out. `Decision` reuses the walk's entries and a faster parser for the rest.
fn reference_chain(headers: &[(&str, &[u8])], list: trueip::ListHeader) -> Vec<String> {
    use trueip::headers::Headers as _;
    let mut lines: Vec<&[u8]> = Vec::new();
    headers.for_each_value(&list.field(), |line| lines.push(line));
    let lines_cut = lines.len() > trueip::headers::MAX_LINES;
    let lines = &lines[lines.len().saturating_sub(trueip::headers::MAX_LINES)..];
    let entries: Vec<trueip::entry::Entry<'_>> = match list {
        trueip::ListHeader::XForwardedFor => trueip::xff::Rev::new(lines).collect(),
        trueip::ListHeader::Forwarded => trueip::forwarded::Rev::new(lines)
            .map(|element| match element {
                Ok(element) => element.for_node,
                Err((text, why)) => trueip::entry::Entry::Malformed { text, why },
            })
            .collect(),
    };
    let mut chain: Vec<String> = entries.iter().take(256).map(|e| e.to_string()).collect();
    chain.reverse();
    if entries.len() > 256 || lines_cut {
        chain.push("…".to_string());
    }
    chain
}

fuzz_target!(|data: &[u8]| {
    // Each NUL-separated chunk is one header line; its first byte picks the name.
    let headers: Vec<(&str, &[u8])> = data
        .split(|&b| b == 0)
        .filter_map(|chunk| chunk.split_first())
        .map(|(&pick, value)| (NAMES[usize::from(pick) % NAMES.len()], value))
        .collect();
    let peer: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let xff: Vec<&[u8]> =
        headers.iter().filter(|(n, _)| *n == "X-Forwarded-For").map(|(_, v)| *v).collect();
    let ten: trueip::TrustSet = ["10.0.0.0/8".parse().unwrap()].into_iter().collect();
    let res = policies()[0].resolve(&Connection::from_peer(Node::ip(peer)), &headers);
    if !res.warnings.contains(trueip::Warnings::TRUNCATED) {
        assert_eq!(res.ip(), Some(reference_rightmost_untrusted(&xff, &ten, peer)), "{headers:?}");
    }
    let res = policies()[1].resolve(&Connection::from_peer(Node::ip(peer)), &headers);
    if !res.warnings.contains(trueip::Warnings::TRUNCATED) {
        let fwd: Vec<&[u8]> =
            headers.iter().filter(|(n, _)| *n == "Forwarded").map(|(_, v)| *v).collect();
        assert_eq!(res.ip(), Some(reference_forwarded(&fwd, &ten, peer)), "{headers:?}");
    }
    for policy in policies() {
        let res = policy.resolve(&Connection::from_peer(Node::ip(peer)), &headers);
        // The shortcuts `resolve` takes must not change the decision `explain` records.
        let conn = Connection::from_peer(Node::ip(peer));
        assert_eq!(res, policy.explain(&conn, &headers).0, "{headers:?}");
        // The explain JSON parses, and its text reads back as the explanation's.
        let explanation = trueip::Decision::new(policy, &conn, &headers).to_explanation();
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&explanation).unwrap()).unwrap();
        // An address peer always gives an address client.
        let client = res.ip().expect("a client address behind an address peer");
        assert_eq!(json["client_ip"], client.to_string(), "{headers:?}");
        assert_eq!(json["chain"], serde_json::json!(explanation.chain), "{headers:?}");
        // Its chain is the list header as the public parsers read it.
        let list = match res.source {
            trueip::Source::List { header, .. } => header,
            _ => policy.list_header(),
        };
        assert_eq!(explanation.chain, reference_chain(&headers, list), "{headers:?}");
        let text = client.to_string();
        let appears = client == peer
            || headers.iter().any(|(_, v)| {
                String::from_utf8_lossy(v).to_ascii_lowercase().contains(&text)
                    || trueip::addr::parse_node(v).is_ok_and(|n| n.ip == client)
                    || trueip::addr::parse_ip_port_last_colon(v).is_ok_and(|n| n.ip == client)
                    || v.split(|&b| b == b',' || b == b'"' || b == b'[' || b == b']' || b == b'=')
                        .any(|p| trueip::addr::parse_node(p).is_ok_and(|n| n.ip == client))
            });
        assert!(appears, "{res:?} from {headers:?}");
    }
});
