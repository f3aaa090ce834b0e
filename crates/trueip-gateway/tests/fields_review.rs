//! Header fields that arrive somewhere other than the request head, and headers the head
//! carries that no table named (an attacker's review): HTTP/1.1 chunked trailers and
//! HTTP/2 trailers, to an HTTP/1.1 and an HTTP/2 upstream; a stranger's `Via`.
//!
//! The upstream is a small hyper server (HTTP/1.1, and HTTP/2 with prior knowledge) on
//! loopback that records each request's head, its trailers and its body.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request the recording upstream received.
#[derive(Clone, Debug)]
struct Got {
    version: http::Version,
    headers: Vec<(String, String)>,
    /// The trailer fields, when the body ended with some.
    trailers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn seen(&self) -> Seen {
        Seen {
            peer: "127.0.0.1:1".parse().unwrap(),
            method: String::new(),
            path: String::new(),
            headers: self.headers.clone(),
            body_len: self.body.len(),
            proxy: None,
        }
    }
}

/// A hyper upstream (HTTP/1.1, and HTTP/2 by prior knowledge) on loopback that reads
/// each request's body to its end, trailers included, records it, and answers 200 `ok`.
struct Recorder {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

fn lines(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

impl Recorder {
    fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                // Bounded: no test here opens more upstream connections than this.
                for _ in 0..1000 {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let record = record.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: http::Request<hyper::body::Incoming>| {
                                let record = record.clone();
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let collected = body.collect().await;
                                    let (trailers, body) = match collected {
                                        Ok(c) => (
                                            c.trailers().map(lines).unwrap_or_default(),
                                            c.to_bytes().to_vec(),
                                        ),
                                        Err(_) => (Vec::new(), b"<broken>".to_vec()),
                                    };
                                    record.lock().unwrap().push(Got {
                                        version: parts.version,
                                        headers: lines(&parts.headers),
                                        trailers,
                                        body,
                                    });
                                    Ok::<_, std::convert::Infallible>(http::Response::new(
                                        Full::new(Bytes::from("ok")),
                                    ))
                                }
                            },
                        );
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            });
        });
        Recorder { addr, got }
    }

    fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// The client-IP fields a client writes into its trailers, in the spellings apps read.
const FORGED_TRAILERS: [(&str, &str); 5] = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Real-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("CF-Connecting-IP", "6.6.6.6"),
];

/// A chunked HTTP/1.1 POST whose trailers carry [`FORGED_TRAILERS`], announced in a
/// `Trailer` line as RFC 9110 §6.6.2 asks, on a connection the client then closes.
fn chunked_with_trailers() -> Vec<u8> {
    let mut req = String::from(
        "POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\
         TE: trailers\r\nTrailer: X-Forwarded-For, X-Real-IP, Forwarded, True-Client-IP, \
         CF-Connecting-IP\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n",
    );
    for (name, value) in FORGED_TRAILERS {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// The same request over HTTP/2 (h2c, prior knowledge): a HEADERS frame, a DATA frame,
/// then the trailers in a HEADERS frame that ends the stream.
fn h2_with_trailers(gw: SocketAddr) -> Result<u16, String> {
    block_on(async move {
        let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::builder()
            .method("POST")
            .uri(uri("app.example", "/upload"))
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
        send.send_data(Bytes::from_static(b"hello"), false).map_err(|e| e.to_string())?;
        let mut trailers = http::HeaderMap::new();
        for (name, value) in FORGED_TRAILERS {
            trailers.append(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                http::HeaderValue::from_static(value),
            );
        }
        send.send_trailers(trailers).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .map_err(|_| "no response".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    })
}

fn toml(upstream: SocketAddr, http2: bool) -> String {
    format!("[upstream]\nurl = \"http://{upstream}\"\nhttp2 = {http2}\n")
}

/// A client's trailers carry no field the upstream receives: neither a client-IP header
/// (which an app or server that merges trailers into the header map — some WSGI and
/// Node servers, gRPC frameworks — reads as the real one), nor anything else, since the
/// header rules never saw them. nginx drops request trailers the same way.
///
/// Fails on the code before the fix for an HTTP/2 upstream: hyper's HTTP/2 client sends
/// every trailer frame it is handed, and the request body went upstream frame by frame
/// (an HTTP/1.1 upstream got none only because `Trailer`, which hyper's HTTP/1.1 client
/// needs to send any, is hop-by-hop).
#[test]
fn a_clients_trailers_never_reach_the_upstream() {
    let dir = test_dir("fields_review/trailers");
    let up = Recorder::start();
    for http2 in [false, true] {
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml(up.addr, http2), &[]);
        for h2_client in [false, true] {
            let context = format!("upstream http2 {http2}, client h2 {h2_client}");
            let before = up.requests().len();
            if h2_client {
                assert_eq!(h2_with_trailers(gw.addr), Ok(200), "{context}");
            } else {
                let mut stream = connect(gw.addr).unwrap();
                stream.write_all(&chunked_with_trailers()).unwrap();
                let resp = read_response(&mut BufReader::new(stream), "POST").unwrap();
                assert_eq!(resp.status, 200, "{context}: {}", resp.text());
            }
            let got = up.wait_for_len(before + 1);
            let got = got.get(before).unwrap();
            let want = if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
            assert_eq!(got.version, want, "{context}");
            assert_eq!(got.body, b"hello", "{context}: the body still goes whole");
            assert_eq!(
                got.trailers,
                Vec::<(String, String)>::new(),
                "{context}: no trailer reaches the upstream"
            );
            assert_clean_forwarding(&got.seen(), "127.0.0.1", &context);
        }
    }
}

impl Recorder {
    /// Waits until at least `n` requests arrived (up to 10 s), and returns them all.
    fn wait_for_len(&self, n: usize) -> Vec<Got> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.requests();
            if got.len() >= n || std::time::Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `lines` to `gw` three ways — the lean path (a plain GET), hyper's HTTP/1.1 path
/// (a POST with a body) and HTTP/2 (h2c) — and returns what the upstream received for
/// each, with the way's name.
fn three_ways(gw: SocketAddr, up: &Recorder, lines: &[(&str, &str)]) -> Vec<(&'static str, Got)> {
    let owned: Vec<(String, String)> =
        lines.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let mut got = Vec::new();
    for way in ["lean", "hyper", "h2"] {
        let before = up.requests().len();
        let status = match way {
            "lean" => Req::get("/").headers(&owned).must_send(gw).status,
            "hyper" => Req::post("/", b"hello".to_vec()).headers(&owned).must_send(gw).status,
            _ => {
                let lower: Vec<(String, &str)> =
                    lines.iter().map(|(n, v)| (n.to_ascii_lowercase(), *v)).collect();
                let lines: Vec<(&str, &str)> =
                    lower.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                h2_exchange(gw, "GET", uri("app.example", "/"), &lines, None).unwrap().0
            }
        };
        assert_eq!(status, 200, "{way}");
        let all = up.wait_for_len(before + 1);
        got.push((way, all.get(before).unwrap().clone()));
    }
    got
}

/// PHP reads `X.Forwarded.For` as `X-Forwarded-For` (its variables, `$_SERVER` included,
/// have dots made underscores), and `Client.IP` as the `HTTP_CLIENT_IP` that PHP
/// client-IP snippets read first. Such a spelling of a client-IP header is stripped on
/// every path, as the underscore spelling is, and counted.
///
/// Fails on the code before the fix: every dotted spelling reached the upstream.
#[test]
fn dotted_spellings_of_client_ip_headers_are_stripped_on_every_path() {
    stripped_on_every_path(
        "fields_review/dots",
        &[
            ("X.Forwarded.For", "6.6.6.6"),
            ("X.Real.IP", "6.6.6.6"),
            ("Client.IP", "6.6.6.6"),
            ("CF.Connecting.IP", "6.6.6.6"),
            ("True-Client.IP", "6.6.6.6"),
            ("X_Forwarded.Proto", "https"),
        ],
    );
}

/// Sends the six `forged` lines (client addresses 6.6.6.6, and a scheme claim `https`)
/// from a stranger on each of the three ways in: none reaches the upstream, no name
/// spelled other than with letters, digits and dashes does, the scheme is the
/// connection's, and every line is counted as stripped.
fn stripped_on_every_path(dir: &str, forged: &[(&str, &str)]) {
    let dir = test_dir(dir);
    let up = Recorder::start();
    let gw = Gateway::start_with_toml(&dir, free_addr(), &toml(up.addr, false), &[]);
    for (way, got) in three_ways(gw.addr, &up, forged) {
        let seen = got.seen();
        assert_clean_forwarding(&seen, "127.0.0.1", way);
        for (name, value) in &seen.headers {
            assert!(
                !value.contains("6.6.6.6")
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{way}: {name}: {value} reached the upstream"
            );
        }
        assert_eq!(seen.one("X-Forwarded-Proto"), "http", "{way}");
    }
    let m = metrics(gw.addr);
    let stripped = format!("trueip_stripped_headers_total {}", 3 * forged.len());
    assert!(m.contains(&stripped), "each line stripped on each of three paths: {m}");
}

/// lighttpd's CGI, FastCGI and SCGI make every byte of a header name that is not a letter
/// or a digit an underscore, so PHP behind lighttpd reads `X~Forwarded~For` as
/// `HTTP_X_FORWARDED_FOR` and `True+Client+IP` as `HTTP_TRUE_CLIENT_IP`. Stripped on every
/// path and counted, as the dotted spellings are.
///
/// Fails on the code before the fix: only `_` and `.` were read as dashes, and these
/// reached the upstream.
#[test]
fn punctuation_spellings_of_client_ip_headers_are_stripped_on_every_path() {
    stripped_on_every_path(
        "fields_review/punctuation",
        &[
            ("X~Forwarded~For", "6.6.6.6"),
            ("X+Real+IP", "6.6.6.6"),
            ("True!Client*IP", "6.6.6.6"),
            ("CF'Connecting|IP", "6.6.6.6"),
            ("X#Forwarded$For", "6.6.6.6"),
            ("X^Forwarded`Proto", "https"),
        ],
    );
}

/// django-ipware up to 4 reads `HTTP_VIA` as a client address: a stranger's `Via` is
/// withheld on every path and not counted as a forgery (forward proxies in front of
/// clients write it honestly). A trusted hop's is withheld too, unless `[headers] relay`
/// names it: nginx hands on the client's `Via` as it came, and CloudFront appends to it,
/// so a client with a private address behind either was `6.6.6.6` to django-ipware.
///
/// Fails on the code before the fix: a trusted hop's `Via: 6.6.6.6` reached the upstream.
#[test]
fn via_passes_only_from_a_trusted_hop_that_relays_it() {
    let dir = test_dir("fields_review/via");
    let up = Recorder::start();
    let stranger = Gateway::start_with_toml(&dir, free_addr(), &toml(up.addr, false), &[]);
    let via = [("Via", "6.6.6.6")];
    for (way, got) in three_ways(stranger.addr, &up, &via) {
        let seen = got.seen();
        assert_eq!(seen.all("via"), Vec::<&str>::new(), "{way}");
        assert_clean_forwarding(&seen, "127.0.0.1", way);
    }
    let m = metrics(stranger.addr);
    assert!(
        m.contains("trueip_stripped_headers_total 0"),
        "an honest forward proxy's Via is no forgery: {m}"
    );
    let trusting = format!("{}[client_ip]\ntrusted = [\"127.0.0.1/32\"]\n", toml(up.addr, false));
    let behind = Gateway::start_with_toml(&dir, free_addr(), &trusting, &[]);
    // What nginx passes, and what CloudFront makes of the client's line.
    let client = [("Via", "6.6.6.6")];
    let appended = [("Via", "6.6.6.6, 1.1 abc.cloudfront.net (CloudFront)")];
    for lines in [&client, &appended] {
        for (way, got) in three_ways(behind.addr, &up, lines) {
            assert_eq!(got.seen().all("via"), Vec::<&str>::new(), "{way}");
        }
    }
    let m = metrics(behind.addr);
    assert!(m.contains("trueip_stripped_headers_total 0"), "{m}");
    let relaying = format!("{trusting}[headers]\nrelay = [\"via\"]\n");
    let relays = Gateway::start_with_toml(&dir, free_addr(), &relaying, &[]);
    let cloudfront = [("Via", "1.1 abc.cloudfront.net (CloudFront)")];
    for (way, got) in three_ways(relays.addr, &up, &cloudfront) {
        assert_eq!(got.seen().all("via"), vec!["1.1 abc.cloudfront.net (CloudFront)"], "{way}");
    }
}

/// The firewalls', CDNs' and platforms' client headers that apps read (`HTTP_INCAP_CLIENT_IP`
/// in WordPress security plugins, `HTTP_X_SUCURI_CLIENTIP`, `HTTP_CDN_SRC_IP` in PHP
/// forum and CMS code, `HTTP_X_FORWARDED_IP` in PHP and Java helpers; Azure App Service's
/// `X-ARR-ClientIP`, Netlify's `X-BB-IP`, Vercel's `X-Vercel-Proxied-For`, ASP.NET Core's
/// `X-Original-For`, `X-Original-IP`, `X-Real-Client-IP`, Alibaba Cloud CDN's
/// `Ali-Cdn-Real-Ip`, Tencent EdgeOne's `EO-Connecting-IP` and `EO-Client-IP`) are
/// client-IP headers: from a stranger, in any spelling, none reaches the upstream, each
/// counted as a forgery; from a trusted hop whose policy reads none of them, they are
/// dropped.
///
/// Fails on the code before each fix: the first four passed from anyone, as the client
/// wrote them, and so did the platforms' nine until the table had them.
#[test]
fn waf_and_cdn_client_headers_apps_read_are_client_ip_headers() {
    let platforms = [
        ("X-ARR-ClientIP", "6.6.6.6:51234"),
        ("X-BB-IP", "6.6.6.6"),
        ("X-Vercel-Proxied-For", "6.6.6.6"),
        ("X-Original-For", "6.6.6.6:51234"),
        ("X-Original-IP", "6.6.6.6"),
        ("X-Real-Client-IP", "6.6.6.6"),
        ("Ali-Cdn-Real-Ip", "6.6.6.6"),
        ("EO-Connecting-IP", "6.6.6.6"),
        ("EO-Client-IP", "6.6.6.6"),
    ];
    let mut forged = vec![
        ("Incap-Client-IP", "6.6.6.6"),
        ("X-Sucuri-ClientIP", "6.6.6.6"),
        ("Cdn-Src-Ip", "6.6.6.6"),
        ("X-Forwarded-IP", "6.6.6.6"),
        ("X_Sucuri_ClientIP", "6.6.6.6"),
        ("X_ARR_ClientIP", "6.6.6.6"),
        ("X_Forwarded.Proto", "https"),
        ("X-ARR-SSL", "2048|256"),
    ];
    forged.extend(platforms);
    stripped_on_every_path("fields_review/waf_headers", &forged);
    let dir = test_dir("fields_review/waf_headers_trusted");
    let up = Recorder::start();
    let trusting = format!("{}[client_ip]\ntrusted = [\"127.0.0.1/32\"]\n", toml(up.addr, false));
    let gw = Gateway::start_with_toml(&dir, free_addr(), &trusting, &[]);
    let mut lines = vec![
        ("Incap-Client-IP", "6.6.6.6"),
        ("X-Sucuri-ClientIP", "6.6.6.6"),
        ("Cdn-Src-Ip", "6.6.6.6"),
        ("X-Forwarded-IP", "6.6.6.6"),
    ];
    lines.extend(platforms);
    for (way, got) in three_ways(gw.addr, &up, &lines) {
        for (name, value) in &got.seen().headers {
            assert!(!value.contains("6.6.6.6"), "{way}: {name}: {value} reached the upstream");
        }
    }
}

/// Who the client proved to be: the client certificate a TLS-terminating hop checked, as
/// Envoy (`X-Forwarded-Client-Cert`), RFC 9440 (`Client-Cert`), nginx and HAProxy
/// (`X-SSL-Client-*`), ingress-nginx (`ssl-client-*`), Traefik, an ALB, CloudFront and App
/// Service hand it on, and Envoy's word that the request came from inside
/// (`X-Envoy-Internal`). Apps behind those hops take them as authentication. `trueip
/// serve` terminates TLS itself and asks for no certificate, so nobody behind it can check
/// them: from a stranger none reaches the upstream, in any spelling, each counted; from a
/// trusted hop (the one that checked the certificate) each passes as it came, as its
/// `X-Forwarded-Proto` does.
///
/// Fails on the code before the fix: every line reached the upstream from a stranger
/// ("lean: x-forwarded-client-cert reached the upstream").
#[test]
fn client_certificate_claims_reach_the_upstream_only_from_a_trusted_hop() {
    let claims = [
        (
            "X-Forwarded-Client-Cert",
            "By=spiffe://app;Hash=0f;Subject=\"CN=admin\";URI=spiffe://ops/admin",
        ),
        ("X-Envoy-Internal", "true"),
        ("Client-Cert", ":MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6:"),
        ("X-Client-Cert", "MIIBqDCCAU6gAwIBAgIBBzAK"),
        ("X-ARR-ClientCert", "MIIBqDCCAU6gAwIBAgIBBzAK"),
        ("X-Client-Verify", "SUCCESS"),
        ("X-Client-DN", "/CN=admin"),
        ("X-SSL-Client-Verify", "SUCCESS"),
        ("X-SSL-Client-S-DN", "CN=admin,O=ops"),
        ("ssl-client-verify", "SUCCESS"),
        ("ssl-client-subject-dn", "CN=admin,O=ops"),
        ("X-Forwarded-Tls-Client-Cert", "MIIBqDCCAU6gAwIBAgIBBzAK"),
        ("X-Amzn-Mtls-Clientcert-Subject", "CN=admin,O=ops"),
        ("CloudFront-Viewer-Cert-Present", "1"),
    ];
    let mut forged = claims.to_vec();
    forged.extend([
        ("SSL_Client_Cert", "MIIBqDCCAU6gAwIBAgIBBzAK"),
        ("X_SSL_Client_Verify", "SUCCESS"),
    ]);
    let dir = test_dir("fields_review/identity");
    let up = Recorder::start();
    let gw = Gateway::start_with_toml(&dir, free_addr(), &toml(up.addr, false), &[]);
    for (way, got) in three_ways(gw.addr, &up, &forged) {
        for (name, value) in &got.seen().headers {
            assert!(
                !forged.iter().any(|(n, _)| n
                    .replace('_', "-")
                    .eq_ignore_ascii_case(&name.replace('_', "-"))),
                "{way}: {name}: {value} reached the upstream"
            );
        }
    }
    let m = metrics(gw.addr);
    let stripped = format!("trueip_stripped_headers_total {}", 3 * forged.len());
    assert!(m.contains(&stripped), "each line stripped on each of three paths: {m}");

    let dir = test_dir("fields_review/identity_trusted");
    let up = Recorder::start();
    let trusting = format!("{}[client_ip]\ntrusted = [\"127.0.0.1/32\"]\n", toml(up.addr, false));
    let gw = Gateway::start_with_toml(&dir, free_addr(), &trusting, &[]);
    for (way, got) in three_ways(gw.addr, &up, &claims) {
        let seen = got.seen();
        for (name, value) in claims {
            assert_eq!(seen.one(name), value, "{way}: {name}");
        }
    }
}

/// `forwarded = "append"` joins the received `Forwarded` lines into one and adds the
/// gateway's element. A client's quote that never closes, on a line of its own or left of
/// the trusted hop's element on the hop's line, then opened onto everything after it: an
/// app that reads the line left to right, quotes and all, took the trusted elements and the
/// gateway's for the inside of the client's quoted string, and the client's element for the
/// last. The decision reads each line from the right and never lets a quote span lines;
/// the upstream's line now keeps of each received one only what reads so.
///
/// The same holds where the gateway merges a trusted hop's lines under `forwarded = "off"`.
///
/// Fails on the code before the fix: "lean: for=6.6.6.6;x=\", for=6.6.6.5;y=\", for=203.0.113.7, for=127.0.0.1;...".
#[test]
fn an_appended_forwarded_line_carries_no_quote_a_client_left_open() {
    let dir = test_dir("fields_review/forwarded_append_quote");
    let up = Recorder::start();
    let config = |up: SocketAddr, mode: &str| {
        format!(
            "{}[client_ip]\ntrusted = [\"127.0.0.1/32\"]\nfrom = \"forwarded\"\n\n[headers]\nforwarded = \"{mode}\"\n",
            toml(up, false)
        )
    };
    let gw = Gateway::start_with_toml(&dir, free_addr(), &config(up.addr, "append"), &[]);
    let lines =
        [("Forwarded", "for=6.6.6.6;x=\""), ("Forwarded", "for=6.6.6.5;y=\", for=203.0.113.7")];
    for (way, got) in three_ways(gw.addr, &up, &lines) {
        let seen = got.seen();
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.7", "{way}");
        let forwarded = seen.one("Forwarded");
        assert!(
            forwarded.starts_with("for=203.0.113.7, for=127.0.0.1;proto=http"),
            "{way}: {forwarded}"
        );
        assert!(!forwarded.contains('"') && !forwarded.contains("6.6.6."), "{way}: {forwarded}");
    }
    // With `forwarded = "off"` the trusted hop's lines pass, merged into one where a path
    // merges them: what is joined is cut the same way.
    let dir = test_dir("fields_review/forwarded_off_quote");
    let up = Recorder::start();
    let gw = Gateway::start_with_toml(&dir, free_addr(), &config(up.addr, "off"), &[]);
    for (way, got) in three_ways(gw.addr, &up, &lines) {
        let seen = got.seen();
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.7", "{way}");
        let all = seen.all("Forwarded");
        if let [one] = all.as_slice() {
            assert_eq!(*one, "for=203.0.113.7", "{way}");
        } else {
            assert_eq!(all, lines.map(|(_, v)| v), "{way}: the lines as the hop sent them");
        }
    }
}
