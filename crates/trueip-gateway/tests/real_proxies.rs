//! Real proxies in front of `trueip serve`, started by the tests on loopback: Debian's nginx
//! (1.22, realip built in) and HAProxy (2.6), with generated configs in
//! `target/test-output/real_proxies/<test>/`.
//!
//! | chain                                   | what trueip must trust                     |
//! | --------------------------------------- | ------------------------------------------ |
//! | client → nginx (`$proxy_add_x_forwarded_for`) → trueip | nginx's address, for X-Forwarded-For |
//! | client → HAProxy (`send-proxy-v2`, TCP) → trueip | HAProxy's address, for the PROXY header only |
//! | client → HAProxy (`forwardfor`) → nginx → trueip | both proxies, for X-Forwarded-For |
//!
//! In every chain the client forges `X-Forwarded-For` (naming a trusted proxy too),
//! `X-Real-IP` and `Forwarded`. nginx and HAProxy pass those through (that is what they do):
//! trueip must still hand the upstream the client's real address (127.0.0.1, the test's only
//! possible source), in one clean line of each header, and no forged address anywhere.
//!
//! Needs `nginx` and `haproxy`; `.ci/run` installs them. Without them these tests fail, unless
//! `TRUEIP_SKIP_EXTERNAL=1`.

mod common;

use std::net::SocketAddr;

use common::*;

/// An nginx `server` forwarding to `to`, appending to X-Forwarded-For, connecting from
/// [`NGINX_SOURCE`].
fn nginx_server(listen: SocketAddr, to: SocketAddr) -> String {
    format!(
        "  server {{
    listen {listen};
    location / {{
      proxy_pass http://{to};
      proxy_bind {NGINX_SOURCE};
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}"
    )
}

/// Requests through `front` with every forged header, and checks what the upstream got.
fn assert_chain(front: SocketAddr, up: &Upstream, chain: &str) {
    for (i, path) in ["/", "/a/b?c=d", "/json"].into_iter().enumerate() {
        let resp = Req::get(path)
            .headers(&forged_headers())
            .send(front)
            .unwrap_or_else(|e| panic!("{chain}: request {i} through {front}: {e}"));
        assert_eq!(resp.status, 200, "{chain}: {}", resp.text());
        let seen = up.last();
        assert_eq!(seen.path, path, "{chain}");
        assert_clean_forwarding(&seen, CLIENT_IP, chain);
    }
}

#[test]
fn nginx_then_trueip() {
    let dir = test_dir("real_proxies/nginx");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    let _gw = Gateway::behind_proxies(&dir, gw_addr, Some(&url));
    let front = free_addr();
    let Some(_nginx) = Nginx::start(&dir, front, &nginx_server(front, gw_addr)) else {
        return;
    };
    assert_chain(front, &up, "client → nginx → trueip");
    // The upstream's peer is trueip itself, not nginx.
    assert_eq!(up.last().peer.ip().to_string(), CLIENT_IP);
}

#[test]
fn haproxy_send_proxy_v2_then_trueip() {
    let dir = test_dir("real_proxies/haproxy_v2");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    // HAProxy in TCP mode writes no HTTP header: the PROXY v2 source is the only evidence,
    // and the forged headers travel through untouched. Trusting HAProxy for the PROXY header
    // must not mean trusting the headers that came with the connection.
    let _gw = Gateway::start(
        &dir,
        gw_addr,
        &["--upstream", &url, "--proxy-protocol", "v2", "--proxy-protocol-from", HAPROXY_SOURCE],
    );
    let front = free_addr();
    let Some(_haproxy) = Haproxy::send_proxy_v2(&dir, front, gw_addr) else {
        return;
    };
    assert_chain(front, &up, "client → HAProxy send-proxy-v2 → trueip");
}

#[test]
fn haproxy_then_nginx_then_trueip() {
    let dir = test_dir("real_proxies/haproxy_nginx");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    let _gw = Gateway::behind_proxies(&dir, gw_addr, Some(&url));
    let nginx_addr = free_addr();
    let Some(_nginx) = Nginx::start(&dir, nginx_addr, &nginx_server(nginx_addr, gw_addr)) else {
        return;
    };
    let front = free_addr();
    // `option forwardfor` adds its own X-Forwarded-For line after the client's.
    let sections = format!(
        "frontend fe
  mode http
  bind {front}
  option forwardfor
  default_backend be
backend be
  mode http
  server ng {nginx_addr} source {HAPROXY_SOURCE}
"
    );
    let Some(_haproxy) = Haproxy::start(&dir, front, &sections) else {
        return;
    };
    assert_chain(front, &up, "client → HAProxy → nginx → trueip");
}

#[test]
fn haproxy_v2_then_nginx_realip_then_trueip() {
    // nginx takes the client from HAProxy's PROXY header (realip `proxy_protocol`) and writes
    // it into X-Forwarded-For for trueip.
    let dir = test_dir("real_proxies/haproxy_v2_nginx");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    let _gw = Gateway::behind_proxies(&dir, gw_addr, Some(&url));
    let nginx_addr = free_addr();
    let server = format!(
        "  server {{
    listen {nginx_addr} proxy_protocol;
    set_real_ip_from {HAPROXY_SOURCE};
    real_ip_header proxy_protocol;
    location / {{
      proxy_pass http://{gw_addr};
      proxy_bind {NGINX_SOURCE};
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}"
    );
    let Some(_nginx) = Nginx::start(&dir, nginx_addr, &server) else {
        return;
    };
    let front = free_addr();
    let Some(_haproxy) = Haproxy::send_proxy_v2(&dir, front, nginx_addr) else {
        return;
    };
    assert_chain(front, &up, "client → HAProxy v2 → nginx realip → trueip");
}

#[test]
fn direct_client_bypassing_the_proxies_gets_no_credit() {
    // The same gateway that trusts nginx, reached directly by the attacker.
    let dir = test_dir("real_proxies/bypass");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    let _gw = Gateway::behind_proxies(&dir, gw_addr, Some(&url));
    let resp = Req::get("/")
        .header("X-Forwarded-For", &format!("{FORGED_XFF}, {HAPROXY_SOURCE}, {NGINX_SOURCE}"))
        .header("X-Real-IP", FORGED_REAL_IP)
        .header("Forwarded", &format!("for={FORGED_FORWARDED_IP}"))
        .must_send(gw_addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_clean_forwarding(&up.last(), CLIENT_IP, "client bypassing nginx");
}
