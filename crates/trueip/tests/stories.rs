//! The deployments trueip must get right, and the rules that decide correctness.
//! Each case: a name that states the behaviour, the peer, the headers, the policy, the
//! expected client and warnings, and why.
#![allow(clippy::unwrap_used, reason = "tests")]

use trueip::{AllTrusted, Connection, Node, OriginSecret, Policy, Source, TrustSet, Warnings};

/// Headers a client could send that no case's policy reads: they must never matter.
const DISTRACTORS: [(&str, &str); 3] =
    [("True-Client-IP", "6.6.6.1"), ("X-Client-IP", "6.6.6.2"), ("Fly-Client-IP", "6.6.6.3")];

/// Stand-ins for provider range files (the shapes of the real ones, not their contents).
fn cloudfront() -> TrustSet {
    ["13.32.0.0/15", "2600:9000::/28"].iter().map(|c| c.parse().unwrap()).collect()
}
fn cloudflare() -> TrustSet {
    ["173.245.48.0/20", "2400:cb00::/32"].iter().map(|c| c.parse().unwrap()).collect()
}

struct Case {
    name: &'static str,
    peer: &'static str,
    headers: &'static [(&'static str, &'static str)],
    policy: fn() -> Policy,
    client: &'static str,
    warnings: Warnings,
    why: &'static str,
}

fn policy(trust: &[&str], strategy: &[&str]) -> Policy {
    let mut b =
        Policy::builder().provider("cloudfront", cloudfront()).provider("cloudflare", cloudflare());
    for t in trust {
        b = b.trust_str(t).unwrap();
    }
    for s in strategy {
        b = b.strategy_str(s).unwrap();
    }
    b.build().unwrap()
}

fn conn(peer: &str) -> Connection {
    Connection::from_peer(trueip::addr::parse_node(peer.as_bytes()).unwrap())
}

fn run(case: &Case) {
    let mut headers: Vec<(&str, &str)> = case.headers.to_vec();
    headers.extend(DISTRACTORS);
    let policy = (case.policy)();
    let got = policy.resolve(&conn(case.peer), &headers);
    assert_eq!(
        got.ip().unwrap().to_string(),
        case.client,
        "case {:?} ({}): {got:?}",
        case.name,
        case.why
    );
    assert_eq!(got.warnings, case.warnings, "case {:?} ({}): warnings", case.name, case.why);
    // The explanation is the same decision.
    let (explained, steps) = policy.explain(&conn(case.peer), &headers);
    assert_eq!(explained, got, "case {:?}: explain differs from resolve", case.name);
    assert!(!steps.is_empty());
}

const W: Warnings = Warnings::NONE;

#[test]
fn deployment_stories() {
    let cases = [
        Case {
            name: "lambda behind ALB: the address the ALB saw, not what the client claimed",
            peer: "10.0.1.5",
            headers: &[("x-forwarded-for", "203.0.113.195, 70.41.3.18, 150.172.238.178")],
            policy: || policy(&["10.0.0.0/16"], &["rightmost-untrusted"]),
            client: "150.172.238.178",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "the ALB appended 150.172.238.178; the two entries left of it came with the request",
        },
        Case {
            name: "fail: forged first entry through an ALB",
            peer: "10.0.0.12",
            headers: &[("X-Forwarded-For", "1.2.3.4, 198.51.100.7")],
            policy: || policy(&["10.0.0.0/16"], &["aws-alb"]),
            client: "198.51.100.7",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "1.2.3.4 is client text",
        },
        Case {
            name: "IPv4-mapped peer is the trusted IPv4 proxy",
            peer: "::ffff:10.0.0.1",
            headers: &[("X-Forwarded-For", "198.51.100.7")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "198.51.100.7",
            warnings: W,
            why: "::ffff:10.0.0.1 is 10.0.0.1",
        },
        Case {
            name: "cloudfront -> ALB -> nginx ($proxy_add_x_forwarded_for) -> app",
            peer: "127.0.0.1",
            headers: &[("X-Forwarded-For", "198.51.100.7, 13.32.4.5, 10.0.3.3")],
            policy: || policy(&["loopback", "10.0.0.0/16", "cloudfront"], &["rightmost-untrusted"]),
            client: "198.51.100.7",
            warnings: W,
            why: "nginx appended the ALB, the ALB appended CloudFront, CloudFront appended the viewer",
        },
        Case {
            name: "fail: attacker through the same CDN cannot pick an address",
            peer: "127.0.0.1",
            headers: &[("X-Forwarded-For", "6.6.6.6, 198.51.100.66, 13.32.4.5, 10.0.3.3")],
            policy: || policy(&["loopback", "10.0.0.0/16", "cloudfront"], &["rightmost-untrusted"]),
            client: "198.51.100.66",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "CloudFront appended the attacker's own address",
        },
        Case {
            name: "fail: bypassing the CDN, a forged CloudFront entry does not help",
            peer: "127.0.0.1",
            headers: &[("X-Forwarded-For", "9.9.9.9, 13.32.1.1, 198.51.100.66, 10.0.3.3")],
            policy: || policy(&["loopback", "10.0.0.0/16", "cloudfront"], &["rightmost-untrusted"]),
            client: "198.51.100.66",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "the ALB appended the attacker, who connected directly",
        },
        Case {
            name: "nginx sets X-Real-IP from $remote_addr",
            peer: "127.0.0.1",
            headers: &[("X-Real-IP", "198.51.100.4"), ("X-Forwarded-For", "6.6.6.6")],
            policy: || policy(&["loopback"], &["header:X-Real-IP"]),
            client: "198.51.100.4",
            warnings: W,
            why: "nginx overwrote X-Real-IP",
        },
        Case {
            name: "fail: X-Real-IP from a client that reached the app directly",
            peer: "203.0.113.50",
            headers: &[("X-Real-IP", "1.1.1.1")],
            policy: || policy(&["loopback"], &["header:X-Real-IP"]),
            client: "203.0.113.50",
            warnings: Warnings::UNTRUSTED_HEADER,
            why: "the peer is not nginx",
        },
        Case {
            name: "fail: two X-Real-IP lines are ambiguous",
            peer: "127.0.0.1",
            headers: &[("X-Real-IP", "1.1.1.1"), ("x-real-ip", "198.51.100.4")],
            policy: || policy(&["loopback"], &["header:X-Real-IP"]),
            client: "127.0.0.1",
            warnings: Warnings::DUPLICATE_HEADER,
            why: "which line did nginx set?",
        },
        Case {
            name: "cloudflare preset from a Cloudflare peer",
            peer: "173.245.48.9",
            headers: &[("CF-Connecting-IP", "2001:db8::77"), ("X-Forwarded-For", "6.6.6.6")],
            policy: || policy(&[], &["cloudflare"]),
            client: "2001:db8::77",
            warnings: W,
            why: "Cloudflare sets CF-Connecting-IP",
        },
        Case {
            name: "fail: CF-Connecting-IP from outside Cloudflare",
            peer: "198.51.100.66",
            headers: &[("CF-Connecting-IP", "1.1.1.1")],
            policy: || policy(&[], &["cloudflare"]),
            client: "198.51.100.66",
            warnings: Warnings::UNTRUSTED_HEADER,
            why: "anyone can write CF-Connecting-IP",
        },
        Case {
            name: "CloudFront-Viewer-Address: IPv6 with the port after the last colon",
            peer: "13.32.0.9",
            headers: &[("CloudFront-Viewer-Address", "2001:db8::1:443")],
            policy: || policy(&[], &["cloudfront"]),
            client: "2001:db8::1",
            warnings: W,
            why: "CloudFront writes ip:port without brackets",
        },
        Case {
            name: "cloudfront preset falls back to X-Forwarded-For without the viewer header",
            peer: "13.32.0.9",
            headers: &[("X-Forwarded-For", "6.6.6.6, 198.51.100.8")],
            policy: || policy(&[], &["cloudfront"]),
            client: "198.51.100.8",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "CloudFront appends the viewer",
        },
        Case {
            name: "several X-Forwarded-For lines form one list",
            peer: "10.0.0.1",
            headers: &[
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Forwarded-For", "203.0.113.9, 10.0.0.2"),
            ],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "203.0.113.9",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "lines join in order",
        },
        Case {
            name: "ports, brackets and empty elements",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "[2001:db8::5]:4711,, 10.0.0.2:80 ,")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "2001:db8::5",
            warnings: W,
            why: "empty elements are not data; ports are not part of the address",
        },
        Case {
            name: "fail closed: garbage in the trusted walk stops at the last vouched-for hop",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "1.2.3.4, garbage, 10.0.0.2")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "10.0.0.2",
            warnings: Warnings::MALFORMED,
            why: "never skip left onto client text",
        },
        Case {
            name: "fail closed: leading-zero octets are not guessed",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "1.2.3.4, 010.0.0.9")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "10.0.0.1",
            warnings: Warnings::MALFORMED,
            why: "010 is octal to some, decimal to others",
        },
        Case {
            name: "fail closed: unknown stops the walk",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "1.2.3.4, unknown, 10.0.0.2")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "10.0.0.2",
            warnings: Warnings::OPAQUE,
            why: "the hop would not say",
        },
        Case {
            name: "all trusted: leftmost by default (nginx)",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "10.0.0.3, 10.0.0.2")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "10.0.0.3",
            warnings: Warnings::ALL_TRUSTED,
            why: "the farthest hop we can vouch for",
        },
        Case {
            name: "all trusted: peer when chosen",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "10.0.0.3, 10.0.0.2")],
            policy: || {
                Policy::builder()
                    .trust_str("10.0.0.0/8")
                    .unwrap()
                    .strategy_str("rightmost-untrusted")
                    .unwrap()
                    .all_trusted(AllTrusted::Peer)
                    .build()
                    .unwrap()
            },
            client: "10.0.0.1",
            warnings: Warnings::ALL_TRUSTED,
            why: "explicit choice",
        },
        Case {
            name: "hops:2 takes the second from the right",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "1.2.3.4, 198.51.100.2, 10.9.9.9")],
            policy: || policy(&["any"], &["hops:2"]),
            client: "198.51.100.2",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "two proxies in front",
        },
        Case {
            name: "hops:3 with fewer elements: the peer, flagged",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "198.51.100.2, 10.9.9.9")],
            policy: || policy(&["any"], &["hops:3"]),
            client: "10.0.0.1",
            warnings: Warnings::FEWER_HOPS,
            why: "as ProxyFix and Envoy",
        },
        Case {
            name: "rightmost: the element the peer appended",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "1.2.3.4, 198.51.100.2")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost"]),
            client: "198.51.100.2",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "nginx real_ip_recursive off",
        },
        Case {
            name: "leftmost: always flagged spoofable",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "1.2.3.4, 198.51.100.2")],
            policy: || policy(&["10.0.0.0/8"], &["leftmost"]),
            client: "1.2.3.4",
            warnings: Warnings::SPOOFABLE,
            why: "client-written",
        },
        Case {
            name: "fail: headers from an untrusted peer are ignored",
            peer: "198.51.100.66",
            headers: &[("X-Forwarded-For", "1.2.3.4")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "198.51.100.66",
            warnings: Warnings::UNTRUSTED_HEADER,
            why: "the peer is the client",
        },
        Case {
            name: "default policy: the peer, whatever the headers",
            peer: "198.51.100.66",
            headers: &[
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Real-IP", "1.2.3.5"),
                ("Forwarded", "for=1.2.3.6"),
            ],
            policy: Policy::default,
            client: "198.51.100.66",
            warnings: Warnings::UNTRUSTED_HEADER,
            why: "trust nothing by default",
        },
        Case {
            name: "Forwarded: three elements, walked from the right",
            peer: "10.0.0.1",
            headers: &[(
                "Forwarded",
                r#"for=1.2.3.4, for="[2001:db8::9]:80";proto=https, for=10.0.0.2"#,
            )],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]).with_from_forwarded(),
            client: "2001:db8::9",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "RFC 7239",
        },
        Case {
            name: "fail: a client's unmatched quote cannot swallow trusted Forwarded elements",
            peer: "10.0.0.1",
            headers: &[("Forwarded", r#"for="1.2.3.4, for=198.51.100.7, for=10.0.0.2"#)],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]).with_from_forwarded(),
            client: "198.51.100.7",
            warnings: Warnings::SPOOF_ATTEMPT,
            why: "elements split from the right",
        },
        Case {
            name: "XFF and Forwarded disagree: flagged",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "198.51.100.7"), ("Forwarded", "for=198.51.100.8")],
            policy: || policy(&["10.0.0.0/8"], &["rightmost-untrusted"]),
            client: "198.51.100.7",
            warnings: Warnings::DISAGREE,
            why: "mixed headers are reported, never merged",
        },
        Case {
            name: "fallback chain: header first, then the list",
            peer: "10.0.0.1",
            headers: &[("X-Forwarded-For", "198.51.100.7")],
            policy: || policy(&["10.0.0.0/8"], &["header:X-Real-IP", "rightmost-untrusted"]),
            client: "198.51.100.7",
            warnings: W,
            why: "X-Real-IP absent",
        },
    ];
    for case in &cases {
        run(case);
    }
}

trait FromForwarded {
    fn with_from_forwarded(self) -> Policy;
}

impl FromForwarded for Policy {
    /// Rebuilds the test policy reading `Forwarded` (tests only need rightmost-untrusted over 10/8).
    fn with_from_forwarded(self) -> Policy {
        Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .from_list(trueip::ListHeader::Forwarded)
            .build()
            .unwrap()
    }
}

#[test]
fn all_trusted_fail_leaves_the_peer_with_no_strategy() {
    let p = Policy::builder()
        .trust_str("10.0.0.0/8")
        .unwrap()
        .strategy_str("rightmost-untrusted")
        .unwrap()
        .all_trusted(AllTrusted::Fail)
        .build()
        .unwrap();
    let got = p.resolve(&conn("10.0.0.1"), &[("X-Forwarded-For", "10.0.0.3")][..]);
    assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1");
    assert_eq!(got.strategy, None);
    assert!(got.warnings.contains(Warnings::ALL_TRUSTED));
}

#[test]
fn proxy_protocol_source_replaces_a_trusted_sender() {
    let p = Policy::builder().proxy_protocol_from("10.1.0.0/16".parse().unwrap()).build().unwrap();
    let mut c = conn("10.1.2.3");
    c.proxy_source = Some("203.0.113.1:5555".parse::<std::net::SocketAddr>().unwrap().into());
    let got = p.resolve(&c, &[("X-Forwarded-For", "6.6.6.6")][..]);
    assert_eq!(
        (got.ip().unwrap().to_string(), got.source, got.client.node().and_then(|n| n.port)),
        ("203.0.113.1".into(), Source::ProxyProtocol, Some(5555))
    );
    // The same header from an untrusted sender is ignored, flagged.
    let mut c = conn("198.51.100.9");
    c.proxy_source = Some(Node::ip("203.0.113.1".parse().unwrap()));
    let got = p.resolve(&c, &[] as &[(&str, &str)]);
    assert_eq!(got.ip().unwrap().to_string(), "198.51.100.9");
    assert!(got.warnings.contains(Warnings::UNTRUSTED_PROXY_PROTOCOL));
}

#[test]
fn trust_per_hop_nlb_proxy_v2_then_cloudfront_vouches_for_one_entry() {
    // A peer in the NLB range speaks PROXY v2; the address it carries, if in
    // CloudFront's range, vouches for one X-Forwarded-For entry.
    let p = Policy::builder()
        .provider("cloudfront", cloudfront())
        .proxy_protocol_from("10.1.0.0/16".parse().unwrap())
        .strategy_trusting("hops:1".parse().unwrap(), vec!["cloudfront".parse().unwrap()])
        .build()
        .unwrap();
    let headers = [("X-Forwarded-For", "6.6.6.6, 198.51.100.9")];
    let mut c = conn("10.1.0.7");
    c.proxy_source = Some(Node::ip("13.32.7.7".parse().unwrap()));
    assert_eq!(p.resolve(&c, &headers[..]).ip().unwrap().to_string(), "198.51.100.9");
    // Same headers, but the PROXY source is not CloudFront: it is the client.
    c.proxy_source = Some(Node::ip("198.51.100.66".parse().unwrap()));
    assert_eq!(p.resolve(&c, &headers[..]).ip().unwrap().to_string(), "198.51.100.66");
    // And the NLB range itself is not trusted for X-Forwarded-For.
    assert_eq!(p.resolve(&conn("10.1.0.7"), &headers[..]).ip().unwrap().to_string(), "10.1.0.7");
}

/// A policy trusting 10/8 with `strategy`, and `secret` as its origin secret's header.
fn secret_policy(strategy: &str, secret: &str) -> Result<Policy, trueip::ConfigError> {
    Policy::builder()
        .trust_str("10.0.0.0/8")
        .unwrap()
        .strategy_str(strategy)
        .unwrap()
        .origin_secret(OriginSecret::new(secret, "s3cret").unwrap())
        .build()
}

#[test]
fn fail_an_origin_secret_in_a_header_others_write_is_refused() {
    let build = secret_policy;
    for secret in ["X-Forwarded-For", "forwarded", "X-Real-IP", "Host", "X-Forwarded-Proto"] {
        let err = build("rightmost-untrusted", secret).unwrap_err().to_string();
        assert!(err.contains("origin secret header"), "{secret}: {err}");
    }
    let err = build("header:X-Client-Addr", "X-Client-Addr").unwrap_err().to_string();
    assert!(err.contains("reads a client address"), "{err}");
    // A header only the CDN writes, including one that is a row of the client-IP table
    // (Azure Front Door's id), stays allowed.
    assert!(build("rightmost-untrusted", "X-Origin-Verify").is_ok());
    assert!(build("rightmost-untrusted", "X-Azure-FDID").is_ok());
}

/// The same refusal in every spelling an app reads the same header by, and for every
/// header clients or proxies write: WSGI, CGI and PHP read `X_Forwarded_For` as
/// `X-Forwarded-For` (`HTTP_X_FORWARDED_FOR`), so a secret there is the list header to
/// the app; `X-Forwarded-Ssl` and `-Scheme` are request claims like `-Proto`; a CDN's
/// address header is overwritten by that CDN; `Cookie` is the browser's, and a
/// `cookie:NAME` strategy reads a client from it. Each was accepted once (found in
/// review).
#[test]
fn fail_an_origin_secret_in_any_spelling_of_a_header_others_write_is_refused() {
    let build = secret_policy;
    for (strategy, secret) in [
        ("rightmost-untrusted", "X_Forwarded_For"),
        ("rightmost-untrusted", "x_real_ip"),
        ("rightmost-untrusted", "X_FORWARDED_PROTO"),
        ("rightmost-untrusted", "X-Forwarded-Ssl"),
        ("rightmost-untrusted", "X-Forwarded-Scheme"),
        ("rightmost-untrusted", "CF-Connecting-IP"),
        ("rightmost-untrusted", "True-Client-IP"),
        ("rightmost-untrusted", "Cookie"),
        ("cookie:ip", "Cookie"),
        ("header:X-Client-Addr", "X_Client_Addr"),
        ("header:X_Client_Addr", "X-Client-Addr"),
    ] {
        let err = build(strategy, secret).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("origin secret header"), "{strategy}, {secret}: {err}");
    }
    for secret in ["X-Origin-Verify", "X_Origin_Verify", "X-Azure-FDID", "X-Forwarded-Fox"] {
        assert!(build("rightmost-untrusted", secret).is_ok(), "{secret}");
    }
    assert!(build("cookie:ip", "X-Origin-Verify").is_ok());
}

#[test]
fn fail_a_header_strategy_on_a_header_that_never_holds_an_address_is_refused() {
    let build = |strategy: &str| {
        Policy::builder().trust_str("10.0.0.0/8").unwrap().strategy_str(strategy).unwrap().build()
    };
    // `Host: 6.6.6.6` parses as an address, and no proxy overwrites Host with the client.
    // In any spelling an app reads as the same header (`X_Forwarded_Host` is WSGI's
    // `HTTP_X_FORWARDED_HOST`).
    for name in [
        "Host",
        "x-forwarded-host",
        "X_Forwarded_Host",
        "Cookie",
        "forwarded",
        "Content-Length",
        "content_length",
        "Transfer_Encoding",
        "Expect",
        "Proxy-Authorization",
        "HTTP2-Settings",
    ] {
        let err = build(&format!("header:{name}")).unwrap_err().to_string();
        assert!(err.contains("cannot carry a client address"), "{name}: {err}");
    }
    let err = build("header:Forwarded").unwrap_err().to_string();
    assert!(err.contains("--from forwarded"), "{err}");
    // nginx's `proxy_set_header X-Forwarded-For $remote_addr` overwrites the list header
    // with one address: reading it as a single header stays allowed.
    for name in ["X-Real-IP", "X-Forwarded-For", "X-Client-Addr"] {
        assert!(build(&format!("header:{name}")).is_ok(), "{name}");
    }
}

#[test]
fn origin_secret_gates_forwarding_headers() {
    let p = Policy::builder()
        .trust_str("10.0.0.0/8")
        .unwrap()
        .strategy_str("rightmost-untrusted")
        .unwrap()
        .origin_secret(OriginSecret::new("X-Origin-Verify", "s3cret").unwrap())
        .build()
        .unwrap();
    let without = [("X-Forwarded-For", "198.51.100.7")];
    let got = p.resolve(&conn("10.0.0.1"), &without[..]);
    assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1");
    assert!(got.warnings.contains(Warnings::ORIGIN_SECRET));
    let wrong = [("X-Forwarded-For", "198.51.100.7"), ("x-origin-verify", "s3cre")];
    assert_eq!(p.resolve(&conn("10.0.0.1"), &wrong[..]).ip().unwrap().to_string(), "10.0.0.1");
    let with = [("X-Forwarded-For", "198.51.100.7"), ("x-origin-verify", "s3cret")];
    assert_eq!(p.resolve(&conn("10.0.0.1"), &with[..]).ip().unwrap().to_string(), "198.51.100.7");
}

#[test]
fn work_is_bounded_on_huge_headers() {
    let p = policy(&["any"], &["rightmost-untrusted"]);
    // 10,000 trusted entries: the walk stops at the cap, flagged, at a vouched-for hop.
    let long = vec!["10.0.0.1"; 10_000].join(", ");
    let got = p.resolve(&conn("10.0.0.1"), &[("X-Forwarded-For", long.as_str())][..]);
    assert!(got.warnings.contains(Warnings::TRUNCATED), "{got:?}");
    assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1");
    // 100 header lines: only the last 16 are read; walking past them is refused.
    let lines: Vec<(&str, &str)> = (0..100).map(|_| ("X-Forwarded-For", "10.0.0.9")).collect();
    let got = p.resolve(&conn("10.0.0.1"), &lines);
    assert!(got.warnings.contains(Warnings::TRUNCATED), "{got:?}");
}

#[test]
fn rate_limit_key_aggregates_ipv6() {
    let p = Policy::builder()
        .trust_str("10.0.0.0/8")
        .unwrap()
        .strategy_str("rightmost-untrusted")
        .unwrap()
        .build()
        .unwrap();
    let got = p.resolve(&conn("10.0.0.1"), &[("X-Forwarded-For", "2001:db8:1:2:aaaa::1")][..]);
    assert_eq!(got.rate_limit_key.unwrap().to_string(), "2001:db8:1:2::");
    let p = Policy::builder().ipv6_prefix(48).build().unwrap();
    assert_eq!(
        p.resolve(&conn("[2001:db8:1:2::1]:9"), &[] as &[(&str, &str)])
            .rate_limit_key
            .unwrap()
            .to_string(),
        "2001:db8:1::"
    );
}

#[test]
fn origin_follows_the_same_trust() {
    use trueip::origin::{Scheme, origin};
    let p = policy(&["10.0.0.0/8"], &["rightmost-untrusted"]);
    // ALB overwrote X-Forwarded-Proto; the client's own attempt is on another line.
    let headers = [
        ("X-Forwarded-Proto", "gopher"),
        ("X-Forwarded-For", "198.51.100.7, 10.0.0.2"),
        ("X-Forwarded-Proto", "https, http"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Host", "shop.example"),
    ];
    let res = p.resolve(&conn("10.0.0.1"), &headers[..]);
    assert_eq!(res.trusted_hops, 2);
    let o = origin(&headers[..], &res);
    assert_eq!(o.proto, Some(Scheme::Https), "the outermost trusted hop's value");
    assert_eq!(o.port, Some(443));
    assert_eq!(o.host.as_deref(), Some("shop.example"));
    // From an untrusted peer nothing is believed.
    let res = p.resolve(&conn("198.51.100.66"), &headers[..]);
    assert_eq!(origin(&headers[..], &res), Default::default());
}

#[test]
fn trusting_proxies_without_a_strategy_walks_from_the_right() {
    let p = Policy::builder().trust_str("10.0.0.0/8").unwrap().build().unwrap();
    let got = p.resolve(&conn("10.0.0.1"), &[("X-Forwarded-For", "6.6.6.6, 198.51.100.7")][..]);
    assert_eq!(got.ip().unwrap().to_string(), "198.51.100.7");
    // Naming `peer` keeps headers ignored.
    let p = Policy::builder()
        .trust_str("10.0.0.0/8")
        .unwrap()
        .strategy_str("peer")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        p.resolve(&conn("10.0.0.1"), &[("X-Forwarded-For", "198.51.100.7")][..])
            .ip()
            .unwrap()
            .to_string(),
        "10.0.0.1"
    );
}

/// Stand-ins for the Fastly and Azure Front Door lists.
fn fastly() -> TrustSet {
    ["151.101.0.0/16"].iter().map(|c| c.parse().unwrap()).collect()
}
fn azure_front_door() -> TrustSet {
    ["147.243.0.0/16"].iter().map(|c| c.parse().unwrap()).collect()
}

/// A CDN's own client header behind an ALB (10.0.0.0/16) or nginx (loopback): believed
/// only when the hop the proxies recorded before them is the CDN.
#[test]
fn vendor_header_counts_only_from_the_hop_that_wrote_it() {
    struct Vendor {
        preset: &'static str,
        header: &'static str,
        /// An address in the provider's (stand-in) ranges.
        edge: &'static str,
        /// How the vendor writes the client.
        value: &'static str,
        client: &'static str,
    }
    let vendors = [
        Vendor {
            preset: "cloudfront",
            header: "CloudFront-Viewer-Address",
            edge: "13.32.0.9",
            value: "198.51.100.7:4444",
            client: "198.51.100.7",
        },
        Vendor {
            preset: "cloudflare",
            header: "CF-Connecting-IP",
            edge: "173.245.48.9",
            value: "198.51.100.7",
            client: "198.51.100.7",
        },
        Vendor {
            preset: "fastly",
            header: "Fastly-Client-IP",
            edge: "151.101.1.1",
            value: "198.51.100.7",
            client: "198.51.100.7",
        },
        Vendor {
            preset: "azure-front-door",
            header: "X-Azure-ClientIP",
            edge: "147.243.1.1",
            value: "198.51.100.7",
            client: "198.51.100.7",
        },
    ];
    let build = |trust: &[&str], strategies: &[&str]| {
        let mut b = Policy::builder()
            .provider("cloudfront", cloudfront())
            .provider("cloudflare", cloudflare())
            .provider("fastly", fastly())
            .provider("azure-front-door", azure_front_door());
        for t in trust {
            b = b.trust_str(t).unwrap();
        }
        for s in strategies {
            b = b.strategy_str(s).unwrap();
        }
        b.build().unwrap()
    };
    for v in &vendors {
        let with_fallback = [v.preset, "rightmost-untrusted"];
        let alone = [v.preset];
        for strategies in [&alone[..], &with_fallback[..]] {
            let p = build(&["10.0.0.0/16", "loopback"], strategies);
            let case = |what: &str| format!("{} {strategies:?}: {what}", v.preset);

            // Through the CDN: CDN -> ALB. The ALB appended the CDN edge it saw.
            let xff = format!("6.6.6.6, {}, {}", v.client, v.edge);
            let headers = [("X-Forwarded-For", xff.as_str()), (v.header, v.value)];
            let got = p.resolve(&conn("10.0.0.5"), &headers[..]);
            assert_eq!(got.ip().unwrap().to_string(), v.client, "{}", case("through the CDN"));
            assert_eq!(got.source, Source::Header, "{}", case("through the CDN"));
            assert_eq!(got.trusted_hops, 2, "{}", case("ALB and the CDN"));
            assert!(got.warnings.is_empty(), "{}: {got:?}", case("through the CDN"));

            // Through the CDN, the ALB and nginx: nginx appended the ALB.
            let xff = format!("{}, {}, 10.0.0.5", v.client, v.edge);
            let headers = [("X-Forwarded-For", xff.as_str()), (v.header, v.value)];
            let got = p.resolve(&conn("127.0.0.1"), &headers[..]);
            assert_eq!(got.ip().unwrap().to_string(), v.client, "{}", case("CDN, ALB, nginx"));
            assert_eq!(got.trusted_hops, 3, "{}", case("nginx, ALB and the CDN"));

            // Around the CDN: the attacker talks to the ALB, which records them.
            let headers = [("X-Forwarded-For", "203.0.113.66"), (v.header, "1.2.3.4")];
            let got = p.resolve(&conn("10.0.0.5"), &headers[..]);
            // The cloudfront preset falls back to X-Forwarded-For by itself.
            let expected = if strategies.len() == 2 || v.preset == "cloudfront" {
                "203.0.113.66"
            } else {
                "10.0.0.5"
            };
            assert_eq!(got.ip().unwrap().to_string(), expected, "{}", case("around the CDN"));
            assert!(
                got.warnings.contains(Warnings::UNVOUCHED_HEADER),
                "{}: {got:?}",
                case("around the CDN")
            );

            // Around the CDN, naming a CDN address on the left: the ALB's entry is still
            // the rightmost one.
            let forged = format!("{}, 203.0.113.66", v.edge);
            let headers = [("X-Forwarded-For", forged.as_str()), (v.header, "1.2.3.4")];
            let got = p.resolve(&conn("10.0.0.5"), &headers[..]);
            assert_eq!(got.ip().unwrap().to_string(), expected, "{}", case("forged edge"));
            assert!(got.warnings.contains(Warnings::UNVOUCHED_HEADER));

            // No record of the hop before the ALB, or one that cannot be read: nobody
            // vouches for the header.
            for xff in [None, Some("garbage"), Some("unknown"), Some("")] {
                let mut headers = vec![(v.header, "1.2.3.4")];
                if let Some(xff) = xff {
                    headers.push(("X-Forwarded-For", xff));
                }
                let got = p.resolve(&conn("10.0.0.5"), &headers);
                assert_ne!(got.ip().unwrap().to_string(), "1.2.3.4", "{}", case("no record"));
                assert!(
                    got.warnings.contains(Warnings::UNVOUCHED_HEADER),
                    "{} {xff:?}: {got:?}",
                    case("no record")
                );
            }

            // Straight from the CDN edge, as before.
            let headers = [(v.header, v.value)];
            let got = p.resolve(&conn(v.edge), &headers[..]);
            assert_eq!(got.ip().unwrap().to_string(), v.client, "{}", case("from the edge"));
            assert_eq!(got.trusted_hops, 1);
        }
    }
}

/// `header:NAME` with its own writers, behind the policy's proxies, and `fly` the same way.
#[test]
fn a_header_strategy_with_its_own_writers_looks_past_the_relays() {
    // Through a writer (behind the policy's nginx on 10.0.0.5), `header` names the
    // client; from around the writers, the peer stands, flagged.
    let check = |p: &Policy, header: &str, writer: &str| {
        let through = [("X-Forwarded-For", writer), (header, "198.51.100.7")];
        let got = p.resolve(&conn("10.0.0.5"), &through[..]);
        assert_eq!(got.ip().unwrap().to_string(), "198.51.100.7", "{header}");
        let around = [("X-Forwarded-For", "203.0.113.66"), (header, "1.2.3.4")];
        let got = p.resolve(&conn("10.0.0.5"), &around[..]);
        assert_eq!(got.ip().unwrap().to_string(), "10.0.0.5", "{header}");
        assert!(got.warnings.contains(Warnings::UNVOUCHED_HEADER), "{header}");
    };
    let p = Policy::builder()
        .trust_str("10.0.0.0/16")
        .unwrap()
        .strategy_trusting(
            "header:X-Client-Addr".parse().unwrap(),
            vec!["192.0.2.0/24".parse().unwrap()],
        )
        .build()
        .unwrap();
    check(&p, "X-Client-Addr", "192.0.2.10");

    // Fly's proxies (on their private network) in front of an nginx on 10.0.0.0/16.
    let p = Policy::builder()
        .trust_str("10.0.0.0/16")
        .unwrap()
        .strategy_trusting("fly".parse().unwrap(), vec!["fdaa::/16".parse().unwrap()])
        .build()
        .unwrap();
    check(&p, "Fly-Client-IP", "fdaa:0:1::3");

    // The PROXY source counts as the peer: a CDN edge carried by a trusted NLB is the
    // header's writer; any other source is the client.
    let p = Policy::builder()
        .provider("cloudflare", cloudflare())
        .trust_str("10.0.0.0/16")
        .unwrap()
        .proxy_protocol_from("10.1.0.0/16".parse().unwrap())
        .strategy_str("cloudflare")
        .unwrap()
        .build()
        .unwrap();
    let mut c = conn("10.1.0.7");
    c.proxy_source = Some(Node::ip("173.245.48.9".parse().unwrap()));
    let got = p.resolve(&c, &[("CF-Connecting-IP", "198.51.100.7")][..]);
    assert_eq!(got.ip().unwrap().to_string(), "198.51.100.7");
    c.proxy_source = Some(Node::ip("203.0.113.66".parse().unwrap()));
    let got = p.resolve(&c, &[("CF-Connecting-IP", "1.2.3.4")][..]);
    assert_eq!(got.ip().unwrap().to_string(), "203.0.113.66");
    assert!(got.warnings.contains(Warnings::UNTRUSTED_HEADER));
}

/// `hops:N` with fewer than N elements: the peer, flagged, whatever the elements hold.
#[test]
fn fail_too_few_hops_cannot_be_hidden_by_an_opaque_element() {
    let p = policy(&["any"], &["hops:3"]);
    for xff in ["unknown, 10.0.0.1", "garbage, 10.0.0.1", "_hidden", "010.0.0.1, 1.2.3.4"] {
        let got = p.resolve(&conn("10.9.9.9"), &[("X-Forwarded-For", xff)][..]);
        assert_eq!(got.ip().unwrap().to_string(), "10.9.9.9", "{xff}: {got:?}");
        assert_eq!(got.source, Source::Peer, "{xff}");
        assert_eq!(got.warnings, Warnings::FEWER_HOPS, "{xff}");
    }
    // With enough elements, an opaque one among the N still stops the walk.
    let got =
        p.resolve(&conn("10.9.9.9"), &[("X-Forwarded-For", "1.2.3.4, unknown, 10.0.0.1")][..]);
    assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1");
    assert_eq!(got.warnings, Warnings::OPAQUE);
}

/// Addresses no TCP connection comes from are malformed wherever a hop reports them.
#[test]
fn fail_an_address_that_is_never_a_source_is_malformed() {
    let unusable = [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250:1900",
        "::",
        "[::]:80",
        "ff02::1",
        "::ffff:0.0.0.0",
    ];
    let xff = policy(&["10.0.0.0/8"], &["rightmost-untrusted"]);
    let real_ip = policy(&["10.0.0.0/8"], &["header:X-Real-IP"]);
    let forwarded = policy(&["10.0.0.0/8"], &["rightmost-untrusted"]).with_from_forwarded();
    for bad in unusable {
        let list = format!("198.51.100.7, {bad}");
        let got = xff.resolve(&conn("10.0.0.1"), &[("X-Forwarded-For", list.as_str())][..]);
        assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1", "{bad}: {got:?}");
        assert_eq!(got.warnings, Warnings::MALFORMED, "{bad}");

        let got = real_ip.resolve(&conn("10.0.0.1"), &[("X-Real-IP", bad)][..]);
        assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1", "{bad}: {got:?}");
        assert!(got.warnings.contains(Warnings::MALFORMED), "{bad}");

        // RFC 7239 brackets a bare IPv6 address.
        let element = match bad.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("for=\"[{bad}]\""),
            _ => format!("for=\"{bad}\""),
        };
        let list = format!("for=198.51.100.7, {element}");
        let got = forwarded.resolve(&conn("10.0.0.1"), &[("Forwarded", list.as_str())][..]);
        assert_eq!(got.ip().unwrap().to_string(), "10.0.0.1", "{list}: {got:?}");
        assert_eq!(got.warnings, Warnings::MALFORMED, "{list}");
    }
    // Trusted hops left of the bad one do not help either: the walk stops there.
    let got = xff.resolve(
        &conn("10.0.0.1"),
        &[("X-Forwarded-For", "198.51.100.7, 255.255.255.255, 10.0.0.2")][..],
    );
    assert_eq!(got.ip().unwrap().to_string(), "10.0.0.2");
    assert_eq!(got.warnings, Warnings::MALFORMED);

    // A trusted PROXY sender naming one: the sender stays the peer.
    let p = Policy::builder().proxy_protocol_from("10.1.0.0/16".parse().unwrap()).build().unwrap();
    for bad in ["0.0.0.0", "255.255.255.255", "224.1.2.3", "::", "ff05::2"] {
        let mut c = conn("10.1.2.3");
        c.proxy_source = Some(Node::ip(bad.parse().unwrap()));
        let got = p.resolve(&c, &[] as &[(&str, &str)]);
        assert_eq!(got.ip().unwrap().to_string(), "10.1.2.3", "{bad}");
        assert_eq!(got.source, Source::Peer, "{bad}");
        assert!(got.warnings.contains(Warnings::MALFORMED), "{bad}");
    }
}

/// Around the CDN, the forged header sent twice: still flagged as unvouched (so the gateway
/// strips it), not only as a duplicate.
#[test]
fn fail_a_doubled_vendor_header_from_around_the_cdn_is_unvouched() {
    let p = policy(&["10.0.0.0/16"], &["cloudflare", "rightmost-untrusted"]);
    let headers = [
        ("X-Forwarded-For", "203.0.113.66"),
        ("CF-Connecting-IP", "1.2.3.4"),
        ("CF-Connecting-IP", "1.2.3.5"),
    ];
    let got = p.resolve(&conn("10.0.0.5"), &headers[..]);
    assert_eq!(got.ip().unwrap().to_string(), "203.0.113.66");
    assert!(got.warnings.contains(Warnings::UNVOUCHED_HEADER), "{got:?}");
    // Through the CDN, two lines stay ambiguous.
    let headers = [
        ("X-Forwarded-For", "198.51.100.7, 173.245.48.9"),
        ("CF-Connecting-IP", "198.51.100.7"),
        ("CF-Connecting-IP", "1.2.3.5"),
    ];
    let got = p.resolve(&conn("10.0.0.5"), &headers[..]);
    assert!(got.warnings.contains(Warnings::DUPLICATE_HEADER), "{got:?}");
    assert!(!got.warnings.contains(Warnings::UNVOUCHED_HEADER), "{got:?}");
}

/// A Unix-socket peer has no address: only `unix` trusts it (not `any`, not `loopback`),
/// and when nothing names an address the client is `Peer::Unix` — no rate-limit key, no
/// address anything could mistake for a real one. A TCP peer never matches `unix`.
#[test]
fn a_unix_socket_peer_is_trusted_only_by_unix_and_is_never_an_address() {
    use trueip::addr::Peer;
    let xff = [("X-Forwarded-For", "6.6.6.6, 203.0.113.9")];

    let by_unix = policy(&["unix"], &[]);
    let got = by_unix.resolve(&Connection::unix(), &xff[..]);
    assert_eq!(got.ip().map(|ip| ip.to_string()).as_deref(), Some("203.0.113.9"));
    assert!(got.warnings.contains(Warnings::SPOOF_ATTEMPT));
    assert_eq!(got.peer, Peer::Unix);
    assert!(by_unix.came_through_trusted_hop(&got));
    // With the proxy on the socket trusted, the list is walked as from any trusted peer.
    let by_unix_and_ten = policy(&["unix", "203.0.113.0/24"], &[]);
    let got = by_unix_and_ten.resolve(&Connection::unix(), &xff[..]);
    assert_eq!(got.ip().map(|ip| ip.to_string()).as_deref(), Some("6.6.6.6"));
    assert_eq!(got.trusted_hops, 2);

    for trust in [&["any"][..], &["loopback", "private"][..]] {
        let p = policy(trust, &[]);
        let got = p.resolve(&Connection::unix(), &xff[..]);
        assert_eq!(got.client, Peer::Unix, "{trust:?}");
        assert_eq!((got.ip(), got.rate_limit_key), (None, None), "{trust:?}");
        assert!(got.warnings.contains(Warnings::UNTRUSTED_HEADER), "{trust:?}");
        assert!(!p.came_through_trusted_hop(&got), "{trust:?}");
    }
    // Trusted, but no header names anyone: the socket's process stands.
    let got = by_unix.resolve(&Connection::unix(), &[] as &[(&str, &str)]);
    assert_eq!((got.client, got.source), (Peer::Unix, Source::Peer));
    // `unix` trusts no address: a TCP peer on loopback is the client.
    let got = by_unix.resolve(&conn("127.0.0.1"), &xff[..]);
    assert_eq!(got.ip().map(|ip| ip.to_string()).as_deref(), Some("127.0.0.1"));
    assert!(!by_unix.trusts("127.0.0.1".parse().unwrap()));
    assert!(by_unix.trusts_peer(Peer::Unix));
    // As a spec: `unix` and nginx's `unix:` both parse, and print as `unix`.
    for text in ["unix", "unix:", "UNIX"] {
        assert_eq!(text.parse::<trueip::TrustSpec>().unwrap().to_string(), "unix");
    }
}
