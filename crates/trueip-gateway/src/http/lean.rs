//! The lean HTTP/1.1 path: the common request, served without hyper.
//!
//! Why this is ours: proxying through hyper costs a `HeaderMap` built and hashed for
//! the request and again for the response, a task and two channels per upstream
//! exchange, and a timer re-armed per request — about twice nginx's user time per
//! proxied request on the bench (`bench/gateway.sh`). This path parses the head with
//! `httparse` (hyper's own parser), applies the same [`Hygiene`] rules to the raw
//! lines, writes the upstream request head in one buffer, and copies the upstream's
//! response through, on the connection's own task.
//!
//! It takes only requests it can serve exactly as the hyper path would, and hands
//! anything else — at a request boundary, with every byte read so far — to hyper:
//! HTTP/1.0, `CONNECT`, absolute-form targets, any request body (one `Content-Length: 0`
//! line is no body), `Expect`, `Upgrade`, `Connection` (but for `Connection: close`),
//! `Transfer-Encoding` or other hop-by-hop headers, header names with underscores,
//! several lines of one client-IP header or of `Host`, the admin endpoints, an HTTP/2
//! preface, a malformed or oversized head (hyper answers 400/431). So hyper still owns
//! every unusual case, and this path only has to be right for plain requests without a
//! body. `tests/differential.rs` holds it to that: the same requests, sent through both
//! paths, must reach the upstream with the same headers (and be refused alike). The
//! upstream's response is streamed as it comes (`Content-Length`, chunked, or until
//! close), with the same timeouts (`upstream.response_timeout`, `upstream.body_timeout`,
//! `limits.header_read_timeout`).

use std::future::Future;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use http::{HeaderValue, Method, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use trueip::headers::{FieldName, Headers};
use trueip::{Decision, Resolution};

use crate::context::{ConnCtx, State, Wait};
use crate::http::body::Record;
use crate::http::{facts, failed, note_forgery};
use crate::io::{Idle, InBuf, KEEP_BETWEEN_REQUESTS, Tracked};
use crate::metrics::UpstreamErrorKind;
use crate::pages::{Page, whoami};
use crate::rules::headers::{self, Kept, UpstreamLine, valid_value};
use crate::rules::limits::Lines;
use crate::rules::{self, Failure, Fate, Route};
use crate::upstream::raw::{self, Failed, Framing, Step};
use crate::upstream::{self, Delivery, RawConn, Upstream};

/// The most headers a lean request or upstream response may carry; more go to hyper
/// (requests) or fail (responses, as in hyper's client).
const MAX_HEADERS: usize = 100;

/// Room for [`MAX_HEADERS`] parsed header lines, left uninitialised: httparse fills the
/// ones a head has and hands back only those. Zeroing all 100 (3.2 KB) on every request
/// cost more than parsing a typical head.
fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The same room as [`header_slots`], in a vector kept with a connection's [`Buffers`]
/// and lent to each request's lines (which borrow the bytes read): an empty vector
/// keeps its allocation through this `collect`, whatever lifetime its elements name.
/// Slots in the request's future instead made that future 3.2 KB larger, and it is
/// moved into its box for every connection (`memcpy`, callgrind, `PROTOCOL=close bash
/// bench/instructions.sh`).
fn lend<'a, 'b>(mut lines: Vec<httparse::Header<'a>>) -> Vec<httparse::Header<'b>> {
    lines.clear();
    // Empty: the `map` runs for no element.
    let mut lines: Vec<httparse::Header<'b>> =
        lines.into_iter().map(|_| httparse::EMPTY_HEADER).collect();
    lines.reserve(MAX_HEADERS);
    lines
}
/// Whether a request header sends the request to hyper: hop-by-hop headers, `Expect`,
/// and framing. This path frames no request body and honours no `Connection` token.
fn hyper_only(name: &str) -> bool {
    headers::is_hop_by_hop(name)
        || name.eq_ignore_ascii_case("expect")
        || name.eq_ignore_ascii_case("content-length")
}

/// Whether a `Connection` line only asks that the connection close after this response
/// (`close`, in any case, perhaps listed more than once): the one `Connection` line this
/// path serves, since a new connection per request is how many clients speak, and hyper
/// setting up behind the lean path for each of them cost more CPU than the request
/// (`bench/gateway.sh`, row `close`). It names no header but one called `Close`, which
/// this path leaves to hyper.
fn asks_close(value: &[u8]) -> bool {
    value.split(|&b| b == b',').all(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// What a lean connection keeps between requests: the bytes read, the response head
/// being written, and the gateway's own response bodies (whoami), each reused from
/// request to request.
pub(crate) struct Buffers {
    input: InBuf,
    out: Vec<u8>,
    scratch: Vec<u8>,
    /// Room for a request's parsed lines, always empty here (see [`lend`]).
    lines: Vec<httparse::Header<'static>>,
    /// The connection's deadline, from its PROXY header on; unset while kept. Here
    /// rather than in the lean path's future, which it would make larger than the
    /// size the allocator serves on its fast path.
    deadline: Deadline,
}

/// A new connection's input buffer, in bytes.
const INPUT_BYTES: usize = 8192;
/// A new connection's response head buffer, in bytes.
const OUT_BYTES: usize = 4096;
/// The largest whoami page buffer kept for another connection (a page is about 12 KiB).
const SCRATCH_KEPT: usize = 16 * 1024;
/// The most buffers a worker keeps for its next connections: at most 64 × 28 KiB.
const SPARES_MAX: usize = 64;

std::thread_local! {
    /// Buffers of lean connections that ended on this worker (each worker is one thread),
    /// for its next connections. A new buffer costs an allocation and, for the input
    /// buffer, 8 KiB of zeroing: a quarter of the user-space instructions of a request on
    /// a new connection (callgrind, `PROTOCOL=close bash bench/instructions.sh`). A kept
    /// buffer still holds the bytes of the connection that used it; `InBuf` hands out
    /// only the bytes read into it since (as every allocator hands back memory unzeroed).
    /// Boxed, a connection's future holds a pointer to them, not the four buffers' own
    /// fields: tokio copies a task's future when spawning it and when it ends.
    #[allow(clippy::vec_box, reason = "the box is what a connection's future holds")]
    static SPARES: std::cell::RefCell<Vec<Box<Buffers>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Buffers {
    fn new() -> Self {
        Buffers {
            input: InBuf::new(INPUT_BYTES),
            out: Vec::with_capacity(OUT_BYTES),
            scratch: Vec::new(),
            lines: Vec::with_capacity(MAX_HEADERS),
            deadline: Deadline::default(),
        }
    }

    /// A connection's buffers: a previous connection's from this worker, else new ones.
    pub(crate) fn take() -> Box<Self> {
        match SPARES.with_borrow_mut(Vec::pop) {
            Some(mut kept) => {
                kept.deadline.unpark();
                kept
            }
            None => Box::new(Buffers::new()),
        }
    }

    /// Keeps these buffers for this worker's next connection, emptied, unless a large
    /// request or page grew them (those are given back to the allocator) or enough are
    /// kept already.
    pub(crate) fn give_back(mut self: Box<Self>) {
        if self.input.capacity() > INPUT_BYTES
            || self.out.capacity() > OUT_BYTES
            || self.scratch.capacity() > SCRATCH_KEPT
        {
            return;
        }
        self.input.clear();
        self.out.clear();
        self.scratch.clear();
        self.deadline.park();
        SPARES.with_borrow_mut(|spares| {
            if spares.len() < SPARES_MAX {
                spares.push(self);
            }
        });
    }

    /// Gives back what one large request or page grew a buffer to, once its response
    /// is out: a connection holds [`KEEP_BETWEEN_REQUESTS`] per buffer at most while it
    /// waits (plus any pipelined bytes already read, which are never dropped).
    fn settle(&mut self) {
        self.input.shrink_to(KEEP_BETWEEN_REQUESTS);
        for buf in [&mut self.out, &mut self.scratch] {
            if buf.capacity() > KEEP_BETWEEN_REQUESTS {
                buf.clear();
                buf.shrink_to(KEEP_BETWEEN_REQUESTS);
            }
        }
    }

    /// The buffer requests are read into.
    pub(crate) fn input(&mut self) -> &mut InBuf {
        &mut self.input
    }

    /// The storage a PROXY header is read into (see [`InBuf::storage`]), and a
    /// future that completes `limit` after its first poll: the header's time, on the
    /// deadline the lean path goes on with (see [`Deadline::after`]).
    pub(crate) fn for_preamble(
        &mut self,
        limit: Duration,
    ) -> (&mut Vec<u8>, impl Future<Output = ()> + '_) {
        (self.input.storage(), self.deadline.after(limit))
    }

    /// The bytes of storage held.
    #[cfg(test)]
    fn retained(&self) -> usize {
        self.input.capacity() + self.out.capacity() + self.scratch.capacity()
    }
}

#[cfg(test)]
std::thread_local! {
    /// The most storage a lean connection on this thread kept between two requests: the
    /// tests' view of [`Buffers::retained`] (a test runtime runs the connections it
    /// starts on its own thread).
    static RETAINED_MAX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The most storage a lean connection on this thread kept between two requests.
#[cfg(test)]
pub(crate) fn retained_max() -> usize {
    RETAINED_MAX.get()
}

/// How the lean path left a connection.
pub(crate) enum After {
    /// Closed, or to be closed, after a whole response (or none): a TLS connection ends
    /// with close_notify.
    Closed,
    /// To be closed without close_notify: a response was broken off, and the client must
    /// not take the part it got for the whole.
    Aborted,
    /// Hyper serves the rest: `read` was read and not used. `opening`: no request was
    /// served before it, so it may still be HTTP/2's preface (which only opens a
    /// connection, RFC 9113 §3.3).
    Hyper { read: Bytes, opening: bool },
}

/// Received header lines and the request target's query, as the core library reads a request.
struct Raw<'a> {
    lines: &'a [httparse::Header<'a>],
    /// The part of the target after the first `?`, for `query:NAME` strategies.
    query: Option<&'a str>,
}

impl Headers for Raw<'_> {
    fn for_each_value<'b>(&'b self, name: &FieldName, mut f: impl FnMut(&'b [u8])) {
        for h in self.lines {
            if headers::is_lower_name(h.name, name.as_str()) {
                f(h.value);
            }
        }
    }

    fn query(&self) -> Option<&[u8]> {
        self.query.map(str::as_bytes)
    }
}

/// A waker for one of the connection's timers that notes when the timer fired, so that
/// the wake-ups for the socket (one or two per request) do not poll the timers too.
/// Polling a registered timer that has not fired finds nothing and costs a good deal:
/// the shutdown-or-idle future and the deadline's `Sleep` were about a twentieth of the
/// whoami path's instructions (callgrind, `bench/gateway.sh`'s request).
struct TimerWake {
    fired: Arc<Fired>,
    waker: Waker,
    /// The task `fired` wakes now (see [`TimerWake::due`]); `None` while nobody is woken.
    task: Option<Waker>,
    /// The timer must be polled whatever `fired` says: it was never polled with this
    /// waker, or it was aimed elsewhere since.
    stale: bool,
}

/// Set by the timer's wake-up, which it passes on to the connection's task.
struct Fired {
    fired: AtomicBool,
    /// Whom a fire wakes: the task of the connection that holds the timer now, or nobody
    /// while the timer waits in a worker's spare [`Buffers`]. Behind a lock because the
    /// timer can be handed to the next connection's task; a fire takes it (rarely).
    task: Mutex<Option<Waker>>,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Ok(task) = self.task.lock()
            && let Some(task) = task.as_ref()
        {
            task.wake_by_ref();
        }
    }
}

impl TimerWake {
    fn new() -> Self {
        let fired = Arc::new(Fired { fired: AtomicBool::new(false), task: Mutex::new(None) });
        TimerWake { waker: Waker::from(fired.clone()), fired, task: None, stale: true }
    }

    /// Whether the timer may have fired (or must be polled anyway); if so, it is then
    /// polled with [`TimerWake::waker`]. A fire after this call wakes `task`.
    fn due(&mut self, task: &Waker) -> bool {
        // A new task (the next connection's) polls the timer once: the last connection
        // may have found it fired and left it off the wheel, aimed at its own deadline.
        if !self.task.as_ref().is_some_and(|t| t.will_wake(task)) {
            self.wake(Some(task.clone()));
            self.stale = true;
        }
        let mut due = std::mem::take(&mut self.stale);
        // A fire between this load and the poll that follows is seen by that poll.
        if self.fired.fired.load(Ordering::Acquire) {
            self.fired.fired.store(false, Ordering::Relaxed);
            due = true;
        }
        due
    }

    /// Makes a fire wake `task` (or nobody).
    fn wake(&mut self, task: Option<Waker>) {
        if let Ok(mut woken) = self.fired.task.lock() {
            woken.clone_from(&task);
        }
        self.task = task;
    }
}

/// One deadline, checked by a timer armed lazily and re-armed only when it fires early:
/// moving the deadline later (every request) touches no timer. A connection has one,
/// from its PROXY header (see [`Deadline::after`]) to its close; then it waits with the
/// connection's [`Buffers`] for the worker's next connection, which aims it again.
/// Arming a new timer for every connection and taking it off tokio's wheel at its close
/// was about 960 instructions per connection (`PROTOCOL=close bash
/// bench/instructions.sh`), where the connection's upstream answer arms it.
#[derive(Default)]
struct Deadline {
    at: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The event loop `sleep` was made on: a timer is polled only on its own (a thread
    /// that ran one event loop and then another must not hand the first one's timer to
    /// the second).
    runtime: Option<tokio::runtime::Id>,
    wake: Option<TimerWake>,
}

impl Deadline {
    fn set(&mut self, at: tokio::time::Instant) {
        self.at = Some(at);
        // A timer aimed past the new deadline must be polled to be re-aimed; one aimed
        // before it fires early, and is re-aimed then.
        if let (Some(sleep), Some(wake)) = (&self.sleep, &mut self.wake)
            && sleep.deadline() > at
        {
            wake.stale = true;
        }
    }

    fn clear(&mut self) {
        self.at = None;
    }

    /// Kept between connections: unset, and a fire wakes nobody (the timer stays on the
    /// wheel, aimed where it was).
    fn park(&mut self) {
        self.at = None;
        if let Some(wake) = self.wake.as_mut() {
            wake.wake(None);
        }
    }

    /// Taken by a new connection: a timer of another event loop is dropped.
    fn unpark(&mut self) {
        if self.runtime.is_some()
            && self.runtime != tokio::runtime::Handle::try_current().ok().map(|h| h.id())
        {
            self.sleep = None;
            self.runtime = None;
        }
    }

    /// Completes once `limit` has passed since its first poll: the PROXY header's time
    /// (`read_preamble_until` polls it only while a read waits, so a header that came
    /// with the connection reads no clock and arms no timer). The timer a late header
    /// arms is the one the request head and the upstream's answer re-aim later.
    fn after(&mut self, limit: Duration) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.at.is_none() {
                self.set(crate::clock::deadline(tokio::time::Instant::now(), limit));
            }
            if self.poll_expired(cx) { Poll::Ready(()) } else { Poll::Pending }
        })
    }

    /// Whether the deadline passed; otherwise the waker is called when it may have.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.at else {
            return false;
        };
        let wake = self.wake.get_or_insert_with(TimerWake::new);
        if !wake.due(cx.waker()) {
            return false;
        }
        let mut cx = Context::from_waker(&wake.waker);
        let runtime = &mut self.runtime;
        let sleep = self.sleep.get_or_insert_with(|| {
            *runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
            Box::pin(tokio::time::sleep_until(at))
        });
        if sleep.deadline() > at {
            sleep.as_mut().reset(at);
        }
        let expired = loop {
            if sleep.as_mut().poll(&mut cx).is_pending() {
                break false;
            }
            if tokio::time::Instant::now() >= at {
                break true;
            }
            sleep.as_mut().reset(at);
        };
        // A timer that fired is off the wheel and fires no more: the connection may
        // outlive this deadline (a late upstream answer gets a 504 and the connection
        // stays open), and its next, later deadline must re-aim the timer rather than
        // wait for a fire that never comes.
        wake.stale |= expired;
        expired
    }
}

/// What tells a connection waiting for its next request to stop (shutdown, or idle for
/// too long).
struct StopSignal<'a> {
    /// The connection's stop ([`ConnCtx::stopped`]): registered at the first wait for a
    /// request that is not there yet, which a connection whose requests arrive with it
    /// (one per connection, the common case for clients that close) never makes. Polled
    /// at every wait: while registered, a poll is a load.
    stop: Wait<'a>,
    ctx: &'a ConnCtx,
    /// `limits.idle_timeout`, when it can end a wait before the head's deadline does
    /// ([`StopSignal::idle_before`]); `None` arms no idle timer.
    idle: Option<Duration>,
    /// The idle timer, made at the first wait; polled only when it may have fired (see
    /// [`TimerWake`]).
    timer: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
    wake: Option<TimerWake>,
}

impl StopSignal<'_> {
    /// `idle`, if a connection waiting for a request can reach it before its head's
    /// deadline (`header`): both count from one clock reading, the connection's start or
    /// the end of its last response, which is also when its activity last changed
    /// (`Activity::new_at`, `InFlight::end_at`). An idle limit no shorter than the
    /// head's never comes first (the deadline closes the connection as the idle limit
    /// would: silently, the buffer empty), and a timer for it was a registration on
    /// tokio's wheel and a removal for every connection whose request was not there at
    /// its first read.
    fn idle_before(idle: Duration, header: Duration) -> Option<Duration> {
        (idle < header).then_some(idle)
    }

    fn poll_stop(&mut self, cx: &mut Context<'_>) -> bool {
        if Pin::new(&mut self.stop).poll(cx).is_ready() {
            return true;
        }
        let Some(idle) = self.idle else {
            return false;
        };
        let wake = self.wake.get_or_insert_with(TimerWake::new);
        if !wake.due(cx.waker()) {
            return false;
        }
        let ctx = self.ctx;
        let timer =
            self.timer.get_or_insert_with(|| Box::pin(ctx.activity.idle(Idle::Requests, idle)));
        let mut cx = Context::from_waker(&wake.waker);
        timer.as_mut().poll(&mut cx).is_ready()
    }
}

enum Got {
    Data,
    Eof,
    Expired,
    Stop,
    Failed(io::Error),
}

/// Reads more bytes into `buf`, unless `deadline` passes or (when `stop` is given)
/// the connection is told to stop first.
async fn read_into<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut InBuf,
    deadline: &mut Deadline,
    mut stop: Option<&mut StopSignal<'_>>,
) -> Got {
    std::future::poll_fn(|cx| {
        let mut read = tokio::io::ReadBuf::new(buf.spare());
        match Pin::new(&mut *io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Got::Eof);
                }
                buf.grew(n);
                return Poll::Ready(Got::Data);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Got::Failed(e)),
            Poll::Pending => {}
        }
        if let Some(stop) = stop.as_mut()
            && stop.poll_stop(cx)
        {
            return Poll::Ready(Got::Stop);
        }
        if deadline.poll_expired(cx) {
            return Poll::Ready(Got::Expired);
        }
        Poll::Pending
    })
    .await
}

/// Where a request head ends (after its blank line), if it is all there.
pub(crate) fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = bytes.get(from..)?.iter().position(|&b| b == b'\n') {
        let at = from + i + 1;
        match bytes.get(at..) {
            Some([b'\n', ..]) => return Some(at + 1),
            Some([b'\r', b'\n', ..]) => return Some(at + 2),
            Some([]) | None => return None,
            _ => from = at,
        }
    }
    None
}

/// Request targets this path forwards byte for byte: RFC 3986 path and query
/// characters only (anything else, hyper decides).
fn plain_target(path: &str) -> bool {
    path.starts_with('/')
        && path.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'?'
                        | b'%'
                )
        })
}

/// Appends `data` as one chunk of a chunked body (nothing for no data: an empty chunk
/// would end the body).
fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn put_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the `date` line. It is formatted once a second per thread, and which second
/// it is is told from `now`, a clock reading the caller already has: the wall clock is
/// read only when the cached line's second has run out.
fn date(out: &mut Vec<u8>, now: Instant) {
    std::thread_local! {
        static CACHE: std::cell::RefCell<Option<(Instant, Vec<u8>)>> = const { std::cell::RefCell::new(None) };
    }
    CACHE.with_borrow_mut(|cache| {
        if let Some((until, line)) = cache.as_ref()
            && now < *until
        {
            out.extend_from_slice(line);
            return;
        }
        let wall = std::time::SystemTime::now();
        // The wall clock was read after `now`, so the second runs out no later than
        // this (if anything, the line is made again a little early).
        let into_second = wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Duration::ZERO, |d| Duration::from_nanos(u64::from(d.subsec_nanos())));
        let until =
            now.checked_add(Duration::from_secs(1).saturating_sub(into_second)).unwrap_or(now);
        let mut line = Vec::with_capacity(40);
        put_line(&mut line, "date", httpdate::fmt_http_date(wall).as_bytes());
        out.extend_from_slice(&line);
        *cache = Some((until, line));
    });
}

/// Writes the head of one of the gateway's own pages as HTTP/1.1, as of `now`.
fn page_head(out: &mut Vec<u8>, page: &Page, close: bool, now: Instant) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(page.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(page.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (i, &(name, value)) in page.headers.iter().enumerate() {
        put_line(out, name, value.as_bytes());
        if i == 0 {
            let _ = write!(out, "content-length: {}\r\n", page.body.len());
        }
    }
    end_head(out, close, now);
}

/// Writes one of the gateway's own pages (without its body for `HEAD`), as of `now`:
/// head and body in one `writev`, without copying the body behind the head.
async fn send_page(
    io: &mut Tracked,
    out: &mut Vec<u8>,
    page: &Page,
    record: &mut Record,
    head_only: bool,
    closing: bool,
    now: Instant,
) -> Sent {
    out.clear();
    page_head(out, page, closing, now);
    let body: &[u8] = if head_only { &[] } else { &page.body };
    record.status = page.status.as_u16();
    record.bytes = body.len() as u64;
    if closing {
        io.hold_until_close();
    }
    if io.write_all_buf(&mut out.as_slice().chain(body)).await.is_err() || closing {
        Sent::Close
    } else {
        Sent::KeepAlive
    }
}

/// Ends a response head the gateway wrote itself: `connection: close` when closing, the
/// date as of `now`, the blank line.
fn end_head(out: &mut Vec<u8>, close: bool, now: Instant) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    date(out, now);
    out.extend_from_slice(b"\r\n");
}

/// Whether `bytes` begin an HTTP/1 request head (so far valid, unfinished).
pub(crate) fn partial_request(bytes: &[u8]) -> bool {
    let mut lines = header_slots();
    let mut req = httparse::Request::new(&mut []);
    matches!(
        req.parse_with_uninit_headers(bytes, &mut lines),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders)
    )
}

/// Answers a request head that took longer than `limits.header_read_timeout` with 408
/// and `connection: close`, counted and logged as the client's, then ends the
/// connection (a TLS close_notify, a FIN); writing gets as long again (a client that
/// reads nothing does not hold the connection longer). Both wire paths answer a slow
/// head with this.
pub(crate) async fn head_timeout<W: AsyncWrite + Unpin>(
    io: &mut W,
    ctx: &ConnCtx,
    out: &mut Vec<u8>,
    limit: Duration,
) {
    let page =
        failed(ctx, Failure::HeadTimeout, &format_args!("no whole request head within {limit:?}"));
    out.clear();
    page_head(out, &page, true, Instant::now());
    out.extend_from_slice(&page.body);
    let _ = tokio::time::timeout(limit, async {
        io.write_all(out).await?;
        io.shutdown().await
    })
    .await;
}

/// What to do after one request.
enum Next {
    /// Read the next request: so many bytes of the buffer were used, and the response
    /// was done at this instant.
    KeepAlive(usize, Instant),
    Close,
    /// The response was broken off: see [`After::Aborted`].
    Abort,
    Hyper,
}

/// Serves requests on `io` while they are plain; hands the rest to hyper. `first`: the
/// buffers the connection's first bytes were read into already (after a PROXY header),
/// the first request read from them before anything else (with the deadline that timed
/// the header).
pub(crate) async fn serve(
    io: &mut Tracked,
    ctx: &Arc<ConnCtx>,
    first: Option<Box<Buffers>>,
) -> After {
    let mut bufs = first.unwrap_or_else(Buffers::take);
    let after = serve_with(io, ctx, &mut bufs).await;
    bufs.give_back();
    after
}

/// [`serve`], with the connection's buffers.
async fn serve_with(io: &mut Tracked, ctx: &Arc<ConnCtx>, bufs: &mut Buffers) -> After {
    let (header_timeout, max_head, idle) = {
        let state = ctx.shared.state.load();
        let l = &state.settings.limits;
        (l.header_read_timeout, l.max_header_bytes, l.idle_timeout)
    };
    // The settings, re-read only when a reload replaced them: a pointer comparison per
    // request instead of a reference count taken and dropped. (An idle connection keeps
    // the settings it last used alive until its next request or its close.)
    let mut state = arc_swap::Cache::new(&ctx.shared.state);
    let mut stop = StopSignal {
        stop: ctx.stopped(),
        ctx,
        idle: StopSignal::idle_before(idle, header_timeout),
        timer: None,
        wake: None,
    };
    // The latest clock reading, while nothing has waited since it was taken: the
    // connection's start, then the end of each response. The next head's deadline counts
    // from it, and a head found whole without waiting starts at it: a connection whose
    // request came with it reads the clock for its start once, not twice.
    let mut reading = Some(ctx.opened);
    // Whether a request was served: then what follows is HTTP/1.1, whatever it says.
    let mut served = false;
    let to_hyper = |read: &[u8], served: bool| After::Hyper {
        read: Bytes::copy_from_slice(read),
        opening: !served,
    };
    loop {
        bufs.deadline.clear();
        loop {
            let filled = bufs.input.filled();
            // Most heads arrive whole and end the buffer: then nothing needs scanning for
            // where they end (the parser finds it, and the limit is checked on that).
            if filled.ends_with(b"\r\n\r\n") {
                break;
            }
            if let Some(end) = head_end(filled) {
                // Over the limit: hyper reads it again and answers 431.
                if end > max_head {
                    return to_hyper(filled, served);
                }
                break;
            }
            if bufs.input.len() >= max_head {
                return to_hyper(bufs.input.filled(), served);
            }
            if bufs.deadline.at.is_none() {
                // The first head is due from the connection's start: hyper, if it takes
                // the connection over mid-head (HTTP/2's preface), keeps that deadline.
                let from = reading.unwrap_or(ctx.opened);
                bufs.deadline.set(crate::clock::deadline_std(from, header_timeout));
            }
            let between = if bufs.input.is_empty() { Some(&mut stop) } else { None };
            let got = {
                let mut read =
                    std::pin::pin!(read_into(io, &mut bufs.input, &mut bufs.deadline, between));
                std::future::poll_fn(|cx| {
                    let polled = read.as_mut().poll(cx);
                    if polled.is_pending() {
                        reading = None;
                    }
                    polled
                })
                .await
            };
            match got {
                Got::Data => {}
                // A head begun and not finished: 408, as nginx's client_header_timeout
                // documents. Nothing of a response is on the wire (the previous one was
                // written whole). A connection that sent nothing closes silently.
                // Bytes that are no HTTP (a TLS hello on the plain port) are hyper's to
                // refuse with 400, as it does at once.
                Got::Expired if !bufs.input.is_empty() => {
                    if !partial_request(bufs.input.filled()) {
                        return to_hyper(bufs.input.filled(), served);
                    }
                    head_timeout(io, ctx, &mut bufs.out, header_timeout).await;
                    return After::Closed;
                }
                Got::Eof | Got::Expired | Got::Stop | Got::Failed(_) => return After::Closed,
            }
        }
        let mut lines = lend(std::mem::take(&mut bufs.lines));
        let next = one(
            io,
            ctx,
            state.load(),
            bufs.input.filled(),
            max_head,
            &mut bufs.out,
            &mut bufs.scratch,
            &mut lines,
            &mut bufs.deadline,
            reading,
        )
        .await;
        bufs.lines = lend(lines);
        match next {
            Next::KeepAlive(used, ended) => {
                bufs.input.consume(used);
                bufs.settle();
                #[cfg(test)]
                RETAINED_MAX.set(RETAINED_MAX.get().max(bufs.retained()));
                reading = Some(ended);
                served = true;
            }
            Next::Close => return After::Closed,
            Next::Abort => return After::Aborted,
            Next::Hyper => return to_hyper(bufs.input.filled(), served),
        }
    }
}

/// Serves the request whose head starts `buf` (whole, and perhaps followed by more), or
/// says it is hyper's: a head over `max_head` bytes is, so that hyper answers 431.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the connection's pieces, lent for one request"
)]
async fn one<'b>(
    io: &mut Tracked,
    ctx: &Arc<ConnCtx>,
    state: &Arc<State>,
    buf: &'b [u8],
    max_head: usize,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    lines: &mut Vec<httparse::Header<'b>>,
    deadline: &mut Deadline,
    reading: Option<Instant>,
) -> Next {
    let slots = lines.spare_capacity_mut();
    let (slots, _) = slots.split_at_mut(slots.len().min(MAX_HEADERS));
    let mut req = httparse::Request::new(&mut []);
    let used = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        _ => return Next::Hyper,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Next::Hyper;
    };
    if !plain_target(path) {
        return Next::Hyper;
    }
    let lines = &*req.headers;
    let settings = &state.settings;
    // The target is split at its `?` once, here: every later reader (the route, the
    // query source, the record of forgeries) takes its part from this.
    let (path_only, query) = match path.split_once('?') {
        Some((path_only, query)) => (path_only, Some(query)),
        None => (path, None),
    };
    // Only pages and the upstream's answers: hyper serves the rest (and answers 431, and
    // 400 to several `Host` lines, which the loop below hands it).
    let counted = Lines { count: lines.len(), several_hosts: false };
    let raw = Raw { lines, query };
    let decide = || {
        let policy = settings.policy_for(ctx.listener());
        (policy, policy.resolve(&ctx.connection(), &raw))
    };
    let serves = ctx.serves(state);
    let whoami_mode = match rules::route(path_only, counted, settings, serves, &raw, decide) {
        Route::Whoami => true,
        // HTTP/2 to the upstream is hyper's client.
        Route::Forward if state.upstream.as_ref().is_some_and(|u| !u.lean()) => {
            return Next::Hyper;
        }
        Route::Forward => false,
        Route::TooManyHeaders | Route::SeveralHosts | Route::Admin(_) | Route::NotFound => {
            return Next::Hyper;
        }
    };
    let method = match method {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ if whoami_mode => return Next::Hyper,
        "POST" => Method::POST,
        "OPTIONS" => Method::OPTIONS,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        "PATCH" => Method::PATCH,
        _ => return Next::Hyper,
    };
    let mut host: Option<&[u8]> = None;
    let mut seen = 0u128;
    let mut length_seen = false;
    let mut asked_close = false;
    for h in lines {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") && asks_close(h.value) {
            // Dropped from the upstream request as every hop-by-hop line is; the
            // response says `connection: close` and ends the connection, as hyper's does.
            asked_close = true;
            continue;
        }
        if name.eq_ignore_ascii_case("close") {
            return Next::Hyper;
        }
        if name.eq_ignore_ascii_case("content-length") {
            // An empty body, said explicitly once, is still no body (hyper forwards one
            // such line; several, it merges: its business).
            if h.value.trim_ascii() != b"0" || length_seen {
                return Next::Hyper;
            }
            length_seen = true;
            continue;
        }
        if hyper_only(name) || name.contains('_') {
            return Next::Hyper;
        }
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Next::Hyper;
            }
            host = Some(h.value);
        } else if let Some(i) = state.hygiene.managed_index_ignore_case(name) {
            let bit = 1u128 << i.min(127);
            if i >= 127 || seen & bit != 0 {
                return Next::Hyper;
            }
            seen |= bit;
        }
    }
    // Only the upstream request needs `Host` as a header value.
    let host_value = match host.filter(|_| !whoami_mode).map(HeaderValue::from_bytes) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Next::Hyper,
        None => None,
    };

    // Read whole without waiting since `reading`: the request started then.
    let start = reading.unwrap_or_else(Instant::now);
    let conn = ctx.connection();
    let access_log = settings.log.access_log;
    let uri = if access_log { path.parse().ok() } else { None };
    let mut record = Record::begin(ctx, access_log, start, method.clone(), uri, Version::HTTP_11);
    let head_only = method == Method::HEAD;
    // This response is the connection's last: the gateway is stopping, a reload closed
    // the listener, or the client asked.
    let closing = asked_close || ctx.draining();

    let Some(upstream) = state.upstream.as_ref().filter(|_| !whoami_mode) else {
        let decision = Decision::new(settings.policy_for(ctx.listener()), &conn, &raw);
        record.note(ctx, &conn, settings, decision.resolution());
        note_forgery(
            ctx,
            state,
            decision.resolution(),
            (method.as_str(), path_only),
            0,
            start,
            |line| {
                for h in lines {
                    line(h.name, h.value, &|| false);
                }
            },
        );
        let asked = whoami::Asked {
            path: path_only,
            host,
            lines: || lines.iter().map(|h| (h.name, h.value)),
            tls: ctx.tls,
            peer: ctx.peer,
            policy: settings.policy_name(ctx.listener()),
        };
        let page = whoami::page(&asked, &decision, &state.hygiene, std::mem::take(scratch));
        let sent = send_page(io, out, &page, &mut record, head_only, closing, start).await;
        *scratch = page.body;
        return match sent {
            Sent::KeepAlive => Next::KeepAlive(used, record.finish()),
            Sent::Close => Next::Close,
            Sent::Abort => Next::Abort,
        };
    };

    let resolution = settings.policy_for(ctx.listener()).resolve(&conn, &raw);
    record.note(ctx, &conn, settings, &resolution);
    let outcome = forward(
        io,
        ctx,
        state,
        upstream,
        Request {
            method: &method,
            target: path,
            path: path_only,
            raw: &raw,
            host: host_value.as_ref(),
            resolution: &resolution,
        },
        out,
        deadline,
        &mut record,
        closing,
    )
    .await;
    let ended = record.finish();
    match outcome {
        Sent::KeepAlive if !closing => Next::KeepAlive(used, ended),
        Sent::KeepAlive | Sent::Close => Next::Close,
        Sent::Abort => Next::Abort,
    }
}

struct Request<'a> {
    method: &'a Method,
    /// The target as received.
    target: &'a str,
    /// Its path: the target up to the first `?`.
    path: &'a str,
    /// The header lines, and the target's query.
    raw: &'a Raw<'a>,
    host: Option<&'a HeaderValue>,
    resolution: &'a Resolution,
}

enum Sent {
    KeepAlive,
    Close,
    /// Broken off: part of the response went out, or none of it could.
    Abort,
}

/// The upstream request head: every received line by its [`Fate`], then the gateway's
/// own headers, written into `head` (the connection's response buffer, emptied first:
/// the response head is written there only once this one is no longer needed). Returns
/// how many lines were stripped.
fn upstream_head(
    state: &State,
    upstream: &Upstream,
    ctx: &ConnCtx,
    req: &Request<'_>,
    head: &mut Vec<u8>,
) -> Result<u64, Failure> {
    let raw = req.raw;
    let hygiene = &state.hygiene;
    let target = hygiene.strip_target(req.target);
    let request = UpstreamLine {
        method: req.method.as_str(),
        authority: upstream.authority(),
        target: &target,
    };
    let facts = facts(ctx, state, req.resolution, raw, req.host, request);
    if !hygiene.hosts_allowed(&facts) {
        return Err(Failure::HostNotAllowed);
    }
    // A request with `Connection` lines is hyper's: nothing here is named by one.
    let kept = Kept { headers: raw, hygiene, hop: facts.hop, named: &[] };
    let own = hygiene.own_values(&kept, &facts);
    head.clear();
    head.extend_from_slice(req.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let mut stripped = 0;
    for h in raw.lines {
        match hygiene.request_fate(h.name, facts.hop, &[]) {
            Fate::Keep if hygiene.strips_cookies() && h.name.eq_ignore_ascii_case("cookie") => {
                if let Some(value) = hygiene.strip_cookie(h.value) {
                    put_line(head, h.name, &value);
                }
            }
            Fate::Keep if !own.sets(h.name) => put_line(head, h.name, h.value),
            Fate::Keep | Fate::Drop => {}
            Fate::Strip => stripped += 1,
        }
    }
    if req.host.is_none() && valid_value(upstream.authority().as_bytes()) {
        put_line(head, "host", upstream.authority().as_bytes());
    }
    for (field, value) in &own.values {
        if let Some(bytes) = own.bytes(value) {
            put_line(head, field.as_str(), bytes);
        }
    }
    head.extend_from_slice(b"\r\n");
    Ok(stripped)
}

#[allow(clippy::too_many_arguments, reason = "one call site; the pieces of one exchange")]
async fn forward(
    io: &mut Tracked,
    ctx: &Arc<ConnCtx>,
    state: &State,
    upstream: &Upstream,
    req: Request<'_>,
    out: &mut Vec<u8>,
    deadline: &mut Deadline,
    record: &mut Record,
    closing: bool,
) -> Sent {
    let head_only = *req.method == Method::HEAD;
    let stripped = match upstream_head(state, upstream, ctx, &req, out) {
        Ok(made) => made,
        Err(failure) => {
            let named = req.host.map(|h| String::from_utf8_lossy(h.as_bytes()));
            let page =
                failed(ctx, failure, &format_args!("host \"{}\"", named.unwrap_or_default()));
            return send_page(io, out, &page, record, head_only, closing, Instant::now()).await;
        }
    };
    let metrics = &ctx.shared.metrics;
    metrics.stripped(stripped);
    record.stripped = stripped;
    note_forgery(
        ctx,
        state,
        req.resolution,
        (req.method.as_str(), req.path),
        stripped,
        record.start,
        |line| {
            let hop = state.settings.policy_for(ctx.listener()).hop(req.resolution);
            for h in req.raw.lines {
                line(h.name, h.value, &|| {
                    state.hygiene.request_fate(h.name, hop, &[]) == Fate::Strip
                });
            }
        },
    );
    let head_only = *req.method == Method::HEAD;
    let Some(key) = upstream.pool_key(req.resolution.client, ctx.destination(req.resolution))
    else {
        let page = failed(ctx, Failure::Target, &req.target);
        return send_page(io, out, &page, record, head_only, closing, Instant::now()).await;
    };
    let settings = &upstream.settings;
    let answer_by = crate::clock::deadline_std(record.start, settings.response_timeout);
    deadline.set(answer_by);

    let exchange = async {
        let mut resent = false;
        loop {
            let mut conn = match upstream.take_raw(&key, record.start, &ctx.upstream_idle) {
                Some(c) => c,
                // Boxed: inline, a connect's state (1.5 KB) would be in every connection's
                // request future, which mostly finds a pooled connection.
                None => {
                    match Box::pin(tokio::time::timeout_at(answer_by, upstream.connect_raw(&key)))
                        .await
                    {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => break Err(Failed::Connect(e)),
                        Err(_) => break Err(Failed::Timeout),
                    }
                }
            };
            let again = upstream::may_resend(req.method, conn.reused, Delivery::MaybeSent, resent);
            if conn.io.write_all(out).await.is_err() {
                if again {
                    resent = true;
                    continue;
                }
                break Err(Failed::Protocol("the upstream closed the connection"));
            }
            let mut heard = false;
            match read_head(&mut conn, deadline, head_only, &mut heard, out).await {
                Ok(parsed) => break Ok((conn, parsed)),
                Err(Failed::Protocol(_))
                    if upstream::may_resend(
                        req.method,
                        conn.reused,
                        Delivery::written(heard),
                        resent,
                    ) =>
                {
                    resent = true;
                }
                Err(e) => break Err(e),
            }
        }
    };
    // A new TLS connection's session ticket waits for this response: at most
    // `io::TICKET_WAIT`, and this wait reads nothing from the client, which would time it.
    let exchanged = {
        let mut exchange = std::pin::pin!(exchange);
        std::future::poll_fn(|cx| {
            let polled = exchange.as_mut().poll(cx);
            if polled.is_pending() {
                io.poll_ticket(cx);
            }
            polled
        })
        .await
    };
    let (mut conn, parsed) = match exchanged {
        Ok(x) => x,
        Err(e) => {
            let page = failed(ctx, e.failure(), &e);
            return send_page(io, out, &page, record, head_only, closing, Instant::now()).await;
        }
    };

    // The response head for the client: `read_head` wrote it into `out`.
    let close_after = closing;
    if close_after {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !parsed.has_date {
        date(out, Instant::now());
    }
    out.extend_from_slice(b"\r\n");
    record.status = parsed.status;

    let mut sent = 0u64;
    let done = match parsed.framing {
        Framing::None => true,
        Framing::Length(n) => {
            let mut remaining = n;
            let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(conn.buf.len());
            out.extend_from_slice(conn.buf.filled().get(..take).unwrap_or_default());
            conn.buf.consume(take);
            remaining -= take as u64;
            sent += take as u64;
            if close_after && remaining == 0 {
                io.hold_until_close();
            }
            if io.write_all(out).await.is_err() {
                record.bytes = sent;
                return Sent::Abort;
            }
            out.clear();
            let mut ok = true;
            while remaining > 0 {
                match body_read(&mut conn, deadline, settings.body_timeout, record).await {
                    Some(()) => {}
                    None => {
                        ok = false;
                        break;
                    }
                }
                let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(conn.buf.len());
                if io.write_all(conn.buf.filled().get(..take).unwrap_or_default()).await.is_err() {
                    ok = false;
                    break;
                }
                conn.buf.consume(take);
                remaining -= take as u64;
                sent += take as u64;
            }
            ok
        }
        Framing::Chunked => {
            let mut chunks = Chunked::default();
            let mut ok = true;
            loop {
                // A body that breaks off goes to the client up to the break, its head too
                // when the break came with it, and is then cut: what hyper's path sends,
                // and the same whether the break came with the head or a read later.
                let (n, pass, end, broken) = match chunks.scan(conn.buf.filled()) {
                    Ok((n, pass, end)) => (n, pass, end, false),
                    Err(pass) => (pass, pass, false, true),
                };
                out.extend_from_slice(conn.buf.filled().get(..pass).unwrap_or_default());
                if end {
                    // The last chunk, without its extensions or trailer lines.
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                conn.buf.consume(n);
                sent += pass as u64;
                if !out.is_empty() && io.write_all(out).await.is_err() {
                    ok = false;
                    break;
                }
                out.clear();
                if broken {
                    metrics.upstream_error(UpstreamErrorKind::Protocol);
                    record.error = Some("invalid chunked body from the upstream".to_string());
                    ok = false;
                    break;
                }
                if end {
                    break;
                }
                if body_read(&mut conn, deadline, settings.body_timeout, record).await.is_none() {
                    ok = false;
                    break;
                }
            }
            ok
        }
        Framing::Close => {
            // Sent chunked, as hyper's path sends it: the client then tells a whole body
            // (the last chunk) from one the upstream broke off, in cleartext too, and its
            // connection can take another request.
            let bytes = conn.buf.filled();
            put_chunk(out, bytes);
            sent += bytes.len() as u64;
            let n = bytes.len();
            conn.buf.consume(n);
            let mut ok = io.write_all(out).await.is_ok();
            while ok {
                out.clear();
                deadline.set(crate::clock::deadline(
                    tokio::time::Instant::now(),
                    settings.body_timeout,
                ));
                match read_into(&mut conn.io, &mut conn.buf, deadline, None).await {
                    Got::Data => {}
                    Got::Eof => {
                        out.extend_from_slice(b"0\r\n\r\n");
                        ok = io.write_all(out).await.is_ok();
                        break;
                    }
                    Got::Expired => {
                        metrics.upstream_error(UpstreamErrorKind::BodyTimeout);
                        record.error =
                            Some(crate::upstream::Stalled(settings.body_timeout).to_string());
                        ok = false;
                        break;
                    }
                    Got::Failed(e) => {
                        metrics.upstream_error(UpstreamErrorKind::Protocol);
                        record.error = Some(e.to_string());
                        ok = false;
                        break;
                    }
                    // No stop future was given.
                    Got::Stop => {
                        ok = false;
                        break;
                    }
                }
                let n = conn.buf.len();
                put_chunk(out, conn.buf.filled());
                ok = io.write_all(out).await.is_ok();
                conn.buf.consume(n);
                sent += n as u64;
            }
            out.clear();
            // A body broken off: no last chunk, and no close_notify under TLS.
            if !ok {
                record.bytes = sent;
                return Sent::Abort;
            }
            true
        }
    };
    if parsed.framing == Framing::None && !out.is_empty() {
        let ok = io.write_all(out).await.is_ok();
        out.clear();
        if !ok {
            return Sent::Abort;
        }
    }
    record.bytes = sent;
    if !done {
        // A length or chunked body cut short: its framing already tells the client,
        // and the connection ends as hyper's does after a broken body.
        return Sent::Abort;
    }
    // A body that ran until the upstream closed leaves no connection to reuse.
    if parsed.reusable && parsed.framing != Framing::Close && conn.buf.is_empty() {
        // The response's end is the moment the connection became idle: one clock reading.
        let ended = record.end();
        upstream.put_raw(key, conn, &ctx.upstream_idle, ended);
    }
    if close_after { Sent::Close } else { Sent::KeepAlive }
}

/// Reads more of a response body, or notes why it ended early.
async fn body_read(
    conn: &mut RawConn,
    deadline: &mut Deadline,
    timeout: Duration,
    record: &mut Record,
) -> Option<()> {
    deadline.set(crate::clock::deadline(tokio::time::Instant::now(), timeout));
    match read_into(&mut conn.io, &mut conn.buf, deadline, None).await {
        Got::Data => Some(()),
        Got::Expired => {
            record.metrics.upstream_error(UpstreamErrorKind::BodyTimeout);
            record.error = Some(crate::upstream::Stalled(timeout).to_string());
            None
        }
        Got::Eof => {
            record.metrics.upstream_error(UpstreamErrorKind::Protocol);
            record.error = Some("the upstream closed the connection mid-body".to_string());
            None
        }
        Got::Failed(e) => {
            record.metrics.upstream_error(UpstreamErrorKind::Protocol);
            record.error = Some(e.to_string());
            None
        }
        Got::Stop => None,
    }
}

/// What the client's response head needs from the upstream's, once [`rewrite`] wrote it.
pub(crate) struct Parsed {
    status: u16,
    framing: Framing,
    has_date: bool,
    /// Whether the upstream connection can take another request afterwards.
    reusable: bool,
}

/// Reads the upstream's response head (skipping 1xx interim responses), within the
/// deadline already set, and writes the client's into `out` (see [`rewrite`]; `out`
/// keeps the request head, for a resend, until then). `heard` is set once any byte of a
/// response came (an interim one too): the request was read, and is not sent again.
async fn read_head(
    conn: &mut RawConn,
    deadline: &mut Deadline,
    head_only: bool,
    heard: &mut bool,
    out: &mut Vec<u8>,
) -> Result<Parsed, Failed> {
    loop {
        if !conn.buf.is_empty() {
            match raw::parse_head(conn.buf.filled(), |resp| rewrite(resp, head_only, out))? {
                Step::Done(n, parsed) => {
                    conn.buf.consume(n);
                    return Ok(parsed);
                }
                Step::Interim(n) => {
                    conn.buf.consume(n);
                    continue;
                }
                Step::Partial => {}
            }
        }
        match read_into(&mut conn.io, &mut conn.buf, deadline, None).await {
            Got::Data => *heard = true,
            Got::Expired => return Err(Failed::Timeout),
            Got::Eof | Got::Failed(_) | Got::Stop => {
                return Err(Failed::Protocol("the upstream closed the connection"));
            }
        }
    }
}

/// The client's response head from the upstream's: hop-by-hop lines dropped (and
/// those `Connection` names), framing decided. Written into `head` (the connection's
/// buffer, emptied first) once the framing is known to be sound, without the final blank
/// line and the `Date`/`Connection` lines this path may add.
pub(crate) fn rewrite(
    resp: &httparse::Response<'_, '_>,
    head_only: bool,
    head: &mut Vec<u8>,
) -> Result<Parsed, Failed> {
    let raw::Head { status, framing, reusable, named, length } = raw::framing(resp, head_only)?;
    let code = status.as_u16();
    let lines = &*resp.headers;
    head.clear();
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    // The upstream's own reason, an empty one too, as hyper's client hands it on.
    head.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for h in lines {
        let name = h.name;
        // This path writes the framing itself.
        if headers::is_lower_name(name, "content-length")
            || !headers::response_keeps(name, named.as_slice())
        {
            continue;
        }
        has_date |= headers::is_lower_name(name, "date");
        put_line(head, name, h.value);
    }
    let mut digits = [0; 20];
    match framing {
        Framing::Length(n) => {
            put_line(head, "content-length", headers::length_digits(n, &mut digits))
        }
        // `chunked` alone (`raw::framing` refuses any other coding), spelled as hyper's
        // path spells it.
        Framing::Chunked => put_line(head, "transfer-encoding", b"chunked"),
        Framing::None if headers::bodiless_keeps_length(code) => {
            if let Some(n) = length {
                put_line(head, "content-length", headers::length_digits(n, &mut digits));
            }
        }
        // Re-framed as chunks by `forward`.
        Framing::Close => put_line(head, "transfer-encoding", b"chunked"),
        Framing::None => {}
    }
    Ok(Parsed { status: code, framing, has_date, reusable })
}

/// Finds where a chunked body ends, as its bytes go through unchanged.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// Bytes of chunk data still to pass.
    data: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// At the start of a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data.
    Data,
    /// At the CRLF after chunk data.
    DataEnd,
    /// At the start of a trailer line (after the last chunk).
    Trailer,
}

impl Chunked {
    /// How many of `bytes` belong to the body, how many of those go to the client (all but
    /// the last chunk and the trailer lines: the caller writes the last chunk once the body
    /// has ended), and whether the body ended there. Only whole lines are consumed; a
    /// partial line waits for more bytes.
    ///
    /// Trailer lines stay with the upstream connection, as on hyper's path (whose HTTP/1.1
    /// server sends no trailers the head did not announce, and `Trailer` is hop-by-hop):
    /// passed as they came, an upstream's `Connection` or `Transfer-Encoding` trailer, or
    /// a line that is no field at all, reached the client. One that is no valid field
    /// line breaks the body off, as hyper's client does.
    /// `Err`: the body is malformed; the number of its bytes before the fault, which the
    /// client may have (chunk data, and the lines before it), the trailer section aside.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> Result<(usize, usize, bool), usize> {
        let mut at = 0;
        let mut passed = 0;
        loop {
            let rest = bytes.get(at..).unwrap_or_default();
            match self.state {
                ChunkState::Data => {
                    let take = usize::try_from(self.data).unwrap_or(usize::MAX).min(rest.len());
                    at += take;
                    passed = at;
                    self.data -= take as u64;
                    if self.data > 0 {
                        return Ok((at, passed, false));
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        passed = at;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok((at, passed, false)),
                    _ => return Err(passed),
                },
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > 4096 {
                            return Err(passed);
                        }
                        return Ok((at, passed, false));
                    };
                    let line = rest.get(..nl).unwrap_or_default();
                    let line = line.strip_suffix(b"\r").ok_or(passed)?;
                    at += nl + 1;
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            return Ok((at, passed, true));
                        }
                        if !field_line(line) {
                            return Err(passed);
                        }
                        continue;
                    }
                    let n = raw::chunk_size(line).ok_or(passed)?;
                    if n == 0 {
                        // The last chunk is the caller's to write once the trailer
                        // section has ended: passed before it, a break in the trailer
                        // section would reach the client as a whole body.
                        self.state = ChunkState::Trailer;
                    } else {
                        passed = at;
                        self.data = n;
                        self.state = ChunkState::Data;
                    }
                }
            }
        }
    }
}

/// Whether a trailer line (without its line end) is a field line: a name of token
/// characters, a colon, a valid value.
fn field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let (name, value) = line.split_at(colon);
    http::HeaderName::from_bytes(name).is_ok() && valid_value(value.get(1..).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// A connection's buffers go to the worker's next connection, emptied: none of the
    /// bytes the first read is handed to the second. Grown ones are not kept.
    #[test]
    fn buffers_pass_to_the_next_connection_empty_and_grown_ones_do_not() {
        // A thread of its own: the spares are per thread.
        std::thread::spawn(|| {
            let mut first = Buffers::take();
            let storage = first.input.spare().as_ptr();
            let n = first.input.spare().len();
            first.input.spare().fill(b'x');
            first.input.grew(n.min(100));
            first.out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            first.scratch.extend_from_slice(b"page");
            first.give_back();
            let mut second = Buffers::take();
            assert!(second.input.is_empty(), "no byte of the first connection");
            assert!(second.out.is_empty() && second.scratch.is_empty());
            assert_eq!(second.input.spare().as_ptr(), storage, "the same storage");
            // A request that grew the input buffer: its storage is not kept.
            while second.input.capacity() <= INPUT_BYTES {
                let n = second.input.spare().len();
                second.input.grew(n);
            }
            second.give_back();
            let third = Buffers::take();
            assert_eq!(third.input.capacity(), INPUT_BYTES, "a new buffer");
            SPARES.with_borrow(|spares| assert!(spares.is_empty()));
        })
        .join()
        .unwrap();
    }

    /// Counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn paused_loop() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Runs `test` on a paused event loop of its own thread, whose spare buffers no other
    /// test shares.
    fn on_its_own_paused_loop<F: Future<Output = ()>>(test: impl FnOnce() -> F + Send + 'static) {
        std::thread::spawn(|| paused_loop().block_on(test())).join().unwrap();
    }

    fn timer(bufs: &Buffers) -> Option<*const tokio::time::Sleep> {
        bufs.deadline.sleep.as_ref().map(|s| std::ptr::from_ref(&**s))
    }

    /// A connection's deadline timer stays on the wheel with its buffers and serves the
    /// worker's next connection: no timer is made and dropped per connection. Once the
    /// first connection ended, a fire wakes only the second.
    #[test]
    fn a_deadline_timer_serves_the_next_connection_and_wakes_only_it() {
        on_its_own_paused_loop(|| async {
            let start = tokio::time::Instant::now();
            let (first_woken, first) = counted();
            let mut bufs = Buffers::take();
            bufs.deadline.set(start + Duration::from_secs(1));
            assert!(!bufs.deadline.poll_expired(&mut Context::from_waker(&first)));
            let kept = timer(&bufs);
            assert!(kept.is_some());
            bufs.give_back();

            let mut bufs = Buffers::take();
            assert_eq!(timer(&bufs), kept, "the same timer");
            let (second_woken, second) = counted();
            let mut cx = Context::from_waker(&second);
            bufs.deadline.set(start + Duration::from_secs(3));
            assert!(!bufs.deadline.poll_expired(&mut cx));
            // Still aimed at the first connection's second: it fires early.
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(first_woken.0.load(Ordering::SeqCst), 0, "the first is gone");
            assert!(second_woken.0.load(Ordering::SeqCst) > 0);
            assert!(!bufs.deadline.poll_expired(&mut cx), "re-aimed");
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(bufs.deadline.poll_expired(&mut cx));
            assert_eq!(timer(&bufs), kept);
        });
    }

    /// A kept timer that fires while it waits for the next connection wakes nobody, and
    /// the next connection finds it fired, re-aims it, and is woken at its own deadline.
    #[test]
    fn a_timer_that_fired_while_kept_is_re_aimed_by_the_next_connection() {
        on_its_own_paused_loop(|| async {
            let start = tokio::time::Instant::now();
            let (first_woken, first) = counted();
            let mut bufs = Buffers::take();
            bufs.deadline.set(start + Duration::from_secs(1));
            assert!(!bufs.deadline.poll_expired(&mut Context::from_waker(&first)));
            bufs.give_back();
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(first_woken.0.load(Ordering::SeqCst), 0);

            let mut bufs = Buffers::take();
            let (second_woken, second) = counted();
            let mut cx = Context::from_waker(&second);
            bufs.deadline.set(start + Duration::from_secs(4));
            assert!(!bufs.deadline.poll_expired(&mut cx), "not yet its deadline");
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(second_woken.0.load(Ordering::SeqCst), 0, "3 s: not due");
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(second_woken.0.load(Ordering::SeqCst) > 0, "woken at 4 s");
            assert!(bufs.deadline.poll_expired(&mut cx));
        });
    }

    /// A timer that ended its connection (found fired, off the wheel) still times the
    /// next connection's deadline, though that deadline is later than its aim.
    #[test]
    fn a_timer_that_ended_a_connection_times_the_next() {
        a_fired_timer_times_a_later_deadline(false);
    }

    /// A timer that fired a deadline its connection outlived (a late upstream answer
    /// gets a 504 and the connection stays open) times that connection's next, later
    /// deadline, though it is off the wheel.
    #[test]
    fn a_deadline_the_connection_outlived_leaves_its_timer_timing_the_next() {
        a_fired_timer_times_a_later_deadline(true);
    }

    /// A deadline at 1 s fires; then a deadline at 3 s, on the same connection (its
    /// waker, the deadline cleared) or on the next one the worker's buffers serve (a new
    /// waker), is woken at 3 s.
    fn a_fired_timer_times_a_later_deadline(same_connection: bool) {
        on_its_own_paused_loop(move || async move {
            let start = tokio::time::Instant::now();
            let (first_woken, first) = counted();
            let mut bufs = Buffers::take();
            let mut cx = Context::from_waker(&first);
            bufs.deadline.set(start + Duration::from_secs(1));
            assert!(!bufs.deadline.poll_expired(&mut cx));
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(bufs.deadline.poll_expired(&mut cx), "the first deadline");
            let (next_woken, next) = counted();
            let woken = if same_connection {
                bufs.deadline.clear();
                first_woken
            } else {
                bufs.give_back();
                bufs = Buffers::take();
                cx = Context::from_waker(&next);
                next_woken
            };
            bufs.deadline.set(start + Duration::from_secs(3));
            assert!(!bufs.deadline.poll_expired(&mut cx));
            let before = woken.0.load(Ordering::SeqCst);
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(woken.0.load(Ordering::SeqCst) > before, "woken at 3 s");
            assert!(bufs.deadline.poll_expired(&mut cx));
        });
    }

    /// A timer kept from an event loop that ended is dropped, not polled, by a
    /// connection of the next event loop on the same thread (tokio refuses to poll a
    /// timer of a loop shut down).
    #[test]
    fn a_timer_of_an_ended_event_loop_serves_no_connection() {
        std::thread::spawn(|| {
            paused_loop().block_on(async {
                let mut bufs = Buffers::take();
                bufs.deadline.set(tokio::time::Instant::now() + Duration::from_secs(1));
                assert!(!bufs.deadline.poll_expired(&mut Context::from_waker(Waker::noop())));
                bufs.give_back();
            });
            paused_loop().block_on(async {
                let mut bufs = Buffers::take();
                assert!(timer(&bufs).is_none());
                let (woken, waker) = counted();
                let mut cx = Context::from_waker(&waker);
                bufs.deadline.set(tokio::time::Instant::now() + Duration::from_secs(1));
                assert!(!bufs.deadline.poll_expired(&mut cx));
                tokio::time::advance(Duration::from_secs(1)).await;
                assert!(woken.0.load(Ordering::SeqCst) > 0);
                assert!(bufs.deadline.poll_expired(&mut cx));
            });
        })
        .join()
        .unwrap();
    }

    /// The header slots kept with a connection's buffers are lent to each request's lines
    /// and back without a new allocation, and hold exactly [`MAX_HEADERS`] lines.
    #[test]
    fn header_slots_are_lent_to_each_request_in_the_same_storage() {
        let kept: Vec<httparse::Header<'static>> = Vec::with_capacity(MAX_HEADERS);
        let storage = kept.as_ptr().cast::<u8>();
        let head = b"GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 203.0.113.7\r\n\r\n".to_vec();
        let mut lines = lend(kept);
        assert_eq!(lines.as_ptr().cast::<u8>(), storage, "the same storage, lent");
        let slots = lines.spare_capacity_mut();
        let (slots, _) = slots.split_at_mut(slots.len().min(MAX_HEADERS));
        assert_eq!(slots.len(), MAX_HEADERS);
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(&head, slots);
        assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
        assert_eq!(req.headers.len(), 2);
        let back: Vec<httparse::Header<'static>> = lend(lines);
        assert!(back.is_empty());
        assert_eq!(back.as_ptr().cast::<u8>(), storage, "the same storage, kept");
    }

    #[test]
    fn only_unfinished_http_heads_are_partial_requests() {
        assert!(partial_request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "));
        assert!(partial_request(b"GE"));
        assert!(!partial_request(&[0x16, 0x03, 0x01, 0x00, 0xa5]));
        assert!(!partial_request(b"GET\x00/ HTTP/1.1\r\n"));
    }

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn chunked_bodies_end_where_they_end_in_any_split() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\nConnection: close\r\n\r\nNEXT";
        let end = body.len() - 4;
        // What the client gets: the body without its trailer lines.
        let wanted = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let mut buf: Vec<u8> = body[..split].to_vec();
            let mut sent = Vec::new();
            let (n, pass, done) = c.scan(&buf).unwrap();
            sent.extend_from_slice(&buf[..pass]);
            assert!(!done || n == end);
            let consumed = n;
            buf.drain(..n);
            if !done {
                buf.extend_from_slice(&body[split..]);
                let (n, pass, done) = c.scan(&buf).unwrap();
                sent.extend_from_slice(&buf[..pass]);
                assert!(done, "split at {split}");
                assert_eq!(consumed + n, end, "split at {split}");
            }
            sent.extend_from_slice(b"0\r\n\r\n");
            assert_eq!(sent, wanted, "split at {split}");
        }
        // Malformed: the bytes before the fault go to the client, never the faulty line,
        // nor a trailer line, nor the last chunk of a body whose trailer section breaks
        // (a client that takes a close there for the end would read it whole).
        for (bad, before) in [
            (&b"x\r\n"[..], 0),
            (b"4\r\nWikiXX", 7),
            (b"4\nWiki\r\n", 0),
            (b"12345678901234567\r\n", 0),
            (b" 4\r\n", 0),
            (b"4\r\nWiki\r\n\t2\r\n", 9),
            (b"4;a\rb\r\n", 0),
            (b"0\r\nno field\r\n", 0),
            (b"0\r\n folded: x\r\n", 0),
            (b"0\r\nX-T: a\rb\r\n", 0),
            (b"0\r\nX-T: 1\r\nX T: a\r\n", 0),
            (b"4\r\nWiki\r\n0\r\nX T: a\r\n", 9),
        ] {
            assert_eq!(Chunked::default().scan(bad), Err(before), "{bad:?}");
        }
    }

    #[test]
    fn only_plain_targets() {
        assert!(plain_target("/a/b?c=d&e=%20"));
        for t in ["*", "http://x/", "/a b", "/a\"b", "/\u{e9}", "/a#b", "/{x}"] {
            assert!(!plain_target(t), "{t}");
        }
    }

    #[test]
    fn response_heads_drop_hop_by_hop_and_choose_framing() {
        let mut lines = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut lines);
        resp.parse(b"HTTP/1.1 200 OK\r\nConnection: x-secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nContent-Length: 5\r\nX-App: y\r\n\r\n")
            .unwrap();
        let mut out = b"the request head".to_vec();
        let p = rewrite(&resp, false, &mut out).ok().unwrap();
        let head = String::from_utf8(out).unwrap();
        assert_eq!(head, "HTTP/1.1 200 OK\r\nX-App: y\r\ncontent-length: 5\r\n");
        assert_eq!(p.framing, Framing::Length(5));
        assert!(p.reusable);

        let mut lines = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut lines);
        resp.parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        let p = rewrite(&resp, false, &mut Vec::new()).ok().unwrap();
        assert_eq!(p.framing, Framing::Chunked);
        assert!(!p.reusable, "both framings: never reused");

        let mut lines = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut lines);
        resp.parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let p = rewrite(&resp, false, &mut out).ok().unwrap();
        assert_eq!(p.framing, Framing::Close);
        assert!(!p.reusable);
        let head = String::from_utf8(out).unwrap();
        assert_eq!(head, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n");

        let mut lines = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut lines);
        resp.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").unwrap();
        let mut out = b"the request head".to_vec();
        assert!(rewrite(&resp, false, &mut out).is_err());
        assert_eq!(out, b"the request head", "kept for a resend");
    }
}
