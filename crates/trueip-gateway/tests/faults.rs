//! Faults on both sides of the gateway, each with the answer it must give — a status or a
//! close, within a deadline — and the gateway still serving afterwards.
//!
//! | fault | expected |
//! | --- | --- |
//! | upstream refuses the connection | 502 |
//! | upstream accepts and closes without answering | 502 |
//! | upstream slower than `upstream.response_timeout` | 504, at about the timeout |
//! | upstream resets in the middle of the body | the client's connection is cut: never a complete-looking body |
//! | garbage bytes instead of HTTP | 400 or close |
//! | one 64 KiB header, or 64 KiB in 256 headers | 431 |
//! | 1,000 idle connections (fewer if `ulimit -n` is low) | a new client is still served; the idle ones are closed after `idle_timeout` |
//! | a client sending one byte a second | closed (408 or close) at `header_read_timeout`, others served meanwhile |
//! | a keep-alive connection silent after its requests | closed at `header_read_timeout`, counted from its last response |

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Short timeouts so every fault resolves in seconds.
const TOML: &str = "\
[upstream]
connect_timeout = \"1s\"
response_timeout = \"1s\"
body_timeout = \"1s\"

[limits]
header_read_timeout = \"2s\"
idle_timeout = \"3s\"
";
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

fn start(name: &str, upstream: &str) -> Gateway {
    let dir = test_dir(&format!("faults/{name}"));
    Gateway::start_with_toml(&dir, free_addr(), TOML, &["--upstream", upstream])
}

#[test]
fn upstream_refused_is_502() {
    // Nothing listens there: the port was free a moment ago.
    let gw = start("refused", &format!("http://{}", free_addr()));
    let t = Instant::now();
    let resp = Req::get("/").must_send(gw.addr);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    assert_healthy(gw.addr, "an upstream that refuses");
}

#[test]
fn upstream_closing_without_answer_is_502() {
    let up = Upstream::start(Behavior::CloseImmediately);
    let gw = start("closes", &up.url());
    let resp = Req::get("/").must_send(gw.addr);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_healthy(gw.addr, "an upstream that closes at once");
}

#[test]
fn slow_upstream_is_504_at_the_timeout() {
    let up = Upstream::start(Behavior::Delay(Duration::from_secs(4)));
    let gw = start("slow", &up.url());
    let t = Instant::now();
    let resp = Req::get("/").must_send(gw.addr);
    let took = t.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "504 after {took:?}, the response timeout is 1s"
    );
    assert_healthy(gw.addr, "a slow upstream");
}

/// A 504 leaves its kept-alive connection held to every timeout: a second request on it
/// is answered 504 at `response_timeout` too, and silence after it closes at
/// `header_read_timeout`. On the lean path the deadline's timer, having fired for the
/// first 504, timed nothing after it: the second request waited for the upstream (200
/// after 4 s), and a silent connection stayed open for good, out of every timeout.
#[test]
fn a_connection_that_got_a_504_is_still_held_to_its_timeouts() {
    for lean in [true, false] {
        let up = Upstream::start(Behavior::Delay(Duration::from_secs(4)));
        let dir = test_dir(&format!("faults/after_504_lean_{lean}"));
        let toml = format!("{TOML}lean_http1 = {lean}\n");
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &["--upstream", &up.url()]);
        let mut s = connect(gw.addr).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        for n in 1..=2 {
            let t = Instant::now();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let resp = read_response(&mut r, "GET").unwrap();
            let took = t.elapsed();
            assert_eq!(resp.status, 504, "lean {lean}, request {n}: {}", resp.text());
            assert!(took < Duration::from_secs(3), "lean {lean}, request {n}: 504 after {took:?}");
        }
        let t = Instant::now();
        let ending = read_until_close(&mut s, Duration::from_secs(8));
        let took = t.elapsed();
        assert!(ending.is_closed(), "lean {lean}: a silent connection stayed open after a 504");
        assert!(
            took < HEADER_READ_TIMEOUT + Duration::from_secs(1),
            "lean {lean}: closed {took:?} after the 504, header_read_timeout is 2 s"
        );
    }
}

#[test]
fn upstream_reset_mid_body_cuts_the_client_off() {
    let up = Upstream::start(Behavior::ResetMidBody);
    let gw = start("reset_mid_body", &up.url());
    // A request body the upstream never reads, so its close becomes a reset.
    let req = Req::post("/download", vec![b'r'; 64 * 1024]);
    let ending = exchange(gw.addr, &req.to_bytes(), Duration::from_secs(8));
    assert!(ending.is_closed(), "the client's connection stayed open after the upstream reset");
    let bytes = ending.bytes();
    // Either a 502 before any byte of the body, or the 200's head and part of its body, cut.
    match ending.status() {
        Some(502) => {}
        Some(200) => {
            let head_end =
                bytes.windows(4).position(|w| w == b"\r\n\r\n").map_or(bytes.len(), |p| p + 4);
            let body = bytes.len() - head_end;
            assert!(
                body < 1_048_576,
                "the client got a complete 1 MiB body the upstream never sent"
            );
            let text = String::from_utf8_lossy(bytes.get(..head_end).unwrap_or_default());
            // A chunked response must not end with the terminating zero chunk.
            assert!(
                !(text.to_ascii_lowercase().contains("transfer-encoding: chunked")
                    && bytes.ends_with(b"\r\n0\r\n\r\n")),
                "a cut body was closed with a clean last chunk"
            );
        }
        other => panic!(
            "unexpected answer {other:?}: {:?}",
            String::from_utf8_lossy(bytes.get(..bytes.len().min(300)).unwrap_or_default())
        ),
    }
    assert_healthy(gw.addr, "an upstream reset mid-body");
}

#[test]
fn garbage_instead_of_http_is_400_or_close() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("garbage", &up.url());
    let garbage: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    // A TLS ClientHello on the plain port, binary noise, and a request line of noise.
    let tls_hello: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03];
    for (what, bytes) in [
        ("TLS ClientHello", tls_hello.to_vec()),
        ("binary noise", garbage),
        ("bad request line", b"GET\x00/\x7f HTTP/9.9\r\n\r\n".to_vec()),
        ("bare LF headers with NUL", b"GET / HTTP/1.1\nHost: a\x00b\n\n".to_vec()),
    ] {
        let ending = exchange(gw.addr, &bytes, Duration::from_secs(5));
        assert!(ending.is_closed(), "{what}: connection left open");
        if let Some(status) = ending.status() {
            assert_eq!(status, 400, "{what}: {:?}", String::from_utf8_lossy(ending.bytes()));
        }
    }
    assert!(up.requests().is_empty(), "garbage reached the upstream: {:#?}", up.requests());
    assert_healthy(gw.addr, "garbage bytes");
}

#[test]
fn headers_of_64_kib_are_431() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("big_headers", &up.url());
    let big = "a".repeat(64 * 1024);
    let resp = Req::get("/").header("X-Big", &big).must_send(gw.addr);
    assert_eq!(resp.status, 431, "one 64 KiB header");

    let mut many = Req::get("/");
    let value = "b".repeat(250);
    for i in 0..256 {
        many = many.header(&format!("X-Many-{i}"), &value);
    }
    let resp = many.must_send(gw.addr);
    assert_eq!(resp.status, 431, "64 KiB in 256 headers");

    assert!(up.requests().is_empty(), "an oversized request reached the upstream");
    // A large but legal header block still passes.
    let resp = Req::get("/").header("X-Fine", &"c".repeat(16 * 1024)).must_send(gw.addr);
    assert_eq!(resp.status, 200, "a 16 KiB header is under the default limit");
    assert_eq!(up.last().one("X-Fine").len(), 16 * 1024);
}

#[test]
fn a_thousand_idle_connections_do_not_block_a_new_client() {
    let up = Upstream::start(Behavior::Echo);
    // A longer idle timeout than the other tests: opening 1,000 connections may take seconds
    // on a loaded machine, and they must all be open at once for the check to mean something.
    let idle_timeout = Duration::from_secs(8);
    let toml = format!("{TOML}idle_timeout = \"{}s\"\n", idle_timeout.as_secs())
        .replace("idle_timeout = \"3s\"\n", "");
    let dir = test_dir("faults/idle_connections");
    let url = up.url();
    let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &["--upstream", &url]);
    // The test and the gateway each hold one descriptor per connection, under the inherited
    // soft limit; keep 150 spare for everything else (nothing here raises the limit).
    let limit = open_file_limit();
    let n = 1000usize.min(limit.saturating_sub(150) as usize);
    assert!(n >= 100, "ulimit -n is {limit}: too low for this test to mean anything");
    let opened_at = Instant::now();
    let mut idle: Vec<TcpStream> = Vec::with_capacity(n);
    for i in 0..n {
        match connect(gw.addr) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {i} of {n} refused: {e}"),
        }
    }
    let opened_in = opened_at.elapsed();
    assert!(
        opened_in < idle_timeout,
        "opening {n} connections took {opened_in:?}, longer than the idle timeout"
    );
    // Connections still in the kernel's accept queue are not counted yet: poll, briefly.
    let count_open = || -> f64 {
        let resp = Req::get("/.trueip/metrics").must_send(gw.addr);
        resp.text()
            .lines()
            .find_map(|l| l.strip_prefix("trueip_connections_open "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let counted_by = Instant::now() + Duration::from_secs(3);
    let mut open = count_open();
    while open < n as f64 && Instant::now() < counted_by {
        std::thread::sleep(Duration::from_millis(50));
        open = count_open();
    }
    assert!(open >= n as f64, "the gateway counts {open} open connections, the test holds {n}");
    let resp = Req::get("/while-idle").must_send(gw.addr);
    assert_eq!(resp.status, 200, "a new client behind {n} idle connections");

    // Connections that never send a request are closed once idle_timeout has passed.
    let deadline = Instant::now() + idle_timeout + Duration::from_secs(3);
    let mut still_open = 0usize;
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        let ending = read_until_close(s, left.max(Duration::from_millis(1)));
        if !ending.is_closed() {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "{still_open} of {n} idle connections were still open {:?} after they were made (idle_timeout {idle_timeout:?})",
        opened_at.elapsed()
    );
    drop(idle);
    assert_healthy(gw.addr, "1,000 idle connections");
}

#[test]
fn a_client_sending_one_byte_a_second_is_cut_off() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("slow_client", &up.url());
    let mut slow = connect(gw.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let request = b"GET /slow HTTP/1.1\r\nHost: trueip.test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut sent = 0usize;
    let mut closed_after = None;
    let mut answer = Vec::new();
    for &byte in request.iter().take(15) {
        if slow.write_all(&[byte]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        sent += 1;
        // Meanwhile, everyone else is served.
        let resp = Req::get("/meanwhile").must_send(gw.addr);
        assert_eq!(resp.status, 200);
        let mut buf = [0u8; 1024];
        let step = Instant::now();
        let mut gone = false;
        while step.elapsed() < Duration::from_secs(1) {
            match slow.read(&mut buf) {
                Ok(0) => gone = true,
                Ok(n) => answer.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => gone = true,
            }
            if gone {
                break;
            }
        }
        if gone {
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "a client sending one byte a second was still connected after {sent} bytes ({:?}); header_read_timeout is {HEADER_READ_TIMEOUT:?}",
            start.elapsed()
        )
    });
    assert!(
        closed_after <= HEADER_READ_TIMEOUT + Duration::from_secs(2),
        "cut off only after {closed_after:?} and {sent} bytes"
    );
    if !answer.is_empty() {
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 400"),
            "the slow client got {text:?}"
        );
    }
    assert!(
        up.requests().iter().all(|s| s.path != "/slow"),
        "the slow request reached the upstream"
    );
    assert_healthy(gw.addr, "a slow client");
}

/// A keep-alive connection that goes quiet after a few requests is closed once
/// `header_read_timeout` has passed since its last response — not before, and not never.
/// (The lean path times that wait from the last response's clock reading, and polls its
/// timers only when they fire: this holds both to the deadline.) Both the whoami page and
/// a proxied upstream are served on the lean path.
#[test]
fn a_keep_alive_connection_left_silent_is_closed_at_the_header_timeout() {
    let up = Upstream::start(Behavior::Echo);
    for (name, upstream) in [("silent_whoami", None), ("silent_proxy", Some(up.url()))] {
        let dir = test_dir(&format!("faults/{name}"));
        let args: Vec<&str> = upstream.iter().flat_map(|u| ["--upstream", u.as_str()]).collect();
        let gw = Gateway::start_with_toml(&dir, free_addr(), TOML, &args);
        let mut conn = connect(gw.addr).expect("connect");
        let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
        for i in 0..3 {
            // Keep-alive, and plain enough for the lean path (no `Connection` line).
            conn.write_all(
                format!("GET /json?{i} HTTP/1.1\r\nHost: trueip.test\r\n\r\n").as_bytes(),
            )
            .expect("write");
            let resp = read_response(&mut reader, "GET").expect("a response");
            assert_eq!(resp.status, 200, "{name}: request {i}: {}", resp.text());
        }
        let quiet_since = Instant::now();
        let ending = read_until_close(&mut conn, HEADER_READ_TIMEOUT + Duration::from_secs(3));
        let closed_after = quiet_since.elapsed();
        assert!(
            matches!(ending, Ending::Closed(ref b) | Ending::Reset(ref b) if b.is_empty()),
            "{name}: a silent keep-alive connection was not closed within {:?}: {ending:?}",
            HEADER_READ_TIMEOUT + Duration::from_secs(3)
        );
        assert!(
            closed_after >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
            "{name}: closed after only {closed_after:?}; header_read_timeout is {HEADER_READ_TIMEOUT:?}"
        );
        assert_healthy(gw.addr, "a silent keep-alive connection");
    }
}
