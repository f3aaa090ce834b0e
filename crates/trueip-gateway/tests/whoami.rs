//! `trueip serve` with no upstream: `/healthz` and the built-in whoami page, driven over a
//! real loopback socket by a raw HTTP/1.1 client.
//!
//! The test client always connects from 127.0.0.1. With no `--trust`, that peer is the client and
//! every forwarding header it sends is attacker text; with `--trust 127.0.0.1` the same headers
//! are a trusted proxy's and decide the answer.

mod common;

use common::*;

fn start(name: &str, args: &[&str]) -> Gateway {
    let dir = test_dir(&format!("whoami/{name}"));
    Gateway::start(&dir, free_addr(), args)
}

#[test]
fn healthz_answers_200() {
    let gw = start("healthz", &[]);
    // Bare /healthz too: in whoami mode no app can own that path.
    for path in [HEALTHZ, "/healthz"] {
        let resp = Req::get(path).must_send(gw.addr);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }
}

#[test]
fn json_names_the_peer_and_ignores_forged_headers() {
    // The safe default (no flags) and a gateway that trusts proxies the client bypassed.
    for (name, args) in [
        ("json_default", &[][..]),
        (
            "json_bypassed_proxies",
            &["--trust", PROXIES_CIDR, "--strategy", "rightmost-untrusted"][..],
        ),
    ] {
        let gw = start(name, args);
        let resp = Req::get("/json").headers(&forged_headers()).must_send(gw.addr);
        assert_eq!(resp.status, 200, "{name}: {}", resp.text());
        let content_type = resp.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{name}: content-type {content_type:?}"
        );
        let json = resp.json();
        assert_eq!(json.str_at("client_ip"), CLIENT_IP, "{name}: {json:?}");
        assert_eq!(json.str_at("direct_ip"), CLIENT_IP, "{name}: {json:?}");
        for key in ["headers", "chain", "warnings", "steps"] {
            assert!(json.get(key) != &Json::Null, "{name}: whoami JSON lacks {key:?}: {json:?}");
        }
        // With proxies configured, forwarding headers from anyone else are a spoof attempt.
        if !args.is_empty() {
            assert!(
                !json.get("warnings").as_array().is_empty(),
                "{name}: no warning for forwarding headers sent by an untrusted peer: {json:?}"
            );
        }
    }
}

#[test]
fn accept_json_on_root_gives_json() {
    let gw = start("accept_json", &[]);
    let resp = Req::get("/").header("Accept", "application/json").must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json().str_at("client_ip"), CLIENT_IP);
}

#[test]
fn root_is_an_html_page_naming_the_client() {
    let gw = start("html", &[]);
    let resp = Req::get("/").header("Accept", "text/html,application/xhtml+xml").must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "content-type {content_type:?}");
    assert!(resp.text().contains(CLIENT_IP), "{}", resp.text());
}

#[test]
fn trusted_peer_vouches_for_its_forwarded_for_entry() {
    let gw = start(
        "trusted_peer",
        &["--trust", "127.0.0.1", "--strategy", "rightmost-untrusted", "--from", "xff"],
    );
    let resp =
        Req::get("/json").header("X-Forwarded-For", "198.51.100.7, 203.0.113.9").must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let json = resp.json();
    // Rightmost untrusted: the entry the trusted peer wrote, never the one left of it.
    assert_eq!(json.str_at("client_ip"), "203.0.113.9", "{json:?}");
    assert_eq!(json.str_at("direct_ip"), CLIENT_IP, "{json:?}");
}

#[test]
fn forwarded_header_is_read_when_chosen() {
    let gw = start(
        "from_forwarded",
        &["--trust", "127.0.0.1", "--strategy", "rightmost-untrusted", "--from", "forwarded"],
    );
    let resp = Req::get("/json")
        .header("X-Forwarded-For", FORGED_XFF)
        .header("Forwarded", "for=\"[2001:db8::7]:4711\";proto=https")
        .must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let json = resp.json();
    assert_eq!(json.str_at("client_ip"), "2001:db8::7", "{json:?}");
}

#[test]
fn unknown_path_on_whoami_is_not_a_crash() {
    let gw = start("unknown_path", &[]);
    let resp = Req::get("/no/such/page?x=%00").must_send(gw.addr);
    assert!(resp.status == 200 || resp.status == 404, "status {}", resp.status);
    assert_healthy(gw.addr, "a request for an unknown path");
}

/// The JSON answer is the object `trueip explain --format json` prints for the same
/// peer, trust, strategy and headers, plus `direct_ip` and `headers`.
#[test]
fn json_is_the_explain_object_plus_direct_ip_and_headers() {
    let policy = ["--trust", "127.0.0.0/8", "--strategy", "rightmost-untrusted"];
    let gw = start("json_is_explain", &policy);
    let headers: Vec<(String, String)> = [
        ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 127.0.0.5"),
        ("X-Forwarded-For", "127.0.0.7"),
        ("X-Real-IP", "198.51.100.77"),
        ("Forwarded", "for=\"[2001:db8::1]:443\";proto=https"),
        ("X_Forwarded_For", "1.1.1.1 \"quoted\" \\ back"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let resp = Req::get("/json").headers(&headers).must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut whoami: serde_json::Value = serde_json::from_str(&resp.text()).expect("JSON");
    let peer = whoami["peer"].as_str().expect("peer").to_string();

    let mut cmd = std::process::Command::new(trueip_bin());
    cmd.args(["explain", "--peer", &peer, "--format", "json"]).args(policy);
    for (n, v) in &headers {
        cmd.args(["-H", &format!("{n}: {v}")]);
    }
    let out = cmd.output().expect("run trueip explain");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let explain: serde_json::Value = serde_json::from_slice(&out.stdout).expect("explain JSON");

    let object = whoami.as_object_mut().expect("an object");
    assert_eq!(object.remove("direct_ip"), Some(CLIENT_IP.into()));
    assert_eq!(object.remove("policy"), Some("client_ip".into()));
    let headers = object.remove("headers").expect("headers");
    assert_eq!(
        headers["x-forwarded-for"],
        serde_json::json!(["6.6.6.6, 203.0.113.9, 127.0.0.5", "127.0.0.7"])
    );
    assert_eq!(headers["x_forwarded_for"], serde_json::json!(["1.1.1.1 \"quoted\" \\ back"]));
    assert_eq!(whoami, explain);
    assert_eq!(whoami["client_ip"], "203.0.113.9");
}

/// Every slot name of the page template, as a client writes them into a header.
const EVERY_SLOT: &str = "{{self_url}}{{client_ip}}{{client_port}}{{pills}}\
{{verdict}}{{alerts}}{{peer}}{{peer_note}}{{proxy_source}}{{proxy_note}}{{strategy}}\
{{trusted_hops}}{{rate_limit_key}}{{chain_header}}{{chain}}{{headers}}{{steps}}";

/// `X-Forwarded-For: {{steps}}{{headers}}, …` (1.2 KB) once made a 1.9 MB page, 32 KB
/// hundreds of MB: request text pasted into the page was expanded by the slots filled after
/// it. The page is filled in one pass and stays under a bound linear in the request.
#[test]
fn slot_names_in_request_headers_do_not_expand_the_page() {
    for (name, args) in [
        ("slots_default", &[][..]),
        ("slots_trusted", &["--trust", "127.0.0.1", "--strategy", "rightmost-untrusted"][..]),
    ] {
        let gw = start(name, args);
        let value = format!("{EVERY_SLOT}, {EVERY_SLOT}, 203.0.113.9");
        let headers: Vec<(String, String)> = [
            "X-Forwarded-For",
            "Forwarded",
            "X-Real-IP",
            "True-Client-IP",
            "X_Forwarded_For",
            "Via",
        ]
        .into_iter()
        .map(|n| (n.to_string(), value.clone()))
        .chain([("Host".to_string(), EVERY_SLOT.to_string())])
        .collect();
        let req = Req::get("/").headers(&headers);
        let request = req.to_bytes().len();
        let resp = req.must_send(gw.addr);
        assert_eq!(resp.status, 200, "{name}: {}", resp.text());
        let bound = trueip_gateway::testing::page_size_bound(request, 1);
        assert!(
            resp.body.len() <= bound,
            "{name}: a {request}-byte request made a {}-byte page (bound {bound})",
            resp.body.len()
        );
        assert!(resp.text().contains("{{steps}}"), "shown as text");
    }
}
