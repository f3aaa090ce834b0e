//! `trueip serve --upstream`: what reaches the app, and what must not.
//!
//! The upstream is a std-thread server that records every request line by line, so the tests
//! see exactly the header lines the gateway sent — duplicates, spellings and all. The test
//! client connects from 127.0.0.1, which the gateway does not trust unless a test says so.

mod common;

use common::*;

fn start(name: &str, up: &Upstream, args: &[&str]) -> Gateway {
    let dir = test_dir(&format!("forwarding/{name}"));
    let url = up.url();
    let mut all = vec!["--upstream", url.as_str()];
    all.extend_from_slice(args);
    Gateway::start(&dir, free_addr(), &all)
}

#[test]
fn forged_headers_from_an_untrusted_client_never_reach_the_upstream() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start(
        "forged_untrusted",
        &up,
        &["--trust", PROXIES_CIDR, "--strategy", "rightmost-untrusted"],
    );
    let resp = Req::get("/app?q=1").headers(&forged_headers()).must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_eq!(seen.path, "/app?q=1");
    assert_clean_forwarding(&seen, CLIENT_IP, "direct untrusted client");
    assert_eq!(seen.one("X-Forwarded-Proto"), "http");
}

#[test]
fn trusted_peer_chain_is_walked_from_the_right() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start(
        "trusted_walk",
        &up,
        &[
            "--trust",
            "127.0.0.1",
            "--trust",
            "10.0.0.0/8",
            "--strategy",
            "rightmost-untrusted",
            "--from",
            "xff",
        ],
    );
    // The client forged 203.0.113.66 on the left; the trusted hops wrote the rest.
    let resp = Req::get("/")
        .header("X-Forwarded-For", &format!("{FORGED_XFF}, 198.51.100.20"))
        .header("X-Forwarded-For", "10.1.2.3")
        .header("X-Real-IP", FORGED_REAL_IP)
        .header("Forwarded", &format!("for={FORGED_FORWARDED_IP}"))
        .must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_clean_forwarding(&up.last(), "198.51.100.20", "trusted peer, two XFF lines");
}

#[test]
fn hygiene_survives_the_known_tricks() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("hygiene", &up, &["--trust", PROXIES_CIDR, "--strategy", "rightmost-untrusted"]);
    let resp = Req::get("/")
        // Underscore spellings reach WSGI/CGI apps as HTTP_X_FORWARDED_FOR.
        .header("X_Forwarded_For", FORGED_XFF)
        .header("X_Real_IP", FORGED_REAL_IP)
        // Hop-by-hop tokens that would delete the gateway's own headers further on.
        .header("Connection", "close, X-Real-IP, X-Forwarded-For, Forwarded")
        // Several lines of each, and mixed Forwarded / X-*.
        .header("X-Forwarded-For", FORGED_XFF)
        .header("X-Forwarded-For", FORGED_REAL_IP)
        .header("x-real-ip", FORGED_REAL_IP)
        .header("X-REAL-IP", FORGED_XFF)
        .header("Forwarded", &format!("for={FORGED_FORWARDED_IP}"))
        .header("forwarded", "for=\"_hidden\", for=unknown")
        .header("X-Forwarded-Proto", "gopher")
        .must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_clean_forwarding(&seen, CLIENT_IP, "hygiene tricks");
    assert_eq!(seen.one("X-Forwarded-Proto"), "http", "{:#?}", seen.headers);
    for (name, value) in &seen.headers {
        assert!(!name.contains('_'), "underscore header {name}: {value} reached the upstream");
        if name.eq_ignore_ascii_case("connection") {
            let lower = value.to_ascii_lowercase();
            assert!(
                !lower.contains("x-real-ip")
                    && !lower.contains("x-forwarded-for")
                    && !lower.contains("forwarded"),
                "the client's Connection tokens reached the upstream: {value}"
            );
        }
    }
}

#[test]
fn single_ip_headers_from_an_untrusted_client_are_removed() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start(
        "single_ip_headers",
        &up,
        &["--trust", PROXIES_CIDR, "--strategy", "rightmost-untrusted"],
    );
    let spoofable = [
        "True-Client-IP",
        "CF-Connecting-IP",
        "Fastly-Client-IP",
        "Fly-Client-IP",
        "X-Azure-ClientIP",
        "CloudFront-Viewer-Address",
    ];
    let mut req = Req::get("/");
    for name in spoofable {
        req = req.header(name, FORGED_XFF);
    }
    let resp = req.must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_clean_forwarding(&seen, CLIENT_IP, "single-IP headers");
    for name in spoofable {
        assert!(
            seen.all(name).is_empty(),
            "{name} from an untrusted client reached the upstream: {:#?}",
            seen.headers
        );
    }
}

#[test]
fn bodies_and_keep_alive_pass_through() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("bodies", &up, &[]);
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let resp = Req::post("/upload", body.clone())
        .header("Content-Type", "application/octet-stream")
        .must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.last().body_len, body.len());
    assert_eq!(up.last().method, "POST");

    // Three requests on one client connection, each answered in order.
    let mut stream = connect(gw.addr).expect("connect");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    for i in 0..3 {
        let req = Req::get(&format!("/keepalive/{i}")).header("Connection", "keep-alive");
        std::io::Write::write_all(&mut stream, &req.to_bytes()).expect("write");
        let resp = read_response(&mut reader, "GET").expect("response on a kept-alive connection");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json().str_at("path"), format!("/keepalive/{i}"));
    }
}

#[test]
fn response_headers_and_status_come_back_unchanged() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("response", &up, &[]);
    let resp = Req::get("/r").must_send(gw.addr);
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type").is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        resp.headers
    );
    assert_eq!(resp.json().str_at("path"), "/r");
    assert_healthy(gw.addr, "proxied requests");
}

#[test]
fn ipv6_client_is_bracketed_and_quoted_in_forwarded() {
    let up = Upstream::start(Behavior::Echo);
    let dir = test_dir("forwarding/ipv6");
    let addr: std::net::SocketAddr = format!("[::1]:{}", free_port()).parse().expect("addr");
    let url = up.url();
    let gw = Gateway::start(&dir, addr, &["--upstream", &url]);
    let resp = Req::get("/v6").headers(&forged_headers()).must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_clean_forwarding(&seen, "::1", "IPv6 client");
    // RFC 7239: an IPv6 node is bracketed, and a bracketed value must be quoted.
    assert!(seen.one("Forwarded").contains("for=\"[::1]"), "Forwarded {:?}", seen.one("Forwarded"));
}

/// A trusted hop relays a client's `True-Client-IP` as readily as it writes its own, so
/// from a trusted hop only the client addresses the policy reads (here X-Forwarded-For),
/// and those `[headers] relay` names, reach the app; claims about the request pass. Both
/// HTTP/1.1 paths: a plain GET takes the lean one, a POST with a body hyper's.
#[test]
fn a_trusted_hop_passes_only_the_client_addresses_the_policy_reads() {
    let up = Upstream::start(Behavior::Echo);
    let toml = "[headers]\nrelay = [\"true-client-ip\"]\n";
    let args = |trust: &'static str| {
        let url = up.url();
        move |name: &str| {
            let dir = test_dir(&format!("forwarding/{name}"));
            let args =
                ["--upstream", url.as_str(), "--trust", trust, "--strategy", "rightmost-untrusted"];
            Gateway::start_with_toml(&dir, free_addr(), toml, &args)
        }
    };
    let behind = args("127.0.0.1")("relay_trusted");
    let unread = ["CF-Connecting-IP", "X-Client-IP", "Fastly-Client-IP", "X-Real-IP", "Forwarded"];
    let requests = [Req::get("/lean"), Req::post("/hyper", b"body".to_vec())];
    for req in requests {
        let mut req = req
            .header("X-Forwarded-For", &format!("{FORGED_XFF}, 198.51.100.20"))
            .header("True-Client-IP", "198.51.100.30")
            .header("X-Forwarded-Host", "shop.example");
        for name in unread {
            req = req.header(name, FORGED_REAL_IP);
        }
        let resp = req.must_send(behind.addr);
        assert_eq!(resp.status, 200, "{}", resp.text());
        let seen = up.last();
        assert_clean_forwarding(&seen, "198.51.100.20", &seen.path);
        assert_eq!(seen.one("True-Client-IP"), "198.51.100.30", "{}", seen.path);
        assert_eq!(seen.one("X-Forwarded-Host"), "shop.example", "{}", seen.path);
        for name in unread.into_iter().filter(|n| !n.contains("Real") && *n != "Forwarded") {
            assert!(
                seen.all(name).is_empty(),
                "{name} from a trusted hop reached the upstream on {}: {:#?}",
                seen.path,
                seen.headers
            );
        }
    }

    // Said at start, for an app that read another header behind an older build.
    let log = behind.proc.log();
    assert!(
        log.contains("any other is dropped: the app reads X-Real-IP")
            && log.contains("true-client-ip ([headers] relay)"),
        "{log}"
    );

    // A relayed name is still the client's from anyone else.
    let direct = args("10.0.0.0/8")("relay_untrusted");
    let resp = Req::get("/").header("True-Client-IP", FORGED_XFF).must_send(direct.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_clean_forwarding(&seen, CLIENT_IP, "untrusted, relay configured");
    assert!(seen.all("True-Client-IP").is_empty(), "{:#?}", seen.headers);
}
