//! The gateway's own pages, as pure functions from what a request asked to a status,
//! header lines and bytes: the whoami page, the admin endpoints, the error answers. Each
//! wire path writes a [`Page`] its own way.

pub(crate) mod whoami;

use http::StatusCode;

use crate::forgeries::Forgeries;
use crate::metrics::Metrics;
use crate::rules::Admin;
use crate::rules::failure::Answer;

/// One of the gateway's own responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    /// Header lines, the content type first (`Content-Length` goes right after it).
    pub(crate) headers: &'static [(&'static str, &'static str)],
    pub(crate) body: Vec<u8>,
}

/// The header lines of an admin page or an error answer. `nosniff` on every one:
/// `/forgeries` shows text clients wrote, and a browser that sniffed it as HTML would run
/// it with the admin listener's origin.
const fn lines(content_type: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("content-type", content_type),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ]
}

static JSON: [(&str, &str); 3] = lines("application/json");
static TEXT: [(&str, &str); 3] = lines("text/plain; charset=utf-8");
static PROMETHEUS: [(&str, &str); 3] = lines("text/plain; version=0.0.4; charset=utf-8");

/// What the admin pages show.
pub(crate) struct AdminView<'a> {
    /// Shutdown began.
    pub(crate) draining: bool,
    pub(crate) metrics: &'a Metrics,
    pub(crate) forgeries: &'a Forgeries,
    /// `[admin] forgeries`.
    pub(crate) forgeries_kept: usize,
    /// The request's query (`/forgeries?limit=N`).
    pub(crate) query: Option<&'a str>,
}

/// `/healthz` (503 `draining` once shutdown began), `/metrics` or `/forgeries` (JSON,
/// newest first; 400 for a bad `?limit=`).
pub(crate) fn admin(which: Admin, view: &AdminView<'_>) -> Page {
    let (status, headers, body) = match which {
        Admin::Health if view.draining => {
            (StatusCode::SERVICE_UNAVAILABLE, &TEXT, b"draining\n".to_vec())
        }
        Admin::Health => (StatusCode::OK, &TEXT, b"ok\n".to_vec()),
        Admin::Metrics => (StatusCode::OK, &PROMETHEUS, view.metrics.render().into_bytes()),
        Admin::Forgeries => match crate::forgeries::limit(view.query) {
            Ok(limit) => (
                StatusCode::OK,
                &JSON,
                view.forgeries.render(limit.unwrap_or(usize::MAX), view.forgeries_kept),
            ),
            Err(message) => (
                StatusCode::BAD_REQUEST,
                &JSON,
                json_error(StatusCode::BAD_REQUEST, "bad_argument", &message),
            ),
        },
    };
    Page { status, headers, body }
}

/// A short JSON error answer: `{"error":"upstream_timeout","message":"...","status":504}`.
pub(crate) fn error(answer: &Answer) -> Page {
    Page {
        status: answer.status,
        headers: &JSON,
        body: json_error(answer.status, answer.code, answer.message),
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "error": code,
        "message": message,
        "status": status.as_u16(),
    });
    (body.to_string() + "\n").into_bytes()
}
