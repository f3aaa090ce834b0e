//! What serving a connection needs: the config snapshot its requests are served under
//! ([`State`]), what outlives reloads ([`Shared`]), and the connection itself
//! ([`ConnCtx`]: peer, listener, PROXY header, TLS).
//!
//! Everything a connection does before its first request (PROXY header, TLS) is decided
//! from the state current when it was accepted; each request loads the current state, so
//! a reload reaches keep-alive connections too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use trueip::ConfigError;

use crate::config::{FileConfig, Mode, Settings};
use crate::forgeries::Forgeries;
use crate::io::Activity;
use crate::metrics::Metrics;
use crate::rules::{Hygiene, Serves};
use crate::upstream::{Pool, Upstream};

/// The number of headers hyper accepts when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;

/// Everything derived from one version of the config.
pub(crate) struct State {
    /// The checked config.
    pub(crate) settings: Settings,
    /// Header rules.
    pub(crate) hygiene: Hygiene,
    /// The upstream client; `None` serves the whoami page.
    pub(crate) upstream: Option<Upstream>,
    /// Per listener, in order.
    pub(crate) tls: Vec<Option<TlsAcceptor>>,
    /// HTTP/1.1 server settings.
    pub(crate) h1: http1::Builder,
    /// HTTP/2 server settings.
    pub(crate) h2: http2::Builder<TokioExecutor>,
    /// The config file as read (before flags), which a range refresh rebuilds from;
    /// `None` for states built otherwise (tests).
    pub(crate) source: Option<Arc<FileConfig>>,
}

impl State {
    /// Builds everything a config describes (reads TLS files); nothing is bound yet.
    pub(crate) fn build(settings: Settings) -> Result<State, ConfigError> {
        let mut acceptors = Vec::new();
        for (i, l) in settings.listeners.iter().enumerate() {
            acceptors.push(
                l.tls
                    .as_ref()
                    .map(|files| {
                        crate::tls::acceptor(
                            files,
                            &format!("listen[{i}].tls"),
                            l.mode == Mode::Http,
                        )
                    })
                    .transpose()?,
            );
        }
        let limits = &settings.limits;
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        // hyper's own limit is 100 headers, parsed into an array on the stack; a limit
        // set explicitly (even to 100) makes it fill a vector of that size per request.
        if limits.max_headers != HYPER_MAX_HEADERS {
            h1.max_headers(limits.max_headers);
        }
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        Ok(State {
            hygiene: Hygiene::new(settings.headers.clone()),
            upstream: settings
                .upstream
                .url
                .clone()
                .map(|target| Upstream::new(target, settings.upstream.clone(), limits.workers))
                .transpose()?,
            tls: acceptors,
            h1,
            h2,
            settings,
            source: None,
        })
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    /// The current config; swapped whole on reload.
    pub(crate) state: ArcSwap<State>,
    /// Metrics, kept across reloads.
    pub(crate) metrics: Arc<Metrics>,
    /// The last requests that tried to forge an address, kept across reloads.
    pub(crate) forgeries: Forgeries,
    /// `true` once shutdown began, for those who wait for it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// `true` once shutdown began, for those who ask on every request: a load, where the
    /// channel's value is behind a lock. Set by [`Shared::begin_shutdown`] only.
    stopping: AtomicBool,
    /// One permit per open connection.
    pub(crate) connections: Arc<Semaphore>,
    /// Peers whose forwarding headers were ignored, for the misconfiguration hint.
    pub(crate) hints: crate::hint::Hints,
}

impl Shared {
    /// What a listener's connections share, with `max_connections` permits.
    pub(crate) fn new(state: Arc<State>, metrics: Arc<Metrics>, max_connections: usize) -> Self {
        let (shutdown, _) = watch::channel(false);
        Shared {
            state: ArcSwap::new(state),
            metrics,
            forgeries: Forgeries::default(),
            shutdown,
            stopping: AtomicBool::new(false),
            connections: Arc::new(Semaphore::new(max_connections)),
            hints: crate::hint::Hints::default(),
        }
    }

    /// Whether shutdown began.
    pub(crate) fn shutting_down(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves once shutdown began.
    pub(crate) async fn stopped(&self) {
        let _ = self.shutdown.subscribe().wait_for(|s| *s).await;
    }

    /// Begins the shutdown: every connection is told, waiting or not.
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
    }
}

/// Which socket a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `listen[i]`.
    Listener(usize),
    /// `admin.listen`: `/healthz`, `/metrics` and `/forgeries` only.
    Admin,
}

/// Counts a connection as open (and holds its `max_connections` permit) until dropped:
/// it lives in [`ConnCtx`], so a tunnel that outlives the HTTP exchange keeps it.
pub(crate) struct Open {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    /// Counts a connection that holds `permit` as open.
    pub(crate) fn new(metrics: Arc<Metrics>, permit: OwnedSemaphorePermit) -> Self {
        metrics.connection_opened();
        Open {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// One accepted connection, as the codecs see it.
pub(crate) struct ConnCtx {
    /// Shared state.
    pub(crate) shared: Arc<Shared>,
    /// The peer: a TCP peer's address, or `Peer::Unix` on a `unix:` listener.
    pub(crate) peer: trueip::addr::Peer,
    /// The local address (`None` on a `unix:` listener: a path, no port).
    pub(crate) local: Option<SocketAddr>,
    /// The PROXY header, from a trusted sender.
    pub(crate) proxy: Option<crate::proxy::Received>,
    /// TLS terminated here.
    pub(crate) tls: bool,
    /// Activity, for the idle timeout.
    pub(crate) activity: Arc<Activity>,
    /// The socket it came in on.
    pub(crate) role: Role,
    /// Idle upstream connections that announced this connection in a PROXY header: no
    /// other connection may use them, so they close with it.
    pub(crate) upstream_idle: Arc<Pool>,
    /// Keeps the connection counted while anything (a tunnel) still uses it.
    pub(crate) _open: Open,
}

impl ConnCtx {
    /// The index of the listener it came in on (`None`: the admin listener).
    pub(crate) fn listener(&self) -> Option<usize> {
        match self.role {
            Role::Listener(i) => Some(i),
            Role::Admin => None,
        }
    }

    /// The scheme the client used: `https` over TLS here, or when a PROXY v2 header
    /// said the client's connection was TLS.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls || self.proxy.as_ref().is_some_and(|p| p.client_tls) {
            "https"
        } else {
            "http"
        }
    }

    /// The address the client connected to: the PROXY header's destination, else this
    /// socket's (`None` on a `unix:` listener).
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.proxy
            .as_ref()
            .and_then(|p| p.addrs)
            .map_or(self.local, |a| Some(a.destination))
    }

    /// Who answers this connection's requests under `state`.
    pub(crate) fn serves(&self, state: &State) -> Serves {
        match (self.role, &state.upstream) {
            (Role::Admin, _) => Serves::Admin,
            (Role::Listener(_), None) => Serves::Whoami,
            (Role::Listener(_), Some(_)) => Serves::Upstream,
        }
    }

    /// What the connection says before any header is read: the peer, and the source and
    /// private endpoint of a PROXY header when one was accepted.
    pub(crate) fn connection(&self) -> trueip::Connection {
        trueip::Connection {
            peer: self.peer,
            proxy_source: self
                .proxy
                .as_ref()
                .and_then(|p| p.addrs)
                .map(|a| trueip::Node::from(a.source)),
            private_link: self
                .proxy
                .as_ref()
                .map(|p| p.private_link.clone())
                .unwrap_or_default(),
        }
    }
}
