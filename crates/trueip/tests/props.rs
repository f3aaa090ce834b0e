//! Invariants, whatever the input.
#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/cases.rs"]
mod cases;

use std::net::IpAddr;

use proptest::prelude::*;
use trueip::entry::Entry;
use trueip::headers::WithQuery;
use trueip::{Connection, ListHeader, Node, Policy, Source, Warnings};

fn trusted_v4() -> impl Strategy<Value = String> {
    (0u8..4, 0u8..255).prop_map(|(a, b)| format!("10.0.{a}.{b}"))
}

fn untrusted() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..100, 0u8..255).prop_map(|(a, b)| format!("198.51.{a}.{b}")),
        (0u16..0xffff).prop_map(|a| format!("2001:db8::{a:x}")),
        (0u16..0xffff).prop_map(|a| format!("[2001:db8::{a:x}]:443")),
        (1u8..100).prop_map(|a| format!("203.0.113.{a}:8080")),
    ]
}

/// Anything a client might write, including things that are not addresses.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        untrusted(),
        trusted_v4(),
        Just("unknown".to_string()),
        Just("_hidden".to_string()),
        Just("\"".to_string()),
        Just("for=\"[::1]".to_string()),
        Just("010.0.0.1".to_string()),
        "[ -~]{0,20}",
    ]
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![3 => trusted_v4(), 3 => untrusted(), 1 => junk()]
}

fn policies() -> Vec<(&'static str, Policy)> {
    let build = |strategy: &str, from: ListHeader| {
        Policy::builder()
            .trust_str("10.0.0.0/14")
            .unwrap()
            .strategy_str(strategy)
            .unwrap()
            .from_list(from)
            .build()
            .unwrap()
    };
    vec![
        ("rightmost-untrusted/xff", build("rightmost-untrusted", ListHeader::XForwardedFor)),
        ("rightmost-untrusted/forwarded", build("rightmost-untrusted", ListHeader::Forwarded)),
        ("hops:2/xff", build("hops:2", ListHeader::XForwardedFor)),
        ("hops:1/forwarded", build("hops:1", ListHeader::Forwarded)),
        ("rightmost/xff", build("rightmost", ListHeader::XForwardedFor)),
    ]
}

/// Writes entries as one header line of the given kind.
fn line(list: ListHeader, entries: &[String]) -> String {
    match list {
        ListHeader::XForwardedFor => entries.join(", "),
        ListHeader::Forwarded => entries
            .iter()
            .map(|e| match trueip::addr::parse_node(e.as_bytes()) {
                Ok(node) => {
                    let mut out = String::new();
                    trueip::forwarded::write_element(&mut out, Some(&node), None, None, None);
                    out
                }
                Err(_) => format!("for={e}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn list_of(name: &str) -> ListHeader {
    if name.ends_with("forwarded") { ListHeader::Forwarded } else { ListHeader::XForwardedFor }
}

fn header_name(list: ListHeader) -> &'static str {
    match list {
        ListHeader::XForwardedFor => "X-Forwarded-For",
        ListHeader::Forwarded => "Forwarded",
    }
}

/// Results that depend on the left end by design: all-trusted, the walk cap. (A short
/// count does too, since prepending lengthens the list; its own rule is checked instead.)
const LEFT_DEPENDENT: [Warnings; 2] = [Warnings::ALL_TRUSTED, Warnings::TRUNCATED];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases::or(512)))]

    /// Whatever an attacker prepends, on the same line or on earlier lines, the answer stays.
    #[test]
    fn prepending_on_the_left_changes_nothing(
        chain in prop::collection::vec(entry(), 1..8),
        prefix in prop::collection::vec(junk(), 1..4),
        as_line in any::<bool>(),
    ) {
        // A chain of only empty elements is no chain: the trusted peer appended nothing, so
        // whatever is prepended is the whole list (`rightmost` then reads it, as nginx does).
        prop_assume!(chain.iter().any(|e| !e.trim().is_empty()));
        for (name, policy) in policies() {
            let list = list_of(name);
            let header = header_name(list);
            let conn = Connection::from_peer(Node::ip("10.0.0.1".parse().unwrap()));
            let original = [(header, line(list, &chain))];
            let before = policy.resolve(&conn, &original[..]);
            if before.warnings.contains(Warnings::FEWER_HOPS) {
                // Too few elements: the peer, whatever they hold, and only that flag
                // among the walk's stops.
                prop_assert_eq!(before.source, Source::Peer, "{} {:?}", name, original);
                prop_assert!(!before.warnings.contains(Warnings::MALFORMED) && !before.warnings.contains(Warnings::OPAQUE), "{} {:?}", name, before);
                continue;
            }
            if LEFT_DEPENDENT.iter().any(|w| before.warnings.contains(*w)) {
                continue;
            }
            let forged_prefix = prefix.join(", ");
            let forged: Vec<(&str, String)> = if as_line {
                vec![(header, forged_prefix), (header, line(list, &chain))]
            } else {
                vec![(header, format!("{forged_prefix}, {}", line(list, &chain)))]
            };
            let after = policy.resolve(&conn, &forged);
            prop_assert_eq!((before.client, &before.source), (after.client, &after.source), "{} {:?} vs {:?}", name, original, forged);
        }
    }

    /// The answer is the peer or one of the addresses the header holds, and an address in
    /// the trust set only when the walk could go no further.
    #[test]
    fn answer_is_peer_or_chain_element(chain in prop::collection::vec(entry(), 0..10), peer_trusted in any::<bool>()) {
        let peer: IpAddr = if peer_trusted { "10.0.0.1" } else { "198.51.100.1" }.parse().unwrap();
        for (name, policy) in policies() {
            let list = list_of(name);
            let headers = [(header_name(list), line(list, &chain))];
            let got = policy.resolve(&Connection::from_peer(Node::ip(peer)), &headers[..]);
            let in_chain = chain.iter().any(|e| trueip::addr::parse_node(e.as_bytes()).is_ok_and(|n| n.ip == got.ip().unwrap()));
            prop_assert!(got.ip().unwrap() == peer || in_chain, "{}: {:?} not from {:?}", name, got.client, chain);
            if got.source == Source::Peer {
                prop_assert_eq!(got.ip().unwrap(), peer);
            }
            if name.starts_with("rightmost-untrusted") && got.ip().unwrap() != peer && "10.0.0.0/14".parse::<trueip::Cidr>().unwrap().contains(got.ip().unwrap()) {
                let stopped = Warnings::ALL_TRUSTED | Warnings::MALFORMED | Warnings::OPAQUE | Warnings::TRUNCATED;
                prop_assert!(got.warnings.names().any(|n| stopped.names().any(|s| s == n)), "{:?}", got);
            }
        }
    }

    /// `resolve` (which takes shortcuts through chains of trusted IPv4 hops) and
    /// `explain` (which walks and records every element) always decide the same. Chains
    /// are long and written in several spellings so the shortcut is exercised and left
    /// at every kind of element, on one line or several.
    #[test]
    fn resolve_and_explain_agree(
        chain in prop::collection::vec(prop_oneof![6 => trusted_v4(), 1 => untrusted(), 1 => junk()], 0..40),
        separator in prop_oneof![Just(", "), Just(","), Just(" , "), Just(",\t"), Just(",, ")],
        split_at in any::<prop::sample::Index>(),
        peer_trusted in any::<bool>(),
    ) {
        let peer: IpAddr = if peer_trusted { "10.0.0.1" } else { "198.51.100.1" }.parse().unwrap();
        let conn = Connection::from_peer(Node::ip(peer));
        let at = if chain.is_empty() { 0 } else { split_at.index(chain.len()) };
        let (left, right) = chain.split_at(at);
        for (name, policy) in policies() {
            let list = list_of(name);
            let header = header_name(list);
            let written = |entries: &[String]| match list {
                ListHeader::XForwardedFor => entries.join(separator),
                ListHeader::Forwarded => line(list, entries),
            };
            let one = [(header, written(&chain))];
            let two = [(header, written(left)), (header, written(right))];
            for headers in [&one[..], &two[..]] {
                let fast = policy.resolve(&conn, headers);
                let (traced, _) = policy.explain(&conn, headers);
                prop_assert_eq!(fast, traced, "{} {:?}", name, headers);
            }
        }
    }

    /// No input panics any parser or strategy.
    #[test]
    fn no_input_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), text in "[ -~]{0,200}") {
        for input in [bytes.as_slice(), text.as_bytes()] {
            let lines = [input];
            let _ = trueip::xff::Rev::new(&lines).count();
            let _ = trueip::forwarded::Rev::new(&lines).count();
            let _ = trueip::addr::parse_node(input);
            let _ = trueip::addr::parse_ip_port_last_colon(input);
            let _ = trueip::forwarded::parse_element(input);
        }
        let headers = [("X-Forwarded-For", text.clone()), ("Forwarded", text.clone()), ("X-Real-IP", text.clone()), ("CloudFront-Viewer-Address", text.clone())];
        for (_, policy) in policies() {
            let _ = policy.resolve(&Connection::from_peer(Node::ip("10.0.0.1".parse().unwrap())), &headers[..]);
        }
        let p = Policy::builder().trust_str("any").unwrap().strategy_str("header:x-real-ip").unwrap().strategy_str("cloudfront").unwrap_or_else(|_| Policy::builder()).build();
        if let Ok(p) = p {
            let _ = trueip::Explanation::new(&p, &Connection::from_peer(Node::ip("10.0.0.1".parse().unwrap())), &headers[..]);
        }
    }

    /// parse → print → parse is stable for addresses and Forwarded elements.
    #[test]
    fn print_then_parse_is_stable(e in untrusted(), proto in "(http|https|[a-z]{1,8})", host in "[a-z0-9.:-]{1,20}") {
        let node = trueip::addr::parse_node(e.as_bytes()).unwrap();
        prop_assert_eq!(trueip::addr::parse_node(node.to_string().as_bytes()), Ok(node));
        let mut out = String::new();
        trueip::forwarded::write_element(&mut out, Some(&node), Some(&node), Some(&proto), Some(&host));
        let el = trueip::forwarded::parse_element(out.as_bytes()).unwrap();
        prop_assert_eq!(el.for_node, Entry::Addr(node));
        prop_assert_eq!(el.by, Some(Entry::Addr(node)));
        prop_assert_eq!(el.proto.unwrap().unescaped(), proto.as_bytes().to_vec());
        prop_assert_eq!(el.host.unwrap().unescaped(), host.as_bytes().to_vec());
        // And any element that parses re-prints to one that parses the same.
        let mut again = String::new();
        trueip::forwarded::write_element(&mut again, el.for_node.node().as_ref(), None, None, None);
        prop_assert_eq!(trueip::forwarded::parse_element(again.as_bytes()).unwrap().for_node, Entry::Addr(node));
    }
}

/// Policies that read every kind of header: list walks, vendor headers with their own
/// writers, and an origin secret.
fn header_reading_policies() -> Vec<Policy> {
    let chains: [&[&str]; 6] = [
        &["rightmost-untrusted"],
        &["cookie:client", "rightmost-untrusted"],
        &["query:client", "cookie:ip", "header:X-Real-IP"],
        &["header:X-Client-IP", "rightmost-untrusted"],
        &["header:CF-Connecting-IP", "hops:1"],
        &["header:True-Client-IP", "fly", "header:X-Real-IP", "leftmost"],
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
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .origin_secret(trueip::OriginSecret::new("X-Origin-Verify", "s3cret").unwrap())
            .build()
            .unwrap(),
    );
    // Trusting no one still reads (and flags) forwarding headers.
    out.push(Policy::default());
    out
}

fn any_header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("X-Forwarded-For".to_string()),
        Just("forwarded".to_string()),
        Just("X-Real-IP".to_string()),
        Just("X-Client-IP".to_string()),
        Just("CF-Connecting-IP".to_string()),
        Just("True-Client-IP".to_string()),
        Just("X-Origin-Verify".to_string()),
        Just("Fly-Client-IP".to_string()),
        Just("X-Forwarded-Proto".to_string()),
        Just("Host".to_string()),
        Just("Cookie".to_string()),
        Just("cookie".to_string()),
        "[A-Za-z-]{1,12}",
    ];
    let value = prop_oneof![
        entry(),
        Just("s3cret".to_string()),
        prop::collection::vec(entry(), 1..4).prop_map(|e| e.join(", ")),
        prop::collection::vec(entry(), 1..3).prop_map(|e| line(ListHeader::Forwarded, &e)),
        cookie_line(),
    ];
    (name, value)
}

/// A `Cookie` line holding the names the cookie strategies read, and others.
fn cookie_line() -> impl Strategy<Value = String> {
    let pair = (prop_oneof![Just("client"), Just("ip"), Just("other"), Just("Client")], entry())
        .prop_map(|(n, v)| format!("{n}={v}"));
    prop::collection::vec(pair, 1..4).prop_map(|pairs| pairs.join("; "))
}

/// A query string holding the argument the query strategy reads, and others.
fn any_query() -> impl Strategy<Value = String> {
    let pair = (
        prop_oneof![Just("client"), Just("cl%69ent"), Just("other")],
        prop_oneof![entry(), Just("%31.2.3.4".to_string()), Just("%zz".to_string())],
    )
        .prop_map(|(n, v)| format!("{n}={v}"));
    prop::collection::vec(pair, 0..3).prop_map(|pairs| pairs.join("&"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases::or(512)))]

    /// `Policy::header_names` names every header `resolve` reads: a caller that copies only
    /// those (the Python binding) gets the same decision as one that passes everything.
    #[test]
    fn header_names_are_all_that_resolve_reads(
        headers in prop::collection::vec(any_header(), 0..8),
        peer in prop_oneof![trusted_v4(), untrusted()],
        query in any_query(),
    ) {
        let peer = trueip::addr::parse_node(peer.as_bytes()).unwrap();
        let conn = Connection::from_peer(peer);
        for policy in header_reading_policies() {
            let wanted = policy.header_names();
            let kept: Vec<(String, String)> = headers
                .iter()
                .filter(|(n, _)| wanted.iter().any(|w| n.eq_ignore_ascii_case(w.as_str())))
                .cloned()
                .collect();
            prop_assert_eq!(
                policy.resolve(&conn, &WithQuery::new(headers.as_slice(), query.as_bytes())),
                policy.resolve(&conn, &WithQuery::new(kept.as_slice(), query.as_bytes()))
            );
        }
    }
}
