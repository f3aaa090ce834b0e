//! A request head that does not arrive within `limits.header_read_timeout` (a slowloris
//! client) gets `408 Request Timeout` and the connection closes; a connection that sends
//! nothing, new or kept alive after a response, closes silently, as nginx's
//! `ngx_http_wait_request_handler` and `ngx_http_keepalive_handler` close a connection
//! whose read timed out with no request begun. The same on both wire paths (the lean
//! one and hyper's), and over TLS.

mod common;
mod pki;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const LIMITS: &str = "[limits]\nheader_read_timeout = \"300ms\"\n";

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_a_silent_close_on_the_lean_path() {
    slow_heads("head_timeout_lean", "lean_http1 = true\n");
}

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_a_silent_close_on_hypers_path() {
    slow_heads("head_timeout_hyper", "lean_http1 = false\n");
}

#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
fn slow_heads(name: &str, path: &str) {
    let dir = test_dir(name);
    let gw = Gateway::start_with_toml(&dir, free_addr(), &format!("{LIMITS}{path}"), &[]);

    // Half a head, then nothing.
    let ending = exchange(
        gw.addr,
        b"GET /json HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(5),
    );
    let Ending::Closed(bytes) = &ending else {
        panic!("the connection closes after the 408: {ending:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.contains("\"request_header_timeout\""), "{text}");

    // Nothing at all: closed without a byte.
    let ending = exchange(gw.addr, b"", Duration::from_secs(5));
    assert!(
        matches!(&ending, Ending::Closed(b) if b.is_empty()),
        "{ending:?}"
    );

    // One whole request, then idle on the kept-alive connection: one response, then a
    // silent close.
    let mut s = connect(gw.addr).unwrap();
    s.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let ending = read_until_close(&mut s, Duration::from_secs(5));
    let Ending::Closed(bytes) = &ending else {
        panic!("an idle keep-alive connection closes: {ending:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // A whole request followed by half a head: the answer, then the 408.
    let mut s = connect(gw.addr).unwrap();
    s.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTT")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 408 Request Timeout\r\n"), "{text}");

    let metrics = Req::get("/.trueip/metrics").must_send(gw.addr).text();
    assert!(
        metrics.contains("trueip_client_errors_total{reason=\"header_timeout\"} 2"),
        "{metrics}"
    );
}

/// Over TLS (hyper's path): half a head after the handshake gets the 408 inside the TLS
/// session; a handshake followed by nothing ends without a response.
#[test]
fn a_slow_head_over_tls_gets_408() {
    let dir = test_dir("head_timeout_tls");
    let Some(_) = pki::pki(&dir) else { return };
    pki::leaf(&dir, "leaf", "DNS:localhost,IP:127.0.0.1");
    let listen = free_addr();
    let d = dir.display();
    let config = format!(
        "{LIMITS}\n[[listen]]\naddress = \"{listen}\"\ntls = {{ cert = \"{d}/leaf.pem\", key = \"{d}/leaf.key\" }}\n"
    );
    let gw = Gateway::start_with_config(&dir, &config, &[listen], &[]);
    let send = |bytes: &[u8]| pki::s_client(listen, &["-quiet"], bytes);
    let text = send(b"GET /json HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}\n{}",
        gw.proc.log()
    );
    assert!(text.contains("\"request_header_timeout\""), "{text}");
    // A whole request, then half of the next: the answer, then the 408.
    let text = send(b"GET /json HTTP/1.1\r\nHost: localhost\r\n\r\nGET /json HT");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
    // Nothing after the handshake: no response.
    let text = send(b"");
    assert_eq!(text, "", "{}", gw.proc.log());
}
