//! The record of forgeries costs a clean request nothing: the same requests allocate
//! exactly as much with the record on (`[admin] forgeries = 100`) as with it off, while
//! forged ones allocate more with it on (so the count can see an entry being built).
//! One test in its own binary: the counting allocator is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trueip_gateway::testing::{Build, Server};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CLEAN: &[u8] = b"GET /json HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n";
const FORGED: &[u8] =
    b"GET /json HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.5\r\n\r\n";

/// Sends `req` and reads its whole response (Content-Length framed) on `s`.
async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) {
    s.write_all(req).await.unwrap();
    buf.clear();
    let mut chunk = [0u8; 4096];
    // Bounded: a response is a few KB.
    for _ in 0..1000 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(chunk.get(..n).unwrap());
        let text = String::from_utf8_lossy(buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("content-length")
                .parse()
                .unwrap();
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return;
            }
        }
    }
    panic!("no whole response");
}

/// Allocations of `n` exchanges of `req` on a warm keep-alive connection to a gateway
/// keeping `kept` forgeries.
async fn allocations(kept: usize, req: &[u8], n: usize) -> u64 {
    let toml = format!(
        "[client_ip]\ntrusted = [\"127.0.0.1\"]\nstrategy = \"rightmost-untrusted\"\n\
         [admin]\nforgeries = {kept}\n"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = Server::start(listener, &Build::new(&toml, true).unwrap()).unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::with_capacity(64 * 1024);
    for _ in 0..20 {
        exchange(&mut s, req, &mut buf).await;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        exchange(&mut s, req, &mut buf).await;
    }
    region.change().allocations as u64
}

/// The fewest allocations of three runs of [`allocations`]: a slow moment (a busy machine)
/// can make a read or write wait where it did not, and a timer armed then allocates once,
/// with the record on or off; three runs leave at least one unperturbed, nearly always.
async fn fewest_allocations(kept: usize, req: &[u8], n: usize) -> u64 {
    let mut fewest = u64::MAX;
    for _ in 0..3 {
        fewest = fewest.min(allocations(kept, req, n).await);
    }
    fewest
}

#[tokio::test(flavor = "current_thread")]
async fn a_clean_request_allocates_nothing_for_the_record() {
    let off = fewest_allocations(0, CLEAN, 50).await;
    let on = fewest_allocations(100, CLEAN, 50).await;
    // One allocation a request for the record would be 50 more; a few timers more or
    // less are the machine's doing.
    assert!(on <= off + 5, "clean requests allocate more with the record on: {on} vs {off} off");

    let forged_off = allocations(0, FORGED, 50).await;
    let forged_on = allocations(100, FORGED, 50).await;
    assert!(
        forged_on >= forged_off + 50,
        "each kept forgery allocates: {forged_on} vs {forged_off}"
    );
}
