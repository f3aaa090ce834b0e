//! HTTP/2 requests without a body reach an HTTP/1.1 upstream over a bare connection
//! (`upstream::raw`), not hyper's client. The response must come back to the client as
//! hyper's client brought it: every framing (length, chunked with trailers, until close),
//! bodies that arrive in pieces, hop-by-hop lines gone, connections pooled, a reused
//! connection that the upstream closed meanwhile tried again, failures answered 502.
//!
//! The client is curl with HTTP/2 prior knowledge (cleartext h2c), the upstream a scripted
//! HTTP/1.1 server whose answer the request path chooses.
//!
//! Needs `curl` (with HTTP/2).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

/// An HTTP/1.1 upstream answering each request by its path; counts its connections.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming().take(1000) {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || serve(stream));
            }
        });
        Scripted { addr, connections }
    }
}

/// Serves requests on one connection until it closes or a script closes it.
fn serve(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
        }
        let pause = || thread::sleep(Duration::from_millis(50));
        let write = |out: &mut TcpStream, bytes: &[u8]| out.write_all(bytes).and(out.flush());
        let done = match path.as_str() {
            "/chunked" => write(
                &mut out,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n",
            )
            .and_then(|()| {
                pause();
                write(&mut out, b"7;ext=1\r\n, world\r\n0\r\nx-checksum: abc\r\n\r\n")
            })
            .is_ok(),
            "/close" => {
                let _ = write(&mut out, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ");
                pause();
                let _ = write(&mut out, b"the end");
                return;
            }
            "/pieces" => write(&mut out, b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n")
                .and_then(|()| write(&mut out, &[b'a'; 10000]))
                .and_then(|()| {
                    pause();
                    write(&mut out, &[b'b'; 10000])
                })
                .is_ok(),
            "/hop" => write(
                &mut out,
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\n\
                  Keep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
            )
            .is_ok(),
            "/interim" => write(
                &mut out,
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            )
            .is_ok(),
            // Answers, then closes the connection it promised to keep: the gateway's next
            // request on it finds it closed.
            "/then-close" => {
                let _ = write(&mut out, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                pause();
                return;
            }
            // An interim answer, then the connection closes: the request was read.
            "/interim-then-close" => {
                let _ = write(&mut out, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
                return;
            }
            "/broken" => {
                let _ = write(&mut out, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
                return;
            }
            _ => write(&mut out, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_ok(),
        };
        if !done {
            return;
        }
    }
}

/// curl over cleartext HTTP/2 to `url`: (status, headers, body).
fn curl_h2(dir: &Path, url: &str) -> Option<(u16, String, String)> {
    let bin = external("curl", "curl")?;
    let dump = dir.join("headers.txt");
    let out = Command::new(bin)
        .args(["--silent", "--http2-prior-knowledge", "--max-time", "10"])
        .arg("--dump-header")
        .arg(&dump)
        .args(["--write-out", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let headers = std::fs::read_to_string(&dump).unwrap_or_default();
    Some((status.trim().parse().unwrap_or(0), headers, body.to_string()))
}

/// A gateway with one worker, so that every request draws on one pool of upstream
/// connections.
fn gateway(dir: &Path, upstream: SocketAddr) -> Gateway {
    Gateway::one_worker(dir, upstream, "")
}

#[test]
fn every_framing_comes_back_whole() {
    let dir = test_dir("h2_bare/framings");
    let up = Scripted::start();
    let gw = gateway(&dir, up.addr);
    let url = |p: &str| format!("http://{}{p}", gw.addr);

    let Some((status, headers, body)) = curl_h2(&dir, &url("/chunked")) else {
        return;
    };
    assert_eq!((status, body.as_str()), (200, "hello, world"), "{headers}");
    assert!(headers.contains("x-checksum: abc"), "the trailer reaches the client: {headers}");
    assert!(!headers.contains("transfer-encoding"), "{headers}");

    let (status, _, body) = curl_h2(&dir, &url("/close")).unwrap_or_default();
    assert_eq!((status, body.as_str()), (200, "until the end"));

    let (status, headers, body) = curl_h2(&dir, &url("/pieces")).unwrap_or_default();
    assert_eq!(status, 200, "{headers}");
    assert_eq!(body.len(), 20000);
    assert!(body.starts_with('a') && body.ends_with('b'));
    assert!(headers.contains("content-length: 20000"), "{headers}");

    let (status, _, body) = curl_h2(&dir, &url("/interim")).unwrap_or_default();
    assert_eq!((status, body.as_str()), (200, "final"));
}

#[test]
fn hop_by_hop_lines_stay_with_the_upstream_connection() {
    let dir = test_dir("h2_bare/hop");
    let up = Scripted::start();
    let gw = gateway(&dir, up.addr);
    let Some((status, headers, body)) = curl_h2(&dir, &format!("http://{}/hop", gw.addr)) else {
        return;
    };
    assert_eq!((status, body.as_str()), (200, "ok"));
    let lower = headers.to_ascii_lowercase();
    assert!(lower.contains("x-kept: yes"), "{headers}");
    for gone in ["x-secret", "keep-alive", "connection"] {
        assert!(!lower.contains(gone), "{gone} reached the client: {headers}");
    }
}

#[test]
fn connections_are_pooled_and_a_closed_one_is_tried_again() {
    let dir = test_dir("h2_bare/pool");
    let up = Scripted::start();
    let gw = gateway(&dir, up.addr);
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    for path in ["/a", "/b", "/c"] {
        let Some((status, _, body)) = curl_h2(&dir, &url(path)) else {
            return;
        };
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one upstream connection for three requests one after the other"
    );

    // The upstream closes the connection after answering: the next GET finds it closed
    // and goes again on a new one (`upstream::may_resend`), the client never knowing.
    let (status, _, body) = curl_h2(&dir, &url("/then-close")).unwrap_or_default();
    assert_eq!((status, body.as_str()), (200, "first"));
    thread::sleep(Duration::from_millis(200));
    let (status, _, body) = curl_h2(&dir, &url("/d")).unwrap_or_default();
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_request_the_upstream_answered_is_not_sent_again() {
    let dir = test_dir("h2_bare/no_resend");
    let up = Scripted::start();
    let gw = gateway(&dir, up.addr);
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    let Some((status, _, _)) = curl_h2(&dir, &url("/a")) else {
        return;
    };
    assert_eq!(status, 200);
    // On the pooled connection the upstream answers 103 and closes: it read the request,
    // so the gateway answers 502 rather than send it on a second connection.
    let (status, _, _) = curl_h2(&dir, &url("/interim-then-close")).unwrap_or_default();
    assert_eq!(status, 502);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the request went again on a new connection after an interim answer"
    );

    // The lean HTTP/1.1 path keeps the same rule.
    let dir = test_dir("h2_bare/no_resend_lean");
    let up = Scripted::start();
    let gw = gateway(&dir, up.addr);
    assert_eq!(Req::get("/a").must_send(gw.addr).status, 200);
    let resp = Req::get("/interim-then-close").must_send(gw.addr);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the lean path sent the request again after an interim answer"
    );
}

#[test]
fn failures_are_answered_as_on_every_path() {
    let dir = test_dir("h2_bare/failures");
    let up = Scripted::start();
    let gw = gateway(&dir, up.addr);
    // A body cut short leaves the gateway serving. That the client sees the stream fail,
    // not a short body as whole, is h2_review.rs's `a_body_cut_short_is_never_presented_whole`.
    if curl_h2(&dir, &format!("http://{}/broken", gw.addr)).is_none() {
        return;
    }
    assert_healthy(gw.addr, "a broken upstream body");

    let closed = free_addr();
    let dir2 = test_dir("h2_bare/unreachable");
    let gw2 = gateway(&dir2, closed);
    let (status, _, _) = curl_h2(&dir2, &format!("http://{}/x", gw2.addr)).unwrap_or_default();
    assert_eq!(status, 502, "an unreachable upstream");
}
