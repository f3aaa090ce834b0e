//! A review of the lean HTTP/1.1 path where it took over from hyper: HTTP/1.1 over TLS
//! (ALPN `http/1.1` or none) and `Connection: close` requests. Each test holds a property
//! an attacker would try first, against a real gateway on loopback:
//!
//! - the protocol TLS chose stays chosen: a client that negotiated `http/1.1` cannot turn
//!   the connection into HTTP/2 by sending the preface, nor can a cleartext client after
//!   its first request (HTTP/2 with prior knowledge begins a connection, RFC 9113 §3.3);
//! - over TLS the lean path and hyper's hand the upstream the same header lines, with
//!   `X-Forwarded-Proto: https` and nothing a client forged;
//! - `Connection: close` ends the exchange: nothing pipelined behind it reaches the
//!   upstream, and a `Connection` line naming a client-IP header removes none of the
//!   gateway's own;
//! - a body the upstream delimits by its close reaches the client chunked, and a TLS
//!   connection ends with close_notify only when the response was whole: a body the
//!   upstream broke off is not presented as complete;
//! - a head split at any byte, or sent slowly, is read the same, and what slow clients
//!   held is given back.

mod common;
mod pki;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The client address every test connection comes from.
const CLIENT: &str = "127.0.0.1";

/// HTTP/2's connection preface and an empty SETTINGS frame: what an h2 client opens with.
const H2_OPENING: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// A TLS client trusting the test CA and offering `alpn` (nothing when empty).
fn tls_client(ca: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a CA certificate")).expect("add it");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, ca: &Path, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("a name");
    tls_client(ca, alpn).connect(name, tcp).await.expect("the handshake")
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// A clean end: close_notify under TLS, a FIN in cleartext.
    Clean,
    /// The transport ended without close_notify, or was reset.
    Abrupt,
    /// Still open when the test stopped waiting.
    Open,
}

/// Reads until the connection ends or `within` passes.
async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R, within: Duration) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Err(_) => return (got, End::Open),
            Ok(Ok(0)) => return (got, End::Clean),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return (got, End::Abrupt),
        }
    }
}

/// Writes `bytes` (ignoring a peer that stopped reading), then reads as [`read_all`].
async fn send_and_read<S>(s: &mut S, bytes: &[u8], within: Duration) -> (Vec<u8>, End)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    read_all(s, within).await
}

/// Splits off the first response of `bytes` (its head and `content-length` body).
fn first_response(bytes: &[u8]) -> (&[u8], &[u8]) {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (bytes, &[]);
    };
    let head = text(&bytes[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.split_at((end + 4 + len).min(bytes.len()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `bytes` begin with an HTTP/2 SETTINGS frame on stream 0 (a server's first frame).
fn h2_settings_first(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[3] == 0x04 && bytes[5..9] == [0, 0, 0, 0]
}

/// A gateway with one TLS listener and one cleartext listener, forwarding to `upstream`.
struct Setup {
    gw: Gateway,
    tls: SocketAddr,
    plain: SocketAddr,
    ca: std::path::PathBuf,
}

fn start(name: &str, upstream: &str, extra: &str) -> Option<Setup> {
    let dir = test_dir(&format!("review_lean_tls/{name}"));
    let pki = pki::pki(&dir)?;
    let (tls, plain) = (free_addr(), free_addr());
    // `extra` may add to `[upstream]` first, then further tables.
    let config = format!(
        "[upstream]\nurl = \"{upstream}\"\n{extra}\n[[listen]]\naddress = \"{tls}\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\n[[listen]]\naddress = \"{plain}\"\n",
        pki.cert.display(),
        pki.key.display(),
    );
    let gw = Gateway::start_with_config(&dir, &config, &[tls, plain], &[]);
    Some(Setup { gw, tls, plain, ca: pki.ca })
}

// ---------------------------------------------------------------------------------------------
// Which codec

/// ALPN `http/1.1` names the protocol for the whole connection: the HTTP/2 preface sent
/// on it is a malformed HTTP/1.1 request, first thing or after a request, never the start
/// of HTTP/2. Nor does a cleartext connection become HTTP/2 after its first request. A
/// TLS client that offered no ALPN, and a new cleartext connection, may still open with
/// the preface (prior knowledge); ALPN `h2` is HTTP/2 whatever the client then sends.
#[test]
fn the_protocol_is_chosen_once_per_connection() {
    let up = Upstream::start(Behavior::Echo);
    let Some(s) = start("protocol", &up.url(), "") else {
        return;
    };
    let rt = runtime();
    let wait = Duration::from_secs(3);
    let get = b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut after_get = get.to_vec();
    after_get.extend_from_slice(H2_OPENING);
    rt.block_on(async {
        // ALPN http/1.1, the preface first.
        let mut c = tls_connect(s.tls, &s.ca, &[b"http/1.1"]).await;
        let (got, _) = send_and_read(&mut c, H2_OPENING, wait).await;
        assert!(
            !h2_settings_first(&got) && (got.is_empty() || got.starts_with(b"HTTP/1.1 4")),
            "ALPN http/1.1 then the preface: {:?}\n{}",
            text(&got),
            s.gw.proc.log()
        );
        // ALPN http/1.1, a request, then the preface; cleartext the same.
        for tls in [true, false] {
            let (got, _) = if tls {
                let mut c = tls_connect(s.tls, &s.ca, &[b"http/1.1"]).await;
                send_and_read(&mut c, &after_get, wait).await
            } else {
                let mut c = TcpStream::connect(s.plain).await.unwrap();
                send_and_read(&mut c, &after_get, wait).await
            };
            let (first, rest) = first_response(&got);
            assert!(first.starts_with(b"HTTP/1.1 200"), "{}", text(&got));
            assert!(
                rest.is_empty() || rest.starts_with(b"HTTP/1.1 4"),
                "tls={tls}: a request, then the preface, was answered {:?}",
                text(rest)
            );
        }
        assert_eq!(
            up.requests().iter().filter(|r| r.path == "/first").count(),
            2,
            "only the two GETs reached the upstream"
        );

        // No ALPN: the preface opens HTTP/2 (prior knowledge over TLS).
        let mut c = tls_connect(s.tls, &s.ca, &[]).await;
        let _ = c.write_all(H2_OPENING).await;
        let mut head = [0u8; 9];
        tokio::time::timeout(wait, c.read_exact(&mut head))
            .await
            .expect("an answer")
            .expect("nine bytes");
        assert!(h2_settings_first(&head), "{head:?}");
        // Cleartext, the preface first: HTTP/2.
        let mut c = TcpStream::connect(s.plain).await.unwrap();
        let _ = c.write_all(H2_OPENING).await;
        tokio::time::timeout(wait, c.read_exact(&mut head))
            .await
            .expect("an answer")
            .expect("nine bytes");
        assert!(h2_settings_first(&head), "{head:?}");
        // ALPN h2, then an HTTP/1.1 request: no HTTP/1.1 answer.
        let mut c = tls_connect(s.tls, &s.ca, &[b"h2"]).await;
        let (got, _) = send_and_read(&mut c, get, wait).await;
        assert!(!text(&got).contains("HTTP/1.1"), "{:?}", text(&got));
    });
    assert!(up.requests().iter().all(|r| r.path == "/first"), "{:?}", up.requests());
}

// ---------------------------------------------------------------------------------------------
// Header rules over TLS

/// Forged client-IP, origin and provenance headers, each spelled as an attacker would.
fn forged() -> Vec<(&'static str, &'static str)> {
    vec![
        ("X-Forwarded-For", "203.0.113.66, 127.0.0.20"),
        ("X-Real-IP", "198.51.100.77"),
        ("Forwarded", "for=192.0.2.88;proto=http;host=evil.example"),
        ("CF-Connecting-IP", "203.0.113.1"),
        ("True-Client-IP", "203.0.113.2"),
        ("Fastly-Client-IP", "203.0.113.3"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Prefix", "//evil.example"),
        ("trueip-signature", "v=1;c=203.0.113.4"),
        ("x-ReAl-iP", "203.0.113.5"),
    ]
}

/// Requests that exercise both codecs' header rules; each is sent on its own connection.
fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let head = |extra: &[(&str, &str)], conn: Option<&str>| {
        let mut h = String::from("GET /review?q=1 HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in forged().iter().chain(extra) {
            h.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(c) = conn {
            h.push_str(&format!("Connection: {c}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    };
    vec![
        ("keep-alive", head(&[], None)),
        ("close", head(&[], Some("close"))),
        ("CLOSE, close", head(&[], Some("CLOSE, close"))),
        ("close naming XFF", head(&[], Some("close, X-Forwarded-For"))),
        ("close naming X-Real-IP", head(&[], Some("X-Real-IP, close"))),
        (
            "close naming Forwarded and the proto",
            head(&[], Some("close, forwarded, x-forwarded-proto, host")),
        ),
        ("close naming the signature", head(&[], Some("close, trueip-signature"))),
        ("underscore spelling", head(&[("X_Forwarded_For", "203.0.113.9")], Some("close"))),
        ("a Close header", head(&[("Close", "x")], Some("close"))),
        ("Content-Length: 0", head(&[("Content-Length", "0")], Some("close"))),
    ]
}

/// The header lines the upstream saw, minus what differs per connection.
fn lines(seen: &Seen) -> Vec<(String, String)> {
    seen.headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-forwarded-port"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn assert_clean(seen: &Seen, proto: &str, what: &str) {
    let ctx = format!("{what}: upstream saw {:#?}", seen.headers);
    assert_eq!(seen.one("X-Real-IP"), CLIENT, "{ctx}");
    assert_eq!(seen.one("X-Forwarded-For"), CLIENT, "{ctx}");
    assert_eq!(seen.one("X-Forwarded-Proto"), proto, "{ctx}");
    assert!(seen.one("Forwarded").contains(&format!("for={CLIENT}")), "{ctx}");
    assert_eq!(seen.one("Host"), "localhost", "{ctx}");
    assert_ne!(seen.one("X-Forwarded-Port"), "1", "{ctx}");
    assert_eq!(seen.one("X-Forwarded-Host"), "localhost", "{ctx}");
    // The scheme and port were checked above; every other forged value has a dot.
    for v in forged().into_iter().map(|(_, v)| v).filter(|v| v.contains('.')) {
        for (n, got) in &seen.headers {
            assert!(!got.contains(v), "{ctx}: forged {v} in {n}");
        }
    }
    for gone in [
        "cf-connecting-ip",
        "true-client-ip",
        "fastly-client-ip",
        "x-forwarded-prefix",
        "trueip-signature",
        "x_forwarded_for",
        "connection",
        "close",
    ] {
        assert!(seen.all(gone).is_empty(), "{ctx}: {gone}");
    }
}

/// Over TLS the lean path (ALPN http/1.1, and no ALPN) hands the upstream the very lines
/// hyper's path does, for every request of [`requests`]; cleartext the same with `http`.
#[test]
fn over_tls_the_lean_path_and_hypers_forward_the_same_clean_lines() {
    let up = Upstream::start(Behavior::Echo);
    let Some(lean) = start("lines_lean", &up.url(), "") else {
        return;
    };
    let Some(hyper) = start("lines_hyper", &up.url(), "[limits]\nlean_http1 = false\n") else {
        return;
    };
    let rt = runtime();
    let wait = Duration::from_secs(5);
    for (what, bytes) in requests() {
        let mut seen = Vec::new();
        for (s, alpn, tls) in [
            (&lean, &[&b"http/1.1"[..]][..], true),
            (&lean, &[][..], true),
            (&hyper, &[&b"http/1.1"[..]][..], true),
            (&lean, &[][..], false),
            (&hyper, &[][..], false),
        ] {
            let before = up.requests().len();
            let (got, end) = rt.block_on(async {
                if tls {
                    let mut c = tls_connect(s.tls, &s.ca, alpn).await;
                    send_and_read(&mut c, &bytes, Duration::from_millis(700)).await
                } else {
                    let mut c = TcpStream::connect(s.plain).await.unwrap();
                    send_and_read(&mut c, &bytes, Duration::from_millis(700)).await
                }
            });
            let t = text(&got);
            assert!(t.starts_with("HTTP/1.1 200"), "{what} tls={tls}: {t}");
            let asked_close = t.contains("connection: close\r\n");
            if String::from_utf8_lossy(&bytes).contains("Connection: close") {
                assert!(asked_close, "{what} tls={tls}: {t}");
                assert_eq!(end, End::Clean, "{what} tls={tls}: closed with close_notify");
            }
            let all = up.wait_for(before + 1, wait);
            assert_eq!(all.len(), before + 1, "{what} tls={tls}");
            let last = all.last().unwrap();
            assert_clean(last, if tls { "https" } else { "http" }, what);
            seen.push(lines(last));
        }
        for other in &seen[1..3] {
            assert_eq!(&seen[0], other, "{what}: the TLS lines differ");
        }
        let (plain_lean, plain_hyper) = (&seen[3], &seen[4]);
        assert_eq!(plain_lean, plain_hyper, "{what}: the cleartext lines differ");
    }
}

// ---------------------------------------------------------------------------------------------
// Connection: close and smuggling

/// Heads an attacker sends with `Connection: close`, each followed by a second request
/// that must never reach the upstream: framing conflicts, folded and bare-LF lines,
/// spaces and control bytes in the wrong place, a very long line.
fn smuggling() -> Vec<(&'static str, Vec<u8>)> {
    let long = format!(
        "GET /a HTTP/1.1\r\nHost: localhost\r\nX-Long: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "CL and TE",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "two lengths",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n".to_vec(),
        ),
        (
            "length list",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0, 44\r\n\r\n".to_vec(),
        ),
        (
            "chunked, identity",
            b"POST /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "obs-fold",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        (
            "space before colon",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length : 44\r\n\r\n".to_vec(),
        ),
        (
            "NUL in a value",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Real-IP: 1.2.3.4\x00\r\n\r\n".to_vec(),
        ),
        (
            "CR in a value",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-A: b\rX-Real-IP: 1.2.3.4\r\n\r\n".to_vec(),
        ),
        (
            "bare LF lines",
            b"GET /a HTTP/1.1\nHost: localhost\nConnection: close\n\n".to_vec(),
        ),
        (
            "close, then keep-alive on another line",
            b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        ),
        ("a long line", long.into_bytes()),
    ];
    cases
        .into_iter()
        .map(|(what, mut bytes)| {
            bytes.extend_from_slice(
                b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
            );
            (what, bytes)
        })
        .collect()
}

/// After a `Connection: close` request, or a head the gateway refuses, nothing else sent
/// on the connection reaches the upstream; on TLS the same, each connection ending with
/// close_notify after the last response.
#[test]
fn nothing_behind_connection_close_reaches_the_upstream() {
    let up = Upstream::start(Behavior::Echo);
    let Some(s) = start("smuggling", &up.url(), "") else {
        return;
    };
    let rt = runtime();
    for (what, bytes) in smuggling() {
        for tls in [false, true] {
            let (got, end) = rt.block_on(async {
                if tls {
                    let mut c = tls_connect(s.tls, &s.ca, &[b"http/1.1"]).await;
                    send_and_read(&mut c, &bytes, Duration::from_secs(5)).await
                } else {
                    let mut c = TcpStream::connect(s.plain).await.unwrap();
                    send_and_read(&mut c, &bytes, Duration::from_secs(5)).await
                }
            });
            let t = text(&got);
            assert_ne!(end, End::Open, "{what} tls={tls}: {t}");
            assert_eq!(t.matches("HTTP/1.1 ").count(), 1, "{what} tls={tls}: one response: {t}");
            if tls && t.starts_with("HTTP/1.1 200") {
                assert_eq!(end, End::Clean, "{what}: close_notify after the response");
            }
        }
    }
    thread_sleep(200);
    let seen = up.requests();
    for r in &seen {
        assert_ne!(r.path, "/smuggled", "{seen:#?}");
        assert!(r.all("X-Real-IP").iter().all(|v| *v == CLIENT), "{r:#?}");
        assert_eq!(r.body_len, 0, "{r:#?}");
    }
}

fn thread_sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

// ---------------------------------------------------------------------------------------------
// The end of a TLS connection

/// A one-shot upstream that answers with a body delimited by the close, writes part of
/// it and then stalls (`stall`) or finishes it.
fn close_delimited_upstream(stall: bool) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("its address");
    let h = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let Ok((mut c, _)) = l.accept() else { return };
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe first half");
        if stall {
            // Past the gateway's body_timeout, then gone.
            std::thread::sleep(Duration::from_millis(1500));
        } else {
            let _ = c.write_all(b" and the second half");
        }
    });
    (addr, h)
}

/// A body the upstream delimits by its close reaches the client chunked, as hyper's path
/// sends it, so that a whole body (its last chunk, then close_notify under TLS) can be
/// told from one the upstream broke off (no last chunk; over TLS no close_notify either),
/// in cleartext and over TLS, on both paths.
#[test]
fn a_close_delimited_body_cut_short_never_looks_whole() {
    let rt = runtime();
    for (stall, tls, lean) in [
        (false, true, true),
        (true, true, true),
        (false, false, true),
        (true, false, true),
        (false, true, false),
        (true, true, false),
        (false, false, false),
        (true, false, false),
    ] {
        let what = format!("stall={stall} tls={tls} lean={lean}");
        let (upstream, h) = close_delimited_upstream(stall);
        let Some(s) = start(
            &format!("close_delimited_{stall}_{tls}_{lean}"),
            &format!("http://{upstream}"),
            &format!("body_timeout = \"500ms\"\n[limits]\nlean_http1 = {lean}\n"),
        ) else {
            return;
        };
        let request: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let (got, end) = rt.block_on(async {
            if tls {
                let mut c = tls_connect(s.tls, &s.ca, &[b"http/1.1"]).await;
                send_and_read(&mut c, request, Duration::from_secs(5)).await
            } else {
                let mut c = TcpStream::connect(s.plain).await.unwrap();
                send_and_read(&mut c, request, Duration::from_secs(5)).await
            }
        });
        let t = text(&got);
        assert!(t.starts_with("HTTP/1.1 200"), "{what}: {t}");
        assert!(
            t.to_ascii_lowercase().contains("\r\ntransfer-encoding: chunked\r\n"),
            "{what}: {t}"
        );
        if stall {
            assert!(t.ends_with("\r\nthe first half\r\n"), "{what}: {t}");
            assert_ne!(end, End::Open, "{what}");
            if tls {
                assert_eq!(
                    end,
                    End::Abrupt,
                    "{what}: a body cut short must not end with close_notify: {t}"
                );
            }
        } else {
            assert!(t.contains("the first half"), "{what}: {t}");
            assert!(t.contains("the second half"), "{what}: {t}");
            assert!(t.ends_with("\r\n0\r\n\r\n"), "{what}: {t}");
            // Framed by its last chunk, a whole body leaves the connection to the
            // client's next request, on both paths.
            assert_eq!(end, End::Open, "{what}: the connection ended after a whole body");
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Split heads, slow heads, what they hold

/// A request split in two at every byte (the second part sent after the first has left)
/// reaches the upstream with the same lines as when sent whole, in cleartext and over
/// TLS; the HTTP/2 preface split anywhere still opens HTTP/2 where it may.
#[test]
fn a_head_split_at_any_byte_is_read_the_same() {
    let up = Upstream::start(Behavior::Echo);
    let Some(s) = start("split", &up.url(), "") else {
        return;
    };
    let request: &[u8] = b"POST /s HTTP/1.1\r\nHost: localhost\r\nX-Real-IP: 198.51.100.77\r\nX-Forwarded-For: 203.0.113.66\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let rt = runtime();
    let pause = Duration::from_millis(3);
    let mut reference: Option<Vec<(String, String)>> = None;
    for tls in [false, true] {
        for at in 1..request.len() {
            let before = up.requests().len();
            let got = rt.block_on(async {
                let (a, b) = request.split_at(at);
                if tls {
                    let mut c = tls_connect(s.tls, &s.ca, &[]).await;
                    c.write_all(a).await.unwrap();
                    c.flush().await.unwrap();
                    tokio::time::sleep(pause).await;
                    send_and_read(&mut c, b, Duration::from_secs(5)).await
                } else {
                    let mut c = TcpStream::connect(s.plain).await.unwrap();
                    c.write_all(a).await.unwrap();
                    tokio::time::sleep(pause).await;
                    send_and_read(&mut c, b, Duration::from_secs(5)).await
                }
            });
            let t = text(&got.0);
            assert!(t.starts_with("HTTP/1.1 200"), "tls={tls} split at {at}: {t}");
            let seen = up.wait_for(before + 1, Duration::from_secs(5));
            let last = seen.last().unwrap();
            assert_clean_forwarding(last, CLIENT, &format!("tls={tls} split at {at}"));
            let mut mine = lines(last);
            mine.retain(|(n, _)| n != "x-forwarded-proto" && n != "forwarded");
            match &reference {
                None => reference = Some(mine),
                Some(r) => assert_eq!(r, &mine, "tls={tls} split at {at}"),
            }
        }
        for at in 1..H2_OPENING.len() {
            let head = rt.block_on(async {
                let (a, b) = H2_OPENING.split_at(at);
                let mut head = [0u8; 9];
                let read = if tls {
                    let mut c = tls_connect(s.tls, &s.ca, &[]).await;
                    c.write_all(a).await.unwrap();
                    c.flush().await.unwrap();
                    tokio::time::sleep(pause).await;
                    c.write_all(b).await.unwrap();
                    c.flush().await.unwrap();
                    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head)).await
                } else {
                    let mut c = TcpStream::connect(s.plain).await.unwrap();
                    c.write_all(a).await.unwrap();
                    tokio::time::sleep(pause).await;
                    c.write_all(b).await.unwrap();
                    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head)).await
                };
                assert!(matches!(read, Ok(Ok(_))), "tls={tls} preface split at {at}: {read:?}");
                head
            });
            assert!(h2_settings_first(&head), "tls={tls} preface split at {at}: {head:?}");
        }
    }
}

/// The file descriptors a process holds.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Slow and silent clients, in cleartext and over TLS (half a head, a head that never
/// ends, nothing, half a TLS hello, a 408 nobody reads, a close-delimited exchange that
/// is never read), are each ended by the gateway within its limits, and the
/// descriptors they held are given back; the gateway serves on.
#[test]
fn slow_clients_are_ended_and_their_descriptors_given_back() {
    let up = Upstream::start(Behavior::Echo);
    let Some(s) = start(
        "slow",
        &up.url(),
        // Limits long enough that 45 connections (15 TLS handshakes) are all made and seen
        // held before the first is ended, on a loaded 2-core machine too.
        "[limits]\nheader_read_timeout = \"2s\"\ntls_handshake_timeout = \"2s\"\nidle_timeout = \"3s\"\n",
    ) else {
        return;
    };
    let pid = s.gw.proc.pid();
    let rt = runtime();
    // Warm up: one exchange on each listener.
    rt.block_on(async {
        let mut c = tls_connect(s.tls, &s.ca, &[]).await;
        send_and_read(
            &mut c,
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
    });
    let _ = Req::get("/").send(s.plain);
    thread_sleep(300);
    let baseline = descriptors(pid);
    let ends = rt.block_on(async {
        let mut plain = Vec::new();
        let mut tls = Vec::new();
        for i in 0..15 {
            let opening: &[u8] = match i % 5 {
                0 => b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
                1 => b"G",
                2 => b"",
                3 => b"PRI * HTTP/2.0\r\n",
                _ => b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            };
            let mut c = TcpStream::connect(s.plain).await.unwrap();
            c.write_all(opening).await.unwrap();
            plain.push(c);
            let mut t = tls_connect(s.tls, &s.ca, &[b"http/1.1"]).await;
            t.write_all(opening).await.unwrap();
            t.flush().await.unwrap();
            tls.push(t);
            // Half a TLS hello.
            let mut h = TcpStream::connect(s.tls).await.unwrap();
            h.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").await.unwrap();
            plain.push(h);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(descriptors(pid) > baseline + 30, "the slow clients are held for now");
        // Not a byte read by the clients meanwhile; then, past the longest limit, each is
        // found ended.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let mut ends = Vec::new();
        for mut c in plain {
            ends.push(read_all(&mut c, Duration::from_secs(3)).await.1);
        }
        for mut c in tls {
            ends.push(read_all(&mut c, Duration::from_secs(3)).await.1);
        }
        ends
    });
    assert!(ends.iter().all(|e| *e != End::Open), "{ends:?}");
    // The gateway closes each socket when its task next runs: on a loaded machine, a
    // while after the client saw the end.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut now = descriptors(pid);
    while now > baseline + 2 && std::time::Instant::now() < deadline {
        thread_sleep(20);
        now = descriptors(pid);
    }
    assert!(
        now <= baseline + 2,
        "descriptors: {baseline} before the slow clients, {now} after\n{}",
        s.gw.proc.log()
    );
    assert_healthy(s.plain, "slow clients");
}
