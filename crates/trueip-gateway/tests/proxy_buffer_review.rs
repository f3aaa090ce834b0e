//! Attacks on the PROXY listener's read into the lean path's kept buffers (a review of
//! the change that reads the header into the buffer requests are then read from, kept
//! from the worker's previous connection). With one worker, every connection gets the
//! buffer the last one left, still holding its bytes: a header that names one client
//! and a whole request. Each attack sends the start of the same header or request and
//! then stops short; were any kept byte read as this connection's, the header or the
//! request would be complete and answered 200 as the earlier client.

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use common::*;

/// The earlier connection's request, which the kept buffer holds after its header.
const EARLIER: &[u8] = b"GET /json HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\
X-Stale: from-the-earlier-connection\r\nConnection: close\r\n\r\n";
/// The start of that request: its request line and first line, and no end.
const START: &[u8] = b"GET /json HTTP/1.1\r\nHost: x\r\n";

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One worker, so that each connection takes the buffers the previous one gave back.
fn gateway() -> Gateway {
    let dir = test_dir("proxy_buffer_review");
    let addr = free_addr();
    let toml = format!(
        "[client_ip]\nproxy_protocol_from = [\"127.0.0.1\"]\n\n[[listen]]\naddress = \"{addr}\"\n\
         proxy_protocol = \"v1\"\n\n[limits]\nworkers = 1\nlean_http1 = true\n\
         proxy_protocol_timeout = \"1s\"\nheader_read_timeout = \"1s\"\n"
    );
    Gateway::start_with_config(&dir, &toml, &[addr], &[])
}

/// The earlier connection: served whole, it leaves its header (from 198.51.100.7) and
/// request in the worker's kept buffer.
fn earlier(gw: &Gateway) {
    let header = proxy_v1(sock("198.51.100.7:5555"), gw.addr);
    let ending = exchange(gw.addr, &[&header[..], EARLIER].concat(), Duration::from_secs(5));
    let text = String::from_utf8_lossy(ending.bytes()).into_owned();
    assert_eq!(ending.status(), Some(200), "{text}");
    assert!(text.contains("\"198.51.100.7\""), "{text}");
}

/// Sends `first`, then (after a pause) `then`, then half-closes when `close`; reads what
/// comes back until the gateway closes.
fn attack(gw: &Gateway, first: &[u8], then: &[u8], close: bool) -> Ending {
    let mut s = connect(gw.addr).unwrap();
    s.write_all(first).unwrap();
    if !then.is_empty() {
        thread::sleep(Duration::from_millis(200));
        // The gateway may have closed already (a malformed header).
        let _ = s.write_all(then);
    }
    if close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    read_until_close(&mut s, Duration::from_secs(5))
}

#[test]
fn no_byte_a_kept_buffer_holds_completes_the_next_connections_header_or_request() {
    let gw = gateway();
    // A header of the same length as the earlier one, from another client: what follows
    // it lies where the earlier request's bytes lie in the buffer.
    let other = proxy_v1(sock("198.51.100.8:5555"), gw.addr);
    let earlier_header = proxy_v1(sock("198.51.100.7:5555"), gw.addr);
    assert_eq!(other.len(), earlier_header.len());
    let cases: [(&str, Vec<u8>, &[u8], bool); 5] = [
        (
            "the header and the start of a request, then a half-close",
            [&other[..], START].concat(),
            b"",
            true,
        ),
        ("the header alone, then a half-close", other.clone(), b"", true),
        (
            "the header and the start of a request, then silence",
            [&other[..], START].concat(),
            b"",
            false,
        ),
        (
            "the start of the earlier header, then a half-close",
            earlier_header[..22].to_vec(),
            b"",
            true,
        ),
        (
            "the start of the earlier header, then a request",
            earlier_header[..22].to_vec(),
            b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        ),
    ];
    for (name, first, then, close) in cases {
        earlier(&gw);
        let ending = attack(&gw, &first, then, close);
        let text = String::from_utf8_lossy(ending.bytes()).into_owned();
        assert!(ending.is_closed(), "{name}: still open: {text}");
        assert!(ending.status().is_none_or(|s| s >= 400), "{name}: answered: {text}");
        assert!(
            !text.contains("from-the-earlier-connection") && !text.contains("198.51.100.7"),
            "{name}: the earlier connection's bytes were read: {text}"
        );
    }
    // And it still serves.
    earlier(&gw);
}
