//! `trueip::actix` driven through actix-web itself: its test service for one behaviour per
//! test, and a real `HttpServer` on loopback for what only a socket shows (the peer actix
//! reports is the one the policy judges).
#![cfg(feature = "actix-web")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{TestRequest, call_service, init_service, read_body};
use actix_web::{App, HttpMessage, HttpResponse, HttpServer, web};
use trueip::actix::{
    ClientIp, ClientIpMiddleware, ClientResolution, MISSING_MIDDLEWARE, MISSING_PEER,
    MissingMiddleware,
};
use trueip::{Policy, Resolution, Source};

/// nginx on loopback writes `X-Real-IP: $remote_addr`.
fn behind_local_nginx() -> Policy {
    Policy::builder()
        .trust_str("127.0.0.1")
        .and_then(|b| b.strategy_str("header:X-Real-IP"))
        .and_then(|b| b.build())
        .expect("a valid policy")
}

async fn ip(ClientIp(ip): ClientIp) -> String {
    ip.to_string()
}

async fn resolution(ClientResolution(r): ClientResolution) -> String {
    format!("{} {} hops={}", r.client, r.peer, r.trusted_hops)
}

fn run<F: Future>(f: F) -> F::Output {
    actix_web::rt::System::new().block_on(f)
}

/// Status and body of `req` sent to an app with the middleware and the two extractors.
fn through_app(policy: Policy, req: TestRequest) -> (StatusCode, String) {
    run(async {
        let app = init_service(
            App::new()
                .wrap(ClientIpMiddleware::new(policy))
                .route("/ip", web::get().to(ip))
                .route("/resolution", web::get().to(resolution)),
        )
        .await;
        body_of(call_service(&app, req.to_request()).await).await
    })
}

async fn body_of<B: actix_web::body::MessageBody>(res: ServiceResponse<B>) -> (StatusCode, String) {
    let status = res.status();
    let body = read_body(res).await;
    (status, String::from_utf8(body.to_vec()).expect("a text body"))
}

fn peer(addr: &str) -> SocketAddr {
    addr.parse().expect("a socket address")
}

#[test]
fn a_trusted_proxy_names_the_client() {
    let req = TestRequest::get()
        .uri("/ip")
        .peer_addr(peer("127.0.0.1:50000"))
        .insert_header(("X-Real-IP", "203.0.113.9"))
        // Distractor: not what this policy reads.
        .insert_header(("X-Forwarded-For", "6.6.6.6"));
    assert_eq!(through_app(behind_local_nginx(), req), (StatusCode::OK, "203.0.113.9".to_owned()));
}

#[test]
fn a_trusted_chain_is_walked_from_the_right() {
    let policy = Policy::builder()
        .trust_str("10.0.0.0/8")
        .and_then(|b| b.strategy_str("rightmost-untrusted"))
        .and_then(|b| b.build())
        .unwrap();
    let req = TestRequest::get()
        .uri("/resolution")
        .peer_addr(peer("10.0.0.5:41000"))
        // The client forged 1.2.3.4; the proxies appended the client and then 10.0.0.7, on
        // a line of its own: actix's map must hand both lines over, in order, as one list.
        .append_header(("X-Forwarded-For", "1.2.3.4, 203.0.113.9"))
        .append_header(("X-Forwarded-For", "10.0.0.7"))
        .insert_header(("X-Real-IP", "6.6.6.6"));
    assert_eq!(
        through_app(policy, req),
        (StatusCode::OK, "203.0.113.9 10.0.0.5:41000 hops=2".to_owned())
    );
}

#[test]
fn headers_from_an_untrusted_peer_are_ignored() {
    let req = TestRequest::get()
        .uri("/ip")
        .peer_addr(peer("198.51.100.7:40000"))
        .insert_header(("X-Real-IP", "203.0.113.9"))
        .insert_header(("X-Forwarded-For", "203.0.113.9"))
        .insert_header(("Forwarded", "for=203.0.113.9"));
    assert_eq!(through_app(behind_local_nginx(), req), (StatusCode::OK, "198.51.100.7".to_owned()));
}

#[test]
fn without_the_middleware_the_extractors_answer_500_naming_the_fix() {
    run(async {
        let app = init_service(
            App::new()
                .route("/ip", web::get().to(ip))
                .route("/resolution", web::get().to(resolution)),
        )
        .await;
        for uri in ["/ip", "/resolution"] {
            let req = TestRequest::get()
                .uri(uri)
                .peer_addr(peer("127.0.0.1:50000"))
                .insert_header(("X-Real-IP", "203.0.113.9"));
            let res = call_service(&app, req.to_request()).await;
            assert_eq!(res.headers().get("content-type").unwrap(), "text/plain; charset=utf-8");
            assert_eq!(
                body_of(res).await,
                (StatusCode::INTERNAL_SERVER_ERROR, MISSING_MIDDLEWARE.to_owned()),
                "{uri}"
            );
        }
    });
    assert!(MISSING_MIDDLEWARE.contains(".wrap(trueip::actix::ClientIpMiddleware::new(policy))"));
    assert_eq!(MissingMiddleware.to_string(), MISSING_MIDDLEWARE.trim_end());
}

#[test]
fn without_a_peer_address_the_middleware_answers_500_naming_the_fix() {
    run(async {
        let handler_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran = handler_ran.clone();
        let app = init_service(
            App::new()
                .wrap(ClientIpMiddleware::new(behind_local_nginx()))
                // A route that never asks for the client is refused too: past the
                // middleware every request carries a resolution, or none gets past.
                .route(
                    "/",
                    web::get().to(move || {
                        ran.store(true, std::sync::atomic::Ordering::SeqCst);
                        async { "reached" }
                    }),
                ),
        )
        .await;
        // A TestRequest has no peer unless given one, as a Unix socket listener has none.
        let req = TestRequest::get().insert_header(("X-Real-IP", "203.0.113.9"));
        let res = app.call(req.to_request()).await;
        let res = match res {
            Ok(res) => res,
            // The middleware refuses with an error; actix-web's server answers it with the
            // error's response, as here.
            Err(e) => {
                ServiceResponse::new(TestRequest::default().to_http_request(), e.error_response())
            }
        };
        assert_eq!(
            body_of(res).await,
            (StatusCode::INTERNAL_SERVER_ERROR, MISSING_PEER.to_owned())
        );
        assert!(!handler_ran.load(std::sync::atomic::Ordering::SeqCst));
    });
    assert!(MISSING_PEER.contains("HttpServer::bind"));
}

#[test]
fn a_middleware_registered_before_it_runs_inside_it_and_sees_the_resolution() {
    run(async {
        let app = init_service(
            App::new()
                // Registered first, so it runs second: after ClientIpMiddleware.
                .wrap_fn(|req, srv| {
                    let seen = req.extensions().get::<Resolution>().map(Resolution::ip);
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        let seen = seen.flatten().map_or("none".to_owned(), |ip| ip.to_string());
                        res.headers_mut()
                            .insert("x-seen-by-inner".parse().unwrap(), seen.parse().unwrap());
                        Ok(res)
                    }
                })
                .wrap(ClientIpMiddleware::new(behind_local_nginx()))
                .route("/ip", web::get().to(ip)),
        )
        .await;
        let req = TestRequest::get()
            .uri("/ip")
            .peer_addr(peer("127.0.0.1:50000"))
            .insert_header(("X-Real-IP", "203.0.113.9"));
        let res = call_service(&app, req.to_request()).await;
        assert_eq!(res.headers().get("x-seen-by-inner").unwrap(), "203.0.113.9");
    });
}

#[test]
fn the_stored_resolution_keeps_the_evidence() {
    run(async {
        let app =
            init_service(App::new().wrap(ClientIpMiddleware::new(behind_local_nginx())).route(
                "/",
                web::get().to(|ClientResolution(r): ClientResolution| async move {
                    assert_eq!(r.source, Source::Header);
                    assert_eq!(r.peer.ip().unwrap().to_string(), "127.0.0.1");
                    assert_eq!(r.trusted_hops, 1);
                    HttpResponse::NoContent().finish()
                }),
            ))
            .await;
        let req = TestRequest::get()
            .peer_addr(peer("127.0.0.1:50000"))
            .insert_header(("X-Real-IP", "203.0.113.9"));
        let res = call_service(&app, req.to_request()).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    });
}

/// Every record logged under a `trueip` target, for the test that checks the 500 is logged.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target().starts_with("trueip")
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().expect("no test panicked holding it").push(format!(
                "{} {}",
                record.level(),
                record.args()
            ));
        }
    }
    fn flush(&self) {}
}

#[test]
fn each_500_is_logged_with_the_same_message() {
    // The only test here that installs a logger; the others' lines land in it too, so this
    // one looks for its own paths.
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Error);
    run(async {
        let bare = init_service(App::new().route("/logged", web::get().to(ip))).await;
        let req = TestRequest::get().uri("/logged").peer_addr(peer("127.0.0.1:50000"));
        call_service(&bare, req.to_request()).await;

        let wrapped = init_service(
            App::new()
                .wrap(ClientIpMiddleware::new(Policy::default()))
                .route("/logged-peer", web::get().to(ip)),
        )
        .await;
        let req = TestRequest::get().uri("/logged-peer");
        let _ = wrapped.call(req.to_request()).await;
    });
    let logged = LOGGED.lock().unwrap();
    let line =
        |path: &str| logged.iter().find(|l| l.starts_with(&format!("ERROR GET {path}:"))).cloned();
    assert_eq!(
        line("/logged"),
        Some(format!("ERROR GET /logged: 500, {}", MISSING_MIDDLEWARE.trim_end()))
    );
    assert_eq!(
        line("/logged-peer"),
        Some(format!("ERROR GET /logged-peer: 500, {}", MISSING_PEER.trim_end()))
    );
}

/// A real server on 127.0.0.1, an ephemeral port, one worker: `/ip` and `/ip/headers`
/// behind the middleware with `policy`, `/bare` on the same server without it. Stopped
/// when dropped.
struct Server {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(policy: Policy) -> Server {
        Server::wrapped(ClientIpMiddleware::new(policy))
    }

    fn wrapped(middleware: ClientIpMiddleware) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            run(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .service(
                            web::scope("/ip")
                                .wrap(middleware.clone())
                                .route("", web::get().to(ip))
                                .route("/headers", web::get().to(echo)),
                        )
                        .route("/bare", web::get().to(ip))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind an ephemeral loopback port");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("the test waits");
                server.await.expect("the server runs until stopped");
            });
        });
        let (addr, handle) = rx.recv_timeout(Duration::from_secs(30)).expect("the server starts");
        Server { addr, handle, thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        run(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The request's header lines as the handler sees them, `name=value`, sorted, without
/// `host` and `connection`: what an app (or a middleware inside this one, or actix-web's
/// `ConnectionInfo`) reading the headers itself would find.
async fn echo(req: actix_web::HttpRequest) -> String {
    let mut lines: Vec<String> = req
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "host" | "connection"))
        .map(|(name, value)| format!("{name}={}", value.to_str().expect("ASCII")))
        .collect();
    lines.sort();
    lines.join("\n")
}

/// A stranger's forwarding headers, in three spellings, beside a header no rule touches.
const FORGED: [&str; 4] = [
    "X-Forwarded-For: 6.6.6.6",
    "X_Forwarded_For: 6.6.6.7",
    "True-Client-IP: 6.6.6.8",
    "X-Request-Id: abc",
];

/// Only 127.0.0.2 is trusted: a client on 127.0.0.1 is a stranger.
fn behind_another_host() -> Policy {
    Policy::builder().trust_str("127.0.0.2").and_then(|b| b.build()).expect("a valid policy")
}

/// What a stranger writes in a client-IP header, in any spelling, never reaches the
/// handler, as `trueip serve` and the Python middlewares never let an app see it. Before
/// the middleware withheld them, all three reached it.
#[test]
fn over_a_real_socket_a_strangers_client_ip_headers_never_reach_the_handler() {
    for policy in [behind_another_host(), Policy::default()] {
        let server = Server::start(policy);
        assert_eq!(get(server.addr, "/ip/headers", &FORGED), (200, "x-request-id=abc".to_owned()));
    }
}

/// Through a trusted hop, what the policy reads reaches the handler (nginx's `X-Real-IP`,
/// and the list header every strategy has), and so does a claim about the request; a
/// client address it does not read and an underscore spelling do not. Before, all of
/// them reached it.
#[test]
fn over_a_real_socket_a_trusted_hops_headers_reach_the_handler_as_the_decision_read_them() {
    let server = Server::start(behind_local_nginx());
    let mut sent = FORGED.to_vec();
    sent.extend(["X-Real-IP: 203.0.113.9", "X-Forwarded-Proto: https"]);
    assert_eq!(
        get(server.addr, "/ip/headers", &sent),
        (
            200,
            "x-forwarded-for=6.6.6.6\nx-forwarded-proto=https\nx-real-ip=203.0.113.9\nx-request-id=abc"
                .to_owned()
        )
    );
    assert_eq!(get(server.addr, "/ip", &sent), (200, "203.0.113.9".to_owned()));
}

/// `keep_client_ip_headers`: the opt-out hands every line over as it came, and the
/// decision is the same.
#[test]
fn over_a_real_socket_keep_client_ip_headers_hands_every_line_over() {
    let server =
        Server::wrapped(ClientIpMiddleware::new(behind_another_host()).keep_client_ip_headers());
    assert_eq!(
        get(server.addr, "/ip/headers", &FORGED),
        (
            200,
            "true-client-ip=6.6.6.8\nx-forwarded-for=6.6.6.6\nx-request-id=abc\nx_forwarded_for=6.6.6.7"
                .to_owned()
        )
    );
    assert_eq!(get(server.addr, "/ip", &FORGED), (200, "127.0.0.1".to_owned()));
}

/// One HTTP/1.1 request over a plain socket, as an untrusted client would send it.
fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set a timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a whole response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

#[test]
fn over_a_real_socket_the_peer_actix_reports_is_the_one_judged() {
    let forged = ["X-Real-IP: 203.0.113.9", "X-Forwarded-For: 203.0.113.9"];

    // The connection comes from 127.0.0.1, which this policy trusts: the header decides.
    let trusted = Server::start(behind_local_nginx());
    assert_eq!(get(trusted.addr, "/ip", &forged), (200, "203.0.113.9".to_owned()));
    // Same server, a route outside the wrapped scope: the clear 500, not the peer.
    assert_eq!(get(trusted.addr, "/bare", &forged), (500, MISSING_MIDDLEWARE.to_owned()));
    drop(trusted);

    // Only 127.0.0.2 is trusted; this client connects from 127.0.0.1 and is the answer.
    let policy = Policy::builder()
        .trust_str("127.0.0.2")
        .and_then(|b| b.strategy_str("header:X-Real-IP"))
        .and_then(|b| b.build())
        .unwrap();
    let untrusted = Server::start(policy);
    assert_eq!(get(untrusted.addr, "/ip", &forged), (200, "127.0.0.1".to_owned()));
}

/// Over a socket, actix's own parser builds the header map: lines of one header sent apart,
/// with other headers and other spellings of the name between them, still reach the walk
/// as one list in the order sent, so the line the trusted proxy appended last is read
/// first and the client's lines stay on the left.
#[test]
fn over_a_real_socket_split_lines_are_one_list_in_order() {
    let policy = Policy::builder()
        .trust_str("127.0.0.1")
        .and_then(|b| b.strategy_str("rightmost-untrusted"))
        .and_then(|b| b.build())
        .unwrap();
    let server = Server::start(policy);
    let lines = [
        "X-Forwarded-For: 6.6.6.6",
        "Accept: */*",
        "x-forwarded-for: 7.7.7.7, 203.0.113.9",
        "X-Real-IP: 8.8.8.8",
        "X-FORWARDED-FOR: 127.0.0.1",
    ];
    assert_eq!(get(server.addr, "/ip", &lines), (200, "203.0.113.9".to_owned()));
    // Two lines, the second sent last: its element is the nearest, whichever is forged.
    assert_eq!(
        get(
            server.addr,
            "/ip",
            &["X-Forwarded-For: 203.0.113.9", "Accept: */*", "x-forwarded-for: 198.51.100.4"]
        ),
        (200, "198.51.100.4".to_owned())
    );
}

/// A policy per route: each `scope` wraps its own middleware, and each scope's handler
/// sees its own middleware's decision.
#[test]
fn each_scope_decides_with_its_own_middleware() {
    let trust_ten = Policy::builder().trust_str("127.0.0.0/8").and_then(|b| b.build()).unwrap();
    let got = |path: &str| {
        let req = TestRequest::get()
            .uri(path)
            .peer_addr(peer("127.0.0.1:41000"))
            .insert_header(("X-Forwarded-For", "203.0.113.9"))
            .insert_header(("X-Real-IP", "198.51.100.7"));
        let (trust_ten, nginx) = (trust_ten.clone(), behind_local_nginx());
        run(async move {
            let app = init_service(
                App::new()
                    .service(
                        web::scope("/public")
                            .wrap(ClientIpMiddleware::new(Policy::default()))
                            .route("/ip", web::get().to(ip)),
                    )
                    .service(
                        web::scope("/internal")
                            .wrap(ClientIpMiddleware::new(trust_ten))
                            .route("/ip", web::get().to(ip)),
                    )
                    .service(
                        web::scope("/nginx")
                            .wrap(ClientIpMiddleware::new(nginx))
                            .route("/ip", web::get().to(ip)),
                    ),
            )
            .await;
            body_of(call_service(&app, req.to_request()).await).await
        })
    };
    assert_eq!(got("/public/ip"), (StatusCode::OK, "127.0.0.1".to_owned()));
    assert_eq!(got("/internal/ip"), (StatusCode::OK, "203.0.113.9".to_owned()));
    assert_eq!(got("/nginx/ip"), (StatusCode::OK, "198.51.100.7".to_owned()));
}

/// `ClientIpMiddleware::signed`: the client from the signed header `trueip serve` writes.
#[cfg(feature = "provenance")]
mod signed {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};
    use trueip::provenance::{
        Claim, DEFAULT_WINDOW, Key, Outcome, RequestLine, Signed, Verifier, sign,
    };
    use trueip::{Node, Warnings};

    fn key(fill: u8) -> Key {
        Key::new(&[fill; 40]).expect("a key")
    }

    fn header(key: &Key, target: &str, time: u64) -> String {
        let claim = Claim {
            client: Node { ip: "203.0.113.7".parse().expect("an address"), port: Some(443) },
            source: Source::Peer,
            hops: 0,
            time,
        };
        let request = RequestLine { method: "GET", host: "app.example", target };
        let mut out = String::new();
        sign(key, &claim, &request, &mut out);
        out
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
    }

    async fn outcome(req: actix_web::HttpRequest) -> String {
        let r = *req.extensions().get::<Resolution>().expect("resolved");
        let o = match req.extensions().get::<Outcome>().expect("an outcome") {
            Outcome::Verified(_) => "verified",
            Outcome::FellBack(why) => why.name(),
        };
        format!(
            "{} {} {o}",
            r.ip().map_or("none".to_owned(), |ip| ip.to_string()),
            r.warnings.contains(Warnings::SIGNATURE_REJECTED)
        )
    }

    fn through(signed: Signed, req: TestRequest) -> (StatusCode, String) {
        run(async {
            let app = init_service(
                App::new()
                    .wrap(ClientIpMiddleware::new(Policy::default()).signed(signed))
                    .route("/{tail:.*}", web::get().to(outcome)),
            )
            .await;
            // A refusal is an error, which actix-web's server answers with its response.
            let res = match app.call(req.to_request()).await {
                Ok(res) => res.map_into_left_body(),
                Err(e) => ServiceResponse::new(
                    TestRequest::default().to_http_request(),
                    e.error_response(),
                )
                .map_into_right_body(),
            };
            body_of(res).await
        })
    }

    fn get(target: &str, signature: Option<&str>) -> TestRequest {
        let mut req = TestRequest::get()
            .uri(target)
            .peer_addr(peer("127.0.0.1:50000"))
            .insert_header(("Host", "app.example"))
            .insert_header(("X-Real-IP", "6.6.6.6"));
        if let Some(s) = signature {
            req = req.insert_header(("Trueip-Signature", s));
        }
        req
    }

    fn verifier(keys: impl IntoIterator<Item = Key>) -> Verifier {
        Verifier::new(keys, DEFAULT_WINDOW).expect("a verifier")
    }

    #[test]
    fn a_verified_header_names_the_client() {
        let value = header(&key(1), "/a?b=c", now());
        let (status, body) =
            through(Signed::required(verifier([key(1)])), get("/a?b=c", Some(&value)));
        assert_eq!((status, body.as_str()), (StatusCode::OK, "203.0.113.7 false verified"));
    }

    #[test]
    fn required_refuses_a_direct_client_and_a_replay() {
        let signed = Signed::required(verifier([key(1)]));
        let (status, body) = through(signed.clone(), get("/a", None));
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let replayed = header(&key(1), "/a", now());
        let (status, _) = through(signed.clone(), get("/b", Some(&replayed)));
        assert_eq!(status, StatusCode::FORBIDDEN);
        let stale = header(&key(1), "/a", now() - 40);
        let (status, _) = through(signed.clone(), get("/a", Some(&stale)));
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = through(signed.clone(), get("/a", Some("v1;garbage")));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!((signed.verified_count(), signed.rejected_count()), (0, 4));
    }

    #[test]
    fn or_peer_serves_the_peer_flagged() {
        let (status, body) = through(Signed::or_peer(verifier([key(1)])), get("/a", None));
        assert_eq!((status, body.as_str()), (StatusCode::OK, "127.0.0.1 true missing"));
    }

    #[test]
    fn rotation_accepts_both_keys() {
        let both = Signed::required(verifier([key(1), key(2)]));
        for k in [key(1), key(2)] {
            let value = header(&k, "/a", now());
            let (status, body) = through(both.clone(), get("/a", Some(&value)));
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
}

/// actix-web keeps a request's `ConnectionInfo` in its extensions the first time anything
/// asks for it, and `Logger::default()` (its `%a`) asks as the request comes in: wrapped
/// outside the middleware, as actix's examples wrap it, it made the `ConnectionInfo` of
/// the headers as the stranger sent them, and the handler read the forged
/// `X-Forwarded-For` and `X-Forwarded-Host` from it after they were withheld.
#[test]
fn connection_info_made_before_the_middleware_ran_is_made_again() {
    run(async {
        let app = init_service(
            App::new()
                .wrap(ClientIpMiddleware::new(behind_local_nginx()))
                .wrap(actix_web::middleware::Logger::default())
                .route(
                    "/info",
                    web::get().to(|req: actix_web::HttpRequest| async move {
                        let info = req.connection_info();
                        format!("{} {}", info.realip_remote_addr().unwrap_or("-"), info.host())
                    }),
                ),
        )
        .await;
        let req = TestRequest::get()
            .uri("/info")
            .peer_addr(peer("198.51.100.7:50000"))
            .insert_header(("Host", "app.example"))
            .insert_header(("X-Forwarded-For", "6.6.6.6"))
            .insert_header(("X-Forwarded-Host", "evil.example"));
        let (status, body) = body_of(call_service(&app, req.to_request()).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "198.51.100.7 app.example"));
    });
}

/// A `query:NAME` strategy reads the request's query string under the middleware, as
/// `resolve_request` and `trueip explain --query` do; before, the middleware handed the
/// policy the headers alone and such a policy always answered the peer.
#[test]
fn a_query_strategy_reads_the_query_string() {
    let policy = || {
        Policy::builder()
            .trust_str("127.0.0.1")
            .and_then(|b| b.strategy_str("query:client"))
            .and_then(|b| b.build())
            .expect("a policy")
    };
    let from =
        |addr: &str| TestRequest::get().uri("/ip?page=2&client=198.51.100.4").peer_addr(peer(addr));
    assert_eq!(
        through_app(policy(), from("127.0.0.1:50000")),
        (StatusCode::OK, "198.51.100.4".to_owned())
    );
    assert_eq!(
        through_app(policy(), from("192.0.2.7:50000")),
        (StatusCode::OK, "192.0.2.7".to_owned())
    );
}

static NGINX: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(behind_local_nginx);

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The middleware removes exactly the lines `ForwardingSet::withheld` withholds, asked
    /// of each line as `trueip serve` and the Python middlewares ask it, whatever the names'
    /// order, spelling and repetition, from a trusted hop and a stranger: the pass that asks
    /// `fate` up to the first withheld name and removes from there (as the tower layer's)
    /// left no line the rule withholds and took none it keeps.
    #[test]
    fn the_middleware_withholds_each_line_the_rule_withholds(
        lines in proptest::collection::vec((support::names::header_name(NGINX.withheld_set().names()), 0u8..3), 0..24),
        from_proxy in proptest::bool::ANY,
    ) {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        let peer = peer(if from_proxy { "127.0.0.1:5000" } else { "127.0.0.2:5000" });
        let mut sent = Vec::new();
        for (i, (name, copies)) in lines.iter().enumerate() {
            for copy in 0..=*copies {
                sent.push((name.clone(), format!("198.51.100.{i}, 10.0.0.{copy}")));
            }
        }
        let mut req = TestRequest::get().uri("/headers").peer_addr(peer);
        let mut map = HeaderMap::new();
        for (name, value) in &sent {
            req = req.append_header((name.as_str(), value.as_str()));
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let seen = run(async {
            let app = init_service(
                App::new()
                    .wrap(ClientIpMiddleware::new(NGINX.clone()))
                    .route("/headers", web::get().to(|req: actix_web::HttpRequest| async move {
                        let mut lines: Vec<(String, String)> = req
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                            .collect();
                        // By name (the map's order is its hash's), each name's lines in order.
                        lines.sort_by(|a, b| a.0.cmp(&b.0));
                        lines.iter().map(|(n, v)| format!("{n}={v}\n")).collect::<String>()
                    })),
            )
            .await;
            body_of(call_service(&app, req.to_request()).await).await
        });
        let hop = NGINX.hop(&NGINX.resolve(&trueip::Connection::from_peer(peer), &map));
        let set = NGINX.withheld_set();
        let mut kept: Vec<(String, String)> = sent
            .into_iter()
            .filter(|(name, _)| !set.withheld(name.as_bytes(), hop))
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        let kept: String = kept.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
        proptest::prop_assert_eq!(seen, (StatusCode::OK, kept));
    }
}
