//! Config values the gateway must refuse before serving, and the largest ones it accepts,
//! driven through the `trueip` binary.
//!
//! `header_read_timeout = "18446744073709551615s"` once passed `trueip serve --check` and
//! then panicked the worker on the first request (`Instant + Duration` overflow). Every
//! duration, size and count is bounded when the config is read; a config with every value
//! at its bound serves requests on both HTTP/1.1 paths and over HTTP/2.

mod common;

use std::io::{BufReader, Write};

use common::*;

/// Runs `trueip serve --config <toml> --check`: (exit code, stderr).
fn check(name: &str, toml: &str) -> (Option<i32>, String) {
    serve_check(&format!("config_bounds/{name}"), toml)
}

#[test]
fn serve_check_refuses_a_timeout_too_long_to_add_to_the_clock() {
    for (key, toml) in [
        (
            "limits.header_read_timeout",
            "[limits]\nheader_read_timeout = \"18446744073709551615s\"\n",
        ),
        (
            "upstream.response_timeout",
            "[upstream]\nurl = \"http://127.0.0.1:9\"\nresponse_timeout = 18446744073709551615\n",
        ),
    ] {
        let (code, stderr) = check("huge_timeout", toml);
        assert_eq!(code, Some(2), "{key}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains("24h"),
            "{key}: the error names neither the key nor the largest value: {stderr}"
        );
    }
    let (code, stderr) = check("huge_count", "[limits]\nmax_connections = 9223372036854775807\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("limits.max_connections") && stderr.contains("1048576"), "{stderr}");
}

/// Every duration, size and count at the largest value the config allows.
fn at_every_maximum(upstream: &str) -> String {
    format!(
        "[upstream]\nurl = \"{upstream}\"\nconnect_timeout = \"24h\"\nresponse_timeout = \"24h\"\n\
         body_timeout = \"24h\"\npool_idle_timeout = \"24h\"\npool_max_idle = 65536\n\
         [limits]\nmax_connections = 1048576\nmax_header_bytes = 1048576\nmax_headers = 1024\n\
         header_read_timeout = \"24h\"\nidle_timeout = \"24h\"\ntls_handshake_timeout = \"24h\"\n\
         proxy_protocol_timeout = \"24h\"\nproxy_protocol_max_bytes = 65551\nbacklog = 65535\n\
         shutdown_timeout = \"24h\"\nworkers = 2\n"
    )
}

#[test]
fn a_config_at_every_maximum_serves_without_panic() {
    let dir = test_dir("config_bounds/at_maximum");
    let up = Upstream::start(Behavior::Echo);
    let toml = at_every_maximum(&up.url());
    let (code, stderr) = check("at_maximum_check", &toml);
    assert_eq!(code, Some(0), "{stderr}");
    let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &[]);
    // The lean path (a plain GET: no `Connection` line, which would send it to hyper)...
    let mut stream = connect(gw.addr).expect("connect");
    stream.write_all(b"GET /lean HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let resp = read_response(&mut BufReader::new(stream), "GET").expect("a response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    // ...and hyper (a body, an underscore header).
    let resp = Req::post("/hyper", b"body".to_vec()).header("X_Odd", "1").must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.requests().len(), 2, "both requests reached the upstream");
    assert_healthy(gw.addr, "requests at the largest timeouts");
    assert!(gw.proc.log().find("panicked").is_none(), "{}", gw.proc.log());
}
