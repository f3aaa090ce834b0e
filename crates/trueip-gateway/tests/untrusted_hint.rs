//! The misconfiguration hint: nginx in front of a `trueip serve` that trusts nobody (the
//! classic "behind a proxy but trusting nobody") — its X-Forwarded-For keeps arriving and
//! is ignored, and one log line names the `--trust` flag and the TOML that would fix it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// The lines of `log` that carry the hint for `peer`.
fn hints(log: &str, peer: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("keep arriving from") && l.contains(&format!("--trust {peer}")))
        .count()
}

#[test]
fn nginx_not_trusted_gets_one_hint_naming_the_fix() {
    let dir = test_dir("untrusted_hint/nginx");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    let gw = Gateway::start(&dir, gw_addr, &["--upstream", &url]);
    let front = free_addr();
    let Some(_nginx) = Nginx::appending(&dir, front, gw_addr) else {
        return;
    };
    // Two requests are no pattern yet.
    for _ in 0..2 {
        assert_eq!(Req::get("/").must_send(front).status, 200);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hints(&gw.proc.log(), NGINX_SOURCE), 0, "{}", gw.proc.log());
    for _ in 0..5 {
        assert_eq!(Req::get("/").must_send(front).status, 200);
    }
    eventually(
        Duration::from_secs(5),
        || (hints(&gw.proc.log(), NGINX_SOURCE) > 0).then_some(()),
        || format!("no hint:\n{}", gw.proc.log()),
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = gw.proc.log();
    assert_eq!(hints(&log, NGINX_SOURCE), 1, "{log}");
    assert!(log.contains(&format!("[client_ip] trusted = [\"{NGINX_SOURCE}\"]")), "{log}");
    assert!(log.contains("someone is forging"), "{log}");
    // Requests without forwarding headers, straight from a client, give no hint.
    assert_eq!(Req::get("/").must_send(gw_addr).status, 200);
    assert_eq!(hints(&gw.proc.log(), CLIENT_IP), 0);
}

/// A stranger who sends a forged `X-Forwarded-For` from as many networks as the hint
/// remembers once filled its one table of peers: the user's own proxy, counted after, was
/// never hinted, for the life of the process (a reload keeps the table). Here an L4
/// balancer (PROXY v1, trusted to send the header) hands on a stranger from 80 networks,
/// then a proxy of the user's inside the VPC that nobody trusted.
///
/// Fails on the code before the fix: no hint for 10.0.0.5.
#[test]
fn strangers_from_many_networks_cannot_silence_the_hint_for_a_private_proxy() {
    let dir = test_dir("untrusted_hint/filled");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let url = up.url();
    let gw = Gateway::start(
        &dir,
        gw_addr,
        &[
            "--upstream",
            &url,
            "--proxy-protocol",
            "from-senders",
            "--proxy-protocol-from",
            CLIENT_IP,
        ],
    );
    let forged = Req::get("/").header("X-Forwarded-For", FORGED_XFF);
    for i in 0..80u16 {
        let stranger = SocketAddr::from(([198, 18 + (i / 256) as u8, i as u8, 7], 40000 + i));
        let resp = forged
            .send_with_preamble(gw_addr, &proxy_v1(stranger, gw_addr))
            .expect("a stranger's request");
        assert_eq!(resp.status, 200);
    }
    let proxy = SocketAddr::from(([10, 0, 0, 5], 50000));
    for _ in 0..5 {
        let resp = Req::get("/")
            .header("X-Forwarded-For", "192.0.2.10")
            .send_with_preamble(gw_addr, &proxy_v1(proxy, gw_addr))
            .expect("the proxy's request");
        assert_eq!(resp.status, 200);
    }
    eventually(
        Duration::from_secs(5),
        || (hints(&gw.proc.log(), "10.0.0.5") > 0).then_some(()),
        || format!("no hint:\n{}", gw.proc.log()),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hints(&gw.proc.log(), "10.0.0.5"), 1, "{}", gw.proc.log());
}
