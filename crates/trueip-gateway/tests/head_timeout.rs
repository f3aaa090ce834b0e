//! A request head that does not arrive within `limits.header_read_timeout` (a slowloris
//! client) gets `408 Request Timeout` and the connection closes; a connection that sends
//! nothing, new or kept alive after a response, closes silently, as nginx's
//! `ngx_http_wait_request_handler` and `ngx_http_keepalive_handler` close a connection
//! whose read timed out with no request begun. The same on both wire paths (the lean
//! one and hyper's), and over TLS. The first head is due `header_read_timeout` after the
//! connection opened however it is read: HTTP/2's preface, and a head that begins like
//! it, get no second timeout when hyper takes the connection over.

mod common;
mod pki;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

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
    let ending =
        exchange(gw.addr, b"GET /json HTTP/1.1\r\nHost: x\r\nX-Slow: ", Duration::from_secs(5));
    let Ending::Closed(bytes) = &ending else {
        panic!("the connection closes after the 408: {ending:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.contains("\"request_header_timeout\""), "{text}");

    // Nothing at all: closed without a byte.
    let ending = exchange(gw.addr, b"", Duration::from_secs(5));
    assert!(matches!(&ending, Ending::Closed(b) if b.is_empty()), "{ending:?}");

    // One whole request, then idle on the kept-alive connection: one response, then a
    // silent close.
    let mut s = connect(gw.addr).unwrap();
    s.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let ending = read_until_close(&mut s, Duration::from_secs(5));
    let Ending::Closed(bytes) = &ending else {
        panic!("an idle keep-alive connection closes: {ending:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // A whole request followed by half a head: the answer, then the 408.
    let mut s = connect(gw.addr).unwrap();
    s.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTT").unwrap();
    let mut got = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 408 Request Timeout\r\n"), "{text}");

    let metrics = metrics(gw.addr);
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
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{text}\n{}", gw.proc.log());
    assert!(text.contains("\"request_header_timeout\""), "{text}");
    // A whole request, then half of the next: the answer, then the 408.
    let text = send(b"GET /json HTTP/1.1\r\nHost: localhost\r\n\r\nGET /json HT");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
    // Nothing after the handshake: no response.
    let text = send(b"");
    assert_eq!(text, "", "{}", gw.proc.log());
}

/// HTTP/2's preface, trickled: the lean path reads `PRI * HTTP/2.0\r\n\r\n` (a whole
/// "head") just before the timeout and hands the connection to hyper, which reads the
/// rest of the preface. One timeout from the start, not one for each.
#[test]
fn a_trickled_http2_preface_is_held_to_one_header_read_timeout() {
    trickled(
        "head_timeout_preface_lean",
        "lean_http1 = true\n",
        [b"PRI * HTTP/2.0\r\n".as_slice(), b"\r\n", b"S", b"M", b"\r", b"\n", b"\r"],
    );
}

/// A head that begins like HTTP/2's preface and turns out HTTP/1 late (`PRI * HTTP/1`):
/// hyper's own header timer, started when the preface could be told apart, no longer
/// gives it a second timeout.
#[test]
fn a_head_that_begins_like_the_preface_is_held_to_one_header_read_timeout() {
    trickled(
        "head_timeout_preface_hyper",
        "lean_http1 = false\n",
        [
            b"PRI * HTTP/".as_slice(),
            b"1.1\r\nHost: x\r\n",
            b"X-A: 1\r\n",
            b"X-B: 2\r\n",
            b"X-C: 3\r\n",
            b"X-D: 4\r\n",
            b"X-E: 5\r\n",
        ],
    );
}

/// Over TLS with ALPN `h2`, hyper's HTTP/2 server waited for the preface without a
/// deadline (only `idle_timeout`, 30 s here, ended such a connection): half a preface,
/// then nothing, is now closed after `header_read_timeout`, without an HTTP/1.1 answer.
#[test]
fn half_a_preface_after_alpn_h2_closes_after_header_read_timeout() {
    let dir = test_dir("head_timeout_alpn_h2");
    let Some(_) = pki::pki(&dir) else { return };
    pki::leaf(&dir, "leaf", "DNS:localhost,IP:127.0.0.1");
    let listen = free_addr();
    let d = dir.display();
    let config = format!(
        "[limits]\nheader_read_timeout = \"1s\"\nidle_timeout = \"30s\"\n\n[[listen]]\naddress = \"{listen}\"\ntls = {{ cert = \"{d}/leaf.pem\", key = \"{d}/leaf.key\" }}\n"
    );
    let gw = Gateway::start_with_config(&dir, &config, &[listen], &[]);
    let start = Instant::now();
    let text = pki::s_client(listen, &["-quiet", "-alpn", "h2"], b"PRI * HTTP/2.0\r\n\r\nSM");
    let closed_after = start.elapsed();
    assert_eq!(text, "", "{}", gw.proc.log());
    assert!(
        closed_after < Duration::from_secs(8),
        "closed after {closed_after:?}\n{}",
        gw.proc.log()
    );
    let metrics = pki::s_client(
        listen,
        &["-quiet"],
        b"GET /.trueip/metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("trueip_client_errors_total{reason=\"header_timeout\"} 1"),
        "{metrics}"
    );
}

/// Sends `parts[0]`, the next part just before `header_read_timeout` (2 s) has passed,
/// and the others 300 ms apart (past twice the timeout if nothing closes the
/// connection); the connection must close within the timeout and some slack.
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
fn trickled(name: &str, path: &str, parts: [&'static [u8]; 7]) {
    let dir = test_dir(name);
    let limits = "[limits]\nheader_read_timeout = \"2s\"\nidle_timeout = \"60s\"\n";
    let gw = Gateway::start_with_toml(&dir, free_addr(), &format!("{limits}{path}"), &[]);
    let mut s = connect(gw.addr).unwrap();
    let start = Instant::now();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for (i, part) in parts.iter().enumerate() {
            std::thread::sleep(match i {
                0 => Duration::ZERO,
                1 => Duration::from_millis(1800),
                _ => Duration::from_millis(300),
            });
            // Closed early: the point of the test.
            if writer.write_all(part).is_err() {
                return;
            }
        }
    });
    let ending = read_until_close(&mut s, Duration::from_secs(10));
    let closed_after = start.elapsed();
    sender.join().unwrap();
    let (Ending::Closed(bytes) | Ending::Reset(bytes)) = &ending else {
        panic!("{path}: still open after {closed_after:?}: {ending:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{path}: {text}");
    // Twice the timeout would be 4 s.
    assert!(
        closed_after > Duration::from_millis(1500) && closed_after < Duration::from_millis(3000),
        "{path}: closed after {closed_after:?}\n{}",
        gw.proc.log()
    );
}
