//! A review of the HTTP/2 request path (the header rules on hyper's `HeaderMap`, the
//! bare exchange and its response, `forward`'s split into `prepare` and the exchange),
//! with the HTTP/1.1 paths beside it where the same trick applies: what an attacker can
//! make reach the upstream, and what a broken upstream can make the client believe.
//!
//! The upstream is a scripted HTTP/1.1 server that records every byte each connection
//! brings, so a request smuggled inside another (a tunnel's data, a body, trailers) shows
//! up whether or not it parses as one.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// What a scripted connection read, in order.
type Bytes = Arc<Mutex<Vec<Vec<u8>>>>;

struct Scripted {
    addr: SocketAddr,
    read: Bytes,
}

impl Scripted {
    fn start() -> Scripted {
        let read: Bytes = Arc::default();
        let all = read.clone();
        let addr = serve_on_loopback(200, move |stream| serve(stream, &all));
        Scripted { addr, read }
    }

    /// Every byte every connection brought, as text.
    fn everything(&self) -> String {
        let all = self.read.lock().map(|r| r.concat()).unwrap_or_default();
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// Where the body after a head of `head_len` bytes ends in `buf`, if it is all there.
fn body_end(buf: &[u8], head_len: usize) -> Option<usize> {
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    if head.contains("\r\ntransfer-encoding:") {
        // The last chunk, then trailers up to an empty line.
        let rest = &buf[head_len..];
        let last = if rest.starts_with(b"0\r\n") { 0 } else { find(rest, b"\r\n0\r\n")? + 2 };
        let end = find(&rest[last..], b"\r\n\r\n").map(|i| last + i + 4);
        let end = match end {
            Some(e) => e,
            None if rest[last..].starts_with(b"0\r\n\r\n") => last + 5,
            None => return None,
        };
        return Some(head_len + end);
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_len + length).then_some(head_len + length)
}

fn serve(mut stream: TcpStream, all: &Mutex<Vec<Vec<u8>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    let mut idle = 0;
    loop {
        let Some(head_len) = find(&buf, b"\r\n\r\n").map(|i| i + 4) else {
            match stream.read(&mut tmp) {
                Ok(0) => return,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    if let Ok(mut a) = all.lock() {
                        a.push(tmp[..n].to_vec());
                    }
                    continue;
                }
                Err(_) if idle < 30 => {
                    idle += 1;
                    continue;
                }
                Err(_) => return,
            }
        };
        let Some(end) = body_end(&buf, head_len) else {
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    if let Ok(mut a) = all.lock() {
                        a.push(tmp[..n].to_vec());
                    }
                    continue;
                }
            }
        };
        let line = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        buf.drain(..end);
        let mut words = line.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let answer: &[u8] = match (method.as_str(), path.as_str()) {
            // A tunnel, as a forward proxy would open one: whatever comes next is data.
            ("CONNECT", _) => b"HTTP/1.1 200 Connection Established\r\n\r\n",
            (_, "/cut-chunked") => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                );
                thread::sleep(Duration::from_millis(50));
                return;
            }
            (_, "/cut-length") => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
                thread::sleep(Duration::from_millis(50));
                return;
            }
            // Six tokens on two lines: the third, fifth and sixth name lines of the
            // response, which stay with the upstream connection.
            (_, "/tokens") => {
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, a1, A2, a3\r\nConnection: x-t5 ,X-T6\r\n\
                  X-T5: gone\r\nx-t6: gone\r\na2: gone\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if stream.write_all(answer).and(stream.flush()).is_err() {
            return;
        }
    }
}

/// A gateway in front of `upstream`, trusting nobody (every client address is the
/// client's to forge), one worker.
fn gateway(name: &str, upstream: SocketAddr) -> Gateway {
    Gateway::one_worker(&test_dir(name), upstream, "")
}

/// Sends `bytes` on a new HTTP/1.1 connection; everything that comes back until it closes.
fn http1(gw: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    exchange(gw, bytes, Duration::from_secs(5)).bytes().to_vec()
}

/// An upstream body cut short reaches the client as a failure on every path, never as a
/// whole body: a chunked one (nothing else says how long it was) and a sized one. HTTP/2
/// gets the stream reset rather than ended; HTTP/1.1 gets no last chunk. The bare
/// exchange's streamed body is boxed (`Kind::Raw`); hyper's client streams its own.
#[test]
fn a_body_cut_short_is_never_presented_whole() {
    let up = Scripted::start();
    let gw = gateway("h2_review/cut", up.addr);
    for path in ["/cut-chunked", "/cut-length"] {
        // Ending on the headers: the bare exchange; with a body: hyper's client.
        for (method, body) in [("GET", None), ("POST", Some("x"))] {
            let lines = [("content-length", if body.is_some() { "1" } else { "0" })];
            let got = h2_exchange(gw.addr, method, uri("shop.example", path), &lines, body);
            // The status came, then the body failed.
            assert!(
                got.as_ref().is_err_and(|e| e.starts_with("200 after")),
                "h2 {method} {path}: a cut body arrived as whole: {got:?}"
            );
        }
        // HTTP/1.1: the lean path, and hyper's (an underscore spelling sends it there).
        for extra in ["", "X_Hyper: 1\r\n"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
            let got = http1(gw.addr, req.as_bytes());
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 200"), "{path} {extra:?}: {text}");
            assert!(
                !text.ends_with("0\r\n\r\n"),
                "HTTP/1.1 {path} {extra:?}: a cut body ended as whole: {text}"
            );
        }
    }
    assert_healthy(gw.addr, "cut bodies");
}

/// A response's `Connection` lines name the lines that stay with the upstream
/// connection, however many tokens they hold: past the four the bare exchange keeps in
/// place (`raw::Tokens`), on a second `Connection` line, in another case, with spaces
/// around the comma. Through every path.
#[test]
fn every_response_line_connection_names_stays_with_the_upstream() {
    let up = Scripted::start();
    let gw = gateway("h2_review/tokens", up.addr);
    let check = |way: &str, head: &str| {
        let head = head.to_ascii_lowercase();
        for gone in ["x-t5:", "x-t6:", "a2:", "connection:", "keep-alive:"] {
            assert!(!head.contains(gone), "{way}: {gone} came through:\n{head}");
        }
        assert!(head.contains("x-kept: yes"), "{way}:\n{head}");
    };
    for (method, body) in [("GET", None), ("POST", Some("x"))] {
        let got = block_on(async move {
            let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let (client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let mut client = client.ready().await.unwrap();
            let req = http::Request::builder()
                .method(method)
                .uri(uri("shop.example", "/tokens"))
                .body(())
                .unwrap();
            let (resp, mut send) = client.send_request(req, body.is_none()).unwrap();
            if let Some(b) = body {
                send.send_data(bytes::Bytes::from_static(b.as_bytes()), true).unwrap();
            }
            let resp = resp.await.unwrap();
            format!("{:?}", resp.headers()).replace("\": \"", ": ").replace('"', "")
        });
        check(&format!("h2 {method}"), &got);
    }
    for extra in ["", "X_Hyper: 1\r\n"] {
        let req = format!("GET /tokens HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{extra}\r\n");
        let got = http1(gw.addr, req.as_bytes());
        let text = String::from_utf8_lossy(&got);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        // The gateway's own `Connection: close` for this client is not the upstream's.
        let head = head.replace("connection: close\r\n", "").replace("Connection: close\r\n", "");
        check(&format!("HTTP/1.1 {extra:?}"), &head);
    }
}

/// A forged client address in a tunnel's data: a CONNECT, over HTTP/2 (with and
/// without a length, and as an extended CONNECT for websocket) or HTTP/1.1, answered
/// `200` by the upstream, must not turn the client's bytes into a request the upstream
/// reads past the gateway's header rules.
#[test]
fn a_connect_carries_no_request_past_the_gateway() {
    let up = Scripted::start();
    let gw = gateway("h2_review/connect", up.addr);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
    for (length, protocol) in
        [(None, None), (Some("0"), None), (Some("57"), None), (None, Some("websocket"))]
    {
        let r = block_on(async move {
            let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let (client, conn) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut client = client.ready().await.map_err(|e| e.to_string())?;
            let mut req = http::Request::builder().method("CONNECT");
            req = match protocol {
                None => req.uri("shop.example:443"),
                Some(p) => {
                    req.uri(uri("shop.example", "/chat")).extension(h2::ext::Protocol::from(p))
                }
            };
            if let Some(l) = length {
                req = req.header("content-length", l);
            }
            req = req.header("x-real-ip", "6.6.6.7");
            let (resp, mut send) =
                client.send_request(req.body(()).unwrap(), false).map_err(|e| e.to_string())?;
            let _ = send.send_data(bytes::Bytes::from_static(smuggled.as_bytes()), false);
            let got = tokio::time::timeout(Duration::from_secs(5), resp).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = send.send_data(bytes::Bytes::from_static(smuggled.as_bytes()), true);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, String>(format!("{got:?}"))
        });
        // Refused (a length, an extended CONNECT), or answered and then a dead end.
        assert!(r.is_ok(), "{length:?} {protocol:?}: {r:?}");
    }
    let http1_connect = format!(
        "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\nX-Real-IP: 6.6.6.7\r\n\r\n{smuggled}"
    );
    let _ = http1(gw.addr, http1_connect.as_bytes());
    thread::sleep(Duration::from_millis(500));
    let seen = up.everything();
    assert!(!seen.contains("smuggled"), "a tunnel's data reached the upstream:\n{seen}");
    assert!(!seen.contains("6.6.6."), "a forged address reached the upstream:\n{seen}");
    assert_healthy(gw.addr, "CONNECT");
}

/// Trailers of a request body are the client's too: a forged client address in them
/// never reaches the upstream, over HTTP/2 or in HTTP/1.1's chunked body (which hyper's
/// path reads), where an app that folds trailers into its headers would read it.
#[test]
fn request_trailers_carry_no_client_address() {
    let up = Scripted::start();
    let gw = gateway("h2_review/trailers", up.addr);
    let status = block_on(async move {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(uri("shop.example", "/t"))
            .header("trailer", "x-real-ip")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        send.send_data(bytes::Bytes::from_static(b"hello"), false).unwrap();
        let mut trailers = http::HeaderMap::new();
        for name in ["x-real-ip", "x-forwarded-for", "forwarded", "x-client-ip"] {
            let v = if name == "forwarded" { "for=6.6.6.6" } else { "6.6.6.6" };
            trailers.insert(name, v.parse().unwrap());
        }
        send.send_trailers(trailers).unwrap();
        resp.await.map(|r| r.status().as_u16()).unwrap_or(0)
    });
    assert_eq!(status, 200);
    let chunked = "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Real-IP, X-Forwarded-For\r\n\
                   Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let got = http1(gw.addr, chunked.as_bytes());
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    let seen = up.everything();
    assert_eq!(seen.matches("hello").count(), 2, "{seen}");
    assert!(
        !seen.contains("6.6.6.6"),
        "a forged address in trailers reached the upstream:\n{seen}"
    );
}

/// An HTTP/2 request names its host twice, `:authority` and a `host` line that differs:
/// the upstream receives one `Host`, the one the gateway checked and reported in
/// `X-Forwarded-Host` and `Forwarded`, on the bare exchange and through hyper's client.
/// With two `host` lines the request is refused (400), as over HTTP/1.1.
#[test]
fn an_h2_host_line_beside_the_authority_does_not_reach_the_upstream() {
    let up = Scripted::start();
    let gw = gateway("h2_review/authority", up.addr);
    for (method, body) in [("GET", None), ("POST", Some("x"))] {
        let one = [("host", "evil.example")];
        let got = h2_exchange(gw.addr, method, uri("shop.example", "/a"), &one, body);
        assert!(matches!(got, Ok((200, _, _))), "{method}: {got:?}");
        let two = [("host", "evil.example"), ("host", "evil2.example")];
        let got = h2_exchange(gw.addr, method, uri("shop.example", "/a"), &two, body);
        assert!(matches!(got, Ok((400, _, _))), "{method}: {got:?}");
    }
    let seen = up.everything().to_ascii_lowercase();
    assert!(!seen.contains("evil"), "{seen}");
    assert_eq!(seen.matches("\r\nhost: shop.example\r\n").count(), 2, "{seen}");
}

/// An HTTP/2 request's `:scheme` is the client's word: over cleartext the upstream hears
/// `http` (from the connection, as over HTTP/1.1), whatever `:scheme` and
/// `x-forwarded-proto` say, on the bare exchange and through hyper's client. An app
/// that trusted `https` here would set secure-only cookies and skip its redirects.
#[test]
fn an_h2_scheme_claims_nothing() {
    let up = Scripted::start();
    let gw = gateway("h2_review/scheme", up.addr);
    for (method, body) in [("GET", None), ("POST", Some("x"))] {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some("shop.example".parse().unwrap());
        parts.path_and_query = Some("/s".parse().unwrap());
        let https = http::Uri::from_parts(parts).unwrap();
        let lines = [("x-forwarded-proto", "https"), ("forwarded", "proto=https")];
        let got = h2_exchange(gw.addr, method, https, &lines, body);
        assert!(matches!(got, Ok((200, _, _))), "{method}: {got:?}");
    }
    let seen = up.everything().to_ascii_lowercase();
    assert!(!seen.contains("https"), "{seen}");
    assert_eq!(seen.matches("\r\nx-forwarded-proto: http\r\n").count(), 2, "{seen}");
}

/// The bare exchange writes an HTTP/1.1 head from the request's lines itself: an HTTP/2
/// request that ends on its headers but names a length the upstream could read as a
/// body to come (two `content-length` lines that disagree, a list) would leave the
/// upstream waiting for bytes the next request on that pooled connection brings. HTTP/2
/// refuses such a request before the gateway sees it; none reaches the upstream.
#[test]
fn an_h2_request_with_disagreeing_lengths_never_reaches_the_upstream() {
    let up = Scripted::start();
    let gw = gateway("h2_review/lengths", up.addr);
    for lines in [
        vec![("content-length", "0"), ("content-length", "100")],
        vec![("content-length", "0,100")],
    ] {
        for method in ["GET", "POST"] {
            let got = h2_exchange(gw.addr, method, uri("shop.example", "/cl"), &lines, None);
            assert!(got.is_err(), "{method} {lines:?}: {got:?}");
        }
    }
    let got = h2_exchange(gw.addr, "GET", uri("shop.example", "/after"), &[], None);
    assert!(matches!(got, Ok((200, _, _))), "{got:?}");
    let seen = up.everything();
    assert!(!seen.contains("/cl"), "{seen}");
}
