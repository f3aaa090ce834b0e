//! One HTTP request: admin endpoints, resolve the client, then whoami or forward.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use trueip::{Decision, Resolution};

use crate::http::body::{Body, Record, Timed, error_response};
use crate::metrics::{ClientErrorKind, UpstreamErrorKind};
use crate::pages::whoami;
use crate::rules::headers::{self as hygiene, Facts};
use crate::server::{ConnCtx, State};
use crate::upstream::Upstream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admin {
    Health,
    Metrics,
}

/// `/.trueip/healthz` and `/.trueip/metrics` (under the configured prefix); bare
/// `/healthz` and `/metrics` too when no app can own those paths (whoami mode, the
/// admin listener).
pub(crate) fn admin_endpoint(path: &str, prefix: &str, bare: bool) -> Option<Admin> {
    let rest = match (!prefix.is_empty())
        .then(|| path.strip_prefix(prefix))
        .flatten()
    {
        Some(rest) => rest,
        None if bare => path,
        None => return None,
    };
    match rest {
        "/healthz" => Some(Admin::Health),
        "/metrics" => Some(Admin::Metrics),
        _ => None,
    }
}

fn admin_response(which: Admin, method: &Method, ctx: &ConnCtx) -> Response<Body> {
    let (status, content_type, body) = match which {
        Admin::Health if ctx.shared.shutting_down() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "draining\n".to_string(),
        ),
        Admin::Health => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_string(),
        ),
        Admin::Metrics => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            ctx.shared.metrics.render(),
        ),
    };
    let len = body.len();
    let mut resp = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::full(body)
    });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle(req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Response<Body> {
    let start = Instant::now();
    let state = ctx.shared.state.load_full();
    let settings = &state.settings;
    let access_log = settings.log.access_log;
    let uri = access_log.then(|| req.uri().clone());
    let mut record = Record::begin(
        &ctx,
        access_log,
        start,
        req.method().clone(),
        uri,
        req.version(),
    );

    let whoami_mode = state.upstream.is_none();
    // hyper's HTTP/1.1 parser holds requests to max_headers itself; HTTP/2 requests
    // are held to the same rule here, before anything else looks at them.
    let lines = crate::rules::limits::header_lines(req.headers(), req.uri());
    let resp = if crate::rules::limits::too_many_headers(lines, settings.limits.max_headers) {
        ctx.shared
            .metrics
            .client_error(ClientErrorKind::HeadersOverLimit);
        error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            "the request has more header lines than limits.max_headers",
        )
    } else if let Some(which) = admin_endpoint(
        req.uri().path(),
        &settings.admin.prefix,
        whoami_mode || ctx.admin_only,
    ) {
        admin_response(which, req.method(), &ctx)
    } else if ctx.admin_only {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "the admin listener serves /healthz and /metrics",
        )
    } else {
        let conn = ctx.connection();
        match &state.upstream {
            Some(upstream) => {
                let resolution = settings.policy.resolve(&conn, req.headers());
                record.note(&ctx, &conn, &settings.policy, &resolution);
                forward(req, &ctx, &state, upstream, &resolution).await
            }
            // The whoami page explains the decision: resolving once more would repeat it.
            None => {
                let decision = Decision::new(&settings.policy, &conn, req.headers());
                record.note(&ctx, &conn, &settings.policy, decision.resolution());
                whoami_page(&req, &ctx, &state, &decision)
            }
        }
    };
    record.status = resp.status().as_u16();
    resp.map(|b| b.record(record))
}

fn whoami_page(
    req: &Request<Incoming>,
    ctx: &ConnCtx,
    state: &State,
    decision: &Decision<'_>,
) -> Response<Body> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| req.headers().get(header::HOST).map(HeaderValue::as_bytes));
    let headers = req.headers();
    let page = whoami_of(
        req.uri().path(),
        host,
        || headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        ctx,
        state,
        decision,
    );
    whoami::respond(req.method(), page.format, &page.whoami, &page.links())
}

/// What the whoami page shows for one request, and in which format.
pub(crate) struct WhoamiPage<'a> {
    pub whoami: whoami::Whoami<'a>,
    pub format: whoami::Format,
    /// This page's URL (HTML only; empty otherwise).
    pub self_url: String,
}

impl WhoamiPage<'_> {
    pub(crate) fn links(&self) -> whoami::Links<'_> {
        whoami::Links {
            healthz: "/healthz",
            metrics: "/metrics",
            self_url: &self.self_url,
        }
    }
}

/// The whoami page for a request: its path, host and header lines (any case).
pub(crate) fn whoami_of<'a, I>(
    path: &str,
    host: Option<&[u8]>,
    headers: impl Fn() -> I,
    ctx: &ConnCtx,
    state: &State,
    decision: &'a Decision<'a>,
) -> WhoamiPage<'a>
where
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    let mut forwarding =
        whoami::forwarding_headers_of(headers(), |name| state.hygiene.is_managed_spelled(name));
    // The origin secret proves the request came through *your* CDN distribution;
    // echoing it would hand it to anyone who can reach that distribution.
    if let Some(secret) = &state.settings.headers.origin_secret {
        forwarding.redact(secret.as_str(), b"<redacted>");
    }
    let format = whoami::negotiate_with(
        path,
        headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("accept"))
            .map(|(_, v)| v),
    );
    // Only the HTML page shows its own URL.
    let self_url = if format == whoami::Format::Html {
        let scheme = if ctx.tls { "https" } else { "http" };
        let host = host.and_then(|h| std::str::from_utf8(h).ok());
        format!("{scheme}://{}/", host.unwrap_or("localhost"))
    } else {
        String::new()
    };
    WhoamiPage {
        whoami: whoami::Whoami {
            decision,
            direct_ip: trueip::addr::normalize(ctx.peer.ip()),
            headers: forwarding,
        },
        format,
        self_url,
    }
}

async fn forward(
    mut req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
    state: &State,
    upstream: &Upstream,
    resolution: &Resolution,
) -> Response<Body> {
    // A WebSocket upgrade: the hop-by-hop headers that ask for it are removed with the
    // others and set again, alone, for the upstream. Any other upgrade is not forwarded
    // (see `hygiene::WEBSOCKET`).
    let upgrade = hygiene::upgrade_to_forward(req.method(), req.version(), req.headers());
    let downstream_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let proxy_addrs = ctx.proxy.as_ref().and_then(|p| p.addrs);
    let trusted_hop = hygiene::came_through_trusted_hop(&state.settings.policy, resolution);
    let origin = trueip::origin::origin(&parts.headers, resolution);
    let host: Option<HeaderValue> = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let scheme = ctx.scheme();
    let destination = proxy_addrs.map_or(ctx.local, |a| a.destination);
    let facts = Facts {
        resolution,
        trusted_hop,
        origin: &origin,
        scheme,
        host: host.as_ref(),
        port: destination.port(),
    };
    let stripped = state.hygiene.request(&mut parts.headers, &facts);
    ctx.shared.metrics.stripped(stripped);
    if parts.version == Version::HTTP_2 {
        hygiene::join_cookies(&mut parts.headers);
    }
    if let Some(protocol) = upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static(protocol));
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
    let path = parts.uri.path_and_query().cloned();
    let client = SocketAddr::new(resolution.client.ip, resolution.client.port.unwrap_or(0));
    parts.uri = match upstream.uri(path, client, destination) {
        Ok(uri) => uri,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request target cannot be forwarded",
            );
        }
    };
    parts.version = Version::HTTP_11;
    let settings = &upstream.settings;
    let req = Request::from_parts(parts, Timed::from_client(body, settings.body_timeout));
    let metrics = &ctx.shared.metrics;
    match tokio::time::timeout(
        settings.response_timeout,
        upstream.send(req, &ctx.upstream_idle),
    )
    .await
    {
        Ok(Ok((mut resp, pooled))) => {
            let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            let protocol = resp.headers().get(header::UPGRADE).cloned();
            let allowed =
                hygiene::may_tunnel(upgrade, protocol.as_ref().map(HeaderValue::as_bytes));
            let tunnel = match downstream_upgrade {
                Some(down) if switching && allowed => Some((down, hyper::upgrade::on(&mut resp))),
                _ => None,
            };
            let (mut parts, body) = resp.into_parts();
            state.hygiene.response(&mut parts.headers);
            if let (Some((down, up)), Some(protocol)) = (tunnel, protocol) {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                parts.headers.insert(header::UPGRADE, protocol);
                tokio::spawn(tunnel_task(
                    down,
                    up,
                    ctx.clone(),
                    state.settings.limits.idle_timeout,
                ));
            } else if switching {
                metrics.upstream_error(UpstreamErrorKind::Protocol);
                tracing::warn!(peer = %ctx.peer, asked = ?upgrade, "the upstream switched protocols unasked, or to another protocol than asked: not tunneled");
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "the upstream switched protocols unasked",
                );
            }
            Response::from_parts(
                parts,
                Body::stream(body, settings.body_timeout).pooled(pooled),
            )
        }
        Ok(Err(e)) => {
            let (status, code, blame, message) = classify(&e);
            match blame {
                Blame::Upstream(kind) => {
                    metrics.upstream_error(kind);
                    tracing::warn!(peer = %ctx.peer, error = %error_chain(&e), "upstream request failed: {code}");
                }
                Blame::Client(kind) => {
                    metrics.client_error(kind);
                    tracing::debug!(peer = %ctx.peer, error = %error_chain(&e), "request refused: {code}");
                }
            }
            error_response(status, code, message)
        }
        Err(_) => {
            metrics.upstream_error(UpstreamErrorKind::Timeout);
            tracing::warn!(peer = %ctx.peer, timeout = ?settings.response_timeout, "upstream did not answer in time (upstream.response_timeout)");
            error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            )
        }
    }
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
    let mut down = hyper_util::rt::TokioIo::new(down);
    let mut up = hyper_util::rt::TokioIo::new(up);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => {
            if let Err(e) = r {
                tracing::debug!(peer = %ctx.peer, "tunnel ended: {e}");
            }
        }
        // The client side is the gateway's own connection, whose reads and writes
        // mark activity.
        () = ctx.activity.idle(crate::io::Idle::Io, idle) => tracing::debug!(peer = %ctx.peer, "closing idle tunnel"),
    }
}

/// Whose fault a failed exchange was, for the metrics.
enum Blame {
    Upstream(UpstreamErrorKind),
    Client(ClientErrorKind),
}

fn classify(e: &crate::upstream::SendError) -> (StatusCode, &'static str, Blame, &'static str) {
    let errors = || {
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |err| {
            err.source()
        })
    };
    // The client's own body first: a broken one also breaks the upstream exchange, and
    // the errors that follow from it are not the upstream's.
    if let Some(body) = errors().find_map(|err| err.downcast_ref::<crate::http::body::ClientBody>())
    {
        return if body.stalled() {
            (
                StatusCode::REQUEST_TIMEOUT,
                "request_body_timeout",
                Blame::Client(ClientErrorKind::RequestBodyTimeout),
                "the request body stalled",
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                "bad_request_body",
                Blame::Client(ClientErrorKind::BadRequestBody),
                "the request body is malformed or was cut short",
            )
        };
    }
    if errors().any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    }) {
        return (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            Blame::Upstream(UpstreamErrorKind::Timeout),
            "the upstream did not answer in time",
        );
    }
    if e.is_connect() {
        (
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            Blame::Upstream(UpstreamErrorKind::Connect),
            "the upstream cannot be reached",
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            Blame::Upstream(UpstreamErrorKind::Protocol),
            "the upstream closed the connection or sent an invalid response",
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths() {
        assert_eq!(
            admin_endpoint("/.trueip/healthz", "/.trueip", false),
            Some(Admin::Health)
        );
        assert_eq!(
            admin_endpoint("/.trueip/metrics", "/.trueip", false),
            Some(Admin::Metrics)
        );
        assert_eq!(admin_endpoint("/healthz", "/.trueip", false), None);
        assert_eq!(
            admin_endpoint("/healthz", "/.trueip", true),
            Some(Admin::Health)
        );
        assert_eq!(admin_endpoint("/metrics", "", true), Some(Admin::Metrics));
        assert_eq!(admin_endpoint("/.trueip/healthz", "", false), None);
        assert_eq!(admin_endpoint("/.trueip/other", "/.trueip", true), None);
    }
}
