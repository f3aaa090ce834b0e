//! Response and request bodies: streamed, with a stall timeout, and logged when done.
//!
//! Nothing here buffers a streamed body: frames pass through as they arrive. The
//! access-log line and the latency metric are written when the response body is
//! dropped — after its last byte went out, or when the client went away — so they
//! carry the real byte count and duration.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::{Metrics, UpstreamErrorKind};

/// Errors a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that stalled longer than its timeout.
#[derive(Debug)]
pub struct Stalled(pub Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body stalled for more than {:?}", self.0)
    }
}

impl std::error::Error for Stalled {}

/// The client's request body failed: its framing was broken (a malformed chunked
/// encoding), the client went away mid-body, or it stalled. The client's fault, never
/// the upstream's: it is answered 400 (408 when it stalled) and counted as a client error.
#[derive(Debug)]
pub struct ClientBody(pub BoxError);

impl ClientBody {
    /// Whether the body stalled (rather than broke).
    pub fn stalled(&self) -> bool {
        self.0.is::<Stalled>()
    }
}

impl std::fmt::Display for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body: {}", self.0)
    }
}

impl std::error::Error for ClientBody {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Whose body a [`Timed`] streams: whose fault it is when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    Client,
    Upstream,
}

/// Wraps a streamed body: fails when no frame arrives for `timeout`.
///
/// Nothing is armed (no clock read, no timer) while frames come as fast as they are
/// asked for: the wait starts when the inner body first has nothing to give, and the
/// timer is created then. It is not reset on every frame (a timer-wheel update per
/// chunk); when it fires, it is re-armed if the wait started later.
pub struct Timed<B> {
    inner: B,
    timeout: Duration,
    sender: Sender,
    /// When the current wait for a frame began; `None` right after a frame.
    waiting_since: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Timed<B> {
    /// Wraps `inner`, a body the upstream sends.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Timed {
            inner,
            timeout,
            sender: Sender::Upstream,
            waiting_since: None,
            sleep: None,
        }
    }

    /// Wraps `inner`, a body the client sends: its errors (broken framing, a stall)
    /// are [`ClientBody`] errors.
    pub fn from_client(inner: B, timeout: Duration) -> Self {
        Timed {
            sender: Sender::Client,
            ..Timed::new(inner, timeout)
        }
    }

    fn failed(&self, e: BoxError) -> BoxError {
        match self.sender {
            Sender::Client => Box::new(ClientBody(e)),
            Sender::Upstream => e,
        }
    }
}

impl<B> http_body::Body for Timed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting_since = None;
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(this.failed(e.into())))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let since = *this
            .waiting_since
            .get_or_insert_with(tokio::time::Instant::now);
        let deadline = crate::clock::deadline(since, this.timeout);
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            ready!(sleep.as_mut().poll(cx));
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(Some(Err(this.failed(Box::new(Stalled(this.timeout))))));
            }
            sleep.as_mut().reset(deadline);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One finished exchange, logged and measured when the response body is dropped.
pub struct Record {
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// Write an access-log line.
    pub access_log: bool,
    /// When the request arrived.
    pub start: Instant,
    /// The resolved client.
    pub client: IpAddr,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Where the client came from.
    pub source: trueip::Source,
    /// The header, when `source` is a single-address header.
    pub header: Option<trueip::FieldName>,
    /// What looked wrong.
    pub warnings: trueip::Warnings,
    /// The private endpoint the client came through, when the PROXY header that named
    /// it was believed.
    pub private_link: Option<trueip::PrivateLink>,
    /// Request method.
    pub method: Method,
    /// Request target (the log shows the path, not the query); kept only when the
    /// access log is on.
    pub uri: Option<http::Uri>,
    /// HTTP version.
    pub version: http::Version,
    /// Response status.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// The body ended with an error (upstream broke off, stalled).
    pub error: Option<String>,
    /// Keeps the connection from counting as idle until the body is done.
    pub in_flight: Option<crate::io::InFlight>,
    /// When the response was counted and logged, once it was.
    finished: Option<Instant>,
}

impl Record {
    /// A request that arrived at `start` from the connection's peer, before any
    /// decision: the peer stands as the client until the policy says otherwise. `uri`
    /// is only worth keeping when the access log is on.
    pub fn begin(
        ctx: &crate::server::ConnCtx,
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
            client: trueip::addr::normalize(ctx.peer.ip()),
            peer: ctx.peer,
            source: trueip::Source::Peer,
            header: None,
            warnings: trueip::Warnings::NONE,
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
    pub fn finish(mut self) -> Instant {
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
            let source = match (&self.source, &self.header) {
                (trueip::Source::Header, Some(name)) => name.to_string(),
                (source, _) => source.to_string(),
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
                warnings = (!self.warnings.is_empty()).then(|| tracing::field::display(self.warnings)),
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
    pub fn note(
        &mut self,
        ctx: &crate::server::ConnCtx,
        conn: &trueip::Connection,
        policy: &trueip::Policy,
        resolution: &trueip::Resolution,
    ) {
        ctx.shared.metrics.resolved(resolution);
        self.client = resolution.client.ip;
        self.source = resolution.source;
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
}

/// The body of every response the gateway sends.
pub struct Body {
    kind: Kind,
    record: Option<Box<Record>>,
    /// The upstream connection a streamed body came on: back to the pool when this
    /// body is dropped (declared last, so the upstream body is dropped first).
    pooled: Option<crate::upstream::Pooled>,
}

impl Body {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body {
            kind: Kind::Full(Some(bytes.into())),
            record: None,
            pooled: None,
        }
    }

    /// No body.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Full(None),
            record: None,
            pooled: None,
        }
    }

    /// An upstream body, streamed with a stall timeout.
    pub fn stream(inner: Incoming, timeout: Duration) -> Self {
        Body {
            kind: Kind::Stream(Timed::new(inner, timeout)),
            record: None,
            pooled: None,
        }
    }

    /// The bytes of a complete body; `None` for a streamed one.
    pub fn full_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Full(bytes) => Some(bytes.as_deref().unwrap_or_default()),
            Kind::Stream(_) => None,
        }
    }

    /// Returns the upstream connection to the pool when this body is done.
    pub fn pooled(mut self, pooled: crate::upstream::Pooled) -> Self {
        self.pooled = Some(pooled);
        self
    }

    /// Logs and measures the exchange when this body is done.
    pub fn record(mut self, record: Record) -> Self {
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(timed) => http_body::Body::size_hint(timed),
        }
    }
}

/// A short JSON error response: `{"error":"upstream_timeout","message":"..."}`.
pub fn error_response(status: http::StatusCode, code: &str, message: &str) -> http::Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message, "status": status.as_u16() })
        .to_string()
        + "\n";
    let mut resp = http::Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Chan(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for Chan {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_body_times_out_and_active_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let mut timed = Timed::new(Chan(rx), Duration::from_secs(10));
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let frame = timed.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let err = timed.frame().await.unwrap().unwrap_err();
        assert!(err.is::<Stalled>());
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_body_fails_as_the_clients_fault() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let mut timed = Timed::from_client(Chan(rx), Duration::from_secs(10));
        let err = timed.frame().await.unwrap().unwrap_err();
        let body = err
            .downcast_ref::<ClientBody>()
            .expect("a client body error");
        assert!(body.stalled(), "{body}");
    }
}
