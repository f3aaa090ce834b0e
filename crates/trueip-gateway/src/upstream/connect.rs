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

use crate::config::{SendProxy, UpstreamTarget};

/// A connection to the upstream.
pub(crate) enum UpstreamIo {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
}

/// `$e` on the stream inside, whichever it is.
macro_rules! either {
    ($io:expr, $s:ident => $e:expr) => {
        match $io {
            UpstreamIo::Tcp($s) => $e,
            UpstreamIo::Unix($s) => $e,
        }
    };
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
    pub(crate) fn gone(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = either!(self, s => s.poll_read_ready(&mut cx));
        match ready {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                let read = either!(self, s => s.try_read(&mut probe));
                !matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
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
pub(crate) struct Connector {
    target: Target,
    timeout: Duration,
    proxy: SendProxy,
}

/// Connects to a TCP `host:port` within `timeout`, with `TCP_NODELAY`.
pub(crate) async fn connect_tcp(authority: &str, timeout: Duration) -> io::Result<TcpStream> {
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

impl Connector {
    /// Connects to `target` within `timeout`, announcing clients with `proxy`.
    pub(crate) fn new(target: &UpstreamTarget, timeout: Duration, proxy: SendProxy) -> Self {
        let target = match target {
            UpstreamTarget::Tcp(a) => Target::Tcp(a.as_str().into()),
            UpstreamTarget::Unix(p) => Target::Unix(Arc::new(p.clone())),
        };
        Connector {
            target,
            timeout,
            proxy,
        }
    }

    /// Opens a connection for the pool key `key`: with PROXY headers, the key names the
    /// client to announce (see [`pool_key`]).
    pub(crate) async fn connect(&self, key: &Authority) -> io::Result<UpstreamIo> {
        let mut io = match &self.target {
            Target::Tcp(authority) => UpstreamIo::Tcp(connect_tcp(authority, self.timeout).await?),
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
        Ok(io)
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
    Authority::try_from(format!(
        "{}.{}.proxy.invalid",
        hex_addr(client),
        hex_addr(destination)
    ))
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
