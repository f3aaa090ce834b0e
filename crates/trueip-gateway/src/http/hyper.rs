//! hyper's wire path: HTTP/2, request bodies, upgrades and every request the lean path
//! hands over. One request: route it, then an admin page, the whoami page, or the
//! upstream's answer, with the same rules as the lean path.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use trueip::{Decision, Resolution};

use crate::context::{ConnCtx, State};
use crate::http::body::{Body, Record};
use crate::http::{facts, failed, keep_forgery, keeps_forgery, lean, note_forgery};
use crate::io::{Idle, Rewind};
use crate::metrics::ClientErrorKind;
use crate::pages::{self, Page, whoami};
use crate::rules::{self, Failure, Route, headers, limits};
use crate::upstream::raw::{self, Settled};
use crate::upstream::{self, ClientBody, SendError, Timed, Upstream};

/// Serves a connection through hyper until it ends, idles (`limits.idle_timeout`) or
/// the gateway shuts down (then gracefully). `known`: the protocol, when TLS's ALPN chose
/// it; otherwise the connection's first bytes tell. A request head begun and not
/// finished within `limits.header_read_timeout` is answered 408, as on the lean path.
pub(crate) async fn serve<I>(mut io: I, ctx: Arc<ConnCtx>, state: &State, known: Option<Protocol>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &state.settings.limits;
    let (head_limit, idle) = (limits.header_read_timeout, limits.idle_timeout);
    let send_timeout = limits.send_timeout;
    let mut first = Vec::new();
    let protocol = match known {
        Some(Protocol::Http1) => Protocol::Http1,
        // Without ALPN's word the first bytes tell. After ALPN `h2` the preface is read
        // here all the same: hyper's HTTP/2 server waits for it without a deadline.
        _ => {
            // The opening and, for HTTP/1, the rest of the first head are due by the one
            // deadline the lean path reads under too (from the connection's start): each
            // with its own full timeout, a client trickling HTTP/2's preface, or a head
            // that begins like it, held the connection twice as long.
            let due = crate::clock::deadline_std(ctx.opened, head_limit);
            let max_head = limits.max_header_bytes;
            let read = async {
                let protocol = opening(&mut io, &mut first).await?;
                if known.is_none() && protocol == Some(Protocol::Http1) {
                    first_head(&mut io, &mut first, max_head).await?;
                }
                Ok::<_, std::io::Error>(protocol)
            };
            let opening = tokio::select! {
                // A request already on its way is read, however the stop signal stands.
                biased;
                o = tokio::time::timeout_at(due, read) => o,
                () = ctx.stopped() => return,
            };
            match opening {
                // After ALPN `h2`, bytes that are not the preface are HTTP/2's to refuse.
                Ok(Ok(Some(p))) => known.unwrap_or(p),
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %ctx.peer, "connection ended: {e}");
                    return;
                }
                Err(_) if first.is_empty() => return,
                // No HTTP/1.1 answer on a connection that ALPN made HTTP/2.
                Err(_) if known.is_some() => {
                    ctx.shared.metrics.client_error(ClientErrorKind::HeaderTimeout);
                    tracing::debug!(peer = %ctx.peer, "closed: no whole HTTP/2 preface within {head_limit:?}");
                    return;
                }
                Err(_) => {
                    lean::head_timeout(&mut io, &ctx, &mut first, head_limit).await;
                    return;
                }
            }
        }
    };
    let io = TokioIo::new(Rewind::new(Bytes::from(first), io));
    let svc_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        // The request is routed, resolved and prepared as hyper hands it over: the future
        // holds only what the exchange with the upstream needs (see `begin`).
        let next = begin(req, &svc_ctx);
        async move {
            let resp = match next {
                Next::Answered(resp) => *resp,
                Next::Exchange(exchange) => exchange.await,
            };
            // In an HTTP/2 stream's own task: the body learns its stream's send wait.
            Ok::<_, Infallible>(resp.map(Body::watched))
        }
    });
    if protocol == Protocol::Http2 {
        let mut conn = std::pin::pin!(state.h2.serve_connection(io, service));
        let done = drive(conn.as_mut(), |c| c.graceful_shutdown(), &ctx, idle, send_timeout).await;
        if let Err(e) = done {
            tracing::debug!(peer = %ctx.peer, "connection ended: {e}");
        }
        return;
    }
    let mut conn = state.h1.serve_connection(io, service).with_upgrades();
    let Err(e) =
        drive(Pin::new(&mut conn), |c| c.graceful_shutdown(), &ctx, idle, send_timeout).await
    else {
        // hyper has ended the connection (an upgraded one is no longer hyper's).
        if let Some(parts) = conn.into_parts() {
            crate::io::linger(&mut parts.io.into_inner()).await;
        }
        return;
    };
    // hyper ends a connection whose head timed out without answering it: what it had
    // read of the head is still in its buffer, and the connection is answered here.
    if e.is_timeout()
        && let Some(parts) = conn.into_parts()
        && !parts.read_buf.is_empty()
    {
        let mut io = parts.io.into_inner();
        lean::head_timeout(&mut io, &ctx, &mut Vec::new(), head_limit).await;
        return;
    }
    count_refused_head(&ctx, &e);
    tracing::debug!(peer = %ctx.peer, "connection ended: {e}");
}

/// The HTTP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.x, whose parser refuses what is not.
    Http1,
    /// HTTP/2 (RFC 9113 §3.4: ALPN `h2`, or the preface with prior knowledge).
    Http2,
}

/// The connection preface of HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads from `io` into `first` until the bytes are HTTP/2's preface or cannot become
/// it, as hyper-util's `auto` builder does (`None`: closed before it could tell); `auto`
/// is not used because its HTTP/1.1 connection cannot be taken apart after a head timed
/// out, which the 408 needs. Most connections tell at their first byte.
async fn opening<I: AsyncRead + Unpin>(
    io: &mut I,
    first: &mut Vec<u8>,
) -> std::io::Result<Option<Protocol>> {
    first.reserve(H2_PREFACE.len());
    loop {
        let n = first.len();
        if !H2_PREFACE.starts_with(first) {
            return Ok(Some(Protocol::Http1));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(Protocol::Http2));
        }
        // Never past the preface: the rest belongs to the protocol's own reader.
        let mut chunk = [0u8; 24];
        let want = H2_PREFACE.len() - n;
        let got = io.read(chunk.get_mut(..want).unwrap_or_default()).await?;
        if got == 0 {
            return Ok(None);
        }
        first.extend_from_slice(chunk.get(..got).unwrap_or_default());
    }
}

/// Reads on after [`opening`] found HTTP/1 until `first` holds the whole first request
/// head (or more than `max_head` bytes, or bytes no head begins with, or the client
/// closed): hyper's header timer starts afresh when it starts reading, so the first
/// head is read whole here, under the opening's deadline, and hyper parses it at once.
async fn first_head<I: AsyncRead + Unpin>(
    io: &mut I,
    first: &mut Vec<u8>,
    max_head: usize,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 2048];
    loop {
        // Blank lines before a request line are allowed (RFC 9112 §2.2), and are no end
        // of a head.
        let lead = first.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(first.len());
        let head = first.get(lead..).unwrap_or_default();
        if first.len() >= max_head
            || lean::head_end(head).is_some()
            || (!head.is_empty() && !lean::partial_request(head))
        {
            return Ok(());
        }
        let got = io.read(&mut chunk).await?;
        if got == 0 {
            return Ok(());
        }
        first.extend_from_slice(chunk.get(..got).unwrap_or_default());
    }
}

/// Runs `conn` until it ends, or until the connection idles (`idle`) or the gateway
/// shuts down, then shuts it down gracefully (`graceful`) and runs it to its end.
///
/// A connection shut down gracefully ends when its streams do, and an HTTP/2 stream
/// whose body has ended may still hold its last chunk in h2's send buffer, waiting for
/// flow-control credit: neither the stream's send timeout (its task is over) nor a write
/// (none is pending) sees that wait, and a client that never gives the credit would keep
/// the connection for ever (Envoy's GHSA-8hf8-8gvw-ggvx was this). So once no request has
/// been in flight for `send_timeout` since the shutdown began, what is left is closed,
/// as the send timeout closes any other wait on the client.
async fn drive<C>(
    mut conn: Pin<&mut C>,
    graceful: impl FnOnce(Pin<&mut C>),
    ctx: &ConnCtx,
    idle: Duration,
    send_timeout: Duration,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>> + ?Sized,
{
    tokio::select! {
        // A request already on its way is served, however the stop signal stands.
        biased;
        done = conn.as_mut() => return done,
        () = ctx.stopped() => {}
        () = ctx.activity.idle(Idle::Requests, idle) => tracing::debug!(peer = %ctx.peer, "closing idle connection"),
    }
    graceful(conn.as_mut());
    let unsent = async {
        tokio::time::sleep(send_timeout).await;
        ctx.activity.idle(Idle::Requests, send_timeout).await;
    };
    tokio::select! {
        biased;
        done = conn.as_mut() => done,
        () = unsent => {
            ctx.activity.note_send_timeout();
            Ok(())
        }
    }
}

/// hyper's HTTP/1.1 parser answers a head over `limits.max_headers` or
/// `limits.max_header_bytes` with 431 and ends the connection with this error, without
/// the service seeing the request: counted here as the service counts HTTP/2's.
fn count_refused_head(ctx: &ConnCtx, e: &hyper::Error) {
    if e.is_parse_too_large() {
        ctx.shared.metrics.client_error(ClientErrorKind::HeadersOverLimit);
    }
}

/// One of the gateway's own pages as a response (its body left out for `HEAD`).
fn response(page: Page, method: &Method) -> Response<Body> {
    let len = u64::try_from(page.body.len()).unwrap_or(u64::MAX);
    let mut resp =
        Response::new(if method == Method::HEAD { Body::empty() } else { Body::full(page.body) });
    *resp.status_mut() = page.status;
    let h = resp.headers_mut();
    for (i, &(name, value)) in page.headers.iter().enumerate() {
        h.insert(name, HeaderValue::from_static(value));
        if i == 0 {
            h.insert(header::CONTENT_LENGTH, headers::length_value(len));
        }
    }
    resp
}

/// What is left of a request once [`begin`] has seen it.
enum Next<F> {
    /// Its answer (a page, a failure), with its record.
    Answered(Box<Response<Body>>),
    /// The exchange with the upstream, which answers with the record attached.
    Exchange(Pin<Box<F>>),
}

/// Serves one request up to its exchange with the upstream, synchronously: routes it,
/// resolves the client, applies the header rules, or answers it. Never fails: every error
/// becomes a response.
///
/// Only the exchange is a future, boxed (hyper's HTTP/2 server spawns a task per stream
/// holding the service's future, and tokio copies a task's future when it spawns it and
/// again when it ends). Made from an `async fn` taking the request, that box held the
/// request twice, the access record and the resolution across the exchange: 2,144
/// bytes, a size mimalloc serves only through its generic path.
fn begin(
    req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
) -> Next<impl Future<Output = Response<Body>> + Send + use<>> {
    let start = Instant::now();
    let state = ctx.shared.state.load_full();
    let settings = &state.settings;
    let access_log = settings.log.access_log;
    let uri = access_log.then(|| req.uri().clone());
    // Boxed from the start: the body keeps it until the response is sent.
    let mut record =
        Box::new(Record::begin(ctx, access_log, start, req.method().clone(), uri, req.version()));
    // hyper's HTTP/1.1 parser holds requests to max_headers itself; HTTP/2 requests
    // are held to the same rule by the route.
    let lines = limits::header_lines(req.headers(), req.uri());
    let route = rules::route(req.uri().path(), lines, settings, ctx.serves(&state), &req, || {
        let policy = settings.policy_for(ctx.listener());
        (policy, policy.resolve(&ctx.connection(), &req))
    });
    let answer = match (route, &state.upstream) {
        (Route::TooManyHeaders, _) => {
            let page = failed(ctx, Failure::TooManyHeaders, &lines.count);
            Ok(response(page, req.method()))
        }
        (Route::SeveralHosts, _) => {
            let page = failed(ctx, Failure::SeveralHosts, &"several Host lines");
            Ok(response(page, req.method()))
        }
        (Route::Admin(which), _) => {
            let view = pages::AdminView {
                draining: ctx.shared.shutting_down(),
                metrics: &ctx.shared.metrics,
                forgeries: &ctx.shared.forgeries,
                forgeries_kept: settings.admin.forgeries,
                query: req.uri().query(),
            };
            let page = pages::admin(which, &view);
            Ok(response(page, req.method()))
        }
        (Route::NotFound, _) => {
            Ok(response(failed(ctx, Failure::NotFound, &req.uri().path()), req.method()))
        }
        (Route::Forward, Some(upstream)) => {
            let conn = ctx.connection();
            // The request, not only its headers: `query:NAME` strategies read its target.
            let resolution = settings.policy_for(ctx.listener()).resolve(&conn, &req);
            record.note(ctx, &conn, settings, &resolution);
            match prepare(req, ctx, &state, upstream, &resolution, &mut record) {
                Prepared::Answer(resp) => Ok(*resp),
                exchange => Err(exchange),
            }
        }
        (Route::Whoami | Route::Forward, _) => {
            let conn = ctx.connection();
            // The whoami page explains the decision: resolving once more would repeat it.
            let decision = Decision::new(settings.policy_for(ctx.listener()), &conn, &req);
            record.note(ctx, &conn, settings, decision.resolution());
            note_forgery(
                ctx,
                &state,
                decision.resolution(),
                (req.method().as_str(), req.uri().path()),
                0,
                record.start,
                |line| {
                    for (name, value) in req.headers() {
                        line(name.as_str(), value.as_bytes(), &|| false);
                    }
                },
            );
            let host = req
                .uri()
                .authority()
                .map(|a| a.as_str().as_bytes())
                .or_else(|| req.headers().get(header::HOST).map(HeaderValue::as_bytes));
            let headers = req.headers();
            let asked = whoami::Asked {
                path: req.uri().path(),
                host,
                lines: || headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
                tls: ctx.tls,
                peer: ctx.peer,
                policy: settings.policy_name(ctx.listener()),
            };
            // Sized for a typical answer, so the buffer is not grown step by step.
            let body = Vec::with_capacity(2048);
            let page = whoami::page(&asked, &decision, &state.hygiene, body);
            Ok(response(page, req.method()))
        }
    };
    match answer {
        Ok(resp) => Next::Answered(Box::new(answered(resp, record))),
        Err(exchange) => {
            let ctx = ctx.clone();
            Next::Exchange(Box::pin(async move {
                let resp = forward(exchange, &ctx, &state, start).await;
                answered(resp, record)
            }))
        }
    }
}

/// The response with its record, which notes its status.
fn answered(resp: Response<Body>, mut record: Box<Record>) -> Response<Body> {
    record.status = resp.status().as_u16();
    resp.map(|b| b.record(record))
}

/// What [`forward`] does with a request once the header rules made it ready: a sync step,
/// so that what it needs on the way (the parts, the facts, the lines stripped) is not
/// held in the future across the exchange. The rare cases are boxed: this value is held
/// across the exchange too.
enum Prepared {
    /// Answered already (a failure).
    Answer(Box<Response<Body>>),
    /// The head for the bare exchange ([`forward_raw`]).
    Raw { method: Method, head: Vec<u8>, key: http::uri::Authority },
    /// The request for hyper's client.
    Hyper(Box<ToHyper>),
}

impl Prepared {
    fn answer(resp: Response<Body>) -> Self {
        Prepared::Answer(Box::new(resp))
    }
}

/// A request for hyper's client ([`forward_hyper`]).
struct ToHyper {
    req: Request<Timed<Incoming>>,
    key: http::uri::Authority,
    method: Method,
    upgrade: Option<&'static str>,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// The exchange [`prepare`] chose, with the upstream of the state it was prepared under.
/// `start`: the clock reading the request arrived at, which the exchange's timers and
/// the pool's idle check go by: [`begin`] prepares the request synchronously, so the
/// exchange starts at the same moment, and the clock is not read again.
async fn forward(
    prepared: Prepared,
    ctx: &Arc<ConnCtx>,
    state: &State,
    start: Instant,
) -> Response<Body> {
    match (prepared, &state.upstream) {
        (Prepared::Answer(resp), _) => *resp,
        (Prepared::Raw { method, head, key }, Some(upstream)) => {
            forward_raw(ctx, upstream, &method, &head, key, start).await
        }
        (Prepared::Hyper(to), Some(upstream)) => {
            forward_hyper(*to, ctx, state, upstream, start).await
        }
        // `prepare` is given the state's upstream: an exchange always has one.
        (Prepared::Raw { method, .. }, None) => {
            response(failed(ctx, Failure::Target, &"no upstream"), &method)
        }
        (Prepared::Hyper(to), None) => {
            response(failed(ctx, Failure::Target, &"no upstream"), &to.method)
        }
    }
}

fn prepare(
    mut req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
    state: &State,
    upstream: &Upstream,
    resolution: &Resolution,
    record: &mut Record,
) -> Prepared {
    let method = req.method().clone();
    // A WebSocket upgrade: the hop-by-hop headers that ask for it are removed with the
    // others and set again, alone, for the upstream. Any other upgrade is not forwarded
    // (see `headers::WEBSOCKET`).
    let upgrade = headers::upgrade_to_forward(req.method(), req.version(), req.headers());
    let downstream_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let host: Option<HeaderValue> = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    // The target as the upstream receives it, from here on.
    match upstream::origin_form(&method, parts.uri.path_and_query()) {
        Some(uri) => parts.uri = uri,
        None => {
            return Prepared::answer(response(failed(ctx, Failure::Target, &parts.uri), &method));
        }
    }
    // Lengths that disagree never go on; lengths that agree go on as one line, on the bare
    // exchange and through hyper's client alike: HTTP/2 handed over two equal lines, and
    // the bare exchange wrote both.
    if headers::one_content_length(&mut parts.headers).is_err() {
        let page = failed(ctx, Failure::BodyBroken, &"Content-Length lines that disagree");
        return Prepared::answer(response(page, &method));
    }
    let kept =
        state.hygiene.strip_target(parts.uri.path_and_query().map_or("/", PathAndQuery::as_str));
    if let Cow::Owned(kept) = kept {
        // What is left of a valid target is a valid target.
        match PathAndQuery::try_from(kept).map(|p| upstream::origin_form(&method, Some(&p))) {
            Ok(Some(uri)) => parts.uri = uri,
            Ok(None) | Err(_) => {
                return Prepared::answer(response(
                    failed(ctx, Failure::Target, &parts.uri),
                    &method,
                ));
            }
        }
    }
    let request = headers::UpstreamLine {
        method: method.as_str(),
        authority: upstream.authority(),
        target: parts.uri.path_and_query().map_or("/", PathAndQuery::as_str),
    };
    let facts = facts(ctx, state, resolution, &parts.headers, host.as_ref(), request);
    if !state.hygiene.hosts_allowed(&facts) {
        let named = host.as_ref().map(|h| String::from_utf8_lossy(h.as_bytes()));
        let page = failed(
            ctx,
            Failure::HostNotAllowed,
            &format_args!("host \"{}\"", named.unwrap_or_default()),
        );
        return Prepared::answer(response(page, &method));
    }
    // The lines as received, for the record of forgeries: only a forged decision the
    // record keeps copies them (the header rules rewrite them next). A decision flagged
    // as forged is a forgery whatever the rules strip, so the record is asked now; any
    // other request is one only if they strip a line, asked after.
    let forged = !resolution.warnings.forgeries().is_empty();
    let kept = forged && keeps_forgery(ctx, state, resolution.warnings, 0, record.start);
    let received = kept.then(|| parts.headers.clone());
    let mut gone = Vec::new();
    let stripped = state.hygiene.received_noting(&mut parts.headers, &facts, &mut gone);
    let own = state.hygiene.own_values(&parts.headers, &facts);
    ctx.shared.metrics.stripped(stripped);
    record.stripped = stripped;
    let kept =
        kept || (!forged && keeps_forgery(ctx, state, resolution.warnings, stripped, record.start));
    if kept {
        keep_forgery(
            ctx,
            state,
            resolution,
            (method.as_str(), parts.uri.path()),
            stripped,
            |line| match &received {
                Some(all) => {
                    for (name, value) in all {
                        line(name.as_str(), value.as_bytes(), &|| {
                            gone.iter().any(|(n, _)| n == name)
                        });
                    }
                }
                None => {
                    for (name, value) in &gone {
                        line(name.as_str(), value.as_bytes(), &|| true);
                    }
                }
            },
        );
    }
    state.hygiene.strip_cookies(&mut parts.headers);
    let h2 = parts.version == Version::HTTP_2;
    if h2 {
        headers::join_cookies(&mut parts.headers);
    }
    let Some(key) = upstream.pool_key(resolution.client, ctx.destination(resolution)) else {
        return Prepared::answer(response(failed(ctx, Failure::Target, &parts.uri), &method));
    };
    if h2
        && upgrade.is_none()
        && upstream.lean()
        && method != Method::CONNECT
        && http_body::Body::is_end_stream(&body)
    {
        let host = host.as_ref().map_or(upstream.authority().as_bytes(), HeaderValue::as_bytes);
        let target = facts.request.target;
        let head = raw::request_head(&method, target, host, &parts.headers, &own);
        return Prepared::Raw { method, head, key };
    }
    headers::set_own(&mut parts.headers, own);
    if let Some(protocol) = upgrade {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, HeaderValue::from_static(protocol));
    }
    match host {
        Some(h) => {
            parts.headers.insert(header::HOST, h);
        }
        None => {
            if let Ok(h) = HeaderValue::from_str(upstream.authority()) {
                parts.headers.insert(header::HOST, h);
            }
        }
    }
    parts.version = Version::HTTP_11;
    let settings = &upstream.settings;
    let req = Request::from_parts(parts, Timed::from_client(body, settings.body_timeout));
    Prepared::Hyper(Box::new(ToHyper { req, key, method, upgrade, downstream_upgrade }))
}

/// The answer when the upstream sent no response within `upstream.response_timeout`.
fn no_response(ctx: &ConnCtx, timeout: Duration, method: &Method) -> Response<Body> {
    let why = format!("no response within {timeout:?} (upstream.response_timeout)");
    response(failed(ctx, Failure::Timeout, &why), method)
}

/// [`forward`]'s exchange through hyper's client.
async fn forward_hyper(
    to: ToHyper,
    ctx: &Arc<ConnCtx>,
    state: &State,
    upstream: &Upstream,
    start: Instant,
) -> Response<Body> {
    let ToHyper { req, key, method, upgrade, downstream_upgrade } = to;
    let method = &method;
    let settings = &upstream.settings;
    // Boxed: this exchange (hyper's client, perhaps a connection to set up) is nearly
    // 3 KiB of future; inline, it would make every future holding it (`forward`'s,
    // `handle`'s) that large, and those are moved whole as they start, on every request,
    // those of the bare exchange too.
    let sent = tokio::time::timeout_at(
        crate::clock::deadline_std(start, settings.response_timeout),
        Box::pin(upstream.send(req, key, &ctx.upstream_idle)),
    )
    .await;
    let (mut resp, pooled) = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => {
            return response(failed(ctx, classify(&e), &error_chain(&e)), method);
        }
        Err(_) => return no_response(ctx, settings.response_timeout, method),
    };
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let protocol = resp.headers().get(header::UPGRADE).cloned();
    let allowed = headers::may_tunnel(upgrade, protocol.as_ref().map(HeaderValue::as_bytes));
    let tunnel = match downstream_upgrade {
        Some(down) if switching && allowed => Some((down, hyper::upgrade::on(&mut resp))),
        _ => None,
    };
    let (mut parts, body) = resp.into_parts();
    // The gateway's own version, as the lean path writes it: an intermediary sends its
    // own (RFC 9110 §6.2), and hyper's server wrote an HTTP/1.0 upstream's.
    parts.version = Version::HTTP_11;
    let te = parts.headers.get_all(header::TRANSFER_ENCODING);
    if headers::Codings::of(te.iter().map(HeaderValue::as_bytes)).is_some_and(|c| !c.only_chunked())
    {
        let why = "a transfer coding other than chunked";
        return response(failed(ctx, Failure::Broken, &why), method);
    }
    // Before the hop-by-hop lines go: a `Transfer-Encoding` line takes the length with it.
    if headers::one_content_length(&mut parts.headers).is_err() {
        let why = "Content-Length lines that disagree";
        return response(failed(ctx, Failure::Broken, &why), method);
    }
    if !headers::bodiless_keeps_length(parts.status.as_u16()) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    headers::response(&mut parts.headers);
    if let (Some((down, up)), Some(protocol)) = (tunnel, protocol) {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
        tokio::spawn(tunnel_task(down, up, ctx.clone(), state.settings.limits.idle_timeout));
    } else if switching {
        let why = format!("asked \"{}\": not tunneled", upgrade.unwrap_or_default());
        return response(failed(ctx, Failure::Unasked, &why), method);
    }
    Response::from_parts(parts, Body::stream(body, settings.body_timeout, pooled))
}

/// [`forward`]'s exchange for an HTTP/2 request without a body, to an HTTP/1.1
/// upstream: on a bare connection (`upstream::raw`), on this stream's own task, with no
/// hyper client task or channel between. `head` is the request head, as the header
/// rules made it; the response comes back with its hop-by-hop lines gone.
async fn forward_raw(
    ctx: &ConnCtx,
    upstream: &Upstream,
    method: &Method,
    head: &[u8],
    key: http::uri::Authority,
    start: Instant,
) -> Response<Body> {
    let settings = &upstream.settings;
    let sent = tokio::time::timeout_at(
        crate::clock::deadline_std(start, settings.response_timeout),
        upstream.exchange_raw(head, method, key, &ctx.upstream_idle, start),
    )
    .await;
    let (answer, body) = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => return response(failed(ctx, e.failure(), &e), method),
        Err(_) => return no_response(ctx, settings.response_timeout, method),
    };
    let body = match body {
        Settled::Whole(bytes) if bytes.is_empty() => Body::empty(),
        Settled::Whole(bytes) => Body::full(bytes),
        Settled::Streamed(raw) => Body::raw(raw, settings.body_timeout),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = answer.status;
    *resp.headers_mut() = answer.headers;
    resp
}

/// Copies bytes between the client and the upstream after a 101, until either side
/// closes or nothing moves for `idle`. Holds the connection's context, so the
/// connection stays counted (and its `max_connections` permit held) meanwhile.
async fn tunnel_task(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    ctx: Arc<ConnCtx>,
    idle: std::time::Duration,
) {
    // From here on the connection is a byte relay: time its reads and writes.
    ctx.activity.track_io();
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, "upgrade failed: {e}");
            return;
        }
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => {
            if let Err(e) = r {
                tracing::debug!(peer = %ctx.peer, "tunnel ended: {e}");
            }
        }
        // The client side is the gateway's own connection, whose reads and writes
        // mark activity.
        () = ctx.activity.idle(Idle::Io, idle) => tracing::debug!(peer = %ctx.peer, "closing idle tunnel"),
    }
}

/// What a failed exchange was. The client's own body first: a broken one also breaks
/// the upstream exchange, and the errors that follow from it are not the upstream's.
fn classify(e: &SendError) -> Failure {
    let errors =
        || std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |err| err.source());
    if let Some(body) = errors().find_map(|err| err.downcast_ref::<ClientBody>()) {
        return if body.stalled() { Failure::BodyStalled } else { Failure::BodyBroken };
    }
    if errors().any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    }) {
        return Failure::Timeout;
    }
    match e {
        SendError::Connect(e) if upstream::tls_refused(e) => Failure::Tls,
        SendError::Connect(_) => Failure::Unreachable,
        SendError::Http(_) => Failure::Broken,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}
