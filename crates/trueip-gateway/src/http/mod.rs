//! The two wire paths, each a codec over the same rules ([`crate::rules`]) and pages
//! ([`crate::pages`]):
//!
//! - [`lean`]: plain HTTP/1.1 requests without a body on cleartext listeners — parse,
//!   frame, timers — handing anything else to hyper at a request boundary;
//! - [`hyper`]: everything else (HTTP/2, TLS, bodies, upgrades, unusual requests);
//! - [`body`]: the response body hyper sends, and the record every exchange leaves
//!   (metrics, access log), whichever path served it.

pub(crate) mod body;
pub(crate) mod hyper;
pub(crate) mod lean;

use std::fmt::Display;

use http::HeaderValue;
use trueip::Resolution;
use trueip::headers::Headers;

use crate::context::{ConnCtx, State};
use crate::pages::{self, Page};
use crate::rules::{Blame, Facts, Failure};

/// Counts and logs a failure, and gives the page that answers it.
pub(crate) fn failed(ctx: &ConnCtx, failure: Failure, detail: &dyn Display) -> Page {
    let answer = failure.answer();
    let metrics = &ctx.shared.metrics;
    let code = answer.code;
    match answer.blame {
        Blame::Upstream(kind) => {
            metrics.upstream_error(kind);
            tracing::warn!(peer = %ctx.peer, error = %detail, "upstream request failed: {code}");
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
/// asked for `host`, decided as `resolution`, on this connection.
pub(crate) fn facts<'a, H: Headers + ?Sized>(
    ctx: &ConnCtx,
    state: &State,
    resolution: &'a Resolution,
    headers: &H,
    host: Option<&'a HeaderValue>,
) -> Facts<'a> {
    Facts::new(
        state.settings.policy_for(ctx.listener()),
        resolution,
        headers,
        ctx.scheme(),
        host,
        ctx.destination().map(|d| d.port()),
    )
}
