//! Requests that try to make the gateway something it is not: an open proxy (absolute-form
//! targets, CONNECT), a request-smuggling relay (Content-Length and Transfer-Encoding together),
//! or a crash (a 100 KiB request target). The upstream the gateway must never reach is a second
//! recording server; the configured one records what does arrive.

mod common;

use std::time::Duration;

use common::*;

fn start(name: &str, up: &Upstream) -> Gateway {
    let dir = test_dir(&format!("request_edges/{name}"));
    let url = up.url();
    Gateway::start(&dir, free_addr(), &["--upstream", &url])
}

#[test]
fn absolute_form_and_connect_never_reach_another_host() {
    let up = Upstream::start(Behavior::Echo);
    let elsewhere = Upstream::start(Behavior::Echo);
    let gw = start("open_proxy", &up);
    let absolute = format!(
        "GET http://{}/steal HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        elsewhere.addr, elsewhere.addr
    );
    let ending = exchange(gw.addr, absolute.as_bytes(), Duration::from_secs(5));
    assert!(ending.is_closed());
    let connect =
        format!("CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n", elsewhere.addr, elsewhere.addr);
    let ending = exchange(gw.addr, connect.as_bytes(), Duration::from_secs(5));
    if let Some(status) = ending.status() {
        assert!(
            !(200..300).contains(&status),
            "CONNECT answered {status}: the gateway opened a tunnel"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        elsewhere.connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the gateway connected to a host named by the client"
    );
    assert_healthy(gw.addr, "absolute-form and CONNECT requests");
}

#[test]
fn content_length_with_transfer_encoding_is_never_forwarded_ambiguously() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("cl_te", &up);
    let smuggle = "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\
                   Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let ending = exchange(gw.addr, smuggle.as_bytes(), Duration::from_secs(5));
    if let Some(status) = ending.status() {
        assert!(status == 200 || status == 400, "CL+TE answered {status}");
    }
    for seen in up.requests() {
        let cl = seen.all("content-length");
        let te = seen.all("transfer-encoding");
        assert!(
            cl.is_empty() || te.is_empty(),
            "the upstream got both Content-Length {cl:?} and Transfer-Encoding {te:?}: {:#?}",
            seen.headers
        );
        assert!(cl.len() <= 1, "several Content-Length lines: {cl:?}");
    }
    // Two Content-Length values that disagree: 400, nothing forwarded.
    let before = up.requests().len();
    let twice =
        "POST /twice HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde";
    let ending = exchange(gw.addr, twice.as_bytes(), Duration::from_secs(5));
    assert_eq!(ending.status(), Some(400), "{:?}", String::from_utf8_lossy(ending.bytes()));
    assert_eq!(up.requests().len(), before, "a request with two lengths was forwarded");
    assert_healthy(gw.addr, "smuggling attempts");
}

#[test]
fn a_100_kib_request_target_is_refused() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("long_uri", &up);
    let path = format!("/{}", "p".repeat(100 * 1024));
    let ending = exchange(gw.addr, &Req::get(&path).to_bytes(), Duration::from_secs(5));
    assert!(ending.is_closed(), "left open");
    if let Some(status) = ending.status() {
        assert!([400, 414, 431].contains(&status), "a 100 KiB request target answered {status}");
    }
    assert!(up.requests().is_empty(), "a 100 KiB target reached the upstream");
    assert_healthy(gw.addr, "a 100 KiB request target");
}

#[test]
fn pipelined_requests_keep_their_own_clients_and_order() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("pipelined", &up);
    let mut bytes = Vec::new();
    for i in 0..5 {
        let req = Req::get(&format!("/p{i}"))
            .header("Connection", if i == 4 { "close" } else { "keep-alive" })
            .header("X-Forwarded-For", FORGED_XFF);
        bytes.extend_from_slice(&req.to_bytes());
    }
    let ending = exchange(gw.addr, &bytes, Duration::from_secs(5));
    let text = String::from_utf8_lossy(ending.bytes()).into_owned();
    let order: Vec<usize> =
        (0..5).filter_map(|i| text.find(&format!("\"path\":\"/p{i}\""))).collect();
    assert_eq!(order.len(), 5, "not every pipelined request was answered: {text}");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "answers out of order: {text}");
    for seen in up.requests() {
        assert_clean_forwarding(&seen, CLIENT_IP, "pipelined");
    }
}

/// A chunked request body that breaks the chunked syntax was answered 502, as if the
/// upstream had failed, and counted as an upstream error. It is the client's fault: 400,
/// counted as a client error, and nothing is blamed on the upstream.
#[test]
fn a_malformed_chunked_request_body_is_the_clients_fault_not_the_upstreams() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("bad_chunked", &up);
    for (what, body) in [
        ("a size that is not hex", "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"),
        ("more data than the size", "3\r\nhello\r\n0\r\n\r\n"),
    ] {
        let request = format!(
            "POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{body}"
        );
        let ending = exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
        assert_eq!(
            ending.status(),
            Some(400),
            "{what}: {}",
            String::from_utf8_lossy(ending.bytes())
        );
    }
    assert_eq!(metric(gw.addr, "trueip_client_errors_total{reason=\"bad_request_body\"}"), 2.0);
    assert_eq!(metric(gw.addr, "trueip_upstream_errors_total"), 0.0);
    assert!(
        up.requests().iter().all(|s| s.path != "/chunked"),
        "a broken body reached the upstream as a complete request"
    );
    assert_healthy(gw.addr, "malformed chunked bodies");
}
