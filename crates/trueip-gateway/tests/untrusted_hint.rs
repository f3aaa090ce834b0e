//! The misconfiguration hint: nginx in front of a `trueip serve` that trusts nobody (the
//! classic "behind a proxy but trusting nobody") — its X-Forwarded-For keeps arriving and
//! is ignored, and one log line names the `--trust` flag and the TOML that would fix it.

mod common;

use std::time::{Duration, Instant};

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
    let deadline = Instant::now() + Duration::from_secs(5);
    while hints(&gw.proc.log(), NGINX_SOURCE) == 0 {
        assert!(Instant::now() < deadline, "no hint:\n{}", gw.proc.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = gw.proc.log();
    assert_eq!(hints(&log, NGINX_SOURCE), 1, "{log}");
    assert!(
        log.contains(&format!("[client_ip] trusted = [\"{NGINX_SOURCE}\"]")),
        "{log}"
    );
    assert!(log.contains("someone is forging"), "{log}");
    // Requests without forwarding headers, straight from a client, give no hint.
    assert_eq!(Req::get("/").must_send(gw_addr).status, 200);
    assert_eq!(hints(&gw.proc.log(), CLIENT_IP), 0);
}
