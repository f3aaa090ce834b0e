//! `ClientIpLayer` and the axum extractors through axum's own server on loopback: one
//! behaviour per test. The "proxy" connects from 127.0.0.20 (trusted), the attacker from
//! 127.0.0.1 (never trusted).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use support::*;
use trueip::axum::{ClientIp, ClientResolution, MISSING_LAYER};
use trueip::tower::{ClientIpLayer, MISSING_CONNECTION};
use trueip::{Connection, Policy};

const PROXY: &str = "127.0.0.20";
const ATTACKER: &str = "127.0.0.1";

/// nginx-like proxies on 127.0.0.16/28 and an "ALB" in 10.0.0.0/16 append to X-Forwarded-For.
fn policy() -> Policy {
    Policy::builder()
        .trust_str("127.0.0.16/28")
        .unwrap()
        .trust_str("10.0.0.0/16")
        .unwrap()
        .build()
        .unwrap()
}

fn routes() -> Router {
    Router::new().route("/ip", get(|ClientIp(ip): ClientIp| async move { ip.to_string() })).route(
        "/resolution",
        get(|ClientResolution(r): ClientResolution| async move {
            format!(
                "{} {:?} {}",
                r.ip().map_or_else(|| r.client.to_string(), |ip| ip.to_string()),
                r.source,
                r.warnings
            )
        }),
    )
}

/// Serves `app` the way the README tells users to, on a free port.
async fn serve<C>(app: Router) -> SocketAddr
where
    C: for<'a> axum::extract::connect_info::Connected<
            axum::serve::IncomingStream<'a, tokio::net::TcpListener>,
        >,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<C>()).await.unwrap();
    });
    addr
}

async fn serve_plain(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn trusted_chain_gives_the_client() {
    let app = routes().layer(ClientIpLayer::new(policy()));
    let addr = serve::<SocketAddr>(app).await;
    // The client forged the first entry; the ALB appended the client; the proxy appended the ALB.
    let xff = [("X-Forwarded-For", "198.51.100.66, 203.0.113.9, 10.0.3.7")];
    let reply = get_from(PROXY, addr, "/ip", &xff).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "203.0.113.9"));
    let reply = get_from(PROXY, addr, "/resolution", &xff).await.unwrap();
    assert_eq!(
        reply.body,
        "203.0.113.9 List { header: XForwardedFor, from_right: 2 } spoof_attempt"
    );
}

#[tokio::test]
async fn forged_headers_from_an_untrusted_peer_give_the_peer() {
    let app = routes().layer(ClientIpLayer::new(policy()));
    let addr = serve::<SocketAddr>(app).await;
    let forged = [
        ("X-Forwarded-For", "203.0.113.66, 127.0.0.20"),
        ("X-Real-IP", "198.51.100.77"),
        ("Forwarded", "for=192.0.2.88"),
    ];
    let reply = get_from(ATTACKER, addr, "/ip", &forged).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, ATTACKER));
    let reply = get_from(ATTACKER, addr, "/resolution", &forged).await.unwrap();
    assert_eq!(reply.body, "127.0.0.1 Peer header_from_untrusted_peer");
}

/// A route that answers the request's header lines as the handler sees them, `name=value`,
/// sorted, without `host` and `connection`: what an app (or an inner layer, such as a rate
/// limiter keyed on `X-Forwarded-For`) reading the headers itself would find.
fn echo() -> Router {
    Router::new().route(
        "/headers",
        get(|headers: http::HeaderMap| async move {
            let mut lines: Vec<String> = headers
                .iter()
                .filter(|(name, _)| !matches!(name.as_str(), "host" | "connection"))
                .map(|(name, value)| format!("{name}={}", value.to_str().unwrap()))
                .collect();
            lines.sort();
            lines.join("\n")
        }),
    )
}

/// A stranger's forwarding headers, in three spellings, beside a header no rule touches.
const FORGED: [(&str, &str); 4] = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X_Forwarded_For", "6.6.6.7"),
    ("True-Client-IP", "6.6.6.8"),
    ("X-Request-Id", "abc"),
];

/// Headers platforms write and apps read as the client's address (Azure App Service,
/// Netlify, Vercel, ASP.NET Core, Alibaba Cloud CDN, Tencent EdgeOne, front proxies) or scheme (App
/// Service's `X-ARR-SSL`): rows of the table like the others.
const PLATFORM: [(&str, &str); 10] = [
    ("X-ARR-ClientIP", "6.6.6.9:51234"),
    ("X-BB-IP", "6.6.6.9"),
    ("X-Vercel-Proxied-For", "6.6.6.9"),
    ("X-Original-For", "6.6.6.9:51234"),
    ("X-Original-IP", "6.6.6.9"),
    ("X-Real-Client-IP", "6.6.6.9"),
    ("Ali-Cdn-Real-Ip", "6.6.6.9"),
    ("EO-Connecting-IP", "6.6.6.9"),
    ("EO-Client-IP", "6.6.6.9"),
    ("X-ARR-SSL", "2048|256"),
];

/// Who the client proved to be, as the hop that checked its certificate hands it on
/// (Envoy, nginx, ingress-nginx), and Envoy's word that the request came from inside:
/// an app takes them as authentication.
const IDENTITY: [(&str, &str); 3] = [
    ("X-Forwarded-Client-Cert", "Subject=\"CN=admin\""),
    ("X-SSL-Client-Verify", "SUCCESS"),
    ("X-Envoy-Internal", "true"),
];

/// What a stranger writes in a client-IP header, in any spelling, never reaches the
/// handler: it would believe it, as `trueip serve` and the Python middlewares never let
/// an app do. Before the layer withheld them, all three reached it; before the table had
/// them, every one of [`PLATFORM`] did, and of [`IDENTITY`] until the table had them.
#[tokio::test]
async fn a_strangers_client_ip_headers_never_reach_the_handler() {
    let forged: Vec<(&str, &str)> =
        FORGED.iter().chain(&PLATFORM).chain(&IDENTITY).copied().collect();
    for layer in [ClientIpLayer::new(policy()), ClientIpLayer::new(Policy::default())] {
        let addr = serve::<SocketAddr>(echo().layer(layer)).await;
        let reply = get_from(ATTACKER, addr, "/headers", &forged).await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "x-request-id=abc"));
    }
}

/// Through a trusted hop, what the decision read reaches the handler, and so do the hop's
/// claims about the request; a client address the policy did not read (`True-Client-IP`,
/// which nginx and ALBs relay from the client unchanged) and an underscore spelling do
/// not. A policy that reads `True-Client-IP` hands it over. Before, all of them reached it.
/// Of [`PLATFORM`] only the claim about the request (`X-ARR-SSL`) passes a trusted hop;
/// every one of [`IDENTITY`] does, the word of the hop that checked the certificate.
#[tokio::test]
async fn a_trusted_hops_headers_reach_the_handler_as_the_decision_read_them() {
    let addr = serve::<SocketAddr>(echo().layer(ClientIpLayer::new(policy()))).await;
    let mut sent: Vec<(&str, &str)> =
        FORGED.iter().chain(&PLATFORM).chain(&IDENTITY).copied().collect();
    sent.push(("X-Forwarded-Proto", "https"));
    let reply = get_from(PROXY, addr, "/headers", &sent).await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            200,
            "x-arr-ssl=2048|256\nx-envoy-internal=true\nx-forwarded-client-cert=Subject=\"CN=admin\"\n\
             x-forwarded-for=6.6.6.6\nx-forwarded-proto=https\nx-request-id=abc\nx-ssl-client-verify=SUCCESS"
        )
    );

    let akamai = Policy::builder()
        .trust_str("127.0.0.16/28")
        .unwrap()
        .strategy_str("header:True-Client-IP")
        .unwrap()
        .build()
        .unwrap();
    let addr = serve::<SocketAddr>(echo().layer(ClientIpLayer::new(akamai))).await;
    let reply = get_from(PROXY, addr, "/headers", &FORGED).await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("true-client-ip=6.6.6.8"), "{}", reply.body);
    assert!(!reply.body.contains("x_forwarded_for"), "{}", reply.body);
}

/// `keep_client_ip_headers`: the opt-out hands every line over as it came, and the
/// decision is the same.
#[tokio::test]
async fn keep_client_ip_headers_hands_every_line_over() {
    static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(policy);
    let app = || echo().merge(routes());
    for app in [
        app().layer(ClientIpLayer::new(policy()).keep_client_ip_headers()),
        app().layer(ClientIpLayer::from_static(&POLICY).keep_client_ip_headers()),
    ] {
        let addr = serve::<SocketAddr>(app).await;
        let reply = get_from(ATTACKER, addr, "/headers", &FORGED).await.unwrap();
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (
                200,
                "true-client-ip=6.6.6.8\nx-forwarded-for=6.6.6.6\nx-request-id=abc\nx_forwarded_for=6.6.6.7"
            )
        );
        let reply = get_from(ATTACKER, addr, "/ip", &FORGED).await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, ATTACKER));
    }
}

/// The function's app run under `axum::serve` (a test server, `cargo run`) with the ALB
/// preset: a client that writes the ALB's header itself is not believed. Before the core
/// had the rule, the answer was the last element the client wrote, 203.0.113.66.
#[cfg(feature = "lambda")]
#[tokio::test]
async fn a_lambda_preset_under_axum_serve_gives_the_peer() {
    let policy = trueip::lambda::Preset::Alb.builder().build().unwrap();
    let app = routes().layer(ClientIpLayer::new(policy));
    let addr = serve::<SocketAddr>(app).await;
    let forged = [("X-Forwarded-For", "198.51.100.77, 203.0.113.66")];
    let reply = get_from(ATTACKER, addr, "/ip", &forged).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, ATTACKER));
    let reply = get_from(ATTACKER, addr, "/resolution", &forged).await.unwrap();
    assert_eq!(reply.body, "127.0.0.1 Peer header_from_untrusted_peer,no_lambda_event");
}

/// A layer over a policy that lives as long as the program decides as one over an `Arc`,
/// and refuses a request without a connection the same way.
#[tokio::test]
async fn a_static_policy_decides_as_a_shared_one() {
    static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(policy);
    let layer = ClientIpLayer::from_static(&POLICY);
    let addr = serve::<SocketAddr>(routes().layer(layer.clone())).await;
    let xff = [("X-Forwarded-For", "198.51.100.66, 203.0.113.9, 10.0.3.7")];
    let reply = get_from(PROXY, addr, "/resolution", &xff).await.unwrap();
    assert_eq!(
        reply.body,
        "203.0.113.9 List { header: XForwardedFor, from_right: 2 } spoof_attempt"
    );
    let reply = get_from(ATTACKER, addr, "/ip", &xff).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, ATTACKER));
    let addr = serve_plain(routes().layer(layer)).await;
    let reply = get_from(PROXY, addr, "/ip", &xff).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (500, MISSING_CONNECTION));
}

#[tokio::test]
async fn connection_connect_info_works_on_a_plain_listener() {
    // The connect info ProxyProtocolListener needs, on the plain listener: switching
    // listeners changes one line.
    let app = routes().layer(ClientIpLayer::new(policy()));
    let addr = serve::<Connection>(app).await;
    let xff = [("X-Forwarded-For", "203.0.113.9")];
    let reply = get_from(PROXY, addr, "/ip", &xff).await.unwrap();
    assert_eq!(reply.body, "203.0.113.9");
}

#[tokio::test]
async fn missing_layer_is_a_500_naming_the_fix() {
    logs();
    let addr = serve::<SocketAddr>(routes()).await;
    for path in ["/ip", "/resolution"] {
        let reply = get_from(PROXY, addr, path, &[]).await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (500, MISSING_LAYER));
        assert!(reply.body.contains(".layer(trueip::tower::ClientIpLayer::new(policy))"));
        let lines = logged(&format!("GET {path}: 500"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ERROR")
                    && l.contains("no `trueip::tower::ClientIpLayer` ran")),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn layer_added_before_the_route_is_the_same_500() {
    // `Router::layer` wraps the routes added before it: the classic ordering mistake.
    let app = Router::new()
        .layer(ClientIpLayer::new(policy()))
        .route("/late", get(|ClientIp(ip): ClientIp| async move { ip.to_string() }));
    let addr = serve::<SocketAddr>(app).await;
    let reply = get_from(PROXY, addr, "/late", &[]).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (500, MISSING_LAYER));
}

#[tokio::test]
async fn missing_connect_info_is_a_500_naming_the_fix() {
    logs();
    let app = routes().layer(ClientIpLayer::new(policy()));
    let addr = serve_plain(app).await;
    let xff = [("X-Forwarded-For", "203.0.113.9")];
    let reply = get_from(PROXY, addr, "/ip?no-connect-info", &xff).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (500, MISSING_CONNECTION));
    assert!(reply.body.contains("into_make_service_with_connect_info::<std::net::SocketAddr>()"));
    assert!(reply.body.contains("ProxyProtocolListener"));
    let lines = logged("GET /ip: 500");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains("into_make_service_with_connect_info")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn routes_without_the_extractor_still_see_the_peer_they_had() {
    // The layer adds a Resolution and takes nothing away: ConnectInfo is still there.
    let app = Router::new()
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .layer(ClientIpLayer::new(policy()));
    let addr = serve::<SocketAddr>(app).await;
    let reply = get_from(PROXY, addr, "/peer", &[]).await.unwrap();
    assert_eq!(reply.body, PROXY);
}

/// A policy per route: `route_layer` on each router, merged, and a nested router with its
/// own. Each route's extractor sees the decision of its own layer only.
#[tokio::test]
async fn each_route_decides_with_its_own_layer() {
    let only_local_nginx = Policy::builder()
        .trust_str("127.0.0.20")
        .unwrap()
        .strategy_str("header:X-Real-IP")
        .unwrap()
        .build()
        .unwrap();
    let ip = || get(|ClientIp(ip): ClientIp| async move { ip.to_string() });
    let public =
        Router::new().route("/public", ip()).route_layer(ClientIpLayer::new(Policy::default()));
    let internal = Router::new().route("/internal", ip()).route_layer(ClientIpLayer::new(policy()));
    let nested = Router::new().route("/ip", ip()).route_layer(ClientIpLayer::new(only_local_nginx));
    let app = public.merge(internal).nest("/nginx", nested);
    let addr = serve::<SocketAddr>(app).await;
    let headers = [("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "198.51.100.7")];
    let body = |path: &'static str| async move {
        let reply = get_from(PROXY, addr, path, &headers).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        reply.body
    };
    // Trusts no one: the peer. Trusts the proxies for XFF. Trusts 127.0.0.20 for X-Real-IP.
    assert_eq!(body("/public").await, PROXY);
    assert_eq!(body("/internal").await, "203.0.113.9");
    assert_eq!(body("/nginx/ip").await, "198.51.100.7");
}

/// The layer takes the connection from the first source the `tower` module docs list,
/// whichever of them a request carries, alone, together, or beside other extensions.
#[tokio::test]
async fn connection_sources_keep_their_order() {
    use axum::body::Body;
    use http::Request;
    use tower::{Layer, ServiceExt};

    #[derive(Clone)]
    struct Unrelated;

    /// What a case puts in the request's extensions, in this order.
    enum Put {
        /// `ConnectInfo<SocketAddr>` (10.0.0.5:1)
        Addr,
        /// `Connection` (192.0.2.1:2)
        Conn,
        /// `ConnectInfo<Connection>` (192.0.2.3:3)
        InfoConn,
        /// An extension the layer does not read.
        Other,
    }
    use Put::*;

    let app = Router::new()
        .route("/", get(|ClientResolution(r): ClientResolution| async move { r.peer.to_string() }));
    let app = ClientIpLayer::new(policy()).layer(app);
    let socket = |s: &str| s.parse::<SocketAddr>().unwrap();
    let cases: [(&str, &[Put], u16, &str); 7] = [
        ("ConnectInfo<SocketAddr> alone", &[Addr], 200, "10.0.0.5:1"),
        ("ConnectInfo<SocketAddr> beside another extension", &[Other, Addr], 200, "10.0.0.5:1"),
        ("Connection before ConnectInfo<SocketAddr>", &[Addr, Conn], 200, "192.0.2.1:2"),
        (
            "ConnectInfo<Connection> before ConnectInfo<SocketAddr>",
            &[Addr, InfoConn],
            200,
            "192.0.2.3:3",
        ),
        ("Connection before ConnectInfo<Connection>", &[InfoConn, Conn], 200, "192.0.2.1:2"),
        ("Connection before both", &[Addr, InfoConn, Conn], 200, "192.0.2.1:2"),
        ("none: the 500", &[Other], 500, MISSING_CONNECTION),
    ];
    for (name, puts, status, body) in cases {
        let mut req = Request::new(Body::empty());
        let ext = req.extensions_mut();
        for put in puts {
            match put {
                Addr => {
                    ext.insert(ConnectInfo(socket("10.0.0.5:1")));
                }
                Conn => {
                    ext.insert(Connection::from_peer(socket("192.0.2.1:2")));
                }
                InfoConn => {
                    ext.insert(ConnectInfo(Connection::from_peer(socket("192.0.2.3:3"))));
                }
                Other => {
                    ext.insert(Unrelated);
                }
            }
        }
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), status, "{name}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&bytes), body, "{name}");
    }
}

/// A `query:NAME` strategy reads the request's query string under the layer, as
/// `resolve_request` and `trueip explain --query` do; before, the layer handed the policy
/// the headers alone and such a policy always answered the peer.
#[tokio::test]
async fn a_query_strategy_reads_the_query_string() {
    let policy = Policy::builder()
        .trust_str("127.0.0.16/28")
        .and_then(|b| b.strategy_str("query:client"))
        .and_then(|b| b.build())
        .unwrap();
    let addr = serve::<SocketAddr>(routes().layer(ClientIpLayer::new(policy))).await;
    let reply = get_from(PROXY, addr, "/ip?page=2&client=198.51.100.4", &[]).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "198.51.100.4"));
    // From a stranger the argument is the client's own word: the peer.
    let reply = get_from(ATTACKER, addr, "/ip?client=198.51.100.4", &[]).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, ATTACKER));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The layer removes exactly the lines [`ForwardingSet::withheld`] withholds, asked of
    /// each line as `trueip serve` and the Python middlewares ask it, whatever the names'
    /// order, spelling and repetition, from a trusted hop and a stranger: the pass that asks
    /// `fate` up to the first withheld name and removes from there left no line the rule
    /// withholds and took none it keeps.
    ///
    /// [`ForwardingSet::withheld`]: trueip::headers::ForwardingSet::withheld
    #[test]
    fn the_layer_withholds_each_line_the_rule_withholds(
        lines in proptest::collection::vec(
            (support::names::header_name(POLICY.withheld_set().names()), 0u8..3), 0..24),
        from_proxy in proptest::bool::ANY,
        akamai in proptest::bool::ANY,
    ) {
        use tower::{Layer, ServiceExt};
        let policy: &'static Policy = if akamai { &AKAMAI } else { &POLICY };
        let mut req = http::Request::new(String::new());
        for (i, (name, copies)) in lines.iter().enumerate() {
            for copy in 0..=*copies {
                let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
                req.headers_mut().append(name, format!("198.51.100.{i}, 10.0.0.{copy}").parse().unwrap());
            }
        }
        let sent = req.headers().clone();
        let peer = if from_proxy { "127.0.0.20:5000" } else { "127.0.0.1:5000" };
        req.extensions_mut().insert(Connection::from_peer(peer.parse::<SocketAddr>().unwrap()));
        let service = ClientIpLayer::from_static(policy).layer(tower::service_fn(
            |req: http::Request<String>| async move {
                // What the handler saw, handed back in the response.
                let mut seen = http::Response::new(String::new());
                *seen.headers_mut() = req.headers().clone();
                seen.extensions_mut().extend(req.extensions().clone());
                Ok::<_, std::convert::Infallible>(seen)
            },
        ));
        let seen = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(service.oneshot(req))
            .unwrap();
        let resolution = seen.extensions().get::<trueip::Resolution>().unwrap();
        let hop = policy.hop(resolution);
        let set = policy.withheld_set();
        // By name (a removal moves other names in the map), each name's lines in order.
        let by_name = |lines: &mut Vec<(String, http::HeaderValue)>| lines.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<_> = sent
            .iter()
            .filter(|(name, _)| !set.withheld(name.as_str().as_bytes(), hop))
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        let mut got: Vec<_> =
            seen.headers().iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
        by_name(&mut kept);
        by_name(&mut got);
        proptest::prop_assert_eq!(got, kept);
    }
}

static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(policy);

/// Reads `True-Client-IP` from the proxies: a header of the set a trusted hop passes.
static AKAMAI: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| {
    Policy::builder()
        .trust_str("127.0.0.16/28")
        .and_then(|b| b.strategy_str("header:True-Client-IP"))
        .and_then(|b| b.build())
        .unwrap()
});
