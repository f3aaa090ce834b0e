//! What the lean path's reused storage must never carry from one request to another: the
//! header slots kept with a worker's buffers (no line of one request in the next one's
//! upstream head, on the same connection or the next on that worker), the connection's
//! response buffer that now also holds the upstream request head (no byte of an earlier
//! answer or head goes upstream), and a client connection's private pool of upstream
//! connections that open with a PROXY header (never one announcing another client).
//!
//! The upstream here records every request head byte for byte, with the PROXY line its
//! connection opened with, and answers by the request's path.

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// One request head the upstream received.
#[derive(Clone, Debug)]
struct Got {
    /// Which upstream connection (in accept order).
    conn: usize,
    /// The PROXY line the connection opened with, if any.
    proxy: Option<String>,
    /// The head, byte for byte, up to and with its blank line.
    head: String,
}

impl Got {
    fn values(&self, name: &str) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// A recording upstream; `proxy`: every connection opens with a PROXY v1 line.
struct Recorder {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Recorder {
    fn start(proxy: bool) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        thread::spawn(move || {
            // Bounded: no test here opens more.
            for (conn, stream) in listener.incoming().take(500).enumerate() {
                let Ok(stream) = stream else { continue };
                let g = g.clone();
                thread::spawn(move || {
                    let _ = record(stream, conn, proxy, &g);
                });
            }
        });
        Recorder { addr, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn record(
    stream: TcpStream,
    conn: usize,
    proxy: bool,
    got: &Mutex<Vec<Got>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let proxy = if proxy {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        Some(line.trim_end().to_owned())
    } else {
        None
    };
    for _ in 0..1000 {
        let mut head = Vec::new();
        for _ in 0..300 {
            let n = reader.read_until(b'\n', &mut head)?;
            if n == 0 || head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
                break;
            }
        }
        if head.is_empty() {
            return Ok(());
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        got.lock().unwrap().push(Got { conn, proxy: proxy.clone(), head: head.clone() });
        if !head.ends_with("\r\n\r\n") {
            return Ok(());
        }
        match path.as_str() {
            "/interim" => writer.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            )?,
            "/chunked" => writer.write_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            )?,
            "/until-close" => {
                writer.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close")?;
                return Ok(());
            }
            "/slow" => {
                thread::sleep(Duration::from_millis(2500));
                return Ok(());
            }
            _ if head.starts_with("HEAD ") => {
                writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")?
            }
            _ => writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?,
        }
    }
    Ok(())
}

/// A gateway with one worker (so every connection shares that worker's kept buffers),
/// on the lean path or hyper's.
fn gateway(name: &str, lean: bool, up: &Recorder, extra: &str) -> Gateway {
    let dir = test_dir(&format!("lean_reuse_review/{name}-{lean}"));
    let addr = free_addr();
    let toml = format!(
        "{extra}\n[[listen]]\naddress = \"{addr}\"\n\n[upstream]\nurl = \"http://{}\"\n\
         response_timeout = \"1s\"\n\n[limits]\nworkers = 1\nlean_http1 = {lean}\n",
        up.addr
    );
    Gateway::start_with_config(&dir, &toml, &[addr], &[])
}

/// Reads the responses to requests of `methods`, in order, on `s`.
fn responses(s: &TcpStream, methods: &[&str]) -> Vec<Response> {
    let mut r = BufReader::new(s.try_clone().unwrap());
    methods.iter().map(|m| read_response(&mut r, m).unwrap()).collect()
}

/// A keep-alive request marked `mark`, with `extra` lines.
fn marked(path: &str, mark: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.example\r\nX-Mark: {mark}\r\n{extra}\r\n")
}

/// Every upstream head: one request line, one mark line, no forged address, and no line
/// only another request carried.
fn assert_clean(got: &[Got], forged: &[&str]) {
    for g in got {
        let marks = g.values("x-mark");
        assert_eq!(marks.len(), 1, "one mark line per head: {:?}", g.head);
        let mark = marks[0];
        assert!(
            g.head.starts_with("GET /") || g.head.starts_with("HEAD /"),
            "the head starts with its request line: {:?}",
            g.head
        );
        assert!(
            g.head.matches("HTTP/1.1").count() == 1 && g.head.matches("\r\n\r\n").count() == 1,
            "one request line, one blank line: {:?}",
            g.head
        );
        for f in forged {
            assert!(!g.head.contains(f), "{f} reached the upstream in {mark}: {:?}", g.head);
        }
        if mark != "hundred" {
            assert!(
                g.values("x-only-in-hundred").is_empty() && !g.head.contains("X-Pad-"),
                "a line of the 100-header request survived into {mark}: {:?}",
                g.head
            );
        }
        if mark != "forger" {
            assert!(
                g.values("x-only-in-forger").is_empty(),
                "a line of the forging request survived into {mark}: {:?}",
                g.head
            );
        }
    }
}

const FORGED: [&str; 3] = ["203.0.113.66", "198.51.100.77", "192.0.2.88"];

/// No line of a request reaches the upstream in another request's head: not on the same
/// keep-alive connection, not pipelined behind it, not on the worker's next connection
/// (its header slots and buffers are the last one's), and not after a request that
/// failed to parse, had 100 lines, or went to hyper.
#[test]
fn no_line_of_one_request_reaches_the_next() {
    for lean in [true, false] {
        let up = Recorder::start(false);
        let gw = gateway("lines", lean, &up, "");
        let forger = marked(
            "/a",
            "forger",
            "X-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 198.51.100.77\r\n\
             Forwarded: for=192.0.2.88\r\nX-Only-In-Forger: 1\r\nCookie: a=b\r\n",
        );
        let mut hundred = String::from(
            "GET /b HTTP/1.1\r\nHost: app.example\r\nX-Mark: hundred\r\nX-Only-In-Hundred: 1\r\n",
        );
        for i in 0..97 {
            hundred.push_str(&format!("X-Pad-{i}: {i}\r\n"));
        }
        hundred.push_str("\r\n");
        // 100 lines: still the lean path's.
        assert_eq!(hundred.matches("\r\n").count() - 2, 100);

        // One connection: a forging request, the next, then two pipelined.
        let mut s = connect(gw.addr).unwrap();
        s.write_all(forger.as_bytes()).unwrap();
        s.write_all(marked("/c", "second", "").as_bytes()).unwrap();
        let pipelined = format!("{}{}", marked("/d", "third", ""), marked("/e", "fourth", ""));
        s.write_all(pipelined.as_bytes()).unwrap();
        for r in responses(&s, &["GET"; 4]) {
            assert_eq!(r.status, 200, "{lean}: {r:?}");
        }
        s.write_all(hundred.as_bytes()).unwrap();
        s.write_all(marked("/f", "after-hundred", "").as_bytes()).unwrap();
        for r in responses(&s, &["GET"; 2]) {
            assert_eq!(r.status, 200, "{lean}: {r:?}");
        }
        drop(s);

        // The worker's next connections, each after one that ended mid-head, with a bad
        // line, with 101 lines, or forging and closing at once.
        let mut too_many = forger.replace("X-Mark: forger\r\n", "");
        for i in 0..101 {
            too_many.insert_str(too_many.len() - 2, &format!("X-Pad-{i}: {i}\r\n"));
        }
        let enders: [&[u8]; 4] = [
            b"GET /g HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.66\r\nX-Only-In-Forger: 1\r\n",
            b"GET /g HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.66\r\nX-Only-In-Forger 1\r\n\r\n",
            too_many.as_bytes(),
            forger.as_bytes(),
        ];
        for (i, bytes) in enders.iter().enumerate() {
            let mut s = connect(gw.addr).unwrap();
            let _ = s.write_all(bytes);
            if i == 3 {
                // Answered, then closed by the client.
                let _ = responses(&s, &["GET"]);
            } else {
                let _ = s.shutdown(std::net::Shutdown::Write);
                let _ = read_until_close(&mut s, Duration::from_secs(5));
            }
            let mut s = connect(gw.addr).unwrap();
            s.write_all(marked("/h", &format!("next-{i}"), "").as_bytes()).unwrap();
            let r = responses(&s, &["GET"]);
            assert_eq!(r[0].status, 200, "{lean}: {:?}", r[0]);
        }
        let got = up.got();
        let marks: Vec<&str> = got.iter().flat_map(|g| g.values("x-mark")).collect();
        assert_eq!(
            marks,
            [
                "forger",
                "second",
                "third",
                "fourth",
                "hundred",
                "after-hundred",
                "next-0",
                "next-1",
                "next-2",
                "forger",
                "next-3"
            ],
            "lean {lean}"
        );
        assert_clean(&got, &FORGED);
    }
}

/// The upstream request head is written where the previous response was: after every
/// kind of answer (an error page, a timeout, a HEAD, an interim response, a chunked
/// body, a body until close) the next request goes upstream as itself, byte for byte,
/// with nothing before it.
#[test]
fn no_byte_of_an_earlier_answer_goes_upstream() {
    for lean in [true, false] {
        let up = Recorder::start(false);
        let gw = gateway("answers", lean, &up, "[headers]\nallowed_hosts = [\"app.example\"]\n");
        let mut s = connect(gw.addr).unwrap();
        // Refused before it goes upstream: 421, and the connection stays.
        s.write_all(b"GET /refused HTTP/1.1\r\nHost: evil.example\r\nX-Mark: refused\r\n\r\n")
            .unwrap();
        s.write_all(marked("/one", "one", "").as_bytes()).unwrap();
        s.write_all(b"HEAD /head HTTP/1.1\r\nHost: app.example\r\nX-Mark: head\r\n\r\n").unwrap();
        s.write_all(marked("/interim", "interim", "").as_bytes()).unwrap();
        s.write_all(marked("/chunked", "chunked", "").as_bytes()).unwrap();
        s.write_all(marked("/two", "two", "").as_bytes()).unwrap();
        let rs = responses(&s, &["GET", "GET", "HEAD", "GET", "GET", "GET"]);
        let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [421, 200, 200, 200, 200, 200], "lean {lean}");
        drop(s);
        // A timeout (504), then the worker's next connection.
        let mut s = connect(gw.addr).unwrap();
        s.write_all(marked("/slow", "slow", "").as_bytes()).unwrap();
        let r = responses(&s, &["GET"]);
        assert_eq!(r[0].status, 504, "lean {lean}: {:?}", r[0]);
        s.write_all(marked("/three", "three", "").as_bytes()).unwrap();
        let r = responses(&s, &["GET"]);
        assert_eq!(r[0].status, 200, "lean {lean}: {:?}", r[0]);
        // A body until close, then the next connection.
        let mut s = connect(gw.addr).unwrap();
        s.write_all(marked("/until-close", "until-close", "").as_bytes()).unwrap();
        let r = responses(&s, &["GET"]);
        assert_eq!(r[0].status, 200, "lean {lean}: {:?}", r[0]);
        let mut s = connect(gw.addr).unwrap();
        s.write_all(marked("/four", "four", "").as_bytes()).unwrap();
        let r = responses(&s, &["GET"]);
        assert_eq!(r[0].status, 200, "lean {lean}: {:?}", r[0]);

        let got = up.got();
        let marks: Vec<&str> = got.iter().flat_map(|g| g.values("x-mark")).collect();
        assert!(!marks.contains(&"refused"), "lean {lean}: {marks:?}");
        for want in
            ["one", "head", "interim", "chunked", "two", "slow", "three", "until-close", "four"]
        {
            assert!(marks.contains(&want), "lean {lean}: {want} missing from {marks:?}");
        }
        for g in &got {
            let mark = g.values("x-mark")[0];
            let path = match mark {
                "one" | "two" | "three" | "four" => format!("/{mark}"),
                other => format!("/{other}"),
            };
            let method = if mark == "head" { "HEAD" } else { "GET" };
            assert!(
                g.head.starts_with(&format!("{method} {path} HTTP/1.1\r\n")),
                "lean {lean}: {mark}: {:?}",
                g.head
            );
        }
        assert_clean(&got, &FORGED);
    }
}

/// With `[upstream] proxy_protocol`, every upstream connection announces one client. A
/// trusted proxy that sends requests of several clients on one keep-alive connection,
/// and two client connections open at once, never get an upstream connection announcing
/// another client: each request reaches the upstream on a connection whose PROXY line
/// names its own client.
#[test]
fn proxy_header_connections_are_never_shared_between_clients() {
    for lean in [true, false] {
        let up = Recorder::start(true);
        let gw = {
            let dir = test_dir(&format!("lean_reuse_review/proxy-{lean}"));
            let addr = free_addr();
            let toml = format!(
                "[client_ip]\ntrusted = [\"127.0.0.1\"]\nstrategy = \"rightmost-untrusted\"\n\n\
                 [[listen]]\naddress = \"{addr}\"\n\n[upstream]\nurl = \"http://{}\"\n\
                 proxy_protocol = \"v1\"\n\n[limits]\nworkers = 1\nlean_http1 = {lean}\n",
                up.addr
            );
            Gateway::start_with_config(&dir, &toml, &[addr], &[])
        };
        // One relay connection carrying three clients, in turn and again; and two more
        // connections of the relay's own (no forwarding header: the client is the peer).
        let mut relay = connect(gw.addr).unwrap();
        let mut own: Vec<TcpStream> = (0..2).map(|_| connect(gw.addr).unwrap()).collect();
        let clients =
            ["198.51.100.1", "198.51.100.2", "198.51.100.1", "198.51.100.3", "198.51.100.2"];
        for (round, c) in clients.iter().enumerate() {
            relay
                .write_all(marked("/r", c, &format!("X-Forwarded-For: {c}\r\n")).as_bytes())
                .unwrap();
            assert_eq!(responses(&relay, &["GET"])[0].status, 200, "lean {lean}");
            let i = round % 2;
            let port = own[i].local_addr().unwrap().port();
            own[i].write_all(marked("/o", &format!("127.0.0.1:{port}"), "").as_bytes()).unwrap();
            assert_eq!(responses(&own[i], &["GET"])[0].status, 200, "lean {lean}");
        }
        let got = up.got();
        assert_eq!(got.len(), 2 * clients.len(), "lean {lean}: {got:#?}");
        for g in &got {
            let mark = g.values("x-mark")[0];
            let proxy = g.proxy.as_deref().unwrap_or("");
            let src = proxy.split(' ').nth(2).unwrap_or("");
            let src_port = proxy.split(' ').nth(4).unwrap_or("");
            match mark.split_once(':') {
                Some((ip, port)) => assert!(
                    src == ip && src_port == port,
                    "lean {lean}: a request of {mark} went on a connection announcing {proxy:?}"
                ),
                None => assert_eq!(
                    src, mark,
                    "lean {lean}: a request of {mark} went on a connection announcing {proxy:?}"
                ),
            }
        }
        // Each client's later requests reused its own connection: reuse happened at all.
        let conns: std::collections::HashSet<usize> = got.iter().map(|g| g.conn).collect();
        assert!(conns.len() < got.len(), "lean {lean}: no reuse at all: {got:#?}");
    }
}
