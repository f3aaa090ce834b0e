//! A client that stops reading its response: the gateway's write to it waits for room,
//! and after `limits.send_timeout` without progress the connection closes and the
//! upstream exchange is let go. A client that reads slowly but steadily is not cut: the
//! timer restarts at every write that makes progress, as nginx's `send_timeout` does.
//! The same on both wire paths (the lean one and hyper's), and for an HTTP/2 stream whose
//! client keeps its socket busy (pings) but gives no flow-control credit: the stream is
//! reset, the connection goes on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// The body an upstream promises and streams: far more than the socket buffers between
/// the gateway and a client that does not read (a few MiB on loopback).
const BIG: usize = 256 << 20;
/// The body a slow reader takes whole: several times the socket buffers, so that the
/// gateway's writes wait for the reader again and again.
const SMALL: usize = 24 << 20;

/// An upstream that answers every request with `len` bytes of body, written 64 KiB at a
/// time, and notes when a write fails (the gateway let the exchange go).
struct Streaming {
    addr: SocketAddr,
    broken: Arc<AtomicBool>,
}

impl Streaming {
    #[allow(clippy::unwrap_used, reason = "a test fails loudly")]
    fn start(len: usize) -> Streaming {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        let noted = broken.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let noted = noted.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
                    );
                    if conn.write_all(answer.as_bytes()).is_err() {
                        noted.store(true, Ordering::SeqCst);
                        return;
                    }
                    let chunk = vec![b'x'; 64 << 10];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if conn.write_all(&chunk[..n]).is_err() {
                            noted.store(true, Ordering::SeqCst);
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        Streaming { addr, broken }
    }
}

fn gateway(name: &str, lean: bool, upstream: &Streaming) -> Gateway {
    let dir = test_dir(name);
    let toml = format!(
        "[upstream]\nurl = \"http://{}\"\nbody_timeout = \"30s\"\n\
         [limits]\nsend_timeout = \"1s\"\nlean_http1 = {lean}\n",
        upstream.addr
    );
    Gateway::start_with_toml(&dir, free_addr(), &toml, &[])
}

#[test]
fn a_client_that_stops_reading_is_closed_after_send_timeout_on_the_lean_path() {
    stopped_reader("send_timeout_stopped_lean", true);
}

#[test]
fn a_client_that_stops_reading_is_closed_after_send_timeout_on_hypers_path() {
    stopped_reader("send_timeout_stopped_hyper", false);
}

#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
fn stopped_reader(name: &str, lean: bool) {
    let upstream = Streaming::start(BIG);
    let gw = gateway(name, lean, &upstream);
    let mut client = TcpStream::connect(gw.addr).unwrap();
    client.write_all(b"GET /big HTTP/1.1\r\nHost: app.example\r\n\r\n").unwrap();
    // Read nothing: the buffers between fill, the gateway's write waits, and after
    // send_timeout it gives up, on the client and on the upstream.
    eventually(
        Duration::from_secs(20),
        || upstream.broken.load(Ordering::SeqCst).then_some(()),
        || {
            format!(
                "lean={lean}: the upstream still streams to a client that reads nothing\n{}",
                gw.proc.log()
            )
        },
    );
    // What the client gets is what the buffers held, then the end: never the whole body.
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < BIG, "lean={lean}: {got} bytes reached a client that stopped reading");
    // Counted, for an operator to see.
    counted(gw.addr, "trueip_client_errors_total{reason=\"send_timeout\"} 1");
    assert_healthy(gw.addr, "a client that stopped reading");
}

#[test]
fn a_slow_steady_reader_gets_the_whole_body_on_both_paths() {
    for lean in [true, false] {
        let upstream = Streaming::start(SMALL);
        let gw = gateway(&format!("send_timeout_slow_{lean}"), lean, &upstream);
        let mut client = TcpStream::connect(gw.addr).unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
            .unwrap();
        // At most 1 MiB every 150 ms: the whole body takes a few times send_timeout,
        // yet no single write waits for as long.
        let body = body_read_slowly(&mut client, Duration::from_millis(150), lean);
        assert_eq!(body, Some(SMALL), "lean={lean}");
        assert!(!upstream.broken.load(Ordering::SeqCst), "lean={lean}");
    }
}

/// An HTTP/2 client with a 1 KiB stream window that reads what fits and never sends
/// WINDOW_UPDATE, but pings all along, so the socket is never idle and no write to it
/// waits: hyper's stream waits for credit, which no socket timer sees. After
/// `send_timeout` without credit the stream is reset (`CANCEL`), the upstream exchange
/// ends, it is counted, and the connection still answers pings.
#[test]
#[allow(clippy::unwrap_used, clippy::panic, reason = "a test fails loudly")]
fn an_h2_stream_without_flow_control_credit_is_reset_after_send_timeout() {
    let upstream = Streaming::start(BIG);
    let gw = gateway("send_timeout_h2_credit", true, &upstream);
    let addr = gw.addr;
    let waited = block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, mut conn) = h2::client::Builder::new()
            .initial_window_size(1024)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let mut ping = conn.ping_pong().unwrap();
        let conn = tokio::spawn(conn);
        let (client, mut body) = h2_get(client, addr, "/big").await;
        let start = Instant::now();
        let mut got = 0usize;
        // Never `release_capacity`: h2 sends no WINDOW_UPDATE, for the stream or the
        // connection.
        let reset = loop {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the stream still waits for credit after {got} bytes"
            );
            tokio::select! {
                frame = body.data() => match frame {
                    Some(Ok(data)) => got += data.len(),
                    Some(Err(e)) => break e,
                    None => panic!("the whole body arrived through a 1 KiB window"),
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    tokio::time::timeout(Duration::from_secs(5), ping.ping(h2::Ping::opaque()))
                        .await
                        .unwrap()
                        .unwrap();
                }
            }
        };
        assert_eq!(reset.reason(), Some(h2::Reason::CANCEL), "{reset}");
        assert!(got <= 1024, "{got} bytes through a 1 KiB window");
        // The connection is not the stream: it still answers.
        tokio::time::timeout(Duration::from_secs(5), ping.ping(h2::Ping::opaque()))
            .await
            .unwrap()
            .unwrap();
        drop(client);
        conn.abort();
        start.elapsed()
    });
    // send_timeout is 1 s; the rest is slack for a busy machine.
    assert!(waited < Duration::from_secs(8), "reset after {waited:?}");
    eventually(
        Duration::from_secs(10),
        || upstream.broken.load(Ordering::SeqCst).then_some(()),
        || format!("the upstream still streams for a reset stream\n{}", gw.proc.log()),
    );
    let metrics = metrics(gw.addr);
    assert!(metrics.contains("trueip_client_errors_total{reason=\"send_timeout\"} 1"), "{metrics}");
    assert_healthy(gw.addr, "an HTTP/2 client that gave no credit");
}

/// Sends `GET path` over `client` (its connection driven elsewhere) and hands back the
/// client, still open, and the body of the `200` that answered within 10 s.
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
async fn h2_get(
    client: h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (h2::client::SendRequest<bytes::Bytes>, h2::RecvStream) {
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{addr}{path}")).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    (client, resp.into_body())
}

/// An HTTP/2 client that reads steadily, but slowly (about 256 KiB/s through a 64 KiB
/// window, giving credit for each frame it reads): not one wait for its credit lasts
/// `send_timeout`, and it gets the whole body. (Chunks from the upstream can be far larger
/// than the window: handed to hyper whole, one would wait longer than that.)
#[test]
#[allow(clippy::unwrap_used, clippy::panic, reason = "a test fails loudly")]
fn a_slow_steady_h2_reader_gets_the_whole_body() {
    const LEN: usize = 2 << 20;
    let upstream = Streaming::start(LEN);
    let gw = gateway("send_timeout_h2_slow", true, &upstream);
    let addr = gw.addr;
    let got = block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let (client, mut body) = h2_get(client, addr, "/slow").await;
        let start = Instant::now();
        let mut got = 0usize;
        let mut paced = 0usize;
        loop {
            assert!(start.elapsed() < Duration::from_secs(30), "{got} bytes after 30 s");
            let frame = tokio::time::timeout(Duration::from_secs(10), body.data()).await.unwrap();
            match frame {
                Some(Ok(data)) => {
                    got += data.len();
                    paced += data.len();
                    body.flow_control().release_capacity(data.len()).unwrap();
                    if paced >= 64 << 10 {
                        paced = 0;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Some(Err(e)) => panic!("after {got} bytes: {e}"),
                None => break,
            }
        }
        drop(client);
        conn.abort();
        got
    });
    assert_eq!(got, LEN);
    assert!(!upstream.broken.load(Ordering::SeqCst));
    let metrics = metrics(gw.addr);
    assert!(
        !metrics.contains("trueip_client_errors_total{reason=\"send_timeout\"} 1"),
        "{metrics}"
    );
}

/// The tail of a response held by h2 after its body ended: the whoami page goes to h2 in
/// one piece, so the stream's task is over while all but 16 bytes of it wait for credit
/// the client never gives (pinging all along). No request is in flight, so the connection
/// idles and shuts down gracefully, and that waits for the stream; the wait ends after
/// `send_timeout`, counted as one.
#[test]
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
fn an_h2_connection_holding_an_unsent_tail_closes_after_idle_and_send_timeout() {
    let dir = test_dir("send_timeout_h2_tail");
    let gw = Gateway::start_with_toml(
        &dir,
        free_addr(),
        "[limits]\nsend_timeout = \"1s\"\nidle_timeout = \"1s\"\n",
        &[],
    );
    let addr = gw.addr;
    let closed_after = block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, mut conn) = h2::client::Builder::new()
            .initial_window_size(16)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let mut ping = conn.ping_pong().unwrap();
        let mut conn = tokio::spawn(conn);
        // Both kept to the end: the stream's unsent tail is what holds the connection.
        let (_client, _body) = h2_get(client, addr, "/json").await;
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "the connection is still open");
            tokio::select! {
                _ = &mut conn => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    // Pings fail once the connection is closing.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        ping.ping(h2::Ping::opaque()),
                    )
                    .await;
                }
            }
        }
        start.elapsed()
    });
    // idle_timeout, then send_timeout; the rest is slack for a busy machine.
    assert!(closed_after < Duration::from_secs(9), "closed after {closed_after:?}");
    // Counted as the connection's task ends, just after its socket closed: the client
    // may see the close and ask first.
    counted(gw.addr, "trueip_client_errors_total{reason=\"send_timeout\"} 1");
}

/// A request with `Connection: close` followed by bytes the gateway will not read (a
/// pipelined request): the whole response still reaches the client. Closing a socket
/// with unread bytes makes the kernel send a reset, which throws away what is still in
/// the send queue; the gateway stops writing, reads what comes until the client closes
/// (bounded), and only then closes, as nginx's lingering close does.
#[test]
fn a_response_before_a_close_survives_unread_pipelined_bytes() {
    for lean in [true, false] {
        let upstream = Streaming::start(SMALL);
        let gw = gateway(&format!("send_timeout_linger_{lean}"), lean, &upstream);
        let mut client = TcpStream::connect(gw.addr).unwrap();
        client
            .write_all(b"GET /a HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
            .unwrap();
        // Sent while the response streams, more than any read-ahead buffer holds: what
        // the gateway does not read waits in its socket's receive queue.
        let mut writer = client.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut more =
                b"POST /b HTTP/1.1\r\nHost: app.example\r\ncontent-length: 4194304\r\n\r\n"
                    .to_vec();
            more.resize(more.len() + (4 << 20), b'y');
            // The gateway may close before taking all of it.
            let _ = writer.write_all(&more);
        });
        let body = body_read_slowly(&mut client, Duration::from_millis(20), lean);
        assert_eq!(body, Some(SMALL), "lean={lean}");
        drop(client);
        sender.join().unwrap();
    }
}

/// Reads a response to its close, pausing `pause` after each read (at most 1 MiB),
/// and returns the length of its body; a read error fails the test.
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
fn body_read_slowly(client: &mut TcpStream, pause: Duration, lean: bool) -> Option<usize> {
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("lean={lean}: {e} after {} bytes", all.len()),
        }
        std::thread::sleep(pause);
    }
    let text = String::from_utf8_lossy(&all[..all.len().min(200)]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "lean={lean}: {text}");
    all.windows(4).position(|w| w == b"\r\n\r\n").map(|at| all.len() - at - 4)
}
