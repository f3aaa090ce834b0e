//! The per-request cost of `ClientIpLayer` + `ClientIp` in an axum app, beside the same
//! app without them and beside `axum-client-ip`'s extractors, on one request with a 3-hop
//! X-Forwarded-For.
//!
//! Each iteration sends one request through the router with `tower::ServiceExt::oneshot`,
//! in-process (no sockets: those would swamp the difference). The request carries
//! `ConnectInfo<SocketAddr>` as `axum::serve` would put it there, for every app.
//! `cloned_per_request` also clones the service in the timed request, as `axum::serve`
//! does.
//!
//! ```text
//! cargo bench -p trueip --features axum --bench axum
//! ```

mod common;

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum_client_ip::ClientIpSource;
use common::{PEER, XFF, policy, ready};
use divan::Bencher;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::ServiceExt;
use trueip::axum::{ClientIp, ClientResolution};
use trueip::tower::ClientIpLayer;

const SAMPLES: u32 = 300;
const SIZE: u32 = 100;

/// A request as axum's server hands it to the router: six ordinary headers, the list,
/// and the connect info.
fn request() -> Request<Body> {
    let mut req = Request::new(Body::empty());
    let headers = req.headers_mut();
    for (name, value) in common::ORDINARY.into_iter().chain([("x-forwarded-for", XFF)]) {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    let peer: SocketAddr = PEER.parse().expect("socket literal");
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// The app with nothing about clients.
fn bare() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// trueip: the layer decides, the extractor reads the decision.
fn trueip() -> Router {
    trueip_route().layer(ClientIpLayer::new(policy()))
}

/// The route that reads trueip's decision, without the layer that makes it.
fn trueip_route() -> Router {
    Router::new().route(
        "/",
        get(|ClientIp(ip): ClientIp| async move {
            black_box(ip);
            "ok"
        }),
    )
}

/// axum-client-ip's configurable `ClientIp`, set up as its README does (an `Extension`
/// naming the source). It has no trust set: it returns the rightmost entry.
fn axum_client_ip() -> Router {
    axum_client_ip_route().layer(ClientIpSource::RightmostXForwardedFor.into_extension())
}

/// The route that reads axum-client-ip's configurable `ClientIp`, without its extension.
fn axum_client_ip_route() -> Router {
    Router::new().route(
        "/",
        get(|axum_client_ip::ClientIp(ip)| async move {
            black_box(ip);
            "ok"
        }),
    )
}

/// axum-client-ip's fixed-source extractor: no extension to look up.
fn axum_client_ip_rightmost() -> Router {
    Router::new().route(
        "/",
        get(|axum_client_ip::RightmostXForwardedFor(ip)| async move {
            black_box(ip);
            "ok"
        }),
    )
}

fn send(app: Router, req: Request<Body>) -> Response<Body> {
    match ready(app.oneshot(req)) {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn run(bencher: Bencher, app: Router) {
    bencher
        .with_inputs(|| (app.clone(), request()))
        .bench_local_values(|(app, req)| send(app, black_box(req)));
}

/// `Router::layer`, as the README shows: axum boxes and clones a service per route for
/// each layer, whatever the layer does.
mod router_layer {
    use super::*;

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn bare_app(bencher: Bencher) {
        run(bencher, bare());
    }

    /// Any layer at all: what axum charges for one before the layer does anything.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn no_op_layer(bencher: Bencher) {
        run(bencher, bare().layer(tower::layer::layer_fn(|inner| inner)));
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_layer_and_client_ip(bencher: Bencher) {
        run(bencher, trueip());
    }

    /// `ClientIpLayer::from_static`: axum clones each route's service inside every
    /// request, so here the `Arc`'s count moves twice a request even in this benchmark.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_static_policy(bencher: Bencher) {
        static POLICY: std::sync::LazyLock<trueip::Policy> = std::sync::LazyLock::new(policy);
        let app = trueip_route().layer(ClientIpLayer::from_static(&POLICY));
        run(bencher, app);
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn axum_client_ip_configurable(bencher: Bencher) {
        run(bencher, axum_client_ip());
    }
}

/// The layer around the whole router (`Layer::layer(&layer, router)`): no per-route box.
mod around_the_router {
    use super::*;

    fn run_around<S>(bencher: Bencher, app: S)
    where
        S: tower::Service<Request<Body>, Response = Response<Body>> + Clone,
        S::Error: std::fmt::Debug,
    {
        bencher.with_inputs(|| (app.clone(), request())).bench_local_values(|(app, req)| {
            ready(app.oneshot(black_box(req))).expect("infallible")
        });
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_layer_and_client_ip(bencher: Bencher) {
        let app = trueip_route();
        run_around(bencher, tower::Layer::layer(&ClientIpLayer::new(policy()), app));
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn axum_client_ip_configurable(bencher: Bencher) {
        let app = axum_client_ip_route();
        let layer = ClientIpSource::RightmostXForwardedFor.into_extension();
        run_around(bencher, tower::Layer::layer(&layer, app));
    }
}

/// The layer around the router, the service cloned inside the timed request: what
/// `axum::serve` does for every request (hyper-util's `TowerToHyperService::call` is
/// `Oneshot::new(self.service.clone(), req)`). Above, the clone is made in the set-up and
/// only its drop is timed.
mod cloned_per_request {
    use super::*;

    fn run_cloned<S>(bencher: Bencher, app: S)
    where
        S: tower::Service<Request<Body>, Response = Response<Body>> + Clone,
        S::Error: std::fmt::Debug,
    {
        bencher.with_inputs(request).bench_local_values(|req| {
            ready(black_box(&app).clone().oneshot(black_box(req))).expect("infallible")
        });
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn bare(bencher: Bencher) {
        run_cloned(bencher, super::bare());
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_arc(bencher: Bencher) {
        run_cloned(bencher, tower::Layer::layer(&ClientIpLayer::new(policy()), trueip_route()));
    }

    /// `ClientIpLayer::from_static`: the clone copies a reference instead of counting.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_static(bencher: Bencher) {
        static POLICY: std::sync::LazyLock<trueip::Policy> = std::sync::LazyLock::new(policy);
        run_cloned(
            bencher,
            tower::Layer::layer(&ClientIpLayer::from_static(&POLICY), trueip_route()),
        );
    }

    /// `from_static` with `keep_client_ip_headers`: what withholding the client-IP
    /// headers costs is the difference from `trueip_static`.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_static_keeping_headers(bencher: Bencher) {
        static POLICY: std::sync::LazyLock<trueip::Policy> = std::sync::LazyLock::new(policy);
        let layer = ClientIpLayer::from_static(&POLICY).keep_client_ip_headers();
        run_cloned(bencher, tower::Layer::layer(&layer, trueip_route()));
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn axum_client_ip(bencher: Bencher) {
        let app = axum_client_ip_route();
        let layer = ClientIpSource::RightmostXForwardedFor.into_extension();
        run_cloned(bencher, tower::Layer::layer(&layer, app));
    }
}

/// No layer: axum-client-ip's fixed-source extractor reads the header in the handler.
#[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
fn axum_client_ip_rightmost_xff_no_layer(bencher: Bencher) {
    run(bencher, axum_client_ip_rightmost());
}

/// What the layer does per request, piece by piece, outside axum.
mod parts {
    use super::*;
    use trueip::Connection;

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn resolve(bencher: Bencher) {
        let policy = policy();
        let req = request();
        let conn = Connection::from_peer(PEER.parse::<SocketAddr>().expect("socket literal"));
        bencher.bench_local(|| policy.resolve(black_box(&conn), black_box(req.headers())));
    }

    /// Three extension lookups (the layer's `Connection`, `ConnectInfo<Connection>`,
    /// `ConnectInfo<SocketAddr>`, in that order of precedence).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn find_the_connection(bencher: Bencher) {
        let req = request();
        bencher.bench_local(|| {
            let ext = black_box(&req).extensions();
            (
                ext.get::<Connection>().is_some(),
                ext.get::<ConnectInfo<Connection>>().is_some(),
                ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
            )
        });
    }

    /// Which of the request's names the layer withholds from the app (none: the trusted
    /// hops' `X-Forwarded-For` is what the policy reads), the hop included.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn find_the_names_to_withhold(bencher: Bencher) {
        let policy = policy();
        let req = request();
        let conn = Connection::from_peer(PEER.parse::<SocketAddr>().expect("socket literal"));
        let resolution = policy.resolve(&conn, req.headers());
        let set = policy.withheld_set();
        bencher.bench_local(|| {
            let hop = policy.hop(black_box(&resolution));
            set.withheld_names(black_box(&req).headers().keys(), hop)
        });
    }

    /// `Extensions::insert` boxes the value (its drop is deferred by divan, not timed).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn store_the_resolution(bencher: Bencher) {
        let policy = policy();
        let conn = Connection::from_peer(PEER.parse::<SocketAddr>().expect("socket literal"));
        let resolution = policy.resolve(&conn, request().headers());
        bencher.with_inputs(request).bench_local_values(|mut req| {
            req.extensions_mut().insert(black_box(resolution));
            req
        });
    }
}

/// What each app answers on the benchmark request, printed before timing.
fn answers() {
    let trueip_answer = {
        let app = Router::new()
            .route(
                "/",
                get(|ClientResolution(r): ClientResolution| async move {
                    format!("{} (trusted hops: {})", r.client, r.trusted_hops)
                }),
            )
            .layer(ClientIpLayer::new(policy()));
        body(send(app, request()))
    };
    let peer_answer = {
        let app = Router::new()
            .route("/", get(|axum_client_ip::ClientIp(ip)| async move { ip.to_string() }));
        let app = app.layer(ClientIpSource::RightmostXForwardedFor.into_extension());
        body(send(app, request()))
    };
    println!("X-Forwarded-For: {XFF}, peer {PEER}");
    println!("  trueip:         {trueip_answer}");
    println!("  axum-client-ip: {peer_answer} (the rightmost entry: the nearest proxy)");
    assert_eq!(send(bare(), request()).status(), StatusCode::OK);
    assert!(trueip_answer.starts_with("203.0.113.9 "));
    assert_eq!(peer_answer.parse::<IpAddr>().ok(), "192.168.4.5".parse().ok());
}

fn body(response: Response<Body>) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = ready(axum::body::to_bytes(response.into_body(), 1 << 16)).expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn main() {
    answers();
    divan::main();
}
