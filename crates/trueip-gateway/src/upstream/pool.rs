//! Idle upstream connections, of both wire paths, in one pool type.
//!
//! An idle connection waits in one [`Pool`]: its worker's, or (when PROXY headers go
//! upstream) its client connection's own (see the module docs of [`crate::upstream`]).
//! Either kind of pool holds either kind of connection ([`Conn`]): hyper's, or a bare
//! one of the lean path. Every idle connection, in any pool, holds a [`Ticket`] of the
//! upstream's one [`Budget`]: together they never exceed `upstream.pool_max_idle_total`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use hyper::body::Incoming;

use super::body::Timed;
use super::connect::UpstreamIo;
use crate::io::InBuf;

/// A hyper connection's request handle.
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Timed<Incoming>>;
/// A hyper HTTP/2 connection's request handle (a clone per request in flight).
pub(crate) type Sender2 = hyper::client::conn::http2::SendRequest<Timed<Incoming>>;

/// How many connections to one upstream are idle, in every pool together, and the most
/// that may be.
#[derive(Debug)]
pub(crate) struct Budget {
    idle: AtomicUsize,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget { idle: AtomicUsize::new(0), max })
    }

    /// A ticket for one more idle connection, unless the budget is spent.
    fn ticket(self: &Arc<Self>) -> Option<Ticket> {
        self.idle
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| Ticket(self.clone()))
    }
}

/// One idle connection counted in a [`Budget`], uncounted when dropped: however the
/// connection leaves its pool (taken, expired, evicted, or its pool or client connection
/// gone), the count follows.
#[derive(Debug)]
struct Ticket(Arc<Budget>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Relaxed);
    }
}

/// A bare upstream connection of the lean HTTP/1.1 path, with the bytes read past the
/// last response.
pub(crate) struct RawConn {
    /// The connection.
    pub(crate) io: UpstreamIo,
    /// Bytes read from it and not yet used.
    pub(crate) buf: InBuf,
    /// Whether it served an earlier request.
    pub(crate) reused: bool,
}

/// An upstream connection of either wire path.
pub(crate) enum Conn {
    /// hyper's client connection (its task owns the socket).
    Hyper(Sender),
    /// hyper's HTTP/2 client connection: it stays idle in its pool while it serves.
    H2(Sender2),
    /// The lean path's.
    Raw(RawConn),
}

impl Conn {
    /// Whether the upstream may still take a request on it.
    fn alive(&self) -> bool {
        match self {
            Conn::Hyper(tx) => !tx.is_closed(),
            Conn::H2(tx) => !tx.is_closed(),
            Conn::Raw(raw) => !raw.io.gone(),
        }
    }
}

/// What every pool of one upstream holds to: its budget, and how many connections a
/// pool keeps for how long.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) budget: Arc<Budget>,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
}

struct Entry {
    key: Authority,
    conn: Conn,
    since: Instant,
    ticket: Ticket,
}

/// A client connection's own pool, made when it first keeps or looks for an upstream
/// connection: only connections whose upstream requests carry PROXY headers keep any
/// there, and making one for every connection was an allocation, its mutex and its drop
/// for each new connection.
#[derive(Default)]
pub(crate) struct Private(OnceLock<Arc<Pool>>);

impl Private {
    /// The pool, made now if it was not yet.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        self.0.get_or_init(|| Arc::new(Pool::client()))
    }
}

/// Idle connections, most recently used last, each with its pool key. A deque: a full
/// pool drops its oldest at every `put`, and a pool may hold a thousand or more.
pub(crate) struct Pool {
    idle: Mutex<VecDeque<Entry>>,
    /// Whether a task closes expired connections (a worker's pool); a client
    /// connection's pool is cleaned when used, and closes with its connection.
    reaped: bool,
    reaping: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// Whether `a` and `b` are one key: the same `Authority` handed out twice (its bytes
/// shared, so one pointer compare), or equal.
fn same_key(a: &Authority, b: &Authority) -> bool {
    std::ptr::eq(a.as_str(), b.as_str()) || a == b
}

impl Pool {
    /// A worker's pool: a task closes its expired connections.
    pub(crate) fn worker() -> Self {
        Pool { idle: Mutex::new(VecDeque::new()), reaped: true, reaping: AtomicBool::new(false) }
    }

    /// A client connection's pool.
    fn client() -> Self {
        Pool { reaped: false, ..Pool::worker() }
    }

    /// The most recently idle connection for `key` that `usable` accepts, alive and idle
    /// for less than the limit as of `now`. Connections met on the way that are past
    /// their time, closed, or of another config (another budget) are closed; in a client
    /// connection's pool, which no task cleans, every such connection is.
    pub(crate) fn take(
        &self,
        key: &Authority,
        limits: &Limits,
        now: Instant,
        mut usable: impl FnMut(&Conn) -> bool,
    ) -> Option<Conn> {
        let stale = |e: &Entry| {
            !Arc::ptr_eq(&e.ticket.0, &limits.budget)
                || now.saturating_duration_since(e.since) >= limits.idle_timeout
                || !e.conn.alive()
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !self.reaped {
            idle.retain(|e| !stale(e));
        }
        // Most recent first; in a worker's pool the last one usually serves.
        let mut at = idle.len();
        while let Some(i) = at.checked_sub(1) {
            at = i;
            let Some(e) = idle.get(i) else { break };
            let gone = stale(e);
            let found = !gone && same_key(&e.key, key) && usable(&e.conn);
            if gone || found {
                let e = if i + 1 == idle.len() { idle.pop_back() } else { idle.remove(i) };
                if found {
                    return e.map(|e| e.conn);
                }
            }
        }
        None
    }

    /// Keeps a connection that can take the next request: the oldest goes when the pool
    /// is full, and none is kept once the budget is spent. It is idle from `now` (a clock
    /// reading taken once its response ended).
    pub(crate) fn put(self: &Arc<Self>, key: Authority, conn: Conn, limits: &Limits, now: Instant) {
        if limits.max_idle == 0 || limits.idle_timeout.is_zero() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() >= limits.max_idle {
                idle.pop_front();
            }
            let Some(ticket) = limits.budget.ticket() else {
                return;
            };
            idle.push_back(Entry { key, conn, since: now, ticket });
        }
        if self.reaped && !self.reaping.swap(true, Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self), limits.idle_timeout));
        }
    }
}

/// Closes a pool's connections idle for longer than `timeout` (and those the upstream
/// closed) until the pool is gone (a reload replaced it).
async fn reap(pool: Weak<Pool>, timeout: Duration) {
    let every = timeout.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|e| now.saturating_duration_since(e.since) < timeout && e.conn.alive());
    }
}

/// An upstream connection lent to one exchange: a hyper one goes back to its pool when
/// the response body is done with (dropped), once the connection can take another
/// request; a bare one when its body ended cleanly ([`Pooled::keep_raw`]). `Weak`, so
/// that a response outliving its client connection (or its config) keeps nothing.
pub(crate) struct Pooled {
    pub(crate) pool: Weak<Pool>,
    pub(crate) limits: Limits,
    pub(crate) key: Authority,
    pub(crate) tx: Option<Sender>,
}

impl Pooled {
    /// Keeps a bare connection whose response ended cleanly, for the next request.
    pub(crate) fn keep_raw(&self, mut conn: RawConn) {
        conn.reused = true;
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.key.clone(), Conn::Raw(conn), &self.limits, Instant::now());
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(mut tx) = self.tx.take() else {
            return;
        };
        let (pool, limits, key) = (self.pool.clone(), self.limits.clone(), self.key.clone());
        let put = move |tx| {
            if let Some(pool) = pool.upgrade() {
                pool.put(key, Conn::Hyper(tx), &limits, Instant::now());
            }
        };
        if tx.is_ready() {
            put(tx);
        } else if !tx.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // The connection task has not yet taken in the end of the response: wait for
            // it (it fails if the connection closes instead).
            rt.spawn(async move {
                if tx.ready().await.is_ok() {
                    put(tx);
                }
            });
        }
    }
}

std::thread_local! {
    /// The worker this thread runs (0 on the main thread): a connection is registered
    /// with its worker's event loop, so connections are pooled per worker.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as worker `i`.
pub(crate) fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// The worker this thread runs.
pub(crate) fn worker() -> usize {
    WORKER.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_idle_connections_however_they_leave() {
        let budget = Budget::new(3);
        let tickets: Vec<Ticket> = (0..5).filter_map(|_| budget.ticket()).collect();
        assert_eq!(tickets.len(), 3, "no ticket past the bound");
        assert_eq!(budget.idle.load(Relaxed), 3);
        let mut tickets = tickets;
        tickets.truncate(1);
        assert_eq!(budget.idle.load(Relaxed), 1);
        assert!(budget.ticket().is_some_and(|t| {
            drop(t);
            true
        }));
        drop(tickets);
        assert_eq!(budget.idle.load(Relaxed), 0);
        let none = Budget::new(0);
        assert!(none.ticket().is_none());
    }
}
