//! Connection plumbing: bytes read past a PROXY header, TLS or not, activity tracking.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

/// A stream that first yields bytes already read from it (those after a PROXY header).
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `prefix` is served before anything read from `inner`.
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            if let Some(chunk) = self.prefix.get(..n) {
                buf.put_slice(chunk);
            }
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The transport under a TLS connection: it can hold back what TLS writes, to send it with
/// the next write in one system call and one packet.
///
/// During the handshake ([`Held::new`] holding) writes are held, and a read sends them
/// before it reads: every flight leaves before the connection waits for the client's
/// answer to it, in one write as without holding. When a TLS 1.3 handshake ends, what is
/// still held is the session ticket, written after the client's Finished
/// ([`Held::defer`]): the client never waits for it, so it waits for the connection's first
/// write (the response, HTTP/2's preface) or its close and leaves in the same system call
/// and packet, one `writev` and one packet fewer per connection (nginx and HAProxy write
/// the ticket on its own). It waits [`TICKET_WAIT`] at most ([`Held::poll_ticket`]): a
/// client whose first answer is slow (a long poll, a slow upstream) gets its ticket on its
/// own meanwhile, for the connections it opens before that answer. The last response of a
/// connection that closes after it is held the same way ([`Tracked::hold_until_close`])
/// and leaves with close_notify.
pub(crate) struct Held<S> {
    inner: S,
    held: Vec<u8>,
    /// How much of `held` has been sent.
    sent: usize,
    /// Whether writes are held (else they go out at once, after anything held).
    holding: bool,
    /// How long the ticket has waited, from the first wait of the connection that found it
    /// held (made then: a ticket that leaves with a response ready at once arms no timer).
    ticket_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Held bytes left since [`Held::take_progress`] last asked: a write that waits with a
    /// held last response gets its send timeout from the last progress, as any write.
    progressed: bool,
}

/// The longest a TLS 1.3 session ticket waits for the connection's first write: long
/// enough for a response that is ready at once or nearly (a cached page, an upstream on
/// the same network), short against any wait during which a client may give up, or open
/// another connection that could resume with it. A ticket that waits longer leaves on its
/// own, as nginx's does.
pub(crate) const TICKET_WAIT: Duration = Duration::from_millis(50);

impl<S: AsyncRead + AsyncWrite + Unpin> Held<S> {
    /// `inner`, its writes held (for the handshake).
    pub(crate) fn new(inner: S) -> Self {
        Held {
            inner,
            held: Vec::new(),
            sent: 0,
            holding: true,
            ticket_wait: None,
            progressed: false,
        }
    }

    /// The handshake has ended: later writes go straight through, and what is held now
    /// (a TLS 1.3 session ticket) leaves ahead of the next write, a flush or the shutdown,
    /// not before a read, and [`TICKET_WAIT`] after the connection first waits at most.
    pub(crate) fn defer(&mut self) {
        self.holding = false;
    }

    fn unsent(&self) -> &[u8] {
        self.held.get(self.sent..).unwrap_or_default()
    }

    /// Notes `n` held bytes sent.
    fn sent(&mut self, n: usize) {
        self.sent += n;
        self.progressed |= n > 0;
        if self.sent >= self.held.len() {
            self.held.clear();
            self.sent = 0;
            self.ticket_wait = None;
        }
    }

    /// Whether held bytes left since the last call.
    fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    /// Sends everything held.
    pub(crate) fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent().is_empty() {
            let unsent = self.held.get(self.sent..).unwrap_or_default();
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, unsent))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent(n);
        }
        Poll::Ready(Ok(()))
    }

    /// For a connection that waits (a read that found nothing, a wait for the upstream's
    /// answer): a session ticket held after the handshake is sent once it has waited
    /// [`TICKET_WAIT`]. `Ready` when nothing (more) waits here; `Pending` while the ticket
    /// waits, the task then woken at its time (or when the socket takes it).
    pub(crate) fn poll_ticket(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.holding || self.unsent().is_empty() {
            return Poll::Ready(Ok(()));
        }
        let wait =
            self.ticket_wait.get_or_insert_with(|| Box::pin(tokio::time::sleep(TICKET_WAIT)));
        std::task::ready!(wait.as_mut().poll(cx));
        self.poll_release(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.holding && !this.unsent().is_empty() {
            // A flight the client answers.
            std::task::ready!(this.poll_release(cx))?;
        }
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() {
            std::task::ready!(this.poll_ticket(cx))?;
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            let mut n = 0;
            for b in bufs {
                this.held.extend_from_slice(b);
                n += b.len();
            }
            return Poll::Ready(Ok(n));
        }
        loop {
            let unsent = this.held.get(this.sent..).unwrap_or_default();
            if unsent.is_empty() {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
            // Once per connection at most: the held bytes ahead of these, in one write.
            let held = unsent.len();
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(io::IoSlice::new(unsent));
            all.extend_from_slice(bufs);
            let n = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &all))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            this.sent(n.min(held));
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.holding {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The most storage a connection keeps in each of its buffers between two exchanges:
/// a lean client connection between requests, a pooled upstream connection while it
/// waits. A plain request, its whoami page (about 12 KiB) and a plain response head fit,
/// so nothing is given back and allocated again per request; a buffer that one large
/// head or page grew past it is shrunk back once that exchange is done.
pub(crate) const KEEP_BETWEEN_REQUESTS: usize = 64 * 1024;

/// A read buffer without `unsafe`: its storage is initialised once and reused, bytes
/// are read into the free end and taken from the front.
#[derive(Debug)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// A buffer of `capacity` bytes (it grows when a read finds less than 1 KiB free).
    pub(crate) fn new(capacity: usize) -> Self {
        InBuf { data: vec![0; capacity.max(1024)], start: 0, end: 0 }
    }

    /// The bytes read and not yet consumed.
    pub(crate) fn filled(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }

    /// How many bytes are read and not yet consumed.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether every byte read was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops the first `n` unconsumed bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, at least 1 KiB.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.data.len() - self.end < 1024 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.data.len() - self.end < 1024 {
                let grown = self.data.len() * 2;
                self.data.resize(grown, 0);
            }
        }
        self.data.get_mut(self.end..).unwrap_or_default()
    }

    /// `n` bytes were read into [`InBuf::spare`].
    pub(crate) fn grew(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// The storage, emptied, for a reader of its own to read into from its start (the
    /// PROXY header's, which overwrites it and never reads what it did not read). What
    /// that reader leaves for the application is then handed over with
    /// [`InBuf::read_in`].
    pub(crate) fn storage(&mut self) -> &mut Vec<u8> {
        self.start = 0;
        self.end = 0;
        &mut self.data
    }

    /// `range` of the storage holds bytes read from the stream and not yet consumed.
    pub(crate) fn read_in(&mut self, range: std::ops::Range<usize>) {
        if self.data.len() < 1024 {
            self.data.resize(1024, 0);
        }
        self.end = range.end.min(self.data.len());
        self.start = range.start.min(self.end);
    }

    /// The bytes of storage held.
    pub(crate) fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Forgets every byte read (the storage stays, and is never handed out before it is
    /// read into again).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Gives back the storage beyond `keep` bytes, or beyond the unread bytes when they
    /// are more (those are never dropped).
    pub(crate) fn shrink_to(&mut self, keep: usize) {
        if self.data.capacity() <= keep {
            return;
        }
        self.data.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        self.data.truncate(keep.max(self.end).max(1024));
        self.data.shrink_to_fit();
    }
}

/// An accepted client connection: TCP, or a Unix socket (`unix:/path` listeners).
pub(crate) enum Socket {
    /// TCP.
    Tcp(LazyTcp, NoDelay),
    /// Unix socket.
    Unix(UnixStream),
}

impl Socket {
    /// An accepted TCP connection (non-blocking, not registered with tokio: see
    /// [`LazyTcp`]) whose `TCP_NODELAY` is as `nodelay` says (see [`NoDelay`]).
    pub(crate) fn tcp(stream: std::net::TcpStream, nodelay: NoDelay) -> Self {
        Socket::Tcp(LazyTcp::Bare(stream), nodelay)
    }

    /// Drops tokio's guess that a Unix socket it just accepted is readable: its first
    /// read then waits for epoll to report bytes. Only where nothing can poll epoll
    /// between the accept and this call (see `server::accept`). A `try_io` whose
    /// operation would block clears the readiness without a system call. A TCP socket
    /// has no guess to drop: it is not registered until a read would block.
    pub(crate) fn forget_readable_guess(&self) {
        if let Socket::Unix(s) = self {
            let _ = s.try_io(tokio::io::Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }

    /// Whether bytes from the client wait to be read now (one is read and dropped, as
    /// [`linger`] drops all of them), without waiting for any, and without registering a
    /// TCP socket that is not registered yet.
    fn waiting_now(&mut self) -> bool {
        match self {
            Socket::Tcp(LazyTcp::Bare(s), _) => {
                let mut byte = [0u8; 1];
                matches!(io::Read::read(&mut &*s, &mut byte), Ok(1))
            }
            _ => polled_waiting(self),
        }
    }
}

/// An accepted TCP socket, registered with tokio's event loop only once a read or write
/// on it would block.
///
/// Registering costs an `epoll_ctl` to add the socket and another to remove it when it
/// closes, the kernel's epoll item, a wake-up of the event loop for each packet the
/// socket receives afterwards, and tokio's readiness record. A connection whose request
/// is there at its first read and whose response fits the socket's send buffer (a new
/// connection per request: row `close` of `bench/gateway.sh`) never waits on its socket
/// and needs none of it; HAProxy reads a new connection the same way before it
/// registers it. Once registered, a socket stays so until it closes.
pub(crate) enum LazyTcp {
    /// Not registered: reads and writes go to the (non-blocking) socket at once.
    Bare(std::net::TcpStream),
    /// Registered, after an operation would have blocked.
    Registered(TcpStream),
    /// Registering failed, and the socket was closed: every operation fails.
    Failed,
}

impl LazyTcp {
    /// The socket, registered now if it was not.
    fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if matches!(self, LazyTcp::Bare(_))
            && let LazyTcp::Bare(bare) = std::mem::replace(self, LazyTcp::Failed)
        {
            *self = LazyTcp::Registered(TcpStream::from_std(bare)?);
        }
        match self {
            LazyTcp::Registered(s) => Ok(s),
            LazyTcp::Bare(_) | LazyTcp::Failed => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the socket could not be registered with the event loop",
            )),
        }
    }

    /// `bare` on the socket while it is not registered; when that would block (or it is
    /// registered), `polled` on tokio's stream, which then wakes the task when the
    /// socket is ready. A socket just registered is not ready to tokio until epoll
    /// reports it (an added socket's current state is reported at once).
    fn poll_io<T>(
        &mut self,
        bare: impl FnOnce(&std::net::TcpStream) -> io::Result<T>,
        polled: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let LazyTcp::Bare(s) = self {
            match bare(s) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
        match self.registered() {
            Ok(s) => polled(Pin::new(s)),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            LazyTcp::Bare(s) => s.set_nodelay(on),
            LazyTcp::Registered(s) => s.set_nodelay(on),
            LazyTcp::Failed => Ok(()),
        }
    }

    #[cfg(test)]
    fn nodelay(&self) -> io::Result<bool> {
        match self {
            LazyTcp::Bare(s) => s.nodelay(),
            LazyTcp::Registered(s) => s.nodelay(),
            LazyTcp::Failed => Ok(false),
        }
    }

    /// Whether the socket is registered with tokio's event loop.
    #[cfg(test)]
    pub(crate) fn is_registered(&self) -> bool {
        matches!(self, LazyTcp::Registered(_))
    }
}

impl AsyncRead for LazyTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let LazyTcp::Bare(s) = this {
            // Free after the first time: the lean path's buffers are initialised already.
            match io::Read::read(&mut &*s, buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LazyTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(|mut s| io::Write::write(&mut s, buf), |s| s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(
            |mut s| io::Write::write_vectored(&mut s, bufs),
            |s| s.poll_write_vectored(cx, bufs),
        )
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LazyTcp::Bare(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            LazyTcp::Registered(s) => Pin::new(s).poll_shutdown(cx),
            LazyTcp::Failed => Poll::Ready(Ok(())),
        }
    }
}

/// A TCP listening socket whose connections are accepted without registering them with
/// tokio's event loop (see [`LazyTcp`]); tokio's `TcpListener::accept` registers each.
pub(crate) struct TcpAcceptor {
    /// The listening socket, held as a tokio `TcpStream` for its readiness alone (tokio's
    /// `TcpListener` tells it only by accepting, and `AsyncFd` is registered only with
    /// `unsafe`): nothing reads or writes it.
    ready: TcpStream,
}

impl TcpAcceptor {
    /// Accepts on `listener` (made non-blocking), on the current runtime.
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let socket = std::net::TcpStream::from(std::os::fd::OwnedFd::from(listener));
        Ok(TcpAcceptor { ready: TcpStream::from_std(socket)? })
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.ready.local_addr()
    }

    /// The next connection (non-blocking and close-on-exec, as tokio's would be) and
    /// its peer.
    pub(crate) async fn accept(&self) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
        use rustix::net::SocketFlags;
        loop {
            self.ready.readable().await?;
            // Would it block, the readiness is cleared and the next wait is for epoll's.
            let accepted = self.ready.try_io(tokio::io::Interest::READABLE, || {
                rustix::net::acceptfrom_with(
                    &self.ready,
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                )
                .map_err(io::Error::from)
            });
            match accepted {
                Ok((socket, peer)) => {
                    let peer = peer
                        .and_then(|p| std::net::SocketAddr::try_from(p).ok())
                        .ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "a peer without an address")
                        })?;
                    return Ok((std::net::TcpStream::from(socket), peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// When an accepted TCP socket gets `TCP_NODELAY`: from its listener, which has it
/// (`listening::bind`); else just before its second write.
///
/// A socket accepted on a listener with `TCP_NODELAY` has it too on Linux and the BSDs,
/// with no system call of its own: each listener's first connection is asked once
/// ([`NoDelay::accepted`]), and when it has it, so do the others. Where it does not (a
/// system that does not copy it, a listener made without it), the rule below applies.
///
/// Nagle's algorithm (Linux applies Minshall's form of it) holds back a segment shorter
/// than the MSS only while an earlier short segment is unacknowledged. A connection's
/// first write has none before it, so it leaves at once whatever its size; only a later
/// write can be held (a streamed body, the next keep-alive response, a TLS record after
/// the handshake), and each of those finds `TCP_NODELAY` set. So no byte waits for an
/// acknowledgement, as if it had been set at accept, and a connection that writes once
/// and closes (a new connection per request) makes no `setsockopt` at all: nginx sets
/// it at the same point, when a connection enters keep-alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoDelay {
    /// Nothing written yet.
    Unwritten,
    /// Bytes written, `TCP_NODELAY` not set.
    Written,
    /// Set: from the listener, or by this connection (or setting it failed: that is not
    /// tried again).
    Set,
}

impl NoDelay {
    /// How a listener's connections start, as its first one tells: [`NoDelay::Set`] when
    /// it came with `TCP_NODELAY` from the listener, else [`NoDelay::Unwritten`].
    pub(crate) fn accepted(first: &std::net::TcpStream) -> Self {
        if first.nodelay().unwrap_or(false) { NoDelay::Set } else { NoDelay::Unwritten }
    }

    /// `write` on `stream`, as the rule above says: `TCP_NODELAY` set first when an
    /// earlier write sent bytes, and the first write that sends any noted.
    fn write(
        &mut self,
        stream: &mut LazyTcp,
        write: impl FnOnce(Pin<&mut LazyTcp>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if *self == NoDelay::Written {
            // A socket that refuses it is no worse off than before this write.
            let _ = stream.set_nodelay(true);
            *self = NoDelay::Set;
        }
        let polled = write(Pin::new(stream));
        if *self == NoDelay::Unwritten && matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            *self = NoDelay::Written;
        }
        polled
    }
}

/// `$e` on the socket inside, whichever it is.
macro_rules! socket {
    ($io:expr, $s:ident => $e:expr) => {
        match $io {
            Socket::Tcp($s, _) => $e,
            Socket::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        socket!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s, nodelay) => nodelay.write(s, |s| s.poll_write(cx, buf)),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s, nodelay) => nodelay.write(s, |s| s.poll_write_vectored(cx, bufs)),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        socket!(self, s => s.is_write_vectored())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        socket!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN (and whatever is still queued before it) is sent at once, Nagle or not.
        socket!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The accepted socket after the PROXY header, with or without TLS.
pub(crate) enum Stream {
    /// Cleartext.
    Plain(Rewind<Socket>),
    /// Terminated TLS.
    Tls(Box<TlsStream<Held<Rewind<Socket>>>>),
}

/// When a connection last moved a byte, when it last started or finished a request,
/// and how many requests it has in flight.
///
/// Two kinds of idleness, because HTTP/2 keep-alive pings move bytes forever on a
/// connection that serves nothing: an HTTP connection is idle when no request is in
/// flight and none ended for a while ([`Idle::Requests`]); a byte relay (TCP mode, an
/// upgraded connection) when no byte moved ([`Idle::Io`]).
#[derive(Debug)]
pub(crate) struct Activity {
    last_io_ms: AtomicU64,
    last_request_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether reads and writes are timed: only byte relays ask whether bytes moved,
    /// and an HTTP connection need not read the clock on every read and write.
    track_io: AtomicBool,
    /// A write to the client waited `limits.send_timeout` and failed.
    send_timed_out: AtomicBool,
}

/// Which idleness [`Activity::idle`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// No request in flight, and none started or ended, for the limit.
    Requests,
    /// No byte read or written for the limit.
    Io,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    ms_at(Instant::now())
}

fn ms_at(at: Instant) -> u64 {
    // Seconds and milliseconds apart: `as_millis` divides a u128, twice per request.
    let d = at.saturating_duration_since(epoch());
    d.as_secs().saturating_mul(1000).saturating_add(u64::from(d.subsec_millis()))
}

impl Activity {
    /// New activity; `track_io` times reads and writes from the start (see
    /// [`Activity::track_io`]).
    #[cfg(test)]
    pub(crate) fn new(track_io: bool) -> Self {
        Activity::new_at(track_io, Instant::now())
    }

    /// New activity as of `at`, a clock reading the caller already has.
    pub(crate) fn new_at(track_io: bool, at: Instant) -> Self {
        let now = ms_at(at);
        Activity {
            last_io_ms: AtomicU64::new(now),
            last_request_ms: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            track_io: AtomicBool::new(track_io),
            send_timed_out: AtomicBool::new(false),
        }
    }

    /// Whether a write to the client waited `limits.send_timeout` and failed.
    pub(crate) fn send_timed_out(&self) -> bool {
        self.send_timed_out.load(Relaxed)
    }

    /// The connection is closed because what it still had to send waited
    /// `limits.send_timeout` for its client.
    pub(crate) fn note_send_timeout(&self) {
        self.send_timed_out.store(true, Relaxed);
    }

    /// Times reads and writes from now on (and counts now as activity): before
    /// [`Idle::Io`] is waited for on a connection that started as HTTP.
    pub(crate) fn track_io(&self) {
        self.touch();
        self.track_io.store(true, Relaxed);
    }

    /// A byte moved now.
    pub(crate) fn touch(&self) {
        self.last_io_ms.store(now_ms(), Relaxed);
    }

    /// A byte moved now, if reads and writes are timed.
    fn moved(&self) {
        if self.track_io.load(Relaxed) {
            self.touch();
        }
    }

    /// How long the connection has been idle, of the given kind.
    pub(crate) fn idle_for(&self, kind: Idle) -> Duration {
        let last = match kind {
            Idle::Requests if self.in_flight.load(Relaxed) > 0 => return Duration::ZERO,
            Idle::Requests => &self.last_request_ms,
            Idle::Io => &self.last_io_ms,
        };
        Duration::from_millis(now_ms().saturating_sub(last.load(Relaxed)))
    }

    /// A request started; the guard ends it.
    #[cfg(test)]
    pub(crate) fn begin(self: &std::sync::Arc<Self>) -> InFlight {
        self.begin_at(Instant::now())
    }

    /// A request started at `at` (a clock reading the caller already has).
    pub(crate) fn begin_at(self: &std::sync::Arc<Self>, at: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        self.last_request_ms.store(ms_at(at), Relaxed);
        InFlight { activity: self.clone(), ended: false }
    }

    /// Resolves once the connection has been idle (of `kind`) for `limit`.
    pub(crate) async fn idle(&self, kind: Idle, limit: Duration) {
        loop {
            let idle = self.idle_for(kind);
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// Ends a request's in-flight mark when dropped (or [`InFlight::end_at`]).
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: std::sync::Arc<Activity>,
    ended: bool,
}

impl InFlight {
    /// Ends the request at `at` (a clock reading the caller already has).
    pub(crate) fn end_at(mut self, at: Instant) {
        self.finish(ms_at(at));
    }

    fn finish(&mut self, ms: u64) {
        if !self.ended {
            self.ended = true;
            self.activity.last_request_ms.store(ms, Relaxed);
            self.activity.in_flight.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(now_ms());
        }
    }
}

/// The send timeout's one rule, for every wait on a client to take more of a response:
/// a wait that lasts `limits.send_timeout` with no progress ends the response. nginx's
/// `send_timeout` is the same bound (between two steps that each made progress, not on
/// the whole response). [`Tracked`] applies it to a write that finds no room in the
/// socket; [`StreamExec`] to an HTTP/2 stream whose client gives no flow-control credit.
///
/// One timer, armed at the first wait and kept: a wait that ends before it fires costs
/// no timer operation, and a timer that fires for a wait already over is re-aimed at the
/// current one (at most once per limit).
pub(crate) struct SendTimer {
    limit: Duration,
    /// When the current wait began (`None`: no wait since the last progress).
    since: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SendTimer {
    /// A timer for waits of at most `limit`.
    pub(crate) fn new(limit: Duration) -> Self {
        SendTimer { limit, since: None, sleep: None }
    }

    /// The client took something: the next wait starts afresh.
    pub(crate) fn progressed(&mut self) {
        self.since = None;
    }

    /// Still waiting (since the first call after the last progress): `Ready` once the
    /// wait has lasted the limit; otherwise the waker is called when it may have.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
        let due = crate::clock::deadline(since, self.limit);
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            std::task::ready!(sleep.as_mut().poll(cx));
            // Waits only start later than earlier ones: a timer that fired before this
            // wait's due time was aimed at an earlier wait.
            if sleep.deadline() >= due {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(due);
        }
    }
}

/// A [`Stream`] that records activity, and fails a write that waits for room longer
/// than `limits.send_timeout` ([`SendTimer`]).
///
/// A client that stops reading its response holds its connection, its slot under
/// `max_connections` and its upstream exchange for as long as the write waits: no other
/// timer runs while a request is in flight.
pub(crate) struct Tracked {
    stream: Stream,
    activity: std::sync::Arc<Activity>,
    /// Polled only while a write finds no room: a client that reads pays no timer.
    send: SendTimer,
}

impl Tracked {
    /// Wraps a stream.
    pub(crate) fn new(
        stream: Stream,
        activity: std::sync::Arc<Activity>,
        send_timeout: Duration,
    ) -> Self {
        Tracked { stream, activity, send: SendTimer::new(send_timeout) }
    }

    /// A write to the client ended (`Ready`) or waits for room (`Pending`): the send
    /// timer notes the progress, or is polled, and a write that has waited for
    /// `send_timeout` fails with `TimedOut`.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.send.progressed();
            return polled;
        }
        // A write that waits on TLS may have sent part of what `Held` held (a closing
        // connection's last response, in the shutdown that sends it with close_notify): the
        // client took something, and the wait starts again, as it does between two writes.
        if let Stream::Tls(s) = &mut self.stream
            && s.get_mut().0.take_progress()
        {
            self.send.progressed();
        }
        match self.send.poll_expired(cx) {
            Poll::Ready(()) => {
                self.activity.send_timed_out.store(true, Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for limits.send_timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a response body sent on an HTTP/2 stream tells the stream's watch
/// ([`StreamExec`]): whether a chunk it handed over waits for the client's flow-control
/// credit, and whether the watch gave up on it.
///
/// hyper's HTTP/2 server takes one chunk of a body at a time and asks for the next only
/// once the client's window has room for the one before (`PipeToSendStream`): from
/// handing a chunk over until it is asked again, the body waits for the client alone.
/// Meanwhile nothing polls the body and no socket write is pending (pings keep the
/// socket busy), so neither the body's timers nor [`Tracked`]'s can see the wait.
#[derive(Debug, Default)]
pub(crate) struct SendWait {
    /// The number of the chunk handed over and not yet followed by a request for the
    /// next (0: none waits).
    waiting: AtomicU64,
    timed_out: AtomicBool,
}

tokio::task_local! {
    /// The wait of the HTTP/2 stream whose task is running.
    static STREAM_SEND: std::sync::Arc<SendWait>;
}

/// Runs `f` as if in an HTTP/2 stream's task whose wait is `wait`.
#[cfg(test)]
pub(crate) async fn on_test_stream<T>(
    wait: std::sync::Arc<SendWait>,
    f: impl Future<Output = T>,
) -> T {
    STREAM_SEND.scope(wait, f).await
}

impl SendWait {
    /// The current HTTP/2 stream's, when this runs in one's task (a response served
    /// over HTTP/1 has none: [`Tracked`] times its writes).
    pub(crate) fn current() -> Option<std::sync::Arc<SendWait>> {
        STREAM_SEND.try_with(std::sync::Arc::clone).ok()
    }

    /// The body handed over its chunk number `n` (from 1).
    pub(crate) fn handed(&self, n: u64) {
        self.waiting.store(n, Relaxed);
    }

    /// The body is asked for more: nothing it handed over waits.
    pub(crate) fn asked(&self) {
        self.waiting.store(0, Relaxed);
    }

    /// Whether the stream was given up after waiting `limits.send_timeout`.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Relaxed)
    }
}

/// hyper's executor for HTTP/2 streams: spawns each on tokio, watched by the send timeout
/// ([`SendTimer`]). A stream whose response body has had a chunk waiting for the client's
/// flow-control credit for `limits.send_timeout` is dropped: h2 resets it
/// (`RST_STREAM` with `CANCEL`), its upstream exchange ends, and the body counts it
/// ([`SendWait::timed_out`]). Other streams on the connection go on.
///
/// Per stream, as nginx's `send_timeout` on an HTTP/2 stream whose window is exhausted
/// and Envoy's `stream_idle_timeout` are: a connection may carry many clients' requests
/// (a CDN, a load balancer), and one stalled reader should not end the others.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamExec {
    send_timeout: Duration,
}

impl StreamExec {
    /// Streams given up after `send_timeout` without flow-control credit.
    pub(crate) fn new(send_timeout: Duration) -> Self {
        StreamExec { send_timeout }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let wait = std::sync::Arc::new(SendWait::default());
        let mut timer = SendTimer::new(self.send_timeout);
        let watch = wait.clone();
        let watched = async move {
            let mut fut = std::pin::pin!(fut);
            // The chunk whose wait the timer is timing.
            let mut timing = 0;
            std::future::poll_fn(|cx| {
                if fut.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                let waiting = watch.waiting.load(Relaxed);
                if waiting == 0 {
                    return Poll::Pending;
                }
                if waiting != timing {
                    timing = waiting;
                    timer.progressed();
                }
                match timer.poll_expired(cx) {
                    Poll::Ready(()) => {
                        watch.timed_out.store(true, Relaxed);
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
        };
        tokio::spawn(STREAM_SEND.scope(wait, watched));
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.stream {
            Stream::Plain($s) => $e,
            Stream::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = delegate!(this, s => Pin::new(s).poll_read(cx, buf));
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.moved();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = delegate!(this, s => Pin::new(s).poll_write(cx, buf));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved();
        }
        this.timed(cx, polled)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = delegate!(this, s => Pin::new(s).poll_write_vectored(cx, bufs));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved();
        }
        this.timed(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = delegate!(this, s => Pin::new(s).poll_flush(cx));
        this.timed(cx, polled)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = delegate!(this, s => Pin::new(s).poll_shutdown(cx));
        this.timed(cx, polled)
    }
}

/// How long a closing connection may keep reading what its client still sends
/// ([`linger`]), in all, and between two reads. nginx's `lingering_time` and
/// `lingering_timeout` are 30 s and 5 s; a client that is still sending after its
/// response has ended has seen what it needs well before these.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_READ: Duration = Duration::from_secs(2);

/// Closes a connection whose client may still be sending, as nginx's lingering close
/// does: when bytes are waiting to be read now (a request sent while the last response
/// streamed, a body nobody asked for), the connection stops writing (FIN, or
/// close_notify under TLS), reads and drops what comes until the client closes or a
/// bound ([`LINGER_TIME`], [`LINGER_READ`]) is reached, and only then is closed by its
/// owner.
///
/// Closing a socket with unread bytes makes the kernel answer with a reset, and a reset
/// throws away what is still in the send queue: the tail of the response the client was
/// receiving. With nothing waiting (the usual close) this costs little: the check is
/// one poll of the stream, which tokio answers from the readiness it has without a
/// system call once a read has drained the socket ([`Tracked::linger`] asks a socket
/// that was never registered with one `recv`).
pub(crate) async fn linger<I: AsyncRead + AsyncWrite + Unpin>(io: &mut I) {
    if polled_waiting(io) {
        Box::pin(drain(io)).await;
    }
}

/// Whether a poll of `io` finds bytes to read now: one is read and dropped, as all of
/// them would be. The 4 KiB buffer and the timers of the draining are allocated only
/// when some wait: inline in [`linger`], they were part of every connection task's
/// future, which tokio copies at spawn and at the task's end, and the buffer was zeroed
/// for every connection (8,000 more user-space instructions per request on a new
/// connection per request, `PROTOCOL=close bash bench/instructions.sh`).
fn polled_waiting<I: AsyncRead + Unpin>(io: &mut I) -> bool {
    let mut byte = [0u8; 1];
    let mut probe = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(
        Pin::new(&mut *io).poll_read(&mut cx, &mut probe),
        Poll::Ready(Ok(())) if !probe.filled().is_empty()
    )
}

impl Tracked {
    /// Under TLS, holds what is written next until the connection's shutdown, which
    /// sends it with close_notify in one write: for the last response of a connection
    /// that closes after it, written whole.
    pub(crate) fn hold_until_close(&mut self) {
        if let Stream::Tls(s) = &mut self.stream {
            s.get_mut().0.holding = true;
        }
    }

    /// For a codec's wait that reads nothing from the client (the lean path's wait for
    /// the upstream's answer): a TLS 1.3 session ticket still held leaves once it has
    /// waited [`TICKET_WAIT`] ([`Held::poll_ticket`]), the task then woken at its time. A
    /// write that fails here is the response's to find.
    pub(crate) fn poll_ticket(&mut self, cx: &mut Context<'_>) {
        if let Stream::Tls(s) = &mut self.stream {
            let _ = s.get_mut().0.poll_ticket(cx);
        }
    }

    /// [`linger`], with a TCP socket that was never registered with tokio's event loop
    /// asked directly (a poll would register it only to find nothing).
    pub(crate) async fn linger(&mut self) {
        let waiting = match &mut self.stream {
            Stream::Plain(r) => !r.prefix.is_empty() || r.inner.waiting_now(),
            Stream::Tls(s) => polled_waiting(s),
        };
        if waiting {
            Box::pin(drain(self)).await;
        }
    }
}

/// Stops writing, then reads and drops what comes, within [`linger`]'s bounds.
async fn drain<I: AsyncRead + AsyncWrite + Unpin>(io: &mut I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let _ = io.shutdown().await;
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_READ, io.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn idle_kinds() {
        let a = std::sync::Arc::new(Activity::new(true));
        let request = a.begin();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(a.idle_for(Idle::Requests), Duration::ZERO, "a request is in flight");
        assert!(a.idle_for(Idle::Io) >= Duration::from_millis(50));
        drop(request);
        a.touch();
        assert!(a.idle_for(Idle::Requests) < Duration::from_millis(50));
        tokio::time::timeout(
            Duration::from_secs(2),
            a.idle(Idle::Requests, Duration::from_millis(80)),
        )
        .await
        .unwrap();
        // Bytes alone (HTTP/2 pings) do not keep an HTTP connection from being idle.
        a.touch();
        assert!(a.idle_for(Idle::Requests) >= Duration::from_millis(80));
    }

    /// Each wait is timed from its own start, on one timer: a timer that fires for a
    /// wait already over is re-aimed, and only a wait of the whole limit expires.
    #[tokio::test(start_paused = true)]
    async fn the_send_timer_times_each_wait_from_its_start() {
        fn expired(timer: &mut SendTimer) -> bool {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            timer.poll_expired(&mut cx).is_ready()
        }
        let mut timer = SendTimer::new(Duration::from_millis(100));
        assert!(!expired(&mut timer), "a wait begins");
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(!expired(&mut timer));
        timer.progressed();
        assert!(!expired(&mut timer), "a second wait begins at 60 ms, due at 160 ms");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(!expired(&mut timer), "the first wait's due time passed: not this wait's");
        tokio::time::advance(Duration::from_millis(40)).await;
        assert!(!expired(&mut timer));
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(expired(&mut timer), "the second wait lasted the limit");
    }

    #[test]
    fn shrinking_keeps_the_unread_bytes() {
        let mut buf = InBuf::new(8192);
        while buf.capacity() < 1 << 20 {
            let n = buf.spare().len();
            buf.grew(n);
        }
        buf.consume(buf.len() - 3000);
        buf.shrink_to(64 * 1024);
        assert!(buf.capacity() <= 64 * 1024, "{}", buf.capacity());
        assert_eq!(buf.len(), 3000, "unread bytes are kept");
        // More unread bytes than the bound: all of them stay.
        let mut buf = InBuf::new(8192);
        while buf.len() < 200 * 1024 {
            let n = buf.spare().len();
            buf.grew(n);
        }
        let unread = buf.len();
        buf.shrink_to(64 * 1024);
        assert_eq!(buf.len(), unread);
        assert!(buf.capacity() >= unread);
    }

    /// `TCP_NODELAY` comes before the second write, never the first: a connection that
    /// writes once and closes makes no `setsockopt`, and no later write waits for Nagle.
    #[tokio::test]
    async fn nodelay_is_set_before_the_second_write() {
        use tokio::io::AsyncWriteExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        // A listener without TCP_NODELAY (the gateway's own have it): its connections
        // set it themselves.
        let start = NoDelay::accepted(&accepted);
        assert_eq!(start, NoDelay::Unwritten);
        let mut s = Socket::tcp(accepted, start);
        let nodelay = |s: &Socket| match s {
            Socket::Tcp(t, state) => Some((t.nodelay().unwrap(), *state)),
            Socket::Unix(_) => None,
        };
        assert_eq!(nodelay(&s), Some((false, NoDelay::Unwritten)));
        s.write_all(b"").await.unwrap();
        assert_eq!(nodelay(&s), Some((false, NoDelay::Unwritten)), "nothing was sent");
        s.write_all(b"first").await.unwrap();
        assert_eq!(nodelay(&s), Some((false, NoDelay::Written)));
        s.write_all(b"second").await.unwrap();
        assert_eq!(nodelay(&s), Some((true, NoDelay::Set)));
        let bufs = [io::IoSlice::new(b"third")];
        assert_eq!(s.write_vectored(&bufs).await.unwrap(), 5);
        assert_eq!(nodelay(&s), Some((true, NoDelay::Set)));
    }

    /// An accepted socket as `server::accept` hands it over (non-blocking, not
    /// registered), its client, and the client's bytes already in its receive queue.
    async fn accepted_with(sent: &[u8]) -> (LazyTcp, TcpStream) {
        use tokio::io::AsyncWriteExt;
        let acceptor =
            TcpAcceptor::from_std(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        let mut client = TcpStream::connect(acceptor.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = acceptor.accept().await.unwrap();
        client.write_all(sent).await.unwrap();
        // Until they are there (a blocking peek), so that the test does not race them.
        if !sent.is_empty() {
            accepted.set_nonblocking(false).unwrap();
            accepted.peek(&mut [0u8; 1]).unwrap();
            accepted.set_nonblocking(true).unwrap();
        }
        (LazyTcp::Bare(accepted), client)
    }

    /// A request there at the first read and a response that fits the socket's send
    /// buffer: the socket is never registered with tokio's event loop (no `epoll_ctl`).
    /// A read that finds nothing registers it, and the task is woken when bytes come.
    #[tokio::test]
    async fn a_tcp_socket_is_registered_only_once_a_read_would_block() {
        use tokio::io::AsyncWriteExt;
        let (mut s, mut client) = accepted_with(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).await.unwrap(), 18);
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
        assert!(!s.is_registered(), "nothing waited");
        let mut answer = [0u8; 27];
        client.read_exact(&mut answer).await.unwrap();

        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"more").await.unwrap();
            client
        });
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("woken when the bytes came")
            .unwrap();
        assert_eq!(buf.get(..n), Some(&b"more"[..]));
        assert!(s.is_registered(), "the read waited");
        // Registered, it goes on as tokio's stream.
        let mut client = later.await.unwrap();
        s.write_all(b"ok").await.unwrap();
        client.read_exact(&mut answer[..2]).await.unwrap();
        assert_eq!(&answer[..2], b"ok");
    }

    /// Closing asks a socket that was never registered whether its client sent more
    /// without registering it: with nothing there it closes at once; with bytes there it
    /// stops writing (the client reads its end) and drains them before closing.
    #[tokio::test]
    async fn linger_on_a_socket_never_registered() {
        fn tracked(s: LazyTcp) -> Tracked {
            let socket = Socket::Tcp(s, NoDelay::Set);
            Tracked::new(
                Stream::Plain(Rewind::new(Bytes::new(), socket)),
                std::sync::Arc::new(Activity::new(false)),
                Duration::from_secs(5),
            )
        }
        let registered = |t: &Tracked| match &t.stream {
            Stream::Plain(r) => match &r.inner {
                Socket::Tcp(s, _) => s.is_registered(),
                Socket::Unix(_) => true,
            },
            Stream::Tls(_) => true,
        };

        let (s, _client) = accepted_with(b"").await;
        let mut t = tracked(s);
        tokio::time::timeout(Duration::from_secs(1), t.linger()).await.expect("nothing to drain");
        assert!(!registered(&t));

        let (s, mut client) = accepted_with(b"unread bytes").await;
        let mut t = tracked(s);
        let closing = tokio::spawn(async move {
            t.linger().await;
            registered(&t)
        });
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("the gateway stopped writing")
            .unwrap();
        drop(client);
        let registered = tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .expect("drained until the client closed")
            .unwrap();
        assert!(registered, "draining waited for the client");
    }

    #[tokio::test]
    async fn rewind_serves_the_prefix_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world").await.unwrap();
        drop(a);
        let mut r = Rewind::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    /// A transport that records each write call's bytes, and whose reads find nothing.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncRead for Writes {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = bytes.len();
            self.get_mut().0.push(bytes);
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// While holding (the handshake) a read sends what is held first; after it, what is
    /// held (the ticket) waits through reads for the next write and leaves in the same
    /// write call, and a response held until the close leaves with close_notify.
    #[tokio::test]
    async fn held_bytes_leave_before_a_handshake_read_then_with_the_next_write() {
        use tokio::io::AsyncWriteExt;
        let mut h = Held::new(Writes::default());
        let mut byte = [0u8; 1];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut read = |h: &mut Held<Writes>| {
            let mut probe = ReadBuf::new(&mut byte);
            assert!(Pin::new(h).poll_read(&mut cx, &mut probe).is_pending());
        };
        h.write_all(b"flight").await.unwrap();
        h.flush().await.unwrap();
        assert!(h.inner.0.is_empty(), "held while the handshake runs");
        read(&mut h);
        assert_eq!(h.inner.0, [b"flight".to_vec()], "a handshake read sends them first");
        h.write_all(b"ticket").await.unwrap();
        h.defer();
        read(&mut h);
        assert_eq!(h.inner.0.len(), 1, "the ticket waits through a read");
        h.write_all(b"response").await.unwrap();
        assert_eq!(h.inner.0[1..], [b"ticketresponse".to_vec()], "one write for both");
        h.write_all(b"more").await.unwrap();
        assert_eq!(h.inner.0[2..], [b"more".to_vec()], "straight through after");
        h.holding = true;
        h.write_all(b"last").await.unwrap();
        h.write_all(b"close_notify").await.unwrap();
        assert_eq!(h.inner.0.len(), 3, "held until the close");
        h.shutdown().await.unwrap();
        assert_eq!(h.inner.0[3..], [b"lastclose_notify".to_vec()], "one write at the close");
    }

    /// A ticket held after the handshake waits for the first write through the
    /// connection's waits (a read that finds nothing, a wait for the upstream's answer),
    /// and no longer than [`TICKET_WAIT`] from the first: then it leaves on its own, and
    /// the response after it goes straight through. (Fails on the code that held it until
    /// the first write however long that took.)
    #[tokio::test(start_paused = true)]
    async fn a_held_ticket_leaves_on_its_own_once_it_has_waited() {
        use tokio::io::AsyncWriteExt;
        let mut byte = [0u8; 1];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut read = |h: &mut Held<Writes>| {
            let mut probe = ReadBuf::new(&mut byte);
            assert!(Pin::new(h).poll_read(&mut cx, &mut probe).is_pending());
        };
        let mut h = Held::new(Writes::default());
        h.write_all(b"ticket").await.unwrap();
        h.defer();
        read(&mut h);
        tokio::time::advance(TICKET_WAIT - Duration::from_millis(1)).await;
        read(&mut h);
        assert!(h.inner.0.is_empty(), "the ticket waits for the response");
        tokio::time::advance(Duration::from_millis(1)).await;
        read(&mut h);
        assert_eq!(h.inner.0, [b"ticket".to_vec()], "then leaves on its own");
        h.write_all(b"response").await.unwrap();
        assert_eq!(h.inner.0[1..], [b"response".to_vec()]);

        // A wait that reads nothing (the upstream's answer) times it the same way.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut h = Held::new(Writes::default());
        h.write_all(b"ticket").await.unwrap();
        h.defer();
        assert!(h.poll_ticket(&mut cx).is_pending());
        tokio::time::advance(TICKET_WAIT / 2).await;
        assert!(h.poll_ticket(&mut cx).is_pending());
        assert!(h.inner.0.is_empty());
        tokio::time::advance(TICKET_WAIT / 2).await;
        assert!(h.poll_ticket(&mut cx).is_ready());
        assert_eq!(h.inner.0, [b"ticket".to_vec()]);
        assert!(h.ticket_wait.is_none(), "its timer is gone with it");
        assert!(h.poll_ticket(&mut cx).is_ready(), "nothing waits any more");

        // Held for the close (the last response), nothing leaves before the shutdown
        // however long the ticket waited.
        let mut h = Held::new(Writes::default());
        h.write_all(b"ticket").await.unwrap();
        h.defer();
        h.holding = true;
        h.write_all(b"last").await.unwrap();
        tokio::time::advance(TICKET_WAIT * 2).await;
        assert!(h.poll_ticket(&mut cx).is_ready());
        assert!(h.inner.0.is_empty(), "held for the close");
        h.shutdown().await.unwrap();
        assert_eq!(h.inner.0, [b"ticketlast".to_vec()]);
    }
}
