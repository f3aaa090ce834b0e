//! A raw HTTP/1.1 client over loopback that can choose its source address, and a way to
//! run an axum app on a free port, for the tower/axum adapter tests.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so a test plays several hosts by binding
//! its socket to 127.0.0.X before connecting: the "proxies" come from addresses the
//! policy trusts, the attacker from 127.0.0.1, which it never trusts.

#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub mod names;

/// How long any one exchange may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A response, or what happened instead.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Connects to `to` from `from` (an address on `lo`).
pub async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    tokio::time::timeout(DEADLINE, socket.connect(to)).await.expect("connect timed out").unwrap()
}

/// `GET path` with `headers`, `Connection: close`.
pub fn request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Writes `bytes`, reads until the server closes. `None`: it closed (or reset) without a
/// byte of response.
pub async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Option<Reply> {
    // The server may close before reading everything (a refused PROXY header): a failed
    // write then means the same as an empty read.
    let _ = stream.write_all(bytes).await;
    read_reply(stream).await
}

/// Reads until the server closes.
pub async fn read_reply(stream: &mut TcpStream) -> Option<Reply> {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("the server neither answered nor closed within the deadline");
    if read.is_err() && raw.is_empty() {
        return None; // reset
    }
    if raw.is_empty() {
        return None;
    }
    Some(parse(&raw))
}

/// One request from `from` to `to`.
pub async fn get_from(
    from: &str,
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Reply> {
    let mut stream = connect_from(from, to).await;
    exchange(&mut stream, &request(path, headers)).await
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Reply { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// Every log record, as `LEVEL message`, so a test can check what the adapter logged.
pub fn logs() -> &'static Mutex<Vec<String>> {
    static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static LOGGER: Capture = Capture;
    LOGS.get_or_init(|| {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Debug);
        Mutex::new(Vec::new())
    })
}

/// The captured lines containing `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    logs().lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect()
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        logs().lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// An external program, or `None` (with a notice) when it is missing and
/// `TRUEIP_SKIP_EXTERNAL=1`; missing without that variable fails the test.
pub fn external(program: &str) -> Option<std::path::PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("TRUEIP_SKIP_EXTERNAL").as_deref() == Ok("1"),
            "`{program}` not found: `bash scripts/test-deps` installs it; \
             TRUEIP_SKIP_EXTERNAL=1 skips the tests that need it"
        );
        eprintln!("SKIP: `{program}` not installed; TRUEIP_SKIP_EXTERNAL=1");
    }
    found
}

/// A free port on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A child process killed when the test ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `addr`.
pub async fn wait_for(addr: SocketAddr, child: &mut Child) {
    let start = std::time::Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the process for {addr} exited: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
