//! The explain JSON (what `trueip explain --format json` and `--batch` print, and the
//! whoami page's `/json` starts with): the documented fields in the documented order,
//! and, whatever the headers hold, text that parses back to the decision it was made from.
#![cfg(feature = "serde")]

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use serde::Deserialize;
use trueip::addr::Peer;
use trueip::entry::Entry;
use trueip::{
    Cidr, Connection, Decision, Explanation, Headers, ListHeader, Node, OriginSecret, Policy,
    PrivateLink, Source, TrustSet, forwarded, xff,
};

fn policies() -> Vec<Policy> {
    let cloudfront: TrustSet =
        ["130.176.0.0/16", "10.3.0.0/16"].iter().filter_map(|c| c.parse::<Cidr>().ok()).collect();
    let build = |strategies: &[&str], from: ListHeader| {
        let mut builder = Policy::builder()
            .provider("cloudfront", cloudfront.clone())
            .trust_str("10.0.0.0/8")
            .and_then(|b| b.trust_str("2001:db8:ff::/48"))
            .map(|b| b.from_list(from))
            .and_then(|b| Ok(b.proxy_protocol_from("10.9.0.0/16".parse()?)));
        for strategy in strategies {
            builder = builder.and_then(|b| b.strategy_str(strategy));
        }
        builder.and_then(|b| b.build()).expect("a valid policy")
    };
    let mut policies = vec![
        Policy::default(),
        build(&["rightmost-untrusted"], ListHeader::XForwardedFor),
        build(&["rightmost-untrusted"], ListHeader::Forwarded),
        build(&["hops:2"], ListHeader::XForwardedFor),
        build(&["rightmost"], ListHeader::Forwarded),
        build(&["leftmost"], ListHeader::XForwardedFor),
        build(&["header:x-real-ip", "rightmost-untrusted"], ListHeader::XForwardedFor),
        build(&["cloudfront"], ListHeader::XForwardedFor),
        build(&["header:x-client-ip", "hops:1"], ListHeader::XForwardedFor),
    ];
    let secret = OriginSecret::new("x-origin-secret", "s3cret").expect("a valid secret");
    policies.push(
        Policy::builder()
            .trust_str("10.0.0.0/8")
            .map(|b| b.origin_secret(secret))
            .and_then(|b| b.build())
            .expect("a valid policy"),
    );
    policies
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Plausible chains.
        prop::collection::vec(
            prop_oneof![
                Just("10.0.0.1".to_string()),
                Just("10.1.2.3:80".to_string()),
                Just("203.0.113.9".to_string()),
                Just("[2001:db8::1]:443".to_string()),
                Just("2001:db8:ff::7".to_string()),
                Just("unknown".to_string()),
                Just("_hidden".to_string()),
                Just("for=\"[2001:db8::1]:80\";proto=https".to_string()),
                Just("for=10.0.0.2".to_string()),
                Just("\"\\\u{7}\u{2028}é".to_string()),
            ],
            0..8
        )
        .prop_map(|parts| parts.join(", ").into_bytes()),
        // Anything at all, invalid UTF-8 and control bytes included.
        prop::collection::vec(any::<u8>(), 0..60),
    ]
}

fn peer() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just("10.0.0.5:41000"),
        Just("10.9.0.1:5000"),
        Just("198.51.100.7:443"),
        Just("[2001:db8:ff::1]:8080"),
        Just("[::ffff:10.0.0.5]:1"),
    ]
    .prop_map(|text| {
        let addr: std::net::SocketAddr = text.parse().unwrap_or(([127, 0, 0, 1], 1).into());
        Node::from(addr)
    })
}

/// What a PROXY v2 header may name: the ids come off the wire as any UTF-8 at all.
fn private_link() -> impl Strategy<Value = PrivateLink> {
    let vpce = prop_oneof![
        Just("vpce-08d2bf15fac5001c9".to_string()),
        Just(String::new()),
        Just("\"\\\u{7}\u{2028}é</script>".to_string()),
        any::<String>(),
    ];
    (prop::option::of(vpce), prop::option::of(any::<u32>())).prop_map(|(vpce, azure)| PrivateLink {
        aws_vpce_id: vpce.map(Into::into),
        azure_link_id: azure,
    })
}

/// The chain an explanation lists, the plain way: every line of the list header, parsed
/// from the right by the public parsers, the rightmost 256 kept, left to right.
/// `Decision` reuses faster parsers; the entries must come out the same.
fn reference_chain<H: Headers + ?Sized>(headers: &H, list: ListHeader) -> Vec<String> {
    let mut lines: Vec<&[u8]> = Vec::new();
    headers.for_each_value(&list.field(), |line| lines.push(line));
    let entries: Vec<Entry<'_>> = match list {
        ListHeader::XForwardedFor => xff::Rev::new(&lines).collect(),
        ListHeader::Forwarded => forwarded::Rev::new(&lines)
            .map(|element| match element {
                Ok(element) => element.for_node,
                Err((text, why)) => Entry::Malformed { text, why },
            })
            .collect(),
    };
    let mut chain: Vec<String> = entries.iter().take(256).map(Entry::to_string).collect();
    chain.reverse();
    if entries.len() > 256 {
        chain.push("…".to_string());
    }
    chain
}

fn chain_list(policy: &Policy, resolution: &trueip::Resolution) -> ListHeader {
    match resolution.source {
        Source::List { header, .. } => header,
        _ => policy.list_header(),
    }
}

/// The explain object as documented: these fields and no others, in this order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Documented {
    client_ip: Option<IpAddr>,
    client_port: Option<u16>,
    source: String,
    peer: String,
    proxy_source: Option<String>,
    aws_vpce_id: Option<String>,
    azure_link_id: Option<u32>,
    chain_header: String,
    chain: Vec<String>,
    trusted_hops: u16,
    warnings: Vec<String>,
    strategy: Option<String>,
    rate_limit_key: Option<IpAddr>,
    steps: Vec<DocumentedStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentedStep {
    subject: String,
    value: String,
    verdict: String,
    why: String,
}

const ORDER: [&str; 14] = [
    "client_ip",
    "client_port",
    "source",
    "peer",
    "proxy_source",
    "aws_vpce_id",
    "azure_link_id",
    "chain_header",
    "chain",
    "trusted_hops",
    "warnings",
    "strategy",
    "rate_limit_key",
    "steps",
];

/// A printed node, read back as `std` reads socket addresses and addresses.
fn node(text: &str) -> Option<Node> {
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(Node::from(addr)),
        Err(_) => text.parse::<IpAddr>().ok().map(Node::ip),
    }
}

/// Checks the JSON of `explanation` (as the CLI and the whoami page print it) against
/// the decision it was made from.
fn check_json(policy: &Policy, explanation: &Explanation) -> Result<(), TestCaseError> {
    let text = serde_json::to_string_pretty(explanation)
        .map_err(|e| TestCaseError::fail(format!("serialize: {e}")))?;
    let at: Vec<Option<usize>> =
        ORDER.iter().map(|name| text.find(&format!("\n  \"{name}\": "))).collect();
    prop_assert!(at.iter().all(Option::is_some), "a field is missing: {}", text);
    prop_assert!(at.is_sorted(), "fields out of order: {}", text);
    let json: Documented =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    let r = &explanation.resolution;
    prop_assert_eq!(json.client_ip, r.ip());
    prop_assert_eq!(json.client_port, r.client.node().and_then(|n| n.port));
    prop_assert_eq!(node(&json.peer).map(Peer::Ip), Some(r.peer));
    prop_assert_eq!(json.proxy_source.as_deref().map(node), r.proxy_source.map(Some));
    prop_assert_eq!(json.trusted_hops, r.trusted_hops);
    prop_assert_eq!(json.warnings, r.warnings.names().collect::<Vec<_>>());
    prop_assert_eq!(json.strategy, r.strategy.and_then(|i| policy.strategy_name(i)));
    prop_assert_eq!(json.rate_limit_key, r.rate_limit_key);
    prop_assert_eq!(&json.source, &policy.describe_source(r));
    let list = chain_list(policy, r).field();
    prop_assert_eq!(json.chain_header.as_str(), list.as_str());
    // Text that came off the wire reads back as it was, escaped however it needed.
    prop_assert_eq!(&json.chain, &explanation.chain);
    prop_assert_eq!(&json.aws_vpce_id, &explanation.aws_vpce_id);
    prop_assert_eq!(json.azure_link_id, explanation.azure_link_id);
    prop_assert_eq!(json.steps.len(), explanation.steps.len());
    for (read, step) in json.steps.iter().zip(&explanation.steps) {
        prop_assert_eq!(&read.subject, &step.subject);
        prop_assert_eq!(&read.value, &step.value);
        prop_assert_eq!(&read.verdict, &step.verdict.to_string());
        prop_assert_eq!(&read.why, &step.why);
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_json_reads_back_as_the_decision(
        xff in prop::collection::vec(value(), 0..3),
        forwarded in prop::collection::vec(value(), 0..2),
        real_ip in prop::option::of(value()),
        secret in prop::option::of(prop_oneof![Just(b"s3cret".to_vec()), Just(b"wrong".to_vec())]),
        peer in peer(),
        proxy in prop::option::of(peer()),
        private_link in private_link(),
    ) {
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        headers.extend(xff.iter().map(|v| ("X-Forwarded-For", v.as_slice())));
        headers.extend(forwarded.iter().map(|v| ("Forwarded", v.as_slice())));
        headers.extend(real_ip.iter().map(|v| ("X-Real-IP", v.as_slice())));
        headers.extend(secret.iter().map(|v| ("X-Origin-Secret", v.as_slice())));
        let conn = Connection { peer: Peer::Ip(peer), proxy_source: proxy, private_link };
        for policy in policies() {
            let decision = Decision::new(&policy, &conn, &headers[..]);
            let explanation = Explanation::new(&policy, &conn, &headers[..]);
            prop_assert_eq!(&decision.to_explanation(), &explanation);
            prop_assert_eq!(decision.resolution(), &policy.resolve(&conn, &headers[..]));
            // The ids are shown exactly when the PROXY source is believed.
            let believed = explanation.proxy_source.is_some();
            prop_assert_eq!(
                explanation.aws_vpce_id.as_deref(),
                conn.private_link.aws_vpce_id.as_deref().filter(|_| believed)
            );
            prop_assert_eq!(
                explanation.azure_link_id,
                conn.private_link.azure_link_id.filter(|_| believed)
            );
            let list = chain_list(&policy, &explanation.resolution);
            prop_assert_eq!(&explanation.chain, &reference_chain(&headers[..], list));
            // The source reads as `Source` prints, with the header's name for a header.
            let source = explanation.resolution.source;
            if source != Source::Header {
                prop_assert_eq!(&explanation.source, &source.to_string());
            }
            check_json(&policy, &explanation)?;
        }
    }
}
#[test]
fn a_long_chain_is_cut_the_same_way() {
    let ten =
        Policy::builder().trust_str("10.0.0.0/8").and_then(|b| b.build()).expect("a valid policy");
    let forwarded = Policy::builder()
        .trust_str("any")
        .map(|b| b.from_list(ListHeader::Forwarded))
        .and_then(|b| b.build())
        .expect("a valid policy");
    let trusted: Vec<String> = (0..300).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
    // Every kind of entry, spread over several lines, the cut falling among them.
    let kinds = [
        "10.1.2.3",
        " 10.1.2.3:80 ",
        "[2001:db8::1]:443",
        "unknown",
        "_hidden",
        "010.0.0.1",
        "\"x\"",
        "",
        "203.0.113.9",
    ];
    let mixed: Vec<&str> = (0..290).map(|i| kinds[i % kinds.len()]).collect();
    let elements: Vec<&str> = (0..290)
        .map(|i| ["for=10.0.0.1", "for=\"[2001:db8::1]:80\"", "by=x", "for=_x;for=y"][i % 4])
        .collect();
    let cases: [(&Policy, &str, Vec<String>); 3] = [
        (&ten, "X-Forwarded-For", vec![trusted.join(", ")]),
        (&ten, "X-Forwarded-For", mixed.chunks(70).map(|part| part.join(",")).collect()),
        (&forwarded, "Forwarded", elements.chunks(100).map(|part| part.join(", ")).collect()),
    ];
    for (policy, name, lines) in cases {
        let headers: Vec<(&str, &str)> = lines.iter().map(|line| (name, line.as_str())).collect();
        let conn = Connection::from_peer(Node::ip(IpAddr::from([10, 0, 0, 1])));
        let decision = Decision::new(policy, &conn, &headers[..]);
        let explanation = decision.to_explanation();
        assert_eq!(explanation.chain.len(), 257, "{name}");
        assert_eq!(explanation.chain.last().map(String::as_str), Some("…"));
        let list = chain_list(policy, &explanation.resolution);
        assert_eq!(explanation.chain, reference_chain(&headers[..], list));
        if let Err(e) = check_json(policy, &explanation) {
            panic!("{name}: {e}");
        }
    }
}
