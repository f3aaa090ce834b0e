//! Accepting connections: the connection limit, the PROXY header, TLS, then a codec
//! (`http::lean`, `http::hyper`) or a TCP relay.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use trueip::addr::Peer;
use trueip::proxy_protocol::PreambleError;

use crate::config::{ListenerId, Mode, ProxyProtocol};
use crate::context::{ConnCtx, Open, Permit, Retired, Role, Shared, Stops};
use crate::http::{hyper, lean};
use crate::io::{Activity, Held, NoDelay, Rewind, Socket, Stream, TcpAcceptor, Tracked};
use crate::logging::Throttle;
use crate::metrics::ClientErrorKind;
use crate::{proxy, tcp};

/// A listening socket: TCP, or a Unix socket (`unix:/path`).
pub(crate) enum Listener {
    /// TCP.
    Tcp(TcpAcceptor),
    /// A Unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// The address every connection on this listener has at its end: the listener's own,
    /// when it is bound to one address. `None` for a wildcard (`0.0.0.0`, `[::]`), where
    /// each connection's depends on the address the client reached, and for a Unix socket.
    fn bound_to(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().filter(|a| !a.ip().is_unspecified()),
            Listener::Unix(_) => None,
        }
    }

    /// The next connection: the socket, its peer, and the local address (none for a
    /// Unix socket, whose peers have no address either). `bound` is [`Listener::bound_to`]:
    /// only a wildcard listener asks the kernel (`getsockname`) for each connection's.
    /// `nodelay`: how this listener's connections start, once its first one told
    /// ([`NoDelay::accepted`]).
    async fn accept(
        &self,
        bound: Option<SocketAddr>,
        nodelay: &mut Option<NoDelay>,
    ) -> std::io::Result<(Socket, Peer, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let local = bound.or_else(|| stream.local_addr().ok());
                let nodelay = *nodelay.get_or_insert_with(|| NoDelay::accepted(&stream));
                Ok((Socket::tcp(stream, nodelay), Peer::from(peer), local))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                Ok((Socket::Unix(stream), Peer::Unix, None))
            }
        }
    }
}

/// Keeps a timer due within [`TIMER_FLOOR`] in this worker's timer wheel, always.
///
/// tokio wakes its own event loop (an eventfd write, then one more return from
/// `epoll_wait`) whenever a timer is armed that is due before the earliest timer it knew
/// of when it last polled epoll: it has promised epoll a wake-up no later than that one.
/// A connection whose first bytes are not there yet arms the header (or PROXY, or
/// handshake) deadline and the idle timer, due in 5 s or more by default, and those were
/// the earliest whenever no other connection was waiting as long: on row `close` of
/// `bench/gateway.sh`, 0.22 eventfd writes per connection, 0.55 once the first read
/// waits for epoll (`accept`). With a timer always due within the floor, a
/// deadline at least that far away is never the earliest and wakes nothing: 0.03. The
/// cost is one wake-up of each worker per [`TIMER_FLOOR`]. Deadlines shorter than the
/// floor (only where the config sets them so) wake the loop as before.
pub(crate) async fn timer_floor() {
    let mut tick = tokio::time::interval(TIMER_FLOOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// See [`timer_floor`].
const TIMER_FLOOR: Duration = Duration::from_secs(1);

fn role_listener(role: Role) -> Option<ListenerId> {
    match role {
        Role::Listener(id) => Some(id),
        Role::Admin => None,
    }
}

/// Accepts until shutdown, or until a reload closes the socket (`retired`).
pub(crate) async fn accept(listener: Listener, role: Role, shared: Arc<Shared>, retired: Retired) {
    let bound = listener.bound_to();
    let mut nodelay = None;
    // tokio takes a Unix socket it has just accepted for readable, so that its first read
    // tries `recv` at once; when the client's first bytes have not arrived yet, that read
    // fails with `EAGAIN`. The connection's task yields once before its first read (see
    // `connection`) and tokio polls epoll meanwhile, which reports the bytes already
    // there: without the guess, `recv` is called only when there is something to read.
    // (A TCP socket is read before it is registered at all: see `io::LazyTcp`.) Only on a
    // runtime of one thread (every worker's): there nothing polls epoll between the accept
    // and the clearing, where elsewhere another thread could take the socket's one
    // readable event (edge-triggered) in between, and the connection would wait for bytes
    // already read.
    let epoll_first = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let stops = Arc::new(Stops { ended: crate::context::Stop::default(), retired });
    // The loop's connections wait for its end, which this sets however the loop ends.
    let _ended = Ended(stops.clone());
    // Made once, not per accepted connection: each wait registers once.
    let (mut shutdown, mut retired) = (shared.shutdown.wait(), stops.retired.wait());
    let mut stop = std::future::poll_fn(|cx| match Pin::new(&mut shutdown).poll(cx) {
        Poll::Ready(()) => Poll::Ready(()),
        Poll::Pending => Pin::new(&mut retired).poll(cx),
    });
    loop {
        let accepted = tokio::select! {
            r = listener.accept(bound, &mut nodelay) => r,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, peer, local)) => {
                if epoll_first {
                    stream.forget_readable_guess();
                }
                // Apart, lines too: a public flood's refusals leave none of the admin's out.
                static REFUSED: Throttle = Throttle::new();
                static REFUSED_ADMIN: Throttle = Throttle::new();
                let (capacity, setting, refused) = match role {
                    Role::Listener(_) => (&shared.connections, "limits.max_connections", &REFUSED),
                    Role::Admin => {
                        (&shared.admin_connections, "admin.max_connections", &REFUSED_ADMIN)
                    }
                };
                let Some(permit) = capacity.try_take() else {
                    shared.metrics.connection_rejected();
                    if let Some(left_out) = refused.admit() {
                        let not_logged = (left_out > 0).then_some(left_out);
                        tracing::warn!(%peer, not_logged, "connection refused: {setting} reached");
                    }
                    drop(stream);
                    continue;
                };
                let shared = shared.clone();
                let stops = stops.clone();
                // Boxed: tokio moves a task's future into its cell and writes the cell's
                // stage again as the task ends, so an unboxed connection future (its
                // states' locals, 750 bytes) was copied three times or more per
                // connection, and the cell (its alignment 128 bytes) was a size that
                // mimalloc serves by over-allocating. With a box's pointer the cell is
                // 128 bytes, a size whose blocks are aligned so, and the future is
                // moved once, into its box.
                tokio::spawn(Box::pin(connection(
                    stream, peer, local, role, shared, permit, stops,
                )));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = &mut stop => break,
                }
            }
        }
    }
}

/// Sets an accept loop's [`Stops::ended`] when the loop ends.
struct Ended(Arc<Stops>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.set();
    }
}

async fn connection(
    mut stream: Socket,
    peer: Peer,
    local: Option<SocketAddr>,
    role: Role,
    shared: Arc<Shared>,
    permit: Permit,
    stops: Arc<Stops>,
) {
    // A new connection's first bytes are often not there yet when it is accepted. Yielding
    // once lets them come while tokio runs its other tasks and polls epoll: a TCP socket's
    // first read then finds them more often, and such a socket is never registered with
    // the event loop (`io::LazyTcp`); a Unix socket learns its readiness from that poll
    // (`accept` drops tokio's guess). A first read that waits arms its deadline (PROXY
    // header, handshake, request head), and tokio often wakes its own driver with an
    // eventfd write for such a timer. On row `close` of `bench/gateway.sh` (perf trace,
    // when every socket was registered at its accept): 0.99 -> 0.70 eventfd writes per
    // connection, about 2 µs less CPU per request.
    tokio::task::yield_now().await;
    let open = Open::new(shared.metrics.clone(), permit);
    let state = shared.state.load_full();
    // The listener's settings now; none when a reload just removed it.
    let (index, listener, acceptor) = match role {
        Role::Listener(id) => {
            let Some(i) = state.settings.listener_index(id) else {
                return;
            };
            match (state.settings.listeners.get(i), state.tls.get(i)) {
                (Some(l), Some(t)) => (Some(i), Some(l), t.clone()),
                _ => return,
            }
        }
        Role::Admin => (None, None, None),
    };
    let limits = &state.settings.limits;

    let mut received = None;
    let mut prefix = Bytes::new();
    // The lean path's buffers, holding the bytes read after a PROXY header.
    let mut first = None;
    // The config refuses PROXY headers on `unix:` listeners: a peer without an address
    // reaches this only on a TCP listener, never.
    if let (Some(l), Some(peer_ip)) =
        (listener.filter(|l| l.proxy_protocol != ProxyProtocol::Off), peer.ip())
    {
        // Read into the buffer the lean path reads requests into: the header and the
        // request usually come in one read, and are then read once, into a buffer kept
        // from an earlier connection (no allocation, no zeroing, no copy). A connection
        // that goes elsewhere (TLS, a byte relay, hyper) gets the bytes through `Rewind`.
        // The header's timer, if it waits, is the one the lean path re-aims at the
        // request head and the upstream's answer: a late header arms no timer of its own.
        let mut bufs = lean::Buffers::take();
        let (storage, expired) = bufs.for_preamble(limits.proxy_protocol_timeout);
        let senders = state.settings.policy_for(role_listener(role)).proxy_protocol_from();
        match Box::pin(proxy::read_header(
            &mut stream,
            peer_ip,
            senders,
            l.proxy_protocol,
            limits,
            storage,
            expired,
        ))
        .await
        {
            Ok((r, rest)) => {
                if let Some(why) = r.as_ref().and_then(|r| r.ignored) {
                    shared.metrics.proxy_ignored(why);
                    tracing::warn!(%peer, listener = %l.address, reason = why.name(), "PROXY header describes a datagram flow, not this TCP connection: its addresses are not used, the sender is the peer");
                }
                received = r;
                bufs.input().read_in(rest);
                // The same test as the lean arm below, for a connection without TLS
                // (where no ALPN can choose HTTP/2).
                if acceptor.is_none() && l.mode != Mode::Tcp && limits.lean_http1 {
                    first = Some(bufs);
                } else {
                    prefix = Bytes::copy_from_slice(bufs.input().filled());
                    bufs.give_back();
                }
            }
            Err(e) => {
                bufs.give_back();
                shared.metrics.proxy_error(proxy::error_kind(&e));
                if let (PreambleError::UntrustedSender, Some(i)) = (&e, index) {
                    let keep = state.settings.admin.forgeries;
                    if keep > 0 && shared.forgeries.admit(std::time::Instant::now()) {
                        shared
                            .forgeries
                            .record(crate::forgeries::Entry::proxy_refused(peer, i), keep);
                    }
                }
                let setting = proxy::error_setting(&e);
                // Two shares of lines, the trusted senders' and everyone else's: a
                // stranger's flood (refused, or served direct under `from-senders`) then
                // never leaves out a balancer's broken headers, the lines an operator
                // needs.
                static FROM_SENDERS: Throttle = Throttle::new();
                static FROM_OTHERS: Throttle = Throttle::new();
                let throttle = if senders.contains(peer_ip) { &FROM_SENDERS } else { &FROM_OTHERS };
                if matches!(e, PreambleError::Closed(0)) {
                    tracing::debug!(%peer, listener = %l.address, "connection closed: {e}");
                } else if let Some(left_out) = throttle.admit() {
                    let not_logged = (left_out > 0).then_some(left_out);
                    // The error quotes the sender's bytes as written.
                    let e = trueip::shown::log_text(&e);
                    tracing::warn!(%peer, listener = %l.address, not_logged, "connection closed: {e}{setting}");
                }
                return;
            }
        }
    }

    let rewound = Rewind::new(prefix, stream);
    let tls = acceptor.is_some();
    // The handshake with its timer, and each codec below, is a boxed future (as is the
    // PROXY header's read, above): this task's own future is then small. tokio copies a
    // task's whole future when spawning it and again when it ends, and unboxed this one
    // was as large as the largest state any codec can be in (hyper's connection, the lean
    // path's header slots, a handshake): those two copies were 5% of the gateway's CPU on
    // a new connection per request (perf, row `close` of `bench/gateway.sh`). Boxed, a
    // connection allocates only what it runs. (The timers and the PROXY read, boxed too:
    // 3 % fewer user-space instructions per request on rows `close` and `proxy-v2`,
    // `bench/instructions.sh`.)
    let io = match acceptor {
        Some(acceptor) => {
            let handshake = async {
                match acceptor.accept(Held::new(rewound)).into_fallible().await {
                    Ok(mut s) => {
                        let (io, tls) = s.get_mut();
                        io.defer();
                        // TLS 1.2 ends with the server's Finished, which the client waits
                        // for: only TLS 1.3's ticket waits for the first response.
                        if tls.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
                            std::future::poll_fn(|cx| io.poll_release(cx)).await?;
                        }
                        Ok(s)
                    }
                    // The alert that says why, if rustls wrote one, is still held.
                    Err((e, mut io)) => {
                        let _ = std::future::poll_fn(|cx| io.poll_release(cx)).await;
                        Err(e)
                    }
                }
            };
            match Box::pin(tokio::time::timeout(limits.tls_handshake_timeout, handshake)).await {
                Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    shared.metrics.tls_error();
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    shared.metrics.tls_error();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        None => Stream::Plain(rewound),
    };
    // The HTTP version ALPN chose, if it chose one (a client without ALPN may still send
    // HTTP/2's preface: its first bytes tell then).
    let alpn = match &io {
        Stream::Tls(s) => match s.get_ref().1.alpn_protocol() {
            Some(b"h2") => Some(hyper::Protocol::Http2),
            Some(_) => Some(hyper::Protocol::Http1),
            None => None,
        },
        Stream::Plain(_) => None,
    };
    let h2 = alpn == Some(hyper::Protocol::Http2);
    // Only a byte relay asks when bytes last moved (an HTTP connection starts timing
    // them if it becomes a tunnel).
    let relay = matches!(listener, Some(l) if l.mode == Mode::Tcp);
    // One clock reading for the connection's start and its first activity.
    let opened = std::time::Instant::now();
    let activity = Arc::new(Activity::new_at(relay, opened));
    let io = Tracked::new(io, activity.clone(), state.settings.limits.send_timeout);
    let ctx = Arc::new(ConnCtx {
        shared: shared.clone(),
        peer,
        local,
        proxy: received,
        tls,
        activity,
        opened,
        role,
        stops,
        upstream_idle: crate::upstream::Private::default(),
        _open: open,
    });
    let activity = ctx.activity.clone();
    match listener {
        Some(l) if l.mode == Mode::Tcp => Box::pin(tcp::relay(io, &ctx, &state, l)).await,
        // HTTP/1.1, in cleartext or under TLS (where ALPN chose `http/1.1`, or nothing):
        // plain requests take the lean path; hyper gets the connection (and the bytes read
        // so far) at the first request that is not plain. HTTP/2: hyper from the start.
        // Through hyper, a request over TLS cost about as much CPU as nginx's; through
        // the lean path, as little as a cleartext one (perf, rows `tls*`).
        _ if !h2 && role != Role::Admin && state.settings.limits.lean_http1 => {
            let mut io = io;
            match Box::pin(lean::serve(&mut io, &ctx, first)).await {
                lean::After::Hyper { read, opening } => {
                    drop(state);
                    let state = shared.state.load_full();
                    // What ALPN chose stays chosen, and a connection that has served an
                    // HTTP/1.1 request is one: HTTP/2's preface only opens a connection
                    // (RFC 9113 §3.3, §3.4). Else the first bytes tell.
                    let known = if opening { alpn } else { Some(hyper::Protocol::Http1) };
                    Box::pin(hyper::serve(Rewind::new(read, io), ctx, &state, known)).await;
                }
                // hyper ends a TLS connection with close_notify, so that a client reading
                // a body delimited by the close knows it has all of it: so does this. The
                // shutdown writes the last response if it was held for close_notify
                // (`Tracked::hold_until_close`), timed as every write to the client is, by
                // `send_timeout` from the client's last progress.
                lean::After::Closed => {
                    if tls {
                        let _ = io.shutdown().await;
                    }
                    io.linger().await;
                }
                // A response broken off ends without close_notify, as hyper's does.
                lean::After::Aborted => {}
            }
        }
        _ => Box::pin(hyper::serve(io, ctx, &state, alpn)).await,
    }
    if activity.send_timed_out() {
        shared.metrics.client_error(ClientErrorKind::SendTimeout);
        tracing::debug!(%peer, "closed: the client read nothing for limits.send_timeout");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::testing::{Build, Server};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Starts the gateway in-process on a loopback port with `toml`; returns its address.
    async fn start(toml: &str) -> (SocketAddr, Server) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, Server::start(listener, &Build::new(toml, true).unwrap()).unwrap())
    }

    async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    const PP: &str = r#"
        [client_ip]
        proxy_protocol_from = ["127.0.0.0/8"]
        [[listen]]
        address = "127.0.0.1:1"
        proxy_protocol = "v1"
        [limits]
        proxy_protocol_timeout = "300ms"
    "#;

    #[tokio::test]
    async fn proxy_source_replaces_the_peer_end_to_end() {
        let (addr, _) = start(PP).await;
        let reply = exchange(
            addr,
            b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\r\nGET /json HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let body: serde_json::Value =
            serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["client_ip"], "198.51.100.7");
        assert_eq!(body["source"], "proxy-protocol");
        assert_eq!(body["direct_ip"], "127.0.0.1");
        assert_eq!(body["headers"]["x-forwarded-for"][0], "6.6.6.6");
    }

    /// An upstream that answers each request with its head as the body.
    async fn echo_upstream() -> SocketAddr {
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = up.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(chunk.get(..n).unwrap());
                        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = got.drain(..i + 4).collect();
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                head.len()
                            );
                            s.write_all(answer.as_bytes()).await.unwrap();
                            s.write_all(&head).await.unwrap();
                        }
                    }
                });
            }
        });
        addr
    }

    /// The port the client connected to reaches the upstream (`X-Forwarded-Port`) from a
    /// listener bound to one address, whose connections' local address is the listener's
    /// (no `getsockname`), as from a wildcard one, where each connection's is asked for.
    #[tokio::test]
    async fn the_port_the_client_reached_is_forwarded_from_specific_and_wildcard_listeners() {
        let upstream = echo_upstream().await;
        let toml = format!(
            "[upstream]\nurl = \"http://{upstream}\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n"
        );
        for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
            let listener = TcpListener::bind(bind).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let _server = Server::start(listener, &Build::new(&toml, true).unwrap()).unwrap();
            let reply = exchange(
                SocketAddr::from(([127, 0, 0, 1], port)),
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            assert!(reply.starts_with("HTTP/1.1 200"), "{bind}: {reply}");
            assert!(
                reply.to_ascii_lowercase().contains(&format!("\r\nx-forwarded-port: {port}\r\n")),
                "{bind}: {reply}"
            );
        }
    }

    #[tokio::test]
    async fn the_lean_path_keeps_the_header_limits() {
        let (addr, _) = start(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[limits]\nmax_headers = 20\nmax_header_bytes = 8192\n",
        )
        .await;
        let mut many = String::from("GET /json HTTP/1.1\r\nHost: x\r\n");
        for i in 0..30 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("Connection: close\r\n\r\n");
        let reply = exchange(addr, many.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
        // A head over max_header_bytes that arrives in one piece.
        let big = format!("GET /json HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
        let reply = exchange(addr, big.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
        // Plain requests pipelined on one connection, answered in order.
        let reply = exchange(
            addr,
            b"GET /json HTTP/1.1\r\nHost: a\r\n\r\nGET /text HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(reply.matches("HTTP/1.1 200").count(), 2, "{reply}");
    }

    /// Reads one response with a `content-length` from `s`: (head, body).
    async fn one_response(s: &mut TcpStream) -> (String, Vec<u8>) {
        let mut got = Vec::new();
        let mut chunk = [0u8; 16384];
        let head_end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-head");
            got.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        while got.len() < head_end + len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-body");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got.len(), head_end + len, "nothing after the response");
        (head, got.split_off(head_end))
    }

    /// A page made large by its request (slot names and quotes in every shown header,
    /// a 28 KiB head) once left its buffers to the connection for the connection's life.
    /// After every response a lean connection keeps at most `KEEP_BETWEEN_REQUESTS`
    /// bytes per buffer (three of them); what it kept stays under that however many
    /// such requests come on one connection.
    #[tokio::test]
    async fn large_pages_on_one_keep_alive_connection_leave_no_memory_behind() {
        let (addr, _) = start("[[listen]]\naddress = \"127.0.0.1:1\"\n").await;
        // Quotes grow sixfold when escaped (`&quot;`).
        let value = format!("{{{{steps}}}}{{{{headers}}}}{}", "\"".repeat(7 * 1024 - 20));
        let mut req = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for name in ["X-Forwarded-For", "X-Real-IP", "Forwarded", "Via"] {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        assert!(req.len() > 27 * 1024 && req.len() < 32 * 1024, "{}", req.len());
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut largest = 0;
        for _ in 0..40 {
            let exchange = async {
                s.write_all(req.as_bytes()).await.unwrap();
                one_response(&mut s).await
            };
            let (head, body) =
                tokio::time::timeout(Duration::from_secs(10), exchange).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            largest = largest.max(body.len());
        }
        assert!(
            largest > 3 * crate::io::KEEP_BETWEEN_REQUESTS,
            "the pages were large ({largest} bytes)"
        );
        let kept = crate::http::lean::retained_max();
        assert!(
            kept <= 3 * crate::io::KEEP_BETWEEN_REQUESTS,
            "a connection kept {kept} bytes between requests"
        );
    }

    /// An `idle_timeout` shorter than `header_read_timeout` still ends a lean keep-alive
    /// connection waiting for its next request (where it is the longer one, the head's
    /// deadline comes first and no idle timer is armed).
    #[tokio::test]
    async fn a_short_idle_timeout_ends_a_waiting_keep_alive_connection() {
        let (addr, _) = start(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[limits]\nidle_timeout = \"1s\"\nheader_read_timeout = \"30s\"\n",
        )
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (head, _) = one_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let waited = std::time::Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest))
            .await
            .expect("closed after idle_timeout, long before header_read_timeout")
            .unwrap();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        assert!(waited.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn bad_or_late_proxy_headers_close_and_count() {
        let (addr, shared) = start(PP).await;
        assert_eq!(exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await, "");
        assert_eq!(exchange(addr, b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").await, "");
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut out)).await;
        assert!(closed.is_ok() && out.is_empty(), "a late header closes the connection");
        let metrics = shared.metrics();
        for reason in ["wrong_version", "malformed", "timeout"] {
            assert!(
                metrics.contains(&format!(
                    "trueip_proxy_protocol_errors_total{{reason=\"{reason}\"}} 1"
                )),
                "{reason}: {metrics}"
            );
        }
    }
}
