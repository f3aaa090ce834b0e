//! `query:NAME` and `cookie:NAME` through `trueip serve`: the argument or cookie a trusted
//! gateway set decides `X-Real-IP`, and with `[headers] strip_client_source` the upstream
//! never sees it, whoever sent it, on both HTTP/1.1 paths (lean and hyper) and over h2c.
//!
//! The test client connects from 127.0.0.1.

mod common;

use std::process::Command;

use common::*;

fn config(up: &Upstream, trusted: &str, strip: bool, lean: bool) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n\
         [client_ip]\ntrusted = [\"{trusted}\"]\nstrategy = [\"query:client\", \"cookie:ip\"]\n\
         [headers]\nstrip_client_source = {strip}\n\
         [limits]\nlean_http1 = {lean}\n",
        up.url()
    )
}

#[test]
fn the_trusted_argument_or_cookie_decides_and_is_removed_before_forwarding() {
    for lean in [true, false] {
        let dir = test_dir(&format!("client_source/strip-{lean}"));
        let up = Upstream::start(Behavior::Echo);
        let gw =
            Gateway::start_with_toml(&dir, free_addr(), &config(&up, "127.0.0.1", true, lean), &[]);
        let path = if lean { "lean" } else { "hyper" };

        let resp = Req::get("/orders?page=2&client=198.51.100.4&sort=desc").must_send(gw.addr);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), "198.51.100.4", "{path}");
        assert_eq!(seen.path, "/orders?page=2&sort=desc", "{path}");

        // Percent-encoded, the only argument: the target loses its `?`.
        Req::get("/x?client=%5B2001%3Adb8%3A%3A9%5D%3A443").must_send(gw.addr);
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), "2001:db8::9", "{path}");
        assert_eq!(seen.path, "/x", "{path}");

        // A cookie: the others pass, in order.
        Req::get("/c")
            .header("Cookie", "session=abc; ip=198.51.100.5; theme=dark")
            .must_send(gw.addr);
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), "198.51.100.5", "{path}");
        assert_eq!(seen.one("Cookie"), "session=abc; theme=dark", "{path}");
        assert_eq!(seen.path, "/c", "{path}");

        // Only the cookie: no Cookie line is left.
        Req::get("/c").header("Cookie", "ip=198.51.100.5").must_send(gw.addr);
        assert!(up.last().all("Cookie").is_empty(), "{path}");

        // Two arguments of the name: ambiguous, the peer stands, both are removed (the
        // spelled-out one too: the app's framework decodes names).
        Req::get("/d?cl%69ent=6.6.6.6&client=198.51.100.4&q=1").must_send(gw.addr);
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), "127.0.0.1", "{path}");
        assert_eq!(seen.path, "/d?q=1", "{path}");

        // Nothing to remove: the target passes byte for byte.
        Req::get("/e?clients=1&a=%20").must_send(gw.addr);
        assert_eq!(up.last().path, "/e?clients=1&a=%20", "{path}");
    }
}

#[test]
fn an_untrusted_clients_argument_is_not_believed_and_still_removed() {
    let dir = test_dir("client_source/untrusted");
    let up = Upstream::start(Behavior::Echo);
    let gw =
        Gateway::start_with_toml(&dir, free_addr(), &config(&up, "127.0.0.2", true, true), &[]);
    Req::get("/p?client=1.2.3.4").header("Cookie", "ip=1.2.3.5; s=1").must_send(gw.addr);
    let seen = up.last();
    assert_eq!(seen.one("X-Real-IP"), "127.0.0.1");
    assert_eq!(seen.path, "/p");
    assert_eq!(seen.one("Cookie"), "s=1");
}

#[test]
fn without_strip_client_source_the_upstream_sees_the_request_as_sent() {
    let dir = test_dir("client_source/keep");
    let up = Upstream::start(Behavior::Echo);
    let gw =
        Gateway::start_with_toml(&dir, free_addr(), &config(&up, "127.0.0.1", false, true), &[]);
    Req::get("/p?client=198.51.100.4").header("Cookie", "s=1").must_send(gw.addr);
    let seen = up.last();
    assert_eq!(seen.one("X-Real-IP"), "198.51.100.4");
    assert_eq!(seen.path, "/p?client=198.51.100.4");
    assert_eq!(seen.one("Cookie"), "s=1");
}

/// HTTP/2 splits `Cookie` into lines (curl sends each `-H` as one): the cookie on the
/// second line is found once, not flagged as a duplicate, and removed; the rest is joined
/// into one line for the HTTP/1.1 upstream.
#[test]
fn h2c_cookie_lines_are_one_cookie_list() {
    let Some(curl) = external("curl", "curl") else {
        return;
    };
    let dir = test_dir("client_source/h2c");
    let up = Upstream::start(Behavior::Echo);
    let gw =
        Gateway::start_with_toml(&dir, free_addr(), &config(&up, "127.0.0.1", true, true), &[]);
    let out = Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--http2-prior-knowledge", "-o", "/dev/null"])
        .args(["-H", "Cookie: session=abc", "-H", "Cookie: ip=198.51.100.6"])
        .arg(format!("http://{}/h2?client2=1", gw.addr))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = up.last();
    assert_eq!(seen.one("X-Real-IP"), "198.51.100.6");
    assert_eq!(seen.one("Cookie"), "session=abc");
    assert_eq!(seen.path, "/h2?client2=1");
}

#[test]
fn strip_client_source_without_such_a_strategy_is_refused() {
    let (code, stderr) = serve_check(
        "client_source/check",
        "[client_ip]\ntrusted = [\"127.0.0.1\"]\nstrategy = \"header:X-Real-IP\"\n\
         [headers]\nstrip_client_source = true\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("headers.strip_client_source") && stderr.contains("query:NAME"),
        "{stderr}"
    );
}

/// The access log names the argument that decided, and the metrics count the source.
#[test]
fn the_access_log_and_metrics_name_the_source() {
    let dir = test_dir("client_source/log");
    let up = Upstream::start(Behavior::Echo);
    let toml = format!(
        "{}[log]\nformat = \"json\"\naccess_log = true\n",
        config(&up, "127.0.0.1", true, true)
    );
    let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &[]);
    Req::get("/logged-query?client=198.51.100.4").must_send(gw.addr);
    Req::get("/logged-cookie").header("Cookie", "ip=198.51.100.5").must_send(gw.addr);
    let metrics = metrics(gw.addr);
    assert!(
        metrics.contains("trueip_requests_total{source=\"query\"} 1")
            && metrics.contains("trueip_requests_total{source=\"cookie\"} 1"),
        "{metrics}"
    );
    let q = access_log_line(&gw, "/logged-query");
    assert!(q.contains("\"source\":\"query:client\""), "{q}");
    assert!(q.contains("\"client\":\"198.51.100.4\""), "{q}");
    let c = access_log_line(&gw, "/logged-cookie");
    assert!(c.contains("\"source\":\"cookie:ip\""), "{c}");
}
