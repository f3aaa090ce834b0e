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

use crate::io::SendWait;
use crate::metrics::{ClientErrorKind, Metrics, UpstreamErrorKind};
use crate::rules::headers;
use crate::upstream::raw::RawBody;
use crate::upstream::{BoxError, Stalled, Timed};

/// The most characters of a request's path an access-log line shows: a client may send a
/// 64 KiB path, and up to 8192 lines wait in the log's queue while stdout is slow. A
/// longer path is cut, and the line gives its length (`path_bytes`).
const PATH_SHOWN: usize = 1024;

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

    /// [`Record::finish`] without giving the record up: the response ended now. A later
    /// `finish` returns the same reading.
    pub(crate) fn end(&mut self) -> Instant {
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
            let path_bytes = self.uri.as_ref().map_or("", |u| u.path()).as_bytes();
            let path = trueip::shown::Log::at_most(path_bytes, PATH_SHOWN);
            tracing::info!(
                target: "trueip::access",
                client = %self.client,
                peer = %self.peer,
                method = %self.method,
                path = %path,
                path_bytes = path.is_cut().then_some(path_bytes.len()),
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
        if resolution.warnings.contains(trueip::Warnings::UNTRUSTED_HEADER) {
            ctx.shared.hints.untrusted_forwarding(resolution.effective_peer(), own.and(index));
        }
        self.client = resolution.client.ip().map_or(resolution.client, trueip::addr::Peer::from);
        self.source = resolution.source;
        if matches!(resolution.source, trueip::Source::Query | trueip::Source::Cookie) {
            self.param = resolution.strategy.and_then(|i| policy.strategy_param(i)).cloned();
        }
        if resolution.source == trueip::Source::Header {
            self.header = resolution.strategy.and_then(|i| policy.strategy_header(i)).cloned();
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

/// The streamed kinds are boxed: a response is moved whole many times on its way to the
/// client (and into an HTTP/2 stream's task), and most answers, those of the bare
/// exchange, come whole with their head (`Full`).
enum Kind {
    Full(Option<Bytes>),
    Stream(Box<Streamed>),
    /// Over 250 bytes: the connection, its buffer, the pool lease.
    Raw(Box<Timed<RawBody>>),
    /// An upstream body that broke off, and why, until hyper is told.
    Broken(Option<BoxError>),
}

/// A body from hyper's client, with its connection's place in the pool.
struct Streamed {
    body: Timed<Incoming>,
    /// Back to the pool when this is dropped: declared last, so the body is dropped first.
    _pooled: crate::upstream::Pooled,
}

impl Kind {
    /// The next frame; upstream trailers under the rule response heads go by
    /// ([`headers::response`]): a hop-by-hop field is the upstream connection's, and
    /// HTTP/2 refuses to send one (the whole response would fail).
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match self {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => http_body::Body::poll_frame(Pin::new(&mut s.body), cx),
            Kind::Raw(timed) => http_body::Body::poll_frame(Pin::new(&mut **timed), cx),
            Kind::Broken(why) => return Poll::Ready(why.take().map(Err)),
        };
        // A body that breaks off is cut on the poll after the one that met the break, so
        // that what hyper holds of the response (its head, the chunks before) goes out
        // first, as on the lean path: hyper's HTTP/1.1 server flushes when a body waits,
        // and drops what it holds when a body fails. Cut at once, the client got the head
        // or nothing, as the upstream's bytes happened to arrive together or apart.
        let mut polled = match polled {
            Poll::Ready(Some(Err(why))) => {
                *self = Kind::Broken(Some(why));
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            other => other,
        };
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            headers::response(trailers);
        }
        polled
    }
}

/// The most of a body handed to hyper's HTTP/2 server at once: a frame's worth (h2's
/// default `SETTINGS_MAX_FRAME_SIZE`, which it splits larger chunks into anyway).
///
/// hyper asks for the next chunk once the client's window has room for the one before,
/// and that request is all the send timeout sees of the client's progress
/// ([`SendWait`]). An upstream chunk can be as large as hyper's read buffer (400 KiB):
/// whole, a client reading steadily at less than 7 KiB/s would not make room for one
/// within the default 60 s, and would be cut as a stalled one; in frames, only one
/// reading less than 16 KiB a minute is.
const H2_PIECE: usize = 16 * 1024;

/// A body's part in its HTTP/2 stream's send timeout.
struct OnStream {
    wait: Arc<SendWait>,
    /// Pieces handed over so far.
    handed: u64,
    /// What is left of the last chunk, after the pieces handed over.
    rest: Bytes,
}

/// The body of every response the gateway sends.
pub(crate) struct Body {
    kind: Kind,
    record: Option<Box<Record>>,
    /// On an HTTP/2 stream: what the stream's send timeout is told.
    send: Option<OnStream>,
}

impl Body {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Body { kind: Kind::Full(Some(bytes.into())), record: None, send: None }
    }

    /// No body.
    pub(crate) fn empty() -> Self {
        Body { kind: Kind::Full(None), record: None, send: None }
    }

    /// An upstream body, streamed with a stall timeout; its connection goes back to the
    /// pool when this body is done.
    pub(crate) fn stream(
        inner: Incoming,
        timeout: Duration,
        pooled: crate::upstream::Pooled,
    ) -> Self {
        Body {
            kind: Kind::Stream(Box::new(Streamed {
                body: Timed::new(inner, timeout),
                _pooled: pooled,
            })),
            record: None,
            send: None,
        }
    }

    /// An upstream body read from a bare connection, streamed with a stall timeout.
    pub(crate) fn raw(inner: RawBody, timeout: Duration) -> Self {
        Body { kind: Kind::Raw(Box::new(Timed::new(inner, timeout))), record: None, send: None }
    }

    /// Logs and measures the exchange when this body is done.
    pub(crate) fn record(mut self, record: Box<Record>) -> Self {
        self.record = Some(record);
        self
    }

    /// In an HTTP/2 stream's task: goes out in pieces of [`H2_PIECE`] and tells the
    /// stream's send timeout when one waits for the client's credit. Elsewhere (HTTP/1,
    /// whose writes the socket's timer sees) it changes nothing.
    pub(crate) fn watched(mut self) -> Self {
        self.send =
            SendWait::current().map(|wait| OnStream { wait, handed: 0, rest: Bytes::new() });
        self
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let (Some(on), Some(record)) = (&self.send, &mut self.record)
            && on.wait.timed_out()
        {
            record.metrics.client_error(ClientErrorKind::SendTimeout);
            record.error =
                Some("no flow-control credit from the client for limits.send_timeout".into());
            tracing::debug!(peer = %record.peer, "HTTP/2 stream reset: no flow-control credit for limits.send_timeout");
        }
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
        let polled = match &mut this.send {
            Some(on) => {
                on.wait.asked();
                let polled = if on.rest.is_empty() {
                    this.kind.poll_frame(cx)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut on.rest)))))
                };
                match polled {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(mut data) if !data.is_empty() => {
                            if data.len() > H2_PIECE {
                                on.rest = data.split_off(H2_PIECE);
                            }
                            on.handed += 1;
                            on.wait.handed(on.handed);
                            Poll::Ready(Some(Ok(Frame::data(data))))
                        }
                        Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                        Err(frame) => Poll::Ready(Some(Ok(frame))),
                    },
                    other => other,
                }
            }
            None => this.kind.poll_frame(cx),
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
                        record.metrics.upstream_error(UpstreamErrorKind::BodyTimeout);
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
        if self.send.as_ref().is_some_and(|on| !on.rest.is_empty()) {
            return false;
        }
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(s) => http_body::Body::is_end_stream(&s.body),
            Kind::Raw(timed) => http_body::Body::is_end_stream(&**timed),
            Kind::Broken(why) => why.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(s) => http_body::Body::size_hint(&s.body),
            Kind::Raw(timed) => http_body::Body::size_hint(&**timed),
            Kind::Broken(_) => SizeHint::default(),
        };
        let rest = self.send.as_ref().map_or(0, |on| on.rest.len() as u64);
        if rest > 0 {
            // The upper bound first: the lower may never pass it.
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(rest));
            }
            hint.set_lower(hint.lower().saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    /// On an HTTP/2 stream a body goes out in frame-sized pieces, says it has more until
    /// the last, and its size hint counts what is held back.
    #[tokio::test]
    async fn on_an_h2_stream_a_body_goes_out_in_pieces() {
        let wait = Arc::new(SendWait::default());
        crate::io::on_test_stream(wait.clone(), async {
            let mut body = Body::full(vec![b'x'; 2 * H2_PIECE + 100]).watched();
            let mut pieces = Vec::new();
            while let Some(frame) = body.frame().await {
                let data = frame.unwrap().into_data().unwrap();
                pieces.push(data.len());
                let left = (2 * H2_PIECE + 100 - pieces.iter().sum::<usize>()) as u64;
                assert_eq!(body.size_hint().exact(), Some(left));
                assert_eq!(body.is_end_stream(), left == 0);
            }
            assert_eq!(pieces, [H2_PIECE, H2_PIECE, 100]);
        })
        .await;
        assert!(!wait.timed_out());
        // Outside a stream's task: one piece, as before.
        let mut body = Body::full(vec![b'x'; 2 * H2_PIECE]).watched();
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data.len(), 2 * H2_PIECE);
    }

    /// A response is moved whole several times on its way to the client and into an
    /// HTTP/2 stream's task: past 256 bytes, each move takes memcpy's long path.
    #[test]
    fn a_response_is_cheap_to_move() {
        let size = size_of::<http::Response<Body>>();
        assert!(size <= 256, "Response<Body> is {size} bytes");
    }
}
