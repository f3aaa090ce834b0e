//! A tower [`Layer`] that decides each request's client once and stores the
//! [`Resolution`](crate::Resolution) in the request's extensions (feature `tower`).
//!
//! It also removes the client-IP headers an app must not see, as `trueip serve` and the
//! Python middlewares do, with the same rule
//! ([`ForwardingSet::withheld`](crate::headers::ForwardingSet::withheld) over
//! [`Policy::withheld_set`]): from a peer the policy does not trust, every forwarding
//! header (`X-Forwarded-For`, `X-Real-IP`, `True-Client-IP`, `Forwarded`,
//! `X-Forwarded-Proto`, ...), since the client wrote it; from a trusted hop, the client
//! addresses the decision did not read (its claims about the request, such as
//! `X-Forwarded-Proto`, pass); and one spelled with underscores, dots or other punctuation
//! for dashes (`X_Forwarded_For`), always. So an inner layer or handler that reads
//! `X-Forwarded-For` itself (a rate limiter's key extractor, a logger) sees no forgery.
//! [`ClientIpLayer::keep_client_ip_headers`] turns this off.
//!
//! The layer needs the connection: the TCP peer, and the PROXY protocol source when the
//! connection began with one. It takes the first of these it finds in the request's
//! extensions:
//!
//! 1. a [`Connection`], inserted by whoever accepted the connection (a hyper server loop,
//!    a custom listener);
//! 2. with feature `axum`, `ConnectInfo<Connection>`: `axum::serve` with
//!    [`ProxyProtocolListener`](crate::axum::ProxyProtocolListener) and
//!    `into_make_service_with_connect_info::<trueip::Connection>()`;
//! 3. with feature `axum`, `ConnectInfo<SocketAddr>`: `axum::serve` with a plain
//!    `TcpListener` and `into_make_service_with_connect_info::<SocketAddr>()`.

//! 4. with feature `lambda-http`, the request context lambda_http stores in a request it
//!    made from a Lambda event (an axum app under `lambda_http::run`): the address AWS's
//!    front end saw stands in for the peer, as
//!    [`lambda::resolve_request`](crate::lambda::resolve_request) takes it. An event
//!    without the field its stand-in comes from gets a 500 and a log line naming the
//!    field. This is the one source a [`Preset`](crate::lambda::Preset) policy decides
//!    from as it reads: given a connection from 1 to 3 (the same app under `axum::serve`),
//!    it decides as if no proxy were trusted (see [`Policy::resolve`]), so `Preset::Alb`
//!    never believes the last `X-Forwarded-For` element a client sends over TCP.
//!
//! With none of them the layer answers `500 Internal Server Error`, with a body that
//! names the fix, and logs the same line (through `log`) — it never falls back to
//! something that merely looks like an address. Every request through the layer
//! carries a `Resolution` afterwards, so handlers may rely on it.
//!
//! # Ordering
//!
//! The layer must wrap every handler that reads the client. In axum, `Router::layer`
//! wraps only the routes added *before* it: add it last (or use it on the outermost
//! router). Middleware that rate-limits or logs by client must sit *inside* it (added
//! before it with `ServiceBuilder`, which runs layers top to bottom). Nothing outside it may
//! replace the connection it reads (a layer that inserts a `ConnectInfo` or a [`Connection`]
//! made from `X-Forwarded-For`): the peer would then be a header's word. What an outer layer
//! read from the headers before this one ran (a rate limiter's key, a span's fields) was read
//! from what the client sent.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use trueip::tower::ClientIpLayer;
//! use trueip::{Connection, Policy, Resolution};
//!
//! let policy = Policy::builder().trust_str("10.0.0.0/8")?.build()?;
//! let service = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new(policy))
//!     .service(service_fn(|req: Request<String>| async move {
//!         // The layer put it there; it is a bug in the stack if it is missing.
//!         let client = req.extensions().get::<Resolution>().and_then(|r| r.ip());
//!         Ok::<_, Infallible>(Response::new(format!("{client:?}")))
//!     }));
//!
//! let mut req = Request::new(String::new());
//! req.headers_mut().insert("x-forwarded-for", "203.0.113.9".parse()?);
//! // What the server loop knows about the connection (here: nginx on 10.0.0.5).
//! req.extensions_mut()
//!     .insert(Connection::from_peer("10.0.0.5:41000".parse::<std::net::SocketAddr>()?));
//! let response = service.oneshot(req).await?;
//! assert_eq!(response.body(), "Some(203.0.113.9)");
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::headers::{ForwardingSet, Hop};
use crate::policy::{Connection, Policy};

/// The body of the 500 a request without a known connection gets. It names both ways a
/// server hands the layer its connection, since the layer cannot tell which one is missing.
pub const MISSING_CONNECTION: &str = "trueip: this request carries no connection, so its client \
cannot be decided. With axum, serve the app with \
`app.into_make_service_with_connect_info::<std::net::SocketAddr>()`, or, behind a PROXY \
protocol sender, with `trueip::axum::ProxyProtocolListener` and \
`app.into_make_service_with_connect_info::<trueip::Connection>()`; with hyper or another \
server, insert a `trueip::Connection` into each request's extensions before \
`trueip::tower::ClientIpLayer`.\n";

/// The body of the 500 a request lambda_http made from an event gets when the event lacks
/// the field the address AWS's front end saw comes from (the log line names it).
#[cfg(feature = "lambda-http")]
pub const MISSING_STAND_IN: &str = "trueip: this Lambda event does not say which address \
AWS's front end saw (the log names the missing field), so its client cannot be decided.\n";

/// Adds [`ClientIpService`] to a stack: see the [module docs](self).
///
/// `P` is how the layer and its services hold the policy: an `Arc<Policy>`
/// ([`new`](Self::new)) or a `&'static Policy` ([`from_static`](Self::from_static)).
#[derive(Clone, Debug)]
pub struct ClientIpLayer<P = Arc<Policy>> {
    policy: P,
    /// Whether the client-IP headers the policy withholds are removed before the inner
    /// service sees the request ([`keep_client_ip_headers`](Self::keep_client_ip_headers)).
    withhold: bool,
    #[cfg(feature = "provenance")]
    signed: Option<crate::provenance::Signed>,
}

impl ClientIpLayer {
    /// A layer deciding with `policy` (a [`Policy`] or an `Arc<Policy>` shared with other
    /// parts of the application).
    pub fn new(policy: impl Into<Arc<Policy>>) -> Self {
        ClientIpLayer::holding(policy.into())
    }
}

impl ClientIpLayer<&'static Policy> {
    /// A layer deciding with a policy that lives as long as the program: a `static`, or
    /// one leaked with [`Box::leak`] once at start-up (a layer built this way per request
    /// or per reload would leak a policy each time).
    ///
    /// A server clones the service for every request (`axum::serve` does, through
    /// hyper-util's `TowerToHyperService`). With [`new`](Self::new) each clone and its
    /// drop are an atomic operation on the `Arc`'s count; a reference is copied.
    ///
    /// ```
    /// use std::sync::LazyLock;
    /// use trueip::Policy;
    /// use trueip::tower::ClientIpLayer;
    ///
    /// static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    ///     Policy::builder().trust_str("10.0.0.0/8").and_then(|b| b.build()).expect("policy")
    /// });
    /// let layer = ClientIpLayer::from_static(&POLICY);
    /// # let _ = layer;
    /// ```
    pub fn from_static(policy: &'static Policy) -> Self {
        ClientIpLayer::holding(policy)
    }
}

impl<P: Deref<Target = Policy>> ClientIpLayer<P> {
    fn holding(policy: P) -> Self {
        // Built now rather than on the first request.
        policy.withheld_set();
        ClientIpLayer {
            policy,
            withhold: true,
            #[cfg(feature = "provenance")]
            signed: None,
        }
    }

    /// Hands the inner service every client-IP header as the request carried it, a
    /// stranger's forged `X-Forwarded-For` included, instead of removing those the policy
    /// withholds (the default; see the [module docs](self)). For an app whose every
    /// reader of the client goes through the `Resolution`, or that must log the headers
    /// as they came.
    pub fn keep_client_ip_headers(mut self) -> Self {
        self.withhold = false;
        self
    }

    /// Takes the client from the signed header `trueip serve` writes (`[upstream] sign`)
    /// instead of the policy's walk (feature `provenance`). A request whose header does
    /// not verify is refused or served with the TCP peer, as `signed` says
    /// ([`Signed::required`](crate::provenance::Signed::required),
    /// [`Signed::or_peer`](crate::provenance::Signed::or_peer)); the
    /// [`Outcome`](crate::provenance::Outcome) is in the request's extensions beside the
    /// `Resolution`. The policy still decides what the TCP peer is (a trusted PROXY
    /// sender's source).
    #[cfg(feature = "provenance")]
    pub fn signed(mut self, signed: crate::provenance::Signed) -> Self {
        self.signed = Some(signed);
        self
    }

    /// The policy the layer decides with.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<S, P: Clone> Layer<S> for ClientIpLayer<P> {
    type Service = ClientIpService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            policy: self.policy.clone(),
            withhold: self.withhold,
            #[cfg(feature = "provenance")]
            signed: self.signed.clone(),
        }
    }
}

/// The service [`ClientIpLayer`] makes: resolves, stores the [`Resolution`](crate::Resolution) in the
/// request's extensions, calls `inner`.
///
/// Named `…Service` rather than tower-http's bare `ClientIp<S>` so that it does not read
/// as the `trueip::axum::ClientIp` extractor.
#[derive(Clone, Debug)]
pub struct ClientIpService<S, P = Arc<Policy>> {
    inner: S,
    policy: P,
    withhold: bool,
    #[cfg(feature = "provenance")]
    signed: Option<crate::provenance::Signed>,
}

impl<S, P> ClientIpService<S, P> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for ClientIpService<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: Deref<Target = Policy>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let found = match connection(req.extensions()) {
            Some(found) => found,
            None => match no_connection(&req) {
                Ok(found) => found,
                Err(refused) => return refused,
            },
        };
        #[cfg(feature = "provenance")]
        if let Some(signed) = &self.signed {
            let decided = verify(signed, &self.policy, found, &req);
            let (resolution, outcome) = match decided {
                Ok(served) => served,
                Err(why) => return refuse_unsigned(&req, why),
            };
            if self.withhold {
                withhold(&self.policy, outcome.hop(&self.policy, &resolution), req.headers_mut());
            }
            req.extensions_mut().insert(outcome);
            req.extensions_mut().insert(resolution);
            return ResponseFuture::inner(self.inner.call(req));
        }
        let resolution = match found {
            #[cfg(feature = "lambda-http")]
            // The request, not its headers alone: a `query:NAME` strategy reads its query
            // string, as `resolve_request` does.
            Found::StandIn(kind, stand_in) => self.policy.resolve_stand_in(kind, &stand_in, &req),
            found => found.with(|conn| self.policy.resolve(conn, &req)),
        };
        if self.withhold {
            withhold(&self.policy, self.policy.hop(&resolution), req.headers_mut());
        }
        req.extensions_mut().insert(resolution);
        ResponseFuture::inner(self.inner.call(req))
    }
}

/// Removes from `headers` every line of the client-IP headers `policy` withholds from a
/// request that came through `hop`
/// ([`ForwardingSet::withheld_names`](crate::headers::ForwardingSet::withheld_names)), so that an inner
/// layer or handler that reads one itself (a rate limiter keyed on `X-Forwarded-For`, a
/// logger) never sees what a stranger wrote.
///
/// Most requests withhold nothing, so the pass that finds whether one is withheld asks
/// [`ForwardingSet::fate`] of each name here, where it is inlined, and only a request
/// with a line to remove goes on to `withheld_names`. Through that call the same pass
/// took 22–26 ns more a request on the axum bench, a third of withholding's time, and
/// did so even once it built no `Vec` (BENCHMARKS.md, "Where withholding's time goes").
#[inline]
fn withhold(policy: &Policy, hop: Hop<'_>, headers: &mut HeaderMap) {
    let set = policy.withheld_set();
    let first = headers.keys().position(|name| set.fate(name.as_str(), hop).withheld);
    if let Some(first) = first {
        remove_withheld(set, hop, headers, first);
    }
}

/// [`withhold`]'s removal, out of the common path, from the `first` name withheld: those
/// before it were asked already.
#[cold]
#[inline(never)]
fn remove_withheld(set: &ForwardingSet, hop: Hop<'_>, headers: &mut HeaderMap, first: usize) {
    for name in set.withheld_names(headers.keys().skip(first), hop) {
        headers.remove(&name);
    }
}

/// A request's client from its signed header ([`ClientIpLayer::signed`]); `Err`: refuse it.
#[cfg(feature = "provenance")]
fn verify<B>(
    signed: &crate::provenance::Signed,
    policy: &Policy,
    found: Found<'_>,
    req: &Request<B>,
) -> Result<(crate::Resolution, crate::provenance::Outcome), crate::provenance::Rejected> {
    use crate::provenance::{Decided, RequestLine};
    {
        let host = match req.headers().get(header::HOST) {
            Some(h) => h.to_str().unwrap_or_default(),
            None => req.uri().authority().map_or("", |a| a.as_str()),
        };
        let request = RequestLine {
            method: req.method().as_str(),
            host,
            target: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        };
        let decided = match found {
            #[cfg(feature = "lambda-http")]
            Found::StandIn(kind, stand_in) => {
                signed.decide_stand_in(policy, kind, &stand_in, req.headers(), &request)
            }
            found => found.with(|conn| signed.decide(policy, conn, req.headers(), &request)),
        };
        match decided {
            Decided::Serve(resolution, outcome) => {
                if let crate::provenance::Outcome::FellBack(why) = outcome {
                    log::debug!(
                        "{} {}: signed client header rejected ({why}); the peer is the client",
                        req.method(),
                        req.uri().path()
                    );
                }
                Ok((resolution, outcome))
            }
            Decided::Refuse(why) => Err(why),
        }
    }
}

#[cfg(feature = "provenance")]
#[cold]
fn refuse_unsigned<ReqBody, F, ResBody: From<&'static str>>(
    req: &Request<ReqBody>,
    why: crate::provenance::Rejected,
) -> ResponseFuture<F, ResBody> {
    use crate::provenance::{refusal_body, refusal_status};
    let status = refusal_status(why);
    log::info!("{} {}: {status}, {why}", req.method(), req.uri().path());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    ResponseFuture::refused(status, refusal_body(why))
}

/// A request no server stored a connection in: under lambda_http, the connection its
/// event stands for; else the 500 that names the fix. Out of the per-request path.
#[cold]
fn no_connection<ReqBody, F, ResBody: From<&'static str>>(
    req: &Request<ReqBody>,
) -> Result<Found<'static>, ResponseFuture<F, ResBody>> {
    #[cfg(feature = "lambda-http")]
    if let Some(found) = crate::lambda::http::stand_in_connection(req.extensions(), req.headers()) {
        return found.map(|(kind, conn)| Found::StandIn(kind, conn)).map_err(|e| {
            log::error!("{} {}: 500, trueip: {e}", req.method(), req.uri().path());
            ResponseFuture::refused(StatusCode::INTERNAL_SERVER_ERROR, MISSING_STAND_IN)
        });
    }
    Err(refuse(req))
}

#[cold]
fn refuse<ReqBody, F, ResBody: From<&'static str>>(
    req: &Request<ReqBody>,
) -> ResponseFuture<F, ResBody> {
    log::error!("{} {}: 500, {}", req.method(), req.uri().path(), MISSING_CONNECTION.trim_end());
    ResponseFuture::refused(StatusCode::INTERNAL_SERVER_ERROR, MISSING_CONNECTION)
}

/// Where [`connection`] found the connection.
pub(crate) enum Found<'a> {
    /// A [`Connection`] the server stored.
    Connection(&'a Connection),
    /// `axum::serve`'s `ConnectInfo<SocketAddr>`: a TCP peer without a PROXY header.
    #[cfg(feature = "axum")]
    Peer(std::net::SocketAddr),
    /// The kind of the event lambda_http made the request from, and the connection it
    /// stands for.
    #[cfg(feature = "lambda-http")]
    StandIn(crate::event_kind::EventKind, Connection),
}

impl Found<'_> {
    /// Calls `f` with the connection. One built from a peer address is built in its own
    /// arm and lent, rather than merged with the borrowed one into a `Cow`, which was
    /// copied whole and dropped (a test of its `Arc`) on every request.
    #[inline(always)]
    pub(crate) fn with<R>(self, f: impl FnOnce(&Connection) -> R) -> R {
        match self {
            Found::Connection(conn) => f(conn),
            #[cfg(feature = "axum")]
            Found::Peer(addr) => f(&Connection::from_peer(addr)),
            #[cfg(feature = "lambda-http")]
            Found::StandIn(_, conn) => f(&conn),
        }
    }
}

/// The connection a server stored in the request, in the order the module docs give.
///
/// `ConnectInfo<SocketAddr>` is looked up first, though it comes last: when it is the
/// request's only extension (`axum::serve` with the layer around the router), nothing
/// of higher precedence can be there, and one lookup decides.
#[inline(always)]
pub(crate) fn connection(ext: &Extensions) -> Option<Found<'_>> {
    #[cfg(feature = "axum")]
    {
        use ::axum::extract::ConnectInfo;
        let addr = ext.get::<ConnectInfo<std::net::SocketAddr>>();
        if let Some(ConnectInfo(addr)) = addr
            && ext.len() == 1
        {
            return Some(Found::Peer(*addr));
        }
        if let Some(conn) = ext.get::<Connection>() {
            return Some(Found::Connection(conn));
        }
        if let Some(ConnectInfo(conn)) = ext.get::<ConnectInfo<Connection>>() {
            return Some(Found::Connection(conn));
        }
        addr.map(|ConnectInfo(addr)| Found::Peer(*addr))
    }
    #[cfg(not(feature = "axum"))]
    ext.get::<Connection>().map(Found::Connection)
}

/// A `500` with a plain-text body naming the fix.
pub(crate) fn server_error<B: From<&'static str>>(message: &'static str) -> Response<B> {
    plain_text(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// A response of `status` whose plain-text body is `message`.
fn plain_text<B: From<&'static str>>(status: StatusCode, message: &'static str) -> Response<B> {
    let mut response = Response::new(B::from(message));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

pin_project! {
    /// The future [`ClientIpService`] returns: the inner service's, or the 500 for a
    /// request without a connection.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F>,
        body: PhantomData<fn() -> B>,
    }
}

pin_project! {
    /// A refusal holds its status and body, and its response is made when polled, so
    /// that a served request's future is the inner one and a tag: a held `Response`
    /// (128 bytes with axum's body) would size it whenever the inner future is smaller,
    /// as a plain handler's often is (axum's router's, 320 bytes, is not).
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Refused { refusal: Option<(StatusCode, &'static str)> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> Self {
        ResponseFuture { state: State::Inner { future }, body: PhantomData }
    }

    fn refused(status: StatusCode, body: &'static str) -> Self {
        ResponseFuture {
            state: State::Refused { refusal: Some((status, body)) },
            body: PhantomData,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<&'static str>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Refused { refusal } => match refusal.take() {
                Some((status, body)) => Poll::Ready(Ok(plain_text(status, body))),
                // Polled again after it finished: a caller bug, answered like any other
                // request that cannot be served rather than with a panic.
                None => Poll::Ready(Ok(server_error(MISSING_CONNECTION))),
            },
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
