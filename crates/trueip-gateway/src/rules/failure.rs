//! What the client and the operator see when the gateway has no upstream response to pass
//! on: one table, from why to the status, the error code, the message and the metric.

use http::StatusCode;

use crate::metrics::{ClientErrorKind, UpstreamErrorKind};

/// Why a request gets one of the gateway's error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// More header lines than `limits.max_headers`.
    TooManyHeaders,
    /// A path the admin listener does not serve.
    NotFound,
    /// The request target cannot be written for the upstream.
    Target,
    /// The request carries more than one `Host` field.
    SeveralHosts,
    /// No connection to the upstream could be opened.
    Unreachable,
    /// The TLS handshake with an `https://` upstream failed (its certificate refused).
    Tls,
    /// No connection, or no response head, within the time allowed.
    Timeout,
    /// The connection broke, or the answer was not HTTP.
    Broken,
    /// The upstream switched protocols unasked, or to another protocol than asked.
    Unasked,
    /// The client began a request head and did not finish it within
    /// `limits.header_read_timeout` (a connection that sent nothing closes silently).
    HeadTimeout,
    /// The client's request body stalled longer than `upstream.body_timeout`.
    BodyStalled,
    /// The client's request body had broken framing, or was cut short.
    BodyBroken,
    /// The host the request names (Host, or X-Forwarded-Host from a trusted hop) is not
    /// in `headers.allowed_hosts`.
    HostNotAllowed,
}

/// Whose fault a failure was, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blame {
    /// The upstream's (`trueip_upstream_errors_total`).
    Upstream(UpstreamErrorKind),
    /// The client's own (`trueip_client_errors_total`, never an upstream error).
    Client(ClientErrorKind),
    /// Nobody's: a request the gateway does not serve.
    None,
}

/// The answer to a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The `error` field of the JSON body.
    pub(crate) code: &'static str,
    pub(crate) message: &'static str,
    pub(crate) blame: Blame,
}

impl Failure {
    /// The answer the client gets.
    pub(crate) fn answer(self) -> Answer {
        let (status, code, message, blame) = match self {
            Failure::TooManyHeaders => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too_many_headers",
                "the request has more header lines than limits.max_headers",
                Blame::Client(ClientErrorKind::HeadersOverLimit),
            ),
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "the admin listener serves /healthz and /metrics",
                Blame::None,
            ),
            Failure::Target => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request target cannot be forwarded",
                Blame::None,
            ),
            Failure::SeveralHosts => (
                StatusCode::BAD_REQUEST,
                "several_hosts",
                "the request has more than one Host header line",
                Blame::Client(ClientErrorKind::SeveralHosts),
            ),
            Failure::Unreachable => (
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "the upstream cannot be reached",
                Blame::Upstream(UpstreamErrorKind::Connect),
            ),
            Failure::Tls => (
                StatusCode::BAD_GATEWAY,
                "upstream_tls",
                "the upstream's TLS certificate was refused, or it spoke no TLS",
                Blame::Upstream(UpstreamErrorKind::Tls),
            ),
            Failure::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
                Blame::Upstream(UpstreamErrorKind::Timeout),
            ),
            Failure::Broken => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream closed the connection or sent an invalid response",
                Blame::Upstream(UpstreamErrorKind::Protocol),
            ),
            Failure::Unasked => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream switched protocols unasked",
                Blame::Upstream(UpstreamErrorKind::Protocol),
            ),
            Failure::HeadTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_header_timeout",
                "the request head did not arrive within limits.header_read_timeout",
                Blame::Client(ClientErrorKind::HeaderTimeout),
            ),
            Failure::BodyStalled => (
                StatusCode::REQUEST_TIMEOUT,
                "request_body_timeout",
                "the request body stalled",
                Blame::Client(ClientErrorKind::RequestBodyTimeout),
            ),
            Failure::BodyBroken => (
                StatusCode::BAD_REQUEST,
                "bad_request_body",
                "the request body is malformed or was cut short",
                Blame::Client(ClientErrorKind::BadRequestBody),
            ),
            // 421 Misdirected Request (RFC 9110 §15.5.20), not 400: the request is well
            // formed, it names a host this gateway does not serve. An HTTP/2 client that
            // coalesced connections retries on one of its own; 400 would call it broken.
            Failure::HostNotAllowed => (
                StatusCode::MISDIRECTED_REQUEST,
                "host_not_allowed",
                "this gateway does not serve the host this request names: add it to [headers] allowed_hosts in the trueip config, or send the request to a host it serves",
                Blame::Client(ClientErrorKind::HostNotAllowed),
            ),
        };
        Answer { status, code, message, blame }
    }
}
