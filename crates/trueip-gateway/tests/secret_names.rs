//! The names of the headers the gateway spends or writes itself: the origin secret against
//! the signed client header and the origin secrets of other listeners, and the signed
//! client header against the fields that frame a message. Every origin secret is the CDN's
//! proof and must never reach the upstream; a header cannot be both the proof the CDN
//! writes and the claim only the gateway writes; and the gateway's claim must not be read
//! as framing.

mod common;

use std::net::SocketAddr;

use common::*;

/// Runs `trueip serve --config <toml> --check`: (exit code, stderr).
fn check(name: &str, toml: &str) -> (Option<i32>, String) {
    serve_check(&format!("secret_names/{name}"), toml)
}

/// A signing key file in `name`'s test directory.
fn key_file(name: &str) -> String {
    let dir = test_dir(&format!("secret_names/{name}"));
    let path = dir.join("sign.key");
    std::fs::write(&path, "k".repeat(48)).expect("write key");
    path.display().to_string()
}

/// `[upstream] sign` naming `sign` (or the default header) beside an origin secret in
/// `secret`: one header cannot be both. With the same name the client's copy of the
/// signed header was dropped as a spent secret rather than stripped as a forgery (never
/// counted, never in the record of forgeries), and an app or a second gateway told to
/// check the secret is handed a signature instead. Refused in any spelling an app reads as
/// the same header, naming both keys.
#[test]
fn the_origin_secret_and_the_signed_client_header_may_not_share_a_name() {
    let key = key_file("sign_key");
    let config = |secret: &str, sign: Option<&str>| {
        let sign = match sign {
            Some(h) => format!("sign = {{ key_file = {key:?}, header = {h:?} }}\n"),
            None => format!("sign = {{ key_file = {key:?} }}\n"),
        };
        format!(
            "[client_ip]\ntrusted = [\"10.0.0.0/8\"]\n\
             origin_secret = {{ header = {secret:?}, value = \"s3cret\" }}\n\
             [upstream]\nurl = \"http://127.0.0.1:9\"\n{sign}"
        )
    };
    for (case, toml) in [
        ("same", config("X-Origin-Verify", Some("X-Origin-Verify"))),
        ("case", config("x-origin-verify", Some("X-ORIGIN-VERIFY"))),
        ("underscore", config("X_Origin_Verify", Some("X-Origin-Verify"))),
        ("underscore_sign", config("X-Origin-Verify", Some("x_origin_verify"))),
        ("default", config("Trueip-Signature", None)),
    ] {
        let (code, stderr) = check(case, &toml);
        assert_eq!(code, Some(2), "{case}: accepted: {stderr}");
        assert!(
            stderr.contains("upstream.sign.header") && stderr.contains("origin_secret"),
            "{case}: the error names neither key: {stderr}"
        );
    }
    let (code, stderr) = check("apart", &config("X-Origin-Verify", Some("X-App-Client")));
    assert_eq!(code, Some(0), "{stderr}");
}

/// Listeners with their own policies and origin secrets, and no `[client_ip]` secret:
/// the gateway removes one secret header before forwarding, so every listener's secret
/// must name it. Two names were accepted, and the second listener's secret (its value
/// included) reached the upstream from every listener, where an app that echoes or logs
/// headers hands it to anyone who can then send it through a CDN of their own. Refused
/// now, naming both tables; one name with a value per listener serves, and no value
/// reaches the upstream.
#[test]
fn every_listeners_origin_secret_names_one_header_and_none_reaches_the_upstream() {
    let listeners = |a: SocketAddr, b: SocketAddr, name_b: &str, url: &str| {
        format!(
            "[upstream]\nurl = \"{url}\"\n\
             [[listen]]\naddress = \"{a}\"\n\
             client_ip = {{ trusted = [\"loopback\"], origin_secret = {{ header = \"X-Origin-Verify\", value = \"aaaa\" }} }}\n\
             [[listen]]\naddress = \"{b}\"\n\
             client_ip = {{ trusted = [\"loopback\"], origin_secret = {{ header = \"{name_b}\", value = \"bbbb\" }} }}\n"
        )
    };
    for name_b in ["X-Secret-B", "X_Origin_Verify"] {
        let toml = listeners(free_addr(), free_addr(), name_b, "http://127.0.0.1:9");
        let (code, stderr) = check("two_names", &toml);
        assert_eq!(code, Some(2), "{name_b}: accepted: {stderr}");
        assert!(
            stderr.contains("listen[1].client_ip.origin_secret")
                && stderr.contains("listen[0].client_ip"),
            "{name_b}: the error names neither table: {stderr}"
        );
    }

    let up = Upstream::start(Behavior::Echo);
    let dir = test_dir("secret_names/listeners");
    let (a, b) = (free_addr(), free_addr());
    let toml = listeners(a, b, "x-origin-verify", &up.url());
    let gw = Gateway::start_with_config(&dir, &toml, &[a, b], &[]);
    for (addr, value, path, client) in [
        (a, "aaaa", "/a-right", "203.0.113.9"),
        (b, "bbbb", "/b-right", "203.0.113.9"),
        // The other listener's value is no proof here.
        (a, "bbbb", "/a-wrong", "127.0.0.1"),
        (b, "aaaa", "/b-wrong", "127.0.0.1"),
    ] {
        let resp = Req::get(path)
            .header("X-Origin-Verify", value)
            .header("X-Forwarded-For", "203.0.113.9")
            .must_send(addr);
        assert_eq!(resp.status, 200, "{path}");
        let seen = up
            .requests()
            .into_iter()
            .find(|s| s.path == path)
            .expect("the request reached the upstream");
        assert!(
            seen.all("X-Origin-Verify").is_empty(),
            "{path}: the upstream received the secret: {:?}",
            seen.headers
        );
        assert_eq!(seen.one("X-Real-IP"), client, "{path}");
    }
    drop(gw);
}

/// `[upstream] sign`'s header in a field that frames the message, is hop-by-hop, or holds
/// the client's credentials. `header = "Transfer-Encoding"` was accepted, and every
/// bodiless request reached the upstream as `transfer-encoding: v1;ip=...`: a coding no
/// server knows, which one that reads a body until the connection closes takes as the
/// start of a body made of the next request on that pooled connection, another client's.
/// `Content-Length` likewise; `Cookie` or `Authorization` had every client's line stripped
/// as a forged copy of the signed header, and kept in the record of forgeries. Refused in
/// any spelling, naming the key.
#[test]
fn the_signed_client_header_is_no_framing_hop_by_hop_or_credential_field() {
    let key = key_file("framing_key");
    for header in [
        "Transfer-Encoding",
        "transfer_encoding",
        "Content-Length",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "HTTP2-Settings",
        "Expect",
        "Cookie",
        "Authorization",
        "Proxy-Authorization",
    ] {
        let toml = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\nsign = {{ key_file = {key:?}, header = {header:?} }}\n"
        );
        let (code, stderr) = check("framing", &toml);
        assert_eq!(code, Some(2), "{header}: accepted: {stderr}");
        assert!(stderr.contains("upstream.sign.header"), "{header}: {stderr}");
    }
}
