//! Duplicate `Content-Length` lines (RFC 9110 §8.6, RFC 9112 §6.3), in requests and in
//! upstream responses, on every path: the lean HTTP/1.1 path, hyper's HTTP/1.1 path, an
//! HTTP/2 request through the bare exchange (no body) and through hyper's client (a
//! body). Lengths that agree (several lines, or a list in one line) reach the other side
//! as one line with one number; lengths that disagree never cross: a request is answered
//! 400 and nothing reaches the upstream, a response is answered 502.
//!
//! Two lines of one length are harmless only to a reader that merges them; a server
//! that refuses duplicates (Node's llhttp) or one that reads the list as text is handed
//! a message two parsers read apart, the ground request smuggling grows on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// Every request head the upstream read, in order.
type Heads = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 upstream that records each request head and answers by path.
struct Scripted {
    addr: SocketAddr,
    heads: Heads,
}

impl Scripted {
    fn start() -> Scripted {
        let heads: Heads = Arc::default();
        let all = heads.clone();
        let addr = serve_on_loopback(200, move |stream| serve(stream, &all));
        Scripted { addr, heads }
    }

    /// The heads of requests whose target contains `path`.
    fn heads_for(&self, path: &str) -> Vec<String> {
        let heads = self.heads.lock().map(|h| h.clone()).unwrap_or_default();
        heads.into_iter().filter(|h| h.lines().next().is_some_and(|l| l.contains(path))).collect()
    }
}

fn serve(mut stream: TcpStream, all: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        let head_len = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        // The first length (every request that reaches here has at most one, or the
        // test fails on its head): enough to find the next request.
        let length = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(str::to_owned))
            .and_then(|v| v.split(',').next().and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0usize);
        while buf.len() < head_len + length {
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_len + length);
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        if let Ok(mut a) = all.lock() {
            a.push(head);
        }
        let answer: &[u8] = if path.contains("/gzip-te") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        } else if path.contains("/odd-lead") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\t2\r\nok\r\n0\r\n\r\n"
        } else if path.contains("/odd-cr") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r5\r\nok\r\n0\r\n\r\n"
        } else if path.contains("/odd-trailers") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nConnection: close\r\nX-T: 1\r\n\r\n"
        } else if path.contains("/odd-trailer-line") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: a\rb\r\n\r\n"
        } else if path.contains("/te-cl") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        } else if path.contains("/dup") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
        } else if path.contains("/list") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"
        } else if path.contains("/differ-list") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok?"
        } else if path.contains("/differ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok?"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        if stream.write_all(answer).and(stream.flush()).is_err() {
            return;
        }
    }
}

/// A gateway in front of `upstream`, one worker.
fn gateway(name: &str, upstream: SocketAddr) -> Gateway {
    Gateway::one_worker(&test_dir(name), upstream, "")
}

/// The `content-length` lines of a head (HTTP/1.1 text), their values as written.
fn lengths(head: &str) -> Vec<String> {
    head.split("\r\n")
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().to_owned())
        })
        .collect()
}

/// The status, the response head and the body of one HTTP/1.1 exchange.
fn http1(gw: SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    let got = exchange(gw, bytes, Duration::from_secs(5)).bytes().to_vec();
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// One HTTP/2 request (h2c prior knowledge): its status, its `content-length` values, its
/// body; or why it failed.
fn h2(
    gw: SocketAddr,
    method: &str,
    path: &str,
    lines: &[(&str, &str)],
    body: Option<&'static str>,
) -> Result<(u16, Vec<String>, String), String> {
    let r = h2_response(gw, method, uri("shop.example", path), lines, body)?;
    let lengths = r
        .headers
        .get_all("content-length")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Ok((r.status, lengths, r.body))
}

/// Requests whose lengths agree reach the upstream with one `Content-Length` line holding
/// one number, on every path; requests whose lengths disagree are refused with 400 and
/// never reach it.
#[test]
fn request_lengths_reach_the_upstream_as_one_line_or_not_at_all() {
    let up = Scripted::start();
    let gw = gateway("content_length/requests", up.addr);
    // HTTP/1.1: a second line sends the lean path's request to hyper; a body goes there too.
    let agree: [(&str, &[u8]); 3] = [
        (
            "/r-h1-zero",
            b"GET /r-h1-zero HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        (
            "/r-h1-body",
            b"POST /r-h1-body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        ),
        (
            "/r-h1-one",
            b"GET /r-h1-one HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (path, bytes) in agree {
        let (status, head, _) = http1(gw.addr, bytes);
        assert_eq!(status, 200, "{path}: {head}");
    }
    // HTTP/2: ending on its headers (the bare exchange), and with a body (hyper's client).
    for (path, method, lines, body) in [
        ("/r-h2-zero", "GET", vec![("content-length", "0"), ("content-length", "0")], None),
        ("/r-h2-body", "POST", vec![("content-length", "3"), ("content-length", "3")], Some("abc")),
    ] {
        let got = h2(gw.addr, method, path, &lines, body);
        assert!(matches!(got, Ok((200, _, _))), "{path}: {got:?}");
    }
    // A list of one length in one line: refused (hyper's HTTP/1.1 server, HTTP/2), or
    // passed on as one number, never as the list.
    let (status, head, _) = http1(
        gw.addr,
        b"POST /r-list-h1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nConnection: close\r\n\r\nabc",
    );
    assert!(status == 400 || status == 200, "{head}");
    let got = h2(gw.addr, "GET", "/r-list-h2", &[("content-length", "0, 0")], None);
    assert!(got.is_err() || matches!(got, Ok((200, _, _))), "{got:?}");
    for head in up.heads_for("/r-list") {
        assert!(lengths(&head).len() <= 1, "{head:?}");
        assert!(!lengths(&head).iter().any(|l| l.contains(',')), "{head:?}");
    }
    for path in ["/r-h1-zero", "/r-h1-body", "/r-h1-one", "/r-h2-zero", "/r-h2-body"] {
        let heads = up.heads_for(path);
        assert_eq!(heads.len(), 1, "{path}: {heads:?}");
        let want = if path.contains("body") { "3" } else { "0" };
        let seen = lengths(&heads[0]);
        // At most one line, and one number in it (a request of no body may lose its 0).
        assert!(
            seen == [want] || (want == "0" && seen.is_empty()),
            "{path}: the upstream read {seen:?} in {:?}",
            heads[0]
        );
    }
    // Lengths that disagree: refused, the upstream never asked.
    let differ: [&[u8]; 3] = [
        b"POST /r-differ-lines HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
        b"POST /r-differ-list HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\nConnection: close\r\n\r\nabcd",
        b"GET /r-differ-zero HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
    ];
    for bytes in differ {
        let (status, head, _) = http1(gw.addr, bytes);
        assert_eq!(status, 400, "{}: {head}", String::from_utf8_lossy(bytes));
    }
    assert!(up.heads_for("/r-differ").is_empty());
    assert_healthy(gw.addr, "request lengths");
}

/// An upstream response whose lengths agree reaches the client with one `Content-Length`
/// line holding one number, on every path; one whose lengths disagree is a 502, its body
/// never passed on.
#[test]
fn response_lengths_reach_the_client_as_one_line_or_a_502() {
    let up = Scripted::start();
    let gw = gateway("content_length/responses", up.addr);
    for path in ["/dup", "/list"] {
        // HTTP/1.1: the lean path, and hyper's (an underscore spelling sends it there).
        for extra in ["", "X_Hyper: 1\r\n"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
            let (status, head, body) = http1(gw.addr, req.as_bytes());
            assert_eq!((status, body.as_str()), (200, "ok"), "{path} {extra:?}: {head}");
            assert_eq!(lengths(&head), ["2"], "{path} {extra:?}: {head}");
        }
        // HTTP/2: the bare exchange, and hyper's client.
        for (method, body) in [("GET", None), ("POST", Some("x"))] {
            let lines = [("content-length", if body.is_some() { "1" } else { "0" })];
            let got = h2(gw.addr, method, path, &lines, body);
            match got {
                Ok((200, lengths, text)) => {
                    assert_eq!(text, "ok", "h2 {method} {path}");
                    assert_eq!(lengths, ["2"], "h2 {method} {path}");
                }
                other => panic!("h2 {method} {path}: {other:?}"),
            }
        }
    }
    for path in ["/differ", "/differ-list"] {
        for extra in ["", "X_Hyper: 1\r\n"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
            let (status, head, body) = http1(gw.addr, req.as_bytes());
            assert_eq!(status, 502, "{path} {extra:?}: {head}");
            assert!(!body.contains("ok?"), "{path} {extra:?}: {body}");
        }
        for (method, body) in [("GET", None), ("POST", Some("x"))] {
            let lines = [("content-length", if body.is_some() { "1" } else { "0" })];
            let got = h2(gw.addr, method, path, &lines, body);
            assert!(
                matches!(&got, Ok((502, _, text)) if !text.contains("ok?")),
                "h2 {method} {path}: {got:?}"
            );
        }
    }
    assert_healthy(gw.addr, "response lengths");
}

/// An upstream response with both framings: the coding frames it (RFC 9112 §6.3) and the
/// length is not passed on, on every path. Hyper's client path passed `Content-Length: 2`
/// beside a chunked body of five bytes: an HTTP/1.1 client was told the body was two
/// bytes long and got `he` as the whole answer, an HTTP/2 one a reset stream, while the
/// bare exchanges sent `hello`.
#[test]
fn a_response_with_both_framings_goes_on_by_its_coding_without_the_length() {
    let up = Scripted::start();
    let gw = gateway("content_length/te_cl", up.addr);
    for extra in ["", "X_Hyper: 1\r\n"] {
        let req = format!("GET /te-cl HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
        let (status, head, body) = http1(gw.addr, req.as_bytes());
        assert_eq!(status, 200, "{extra:?}: {head}");
        assert!(lengths(&head).is_empty(), "{extra:?}: {head}");
        assert_eq!(body, "5\r\nhello\r\n0\r\n\r\n", "{extra:?}: {head}");
    }
    for (method, body) in [("GET", None), ("POST", Some("x"))] {
        let lines = [("content-length", if body.is_some() { "1" } else { "0" })];
        let got = h2(gw.addr, method, "/te-cl", &lines, body);
        assert!(
            matches!(&got, Ok((200, l, text)) if l.is_empty() && text == "hello"),
            "h2 {method}: {got:?}"
        );
    }
}

/// A chunked body whose framing lines a reader could read apart from the gateway (a size
/// after a tab, a bare CR in an extension, trailer lines) never reaches an HTTP/1.1 client
/// as it came, on either path. The lean path passes a chunked body's bytes on, and passed
/// these where hyper's path refused them or dropped the trailers: a CDN in front that reads
/// such a line otherwise ends the body elsewhere, and takes the rest for the next response.
#[test]
fn odd_chunked_framing_never_reaches_the_client_as_it_came() {
    let up = Scripted::start();
    let gw = gateway("content_length/odd_chunks", up.addr);
    for extra in ["", "X_Hyper: 1\r\n"] {
        for (path, odd) in
            [("/odd-lead", "\t2"), ("/odd-cr", ";x\r5"), ("/odd-trailer-line", "a\rb")]
        {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
            let (_, head, body) = http1(gw.addr, req.as_bytes());
            assert!(!body.contains(odd), "{path} {extra:?}: {head}\r\n\r\n{body:?}");
        }
        let req =
            format!("GET /odd-trailers HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
        let (status, head, body) = http1(gw.addr, req.as_bytes());
        assert_eq!(status, 200, "{extra:?}: {head}");
        assert_eq!(body, "2\r\nok\r\n0\r\n\r\n", "{extra:?}: the trailers stay with the upstream");
    }
    assert_healthy(gw.addr, "odd chunked framing");
}

/// An upstream answer with a transfer coding but `chunked` is a 502 on the HTTP/2 paths
/// too (the bare exchange and hyper's client), where no coding can be passed on at all:
/// both took `chunked` off and sent the gzip bytes as the body, unlabelled.
/// (`tests/differential.rs` holds the HTTP/1.1 paths to the same.)
#[test]
fn a_transfer_coding_but_chunked_is_a_502_over_http2() {
    let up = Scripted::start();
    let gw = gateway("content_length/gzip_te", up.addr);
    for (method, body) in [("GET", None), ("POST", Some("x"))] {
        let lines = [("content-length", if body.is_some() { "1" } else { "0" })];
        let got = h2(gw.addr, method, "/gzip-te", &lines, body);
        assert!(
            matches!(&got, Ok((502, _, text)) if !text.contains("hello")),
            "h2 {method}: {got:?}"
        );
    }
    assert_healthy(gw.addr, "a transfer coding but chunked");
}
