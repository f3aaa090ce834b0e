//! Attacks on the one deadline a PROXY listener's connection is timed by (a review of the
//! change that lends the lean path's deadline to the PROXY header's read and re-aims it
//! at the request head and the upstream's answer). A header that makes the read wait
//! arms that deadline's timer `proxy_protocol_timeout` after the connection's start;
//! each test pins that the next step is then held to its own limit: not to the PROXY
//! timer when that is later (the timer must be pulled in), not cut short by it when it
//! is earlier (the timer fires early and must be re-aimed), and that a header trickled
//! byte by byte does not restart it.
//!
//! The limits are set seconds apart and every bound has seconds of slack, so that a
//! loaded machine moves no outcome.

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long the client waits before sending its header: long enough that the
/// gateway's first read of the connection waits (and arms the header's timer).
const LATE: Duration = Duration::from_millis(300);

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A gateway whose listener takes v1 headers from the test client, with `limits` and,
/// when given, an upstream.
fn gateway(name: &str, limits: &str, upstream: Option<&Upstream>) -> Gateway {
    let dir = test_dir(&format!("proxy_deadline_review/{name}"));
    let addr = free_addr();
    let up = upstream.map_or(String::new(), |u| {
        format!("[upstream]\nurl = \"{}\"\nresponse_timeout = \"1s\"\n\n", u.url())
    });
    let toml = format!(
        "{up}[client_ip]\nproxy_protocol_from = [\"127.0.0.1\"]\n\n[[listen]]\naddress = \"{addr}\"\n\
         proxy_protocol = \"v1\"\n\n[limits]\nlean_http1 = true\n{limits}"
    );
    Gateway::start_with_config(&dir, &toml, &[addr], &[])
}

/// The gateway still answers a request behind a header sent with it.
fn assert_serves(gw: &Gateway, after: &str) {
    let header = proxy_v1(sock("192.0.2.200:40000"), gw.addr);
    let resp = Req::get("/json")
        .send_with_preamble(gw.addr, &header)
        .unwrap_or_else(|e| panic!("gateway stopped serving after {after}: {e}"));
    assert_eq!(resp.status, 200, "after {after}: {}", resp.text());
}

/// Connects, waits [`LATE`], sends `header` and `then`; returns the stream and when the
/// header was sent.
fn late_header(gw: &Gateway, then: &[u8]) -> (std::net::TcpStream, Instant) {
    let mut s = connect(gw.addr).unwrap();
    thread::sleep(LATE);
    let header = proxy_v1(sock("198.51.100.7:5555"), gw.addr);
    s.write_all(&[&header[..], then].concat()).unwrap();
    (s, Instant::now())
}

/// The header's timer is aimed 6 s out; the head is due 1 s after the header: a head
/// left unfinished is answered 408 then, not when the header's timer would fire.
#[test]
fn a_late_header_then_a_stalled_head_is_held_to_the_head_timeout() {
    let gw = gateway(
        "stalled_head",
        "proxy_protocol_timeout = \"6s\"\nheader_read_timeout = \"1s\"\n",
        None,
    );
    let (mut s, sent) = late_header(&gw, b"GET /json HTTP/1.1\r\nHost: x\r\n");
    let ending = read_until_close(&mut s, Duration::from_secs(10));
    let took = sent.elapsed();
    let text = String::from_utf8_lossy(ending.bytes()).into_owned();
    assert!(ending.is_closed(), "still open after {took:?}: {text}");
    assert_eq!(ending.status(), Some(408), "{text}");
    assert!(
        took < Duration::from_millis(4500),
        "closed {took:?} after the header: held to the PROXY header's timer (6 s), not the head's (1 s)"
    );
    assert_serves(&gw, "a stalled head");
}

/// The header's timer is aimed 2 s out; the head is due 6 s after the header. A head
/// finished after the header's timer fired (early, for the head) is served.
#[test]
fn a_late_header_then_a_slow_head_outlives_the_headers_timer() {
    let gw = gateway(
        "slow_head",
        "proxy_protocol_timeout = \"2s\"\nheader_read_timeout = \"6s\"\n",
        None,
    );
    let (mut s, _) = late_header(&gw, b"GET /json HTTP/1.1\r\n");
    // Past the header's timer (2 s from the connection's start), well within the head's
    // (6 s after the header).
    thread::sleep(Duration::from_millis(2700));
    s.write_all(b"Host: x\r\nConnection: close\r\n\r\n").unwrap();
    let ending = read_until_close(&mut s, Duration::from_secs(10));
    let text = String::from_utf8_lossy(ending.bytes()).into_owned();
    assert_eq!(ending.status(), Some(200), "{text}");
    assert!(text.contains("\"198.51.100.7\""), "{text}");
}

/// The header's timer is aimed 6 s out; the upstream's answer is due 1 s after the
/// request (`response_timeout`): an upstream that takes 20 s is answered 504 then.
#[test]
fn a_late_header_then_a_silent_upstream_is_held_to_the_response_timeout() {
    let up = Upstream::start(Behavior::Delay(Duration::from_secs(20)));
    let gw = gateway(
        "silent_upstream",
        "proxy_protocol_timeout = \"6s\"\nheader_read_timeout = \"6s\"\n",
        Some(&up),
    );
    let (mut s, sent) =
        late_header(&gw, b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let ending = read_until_close(&mut s, Duration::from_secs(15));
    let took = sent.elapsed();
    let text = String::from_utf8_lossy(ending.bytes()).into_owned();
    assert_eq!(ending.status(), Some(504), "after {took:?}: {text}");
    assert!(
        took < Duration::from_millis(4500),
        "answered {took:?} after the request: held to the PROXY header's timer (6 s), not response_timeout (1 s)"
    );
}

/// A header trickled a byte every 100 ms (about 5 s in all) does not restart its timer
/// at each read: the connection is closed `proxy_protocol_timeout` (1 s) after its start.
#[test]
fn a_header_trickled_byte_by_byte_is_held_to_the_proxy_timeout() {
    let gw =
        gateway("trickle", "proxy_protocol_timeout = \"1s\"\nheader_read_timeout = \"6s\"\n", None);
    let header = proxy_v1(sock("198.51.100.7:5555"), gw.addr);
    let started = Instant::now();
    let mut s = connect(gw.addr).unwrap();
    // The first write after the gateway closed may still succeed (it draws the reset),
    // so the close shows as a failed write one byte later.
    let mut refused_at = None;
    for b in &header {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            refused_at = Some(started.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let refused_at = refused_at.unwrap_or_else(|| {
        panic!(
            "the whole header ({} bytes, {:?}) was written without the gateway closing",
            header.len(),
            started.elapsed()
        )
    });
    assert!(refused_at < Duration::from_millis(3500), "the trickle went on for {refused_at:?}");
    assert_serves(&gw, "a trickled header");
}
