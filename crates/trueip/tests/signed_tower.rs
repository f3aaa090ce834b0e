//! `ClientIpLayer::signed`: the client from the signed header `trueip serve` writes, driven
//! through the real service (`oneshot`), one behaviour per test.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use trueip::provenance::{
    Claim, DEFAULT_WINDOW, Key, Outcome, Rejected, RequestLine, Signed, Verifier, sign,
};
use trueip::tower::ClientIpLayer;
use trueip::{Connection, Node, Policy, Resolution, Source, Warnings};

const GATEWAY: &str = "127.0.0.1:40001";

fn key(fill: u8) -> Key {
    Key::new(&[fill; 40]).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The header the gateway would write for `path` under `key`, signed at `time`.
fn header(key: &Key, path: &str, time: u64) -> String {
    let mut out = String::new();
    let claim = Claim {
        client: Node { ip: "203.0.113.7".parse().unwrap(), port: Some(51234) },
        source: Source::Peer,
        hops: 0,
        time,
    };
    let request = RequestLine { method: "GET", host: "app.example", target: path };
    sign(key, &claim, &request, &mut out);
    out
}

/// `GET path` for `app.example` with `lines`, from the gateway's address.
fn from_gateway(path: &str, lines: &[(&str, &str)]) -> Request<String> {
    let mut req = Request::get(path).body(String::new()).unwrap();
    req.headers_mut().insert("host", "app.example".parse().unwrap());
    for (n, v) in lines {
        req.headers_mut()
            .append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    req.extensions_mut().insert(Connection::from_peer(GATEWAY.parse::<SocketAddr>().unwrap()));
    req
}

/// Sends `GET path` from the gateway's address through the layer; the status and what
/// the handler saw (client, warnings, outcome).
async fn send(signed: Signed, path: &str, lines: &[(&str, &str)]) -> (StatusCode, String) {
    let service = ServiceBuilder::new()
        .layer(ClientIpLayer::new(Policy::default()).signed(signed))
        .service(service_fn(|req: Request<String>| async move {
            let r = req.extensions().get::<Resolution>().unwrap();
            let outcome = match req.extensions().get::<Outcome>().unwrap() {
                Outcome::Verified(_) => "verified".to_string(),
                Outcome::FellBack(why) => why.name().to_string(),
            };
            Ok::<_, Infallible>(Response::new(format!(
                "{} {} {outcome}",
                r.ip().map_or("none".to_owned(), |ip| ip.to_string()),
                r.warnings
            )))
        }));
    let response = service.oneshot(from_gateway(path, lines)).await.unwrap();
    (response.status(), response.into_body())
}

fn verifier(keys: impl IntoIterator<Item = Key>) -> Verifier {
    Verifier::new(keys, DEFAULT_WINDOW).unwrap()
}

#[tokio::test]
async fn a_verified_header_names_the_client() {
    let value = header(&key(1), "/account", now());
    let (status, body) = send(
        Signed::required(verifier([key(1)])),
        "/account",
        &[("trueip-signature", &value), ("x-real-ip", "6.6.6.6")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "203.0.113.7  verified");
}

/// (name, header lines, status).
type Case = (&'static str, Vec<(&'static str, String)>, StatusCode);

#[tokio::test]
async fn required_refuses_what_does_not_verify() {
    let good = header(&key(1), "/account", now());
    let cases: [Case; 6] = [
        (
            "missing, X-Real-IP instead",
            vec![("x-real-ip", "6.6.6.6".into())],
            StatusCode::FORBIDDEN,
        ),
        (
            "replayed for another path",
            vec![("trueip-signature", header(&key(1), "/other", now()))],
            StatusCode::FORBIDDEN,
        ),
        (
            "stale",
            vec![("trueip-signature", header(&key(1), "/account", now() - 31 - 5))],
            StatusCode::FORBIDDEN,
        ),
        (
            "unknown key",
            vec![("trueip-signature", header(&key(2), "/account", now()))],
            StatusCode::FORBIDDEN,
        ),
        ("malformed", vec![("trueip-signature", "v1;ip=1.2.3.4".into())], StatusCode::BAD_REQUEST),
        (
            "two lines",
            vec![("trueip-signature", good.clone()), ("trueip-signature", good)],
            StatusCode::BAD_REQUEST,
        ),
    ];
    let signed = Signed::required(verifier([key(1)]));
    for (name, lines, want) in cases {
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = send(signed.clone(), "/account", &lines).await;
        assert_eq!(status, want, "{name}: {body}");
        assert!(body.starts_with("trueip: "), "{name}: {body}");
    }
    assert_eq!(signed.rejected_count(), 6);
    assert_eq!(signed.verified_count(), 0);
}

#[tokio::test]
async fn or_peer_serves_the_peer_and_flags_it() {
    let signed = Signed::or_peer(verifier([key(1)]));
    let (status, body) = send(signed.clone(), "/account", &[("x-real-ip", "6.6.6.6")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "127.0.0.1 signature_rejected missing");
    let replayed = header(&key(1), "/account", now());
    let (_, body) = send(signed.clone(), "/admin", &[("trueip-signature", &replayed)]).await;
    assert_eq!(body, "127.0.0.1 signature_rejected bad_signature");
    assert_eq!((signed.verified_count(), signed.rejected_count()), (0, 2));
    assert!(Warnings::SIGNATURE_REJECTED.names().eq(["signature_rejected"]));
}

#[tokio::test]
async fn rotation_accepts_both_keys_then_only_the_new_one() {
    let (old, new) = (key(1), key(2));
    let both = Signed::required(verifier([old.clone(), new.clone()]));
    for k in [&old, &new] {
        let (status, body) =
            send(both.clone(), "/a", &[("trueip-signature", &header(k, "/a", now()))]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let only_new = Signed::required(verifier([new]));
    let (status, _) =
        send(only_new, "/a", &[("trueip-signature", &header(&old, "/a", now()))]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_renamed_header_is_the_one_read() {
    let value = header(&key(1), "/a", now());
    let signed = Signed::required(verifier([key(1)])).header("X-App-Client").unwrap();
    let (status, _) = send(signed.clone(), "/a", &[("trueip-signature", &value)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = send(signed, "/a", &[("x-app-client", &value)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "203.0.113.7  verified"));
    assert!(Signed::required(verifier([key(1)])).header("a b").is_err());
}

#[test]
fn the_window_is_stated_in_the_rejection() {
    let v = Verifier::new([key(1)], Duration::from_secs(10)).unwrap();
    let value = header(&key(1), "/a", 1_000);
    let req = RequestLine { method: "GET", host: "app.example", target: "/a" };
    let at = UNIX_EPOCH + Duration::from_secs(1_011);
    assert_eq!(v.verify_at(Some(value.as_bytes()), &req, at), Err(Rejected::Stale { age: 11 }));
}

/// The header lines the app behind a signed layer over `policy` sees for `lines` sent
/// from the gateway's address: `name` each, sorted, `host` left out.
async fn seen(policy: Policy, signed: Signed, lines: &[(&str, &str)]) -> String {
    let service = ServiceBuilder::new().layer(ClientIpLayer::new(policy).signed(signed)).service(
        service_fn(|req: Request<String>| async move {
            let mut names: Vec<&str> = req
                .headers()
                .keys()
                .map(http::HeaderName::as_str)
                .filter(|n| *n != "host")
                .collect();
            names.sort_unstable();
            Ok::<_, Infallible>(Response::new(names.join(" ")))
        }),
    );
    service.oneshot(from_gateway("/a", lines)).await.unwrap().into_body()
}

/// A verified header makes the gateway the hop, whose claims about the request reach the
/// app (`X-Forwarded-Proto`); a header that does not verify makes the sender a stranger,
/// however much the policy trusts its address, and none of its forwarding headers reach
/// the app. Before the layer withheld them, every line did.
#[tokio::test]
async fn what_reaches_the_app_follows_the_signature() {
    let trusting = || Policy::builder().trust_str("127.0.0.1").and_then(|b| b.build()).unwrap();
    let value = header(&key(1), "/a", now());
    let lines = [
        ("trueip-signature", value.as_str()),
        ("x-forwarded-proto", "https"),
        ("true-client-ip", "6.6.6.6"),
        ("x-request-id", "abc"),
    ];
    let verified = seen(trusting(), Signed::or_peer(verifier([key(1)])), &lines).await;
    assert_eq!(verified, "trueip-signature x-forwarded-proto x-request-id");
    let rejected = seen(trusting(), Signed::or_peer(verifier([key(2)])), &lines).await;
    assert_eq!(rejected, "trueip-signature x-request-id");
    // The opt-out keeps them whatever the signature says.
    let kept = ClientIpLayer::new(trusting())
        .keep_client_ip_headers()
        .signed(Signed::or_peer(verifier([key(2)])));
    let service =
        ServiceBuilder::new().layer(kept).service(service_fn(|req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(req.headers().len().to_string()))
        }));
    let req = from_gateway("/a", &[("true-client-ip", "6.6.6.6")]);
    // `host` and `true-client-ip`.
    assert_eq!(service.oneshot(req).await.unwrap().into_body(), "2");
}
