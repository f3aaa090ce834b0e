//! The PROXY protocol listener, fed byte-exact v1 and v2 headers by the test: honoured only from
//! the senders in `--proxy-protocol-from`, and every malformed, truncated or oversized header
//! ends the connection (never a request with a made-up client) while the gateway keeps serving.
//!
//! The gateway runs with `proxy_protocol_timeout = "1s"` so the stalled-header cases finish fast.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

const LIMITS: &str = "[limits]\nproxy_protocol_timeout = \"1s\"\nheader_read_timeout = \"2s\"\n";
/// How long a connection with a bad preamble may stay open: the timeout above plus slack.
const CLOSE_WITHIN: Duration = Duration::from_secs(4);

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

/// A gateway whose listener requires `mode` headers from 127.0.0.1 (the test client), with
/// the whoami page or `upstream` behind it.
fn start(name: &str, mode: &str, from: &str, upstream: Option<&Upstream>) -> Gateway {
    let dir = test_dir(&format!("proxy_protocol/{name}"));
    let url = upstream.map(Upstream::url);
    let mut args = vec!["--proxy-protocol", mode, "--proxy-protocol-from", from];
    if let Some(url) = url.as_deref() {
        args.extend_from_slice(&["--upstream", url]);
    }
    Gateway::start_with_toml(&dir, free_addr(), LIMITS, &args)
}

/// The gateway answers a well-formed request behind a valid header: it still serves.
fn assert_serves(gw: &Gateway, after: &str) {
    let pre = proxy_v2(sock("192.0.2.200:40000"), gw.addr, &[]);
    let resp = Req::get("/json")
        .send_with_preamble(gw.addr, &pre)
        .unwrap_or_else(|e| panic!("gateway stopped serving after {after}: {e}"));
    assert_eq!(resp.status, 200, "after {after}: {}", resp.text());
}

/// Sends `bytes`, then expects the gateway to close at once without answering 2xx: the
/// header is invalid or over the size cap, so there is nothing to wait for.
fn assert_rejected_at_once(gw: &Gateway, bytes: &[u8], what: &str) {
    let start = Instant::now();
    assert_rejected(gw, bytes, what);
    // assert_rejected's own health check is included; the timeout is 1 s.
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "{what}: closed only after {:?}, as if waiting for the PROXY timeout",
        start.elapsed()
    );
}

/// Sends `bytes`, then expects the gateway to close without answering 2xx, soon.
fn assert_rejected(gw: &Gateway, bytes: &[u8], what: &str) {
    let start = Instant::now();
    let ending = exchange(gw.addr, bytes, CLOSE_WITHIN + Duration::from_secs(2));
    assert!(
        ending.is_closed(),
        "{what}: connection still open after {:?}; got {:?}",
        start.elapsed(),
        String::from_utf8_lossy(ending.bytes())
    );
    if let Some(status) = ending.status() {
        assert!(
            status >= 400,
            "{what}: answered {status}: {}",
            String::from_utf8_lossy(ending.bytes())
        );
    }
    assert!(start.elapsed() <= CLOSE_WITHIN, "{what}: took {:?} to close", start.elapsed());
    assert_serves(gw, what);
}

#[test]
fn v1_and_v2_headers_name_the_client() {
    let gw = start("v1_v2", "any", CLIENT_IP, None);
    let cases = [
        ("v1 tcp4", proxy_v1(sock("203.0.113.10:5555"), gw.addr), "203.0.113.10"),
        ("v1 tcp6", proxy_v1(sock("[2001:db8::10]:5555"), sock("[::1]:80")), "2001:db8::10"),
        ("v2 tcp4", proxy_v2(sock("203.0.113.11:5555"), gw.addr, &[]), "203.0.113.11"),
        ("v2 tcp6", proxy_v2(sock("[2001:db8::11]:5555"), sock("[::1]:80"), &[]), "2001:db8::11"),
        (
            // A TLV (PP2_TYPE_AUTHORITY) the gateway may ignore but must skip correctly.
            "v2 with TLV",
            proxy_v2(sock("203.0.113.12:5555"), gw.addr, &[0x02, 0x00, 0x03, b'a', b'.', b'b']),
            "203.0.113.12",
        ),
    ];
    for (what, pre, client) in cases {
        let resp = Req::get("/json")
            .headers(&forged_headers())
            .send_with_preamble(gw.addr, &pre)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(resp.status, 200, "{what}: {}", resp.text());
        let json = resp.json();
        assert_eq!(json.str_at("client_ip"), client, "{what}: {json:?}");
    }
}

#[test]
fn header_source_reaches_the_upstream_and_forged_headers_do_not() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("to_upstream", "v2", CLIENT_IP, Some(&up));
    let pre = proxy_v2(sock("203.0.113.20:6000"), gw.addr, &[]);
    let resp = Req::get("/")
        .headers(&forged_headers())
        .send_with_preamble(gw.addr, &pre)
        .expect("request behind PROXY v2");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_clean_forwarding(&up.last(), "203.0.113.20", "PROXY v2 source");
}

#[test]
fn local_and_unknown_headers_mean_the_peer_itself() {
    // Load balancers send v2 LOCAL (or v1 UNKNOWN) for their own health checks: no client.
    let gw = start("local_unknown", "any", CLIENT_IP, None);
    let mut local = V2_SIG.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    for (what, pre) in [("v2 LOCAL", local), ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec())] {
        let resp = Req::get("/json")
            .headers(&forged_headers())
            .send_with_preamble(gw.addr, &pre)
            .unwrap_or_else(|e| panic!("request behind {what}: {e}"));
        assert_eq!(resp.status, 200, "{what}: {}", resp.text());
        assert_eq!(resp.json().str_at("client_ip"), CLIENT_IP, "{what}");
    }
}

#[test]
fn a_header_split_across_segments_is_reassembled() {
    // TCP may deliver the header in pieces; a parser that expects it in one read fails here.
    let gw = start("split", "any", CLIENT_IP, None);
    for (what, pre) in [
        ("v2", proxy_v2(sock("203.0.113.60:5000"), gw.addr, &[])),
        ("v1", proxy_v1(sock("203.0.113.60:5000"), gw.addr)),
    ] {
        let mut stream = connect(gw.addr).expect("connect");
        let mut bytes = pre;
        bytes.extend_from_slice(&Req::get("/json").to_bytes());
        for piece in bytes.chunks(7).take(4) {
            stream.write_all(piece).expect("write a piece");
            std::thread::sleep(Duration::from_millis(60));
        }
        stream.write_all(bytes.get(28..).unwrap_or_default()).expect("write the rest");
        let resp = read_response(&mut std::io::BufReader::new(stream), "GET")
            .unwrap_or_else(|e| panic!("{what} in pieces: {e}"));
        assert_eq!(resp.status, 200, "{what}: {}", resp.text());
        assert_eq!(resp.json().str_at("client_ip"), "203.0.113.60", "{what}");
    }
}

#[test]
fn header_from_a_sender_not_listed_is_not_believed() {
    // Only 127.0.0.99 may send PROXY headers; the test client (127.0.0.1) forges one.
    let up = Upstream::start(Behavior::Echo);
    let gw = start("untrusted_sender", "any", "127.0.0.99", Some(&up));
    let pre = proxy_v1(sock("203.0.113.30:7000"), gw.addr);
    let mut bytes = pre;
    bytes.extend_from_slice(&Req::get("/").to_bytes());
    let ending = exchange(gw.addr, &bytes, CLOSE_WITHIN);
    let text = String::from_utf8_lossy(ending.bytes()).into_owned();
    assert!(!text.contains("203.0.113.30"), "the forged PROXY source was believed: {text}");
    for seen in up.requests() {
        assert!(
            !seen.headers.iter().any(|(_, v)| v.contains("203.0.113.30")),
            "the forged PROXY source reached the upstream: {:#?}",
            seen.headers
        );
    }
}

/// Anyone may connect to a PROXY listener: a flood of connections from a sender not
/// listed wrote as many warnings to stderr, each a write a slow stderr holds a worker in.
/// Now a few lines a second are written, and the next one says how many were not.
#[test]
fn strangers_at_a_proxy_listener_write_a_few_lines_a_second() {
    let gw = start("untrusted_flood", "v2", "127.0.0.99", None);
    let started = Instant::now();
    // Each sends a request, so the listener hands it over at once (a silent one would
    // wait out `limits.defer_accept`'s second in the kernel).
    let request = Req::get("/").to_bytes();
    for _ in 0..200 {
        let _ = exchange(gw.addr, &request, Duration::from_secs(2));
    }
    let flood = started.elapsed();
    std::thread::sleep(Duration::from_millis(1100));
    let _ = exchange(gw.addr, &request, Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.proc.log();
        let lines = log.lines().filter(|l| l.contains("connection closed")).count();
        let seconds = flood.as_secs() + 3;
        assert!(
            lines as u64 <= 10 * seconds,
            "{lines} lines for 201 connections in {flood:?}:\n{log}"
        );
        if log.contains("not_logged=") {
            break;
        }
        assert!(Instant::now() < deadline, "no line says how many were left out:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stranger's flood of connections from outside `proxy_protocol_from` and the trusted
/// balancer's broken headers shared one share of log lines: the flood left out every line
/// naming the balancer, the one an operator needs (here a v2 header at a v1 listener,
/// as after a balancer's setting changed). Each kind of sender now has its own share.
///
/// Fails on the code before the fix: no line named the balancer.
#[test]
fn a_strangers_flood_does_not_silence_a_trusted_senders_errors() {
    let gw = start("flood_and_sender", "v1", CLIENT_IP, None);
    let stranger: std::net::IpAddr = "127.0.0.2".parse().expect("an address");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = {
        let flooding = flooding.clone();
        let addr = gw.addr;
        std::thread::spawn(move || {
            rt.block_on(async {
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
                    socket.bind(SocketAddr::new(stranger, 0)).expect("bind 127.0.0.2");
                    if let Ok(s) = socket.connect(addr).await {
                        drop(s);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let wrong_version = proxy_v2(sock("203.0.113.50:5555"), gw.addr, &[]);
    for _ in 0..3 {
        let _ = exchange(gw.addr, &wrong_version, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(400));
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    flood.join().expect("the flood ends");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.proc.log();
        let strangers = log.lines().filter(|l| l.contains("peer=127.0.0.2:")).count();
        let sender = log
            .lines()
            .filter(|l| l.contains("connection closed") && l.contains("peer=127.0.0.1:"))
            .count();
        assert!(strangers >= 10, "the flood was logged:\n{log}");
        if sender == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{sender} of the balancer's 3 lines written:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn request_without_the_required_header_is_refused() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("missing_header", "v2", CLIENT_IP, Some(&up));
    assert_rejected_at_once(&gw, &Req::get("/").to_bytes(), "plain HTTP on a PROXY v2 listener");
    // v1 on a v2-only listener is refused too.
    let mut v1 = proxy_v1(sock("203.0.113.31:7000"), gw.addr);
    v1.extend_from_slice(&Req::get("/").to_bytes());
    assert_rejected_at_once(&gw, &v1, "PROXY v1 on a v2-only listener");
    assert_only_valid_requests_reached(&up);
}

#[test]
fn garbage_truncated_and_oversized_headers_close_the_connection() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("malformed", "any", CLIENT_IP, Some(&up));
    let v2 = proxy_v2(sock("203.0.113.40:8000"), gw.addr, &[]);

    let garbage: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    assert_rejected_at_once(&gw, &garbage, "4 KiB of garbage");
    assert_rejected_at_once(
        &gw,
        b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
        "v1 with a bad address",
    );
    assert_rejected_at_once(
        &gw,
        b"PROXY TCP4 203.0.113.40 127.0.0.1 99999 80\r\n",
        "v1 with a bad port",
    );
    assert_rejected_at_once(
        &gw,
        b"PROXY TCP4 010.0.0.1 127.0.0.1 1 80\r\n",
        "v1 with a leading-zero octet",
    );
    assert_rejected(&gw, b"PROXY TCP4 203.0.113.40", "v1 truncated, then silence");
    let long_v1 = format!("PROXY TCP4 {} 127.0.0.1 1 80\r\n", "1".repeat(300));
    assert_rejected_at_once(&gw, long_v1.as_bytes(), "v1 line over 107 bytes");
    let no_crlf = format!("PROXY TCP4 {}", "9".repeat(4096));
    assert_rejected_at_once(&gw, no_crlf.as_bytes(), "4 KiB v1 line without CRLF");
    assert_rejected(&gw, v2.get(..10).unwrap_or_default(), "v2 signature cut short");
    assert_rejected(&gw, v2.get(..20).unwrap_or_default(), "v2 address block cut short");

    // Declares 65,535 bytes of addresses and TLVs: over any sane cap, refused without waiting.
    let mut huge = V2_SIG.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    huge.extend_from_slice(&[0u8; 1024]);
    assert_rejected_at_once(&gw, &huge, "v2 declaring 65535 bytes");

    // Declares a length too short for its own address family.
    let mut short = V2_SIG.to_vec();
    short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 203, 0, 113, 40]);
    short.extend_from_slice(&Req::get("/").to_bytes());
    assert_rejected_at_once(&gw, &short, "v2 length shorter than its addresses");

    // Version 3 and an unknown command.
    let mut v3 = v2.clone();
    if let Some(b) = v3.get_mut(12) {
        *b = 0x31;
    }
    assert_rejected_at_once(&gw, &v3, "v2 signature with version 3");

    assert_only_valid_requests_reached(&up);
}

/// A sender's bytes quoted in a PROXY error are escaped once, in log mode: the error
/// quoted them with `{:?}` and the line showed `\u{2028}`, Rust's escape, not the bytes.
#[test]
fn a_senders_bytes_in_a_proxy_error_are_logged_once_in_log_mode() {
    let gw = start("log_mode", "any", CLIENT_IP, None);
    assert_rejected_at_once(
        &gw,
        "PROXY TCP4 1.2.3.4\u{2028}\u{1b}[2J 127.0.0.1 1 80\r\n".as_bytes(),
        "v1 with a line separator and ESC in an address",
    );
    let log = logged(&gw.proc, "connection closed: invalid PROXY");
    let line = log.lines().find(|l| l.contains("connection closed: invalid PROXY"));
    assert!(line.is_some_and(|l| l.contains(r#""1.2.3.4\xe2\x80\xa8\x1b[2J""#)), "{log}");
}

/// Only [`assert_serves`]' requests (client 192.0.2.200) may reach the upstream.
fn assert_only_valid_requests_reached(up: &Upstream) {
    for seen in up.requests() {
        assert_eq!(
            seen.one("X-Real-IP"),
            "192.0.2.200",
            "a refused connection produced a request to the upstream: {:#?}",
            seen.headers
        );
    }
}

/// A PROXY v2 header that says the relayed connection was UDP (`\x12`, `\x22`), arriving
/// on a TCP listener: nginx ("unsupported transport") and HAProxy keep the sender as the
/// peer and serve the connection. So does the gateway: the header's addresses are not
/// used, and the header is counted (`trueip_proxy_protocol_ignored_total`).
#[test]
fn a_v2_header_claiming_udp_on_tcp_keeps_the_sender_as_the_peer() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("udp_on_tcp", "any", CLIENT_IP, Some(&up));
    let udp = |src: &str, dst: SocketAddr| {
        let mut pre = proxy_v2(sock(src), dst, &[]);
        if let Some(fam) = pre.get_mut(13) {
            // 0x11 (TCP over IPv4) becomes 0x12, 0x21 (TCP over IPv6) 0x22.
            *fam += 1;
        }
        pre
    };
    for (what, pre) in [
        ("udp4", udp("203.0.113.50:5000", gw.addr)),
        ("udp6", udp("[2001:db8::50]:5000", sock("[::1]:80"))),
    ] {
        let resp = Req::get("/udp")
            .send_with_preamble(gw.addr, &pre)
            .unwrap_or_else(|e| panic!("{what}: the connection was not served: {e}"));
        assert_eq!(resp.status, 200, "{what}: {}", resp.text());
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), CLIENT_IP, "{what}: the sender is the peer");
        assert!(
            !seen
                .headers
                .iter()
                .any(|(_, v)| v.contains("203.0.113.50") || v.contains("2001:db8::50")),
            "{what}: the UDP source reached the upstream: {:#?}",
            seen.headers
        );
    }
    // From a private address: the metrics answer no stranger.
    let metrics = Req::get("/.trueip/metrics")
        .send_with_preamble(gw.addr, &proxy_v2(sock("10.0.0.200:40000"), gw.addr, &[]))
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("trueip_proxy_protocol_ignored_total{reason=\"datagram\"} 2"),
        "{metrics}"
    );
}

/// Behind AWS PrivateLink or Azure Private Link the load balancer's PROXY v2 header names
/// the endpoint the client came through (TLV `0xEA` subtype `0x01`, TLV `0xEE` subtype
/// `0x01`): the one identity such a client has, since its address is one in its own
/// network. The whoami page (HTML and JSON) and the access log (text and JSON) show both;
/// a header whose addresses are not used (a UDP flow) names no endpoint either.
#[test]
fn private_endpoint_ids_reach_whoami_and_the_access_log() {
    const VPCE: &str = "vpce-08d2bf15fac5001c9";
    // 0x12345678, little-endian on the wire.
    const LINK_ID: u32 = 305_419_896;
    let tlvs = [
        &[0xEA, 0x00, 0x17, 0x01][..],
        VPCE.as_bytes(),
        &[0xEE, 0x00, 0x05, 0x01, 0x78, 0x56, 0x34, 0x12],
    ]
    .concat();
    for format in ["text", "json"] {
        let dir = test_dir(&format!("proxy_protocol/private_link_{format}"));
        let toml = format!("{LIMITS}[log]\nformat = \"{format}\"\naccess_log = true\n");
        let args = ["--proxy-protocol", "v2", "--proxy-protocol-from", CLIENT_IP];
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &args);
        let pre = proxy_v2(sock("172.31.7.9:50000"), gw.addr, &tlvs);

        // A plain GET takes the lean HTTP/1.1 path; a request with a body, hyper's.
        for (path, req) in
            [("lean", Req::get("/json")), ("hyper", Req::post("/json", b"body".to_vec()))]
        {
            let json = req
                .send_with_preamble(gw.addr, &pre)
                .unwrap_or_else(|e| panic!("{format}, {path}: {e}"))
                .json();
            assert_eq!(json.str_at("client_ip"), "172.31.7.9", "{path}: {json:?}");
            assert_eq!(json.str_at("aws_vpce_id"), VPCE, "{path}: {json:?}");
            assert_eq!(
                json.get("azure_link_id"),
                &Json::Num(f64::from(LINK_ID)),
                "{path}: {json:?}"
            );
        }
        let html = Req::get("/private-link-page")
            .header("Accept", "text/html")
            .send_with_preamble(gw.addr, &pre)
            .unwrap_or_else(|e| panic!("{format}: {e}"))
            .text();
        assert!(html.contains(VPCE), "{html}");
        assert!(html.contains(&LINK_ID.to_string()), "{html}");

        let mut udp = proxy_v2(sock("172.31.7.10:50000"), gw.addr, &tlvs);
        if let Some(fam) = udp.get_mut(13) {
            *fam += 1; // TCP over IPv4 becomes UDP over IPv4
        }
        let json = Req::get("/json")
            .send_with_preamble(gw.addr, &udp)
            .unwrap_or_else(|e| panic!("{format}, udp: {e}"))
            .json();
        assert_eq!(json.get("aws_vpce_id"), &Json::Null, "{json:?}");
        assert_eq!(json.get("azure_link_id"), &Json::Null, "{json:?}");

        let line = access_log_line(&gw, "/private-link-page");
        if format == "json" {
            let json = Json::parse(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert_eq!(json.str_at("aws_vpce_id"), VPCE, "{line}");
            assert_eq!(json.get("azure_link_id"), &Json::Num(f64::from(LINK_ID)), "{line}");
        } else {
            assert!(line.contains(&format!("aws_vpce_id=\"{VPCE}\"")), "{line}");
            assert!(line.contains(&format!("azure_link_id={LINK_ID}")), "{line}");
        }
    }
}

/// A header the policy does not believe (a trusted sender naming `0.0.0.0`, which no
/// client connects from: the sender stays the client) is believed in nothing else
/// either: its SSL TLV does not make the request `https` for the upstream, as its
/// private endpoint is not shown. A believed header's TLV does.
#[test]
fn an_unbelieved_headers_tls_flag_does_not_set_the_scheme() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("unbelieved_tls", "v2", CLIENT_IP, Some(&up));
    // SSL: the client used TLS (0x01), verified (0).
    let ssl = [0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0];
    for (source, client, proto) in
        [("203.0.113.20:6000", "203.0.113.20", "https"), ("0.0.0.0:0", CLIENT_IP, "http")]
    {
        let pre = proxy_v2(sock(source), gw.addr, &ssl);
        let resp = Req::get("/")
            .send_with_preamble(gw.addr, &pre)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(resp.status, 200, "{source}: {}", resp.text());
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), client, "{source}: {:#?}", seen.headers);
        assert_eq!(seen.one("X-Forwarded-Proto"), proto, "{source}: {:#?}", seen.headers);
    }
}
