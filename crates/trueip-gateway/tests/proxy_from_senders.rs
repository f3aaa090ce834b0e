//! `proxy_protocol = "from-senders"`: one port for a load balancer that sends PROXY
//! headers and for clients that connect directly. Whether a connection must start with a
//! header is decided by its peer address alone (`client_ip.proxy_protocol_from`), never
//! guessed from its bytes: the balancer's connections must carry one; anyone else is
//! served as a plain connection, and one that sends a PROXY header anyway is closed with
//! the header unread, and counted.
//!
//! The balancer is real HAProxy (`send-proxy-v2`, connecting from 127.0.0.30); without it
//! the first test fails unless `TRUEIP_SKIP_EXTERNAL=1`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const UNTRUSTED: &str = "trueip_proxy_protocol_errors_total{reason=\"untrusted_sender\"}";

/// A direct client sending a PROXY header that names someone else: closed, not served,
/// and the named address appears nowhere.
fn assert_forged_header_closed(gw: SocketAddr, preamble: Vec<u8>, what: &str) {
    let mut bytes = preamble;
    bytes.extend_from_slice(&Req::get("/json").to_bytes());
    let ending = exchange(gw, &bytes, Duration::from_secs(4));
    assert!(ending.is_closed(), "{what}: not closed");
    assert_eq!(ending.status(), None, "{what}: answered");
    assert!(!String::from_utf8_lossy(ending.bytes()).contains("203.0.113.30"), "{what}");
}

#[test]
fn the_balancer_must_send_a_header_and_everyone_else_is_served_plainly() {
    let dir = test_dir("proxy_from_senders/haproxy");
    let gw = Gateway::start(
        &dir,
        free_addr(),
        &["--proxy-protocol", "from-senders", "--proxy-protocol-from", HAPROXY_SOURCE],
    );
    let front = free_addr();
    let Some(_haproxy) = Haproxy::send_proxy_v2(&dir, front, gw.addr) else {
        return;
    };
    // Through HAProxy: the PROXY source (the test's own address) is the client.
    let json = Req::get("/json").headers(&forged_headers()).must_send(front).json();
    assert_eq!(json.str_at("source"), "proxy-protocol", "{json:?}");
    assert_eq!(json.str_at("client_ip"), CLIENT_IP);
    assert!(json.str_at("peer").starts_with(HAPROXY_SOURCE), "{json:?}");

    // Straight to the same port, no header: served, the peer is the client.
    let json = Req::get("/json").headers(&forged_headers()).must_send(gw.addr).json();
    assert_eq!((json.str_at("source"), json.str_at("client_ip")), ("peer", CLIENT_IP), "{json:?}");

    // Straight to it with a header of either version: closed, unread.
    let before = metric(gw.addr, UNTRUSTED);
    let src: SocketAddr = "203.0.113.30:7000".parse().expect("addr");
    assert_forged_header_closed(gw.addr, proxy_v1(src, gw.addr), "PROXY v1 from a direct client");
    assert_forged_header_closed(
        gw.addr,
        proxy_v2(src, gw.addr, &[]),
        "PROXY v2 from a direct client",
    );
    assert_eq!(metric(gw.addr, UNTRUSTED) - before, 2.0);
    // And the port still serves both kinds.
    assert_eq!(Req::get("/json").must_send(front).json().str_at("source"), "proxy-protocol");
    assert_eq!(Req::get("/json").must_send(gw.addr).json().str_at("source"), "peer");
}

#[test]
fn a_sender_without_a_header_is_refused() {
    // Here the test's own address is the balancer: its plain request is refused, its
    // request behind a header served.
    let dir = test_dir("proxy_from_senders/sender");
    let gw = Gateway::start(
        &dir,
        free_addr(),
        &["--proxy-protocol", "from-senders", "--proxy-protocol-from", CLIENT_IP],
    );
    let ending = exchange(gw.addr, &Req::get("/json").to_bytes(), Duration::from_secs(4));
    assert!(ending.is_closed() && ending.status().is_none(), "a sender's plain request was served");
    let src: SocketAddr = "192.0.2.200:40000".parse().expect("addr");
    let resp = Req::get("/json")
        .send_with_preamble(gw.addr, &proxy_v2(src, gw.addr, &[]))
        .expect("served behind a header");
    assert_eq!(resp.json().str_at("client_ip"), "192.0.2.200");
}
