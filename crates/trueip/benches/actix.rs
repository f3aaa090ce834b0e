//! The per-request cost of `ClientIpMiddleware` + `ClientIp` in an actix-web app, beside the
//! same app without them, with a middleware that does nothing, and with actix-web's own
//! `ConnectionInfo::realip_remote_addr`, on one request with a 3-hop X-Forwarded-For.
//!
//! Each iteration sends one request through the app service that `actix_web::test::init_service`
//! builds (what actix-web's own benches time), in-process: no sockets, no HTTP parsing, which
//! are the same for every app and would swamp the difference. The request is made by
//! `TestRequest` with the peer address actix-web's server would give it, outside the timed
//! part.
//!
//! ```text
//! cargo bench -p trueip --features actix-web --bench actix
//! ```

mod common;

use std::future::{Ready, ready as ready_ok};
use std::hint::black_box;
use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::rt::System;
use actix_web::test::{TestRequest, init_service, read_body};
use actix_web::{App, HttpMessage, HttpRequest, web};
use common::{PEER, XFF, policy, ready};
use divan::Bencher;
use trueip::actix::{ClientIp, ClientIpMiddleware, ClientResolution};

const SAMPLES: u32 = 300;
const SIZE: u32 = 100;

/// A request as actix-web's server hands it to the app: six ordinary headers, the list,
/// and the TCP peer.
fn request_with(xff: &str) -> TestRequest {
    let mut req = TestRequest::get().uri("/");
    for (name, value) in common::ORDINARY.into_iter().chain([("x-forwarded-for", xff)]) {
        req = req.insert_header((name, value));
    }
    req.peer_addr(PEER.parse::<SocketAddr>().expect("socket literal"))
}

fn request() -> TestRequest {
    request_with(XFF)
}

/// A middleware that does nothing: what actix-web charges for any `Transform`, of the same
/// shape as `ClientIpMiddleware` (the inner service's future returned as it is).
struct NoOp;

struct NoOpService<S> {
    service: S,
}

impl<S: Service<ServiceRequest>> Transform<S, ServiceRequest> for NoOp {
    type Response = S::Response;
    type Error = S::Error;
    type Transform = NoOpService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready_ok(Ok(NoOpService { service }))
    }
}

impl<S: Service<ServiceRequest>> Service<ServiceRequest> for NoOpService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.service.call(req)
    }
}

/// actix-web's reading: the leftmost `Forwarded`/`X-Forwarded-For` element, whoever sent it.
fn realip(req: &HttpRequest) -> Option<String> {
    req.connection_info().realip_remote_addr().map(str::to_owned)
}

/// Times `app.call` on a fresh request; building the request and dropping the response
/// (which returns actix-web's pooled `HttpRequest`) are outside the timed part.
fn run<S, R, B>(bencher: Bencher, app: S, make: impl Fn() -> R)
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    bencher.with_inputs(make).bench_local_values(|req| ready(app.call(black_box(req))));
}

#[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
fn bare_app(bencher: Bencher) {
    let app = App::new().route("/", web::get().to(|| async { "ok" }));
    run(bencher, ready(init_service(app)), || request().to_request());
}

/// Any middleware at all: what actix-web charges for one before it does anything.
mod no_op_middleware {
    use super::*;

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn transform(bencher: Bencher) {
        let app = App::new().wrap(NoOp).route("/", web::get().to(|| async { "ok" }));
        run(bencher, ready(init_service(app)), || request().to_request());
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn wrap_fn(bencher: Bencher) {
        let app = App::new()
            .wrap_fn(|req, srv| srv.call(req))
            .route("/", web::get().to(|| async { "ok" }));
        run(bencher, ready(init_service(app)), || request().to_request());
    }
}

/// trueip: the middleware decides, the extractor reads the decision.
#[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
fn trueip_middleware_and_client_ip(bencher: Bencher) {
    let app = App::new().wrap(ClientIpMiddleware::new(policy())).route(
        "/",
        web::get().to(|ClientIp(ip): ClientIp| async move {
            black_box(ip);
            "ok"
        }),
    );
    run(bencher, ready(init_service(app)), || request().to_request());
}

/// actix-web's own `realip_remote_addr`, read in the handler: no trust check, so no policy.
#[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
fn actix_realip_remote_addr(bencher: Bencher) {
    let app = App::new().route(
        "/",
        web::get().to(|req: HttpRequest| async move {
            black_box(req.connection_info().realip_remote_addr().is_some());
            "ok"
        }),
    );
    run(bencher, ready(init_service(app)), || request().to_request());
}

/// What the middleware does per request, piece by piece, outside the app.
mod parts {
    use super::*;
    use trueip::Connection;

    /// `Policy::resolve` over actix-web's own `HeaderMap` (trueip's scan of it).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn resolve(bencher: Bencher) {
        let policy = policy();
        let req = request().to_http_request();
        let conn = Connection::from_peer(PEER.parse::<SocketAddr>().expect("socket literal"));
        bencher.bench_local(|| policy.resolve(black_box(&conn), black_box(req.headers())));
    }

    /// `Extensions::insert` boxes the value (its drop is deferred by divan, not timed).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn store_the_resolution(bencher: Bencher) {
        let policy = policy();
        let conn = Connection::from_peer(PEER.parse::<SocketAddr>().expect("socket literal"));
        let resolution = policy.resolve(&conn, request().to_http_request().headers());
        bencher.with_inputs(|| request().to_http_request()).bench_local_values(|req| {
            req.extensions_mut().insert(black_box(resolution));
            req
        });
    }
}

/// What each app answers on the benchmark request and on the same request with a forged
/// first element, printed before timing.
async fn answers() {
    let trueip = init_service(App::new().wrap(ClientIpMiddleware::new(policy())).route(
        "/",
        web::get().to(|ClientResolution(r): ClientResolution| async move {
            format!("{} (trusted hops: {})", r.client, r.trusted_hops)
        }),
    ))
    .await;
    let actix = init_service(App::new().route(
        "/",
        web::get().to(|req: HttpRequest| async move { realip(&req).unwrap_or_default() }),
    ))
    .await;
    let bare = init_service(App::new().route("/", web::get().to(|| async { "ok" }))).await;
    let no_op =
        init_service(App::new().wrap(NoOp).route("/", web::get().to(|| async { "ok" }))).await;
    let forged = format!("198.51.100.66, {XFF}");

    async fn body<B: MessageBody>(res: Result<ServiceResponse<B>, actix_web::Error>) -> String {
        let res = res.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        String::from_utf8_lossy(&read_body(res).await).into_owned()
    }
    let t = body(trueip.call(request().to_request()).await).await;
    let a = body(actix.call(request().to_request()).await).await;
    let t_forged = body(trueip.call(request_with(&forged).to_request()).await).await;
    let a_forged = body(actix.call(request_with(&forged).to_request()).await).await;
    assert_eq!(body(bare.call(request().to_request()).await).await, "ok");
    assert_eq!(body(no_op.call(request().to_request()).await).await, "ok");

    println!("X-Forwarded-For: {XFF}, peer {PEER}");
    println!("  trueip:             {t}");
    println!("  realip_remote_addr: {a} (the leftmost element, believed as sent)");
    println!("X-Forwarded-For: {forged} (the client sent the first element)");
    println!("  trueip:             {t_forged}");
    println!("  realip_remote_addr: {a_forged}");
    assert!(t.starts_with("203.0.113.9 "));
    assert!(t_forged.starts_with("203.0.113.9 "));
    assert_eq!(a, "203.0.113.9");
    assert_eq!(a_forged, "198.51.100.66");
}

fn main() {
    // One actix runtime for the whole run, entered once: the apps are built and called
    // inside it, as a server worker does, and no iteration pays for entering it.
    System::new().block_on(async {
        answers().await;
        divan::main();
    });
}
