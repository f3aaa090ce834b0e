//! HTTP/2 requests an attacker crafts, through the bare upstream exchange
//! (`upstream::raw`): what the HTTP/1.1 upstream receives, byte for byte, must be a head
//! it reads as the gateway checked it, and a pooled connection must never carry one
//! response into another request.
//!
//! The client is the `h2` crate over cleartext HTTP/2 (prior knowledge), the upstream a
//! scripted HTTP/1.1 server that records every request head it reads.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// An HTTP/1.1 upstream that records each request head as received and answers by path.
struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen, count) = (heads.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming().take(200) {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                thread::spawn(move || serve(stream, &seen));
            }
        });
        Recorder { addr, heads, connections }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// Serves the requests of one connection (at most 50).
fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    for _ in 0..50 {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" || head.len() > 64 * 1024 {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0usize);
        let mut body = vec![0; length.min(1 << 20)];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        if let Ok(mut s) = seen.lock() {
            s.push(head.clone());
        }
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let write = |out: &mut TcpStream, bytes: &[u8]| out.write_all(bytes).and(out.flush());
        let ok = match (method.as_str(), path.as_str()) {
            // Both framings: the body is chunked, and the connection must not be reused.
            (_, "/both") => write(
                &mut out,
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n0\r\n\r\n",
            )
            .is_ok(),
            // A HEAD answered with a body, sent a moment after the head: a whole response
            // another request on this connection would take for its own.
            ("HEAD", "/head-body") => write(&mut out, b"HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n")
                .and_then(|()| {
                    thread::sleep(Duration::from_millis(100));
                    write(&mut out, b"HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\nanother client's answer!!")
                })
                .is_ok(),
            (_, "/trailers") => write(
                &mut out,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\
                  content-length: 99\r\nconnection: close\r\nhost: evil\r\nx-real-ip: 6.6.6.6\r\n\
                  transfer-encoding: chunked\r\nte: trailers\r\nkeep-alive: 1\r\n\r\n",
            )
            .is_ok(),
            (_, "/flood") => {
                let mut all = Vec::new();
                for _ in 0..5000 {
                    all.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                all.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                write(&mut out, &all).is_ok()
            }
            (_, "/bigchunk") => {
                let _ = write(&mut out, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nabc");
                return;
            }
            (_, "/negchunk") => write(&mut out, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc").is_ok(),
            (_, "/huge") => {
                let mut all = b"HTTP/1.1 200 OK\r\n".to_vec();
                for _ in 0..99 {
                    all.extend_from_slice(b"x-big: ");
                    all.extend_from_slice(&[b'a'; 4000]);
                    all.extend_from_slice(b"\r\n");
                }
                let _ = write(&mut out, &all);
                thread::sleep(Duration::from_millis(500));
                return;
            }
            (_, "/101") => write(&mut out, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhello").is_ok(),
            (_, "/badname") => write(&mut out, b"HTTP/1.1 200 OK\r\nx y: 1\r\nContent-Length: 2\r\n\r\nok").is_ok(),
            (_, "/badvalue") => write(&mut out, b"HTTP/1.1 200 OK\r\nx: a\x00b\r\nContent-Length: 2\r\n\r\nok").is_ok(),
            (_, "/obsfold") => write(&mut out, b"HTTP/1.1 200 OK\r\nX-A: 1\r\n Content-Length: 50\r\nContent-Length: 2\r\n\r\nok").is_ok(),
            _ => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                    head.len()
                );
                write(&mut out, resp.as_bytes()).is_ok()
            }
        };
        if !ok {
            return;
        }
    }
}

/// One HTTP/2 request with `uri` (whose path may be anything `http` takes) and `lines`,
/// on a new connection: the status and body, or why the stream failed.
fn h2(
    gw: SocketAddr,
    method: &str,
    uri: http::Uri,
    lines: &[(&str, &str)],
) -> Result<(u16, String), String> {
    h2_exchange(gw, method, uri, lines, None).map(|(status, body, _)| (status, body))
}

/// A gateway with one worker (one pool of upstream connections).
fn gateway(name: &str, upstream: SocketAddr, extra: &str) -> Gateway {
    Gateway::one_worker(&test_dir(name), upstream, extra)
}

/// An HTTP/2 `:path` that is only a query goes as `/?q` (what hyper's client writes, and
/// what the signed client header binds), not as a request line no server parses alike;
/// an asterisk goes only with `OPTIONS` (RFC 9112 §3.2.4).
#[test]
fn an_h2_path_goes_upstream_in_origin_form() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/origin_form", up.addr, "");
    let line = |method: &str, path: &str| {
        let got = h2(gw.addr, method, uri("shop.example", path), &[]);
        let (status, head) = got.unwrap_or_else(|e| panic!("{method} {path:?}: {e}"));
        assert_eq!(status, 200, "{method} {path:?}: {head}");
        head.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(line("GET", "?x=1"), "GET /?x=1 HTTP/1.1");
    assert_eq!(line("GET", "/x?y"), "GET /x?y HTTP/1.1");
    assert_eq!(line("OPTIONS", "*"), "OPTIONS * HTTP/1.1");
    let before = up.heads().len();
    let got = h2(gw.addr, "GET", uri("shop.example", "*"), &[]);
    assert!(matches!(got, Ok((400, _))), "GET *: {got:?}");
    assert_eq!(up.heads().len(), before, "GET * reached the upstream");
    // The same rule over HTTP/1.1.
    assert_eq!(Req::get("*").must_send(gw.addr).status, 400);
    assert_eq!(up.heads().len(), before, "GET * reached the upstream");
    let mut options = Req::get("*");
    options.method = "OPTIONS".into();
    let resp = options.must_send(gw.addr);
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with("OPTIONS * HTTP/1.1\r\n"), "{}", resp.text());
}

#[test]
fn forged_client_addresses_over_h2_never_reach_the_upstream() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/forged", up.addr, "");
    let mut lines: Vec<(String, String)> = forged_headers();
    for (n, v) in [
        ("x_forwarded_for", FORGED_XFF),
        ("x-forwarded-for", FORGED_XFF),
        ("X_REAL_IP", FORGED_REAL_IP),
        ("true-client-ip", FORGED_REAL_IP),
        ("cf-connecting-ip", FORGED_REAL_IP),
        ("x-client-ip", FORGED_REAL_IP),
        ("forwarded", "for=192.0.2.88"),
    ] {
        lines.push((n.to_string(), v.to_string()));
    }
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let (status, head) = h2(gw.addr, "GET", uri("shop.example", "/"), &borrowed).expect("GET");
    assert_eq!(status, 200, "{head}");
    for forged in [FORGED_XFF, FORGED_REAL_IP, FORGED_FORWARDED_IP] {
        assert!(!head.contains(forged), "{forged} reached the upstream:\n{head}");
    }
    assert!(head.contains("\r\nx-real-ip: 127.0.0.1\r\n"), "{head}");
}

#[test]
fn a_response_with_both_framings_ends_its_connection() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/both", up.addr, "");
    let (status, body) = h2(gw.addr, "GET", uri("shop.example", "/both"), &[]).expect("GET");
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (status, _) = h2(gw.addr, "GET", uri("shop.example", "/next"), &[]).expect("GET");
    assert_eq!(status, 200);
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "{:?}", up.heads());
}

#[test]
fn a_body_after_a_head_response_is_no_other_requests_answer() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/head_body", up.addr, "");
    let (status, _) = h2(gw.addr, "HEAD", uri("shop.example", "/head-body"), &[]).expect("HEAD");
    assert_eq!(status, 200);
    thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let (status, body) = h2(gw.addr, "GET", uri("shop.example", "/next"), &[]).expect("GET");
        assert_eq!(status, 200);
        assert!(!body.contains("another client"), "{body}");
    }
}

/// A broken or hostile upstream answer fails its own request, cleanly, and the gateway
/// goes on: a 1xx flood is skipped, a head past 256 KiB, a `101` nobody asked for, a
/// header line hyper's map refuses and an obs-fold are a 502, a chunk size past its body
/// or not hex ends the stream with an error.
#[test]
fn odd_upstream_answers_fail_cleanly() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/odd_answers", up.addr, "");
    let get = |path: &str| h2_exchange(gw.addr, "GET", uri("shop.example", path), &[], None);
    assert!(matches!(get("/flood"), Ok((200, ref b, None)) if b == "ok"));
    for path in ["/huge", "/101", "/badname", "/badvalue", "/obsfold"] {
        let got = get(path);
        assert!(matches!(got, Ok((502, _, None))), "{path}: {got:?}");
    }
    for path in ["/bigchunk", "/negchunk"] {
        assert!(get(path).is_err(), "{path}");
    }
    let (status, head) = h2(gw.addr, "GET", uri("shop.example", "/after"), &[]).expect("GET");
    assert_eq!(status, 200, "{head}");
}

/// Trailers go to the client under the rule response heads do: a hop-by-hop field in them
/// (`Connection`, `Transfer-Encoding`, `Keep-Alive`, `TE`) is the upstream connection's.
/// HTTP/2 refuses to send one, so it failed the whole response (the client got a reset
/// and no body); now it is dropped and the rest arrives.
#[test]
fn hop_by_hop_trailers_stay_with_the_upstream_connection() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/trailers", up.addr, "");
    // Without a body on the bare exchange, with one through hyper's client.
    for (method, body) in [("GET", None), ("POST", Some("a body"))] {
        let length = body.map_or(0, str::len).to_string();
        let lines = [("content-length", length.as_str())];
        let got = h2_exchange(gw.addr, method, uri("shop.example", "/trailers"), &lines, body);
        let (status, body, trailers) =
            got.unwrap_or_else(|e| panic!("{method}: the response arrives whole: {e}"));
        assert_eq!((status, body.as_str()), (200, "ok"), "{method}");
        let trailers = trailers.expect("trailers");
        for gone in ["connection", "transfer-encoding", "keep-alive", "te"] {
            assert!(!trailers.contains_key(gone), "{method} {gone}: {trailers:?}");
        }
        assert_eq!(trailers.get("x-real-ip").map(|v| v.as_bytes()), Some(&b"6.6.6.6"[..]));
    }
}

/// The head the bare exchange writes for an HTTP/2 request is the one hyper's client
/// writes for the same request with a body (its framing lines aside): the same lines, the
/// same values, whatever a client puts in them.
#[test]
fn the_bare_exchange_writes_the_head_hypers_client_writes() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/differential", up.addr, "");
    let mut lines: Vec<(String, String)> = forged_headers();
    for (n, v) in [
        ("x_forwarded_for", FORGED_XFF),
        ("host", "other.example"),
        ("te", "trailers"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-spaces", " padded\t"),
        ("x-obs", "caf\u{e9}"),
        ("accept", "*/*"),
        ("accept", "text/html"),
    ] {
        lines.push((n.to_string(), v.to_string()));
    }
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let head = |body: Option<&'static str>| {
        let mut lines = borrowed.clone();
        if body.is_some() {
            lines.push(("content-length", "1"));
        }
        let got = h2_exchange(gw.addr, "GET", uri("shop.example", "/d?q=1"), &lines, body);
        let (status, head, _) = got.expect("GET");
        assert_eq!(status, 200, "{head}");
        // hyper's client frames the body; the bare exchange sends none.
        assert_eq!(head.contains("\r\ncontent-length: 1\r\n"), body.is_some(), "{head}");
        let mut lines: Vec<String> = head
            .split("\r\n")
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                // The framing, and the port each client connection comes from.
                !l.starts_with("content-length:")
                    && !l.starts_with("transfer-encoding:")
                    && !l.starts_with("x-forwarded-port:")
            })
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let bare = head(None);
    let hyper = head(Some("x"));
    assert_eq!(bare, hyper);
    assert!(bare.contains(&"GET /d?q=1 HTTP/1.1".to_string()), "{bare:#?}");
    assert!(!bare.iter().any(|l| l.contains(FORGED_XFF)), "{bare:#?}");
}

/// `[headers] allowed_hosts` matches only a Host that is a host: `shop.example:80@evil.com`
/// (an HTTP/2 `:authority` with userinfo, or any HTTP/1.1 `Host`) was read as
/// `shop.example` and port `80@evil.com`, and passed; an app building a link from it
/// sends the reader to evil.com. The same for `evil.com/.example.com` under
/// `*.example.com`.
#[test]
fn allowed_hosts_match_only_a_host() {
    let up = Recorder::start();
    let gw = gateway(
        "h2_raw_review/allowed_hosts",
        up.addr,
        "[headers]\nallowed_hosts = [\"shop.example\", \"*.example.com\"]\n",
    );
    let got = h2(gw.addr, "GET", uri("shop.example:80@evil.com", "/"), &[]);
    assert!(matches!(got, Ok((421, _))), "h2 userinfo: {got:?}");
    for host in [
        "shop.example:80@evil.com",
        "evil.com/.example.com",
        "evil.com#.example.com",
        "evil.com?.example.com",
        "evil.com@a.example.com",
    ] {
        let resp = Req::get("/").header("Host", host).must_send(gw.addr);
        assert_eq!(resp.status, 421, "Host: {host}");
    }
    assert!(up.heads().is_empty(), "{:?}", up.heads());
    // Hosts still pass, with a port, in any case, with a trailing dot.
    for host in ["shop.example", "Shop.Example:8080", "a.example.com.", "[::1]"] {
        let resp = Req::get("/").header("Host", host).must_send(gw.addr);
        let want = if host == "[::1]" { 421 } else { 200 };
        assert_eq!(resp.status, want, "Host: {host}");
    }
    let got = h2(gw.addr, "GET", uri("a.example.com", "/"), &[]);
    assert!(matches!(got, Ok((200, _))), "{got:?}");
}

/// An HTTP/2 GET or HEAD whose DATA frames carry an HTTP/1.1 request, with no
/// `content-length`: hyper's client sends no body for such a request (other methods get
/// a chunked one), so no byte of it reaches the upstream connection as a request of its
/// own.
#[test]
fn an_unframed_h2_body_is_never_a_request_upstream() {
    let up = Recorder::start();
    let gw = gateway("h2_raw_review/unframed_body", up.addr, "");
    const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
    for method in ["GET", "HEAD"] {
        let got = h2_exchange(gw.addr, method, uri("shop.example", "/front"), &[], Some(SMUGGLED));
        assert!(matches!(got, Ok((200, _, _))), "{method}: {got:?}");
        let (status, _) = h2(gw.addr, "GET", uri("shop.example", "/next"), &[]).expect("GET");
        assert_eq!(status, 200);
    }
    let heads = up.heads();
    assert!(!heads.iter().any(|h| h.contains("smuggled") || h.contains("6.6.6.6")), "{heads:#?}");
}
