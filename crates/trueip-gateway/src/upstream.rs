//! The pooled HTTP/1.1 client to the upstream, over TCP or a unix socket.
//!
//! With `upstream.proxy_protocol` set, every upstream connection opens with a PROXY
//! header naming one client, so a pooled connection may only be reused for that same
//! client. hyper-util's pool is keyed by the request URI's authority; the gateway puts
//! the announced addresses into that authority (`<hex>.<hex>.proxy.invalid`), and the
//! connector reads them back. Connections are thus shared per client and never across
//! clients, and the authority never reaches the upstream (the Host header is set
//! explicitly).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::body::Timed;
use crate::config::{SendProxy, UpstreamSettings, UpstreamTarget};

/// A connection to the upstream.
pub enum UpstreamIo {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
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

/// The upstream, ready to take requests.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The checked settings.
    pub settings: UpstreamSettings,
    client: Client<Connector, Timed<Incoming>>,
    authority: String,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .build(connector);
        Upstream {
            settings,
            client,
            authority,
        }
    }

    /// The URI for a request: the upstream's authority (or, with PROXY headers, a
    /// per-client pool key) and the original path and query.
    pub fn uri(
        &self,
        path_and_query: &str,
        client: SocketAddr,
        destination: SocketAddr,
    ) -> Result<Uri, http::Error> {
        let authority = match self.settings.proxy_protocol {
            SendProxy::Off => self.authority.clone(),
            _ => encode_key(client, destination),
        };
        Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
    }

    /// The Host header to send when the request had none.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends a request.
    pub async fn send(
        &self,
        req: http::Request<Timed<Incoming>>,
    ) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(req).await
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
