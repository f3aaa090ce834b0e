//! The two wire paths, each a codec over the same rules ([`crate::rules`]) and pages
//! ([`crate::pages`]):
//!
//! - [`lean`]: plain HTTP/1.1 requests without a body, in cleartext or over TLS — parse,
//!   frame, timers — handing anything else to hyper at a request boundary;
//! - [`hyper`]: everything else (HTTP/2, bodies, upgrades, unusual requests);
//! - [`body`]: the response body hyper sends, and the record every exchange leaves
//!   (metrics, access log), whichever path served it.

pub(crate) mod body;
pub(crate) mod hyper;
pub(crate) mod lean;

use std::fmt::Display;
use std::time::Instant;

use http::HeaderValue;
use trueip::headers::Headers;
use trueip::{Resolution, Warnings};

use crate::context::{ConnCtx, State};
use crate::forgeries::{self, Entry};
use crate::logging::Throttle;
use crate::pages::{self, Page};
use crate::rules::headers::UpstreamLine;
use crate::rules::{Blame, Facts, Failure};

/// Counts and logs a failure, and gives the page that answers it. `detail` may quote the
/// request (its target): it is logged in log mode ([`trueip::shown::log`]) as an operator may read it.
pub(crate) fn failed(ctx: &ConnCtx, failure: Failure, detail: &dyn Display) -> Page {
    let answer = failure.answer();
    let detail = trueip::shown::log_text(detail);
    let metrics = &ctx.shared.metrics;
    let code = answer.code;
    match answer.blame {
        Blame::Upstream(kind) => {
            metrics.upstream_error(kind);
            // One line per failed request: every stranger's request while the upstream
            // is down, each a write a slow stderr holds the worker in.
            static FAILED: Throttle = Throttle::new();
            if let Some(left_out) = FAILED.admit() {
                let not_logged = (left_out > 0).then_some(left_out);
                tracing::warn!(peer = %ctx.peer, error = %detail, not_logged, "upstream request failed: {code}");
            }
        }
        Blame::Client(kind) => {
            metrics.client_error(kind);
            tracing::debug!(peer = %ctx.peer, error = %detail, "request refused: {code}");
        }
        Blame::None => {
            tracing::debug!(peer = %ctx.peer, error = %detail, "request refused: {code}")
        }
    }
    pages::error(&answer)
}

/// What the header rules need to know of a request with `headers` (as received) that
/// asked for `host`, decided as `resolution`, on this connection; `request` is the
/// request line as the upstream receives it.
pub(crate) fn facts<'a, H: Headers + ?Sized>(
    ctx: &ConnCtx,
    state: &'a State,
    resolution: &'a Resolution,
    headers: &H,
    host: Option<&'a HeaderValue>,
    request: UpstreamLine<'a>,
) -> Facts<'a> {
    Facts::new(
        state.settings.policy_for(ctx.listener()),
        resolution,
        headers,
        ctx.scheme(resolution),
        host,
        ctx.destination(resolution).map(|d| d.port()),
        request,
    )
}

/// Keeps a request decided as `resolution`, of which the header rules stripped
/// `stripped` lines, seen at `now`, in the record of forgeries if it is one and the
/// record takes it ([`keeps_forgery`]): `lines` then hands over each received header
/// line (name, value, and a test of whether it was stripped, asked only of the lines
/// kept), of which the client-IP headers are kept (never the origin secret's value). A
/// clean request costs two integer tests: no lock, no allocation, no clock.
#[inline]
pub(crate) fn note_forgery(
    ctx: &ConnCtx,
    state: &State,
    resolution: &Resolution,
    asked: (&str, &str),
    stripped: u64,
    now: Instant,
    lines: impl FnOnce(&mut dyn FnMut(&str, &[u8], &dyn Fn() -> bool)),
) {
    if keeps_forgery(ctx, state, resolution.warnings, stripped, now) {
        keep_forgery(ctx, state, resolution, asked, stripped, lines);
    }
}

/// Whether a request decided with `warnings`, of which the header rules stripped
/// `stripped` lines, seen at `now` (its own clock reading), is a forgery the record keeps:
/// the record is on, and [`Forgeries::admit`](forgeries::Forgeries::admit) counts it and
/// lets it in. Asked once per request, as it counts; then [`keep_forgery`] builds its
/// entry.
#[inline]
pub(crate) fn keeps_forgery(
    ctx: &ConnCtx,
    state: &State,
    warnings: Warnings,
    stripped: u64,
    now: Instant,
) -> bool {
    state.settings.admin.forgeries > 0
        && forgeries::is_forgery(warnings, stripped)
        && ctx.shared.forgeries.admit(now)
}

/// Builds the entry of a request [`keeps_forgery`] let in (see [`note_forgery`]) and
/// records it.
#[cold]
pub(crate) fn keep_forgery(
    ctx: &ConnCtx,
    state: &State,
    resolution: &Resolution,
    (method, path): (&str, &str),
    stripped: u64,
    lines: impl FnOnce(&mut dyn FnMut(&str, &[u8], &dyn Fn() -> bool)),
) {
    let Some(listener) = ctx.listener().and_then(|id| state.settings.listener_index(id)) else {
        return;
    };
    let mut entry = Entry::new(&forgeries::Request {
        peer: ctx.peer,
        proxy_source: ctx.proxy.as_ref().and_then(|p| p.addrs).map(|a| a.source),
        listener,
        resolution,
        method,
        path,
        stripped,
    });
    let hygiene = &state.hygiene;
    let secret = hygiene.origin_secret();
    lines(&mut |name, value, was_stripped| {
        let is_secret = secret.is_some_and(|s| crate::rules::headers::same_name(s.as_str(), name));
        if !is_secret && hygiene.is_managed_spelled(name) {
            entry.line(name, value, was_stripped());
        }
    });
    ctx.shared.forgeries.record(entry, state.settings.admin.forgeries);
}
