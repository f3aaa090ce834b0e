//! TCP mode (`[[listen]] mode = "tcp"`): a byte relay that opens every upstream connection with
//! a PROXY header naming the client it resolved — the peer, or the source of a PROXY header the
//! peer was trusted to send.
//!
//! Two upstreams decode that header: the test's own (records the decoded source, echoes the
//! bytes), and nginx with `listen ... proxy_protocol` answering `$proxy_protocol_addr`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use common::*;

fn tcp_toml(listen: SocketAddr, upstream: SocketAddr, send: &str, extra_listen: &str) -> String {
    format!(
        "[client_ip]
proxy_protocol_from = [\"{HAPROXY_SOURCE}\"]

[limits]
proxy_protocol_timeout = \"1s\"

[[listen]]
address = \"{listen}\"
mode = \"tcp\"
upstream = \"{upstream}\"
send_proxy_protocol = \"{send}\"
{extra_listen}"
    )
}

/// Writes `payload`, half-closes, and returns everything echoed back.
fn relay(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = connect(addr).expect("connect to the TCP listener");
    s.write_all(payload).expect("write payload");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read the echo");
    back
}

fn decoded_source(up: &Upstream) -> SocketAddr {
    let seen = up.wait_for(1, Duration::from_secs(5));
    let last = seen.last().expect("the upstream got no connection");
    match &last.proxy {
        Some(Ok(Some((src, _dst)))) => *src,
        other => panic!("the upstream could not decode a PROXY header with a source: {other:?}"),
    }
}

#[test]
fn direct_client_reaches_the_upstream_as_itself_v2() {
    let dir = test_dir("tcp_mode/direct_v2");
    let up = Upstream::start(Behavior::ProxyEcho);
    let listen = free_addr();
    let _gw =
        Gateway::start_with_config(&dir, &tcp_toml(listen, up.addr, "v2", ""), &[listen], &[]);
    // The client's first bytes forge a PROXY header: on a listener that does not expect one,
    // they are payload, carried verbatim behind the gateway's own header.
    let forged = proxy_v1(format!("{FORGED_XFF}:1234").parse().expect("addr"), listen);
    let mut payload = forged.clone();
    payload.extend((0..100_000u32).map(|i| (i % 253) as u8));
    let back = relay(listen, &payload);
    assert_eq!(back.len(), payload.len(), "the relay lost or added bytes");
    assert!(back == payload, "the relay changed the bytes");
    assert_eq!(decoded_source(&up).ip().to_string(), CLIENT_IP);
}

#[test]
fn send_proxy_protocol_v1() {
    let dir = test_dir("tcp_mode/direct_v1");
    let up = Upstream::start(Behavior::ProxyEcho);
    let listen = free_addr();
    let _gw =
        Gateway::start_with_config(&dir, &tcp_toml(listen, up.addr, "v1", ""), &[listen], &[]);
    assert_eq!(relay(listen, b"hello over v1"), b"hello over v1");
    assert_eq!(decoded_source(&up).ip().to_string(), CLIENT_IP);
}

#[test]
fn haproxy_send_proxy_v2_then_tcp_mode_carries_the_real_client() {
    let dir = test_dir("tcp_mode/haproxy");
    let up = Upstream::start(Behavior::ProxyEcho);
    let listen = free_addr();
    let toml = tcp_toml(listen, up.addr, "v2", "proxy_protocol = \"v2\"\n");
    let _gw = Gateway::start_with_config(&dir, &toml, &[listen], &[]);
    let front = free_addr();
    let Some(_haproxy) = Haproxy::send_proxy_v2(&dir, front, listen) else {
        return;
    };
    assert_eq!(relay(front, b"through haproxy"), b"through haproxy");
    // The client, not HAProxy (127.0.0.30) and not the gateway.
    assert_eq!(decoded_source(&up).ip().to_string(), CLIENT_IP);
}

#[test]
fn tcp_listener_refuses_a_proxy_header_from_an_unlisted_sender() {
    let dir = test_dir("tcp_mode/unlisted_sender");
    let up = Upstream::start(Behavior::ProxyEcho);
    let listen = free_addr();
    // Expects PROXY v2, but only from HAProxy's address; the test client forges one.
    let toml = tcp_toml(listen, up.addr, "v2", "proxy_protocol = \"v2\"\n");
    let _gw = Gateway::start_with_config(&dir, &toml, &[listen], &[]);
    let mut bytes = proxy_v2(format!("{FORGED_XFF}:1234").parse().expect("addr"), listen, &[]);
    bytes.extend_from_slice(b"payload");
    let _ = exchange(listen, &bytes, Duration::from_secs(4));
    for seen in up.wait_for(1, Duration::from_millis(500)) {
        if let Some(Ok(Some((src, _)))) = seen.proxy {
            assert_ne!(
                src.ip().to_string(),
                FORGED_XFF,
                "a PROXY header from an unlisted sender was believed"
            );
        }
    }
}

#[test]
fn nginx_decodes_the_proxy_header_the_tcp_relay_sends() {
    let dir = test_dir("tcp_mode/nginx_upstream");
    let nginx_addr = free_addr();
    let server = format!(
        "  server {{
    listen {nginx_addr} proxy_protocol;
    location / {{ return 200 \"proxy_protocol_addr=$proxy_protocol_addr remote_addr=$remote_addr\\n\"; }}
  }}"
    );
    let Some(_nginx) = Nginx::start(&dir, nginx_addr, &server) else {
        return;
    };
    // An HTTP listener beside the TCP one, in the same process.
    let listen = free_addr();
    let http_listen = free_addr();
    let toml =
        tcp_toml(listen, nginx_addr, "v1", &format!("\n[[listen]]\naddress = \"{http_listen}\"\n"));
    let _gw = Gateway::start_with_config(&dir, &toml, &[listen, http_listen], &[]);
    let resp = Req::get("/").headers(&forged_headers()).must_send(listen);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains(&format!("proxy_protocol_addr={CLIENT_IP} ")),
        "nginx decoded {:?}",
        resp.text()
    );
    assert_healthy(http_listen, "a TCP relay in the same process");
}

/// A PROXY v2 header that names the private endpoint the client came through (AWS
/// PrivateLink's VPC endpoint id): the relayed connection's access-log line shows it beside
/// the client.
#[test]
fn the_access_log_names_the_private_endpoint_of_a_relayed_connection() {
    const VPCE: &str = "vpce-08d2bf15fac5001c9";
    let dir = test_dir("tcp_mode/private_link");
    let up = Upstream::start(Behavior::ProxyEcho);
    let listen = free_addr();
    let toml = format!(
        "[client_ip]
proxy_protocol_from = [\"{CLIENT_IP}\"]

[log]
format = \"json\"

[[listen]]
address = \"{listen}\"
mode = \"tcp\"
upstream = \"{}\"
proxy_protocol = \"v2\"
",
        up.addr
    );
    let gw = Gateway::start_with_config(&dir, &toml, &[listen], &[]);
    let tlvs = [&[0xEA, 0x00, 0x17, 0x01][..], VPCE.as_bytes()].concat();
    let source: SocketAddr = "172.31.7.9:50000".parse().expect("addr");
    let mut bytes = proxy_v2(source, listen, &tlvs);
    bytes.extend_from_slice(b"payload");
    assert_eq!(relay(listen, &bytes), b"payload");
    assert_eq!(decoded_source(&up), source);
    // The line is written when the connection ends, by a background thread: poll for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        let out = std::fs::read_to_string(dir.join("trueip.stdout")).unwrap_or_default();
        if let Some(line) = out.lines().find(|l| l.contains("\"mode\":\"tcp\"")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line on stdout:\n{}",
            gw.proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let json = Json::parse(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(json.str_at("client"), "172.31.7.9", "{line}");
    assert_eq!(json.str_at("aws_vpce_id"), VPCE, "{line}");
    assert_eq!(json.get("azure_link_id"), &Json::Null, "{line}");
}

/// The access-log line of the relayed connection from `peer`, once its connection has ended
/// (written by a background thread: polled for).
fn tcp_access_line(gw: &Gateway, dir: &std::path::Path, peer: SocketAddr) -> Json {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let peer = format!("\"peer\":\"{peer}\"");
    loop {
        let out = std::fs::read_to_string(dir.join("trueip.stdout")).unwrap_or_default();
        if let Some(line) =
            out.lines().find(|l| l.contains("\"mode\":\"tcp\"") && l.contains(&peer))
        {
            return Json::parse(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line on stdout:\n{}",
            gw.proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A relay that ends in an error (a client that stops reading past `send_timeout`) or is
/// cut for idling logs the bytes that did move each way: the line was written from the
/// copy's result, which a failed or dropped copy does not give, so it said 0 and 0 exactly
/// when the operator reads it.
///
/// Fails on the code before the fix: `bytes_up` and `bytes` were 0 on both lines.
#[test]
fn a_relay_that_fails_or_idles_logs_the_bytes_it_moved() {
    // An upstream that floods whoever connects and reads nothing after the PROXY header.
    let flood = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let flood_addr = flood.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in flood.incoming().take(4) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..256 {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let listen = free_addr();
    let toml = format!(
        "[log]\nformat = \"json\"\n\n{}",
        tcp_toml(listen, flood_addr, "v2", "")
            .replace("[limits]\n", "[limits]\nsend_timeout = \"1s\"\n")
    );
    let dir = test_dir("tcp_mode/failed_relay_bytes");
    let gw = Gateway::start_with_config(&dir, &toml, &[listen], &[]);
    let mut client = connect(listen).expect("connect");
    client.write_all(b"hello").expect("write");
    // The client reads nothing: the relay's writes to it stall, and fail at send_timeout.
    let line = tcp_access_line(&gw, &dir, client.local_addr().expect("addr"));
    drop(client);
    assert!(line.str_at("error").contains("send_timeout"), "{line:?}");
    assert_eq!(line.get("bytes_up"), &Json::Num(5.0), "{line:?}");
    let Json::Num(down) = line.get("bytes") else { panic!("{line:?}") };
    assert!(*down > 0.0, "the bytes that reached the client's buffers: {line:?}");

    // An echo upstream, and a client that goes quiet after one exchange: cut at
    // idle_timeout.
    let up = Upstream::start(Behavior::ProxyEcho);
    let listen = free_addr();
    let toml = format!(
        "[log]\nformat = \"json\"\n\n{}",
        tcp_toml(listen, up.addr, "v2", "")
            .replace("[limits]\n", "[limits]\nidle_timeout = \"1s\"\n")
    );
    let dir = test_dir("tcp_mode/idle_relay_bytes");
    let gw = Gateway::start_with_config(&dir, &toml, &[listen], &[]);
    let mut client = connect(listen).expect("connect");
    client.write_all(b"hello").expect("write");
    let mut echo = [0; 5];
    client.read_exact(&mut echo).expect("the echo");
    let line = tcp_access_line(&gw, &dir, client.local_addr().expect("addr"));
    assert!(line.str_at("error").contains("idle"), "{line:?}");
    assert_eq!(
        (line.get("bytes_up"), line.get("bytes")),
        (&Json::Num(5.0), &Json::Num(5.0)),
        "{line:?}"
    );
}
