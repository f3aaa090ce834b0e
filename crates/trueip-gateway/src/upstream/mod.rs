//! The pooled HTTP/1.1 client to the upstream, over TCP or a unix socket, for both wire
//! paths: hyper's client connections (kept here rather than in hyper-util's legacy
//! client, which costs more per request) and bare ones ([`raw`]: the lean path's, and
//! hyper's path's for HTTP/2 requests without a body), in one [`Pool`] type.
//!
//! Every request names its connection by a pool key. Without PROXY headers to the
//! upstream the key is the upstream's own address, and idle connections wait in their
//! worker's pool (a connection is registered with the event loop of the worker that
//! opened it).
//!
//! With `upstream.proxy_protocol` set, every upstream connection opens with a PROXY
//! header naming one client connection (or, for a client found in a forwarding header,
//! one client), so it may only be reused for that same client: the key names the
//! announced addresses (`<hex>.<hex>.proxy.invalid`), the connector reads them back, and
//! the key never reaches the upstream (the Host header is set explicitly). Such a
//! connection is kept idle with the client connection it was opened for, in that
//! connection's own pool: once that client connection closes no request can use it
//! again, so it closes too. (In a shared pool keyed by client, every client connection
//! ever seen would leave one idle connection, and one descriptor, until
//! `pool_idle_timeout`.) HAProxy does the same with `send-proxy` server connections: it
//! marks them private to the client session.

mod body;
mod connect;
mod pool;
pub(crate) mod raw;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

pub(crate) use body::{BoxError, ClientBody, Stalled, Timed};
pub(crate) use connect::{connect_tcp, tls_refused};
pub(crate) use pool::{Pool, Pooled, Private, RawConn, set_worker};

use crate::config::{SendProxy, UpstreamSettings, UpstreamTarget};
use crate::io::{InBuf, KEEP_BETWEEN_REQUESTS};
use connect::Connector;
use pool::{Budget, Conn, Limits, Sender, Sender2};

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(io::Error),
    /// The connection broke, or the answer was not HTTP.
    Http(hyper::Error),
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

/// How much of a request reached the upstream before its connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// None of it: hyper handed the request back.
    NotSent,
    /// Perhaps all of it: a bare exchange wrote it, and no response came.
    MaybeSent,
    /// All of it: a response began (an interim one too), so the upstream read it.
    Answered,
}

impl Delivery {
    /// What a bare exchange that wrote the request knows of it: `heard` is whether any
    /// byte of a response came before the connection failed.
    pub(crate) fn written(heard: bool) -> Self {
        if heard { Delivery::Answered } else { Delivery::MaybeSent }
    }
}

/// Whether a request whose connection failed before any response may go again, on
/// another connection. Only after a reused connection failed: an idle connection the
/// upstream closed meanwhile is the usual cause, and a new one is not. A request never
/// sent may always go again; one that may have reached the upstream only once more,
/// and only when it is idempotent (RFC 9110 §9.2.2), as the upstream may have acted on
/// it.
pub(crate) fn may_resend(
    method: &Method,
    reused: bool,
    delivery: Delivery,
    resent_before: bool,
) -> bool {
    reused
        && match delivery {
            Delivery::NotSent => true,
            Delivery::MaybeSent => method.is_idempotent() && !resent_before,
            Delivery::Answered => false,
        }
}

/// The request of a failed `try_send_request`, when hyper gives it back unsent and
/// [`may_resend`] lets it go again on another connection; otherwise the failure.
fn unsent<B>(
    mut e: hyper::client::conn::TrySendError<http::Request<B>>,
    reused: bool,
) -> Result<http::Request<B>, SendError> {
    match e.take_message() {
        Some(back) if may_resend(back.method(), reused, Delivery::NotSent, false) => Ok(back),
        _ => Err(SendError::Http(e.into_error())),
    }
}

/// The upstream, ready to take requests.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The checked settings.
    pub(crate) settings: UpstreamSettings,
    connector: Connector,
    /// One pool per worker.
    workers: Box<[Arc<Pool>]>,
    limits: Limits,
    /// `https` for a TLS upstream: the scheme of an HTTP/2 request's target.
    scheme: Scheme,
    authority: String,
    /// `authority` as a pool key, made once: every request's key shares its bytes.
    key: Option<Authority>,
}

impl Upstream {
    /// Builds the pooled client to `target` for `workers` worker threads (reads the TLS
    /// files of an `https://` target).
    pub(crate) fn new(
        target: UpstreamTarget,
        settings: UpstreamSettings,
        workers: usize,
    ) -> Result<Self, trueip::ConfigError> {
        let (authority, tls) = match &target {
            UpstreamTarget::Tcp(a) => (a.clone(), None),
            UpstreamTarget::Https(a) => (a.clone(), Some(crate::tls::client(&settings, a)?)),
            UpstreamTarget::Unix(_) => ("localhost".to_string(), None),
        };
        Ok(Upstream {
            scheme: match tls {
                Some(_) => Scheme::HTTPS,
                None => Scheme::HTTP,
            },
            connector: Connector::new(
                &target,
                tls,
                settings.connect_timeout,
                settings.proxy_protocol,
            ),
            workers: (0..workers.max(1)).map(|_| Arc::new(Pool::worker())).collect(),
            limits: Limits {
                budget: Budget::new(settings.pool_max_idle_total),
                max_idle: settings.pool_max_idle,
                idle_timeout: settings.pool_idle_timeout,
            },
            key: Authority::try_from(authority.as_str()).ok(),
            authority,
            settings,
        })
    }

    /// Whether the lean HTTP/1.1 path may forward to this upstream: not over HTTP/2,
    /// which only hyper's client speaks.
    pub(crate) fn lean(&self) -> bool {
        !self.settings.http2
    }

    /// The pool key for a request from `client` to `destination`: the upstream's
    /// address, or with PROXY headers one per client.
    pub(crate) fn pool_key(
        &self,
        client: trueip::addr::Peer,
        destination: Option<SocketAddr>,
    ) -> Option<Authority> {
        match (&self.key, self.settings.proxy_protocol) {
            (Some(key), SendProxy::Off) => Some(key.clone()),
            (None, SendProxy::Off) => Authority::try_from(self.authority.as_str()).ok(),
            _ => {
                // A PROXY header names two addresses: a client without one (a Unix-socket
                // peer) or a listener without one (`unix:`) has none to send. The config
                // refuses [upstream] proxy_protocol with a `unix:` listener.
                let client = client.node()?;
                let client = SocketAddr::new(client.ip, client.port.unwrap_or(0));
                connect::pool_key(client, destination?).ok()
            }
        }
    }

    /// The Host header to send when the request had none.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// Where idle connections wait: the client connection's own pool (`private`) when
    /// PROXY headers go upstream, else this worker's.
    fn pool<'a>(&'a self, private: &'a Private) -> &'a Arc<Pool> {
        if self.settings.proxy_protocol != SendProxy::Off {
            return private.pool();
        }
        // More workers than pools only after a reload changed `limits.workers`, which
        // applies at the next start: those share the first pool.
        let workers = &self.workers;
        workers.get(pool::worker()).or_else(|| workers.first()).unwrap_or_else(|| private.pool())
    }

    /// An idle bare connection for `key`, alive and, as of `now` (a clock reading the
    /// caller has), idle for less than `pool_idle_timeout`.
    pub(crate) fn take_raw(
        &self,
        key: &Authority,
        now: Instant,
        private: &Private,
    ) -> Option<RawConn> {
        let usable = |c: &Conn| matches!(c, Conn::Raw(_));
        match self.pool(private).take(key, &self.limits, now, usable) {
            Some(Conn::Raw(raw)) => Some(raw),
            _ => None,
        }
    }

    /// Keeps a bare connection that just finished a response cleanly, at `now` (a clock
    /// reading taken as the response ended). What one large response head grew its
    /// buffer to is given back first: the pool may hold a thousand connections.
    pub(crate) fn put_raw(
        &self,
        key: Authority,
        mut conn: RawConn,
        private: &Private,
        now: Instant,
    ) {
        conn.reused = true;
        conn.buf.shrink_to(KEEP_BETWEEN_REQUESTS);
        self.pool(private).put(key, Conn::Raw(conn), &self.limits, now);
    }

    /// Where a bare connection for `key` goes back once its response is done.
    fn lease(&self, key: Authority, private: &Private) -> Pooled {
        Pooled {
            pool: Arc::downgrade(self.pool(private)),
            limits: self.limits.clone(),
            key,
            tx: None,
        }
    }

    /// Opens a bare connection for `key` (with the PROXY header it implies).
    pub(crate) async fn connect_raw(&self, key: &Authority) -> io::Result<RawConn> {
        Ok(RawConn { io: self.connector.connect(key).await?, buf: InBuf::new(4096), reused: false })
    }

    /// Opens a hyper connection for `key` and starts its task.
    async fn connect(&self, key: &Authority) -> Result<Sender, SendError> {
        let io = self.connector.connect(key).await.map_err(SendError::Connect)?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(tx)
    }

    /// Opens an HTTP/2 connection for `key` (prior knowledge in the clear, ALPN `h2`
    /// over TLS) and starts its task.
    async fn connect_h2(&self, key: &Authority) -> Result<Sender2, SendError> {
        let io = self.connector.connect(key).await.map_err(SendError::Connect)?;
        let (tx, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake(TokioIo::new(io))
                .await
                .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream HTTP/2 connection ended: {e}");
            }
        });
        Ok(tx)
    }

    /// Sends a request, its target in origin form (authority form for `CONNECT`), on an
    /// idle connection for `key`, or a new one.
    pub(crate) async fn send(
        &self,
        mut req: http::Request<Timed<Incoming>>,
        key: Authority,
        private: &Private,
    ) -> Result<(http::Response<Incoming>, Pooled), SendError> {
        if req.method() == Method::CONNECT {
            let mut parts = http::uri::Parts::default();
            parts.authority = Some(key.clone());
            *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        }
        if self.settings.http2 {
            return self.send_h2(req, key, private).await;
        }
        let pool = self.pool(private);
        loop {
            let ready = |c: &Conn| matches!(c, Conn::Hyper(tx) if tx.is_ready());
            let idle = match pool.take(&key, &self.limits, Instant::now(), ready) {
                Some(Conn::Hyper(tx)) => Some(tx),
                _ => None,
            };
            let reused = idle.is_some();
            let mut tx = match idle {
                Some(tx) => tx,
                None => self.connect(&key).await?,
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let pooled = Pooled {
                        pool: Arc::downgrade(pool),
                        limits: self.limits.clone(),
                        key,
                        tx: Some(tx),
                    };
                    return Ok((resp, pooled));
                }
                Err(e) => req = unsent(e, reused)?,
            }
        }
    }
}

impl Upstream {
    /// [`Upstream::send`] over HTTP/2. One connection carries many requests at once, so
    /// it stays in the pool while it serves (put back as soon as it is taken, counted
    /// once in the budget, its idle time counted from its latest request), and the
    /// response hands nothing back. The target becomes absolute (`:scheme`,
    /// `:authority` from the request's Host, else the upstream's address); hyper sends
    /// the Host line too, as the HTTP/1.1 path does.
    async fn send_h2(
        &self,
        mut req: http::Request<Timed<Incoming>>,
        key: Authority,
        private: &Private,
    ) -> Result<(http::Response<Incoming>, Pooled), SendError> {
        if req.method() != Method::CONNECT {
            let authority = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .or_else(|| self.key.clone());
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = authority;
            parts.path_and_query = req
                .uri()
                .path_and_query()
                .cloned()
                .or_else(|| Some(PathAndQuery::from_static("/")));
            *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        }
        let pool = self.pool(private);
        loop {
            let ready = |c: &Conn| matches!(c, Conn::H2(tx) if tx.is_ready());
            let idle = match pool.take(&key, &self.limits, Instant::now(), ready) {
                Some(Conn::H2(tx)) => Some(tx),
                _ => None,
            };
            let reused = idle.is_some();
            let mut tx = match idle {
                Some(tx) => tx,
                None => self.connect_h2(&key).await?,
            };
            pool.put(key.clone(), Conn::H2(tx.clone()), &self.limits, Instant::now());
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let pooled = Pooled {
                        pool: Arc::downgrade(pool),
                        limits: self.limits.clone(),
                        key,
                        tx: None,
                    };
                    return Ok((resp, pooled));
                }
                Err(e) => req = unsent(e, reused)?,
            }
        }
    }
}

/// The target a `method` request with `path_and_query` is forwarded with, as the upstream
/// receives it (its `path_and_query().as_str()` is what goes on the request line, and what
/// a signature binds): origin-form (RFC 9112 §3.2.1), `/` when it had none; a target that
/// is only a query (an HTTP/2 `:path` of `?q`, which no request line may carry) gets its
/// `/`; `*` only for `OPTIONS` (§3.2.4). `None`: the target cannot be forwarded.
pub(crate) fn origin_form(method: &Method, path_and_query: Option<&PathAndQuery>) -> Option<Uri> {
    let p = match path_and_query.map(PathAndQuery::as_str) {
        None | Some("/") => return Some(Uri::default()),
        Some("*") if *method != Method::OPTIONS => return None,
        Some(query) if query.starts_with('?') => {
            PathAndQuery::try_from(format!("/{query}")).ok()?
        }
        Some(_) => path_and_query?.clone(),
    };
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(p);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pooled_connection_gives_back_what_a_large_head_grew_its_buffer_to() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let target = UpstreamTarget::Tcp(addr.to_string());
        let upstream = Upstream::new(target, UpstreamSettings::default(), 1).expect("upstream");
        let io =
            connect::UpstreamIo::Tcp(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        // The upstream end stays open: a closed one is not handed out again.
        let (_peer, _) = listener.accept().await.expect("accept");
        let grown = InBuf::new(8 * KEEP_BETWEEN_REQUESTS);
        let key = upstream.pool_key(trueip::addr::Peer::Unix, None).expect("key");
        let private = Private::default();
        let now = Instant::now();
        upstream.put_raw(key.clone(), RawConn { io, buf: grown, reused: false }, &private, now);
        let kept = upstream.take_raw(&key, now, &private).expect("the connection was pooled");
        assert!(kept.buf.capacity() <= KEEP_BETWEEN_REQUESTS, "{} bytes kept", kept.buf.capacity());
        assert!(kept.reused);
    }
}
