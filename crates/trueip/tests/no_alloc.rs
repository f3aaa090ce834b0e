//! `Policy::resolve` allocates nothing. One test in its own binary, because the
//! counting allocator is process-wide.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use trueip::{Connection, Node, Policy, TrustSet};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn resolve_allocates_nothing() {
    let big: TrustSet = (0..10_000u32)
        .map(|i| {
            format!("{}.{}.{}.0/24", 20 + i / 65536, (i / 256) % 256, i % 256).parse().unwrap()
        })
        .collect();
    let policies: Vec<Policy> = [
        ("10.0.0.0/8", "rightmost-untrusted"),
        ("10.0.0.0/8", "rightmost"),
        ("any", "hops:2"),
        ("loopback", "header:X-Real-IP"),
        ("loopback", "header:X-Custom-Client"),
        ("10.0.0.0/8", "leftmost"),
        ("loopback", "query:client"),
        ("loopback", "cookie:client"),
    ]
    .iter()
    .map(|(t, s)| Policy::builder().trust_str(t).unwrap().strategy_str(s).unwrap().build().unwrap())
    .chain(std::iter::once(
        Policy::builder()
            .provider("cloudflare", big)
            .strategy_str("cloudflare")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .build()
            .unwrap(),
    ))
    .collect();

    let mut map = http::HeaderMap::new();
    map.append("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
    map.append("x-forwarded-for", "10.0.0.3, 10.0.0.2".parse().unwrap());
    map.append("forwarded", "for=203.0.113.8, for=\"[2001:db8::1]:80\"".parse().unwrap());
    map.append("x-real-ip", "198.51.100.1".parse().unwrap());
    map.append("x-custom-client", "198.51.100.2".parse().unwrap());
    map.append("cookie", "a=1; client=198.51.100.3".parse().unwrap());
    map.append("cookie", "b=\"2\"".parse().unwrap());
    let mut request = http::Request::new(());
    *request.uri_mut() = "/p?a=1&client=%5B2001%3Adb8%3A%3A7%5D%3A80".parse().unwrap();
    *request.headers_mut() = map.clone();
    let pairs = [
        ("X-Forwarded-For", "6.6.6.6, garbage, 10.0.0.2"),
        ("X-Real-IP", "198.51.100.1"),
        ("Forwarded", "for=\"1.2.3.4"),
    ];
    let conns = [
        Connection::from_peer(Node::ip("10.0.0.1".parse().unwrap())),
        Connection::from_peer(Node::ip("127.0.0.1".parse().unwrap())),
        Connection::from_peer(Node::ip("198.51.100.9".parse().unwrap())),
    ];

    let region = Region::new(GLOBAL);
    let mut sum = 0u64;
    for policy in &policies {
        for conn in &conns {
            sum += u64::from(policy.resolve(conn, &map).trusted_hops);
            sum += u64::from(policy.resolve(conn, &pairs[..]).trusted_hops);
            sum += u64::from(policy.resolve(conn, &request).trusted_hops);
        }
    }
    let stats = region.change();
    assert!(sum > 0, "the cases exercised trusted paths");
    assert_eq!(stats.allocations, 0, "resolve allocated: {stats:?}");
    assert_eq!(stats.reallocations, 0, "resolve reallocated: {stats:?}");

    // The counter works: explain allocates.
    let region = Region::new(GLOBAL);
    let _ = policies[0].explain(&conns[0], &map);
    assert!(region.change().allocations > 0);

    // What the tower and actix-web adapters ask of every request they decided: which
    // names to withhold from the app. A trusted hop's list header, which the policy reads,
    // beside ordinary lines (two of the list header's length): none, and no allocation.
    let mut ordinary = http::HeaderMap::new();
    for (name, value) in [
        ("host", "example.com"),
        ("accept-encoding", "gzip"),
        ("accept-language", "en"),
        ("x-request-id", "5f0c6d2e"),
        ("x-forwarded-for", "203.0.113.9, 10.1.2.3"),
    ] {
        ordinary.append(name, value.parse().unwrap());
    }
    let (policy, conn) = (&policies[0], &conns[0]);
    let set = policy.withheld_set();
    let resolution = policy.resolve(conn, &ordinary);
    let region = Region::new(GLOBAL);
    let withheld = set.withheld_names(ordinary.keys(), policy.hop(&resolution));
    assert_eq!(region.change().allocations, 0, "withheld_names allocated");
    assert!(withheld.is_empty(), "{withheld:?}");
    // From a stranger the list header is withheld: the counter sees the list of names.
    let region = Region::new(GLOBAL);
    let withheld = set.withheld_names(ordinary.keys(), trueip::headers::Hop::Untrusted);
    assert!(region.change().allocations > 0);
    assert_eq!(withheld, ["x-forwarded-for"]);
}
