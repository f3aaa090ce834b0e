//! actix-web: a middleware that resolves the client once per request, and extractors that
//! hand the answer to handlers (feature `actix-web`).
//!
//! [`ClientIpMiddleware`] runs [`Policy::resolve`] on the TCP peer and the request's headers
//! and stores the [`Resolution`] in the request's extensions. [`ClientIp`] extracts the
//! client's address, [`ClientResolution`] the whole resolution (source, peer, hops,
//! warnings, rate-limit key).
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
//! # The peer
//!
//! The peer is [`HttpRequest::peer_addr`]: the TCP peer actix-web accepted the connection
//! from. actix-web has no PROXY protocol listener, so behind an L4 balancer that speaks
//! PROXY (an AWS NLB with proxy protocol on, HAProxy `send-proxy`) the peer is the balancer
//! and the address it carries is never read: turn PROXY off on that balancer and have an
//! L7 proxy write a header, or put `trueip serve` (which reads PROXY) in front.
//!
//! Do not use actix-web's own `ConnectionInfo::realip_remote_addr` for anything that
//! matters: it believes `Forwarded` and `X-Forwarded-For` from whoever sends them.
//!
//! # Failures
//!
//! There is no silent fallback to the peer. An extractor on a request that the middleware
//! did not see (a route outside the wrapped scope, a forgotten `.wrap`), or on a connection
//! without a peer address (a Unix socket listener, a `TestRequest` without `peer_addr`),
//! answers 500 with a body that names the fix, and logs the same line at `error` level
//! through the `log` crate (target `trueip`), where actix-web logs too.

use std::fmt;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::{Payload, Service, ServiceRequest, Transform, forward_ready};
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError};

use crate::headers::{FieldName, Headers};
use crate::policy::{Connection, Policy};
use crate::resolution::Resolution;

/// Resolves the client of every request with one [`Policy`] and stores the [`Resolution`]
/// in the request's extensions. Cheap to clone: the policy is shared.
///
/// See the [module docs](self) for an example and the ordering rule.
#[derive(Clone, Debug)]
pub struct ClientIpMiddleware {
    policy: Arc<Policy>,
}

impl ClientIpMiddleware {
    /// The middleware for `policy` (a `Policy`, or an `Arc<Policy>` shared with other code).
    pub fn new(policy: impl Into<Arc<Policy>>) -> Self {
        ClientIpMiddleware {
            policy: policy.into(),
        }
    }

    /// The policy it resolves with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl<S> Transform<S, ServiceRequest> for ClientIpMiddleware
where
    S: Service<ServiceRequest>,
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
        }))
    }
}

/// The service [`ClientIpMiddleware`] wraps around the app's; not used directly.
#[derive(Debug)]
pub struct ClientIpService<S> {
    service: S,
    policy: Arc<Policy>,
}

impl<S> Service<ServiceRequest> for ClientIpService<S>
where
    S: Service<ServiceRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    // The inner service's own future: the resolution is done before it is called, so the
    // middleware adds no boxing and no state to the response path.
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match req.peer_addr() {
            Some(peer) => {
                let resolution = self
                    .policy
                    .resolve(&Connection::from_peer(peer), req.headers());
                req.extensions_mut().insert(resolution);
            }
            // Recorded rather than answered here: routes that never ask for the client
            // keep working, and the extractors that do ask can say why there is no answer.
            None => {
                req.extensions_mut().insert(NoPeer);
            }
        }
        self.service.call(req)
    }
}

/// The middleware saw the request, but actix-web gave it no peer address.
#[derive(Clone, Copy, Debug)]
struct NoPeer;

/// The client's address, as [`ClientIpMiddleware`] resolved it.
///
/// Without the middleware, or without a peer address, extraction fails with
/// [`ClientIpError`] (a 500 naming the fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The whole [`Resolution`] [`ClientIpMiddleware`] made for this request: the client, where
/// the answer came from, the peer, the trusted hops, the warnings and the rate-limit key.
///
/// Fails like [`ClientIp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientResolution(pub Resolution);

impl FromRequest for ClientIp {
    type Error = ClientIpError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(stored(req).map(|resolution| ClientIp(resolution.ip())))
    }
}

impl FromRequest for ClientResolution {
    type Error = ClientIpError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(stored(req).map(ClientResolution))
    }
}

/// The resolution the middleware stored, or why there is none (logged: the 500 this becomes
/// tells the client, the log tells the operator).
fn stored(req: &HttpRequest) -> Result<Resolution, ClientIpError> {
    let extensions = req.extensions();
    let error = match extensions.get::<Resolution>() {
        Some(resolution) => return Ok(*resolution),
        None if extensions.contains::<NoPeer>() => ClientIpError::MissingPeer,
        None => ClientIpError::MissingMiddleware,
    };
    log::error!(target: "trueip", "{error} ({} {})", req.method(), req.path());
    Err(error)
}

/// Why [`ClientIp`] or [`ClientResolution`] has no answer: a mistake in how the app is put
/// together, never in the request. Answered as 500, with the message (which names the fix)
/// as a `text/plain` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIpError {
    /// [`ClientIpMiddleware`] did not see the request.
    MissingMiddleware,
    /// The middleware saw the request, but actix-web had no peer address for it.
    MissingPeer,
}

impl fmt::Display for ClientIpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientIpError::MissingMiddleware => {
                "trueip: no client resolution on this request: wrap the app in \
                 trueip::actix::ClientIpMiddleware::new(policy)"
            }
            ClientIpError::MissingPeer => {
                "trueip: no peer address on this request: actix-web has none for a Unix \
                 socket listener or a TestRequest without .peer_addr(..); serve over TCP \
                 (HttpServer::bind) or set the test request's peer_addr"
            }
        })
    }
}

impl std::error::Error for ClientIpError {}

// The default `error_response`: status 500, `text/plain`, the `Display` text as the body.
impl ResponseError for ClientIpError {}

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
