//! The lean HTTP/1.1 path (`src/http/lean.rs`) and hyper's path (`src/http/hyper.rs`) are
//! two codecs over the same header rules (`src/rules/`); a difference between them is a
//! place where a forged client address could slip through. This test sends the same
//! requests through both and compares what the upstream receives.
//!
//! One gateway runs in-process on one listener; before each request its state is switched
//! between two builds of the same config, one with the lean path and one without
//! (`limits.lean_http1`), so the listener port, the upstream and the peer are the same.
//! The upstream records the exact header lines of every request (keyed by an `X-Case`
//! line the request carries). The lean path forwards header names as received while
//! hyper's path lowercases them; `X-Case` spelled with capitals therefore also tells which
//! path served a request, so the test can say how many requests the lean path took.
//!
//! Compared per request: the status the client got, and the upstream's view (method,
//! target, and every header line, names lower-cased, values byte for byte). Lines of
//! different names are compared as groups, in order within each name: hyper's `HeaderMap`
//! groups lines by name and may reorder names after removals, which is harmless since the
//! order of lines with different names carries no meaning (RFC 9110 §5.3); the order of
//! lines of one name does, and is compared.
//!
//! Requests come from a table of hand-written cases and from a seeded generator (bounded
//! count; set `TRUEIP_DIFF_SEED` to try another seed): forged X-Forwarded-For / X-Real-IP /
//! Forwarded / X-Forwarded-Proto/Host/Port / CDN headers, odd case and underscore
//! spellings, several lines of one header, `Connection:` tokens naming the gateway's
//! headers, long values, bytes outside ASCII, framing headers, malformed heads, from an
//! untrusted peer (127.0.0.1) and a trusted one (127.0.0.20), and through PROXY v1
//! headers naming trusted and untrusted sources.

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use trueip_gateway::testing::{Build, Server};

/// An untrusted client.
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// A trusted proxy (inside 127.0.0.16/28).
const TRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
/// Generated requests per configuration.
const GENERATED: usize = 250;

// ---------------------------------------------------------------------------------------------
// The recording upstream

/// What the upstream received.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    /// Header lines, names as received.
    lines: Vec<(String, Vec<u8>)>,
}

impl Seen {
    /// Lines grouped by lower-cased name (order kept within a name), `X-Case` left out.
    fn normalized(&self) -> (String, String, Vec<(String, Vec<u8>)>) {
        let mut lines: Vec<(String, Vec<u8>)> = self
            .lines
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .filter(|(n, _)| n != "x-case")
            .map(|(n, v)| {
                if n == "trueip-signature" {
                    let v = self.signature(&v);
                    (n, v)
                } else {
                    (n, v)
                }
            })
            .collect();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        (self.method.clone(), self.target.clone(), lines)
    }

    /// A signed client header, verified for the request the upstream saw, as what it
    /// says without the parts that differ between two sends of one request: the client's
    /// port (two connections), the time and the MAC.
    fn signature(&self, value: &[u8]) -> Vec<u8> {
        let key = trueip::provenance::Key::new(SIGNING_KEY.as_bytes()).unwrap();
        let verifier = trueip::provenance::Verifier::new([key], Duration::from_secs(60)).unwrap();
        let host = self
            .lines
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            // The gateway binds a Host that is not visible ASCII as empty (the app reads
            // such bytes its own way; the signature then fails closed there).
            .map(|(_, v)| match std::str::from_utf8(v) {
                Ok(h) if h.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => h.to_owned(),
                _ => String::new(),
            })
            .unwrap_or_default();
        let request = trueip::provenance::RequestLine {
            method: &self.method,
            host: &host,
            target: &self.target,
        };
        match verifier.verify(Some(value), &request) {
            Ok(c) => {
                VERIFIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("verified {} {} {}", c.client.ip, c.source, c.hops).into_bytes()
            }
            Err(e) => format!("rejected {}", e.name()).into_bytes(),
        }
    }

    /// Whether the lean path forwarded it (names kept as received).
    fn lean(&self) -> bool {
        self.lines.iter().any(|(n, _)| n == "X-Case")
    }
}

type Log = Arc<Mutex<HashMap<String, Seen>>>;

async fn upstream(log: Log) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(upstream_conn(s, log.clone()));
        }
    });
    addr
}

/// A parsed request head: what was seen, its length, and how its body is framed.
fn parse_request(buf: &[u8]) -> Option<(Seen, usize, usize, bool)> {
    let mut lines = [httparse::EMPTY_HEADER; 512];
    let mut req = httparse::Request::new(&mut lines);
    let Ok(httparse::Status::Complete(n)) = req.parse(buf) else {
        return None;
    };
    let mut length = 0;
    let mut chunked = false;
    let lines: Vec<(String, Vec<u8>)> =
        req.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
    for (name, value) in &lines {
        if name.eq_ignore_ascii_case("content-length") {
            length =
                std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let seen = Seen {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        lines,
    };
    Some((seen, n, length, chunked))
}

async fn upstream_conn(mut s: TcpStream, log: Log) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        let (seen, used, length, chunked) = loop {
            if let Some(parsed) = parse_request(&buf) {
                break parsed;
            }
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        buf.drain(..used);
        // Bodies are not compared; they are read so the connection stays usable. A
        // chunked body's trailer lines are kept (named `trailer:NAME`): none may come.
        let body_end = |b: &[u8]| {
            if chunked {
                let last = if b.starts_with(b"0\r\n") {
                    0
                } else {
                    b.windows(5).position(|w| w == b"\r\n0\r\n")? + 2
                };
                let rest = &b[last + 3..];
                if rest.starts_with(b"\r\n") {
                    return Some(last + 5);
                }
                rest.windows(4).position(|w| w == b"\r\n\r\n").map(|i| last + 3 + i + 4)
            } else {
                (b.len() >= length).then_some(length)
            }
        };
        let end = loop {
            if let Some(end) = body_end(&buf) {
                break end;
            }
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        let mut seen = seen;
        if chunked && let Some(last) = buf[..end].windows(5).position(|w| w == b"\r\n0\r\n") {
            for line in String::from_utf8_lossy(&buf[last + 5..end]).split("\r\n") {
                if let Some((n, v)) = line.split_once(':') {
                    seen.lines.push((format!("trailer:{n}"), v.trim().as_bytes().to_vec()));
                }
            }
        }
        buf.drain(..end);
        let id = seen
            .lines
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-case"))
            // The gateway binds a Host that is not visible ASCII as empty (the app reads
            // such bytes its own way; the signature then fails closed there).
            .map(|(_, v)| match std::str::from_utf8(v) {
                Ok(h) if h.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => h.to_owned(),
                _ => String::new(),
            })
            .unwrap_or_default();
        log.lock().unwrap().insert(id, seen);
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-up: 1\r\n\r\nok").await.is_err()
        {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway, in two builds

struct Gateway {
    addr: SocketAddr,
    server: Server,
    lean: Build,
    hyper: Build,
}

fn build(toml: &str, lean: bool) -> Build {
    Build::new(toml, lean).unwrap()
}

async fn gateway(toml: &str) -> Gateway {
    let lean = build(toml, true);
    let hyper = build(toml, false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start(listener, &lean).unwrap();
    Gateway { addr, server, lean, hyper }
}

// ---------------------------------------------------------------------------------------------
// The client

/// Status and body of the response (status 0: none, the connection closed or stalled).
async fn send(addr: SocketAddr, from: Ipv4Addr, bytes: &[u8], head_only: bool) -> (u16, Vec<u8>) {
    send_from(addr, from, bytes, head_only).await.1
}

/// [`send`], also saying which port the client used.
async fn send_from(
    addr: SocketAddr,
    from: Ipv4Addr,
    bytes: &[u8],
    head_only: bool,
) -> (u16, (u16, Vec<u8>)) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let port = s.local_addr().unwrap().port();
    (port, answer(&mut s, bytes, head_only).await)
}

async fn answer(s: &mut TcpStream, bytes: &[u8], head_only: bool) -> (u16, Vec<u8>) {
    if s.write_all(bytes).await.is_err() {
        return (0, Vec::new());
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut lines = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut lines);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
            let status = resp.code.unwrap_or(0);
            // An interim answer (`100 Continue` to `Expect`) comes before the response.
            if (100..200).contains(&status) && status != 101 {
                buf.drain(..n);
                continue;
            }
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
            let length = if head_only { Some(0) } else { length };
            if let Some(len) = length
                && buf.len() >= n + len
            {
                return (status, buf[n..n + len].to_vec());
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => {
                let mut lines = [httparse::EMPTY_HEADER; 64];
                let mut resp = httparse::Response::new(&mut lines);
                return match resp.parse(&buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        (resp.code.unwrap_or(0), buf[n..].to_vec())
                    }
                    _ => (0, Vec::new()),
                };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Clone, Debug)]
struct Case {
    /// The address the client connects from.
    from: Ipv4Addr,
    /// Everything the client sends (PROXY header, head, body).
    bytes: Vec<u8>,
    head_only: bool,
}

impl Case {
    /// `head` is written one byte per char: U+0080..U+00FF stand for the bytes
    /// 0x80..0xFF (obs-text), which are not UTF-8 on the wire.
    fn new(from: Ipv4Addr, proxy: Option<&str>, head: &str) -> Case {
        let mut bytes = proxy.map(|p| format!("{p}\r\n")).unwrap_or_default().into_bytes();
        bytes.extend(head.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')));
        Case { from, head_only: head.starts_with("HEAD "), bytes }
    }
}

/// The shown form of bytes: printable ASCII as is, the rest escaped.
fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(600) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n\n    "),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > 600 {
        let _ = write!(out, "… ({} bytes)", bytes.len());
    }
    out
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Client-IP and forwarding header names, as documents spell them.
const FORWARDING: [&str; 26] = [
    "Client-IP",
    "Trueip-Signature",
    "X-Forwarded",
    "Forwarded-For",
    "X-Original-Forwarded-For",
    "CF-Connecting-IPv6",
    "X-Forwarded-For",
    "X-Real-IP",
    "Forwarded",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "CF-Connecting-IP",
    "True-Client-IP",
    "Fastly-Client-IP",
    "Fly-Client-IP",
    "X-Azure-ClientIP",
    "X-Azure-FDID",
    "CloudFront-Viewer-Address",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "X-Custom-IP",
    "X-Origin-Verify",
    "Via",
    "X-Forwarded-For",
];

const ADDRESSES: [&str; 24] = [
    "\u{ff}\u{fe}1.2.3.4",
    "1.2.3.4, caf\u{e9}",
    "203.0.113.66",
    "203.0.113.66, 127.0.0.20",
    "198.51.100.9, 10.1.1.1",
    "6.6.6.6, 198.51.100.9, 10.0.0.7",
    "2001:db8::1",
    "[2001:db8::1]:443",
    "::ffff:10.0.0.1, 203.0.113.5",
    "unknown",
    "_hidden, 10.0.0.2",
    "garbage",
    "",
    "1.2.3.4:80",
    "10.0.0.1",
    "10.0.0.1, 10.0.0.2",
    " 203.0.113.7 ,  10.0.0.2 ",
    ",,203.0.113.8,,",
    "010.0.0.1, 10.0.0.2",
    "203.0.113.9\t",
    "for=192.0.2.88;proto=https;host=evil.example",
    "for=\"[2001:db8::2]:80\", for=10.0.0.3",
    "for=\"unterminated, for=198.51.100.4",
    "s3cret",
];

const OTHER_VALUES: [&str; 12] = [
    "https",
    "http",
    "HTTPS",
    "gopher",
    "evil.example",
    "a.example:8443",
    "bad host",
    "443",
    "1",
    "99999",
    "/admin",
    "1.1 proxy",
];

/// A spelling of `name`: as documented, lower, upper, mixed, with underscores or with dots
/// (PHP reads both as the header).
fn spell(rng: &mut Rng, name: &str) -> String {
    match rng.below(11) {
        0..=2 => name.to_string(),
        3 | 4 => name.to_ascii_lowercase(),
        5 => name.to_ascii_uppercase(),
        6 | 7 => name
            .chars()
            .map(|c| if rng.percent(50) { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect(),
        9 => name.replace('-', "~"),
        10 => name.replace('-', "."),
        _ => name.replace('-', "_"),
    }
}

fn value(rng: &mut Rng, name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if rng.percent(3) {
        // Long: thousands of trusted entries, then an address.
        return format!("{}203.0.113.9", "10.0.0.1, ".repeat(800 + rng.below(800)));
    }
    let not_an_address = lower.contains("proto")
        || lower.contains("host")
        || lower.contains("port")
        || lower.contains("prefix")
        || lower == "via";
    if not_an_address && rng.percent(70) {
        return rng.pick(&OTHER_VALUES).to_string();
    }
    rng.pick(&ADDRESSES).to_string()
}

/// One generated request. `proxy` chooses PROXY v1 headers for the PROXY listener.
fn generate(rng: &mut Rng, proxy: bool) -> Case {
    let from = if rng.percent(50) { TRUSTED } else { UNTRUSTED };
    let proxy_line = proxy.then(|| {
        rng.pick(&[
            "PROXY TCP4 10.1.2.3 127.0.0.1 5555 8080",
            "PROXY TCP4 198.51.100.7 127.0.0.1 5555 8080",
            "PROXY TCP4 127.0.0.20 127.0.0.1 5555 443",
            "PROXY TCP6 2001:db8::5 ::1 5555 8080",
            "PROXY UNKNOWN",
        ])
        .to_string()
    });
    let method = match rng.below(20) {
        0 => "HEAD",
        1 => "OPTIONS",
        2 => "DELETE",
        3 => "POST",
        4 => "PUT",
        5 if rng.percent(30) => "get",
        6 if rng.percent(30) => "FOO",
        _ => "GET",
    };
    let target = match rng.below(40) {
        0 => "http://evil.example/x",
        1 => "/{x}",
        2 => "/a#b",
        3 if method == "OPTIONS" => "*",
        4 => "/%7Bx%7D?q=1&r=%20",
        5 => "/json",
        6 => "/.trueip/healthz",
        7 => "/a/b;c=d?e=f:g@h",
        _ => "/app/page?x=1",
    };
    let version = match rng.below(30) {
        0 => "HTTP/1.0",
        1 if rng.percent(30) => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let mut lines: Vec<String> = Vec::new();
    match rng.below(12) {
        0 => {}
        1 => {
            lines.push("Host: a.example".into());
            lines.push("Host: b.example".into());
        }
        2 => lines.push(format!("{}: a.example", spell(rng, "Host"))),
        3 => lines.push("Host: bad host".into()),
        4 => lines.push("Host: evil.example:8443".into()),
        5 => lines.push("Host: a;for=6.6.6.6".into()),
        _ => lines.push("Host: app.example".into()),
    }
    for _ in 0..rng.below(7) {
        let name = *rng.pick(&FORWARDING);
        let spelled = spell(rng, name);
        let v = value(rng, name);
        lines.push(format!("{spelled}: {v}"));
        if rng.percent(15) {
            // Another line of the same header, maybe spelled differently.
            let again = spell(rng, name);
            let v = value(rng, name);
            lines.push(format!("{again}: {v}"));
        }
    }
    for _ in 0..rng.below(4) {
        lines.push(
            rng.pick(&[
                "User-Agent: curl/8.0",
                "Accept: */*",
                "Accept: application/json",
                "Cookie: a=1",
                "Cookie: b=2",
                "X-App: one",
                "x-app: two",
                "Accept-Encoding: gzip",
                "X-Empty:",
                "X-Tab: a\tb",
            ])
            .to_string(),
        );
    }
    let mut body = String::new();
    if rng.percent(20) {
        match rng.below(20) {
            0 => lines.push("Connection: X-Real-IP, X-Forwarded-For, Forwarded, keep-alive".into()),
            1 => lines.push("Connection: x_forwarded_for, Host, X-App".into()),
            2 => lines.push("Connection: close".into()),
            3 => lines.push("Keep-Alive: timeout=5".into()),
            4 => lines.push("TE: trailers".into()),
            5 => lines.push("Upgrade: websocket".into()),
            6 => lines.push("Expect: 100-continue".into()),
            7 => lines.push("Proxy-Connection: keep-alive".into()),
            8 => {
                lines.push("Transfer-Encoding: chunked".into());
                body.push_str("0\r\n\r\n");
            }
            9 => lines.push("Content-Length: 0".into()),
            10 => {
                lines.push("Content-Length: 0".into());
                lines.push("content-length: 0".into());
            }
            11 => {
                lines.push("Content-Length: 5".into());
                body.push_str("hello");
            }
            12 => lines.push("Content-Length: 99999999999999999999999".into()),
            13 => lines.push("Content-Length: -1".into()),
            14 => lines.push("Content-Length: 0, 0".into()),
            15 => lines.push("Trailer: x".into()),
            16 => lines.push("Content-Length: 00".into()),
            17 => {
                lines.push("Connection: Upgrade, HTTP2-Settings".into());
                lines.push("Upgrade: h2c".into());
                lines.push("HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA".into());
            }
            18 => lines.push("HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA".into()),
            _ => lines.push("Proxy-Authorization: Basic eA==".into()),
        }
    }
    if rng.percent(8) {
        match rng.below(9) {
            0 => lines.push("X-Bad: a\u{1}b".into()),
            1 => lines.push("X-Fold: a\r\n b".into()),
            2 => lines.push("Bad Name: x".into()),
            3 => lines.push("X-Sp : x".into()),
            4 => lines.push("X-Nul: a\u{0}b".into()),
            5 => lines.push("X-Forwarded-For: 1.2.3.4\rX-Real-IP: 5.6.7.8".into()),
            6 => lines.push("NoColon".into()),
            7 => lines.push("X-Del: a\u{7f}".into()),
            _ => {
                for i in 0..101 {
                    lines.push(format!("X-H{i}: v"));
                }
            }
        }
    }
    // X-Case goes anywhere among the lines; the id is filled in by the caller.
    let at = rng.below(lines.len() + 1);
    lines.insert(at, "X-Case: {id}".into());
    let eol = if rng.percent(5) { "\n" } else { "\r\n" };
    let mut head = format!("{method} {target} {version}{eol}");
    for l in &lines {
        head.push_str(l);
        head.push_str(eol);
    }
    head.push_str(eol);
    head.push_str(&body);
    let mut case = Case::new(from, proxy_line.as_deref(), &head);
    case.head_only = method == "HEAD";
    case
}

/// Hand-written requests: each known trick once, in its plainest form.
fn fixed(proxy: bool) -> Vec<Case> {
    let heads = [
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 198.51.100.77\r\nForwarded: for=192.0.2.88;proto=https\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nx_forwarded_for: 203.0.113.66\r\nX_REAL_IP: 1.1.1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For: 198.51.100.9\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nx-FORWARDED-for: 198.51.100.9, 10.0.0.9\r\nX-FORWARDED-PROTO: https\r\nx-forwarded-host: evil\r\nX-Forwarded-Port: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: X-Real-IP, X-Forwarded-For, Forwarded\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nCF-Connecting-IP: 1.1.1.1\r\nTrue-Client-IP: 2.2.2.2\r\nFastly-Client-IP: 3.3.3.3\r\nFly-Client-IP: 4.4.4.4\r\nX-Azure-ClientIP: 5.5.5.5\r\nCloudFront-Viewer-Address: 6.6.6.6:443\r\nX-Client-IP: 7.7.7.7\r\nX-Cluster-Client-IP: 8.8.8.8\r\nX-Custom-IP: 9.9.9.9\r\nX-Azure-FDID: x\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Case: {id}\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Case: {id}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nContent-Length: 18446744073709551616\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Fold: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Bad: \u{1}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For: \u{ff}\u{fe}1.2.3.4\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Origin-Verify: s3cret\r\nX-Real-IP: 198.51.100.4\r\nX-Forwarded-For: 198.51.100.5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Origin-Verify: wrong\r\nX-Real-IP: 198.51.100.4\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Origin-Verify: s3cret\r\nx-origin-verify: s3cret\r\nX-Real-IP: 198.51.100.4\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Origin-Verify: s3cret\r\nX_Origin_Verify: s3cret\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nForwarded: for=\"unterminated, for=198.51.100.4\r\nX-Forwarded-For: 198.51.100.5\r\n\r\n",
        "GET /a HTTP/1.0\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For: 203.0.113.66\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Real-IP: 203.0.113.66\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\nX-Case: {id}\nX-Forwarded-For: 203.0.113.66\n\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For:\r\nX-Real-IP:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\nX-Case: {id}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\u{ff}\r\nX-Case: {id}\r\n\r\n",
        // A Host that is not host[:port] stays out of the gateway's Forwarded.
        "GET / HTTP/1.1\r\nHost: a, for=6.6.6.6\r\nX-Case: {id}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\nX-Case: {id}\r\n\r\n",
        // `close` beside tokens: the client-IP ones are ignored, the others name lines
        // that stay with this hop; a line named `Close` too.
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: close, X-Real-IP, x-forwarded-for, X-App\r\nX-App: one\r\nX-Forwarded-For: 198.51.100.9\r\nX-Real-IP: 198.51.100.8\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: close\r\nClose: 1\r\nConnection: close\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n",
        // An h2c upgrade is not forwarded: the request goes on as plain HTTP/1.1.
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        // query:client and cookie:ip (`client_source_stripped`): one of each, two, spelled out.
        "GET /p?a=1&client=198.51.100.4&b=2 HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nCookie: s=1; ip=198.51.100.5; t=2\r\n\r\n",
        "GET /p?client=6.6.6.6&cl%69ent=198.51.100.4 HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nCookie: ip=198.51.100.5\r\nCookie: s=1; ip=6.6.6.6\r\n\r\n",
        "GET /p?client=%5B2001%3Adb8%3A%3A1%5D HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nCookie: s=\"q\"\r\n\r\n",
        // What the lean path hands to hyper: `Expect`, HTTP/1.0 keep-alive, `Connection`
        // tokens, a chunked body with trailers (which never go upstream).
        "POST / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nX-Forwarded-For: 6.6.6.6\r\n\r\nhello",
        "GET / HTTP/1.0\r\nHost: a\r\nX-Case: {id}\r\nConnection: keep-alive\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: Keep-Alive, TE\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-For\r\n\r\n5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
    ];
    let proxies: &[Option<&str>] = if proxy {
        &[
            Some("PROXY TCP4 10.1.2.3 127.0.0.1 5555 8080"),
            Some("PROXY TCP4 198.51.100.7 127.0.0.1 5555 8080"),
            Some("PROXY UNKNOWN"),
        ]
    } else {
        &[None]
    };
    let mut cases = Vec::new();
    for head in heads {
        for from in [UNTRUSTED, TRUSTED] {
            for p in proxies {
                cases.push(Case::new(from, *p, head));
            }
        }
    }
    cases
}

/// What one path made of a request: the status and the upstream's view.
type Outcome = (u16, Option<Seen>);

async fn through(gw: &Gateway, state: &Build, log: &Log, case: &Case, id: &str) -> Outcome {
    gw.server.switch(state);
    let bytes = replace_id(&case.bytes, id);
    let (status, _) = send(gw.addr, case.from, &bytes, case.head_only).await;
    let seen = log.lock().unwrap().remove(id);
    (status, seen)
}

fn replace_id(bytes: &[u8], id: &str) -> Vec<u8> {
    let pat = b"{id}";
    match bytes.windows(pat.len()).position(|w| w == pat) {
        Some(i) => [&bytes[..i], id.as_bytes(), &bytes[i + pat.len()..]].concat(),
        None => bytes.to_vec(),
    }
}

fn describe(o: &Outcome) -> String {
    let mut out = format!("status {}", o.0);
    match &o.1 {
        None => out.push_str(", upstream saw nothing"),
        Some(s) => {
            let (m, t, lines) = s.normalized();
            let _ = write!(out, ", upstream saw {m} {t}");
            for (n, v) in lines {
                let _ = write!(out, "\n      {n}: {}", show(&v));
            }
        }
    }
    out
}

/// Runs every case through both paths; returns the differences and how many requests the
/// lean path forwarded.
async fn compare(toml_template: &str, proxy: bool, seed: u64) -> (Vec<String>, usize, usize) {
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    let toml = toml_template.replace("{upstream}", &up.to_string());
    let gw = gateway(&toml).await;
    let mut rng = Rng(seed);
    let mut cases = fixed(proxy);
    for _ in 0..GENERATED {
        cases.push(generate(&mut rng, proxy));
    }
    let mut diffs = Vec::new();
    let mut lean_taken = 0;
    for (i, case) in cases.iter().enumerate() {
        let a = through(&gw, &gw.lean, &log, case, &format!("{i}")).await;
        let b = through(&gw, &gw.hyper, &log, case, &format!("{i}")).await;
        if let Some(s) = &b.1 {
            assert!(!s.lean(), "the hyper build served a request on the lean path");
        }
        if a.1.as_ref().is_some_and(Seen::lean) {
            lean_taken += 1;
        }
        // Only the gateway writes a signed client header, and its own always verifies:
        // one that does not is a client's that got through. No trailer goes upstream.
        for (path, o) in [("lean", &a), ("hyper", &b)] {
            if let Some(s) = &o.1
                && let Some((n, _)) = s.lines.iter().find(|(n, _)| n.starts_with("trailer:"))
            {
                diffs.push(format!("case {i}: the {path} build sent a client's {n} upstream"));
            }
            if let Some(s) = &o.1
                && let Some((_, v)) = s
                    .normalized()
                    .2
                    .iter()
                    .find(|(n, v)| n == "trueip-signature" && v.starts_with(b"rejected"))
            {
                diffs.push(format!(
                    "case {i}: the {path} build let a client's signed header through ({}):\n    {}",
                    show(v),
                    show(&case.bytes)
                ));
            }
        }
        let same =
            a.0 == b.0 && a.1.as_ref().map(Seen::normalized) == b.1.as_ref().map(Seen::normalized);
        if !same {
            diffs.push(format!(
                "case {i} from {}:\n    {}\n  lean build:  {}\n  hyper build: {}",
                case.from,
                show(&case.bytes),
                describe(&a),
                describe(&b)
            ));
        }
    }
    (diffs, lean_taken, cases.len())
}

fn seed() -> u64 {
    std::env::var("TRUEIP_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7275_6569_7000_0001)
}

async fn check(name: &str, toml: &str, proxy: bool) {
    let seed = seed();
    let (diffs, lean, total) = compare(toml, proxy, seed).await;
    eprintln!("{name}: {total} requests, {lean} forwarded by the lean path, seed {seed}");
    assert!(
        diffs.is_empty(),
        "{name}: {} of {total} requests reached the upstream differently (seed {seed}):\n{}",
        diffs.len(),
        diffs.iter().take(8).cloned().collect::<Vec<_>>().join("\n\n")
    );
    assert!(
        lean * 5 >= total,
        "{name}: only {lean} of {total} requests took the lean path: the test lost its point"
    );
}

const TRUST: &str = r#"
[client_ip]
trusted = ["127.0.0.16/28", "10.0.0.0/8"]
"#;

/// Both ways the gateway writes X-Forwarded-For and Forwarded, as `[headers]` lines.
const LIST_MODES: [(&str, &str); 2] =
    [("replace", ""), ("append", "x_forwarded_for = \"append\"\nforwarded = \"append\"\n")];

/// `rightmost-untrusted` behind [`TRUST`], with `headers` as its `[headers]` table, in
/// front of a recording upstream: the upstream's log, and the gateway.
async fn list_gateway(headers: &str) -> (Log, Gateway) {
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    let toml = format!(
        "{TRUST}strategy = \"rightmost-untrusted\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
         [upstream]\nurl = \"http://{up}\"\n[headers]\n{headers}"
    );
    (log, gateway(&toml).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_mode_behind_trusted_proxies() {
    let toml = format!(
        r#"{TRUST}strategy = "rightmost-untrusted"
[[listen]]
address = "127.0.0.1:1"
[upstream]
url = "http://{{upstream}}"
[headers]
strip = ["X-Custom-IP"]
"#
    );
    check("replace", &toml, false).await;
}

/// Signed client headers that verified at the upstream (only the `signed` configuration
/// writes them).
static VERIFIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The key of the `signed` configuration.
const SIGNING_KEY: &str = "differential-test-key-differential-test-key";

/// `[upstream] sign`: both paths sign the same claim for the request the upstream
/// receives (checked by verifying it there), and neither lets a client's through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_client_header() {
    let dir = std::env::temp_dir().join(format!("trueip-diff-sign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("trueip.key");
    std::fs::write(&key, SIGNING_KEY).unwrap();
    let toml = format!(
        r#"{TRUST}strategy = "rightmost-untrusted"
[[listen]]
address = "127.0.0.1:1"
[upstream]
url = "http://{{upstream}}"
sign = {{ key_file = {key:?} }}
[headers]
strip = ["X-Custom-IP"]
"#,
        key = key.display().to_string()
    );
    check("signed", &toml, false).await;
    assert!(
        VERIFIED.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no request reached the upstream with a signed client header"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_mode_from_forwarded() {
    let toml = format!(
        r#"{TRUST}strategy = "rightmost-untrusted"
from = "forwarded"
[[listen]]
address = "127.0.0.1:1"
[upstream]
url = "http://{{upstream}}"
[headers]
x_real_ip = false
x_forwarded_for = "append"
forwarded = "append"
x_forwarded_port = false
x_forwarded_host = false
"#
    );
    check("append", &toml, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_address_header_with_an_origin_secret() {
    let toml = format!(
        r#"{TRUST}strategy = ["header:X-Real-IP", "rightmost-untrusted"]
origin_secret = {{ header = "X-Origin-Verify", value = "s3cret" }}
[[listen]]
address = "127.0.0.1:1"
[upstream]
url = "http://{{upstream}}"
[headers]
x_forwarded_proto = false
"#
    );
    check("origin-secret", &toml, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_source_stripped() {
    let toml = format!(
        r#"{TRUST}strategy = ["query:client", "cookie:ip", "rightmost-untrusted"]
[[listen]]
address = "127.0.0.1:1"
[upstream]
url = "http://{{upstream}}"
[headers]
strip_client_source = true
"#
    );
    check("client-source", &toml, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_protocol_balancer() {
    let toml = r#"
[client_ip]
trusted = ["10.0.0.0/8", "127.0.0.16/28"]
strategy = "rightmost-untrusted"
proxy_protocol_from = ["127.0.0.0/8"]
[[listen]]
address = "127.0.0.1:1"
proxy_protocol = "v1"
[upstream]
url = "http://{upstream}"
"#;
    check("proxy-protocol", toml, true).await;
}

/// Whoami mode: both paths answer with the same page, in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_pages_are_the_same_on_both_paths() {
    let toml = format!(
        "{TRUST}strategy = \"rightmost-untrusted\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n"
    );
    let gw = gateway(&toml).await;
    let mut rng = Rng(seed());
    let mut diffs = Vec::new();
    let mut cases = fixed(false);
    for _ in 0..GENERATED {
        cases.push(generate(&mut rng, false));
    }
    for (i, case) in cases.iter_mut().enumerate() {
        // Every format: the path chooses, and Accept lines (in the generated cases) too.
        let path = ["/json", "/text", "/", "/app/page?x=1"][i % 4];
        let text = String::from_utf8_lossy(&case.bytes).into_owned();
        if let Some(sp) = text.find(' ')
            && let Some(end) = text[sp + 1..].find(' ')
            && text[sp + 1..sp + 1 + end].starts_with('/')
        {
            let mut bytes = case.bytes[..sp + 1].to_vec();
            bytes.extend_from_slice(path.as_bytes());
            bytes.extend_from_slice(&case.bytes[sp + 1 + end..]);
            case.bytes = bytes;
        }
        let mut answers = Vec::new();
        for state in [&gw.lean, &gw.hyper] {
            gw.server.switch(state);
            let bytes = replace_id(&case.bytes, &i.to_string());
            let (port, (status, body)) =
                send_from(gw.addr, case.from, &bytes, case.head_only).await;
            // The client's port differs between the two connections.
            let body = String::from_utf8_lossy(&body).replace(&port.to_string(), "PORT");
            answers.push((status, body.into_bytes()));
        }
        if answers[0] != answers[1] {
            diffs.push(format!(
                "case {i}:\n    {}\n  lean:  {} {}\n  hyper: {} {}",
                show(&case.bytes),
                answers[0].0,
                show(&answers[0].1),
                answers[1].0,
                show(&answers[1].1)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} whoami answers differ:\n{}",
        diffs.len(),
        diffs.iter().take(5).cloned().collect::<Vec<_>>().join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A connection handed to hyper between two requests

/// Sends `requests` one after another on one connection from `from`; what each came to.
async fn sequence_through(
    gw: &Gateway,
    state: &Build,
    log: &Log,
    from: Ipv4Addr,
    requests: &[&str],
    run: usize,
) -> Vec<Outcome> {
    gw.server.switch(state);
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let mut s = sock.connect(gw.addr).await.unwrap();
    let mut outcomes = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let id = format!("seq-{run}-{i}");
        let case = Case::new(from, None, request);
        let bytes = replace_id(&case.bytes, &id);
        let (status, _) = answer(&mut s, &bytes, case.head_only).await;
        let seen = log.lock().unwrap().remove(&id);
        outcomes.push((status, seen));
    }
    outcomes
}

/// A keep-alive connection whose first request is plain (the lean path serves it) and
/// whose second is not (a body, an underscore spelling, a hop-by-hop `Connection` list,
/// an absolute-form target): the lean path hands the connection to hyper at the request
/// boundary, with the bytes it already read. Every request, before, at and after the
/// hand-over, must reach the upstream exactly as when hyper serves the whole connection,
/// forged client-IP headers included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_handed_to_hyper_mid_way_is_treated_the_same() {
    let plain = "GET /first HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 198.51.100.77\r\nForwarded: for=192.0.2.88\r\n\r\n";
    let after = "GET /third HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nX-Forwarded-For: 198.51.100.9, 10.0.0.9\r\n\r\n";
    let handed = [
        "POST /second HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nContent-Length: 5\r\nX-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 198.51.100.77\r\n\r\nhello",
        "GET /second HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nx_forwarded_for: 203.0.113.66\r\nX-Real-IP: 198.51.100.77\r\n\r\n",
        "GET /second HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nConnection: X-Forwarded-For, X-Real-IP\r\nX-Forwarded-For: 203.0.113.66\r\n\r\n",
        "GET http://a/second HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nForwarded: for=192.0.2.88\r\nX-Forwarded-For: 203.0.113.66\r\n\r\n",
        "POST /second HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nX-Real-IP: 198.51.100.77\r\n\r\nhello",
        "GET /second HTTP/1.0\r\nHost: a\r\nX-Case: {id}\r\nConnection: keep-alive\r\nX-Forwarded-For: 203.0.113.66\r\n\r\n",
        "POST /second HTTP/1.1\r\nHost: a\r\nX-Case: {id}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    ];
    for (mode, headers) in LIST_MODES {
        let (log, gw) = list_gateway(headers).await;
        let mut run = 0;
        for second in handed {
            for from in [UNTRUSTED, TRUSTED] {
                let requests = [plain, second, after];
                let lean = sequence_through(&gw, &gw.lean, &log, from, &requests, run).await;
                let hyper = sequence_through(&gw, &gw.hyper, &log, from, &requests, run + 1).await;
                run += 2;
                let seen = |o: &Outcome| o.1.as_ref().map(Seen::normalized);
                for (i, (a, b)) in lean.iter().zip(&hyper).enumerate() {
                    assert!(
                        a.0 == b.0 && seen(a) == seen(b),
                        "{mode}, from {from}, request {i} of {:?}:\n  lean build:  {}\n  hyper build: {}",
                        second.lines().next(),
                        describe(a),
                        describe(b)
                    );
                    assert_eq!(a.0, 200, "{mode}, from {from}, request {i}: {}", describe(a));
                }
                // The point of the test: the lean path took the first request, hyper
                // the second and the rest of the connection.
                let lean_took: Vec<bool> =
                    lean.iter().map(|o| o.1.as_ref().is_some_and(Seen::lean)).collect();
                assert_eq!(lean_took, [true, false, false], "{mode}, from {from}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway's own Forwarded and X-Forwarded-Host

/// Sends one request from an untrusted client through one build; what the upstream saw.
async fn seen_through(gw: &Gateway, state: &Build, log: &Log, head: &str, id: &str) -> Seen {
    let case = Case::new(UNTRUSTED, None, head);
    let (status, seen) = through(gw, state, log, &case, id).await;
    let seen = seen.unwrap_or_else(|| panic!("{id}: status {status}, the upstream saw nothing"));
    assert_eq!(status, 200, "{id}: {}", describe(&(status, Some(seen.clone()))));
    seen
}

fn lines_of<'a>(seen: &'a Seen, name: &str) -> Vec<&'a [u8]> {
    seen.lines
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// `Host: a, for=6.6.6.6` used to become `forwarded: for=127.0.0.1;proto=http;host="a,
/// for=6.6.6.6"`: correct RFC 7239 quoting, but an app that splits `Forwarded` on `,` and
/// `;` (most do) reads `for=6.6.6.6`. Only a host that is a valid `host[:port]` goes into
/// `Forwarded` and `X-Forwarded-Host`; any other is left out (the Host line itself is the
/// app's and goes through unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_forwarded_syntax_stays_out_of_forwarded() {
    let bad = [
        "a, for=6.6.6.6",
        "a,for=6.6.6.6",
        "a;for=6.6.6.6",
        "a\";for=6.6.6.6",
        "for=6.6.6.6",
        "user@a.example",
        "a.example:99999",
        "a.example:",
        "a.example:8o",
        "[::1",
        "[not-ipv6]:80",
        "a/b",
        "a%2C",
    ];
    let good = [
        "a.example",
        "a.example:8443",
        "127.0.0.1:8080",
        "[2001:db8::1]:443",
        "[::1]",
        "under_score.example",
    ];
    for (mode, headers) in LIST_MODES {
        let (log, gw) = list_gateway(headers).await;
        for (build, state) in [("lean", &gw.lean), ("hyper", &gw.hyper)] {
            for (i, host) in bad.iter().chain(&good).enumerate() {
                let valid = good.contains(host);
                let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Case: {{id}}\r\n\r\n");
                let id = format!("host-{mode}-{build}-{i}");
                let seen = seen_through(&gw, state, &log, &head, &id).await;
                let forwarded = lines_of(&seen, "forwarded");
                assert_eq!(forwarded.len(), 1, "{id} {host:?}: {forwarded:?}");
                let forwarded = String::from_utf8_lossy(forwarded[0]).into_owned();
                let xfh = lines_of(&seen, "x-forwarded-host");
                if valid {
                    assert!(
                        forwarded.ends_with(&format!(";host={host}"))
                            || forwarded.ends_with(&format!(";host=\"{host}\"")),
                        "{id} {host:?}: {forwarded}"
                    );
                    assert_eq!(xfh, [host.as_bytes()], "{id} {host:?}");
                } else {
                    assert_eq!(
                        forwarded, "for=127.0.0.1;proto=http",
                        "{id} {host:?}: an invalid host went into Forwarded"
                    );
                    assert!(xfh.is_empty(), "{id} {host:?}: X-Forwarded-Host {xfh:?}");
                }
                // The app still gets its Host line as sent.
                assert_eq!(lines_of(&seen, "host"), [host.as_bytes()], "{id}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every client-IP header

/// Client-IP headers that frameworks read and that once passed from any client (Rails reads
/// `Client-IP`, django-ipware `Forwarded-For` and `X-Forwarded`, ...): listed here by hand so
/// that a name dropped from the table fails this test.
const READ_BY_FRAMEWORKS: [&str; 16] = [
    "Client-IP",
    "X-Forwarded",
    "Forwarded-For",
    "X-Original-Forwarded-For",
    "X-Envoy-External-Address",
    "X-Originating-IP",
    "X-Remote-IP",
    "X-Remote-Addr",
    "X-ProxyUser-Ip",
    "X-Cluster-Client-IP",
    "CF-Connecting-IPv6",
    "True-Client-IP",
    "X-True-Client-IP",
    "X-Client-IP",
    "Proxy-Client-IP",
    "WL-Proxy-Client-IP",
];

const FORGED: &str = "6.6.6.6";

/// Every client-IP header (the hand list above and the whole table), in its own spelling and
/// with underscores, sent by an untrusted client: none reaches the upstream with the forged
/// value, on either path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_ip_header_from_an_untrusted_client_is_stripped_on_both_paths() {
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    let toml = format!(
        "{TRUST}strategy = \"rightmost-untrusted\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
         [upstream]\nurl = \"http://{up}\"\n"
    );
    let gw = gateway(&toml).await;
    let table: Vec<String> =
        trueip::headers::names::FORWARDING.iter().map(|h| h.as_str().to_string()).collect();
    let names = READ_BY_FRAMEWORKS.iter().map(|n| n.to_string()).chain(table);
    let mut lean_served = 0;
    for (i, name) in names.enumerate() {
        for spelled in [name.clone(), name.replace('-', "_")] {
            for (build, state) in [("lean", &gw.lean), ("hyper", &gw.hyper)] {
                let head = format!(
                    "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {{id}}\r\n{spelled}: {FORGED}\r\n\r\n"
                );
                let id = format!("strip-{build}-{i}-{spelled}");
                let seen = seen_through(&gw, state, &log, &head, &id).await;
                lean_served += usize::from(seen.lean());
                for (n, v) in &seen.lines {
                    assert!(
                        !String::from_utf8_lossy(v).contains(FORGED),
                        "{build}: {spelled} from an untrusted client reached the upstream as {n}: {}",
                        String::from_utf8_lossy(v)
                    );
                }
            }
        }
    }
    assert!(lean_served > 0, "the lean path served none of them");
}

/// A header kept on purpose (`[headers] keep`) goes through from anyone, on both paths; the
/// others are still stripped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ip_header_kept_on_purpose_passes_on_both_paths() {
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    let toml = format!(
        "{TRUST}strategy = \"rightmost-untrusted\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
         [upstream]\nurl = \"http://{up}\"\n[headers]\nkeep = [\"Client-IP\"]\n"
    );
    let gw = gateway(&toml).await;
    for (build, state) in [("lean", &gw.lean), ("hyper", &gw.hyper)] {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Case: {{id}}\r\nClient-IP: 203.0.113.1\r\nX-Forwarded: {FORGED}\r\n\r\n"
        );
        let id = format!("keep-{build}");
        let seen = seen_through(&gw, state, &log, &head, &id).await;
        assert_eq!(lines_of(&seen, "client-ip"), [b"203.0.113.1"], "{build}");
        assert!(lines_of(&seen, "x-forwarded").is_empty(), "{build}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 beside HTTP/1.1

/// A request that HTTP/1.1 and HTTP/2 can both carry: no hop-by-hop or framing lines (h2
/// refuses them), one `Host` (h2's `:authority`), values without surrounding whitespace
/// (HTTP/1.1 trims it, h2 keeps it), names that are tokens.
#[derive(Clone, Debug)]
struct Twin {
    from: Ipv4Addr,
    method: &'static str,
    target: &'static str,
    host: &'static str,
    /// Lines in order, `X-Case` among them; values are bytes (obs-text included).
    lines: Vec<(String, Vec<u8>)>,
}

impl Twin {
    fn http1(&self, id: &str) -> Vec<u8> {
        let mut head =
            format!("{} {} HTTP/1.1\r\nHost: {}\r\n", self.method, self.target, self.host)
                .into_bytes();
        for (n, v) in &self.lines {
            head.extend_from_slice(n.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(&replace_id(v, id));
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }
}

/// One generated [`Twin`]: forged client-IP lines in every spelling (several lines of one
/// name, spelled differently), among 0 to 40 other lines, so that a request's line count
/// falls on both sides of the 24 below which header maps are scanned rather than hashed.
fn twin(rng: &mut Rng) -> Twin {
    let from = if rng.percent(50) { TRUSTED } else { UNTRUSTED };
    let method = *rng.pick(&["GET", "GET", "GET", "HEAD", "DELETE", "OPTIONS"]);
    let target = *rng.pick(&["/app/page?x=1", "/", "/a/b;c=d?e=f:g@h", "/%7Bx%7D?q=1&r=%20"]);
    let host = *rng.pick(&["app.example", "a.example:8443", "[2001:db8::1]:8443", "evil.example"]);
    let mut forged: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..rng.below(8) {
        let name = *rng.pick(&FORWARDING);
        for _ in 0..=usize::from(rng.percent(25)) + usize::from(rng.percent(10)) {
            let spelled = spell(rng, name);
            let v: Vec<u8> = value(rng, name)
                .trim_matches([' ', '\t'])
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect();
            forged.push((spelled, v));
        }
    }
    // The origin secret (right in most cases) and X-Real-IP, once or twice, often: the
    // `header:X-Real-IP` strategy then reads the lines, and must see every one of them.
    if rng.percent(60) {
        let v: &[u8] = if rng.percent(80) { b"s3cret" } else { b"s3cre" };
        forged.push((spell(rng, "X-Origin-Verify").replace(['_', '.', '~'], "-"), v.to_vec()));
    }
    for _ in 0..rng.below(3) {
        let v = *rng.pick(&["198.51.100.4", "203.0.113.66", "10.0.0.1", "2001:db8::1"]);
        forged.push((spell(rng, "X-Real-IP").replace(['_', '.', '~'], "-"), v.as_bytes().to_vec()));
    }
    let filler = match rng.below(4) {
        0 => 0,
        1 => rng.below(24),
        2 => 20 + rng.below(8),
        _ => 24 + rng.below(20),
    };
    let mut lines: Vec<(String, Vec<u8>)> = (0..filler)
        .map(|i| {
            let name = match i % 5 {
                0 => format!("X-Fill-{i}"),
                1 => "Accept".to_string(),
                2 => format!("x-forwarded-fill-{i}"),
                3 => "X-App".to_string(),
                _ => format!("X-Real-IP-{i}"),
            };
            (name, b"v".to_vec())
        })
        .collect();
    if rng.percent(30) {
        lines.push(("Cookie".into(), b"a=1; ip=198.51.100.5".to_vec()));
    }
    for f in forged {
        let at = rng.below(lines.len() + 1);
        lines.insert(at, f);
    }
    let at = rng.below(lines.len() + 1);
    lines.insert(at, ("X-Case".into(), b"{id}".to_vec()));
    Twin { from, method, target, host, lines }
}

/// How an HTTP/2 request ends: on its headers (the bare exchange takes it), or with an
/// empty DATA frame (hyper's client takes it).
#[derive(Clone, Copy, Debug)]
enum H2End {
    Headers,
    EmptyData,
}

/// Sends `twin` over cleartext HTTP/2 from its address; the status (0: none).
async fn send_h2(addr: SocketAddr, twin: &Twin, id: &str, end: H2End) -> u16 {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(twin.from.into(), 0)).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let Ok((client, conn)) = h2::client::handshake(tcp).await else {
        return 0;
    };
    tokio::spawn(conn);
    let Ok(mut client) = client.ready().await else {
        return 0;
    };
    let mut req = http::Request::builder()
        .method(twin.method)
        .uri(format!("http://{}{}", twin.host, twin.target));
    for (n, v) in &twin.lines {
        req = req.header(n.as_str(), http::HeaderValue::from_bytes(&replace_id(v, id)).unwrap());
    }
    let Ok((resp, mut send)) =
        client.send_request(req.body(()).unwrap(), matches!(end, H2End::Headers))
    else {
        return 0;
    };
    if let H2End::EmptyData = end {
        // hyper's client may send a bodiless GET without waiting for the body, and the
        // gateway answer and reset the stream first: the answer still counts.
        let _ = send.send_data(bytes::Bytes::new(), true);
    }
    match tokio::time::timeout(Duration::from_secs(5), resp).await {
        Ok(Ok(resp)) => resp.status().as_u16(),
        _ => 0,
    }
}

/// The upstream's view without the lines that tell one framing of an empty body from
/// another (hyper's client frames a body the bare exchange never sends).
fn unframed(seen: &Seen) -> (String, String, Vec<(String, Vec<u8>)>) {
    let (m, t, mut lines) = seen.normalized();
    lines.retain(|(n, _)| n != "content-length" && n != "transfer-encoding");
    (m, t, lines)
}

/// The core policy of each configuration of
/// [`h2_requests_reach_the_upstream_as_their_http1_twins_do`], built without the gateway.
fn oracle_policy(name: &str) -> trueip::Policy {
    let mut b = trueip::Policy::builder()
        .trust_str("127.0.0.16/28")
        .unwrap()
        .trust_str("10.0.0.0/8")
        .unwrap();
    match name {
        "origin-secret" => {
            b = b
                .strategy_str("header:X-Real-IP")
                .unwrap()
                .strategy_str("rightmost-untrusted")
                .unwrap()
                .origin_secret(trueip::OriginSecret::new("X-Origin-Verify", "s3cret").unwrap());
        }
        "append" => {
            b = b
                .strategy_str("rightmost-untrusted")
                .unwrap()
                .from_list(trueip::ListHeader::Forwarded);
        }
        _ => b = b.strategy_str("rightmost-untrusted").unwrap(),
    }
    b.build().unwrap()
}

/// An HTTP/2 request and its HTTP/1.1 twin reach the upstream alike: the same lines, byte
/// for byte (names lower-cased), the same status, through the lean path, hyper's
/// HTTP/1.1 path, the bare exchange and hyper's client. The HTTP/2 requests are read
/// into an `http::HeaderMap`, whose lines the core and the header rules scan (up to 24)
/// or look up (past 24): forged client-IP lines, repeated and spelled in every case, fall
/// on both sides, under a list walk, an origin secret with `header:X-Real-IP`, and the
/// append mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_requests_reach_the_upstream_as_their_http1_twins_do() {
    let configs = [
        (
            "replace",
            format!(
                "{TRUST}strategy = \"rightmost-untrusted\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
                 [upstream]\nurl = \"http://{{upstream}}\"\n[headers]\nstrip = [\"X-Custom-IP\"]\n"
            ),
        ),
        (
            "origin-secret",
            format!(
                "{TRUST}strategy = [\"header:X-Real-IP\", \"rightmost-untrusted\"]\n\
                 origin_secret = {{ header = \"X-Origin-Verify\", value = \"s3cret\" }}\n\
                 [[listen]]\naddress = \"127.0.0.1:1\"\n[upstream]\nurl = \"http://{{upstream}}\"\n"
            ),
        ),
        (
            "append",
            format!(
                "{TRUST}strategy = \"rightmost-untrusted\"\nfrom = \"forwarded\"\n\
                 [[listen]]\naddress = \"127.0.0.1:1\"\n[upstream]\nurl = \"http://{{upstream}}\"\n\
                 [headers]\nx_forwarded_for = \"append\"\nforwarded = \"append\"\n"
            ),
        ),
    ];
    let seed = seed();
    for (name, template) in configs {
        let oracle = oracle_policy(name);
        let log: Log = Arc::default();
        let up = upstream(log.clone()).await;
        let gw = gateway(&template.replace("{upstream}", &up.to_string())).await;
        let mut rng = Rng(seed);
        let (mut diffs, mut wide, mut lean_taken) = (Vec::new(), 0, 0);
        for i in 0..GENERATED {
            let case = twin(&mut rng);
            wide += usize::from(case.lines.len() + 1 > 24);
            let id = |way: &str| format!("{name}-{i}-{way}");
            let mut ways: Vec<(&str, Outcome)> = Vec::new();
            for (way, state) in [("lean", &gw.lean), ("hyper", &gw.hyper)] {
                gw.server.switch(state);
                let bytes = case.http1(&id(way));
                let (status, _) = send(gw.addr, case.from, &bytes, case.method == "HEAD").await;
                ways.push((way, (status, log.lock().unwrap().remove(&id(way)))));
            }
            gw.server.switch(&gw.lean);
            for (way, end) in [("bare", H2End::Headers), ("h2-hyper", H2End::EmptyData)] {
                let status = send_h2(gw.addr, &case, &id(way), end).await;
                ways.push((way, (status, log.lock().unwrap().remove(&id(way)))));
            }
            lean_taken += usize::from(ways[0].1.1.as_ref().is_some_and(Seen::lean));
            // The decision itself, from the core reading the lines one by one (no header
            // map): the `X-Real-IP` every way must have written.
            let mut lines: Vec<(String, Vec<u8>)> =
                vec![("Host".into(), case.host.as_bytes().to_vec())];
            lines.extend(case.lines.iter().cloned());
            let peer = trueip::addr::parse_node(case.from.to_string().as_bytes()).unwrap();
            let decided = oracle.resolve(&trueip::Connection::from_peer(peer), lines.as_slice());
            let want = decided.client.ip().map(|ip| ip.to_string().into_bytes());
            for (way, o) in &ways {
                if let Some(seen) = &o.1 {
                    let got: Vec<&[u8]> = lines_of(seen, "x-real-ip");
                    if got != want.as_deref().into_iter().collect::<Vec<_>>() {
                        diffs.push(format!(
                            "{name} case {i} from {}, {way}: x-real-ip {:?}, the core decided {:?}:\n    {}",
                            case.from,
                            got.iter().map(|v| show(v)).collect::<Vec<_>>(),
                            want.as_deref().map(show),
                            show(&case.http1("ID"))
                        ));
                    }
                }
            }
            let (first, rest) = ways.split_first().unwrap();
            for (way, o) in rest {
                if o.0 != first.1.0
                    || o.1.as_ref().map(unframed) != first.1.1.as_ref().map(unframed)
                {
                    diffs.push(format!(
                        "{name} case {i} from {}, {way} beside lean:\n    {}\n  lean: {}\n  {way}: {}",
                        case.from,
                        show(&case.http1("ID")),
                        describe(&first.1),
                        describe(o)
                    ));
                }
            }
        }
        assert!(
            diffs.is_empty(),
            "{} differences (seed {seed}):\n{}",
            diffs.len(),
            diffs.iter().take(6).cloned().collect::<Vec<_>>().join("\n\n")
        );
        assert!(wide * 5 >= GENERATED, "{name}: only {wide} requests over 24 lines");
        assert!(lean_taken * 10 >= GENERATED, "{name}: the lean path took only {lean_taken}");
    }
}

// ---------------------------------------------------------------------------------------------
// Responses: what the client reads

/// Upstream answers by target (`/r/NAME`), each as the bytes an upstream wrote, and
/// whether it closes after: framing a reader could take two ways, versions, bodiless
/// statuses, hop-by-hop lines, bodies broken off.
const ANSWERS: [(&str, &[u8], bool); 36] = [
    ("length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello", false),
    ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("chunked-case", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("chunked-ext", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n", false),
    // Transfer codings but `chunked` alone: a coding left on the bytes and its label lost,
    // or a body read twice.
    ("gzip-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("gzip-lines", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello", true),
    ("chunked-twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("identity", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", true),
    ("te-empty", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\nhello", true),
    // An HTTP/1.0 upstream, with a length and until it closes.
    ("http10", b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", true),
    ("http10-close", b"HTTP/1.0 200 OK\r\n\r\nhello", true),
    ("http10-keep", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", false),
    ("http11-close", b"HTTP/1.1 200 OK\r\n\r\nhello", true),
    // Statuses without a body.
    ("304", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n", false),
    ("304-chunked", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: \"x\"\r\n\r\n", false),
    ("204", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false),
    ("reason", b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok", false),
    ("no-reason", b"HTTP/1.1 404 \r\nContent-Length: 2\r\n\r\nno", false),
    ("interim", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    // Hop-by-hop lines and those `Connection` names.
    ("hop", b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nX-Secret: 1\r\nProxy-Connection: x\r\nTrailer: X-T\r\nUpgrade: h2c\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok", false),
    ("trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", false),
    ("te-and-length", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true),
    // Bodies broken off: at the first chunk line, at a later one, by a close.
    ("bad-first-chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", true),
    ("bad-second-chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nx\r\n0\r\n\r\n", true),
    ("bad-chunk-end", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", true),
    ("short-length", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", true),
    ("short-chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhello", true),
    // Statuses and lines off the common path.
    ("zero", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
    ("odd-status", b"HTTP/1.1 599 Custom\r\nContent-Length: 2\r\n\r\nok", false),
    ("dated", b"HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 04:00:00 GMT\r\nContent-Length: 2\r\n\r\nok", false),
    ("upstream-close", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true),
    ("past-length", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", true),
    ("obs-text", b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nX-Empty:\r\nContent-Length: 2\r\n\r\nok", false),
    ("space-name", b"HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: 2\r\n\r\nok", true),
    ("interim-204", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false),
];

/// An upstream that answers each request from [`ANSWERS`] by its target.
async fn answering_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let (seen, used, _, _) = loop {
                        if let Some(parsed) = parse_request(&buf) {
                            break parsed;
                        }
                        match s.read(&mut tmp).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                            _ => return,
                        }
                    };
                    buf.drain(..used);
                    let name = seen.target.trim_start_matches("/r/");
                    let Some(&(_, bytes, close)) = ANSWERS.iter().find(|a| a.0 == name) else {
                        return;
                    };
                    // A head-only answer where the request asked for one.
                    let bytes = if seen.method == "HEAD" {
                        let end = bytes.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap();
                        &bytes[..end + 4]
                    } else {
                        bytes
                    };
                    if s.write_all(bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// How the client reads a response body (RFC 9112 §6.3).
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// How a response body ended for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// As its framing said.
    Whole,
    /// The connection closed first.
    Cut,
    /// Nothing more came for a second.
    Stalled,
}

/// A response as its reader takes it: version, status, reason, header lines grouped by
/// lower-cased name (a `date` line's value left out), the body with its framing taken off, how it ended.
/// Two answers alike here mean the same to any client, however each path framed its
/// chunks or spelled its names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Read {
    version: u8,
    status: u16,
    reason: String,
    /// Values and body as text (every answer here is ASCII), for a readable failure.
    lines: Vec<(String, String)>,
    body: String,
    end: End,
}

/// Reads one response from `s` (to a `HEAD` request when `head_only`); `None` when the
/// connection closed or stalled before a whole head came.
async fn read_response(s: &mut TcpStream, head_only: bool) -> Option<Read> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let mut closed = false;
    let mut more = async |buf: &mut Vec<u8>, closed: &mut bool| -> bool {
        if *closed {
            return false;
        }
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&tmp[..n]);
                true
            }
            Ok(_) => {
                *closed = true;
                false
            }
            Err(_) => false,
        }
    };
    let (mut read, used, framing) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut slots);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
            let mut lines: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into()))
                .map(|(n, v)| if n == "date" { (n, "(a date)".into()) } else { (n, v) })
                .collect();
            lines.sort_by(|a, b| a.0.cmp(&b.0));
            let status = resp.code.unwrap_or(0);
            let value = |name: &str| lines.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            let framing = if head_only || status == 204 || status == 304 {
                Framing::Length(0)
            } else if value("transfer-encoding").is_some() {
                Framing::Chunked
            } else {
                match value("content-length") {
                    Some(v) => Framing::Length(v.trim().parse().unwrap_or(0)),
                    None => Framing::Close,
                }
            };
            let read = Read {
                version: resp.version.unwrap_or(9),
                status,
                reason: resp.reason.unwrap_or("").to_owned(),
                lines,
                body: String::new(),
                end: End::Whole,
            };
            break (read, n, framing);
        }
        if !more(&mut buf, &mut closed).await {
            return None;
        }
    };
    buf.drain(..used);
    let ended = |closed: bool| if closed { End::Cut } else { End::Stalled };
    match framing {
        Framing::Length(len) => loop {
            if buf.len() >= len {
                read.body = String::from_utf8_lossy(&buf[..len]).into();
                return Some(read);
            }
            if !more(&mut buf, &mut closed).await {
                read.body = String::from_utf8_lossy(&buf).into();
                read.end = ended(closed);
                return Some(read);
            }
        },
        Framing::Close => loop {
            if !more(&mut buf, &mut closed).await {
                read.body = String::from_utf8_lossy(&buf).into();
                read.end = if closed { End::Whole } else { End::Stalled };
                return Some(read);
            }
        },
        // Chunked: decoded, its trailers kept as lines named `trailer:NAME`.
        Framing::Chunked => loop {
            let mut at = 0;
            let mut body = Vec::new();
            let whole = loop {
                let Some(nl) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    break false;
                };
                let line = std::str::from_utf8(&buf[at..at + nl]).unwrap_or("?");
                let size =
                    line.split(';').next().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                let Some(size) = size else {
                    break false;
                };
                let data = at + nl + 2;
                if size == 0 {
                    // The trailer section, then a blank line.
                    let rest = &buf[data..];
                    if rest.starts_with(b"\r\n") {
                        break true;
                    }
                    match rest.windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(end) => {
                            for l in String::from_utf8_lossy(&rest[..end]).split("\r\n") {
                                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                                read.lines.push((
                                    format!("trailer:{}", n.to_ascii_lowercase()),
                                    v.trim().to_owned(),
                                ));
                            }
                            break true;
                        }
                        None => break false,
                    }
                }
                // A chunk cut short: its bytes, as a client reading a broken body gets them.
                if buf.len() < data + size + 2 {
                    body.extend_from_slice(&buf[data.min(buf.len())..(data + size).min(buf.len())]);
                    break false;
                }
                body.extend_from_slice(&buf[data..data + size]);
                at = data + size + 2;
            };
            if whole {
                read.body = String::from_utf8_lossy(&body).into();
                return Some(read);
            }
            if !more(&mut buf, &mut closed).await {
                read.body = String::from_utf8_lossy(&body).into();
                read.end = ended(closed);
                return Some(read);
            }
        },
    }
}

/// What a client reads of the answers the paths once read apart (alike is not enough:
/// both could be wrong).
fn decided(name: &str, head: bool, read: Option<&Read>) -> Result<(), String> {
    let Some(read) = read else {
        return Err("no response head".into());
    };
    let line = |n: &str| read.lines.iter().find(|(l, _)| l == n).map(|(_, v)| v.as_str());
    match name {
        // A coding the gateway cannot pass on is refused (`headers::Codings`).
        "gzip-chunked" | "gzip-lines" | "gzip" | "chunked-twice" | "identity" | "te-empty"
            if read.status != 502 =>
        {
            Err("a transfer coding other than chunked, passed".into())
        }
        // The gateway's own version, whatever the upstream's (RFC 9110 §6.2).
        _ if read.version != 1 => Err("not an HTTP/1.1 status line".into()),
        "304" | "204" if line("content-length").is_some() => {
            Err("a length on an answer without a body (`headers::bodiless_keeps_length`)".into())
        }
        // A body until the upstream closed goes on chunked, and the connection stays.
        "http10-close" | "http11-close"
            if !head && line("transfer-encoding") != Some("chunked") =>
        {
            Err("not chunked".into())
        }
        // A body that breaks off: its head and what came before the break, then the cut.
        "bad-first-chunk" | "bad-second-chunk" | "bad-chunk-end" if head => Ok(()),
        "bad-first-chunk" if (read.status, read.body.as_str(), read.end) != (200, "", End::Cut) => {
            Err("not the head, then the cut".into())
        }
        "bad-second-chunk" | "bad-chunk-end"
            if (read.status, read.body.as_str(), read.end) != (200, "hello", End::Cut) =>
        {
            Err("not the head and the first chunk, then the cut".into())
        }
        _ => Ok(()),
    }
}

/// Every upstream answer of [`ANSWERS`], to `GET` and `HEAD`, on a connection the client
/// keeps open and on one it asks to close: the client reads the same response from both
/// paths (the status line, the lines but a date's value, the body, and whether it was
/// whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_the_same_response_from_both_paths() {
    let up = answering_upstream().await;
    let toml = format!(
        "{TRUST}strategy = \"rightmost-untrusted\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
         [upstream]\nurl = \"http://{up}\"\nbody_timeout = \"5s\"\n"
    );
    let gw = gateway(&toml).await;
    let mut diffs = Vec::new();
    for (name, _, _) in ANSWERS {
        for method in ["GET", "HEAD"] {
            for connection in ["", "Connection: close\r\n"] {
                let request = format!("{method} /r/{name} HTTP/1.1\r\nHost: a\r\n{connection}\r\n");
                let mut answers = Vec::new();
                for state in [&gw.lean, &gw.hyper] {
                    gw.server.switch(state);
                    let mut s = TcpStream::connect(gw.addr).await.unwrap();
                    s.write_all(request.as_bytes()).await.unwrap();
                    answers.push(read_response(&mut s, method == "HEAD").await);
                }
                if answers[0] != answers[1] {
                    diffs.push(format!(
                        "{}\n  lean:  {:?}\n  hyper: {:?}",
                        request.trim_end(),
                        answers[0],
                        answers[1]
                    ));
                } else if let Err(why) = decided(name, method == "HEAD", answers[0].as_ref()) {
                    diffs.push(format!(
                        "{}\n  both:  {:?}\n  {why}",
                        request.trim_end(),
                        answers[0]
                    ));
                }
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} responses read differently, or alike but not as decided:\n{}",
        diffs.len(),
        diffs.join("\n\n")
    );
}
