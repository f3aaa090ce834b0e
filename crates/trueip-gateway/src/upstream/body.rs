//! Bodies to and from the upstream, streamed with a stall timeout.
//!
//! The client's request body goes upstream through [`Timed::from_client`], the
//! upstream's response body comes back through [`Timed::new`]: a body that gives no
//! frame for `upstream.body_timeout` fails, and the failure says whose fault it was. Of
//! a client's body only the frames [`headers::request_frame_goes_upstream`] lets through
//! go on: never its trailers.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::rules::headers;

/// Errors a body can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that stalled longer than its timeout.
#[derive(Debug)]
pub(crate) struct Stalled(pub Duration);

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
pub(crate) struct ClientBody(pub BoxError);

impl ClientBody {
    /// Whether the body stalled (rather than broke).
    pub(crate) fn stalled(&self) -> bool {
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
pub(crate) struct Timed<B> {
    inner: B,
    timeout: Duration,
    sender: Sender,
    /// When the current wait for a frame began; `None` right after a frame.
    waiting_since: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Timed<B> {
    /// Wraps `inner`, a body the upstream sends.
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Timed { inner, timeout, sender: Sender::Upstream, waiting_since: None, sleep: None }
    }

    /// Wraps `inner`, a body the client sends: its errors (broken framing, a stall)
    /// are [`ClientBody`] errors.
    pub(crate) fn from_client(inner: B, timeout: Duration) -> Self {
        Timed { sender: Sender::Client, ..Timed::new(inner, timeout) }
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
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.waiting_since = None;
                    if this.sender == Sender::Client
                        && !headers::request_frame_goes_upstream(&frame)
                    {
                        tracing::debug!("a client's request trailers are not forwarded");
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(this.failed(e.into()))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        let since = *this.waiting_since.get_or_insert_with(tokio::time::Instant::now);
        let deadline = crate::clock::deadline(since, this.timeout);
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
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

#[cfg(test)]
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
        let body = err.downcast_ref::<ClientBody>().expect("a client body error");
        assert!(body.stalled(), "{body}");
    }
}
