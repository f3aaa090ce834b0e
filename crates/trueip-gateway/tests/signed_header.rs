//! `[upstream] sign`: `trueip serve` in front of an axum app that verifies the signed
//! client header (`trueip::provenance`), the app also reachable directly.
//!
//! The gateway trusts 127.0.0.1 as a proxy and walks X-Forwarded-For, so a request sent
//! to it with `X-Forwarded-For: 203.0.113.7` has that client, while the same request sent
//! straight to the app (from 127.0.0.1) must come out as the peer, 127.0.0.1. The app
//! answers with what it decided and echoes the signed header it received, which is how
//! the tests capture a real one to replay.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue};

use common::*;
use trueip::Policy;
use trueip::axum::ClientResolution;
use trueip::provenance::{Key, Outcome, Signed, Verifier};
use trueip::tower::ClientIpLayer;

const CLIENT: &str = "203.0.113.7";
const KEY_A: &str = "key-a-key-a-key-a-key-a-key-a-key-a-key-a";
const KEY_B: &str = "key-b-key-b-key-b-key-b-key-b-key-b-key-b";

fn verifier(keys: &[&str], window: Duration) -> Verifier {
    let keys = keys.iter().map(|k| Key::new(k.as_bytes()).unwrap());
    Verifier::new(keys, window).unwrap()
}

/// Serves an axum app with `signed` on a free loopback port, on its own runtime.
fn app(signed: Signed) -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let router = Router::new()
        .route(
            "/{*path}",
            axum::routing::get(
                |ClientResolution(r): ClientResolution,
                 outcome: Option<axum::Extension<Outcome>>,
                 headers: HeaderMap| async move {
                    let outcome = match outcome.map(|o| o.0) {
                        Some(Outcome::Verified(c)) => format!("verified hops={}", c.hops),
                        Some(Outcome::FellBack(why)) => why.name().to_string(),
                        None => "none".to_string(),
                    };
                    let seen = headers
                        .get("trueip-signature")
                        .cloned()
                        .unwrap_or(HeaderValue::from_static("-"));
                    (
                        [("x-seen-signature", seen)],
                        format!(
                            "{} {outcome}",
                            r.ip().map_or("none".to_owned(), |ip| ip.to_string())
                        ),
                    )
                },
            ),
        )
        .layer(ClientIpLayer::new(Policy::default()).signed(signed));
    std::thread::spawn(move || {
        block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap();
        });
    });
    addr
}

/// A gateway signing with the key in `key_file`, forwarding to `upstream`.
fn gateway(dir: &Path, upstream: SocketAddr, key_file: &Path) -> Gateway {
    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        format!(
            "[client_ip]\ntrusted = [\"127.0.0.1\"]\nstrategy = \"rightmost-untrusted\"\n\
             [upstream]\nurl = \"http://{upstream}\"\nsign = {{ key_file = {:?} }}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    Gateway::start(dir, free_addr(), &["--config", config.to_str().unwrap()])
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = Req::get(path).header("Host", "app.test");
    for (n, v) in headers {
        req = req.header(n, v);
    }
    req.must_send(addr)
}

#[test]
fn through_the_gateway_the_signed_client_directly_the_peer() {
    let dir = test_dir("signed_header/or_peer");
    let key = dir.join("trueip.key");
    std::fs::write(&key, format!("{KEY_A}\n")).unwrap();
    let app = app(Signed::or_peer(verifier(&[KEY_A], Duration::from_secs(30))));
    let gw = gateway(&dir, app, &key);

    // Through the gateway, with a forged X-Real-IP and a forged signature: the gateway's
    // own signed client is used.
    let forged = "v1;ip=6.6.6.6;port=;src=peer;hops=0;t=1;n=0000000000000001;kid=AAAAAAAA;sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let resp = get(
        gw.addr,
        "/account?tab=1",
        &[("X-Forwarded-For", CLIENT), ("X-Real-IP", "6.6.6.6"), ("Trueip-Signature", forged)],
    );
    assert_eq!(resp.status, 200, "{}", gw.proc.log());
    assert_eq!(resp.text(), format!("{CLIENT} verified hops=1"));
    let captured = resp.header("x-seen-signature").unwrap().to_owned();
    assert!(captured.starts_with(&format!("v1;ip={CLIENT};")), "{captured}");

    // Straight to the app: X-Real-IP and X-Forwarded-For are the client's words.
    let resp = get(app, "/account?tab=1", &[("X-Real-IP", CLIENT), ("X-Forwarded-For", CLIENT)]);
    assert_eq!(resp.text(), "127.0.0.1 missing");
    // The captured header, replayed for the very request it was signed for, within the
    // window: a header is accepted once, and the gateway's request had it.
    let resp = get(app, "/account?tab=1", &[("Trueip-Signature", &captured)]);
    assert_eq!(resp.text(), "127.0.0.1 replayed");
    // The captured header, replayed for another path, query or method-bound request.
    for path in ["/admin", "/account?tab=2", "/account"] {
        let resp = get(app, path, &[("Trueip-Signature", &captured)]);
        assert_eq!(resp.text(), "127.0.0.1 bad_signature", "{path}");
    }
    // Replayed for another Host.
    let resp = Req::get("/account?tab=1")
        .header("Host", "other.test")
        .header("Trueip-Signature", &captured)
        .must_send(app);
    assert_eq!(resp.text(), "127.0.0.1 bad_signature");
}

#[test]
fn required_refuses_direct_clients_and_stale_replays() {
    let dir = test_dir("signed_header/required");
    let key = dir.join("trueip.key");
    std::fs::write(&key, KEY_A).unwrap();
    // A short window, so the test can outwait it.
    let app = app(Signed::required(verifier(&[KEY_A], Duration::from_secs(2))));
    let gw = gateway(&dir, app, &key);
    let resp = get(gw.addr, "/a", &[("X-Forwarded-For", CLIENT)]);
    assert_eq!(resp.text(), format!("{CLIENT} verified hops=1"), "{}", gw.proc.log());
    let captured = resp.header("x-seen-signature").unwrap().to_owned();

    let resp = get(app, "/a", &[("X-Real-IP", CLIENT)]);
    assert_eq!(resp.status, 403, "{}", resp.text());
    let resp = get(app, "/b", &[("Trueip-Signature", &captured)]);
    assert_eq!(resp.status, 403, "{}", resp.text());
    let resp = get(app, "/a", &[("Trueip-Signature", "v1;nonsense")]);
    assert_eq!(resp.status, 400, "{}", resp.text());
    // The same request after the window (2 s, whole seconds): refused.
    std::thread::sleep(Duration::from_millis(3100));
    let resp = get(app, "/a", &[("Trueip-Signature", &captured)]);
    assert_eq!(resp.status, 403, "{}", resp.text());
}

#[test]
fn key_rotation_with_a_reload() {
    let dir = test_dir("signed_header/rotation");
    let key = dir.join("trueip.key");
    std::fs::write(&key, KEY_A).unwrap();
    // The app during the rotation holds both keys; an app left behind holds only A.
    let both = app(Signed::required(verifier(&[KEY_A, KEY_B], Duration::from_secs(30))));
    let old = app(Signed::required(verifier(&[KEY_A], Duration::from_secs(30))));
    let gw_both = gateway(&test_dir("signed_header/rotation-both"), both, &key);
    let gw_old = gateway(&test_dir("signed_header/rotation-old"), old, &key);
    for gw in [&gw_both, &gw_old] {
        let resp = get(gw.addr, "/a", &[("X-Forwarded-For", CLIENT)]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // The gateways switch to key B on SIGHUP.
    std::fs::write(&key, KEY_B).unwrap();
    gw_both.proc.signal("HUP");
    gw_old.proc.signal("HUP");
    let switched = |gw: &Gateway, want: u16| {
        // A reload takes a moment; bounded.
        for _ in 0..100 {
            let resp = get(gw.addr, "/a", &[("X-Forwarded-For", CLIENT)]);
            if resp.status == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    assert!(switched(&gw_old, 403), "{}", gw_old.proc.log());
    assert!(switched(&gw_both, 200), "{}", gw_both.proc.log());
    let resp = get(gw_both.addr, "/a", &[("X-Forwarded-For", CLIENT)]);
    let kid_b = Key::new(KEY_B.as_bytes()).unwrap().id().to_owned();
    assert!(
        resp.header("x-seen-signature").unwrap().contains(&format!(";kid={kid_b};")),
        "{:?}",
        resp.header("x-seen-signature")
    );
}
