//! actix-web: a middleware that resolves the client once per request, and extractors that
//! hand the answer to handlers (feature `actix-web`).
//!
//! [`ClientIpMiddleware`] runs [`Policy::resolve`] on the TCP peer and the request's headers
//! and stores the [`Resolution`] in the request's extensions. [`ClientIp`] extracts the
//! client's address, [`ClientResolution`] the whole resolution (source, peer, hops,
//! warnings, rate-limit key).
//!
//! It also removes the client-IP headers an app must not see, as `trueip serve`, the tower
//! layer and the Python middlewares do, with the same rule
//! ([`ForwardingSet::withheld`](crate::headers::ForwardingSet::withheld) over
//! [`Policy::withheld_set`]): from a peer the policy does not trust, every forwarding
//! header (`X-Forwarded-For`, `X-Real-IP`, `True-Client-IP`, `Forwarded`,
//! `X-Forwarded-Proto`, ...); from a trusted hop, the client addresses the decision did not
//! read; and one spelled with underscores, dots or other punctuation for dashes
//! (`X_Forwarded_For`), always. So a middleware or handler that reads `X-Forwarded-For`
//! itself, or actix-web's own `ConnectionInfo`, sees no forgery.
//! [`ClientIpMiddleware::keep_client_ip_headers`] turns this off.
//!
//! ```
//! use actix_web::{App, HttpResponse, web};
//! use trueip::Policy;
//! use trueip::actix::{ClientIp, ClientIpMiddleware};
//!
//! async fn hello(ClientIp(ip): ClientIp) -> HttpResponse {
//!     HttpResponse::Ok().body(format!("hello, {ip}\n"))
//! }
//!
//! # fn main() -> Result<(), trueip::ConfigError> {
//! // nginx on this host sets `proxy_set_header X-Real-IP $remote_addr;`.
//! let policy = Policy::builder()
//!     .trust_str("127.0.0.1")?
//!     .strategy_str("header:X-Real-IP")?
//!     .build()?;
//! let trueip = ClientIpMiddleware::new(policy);
//! // `HttpServer::new` calls this once per worker: the clone shares one policy.
//! let app = move || App::new().wrap(trueip.clone()).route("/", web::get().to(hello));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! In actix-web the middleware registered *last* with `.wrap` sees the request *first*. A
//! middleware that reads the resolution (a rate limiter, an access log) must therefore be
//! registered *before* `ClientIpMiddleware`, so that it runs inside it:
//! `App::new().wrap(rate_limiter).wrap(ClientIpMiddleware::new(policy))`. It finds the
//! answer with `req.extensions().get::<trueip::Resolution>()`.
//!
//! A middleware registered after it (outside it) must not keep a clone of the request
//! (`req.request().clone()`) while the inner service runs: the middleware removes the
//! client-IP headers through `ServiceRequest::headers_mut`, which actix-web lets only the
//! request's one holder call (as for its own `NormalizePath`), and panics otherwise, which
//! drops the connection of every request that carries such a header.
//!
//! # The peer
//!
//! The peer is [`HttpRequest::peer_addr`]: the TCP peer actix-web accepted the connection
//! from. actix-web reads no PROXY protocol, so behind an L4 balancer the peer is the
//! balancer, and the client address a PROXY header would carry (an AWS NLB with proxy
//! protocol on, HAProxy `send-proxy`) never reaches the policy: actix-web takes the
//! preamble for a malformed request and answers 400. Turn PROXY off on that balancer and
//! have an L7 proxy write a header, or put `trueip serve` (which reads PROXY) in front.
//!
//! Do not use actix-web's own `ConnectionInfo::realip_remote_addr` for anything that
//! matters: it believes `Forwarded` and `X-Forwarded-For` from whoever sends them.
//!
//! # Failures
//!
//! There is no silent fallback to the peer, and each failure answers 500 (the app's bug, not
//! the client's) with a `text/plain` body that names the fix, and logs the same line through
//! the `log` crate, where actix-web logs too:
//!
//! - a request the middleware sees without a peer address (a Unix socket listener, a
//!   `TestRequest` without `peer_addr`) gets [`MISSING_PEER`] from the middleware itself, so
//!   every request that passes the middleware carries a `Resolution`;
//! - an extractor on a request the middleware did not see (a forgotten `.wrap`, a route
//!   outside the wrapped scope) gets [`MISSING_MIDDLEWARE`].

use std::fmt;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::{Payload, Service, ServiceRequest, Transform, forward_ready};
use actix_web::http::header::{ContentType, HeaderMap};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::Either;

use crate::headers::{FieldName, ForwardingSet, Headers, Hop, WithQuery};
use crate::policy::{Connection, Policy};
use crate::resolution::Resolution;

/// The body of the 500 a request gets when the middleware sees it without a peer address.
pub const MISSING_PEER: &str = "trueip: this request carries no peer address, so its client \
cannot be decided. actix-web gives none on a Unix socket listener (`HttpServer::bind_uds`) or \
to a `TestRequest` without `.peer_addr(..)`: serve over TCP with `HttpServer::bind`, or give \
the test request a peer address.\n";

/// The body of the 500 a handler gets when the middleware did not see its request.
pub const MISSING_MIDDLEWARE: &str = "trueip: this request was not resolved: the handler \
extracts `trueip::actix::ClientIp` or `ClientResolution`, but no \
`trueip::actix::ClientIpMiddleware` ran before it. Add \
`.wrap(trueip::actix::ClientIpMiddleware::new(policy))` to the `App`, or to the scope that \
holds the handler (`.wrap` on one scope does not reach the routes of another).\n";

/// Resolves the client of every request with one [`Policy`] and stores the [`Resolution`]
/// in the request's extensions. Cheap to clone: the policy is shared.
///
/// See the [module docs](self) for an example and the ordering rule.
#[derive(Clone, Debug)]
pub struct ClientIpMiddleware {
    policy: Arc<Policy>,
    /// Whether the client-IP headers the policy withholds are removed before the app sees
    /// the request ([`keep_client_ip_headers`](Self::keep_client_ip_headers)).
    withhold: bool,
    #[cfg(feature = "provenance")]
    signed: Option<crate::provenance::Signed>,
}

impl ClientIpMiddleware {
    /// The middleware for `policy` (a `Policy`, or an `Arc<Policy>` shared with other code).
    pub fn new(policy: impl Into<Arc<Policy>>) -> Self {
        let policy = policy.into();
        // Built now rather than on the first request.
        policy.withheld_set();
        ClientIpMiddleware {
            policy,
            withhold: true,
            #[cfg(feature = "provenance")]
            signed: None,
        }
    }

    /// Hands the app every client-IP header as the request carried it, a stranger's
    /// forged `X-Forwarded-For` included, instead of removing those the policy withholds
    /// (the default; see the [module docs](self)). For an app whose every reader of the
    /// client goes through the `Resolution`, or that must log the headers as they came.
    pub fn keep_client_ip_headers(mut self) -> Self {
        self.withhold = false;
        self
    }

    /// Takes the client from the signed header `trueip serve` writes (`[upstream] sign`)
    /// instead of the policy's walk (feature `provenance`). A request whose header does
    /// not verify is refused ([`Unsigned`]: 400 or 403) or served with the TCP peer, as
    /// `signed` says; the [`Outcome`](crate::provenance::Outcome) is in the request's
    /// extensions beside the `Resolution`.
    #[cfg(feature = "provenance")]
    pub fn signed(mut self, signed: crate::provenance::Signed) -> Self {
        self.signed = Some(signed);
        self
    }

    /// The policy it resolves with.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

impl<S> Transform<S, ServiceRequest> for ClientIpMiddleware
where
    S: Service<ServiceRequest>,
    S::Error: MiddlewareError,
{
    type Response = S::Response;
    type Error = S::Error;
    type Transform = ClientIpService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ClientIpService {
            service,
            policy: Arc::clone(&self.policy),
            withhold: self.withhold,
            #[cfg(feature = "provenance")]
            signed: self.signed.clone(),
        }))
    }
}

/// The service [`ClientIpMiddleware`] wraps around the app's; not used directly.
#[derive(Debug)]
pub struct ClientIpService<S> {
    service: S,
    policy: Arc<Policy>,
    withhold: bool,
    #[cfg(feature = "provenance")]
    signed: Option<crate::provenance::Signed>,
}

/// The errors the middleware answers with: [`MissingPeer`], and with feature
/// `provenance` [`Unsigned`]. `actix_web::Error` is both.
#[cfg(not(feature = "provenance"))]
pub trait MiddlewareError: From<MissingPeer> {}
#[cfg(not(feature = "provenance"))]
impl<E: From<MissingPeer>> MiddlewareError for E {}

/// The errors the middleware answers with: [`MissingPeer`], and with feature
/// `provenance` [`Unsigned`]. `actix_web::Error` is both.
#[cfg(feature = "provenance")]
pub trait MiddlewareError: From<MissingPeer> + From<Unsigned> {}
#[cfg(feature = "provenance")]
impl<E: From<MissingPeer> + From<Unsigned>> MiddlewareError for E {}

/// What [`ClientIpService`] answers a request whose signed client header does not verify,
/// under [`Signed::required`](crate::provenance::Signed::required): 400 for a malformed
/// or repeated header, 403 otherwise ([`provenance::refusal_body`](crate::provenance::refusal_body)).
#[cfg(feature = "provenance")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsigned(pub crate::provenance::Rejected);

#[cfg(feature = "provenance")]
impl fmt::Display for Unsigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(feature = "provenance")]
impl std::error::Error for Unsigned {}

#[cfg(feature = "provenance")]
impl ResponseError for Unsigned {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(crate::provenance::refusal_status(self.0))
            .unwrap_or(actix_web::http::StatusCode::FORBIDDEN)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(ContentType::plaintext())
            .body(crate::provenance::refusal_body(self.0))
    }
}

impl<S> Service<ServiceRequest> for ClientIpService<S>
where
    S: Service<ServiceRequest>,
    S::Error: MiddlewareError,
{
    type Response = S::Response;
    type Error = S::Error;
    // The inner service's own future, or the refusal: no boxing, and the response type of
    // the app is left as it was.
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let Some(peer) = req.peer_addr() else {
            // An error rather than a response: actix-web answers it with `error_response`
            // (the 500 below) and the app's body type stays untouched.
            return Either::Left(ready(Err(missing_peer(&req).into())));
        };
        let conn = Connection::from_peer(peer);
        #[cfg(feature = "provenance")]
        if let Some(signed) = &self.signed {
            use crate::provenance::{Decided, RequestLine};
            let host = match req.headers().get(actix_web::http::header::HOST) {
                Some(h) => h.to_str().unwrap_or_default(),
                None => req.uri().authority().map_or("", |a| a.as_str()),
            };
            let request = RequestLine {
                method: req.method().as_str(),
                host,
                target: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            };
            match signed.decide(&self.policy, &conn, req.headers(), &request) {
                Decided::Serve(resolution, outcome) => {
                    if let crate::provenance::Outcome::FellBack(why) = outcome {
                        log::debug!(
                            "{} {}: signed client header rejected ({why}); the peer is the client",
                            req.method(),
                            req.path()
                        );
                    }
                    if self.withhold {
                        withhold(&self.policy, outcome.hop(&self.policy, &resolution), &mut req);
                    }
                    req.extensions_mut().insert(outcome);
                    req.extensions_mut().insert(resolution);
                }
                Decided::Refuse(why) => {
                    log::info!("{} {}: refused, {why}", req.method(), req.path());
                    return Either::Left(ready(Err(Unsigned(why).into())));
                }
            }
            return Either::Right(self.service.call(req));
        }
        // With the query string, which a `query:NAME` strategy reads.
        let request = WithQuery::new(req.headers(), req.query_string().as_bytes());
        let resolution = self.policy.resolve(&conn, &request);
        if self.withhold {
            withhold(&self.policy, self.policy.hop(&resolution), &mut req);
        }
        req.extensions_mut().insert(resolution);
        Either::Right(self.service.call(req))
    }
}

/// Removes from `req` every line of the client-IP headers `policy` withholds from a
/// request that came through `hop`
/// ([`ForwardingSet::withheld_names`](crate::headers::ForwardingSet::withheld_names)).
///
/// And the `ConnectionInfo` actix-web keeps in the request's extensions once anything
/// asked for it: a middleware wrapped outside this one may have (`Logger::default()`'s
/// `%a` does, as the request comes in), and what it kept was read from the headers as the
/// client sent them, its forged `X-Forwarded-For` and `X-Forwarded-Host` with them. Made
/// again from the headers left when the app asks.
///
/// Most requests withhold nothing: the pass asks [`ForwardingSet::fate`] of each name
/// here, and only a request with a line to remove goes on to `withheld_names`, as in
/// the tower layer's `withhold` (whose comment has the figures).
#[inline]
fn withhold(policy: &Policy, hop: Hop<'_>, req: &mut ServiceRequest) {
    let set = policy.withheld_set();
    let first = req.headers().keys().position(|name| set.fate(name.as_str(), hop).withheld);
    if let Some(first) = first {
        remove_withheld(set, hop, req, first);
    }
}

/// [`withhold`]'s removal, out of the common path, from the `first` name withheld: those
/// before it were asked already (the map is not changed in between, so its keys come in
/// the same order).
#[cold]
#[inline(never)]
fn remove_withheld(set: &ForwardingSet, hop: Hop<'_>, req: &mut ServiceRequest, first: usize) {
    let headers = req.headers_mut();
    for name in set.withheld_names(headers.keys().skip(first), hop) {
        headers.remove(name);
    }
    req.extensions_mut().remove::<actix_web::dev::ConnectionInfo>();
}

/// The client's address, as [`ClientIpMiddleware`] resolved it.
///
/// Believe it for what the policy vouches for: with no trusted proxy it is the TCP peer.
/// For where it came from and what looked wrong, extract [`ClientResolution`]. Without the
/// middleware, extraction fails with [`MissingMiddleware`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// The whole decision: client, source, peer, trusted hops, warnings and the rate-limit key.
///
/// Fails like [`ClientIp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientResolution(pub Resolution);

impl FromRequest for ClientIp {
    type Error = MissingMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The middleware resolves only connections with a socket address (a Unix-socket
        // server has none, and gets `MissingPeer`): its resolutions always name an address.
        // One inserted by other code may not, and is refused like a missing middleware.
        // Read in place: copying the whole `Resolution` out to keep one address costs more
        // than the lookup.
        let found = match req.extensions().get::<Resolution>() {
            Some(resolution) => resolution.ip().map(ClientIp).ok_or(MissingMiddleware),
            None => Err(missing_middleware(req)),
        };
        ready(found)
    }
}

impl FromRequest for ClientResolution {
    type Error = MissingMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(resolution(req).map(ClientResolution))
    }
}

fn resolution(req: &HttpRequest) -> Result<Resolution, MissingMiddleware> {
    match req.extensions().get::<Resolution>() {
        Some(resolution) => Ok(*resolution),
        None => Err(missing_middleware(req)),
    }
}

// The two 500s and their log lines are out of line and cold, so that the per-request path
// does not carry their formatting code.

#[cold]
#[inline(never)]
fn missing_peer(req: &ServiceRequest) -> MissingPeer {
    log::error!("{} {}: 500, {}", req.method(), req.path(), MISSING_PEER.trim_end());
    MissingPeer
}

#[cold]
#[inline(never)]
fn missing_middleware(req: &HttpRequest) -> MissingMiddleware {
    log::error!("{} {}: 500, {}", req.method(), req.path(), MISSING_MIDDLEWARE.trim_end());
    MissingMiddleware
}

/// The error of [`ClientIp`] and [`ClientResolution`] when no [`ClientIpMiddleware`] saw
/// the request: a `500` whose body is [`MISSING_MIDDLEWARE`]. It is the server's bug, not
/// the client's, so not a 4xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingMiddleware;

/// What [`ClientIpService`] answers a request without a peer address: a `500` whose body is
/// [`MISSING_PEER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingPeer;

impl fmt::Display for MissingMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MISSING_MIDDLEWARE.trim_end())
    }
}

impl fmt::Display for MissingPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MISSING_PEER.trim_end())
    }
}

impl std::error::Error for MissingMiddleware {}

impl std::error::Error for MissingPeer {}

// Status 500 by default; the body is the constant as it is, with its final newline (what a
// `curl` in a terminal wants), where `Display` leaves the newline to the logger.
impl ResponseError for MissingMiddleware {
    fn error_response(&self) -> HttpResponse {
        server_error(MISSING_MIDDLEWARE)
    }
}

impl ResponseError for MissingPeer {
    fn error_response(&self) -> HttpResponse {
        server_error(MISSING_PEER)
    }
}

/// A `500` with a plain-text body naming the fix.
fn server_error(message: &'static str) -> HttpResponse {
    HttpResponse::InternalServerError().content_type(ContentType::plaintext()).body(message)
}

/// actix-web 4 keeps headers in its own map (over `http` 0.2), not `http::HeaderMap`.
///
/// Looked up by scanning rather than with `get_all`: `get_all` takes a `&str` only by
/// parsing it into a new `HeaderName`, which allocates for every name outside `http`'s
/// standard list (`x-forwarded-for`, `x-real-ip`), on every request. A scan compares
/// lengths first and keeps [`Policy::resolve`] free of allocation. Each name's values come
/// out together and in request order, which is all the walks need.
impl Headers for HeaderMap {
    fn for_each_value<'a>(&'a self, name: &FieldName, mut f: impl FnMut(&'a [u8])) {
        for (key, value) in self {
            if key.as_str() == name.as_str() {
                f(value.as_bytes());
            }
        }
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        mut f: impl FnMut(&'a [u8]),
    ) -> bool {
        let mut present = false;
        for (key, value) in self {
            if key.as_str() == name.as_str() {
                f(value.as_bytes());
            } else if key.as_str() == also.as_str() {
                present = true;
            }
        }
        present
    }
}
