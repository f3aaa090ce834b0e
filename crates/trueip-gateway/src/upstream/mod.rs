//! The pooled HTTP/1.1 client to the upstream, over TCP or a unix socket.
//!
//! The pool (hyper's HTTP/1 connections, kept here rather than in hyper-util's legacy
//! client, which costs more per request) is keyed by the request URI's authority. The
//! lean HTTP/1.1 path ([`crate::http::lean`]) keeps its own pool of bare connections
//! ([`RawConn`]), per worker thread. Every idle connection, in any pool, holds a
//! [`Ticket`] of the upstream's one budget: together they never exceed
//! `upstream.pool_max_idle_total`.
//!
//! With `upstream.proxy_protocol` set, every upstream connection opens with a PROXY
//! header naming one client connection (or, for a client found in a forwarding header,
//! one client), so it may only be reused for that same client: the gateway puts the
//! announced addresses into the request URI's authority (`<hex>.<hex>.proxy.invalid`),
//! the connector reads them back, and the authority never reaches the upstream (the Host
//! header is set explicitly). Such a connection is kept idle with the client connection
//! it was opened for ([`Private`]), not in the shared pools: once that client connection
//! closes no request can use it again, so it closes too. (In a shared pool keyed by
//! client, every client connection ever seen would leave one idle connection, and one
//! descriptor, until `pool_idle_timeout`.) HAProxy does the same with `send-proxy`
//! server connections: it marks them private to the client session.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tower_service::Service as _;

use crate::config::{SendProxy, UpstreamSettings, UpstreamTarget};
use crate::http::body::Timed;

/// A connection to the upstream.
pub enum UpstreamIo {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Tcp(s) => s.is_write_vectored(),
            UpstreamIo::Unix(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Where to connect.
#[derive(Clone, Debug)]
enum Target {
    Tcp(Arc<str>),
    Unix(Arc<PathBuf>),
}

/// Opens upstream connections (with a connect timeout, and a PROXY header if configured).
#[derive(Clone, Debug)]
pub struct Connector {
    target: Target,
    timeout: Duration,
    proxy: SendProxy,
}

/// Connects to a TCP `host:port` within `timeout`, with `TCP_NODELAY`.
pub async fn connect_tcp(authority: &str, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(authority))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {authority} took longer than {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut io = match &this.target {
                Target::Tcp(authority) => {
                    UpstreamIo::Tcp(connect_tcp(authority, this.timeout).await?)
                }
                Target::Unix(path) => {
                    let stream =
                        tokio::time::timeout(this.timeout, UnixStream::connect(path.as_path()))
                            .await
                            .map_err(|_| {
                                io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    format!("connecting to {} took too long", path.display()),
                                )
                            })??;
                    UpstreamIo::Unix(stream)
                }
            };
            if this.proxy != SendProxy::Off {
                let (source, destination) = uri.host().and_then(decode_key).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "no client to announce in the PROXY header",
                    )
                })?;
                let header = crate::proxy::encode(this.proxy, source, destination);
                match &mut io {
                    UpstreamIo::Tcp(s) => s.write_all(&header).await?,
                    UpstreamIo::Unix(s) => s.write_all(&header).await?,
                }
            }
            Ok(TokioIo::new(io))
        })
    }
}

/// A connection's request handle.
type Sender = hyper::client::conn::http1::SendRequest<Timed<Incoming>>;

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened.
    Connect(io::Error),
    /// The connection broke, or the answer was not HTTP.
    Http(hyper::Error),
}

impl SendError {
    /// Whether no connection could be opened.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(_) => f.write_str("cannot connect to the upstream"),
            SendError::Http(_) => f.write_str("upstream exchange failed"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => Some(e),
            SendError::Http(e) => Some(e),
        }
    }
}

/// How many connections to one upstream are idle, in every pool together, and the most
/// that may be.
#[derive(Debug)]
struct Budget {
    idle: AtomicUsize,
    max: usize,
}

impl Budget {
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

/// An idle connection.
struct Idle {
    tx: Sender,
    since: Instant,
    _ticket: Ticket,
}

/// Idle keep-alive connections, by pool key (the URI authority), most recently used last.
#[derive(Debug)]
struct Pool {
    idle: Mutex<HashMap<Authority, Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
    budget: Arc<Budget>,
    /// Whether the task that closes expired idle connections runs.
    reaping: AtomicBool,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("since", &self.since).finish()
    }
}

impl Pool {
    /// The most recently used live connection for `key` that can take a request now.
    fn take(&self, key: &Authority) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some(entry) = list.pop() {
            if now.saturating_duration_since(entry.since) < self.idle_timeout && entry.tx.is_ready()
            {
                found = Some(entry.tx);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keeps a connection that can take the next request (or closes it, when the pool is
    /// full).
    fn put(self: &Arc<Self>, key: Authority, tx: Sender) {
        if self.max_idle == 0 || self.idle_timeout.is_zero() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(key).or_default();
            if list.len() >= self.max_idle {
                // The oldest goes.
                list.remove(0);
            }
            let Some(ticket) = self.budget.ticket() else {
                return;
            };
            list.push(Idle {
                tx,
                since: Instant::now(),
                _ticket: ticket,
            });
        }
        if !self.reaping.swap(true, Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
    }

    /// Closes connections idle for longer than the timeout (and those the upstream
    /// closed).
    fn expire(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|e| {
                now.saturating_duration_since(e.since) < self.idle_timeout && !e.tx.is_closed()
            });
            !list.is_empty()
        });
    }
}

/// Expires idle connections until the pool is gone (a reload replaced it).
async fn reap(pool: std::sync::Weak<Pool>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => pool.expire(),
            None => return,
        }
    }
}

/// A connection lent to one exchange: it goes back to its pool (the shared one, or its
/// client connection's) when the response body is done with (dropped), once the
/// connection can take another request.
pub struct Pooled {
    pool: Arc<Pool>,
    /// The client connection's own idle connections, when the connection is private to
    /// it; `Weak`, so that a response outliving its client connection keeps nothing.
    private: Option<std::sync::Weak<Private>>,
    key: Authority,
    tx: Option<Sender>,
}

impl Pooled {
    fn put(
        pool: &Arc<Pool>,
        private: Option<&std::sync::Weak<Private>>,
        key: Authority,
        tx: Sender,
    ) {
        match private {
            None => pool.put(key, tx),
            Some(private) => {
                if let Some(private) = private.upgrade() {
                    private.put(
                        key,
                        Conn::Hyper(tx),
                        &pool.budget,
                        pool.max_idle,
                        pool.idle_timeout,
                    );
                }
            }
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(mut tx) = self.tx.take() else {
            return;
        };
        if tx.is_ready() {
            Pooled::put(&self.pool, self.private.as_ref(), self.key.clone(), tx);
        } else if !tx.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // The connection task has not yet taken in the end of the response: wait for
            // it (it fails if the connection closes instead).
            let pool = self.pool.clone();
            let private = self.private.clone();
            let key = self.key.clone();
            rt.spawn(async move {
                if tx.ready().await.is_ok() {
                    Pooled::put(&pool, private.as_ref(), key, tx);
                }
            });
        }
    }
}

/// An idle connection of either kind.
enum Conn {
    Hyper(Sender),
    Raw(RawConn),
}

/// One idle connection kept by a client connection.
struct PrivateIdle {
    key: Authority,
    conn: Conn,
    since: Instant,
    /// Also says which upstream (which config) the connection belongs to: a reload makes
    /// a new budget.
    ticket: Ticket,
}

/// The idle upstream connections of one client connection, when each opened with a PROXY
/// header naming the client (see the module docs): they close with it. At most
/// `pool_max_idle` of them (one is the usual: a client connection's requests mostly
/// resolve to the same client), and they count in the upstream's budget like any other.
#[derive(Default)]
pub struct Private {
    idle: Mutex<Vec<PrivateIdle>>,
}

impl std::fmt::Debug for Private {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Private").finish_non_exhaustive()
    }
}

impl Private {
    fn put(
        &self,
        key: Authority,
        conn: Conn,
        budget: &Arc<Budget>,
        max_idle: usize,
        idle_timeout: Duration,
    ) {
        if max_idle == 0 || idle_timeout.is_zero() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= max_idle {
            idle.remove(0);
        }
        let Some(ticket) = budget.ticket() else {
            return;
        };
        idle.push(PrivateIdle {
            key,
            conn,
            since: Instant::now(),
            ticket,
        });
    }

    /// The most recent idle connection for `key` of this upstream (`budget`) that
    /// `usable` accepts, idle for less than `idle_timeout` as of `now`; connections of an
    /// older config or past their time are closed on the way.
    fn take(
        &self,
        key: &Authority,
        budget: &Arc<Budget>,
        idle_timeout: Duration,
        now: Instant,
        mut usable: impl FnMut(&mut Conn) -> bool,
    ) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|e| {
            Arc::ptr_eq(&e.ticket.0, budget)
                && now.saturating_duration_since(e.since) < idle_timeout
                && match &mut e.conn {
                    Conn::Hyper(tx) => !tx.is_closed(),
                    Conn::Raw(raw) => !raw.gone(),
                }
        });
        let i = idle
            .iter_mut()
            .rposition(|e| e.key == *key && usable(&mut e.conn))?;
        Some(idle.remove(i).conn)
    }
}

std::thread_local! {
    /// The worker this thread runs (0 on the main thread): a connection is registered
    /// with its worker's event loop, so raw connections are pooled per worker.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as worker `i`.
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// A bare upstream connection used by the lean HTTP/1.1 path ([`crate::http::lean`]), with
/// the bytes read past the last response.
pub struct RawConn {
    /// The connection.
    pub io: UpstreamIo,
    /// Bytes read from it and not yet used.
    pub buf: crate::io::InBuf,
    /// Whether it served an earlier request.
    pub reused: bool,
}

impl RawConn {
    /// Whether the upstream closed it (or sent something unasked) while it was idle.
    /// Looks at the event loop's readiness first, so a live connection costs no system
    /// call.
    fn gone(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match &self.io {
            UpstreamIo::Tcp(s) => s.poll_read_ready(&mut cx),
            UpstreamIo::Unix(s) => s.poll_read_ready(&mut cx),
        };
        match ready {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                let read = match &self.io {
                    UpstreamIo::Tcp(s) => s.try_read(&mut probe),
                    UpstreamIo::Unix(s) => s.try_read(&mut probe),
                };
                !matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Idle raw connections, each with the time it became idle, most recently used last.
type IdleList = Vec<(RawConn, Instant, Ticket)>;

/// Idle raw connections to the upstream's own address (every request unless PROXY
/// headers go upstream, whose connections are [`Private`]), a list per worker: found
/// without hashing the key. Hashing the key (`Authority` hashes byte by byte) took more
/// instructions than the rest of the pool on every proxied request.
struct RawPool {
    idle: Mutex<Vec<IdleList>>,
    /// The pool key of the upstream's own address.
    own_key: Option<Authority>,
    max_idle: usize,
    idle_timeout: Duration,
    budget: Arc<Budget>,
    reaping: AtomicBool,
}

impl std::fmt::Debug for RawPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPool").finish_non_exhaustive()
    }
}

impl RawPool {
    /// Whether `key` is the upstream's own address: the same `Authority` handed out by
    /// [`Upstream::pool_key`] (its bytes shared, so one pointer compare), or equal to it.
    fn is_own(&self, key: &Authority) -> bool {
        self.own_key
            .as_ref()
            .is_some_and(|own| std::ptr::eq(own.as_str(), key.as_str()) || own == key)
    }

    /// An idle connection for `key`, alive and idle for less than the limit as of `now`.
    fn take(&self, key: &Authority, now: Instant) -> Option<RawConn> {
        if !self.is_own(key) {
            return None;
        }
        let worker = WORKER.with(std::cell::Cell::get);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(worker)?;
        let mut found = None;
        while let Some((mut conn, since, _ticket)) = list.pop() {
            if now.saturating_duration_since(since) < self.idle_timeout && !conn.gone() {
                found = Some(conn);
                break;
            }
        }
        found
    }

    fn put(self: &Arc<Self>, key: Authority, mut conn: RawConn) {
        if self.max_idle == 0 || self.idle_timeout.is_zero() || !self.is_own(&key) {
            return;
        }
        conn.reused = true;
        let worker = WORKER.with(std::cell::Cell::get);
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() <= worker {
                idle.resize_with(worker + 1, Vec::new);
            }
            let Some(list) = idle.get_mut(worker) else {
                return;
            };
            if list.len() >= self.max_idle {
                list.remove(0);
            }
            let Some(ticket) = self.budget.ticket() else {
                return;
            };
            list.push((conn, Instant::now(), ticket));
        }
        if !self.reaping.swap(true, Relaxed) {
            let pool = Arc::downgrade(self);
            let every = self.idle_timeout.max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(pool) = pool.upgrade() else { return };
                    let now = Instant::now();
                    let fresh = |(conn, since, _): &mut (RawConn, Instant, Ticket)| {
                        now.saturating_duration_since(*since) < pool.idle_timeout && !conn.gone()
                    };
                    let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                    for list in idle.iter_mut() {
                        list.retain_mut(fresh);
                    }
                }
            });
        }
    }
}

/// The upstream, ready to take requests.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The checked settings.
    pub settings: UpstreamSettings,
    connector: Connector,
    pool: Arc<Pool>,
    raw: Arc<RawPool>,
    authority: String,
    /// `authority` as a URI authority (the pool key without PROXY headers).
    key: Option<Authority>,
}

impl Upstream {
    /// Builds the pooled client.
    pub fn new(settings: UpstreamSettings) -> Self {
        let (target, authority) = match &settings.target {
            UpstreamTarget::Tcp(a) => (Target::Tcp(a.as_str().into()), a.clone()),
            UpstreamTarget::Unix(p) => (Target::Unix(Arc::new(p.clone())), "localhost".to_string()),
        };
        let connector = Connector {
            target,
            timeout: settings.connect_timeout,
            proxy: settings.proxy_protocol,
        };
        let budget = Arc::new(Budget {
            idle: AtomicUsize::new(0),
            max: settings.pool_max_idle_total,
        });
        let pool = Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle: settings.pool_max_idle,
            idle_timeout: settings.pool_idle_timeout,
            budget: budget.clone(),
            reaping: AtomicBool::new(false),
        });
        // Parsed once: every request's URI shares it.
        let key = Authority::try_from(authority.as_str()).ok();
        let raw = Arc::new(RawPool {
            idle: Mutex::new(Vec::new()),
            own_key: key.clone(),
            max_idle: settings.pool_max_idle,
            idle_timeout: settings.pool_idle_timeout,
            budget,
            reaping: AtomicBool::new(false),
        });
        Upstream {
            settings,
            connector,
            pool,
            raw,
            authority,
            key,
        }
    }

    /// The URI for a request: the upstream's authority (or, with PROXY headers, a
    /// per-client pool key) and the original path and query (`/` when it had none).
    pub fn uri(
        &self,
        path_and_query: Option<PathAndQuery>,
        client: SocketAddr,
        destination: SocketAddr,
    ) -> Result<Uri, http::Error> {
        let authority = match (&self.key, self.settings.proxy_protocol) {
            (Some(key), SendProxy::Off) => key.clone(),
            (None, SendProxy::Off) => Authority::try_from(self.authority.as_str())?,
            _ => Authority::try_from(encode_key(client, destination))?,
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query =
            Some(path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/")));
        Ok(Uri::from_parts(parts)?)
    }

    /// The pool key for a request from `client` to `destination`: the upstream's
    /// authority, or with PROXY headers one per client.
    pub fn pool_key(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
    ) -> Result<Authority, http::Error> {
        Ok(match (&self.key, self.settings.proxy_protocol) {
            (Some(key), SendProxy::Off) => key.clone(),
            (None, SendProxy::Off) => Authority::try_from(self.authority.as_str())?,
            _ => Authority::try_from(encode_key(client, destination))?,
        })
    }

    /// Whether connections are private to the client connection they were opened for
    /// (PROXY headers go upstream).
    fn private(&self) -> bool {
        self.settings.proxy_protocol != SendProxy::Off
    }

    /// An idle raw connection for `key` (this worker's, or with PROXY headers the client
    /// connection's own, `private`), if one is alive and, as of `now` (a clock reading
    /// the caller has), idle for less than `pool_idle_timeout`.
    pub fn take_raw(&self, key: &Authority, now: Instant, private: &Private) -> Option<RawConn> {
        if !self.private() {
            return self.raw.take(key, now);
        }
        let conn = private.take(key, &self.raw.budget, self.raw.idle_timeout, now, |c| {
            matches!(c, Conn::Raw(_))
        });
        match conn {
            Some(Conn::Raw(raw)) => Some(raw),
            _ => None,
        }
    }

    /// Keeps a raw connection that just finished a response cleanly (with PROXY headers,
    /// with the client connection it was opened for, `private`).
    pub fn put_raw(&self, key: Authority, mut conn: RawConn, private: &Private) {
        if !self.private() {
            return self.raw.put(key, conn);
        }
        conn.reused = true;
        private.put(
            key,
            Conn::Raw(conn),
            &self.raw.budget,
            self.raw.max_idle,
            self.raw.idle_timeout,
        );
    }

    /// Opens a raw connection for `key` (with the PROXY header it implies).
    pub async fn connect_raw(&self, key: &Authority) -> io::Result<RawConn> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(key.clone());
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
        let uri =
            Uri::from_parts(parts).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let io = self.connector.clone().call(uri).await?.into_inner();
        Ok(RawConn {
            io,
            buf: crate::io::InBuf::new(4096),
            reused: false,
        })
    }

    /// The Host header to send when the request had none.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Opens a connection for `uri`'s pool key and starts its task.
    async fn connect(&self, uri: Uri) -> Result<Sender, SendError> {
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(SendError::Connect)?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(tx)
    }

    /// Sends a request (its URI absolute, its authority the pool key) on a pooled
    /// connection, or a new one. A request that a pooled connection closed under before
    /// taking it is sent again on another.
    pub async fn send(
        &self,
        mut req: http::Request<Timed<Incoming>>,
        private: &Arc<Private>,
    ) -> Result<(http::Response<Incoming>, Pooled), SendError> {
        let uri = req.uri().clone();
        let Some(key) = uri.authority().cloned() else {
            return Err(SendError::Connect(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the upstream URI has no authority",
            )));
        };
        // What goes on the request line: authority-form for CONNECT, else origin-form.
        *req.uri_mut() = if req.method() == http::Method::CONNECT {
            let mut parts = http::uri::Parts::default();
            parts.authority = Some(key.clone());
            Uri::from_parts(parts).unwrap_or_default()
        } else {
            match uri.path_and_query() {
                Some(p) if p.as_str() != "/" => {
                    let mut parts = http::uri::Parts::default();
                    parts.path_and_query = Some(p.clone());
                    Uri::from_parts(parts).unwrap_or_default()
                }
                _ => Uri::default(),
            }
        };
        let private = self.private().then_some(private);
        loop {
            let idle = match private {
                None => self.pool.take(&key),
                Some(private) => match private.take(
                    &key,
                    &self.pool.budget,
                    self.pool.idle_timeout,
                    Instant::now(),
                    |c| matches!(c, Conn::Hyper(tx) if tx.is_ready()),
                ) {
                    Some(Conn::Hyper(tx)) => Some(tx),
                    _ => None,
                },
            };
            let (mut tx, reused) = match idle {
                Some(tx) => (tx, true),
                None => (self.connect(uri.clone()).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let pooled = Pooled {
                        pool: self.pool.clone(),
                        private: private.map(Arc::downgrade),
                        key,
                        tx: Some(tx),
                    };
                    return Ok((resp, pooled));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the pooled connection was closing. Try another.
                    Some(back) if reused => req = back,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }
}

fn hex_addr(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    format!("{:032x}{:04x}", u128::from(ip), addr.port())
}

fn unhex_addr(text: &str) -> Option<SocketAddr> {
    if text.len() != 36 {
        return None;
    }
    let ip = u128::from_str_radix(text.get(..32)?, 16).ok()?;
    let port = u16::from_str_radix(text.get(32..)?, 16).ok()?;
    let v6 = Ipv6Addr::from(ip);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    Some(SocketAddr::new(ip, port))
}

/// `<client>.<destination>.proxy.invalid`: a pool key that is also a valid host name.
fn encode_key(client: SocketAddr, destination: SocketAddr) -> String {
    format!(
        "{}.{}.proxy.invalid",
        hex_addr(client),
        hex_addr(destination)
    )
}

fn decode_key(host: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = host.strip_suffix(".proxy.invalid")?;
    let (client, destination) = rest.split_once('.')?;
    Some((unhex_addr(client)?, unhex_addr(destination)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_idle_connections_however_they_leave() {
        let budget = Arc::new(Budget {
            idle: AtomicUsize::new(0),
            max: 3,
        });
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
        let none = Arc::new(Budget {
            idle: AtomicUsize::new(0),
            max: 0,
        });
        assert!(none.ticket().is_none());
    }

    #[test]
    fn pool_keys_round_trip() {
        for (c, d) in [
            ("192.0.2.1:5000", "10.0.0.1:80"),
            ("[2001:db8::1]:1", "[::1]:65535"),
            ("192.0.2.1:0", "[::1]:80"),
        ] {
            let (c, d): (SocketAddr, SocketAddr) = (c.parse().unwrap(), d.parse().unwrap());
            let key = encode_key(c, d);
            assert!(key.parse::<http::uri::Authority>().is_ok(), "{key}");
            assert_eq!(decode_key(&key), Some((c, d)));
        }
        assert_eq!(decode_key("example.com"), None);
    }
}
