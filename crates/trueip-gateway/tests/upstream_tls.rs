//! Upstreams over TLS and HTTP/2, through `trueip serve` on loopback: an `https://`
//! upstream signed by a test CA (made by `openssl` in the test's folder) sees the SNI the
//! gateway sends and the same clean forwarding headers; a certificate the configured roots
//! do not vouch for is a 502 `upstream_tls` with a log line naming the reason, on both
//! wire paths; an HTTP/2 upstream (h2c with prior knowledge, and ALPN `h2` over TLS)
//! receives the client-IP lines exactly as an HTTP/1.1 upstream does.
//!
//! The upstream is a small hyper server (HTTP/1.1 and HTTP/2) with rustls in the test.
//! Needs `openssl`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
mod pki;

use std::net::SocketAddr;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pki::{Pki, pki};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request the test upstream received.
#[derive(Clone, Debug)]
struct Got {
    /// The SNI of its TLS connection (`None`: none sent, or no TLS).
    sni: Option<String>,
    /// The protocol ALPN chose.
    alpn: Option<Vec<u8>>,
    version: http::Version,
    /// The authority: HTTP/2's `:authority`, else the Host line.
    authority: Option<String>,
    headers: Vec<(String, String)>,
}

/// A hyper upstream (HTTP/1.1, and HTTP/2 by ALPN or prior knowledge) on loopback, over
/// TLS with `tls`; answers 200 `ok` and records each request.
struct TestUpstream {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    /// Connections accepted (TLS or not).
    accepted: Arc<AtomicUsize>,
}

impl TestUpstream {
    fn start(tls: Option<&Pki>) -> TestUpstream {
        let acceptor = tls.map(|pki| {
            let certs = CertificateDer::pem_file_iter(&pki.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                // Bounded: no test here opens more upstream connections than this.
                for _ in 0..1000 {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, record) = (acceptor.clone(), record.clone());
                    tokio::spawn(async move {
                        match acceptor {
                            Some(acceptor) => {
                                // A refused handshake is the gateway's business: nothing to serve.
                                let Ok(tls) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                let conn = tls.get_ref().1;
                                let sni = conn.server_name().map(str::to_owned);
                                let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
                                serve(tls, sni, alpn, record).await;
                            }
                            None => serve(tcp, None, None, record).await,
                        }
                    });
                }
            });
        });
        TestUpstream { addr, got, accepted }
    }

    fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn serve<IO>(io: IO, sni: Option<String>, alpn: Option<Vec<u8>>, record: Arc<Mutex<Vec<Got>>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let authority = req.uri().authority().map(ToString::to_string).or_else(|| {
            req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned)
        });
        record.lock().unwrap().push(Got {
            sni: sni.clone(),
            alpn: alpn.clone(),
            version: req.version(),
            authority,
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                })
                .collect(),
        });
        async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

impl Got {
    fn seen(&self) -> Seen {
        Seen {
            peer: "127.0.0.1:1".parse().unwrap(),
            method: String::new(),
            path: String::new(),
            headers: self.headers.clone(),
            body_len: 0,
            proxy: None,
        }
    }

    /// The lines that say who the client is and how it came, in order.
    fn forwarding(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-forwarded-") || n == "x-real-ip" || n == "forwarded")
            .cloned()
            .collect()
    }
}

fn toml(upstream: &str, extra: &str, lean: bool) -> String {
    format!("[upstream]\nurl = \"{upstream}\"\n{extra}\n[limits]\nlean_http1 = {lean}\n")
}

/// A client's request with forged forwarding headers, on the lean path (a plain GET) or
/// hyper's (the same GET, with the lean path turned off in the config).
fn forged_get() -> Req {
    Req::get("/path?q=1").header("Host", "app.example").headers(&forged_headers())
}

#[test]
fn an_https_upstream_is_verified_against_the_ca_file_and_gets_the_sni() {
    let dir = test_dir("upstream_tls_ca_file");
    let Some(pki) = pki(&dir) else { return };
    let up = TestUpstream::start(Some(&pki));
    let ca = pki.ca.display().to_string();
    for (lean, url, server_name, sni) in [
        (true, format!("https://localhost:{}", up.addr.port()), "", "localhost"),
        (
            false,
            format!("https://127.0.0.1:{}", up.addr.port()),
            "server_name = \"upstream.test\"",
            "upstream.test",
        ),
        (
            true,
            format!("https://127.0.0.1:{}", up.addr.port()),
            "server_name = \"upstream.test\"",
            "upstream.test",
        ),
    ] {
        let context = format!("lean {lean}, {url}, {server_name:?}");
        let extra = format!("ca_file = \"{ca}\"\n{server_name}");
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml(&url, &extra, lean), &[]);
        for g in forged_through(&gw, &up, 3, &context) {
            assert_eq!(g.sni.as_deref(), Some(sni), "{context}");
            assert_eq!(g.alpn.as_deref(), Some(&b"http/1.1"[..]), "{context}");
            assert_eq!(g.version, http::Version::HTTP_11, "{context}");
            assert_eq!(g.authority.as_deref(), Some("app.example"), "{context}");
            assert_clean_forwarding(&g.seen(), "127.0.0.1", &context);
        }
    }
}

/// Sends `n` forged requests through `gw`, each answered `200 ok`; what `up` received
/// of them.
fn forged_through(gw: &Gateway, up: &TestUpstream, n: usize, context: &str) -> Vec<Got> {
    let before = up.requests().len();
    for _ in 0..n {
        let resp = forged_get().must_send(gw.addr);
        let log = gw.proc.log();
        assert_eq!(resp.status, 200, "{context}: {}\n{log}", resp.text());
        assert_eq!(resp.text(), "ok", "{context}");
    }
    let new = up.requests().split_off(before);
    assert_eq!(new.len(), n, "{context}");
    new
}

#[test]
fn a_certificate_the_roots_do_not_vouch_for_is_a_502_naming_the_reason() {
    let dir = test_dir("upstream_tls_refused");
    let Some(pki) = pki(&dir) else { return };
    let up = TestUpstream::start(Some(&pki));
    let (ca, other) = (pki.ca.display(), pki.other_ca.display());
    let port = up.addr.port();
    for (lean, url, extra, reason) in [
        (
            true,
            format!("https://127.0.0.1:{port}"),
            format!("ca_file = \"{other}\""),
            "UnknownIssuer",
        ),
        (
            false,
            format!("https://127.0.0.1:{port}"),
            format!("ca_file = \"{other}\""),
            "UnknownIssuer",
        ),
        // The default roots (Mozilla's) do not know the test CA either.
        (true, format!("https://localhost:{port}"), String::new(), "UnknownIssuer"),
        // The right CA, the wrong name.
        (
            false,
            format!("https://127.0.0.1:{port}"),
            format!("ca_file = \"{ca}\"\nserver_name = \"other.test\""),
            "certificate not valid for name",
        ),
    ] {
        let context = format!("lean {lean}, {url}, {extra:?}");
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml(&url, &extra, lean), &[]);
        let resp = forged_get().must_send(gw.addr);
        assert_eq!(resp.status, 502, "{context}: {}", resp.text());
        assert!(resp.text().contains("upstream_tls"), "{context}: {}", resp.text());
        let m = metrics(gw.addr);
        assert!(m.contains("trueip_upstream_errors_total{kind=\"tls\"} 1"), "{context}: {m}");
        let log = gw.proc.log();
        assert!(
            log.contains("TLS handshake with the upstream") && log.contains(reason),
            "{context}: the log names the reason ({reason}): {log}"
        );
    }
    assert!(
        up.requests().is_empty(),
        "no request reached an upstream whose certificate was refused"
    );
}

/// The same request through an HTTP/1.1 upstream and HTTP/2 ones (h2c with prior
/// knowledge; ALPN `h2` over TLS), on both wire paths: the client-IP lines arrive
/// identical, in the same order, and the authority too.
#[test]
fn an_http2_upstream_receives_the_forwarding_lines_the_http1_path_sends() {
    let dir = test_dir("upstream_h2");
    let Some(pki) = pki(&dir) else { return };
    let plain = TestUpstream::start(None);
    let tls = TestUpstream::start(Some(&pki));
    let ca = pki.ca.display().to_string();
    let cases = [
        ("h1", format!("http://{}", plain.addr), String::new(), &plain),
        ("h2c", format!("http://{}", plain.addr), "http2 = true".to_string(), &plain),
        (
            "h2 over TLS",
            format!("https://localhost:{}", tls.addr.port()),
            format!("http2 = true\nca_file = \"{ca}\""),
            &tls,
        ),
    ];
    /// The forwarding lines and the authority of the first request, which every other
    /// must equal.
    type Arrived = (Vec<(String, String)>, Option<String>);
    let mut reference: Option<Arrived> = None;
    for lean in [true, false] {
        for (name, url, extra, up) in &cases {
            let context = format!("{name}, lean {lean}");
            let gw = Gateway::start_with_toml(&dir, free_addr(), &toml(url, extra, lean), &[]);
            // Two requests each time: the second reuses the pooled upstream connection.
            for g in forged_through(&gw, up, 2, &context) {
                let want = match *name {
                    "h1" => http::Version::HTTP_11,
                    _ => http::Version::HTTP_2,
                };
                assert_eq!(g.version, want, "{context}");
                if *name == "h2 over TLS" {
                    assert_eq!(g.alpn.as_deref(), Some(&b"h2"[..]), "{context}");
                }
                assert_clean_forwarding(&g.seen(), "127.0.0.1", &context);
                // Each gateway listens on its own port: the one line that names it.
                let port = gw.addr.port().to_string();
                let lines = g
                    .forwarding()
                    .into_iter()
                    .map(|(n, v)| match v == port {
                        true => (n, "<listener port>".to_string()),
                        false => (n, v),
                    })
                    .collect();
                let this = (lines, g.authority.clone());
                match &reference {
                    None => reference = Some(this),
                    Some(r) => assert_eq!(&this, r, "{context}"),
                }
            }
            if *name != "h1" {
                let m = metrics(gw.addr);
                assert!(!m.contains("trueip_upstream_errors_total{kind=\"protocol\"} 1"), "{m}");
            }
        }
    }
    let (lines, authority) = reference.unwrap();
    assert_eq!(authority.as_deref(), Some("app.example"));
    assert!(lines.iter().any(|(n, _)| n == "forwarded"), "{lines:?}");
}

#[test]
fn tls_keys_without_an_https_upstream_and_unreadable_ca_files_are_refused_naming_the_key() {
    let dir = test_dir("upstream_tls_config");
    for (toml, key) in [
        (
            "[upstream]\nurl = \"http://127.0.0.1:9\"\nca_file = \"/nonexistent\"\n".to_string(),
            "upstream.ca_file",
        ),
        (
            "[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"/nonexistent/ca.pem\"\n"
                .to_string(),
            "upstream.ca_file",
        ),
        (
            format!(
                "[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"{}\"\n",
                dir.join("empty.pem").display()
            ),
            "upstream.ca_file",
        ),
        (
            "[upstream]\nurl = \"https://127.0.0.1:9\"\nclient_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/k.pem\"\n"
                .to_string(),
            "upstream.client_cert",
        ),
    ] {
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        let out = serve_check_in(&dir, &toml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(key), "{toml}: {err}");
    }
}

/// One worker, requests one after another on new client connections: one TLS
/// connection to the upstream serves them all, on both wire paths.
#[test]
fn tls_connections_to_the_upstream_are_pooled() {
    let dir = test_dir("upstream_tls_pool");
    let Some(pki) = pki(&dir) else { return };
    for lean in [true, false] {
        let up = TestUpstream::start(Some(&pki));
        let toml = format!(
            "[upstream]\nurl = \"https://localhost:{}\"\nca_file = \"{}\"\n[limits]\nworkers = 1\nlean_http1 = {lean}\n",
            up.addr.port(),
            pki.ca.display()
        );
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &[]);
        for _ in 0..5 {
            assert_eq!(forged_get().must_send(gw.addr).status, 200);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(up.requests().len(), 5, "lean {lean}");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "lean {lean}");
    }
}

/// An HTTPS upstream that answers `/first` with a body that ends exactly where the
/// gateway's first read of the connection ends (4096 bytes), followed in the same TLS
/// record by a whole response nobody asked for, and any other request rightly.
fn stray_after_4096(pki: &Pki) -> SocketAddr {
    let certs =
        CertificateDer::pem_file_iter(&pki.cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            for _ in 0..20 {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    for _ in 0..10 {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                            if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        let mut out = Vec::new();
                        if head.starts_with(b"GET /first ") {
                            let top = b"HTTP/1.1 200 OK\r\nContent-Length: 4055\r\n\r\n";
                            out.extend_from_slice(top);
                            out.resize(4096, b'a');
                            out.extend_from_slice(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nLEAKED",
                            );
                        } else {
                            out.extend_from_slice(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nright",
                            );
                        }
                        if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    addr
}

/// A GET over HTTP/2 (the bare exchange): the status and the body.
fn h2_get(gw: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let (status, body, _) =
        h2_exchange(gw, "GET", uri("app.example", path), &[], None).expect("an HTTP/2 GET");
    (status, body.into_bytes())
}

/// Bytes past a response that rustls already decrypted are on no socket: an idle TLS
/// connection holding them was pooled, and the next request — another client's — read
/// them as its answer. Such a connection is gone, as one with bytes on its socket is.
#[test]
fn plaintext_past_a_response_makes_a_tls_connection_gone() {
    let dir = test_dir("upstream_tls_stray_plaintext");
    let Some(pki) = pki(&dir) else { return };
    let up = stray_after_4096(&pki);
    let toml = format!(
        "[upstream]\nurl = \"https://localhost:{}\"\nca_file = \"{}\"\n[limits]\nworkers = 1\n",
        up.port(),
        pki.ca.display()
    );
    let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &[]);
    // HTTP/2 (the bare exchange), then HTTP/1.1 (the lean path).
    let (status, body) = h2_get(gw.addr, "/first");
    assert_eq!((status, body.len()), (200, 4055));
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = h2_get(gw.addr, "/second");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "right"));
    let first = Req::get("/first").must_send(gw.addr);
    assert_eq!((first.status, first.body.len()), (200, 4055));
    std::thread::sleep(Duration::from_millis(100));
    let second = Req::get("/second").must_send(gw.addr);
    assert_eq!((second.status, second.text().as_str()), (200, "right"));
}
