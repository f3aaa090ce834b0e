//! `query:NAME` and `cookie:NAME`: an address handed over in a query argument or a cookie,
//! under the same trust rules as `header:NAME`. Each case: a name that states the
//! behaviour, the peer, the query, the headers, the chain, the expected client, source and
//! warnings.
#![allow(clippy::unwrap_used, reason = "tests")]

use trueip::headers::WithQuery;
use trueip::{Connection, Policy, Source, Verdict, Warnings};

/// Headers and arguments no case's policy reads: they must never matter.
const DISTRACTOR_HEADERS: [(&str, &str); 2] = [("X-Real-IP", "6.6.6.1"), ("X-Client", "6.6.6.2")];

struct Case {
    name: &'static str,
    peer: &'static str,
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    chain: &'static [&'static str],
    client: &'static str,
    source: Source,
    warnings: Warnings,
}

fn policy(chain: &[&str]) -> Policy {
    // The gateway that writes the argument or cookie is 10.1.0.0/16 (the strategies' own
    // trust); the policy's proxies 10.0.0.0/16 relay it, recording the hop in XFF.
    let mut b = Policy::builder().trust_str("10.0.0.0/16").unwrap();
    for s in chain {
        b = b.strategy_trusting(s.parse().unwrap(), vec!["10.1.0.0/16".parse().unwrap()]);
    }
    b.build().unwrap()
}

fn conn(peer: &str) -> Connection {
    Connection::from_peer(trueip::addr::parse_node(peer.as_bytes()).unwrap())
}

const NONE: Warnings = Warnings::NONE;

#[test]
fn query_and_cookie_stories() {
    let cases = [
        Case {
            name: "query argument from the trusted gateway",
            peer: "10.1.0.5",
            query: "page=2&client=198.51.100.4",
            headers: &[],
            chain: &["query:client"],
            client: "198.51.100.4",
            source: Source::Query,
            warnings: NONE,
        },
        Case {
            name: "query argument percent-encoded: IPv6 with a port",
            peer: "10.1.0.5",
            query: "client=%5B2001%3Adb8%3A%3A1%5D%3A443",
            headers: &[],
            chain: &["query:client"],
            client: "2001:db8::1",
            source: Source::Query,
            warnings: NONE,
        },
        Case {
            name: "fail: query argument from an untrusted peer is the client's own text",
            peer: "203.0.113.9",
            query: "client=1.2.3.4",
            headers: &[],
            chain: &["query:client"],
            client: "203.0.113.9",
            source: Source::Peer,
            warnings: Warnings::UNTRUSTED_HEADER,
        },
        Case {
            name: "fail: two arguments of the name are ambiguous, the spelled-out one too",
            peer: "10.1.0.5",
            query: "cl%69ent=6.6.6.6&client=198.51.100.4",
            headers: &[],
            chain: &["query:client"],
            client: "10.1.0.5",
            source: Source::Peer,
            warnings: Warnings::DUPLICATE_HEADER,
        },
        Case {
            name: "fail: a broken escape is malformed, not guessed",
            peer: "10.1.0.5",
            query: "client=198.51.100.4%2",
            headers: &[],
            chain: &["query:client"],
            client: "10.1.0.5",
            source: Source::Peer,
            warnings: Warnings::MALFORMED,
        },
        Case {
            name: "fail: a decoded value longer than any address is malformed",
            peer: "10.1.0.5",
            query: "client=%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31",
            headers: &[],
            chain: &["query:client"],
            client: "10.1.0.5",
            source: Source::Peer,
            warnings: Warnings::MALFORMED,
        },
        Case {
            name: "query argument relayed: the gateway recorded by the trusted proxy wrote it",
            peer: "10.0.0.2",
            query: "client=198.51.100.4",
            headers: &[("X-Forwarded-For", "10.1.0.5")],
            chain: &["query:client"],
            client: "198.51.100.4",
            source: Source::Query,
            warnings: NONE,
        },
        Case {
            name: "fail: relayed query argument that someone around the gateway wrote",
            peer: "10.0.0.2",
            query: "client=1.2.3.4",
            headers: &[("X-Forwarded-For", "203.0.113.9")],
            chain: &["query:client"],
            client: "10.0.0.2",
            source: Source::Peer,
            warnings: Warnings::UNVOUCHED_HEADER,
        },
        Case {
            name: "absent argument: the next strategy decides",
            peer: "10.1.0.5",
            query: "clients=1.2.3.4",
            headers: &[("X-Forwarded-For", "198.51.100.8")],
            chain: &["query:client", "rightmost-untrusted"],
            client: "198.51.100.8",
            source: Source::List { header: trueip::ListHeader::XForwardedFor, from_right: 1 },
            warnings: NONE,
        },
        Case {
            name: "cookie from the trusted gateway, quoted",
            peer: "10.1.0.5",
            query: "client=6.6.6.6",
            headers: &[("Cookie", "session=abc; ip=\"198.51.100.4\"")],
            chain: &["cookie:ip"],
            client: "198.51.100.4",
            source: Source::Cookie,
            warnings: NONE,
        },
        Case {
            name: "cookie on the second of HTTP/2's split Cookie lines: not a duplicate",
            peer: "10.1.0.5",
            query: "",
            headers: &[("cookie", "session=abc"), ("cookie", "ip=198.51.100.4")],
            chain: &["cookie:ip"],
            client: "198.51.100.4",
            source: Source::Cookie,
            warnings: NONE,
        },
        Case {
            name: "fail: the cookie on two lines is ambiguous",
            peer: "10.1.0.5",
            query: "",
            headers: &[("cookie", "ip=6.6.6.6"), ("cookie", "ip=198.51.100.4")],
            chain: &["cookie:ip"],
            client: "10.1.0.5",
            source: Source::Peer,
            warnings: Warnings::DUPLICATE_HEADER,
        },
        Case {
            name: "fail: cookie names are case-sensitive; IP is not ip",
            peer: "10.1.0.5",
            query: "",
            headers: &[("Cookie", "IP=6.6.6.6")],
            chain: &["cookie:ip"],
            client: "10.1.0.5",
            source: Source::Peer,
            warnings: NONE,
        },
        Case {
            name: "fail: cookie from an untrusted peer",
            peer: "203.0.113.9",
            query: "",
            headers: &[("Cookie", "ip=1.2.3.4")],
            chain: &["cookie:ip"],
            client: "203.0.113.9",
            source: Source::Peer,
            warnings: Warnings::UNTRUSTED_HEADER,
        },
    ];
    for case in &cases {
        let mut headers: Vec<(&str, &str)> = case.headers.to_vec();
        headers.extend(DISTRACTOR_HEADERS);
        let request = WithQuery::new(headers.as_slice(), case.query.as_bytes());
        let policy = policy(case.chain);
        let got = policy.resolve(&conn(case.peer), &request);
        assert_eq!(
            got.ip().map(|ip| ip.to_string()).unwrap_or_default(),
            case.client,
            "{}: {got:?}",
            case.name
        );
        assert_eq!(got.source, case.source, "{}: source", case.name);
        assert_eq!(got.warnings, case.warnings, "{}: warnings", case.name);
        let (explained, steps) = policy.explain(&conn(case.peer), &request);
        assert_eq!(explained, got, "{}: explain differs", case.name);
        assert!(!steps.is_empty());
    }
}

#[test]
fn explain_names_the_argument_and_describe_source_too() {
    let policy = Policy::builder()
        .trust_str("loopback")
        .unwrap()
        .strategy_str("query:client")
        .unwrap()
        .build()
        .unwrap();
    let headers: [(&str, &str); 0] = [];
    let request = WithQuery::new(&headers[..], b"client=198.51.100.4");
    let (resolution, steps) = policy.explain(&conn("127.0.0.1"), &request);
    let step = steps.iter().find(|s| s.verdict == Verdict::Client).unwrap();
    assert_eq!(step.subject, "query:client");
    assert_eq!(step.value, "198.51.100.4");
    assert_eq!(policy.describe_source(&resolution), "query:client");
    assert_eq!(policy.query_names().len(), 1);
    assert!(policy.cookie_names().is_empty());
}

#[test]
fn header_names_include_cookie_only_for_cookie_strategies() {
    let names = |chain: &str| -> Vec<String> {
        Policy::builder()
            .trust_str("loopback")
            .unwrap()
            .strategy_str(chain)
            .unwrap()
            .build()
            .unwrap()
            .header_names()
            .iter()
            .map(|n| n.to_string())
            .collect()
    };
    assert!(names("cookie:ip").contains(&"cookie".to_string()));
    assert!(!names("query:ip").contains(&"cookie".to_string()));
    assert!(!names("header:x-client").contains(&"cookie".to_string()));
}

#[test]
fn http_requests_carry_their_query() {
    let policy = Policy::builder()
        .trust_str("loopback")
        .unwrap()
        .strategy_str("query:client")
        .unwrap()
        .build()
        .unwrap();
    let request = http::Request::builder().uri("/x?client=198.51.100.4").body(()).unwrap();
    let got = policy.resolve(&conn("127.0.0.1"), &request);
    assert_eq!(got.ip().map(|ip| ip.to_string()).unwrap_or_default(), "198.51.100.4");
    // A header map alone has no query: nothing to read, the peer stands.
    let got = policy.resolve(&conn("127.0.0.1"), request.headers());
    assert_eq!(got.ip().map(|ip| ip.to_string()).unwrap_or_default(), "127.0.0.1");
}

#[test]
fn a_query_strategy_that_trusts_no_one_is_refused() {
    let err =
        Policy::builder().strategy_str("query:client").unwrap().build().unwrap_err().to_string();
    assert!(err.contains("query argument client"), "{err}");
}
