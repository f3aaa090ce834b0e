//! Review of the relay rule: from a trusted hop, which client addresses reach the upstream.
//! Every request goes through the three ways in: a plain GET (the lean HTTP/1.1 path), a
//! POST with a body (hyper's path) and an HTTP/2 GET over cleartext prior knowledge.

mod common;

use std::net::SocketAddr;

use common::*;

/// The header lines the upstream saw for a request with `lines`, sent from loopback over
/// each path in turn.
fn through_each_path(gw: SocketAddr, up: &Upstream, lines: &[(&str, &str)]) -> Vec<Seen> {
    let mut seen = Vec::new();
    for req in [Req::get("/lean"), Req::post("/hyper", b"body".to_vec())] {
        let mut req = req;
        for (n, v) in lines {
            req = req.header(n, v);
        }
        let resp = req.must_send(gw);
        assert_eq!(resp.status, 200, "{}", resp.text());
        seen.push(up.last());
    }
    let uri = http::Uri::builder()
        .scheme("http")
        .authority("shop.example")
        .path_and_query("/h2")
        .build()
        .expect("uri");
    let got = h2_exchange(gw, "GET", uri, lines, None);
    assert!(matches!(got, Ok((200, _, _))), "h2: {got:?}");
    seen.push(up.last());
    seen
}

fn gateway(name: &str, up: &Upstream, client_ip: &str) -> (Gateway, SocketAddr) {
    let dir = test_dir(&format!("relay_review/{name}"));
    let listen = free_addr();
    let cf = dir.join("cloudflare.txt");
    std::fs::write(&cf, "198.51.100.0/24\n").expect("write cloudflare ranges");
    let toml = format!(
        "[client_ip]\n{client_ip}\n[client_ip.providers]\ncloudflare = {cf:?}\n\
         [upstream]\nurl = \"{}\"\n[[listen]]\naddress = \"{listen}\"\n",
        up.url()
    );
    (Gateway::start_with_config(&dir, &toml, &[listen], &[]), listen)
}

/// The example config's chain, a preset trusting its provider only and then
/// `rightmost-untrusted` through the deployment's proxies: a request through a trusted
/// nginx (here loopback) that is not Cloudflare carries the client's own
/// `CF-Connecting-IP`, which the preset refused (the peer is not Cloudflare's) and
/// `rightmost-untrusted` never read. It reached the upstream because the policy "reads"
/// CF-Connecting-IP; an app behind Cloudflare reads exactly that header.
#[test]
fn a_preset_header_the_preset_refused_does_not_reach_the_upstream() {
    let up = Upstream::start(Behavior::Echo);
    let (_gw, addr) = gateway(
        "preset_refused",
        &up,
        "trusted = [\"127.0.0.1\"]\n\
         strategy = [{ name = \"cloudflare\", trusted = [\"cloudflare\"] }, \"rightmost-untrusted\"]",
    );
    let lines = [("X-Forwarded-For", "203.0.113.9"), ("CF-Connecting-IP", FORGED_REAL_IP)];
    for seen in through_each_path(addr, &up, &lines) {
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.9", "{}", seen.path);
        assert!(
            seen.all("CF-Connecting-IP").is_empty(),
            "the client's CF-Connecting-IP reached the upstream on {}: {:#?}",
            seen.path,
            seen.headers
        );
    }
}

/// `header:True-Client-IP` then `rightmost-untrusted`: two `True-Client-IP` lines through
/// the trusted hop are ambiguous, so the header strategy refuses them and the list decides;
/// the lines must not then reach the app merged (`6.6.6.6, <the hop's>`). One line, which
/// decided, passes.
#[test]
fn a_header_its_strategy_refused_does_not_reach_the_upstream_merged() {
    let up = Upstream::start(Behavior::Echo);
    let (_gw, addr) = gateway(
        "header_refused",
        &up,
        "trusted = [\"127.0.0.1\"]\nstrategy = [\"header:True-Client-IP\", \"rightmost-untrusted\"]",
    );
    let doubled = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("True-Client-IP", FORGED_REAL_IP),
        ("True-Client-IP", "203.0.113.9"),
    ];
    for seen in through_each_path(addr, &up, &doubled) {
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.9", "{}", seen.path);
        assert!(
            seen.all("True-Client-IP").is_empty(),
            "refused True-Client-IP lines reached the upstream on {}: {:#?}",
            seen.path,
            seen.headers
        );
    }
    for seen in through_each_path(addr, &up, &doubled[1..2]) {
        assert_eq!(seen.one("X-Real-IP"), FORGED_REAL_IP, "{}", seen.path);
        assert_eq!(seen.one("True-Client-IP"), FORGED_REAL_IP, "{}", seen.path);
    }
}

/// Two header strategies whose writer is the trusted peer: when the first decides, the
/// second's header was never looked at, and is as likely the client's.
#[test]
fn a_header_another_strategy_decided_past_does_not_reach_the_upstream() {
    let up = Upstream::start(Behavior::Echo);
    let (_gw, addr) = gateway(
        "two_headers",
        &up,
        "trusted = [\"127.0.0.1\"]\nstrategy = [\"header:Fastly-Client-IP\", \"header:CF-Connecting-IP\"]",
    );
    let lines = [("Fastly-Client-IP", "203.0.113.9"), ("CF-Connecting-IP", FORGED_REAL_IP)];
    for seen in through_each_path(addr, &up, &lines) {
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.9", "{}", seen.path);
        assert_eq!(seen.one("Fastly-Client-IP"), "203.0.113.9", "{}", seen.path);
        assert!(
            seen.all("CF-Connecting-IP").is_empty(),
            "an unread CF-Connecting-IP reached the upstream on {}: {:#?}",
            seen.path,
            seen.headers
        );
    }
}

/// Each listener's policy decides what passes on it, on every path: listen[1] reads
/// `True-Client-IP`, `[client_ip]` (listen[0]) walks X-Forwarded-For; both trust loopback.
#[test]
fn each_listener_passes_what_its_own_policy_read() {
    let up = Upstream::start(Behavior::Echo);
    let dir = test_dir("relay_review/listeners");
    let (xff, tci) = (free_addr(), free_addr());
    let toml = format!(
        "[client_ip]\ntrusted = [\"127.0.0.1\"]\n[upstream]\nurl = \"{}\"\n\
         [[listen]]\naddress = \"{xff}\"\n\
         [[listen]]\naddress = \"{tci}\"\n\
         client_ip = {{ trusted = [\"127.0.0.1\"], strategy = \"header:True-Client-IP\" }}\n",
        up.url()
    );
    let _gw = Gateway::start_with_config(&dir, &toml, &[xff, tci], &[]);
    let lines = [("X-Forwarded-For", "203.0.113.9"), ("True-Client-IP", "203.0.113.30")];
    for seen in through_each_path(xff, &up, &lines) {
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.9", "{}", seen.path);
        assert!(seen.all("True-Client-IP").is_empty(), "{:#?}", seen.headers);
    }
    for seen in through_each_path(tci, &up, &lines) {
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.30", "{}", seen.path);
        assert_eq!(seen.one("True-Client-IP"), "203.0.113.30", "{}", seen.path);
    }
}
