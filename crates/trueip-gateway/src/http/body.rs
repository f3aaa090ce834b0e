//! The body of every response the gateway sends through hyper, and the record of each
//! exchange.
//!
//! Nothing here buffers a streamed body: frames pass through as they arrive. The
//! access-log line and the latency metric are written when the response body is
//! dropped — after its last byte went out, or when the client went away — so they
//! carry the real byte count and duration.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::upstream::raw::RawBody;
use crate::upstream::{BoxError, Stalled, Timed};
/// One finished exchange, logged and measured when the response body is dropped.
pub(crate) struct Record {
    /// Shared metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Write an access-log line.
    pub(crate) access_log: bool,
    /// When the request arrived.
    pub(crate) start: Instant,
    /// The resolved client: its address (without a port), or `unix:`.
    pub(crate) client: trueip::addr::Peer,
    /// The peer: a TCP peer's address and port, or `unix:`.
    pub(crate) peer: trueip::addr::Peer,
    /// Where the client came from.
    pub(crate) source: trueip::Source,
    /// The listener's own policy that decided (`None`: `[client_ip]`).
    pub(crate) policy: Option<std::sync::Arc<str>>,
    /// The header, when `source` is a single-address header.
    pub(crate) header: Option<trueip::FieldName>,
    /// The query argument or cookie, when `source` is one.
    pub(crate) param: Option<trueip::ParamName>,
    /// What looked wrong.
    pub(crate) warnings: trueip::Warnings,
    /// Client-IP header lines the header rules removed (rule `stripped_header` of the
    /// record of forgeries).
    pub(crate) stripped: u64,
    /// The private endpoint the client came through, when the PROXY header that named
    /// it was believed.
    pub(crate) private_link: Option<trueip::PrivateLink>,
    /// Request method.
    pub(crate) method: Method,
    /// Request target (the log shows the path, not the query); kept only when the
    /// access log is on.
    pub(crate) uri: Option<http::Uri>,
    /// HTTP version.
    pub(crate) version: http::Version,
    /// Response status.
    pub(crate) status: u16,
    /// Response body bytes sent.
    pub(crate) bytes: u64,
    /// The body ended with an error (upstream broke off, stalled).
    pub(crate) error: Option<String>,
    /// Keeps the connection from counting as idle until the body is done.
    pub(crate) in_flight: Option<crate::io::InFlight>,
    /// When the response was counted and logged, once it was.
    finished: Option<Instant>,
}

impl Record {
    /// A request that arrived at `start` from the connection's peer, before any
    /// decision: the peer stands as the client until the policy says otherwise. `uri`
    /// is only worth keeping when the access log is on.
    pub(crate) fn begin(
        ctx: &crate::context::ConnCtx,
        access_log: bool,
        start: Instant,
        method: Method,
        uri: Option<http::Uri>,
        version: http::Version,
    ) -> Self {
        Record {
            metrics: ctx.shared.metrics.clone(),
            access_log,
            start,
            client: ctx.peer.ip().map_or(ctx.peer, trueip::addr::Peer::from),
            peer: ctx.peer,
            source: trueip::Source::Peer,
            policy: None,
            header: None,
            param: None,
            warnings: trueip::Warnings::NONE,
            stripped: 0,
            private_link: None,
            method,
            uri,
            version,
            status: 0,
            bytes: 0,
            error: None,
            in_flight: Some(ctx.activity.begin_at(start)),
            finished: None,
        }
    }

    /// Counts the response and writes its access-log line now (dropping the record
    /// does the same), and returns the clock reading that ended it: the lean path
    /// times the wait for the next request from it instead of reading the clock again.
    pub(crate) fn finish(mut self) -> Instant {
        self.finish_now()
    }

    fn finish_now(&mut self) -> Instant {
        if let Some(at) = self.finished {
            return at;
        }
        let now = Instant::now();
        self.finished = Some(now);
        let elapsed = now.saturating_duration_since(self.start);
        self.metrics.responded(self.status, elapsed);
        if let Some(in_flight) = self.in_flight.take() {
            in_flight.end_at(now);
        }
        if self.access_log {
            let source = match (&self.source, &self.header, &self.param) {
                (trueip::Source::Header, Some(name), _) => name.to_string(),
                (source @ (trueip::Source::Query | trueip::Source::Cookie), _, Some(name)) => {
                    format!("{source}:{name}")
                }
                (source, _, _) => source.to_string(),
            };
            tracing::info!(
                target: "trueip::access",
                client = %self.client,
                peer = %self.peer,
                method = %self.method,
                path = %self.uri.as_ref().map_or("", |u| u.path()),
                version = ?self.version,
                status = self.status,
                bytes = self.bytes,
                duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
                source = %source,
                policy = %self.policy.as_deref().unwrap_or("client_ip"),
                warnings = (!self.warnings.is_empty()).then(|| tracing::field::display(self.warnings)),
                stripped = (self.stripped > 0).then_some(self.stripped),
                aws_vpce_id = self.private_link.as_ref().and_then(|l| l.aws_vpce_id.as_deref()),
                azure_link_id = self.private_link.as_ref().and_then(|l| l.azure_link_id),
                error = self.error.as_deref(),
            );
        }
        now
    }
}

impl Record {
    /// Counts the decision in the metrics and keeps what the access log shows of it.
    pub(crate) fn note(
        &mut self,
        ctx: &crate::context::ConnCtx,
        conn: &trueip::Connection,
        settings: &crate::config::Settings,
        resolution: &trueip::Resolution,
    ) {
        ctx.shared.metrics.resolved(resolution);
        let index = ctx.listener().and_then(|id| settings.listener_index(id));
        if let Some(i) = index {
            ctx.shared.metrics.decided_on(i);
        }
        let own = index.and_then(|i| settings.own_policy_at(i));
        let policy = own.map_or(&settings.policy, |o| &o.policy);
        self.policy = own.map(|o| o.name.clone());
        if resolution
            .warnings
            .contains(trueip::Warnings::UNTRUSTED_HEADER)
        {
            ctx.shared
                .hints
                .untrusted_forwarding(resolution.effective_peer(), own.and(index));
        }
        self.client = resolution
            .client
            .ip()
            .map_or(resolution.client, trueip::addr::Peer::from);
        self.source = resolution.source;
        if matches!(
            resolution.source,
            trueip::Source::Query | trueip::Source::Cookie
        ) {
            self.param = resolution
                .strategy
                .and_then(|i| policy.strategy_param(i))
                .cloned();
        }
        if resolution.source == trueip::Source::Header {
            self.header = resolution
                .strategy
                .and_then(|i| policy.strategy_header(i))
                .cloned();
        }
        self.warnings = resolution.warnings;
        self.private_link = conn.private_link_for(resolution).cloned();
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.finish_now();
    }
}

enum Kind {
    Full(Option<Bytes>),
    Stream(Timed<Incoming>),
    Raw(Timed<RawBody>),
}

/// The body of every response the gateway sends.
pub(crate) struct Body {
    kind: Kind,
    record: Option<Box<Record>>,
    /// The upstream connection a streamed body came on: back to the pool when this
    /// body is dropped (declared last, so the upstream body is dropped first).
    pooled: Option<crate::upstream::Pooled>,
}

impl Body {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Body {
            kind: Kind::Full(Some(bytes.into())),
            record: None,
            pooled: None,
        }
    }

    /// No body.
    pub(crate) fn empty() -> Self {
        Body {
            kind: Kind::Full(None),
            record: None,
            pooled: None,
        }
    }

    /// An upstream body, streamed with a stall timeout.
    pub(crate) fn stream(inner: Incoming, timeout: Duration) -> Self {
        Body {
            kind: Kind::Stream(Timed::new(inner, timeout)),
            record: None,
            pooled: None,
        }
    }

    /// An upstream body read from a bare connection, streamed with a stall timeout.
    pub(crate) fn raw(inner: RawBody, timeout: Duration) -> Self {
        Body {
            kind: Kind::Raw(Timed::new(inner, timeout)),
            record: None,
            pooled: None,
        }
    }

    /// Returns the upstream connection to the pool when this body is done.
    pub(crate) fn pooled(mut self, pooled: crate::upstream::Pooled) -> Self {
        self.pooled = Some(pooled);
        self
    }

    /// Logs and measures the exchange when this body is done.
    pub(crate) fn record(mut self, record: Record) -> Self {
        self.record = Some(Box::new(record));
        self
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(timed) => Pin::new(timed).poll_frame(cx),
            Kind::Raw(timed) => Pin::new(timed).poll_frame(cx),
        };
        if let Some(record) = &mut this.record {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        record.bytes += data.len() as u64;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if e.is::<Stalled>() {
                        record
                            .metrics
                            .upstream_error(UpstreamErrorKind::BodyTimeout);
                    } else {
                        record.metrics.upstream_error(UpstreamErrorKind::Protocol);
                    }
                    record.error = Some(e.to_string());
                }
                _ => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(timed) => http_body::Body::is_end_stream(timed),
            Kind::Raw(timed) => http_body::Body::is_end_stream(timed),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(timed) => http_body::Body::size_hint(timed),
            Kind::Raw(timed) => http_body::Body::size_hint(timed),
        }
    }
}
