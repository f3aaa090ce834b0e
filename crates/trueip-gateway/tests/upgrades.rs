//! Protocol upgrades through `trueip serve`: which ones reach the upstream, and when a
//! connection may become a byte tunnel.
//!
//! After a `101 Switching Protocols` the gateway only copies bytes: it can no longer clean the
//! headers of what follows. A WebSocket's frames carry no request headers, so a WebSocket
//! upgrade may go through. An `h2c` upgrade (RFC 7540 §3.2) would make the rest of the
//! connection HTTP/2 streams the gateway never sees, each carrying whatever `x-real-ip` or
//! `x-forwarded-for` the client likes: it must never reach the upstream, and a `101` the
//! gateway did not ask for a WebSocket must never start a tunnel.
//!
//! The upstream here behaves like Hypercorn: it answers `101` to `Upgrade: h2c` (or, in
//! `Always` mode, to every request) and then records every byte that reaches it through the
//! tunnel. Each test runs on both wire paths: the lean HTTP/1.1 path and hyper's.

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// When the test upstream switches protocols.
#[derive(Clone, Copy, Debug)]
enum Switch {
    /// When asked to, naming the protocol asked for (as Hypercorn does for h2c).
    WhenAsked,
    /// To every request, naming `h2c`, asked or not.
    Always,
}

/// What the upstream received: request heads, and the bytes that came through a tunnel.
#[derive(Default)]
struct Received {
    heads: Vec<Vec<(String, String)>>,
    tunneled: Vec<u8>,
}

struct Upgrader {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Upgrader {
    fn start(switch: Switch) -> Upgrader {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let r = received.clone();
        thread::spawn(move || {
            // Bounded: no test here opens more.
            for stream in listener.incoming().take(200) {
                let Ok(stream) = stream else { continue };
                let r = r.clone();
                thread::spawn(move || {
                    let _ = upgrader_conn(stream, switch, &r);
                });
            }
        });
        Upgrader { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<Vec<(String, String)>> {
        self.received.lock().unwrap().heads.clone()
    }

    fn tunneled(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap().tunneled).into_owned()
    }
}

fn value<'a>(head: &'a [(String, String)], name: &str) -> Option<&'a str> {
    head.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn upgrader_conn(
    stream: TcpStream,
    switch: Switch,
    received: &Mutex<Received>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut head = Vec::new();
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l)? == 0 {
                return Ok(());
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                head.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let asked = value(&head, "upgrade").map(str::to_string);
        received.lock().unwrap().heads.push(head);
        let protocol = match (switch, asked) {
            (Switch::Always, _) => Some("h2c".to_string()),
            (Switch::WhenAsked, Some(p)) => Some(p),
            (Switch::WhenAsked, None) => None,
        };
        let Some(protocol) = protocol else {
            writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
            continue;
        };
        writer.write_all(
            format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n")
                .as_bytes(),
        )?;
        // From here on the connection is a tunnel: record and echo whatever comes through.
        let mut buf = [0u8; 4096];
        for _ in 0..1000 {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => n,
            };
            received.lock().unwrap().tunneled.extend_from_slice(&buf[..n]);
            writer.write_all(&buf[..n])?;
        }
        return Ok(());
    }
    Ok(())
}

/// Both wire paths, by the config line that chooses them.
const PATHS: [(&str, &str); 2] = [("lean", "true"), ("hyper", "false")];

fn gateway(name: &str, path: &str, lean: &str, upstream: &str) -> Gateway {
    let dir = test_dir(&format!("upgrades/{name}-{path}"));
    let toml = format!(
        "[client_ip]\ntrusted = [\"{PROXIES_CIDR}\"]\nstrategy = \"rightmost-untrusted\"\n\
         [upstream]\nurl = \"{upstream}\"\n[limits]\nlean_http1 = {lean}\n"
    );
    Gateway::start_with_toml(&dir, free_addr(), &toml, &[])
}

/// An h2c upgrade request as curl sends it (`curl --http2 http://...`).
const H2C: &str = "GET /h2c HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";

/// What the attacker sends once the connection is (they hope) a tunnel: a request whose
/// forged headers nothing would clean.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.example\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";

/// Reads from `stream` until `within` passes or the peer closes; what came.
fn read_for(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    match read_until_close(stream, within) {
        Ending::Closed(b) | Ending::Reset(b) | Ending::Open(b) => b,
    }
}

#[test]
fn h2c_upgrade_never_reaches_the_upstream_nor_makes_a_tunnel() {
    for (path, lean) in PATHS {
        let up = Upgrader::start(Switch::WhenAsked);
        let gw = gateway("h2c_when_asked", path, lean, &up.url());
        let mut s = connect(gw.addr).unwrap();
        s.write_all(H2C.as_bytes()).unwrap();
        let first = read_response(&mut BufReader::new(s.try_clone().unwrap()), "GET").unwrap();
        assert_eq!(
            first.status, 200,
            "{path}: the h2c upgrade is served as plain HTTP/1.1 (got {first:?})"
        );
        let heads = up.heads();
        let head = heads.last().expect("the upstream saw the request");
        for name in ["upgrade", "http2-settings"] {
            assert!(value(head, name).is_none(), "{path}: {name} reached the upstream: {head:?}");
        }
        if let Some(c) = value(head, "connection") {
            assert!(
                !c.to_ascii_lowercase().contains("upgrade"),
                "{path}: Connection: {c} reached the upstream"
            );
        }
        // The same connection, still HTTP/1.1: the next request is cleaned like any other.
        s.write_all(SMUGGLED.as_bytes()).unwrap();
        let second = read_response(&mut BufReader::new(s.try_clone().unwrap()), "GET").unwrap();
        assert_eq!(second.status, 200, "{path}: {second:?}");
        let heads = up.heads();
        let head = heads.last().unwrap();
        assert_eq!(value(head, "x-real-ip"), Some(CLIENT_IP), "{path}: {head:?}");
        assert!(up.tunneled().is_empty(), "{path}: tunneled: {}", up.tunneled());
    }
}

#[test]
fn an_unasked_101_never_becomes_a_tunnel() {
    for (path, lean) in PATHS {
        let up = Upgrader::start(Switch::Always);
        let gw = gateway("h2c_always", path, lean, &up.url());
        for request in [H2C, "GET /plain HTTP/1.1\r\nHost: app.example\r\n\r\n"] {
            let mut s = connect(gw.addr).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let resp = read_response(&mut BufReader::new(s.try_clone().unwrap()), "GET")
                .unwrap_or_else(|e| panic!("{path}: {request:?}: {e}"));
            assert_eq!(resp.status, 502, "{path}: {request:?} got {resp:?}");
            // Whatever the client sends next must not reach the upstream through a tunnel.
            let _ = s.write_all(SMUGGLED.as_bytes());
            let _ = read_for(&mut s, Duration::from_millis(300));
        }
        assert!(
            !up.tunneled().contains("6.6.6.6"),
            "{path}: forged headers went through a tunnel: {}",
            up.tunneled()
        );
        assert_healthy(gw.addr, "an unasked 101");
    }
}

#[test]
fn websocket_upgrade_still_makes_a_tunnel() {
    for (path, lean) in PATHS {
        let up = Upgrader::start(Switch::WhenAsked);
        let gw = gateway("websocket", path, lean, &up.url());
        let mut s = connect(gw.addr).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
        )
        .unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let resp = read_response(&mut reader, "GET").unwrap();
        assert_eq!(resp.status, 101, "{path}: {resp:?}");
        assert_eq!(
            resp.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
            Some("websocket"),
            "{path}: {resp:?}"
        );
        let heads = up.heads();
        let head = heads.last().unwrap();
        assert_eq!(value(head, "upgrade"), Some("websocket"), "{path}: {head:?}");
        assert_eq!(value(head, "x-real-ip"), Some(CLIENT_IP), "{path}: {head:?}");
        // Bytes go both ways through the tunnel.
        s.write_all(b"\x81\x05hello").unwrap();
        let mut echo = [0u8; 7];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = 0;
        while got < echo.len() && Instant::now() < deadline {
            match reader.read(&mut echo[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        assert_eq!(&echo[..got], b"\x81\x05hello", "{path}");
    }
}

#[test]
fn a_101_naming_another_protocol_than_websocket_is_refused() {
    for (path, lean) in PATHS {
        let up = Upgrader::start(Switch::Always);
        let gw = gateway("websocket_answered_h2c", path, lean, &up.url());
        let mut s = connect(gw.addr).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
        let resp = read_response(&mut BufReader::new(s.try_clone().unwrap()), "GET").unwrap();
        assert_eq!(resp.status, 502, "{path}: {resp:?}");
        let _ = s.write_all(SMUGGLED.as_bytes());
        let _ = read_for(&mut s, Duration::from_millis(300));
        assert!(!up.tunneled().contains("6.6.6.6"), "{path}: tunneled: {}", up.tunneled());
    }
}
