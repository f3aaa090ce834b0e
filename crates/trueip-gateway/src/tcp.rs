//! TCP mode: for protocols that are not HTTP, and TLS passthrough.
//!
//! Accept, resolve the client from the peer or a trusted PROXY header (there are no
//! headers to read), connect to the listener's upstream, announce the client in a PROXY
//! v1/v2 header, then copy bytes both ways until either side closes or the connection
//! sits idle for `limits.idle_timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::config::{ListenerSettings, SendProxy};
use crate::context::{ConnCtx, State};
use crate::io::{Idle, Tracked};
use crate::logging::Throttle;
use crate::metrics::UpstreamErrorKind;

/// A relay whose upstream fails logs a line per connection: every stranger's connection
/// while the upstream is down, each line a write a slow stderr holds the worker in.
static UPSTREAM_FAILED: Throttle = Throttle::new();

/// Relays one connection.
pub(crate) async fn relay(io: Tracked, ctx: &ConnCtx, state: &State, listener: &ListenerSettings) {
    let start = Instant::now();
    let metrics = &ctx.shared.metrics;
    metrics.tcp_connection();
    let settings = &state.settings;
    let conn = ctx.connection();
    let no_headers: [(&str, &str); 0] = [];
    let resolution = settings.policy_for(ctx.listener()).resolve(&conn, &no_headers[..]);
    metrics.resolved(&resolution);
    if let Some(i) = ctx.listener().and_then(|id| settings.listener_index(id)) {
        metrics.decided_on(i);
    }
    // A tcp-mode listener is a TCP socket (the config refuses `unix:` with mode = "tcp"),
    // and no header is read: the client is the peer or a PROXY source, an address.
    let (Some(client), Some(destination)) =
        (resolution.client.node(), ctx.destination(&resolution))
    else {
        tracing::warn!(peer = %ctx.peer, "tcp relay: the connection has no address to name upstream");
        return;
    };
    let client = SocketAddr::new(client.ip, client.port.unwrap_or(0));

    let Some(target) = listener.upstream.as_deref() else {
        return;
    };
    let mut upstream = match crate::upstream::connect_tcp(target, settings.upstream.connect_timeout)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let kind = if e.kind() == std::io::ErrorKind::TimedOut {
                UpstreamErrorKind::Timeout
            } else {
                UpstreamErrorKind::Connect
            };
            metrics.upstream_error(kind);
            if let Some(left_out) = UPSTREAM_FAILED.admit() {
                let not_logged = (left_out > 0).then_some(left_out);
                tracing::warn!(%client, peer = %ctx.peer, upstream = target, not_logged, "tcp relay: cannot connect upstream: {e}");
            }
            return;
        }
    };
    let send_proxy = listener.send_proxy();
    if send_proxy != SendProxy::Off {
        let header = crate::proxy::encode(send_proxy, client, destination);
        if let Err(e) = upstream.write_all(&header).await {
            metrics.upstream_error(UpstreamErrorKind::Protocol);
            if let Some(left_out) = UPSTREAM_FAILED.admit() {
                let not_logged = (left_out > 0).then_some(left_out);
                tracing::warn!(%client, upstream = target, not_logged, "tcp relay: cannot send the PROXY header: {e}");
            }
            return;
        }
    }
    let idle = settings.limits.idle_timeout;
    // Counted as written, not taken from the copy's result: a copy that fails (a reset,
    // a send timeout) or is dropped (idle) reports nothing, and the log line would say
    // nothing moved exactly when the operator looks at it.
    let mut io = Counted::new(io);
    let mut upstream = Counted::new(upstream);
    let (result, idled) = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut io, &mut upstream) => (Some(r), false),
        () = ctx.activity.idle(Idle::Io, idle) => (None, true),
    };
    let (up, down) = (upstream.written, io.written);
    let error = match result {
        Some(Err(e)) => e.to_string(),
        _ if idled => format!("idle for {idle:?} (limits.idle_timeout)"),
        _ => String::new(),
    };
    if settings.log.access_log {
        let link = conn.private_link_for(&resolution);
        tracing::info!(
            target: crate::logging::ACCESS,
            client = %client.ip(),
            peer = %ctx.peer,
            mode = "tcp",
            upstream = target,
            bytes_up = up,
            bytes = down,
            duration_ms = (start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            source = %resolution.source,
            warnings = (!resolution.warnings.is_empty()).then(|| tracing::field::display(resolution.warnings)),
            aws_vpce_id = link.and_then(|l| l.aws_vpce_id.as_deref()),
            azure_link_id = link.and_then(|l| l.azure_link_id),
            error = (!error.is_empty()).then_some(error.as_str()),
        );
    }
}

/// A stream that counts the bytes written to it: what a relay sent each way, whether
/// its copy ended, failed or was dropped.
struct Counted<S> {
    stream: S,
    written: u64,
}

impl<S> Counted<S> {
    fn new(stream: S) -> Self {
        Counted { stream, written: 0 }
    }

    fn count(&mut self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = polled {
            self.written = self.written.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.count(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.count(polled)
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
