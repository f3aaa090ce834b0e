//! A request head that does not arrive within `limits.header_read_timeout` (a slowloris
//! client) gets `408 Request Timeout` and the connection closes; a connection that sends
//! nothing, new or kept alive after a response, closes silently, as nginx's
//! `ngx_http_wait_request_handler` and `ngx_http_keepalive_handler` close a connection
//! whose read timed out with no request begun.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const TOML: &str = "[limits]\nheader_read_timeout = \"300ms\"\nlean_http1 = true\n";

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_a_silent_close_on_the_lean_path() {
    let dir = test_dir("head_timeout_lean");
    let gw = Gateway::start_with_toml(&dir, free_addr(), TOML, &[]);

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
