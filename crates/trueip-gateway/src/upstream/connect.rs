//! Opening a connection to the upstream, over TCP or a unix socket, with the PROXY header
//! the config asks for.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use crate::config::{SendProxy, UpstreamTarget};

/// A connection to the upstream.
pub(crate) enum UpstreamIo {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
    /// TLS over TCP (boxed: rustls's state is large, and the plain variants stay small).
    Tls(Box<TlsStream<TcpStream>>),
}

/// `$e` on the stream inside, whichever it is.
macro_rules! either {
    ($io:expr, $s:ident => $e:expr) => {
        match $io {
            UpstreamIo::Tcp($s) => $e,
            UpstreamIo::Unix($s) => $e,
            UpstreamIo::Tls($s) => $e,
        }
    };
}

/// A TLS handshake with the upstream failed: its certificate was refused, or it spoke
/// no TLS. Carried inside an `io::Error` so both codecs can tell it from a refused
/// connection and answer with its own code.
#[derive(Debug)]
pub(crate) struct TlsRefused(String);

impl std::fmt::Display for TlsRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsRefused {}

/// Whether `e` is a failed TLS handshake with the upstream.
pub(crate) fn tls_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TlsRefused>())
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        either!(self, s => s.is_write_vectored())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

impl UpstreamIo {
    /// Whether the upstream closed it (or sent something unasked) while it was idle.
    /// Looks at the event loop's readiness first, so a live connection costs no system
    /// call.
    ///
    /// Over TLS, any bytes waiting on the socket count as gone: a response is read to its
    /// end, session tickets arrive before it, so what follows it is a `close_notify` or
    /// something unasked. So does plaintext rustls already decrypted and nobody read (it
    /// came in the record that ended the last response, and is on no socket): the next
    /// request would read it as its answer.
    pub(crate) fn gone(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match self {
            UpstreamIo::Tcp(s) => s.poll_read_ready(&mut cx),
            UpstreamIo::Unix(s) => s.poll_read_ready(&mut cx),
            UpstreamIo::Tls(s) => {
                let (io, tls) = s.get_ref();
                // `wants_read` is false with plaintext unread or a `close_notify` received.
                return !tls.wants_read() || !matches!(io.poll_read_ready(&mut cx), Poll::Pending);
            }
        };
        match ready {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                let read = match self {
                    UpstreamIo::Tcp(s) => s.try_read(&mut probe),
                    UpstreamIo::Unix(s) => s.try_read(&mut probe),
                    UpstreamIo::Tls(_) => return true,
                };
                !matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Where to connect.
#[derive(Clone, Debug)]
enum Target {
    Tcp(Arc<str>),
    /// TCP, then TLS.
    Tls(Arc<str>, Arc<crate::tls::Client>),
    Unix(Arc<PathBuf>),
}

/// Opens upstream connections (with a connect timeout, and a PROXY header if configured),
/// with TLS for an `https://` upstream.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    target: Target,
    timeout: Duration,
    proxy: SendProxy,
}

/// Connects to a TCP `host:port` within `timeout`, with `TCP_NODELAY`.
pub(crate) async fn connect_tcp(authority: &str, timeout: Duration) -> io::Result<TcpStream> {
    let stream =
        tokio::time::timeout(timeout, TcpStream::connect(authority)).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {authority} took longer than {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Connector {
    /// Connects to `target` within `timeout` (the TLS handshake gets as long again),
    /// announcing clients with `proxy`; `tls` is the client of an `https://` target.
    pub(crate) fn new(
        target: &UpstreamTarget,
        tls: Option<crate::tls::Client>,
        timeout: Duration,
        proxy: SendProxy,
    ) -> Self {
        let target = match (target, tls) {
            (UpstreamTarget::Https(a), Some(tls)) => Target::Tls(a.as_str().into(), Arc::new(tls)),
            (UpstreamTarget::Tcp(a) | UpstreamTarget::Https(a), _) => {
                Target::Tcp(a.as_str().into())
            }
            (UpstreamTarget::Unix(p), _) => Target::Unix(Arc::new(p.clone())),
        };
        Connector { target, timeout, proxy }
    }

    /// Opens a connection for the pool key `key`: with PROXY headers, the key names the
    /// client to announce (see [`pool_key`]).
    pub(crate) async fn connect(&self, key: &Authority) -> io::Result<UpstreamIo> {
        let mut io = match &self.target {
            Target::Tcp(authority) | Target::Tls(authority, _) => {
                UpstreamIo::Tcp(connect_tcp(authority, self.timeout).await?)
            }
            Target::Unix(path) => {
                let stream =
                    tokio::time::timeout(self.timeout, UnixStream::connect(path.as_path()))
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
        if self.proxy != SendProxy::Off {
            let (source, destination) = decode_key(key.host()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no client to announce in the PROXY header",
                )
            })?;
            let header = crate::proxy::encode(self.proxy, source, destination);
            io.write_all(&header).await?;
        }
        // The PROXY header goes first, in the clear, as HAProxy sends it to a TLS server.
        match (&self.target, io) {
            (Target::Tls(_, tls), UpstreamIo::Tcp(tcp)) => handshake(tls, tcp, self.timeout).await,
            (_, io) => Ok(io),
        }
    }
}

/// TLS over `tcp` within `timeout`; a refusal says why (the certificate's fault, or no
/// TLS at all) and which settings decide it.
async fn handshake(
    tls: &crate::tls::Client,
    tcp: TcpStream,
    timeout: Duration,
) -> io::Result<UpstreamIo> {
    let name = tls.name.clone();
    match tokio::time::timeout(timeout, tls.connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(UpstreamIo::Tls(Box::new(stream))),
        Ok(Err(e)) => Err(io::Error::other(TlsRefused(format!(
            "TLS handshake with the upstream ({}) failed: {e} (the certificate is checked \
             against upstream.ca_file or upstream.tls_roots, for the name in \
             upstream.server_name or the URL's host)",
            tls.name.to_str()
        )))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the TLS handshake with the upstream took longer than {timeout:?}"),
        )),
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

/// The pool key of a connection that announces `client` connected to `destination`:
/// `<client>.<destination>.proxy.invalid`, a valid host name the connector reads back.
pub(crate) fn pool_key(
    client: SocketAddr,
    destination: SocketAddr,
) -> Result<Authority, http::uri::InvalidUri> {
    Authority::try_from(format!("{}.{}.proxy.invalid", hex_addr(client), hex_addr(destination)))
}

fn decode_key(host: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = host.strip_suffix(".proxy.invalid")?;
    let (client, destination) = rest.split_once('.')?;
    Some((unhex_addr(client)?, unhex_addr(destination)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keys_round_trip() {
        for (c, d) in [
            ("192.0.2.1:5000", "10.0.0.1:80"),
            ("[2001:db8::1]:1", "[::1]:65535"),
            ("192.0.2.1:0", "[::1]:80"),
        ] {
            let (c, d): (SocketAddr, SocketAddr) = (c.parse().unwrap(), d.parse().unwrap());
            let key = pool_key(c, d).unwrap();
            assert_eq!(decode_key(key.host()), Some((c, d)));
        }
        assert_eq!(decode_key("example.com"), None);
    }
}
