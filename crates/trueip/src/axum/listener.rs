//! [`ProxyProtocolListener`]: a `TcpListener` for `axum::serve` that reads the PROXY
//! protocol header trusted senders put before the HTTP bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::axum::extract::connect_info::Connected;
use ::axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::addr::{Node, normalize};
use crate::link::PrivateLink;
use crate::policy::{Connection, Policy};
use crate::proxy_protocol::{
    Command, PreambleError, ProxyHeader, ReadRules, Transport, Untrusted, read_preamble,
};
use crate::trust::TrustSet;

/// A [`TcpListener`] for [`axum::serve`](::axum::serve()) behind an L4 balancer (AWS NLB,
/// HAProxy `send-proxy-v2`, nginx `proxy_protocol on`) that opens each connection with a
/// PROXY protocol v1 or v2 header.
///
/// - A connection from a **trusted sender** (the policy's `proxy_protocol_from`) must start
///   with a valid header, complete within the [timeout](Self::timeout) and the
///   [size bound](Self::max_header_bytes). Its source becomes the connection's
///   [`proxy_source`](Connection::proxy_source); the bytes after it are the HTTP request,
///   untouched. A malformed, oversized, late or missing header closes the connection: the
///   specification forbids reading the bytes as anything else.
/// - A connection from **anyone else** is a direct client, served with no PROXY source —
///   unless its first bytes are a PROXY header, which closes it (and logs the sender, in
///   case it is a balancer missing from the trust set). An untrusted sender must likewise
///   show within the timeout that it is not sending one.
///
/// Each preamble is read in its own task, so a slow or silent connection never holds up
/// the next `accept`. Refused connections are logged through `log` (`warn`; a connection
/// closed before sending anything is `debug`).
///
/// The decoded [`Connection`] reaches handlers and
/// [`ClientIpLayer`](crate::tower::ClientIpLayer) through axum's connect info:
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use trueip::axum::{ClientIp, ProxyProtocolListener};
/// use trueip::{Connection, Policy, tower::ClientIpLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // The NLB's subnets may send PROXY headers; nothing else is trusted.
/// let policy = Policy::builder().proxy_protocol_from("10.0.0.0/16".parse()?).build()?;
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let listener = ProxyProtocolListener::new(tcp, &policy);
/// let app = Router::new()
///     .route("/", get(|ClientIp(ip): ClientIp| async move { format!("{ip}\n") }))
///     .layer(ClientIpLayer::new(policy));
/// axum::serve(listener, app.into_make_service_with_connect_info::<Connection>()).await?;
/// # Ok(())
/// # }
/// ```
pub struct ProxyProtocolListener {
    tcp: TcpListener,
    rules: Arc<Rules>,
    pending: JoinSet<Option<(ProxiedStream, SocketAddr)>>,
}

#[derive(Clone)]
struct Rules {
    senders: TrustSet,
    read: ReadRules,
}

impl ProxyProtocolListener {
    /// How long a connection has to deliver its header (or, from an untrusted sender, to
    /// show it is not sending one), unless [`timeout`](Self::timeout) says otherwise. The
    /// gateway's default too.
    pub const DEFAULT_TIMEOUT: Duration = ReadRules::DEFAULT_TIMEOUT;
    /// The largest header accepted, unless [`max_header_bytes`](Self::max_header_bytes)
    /// says otherwise: room for a v2 header with addresses and the TLVs load balancers send.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = ReadRules::DEFAULT_MAX_BYTES;

    /// Accepts on `tcp`, trusting the senders in `policy`'s
    /// [`proxy_protocol_from`](Policy::proxy_protocol_from): the same set the policy
    /// checks again when it resolves, so the two cannot disagree.
    pub fn new(tcp: TcpListener, policy: &Policy) -> Self {
        Self::with_senders(tcp, policy.proxy_protocol_from().clone())
    }

    /// Accepts on `tcp`, trusting `senders` to send PROXY headers. The policy given to
    /// [`ClientIpLayer`](crate::tower::ClientIpLayer) must trust them too
    /// (`proxy_protocol_from`), or it ignores the header's source and flags
    /// `untrusted_proxy_protocol`.
    pub fn with_senders(tcp: TcpListener, senders: TrustSet) -> Self {
        if senders.is_empty() {
            log::warn!(
                "ProxyProtocolListener: no sender may send PROXY headers (proxy_protocol_from is \
                 empty), so every connection is served as a direct client"
            );
        }
        ProxyProtocolListener {
            tcp,
            rules: Arc::new(Rules { senders, read: ReadRules::new(Untrusted::ServeDirect) }),
            pending: JoinSet::new(),
        }
    }

    /// How long a connection has to deliver its header.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        let rules = self.rules_mut();
        rules.read = rules.read.timeout(timeout);
        self
    }

    /// The largest header accepted, in bytes. Held between
    /// [`V1_MAX_LEN`](crate::proxy_protocol::V1_MAX_LEN) (a v1 line must fit) and
    /// [`V2_MAX_LEN`](crate::proxy_protocol::V2_MAX_LEN) (the largest v2 header there is).
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        let rules = self.rules_mut();
        rules.read = rules.read.max_bytes(max);
        self
    }

    /// The listener underneath.
    pub fn get_ref(&self) -> &TcpListener {
        &self.tcp
    }

    fn rules_mut(&mut self) -> &mut Rules {
        // Before the first accept nothing else holds the rules; after it, a change makes
        // a copy for the connections still to come.
        Arc::make_mut(&mut self.rules)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(ProxiedStream, SocketAddr)>> {
        loop {
            // Hand on whatever preamble finished first, then accept everything waiting,
            // each read in its own task.
            match self.pending.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(ready)))) => return Poll::Ready(Ok(ready)),
                // Refused (and logged by the task), or the task panicked.
                Poll::Ready(Some(Ok(None) | Err(_))) => continue,
                Poll::Ready(None) | Poll::Pending => {}
            }
            match self.tcp.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    self.pending.spawn(preamble(stream, peer, Arc::clone(&self.rules)));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A connection's address is the [`Connection`] its header decoded, not the TCP peer's
/// `SocketAddr`: axum's connect info through [`ListenerExt::tap_io`](::axum::serve::ListenerExt::tap_io)
/// is the listener's `Addr`, and as a `SocketAddr` it was the balancer's address, which
/// `ClientIpLayer` takes for a peer that sent no PROXY header (a trusted one, whose
/// `X-Forwarded-For` it then reads: the client's). So `ConnectInfo<SocketAddr>` does not
/// compile for this listener, tapped or not:
///
/// ```compile_fail
/// use axum::{Router, serve::ListenerExt};
/// use trueip::{Policy, axum::ProxyProtocolListener};
///
/// # async fn run(tcp: tokio::net::TcpListener, policy: Policy) {
/// let listener = ProxyProtocolListener::new(tcp, &policy).tap_io(|io| {
///     let _ = io.get_ref().set_nodelay(true);
/// });
/// let app = Router::new().into_make_service_with_connect_info::<std::net::SocketAddr>();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
///
/// The same with `Connection`, tapped or not, compiles:
///
/// ```no_run
/// use axum::{Router, serve::ListenerExt};
/// use trueip::{Connection, Policy, axum::ProxyProtocolListener};
///
/// # async fn run(tcp: tokio::net::TcpListener, policy: Policy) {
/// let listener = ProxyProtocolListener::new(tcp, &policy).tap_io(|io| {
///     let _ = io.get_ref().set_nodelay(true);
/// });
/// let app = Router::new().into_make_service_with_connect_info::<Connection>();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
///
/// `local_addr` is the listening address as the peer of a `Connection`.
impl Listener for ProxyProtocolListener {
    type Io = ProxiedStream;
    type Addr = Connection;

    async fn accept(&mut self) -> (ProxiedStream, Connection) {
        loop {
            match std::future::poll_fn(|cx| self.poll_next(cx)).await {
                Ok((stream, _)) => {
                    let connection = stream.connection().clone();
                    return (stream, connection);
                }
                Err(e) => accept_error(e).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Connection> {
        self.tcp.local_addr().map(Connection::from_peer)
    }
}

/// What `axum::serve`'s own `TcpListener` does: a connection that died in the backlog is
/// skipped; anything else (out of file descriptors) is logged and retried a second later,
/// rather than spinning.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    log::error!("ProxyProtocolListener: accept failed: {e}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl fmt::Debug for ProxyProtocolListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyProtocolListener")
            .field("tcp", &self.tcp)
            .field("rules", &self.rules.read)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// `axum::serve(listener, app.into_make_service_with_connect_info::<Connection>())`: the
/// peer, and the PROXY source a trusted sender named.
impl Connected<IncomingStream<'_, ProxyProtocolListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, ProxyProtocolListener>) -> Self {
        stream.io().connection().clone()
    }
}

/// The same connect info from a plain `TcpListener`, so that switching listeners changes
/// one line.
impl Connected<IncomingStream<'_, TcpListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Connection::from_peer(*stream.remote_addr())
    }
}

/// A connection [`ProxyProtocolListener`] accepted: the TCP stream after its PROXY
/// header, and what the header said.
pub struct ProxiedStream {
    stream: TcpStream,
    /// Bytes read while looking for the header that belong to the application: handed
    /// out before anything else is read from the socket.
    replay: Vec<u8>,
    replayed: usize,
    connection: Connection,
}

impl ProxiedStream {
    /// The peer, and the PROXY source when a trusted sender sent a header.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The TCP stream, e.g. for `set_nodelay` (through `ListenerExt::tap_io`). Read from
    /// the `ProxiedStream` itself: bytes that followed the header may already be in it.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl fmt::Debug for ProxiedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxiedStream")
            .field("stream", &self.stream)
            .field("connection", &self.connection)
            .field("replay_left", &self.replay.len().saturating_sub(self.replayed))
            .finish()
    }
}

impl AsyncRead for ProxiedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.replay.get(this.replayed..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.replayed += n;
            if this.replayed >= this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxiedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Reads what comes before the application's bytes (see [`read_preamble`]): the header
/// of a trusted sender, or enough of an untrusted sender's first bytes to know they are
/// not a header. `None`: refused, closed and logged.
async fn preamble(
    mut stream: TcpStream,
    peer: SocketAddr,
    rules: Arc<Rules>,
) -> Option<(ProxiedStream, SocketAddr)> {
    match read_preamble(&mut stream, peer.ip(), &rules.senders, &rules.read).await {
        Ok(preamble) => Some((
            ProxiedStream {
                stream,
                replay: preamble.rest,
                replayed: 0,
                connection: match &preamble.header {
                    Some(header) => connection(peer, header),
                    None => Connection::from_peer(peer),
                },
            },
            peer,
        )),
        Err(PreambleError::Closed(0)) => {
            // Health checks and port scanners do this all day.
            log::debug!("PROXY listener: connection from {peer} closed before sending anything");
            None
        }
        Err(why) => {
            let hint = match why {
                PreambleError::TooLarge(_) => " (ProxyProtocolListener::max_header_bytes)",
                PreambleError::Timeout(_) => " (ProxyProtocolListener::timeout)",
                _ => "",
            };
            let sender = if rules.senders.contains(normalize(peer.ip())) {
                "trusted sender"
            } else {
                "sender"
            };
            log::warn!(
                "PROXY listener: connection from {sender} {peer} closed: {}{hint}",
                crate::shown::log_text(&why)
            );
            None
        }
    }
}

/// The connection a valid header describes.
fn connection(peer: SocketAddr, header: &ProxyHeader) -> Connection {
    let mut conn = Connection::from_peer(peer);
    match header.command {
        // A datagram flow's source is whoever sent a datagram, not who opened this
        // stream: nginx and HAProxy keep the sender as the peer, and so do we.
        Command::Proxy if header.transport == Transport::Datagram => log::warn!(
            "PROXY listener: {peer} sent a header for a datagram flow on a TCP connection: \
             its addresses are not used, the sender stays the peer"
        ),
        Command::Proxy => {
            conn.proxy_source = header.addrs.map(|a| Node::from(a.source));
            conn.private_link = PrivateLink::from_tlvs(&header.tlvs);
        }
        // The balancer's own health check: nothing in it is about a client.
        Command::Local => {}
    }
    conn
}
